"""`fused-imgproc preprocess`: image files, folders and globs into one `pixel_values` file, batch by batch."""

from __future__ import annotations

import sys
import time

import numpy as np
import PIL.Image

from ..backends import BackendUnavailableError, native
from .common import PROG, CLIError, describe_error, device_name, positive_int, to_numpy
from .decode import DEFAULT_MAX_DECODED_MIB, DEFAULT_MAX_PIXELS, decoded_batches, pillow_bomb_check_off
from .files import OUTPUT_FORMATS, SAMPLES_DIR, OutputWriter, sample_paths
from .inputs import IMAGE_EXTENSIONS, expand_inputs
from .loading import load_processor
from .signals import interrupt_on_signals

DTYPES = ("float32", "float16", "bfloat16", "float64")
PROBE_SIZES = ((24, 40), (40, 24), (31, 31))  # (height, width): landscape, portrait, square


def add_preprocess_arguments(p) -> None:
    """The options of `preprocess` (on the subcommand's parser)."""
    p.add_argument("inputs", nargs="*", metavar="INPUT",
                   help=f"image files, folders (searched recursively for {' '.join(IMAGE_EXTENSIONS)}) or globs "
                   "(quote them; ** is recursive)")
    p.add_argument("--out", "-o", required=True, metavar="FILE",
                   help=f"output file: {', '.join(OUTPUT_FORMATS)} (.pt needs torch); written atomically")
    p.add_argument("--samples", action="store_true", help=f"add the bundled sample images ({SAMPLES_DIR})")
    p.add_argument("--config", metavar="REPO_OR_PATH",
                   help="preprocessor config: a Hub repo id, a folder or a preprocessor_config.json "
                   "(default: the bundled CLIP defaults, no network); it must give every image the same output "
                   "shape (a center crop, or a fixed height x width resize)")
    p.add_argument("--batch-size", type=positive_int, default=32, metavar="N",
                   help="images preprocessed at a time (default 32; fewer when they would take more than half of "
                   "--max-decoded-mib)")
    p.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"skip images with more pixels than this, read from the file's header, without decoding them "
                   f"(default {DEFAULT_MAX_PIXELS}: 16384 x 16384; it replaces Pillow's decompression-bomb check)")
    p.add_argument("--max-decoded-mib", type=positive_int, default=DEFAULT_MAX_DECODED_MIB, metavar="MIB",
                   help="decoded images held at once, the batch being preprocessed plus those decoded ahead, counted "
                   f"at 4 bytes per pixel (default {DEFAULT_MAX_DECODED_MIB} MiB; a larger image is processed alone)")
    p.add_argument("--device", default="cpu", type=device_name, help="cpu (default), cuda or cuda:N")
    p.add_argument("--dtype", default="float32", choices=DTYPES,
                   help="output dtype (default float32; bfloat16 needs torch and .safetensors or .pt)")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "triton"),
                   help="auto (default: numpy on the CPU, triton on CUDA), numpy or triton")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=preprocess_command)


def as_float32(values: np.ndarray, dtype: str) -> np.ndarray:
    """Rows as float32 for the min/max summary (bfloat16 rows arrive as their uint16 bit patterns)."""
    if dtype == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return values


def check_device(device: str, backend: str) -> None:
    """`--device` (already of the form cpu/cuda/cuda:N) names a device this machine has, for `--backend`."""
    if device == "cpu":
        return
    if backend == "numpy":
        raise CLIError(f"--backend numpy runs on the CPU, not on --device {device}: use --device cpu, or "
                       "--backend auto (or triton) for the GPU")
    try:
        import torch
    except ImportError:
        raise CLIError(f"--device {device} needs torch with CUDA, which is not installed (pip install "
                       "'fused-imgproc[gpu]'); or use --device cpu") from None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise CLIError(f"--device {device}: no CUDA GPU is available (torch {torch.__version__} sees none); "
                       "use --device cpu")
    index = int(device.partition(":")[2] or 0)
    if index >= count:
        raise CLIError(f"--device {device}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")


