"""Host work of a GPU call, measured without a GPU.

The Triton backend runs under Triton's interpreter on CPU tensors with every kernel launch replaced by a no-op
(`triton.runtime.interpreter.InterpretedFunction.run`), so what is timed is exactly what a GPU call does on the
host: argument checks, the plan, descriptors and tables, packing the staging buffer, op dispatch. A CPU tensor
stands in for a tensor already on the GPU. Inference servers call the processor once per request, so batch 1 is
what they feel.

    make bench          # or: .venv/bin/python -m pytest benchmarks/test_bench_host.py --benchmark-only

Each case reports its median in microseconds; host-image cases also report, in `extra_info`, the ratio to a plain
single-threaded copy of the bytes the call stages, measured in the same run. Nothing here asserts a time.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
if torch.cuda.is_available():
    pytest.skip("host work is measured directly on a GPU machine (see benchmarks/gpu)", allow_module_level=True)
os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported
if os.environ["TRITON_INTERPRET"] != "1":
    pytest.skip("needs TRITON_INTERPRET=1 (set before the kernels were imported)", allow_module_level=True)

from triton.runtime import interpreter  # noqa: E402

import fused_imgproc as fi  # noqa: E402
from fused_imgproc.backends import triton as triton_backend  # noqa: E402, F401

RNG = np.random.default_rng(0)
ONE = RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8)
ONE_TENSOR = torch.from_numpy(ONE.copy())
BATCH = [RNG.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in RNG.integers(400, 801, (64, 2))]
CALL = {"return_tensors": "pt", "backend": "triton", "device": "cpu", "dtype": torch.bfloat16}


@pytest.fixture
def no_launch(monkeypatch):
    """Kernel launches become no-ops: what remains is the host work of a GPU call."""
    monkeypatch.setattr(interpreter.InterpretedFunction, "run", lambda self, *args, **kwargs: None)


def _median_copy_seconds(arrays, repeats: int = 15) -> float:
    """A plain single-threaded copy of every byte of `arrays` into one preallocated buffer (the floor)."""
    total = sum(a.nbytes for a in arrays)
    buffer = np.empty(total, np.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        offset = 0
        for array in arrays:
            buffer[offset:offset + array.nbytes] = array.reshape(-1).view(np.uint8)
            offset += array.nbytes
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _report(benchmark, copied_arrays=None):
    if benchmark.stats is None:  # --benchmark-disable (the test suite): the call ran once, nothing to report
        return
    median = benchmark.stats.stats.median
    benchmark.extra_info["median_us"] = round(median * 1e6, 1)
    if copied_arrays is not None:
        floor = _median_copy_seconds(copied_arrays)
        benchmark.extra_info["copy_us"] = round(floor * 1e6, 1)
        benchmark.extra_info["ratio_to_copy"] = round(median / floor, 2)


def test_host_one_numpy_image_with_resize(benchmark, no_launch):
    benchmark.group = "host work per call"
    proc = fi.CLIPImageProcessor()
    benchmark(lambda: proc(ONE, **CALL))
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
    _report(benchmark, BATCH)
