"""The Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): `smart_resize` to multiples of the patch grid, then patch
rows instead of (C, H, W) images, plus `image_grid_thw` (docs/BEHAVIOUR.md section 11)."""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np

from ..geometry import ImageGeometry, smart_resize
from ..image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, ChannelDimension, PILImageResampling
from ..plan import BatchPlan, PatchLayout
from .base import BaseImageProcessor

_LAYOUT_KEYS = ("patch_size", "temporal_patch_size", "merge_size")


class Qwen2VLImageProcessor(BaseImageProcessor):
    r"""
    Qwen2-VL's image processor (also Qwen2.5-VL's and Qwen3-VL's), bit-exact with transformers 5.x's
    `Qwen2VLImageProcessorPil`.

    Each image is resized (Pillow, `resample`) to `smart_resize`'s size: both sides multiples of
    `patch_size * merge_size`, the area within `[size["shortest_edge"], size["longest_edge"]]` pixels. It is then
    rescaled and normalized and cut into `grid_h * grid_w` rows of `C * temporal_patch_size * patch_size**2` float32
    values (the image repeated over the temporal patch); the rows of a batch's images are concatenated into one
    `pixel_values` array, and `image_grid_thw` holds `[1, grid_h, grid_w]` (int64) per image.

    Args:
        size (`dict[str, int]`, *optional*, defaults to `{"shortest_edge": 3136, "longest_edge": 1003520}`):
            The smallest and largest number of pixels of a resized image. transformers' older spellings load too:
            `min_pixels` / `max_pixels` keyword arguments (they override `size`), and
            `size={"min_pixels": ..., "max_pixels": ...}`.
        patch_size (`int`, *optional*, defaults to 14): The side of a patch (Qwen3-VL: 16).
        temporal_patch_size (`int`, *optional*, defaults to 2): The copies of an image along time in a patch.
        merge_size (`int`, *optional*, defaults to 2): The side, in patches, of the windows the model merges.
    """

    model_input_names = ["pixel_values", "image_grid_thw"]
    extra_config_keys = ("min_pixels", "max_pixels", *_LAYOUT_KEYS)

    do_resize = True
    resample = PILImageResampling.BICUBIC
    size = {"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}
    default_to_square = False
    do_rescale = True
    do_normalize = True
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    do_convert_rgb = True
    patch_size = 14
    temporal_patch_size = 2
    merge_size = 2
    min_pixels = None
    max_pixels = None

    def _standardize(self, values: dict[str, Any], default_to_square: bool) -> dict[str, Any]:
        """transformers' folding of `min_pixels` / `max_pixels` into `size` (when building, and per call with a
        `FutureWarning` as transformers gives), then the common checks and those of the patch sizes."""
        min_pixels, max_pixels = values.get("min_pixels"), values.get("max_pixels")
        size = values.get("size")
        if size is None:  # transformers' Qwen2-VL takes an explicit None size as its default
            size = dict(type(self).size)
        if isinstance(size, dict) and set(size) == {"min_pixels", "max_pixels"}:
            # A size saved by transformers 4.4x: the same two numbers under their old names.
            size = {"shortest_edge": size["min_pixels"], "longest_edge": size["max_pixels"]}
        if min_pixels is not None or max_pixels is not None:
            size = dict(size) if isinstance(size, dict) else {}
            for key, value, old in (("shortest_edge", min_pixels, "min_pixels"), ("longest_edge", max_pixels,
                                                                                  "max_pixels")):
                if value is not None:
                    size[key] = value
                    size.pop(old, None)
        values["size"] = size
        values["min_pixels"] = values["max_pixels"] = None
        values = super()._standardize(values, default_to_square)
        for key in _LAYOUT_KEYS:
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"{key} must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"{key} must be positive, got {value}")
            values[key] = int(value)
        return values

    def preprocess(self, images, *args, **kwargs):
        if kwargs.get("min_pixels") is not None or kwargs.get("max_pixels") is not None:
            warnings.warn(
                "Passing `min_pixels` and `max_pixels` to a processor call is deprecated in transformers (removed in "
                "v5.23 there); pass size={'shortest_edge': min_pixels, 'longest_edge': max_pixels} instead.",
                FutureWarning,
                stacklevel=2,
            )
        return super().preprocess(images, *args, **kwargs)

    preprocess.__doc__ = BaseImageProcessor.preprocess.__doc__

    def _geometry(self, image, settings) -> ImageGeometry:
        """`smart_resize`'s size, and no center crop (transformers' Qwen2-VL ignores `do_center_crop`)."""
        geometry = ImageGeometry.identity((image.height, image.width))
        if settings["do_resize"]:
            factor = _layout(settings).patch_size * settings["merge_size"]
            geometry = self._resize_geometry(geometry, settings["size"], int(settings["resample"]), factor=factor)
        return geometry

    def _resize_geometry(self, geometry: ImageGeometry, size: dict, resample: int, factor: int | None = None,
                         **extras) -> ImageGeometry:
        """`smart_resize` to multiples of `factor` (`patch_size * merge_size` by default), within `size`'s pixels."""
        if not size or not size.get("shortest_edge") or not size.get("longest_edge"):
            raise ValueError(f"`size` dict must contain 'shortest_edge' and 'longest_edge' keys but got {size}.")
        if factor is None:
            factor = self.patch_size * self.merge_size
        if isinstance(factor, bool) or not isinstance(factor, numbers.Integral) or factor <= 0:
            raise ValueError(f"factor must be a positive int, got {factor!r}")
        height, width = smart_resize(*geometry.src_hw, int(factor), size["shortest_edge"], size["longest_edge"])
        return geometry.resized((height, width), resample)

    def resize(self, image, size, resample=None, factor=None, data_format=None, input_data_format=None, **kwargs):
        r"""
        transformers' Qwen2-VL `resize`: Pillow's resize to `smart_resize`'s size for this image.

        Args:
            image (`np.ndarray` or `PIL.Image.Image`): The image to resize.
            size (`dict[str, int]` or `SizeDict`): `{"shortest_edge": min_pixels, "longest_edge": max_pixels}`.
            resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`): The filter.
            factor (`int`, *optional*, defaults to `patch_size * merge_size`): Both sides become multiples of it.
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.

        Returns:
            `np.ndarray`: uint8 for uint8 (and integral) input, float32 in [0, 1] for float input in [0, 1].
        """
        return self._resize_image(image, size, resample, data_format, input_data_format, kwargs.get("reducing_gap"),
                                  factor=factor)

    def _layout(self, settings: dict, data_format: ChannelDimension) -> PatchLayout:
        return _layout(settings)

    def _outputs(self, plan: BatchPlan) -> dict[str, np.ndarray]:
        grids = [(1, *plan.layout.grid(item)) for item in plan.images]
        return {"image_grid_thw": np.array(grids, dtype=np.int64).reshape(-1, 3)}

    def get_number_of_image_patches(self, height: int, width: int, images_kwargs: dict | None = None) -> int:
        """The number of patch rows (`grid_h * grid_w`) an image of `height` x `width` gives, without the image
        (inference servers size their prompts with it). `images_kwargs` may override `min_pixels`, `max_pixels`,
        `patch_size` and `merge_size`, as in transformers."""
        images_kwargs = images_kwargs or {}
        min_pixels = images_kwargs["min_pixels"] if "min_pixels" in images_kwargs else self.size["shortest_edge"]
        max_pixels = images_kwargs["max_pixels"] if "max_pixels" in images_kwargs else self.size["longest_edge"]
        patch_size = images_kwargs.get("patch_size", self.patch_size)
        merge_size = images_kwargs.get("merge_size", self.merge_size)
        resized_height, resized_width = smart_resize(height, width, patch_size * merge_size, min_pixels, max_pixels)
        return (resized_height // patch_size) * (resized_width // patch_size)


def _layout(settings: dict) -> PatchLayout:
    missing = [key for key in _LAYOUT_KEYS if settings.get(key) is None]
    if missing:
        raise TypeError(f"{', '.join(missing)} must be an int to cut images into patches, got None")
    return PatchLayout(settings["patch_size"], settings["merge_size"], settings["temporal_patch_size"])
