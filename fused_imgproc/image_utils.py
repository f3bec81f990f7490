"""Image types, channel layouts and input normalisation (PIL / numpy / torch -> a flat list of images).

Mirrors the parts of ``transformers.image_utils`` that preprocessing needs, without importing torch.
"""

from __future__ import annotations

import base64
import enum
import io
import os
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterable
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

from .limits import check_pixels

PILImageResampling = PIL.Image.Resampling

OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_DEFAULT_MEAN = [0.485, 0.456, 0.406]
IMAGENET_DEFAULT_STD = [0.229, 0.224, 0.225]
IMAGENET_STANDARD_MEAN = [0.5, 0.5, 0.5]
IMAGENET_STANDARD_STD = [0.5, 0.5, 0.5]


class ChannelDimension(str, enum.Enum):
    """Where the channel axis of an image is: ``"channels_first"`` (C, H, W) or ``"channels_last"`` (H, W, C)."""

    FIRST = "channels_first"
    LAST = "channels_last"

    @classmethod
    def _missing_(cls, value):
        raise ValueError(
            f"{value!r} is not a valid ChannelDimension, please select one of {[m.value for m in cls]}"
        )

    def __str__(self) -> str:
        return self.value


def is_pil_image(obj: Any) -> bool:
    return isinstance(obj, PIL.Image.Image)


