"""The bytes-moved model behind the GB/s figures.

A call moves, at the least, every input byte it needs once and every output byte once:

- **crop/normalize** (no resize): of each image, the window its center crop reads (the crop clipped to the
  image; a crop larger than the image pads and reads the whole image), times channels times the input item size;
- **resize + crop**: of each image, the source rectangle that Pillow's resampling reads to produce the pixels that
  survive the crop: per axis, the taps of the first to the last kept output pixel (`source_span`), so a crop that
  drops the sides of a wide image does not count its unread columns;
- **output**: every output element once, times the output item size (padding included).

Intermediate buffers an implementation keeps (the resize's uint8 passes, a gather of separately allocated images
into one buffer, torch's temporaries) are not counted: the figure is the effective bandwidth of the work, the same
for every implementation of a case, and the device-to-device copy measured next to it moves the same number of
bytes (half read, half written), so "% of copy" compares like with like.
"""

from __future__ import annotations

import math

import numpy as np

# Pillow's filter supports (ImagingResample: box 0.5, bilinear 1, hamming 1, bicubic 2, lanczos 3).
SUPPORT = {"box": 0.5, "bilinear": 1.0, "hamming": 1.0, "bicubic": 2.0, "lanczos": 3.0}


def shortest_edge_size(height: int, width: int, edge: int) -> tuple[int, int]:
    """transformers' `{"shortest_edge": edge}` resize size: the shorter side becomes `edge`, the longer
    `int(edge * long / short)`."""
    if width <= height:
        return int(edge * height / width), edge
    return edge, int(edge * width / height)


def center_crop_window(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """`(top, left, rows, cols)` of an image read by transformers' center crop to `crop_h x crop_w`: the crop
    clipped to the image (a larger crop pads around the whole image)."""
    rows, cols = min(crop_h, height), min(crop_w, width)
    return max((height - crop_h) // 2, 0), max((width - crop_w) // 2, 0), rows, cols


def source_span(in_size: int, out_size: int, first: int, stop: int, filter_name: str = "bicubic") -> tuple[int, int]:
    """Input indices `[lo, hi)` that Pillow's resampling of one axis from `in_size` to `out_size` reads for the
    output pixels `[first, stop)` (its `precompute_coeffs`: center `(j + 0.5) * scale`, support scaled by the
    downscale factor, truncated toward zero and clipped to the image)."""
    if not 0 <= first < stop <= out_size:
        raise ValueError(f"output range [{first}, {stop}) is not inside [0, {out_size})")
    if in_size == out_size:
        return first, stop  # no pass on this axis
    scale = float(np.float32(in_size)) / out_size
    support = SUPPORT[filter_name] * max(scale, 1.0)
    lo = max(int((first + 0.5) * scale - support + 0.5), 0)
    hi = min(int((stop - 1 + 0.5) * scale + support + 0.5), in_size)
    return lo, hi


def crop_bytes(sizes: list[tuple[int, int]], crop: int, channels: int, out_itemsize: int) -> int:
    """Bytes moved by center-cropping uint8 images of `sizes` (height, width) to `crop x crop`, with rescale,
    normalize and layout, into `out_itemsize`-byte elements."""
    read = sum(rows * cols for _, _, rows, cols in (center_crop_window(h, w, crop, crop) for h, w in sizes))
    return read * channels + len(sizes) * crop * crop * channels * out_itemsize


def resize_crop_bytes(sizes: list[tuple[int, int]], edge: int, crop: int, channels: int, out_itemsize: int,
                      filter_name: str = "bicubic") -> int:
    """Bytes moved by resizing uint8 images of `sizes` to a shortest edge of `edge`, center-cropping to
    `crop x crop` and normalizing into `out_itemsize`-byte elements (see the module docstring)."""
    total = 0
    for height, width in sizes:
        out_h, out_w = shortest_edge_size(height, width, edge)
        top, left, rows, cols = center_crop_window(out_h, out_w, crop, crop)
        y0, y1 = source_span(height, out_h, top, top + rows, filter_name)
        x0, x1 = source_span(width, out_w, left, left + cols, filter_name)
        total += (y1 - y0) * (x1 - x0) * channels + crop * crop * channels * out_itemsize
    return total


def gigabytes_per_second(nbytes: int, milliseconds: float) -> float:
    """Decimal GB/s; NaN for a missing or non-positive time."""
    if not milliseconds or milliseconds <= 0 or math.isnan(milliseconds):
        return math.nan
    return nbytes / (milliseconds * 1e-3) / 1e9
