"""`fused-imgproc info`: versions, the available backends, the GPU and the bundled samples."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from .. import __version__
from ..backends import native
from .common import triton_status, version_of
from .files import SAMPLES_DIR, sample_paths

PACKAGE_DIR = Path(__file__).resolve().parents[1]


def add_info_arguments(parser) -> None:
    """`info` takes no options."""
    parser.set_defaults(func=info_command)


def info_command(args) -> int:
    print(f"fused_imgproc {__version__} ({PACKAGE_DIR})")
    print(f"Python {platform.python_version()} ({platform.python_implementation()}, {platform.system()} "
          f"{platform.machine()}, {os.cpu_count()} CPUs)")
    for name in ("numpy", "Pillow", "huggingface_hub", "tqdm", "torch", "triton", "transformers", "safetensors"):
        print(f"{name + ':':17s}{version_of(name)}")
    _, triton_text, gpu = triton_status()
    print("backends:")
    print(f"  numpy:  available (CPU; {native.describe()})")
    print(f"  triton: {triton_text}")
    print(f"GPU: {gpu or 'none'}")
    print(f"samples: {SAMPLES_DIR} ({len(sample_paths())} images)")
    return 0
