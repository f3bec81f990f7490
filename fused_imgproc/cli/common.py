"""Helpers shared by the `fused-imgproc` subcommands: the user-error type, argument types, versions, the Triton
backend's status, loading the processor, and turning `pixel_values` into host arrays."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os

import numpy as np

PROG = "fused-imgproc"
DEFAULT_CONFIG = "CLIPImageProcessor (bundled default CLIP config: shortest edge 224, bicubic, center crop 224)"


class CLIError(Exception):
    """A user error: reported as `fused-imgproc: error: <message>`, exit status 2, never a traceback."""


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def version_of(distribution: str) -> str:
    """The installed version of `distribution`, or "not installed"."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def triton_status() -> tuple[bool, str, str | None]:
    """(usable on a GPU, a one-line description, the GPU's name or None). Imports torch when it is installed."""
    try:
        import torch
    except ImportError:
        return False, "unavailable: torch is not installed; pip install 'fused-imgproc[gpu]'", None
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    if importlib.util.find_spec("triton") is None:
        return False, "unavailable: triton is not installed; pip install 'fused-imgproc[gpu]'", gpu
    if os.environ.get("TRITON_INTERPRET") == "1":
        return False, "interpreter only (TRITON_INTERPRET=1: backend='triton' with device='cpu', for testing)", gpu
    if gpu is None:
        return False, "unavailable: torch sees no CUDA GPU", None
    return True, f"available on {gpu} (device='cuda')", gpu


def load_processor(config: str | None):
    """`(processor, a description of where its config came from)`; `None` gives the bundled CLIP defaults."""
    from ..processors import AutoImageProcessor, CLIPImageProcessor

    if config is None:
        return CLIPImageProcessor(), DEFAULT_CONFIG
    try:
        processor = AutoImageProcessor.from_pretrained(config)
    except (OSError, ValueError, TypeError) as error:
        raise CLIError(f"cannot load --config {config!r}: {error}") from None
    return processor, f"{type(processor).__name__} from {config}"


def to_numpy(values) -> np.ndarray:
    """`pixel_values` as a host numpy array; bfloat16 as its uint16 bit patterns."""
    if isinstance(values, np.ndarray):
        return values
    import torch

    values = values.detach().cpu()
    if values.dtype == torch.bfloat16:
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy()
