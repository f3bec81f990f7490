"""`fused-imgproc bench --plot FILE`: the table as a horizontal bar chart, drawn with Pillow, in the image format
that FILE's extension names."""

from __future__ import annotations

import os
from pathlib import Path

from .common import CLIError

# Extensions offered for --plot (those Pillow can also save on this installation; see `plot_format`).
PLOT_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".gif": "GIF", ".bmp": "BMP",
                ".tif": "TIFF", ".tiff": "TIFF", ".pdf": "PDF"}
_COLORS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52"]


def plot_formats() -> dict[str, str]:
    """`{extension: Pillow format}` for the --plot extensions this Pillow can write."""
    import PIL.Image

    PIL.Image.init()
    return {ext: fmt for ext, fmt in PLOT_FORMATS.items() if fmt in PIL.Image.SAVE}


def plot_format(path: str) -> str:
    """The Pillow format for `--plot path`, or `CLIError` (checked before any timing) for an unknown extension or
    a folder that does not exist."""
    formats = plot_formats()
    extension = Path(path).suffix.lower()
    if extension not in formats:
        raise CLIError(f"cannot write --plot {path!r}: the chart is saved in the format its extension names, one of "
                       f"{', '.join(formats)}" + (f" (not {extension})" if extension else " (it has none)"))
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise CLIError(f"cannot write --plot {path!r}: its folder does not exist")
    return formats[extension]


def draw_bars(path: str, rows: list[dict], count: int, title: str, notes: list[str]) -> None:
    """A horizontal bar chart of ms per image (`row["ms"]` per batch of `count` images), with `title` above and
    `notes` (the batch, the machine, what was not timed) below it, saved in the format of `path`'s extension."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=15)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = max(measure.textlength(row["name"], font=font) for row in rows) + 24
    text_width = max(measure.textlength(line, font=font) for line in [title, *notes]) + 24
    width, bar_height, gap, line_height = max(900, round(text_width)), 28, 14, 22
    top = 12 + line_height * (1 + len(notes)) + 12
    image = Image.new("RGB", (width, top + len(rows) * (bar_height + gap) + 12), "white")
    draw = ImageDraw.Draw(image)
    for k, line in enumerate([title, *notes]):
        draw.text((12, 12 + k * line_height), line, fill="black" if k == 0 else "#444444", font=font)
    longest = max(row["ms"] / count for row in rows)
    room = width - label_width - 160
    for k, row in enumerate(rows):
        y = top + k * (bar_height + gap)
        value = row["ms"] / count
        length = max(1, round(room * value / longest))
        draw.text((12, y + 6), row["name"], fill="black", font=font)
        draw.rectangle([label_width, y, label_width + length, y + bar_height], fill=_COLORS[k % len(_COLORS)])
        text = f"{value:.3f} ms" + (f"  ({row['speedup']:.2f}x)" if row.get("speedup") else "")
        draw.text((label_width + length + 8, y + 6), text, fill="black", font=font)
    fmt = plot_format(path)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    try:
        image.convert("RGB").save(path, format=fmt, **options)
    except (OSError, ValueError) as error:
        raise CLIError(f"cannot write --plot {path!r}: {error}") from None
