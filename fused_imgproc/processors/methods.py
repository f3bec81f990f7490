"""The per-image methods transformers' processors carry: `rescale`, `normalize`, `center_crop`, `resize`, `pad`,
`convert_to_rgb` and `fetch_images`.

Each method is a thin wrapper: the values come from the functional ops of `transforms` and the resize geometry from
the family's own rule (`_resize_geometry`, the one the plan uses), so nothing here computes geometry or numerics a
second time. Signatures are transformers 4.x's (`data_format`, `input_data_format`; the layout of an array is inferred
when not given), which accept everything transformers 5.x's PIL-backend methods accept; on channels-first arrays
(what 5.x's methods expect) the results are identical to 5.x's, dtype included.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np
import PIL.Image

from .. import transforms
from ..geometry import ImageGeometry
from ..image_utils import (
    ChannelDimension,
    PILImageResampling,
    get_image_size,
    infer_channel_dimension_format,
    is_valid_image,
    load_image,
)
from ..transforms import get_size_dict

_NUMPY_PAD_MODES = ("constant", "edge", "linear_ramp", "maximum", "mean", "median", "minimum", "reflect",
                    "symmetric", "wrap", "empty")


class ImageOpsMixin:
    """Per-image methods of every processor (mixed into `BaseImageProcessor`)."""

    def rescale(self, image: np.ndarray, scale: float, data_format=None, input_data_format=None,
                **kwargs) -> np.ndarray:
        r"""
        `image * scale`, the product taken in float64 and cast to `dtype` (float32 unless `dtype=` is given).

        Args:
            image (`np.ndarray`): The image to rescale.
            scale (`float`): The factor, e.g. `1 / 255`.
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
        """
        return transforms.rescale(image, scale, data_format=data_format, input_data_format=input_data_format, **kwargs)

    def normalize(self, image: np.ndarray, mean, std, data_format=None, input_data_format=None, **kwargs) -> np.ndarray:
        r"""
        `(image - mean) / std` per channel, in the image's float dtype (float32 for integer images).

        Args:
            image (`np.ndarray`): The image to normalize.
            mean (`float` or `Iterable[float]`): One value, or one per channel.
            std (`float` or `Iterable[float]`): One value, or one per channel; finite and non-zero.
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
        """
        return transforms.normalize(image, mean, std, data_format=data_format, input_data_format=input_data_format,
                                    **kwargs)

    def center_crop(self, image: np.ndarray, size, data_format=None, input_data_format=None, **kwargs) -> np.ndarray:
        r"""
        Center crop to `(size["height"], size["width"])`; an image smaller than the crop is zero-padded first.

        Args:
            image (`np.ndarray`): The image to crop.
            size (`dict[str, int]`, `SizeDict`, `int` or `tuple[int, int]`): The output size (an int is a square).
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
        """
        size = get_size_dict(size)
        if "height" not in size or "width" not in size:
            raise ValueError(f"The size dictionary must have keys 'height' and 'width'. Got {size.keys()}")
        return transforms.center_crop(image, (size["height"], size["width"]), data_format=data_format,
                                      input_data_format=input_data_format)

    def resize(self, image, size, resample=None, data_format=None, input_data_format=None, **kwargs) -> np.ndarray:
        r"""
        Resize with Pillow to the size this family's `size` means (its own rule, the one `preprocess` applies).

        Args:
            image (`np.ndarray` or `PIL.Image.Image`): The image to resize.
            size (`dict[str, int]`, `SizeDict`, `int` or `tuple[int, int]`):
                `{"height", "width"}`, `{"shortest_edge"}` (aspect ratio kept), `{"shortest_edge", "longest_edge"}` or
                `{"max_height", "max_width"}`; an int follows the family's `default_to_square`.
            resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
                The Pillow filter (transformers 5.x's default; pass `self.resample` for the family's).
            data_format (`ChannelDimension` or `str`, *optional*): Layout of the output; the input's when not given.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of `image`; inferred when not given.
            reducing_gap (`float`, *optional*): Pillow's two-step resize (`None`: one step).

        Returns:
            `np.ndarray`: uint8 for uint8 (and integral) input, float32 in [0, 1] for float input in [0, 1].
        """
        return self._resize_image(image, size, resample, data_format, input_data_format, kwargs.get("reducing_gap"))

    def _resize_image(self, image, size, resample, data_format, input_data_format, reducing_gap=None, **extras):
        """The family's resize geometry (`_resize_geometry`), executed by the functional `resize`/`center_crop`."""
        if resample is not None and (isinstance(resample, bool) or not isinstance(resample, (int, np.integer))):
            hint = ""
            if isinstance(resample, float) and "crop_pct" in self.extra_config_keys:
                # transformers 4 ordered ConvNeXt's and PoolFormer's arguments (size, crop_pct, resample)
                hint = (": resize's arguments are (image, size, resample, crop_pct), as in transformers 5; pass crop_pct "
                        "by keyword")
            raise TypeError(f"resample must be a PILImageResampling value (an int), got {resample!r}{hint}")
        resample = PILImageResampling(int(resample)) if resample is not None else PILImageResampling.BILINEAR
        size = get_size_dict(size, default_to_square=self.default_to_square)
        if isinstance(image, PIL.Image.Image):
            height, width = image.height, image.width
            input_data_format = ChannelDimension.LAST
        else:
            array = np.asarray(image) if not isinstance(image, np.ndarray) else image
            if array.ndim != 3:
                raise ValueError(f"resize expects a single 3-D image, got shape {tuple(array.shape)}")
            if input_data_format is None:
                input_data_format = infer_channel_dimension_format(array)
            height, width = get_image_size(array, input_data_format)
        geometry = self._resize_geometry(ImageGeometry.identity((height, width)), size, int(resample), **extras)
        out = transforms.resize(image, geometry.resize_hw, resample=resample, reducing_gap=reducing_gap,
                                data_format=data_format, input_data_format=input_data_format)
        if geometry.out_hw != geometry.resize_hw:  # the family's resize ends with a crop (ConvNeXt below 384)
            out_format = data_format if data_format is not None else input_data_format
            out = transforms.center_crop(out, geometry.out_hw, input_data_format=out_format)
        return out

    def pad(self, images, pad_size=None, fill_value=0, padding_mode="constant", return_mask=False,
            input_data_format=None, **kwargs):
        r"""
        Pads each image at the bottom and right to `pad_size`, or to the largest height and width of `images`.

        Args:
            images (`list[np.ndarray]`): The images (each channels-first or channels-last; inferred when not given).
            pad_size (`dict[str, int]`, *optional*): `{"height", "width"}`, at least every image's size.
            fill_value (`int` or `float`, *optional*, defaults to 0): The value of a `"constant"` padding.
            padding_mode (`str`, *optional*, defaults to `"constant"`): A `numpy.pad` mode (`"edge"`, `"reflect"`...).
            return_mask (`bool`, *optional*, defaults to `False`):
                Whether to also return, per image, an int64 `(height, width)` mask: 1 on the image, 0 on the padding.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of the images.

        Returns:
            `list[np.ndarray]` (the padded images, in their own layout), and the masks with `return_mask=True`.
        """
        if is_valid_image(images) or not isinstance(images, Iterable) or isinstance(images, (str, bytes)):
            raise TypeError(f"pad takes a list of images, got {type(images).__name__}: wrap one image in a list")
        images = list(images)
        if padding_mode not in _NUMPY_PAD_MODES:
            raise ValueError(f"padding_mode must be one of {list(_NUMPY_PAD_MODES)}, got {padding_mode!r}")
        if not isinstance(fill_value, numbers.Number) or isinstance(fill_value, bool):
            raise TypeError(f"fill_value must be a number, got {fill_value!r}")
        formats, sizes = [], []
        for image in images:
            if not isinstance(image, np.ndarray) or image.ndim != 3:
                raise TypeError(f"pad takes 3-D numpy images, got {getattr(image, 'shape', type(image).__name__)}")
            fmt = ChannelDimension(input_data_format) if input_data_format is not None else (
                infer_channel_dimension_format(image, num_channels=(1, 3, 4)))
            formats.append(fmt)
            sizes.append(get_image_size(image, fmt))
        if pad_size is not None:
            pad_size = get_size_dict(pad_size, param_name="pad_size")
            if not (pad_size.get("height") and pad_size.get("width")):
                raise ValueError(f"Pad size must contain 'height' and 'width' keys only. Got pad_size={pad_size}.")
            target = (int(pad_size["height"]), int(pad_size["width"]))
        elif sizes:
            target = (max(h for h, _ in sizes), max(w for _, w in sizes))
        padded, masks = [], []
        for image, fmt, (height, width) in zip(images, formats, sizes, strict=True):
            pad_h, pad_w = target[0] - height, target[1] - width
            if pad_h < 0 or pad_w < 0:
                raise ValueError(
                    "Padding dimensions are negative. Please make sure that the `pad_size` is larger than the image "
                    f"size. Got pad_size=({target[0]}, {target[1]}), image_size=({height}, {width})."
                )
            if pad_h or pad_w:
                widths = ((0, 0), (0, pad_h), (0, pad_w)) if fmt == ChannelDimension.FIRST else (
                    (0, pad_h), (0, pad_w), (0, 0))
                extra = {"constant_values": fill_value} if padding_mode == "constant" else {}
                image = np.pad(image, widths, mode=padding_mode, **extra)
            padded.append(image)
            if return_mask:
                mask = np.zeros(target, dtype=np.int64)
                mask[:height, :width] = 1
                masks.append(mask)
        return (padded, masks) if return_mask else padded

    def convert_to_rgb(self, image, input_data_format=None) -> np.ndarray:
        r"""
        The image as 3-channel RGB, any transparency composited onto white (transformers 5.x's `convert_to_rgb`).

        Args:
            image (`PIL.Image.Image` or `np.ndarray`): The image.
            input_data_format (`ChannelDimension` or `str`, *optional*): Layout of an array; inferred when not given.

        Returns:
            `np.ndarray`: (H, W, 3) for a PIL image; the input's layout for an array.
        """
        return transforms.convert_to_rgb(image, return_numpy=True, input_data_format=input_data_format)

    def fetch_images(self, image_url_or_urls: Any):
        r"""
        Loads images from local paths, `file://` URLs, `http(s)://` URLs (through huggingface_hub's HTTP session) or
        base64 strings, as RGB PIL images with their EXIF orientation applied; images pass through unchanged.

        Args:
            image_url_or_urls (`str`, an image, or a (nested) list of them): What to load.

        Returns:
            The loaded image, or a list mirroring the input's nesting.
        """
        if isinstance(image_url_or_urls, (list, tuple)):
            return [self.fetch_images(item) for item in image_url_or_urls]
        if isinstance(image_url_or_urls, str):
            return load_image(image_url_or_urls)
        if is_valid_image(image_url_or_urls):
            return image_url_or_urls
        raise TypeError(f"only a single or a list of entries is supported but got type={type(image_url_or_urls)}")
