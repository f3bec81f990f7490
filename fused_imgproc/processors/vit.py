"""Families that warp to a fixed size, optionally followed by a center crop."""

from ..image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    PILImageResampling,
)
from .base import BaseImageProcessor


class ViTImageProcessor(BaseImageProcessor):
    """ViT: warp to 224x224 (bilinear), mean/std 0.5."""

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True


class PvtImageProcessor(BaseImageProcessor):
    """PVT: warp to 224x224 (bicubic in transformers 5), ImageNet mean/std."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    do_resize = True
    do_rescale = True
    do_normalize = True


class DeiTImageProcessor(BaseImageProcessor):
    """DeiT: warp to 256x256 (bicubic), center crop 224, mean/std 0.5."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 256, "width": 256}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True


class SiglipImageProcessor(BaseImageProcessor):
    """SigLIP: warp to 224x224 (bicubic), mean/std 0.5, RGB conversion."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    default_to_square = False
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True


class BlipImageProcessor(BaseImageProcessor):
    """BLIP: warp to 384x384 (bicubic), OpenAI CLIP mean/std, RGB conversion."""

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"height": 384, "width": 384}
    do_resize = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True


class EfficientFormerImageProcessor(BaseImageProcessor):
    """EfficientFormer (removed from transformers 5): warp to 224x224 (bicubic), center crop 224, ImageNet mean/std."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 224, "width": 224}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True


class MobileNetV1ImageProcessor(BaseImageProcessor):
    """MobileNetV1: shortest edge 256 (bilinear), center crop 224, mean/std 0.5."""

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"shortest_edge": 256}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