def is_torch_tensor(obj: Any) -> bool:
    """True for a ``torch.Tensor``, without importing torch when the caller never did."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.Tensor)


def is_valid_image(obj: Any) -> bool:
    return is_pil_image(obj) or isinstance(obj, np.ndarray) or is_torch_tensor(obj)


def infer_channel_dimension_format(
    image: np.ndarray, num_channels: int | tuple[int, ...] | None = None
) -> ChannelDimension:
    """Infers the channel dimension format of ``image``.

    Args:
        image (`np.ndarray`):
            The image (3-D), batch (4-D) or batch of videos (5-D) to infer the channel dimension of.
        num_channels (`int` or `tuple[int, ...]`, *optional*, defaults to `(1, 3)`):
            The channel counts to look for. The first axis is checked before the last one; when both match,
            channels-first wins.

    Returns:
        `ChannelDimension`: the inferred layout.
    """
    num_channels = num_channels if num_channels is not None else (1, 3)
    num_channels = (num_channels,) if isinstance(num_channels, int) else tuple(num_channels)
    if image.ndim == 3:
        first_dim, last_dim = 0, 2
    elif image.ndim == 4:
        first_dim, last_dim = 1, 3
    elif image.ndim == 5:
        first_dim, last_dim = 2, 4
    else:
        raise ValueError(f"Unsupported number of image dimensions: {image.ndim}")
    if image.shape[first_dim] in num_channels:
        return ChannelDimension.FIRST
    if image.shape[last_dim] in num_channels:
        return ChannelDimension.LAST
    raise ValueError(
        f"Unable to infer channel dimension format of an image of shape {tuple(image.shape)}: neither its first "
        f"nor its last axis has one of {num_channels} channels; pass `input_data_format` if the layout is unusual"
    )


def get_channel_dimension_axis(image: np.ndarray, input_data_format: ChannelDimension | str | None = None) -> int:
    """The axis of ``image`` that holds its channels."""
    if input_data_format is None:
        input_data_format = infer_channel_dimension_format(image)
    input_data_format = ChannelDimension(input_data_format)
    if input_data_format == ChannelDimension.FIRST:
        return image.ndim - 3
    return image.ndim - 1


def get_image_size(image: np.ndarray, channel_dim: ChannelDimension | str | None = None) -> tuple[int, int]:
    """``(height, width)`` of a 3-D image (or of the trailing image of a batch)."""
    if channel_dim is None:
        channel_dim = infer_channel_dimension_format(image)
    channel_dim = ChannelDimension(channel_dim)
    if channel_dim == ChannelDimension.FIRST:
        return int(image.shape[-2]), int(image.shape[-1])
    return int(image.shape[-3]), int(image.shape[-2])


def _describe(obj: Any) -> str:
    shape = getattr(obj, "shape", None)
    return f"{type(obj).__module__}.{type(obj).__qualname__}" + (f" of shape {tuple(shape)}" if shape else "")


def make_flat_list_of_images(images: Any) -> list[Any]:
    """Flattens the accepted input structures into a list of single images.

    Accepted: one image (PIL image, 2-D or 3-D array/tensor), a 4-D array/tensor (a batch), or a list/tuple of
    those (nested one level, as transformers allows). Anything else raises ``TypeError``/``ValueError`` naming the
    problem.
    """
    if is_pil_image(images):
        return [images]
    if isinstance(images, np.ndarray) or is_torch_tensor(images):
        if images.ndim == 3:
            return [images]
        if images.ndim == 4:
            if images.shape[0] == 0:
                raise ValueError("Received an empty batch: a 4-D input with 0 images")
            return list(images)
        raise ValueError(
            f"Expected an image with 3 dimensions (H, W, C) or (C, H, W), or a batch with 4, got an array of shape "
            f"{tuple(images.shape)}; add a channel axis to a 2-D grayscale array"
        )
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("Received an empty list of images: there is nothing to process")
        flat: list[Any] = []
        for item in images:
            if isinstance(item, (list, tuple)):
                flat.extend(make_flat_list_of_images(item))
            elif is_pil_image(item):
                flat.append(item)
            elif isinstance(item, np.ndarray) or is_torch_tensor(item):
                if item.ndim == 4:
                    flat.extend(make_flat_list_of_images(item))
                elif item.ndim == 3:
                    flat.append(item)
                else:
                    raise ValueError(
                        f"Expected each image to have 3 dimensions (H, W, C) or (C, H, W), got one of shape "
                        f"{tuple(item.shape)}"
                    )
            else:
                raise TypeError(
                    f"Invalid image type {_describe(item)}: expected a PIL.Image.Image, a numpy.ndarray or a "
                    "torch.Tensor"
                )
        return flat
    if isinstance(images, str):
        raise TypeError(
            "Got a string where an image was expected: load the file first (e.g. PIL.Image.open(path)); URLs and "
            "paths are not fetched"
        )
    raise TypeError(
        f"Invalid image type {_describe(images)}: expected a PIL.Image.Image, a numpy.ndarray, a torch.Tensor, or "
        "a list of them"
    )


def to_numpy(image: Any) -> np.ndarray:
    """A CPU torch tensor or a numpy array as a numpy array (no copy where possible)."""
    if isinstance(image, np.ndarray):
        return image
    if is_torch_tensor(image):
        if image.device.type != "cpu":
            raise ValueError(
                f"Got a torch tensor on device {image.device}: the numpy backend needs CPU tensors; pass "
                f"device='{image.device}' to preprocess it with the Triton backend"
            )
        if image.dtype.is_complex:
            raise TypeError(f"Complex tensors are not images (got dtype {image.dtype})")
        import torch

        if image.dtype == torch.bfloat16:
            image = image.float()
        return image.detach().numpy()
    raise TypeError(f"Expected a numpy array or a torch tensor, got {_describe(image)}")


def load_image(image: str | PIL.Image.Image, timeout: float | None = None) -> PIL.Image.Image:
    """Loads an image as an RGB PIL image with its EXIF orientation applied (transformers' `load_image`).

    Args:
        image (`str` or `PIL.Image.Image`):
            A local path, a `file://` URL, an `http://`/`https://` URL (fetched through huggingface_hub's HTTP session,
            so its proxy and header settings apply), a `data:image/...;base64,` URI or a bare base64 string; or a PIL
            image.
        timeout (`float`, *optional*):
            Timeout of a URL request, in seconds.
    """
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            from huggingface_hub import get_session

            response = get_session().get(image, timeout=timeout, follow_redirects=True)
            response.raise_for_status()
            image = PIL.Image.open(io.BytesIO(response.content))
        elif image.startswith("file://"):
            path = urllib.request.url2pathname(urllib.parse.urlparse(image).path)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"No such image file: {path!r} (from {image!r})")
            image = PIL.Image.open(path)
        elif os.path.isfile(image):
            image = PIL.Image.open(image)
        else:
            data = image.split(",", 1)[1] if image.startswith("data:image/") and "," in image else image
            try:
                image = PIL.Image.open(io.BytesIO(base64.b64decode(data)))  # lenient, as transformers' decodebytes
            except Exception as error:  # noqa: BLE001 (any decoding failure means the string was not an image)
                shown = image if len(image) <= 80 else image[:77] + "..."
                raise ValueError(
                    "Incorrect image source. Must be a valid URL starting with `http://` or `https://`, a `file://` "
                    f"URL, a valid path to an image file, or a base64 encoded string. Got {shown!r}. Failed with "
                    f"{error}"
                ) from None
    elif not isinstance(image, PIL.Image.Image):
        raise TypeError(
            "Incorrect format used for image. Should be an url linking to an image, a base64 string, a local path, "
            f"or a PIL image; got {type(image).__name__}."
        )
    image = PIL.ImageOps.exif_transpose(image)
    return image.convert("RGB")


def is_iterable_of_numbers(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, dict))


def as_float(value, name: str) -> float:
    """`float(value)` for a config or call parameter, with a `ValueError` naming it (not an `OverflowError`) when the
    value does not fit a float, e.g. `10**400`."""
    try:
        return float(value)
    except OverflowError:
        digits = len(str(abs(int(value)))) if isinstance(value, int) else None
        shown = f"an int of {digits} digits" if digits is not None else repr(value)
        raise ValueError(f"{name} is too large to be a float: got {shown}") from None


_BLOCK_ELEMENTS = 2**22  # elementwise checks run on blocks of at most this many elements (bounded temporaries)


def _blocks(array: np.ndarray):
    """Views covering every distinct value of `array` in blocks of at most `_BLOCK_ELEMENTS` elements, so a check
    of a large (or broadcast, zero-stride) image allocates kilobytes, not a copy of the image. An axis of stride 0
    repeats one value, so only its first index is visited."""
    index = tuple(slice(0, 1) if stride == 0 and size > 1 else slice(None)
                  for stride, size in zip(array.strides, array.shape, strict=True))
    stack = [array[index]]
    while stack:
        view = stack.pop()
        if view.size <= _BLOCK_ELEMENTS or view.ndim == 1:
            yield view
            continue
        rows = max(1, _BLOCK_ELEMENTS // (view.size // view.shape[0]))  # whole slices of the first axis per block
        if rows == 1:
            stack.extend(view[i] for i in range(view.shape[0] - 1, -1, -1))  # each slice may still be too big
        else:
            stack.extend(view[i:i + rows] for i in range(0, view.shape[0], rows))


def all_finite(array: np.ndarray) -> bool:
    """`np.isfinite(array).all()` in bounded memory (True for integer arrays)."""
    if not np.issubdtype(array.dtype, np.inexact):
        return True
    return all(np.isfinite(block).all() for block in _blocks(array))


def check_finite(image: np.ndarray) -> None:
    if not all_finite(image):
        raise ValueError("The image contains NaN or infinite values, which cannot be converted to uint8 for PIL")


def rescale_for_pil_conversion(image: np.ndarray) -> bool:
    """Whether `image` must be multiplied by 255 before its uint8 cast: transformers' rule, plus a NaN/inf check.

    uint8: no. All values `np.allclose` to `image.astype(int)` (truncation; 0/1 masks and all-zero floats count):
    no, if in [0, 255]. Otherwise all in [0, 1]: yes. Anything else: `ValueError`.
    """
    if image.dtype == np.uint8:
        return False
    check_finite(image)
    blocks = list(_blocks(image))  # the same checks as transformers', block by block (bounded temporaries)
    low = min(block.min() for block in blocks)
    high = max(block.max() for block in blocks)
    if all(np.allclose(block, block.astype(int)) for block in blocks):
        if low >= 0 and high <= 255:
            return False
        bounds = "[0, 255]"
    elif low >= 0 and high <= 1:
        return True
    else:
        bounds = "[0, 1]"
    raise ValueError(f"The image to be converted to a PIL image contains values outside the range {bounds}, got "
                     f"[{low}, {high}] which cannot be converted to uint8.")


# --- one image, ready for the plan -------------------------------------------------------------------------------

# PIL modes whose np.array() -> Image.fromarray() round trip is exact, so Pillow can resize the image directly.
_DIRECT_PIL_MODES = ("L", "RGB", "RGBA")


class PreparedImage:
    """One input image after RGB conversion and layout normalisation (transformers' `process_image`).

    Holds exactly one of: a PIL image that Pillow can resize as it is (`pil`); an array in (H, W, C) layout
    (`array`, possibly a strided view of the caller's data); or, for the Triton backend, a torch tensor already on
    the target device as an (H, W, C) view (`tensor`), which is read in place. `height`, `width` and `channels`
    describe all three.
    """

    __slots__ = ("pil", "array", "tensor", "height", "width", "channels")

    def __init__(self, pil=None, array=None, tensor=None):
        self.pil, self.array, self.tensor = pil, array, tensor
        if pil is not None:
            self.width, self.height = pil.size
            self.channels = len(pil.getbands())
        else:
            data = array if array is not None else tensor
            self.height, self.width, self.channels = (int(v) for v in data.shape)

    @property
    def dtype(self) -> np.dtype:
        if self.pil is not None:
            return np.dtype(np.uint8)
        if self.tensor is not None:
            return np.dtype(str(self.tensor.dtype).removeprefix("torch."))
        return self.array.dtype

    def hwc(self) -> np.ndarray:
        if self.array is not None:
            return self.array
        arr = np.asarray(self.pil)
        return arr[..., None] if arr.ndim == 2 else arr


def pil_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    """transformers' `convert_to_rgb` for PIL images: alpha is composited onto white."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = PIL.Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def array_to_rgb(image: np.ndarray, input_data_format=None) -> np.ndarray:
    """transformers' `convert_to_rgb` for arrays: returns the image in its input layout with 3 channels.

    1 channel is repeated; 4 channels give `alpha * rgb + (1 - alpha) * white` (`white` = 255 with `np.round` for
    integer dtypes; 1.0 for floats, which must lie in [0, 1]); 3 channels pass through; other counts raise.
    """
    if input_data_format is None:
        input_data_format = infer_channel_dimension_format(image, num_channels=(1, 3, 4))
    channel_axis = -1 if ChannelDimension(input_data_format) == ChannelDimension.LAST else image.ndim - 3
    image = np.moveaxis(image, channel_axis, -1)
    channels = image.shape[-1]
    if channels == 1:
        image = np.repeat(image, 3, axis=-1)
    elif channels == 4:
        floating = np.issubdtype(image.dtype, np.floating)
        if floating and (image.min() < 0.0 or image.max() > 1.0):
            raise ValueError(
                "The image to be converted to RGB contains values outside the range [0, 1], got "
                f"[{image.min()}, {image.max()}]."
            )
        white = 1.0 if floating else 255
        alpha = image[..., 3:4] / white
        composite = alpha * image[..., :3] + (1 - alpha) * white
        image = composite.astype(image.dtype) if floating else np.round(composite).astype(image.dtype)
    elif channels != 3:
        raise ValueError(f"Images must have 1, 3 or 4 channels, got {channels} (an array of shape {image.shape})")
    return np.moveaxis(image, -1, channel_axis)


def prepare_image(image: Any, do_convert_rgb: bool, input_data_format=None) -> PreparedImage:
    """Converts one input image as transformers 5.x's PIL backend does, without copying pixel data it need not copy.

    PIL images in L/RGB/RGBA mode (after RGB conversion when asked) stay PIL images, so the resize reads them
    directly; everything else becomes an (H, W, C) view.
    """
    prepared = _prepare(image, do_convert_rgb, input_data_format)
    if prepared.height == 0 or prepared.width == 0:
        raise ValueError(f"Got an empty image of size {prepared.height}x{prepared.width}: every side must be at least 1")
    if prepared.channels not in (1, 3, 4):
        raise ValueError(
            f"Images must have 1, 3 or 4 channels, got {prepared.channels} (a {prepared.height}x{prepared.width} "
            "image); pass `input_data_format` if the channel axis was guessed wrong"
        )
    return prepared


def _image_hw(array: np.ndarray, input_data_format) -> tuple[int, int]:
    """(height, width) of a 3-D array: the layout given, else inferred; the two largest axes when neither works
    (the error about the channel count comes later, with its own message)."""
    try:
        fmt = input_data_format if input_data_format is not None else infer_channel_dimension_format(array, (1, 3, 4))
        return get_image_size(array, fmt)
    except ValueError:
        return tuple(sorted(array.shape)[1:])


def _prepare(image: Any, do_convert_rgb: bool, input_data_format) -> PreparedImage:
    if is_pil_image(image):
        check_pixels(image.height, image.width, f"The input image ({image.mode})")
        if do_convert_rgb:
            return PreparedImage(pil=pil_to_rgb(image))
        if image.mode in _DIRECT_PIL_MODES:
            return PreparedImage(pil=image)
        array = np.array(image)
        if not all_finite(array):
            raise ValueError("The image contains NaN or infinite values")
        return PreparedImage(array=array[..., None] if array.ndim == 2 else array)
    array = to_numpy(image)
    if array.ndim != 3:
        raise ValueError(f"Expected an image with 3 dimensions, got an array of shape {tuple(array.shape)}")
    if 0 in array.shape:
        raise ValueError(f"Got an empty image of shape {tuple(array.shape)}: every side must be at least 1")
    if array.dtype == np.bool_ or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"Image arrays must hold integers or floats, got dtype {array.dtype}")
    # Before any pass over the pixels (a broadcast view may stand for terabytes): its size, then its values.
    check_pixels(*_image_hw(array, input_data_format), f"The input image of shape {tuple(array.shape)}")
    if not all_finite(array):
        raise ValueError("The image contains NaN or infinite values")
    if do_convert_rgb:
        array = array_to_rgb(array, input_data_format)
    if input_data_format is None:
        input_data_format = infer_channel_dimension_format(array, num_channels=(1, 3, 4))
    if ChannelDimension(input_data_format) == ChannelDimension.FIRST:
        array = np.moveaxis(array, 0, -1)
    return PreparedImage(array=array)
