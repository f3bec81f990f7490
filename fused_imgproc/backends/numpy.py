"""The numpy backend: executes a `BatchPlan` with Pillow (resize) and one table gather per channel.

Per image it makes at most these passes over pixel data: Pillow's resize (reading a PIL input in place, or the
caller's uint8 array through one `Image.fromarray` copy), then a gather `out[c] = table[c][pixels[..., c]]`
straight into the image's slot of the preallocated batch output. Images run on a thread pool: Pillow's resize
and numpy's take release the GIL, so a batch uses every core.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image

from ..image_utils import PreparedImage
from ..plan import INTEGRAL, RAW, UNIT_FLOAT, BatchPlan, ImagePlan
from ..plan import PIL as PIL_SOURCE

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
WORKERS = max(1, os.cpu_count() or 1)  # threads of the shared pool


def _pool() -> ThreadPoolExecutor:
    """The thread pool every backend shares, created on first use (once, whatever the threads calling)."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="fused_imgproc")
    return _POOL


def source_pixels(image: PreparedImage, item: ImagePlan):
    """The image as it enters the resize: the PIL image itself, or an (H, W, C) array (uint8 for every source
    but RAW; transformers quantizes float/integral images to uint8 whenever it resizes, even to the same size)."""
    if item.source == PIL_SOURCE:
        return image.pil
    array = image.array
    if item.source == UNIT_FLOAT:
        array = (array.astype(np.float64) * 255).astype(np.float32).astype(np.uint8)
    elif item.source == INTEGRAL:
        array = array.astype(np.uint8)
    return array


def resized_pixels(image: PreparedImage, item: ImagePlan) -> np.ndarray:
    """The image after the plan's resize, as (H, W, C): uint8 for every source but RAW."""
    geometry = item.geometry
    pixels = source_pixels(image, item)
    if isinstance(pixels, PIL.Image.Image):
        if geometry.resample is not None:
            pixels = pixels.resize(geometry.resize_hw[::-1], resample=geometry.resample)
        pixels = np.asarray(pixels)
        return pixels[..., None] if pixels.ndim == 2 else pixels
    if item.source == RAW or geometry.resample is None:
        return pixels
    pil = PIL.Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
    pixels = np.asarray(pil.resize(geometry.resize_hw[::-1], resample=geometry.resample))
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _cast_table(table: np.ndarray, out_dtype) -> np.ndarray:
    if out_dtype is None or out_dtype == table.dtype:
        return table
    if out_dtype == "bfloat16":
        return _to_bfloat16_bits(table)
    return table.astype(out_dtype)


def _to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even, as torch does), returned as the int16 bit pattern."""
    import torch

    return torch.from_numpy(np.array(values, dtype=np.float32)).to(torch.bfloat16).view(torch.int16).numpy()


def _write_image(
    plan: BatchPlan, item: ImagePlan, image: PreparedImage, out: np.ndarray, channels_first: bool, out_dtype
) -> None:
    """Writes one image into `out`, a (C, H, W) array when `channels_first`, else (H, W, C)."""
    pixels = resized_pixels(image, item)
    (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = item.geometry.source_window()
    window = pixels[y0:y1, x0:x1]
    channel = (lambda c: out[c]) if channels_first else (lambda c: out[..., c])
    if item.source == RAW:
        for c in range(item.channels):
            target = channel(c)
            pad = plan.value_map.apply(np.zeros((), dtype=window.dtype), c)
            values = plan.value_map.apply(window[..., c], c)
            if out_dtype == "bfloat16":
                pad, values = _to_bfloat16_bits(np.asarray(pad)), _to_bfloat16_bits(values)
            _fill_border(target, pad, oy0, oy1, ox0, ox1)
            target[oy0:oy1, ox0:ox1] = values
        return
    table = _cast_table(plan.table(item), out_dtype)
    if table.dtype != out.dtype and out_dtype != "bfloat16":
        table = table.astype(out.dtype)  # a batch stacked in the promoted dtype of mixed sources (exact widening)
    for c in range(item.channels):
        target = channel(c)
        _fill_border(target, table[c, 0], oy0, oy1, ox0, ox1)
        if y1 > y0:
            # mode="wrap" skips the bounds-check buffering; uint8 indices are always in [0, 256).
            np.take(table[c], window[..., c], out=target[oy0:oy1, ox0:ox1], mode="wrap")


def _fill_border(target: np.ndarray, value, oy0: int, oy1: int, ox0: int, ox1: int) -> None:
    """Fills the padding around the data rectangle [oy0, oy1) x [ox0, ox1) of a 2-D output plane."""
    if oy1 <= oy0:
        target[...] = value
        return
    target[:oy0] = value
    target[oy1:] = value
    target[oy0:oy1, :ox0] = value
    target[oy0:oy1, ox1:] = value


def output_dtype(plan: BatchPlan, images: list[PreparedImage], out_dtype, items=None) -> np.dtype:
    """The dtype of the result of `images` (`items`: their plan entries, all of `plan.images` by default)."""
    if out_dtype == "bfloat16":
        return np.dtype(np.int16)
    if out_dtype is not None:
        return np.dtype(out_dtype)
    items = plan.images if items is None else items
    return np.result_type(*(plan.output_dtype(item, image.dtype) for item, image in zip(items, images, strict=True)))


def execute(
    plan: BatchPlan, images: list[PreparedImage], out_dtype=None, stack: bool = True
) -> np.ndarray | list[np.ndarray]:
    """Runs `plan` on `images`.

    Args:
        plan (`BatchPlan`): geometry, value map and output layout of every image.
        images (`list[PreparedImage]`): the inputs, one per `plan.images` entry.
        out_dtype (`np.dtype` or `"bfloat16"`, *optional*): output dtype; the float32 table is cast once. For
            `"bfloat16"` the outputs hold the int16 bit patterns (view them as bfloat16).
        stack (`bool`, *optional*, defaults to `True`): return one (N, ...) array when every output has the same
            shape; otherwise (or when False) a list of arrays.
    """
    channels_first = plan.layout.channels_first
    shapes = [plan.layout.shape(item) for item in plan.images]
    if stack and len(set(shapes)) == 1:
        # One array: the promoted dtype of every image's result, as stacking transformers' outputs gives.
        result = np.empty((len(shapes),) + shapes[0], dtype=output_dtype(plan, images, out_dtype))
        slots = list(result)
    else:
        # A list: each image keeps its own result dtype (uint8 stays uint8 when no rescale or normalize runs).
        result = slots = [
            np.empty(shape, dtype=output_dtype(plan, [image], out_dtype, [item]))
            for shape, item, image in zip(shapes, plan.images, images, strict=True)
        ]

    def work(i: int) -> None:
        _write_image(plan, plan.images[i], images[i], slots[i], channels_first, out_dtype)

    if len(images) > 1 and any(item.geometry.resample is not None for item in plan.images):
        list(_pool().map(work, range(len(images))))
    else:
        for i in range(len(images)):
            work(i)
    return result
