"""The per-batch plan: geometry of every image and the rescale/normalize value map.

The plan is the single source of truth shared by the backends. For each image it records the resize target
and a crop window on the resized image (with the rows/columns outside the valid range reading as zero padding);
for the whole batch it records how pixel values become output values. Backends execute it and decide nothing.

Geometry conventions (all integers, in resized-image coordinates):
    output pixel (i, j) reads resized pixel (top + i, left + j) when ``valid_y[0] <= top + i < valid_y[1]`` and
    ``valid_x[0] <= left + j < valid_x[1]``; otherwise it is padding, which is 0 in the input domain.
A center crop to (ch, cw) of an (h, w) image is ``top = (h - ch) // 2`` (floor, negative when padding), which is
exactly transformers 5.x: the canvas is padded by ``ceil((ch - h) / 2)`` on top, so the extra row goes on top.
Two successive crops compose by adding origins and intersecting valid ranges, so any chain of crops is one window.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from .transforms import _rescale_for_pil_conversion, _shortest_edge_size


@dataclass(frozen=True)
class ImageGeometry:
    """Where one output image comes from.

    Attributes:
        src_hw (`tuple[int, int]`): size of the image entering the resize.
        resize_hw (`tuple[int, int]`): size after the resize (`== src_hw` and `resample is None` when not resized).
        resample (`int`, *optional*): the Pillow filter, or `None` for no resize.
        out_hw (`tuple[int, int]`): size of the output image.
        top, left (`int`): resized-image coordinates of output pixel (0, 0).
        valid_y, valid_x (`tuple[int, int]`): half-open ranges of resized rows/columns that hold image data.
    """

    src_hw: tuple[int, int]
    resize_hw: tuple[int, int]
    resample: int | None
    out_hw: tuple[int, int]
    top: int
    left: int
    valid_y: tuple[int, int]
    valid_x: tuple[int, int]

    @classmethod
    def identity(cls, src_hw: tuple[int, int]) -> "ImageGeometry":
        h, w = src_hw
        return cls(src_hw, src_hw, None, src_hw, 0, 0, (0, h), (0, w))

    def resized(self, resize_hw: tuple[int, int], resample: int) -> "ImageGeometry":
        """Resize the (uncropped) source to ``resize_hw``. Only valid before any crop."""
        if self.out_hw != self.src_hw or self.resample is not None:
            raise AssertionError("a resize must come before any crop in the plan")
        h, w = (int(v) for v in resize_hw)
        if h <= 0 or w <= 0:
            raise ValueError(
                f"Resizing an image of size {self.src_hw} gives an empty image of size {(h, w)}: the image is too "
                "thin for the requested size"
            )
        if (h, w) == tuple(self.src_hw):
            return self  # same size in and out is an exact copy
        return ImageGeometry(self.src_hw, (h, w), int(resample), (h, w), 0, 0, (0, h), (0, w))

    def center_cropped(self, crop_hw: tuple[int, int]) -> "ImageGeometry":
        """Center-crop (or zero-pad) the current output to ``crop_hw``."""
        ch, cw = (int(v) for v in crop_hw)
        if ch <= 0 or cw <= 0:
            raise ValueError(f"crop size must be positive, got height={ch}, width={cw}")
        oh, ow = self.out_hw
        dy, dx = (oh - ch) // 2, (ow - cw) // 2
        top, left = self.top + dy, self.left + dx
        # Data of the current output lives in its own [0, oh) x [0, ow), i.e. [top', top' + oh) in resized coords.
        valid_y = (max(self.valid_y[0], self.top), min(self.valid_y[1], self.top + oh))
        valid_x = (max(self.valid_x[0], self.left), min(self.valid_x[1], self.left + ow))
        return ImageGeometry(self.src_hw, self.resize_hw, self.resample, (ch, cw), top, left, valid_y, valid_x)

    def source_window(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]:
        """The rectangle of the resized image that is read, and where it lands in the output.

        Returns `((y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1))`: resized rows/cols `[y0, y1) x [x0, x1)` go to output
        rows/cols `[oy0, oy1) x [ox0, ox1)`; every other output pixel is padding. An empty window has y0 == y1.
        """
        oh, ow = self.out_hw
        y0, y1 = max(self.top, self.valid_y[0]), min(self.top + oh, self.valid_y[1])
        x0, x1 = max(self.left, self.valid_x[0]), min(self.left + ow, self.valid_x[1])
        if y1 <= y0 or x1 <= x0:
            return (0, 0), (0, 0), (0, 0), (0, 0)
        return (y0, y1), (x0, x1), (y0 - self.top, y1 - self.top), (x0 - self.left, x1 - self.left)


# --- resize-size rules (transformers' PIL backend) ------------------------------------------------------------


def size_with_aspect_ratio(image_hw, size: int, max_size: int | None = None) -> tuple[int, int]:
    """transformers' `get_size_with_aspect_ratio`: shortest edge `size`, longest edge capped at `max_size`."""
    height, width = image_hw
    raw_size = None
    if max_size is not None:
        min_original, max_original = float(min(height, width)), float(max(height, width))
        if max_original / min_original * size > max_size:
            raw_size = max_size * min_original / max_original
            size = int(round(raw_size))
    if (height <= width and height == size) or (width <= height and width == size):
        return height, width
    if width < height:
        ow = size
        oh = int(raw_size * height / width) if raw_size is not None else int(size * height / width)
    else:
        oh = size
        ow = int(raw_size * width / height) if raw_size is not None else int(size * width / height)
    return oh, ow


