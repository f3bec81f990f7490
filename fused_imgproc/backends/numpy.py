"""The numpy backend: executes a `BatchPlan` with the CPU resampler (or Pillow) and one table gather per channel.

Per image it makes at most these passes over pixel data. L and RGB images with one of Pillow's six resize filters
go through the compiled resampler (`backends.native`): only the rows and columns the crop keeps, its last pass
writing `out[c] = table[c][pixel]` straight into the image's slot of the preallocated batch output. Other images
(RGBA/LA, other PIL modes, the MKS filters), and every image when the extension is not built, take Pillow's resize
(reading a PIL input in place, or the caller's uint8 array through one `Image.fromarray` copy) and then a gather
per channel. Images run on a thread pool and one image's resize is split over it: the resampler, Pillow's resize and
numpy's take release the GIL, so a batch, and one large image, use every core.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image

from ..image_utils import PreparedImage
from ..plan import INTEGRAL, RAW, UNIT_FLOAT, BatchPlan, ImagePlan, PatchLayout
from ..plan import PIL as PIL_SOURCE
from ..resample import passes
from . import native

_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
WORKERS = max(1, os.cpu_count() or 1)  # threads of the shared pool
_POOL_PREFIX = "fused_imgproc-pool"


def _pool() -> ThreadPoolExecutor:
    """The thread pool every backend shares, created on first use (once, whatever the threads calling)."""
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix=_POOL_PREFIX)
    return _POOL


def _forget_pool_after_fork() -> None:
    """In a forked child (multiprocessing, `datasets.map(num_proc=...)`, a pre-forking server) the parent's pool
    threads do not exist: work queued to the inherited executor would never run. The child makes its own pool."""
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


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


def resized_pixels(image: PreparedImage, item: ImagePlan, parts: int = 1) -> np.ndarray:
    """The image after the plan's resize, as (H, W, C): uint8 for every source but RAW. `parts > 1` spreads a large
    resize over that many threads of the pool (the CPU resampler's bands, or `_banded_resize` through Pillow); only a
    caller that is not a pool thread may ask."""
    geometry = item.geometry
    if native.usable(item, image):  # (a RAW image is never resized)
        pixels = _native_source(image, item)
        oh, ow = geometry.resize_hw
        out = np.empty((oh, ow, pixels.shape[2]), dtype=np.uint8)
        native.resize(pixels, (oh, ow), geometry.resample, ((0, oh), (0, ow)), out, None, parts, _pool())
        return out
    pixels = source_pixels(image, item)
    if isinstance(pixels, PIL.Image.Image):
        if geometry.resample is not None:
            pixels = _resize(pixels, geometry.resize_hw, geometry.resample, parts)
    elif item.source == RAW or geometry.resample is None:
        return pixels
    else:
        pil = PIL.Image.fromarray(np.ascontiguousarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels))
        pixels = _resize(pil, geometry.resize_hw, geometry.resample, parts)
    pixels = np.asarray(pixels) if isinstance(pixels, PIL.Image.Image) else pixels
    return pixels[..., None] if pixels.ndim == 2 else pixels


def _native_source(image: PreparedImage, item: ImagePlan) -> np.ndarray:
    """The uint8 (H, W, C) pixels the CPU resampler reads, packed (`native.packed`): a PIL image's, read out of
    Pillow, or the source array."""
    pixels = source_pixels(image, item)
    return native.packed(np.asarray(pixels) if isinstance(pixels, PIL.Image.Image) else pixels)


# Pillow's convolution filters: a resize is a horizontal pass (each row alone) and a vertical pass (each column
# alone), through a uint8 intermediate, with coefficients that depend only on the sizes.
_SEPARABLE = frozenset({PIL.Image.BOX, PIL.Image.BILINEAR, PIL.Image.HAMMING, PIL.Image.BICUBIC, PIL.Image.LANCZOS})
BANDED_RESIZE_WORK = 1 << 20  # pixels written by both passes, above which one image's resize is split


def _resize(pil: PIL.Image.Image, resize_hw, resample: int, parts: int) -> PIL.Image.Image | np.ndarray:
    """`pil.resize` to `resize_hw`: a PIL image, or its pixels (`np.asarray` of it) when the resize was large enough
    to run on `parts` threads (`_banded_resize`)."""
    oh, ow = resize_hw
    if parts > 1 and resample in _SEPARABLE and pil.mode in ("L", "RGB") and (pil.height + oh) * ow >= BANDED_RESIZE_WORK:
        return _banded_resize(pil, resize_hw, resample, parts)
    return pil.resize((ow, oh), resample=resample)


def _banded_resize(pil: PIL.Image.Image, resize_hw, resample: int, parts: int) -> np.ndarray:
    """Pillow's resize of an L or RGB image on `parts` threads, bit-identical to `pil.resize` (its pixels, as
    `np.asarray` gives them): Pillow's own one-axis resizes, in Pillow's pass order (`resample.passes`), of bands of
    the image (rows for a horizontal pass, columns for a vertical one), pasted together into the same uint8
    intermediate; the last pass's bands are read into the result by their own threads. Each pass of Pillow's
    two-pass resize computes every row (horizontal) or column (vertical) alone, with coefficients that depend only
    on the two sizes, so a band gives exactly its rows or columns of the whole. (RGBA and LA are resized
    premultiplied and NEAREST is not two passes: those never come here.)"""
    image, axes = pil, passes((pil.height, pil.width), tuple(resize_hw))
    for k, axis in enumerate(axes):
        image = _one_axis_banded(image, resize_hw[axis], axis, resample, parts, last=k + 1 == len(axes))
    return image


def _one_axis_banded(image: PIL.Image.Image, size: int, axis: int, resample: int, parts: int, last: bool):
    """`image` resized along `axis` (0: vertical, to `size` rows; 1: horizontal, to `size` columns) as `parts` bands
    of the other axis, on the pool: a PIL image, or when `last` its pixels (an (H, W) or (H, W, 3) uint8 array)."""
    w, h = (image.width, size) if axis == 0 else (size, image.height)
    extent = h if axis == 1 else w
    edges = [extent * k // parts for k in range(parts + 1)]
    spans = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    pixels = np.empty((h, w, 3) if image.mode == "RGB" else (h, w), dtype=np.uint8) if last else None

    def band(span):
        a, b = span
        if axis == 1:  # a band of rows
            piece = image.crop((0, a, image.width, b)).resize((w, b - a), resample=resample)
        else:  # a band of columns
            piece = image.crop((a, 0, b, image.height)).resize((b - a, h), resample=resample)
        if pixels is None:
            return piece
        if axis == 1:
            pixels[a:b] = np.asarray(piece)
        else:
            pixels[:, a:b] = np.asarray(piece)
        return None

    futures = [_pool().submit(band, span) for span in spans[1:]]
    pieces = [band(spans[0])] + [future.result() for future in futures]
    if pixels is not None:
        return pixels
    out = PIL.Image.new(image.mode, (w, h))
    for (a, _), piece in zip(spans, pieces):
        out.paste(piece, (0, a) if axis == 1 else (a, 0))
    return out


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


def _write_image(plan: BatchPlan, item: ImagePlan, image: PreparedImage, out: np.ndarray, out_dtype,
                 parts: int = 1) -> None:
    """Writes one image into `out`, its slot of the result in the plan's layout. `parts > 1`: the caller is not a pool
    thread and may spread this image's work over that many threads."""
    if not isinstance(plan.layout, PatchLayout) and native.usable(item, image):
        _write_resized_window(plan, item, image, out, out_dtype, parts)
        return
    pixels = resized_pixels(image, item, parts)
    if isinstance(plan.layout, PatchLayout):
        _write_patches(plan, item, pixels, out, out_dtype, parts)
        return
    (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = item.geometry.source_window()
    window = pixels[y0:y1, x0:x1]
    channel = (lambda c: out[c]) if plan.layout.channels_first else (lambda c: out[..., c])
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
    table = _output_table(plan, item, out, out_dtype)
    for c in range(item.channels):
        target = channel(c)
        _fill_border(target, table[c, 0], oy0, oy1, ox0, ox1)
        if y1 > y0:
            # mode="wrap" skips the bounds-check buffering; uint8 indices are always in [0, 256).
            np.take(table[c], window[..., c], out=target[oy0:oy1, ox0:ox1], mode="wrap")


def _write_resized_window(plan: BatchPlan, item: ImagePlan, image: PreparedImage, out: np.ndarray, out_dtype,
                          parts: int) -> None:
    """`_write_image` through the CPU resampler: the crop window resized and mapped through the value table by its
    last pass, straight into `out`; the padding around it is the table's value of 0."""
    (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = item.geometry.source_window()
    table = _output_table(plan, item, out, out_dtype)
    planes = out if plan.layout.channels_first else out.transpose(2, 0, 1)
    for c in range(item.channels):
        _fill_border(planes[c], table[c, 0], oy0, oy1, ox0, ox1)
    if oy1 > oy0:
        native.resize(_native_source(image, item), item.geometry.resize_hw, item.geometry.resample, ((y0, y1), (x0, x1)),
                      planes[:, oy0:oy1, ox0:ox1], np.ascontiguousarray(table), parts, _pool())


def _output_table(plan: BatchPlan, item: ImagePlan, out: np.ndarray, out_dtype) -> np.ndarray:
    """The image's (C, 256) value table in the dtype of `out` (int16 bit patterns for bfloat16)."""
    table = _cast_table(plan.table(item), out_dtype)
    if table.dtype != out.dtype and out_dtype != "bfloat16":
        table = table.astype(out.dtype)  # the batch's promoted dtype, or the patch layout's float32 (exact widening)
    return table


def _write_patches(plan: BatchPlan, item: ImagePlan, pixels: np.ndarray, out: np.ndarray, out_dtype,
                   parts: int) -> None:
    """Writes one image as patch rows (`plan.PatchLayout`) into `out`, its (rows, C * T * P * P) slot.

    A uint8 image is gathered from the value table straight into the rows: for each band of `merge_size` patch rows
    its pixels are reordered as uint8 into patch order, turned into indices of the flat (C * 256) table (one per
    output value, the T temporal copies included) and gathered into the band's rows, which are contiguous: one
    write of every output value and no float copy. A RAW image's values are computed per channel and written into
    the rows through a strided view."""
    layout = plan.layout
    size, merge, temporal, channels = layout.patch_size, layout.merge_size, layout.temporal_patch_size, item.channels
    pixels = _padded(plan, item, pixels)
    gh, gw = layout.grid(item)
    if item.source == RAW:
        rows = out.reshape(gh // merge, gw // merge, merge, merge, channels, temporal, size, size)
        for c in range(channels):
            # transformers' rows are float32 whatever the values' dtype: another output dtype is that, rounded once
            values = plan.value_map.apply(pixels[..., c], c).astype(np.float32, copy=False)
            values = _to_bfloat16_bits(values) if out_dtype == "bfloat16" else values
            patches = values.reshape(gh // merge, merge, size, gw // merge, merge, size).transpose(0, 3, 1, 4, 2, 5)
            for t in range(temporal):
                rows[:, :, :, :, c, t] = patches
        return
    table = np.ascontiguousarray(_output_table(plan, item, out, out_dtype)).reshape(-1)
    band_rows = gw * merge  # patch rows of one band of merge_size * patch_size pixel rows
    offsets = (np.arange(channels, dtype=np.intp) * 256).reshape(1, channels, 1, 1)

    def bands(part: int) -> None:
        reordered = np.empty((gw // merge, merge, merge, channels, size, size), dtype=np.uint8)
        wide = np.empty((band_rows, channels, 1, size * size), dtype=np.intp)
        indices = np.empty((band_rows, channels, temporal, size * size), dtype=np.intp)
        for band in range(part, gh // merge, parts):
            y = band * merge * size
            np.copyto(reordered, pixels[y : y + merge * size].reshape(merge, size, gw // merge, merge, size, channels)
                      .transpose(2, 0, 3, 5, 1, 4))
            np.copyto(wide, reordered.reshape(wide.shape))  # one contiguous cast: intp + intp below runs unbuffered
            np.add(wide, offsets, out=indices)
            target = out[band * band_rows : (band + 1) * band_rows].reshape(indices.shape)
            np.take(table, indices, out=target, mode="wrap")  # indices < C * 256: no bounds check needed

    parts = max(1, min(parts, gh // merge))
    futures = [_pool().submit(bands, part) for part in range(1, parts)]
    bands(0)
    for future in futures:
        future.result()


def _padded(plan: BatchPlan, item: ImagePlan, pixels: np.ndarray) -> np.ndarray:
    """The image's (OH, OW, C) output pixels before the value map: the crop window, zero outside it (padding reads
    0 in the input domain), or the pixels themselves when the window is the whole image."""
    (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = item.geometry.source_window()
    oh, ow = item.geometry.out_hw
    if (y0, y1, x0, x1, oy0, oy1, ox0, ox1) == (0, oh, 0, ow, 0, oh, 0, ow) and pixels.shape[:2] == (oh, ow):
        return pixels
    full = np.zeros((oh, ow, pixels.shape[2]), dtype=pixels.dtype)
    full[oy0:oy1, ox0:ox1] = pixels[y0:y1, x0:x1]
    return full


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
    layout = plan.layout
    shapes = [layout.shape(item) for item in plan.images]
    if layout.concatenated:
        # One array whatever `stack` says: the images' outputs concatenated along their first axis (patch rows).
        starts = np.cumsum([0] + [shape[0] for shape in shapes])
        result = np.empty((int(starts[-1]),) + shapes[0][1:], dtype=output_dtype(plan, images, out_dtype))
        slots = [result[a:b] for a, b in zip(starts[:-1], starts[1:])]
    elif stack and len(set(shapes)) == 1:
        # One array: the promoted dtype of every image's result, as stacking transformers' outputs gives.
        result = np.empty((len(shapes),) + shapes[0], dtype=output_dtype(plan, images, out_dtype))
        slots = list(result)
    else:
        # A list: each image keeps its own result dtype (uint8 stays uint8 when no rescale or normalize runs).
        result = slots = [
            np.empty(shape, dtype=output_dtype(plan, [image], out_dtype, [item]))
            for shape, item, image in zip(shapes, plan.images, images, strict=True)
        ]

    def work(i: int, parts: int = 1) -> None:
        _write_image(plan, plan.images[i], images[i], slots[i], out_dtype, parts)

    if len(images) > 1 and any(item.geometry.resample is not None for item in plan.images):
        list(_pool().map(work, range(len(images))))
    elif len(images) == 1 and WORKERS > 1 and not _on_pool_thread():
        work(0, WORKERS)  # one image: its resize and patch gather spread over the pool
    else:
        for i in range(len(images)):
            work(i)
    return result


def _on_pool_thread() -> bool:
    """Whether this thread is one of the pool's (which must never wait on the pool: it could deadlock)."""
    return threading.current_thread().name.startswith(_POOL_PREFIX)
