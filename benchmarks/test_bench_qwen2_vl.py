"""Qwen2-VL speed: our Qwen2VLImageProcessor (numpy backend) against transformers' Qwen2VLImageProcessorPil, same
run, and the host work of its Triton path, with the Qwen2.5-VL-7B preprocessor config.

    make bench        # or: .venv/bin/python -m pytest benchmarks/test_bench_qwen2_vl.py --benchmark-only

CPU: each pair (ours, transformers) is one pytest-benchmark group; compare the medians within a group. Our case
also times transformers' processor right after itself (5 calls) and reports, in `extra_info`, both medians,
`ratio_vs_transformers_pil` (transformers' median / ours: above 1 ours is faster) and `ratio_of_minimums`. The
images are the bundled sample photos (`landscape.jpg`, `portrait.png`) resized and cropped to each size, not noise.

Host work: the Triton backend under Triton's interpreter on CPU tensors with every kernel launch replaced by a
no-op, as in test_bench_host.py: what is timed is what a GPU call does on the host. The call repeats (the server
steady state, answered by the processor's call cache). Each case reports its median in microseconds and, for host
images, the ratio to a plain single-threaded copy of the image's bytes (`ratio_to_copy`), measured in the same run.

Nothing here asserts a time: the equality checks only make sure a speed is never that of a wrong answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import PIL.Image
import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# The host-work cases need torch and triton, no GPU and the interpreter (host_mode.py). Unlike test_bench_host.py
# the module is not skipped as a whole: the CPU cases run everywhere.
try:
    import torch
except ImportError:
    torch = None
from copy_floor import median_copy_seconds
from host_mode import host_skip_reason, record_ratio

HOST_SKIP = host_skip_reason(torch)

import fused_imgproc as fi

if HOST_SKIP is None:
    from triton.runtime import interpreter

    from fused_imgproc.backends import triton as triton_backend  # noqa: F401

# Qwen2.5-VL-7B-Instruct's preprocessor_config.json (less `image_processor_type`), for both processors.
QWEN25_VL = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
             "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}

SAMPLES = Path(fi.__file__).resolve().parent / "samples"
with PIL.Image.open(SAMPLES / "landscape.jpg") as _landscape, PIL.Image.open(SAMPLES / "portrait.png") as _portrait:
    PHOTOS = {"landscape": _landscape.convert("RGB"), "portrait": _portrait.convert("RGB")}


def photo(height: int, width: int) -> np.ndarray:
    """A photo-like `(height, width, 3)` uint8 array: the landscape sample (the portrait one for a portrait size)
    resized (bicubic) to cover the size, then center-cropped to it."""
    source = PHOTOS["landscape" if width >= height else "portrait"]
    scale = max(height / source.height, width / source.width)
    covered = (max(width, round(source.width * scale)), max(height, round(source.height * scale)))
    resized = source.resize(covered, PIL.Image.Resampling.BICUBIC)
    left, top = (covered[0] - width) // 2, (covered[1] - height) // 2
    return np.array(resized.crop((left, top, left + width, top + height)))


RNG = np.random.default_rng(0)
# Heights 480..1080, widths 640..1920 (every fourth image turned to portrait).
MIXED_SIZES = [(int(h), int(w)) if k % 4 != 3 else (int(w), int(h))
               for k, (h, w) in enumerate(zip(RNG.integers(480, 1081, 8), RNG.integers(640, 1921, 8)))]
ONE = photo(1080, 1920)
BATCH = [photo(height, width) for height, width in MIXED_SIZES]
SMALL = photo(480, 640)

IMPLEMENTATIONS = {
    "fused_imgproc": fi.Qwen2VLImageProcessor(**QWEN25_VL),
    "transformers": transformers.Qwen2VLImageProcessorPil(**QWEN25_VL),
}
INPUTS = {"one_1080x1920_numpy": ONE, "batch8_mixed_numpy": BATCH}
REFERENCE_REPEATS = 5  # transformers' calls timed right after ours, for our ratio


def _outputs(processor, images) -> tuple[np.ndarray, np.ndarray]:
    result = processor(images, return_tensors="np")
    return result["pixel_values"], result["image_grid_thw"]


@pytest.fixture(scope="module")
def reference_outputs():
    return {name: _outputs(IMPLEMENTATIONS["transformers"], x) for name, x in INPUTS.items()}


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", list(INPUTS))
def test_qwen2_vl_cpu(benchmark, reference_outputs, case, impl):
    benchmark.group = f"Qwen2.5-VL {case}"
    processor, images = IMPLEMENTATIONS[impl], INPUTS[case]
    pixel_values, grid_thw = benchmark(lambda: _outputs(processor, images))
    expected_values, expected_grid = reference_outputs[case]
    assert pixel_values.dtype == expected_values.dtype and np.array_equal(pixel_values, expected_values)
    assert grid_thw.dtype == expected_grid.dtype and np.array_equal(grid_thw, expected_grid)
    if impl == "fused_imgproc":
        record_ratio(benchmark, lambda: _outputs(IMPLEMENTATIONS["transformers"], images), REFERENCE_REPEATS)


# Host work of the Triton path (launches stubbed), as in test_bench_host.py.
host_work = pytest.mark.skipif(HOST_SKIP is not None, reason=HOST_SKIP or "")
CALL = {"return_tensors": "pt", "backend": "triton", "device": "cpu",
        "dtype": torch.bfloat16 if torch is not None else None}


@pytest.fixture
def no_launch(monkeypatch):
    """Kernel launches become no-ops: what remains is the host work of a GPU call."""
    monkeypatch.setattr(interpreter.InterpretedFunction, "run", lambda self, *args, **kwargs: None)


def _host_case(benchmark, image, copied=None):
    """Time the repeated call of `image`, check its shape against the numpy backend's, report (median, copy floor)."""
    benchmark.group = "Qwen2.5-VL host work per call"
    proc = fi.Qwen2VLImageProcessor(**QWEN25_VL)
    result = benchmark(lambda: proc(image, **CALL))
    pixels = image.numpy() if isinstance(image, torch.Tensor) else image  # a PIL image as it is
    expected = proc(pixels, return_tensors="np", backend="numpy")
    assert tuple(result["pixel_values"].shape) == expected["pixel_values"].shape
    assert result["pixel_values"].dtype == torch.bfloat16
    assert np.array_equal(result["image_grid_thw"].numpy(), expected["image_grid_thw"])
    if benchmark.stats is None:  # --benchmark-disable (the test suite): the call ran once, nothing to report
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["median_us"] = round(median * 1e6, 1)
    if copied is not None:
        floor = median_copy_seconds(copied)
        benchmark.extra_info["copy_us"] = round(floor * 1e6, 1)
        benchmark.extra_info["ratio_to_copy"] = round(median / floor, 2)


@host_work
def test_host_qwen2_vl_one_1080x1920_numpy(benchmark, no_launch):
    _host_case(benchmark, ONE, [ONE])


@host_work
def test_host_qwen2_vl_one_480x640_numpy(benchmark, no_launch):
    _host_case(benchmark, SMALL, [SMALL])


@host_work
def test_host_qwen2_vl_one_1080x1920_device_tensor(benchmark, no_launch):
    """A CPU uint8 HWC tensor stands in for one already on the GPU: nothing is staged."""
    _host_case(benchmark, torch.from_numpy(ONE.copy()))


@host_work
def test_host_qwen2_vl_one_1080x1920_pil(benchmark, no_launch):
    """A PIL image, as inference servers pass them: its pixels are read out of Pillow every call (by channel planes,
    staged plane by plane)."""
    _host_case(benchmark, PIL.Image.fromarray(ONE), [ONE])