def size_for_max_height_width(image_hw, max_height: int, max_width: int) -> tuple[int, int]:
    height, width = image_hw
    scale = min(max_height / height, max_width / width)
    return int(height * scale), int(width * scale)


def default_resize_size(image_hw: tuple[int, int], size: dict) -> tuple[int, int]:
    """Output size of the standard resize step for a size dict (transformers' `PilBackend.resize`)."""
    se, le = size.get("shortest_edge"), size.get("longest_edge")
    if se and le:
        return size_with_aspect_ratio(image_hw, se, le)
    if se:
        return _shortest_edge_size(image_hw[0], image_hw[1], se)
    if size.get("max_height") and size.get("max_width"):
        return size_for_max_height_width(image_hw, size["max_height"], size["max_width"])
    if size.get("height") and size.get("width"):
        return int(size["height"]), int(size["width"])
    raise ValueError(
        "Size must contain 'height' and 'width' keys, or 'max_height' and 'max_width', or 'shortest_edge' key. "
        f"Got {size}."
    )


# --- values ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueMap:
    """rescale then normalize, with the reference's exact arithmetic (SPEC section 5).

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
    """Validates and broadcasts rescale/normalize parameters for images with `channels` channels."""
    mean = std = None
    if do_rescale:
        if rescale_factor is None or not isinstance(rescale_factor, (int, float, np.number)) or isinstance(
            rescale_factor, bool
        ):
            raise TypeError(f"rescale_factor must be a number, got {rescale_factor!r}")
        if not math.isfinite(float(rescale_factor)):
            raise ValueError(f"rescale_factor must be finite, got {rescale_factor!r}")
    if do_normalize:
        mean, std = (_per_channel(v, name, channels) for v, name in ((image_mean, "image_mean"), (image_std, "image_std")))
        if any(not math.isfinite(s) or s == 0 for s in std):
            raise ValueError(f"image_std must be finite and non-zero, got {list(std)}")
        if any(not math.isfinite(m) for m in mean):
            raise ValueError(f"image_mean must be finite, got {list(mean)}")
    return ValueMap(bool(do_rescale), float(rescale_factor) if do_rescale else 1.0, bool(do_normalize), mean, std)


def _per_channel(value, name: str, channels: int) -> tuple[float, ...]:
    if value is None:
        raise ValueError("`image_mean` and `image_std` must both be specified if `do_normalize` is `True`.")
    if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
        return (float(value),) * channels
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
    return tuple(float(v) for v in values)


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
class BatchPlan:
    images: tuple[ImagePlan, ...]
    value_map: ValueMap

    def table(self, image: ImagePlan) -> np.ndarray:
        """The `(channels, 256)` table for `image` (cached; identity maps return the domain itself)."""
        return _table(self.value_map, image.channels, image.source == UNIT_FLOAT)

    def output_dtype(self, image: ImagePlan, input_dtype: np.dtype) -> np.dtype:
        if image.source != RAW:
            return self.table(image).dtype
        return self.value_map.apply(np.zeros(1, dtype=input_dtype), 0).dtype


@functools.lru_cache(maxsize=64)
def _table(value_map: ValueMap, channels: int, unit_float: bool) -> np.ndarray:
    table = value_map.table(channels, FLOAT_RESIZED_DOMAIN if unit_float else UINT8_DOMAIN)
    table.setflags(write=False)
    return table


def classify_source(image, resized: bool) -> str:
    """transformers' `_rescale_for_pil_conversion`, decided once per `PreparedImage`."""
    if image.pil is not None:
        return PIL
    if image.dtype == np.uint8:
        return UINT8
    if not resized:
        return RAW
    if image.array is None:
        raise AssertionError("a resized non-uint8 image must be a host array")
    return UNIT_FLOAT if _rescale_for_pil_conversion(image.array) else INTEGRAL
