"""Families whose resize step has its own geometry: ConvNeXt and PoolFormer (crop_pct), LeViT (256/224)."""

import math

from ..geometry import ImageGeometry, shortest_edge_size
from ..image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    PILImageResampling,
    as_float,
)
from .base import BaseImageProcessor


def _check_crop_pct(crop_pct) -> float:
    if isinstance(crop_pct, bool) or not isinstance(crop_pct, (int, float)) or not 0 < crop_pct:
        raise ValueError(f"crop_pct must be a positive number, got {crop_pct!r}")
    value = as_float(crop_pct, "crop_pct")
    if not math.isfinite(value):
        raise ValueError(f"crop_pct must be finite, got {crop_pct!r}")
    return value


class _CropPctMixin:
    """Checks `crop_pct` when the processor is built or called, like the other config values."""

    def _standardize(self, values, default_to_square):
        values = super()._standardize(values, default_to_square)
        if values.get("crop_pct") is not None:
            values["crop_pct"] = _check_crop_pct(values["crop_pct"])
        return values


class ConvNextImageProcessor(_CropPctMixin, BaseImageProcessor):
    """ConvNeXt: below 384, resize the shortest edge to `int(se / crop_pct)` and crop se x se; else warp."""

    extra_config_keys = ("crop_pct",)
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"shortest_edge": 384}
    default_to_square = False
    do_resize = True
    do_rescale = True
    do_normalize = True
    crop_pct = 224 / 256

    def resize(self, image, size, resample=None, crop_pct=224 / 256, data_format=None, input_data_format=None,
               **kwargs):
        r"""
        ConvNeXt's resize: below 384, the shortest edge to `int(shortest_edge / crop_pct)`, then a center crop to
        `shortest_edge` x `shortest_edge`; from 384, a warp to `shortest_edge` x `shortest_edge`.

        Args:
            image (`np.ndarray` or `PIL.Image.Image`): The image to resize.
            size (`dict[str, int]`): `{"shortest_edge": int}`.
            resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`): The Pillow filter.
            crop_pct (`float`, *optional*, defaults to `224 / 256`): As in transformers 5 (not `self.crop_pct`).
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
        """
        return self._resize_image(image, size, resample, data_format, input_data_format, kwargs.get("reducing_gap"),
                                  crop_pct=crop_pct)

    def _resize_geometry(self, geometry: ImageGeometry, size: dict, resample: int, crop_pct=None, **_) -> ImageGeometry:
        if not size.get("shortest_edge"):
            raise ValueError(f"Size dictionary must contain 'shortest_edge' key. Got {size.keys()}")
        edge = size["shortest_edge"]
        if edge >= 384:
            return geometry.resized((edge, edge), resample)
        if crop_pct is None:
            raise TypeError(
                f"crop_pct is None, but a shortest_edge of {edge} (< 384) resizes to shortest_edge / crop_pct: set "
                "crop_pct (ConvNeXt's default is 224 / 256)"
            )
        crop_pct = _check_crop_pct(crop_pct)
        resized = geometry.resized(shortest_edge_size(*geometry.src_hw, int(edge / crop_pct)), resample)
        return resized.center_cropped((edge, edge))


class LevitImageProcessor(BaseImageProcessor):
    """LeViT: shortest edge resized to `int(256 / 224 * se)`, then center crop."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True

    def _resize_geometry(self, geometry: ImageGeometry, size: dict, resample: int, **_) -> ImageGeometry:
        if size.get("shortest_edge"):
            edge = int((256 / 224) * size["shortest_edge"])
            return geometry.resized(shortest_edge_size(*geometry.src_hw, edge), resample)
        if not (size.get("height") and size.get("width")):
            raise ValueError(f"Size dict must have keys 'height' and 'width' or 'shortest_edge'. Got {list(size)}.")
        return geometry.resized((size["height"], size["width"]), resample)


class PoolFormerImageProcessor(_CropPctMixin, BaseImageProcessor):
    """PoolFormer: the resize target is scaled by `1 / crop_pct` before the center crop."""

    extra_config_keys = ("crop_pct",)
    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    crop_pct = 0.9
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True

    def resize(self, image, size, resample=None, crop_pct=None, data_format=None, input_data_format=None, **kwargs):
        r"""
        PoolFormer's resize: with `crop_pct`, the size is first scaled by `1 / crop_pct` (a square or a shortest edge
        keeps the aspect ratio); without it, the standard resize.

        Args:
            image (`np.ndarray` or `PIL.Image.Image`): The image to resize.
            size (`dict[str, int]`): `{"shortest_edge"}` or `{"height", "width"}`.
            resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`): The Pillow filter.
            crop_pct (`float`, *optional*): The scale; `None` resizes to `size` itself.
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
        """
        return self._resize_image(image, size, resample, data_format, input_data_format, kwargs.get("reducing_gap"),
                                  crop_pct=crop_pct)

    def _resize_geometry(self, geometry: ImageGeometry, size: dict, resample: int, crop_pct=None, **_) -> ImageGeometry:
        if crop_pct is None:
            return super()._resize_geometry(geometry, size, resample)
        crop_pct = _check_crop_pct(crop_pct)
        h, w = geometry.src_hw
        if size.get("shortest_edge"):
            target = shortest_edge_size(h, w, int(size["shortest_edge"] / crop_pct))
        elif size.get("height") and size.get("width"):
            if size["height"] == size["width"]:
                target = shortest_edge_size(h, w, int(size["height"] / crop_pct))
            else:
                target = (int(size["height"] / crop_pct), int(size["width"] / crop_pct))
        else:
            raise ValueError(f"Invalid size for resize: {size}")
        return geometry.resized(target, resample)
