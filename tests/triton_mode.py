"""Where the Triton tests run: `DEVICE` is "cuda" on a GPU machine, "cpu" under the interpreter (see conftest)."""

import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
if not INTERPRETED and not torch.cuda.is_available():
    pytest.skip("no CUDA GPU and TRITON_INTERPRET is not 1", allow_module_level=True)
DEVICE = "cpu" if INTERPRETED else "cuda"
# Interpreter programs cost milliseconds each: keep its images small; on a GPU use the families' real sizes.
SMALL = INTERPRETED
