"""fused_imgproc: fused, bit-exact image preprocessing for vision models."""

__version__ = "0.1.0"
