"""Host work of a GPU call, measured without a GPU.

The Triton backend runs under Triton's interpreter on CPU tensors with every kernel launch replaced by a no-op
(`triton.runtime.interpreter.InterpretedFunction.run`), so what is timed is exactly what a GPU call does on the
host: argument checks, the plan, descriptors and tables, packing the staging buffer, op dispatch. A CPU tensor
stands in for a tensor already on the GPU. Inference servers call the processor once per request, so batch 1 is
what they feel.

    make bench          # or: .venv/bin/python -m pytest benchmarks/test_bench_host.py --benchmark-only

Each case reports its median in microseconds; host-image cases also report, in `extra_info`, the ratio to a plain
single-threaded copy of all the images' bytes (`ratio_to_copy`) and of the bytes the call stages
(`ratio_to_staged_copy`: the source rectangles the crop windows read), measured in the same run. The first cases
repeat one call (the server steady state, answered by the processor's call cache); the "full path" cases plan every
call from scratch. Nothing here asserts a time.
"""

from __future__ import annotations

import os

import numpy as np
import PIL.Image
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
if torch.cuda.is_available():
    pytest.skip("host work is measured directly on a GPU machine (see benchmarks/gpu)", allow_module_level=True)
os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported
if os.environ["TRITON_INTERPRET"] != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (set before the kernels were imported)", allow_module_level=True)

from copy_floor import median_copy_seconds  # noqa: E402
from triton.runtime import interpreter  # noqa: E402

import fused_imgproc as fi  # noqa: E402
from fused_imgproc.backends import gpu_resize  # noqa: E402
from fused_imgproc.backends import triton as triton_backend  # noqa: E402, F401

RNG = np.random.default_rng(0)
ONE = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
ONE_TENSOR = torch.from_numpy(ONE.copy())
ONE_PIL = PIL.Image.fromarray(ONE)
BATCH = [RNG.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in RNG.integers(400, 801, (64, 2))]
CALL = {"return_tensors": "pt", "backend": "triton", "device": "cpu", "dtype": torch.bfloat16}


@pytest.fixture
def no_launch(monkeypatch):
    """Kernel launches become no-ops: what remains is the host work of a GPU call."""
    monkeypatch.setattr(interpreter.InterpretedFunction, "run", lambda self, *args, **kwargs: None)


def _staged_arrays(proc, images) -> list[np.ndarray]:
    """Contiguous runs of each image's bytes, as many as the cached call of `images` stages (its source rectangles):
    copying them is a plain memcpy of the staged byte count."""
    (entry,) = proc._calls().entries.values()
    staged = sum(int(group.starts[-1]) * group.src_dtype.itemsize
                 for group in entry.program.groups if hasattr(group, "starts"))
    share = staged / sum(image.nbytes for image in images)
    return [image.reshape(-1)[: int(image.size * share)] for image in images]


def _report(benchmark, copied_arrays=None, staged_arrays=None, calls: int = 1):
    """Median and copy floors in `extra_info`; `calls`: how many calls the arrays are spread over (the floor is
    per call)."""
    if benchmark.stats is None:  # --benchmark-disable (the test suite): the call ran once, nothing to report
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["median_us"] = round(median * 1e6, 1)
    for name, arrays in (("copy", copied_arrays), ("staged_copy", staged_arrays)):
        if arrays is not None:
            floor = median_copy_seconds(arrays) / calls
            benchmark.extra_info[f"{name}_us"] = round(floor * 1e6, 1)
            benchmark.extra_info[f"ratio_to_{name}"] = round(median / floor, 2)


def test_host_one_numpy_image_with_resize(benchmark, no_launch):
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    benchmark(lambda: proc(ONE, **CALL))
    _report(benchmark, [ONE], _staged_arrays(proc, [ONE]))


def test_host_one_pil_image_with_resize(benchmark, no_launch):
    """A decoded image as most pipelines hold it: its RGB pixels are read out of Pillow (one copy) and staged."""
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    benchmark(lambda: proc(ONE_PIL, **CALL))
    _report(benchmark, [ONE])


def test_host_one_device_tensor_fixed_shape(benchmark, no_launch):
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    benchmark(lambda: proc(ONE_TENSOR, **CALL))
    _report(benchmark)


def test_host_server_steady_state_out(benchmark, no_launch):
    """The server loop: the same shape every call, written into a fixed model-input buffer."""
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    out = torch.empty((1, 3, 224, 224), dtype=torch.bfloat16)
    benchmark(lambda: proc(ONE_TENSOR, out=out, **CALL))
    _report(benchmark)


def test_host_batch_of_64_numpy_images(benchmark, no_launch):
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    benchmark.pedantic(lambda: proc(BATCH, **CALL), rounds=10, warmup_rounds=1)
    _report(benchmark, BATCH, _staged_arrays(proc, BATCH))


# The full path: every call plans from scratch (no call-cache hit, no memoised pass plan), as for images of sizes the
# processor has not seen in this combination. Their resize coefficient tables are warm (each size pair was seen once
# before), as in a long-running job whose images come in a few hundred sizes; a size pair never seen costs about
# 0.2 ms more. Each call's images are also cold in the CPU caches, as a server's fresh images are.
SIZES = RNG.integers(400, 801, (8, 64, 2))
NEW_SHAPES = [[RNG.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in batch] for batch in SIZES]


def _uncached(proc, calls):
    """`benchmark.pedantic` arguments that run `calls` in turn, each after emptying the processor's call cache."""
    state = {"next": 0}

    def setup():
        proc._calls().entries.clear()
        gpu_resize.planned.cache_clear()
        images = calls[state["next"] % len(calls)]
        state["next"] += 1
        return (images,), {}

    for images in calls:  # warm the coefficient tables
        proc(images, **CALL)
    return {"target": lambda images: proc(images, **CALL), "setup": setup}


def test_host_one_numpy_image_full_path(benchmark, no_launch):
    benchmark.group = "host work per call, full path (no call-cache hit)"
    proc = fi.CLIPImageProcessor()
    images = [batch[0] for batch in NEW_SHAPES]
    benchmark.pedantic(**_uncached(proc, images), rounds=40)
    _report(benchmark, images, calls=len(images))


def test_host_batch_of_64_numpy_images_full_path(benchmark, no_launch):
    benchmark.group = "host work per call, full path (no call-cache hit)"
    proc = fi.CLIPImageProcessor()
    benchmark.pedantic(**_uncached(proc, NEW_SHAPES), rounds=8)
    _report(benchmark, [image for batch in NEW_SHAPES for image in batch], calls=len(NEW_SHAPES))
