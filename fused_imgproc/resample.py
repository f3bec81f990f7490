"""Pillow's 8-bit resampling, as data: the per-axis coefficient tables and the pass order (docs/BEHAVIOUR.md section 7).

The GPU resize and the CPU resampler (`_native.c`) execute these tables; this module computes them exactly as
Pillow's `Resample.c` does (`precompute_coeffs` in float64, then `normalize_coeffs_8bpc` to 22-bit fixed point)
and also has a numpy evaluation of one pass (`resample_axis`), which the tests use to check the tables against `PIL.Image.resize`.

One pass along an axis, for output index `j` and every position `i` of the other axis:
    out[i, j] = clip((2**21 + sum_k coef[j, k] * in[i, first[j] + k]) >> 22, 0, 255)    (k < count[j])
NEAREST is the same formula with one tap of weight 2**22 at Pillow's nearest source index.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import PIL
import PIL.Image

PRECISION_BITS = 22
NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5


# The filters over float64 arrays, with Pillow's expressions in Pillow's evaluation order (numpy's elementwise float64
# arithmetic rounds exactly as C doubles do). sin and cos are the C library's (`math`), as in Pillow: numpy's own
# may differ from it in the last bit.
def _box(x: np.ndarray) -> np.ndarray:
    return np.where((x > -0.5) & (x <= 0.5), 1.0, 0.0)


def _bilinear(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


_F32_054 = float(np.float32(0.54))  # Pillow writes 0.54f and 0.46f: float constants promoted to double
_F32_046 = float(np.float32(0.46))
_sin = np.frompyfunc(math.sin, 1, 1)
_cos = np.frompyfunc(math.cos, 1, 1)


def _libm(function, x: np.ndarray) -> np.ndarray:
    return function(x).astype(np.float64) if x.size else x


def _hamming(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    inside = (x != 0.0) & (x < 1.0)
    t = x[inside] * math.pi
    values = np.where(x == 0.0, 1.0, 0.0)
    values[inside] = _libm(_sin, t) / t * (_F32_054 + _F32_046 * _libm(_cos, t))
    return values


def _bicubic(x: np.ndarray) -> np.ndarray:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _sinc(x: np.ndarray) -> np.ndarray:
    values = np.ones_like(x)
    nonzero = x != 0.0
    t = x[nonzero] * math.pi
    values[nonzero] = _libm(_sin, t) / t
    return values


def _lanczos(x: np.ndarray) -> np.ndarray:
    inside = (x >= -3.0) & (x < 3.0)
    values = np.zeros_like(x)
    values[inside] = _sinc(x[inside]) * _sinc(x[inside] / 3)
    return values


# filter -> (function over float64 arrays, support).
FILTERS = {BOX: (_box, 0.5), BILINEAR: (_bilinear, 1.0), HAMMING: (_hamming, 1.0), BICUBIC: (_bicubic, 2.0),
           LANCZOS: (_lanczos, 3.0)}
GPU_FILTERS = (NEAREST, *FILTERS)


@dataclass(frozen=True)
class AxisCoefficients:
    """One axis: output index `j` reads input `first[j] .. first[j] + count[j] - 1` with weights `coef[j, :count]`."""

    in_size: int
    out_size: int
    first: np.ndarray  # (out,) int32
    count: np.ndarray  # (out,) int32
    coef: np.ndarray  # (out, ksize) int32, zero past count

    @property
    def ksize(self) -> int:
        return self.coef.shape[1]

    def input_range(self, start: int, stop: int) -> tuple[int, int]:
        """The input indices read by outputs `[start, stop)`."""
        return int(self.first[start:stop].min()), int((self.first[start:stop] + self.count[start:stop]).max())


@functools.lru_cache(maxsize=1024)
def axis_coefficients(in_size: int, out_size: int, resample: int) -> AxisCoefficients:
    """Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` (or its nearest-neighbour index) for one axis."""
    if resample == NEAREST:
        first = _nearest_indices(in_size, out_size)
        ones = np.ones(out_size, np.int32)
        return _frozen(in_size, out_size, first, ones, np.full((out_size, 1), 1 << PRECISION_BITS, np.int32))
    fn, filter_support = FILTERS[resample]
    scale = float(np.float32(in_size)) / out_size  # (double)(in1 - in0) / outSize, box floats
    filterscale = max(scale, 1.0)
    support = filter_support * filterscale
    ksize = int(math.ceil(support)) * 2 + 1
    ss = 1.0 / filterscale
    # Every output at once, each step as Pillow computes it per output (C casts truncate toward zero).
    center = (np.arange(out_size, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size) - xmin
    taps = np.arange(ksize)
    live = taps[None, :] < xmax[:, None]
    weights = np.where(live, fn((taps[None, :] + xmin[:, None] - center[:, None] + 0.5) * ss), 0.0)
    # Summed left to right as Pillow's loop does: np.cumsum adds sequentially (np.sum would pair the terms), and the
    # zeros past each output's count leave its sum as it is.
    total = np.cumsum(weights, axis=1)[:, -1]
    nonzero = total != 0.0
    weights[nonzero] /= total[nonzero, None]
    scaled = weights * (1 << PRECISION_BITS)
    coef = np.trunc(np.where(weights < 0, -0.5 + scaled, 0.5 + scaled)).astype(np.int32)
    coef[~live] = 0
    return _frozen(in_size, out_size, xmin.astype(np.int32), xmax.astype(np.int32), coef)


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's nearest resize: source index `int(x)`, `x` from `0.5 * in / out` by repeated float64 addition
    (`np.cumsum` adds sequentially, as Pillow's loop does)."""
    step = in_size / out_size
    x = np.cumsum(np.concatenate([[0.5 * step], np.full(out_size - 1, step)]))
    return np.minimum(x.astype(np.int64), in_size - 1).astype(np.int32)


def _frozen(in_size, out_size, first, count, coef) -> AxisCoefficients:
    for array in (first, count, coef):
        array.setflags(write=False)
    return AxisCoefficients(in_size, out_size, first, count, coef)


def vertical_first(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> bool:
    """Pass order of the installed Pillow when both axes change (docs/BEHAVIOUR.md section 7; see
    `tests/test_resample.py`)."""
    (h_in, w_in), (h_out, w_out) = in_hw, out_hw
    if _PILLOW_MAJOR < 13:
        return False
    return h_out < h_in and 2 * (w_out - w_in) > (h_out - h_in)


_PILLOW_MAJOR = int(PIL.__version__.split(".")[0])


def passes(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> list[int]:
    """The axes (0 = rows/vertical, 1 = columns/horizontal) Pillow resamples, in its order; unchanged axes skip."""
    axes = [axis for axis in (1, 0) if in_hw[axis] != out_hw[axis]]
    if len(axes) == 2 and vertical_first(in_hw, out_hw):
        axes = [0, 1]
    return axes


def table_resize(item, image) -> bool:
    """Whether the plan's resize of `image` (its `ImagePlan` `item`, its `PreparedImage`) is exactly these tables'
    passes, which the GPU resize and the CPU resampler run: one of `GPU_FILTERS`, on an L or RGB image. Pillow
    resizes RGBA and LA with premultiplied alpha and has no tables for its MKS filters: those stay Pillow's."""
    resample = item.geometry.resample
    if resample is None or resample not in GPU_FILTERS or item.channels not in (1, 3):
        return False
    return image.pil is None or image.pil.mode in ("L", "RGB")


def resample_axis(image: np.ndarray, coefficients: AxisCoefficients, axis: int) -> np.ndarray:
    """One pass of Pillow's 8-bit resampling along `axis` of an (H, W, C) uint8 array, in numpy (int64 sums)."""
    moved = np.moveaxis(image, axis, 0).astype(np.int64)  # (in, other, C)
    taps = coefficients.first[:, None] + np.arange(coefficients.ksize)[None, :]
    valid = np.arange(coefficients.ksize)[None, :] < coefficients.count[:, None]
    gathered = moved[np.where(valid, taps, 0)]  # (out, ksize, other, C)
    weights = np.where(valid, coefficients.coef, 0).astype(np.int64)[:, :, None, None]
    acc = (1 << (PRECISION_BITS - 1)) + (gathered * weights).sum(axis=1)
    out = np.clip(acc >> PRECISION_BITS, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize_reference(image: np.ndarray, out_hw: tuple[int, int], resample: int) -> np.ndarray:
    """`PIL.Image.resize` of an (H, W, C) uint8 array (L or RGB), evaluated pass by pass with these tables."""
    in_hw = image.shape[:2]
    for axis in passes(in_hw, out_hw):
        image = resample_axis(image, axis_coefficients(image.shape[axis], out_hw[axis], resample), axis)
    return image
