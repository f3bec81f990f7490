"""Image processor classes, one per model family, named like transformers'."""

from .auto import IMAGE_PROCESSOR_CLASSES, AutoImageProcessor
from .base import BackendUnavailableError, BaseImageProcessor
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

__all__ = ["AutoImageProcessor", "BackendUnavailableError", "BaseImageProcessor", "IMAGE_PROCESSOR_CLASSES"] + [
    name for name in IMAGE_PROCESSOR_CLASSES
]