def output_shape(processor) -> tuple[int, ...]:
    """The (C, H, W) every image gets with this config, or `CLIError` when it depends on the image.

    The processor answers, on blank RGB images of the shapes in `PROBE_SIZES` run through the numpy backend (the
    geometry is the same on every backend), before any input is read.
    """
    names = list(getattr(processor, "model_input_names", ["pixel_values"]))
    if names != ["pixel_values"]:
        raise CLIError(
            f"{type(processor).__name__} gives {', '.join(names)}: pixel_values as patch rows whose count depends on "
            "each image, with image_grid_thw to split them. The preprocess command writes one (C, H, W) array per "
            "image; use the Python API (processor(images).pixel_values, .image_grid_thw) for this config"
        )
    probes = [PIL.Image.new("RGB", (width, height), (10, 20, 30)) for height, width in PROBE_SIZES]
    try:
        values = processor(probes, backend="numpy", device="cpu").pixel_values
    except (ValueError, TypeError, ImportError) as error:
        raise CLIError(f"cannot preprocess with this config: {describe_error(error)}") from None
    shapes = [tuple(v.shape) for v in values]
    if len(set(shapes)) > 1:
        examples = ", ".join(f"a {h}x{w} image gives {shape}" for (h, w), shape in zip(PROBE_SIZES, shapes))
        raise CLIError(
            f"this config gives pixel_values whose shape depends on the image: {_why_shapes_differ(processor)} "
            f"({examples}), so the images cannot be stacked into one array. Use a config with a center crop "
            "(do_center_crop with crop_size) or a fixed {\"height\": H, \"width\": W} resize"
        )
    return shapes[0]


def _why_shapes_differ(processor) -> str:
    size = getattr(processor, "size", None) or {}
    if not getattr(processor, "do_resize", None):
        return "with no resize and no center crop, each image keeps its own size"
    for key, name in (("shortest_edge", "shortest_edge"), ("longest_edge", "longest_edge"),
                      ("max_height", "max_height/max_width")):
        if key in size:
            return f"a {name} resize without a center crop gives one shape per aspect ratio"
    return f"do_resize={processor.do_resize}, size={size}, do_center_crop={getattr(processor, 'do_center_crop', None)}"


class Preprocessor:
    """Runs the processor on one batch with the command's options and returns host arrays."""

    def __init__(self, processor, args):
        self.processor = processor
        self.dtype, self.device = args.dtype, args.device
        self.backend = args.backend
        self.options = f"--device {self.device} --dtype {self.dtype}" + (
            f" --backend {self.backend}" if self.backend != "auto" else "")
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
            raise CLIError(f"cannot preprocess with {self.options}: {error}") from None
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


def preprocess_command(args) -> int:
    inputs = list(args.inputs) + (sample_paths() if args.samples else [])
    if not inputs:
        raise CLIError("no inputs: give image files, folders or globs (or --samples for the bundled samples)")
    writer = None
    with interrupt_on_signals() as guard, pillow_bomb_check_off():
        try:
            with guard.deferred():  # a signal cannot fall between the temporary file's creation and `writer`
                writer = OutputWriter(args.out, args.dtype)  # an unwritable output fails here, before any work
            return _preprocess(args, inputs, writer)
        finally:
            if writer is not None:
                with guard.deferred():  # after Ctrl-C, SIGTERM or SIGHUP too; a second signal waits for the cleanup
                    writer.close()


def _preprocess(args, inputs: list[str], writer: OutputWriter) -> int:
    start = time.perf_counter()
    check_device(args.device, args.backend)
    processor, config_text = load_processor(args.config)
    output_shape(processor)
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
    if len(paths) > args.batch_size and not args.quiet:
        try:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), unit="img", desc=PROG, file=sys.stderr, dynamic_ncols=True)
        except ImportError:
            pass

    done, low, high = [], np.inf, -np.inf
    decoded = decoded_batches(paths, report, batch_size=args.batch_size, max_pixels=args.max_pixels,
                              max_decoded_bytes=args.max_decoded_mib * 2**20)
    try:
        for images, names, count in decoded:
            for chunk_names, rows in process_batch(run, images, names, report) if images else []:
                if writer.item_shape is not None and rows.shape[1:] != writer.item_shape:
                    raise CLIError(
                        f"{chunk_names[0]} gives pixel_values of shape {rows.shape[1:]}, earlier images "
                        f"{writer.item_shape}: the images cannot be stacked into one array (a different number "
                        "of channels? a config with do_convert_rgb makes every image RGB)"
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
    resizer = f" ({native.describe()})" if run.backend == "numpy" else ""
    print(f"backend: {run.backend} on {args.device}{resizer}, batch size {args.batch_size}")
    print(f"time: {elapsed:.2f} s total, {elapsed / len(done) * 1e3:.2f} ms per image "
          f"({run.seconds / len(done) * 1e3:.2f} ms in the processor)")
    if skipped:
        print(f"{PROG}: skipped {len(skipped)} of {total} input(s) (reported above): "
              f"{', '.join(skipped[:5])}{', ...' if len(skipped) > 5 else ''}", file=sys.stderr)
        return 1
    return 0
