"""Functional image ops with transformers' signatures and numerics (the numpy reference).

Every function here is bit-identical to its namesake in ``transformers.image_transforms`` /
``transformers.image_processing_utils`` (5.x) on the inputs those accept, and raises a clear exception on the
inputs they do not. The processors do not call these per image: they execute a plan (``plan.py``), which is
tested against these functions and against transformers.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Collection, Iterable

import numpy as np
import PIL.Image

from .geometry import ImageGeometry, shortest_edge_size
from .image_utils import (
    ChannelDimension,
    PILImageResampling,
    array_to_rgb,
    as_float,
    check_finite,
    get_channel_dimension_axis,
    get_image_size,
    infer_channel_dimension_format,
    is_torch_tensor,
    pil_to_rgb,
    rescale_for_pil_conversion,
)
from .limits import check_pillow_sides, check_pixels

logger = logging.getLogger(__name__)

VALID_SIZE_DICT_KEYS = (
    {"height", "width"},
    {"shortest_edge"},
    {"shortest_edge", "longest_edge"},
    {"longest_edge"},
    {"max_height", "max_width"},
    {"min_pixels", "max_pixels"},
)


def _is_valid_size_dict(size_dict) -> bool:
    return isinstance(size_dict, dict) and any(set(size_dict) == keys for keys in VALID_SIZE_DICT_KEYS)


def _convert_to_size_dict(size, max_size, default_to_square, height_width_order) -> dict[str, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = int(size)
        if default_to_square:
            if max_size is not None:
                raise ValueError("Cannot specify both size as an int, with default_to_square=True and max_size")
            return {"height": size, "width": size}
        size_dict = {"shortest_edge": size}
        if max_size is not None:
            size_dict["longest_edge"] = max_size
        return size_dict
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise ValueError(f"A size tuple or list must have 2 elements (height, width), got {size!r}")
        return {"height": size[0], "width": size[1]} if height_width_order else {"height": size[1], "width": size[0]}
    if size is None and max_size is not None:
        if default_to_square:
            raise ValueError("Cannot specify both default_to_square=True and max_size")
        return {"longest_edge": max_size}
    raise ValueError(f"Could not convert size input to size dict: {size!r}")


def get_size_dict(
    size: int | Iterable[int] | dict[str, int] | None = None,
    max_size: int | None = None,
    height_width_order: bool = True,
    default_to_square: bool = True,
    param_name: str = "size",
) -> dict:
    """Converts a legacy ``size`` parameter (int, tuple, dict) into a size dictionary.

    Args:
        size (`int`, `Iterable[int]` or `dict[str, int]`, *optional*):
            The size to convert. An int becomes `{"height": size, "width": size}` when `default_to_square`, else
            `{"shortest_edge": size}` (plus `"longest_edge": max_size` when given). A 2-sequence is (height, width),
            or (width, height) when `height_width_order=False`. A dict is validated and returned as is.
        max_size (`int`, *optional*):
            The longest edge, for an int or `None` size with `default_to_square=False`.
        height_width_order (`bool`, *optional*, defaults to `True`):
            Order of a tuple size.
        default_to_square (`bool`, *optional*, defaults to `True`):
            Whether an int size means a square.
        param_name (`str`, *optional*, defaults to `"size"`):
            Name used in error messages.

    Returns:
        `dict`: a size dictionary with one of the key sets of `VALID_SIZE_DICT_KEYS`.
    """
    if (hasattr(size, "keys") or type(size).__name__ == "SizeDict") and not isinstance(size, dict):
        size = dict(size)  # a Mapping, or transformers' SizeDict (iterates its non-None (key, value) pairs)
    size_dict = size if isinstance(size, dict) else _convert_to_size_dict(
        size, max_size, default_to_square, height_width_order
    )
    if not _is_valid_size_dict(size_dict):
        raise ValueError(
            f"{param_name} must have one of the following set of keys: {VALID_SIZE_DICT_KEYS}, got "
            f"{size_dict.keys() if isinstance(size_dict, dict) else size_dict!r}"
        )
    return size_dict


def get_resize_output_image_size(
    input_image: np.ndarray,
    size: int | tuple[int, int] | list[int] | tuple[int, ...],
    default_to_square: bool = True,
    max_size: int | None = None,
    input_data_format: str | ChannelDimension | None = None,
) -> tuple:
    """Output ``(height, width)`` of a resize of ``input_image`` to ``size``.

    Args:
        input_image (`np.ndarray` or `tuple[int, int]`):
            The image to resize, or directly its `(height, width)`.
        size (`int` or `tuple[int, int]`):
            A 2-tuple is returned as is. An int is a square when `default_to_square`, else the new length of the
            shorter edge; the longer edge becomes `int(size * long / short)` (truncated).
        default_to_square (`bool`, *optional*, defaults to `True`):
            How to read an int `size`.
        max_size (`int`, *optional*):
            Cap on the longer edge (only with `default_to_square=False`); must exceed `size`.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `input_image`; inferred when not given.

    Returns:
        `tuple[int, int]`: `(height, width)`.
    """
    if isinstance(size, (tuple, list)):
        if len(size) == 2:
            return tuple(size)
        if len(size) == 1:
            size = size[0]
        else:
            raise ValueError("size must have 1 or 2 elements if it is a list or tuple")
    if default_to_square:
        return (size, size)
    if isinstance(input_image, tuple) and len(input_image) == 2:
        height, width = input_image
    else:
        height, width = get_image_size(input_image, input_data_format)
    return shortest_edge_size(height, width, size, max_size)


def _layout(image, input_data_format=None, num_channels=None) -> ChannelDimension:
    """The layout of a 3-D+ image: `input_data_format` validated, or inferred as transformers does."""
    if image.ndim < 3:
        raise ValueError(f"Expected an image with 3 dimensions (channels, height, width), got shape {image.shape}")
    if input_data_format is None:
        return infer_channel_dimension_format(image, num_channels)
    return ChannelDimension(input_data_format)


def to_channel_dimension_format(image, channel_dim, input_channel_dim=None):
    """Puts `image` (its last three axes) in the `channel_dim` layout: `image` itself if already so, else a view.

    Args:
        image (`np.ndarray` or `torch.Tensor`):
            The image; a tensor is permuted as a tensor.
        channel_dim (`ChannelDimension` or `str`):
            The layout to return.
        input_channel_dim (`ChannelDimension` or `str`, *optional*):
            The layout of `image`; inferred when not given.
    """
    is_torch = is_torch_tensor(image)
    if not (is_torch or isinstance(image, np.ndarray)):
        raise TypeError(f"Input image must be of type np.ndarray or torch.Tensor, got {type(image)}")
    source, target = _layout(image, input_channel_dim), ChannelDimension(channel_dim)
    if source == target:
        return image
    n = image.ndim
    axes = list(range(n - 3)) + ([n - 1, n - 3, n - 2] if target == ChannelDimension.FIRST else [n - 2, n - 1, n - 3])
    return image.permute(*axes) if is_torch else image.transpose(axes)


def rescale(image, scale, data_format=None, dtype=np.float32, input_data_format=None) -> np.ndarray:
    """`dtype(float64(image) * scale)`: the product is taken in float64, then cast.

    Args:
        image (`np.ndarray`):
            The image to rescale.
        scale (`float`):
            The factor, e.g. `1 / 255`.
        data_format (`ChannelDimension` or `str`, *optional*):
            Layout of the output; the input layout when not given.
        dtype (`np.dtype`, *optional*, defaults to `np.float32`):
            The dtype of the output.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `image`; inferred when needed and not given.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Input image must be of type np.ndarray, got {type(image)}")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real):
        raise TypeError(f"scale must be a number, got {scale!r}")
    if not math.isfinite(as_float(scale, "scale")):
        raise ValueError(f"scale must be finite, got {scale!r}")
    out = image.astype(np.float64) * scale
    if data_format is not None:
        out = to_channel_dimension_format(out, data_format, input_data_format)
    return out.astype(dtype)


