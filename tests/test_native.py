"""The CPU resampler (`fused_imgproc/_native.c`, `backends/native.py`): bit-exact with `PIL.Image.resize`.

Every kernel set this CPU can run (AVX2, SSE4.1, portable C) is checked on the same cases: the six filters on 400+
random (input size, output size) pairs each, in L and RGB, both of Pillow's pass orders, large up- and downscaling,
1-pixel sides and extreme ratios, whole images and random crop windows; the value-table output in every item size
and layout; bad arguments; and the numpy backend's results with and without the extension.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading

import numpy as np
import PIL.Image
import pytest

import fused_imgproc as fi
from fused_imgproc.backends import native
from fused_imgproc.backends import numpy as numpy_backend
from fused_imgproc.resample import GPU_FILTERS, axis_coefficients, passes

NATIVE = native.module()
needs_native = pytest.mark.skipif(NATIVE is None, reason="the CPU resampler is not built (no C compiler at install)")
KERNELS = ["avx2", "sse4.1", "portable"]
PAIRS_PER_FILTER = 420


def test_built_where_required():
    """`make test` (and so CI) sets FUSED_IMGPROC_REQUIRE_NATIVE=1: there, a missing extension fails instead of
    skipping this module."""
    if os.environ.get("FUSED_IMGPROC_REQUIRE_NATIVE") == "1":
        assert native.module() is not None


@pytest.fixture(params=KERNELS)
def kernels(request):
    try:
        before = NATIVE.use(request.param)
    except ValueError:
        pytest.skip(f"this CPU cannot run the {request.param} kernels")
    yield request.param
    NATIVE.use(before)


def _tables(image: np.ndarray, oh: int, ow: int, resample: int):
    h, w = image.shape[:2]
    axes = passes((h, w), (oh, ow))
    htable = _arrays(axis_coefficients(w, ow, resample)) if 1 in axes else None
    vtable = _arrays(axis_coefficients(h, oh, resample)) if 0 in axes else None
    return htable, vtable, axes == [0, 1]


def _arrays(table):
    return table.first, table.count, table.coef


def _native(image, oh, ow, resample, window=None, table=None, dst=None):
    htable, vtable, vertical_first = _tables(image, oh, ow, resample)
    (y0, y1), (x0, x1) = window or ((0, oh), (0, ow))
    c = image.shape[2]
    if dst is None:
        shape = (y1 - y0, x1 - x0, c) if table is None else (c, y1 - y0, x1 - x0)
        dst = np.empty(shape, np.uint8 if table is None else table.dtype)
    NATIVE.resize(image, htable, vtable, vertical_first, y0, y1, x0, x1, dst, table)
    return dst


def _pillow(image: np.ndarray, oh: int, ow: int, resample: int) -> np.ndarray:
    pil = PIL.Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
    return np.asarray(pil.resize((ow, oh), resample=resample)).reshape(oh, ow, image.shape[2])


def _size_pairs(rng, count: int):
    """(h, w, oh, ow): mixed kinds, each with both pass orders likely."""
    kinds = [
        lambda: rng.integers(1, 80, 4),  # small, anything
        lambda: (*rng.integers(100, 600, 2), *rng.integers(1, 40, 2)),  # downscale up to 600x
        lambda: (*rng.integers(1, 12, 2), *rng.integers(40, 400, 2)),  # upscale up to 400x
        lambda: (1, rng.integers(1, 900), rng.integers(1, 60), rng.integers(1, 60)),  # 1-pixel rows
        lambda: (rng.integers(1, 900), 1, rng.integers(1, 60), rng.integers(1, 60)),  # 1-pixel columns
        lambda: (*rng.integers(1, 60, 2), 1, rng.integers(1, 120)),  # to one row
        lambda: (*rng.integers(1, 60, 2), rng.integers(1, 120), 1),  # to one column
        lambda: (rng.integers(2, 20), rng.integers(500, 1500), rng.integers(200, 300), rng.integers(2, 8)),  # extreme
        lambda: (*rng.integers(20, 200, 2), *rng.integers(20, 200, 2)),  # CLIP-like
        lambda: (h := rng.integers(2, 120), rng.integers(2, 120), h, rng.integers(1, 160)),  # one pass (horizontal)
        lambda: (rng.integers(2, 120), w := rng.integers(2, 120), rng.integers(1, 160), w),  # one pass (vertical)
    ]
    for k in range(count):
        yield tuple(int(v) for v in kinds[k % len(kinds)]())


@needs_native
@pytest.mark.parametrize("resample", GPU_FILTERS)
def test_resize_equals_pillow(kernels, resample):
    rng = np.random.default_rng(1000 + resample)
    orders = set()
    for case, (h, w, oh, ow) in enumerate(_size_pairs(rng, PAIRS_PER_FILTER)):
        channels = 1 if case % 3 == 2 else 3
        image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        if case % 4 == 1:  # extremes: where a sum of negative lobes clips
            image = (image >= 128).astype(np.uint8) * 255
        expected = _pillow(image, oh, ow, resample)
        orders.add(tuple(passes((h, w), (oh, ow))))
        got = _native(image, oh, ow, resample)
        assert np.array_equal(got, expected), (kernels, resample, h, w, oh, ow, channels)
        y0, x0 = int(rng.integers(0, oh)), int(rng.integers(0, ow))  # a crop window: the same values
        y1, x1 = int(rng.integers(y0 + 1, oh + 1)), int(rng.integers(x0 + 1, ow + 1))
        got = _native(image, oh, ow, resample, ((y0, y1), (x0, x1)))
        assert np.array_equal(got, expected[y0:y1, x0:x1]), (kernels, resample, h, w, oh, ow, (y0, y1, x0, x1))
    assert orders >= {(1, 0), (0, 1), (1,), (0,)}  # both two-pass orders and each single pass were covered


@needs_native
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.float16, np.float32, np.float64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_value_table_output(kernels, dtype, channels_last):
    rng = np.random.default_rng(7)
    image = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    table = rng.integers(-1000, 1000, (3, 256)).astype(dtype)
    expected = _pillow(image, 50, 70, PIL.Image.BICUBIC)[5:45, 10:60]
    out = np.full((40, 50, 3) if channels_last else (3, 40, 50), 99, dtype=dtype)
    dst = out.transpose(2, 0, 1) if channels_last else out
    _native(image, 50, 70, PIL.Image.BICUBIC, ((5, 45), (10, 60)), table=table, dst=dst)
    planes = out.transpose(2, 0, 1) if channels_last else out
    for c in range(3):
        assert np.array_equal(planes[c], table[c][expected[..., c]])


@needs_native
def test_strided_and_read_out_sources():
    rng = np.random.default_rng(8)
    big = rng.integers(0, 256, (120, 200, 3), dtype=np.uint8)
    view = big[10:100, 20:150]  # rows at a stride: read in place
    assert native.packed(view) is view
    assert np.array_equal(_native(view, 33, 47, PIL.Image.LANCZOS), _pillow(np.ascontiguousarray(view), 33, 47, 1))
    for odd in (big[:, ::2], big[..., ::-1], np.asfortranarray(big)):  # copied to packed pixels first
        packed = native.packed(odd)
        assert packed.flags.c_contiguous and np.array_equal(packed, odd)
    gray = PIL.Image.fromarray(big).convert("L")
    assert native.packed(np.asarray(gray)).shape == (120, 200, 1)


@needs_native
def test_bad_arguments_raise():
    image = np.zeros((10, 12, 3), np.uint8)
    htable, vtable, _ = _tables(image, 5, 6, PIL.Image.BILINEAR)
    dst = np.empty((5, 6, 3), np.uint8)

    def call(src=image, h=htable, v=vtable, window=(0, 5, 0, 6), out=dst, table=None):
        NATIVE.resize(src, h, v, False, *window, out, table)

    call()
    with pytest.raises(ValueError, match="uint8"):
        call(src=image.astype(np.int16))
    with pytest.raises(ValueError, match="packed"):
        call(src=image[:, ::2])
    with pytest.raises(ValueError, match="dst"):
        call(out=np.empty((5, 6, 1), np.uint8))
    with pytest.raises((ValueError, BufferError), match="read-only|writable"):
        readonly = dst.copy()
        readonly.setflags(write=False)
        call(out=readonly)
    with pytest.raises(ValueError, match="table"):
        call(out=np.empty((3, 5, 6), np.float32), table=np.zeros((3, 255), np.float32))
    with pytest.raises(ValueError, match="empty"):
        call(window=(2, 2, 0, 6))
    with pytest.raises(ValueError, match="outside"):
        call(window=(0, 6, 0, 6))
    with pytest.raises(ValueError, match="reads outside"):
        call(src=np.zeros((10, 8, 3), np.uint8))  # the table was made for 12 columns
    with pytest.raises(ValueError, match="int32"):
        call(h=tuple(a.astype(np.int64) for a in htable))
    with pytest.raises(TypeError, match="tuple"):
        call(h=[htable[0]])
    with pytest.raises(ValueError, match="not available"):
        NATIVE.use("avx9000")


CLIP = {"shortest_edge": 224}


def _processors():
    return [
        (fi.CLIPImageProcessor(), {}),
        (fi.CLIPImageProcessor(crop_size={"height": 300, "width": 180}, resample=PIL.Image.LANCZOS), {}),
        (fi.CLIPImageProcessor(do_convert_rgb=False, image_mean=0.5, image_std=0.25), {}),  # L stays L
        (fi.ViTImageProcessor(resample=PIL.Image.NEAREST, image_mean=0.5, image_std=0.5), {"data_format": "channels_last"}),
        (fi.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=200_000), {}),
    ]


@needs_native
@pytest.mark.parametrize("index", range(5))
def test_pipeline_equals_the_pillow_path(monkeypatch, index):
    """The numpy backend's outputs with the CPU resampler equal its outputs through Pillow, for arrays, PIL images
    (RGB and L), batches of mixed sizes, every output dtype, one image split over two threads."""
    processor, kwargs = _processors()[index]
    rng = np.random.default_rng(index)
    images = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in rng.integers(60, 700, (4, 2))]
    inputs = [images[0], PIL.Image.fromarray(images[1]), PIL.Image.fromarray(images[2]).convert("L"), images]
    monkeypatch.setattr(numpy_backend, "WORKERS", 2)
    for x in inputs:
        for dtype in (None, "float16", "bfloat16"):
            options = dict(kwargs, return_tensors="np") if dtype is None else dict(kwargs, return_tensors="pt", dtype=dtype)
            if dtype is not None:
                pytest.importorskip("torch")
            got = processor(x, **options)
            with monkeypatch.context() as off:
                off.setattr(native, "module", lambda: None)
                expected = processor(x, **options)
            for key in expected:
                a, b = np.asarray(got[key]) if dtype is None else got[key], expected[key]
                if dtype is not None:
                    import torch

                    assert torch.equal(a, b), (index, key, dtype)
                else:
                    assert np.array_equal(a, np.asarray(b)), (index, key)


@needs_native
def test_one_image_is_split_over_the_pool(monkeypatch):
    """One 480x640 image under the CLIP config on two threads: three bands per thread, cutting the first pass's
    output (horizontal first here: bands of columns), covering the crop window once, taken by the caller and a pool
    thread (which takes none if it wakes after the caller has done them all)."""
    calls, submitted = [], []
    real = NATIVE.resize

    class Spy:
        def resize(self, *args):
            calls.append((threading.current_thread().name, args[4:8]))
            return real(*args)

    pool = numpy_backend._pool()
    monkeypatch.setattr(native, "module", lambda: Spy())
    monkeypatch.setattr(numpy_backend, "WORKERS", 2)
    monkeypatch.setattr(pool, "submit", lambda *a: submitted.append(a) or type(pool).submit(pool, *a))
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    got = fi.CLIPImageProcessor()(image, return_tensors="np").pixel_values
    windows = sorted(window for _, window in calls)
    assert len(windows) == 2 * native.CHUNKS_PER_PART and len(submitted) == 1
    assert all((y0, y1) == (0, 224) for y0, y1, _, _ in windows)
    assert windows[0][2] == 37 and windows[-1][3] == 261  # the crop's columns of the 298, each once
    assert all(before[3] == after[2] for before, after in itertools.pairwise(windows))
    assert {name for name, _ in calls} <= {threading.main_thread().name} | {t.name for t in pool._threads}
    monkeypatch.setattr(native, "module", lambda: None)
    assert np.array_equal(got, fi.CLIPImageProcessor()(image, return_tensors="np").pixel_values)


@needs_native
def test_threads_share_nothing():
    """Calls from many threads at once (each with its own scratch memory) give the single-thread results."""
    rng = np.random.default_rng(4)
    cases = [(rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8), int(oh), int(ow))
             for h, w, oh, ow in rng.integers(20, 400, (12, 4))]
    expected = [_pillow(image, oh, ow, PIL.Image.BICUBIC) for image, oh, ow in cases]
    failures = []

    def run(k):
        for _ in range(5):
            for (image, oh, ow), want in zip(cases[k % 3 :], expected[k % 3 :]):
                if not np.array_equal(_native(image, oh, ow, PIL.Image.BICUBIC), want):
                    failures.append((k, image.shape, oh, ow))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


@needs_native
def test_import_leaves_the_extension_unloaded_and_the_environment_turns_it_off():
    code = (
        "import sys, fused_imgproc\n"
        "assert 'fused_imgproc._native' not in sys.modules\n"
        "from fused_imgproc.backends import native\n"
        "print(native.module() is None)\n"
        "print(native.describe())\n"
    )
    for value, off, text in (("1", "False", f"CPU resampler, {NATIVE.kernels()} kernels"),
                             ("0", "True", "Pillow's resize: the CPU resampler is off, FUSED_IMGPROC_NATIVE=0")):
        env = dict(os.environ, FUSED_IMGPROC_NATIVE=value)
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert result.stdout.splitlines() == [off, text]
