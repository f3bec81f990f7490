"""`AutoImageProcessor`: picks our class from a config's `image_processor_type`."""

from __future__ import annotations

import os

from ..config import ImageProcessingMixin
from .base import BaseImageProcessor
from .clip import BitImageProcessor, ChineseCLIPImageProcessor, CLIPImageProcessor, ViTHybridImageProcessor
from .convnext import ConvNextImageProcessor, LevitImageProcessor, PoolFormerImageProcessor
from .qwen2_vl import Qwen2VLImageProcessor
from .segmentation import BeitImageProcessor, MobileNetV2ImageProcessor, SegformerImageProcessor
from .vit import (
    BlipImageProcessor,
    DeiTImageProcessor,
    EfficientFormerImageProcessor,
    MobileNetV1ImageProcessor,
    PvtImageProcessor,
    SiglipImageProcessor,
    ViTImageProcessor,
)

IMAGE_PROCESSOR_CLASSES: dict[str, type[BaseImageProcessor]] = {
    cls.__name__: cls
    for cls in (
        CLIPImageProcessor,
        BitImageProcessor,
        ViTHybridImageProcessor,
        ChineseCLIPImageProcessor,
        ViTImageProcessor,
        PvtImageProcessor,
        DeiTImageProcessor,
        ConvNextImageProcessor,
        SiglipImageProcessor,
        BlipImageProcessor,
        LevitImageProcessor,
        PoolFormerImageProcessor,
        MobileNetV1ImageProcessor,
        MobileNetV2ImageProcessor,
        EfficientFormerImageProcessor,
        Qwen2VLImageProcessor,
        SegformerImageProcessor,
        BeitImageProcessor,
    )
}


def image_processor_class_for(config: dict) -> type[BaseImageProcessor]:
    """The class named by a config dict: `image_processor_type`, or a legacy `feature_extractor_type`.

    transformers' suffixes `Fast` (torchvision backend) and `Pil` name the same family and map to the same class.
    """
    name = config.get("image_processor_type")
    if name is None and config.get("feature_extractor_type") is not None:
        name = str(config["feature_extractor_type"]).replace("FeatureExtractor", "ImageProcessor")
    if name is None:
        raise ValueError(
            "The config has neither `image_processor_type` nor `feature_extractor_type`, so AutoImageProcessor "
            f"cannot choose a class; use one of the classes directly: {sorted(IMAGE_PROCESSOR_CLASSES)}"
        )
    if not isinstance(name, str):
        raise TypeError(f"image_processor_type must be a string, got {name!r}")
    base = name
    for suffix in ("Fast", "Pil"):
        if base.endswith(suffix) and base[: -len(suffix)] in IMAGE_PROCESSOR_CLASSES:
            base = base[: -len(suffix)]
    if base not in IMAGE_PROCESSOR_CLASSES:
        raise ValueError(
            f"Unsupported image_processor_type {name!r}; fused_imgproc supports {sorted(IMAGE_PROCESSOR_CLASSES)}"
        )
    return IMAGE_PROCESSOR_CLASSES[base]


class AutoImageProcessor:
    """Instantiates the fused_imgproc processor class named in a `preprocessor_config.json`."""

    def __init__(self):
        raise OSError("AutoImageProcessor is instantiated with AutoImageProcessor.from_pretrained(...)")

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> BaseImageProcessor:
        """Loads a config (file, directory or Hub repo id; same arguments as `ImageProcessingMixin.from_pretrained`)
        and returns an instance of the matching class."""
        hub_kwargs = {
            key: kwargs.pop(key)
            for key in ("cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder")
            if key in kwargs
        }
        config, kwargs = ImageProcessingMixin.get_image_processor_dict(
            pretrained_model_name_or_path, **hub_kwargs, **kwargs
        )
        return image_processor_class_for(config).from_dict(config, **kwargs)

    @staticmethod
    def from_dict(config: dict, **kwargs) -> BaseImageProcessor:
        return image_processor_class_for(config).from_dict(config, **kwargs)
