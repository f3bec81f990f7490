"""Pillow's 8-bit resampling, as data: the per-axis coefficient tables and the pass order (docs/BEHAVIOUR.md section 7).

The GPU resize executes these tables; this module computes them exactly as Pillow's `Resample.c` does
(`precompute_coeffs` in float64, then `normalize_coeffs_8bpc` to 22-bit fixed point) and also has a numpy
evaluation of one pass (`resample_axis`), which the tests use to check the tables against `PIL.Image.resize`.

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


def _box(x: float) -> float:
    return 1.0 if -0.5 < x <= 0.5 else 0.0


def _bilinear(x: float) -> float:
    x = abs(x)
    return 1.0 - x if x < 1.0 else 0.0


_F32_054 = float(np.float32(0.54))  # Pillow writes 0.54f and 0.46f: float constants promoted to double
_F32_046 = float(np.float32(0.46))


def _hamming(x: float) -> float:
    x = abs(x)
    if x == 0.0:
        return 1.0
    if x >= 1.0:
        return 0.0
    x = x * math.pi
    return math.sin(x) / x * (_F32_054 + _F32_046 * math.cos(x))


def _bicubic(x: float) -> float:
    a = -0.5
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * a
    return 0.0


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / 3) if -3.0 <= x < 3.0 else 0.0


# filter -> (function, support); math.sin/cos are the C library's, as in Pillow.
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
    first = np.empty(out_size, np.int32)
    count = np.empty(out_size, np.int32)
    coef = np.zeros((out_size, ksize), np.int32)
    for j in range(out_size):
        center = (j + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)  # C casts truncate toward zero
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = [fn((x + xmin - center + 0.5) * ss) for x in range(xmax)]
        total = 0.0
        for w in weights:
            total += w
        for x, w in enumerate(weights):
            w = w / total if total != 0.0 else w
            coef[j, x] = int(-0.5 + w * (1 << PRECISION_BITS)) if w < 0 else int(0.5 + w * (1 << PRECISION_BITS))
        first[j], count[j] = xmin, xmax
    return _frozen(in_size, out_size, first, count, coef)


def _nearest_indices(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's nearest resize: source index `int(x)`, `x` from `0.5 * in / out` by repeated float64 addition."""
    step = in_size / out_size
    x = 0.5 * step
    indices = np.empty(out_size, np.int32)
    for j in range(out_size):
        indices[j] = min(int(x), in_size - 1)
        x += step
    return indices


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
