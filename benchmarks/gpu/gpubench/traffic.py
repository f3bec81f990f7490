"""The bytes-moved model behind the GB/s figures.

A call moves, at the least, every input byte it needs once and every output byte once:

- **crop/normalize** (no resize): of each image, the window its center crop reads (the crop clipped to the
  image; a crop larger than the image pads and reads the whole image), times channels times the input item size;
- **resize + crop**: of each image, the source rectangle that Pillow's resampling reads to produce the pixels that
  survive the crop: per axis, the taps of the first to the last kept output pixel (`ImageGeometry.source_rect`,
  the plan's own geometry), so a crop that drops the sides of a wide image does not count its unread columns;
- **Qwen2-VL patch rows**: of each image, the source rectangle its `smart_resize` reads (no crop: the whole image),
  and every patch-row element once (each pixel `temporal_patch_size` times, as the rows hold it);
- **output**: every output element once, times the output item size (padding included);
- **segmentation post-processing** (logits to labels): every logit once (the low-resolution `(B, C, h, w)`
  logits, the logits' item size) and every int64 label once; never the upsampled logits, which a fused
  implementation does not write and transformers' does (its extra traffic is its cost, not the work's).

Intermediate buffers an implementation keeps (the resize's uint8 passes, a gather of separately allocated images
into one buffer, torch's temporaries) are not counted: the figure is the effective bandwidth of the work, the same
for every implementation of a case, and the device-to-device copy measured next to it moves the same number of
bytes (half read, half written), so "% of copy" compares like with like.
"""

from __future__ import annotations

import math

BICUBIC = 3  # Pillow's filter number (fused_imgproc.resample.BICUBIC)


def crop_bytes(sizes: list[tuple[int, int]], crop: int, channels: int, out_itemsize: int) -> int:
    """Bytes moved by center-cropping uint8 images of `sizes` (height, width) to `crop x crop`, with rescale,
    normalize and layout, into `out_itemsize`-byte elements: each image's crop window (the plan's
    `ImageGeometry.source_window`) read once, every output element written once."""
    from fused_imgproc.geometry import ImageGeometry  # imported when used: check.py's preflight runs without it

    total = 0
    for height, width in sizes:
        (y0, y1), (x0, x1), _, _ = ImageGeometry.identity((height, width)).center_cropped((crop, crop)).source_window()
        total += (y1 - y0) * (x1 - x0) * channels + crop * crop * channels * out_itemsize
    return total


def resize_crop_bytes(sizes: list[tuple[int, int]], edge: int, crop: int, channels: int, out_itemsize: int,
                      resample: int = BICUBIC) -> int:
    """Bytes moved by resizing uint8 images of `sizes` to a shortest edge of `edge`, center-cropping to
    `crop x crop` and normalizing into `out_itemsize`-byte elements: of each image the source rectangle the
    resize's taps read for the kept pixels (the plan's `ImageGeometry.source_rect`, what the GPU resize uploads),
    every output element written once."""
    from fused_imgproc.geometry import ImageGeometry, default_resize_size

    total = 0
    for height, width in sizes:
        geometry = ImageGeometry.identity((height, width))
        geometry = geometry.resized(default_resize_size((height, width), {"shortest_edge": edge}), resample)
        (y0, y1), (x0, x1) = geometry.center_cropped((crop, crop)).source_rect()
        total += (y1 - y0) * (x1 - x0) * channels + crop * crop * channels * out_itemsize
    return total


def patch_rows_bytes(sizes: list[tuple[int, int]], config: dict, channels: int, out_itemsize: int,
                     resample: int = BICUBIC) -> int:
    """Bytes moved by Qwen2-VL's processor (`config`: min_pixels, max_pixels, patch_size, temporal_patch_size,
    merge_size) on uint8 images of `sizes`: of each image the source rectangle of its resize to `smart_resize`'s
    size (the plan's `ImageGeometry.source_rect`), and its patch rows (`grid_h * grid_w` rows of
    `channels * temporal_patch_size * patch_size**2` elements of `out_itemsize` bytes) written once."""
    from fused_imgproc.geometry import ImageGeometry, smart_resize

    patch, temporal = config["patch_size"], config["temporal_patch_size"]
    total = 0
    for height, width in sizes:
        out_h, out_w = smart_resize(height, width, patch * config["merge_size"], config["min_pixels"],
                                    config["max_pixels"])
        (y0, y1), (x0, x1) = ImageGeometry.identity((height, width)).resized((out_h, out_w), resample).source_rect()
        total += (y1 - y0) * (x1 - x0) * channels + out_h * out_w * channels * temporal * out_itemsize
    return total


def segmentation_bytes(batch: int, classes: int, logits_size: tuple[int, int], target: tuple[int, int],
                       logits_itemsize: int) -> int:
    """Bytes moved by post-processing `(batch, classes, h, w)` logits of `logits_itemsize`-byte elements into int64
    label maps of `target` (height, width): every logit read once, every label written once."""
    (h, w), (out_h, out_w) = logits_size, target
    return batch * (classes * h * w * logits_itemsize + out_h * out_w * 8)


def gigabytes_per_second(nbytes: int, milliseconds: float) -> float:
    """Decimal GB/s; NaN for a missing or non-positive time."""
    if not milliseconds or milliseconds <= 0 or math.isnan(milliseconds):
        return math.nan
    return nbytes / (milliseconds * 1e-3) / 1e9
