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


def count_launches(monkeypatch) -> list[str]:
    """Records every kernel launch of the Triton backend from now on ("resample_out", "crop_normalize_out") in the
    returned list, the launches still running."""
    from fused_imgproc.backends import triton as triton_backend

    calls = []
    for name, launch in (("resample_out", "resample_into"), ("crop_normalize_out", "crop_normalize_into")):
        real = getattr(triton_backend.ops, launch)
        monkeypatch.setattr(triton_backend.ops, launch,
                            lambda *a, _f=real, _n=name, **k: (calls.append(_n), _f(*a, **k)))
    return calls