def _per_channel(value, num_channels: int, name: str, dtype) -> np.ndarray:
    if isinstance(value, Collection):
        if len(value) != num_channels:
            raise ValueError(f"{name} must have {num_channels} elements if it is an iterable, got {len(value)}")
    else:
        value = [value] * num_channels
    if not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in value):
        raise TypeError(f"{name} must be a number or a collection of numbers, got {value!r}")
    with np.errstate(over="ignore"):  # an overflow to inf is reported by the caller
        return np.array([as_float(v, name) for v in value], dtype=dtype)


def normalize(image, mean, std, data_format=None, input_data_format=None) -> np.ndarray:
    """`(image - mean) / std` per channel in the image's float dtype (float32 for non-float images).

    `mean` and `std` are cast to that dtype first, as in transformers. Unlike transformers, which silently returns
    inf/NaN, a zero or non-finite `std` (after the cast) or a non-finite `mean` raises `ValueError`.

    Args:
        image (`np.ndarray`):
            The image to normalize.
        mean (`float` or `Collection[float]`):
            One value, or one per channel.
        std (`float` or `Collection[float]`):
            One value, or one per channel; finite and non-zero.
        data_format (`ChannelDimension` or `str`, *optional*):
            Layout of the output; the input layout when not given.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `image`; inferred when not given.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array, got {type(image)}")
    fmt = _layout(image, input_data_format)
    axis = get_channel_dimension_axis(image, fmt)
    num_channels = image.shape[axis]
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    mean = _per_channel(mean, num_channels, "mean", image.dtype)
    std = _per_channel(std, num_channels, "std", image.dtype)
    if not np.all(np.isfinite(mean)):
        raise ValueError(f"mean must be finite, got {mean.tolist()} (as {image.dtype})")
    if not np.all(np.isfinite(std)) or np.any(std == 0):
        raise ValueError(f"std must be finite and non-zero, got {std.tolist()} (as {image.dtype})")
    shape = [num_channels if i == axis else 1 for i in range(image.ndim)]
    out = (image - mean.reshape(shape)) / std.reshape(shape)
    return to_channel_dimension_format(out, data_format, fmt) if data_format is not None else out


def center_crop(image, size, data_format=None, input_data_format=None) -> np.ndarray:
    """Center crop from `(length - crop) // 2`; an axis shorter than the crop is zero-padded with the image at
    `ceil((crop - length) / 2)`: the extra row (column) of an odd padding goes on top (left), as in transformers 5.x.

    Args:
        image (`np.ndarray`):
            The image to crop.
        size (`tuple[int, int]`):
            `(height, width)` of the output; both positive.
        data_format (`ChannelDimension` or `str`, *optional*):
            Layout of the output; the input layout when not given.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `image`; inferred when not given.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"Input image must be of type np.ndarray, got {type(image)}")
    if not isinstance(size, Iterable) or len(size) != 2:
        raise ValueError(f"size must have 2 elements (height, width) of the output image, got {size!r}")
    fmt = _layout(image, input_data_format)
    crop_h, crop_w = (int(s) for s in size)
    if crop_h <= 0 or crop_w <= 0:
        raise ValueError(f"center_crop size must be positive, got (height, width) = ({crop_h}, {crop_w})")
    check_pixels(crop_h, crop_w, "The cropped image")
    image = to_channel_dimension_format(image, ChannelDimension.FIRST, fmt)
    height, width = image.shape[-2:]
    window = ImageGeometry.identity((height, width)).center_cropped((crop_h, crop_w)).source_window()
    (y0, y1), (x0, x1), (oy0, oy1), (ox0, ox1) = window
    if crop_h <= height and crop_w <= width:
        out = image[..., y0:y1, x0:x1]
    else:
        out = np.zeros_like(image, shape=image.shape[:-2] + (crop_h, crop_w))
        out[..., oy0:oy1, ox0:ox1] = image[..., y0:y1, x0:x1]
    return to_channel_dimension_format(out, data_format if data_format is not None else fmt, ChannelDimension.FIRST)


