"""The CPU resampler: Pillow's 8-bit resize, exact, compiled (`fused_imgproc/_native.c`), for the window a crop keeps.

The numpy backend resizes through this module whenever it can and through Pillow otherwise, with the same outputs
(docs/BEHAVIOUR.md section 7). It executes the coefficient tables of `fused_imgproc.resample` (the GPU resize's) in
Pillow's pass order, computing only the rows and columns the crop keeps (in the first pass, only what the second
reads), and writes the window straight through the value table into the output (rescale, normalize and layout in
the last pass) or as uint8 pixels. One image is split into bands over the shared thread pool: the compiled code
releases the GIL.

It is used for L and RGB images (uint8 arrays, or PIL images read out with `np.asarray`) and the six filters Pillow
resizes in two separable passes or by nearest neighbour. Pillow keeps RGBA/LA (premultiplied alpha), other PIL
modes and its MKS filters. `FUSED_IMGPROC_NATIVE=0` in the environment (read once, at the first resize) turns it
off; so does a build without a C compiler (the extension is optional).
"""

from __future__ import annotations

import functools
import itertools
import os
import threading

import numpy as np

from ..resample import axis_coefficients, passes, table_resize

SPLIT_WORK = 1 << 15  # pixels written by both passes above which one image is split over the pool's threads
CHUNKS_PER_PART = 3  # bands per thread of a split image


@functools.cache
def module():
    """The compiled extension, or None (not built, or `FUSED_IMGPROC_NATIVE=0`). Imported on first use."""
    if os.environ.get("FUSED_IMGPROC_NATIVE", "1") == "0":
        return None
    try:
        from .. import _native
    except ImportError:
        return None
    return _native


def describe() -> str:
    """How the numpy backend resizes here, for `fused-imgproc info` and the `preprocess` summary."""
    if module() is not None:
        return f"CPU resampler, {module().kernels()} kernels"
    if os.environ.get("FUSED_IMGPROC_NATIVE", "1") == "0":
        return "Pillow's resize: the CPU resampler is off, FUSED_IMGPROC_NATIVE=0"
    return "Pillow's resize: the CPU resampler was not built, no C compiler at install?"


def usable(item, image) -> bool:
    """Whether the image's resize runs here: the plan resizes it with the coefficient tables
    (`resample.table_resize`: L or RGB, one of the six filters) and the extension is built."""
    return table_resize(item, image) and module() is not None


def packed(pixels: np.ndarray) -> np.ndarray:
    """An (H, W, C) uint8 view the extension reads as it is (pixels packed, rows at any stride), else a copy."""
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    _, w, c = pixels.shape
    if pixels.strides[2] != 1 or pixels.strides[1] != c or pixels.strides[0] < w * c:
        pixels = np.ascontiguousarray(pixels)
    return pixels


def _arrays(in_size: int, out_size: int, resample: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The axis' (first, count, coef) tables (`resample.axis_coefficients`, cached there) as the extension takes them."""
    table = axis_coefficients(in_size, out_size, resample)
    return table.first, table.count, table.coef


def resize(pixels: np.ndarray, resize_hw, resample: int, window, dst: np.ndarray, table: np.ndarray | None,
           parts: int = 1, pool=None) -> None:
    """Writes rows `window[0]` x columns `window[1]` of `pixels` resized to `resize_hw` into `dst`.

    Args:
        pixels: the (H, W, C) uint8 image, pixels packed (`packed`).
        window: `((y0, y1), (x0, x1))`, a non-empty rectangle of the resized image.
        dst: without `table`, the (y1 - y0, x1 - x0, C) uint8 window; with it, the (C, y1 - y0, x1 - x0) output
            `dst[c] = table[c][pixel]`, any strides (a channels-last output passes a transposed view).
        table: the (C, 256) C-contiguous value table in the output's dtype (int16 bit patterns for bfloat16).
        parts, pool: spread a large window over up to `parts` threads: the caller and `parts - 1` tasks on `pool`
            (the caller must not be one of its threads) take its `CHUNKS_PER_PART * parts` bands in turn. Bands
            cut the first pass's output axis, so no value is computed twice.
    """
    native = module()
    (h, w), (oh, ow) = pixels.shape[:2], tuple(resize_hw)
    axes = passes((h, w), (oh, ow))
    htable = _arrays(w, ow, resample) if 1 in axes else None
    vtable = _arrays(h, oh, resample) if 0 in axes else None
    vertical_first = axes == [0, 1]
    (y0, y1), (x0, x1) = window
    columns = axes == [1, 0]  # horizontal first: bands of columns (each band's first pass is its own)
    start, stop = (x0, x1) if columns else (y0, y1)
    work = (h + y1 - y0) * (x1 - x0)  # at most, the pixels both passes write
    parts = max(1, min(parts, stop - start, work // SPLIT_WORK))

    def band(a: int, b: int) -> None:
        if columns:
            part = dst[:, a - x0 : b - x0] if table is None else dst[:, :, a - x0 : b - x0]
            native.resize(pixels, htable, vtable, vertical_first, y0, y1, a, b, part, table)
        else:
            part = dst[a - y0 : b - y0] if table is None else dst[:, a - y0 : b - y0]
            native.resize(pixels, htable, vtable, vertical_first, a, b, x0, x1, part, table)

    if parts == 1:
        band(start, stop)
        return
    # CHUNKS_PER_PART chunks per thread, taken in turn by whichever thread is free: a pool thread that wakes late
    # (tens to hundreds of microseconds on a busy machine) takes fewer, and the caller never waits for one that
    # has not started.
    chunks = min(stop - start, parts * CHUNKS_PER_PART)
    edges = [start + (stop - start) * k // chunks for k in range(chunks + 1)]
    spans = iter(list(itertools.pairwise(edges)))  # a list iterator's next() is atomic under the GIL
    lock, finished, left, errors = threading.Lock(), threading.Event(), [chunks], []

    def drain() -> None:
        for span in spans:
            try:
                band(*span)
            except BaseException as error:  # noqa: BLE001 (re-raised in the caller)
                errors.append(error)
            with lock:
                left[0] -= 1
                if left[0] == 0:
                    finished.set()

    for _ in range(parts - 1):
        pool.submit(drain)
    drain()
    finished.wait()
    if errors:
        raise errors[0]
