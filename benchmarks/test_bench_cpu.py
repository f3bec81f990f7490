"""CPU speed: our CLIP processor (numpy backend, with the CPU resampler) against transformers' CLIP processors, same
run: the PIL backend (`CLIPImageProcessorPil`, the reference our outputs equal bit for bit) and, when torchvision is
installed, the torchvision backend (`CLIPImageProcessor` in transformers 5, not exact: about one uint8 level off),
fed numpy arrays as we are and, its fastest input, uint8 CHW tensors.

    make bench        # or: .venv/bin/python -m pytest benchmarks --benchmark-only

Each input is one pytest-benchmark group; compare the medians within a group. Our case also times the reference
processors right after itself and records the same-run ratios in its `extra_info` (`ratio_vs_transformers_pil`,
`ratio_vs_transformers_torchvision`, `..._tensor_in`: above 1 we are faster). Our case without the compiled
resampler (`fused_imgproc_pillow`, as where it cannot be built) shows what it brings. Nothing here asserts a time:
the equality checks only make sure a speed is never that of a wrong answer.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import PIL.Image
import pytest
from host_mode import record_ratio

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from fused_imgproc import CLIPImageProcessor
from fused_imgproc.backends import native

HAS_TORCHVISION = importlib.util.find_spec("torchvision") is not None
RNG = np.random.default_rng(0)
ONE = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
ONE_PIL = PIL.Image.fromarray(ONE)
LARGE = RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
MIXED = [RNG.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in RNG.integers(400, 801, (32, 2))]

INPUTS = {"one_480x640_numpy": ONE, "one_480x640_pil": ONE_PIL, "one_1080x1920_numpy": LARGE,
          "batch32_mixed_400_800_numpy": MIXED}
OURS = CLIPImageProcessor()
REFERENCES = {"transformers_pil": transformers.CLIPImageProcessorPil()}
if HAS_TORCHVISION:
    REFERENCES["transformers_torchvision"] = transformers.CLIPImageProcessor()
REFERENCE_REPEATS = 7  # each reference's calls timed right after ours, for our same-run ratios


def _tensor_in(images):
    """The torchvision backend's fastest input: uint8 CHW tensors (made outside the timing)."""
    import torch

    as_list = images if isinstance(images, list) else [images]
    tensors = [torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(2, 0, 1))) for x in as_list]
    return tensors if isinstance(images, list) else tensors[0]


def _calls(case: str) -> dict:
    """Every implementation's call on the case's input, returning pixel values as a numpy array."""
    images = INPUTS[case]
    calls = {name: (lambda p=processor: np.asarray(p(images, return_tensors="np").pixel_values))
             for name, processor in {"fused_imgproc": OURS, **REFERENCES}.items()}
    if HAS_TORCHVISION:
        tensors = _tensor_in(images)
        calls["transformers_torchvision_tensor_in"] = lambda: np.asarray(
            REFERENCES["transformers_torchvision"](tensors, return_tensors="pt").pixel_values)
    return calls


@pytest.fixture(scope="module")
def reference_outputs():
    return {case: REFERENCES["transformers_pil"](x, return_tensors="np").pixel_values for case, x in INPUTS.items()}


def _pillow_only(monkeypatch) -> None:
    monkeypatch.setattr(native, "module", lambda: None)


IMPLS = ["fused_imgproc", "fused_imgproc_pillow", "transformers_pil", "transformers_torchvision",
         "transformers_torchvision_tensor_in"]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("case", list(INPUTS))
def test_clip_cpu(benchmark, monkeypatch, reference_outputs, case, impl):
    if impl.startswith("transformers_torchvision") and not HAS_TORCHVISION:
        pytest.skip("torchvision is not installed")
    benchmark.group = f"CLIP {case}"
    calls = _calls(case)
    if impl == "fused_imgproc_pillow":
        _pillow_only(monkeypatch)
        impl = "fused_imgproc"
    result = benchmark(calls[impl])
    expected = reference_outputs[case]
    if impl.startswith("transformers_torchvision"):  # not exact: only the shape, and the size of its error
        assert result.shape == expected.shape
        benchmark.extra_info["max_abs_difference"] = float(np.abs(result - expected).max())
        return
    assert np.array_equal(result, expected)
    if impl == "fused_imgproc" and native.module() is not None:
        for name in calls:
            if name != "fused_imgproc":
                record_ratio(benchmark, calls[name], REFERENCE_REPEATS, name)
