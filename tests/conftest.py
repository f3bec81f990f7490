"""Test modes (docs/BEHAVIOUR.md section 10): with a CUDA GPU the Triton tests run on it; without one they run the
same kernels through the Triton interpreter on CPU tensors. TRITON_INTERPRET must be set before any kernel module is imported,
so it is decided here, before the test modules are collected."""

import os

try:
    import torch

    HAS_CUDA = torch.cuda.is_available()
except ImportError:  # the package itself needs no torch; the Triton tests skip without it
    HAS_CUDA = False

if not HAS_CUDA:
    os.environ.setdefault("TRITON_INTERPRET", "1")
