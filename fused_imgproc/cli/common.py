"""Helpers shared by the `fused-imgproc` subcommands: the user-error type, argument types, versions, the machine,
the Triton backend's status, and turning `pixel_values` into host arrays."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import os
import platform
import re

import numpy as np

PROG = "fused-imgproc"
DEVICE_FORMS = "cpu, cuda or cuda:N"


class CLIError(Exception):
    """A user error: reported as `fused-imgproc: error: <message>`, exit status 2, never a traceback."""


def describe_error(error: BaseException) -> str:
    """A one-line description of `error` for a message: an `OSError`'s text (e.g. "Permission denied"), else its
    message, followed by its type where the message does not name it."""
    message = str(error).strip() or type(error).__name__
    if isinstance(error, OSError) and error.strerror:
        message = error.strerror
    return message if type(error).__name__ in message else f"{message} ({type(error).__name__})"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def device_name(text: str) -> str:
    """argparse type of `--device`: `cpu`, `cuda` or `cuda:N` (whether that GPU exists is checked later)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected {DEVICE_FORMS} (N: a GPU index), got {text!r}")
    return text


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


def cpu_model() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what `platform` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def machine_description(gpu: str | None) -> str:
    """One line naming this machine: CPU model, CPU count, GPU."""
    return f"{cpu_model()} ({os.cpu_count()} CPUs), GPU: {gpu or 'none'}"


def to_numpy(values) -> np.ndarray:
    """`pixel_values` as a host numpy array; bfloat16 as its uint16 bit patterns."""
    if isinstance(values, np.ndarray):
        return values
    import torch

    values = values.detach().cpu()
    if values.dtype == torch.bfloat16:
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy()
