"""CPU speed: our CLIP processor (numpy backend) against transformers' PIL-backend CLIP processor, same run.

    make bench        # or: .venv/bin/python -m pytest benchmarks --benchmark-only

Each pair is one pytest-benchmark group; compare the medians within a group. Nothing here asserts a time:
the equality checks only make sure both sides computed the same thing.
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from fused_imgproc import CLIPImageProcessor  # noqa: E402

RNG = np.random.default_rng(0)
ONE = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
ONE_PIL = PIL.Image.fromarray(ONE)
BATCH = [RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8) for _ in range(32)]

IMPLEMENTATIONS = {
    "fused_imgproc": CLIPImageProcessor(),
    "transformers": transformers.CLIPImageProcessorPil(),
}
INPUTS = {"one_480x640_numpy": ONE, "one_480x640_pil": ONE_PIL, "batch32_480x640_numpy": BATCH}


@pytest.fixture(scope="module")
def reference_outputs():
    return {name: IMPLEMENTATIONS["transformers"](x, return_tensors="np").pixel_values for name, x in INPUTS.items()}


@pytest.mark.parametrize("impl", list(IMPLEMENTATIONS))
@pytest.mark.parametrize("case", list(INPUTS))
def test_clip_cpu(benchmark, reference_outputs, case, impl):
    benchmark.group = f"CLIP {case}"
    processor, images = IMPLEMENTATIONS[impl], INPUTS[case]
    result = benchmark(lambda: processor(images, return_tensors="np").pixel_values)
    assert np.array_equal(result, reference_outputs[case])