def to_pil_image(image, do_rescale=None, image_mode=None, input_data_format=None) -> PIL.Image.Image:
    """Converts an array (any layout) to a PIL image; a single channel is squeezed (mode "L").

    Args:
        image (`PIL.Image.Image`, `np.ndarray` or `torch.Tensor`):
            The image; a PIL image is returned as is, a CPU tensor is converted with `.numpy()`.
        do_rescale (`bool`, *optional*):
            Whether to multiply by 255 (`rescale`: float64 product cast to float32) before the truncating uint8
            cast; decided by `rescale_for_pil_conversion` when not given. NaN/inf raise `ValueError`.
        image_mode (`str`, *optional*):
            The PIL mode; Pillow's default for the array when not given.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `image`; inferred when not given.
    """
    if isinstance(image, PIL.Image.Image):
        return image
    if is_torch_tensor(image):
        image = image.numpy()
    elif not isinstance(image, np.ndarray):
        raise ValueError(f"Input image type not supported: {type(image)}")
    image = to_channel_dimension_format(image, ChannelDimension.LAST, input_data_format)
    if image.shape[-1] == 1:
        image = np.squeeze(image, axis=-1)
    check_finite(image)
    if do_rescale if do_rescale is not None else rescale_for_pil_conversion(image):
        image = rescale(image, 255)
    return PIL.Image.fromarray(image.astype(np.uint8), mode=image_mode)


