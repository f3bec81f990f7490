"""CLIP-style families: shortest edge -> center crop, OpenAI CLIP statistics, RGB conversion."""

from ..image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from .base import BaseImageProcessor


class CLIPImageProcessor(BaseImageProcessor):
    """CLIP: shortest edge 224 (bicubic), center crop 224, OpenAI CLIP mean/std."""

    resample = PILImageResampling.BICUBIC
    image_mean = OPENAI_CLIP_MEAN
    image_std = OPENAI_CLIP_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    do_normalize = True
    do_convert_rgb = True

    def __init__(self, **kwargs):
        # KOSMOS-2 configs: a square resize to the shortest edge.
        if kwargs.pop("use_square_size", False):
            edge = (kwargs.get("size") or self.size)
            edge = edge.get("shortest_edge", 224) if isinstance(edge, dict) else edge
            kwargs["size"] = {"height": edge, "width": edge}
        super().__init__(**kwargs)


class BitImageProcessor(CLIPImageProcessor):
    """BiT (also the image processor of DINOv2 checkpoints): CLIP's defaults."""

    def __init__(self, **kwargs):
        BaseImageProcessor.__init__(self, **kwargs)


class ViTHybridImageProcessor(BitImageProcessor):
    """ViT-hybrid (removed from transformers 5): BiT's defaults."""


class ChineseCLIPImageProcessor(BitImageProcessor):
    """Chinese-CLIP: CLIP's defaults."""
