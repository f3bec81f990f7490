"""fused_imgproc: fused, bit-exact image preprocessing for vision models.

A drop-in for transformers' image processors: swap the import, keep the code.

    from fused_imgproc import AutoImageProcessor
    processor = AutoImageProcessor.from_pretrained("openai/clip-vit-base-patch32")
    pixel_values = processor(images, return_tensors="np").pixel_values

The package imports without torch and triton.
"""

from .batch import BatchFeature, TensorType
from .config import ImageProcessingMixin
from .image_utils import ChannelDimension, PILImageResampling, infer_channel_dimension_format
from .limits import Limits, get_limits, set_limits
from .processors import *  # noqa: F401,F403 (one class per family; listed in processors.__all__)
from .processors import __all__ as _processor_names
from .transforms import (
    center_crop,
    get_resize_output_image_size,
    get_size_dict,
    normalize,
    rescale,
    resize,
    to_channel_dimension_format,
)

__version__ = "0.1.0"

__all__ = [
    "BatchFeature",
    "ChannelDimension",
    "ImageProcessingMixin",
    "Limits",
    "PILImageResampling",
    "TensorType",
    "center_crop",
    "get_limits",
    "get_resize_output_image_size",
    "get_size_dict",
    "infer_channel_dimension_format",
    "normalize",
    "rescale",
    "resize",
    "set_limits",
    "to_channel_dimension_format",
    *_processor_names,
]
