"""The per-batch plan: geometry of every image and the rescale/normalize value map.

The plan is the single source of truth shared by the backends. For each image it records the resize target
and a crop window on the resized image (with the rows/columns outside the valid range reading as zero padding);
for the whole batch it records how pixel values become output values. Backends execute it and decide nothing.

Geometry (`ImageGeometry`, the resize-size rules) lives in `geometry.py`; this module adds the values and the batch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from .geometry import ImageGeometry
from .image_utils import as_float, rescale_for_pil_conversion

# --- values ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueMap:
    """rescale then normalize, with the reference's exact arithmetic (docs/BEHAVIOUR.md section 5).

    `apply(x, c)` maps values of channel `c` exactly as transformers' `rescale` then `normalize` do: the rescale is
    `float32(float64(x) * scale)`, the normalize is `(x - mean_c) / std_c` in the dtype of `x` (float32 after a
    rescale) with mean and std cast to that dtype. Elementwise IEEE arithmetic is the same on a 256-entry table
    as on an image, which is why a table gather is bit-exact.
    """

    do_rescale: bool
    rescale_factor: float
    do_normalize: bool
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None

    @property
    def is_identity(self) -> bool:
        return not (self.do_rescale or self.do_normalize)

    def apply(self, x: np.ndarray, channel: int) -> np.ndarray:
        if self.do_rescale:
            x = (x.astype(np.float64) * self.rescale_factor).astype(np.float32)
        if self.do_normalize:
            if not np.issubdtype(x.dtype, np.floating):
                x = x.astype(np.float32)
            mean = np.array(self.mean[channel], dtype=x.dtype)
            std = np.array(self.std[channel], dtype=x.dtype)
            x = (x - mean) / std
        return x

    def table(self, channels: int, domain: np.ndarray) -> np.ndarray:
        """`(channels, 256)` table: entry `[c, k]` is `apply(domain[k], c)`."""
        return np.stack([self.apply(domain, c) for c in range(channels)])


UINT8_DOMAIN = np.arange(256, dtype=np.uint8)
# What transformers' resize returns for a float image that it truncated to uint8: rescale(k, 1/255) in float32.
FLOAT_RESIZED_DOMAIN = (UINT8_DOMAIN.astype(np.float64) * (1 / 255)).astype(np.float32)


def make_value_map(do_rescale, rescale_factor, do_normalize, image_mean, image_std, channels: int) -> ValueMap:
    """Validates and broadcasts rescale/normalize parameters for images with `channels` channels.

    The values are used in float32 (section 5 of docs/BEHAVIOUR.md), so a parameter that is not finite there is a
    `ValueError`, like a zero std: `image_std=1e-50` (0 in float32), `image_mean=1e39` or `rescale_factor=1e300`
    (inf in float32) would make every output inf or NaN.
    """
    mean = std = None
    factor = 1.0
    if do_rescale:
        if rescale_factor is None or not isinstance(rescale_factor, (int, float, np.number)) or isinstance(
            rescale_factor, bool
        ):
            raise TypeError(f"rescale_factor must be a number, got {rescale_factor!r}")
        factor = as_float(rescale_factor, "rescale_factor")
        if not _finite_in_float32(factor):
            raise ValueError(f"rescale_factor must be finite in float32, got {rescale_factor!r}")
    if do_normalize:
        mean, std = (_per_channel(v, name, channels) for v, name in ((image_mean, "image_mean"), (image_std, "image_std")))
        if any(not _finite_in_float32(s) or _zero_in_float32(s) for s in std):
            raise ValueError(f"image_std must be finite and non-zero in float32, got {list(std)}")
        if any(not _finite_in_float32(m) for m in mean):
            raise ValueError(f"image_mean must be finite in float32, got {list(mean)}")
    return ValueMap(bool(do_rescale), factor, bool(do_normalize), mean, std)


# float64 values at or above this magnitude round to inf in float32 (halfway between FLT_MAX and 2**128); at or
# below _F32_ZERO they round to 0 (half the smallest subnormal; ties go to the even 0). Plain comparisons: numpy's
# errstate would cost more than the rest of a call's parameter checks.
_F32_OVERFLOW = 2.0**128 - 2.0**103
_F32_ZERO = 2.0**-150


def _finite_in_float32(value: float) -> bool:
    return abs(value) < _F32_OVERFLOW  # False for NaN and inf too


def _zero_in_float32(value: float) -> bool:
    return abs(value) <= _F32_ZERO


def _per_channel(value, name: str, channels: int) -> tuple[float, ...]:
    if value is None:
        raise ValueError("`image_mean` and `image_std` must both be specified if `do_normalize` is `True`.")
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (as_float(value, name),) * channels
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__"):
        raise TypeError(f"{name} must be a number or a sequence of numbers, got {value!r}")
    values = tuple(value)
    if not all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"{name} must contain only numbers, got {value!r}")
    if len(values) != channels:
        raise ValueError(
            f"{name} has {len(values)} values but the images have {channels} channels: it must have {channels} "
            "elements"
        )
    return tuple(as_float(v, name) for v in values)


# --- the batch plan ---------------------------------------------------------------------------------------------

# How an image's pixels enter the value map (decided once per image, executed by every backend):
PIL = "pil"  # a PIL image, resized by Pillow as it is; values are uint8
UINT8 = "uint8"  # a uint8 array; values are uint8 (resized through Pillow when the geometry says so)
INTEGRAL = "integral"  # integral values in [0, 255] of another dtype: cast to uint8 for the resize (transformers)
UNIT_FLOAT = "unit_float"  # floats in [0, 1]: x * 255 truncated to uint8 for the resize, k / 255 after it
RAW = "raw"  # not resized and not uint8: the value map runs elementwise on the original values


@dataclass(frozen=True)
class ImagePlan:
    geometry: ImageGeometry
    source: str
    channels: int

    @property
    def domain(self) -> np.ndarray | None:
        """Values that output indices 0..255 stand for, or None when the source is gathered elementwise (RAW)."""
        if self.source == RAW:
            return None
        return FLOAT_RESIZED_DOMAIN if self.source == UNIT_FLOAT else UINT8_DOMAIN


@dataclass(frozen=True)
class ImageLayout:
    """The output layout of a batch of images: each image as (C, H, W) when `channels_first`, else (H, W, C).
    Part of the plan, so that no backend decides the layout on its own (docs/BEHAVIOUR.md section 8)."""

    channels_first: bool = True

    concatenated = False  # one output per image (stacked into one (N, ...) array when they share a shape)
    dtype = None  # the value map's dtype
    copies = 1  # outputs written per output pixel value

    def shape(self, item: ImagePlan) -> tuple[int, int, int]:
        """The output shape of one image."""
        h, w = item.geometry.out_hw
        return (item.channels, h, w) if self.channels_first else (h, w, item.channels)

    def validate(self, items) -> None:
        """Every geometry has an image layout."""


CHANNELS_FIRST = ImageLayout()  # transformers' default output layout


@dataclass(frozen=True)
class PatchLayout:
    """The output layout of vision-language models of the Qwen2-VL family (docs/BEHAVIOUR.md section 11): each
    (C, H, W) image becomes `grid_h * grid_w` rows of `C * temporal_patch_size * patch_size**2` values, and the
    images of a batch are concatenated along the rows.

    With `P = patch_size`, `m = merge_size`, `T = temporal_patch_size`, value `(c, y, x)` of an image goes to row
    `((by * (grid_w // m) + bx) * m + my) * m + mx` and to columns `((c * T + t) * P + py) * P + px` for every
    `t < T`, where `y = (by * m + my) * P + py` and `x = (bx * m + mx) * P + px`: transformers' reshape to
    (C, gh/m, m, P, gw/m, m, P), transpose to (gh/m, gw/m, m, m, C, P, P) and repeat over T.
    """

    patch_size: int
    merge_size: int
    temporal_patch_size: int

    concatenated = True  # the images' outputs are concatenated along the first axis, whatever `stack` asks
    channels_first = True
    dtype = np.dtype(np.float32)  # transformers' patchify casts to float32, whatever the values were

    @property
    def copies(self) -> int:
        """Outputs written per output pixel value: one per temporal patch."""
        return self.temporal_patch_size

    def grid(self, item: ImagePlan) -> tuple[int, int]:
        """`(grid_h, grid_w)`: patches along the height and the width of the image."""
        h, w = item.geometry.out_hw
        return h // self.patch_size, w // self.patch_size

    def shape(self, item: ImagePlan) -> tuple[int, int]:
        """The output shape of one image: (rows, row length)."""
        gh, gw = self.grid(item)
        return gh * gw, item.channels * self.temporal_patch_size * self.patch_size**2

    def validate(self, items) -> None:
        """`ValueError` unless every image's sides are multiples of `patch_size * merge_size` and every row has the
        same length (transformers fails reshaping or concatenating)."""
        block = self.patch_size * self.merge_size
        for index, item in enumerate(items):
            h, w = item.geometry.out_hw
            if h % block or w % block:
                raise ValueError(
                    f"Image {index} is {h}x{w} when it is cut into patches: both sides must be multiples of "
                    f"patch_size * merge_size = {block} (resize it, do_resize=True, or crop it first)"
                )
        if len({item.channels for item in items}) > 1:
            raise ValueError(
                f"The batch mixes images with {sorted({item.channels for item in items})} channels, so its patch rows "
                "would differ in length; set do_convert_rgb=True to make every image RGB"
            )


@dataclass(frozen=True)
class BatchPlan:
    images: tuple[ImagePlan, ...]
    value_map: ValueMap
    layout: ImageLayout | PatchLayout = CHANNELS_FIRST

    def table(self, image: ImagePlan) -> np.ndarray:
        """The `(channels, 256)` table for `image` (cached; identity maps return the domain itself)."""
        return _table(self.value_map, image.channels, image.source == UNIT_FLOAT)

    def output_dtype(self, image: ImagePlan, input_dtype: np.dtype) -> np.dtype:
        """The dtype of `image`'s output when the call asks for none (the dtype transformers' arithmetic ends in)."""
        if self.layout.dtype is not None:
            return self.layout.dtype
        if image.source != RAW:
            return self.table(image).dtype
        return self.value_map.apply(np.zeros(1, dtype=input_dtype), 0).dtype


@functools.lru_cache(maxsize=64)
def _table(value_map: ValueMap, channels: int, unit_float: bool) -> np.ndarray:
    table = value_map.table(channels, FLOAT_RESIZED_DOMAIN if unit_float else UINT8_DOMAIN)
    table.setflags(write=False)
    return table


def classify_source(image, resized: bool) -> str:
    """transformers' `_rescale_for_pil_conversion` (`image_utils.rescale_for_pil_conversion`), decided once per `PreparedImage`."""
    if image.pil is not None:
        return PIL
    if image.dtype == np.uint8:
        return UINT8
    if not resized:
        return RAW
    if image.array is None:
        raise AssertionError("a resized non-uint8 image must be a host array")
    return UNIT_FLOAT if rescale_for_pil_conversion(image.array) else INTEGRAL
