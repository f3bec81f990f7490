"""One processor instance shared by many threads gives exactly the serial results (issue 11, item 4).

The numpy backend keeps no per-call state on the processor (settings are resolved per call, plans and tables are
per call or in thread-safe caches), and the Triton backend keeps its pinned staging buffers per thread and its
device caches behind a lock. Triton's interpreter is not thread-safe itself, so under `TRITON_INTERPRET=1` the
backend serialises its launches (`fused_imgproc.backends.ops.INTERPRETER_LOCK`); on a GPU nothing is serialised.

Every comparison is bitwise: dtype, shape and the values viewed as integers (so -0.0 and 0.0 differ, NaN == NaN).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image
import pytest

import fused_imgproc as fi

BICUBIC, BILINEAR, NEAREST, LANCZOS, BOX, HAMMING = 3, 2, 0, 1, 4, 5

# Per-call overrides: every call of a thread differs from its neighbours' in geometry, filter and value map.
CALL_CONFIGS = [
    {},
    {"size": {"shortest_edge": 17}, "crop_size": {"height": 13, "width": 9}, "resample": BILINEAR},
    {"do_center_crop": False, "size": {"height": 11, "width": 23}, "resample": LANCZOS},
    {"do_resize": False, "crop_size": {"height": 20, "width": 7}},
    {"image_mean": [0.1, 0.2, 0.3], "image_std": 0.25, "resample": BOX, "return_tensors": "np"},
    {"do_normalize": False, "rescale_factor": 1 / 127.5, "resample": HAMMING, "data_format": "channels_last"},
    {"do_rescale": False, "do_normalize": False, "resample": NEAREST},
    {"size": {"shortest_edge": 31}, "dtype": np.float16, "return_tensors": "np"},
]


def _bits(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    return array.view(f"u{array.dtype.itemsize}") if array.dtype.kind == "f" else array


def _snapshot(pixel_values):
    """(dtype, shape, integer view) of every output array, so that results compare bitwise."""
    arrays = pixel_values if isinstance(pixel_values, list) else [pixel_values]
    return [(a.dtype.str, a.shape, _bits(a).tobytes()) for a in map(np.asarray, arrays)]


def _outcome(call):
    """The snapshot of `call()`'s pixel values, or the (type, message) of the documented error it raised (a ragged
    batch with return_tensors="np", say): a threaded call must raise exactly what the serial call raised."""
    try:
        return _snapshot(call().pixel_values)
    except (ValueError, TypeError) as error:
        return type(error).__name__, str(error)


def _mostly_results(outcomes) -> bool:
    return sum(isinstance(outcome, list) for outcome in outcomes) >= 0.75 * len(outcomes)


def _images(rng) -> list:
    """A ragged batch: uint8 HWC and CHW arrays, a float image in [0, 1], PIL RGB/L/RGBA, 1-pixel sides."""
    sizes = [(int(rng.integers(1, 60)), int(rng.integers(1, 60))) for _ in range(int(rng.integers(1, 4)))]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    kind = int(rng.integers(0, 5))
    if kind == 1:
        images.append(np.ascontiguousarray(rng.integers(0, 256, (3, 21, 2), dtype=np.uint8)))
    elif kind == 2:
        images.append(rng.random((9, 40, 3), dtype=np.float32))
    elif kind == 3:
        images.append(PIL.Image.fromarray(rng.integers(0, 256, (33, 12), dtype=np.uint8), "L"))
    elif kind == 4:
        images.append(PIL.Image.fromarray(rng.integers(0, 256, (17, 19, 4), dtype=np.uint8), "RGBA"))
    return images


def _run_threads(fn, jobs: int, threads: int) -> list:
    """`[fn(k) for k in range(jobs)]` from `threads` threads that start together (a barrier), in job order."""
    barrier = threading.Barrier(threads)
    results: list = [None] * jobs

    def worker(t: int):
        barrier.wait()
        for k in range(t, jobs, threads):
            results[k] = fn(k)

    with ThreadPoolExecutor(threads) as pool:
        for future in [pool.submit(worker, t) for t in range(threads)]:
            future.result()  # re-raises a worker's exception
    return results


@pytest.mark.parametrize("cls", [fi.CLIPImageProcessor, fi.ConvNextImageProcessor], ids=lambda c: c.__name__)
def test_numpy_backend_threads_give_the_serial_results(cls):
    """8 threads x 20 calls on one instance, each call with its own images and settings."""
    proc = cls(size={"shortest_edge": 24}, crop_size={"height": 19, "width": 21}) if cls is fi.CLIPImageProcessor \
        else cls(size={"shortest_edge": 24}, do_convert_rgb=True)
    before = proc.to_json_string()
    rng = np.random.default_rng(11)
    calls = [(_images(rng), CALL_CONFIGS[k % len(CALL_CONFIGS)]) for k in range(160)]

    def call(k):
        images, config = calls[k]
        return _outcome(lambda: proc(images, backend="numpy", **config))

    serial = [call(k) for k in range(len(calls))]
    assert _mostly_results(serial)
    assert _run_threads(call, len(calls), threads=8) == serial
    assert proc.to_json_string() == before  # no call left its settings on the instance


def test_numpy_backend_threads_sharing_the_same_inputs():
    """The same image objects (a PIL image, an array view) read by many threads at once are not modified."""
    rng = np.random.default_rng(12)
    pil = PIL.Image.fromarray(rng.integers(0, 256, (45, 30, 3), dtype=np.uint8))
    base = rng.integers(0, 256, (50, 40, 3), dtype=np.uint8)
    view = base[::-1, 1::2]
    copy = base.copy()
    proc = fi.ViTImageProcessor(size={"height": 16, "width": 12})

    def call(k):
        config = CALL_CONFIGS[k % len(CALL_CONFIGS)]
        return _outcome(lambda: proc([pil, view, pil], backend="numpy", **config))

    serial = [call(k) for k in range(48)]
    assert _mostly_results(serial)
    assert _run_threads(call, 48, threads=8) == serial
    assert np.array_equal(base, copy)


def test_failing_calls_in_threads_leave_the_others_alone():
    """A call that raises (a documented ValueError) in one thread changes nothing for the calls of the others."""
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 20}, crop_size={"height": 18, "width": 18})
    rng = np.random.default_rng(13)
    good = [rng.integers(0, 256, (30, 25, 3), dtype=np.uint8) for _ in range(4)]
    bad = np.full((6, 6, 3), np.nan, dtype=np.float32)

    def call(k):
        if k % 3 == 0:
            with pytest.raises(ValueError):
                proc(bad, backend="numpy")
            return None
        return _snapshot(proc(good[k % 4], backend="numpy", return_tensors="np").pixel_values)

    serial = [call(k) for k in range(60)]
    assert _run_threads(call, 60, threads=6) == serial


# --- the Triton backend (under the interpreter without a GPU) ------------------------------------------------------


@pytest.fixture(scope="module")
def triton_mode():
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    import triton_mode as mode

    return mode


def test_interpreter_lock_exists_only_under_the_interpreter(triton_mode):
    from fused_imgproc.backends import ops

    assert (ops.INTERPRETER_LOCK is not None) == triton_mode.INTERPRETED
    if triton_mode.INTERPRETED:
        assert ops.launch_guard() is ops.INTERPRETER_LOCK


def test_triton_backend_threads_give_the_serial_results(triton_mode):
    """Concurrent calls (resized on the host and with the GPU resize, device tensors, several output dtypes): the
    numpy backend's results, and the same results as the serial calls. Under the interpreter this fails without
    the launch lock (errors raised inside Triton's interpreter)."""
    torch, device = triton_mode.torch, triton_mode.DEVICE
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 10}, crop_size={"height": 9, "width": 8})
    rng = np.random.default_rng(14)
    configs = [{}, {"resample": BILINEAR, "dtype": torch.bfloat16}, {"do_resize": False, "dtype": torch.float16},
               {"resample": LANCZOS, "data_format": "channels_last"}]
    calls = []
    for k in range(24):
        images = [rng.integers(0, 256, (int(rng.integers(1, 16)), int(rng.integers(1, 16)), 3), dtype=np.uint8)
                  for _ in range(2)]
        if k % 4 == 3:
            images.append(torch.from_numpy(rng.integers(0, 256, (3, 12, 11), dtype=np.uint8)).to(device))
        if k % 5 == 4:
            images.append(rng.random((7, 5, 3), dtype=np.float32))
        calls.append((images, configs[k % len(configs)]))

    def run(k, backend):
        images, config = calls[k]
        if backend == "numpy":
            images = [image.cpu() if isinstance(image, torch.Tensor) else image for image in images]
            kwargs = {}
        else:
            kwargs = {"device": device}
        result = proc(images, return_tensors="pt", backend=backend, **kwargs, **config).pixel_values.cpu()
        as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[result.element_size()]
        return str(result.dtype), tuple(result.shape), result.view(as_int).numpy().tobytes()

    reference = [run(k, "numpy") for k in range(len(calls))]
    serial = [run(k, "triton") for k in range(len(calls))]
    assert serial == reference
    assert _run_threads(lambda k: run(k, "triton"), len(calls), threads=4) == serial


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_pool():
    """After the pool has threads, a forked child (multiprocessing, datasets' num_proc, pre-forking servers) has
    none of them: a batch there must still run (it used to wait forever on the inherited pool)."""
    processor = fi.CLIPImageProcessor()
    images = [np.random.default_rng(k).integers(0, 256, (100 + k, 120, 3), dtype=np.uint8) for k in range(4)]
    expected = processor(images, return_tensors="np").pixel_values  # the pool and its threads exist now
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 when the batch ran and matched
        try:
            os._exit(0 if np.array_equal(processor(images, return_tensors="np").pixel_values, expected) else 1)
        finally:
            os._exit(2)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child's batch did not finish in 60 s")
