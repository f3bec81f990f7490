"""`fused-imgproc bench`: CLIP preprocessing timed side by side on this machine, as a table and optionally a chart.

Compared: our numpy backend; our Triton backend when a CUDA GPU can run it (under `TRITON_INTERPRET=1` it is
listed as unavailable: interpreter timings say nothing about the kernel); transformers' `CLIPImageProcessorPil`
(`CLIPImageProcessor` before transformers 5) when transformers is installed. Every implementation gets the same
images; the times are medians over `--repeat` runs after one warm-up run, whose output is compared bit for bit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from .chart import PLOT_FORMATS, draw_bars, plot_format
from .common import machine_description, positive_int, to_numpy, triton_status
from .decode import load_image
from .files import sample_paths

DEFAULT_REPEAT = 10
TITLE = "CLIP preprocessing (shortest edge 224, bicubic, center crop 224)"


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 480x640, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return height, width


def add_bench_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=_size, metavar="HxW",
                        help="time random uint8 images of this size instead of the bundled samples")
    parser.add_argument("--batch-size", type=positive_int, metavar="N",
                        help="images per batch for --size (default 8; 480x640 if only this is given)")
    parser.add_argument("--repeat", type=positive_int, default=DEFAULT_REPEAT, metavar="R",
                        help=f"timed runs per implementation; the median is reported (default {DEFAULT_REPEAT})")
    parser.add_argument("--plot", metavar="FILE",
                        help="also draw the table as a bar chart, in the format the extension names "
                        f"({' '.join(PLOT_FORMATS)})")
    parser.add_argument("--no-transformers", action="store_true", help="do not time transformers' processor")
    parser.set_defaults(func=bench_command)


def bench_images(args) -> tuple[list, str]:
    if args.size is None and args.batch_size is None:
        images = [load_image(path) for path in sample_paths()]
        return images, f"{len(images)} bundled sample images (mixed sizes, modes and formats)"
    height, width = args.size or (480, 640)
    count = args.batch_size or 8
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
    return images, f"{count} random {height}x{width} uint8 RGB images"


def implementations(args, triton: tuple[bool, str, str | None]) -> tuple[list[tuple[str, object]], list[str]]:
    """`(name, function returning pixel_values)` to time, and "backend: why not" for those that cannot run.
    `triton` is `triton_status()`."""
    from ..processors import CLIPImageProcessor

    ours = CLIPImageProcessor()
    found = [("fused_imgproc numpy (CPU)", lambda images: ours(images, return_tensors="np").pixel_values)]
    missing = []
    usable, text, gpu = triton
    if usable:
        import torch

        def triton_gpu(images):
            values = ours(images, return_tensors="pt", device="cuda").pixel_values
            torch.cuda.synchronize()
            return values

        found.append((f"fused_imgproc triton ({gpu})", triton_gpu))
    elif text.startswith("unavailable: "):
        missing.append(f"triton: {text.removeprefix('unavailable: ').split(';')[0]}")
    else:
        missing.append("triton: TRITON_INTERPRET=1 (the interpreter's timings say nothing about the kernel)")
    if args.no_transformers:
        missing.append("transformers: skipped (--no-transformers)")
    else:
        try:
            import transformers
        except ImportError:
            missing.append("transformers: not installed (pip install transformers)")
        else:
            transformers.logging.set_verbosity_error()
            cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
            theirs = cls()
            found.insert(0, (f"transformers {cls.__name__}", lambda images: theirs(images, return_tensors="np")
                             .pixel_values))
    return found, missing


def time_all(impls, images, repeat: int) -> list[dict]:
    """`{"name", "ms" (median per batch), "output"}` per implementation, after one warm-up run (which also
    compiles the Triton kernel) whose host output is kept for the bit-for-bit comparison."""
    rows = []
    for name, fn in impls:
        output = to_numpy(fn(images))
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn(images)
            times.append(time.perf_counter() - start)
        rows.append({"name": name, "ms": float(np.median(times)) * 1e3, "output": output})
    return rows


def bench_command(args) -> int:
    if args.plot:
        plot_format(args.plot)  # an unknown extension or a missing folder fails here, before any timing
    images, what = bench_images(args)
    triton = triton_status()
    machine = machine_description(triton[2])
    impls, missing = implementations(args, triton)
    rows = time_all(impls, images, args.repeat)
    print_table(rows, len(images), what, args.repeat, machine, missing)
    if args.plot:
        notes = [f"batch: {what}; median of {args.repeat} run(s)", f"machine: {machine}"]
        if missing:
            notes.append(f"not timed: {'; '.join(missing)}")
        draw_bars(args.plot, rows, len(images), f"{TITLE}: ms per image (lower is better)", notes)
        print(f"plot: {args.plot}")
    return 0


def print_table(rows: list[dict], count: int, what: str, repeat: int, machine: str, missing: list[str]) -> None:
    """The table on stdout; sets each row's "speedup" over transformers (None when transformers was not timed)."""
    reference = rows[0]
    baseline = reference["ms"] if reference["name"].startswith("transformers") else None
    print(f"{TITLE} on {what}; median of {repeat} run(s); lower is better")
    print(f"machine: {machine}")
    name_width = max(len(row["name"]) for row in rows) + 2
    header = f"{'implementation':{name_width}s}{'ms/batch':>10s}{'ms/image':>10s}{'speed-up':>10s}  output"
    print(header)
    print("-" * len(header))
    for row in rows:
        row["speedup"] = baseline / row["ms"] if baseline else None
        same = "reference" if row is reference else (
            "identical" if row["output"].dtype == reference["output"].dtype
            and np.array_equal(row["output"], reference["output"]) else "DIFFERENT")
        speedup = f"{row['speedup']:.2f}x" if row["speedup"] else "-"
        print(f"{row['name']:{name_width}s}{row['ms']:10.2f}{row['ms'] / count:10.3f}{speedup:>10s}  {same}")
    for line in missing:
        print(f"not timed: {line}")
    if baseline is None:
        print("(speed-up is relative to transformers, which was not timed)")
