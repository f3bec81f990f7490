"""The PNG chart of the GPU benchmark, drawn with Pillow (no matplotlib on the machines this runs on).

Groups of horizontal bars, one group per case, one bar per implementation, on a shared logarithmic time axis
(times span four decades between a CUDA graph and transformers' PIL processor). Each bar is labelled with its
median and, for peers, how many times slower than ours it is; implementations that did not run show why.
"""

from __future__ import annotations

import math
from pathlib import Path

from .peers import FUSED, FUSED_GRAPH

_OURS, _OTHERS, _CEILING = "#c44e52", "#4c72b0", "#8c8c8c"
_GRID, _TEXT, _MUTED = "#dddddd", "black", "#555555"


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def chart_cases(rows: list[dict]) -> list[str]:
    """The cases worth a chart: every end-to-end case (e2e, qwen); of the clip and crop cases the largest batch,
    NCHW; of the segmentation post-processing cases the largest batch (each logits dtype)."""
    chosen: list[str] = []
    for kind in ("e2e", "qwen", "clip", "seg", "crop"):
        kind_rows = [r for r in rows if r["kind"] == kind]
        if not kind_rows:
            continue
        biggest = max(r["batch"] for r in kind_rows)
        for row in kind_rows:
            keep = kind in ("e2e", "qwen") or (row["batch"] == biggest and row["format"] in ("NCHW", "labels"))
            if keep and row["case"] not in chosen:
                chosen.append(row["case"])
    return chosen


def draw(path: Path, rows: list[dict], title: str, notes: list[str]) -> None:
    """Draw the chart of `rows` (derived rows, see report.derive) into `path` as PNG."""
    from PIL import Image, ImageDraw

    font, small = _font(15), _font(13)
    cases = chart_cases(rows)
    groups = [(case, [r for r in rows if r["case"] == case]) for case in cases]
    timed = [r["median_ms"] for _, group in groups for r in group
             if r["status"] in ("ok", "fallback") and r["median_ms"] and r["median_ms"] > 0]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = round(max([measure.textlength(r["impl"], font=small) for _, g in groups for r in g] + [100])) + 30
    bar_room, value_room, line, bar, gap = 640, 260, 22, 18, 6
    width = max(label_width + bar_room + value_room,
                round(max(measure.textlength(text, font=font) for text in [title, *notes])) + 30)
    top = 12 + line * (1 + len(notes)) + 30
    height = top + sum(line + len(group) * (bar + gap) + 14 for _, group in groups) + 12
    image = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(image)
    for k, text in enumerate([title, *notes]):
        canvas.text((12, 12 + k * line), text, fill=_TEXT if k == 0 else _MUTED, font=font if k == 0 else small)
    if not timed:
        canvas.text((12, top), "no timings to draw", fill=_TEXT, font=font)
        image.save(path, format="PNG")
        return
    low = math.floor(math.log10(min(timed)))
    high = max(math.ceil(math.log10(max(timed))), low + 1)

    def x_of(ms: float) -> int:
        return label_width + round(bar_room * (math.log10(ms) - low) / (high - low))

    axis_y = top - 8
    for decade in range(low, high + 1):
        x = label_width + round(bar_room * (decade - low) / (high - low))
        canvas.line([(x, axis_y), (x, height - 12)], fill=_GRID)
        value = 10.0 ** decade
        canvas.text((x - 14, axis_y - 18), f"{value:g} ms", fill=_MUTED, font=small)
    y = top
    for case, group in groups:
        canvas.text((12, y), case, fill=_TEXT, font=font)
        y += line
        for row in group:
            canvas.text((20, y + 1), row["impl"], fill=_TEXT, font=small)
            median = row.get("median_ms")
            if row["status"] in ("ok", "fallback") and median and median > 0:
                color = _OURS if row["impl"] in (FUSED, FUSED_GRAPH) else _CEILING if row["role"] == "ceiling" else \
                    _OTHERS
                right = max(x_of(median), label_width + 2)
                canvas.rectangle([label_width, y, right, y + bar], fill=color)
                text = f"{median:.4g} ms"
                ratio = row.get("ratio_to_fused")
                if row["role"] == "peer" and ratio and not math.isnan(ratio):
                    text += f"  ({ratio:.2f}x our time)"
                if row["role"] == "ceiling" or row["impl"] == FUSED:
                    pct = row.get("pct_of_copy")
                    if pct and not math.isnan(pct) and row["role"] != "ceiling":
                        text += f"  ({pct:.0f}% of copy)"
                if row["status"] == "fallback":
                    text += "  (capture failed: eager)"
                canvas.text((right + 6, y + 1), text, fill=_TEXT, font=small)
            else:
                canvas.text((label_width + 4, y + 1), f"{row['status']}", fill=_MUTED, font=small)
            y += bar + gap
        y += 14
    image.save(path, format="PNG")
