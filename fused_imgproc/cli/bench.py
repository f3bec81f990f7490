"""`fused-imgproc bench`: CLIP preprocessing timed side by side on this machine, as a table and optionally a PNG.

Compared: our numpy backend; our Triton backend when a CUDA GPU can run it (under `TRITON_INTERPRET=1` it is
listed as unavailable: interpreter timings say nothing about the kernel); transformers' `CLIPImageProcessorPil`
(`CLIPImageProcessor` before transformers 5) when transformers is installed. Every implementation gets the same
images; the times are medians over `--repeat` runs after one warm-up run, whose output is compared bit for bit.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from .common import CLIError, positive_int, to_numpy, triton_status
from .files import load_image, sample_paths

DEFAULT_REPEAT = 10


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
    parser.add_argument("--plot", metavar="FILE.png", help="also draw the table as a bar chart")
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


def implementations(args) -> tuple[list[tuple[str, object]], list[str]]:
    """`(name, function returning host pixel_values)` to time, and notes on those that cannot run."""
    from ..processors import CLIPImageProcessor

    ours = CLIPImageProcessor()
    found = [("fused_imgproc numpy (CPU)", lambda images: ours(images, return_tensors="np").pixel_values)]
    notes = []
    usable, text, gpu = triton_status()
    if usable:
        import torch

        def triton_gpu(images):
            values = ours(images, return_tensors="pt", device="cuda").pixel_values
            torch.cuda.synchronize()
            return values

        found.append((f"fused_imgproc triton ({gpu})", triton_gpu))
    else:
        notes.append(f"triton: unavailable ({text.removeprefix('unavailable: ')})" if text.startswith("unavailable")
                     else "triton: not timed (TRITON_INTERPRET=1: the interpreter's timings say nothing about the "
                     "kernel)")
    if not args.no_transformers:
        try:
            import transformers
        except ImportError:
            notes.append("transformers: not installed (pip install transformers)")
        else:
            transformers.logging.set_verbosity_error()
            cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
            theirs = cls()
            found.insert(0, (f"transformers {cls.__name__}", lambda images: theirs(images, return_tensors="np")
                             .pixel_values))
    return found, notes


def bench_command(args) -> int:
    if args.plot and not os.path.isdir(os.path.dirname(os.path.abspath(args.plot))):
        raise CLIError(f"cannot write --plot {args.plot!r}: its folder does not exist")
    images, what = bench_images(args)
    impls, notes = implementations(args)
    rows = []
    for name, fn in impls:
        output = to_numpy(fn(images))  # warm-up (and the Triton kernel's compilation), and the output we compare
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn(images)
            times.append(time.perf_counter() - start)
        rows.append({"name": name, "ms": float(np.median(times)) * 1e3, "output": output})
    reference = rows[0]
    baseline = reference["ms"] if reference["name"].startswith("transformers") else None
    print(f"CLIP defaults (shortest edge 224, bicubic, center crop 224) on {what}; "
          f"median of {args.repeat} run(s)")
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
        print(f"{row['name']:{name_width}s}{row['ms']:10.2f}{row['ms'] / len(images):10.3f}{speedup:>10s}  {same}")
    for note in notes:
        print(note)
    if baseline is None:
        print("(speed-up is relative to transformers, which was not timed)")
    if args.plot:
        draw_bars(args.plot, rows, len(images), f"CLIP preprocessing, ms per image ({what})")
        print(f"plot: {args.plot}")
    return 0


def draw_bars(path: str, rows: list[dict], count: int, title: str) -> None:
    """A horizontal bar chart of ms per image, drawn with Pillow."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(draw.textlength(row["name"], font=font) for row in rows) + 24
    width, bar_height, gap, top = 900, 28, 14, 56
    height = top + len(rows) * (bar_height + gap) + 24
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.text((12, 12), title, fill="black", font=font)
    longest = max(row["ms"] / count for row in rows)
    room = width - label_width - 160
    colors = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]
    for k, row in enumerate(rows):
        y = top + k * (bar_height + gap)
        value = row["ms"] / count
        length = max(1, round(room * value / longest))
        draw.text((12, y + 6), row["name"], fill="black", font=font)
        draw.rectangle([label_width, y, label_width + length, y + bar_height], fill=colors[k % len(colors)])
        text = f"{value:.3f} ms" + (f"  ({row['speedup']:.2f}x)" if row.get("speedup") else "")
        draw.text((label_width + length + 8, y + 6), text, fill="black", font=font)
    try:
        image.save(path, format="PNG")
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot write --plot {path!r}: {error}") from None
