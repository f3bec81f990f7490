"""The `fused-imgproc` command line.

    fused-imgproc preprocess INPUTS... --out FILE [--config REPO_OR_PATH] [--batch-size N] [--device D] [--dtype T]
                             [--backend B] [--samples] [--quiet]
    fused-imgproc bench [--size HxW] [--batch-size N] [--repeat R] [--plot FILE.png] [--no-transformers]
    fused-imgproc info

Exit status: 0 success; 1 some inputs were skipped (the output holds the others) or none could be read;
2 a usage error (bad arguments, unwritable output, unloadable config, unavailable backend): nothing is written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image

from . import __version__
from ._cli_io import (
    IMAGE_EXTENSIONS,
    OUTPUT_FORMATS,
    SAMPLES_DIR,
    CLIError,
    OutputWriter,
    describe_error,
    expand_inputs,
    load_image,
    sample_paths,
)
from .backends import BackendUnavailableError

PROG = "fused-imgproc"
DTYPES = ("float32", "float16", "bfloat16", "float64")
DEFAULT_CONFIG = "CLIPImageProcessor (bundled default CLIP config: shortest edge 224, bicubic, center crop 224)"


# --- shared helpers ---------------------------------------------------------------------------------------------


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def triton_status() -> tuple[bool, str, str | None]:
    """(usable on a GPU, a one-line description, the GPU's name or None). Imports torch when it is installed."""
    try:
        import torch
    except ImportError:
        return False, "unavailable: torch is not installed; pip install 'fused-imgproc[gpu]'", None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if importlib.util.find_spec("triton") is None:
        return False, "unavailable: triton is not installed; pip install 'fused-imgproc[gpu]'", gpu
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False, "interpreter only (TRITON_INTERPRET=1: backend='triton' with device='cpu', for testing)", gpu
    if gpu is None:
        return False, "unavailable: torch sees no CUDA GPU", None
    return True, f"available on {gpu} (device='cuda')", gpu


def to_numpy(values) -> np.ndarray:
    """`pixel_values` as a host numpy array; bfloat16 as its uint16 bit patterns."""
    if isinstance(values, np.ndarray):
        return values
    import torch

    values = values.detach().cpu()
    if values.dtype == torch.bfloat16:
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy()


def as_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values


# --- preprocess -------------------------------------------------------------------------------------------------


def load_processor(config: str | None):
    from .processors import AutoImageProcessor, CLIPImageProcessor

    if config is None:
        return CLIPImageProcessor(), DEFAULT_CONFIG
    try:
        processor = AutoImageProcessor.from_pretrained(config)
    except (OSError, ValueError, TypeError) as error:
        raise CLIError(f"cannot load --config {config!r}: {error}") from None
    return processor, f"{type(processor).__name__} from {config}"


class Preprocessor:
    """Runs the processor on one batch with the command's options and returns host arrays."""

    def __init__(self, processor, args):
        self.processor = processor
        self.dtype, self.device = args.dtype, args.device
        self.backend = args.backend
        if self.backend == "auto":
            self.backend = "numpy" if args.device.split(":")[0] == "cpu" else "triton"
        needs_torch = self.backend == "triton" or self.dtype == "bfloat16"
        self.return_tensors = "pt" if needs_torch else "np"
        self.seconds = 0.0

    def __call__(self, images) -> np.ndarray:
        start = time.perf_counter()
        values = self.processor(images, return_tensors=self.return_tensors, dtype=self.dtype, device=self.device,
                                backend=self.backend).pixel_values
        values = to_numpy(values)
        self.seconds += time.perf_counter() - start
        return values

    def check(self) -> None:
        """One tiny image through the whole path: a bad backend, device or dtype fails here, before any file."""
        try:
            self([PIL.Image.new("RGB", (8, 8), (10, 20, 30))])
        except (BackendUnavailableError, ValueError, TypeError, ImportError, RuntimeError) as error:
            raise CLIError(f"cannot preprocess with --backend {self.backend} --device {self.device} "
                           f"--dtype {self.dtype}: {error}") from None
        self.seconds = 0.0


def process_batch(run: Preprocessor, images: list, names: list[str], report) -> list[tuple[list[str], np.ndarray]]:
    """`(names, rows)` chunks for the images that preprocess: the whole batch at once, or, when the batch fails,
    image by image, so that an image that fails alone is reported and left out."""
    try:
        return [(names, run(images))]
    except BackendUnavailableError as error:
        raise CLIError(str(error)) from None
    except Exception as error:  # noqa: BLE001 (then find the image(s) responsible, one at a time)
        if len(images) == 1:
            report(names[0], f"cannot preprocess: {describe_error(error)}")
            return []
    return [chunk for image, name in zip(images, names, strict=True)
            for chunk in process_batch(run, [image], [name], report)]


def decoded_batches(batches: list[list[str]], report):
    """`(images, paths, number of paths)` per batch; files that do not decode are reported and left out. Decoding
    runs on a thread pool (Pillow releases the GIL) one batch ahead of the processor."""
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        def submit(batch):
            return [(path, pool.submit(load_image, path)) for path in batch]

        pending = submit(batches[0]) if batches else []
        for k in range(len(batches)):
            current, pending = pending, (submit(batches[k + 1]) if k + 1 < len(batches) else [])
            images, names = [], []
            for path, future in current:
                try:
                    images.append(future.result())
                    names.append(path)
                except Exception as error:  # noqa: BLE001 (any decoder failure is this file's problem)
                    report(path, f"cannot read image: {describe_error(error)}")
            yield images, names, len(current)


def preprocess_command(args) -> int:
    inputs = list(args.inputs) + (sample_paths() if args.samples else [])
    if not inputs:
        raise CLIError("no inputs: give image files, folders or globs (or --samples for the bundled samples)")
    writer = OutputWriter(args.out, args.dtype)  # an unwritable output fails here, before any work
    try:
        return _preprocess(args, inputs, writer)
    finally:
        writer.close()


def _preprocess(args, inputs: list[str], writer: OutputWriter) -> int:
    start = time.perf_counter()
    processor, config_text = load_processor(args.config)
    run = Preprocessor(processor, args)
    run.check()
    paths, problems = expand_inputs(inputs)
    skipped = []

    def report(name: str, reason: str) -> None:
        skipped.append(name)
        message = f"{PROG}: skipping {name}: {reason}"
        if bar is not None:
            bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    bar = None
    for name, reason in problems:
        report(name, reason)
    batches = [paths[i:i + args.batch_size] for i in range(0, len(paths), args.batch_size)]
    if len(batches) > 1 and not args.quiet:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="img", desc=PROG, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    done, low, high = [], np.inf, -np.inf
    decoded = decoded_batches(batches, report)
    try:
        for images, names, count in decoded:
            for chunk_names, rows in process_batch(run, images, names, report) if images else []:
                if writer.item_shape is not None and rows.shape[1:] != writer.item_shape:
                    raise CLIError(
                        f"{chunk_names[0]} gives pixel_values of shape {rows.shape[1:]}, earlier images "
                        f"{writer.item_shape}: this config has no fixed output size (no center crop?), so the "
                        "images cannot be stacked into one array"
                    )
                writer.append(rows)
                done.extend(chunk_names)
                values = as_float32(rows, args.dtype)
                low, high = min(low, float(values.min())), max(high, float(values.max()))
            if bar is not None:
                bar.update(count)
    finally:
        decoded.close()  # stops the decoding threads now, also after an error
        if bar is not None:
            bar.close()

    total = len(paths) + len(problems)
    if not done:
        print(f"{PROG}: error: none of the {total} input(s) could be preprocessed; nothing written", file=sys.stderr)
        return 1
    size = writer.commit(done)
    elapsed = time.perf_counter() - start
    shape = (len(done), *writer.item_shape)
    print(f"preprocessed {len(done)} image(s) -> {args.out} ({size / 2**20:.1f} MiB)")
    print(f"pixel_values: shape {shape}, dtype {args.dtype}, range [{low:.4f}, {high:.4f}]")
    print(f"config: {config_text}")
    print(f"backend: {run.backend} on {args.device}, batch size {args.batch_size}")
    print(f"time: {elapsed:.2f} s total, {elapsed / len(done) * 1e3:.2f} ms per image "
          f"({run.seconds / len(done) * 1e3:.2f} ms in the processor)")
    if skipped:
        print(f"{PROG}: skipped {len(skipped)} of {total} input(s) (reported above): "
              f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}", file=sys.stderr)
        return 1
    return 0


# --- info -------------------------------------------------------------------------------------------------------


def info_command(args) -> int:
    print(f"fused_imgproc {__version__} ({os.path.dirname(os.path.abspath(__file__))})")
    print(f"Python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs)")
    for name in ("numpy", "Pillow", "huggingface_hub", "tqdm", "torch", "triton", "transformers", "safetensors"):
        print(f"{name + ':':17s}{version_of(name)}")
    _, triton_text, gpu = triton_status()
    print("backends:")
    print("  numpy:  available (CPU)")
    print(f"  triton: {triton_text}")
    print(f"GPU: {gpu or 'none'}")
    print(f"samples: {SAMPLES_DIR} ({len(sample_paths())} images)")
    return 0


# --- the parser -------------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Bit-exact image preprocessing for vision models (transformers-compatible).",
        epilog="exit status: 0 ok, 1 some inputs skipped or none readable, 2 usage error",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "preprocess", help="preprocess image files into one pixel_values file",
        description="Preprocess images into pixel_values (N, C, H, W) plus the source paths, in order, in one "
        f"{'/'.join(OUTPUT_FORMATS)} file. Unreadable files are reported by name and skipped (exit status 1).",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help=f"image files, folders (searched recursively for {' '.join(IMAGE_EXTENSIONS)}) or globs "
                   "(quote them; ** is recursive)")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help=f"output file: {', '.join(OUTPUT_FORMATS)} (.pt needs torch); written atomically")
    p.add_argument("--samples", action="store_true", help=f"add the bundled sample images ({SAMPLES_DIR})")
    p.add_argument("--config", metavar="REPO_OR_PATH",
                   help="preprocessor config: a Hub repo id, a folder or a preprocessor_config.json "
                   "(default: the bundled CLIP defaults, no network)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="images decoded and preprocessed at a time (default 32); memory grows with it")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="output dtype (default float32; bfloat16 needs torch and .safetensors or .pt)")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "triton"),
                   help="auto (default: numpy on the CPU, triton on CUDA), numpy or triton")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=preprocess_command)

    from ._cli_bench import add_bench_arguments, bench_command

    b = commands.add_parser("bench", help="time our backends against transformers on this machine",
                            description="Time CLIP preprocessing side by side: fused_imgproc's backends and, when "
                            "installed, transformers' processor; medians; --plot draws the table.")
    add_bench_arguments(b)
    b.set_defaults(func=bench_command)

    i = commands.add_parser("info", help="versions, available backends, GPU",
                            description="Print versions, the available backends and the GPU, if any.")
    i.set_defaults(func=info_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors (already printed by argparse)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.func(args)
    except CLIError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