def resize(image, size, resample=None, reducing_gap=None, data_format=None, return_numpy=True, input_data_format=None):
    """Resizes `image` to `size` with Pillow, bit-identical to transformers.

    uint8 goes to Pillow unchanged. Floats in [0, 1] are multiplied by 255, truncated to uint8, resized and
    `rescale`d by `1 / 255` (float32 out, whatever the float dtype in). Values all (`np.allclose`) integers in
    [0, 255] are cast to uint8 and come back uint8. Anything else, NaN and inf included, raises `ValueError`.
    Pillow resizes RGBA and LA with premultiplied alpha (except NEAREST); same size in and out is a copy.

    Args:
        image (`np.ndarray`, `torch.Tensor` or `PIL.Image.Image`):
            The 3-D image to resize (a CPU tensor is converted with `.numpy()`).
        size (`tuple[int, int]`):
            `(height, width)` of the output; two positive integers.
        resample (`PILImageResampling`, *optional*, defaults to `PILImageResampling.BILINEAR`):
            The Pillow filter.
        reducing_gap (`float`, *optional*):
            Pillow's two-step resize optimisation (`None`: one step).
        data_format (`ChannelDimension` or `str`, *optional*):
            Layout of the output; the input layout when not given.
        return_numpy (`bool`, *optional*, defaults to `True`):
            Whether to return an array; else the resized PIL image (not rescaled back).
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of `image`; inferred when not given (channels-last for a PIL image).
    """
    resample = resample if resample is not None else PILImageResampling.BILINEAR
    if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
        raise ValueError(f"size must have 2 elements (height, width), got {size!r}")
    height, width = size
    for value in size:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"resize size must be integers, got {size!r}")
        if value <= 0:
            raise ValueError(f"resize size must be positive, got (height, width) = ({height}, {width})")
    check_pixels(height, width, "The resized image")
    check_pillow_sides(height, width, "The resized image")
    if is_torch_tensor(image):
        image = image.numpy()
    is_pil = isinstance(image, PIL.Image.Image)
    if not is_pil and not isinstance(image, np.ndarray):
        raise TypeError(f"Input image must be a np.ndarray, a torch.Tensor or a PIL.Image.Image, got {type(image)}")
    if input_data_format is None:
        input_data_format = ChannelDimension.LAST if is_pil else _layout(image)
    data_format = input_data_format if data_format is None else data_format
    do_rescale = False
    if not is_pil:
        if image.ndim != 3 or image.size == 0:
            raise ValueError(f"resize expects a single 3-D image with no zero-sized axis, got shape {image.shape}")
        channels = image.shape[get_channel_dimension_axis(image, input_data_format)]
        if not 1 <= channels <= 4:
            raise ValueError(f"resize supports images with 1 to 4 channels, got {channels} (shape {image.shape})")
        do_rescale = rescale_for_pil_conversion(image)
        image = to_pil_image(image, do_rescale=do_rescale, input_data_format=input_data_format)
    resized = image.resize((int(width), int(height)), resample=resample, reducing_gap=reducing_gap)
    if not return_numpy:
        return resized
    out = np.array(resized)
    out = to_channel_dimension_format(out[..., None] if out.ndim == 2 else out, data_format, ChannelDimension.LAST)
    return rescale(out, 1 / 255) if do_rescale else out


_WARNED = set()


def convert_to_rgb(image, return_numpy=False, input_data_format=None):
    """Converts an image to RGB, compositing any transparency onto white, as transformers 5.x does.

    PIL images with an alpha band or a `transparency` entry (e.g. palette images) are converted to RGBA and
    alpha-composited onto white by Pillow. Arrays: 1 channel is repeated; 4 channels give
    `alpha * rgb + (1 - alpha) * white` (`white` = 255 and `np.round` for integer dtypes; 1.0 for float dtypes, which
    must be in [0, 1]); 3 channels pass through. Other channel counts raise `ValueError` (transformers passes them).

    Args:
        image (`PIL.Image.Image` or `np.ndarray`):
            The image to convert.
        return_numpy (`bool`, *optional*, defaults to `False`):
            Whether to return an array (the input layout, or (H, W, 3) for PIL) rather than a (deprecated) PIL image.
        input_data_format (`ChannelDimension` or `str`, *optional*):
            Layout of an array `image`; inferred (1, 3 or 4 channels) when not given.
    """
    if not return_numpy and "convert_to_rgb" not in _WARNED:
        _WARNED.add("convert_to_rgb")
        logger.warning("Please pass `return_numpy=True`, returning a PIL.Image.Image is deprecated.")
    if isinstance(image, PIL.Image.Image):
        rgb = pil_to_rgb(image)
        return np.array(rgb) if return_numpy else rgb
    if not isinstance(image, np.ndarray):
        raise ValueError(f"Input image must be either in PIL or numpy format but got {type(image)}")
    fmt = _layout(image, input_data_format, num_channels=(1, 3, 4))
    rgb = array_to_rgb(image, fmt)
    if return_numpy:
        return rgb
    return PIL.Image.fromarray(rgb if fmt == ChannelDimension.LAST else np.moveaxis(rgb, image.ndim - 3, -1))
