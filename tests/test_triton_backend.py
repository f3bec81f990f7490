"""The Triton backend through the processors: bit-identical to the numpy backend (docs/BEHAVIOUR.md section 8).

Runs on a CUDA GPU when there is one, else through the Triton interpreter on CPU tensors (conftest). Every
comparison is bitwise (the outputs viewed as integers, so -0.0 and 0.0 differ), against the numpy backend on the
same inputs, which is itself bit-exact with transformers (test_parity).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from triton_mode import DEVICE, SMALL, torch

import fused_imgproc as fi
from fused_imgproc.backends import triton as triton_backend
from fused_imgproc.processors.auto import IMAGE_PROCESSOR_CLASSES

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
BITS = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16,
        torch.float64: torch.int64, torch.uint8: torch.uint8}


def assert_bits_equal(got: torch.Tensor, ref: torch.Tensor) -> None:
    got = got.cpu()
    assert got.dtype == ref.dtype and got.shape == ref.shape, (got.dtype, got.shape, ref.dtype, ref.shape)
    same = got.view(BITS[got.dtype]) == ref.view(BITS[ref.dtype])
    if not bool(same.all()):
        where = torch.nonzero(~same)[:5].tolist()
        raise AssertionError(f"{int((~same).sum())} of {same.numel()} elements differ, first at {where}")


def host_copy(images):
    """The same images for the numpy backend (device tensors copied to the CPU)."""
    if isinstance(images, torch.Tensor):
        return images.cpu()
    if isinstance(images, list):
        return [host_copy(image) for image in images]
    return images


def both(proc, images, dtype=None, data_format="channels_first", **kwargs):
    """(numpy backend result, Triton backend result) as torch tensors (or lists of them)."""
    ref = proc(host_copy(images), return_tensors="pt", dtype=dtype, data_format=data_format, **kwargs).pixel_values
    got = proc(images, return_tensors="pt", dtype=dtype, data_format=data_format, backend="triton", device=DEVICE,
               **kwargs).pixel_values
    return ref, got


def check(proc, images, dtype=None, data_format="channels_first", **kwargs) -> torch.Tensor:
    ref, got = both(proc, images, dtype, data_format, **kwargs)
    assert got.device.type == DEVICE
    assert_bits_equal(got, ref)
    return got


def random_images(rng, sizes, channels=3, layout="hwc"):
    images = []
    for h, w in sizes:
        image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        images.append(np.ascontiguousarray(image.transpose(2, 0, 1)) if layout == "chw" else image)
    return images


# Sizes around the small crops used under the interpreter: smaller and larger than the crop, 1-pixel sides,
# odd differences (odd paddings), extreme aspect ratios.
RAGGED = [(1, 1), (1, 9), (13, 1), (9, 31), (40, 25), (17, 17), (3, 60), (22, 19)]
FULL = [(480, 640), (224, 224), (300, 200), (1, 500), (97, 33), (640, 481), (256, 256), (50, 3000)]


def small_config(cls) -> dict:
    """The family's own geometry at a size the interpreter runs quickly; the real defaults on a GPU."""
    if not SMALL:
        return {}
    size = cls.size
    if issubclass(cls, fi.Qwen2VLImageProcessor):  # patch rows: a grid of 8-pixel blocks, at most 1024 pixels
        return {"patch_size": 4, "merge_size": 2, "size": {"shortest_edge": 64, "longest_edge": 1024}}
    config = {"size": {"shortest_edge": 14} if "shortest_edge" in size else {"height": 12, "width": 15}}
    if cls.crop_size is not None:
        config["crop_size"] = {"height": 12, "width": 11}
    return config


FAMILY_CASES = [(torch.float32, "channels_first"), (torch.bfloat16, "channels_last"), (torch.float16, "channels_first")]


@pytest.mark.parametrize("dtype,layout", FAMILY_CASES, ids=lambda v: str(v).removeprefix("torch."))
@pytest.mark.parametrize("name", sorted(IMAGE_PROCESSOR_CLASSES))
def test_every_family_on_a_ragged_batch(name, dtype, layout):
    cls = IMAGE_PROCESSOR_CLASSES[name]
    proc = cls(**small_config(cls))
    rng = np.random.default_rng(len(name))
    sizes = RAGGED if SMALL else FULL
    if issubclass(cls, fi.Qwen2VLImageProcessor):  # smart_resize refuses aspect ratios over 200
        sizes = [(h, w) for h, w in sizes if max(h, w) <= 200 * min(h, w)]
    images = random_images(rng, sizes)
    images[1] = PIL.Image.fromarray(images[1])  # a PIL image in the batch too
    check(proc, images, dtype, layout, input_data_format="channels_last")  # (1, 9, 3) would read as CHW


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_outputs_are_the_float32_result_cast_once(dtype):
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 10}, crop_size={"height": 9, "width": 12})
    images = random_images(np.random.default_rng(5), RAGGED)
    full = proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
    assert_bits_equal(full, proc(images, return_tensors="pt").pixel_values)
    half = proc(images, return_tensors="pt", backend="triton", device=DEVICE, dtype=dtype).pixel_values
    assert_bits_equal(half, full.cpu().to(dtype))


@pytest.mark.parametrize("seed", range(12))
def test_random_ragged_batches(seed):
    """Random crops and sizes, HWC and CHW, resized or not, PIL modes, float and integral-float inputs."""
    rng = np.random.default_rng(seed)
    crop = {"height": int(rng.integers(1, 24)), "width": int(rng.integers(1, 24))}
    config = dict(crop_size=crop, do_resize=bool(seed % 3), do_convert_rgb=bool(seed % 2),
                  resample=int(rng.choice([0, 1, 2, 3, 4, 5])), size={"shortest_edge": int(rng.integers(1, 30))})
    proc = fi.CLIPImageProcessor(**config)
    sizes = [(int(rng.integers(1, 40)), int(rng.integers(1, 40))) for _ in range(int(rng.integers(1, 7)))]
    images = random_images(rng, sizes)
    if config["do_resize"]:
        images.append(rng.random((7, 9, 3), dtype=np.float32))  # floats in [0, 1]: quantized for the resize
        images.append(rng.integers(0, 256, (5, 6, 3)).astype(np.float64))  # integral floats
    fmt = "channels_last"
    if seed % 4 == 1:  # the same images as CHW arrays
        images, fmt = [np.ascontiguousarray(image.transpose(2, 0, 1)) for image in images], "channels_first"
    if config["do_convert_rgb"]:
        images.append(PIL.Image.fromarray(rng.integers(0, 256, (6, 11), dtype=np.uint8), "L"))
        images.append(PIL.Image.fromarray(rng.integers(0, 256, (9, 4, 4), dtype=np.uint8), "RGBA"))
    dtype = DTYPES[seed % 3]
    check(proc, images, dtype, "channels_last" if seed % 2 else "channels_first", input_data_format=fmt)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_float_images_without_resize_use_the_reference_arithmetic(dtype, layout):
    """Unresized float images are computed in the kernel: float32(float64(x) * scale), then div_rn."""
    rng = np.random.default_rng(7)
    images = [rng.random((h, w, 3), dtype=np.float32) * 1.5 - 0.2 for h, w in RAGGED[:5]]
    images[0] = np.zeros((4, 4, 3), np.float32)  # zeros and negative zeros
    images[1] = -images[0]
    for config in ({}, {"do_rescale": False}, {"do_normalize": False}, {"rescale_factor": 0.1, "image_mean": 0.3}):
        proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 6, "width": 5}, **config)
        check(proc, images, dtype, layout)
    proc = fi.ViTImageProcessor(do_resize=False)
    check(proc, [rng.random((3, 8, 5), dtype=np.float32)], dtype, layout)


def test_non_contiguous_host_arrays():
    """numpy views (steps, transposes, negative strides) are read through their strides on the host."""
    rng = np.random.default_rng(20)
    big = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    views = [big[::2, 1::3], big[::-1, ::-1], big.transpose(1, 0, 2), big[5:6, :, ::-1]]
    floats = rng.random((3, 30, 20), dtype=np.float32)[:, ::3, ::2]  # a CHW view
    for proc in (fi.CLIPImageProcessor(size={"shortest_edge": 9}, crop_size={"height": 8, "width": 9}),
                 fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 8, "width": 9})):
        check(proc, views, input_data_format="channels_last")
        check(proc, [floats], torch.bfloat16, input_data_format="channels_first")


def test_integer_images_are_converted_exactly():
    rng = np.random.default_rng(8)
    proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 5, "width": 5})
    images = [rng.integers(-300, 3000, (6, 4, 3)).astype(np.int16), rng.integers(0, 65535, (3, 7, 3)).astype(np.uint16)]
    check(proc, images)
    check(proc, [rng.random((5, 5, 3)).astype(np.float16)])  # float16 is exact in float64 when rescaled


def test_mixed_sources_in_one_batch():
    """uint8, float32 and device tensors together: one launch per source buffer, one output."""
    rng = np.random.default_rng(9)
    proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 7, "width": 6})
    images = [
        rng.integers(0, 256, (5, 9, 3), dtype=np.uint8),
        rng.random((8, 3, 3), dtype=np.float32),
        torch.from_numpy(rng.integers(0, 256, (3, 10, 4), dtype=np.uint8)).to(DEVICE),
        torch.from_numpy(rng.random((6, 6, 3), dtype=np.float32)).to(DEVICE),
    ]
    check(proc, images)
    check(proc, images, torch.bfloat16, "channels_last")


# --- tensors already on the device: read in place through their strides ------------------------------------------


def device_batch(rng, n=4, h=13, w=17, channels=3, dtype=torch.uint8):
    if dtype == torch.uint8:
        data = rng.integers(0, 256, (n, channels, h, w), dtype=np.uint8)
    else:
        data = rng.random((n, channels, h, w), dtype=np.float32)
    return torch.from_numpy(data).to(DEVICE)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32], ids=str)
def test_device_tensors_in_place(dtype):
    rng = np.random.default_rng(10)
    proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 10, "width": 19})
    nchw = device_batch(rng, dtype=dtype)
    views = {
        "nchw": nchw,
        "nhwc": nchw.permute(0, 2, 3, 1).contiguous(),
        "nhwc-view": nchw.permute(0, 2, 3, 1),
        "strided": nchw[:, :, ::2, 1::3],
        "reversed-batch": nchw.flip(0)[1:],
        "list-of-separate": [nchw[i].clone() for i in range(3)] + [nchw[3, :, 2:, :5].clone()],
    }
    for name, images in views.items():
        check(proc, images)
        check(proc, images, torch.float16, "channels_last")


def test_one_channel_device_images_converted_to_rgb_by_a_zero_stride():
    rng = np.random.default_rng(11)
    gray = device_batch(rng, channels=1)
    proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 9, "width": 9})
    check(proc, gray)  # do_convert_rgb: the channel repeats
    check(fi.ViTImageProcessor(do_resize=False, image_mean=0.5, image_std=0.25), gray, torch.bfloat16)


def test_device_tensors_resized_on_the_device_or_through_the_host():
    rng = np.random.default_rng(12)
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    batch = device_batch(rng)
    check(proc, batch)  # uint8: resized by the GPU kernel, read in place
    check(proc, [batch[0].clone(), batch[1, :, 1:, ::2].clone()])  # separate tensors: gathered first
    check(proc, batch.float() / 255)  # float values: quantized like transformers, on the host
    rgba = torch.from_numpy(rng.integers(0, 256, (6, 5, 4), dtype=np.uint8)).to(DEVICE)
    check(fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 4, "width": 4}), rgba)  # alpha composite
    check(fi.ViTImageProcessor(size={"height": 5, "width": 7}, image_mean=0.5, image_std=0.5), rgba)  # premultiplied


def test_identity_value_map_keeps_uint8():
    proc = fi.CLIPImageProcessor(do_resize=False, do_rescale=False, do_normalize=False,
                                 crop_size={"height": 6, "width": 7})
    images = random_images(np.random.default_rng(13), RAGGED[:4])
    got = check(proc, images)
    assert got.dtype == torch.uint8


# --- outputs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_out_is_fully_written(dtype, layout):
    """A poisoned (NaN) caller buffer is overwritten everywhere, padding included, and returned as is."""
    rng = np.random.default_rng(14)
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 6}, crop_size={"height": 9, "width": 8})
    images = random_images(rng, RAGGED)
    ref = proc(images, return_tensors="pt", dtype=dtype, data_format=layout).pixel_values
    for inputs in (images, device_batch(rng, n=len(RAGGED), h=6, w=6)):
        expected = proc(host_copy(inputs), return_tensors="pt", dtype=dtype, data_format=layout).pixel_values
        out = torch.full(ref.shape, float("nan"), dtype=dtype, device=DEVICE)
        result = proc(inputs, return_tensors="pt", dtype=dtype, data_format=layout, backend="triton",
                      device=DEVICE, out=out)
        assert result.pixel_values is out
        assert not bool(torch.isnan(out).any())
        assert_bits_equal(out, expected)


def test_out_takes_its_dtype_from_the_buffer():
    proc = fi.CLIPImageProcessor(do_resize=False, crop_size={"height": 4, "width": 4})
    image = random_images(np.random.default_rng(15), [(5, 5)])
    out = torch.empty((1, 3, 4, 4), dtype=torch.bfloat16, device=DEVICE)
    proc(image, return_tensors="pt", backend="triton", device=DEVICE, out=out)
    assert_bits_equal(out, proc(image, return_tensors="pt", dtype=torch.bfloat16).pixel_values)


def test_ragged_outputs_and_lists():
    rng = np.random.default_rng(16)
    proc = fi.ViTImageProcessor(do_resize=False)
    images = random_images(rng, RAGGED[:4])
    ref = proc(images, input_data_format="channels_last").pixel_values
    got = proc(images, input_data_format="channels_last", backend="triton", device=DEVICE).pixel_values
    assert isinstance(got, list) and len(got) == len(ref)
    for g, r in zip(got, ref):
        assert_bits_equal(g, torch.from_numpy(r))
    with pytest.raises(ValueError, match="Unable to create tensor"):
        proc(images, return_tensors="pt", input_data_format="channels_last", backend="triton", device=DEVICE)


def test_many_calls_reuse_the_staging_buffers():
    """More calls than staging slots, without synchronising in between: every result stays right."""
    rng = np.random.default_rng(17)
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 7}, crop_size={"height": 7, "width": 7})
    batches = [random_images(rng, RAGGED[i : i + 3]) for i in range(5)]
    results = [proc(b, return_tensors="pt", backend="triton", device=DEVICE).pixel_values for b in batches]
    for batch, got in zip(batches, results):
        assert_bits_equal(got, proc(batch, return_tensors="pt").pixel_values)


def test_int64_indexing_path_gives_the_same_result(monkeypatch):
    """The 64-bit index arithmetic (batches past 2**31 elements) matches the 32-bit one on a small batch."""
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 9}, crop_size={"height": 9, "width": 10})
    images = random_images(np.random.default_rng(18), RAGGED)
    narrow = proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
    monkeypatch.setattr(triton_backend, "INT32_INDEX_LIMIT", 0)
    wide = proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
    expected = proc(images, return_tensors="pt").pixel_values
    assert_bits_equal(narrow, expected)
    assert_bits_equal(wide, expected)


# --- bad input: rejected before any launch ------------------------------------------------------------------------


@pytest.fixture
def no_launch(monkeypatch):
    def launch(*args, **kwargs):
        raise AssertionError("a kernel was launched for a bad input")

    monkeypatch.setattr(triton_backend.ops.K, "crop_normalize", launch)
    monkeypatch.setattr(triton_backend.staging, "upload", launch)
    monkeypatch.setattr(triton_backend.ops.RK, "resample", launch)


GOOD = np.random.default_rng(19).integers(0, 256, (6, 7, 3), dtype=np.uint8)
CROP4 = dict(do_resize=False, crop_size={"height": 4, "width": 4})


def _out(shape=(1, 3, 4, 4), dtype=torch.float32, **kwargs):
    return lambda: torch.zeros(shape, dtype=dtype, device=kwargs.get("device", DEVICE))


BAD_OUT = [
    ("shape", _out((1, 3, 4, 5)), ValueError, r"out has shape \(1, 3, 4, 5\), but the result has shape \(1, 3, 4, 4\)"),
    ("batch", _out((2, 3, 4, 4)), ValueError, r"out has shape"),
    ("layout", _out((1, 4, 4, 3)), ValueError, r"out has shape"),
    ("dtype", _out(dtype=torch.float16), ValueError, r"out has dtype torch.float16, but the result is torch.float32"),
    ("device", _out(device="meta"), ValueError, r"out is on meta"),
    ("non-contiguous", lambda: torch.zeros((1, 4, 4, 3), device=DEVICE).permute(0, 3, 1, 2), ValueError,
     r"out must be contiguous"),
    ("not-a-tensor", lambda: np.zeros((1, 3, 4, 4), np.float32), TypeError, r"out must be a torch.Tensor"),
]


@pytest.mark.parametrize("name,make_out,exc,match", BAD_OUT, ids=[case[0] for case in BAD_OUT])
def test_bad_out_raises_before_launch(name, make_out, exc, match, no_launch):
    proc = fi.CLIPImageProcessor(**CROP4)
    dtype = torch.float32 if name == "dtype" else None
    with pytest.raises(exc, match=match):
        proc(GOOD, return_tensors="pt", backend="triton", device=DEVICE, out=make_out(), dtype=dtype)


def test_out_needs_pt_and_one_shape(no_launch):
    proc = fi.CLIPImageProcessor(**CROP4)
    out = torch.zeros((1, 3, 4, 4), device=DEVICE)
    with pytest.raises(ValueError, match="out= needs return_tensors='pt'"):
        proc(GOOD, backend="triton", device=DEVICE, out=out)
    ragged = fi.ViTImageProcessor(do_resize=False)
    with pytest.raises(ValueError, match="needs every output image to have the same shape"):
        ragged([GOOD, GOOD[:3]], return_tensors="pt", backend="triton", device=DEVICE, out=out)


BAD_INPUTS = [
    ("float64-unresized", lambda: np.zeros((5, 5, 3)), {}, TypeError, r"image 0 is float64 and is not resized"),
    ("int32-unresized", lambda: np.zeros((5, 5, 3), np.int32), {}, TypeError, r"image 0 is int32"),
    ("int16-identity", lambda: np.zeros((5, 5, 3), np.int16), {"do_rescale": False, "do_normalize": False},
     TypeError, r"not int16"),
    ("float16-no-rescale", lambda: np.zeros((5, 5, 3), np.float16), {"do_rescale": False}, TypeError,
     r"image 0 is float16"),
    ("device-nan", lambda: torch.full((5, 5, 3), float("nan"), device=DEVICE), {}, ValueError, r"NaN or infinite"),
    ("device-2-channels", lambda: torch.zeros((5, 5, 2), dtype=torch.uint8, device=DEVICE), {"do_convert_rgb": False},
     ValueError, r"one of \(1, 3, 4\) channels"),
    ("device-empty", lambda: torch.zeros((0, 5, 3), dtype=torch.uint8, device=DEVICE), {}, ValueError, r"empty"),
    ("np-on-cuda", lambda: GOOD, {"return_tensors": "np"}, ValueError, r"returns torch tensors"),
]


@pytest.mark.parametrize("name,make,kwargs,exc,match", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_raises_before_launch(name, make, kwargs, exc, match, no_launch):
    if name == "device-nan" and DEVICE == "cuda":
        pytest.skip("CUDA tensors are not scanned for NaN (that would synchronise): NaN in gives NaN out")
    if name == "np-on-cuda" and DEVICE == "cpu":
        pytest.skip("return_tensors='np' is allowed for CPU (interpreter) outputs")
    call = {"return_tensors": "pt", **{k: v for k, v in kwargs.items() if k == "return_tensors"}}
    config = {k: v for k, v in kwargs.items() if k != "return_tensors"}
    proc = fi.CLIPImageProcessor(**{**CROP4, **config})
    with pytest.raises(exc, match=match):
        proc(make(), backend="triton", device=DEVICE, **call)


def test_missing_triton_is_reported(monkeypatch):
    import sys

    import fused_imgproc.backends

    monkeypatch.setitem(sys.modules, "fused_imgproc.backends.triton", None)
    monkeypatch.delattr(fused_imgproc.backends, "triton")
    with pytest.raises(fi.BackendUnavailableError, match="needs torch and triton"):
        fi.CLIPImageProcessor()(GOOD, backend="triton", device=DEVICE)


def test_cpu_without_the_interpreter_is_refused(monkeypatch):
    monkeypatch.setattr(triton_backend, "INTERPRETED", False)
    with pytest.raises(fi.BackendUnavailableError, match="needs a CUDA device"):
        fi.CLIPImageProcessor()(GOOD, backend="triton", device="cpu")


@pytest.mark.skipif(DEVICE != "cuda", reason="needs a CUDA GPU")
def test_auto_picks_triton_for_cuda():
    proc = fi.CLIPImageProcessor()
    got = proc(GOOD, return_tensors="pt", device="cuda").pixel_values
    assert got.is_cuda
    assert_bits_equal(got, proc(GOOD, return_tensors="pt").pixel_values)


def test_list_of_mixed_dtypes_keeps_each_images_dtype():
    images = [np.random.default_rng(9).integers(0, 256, (5, 4, 3), dtype=np.uint8), np.full((5, 4, 3), 0.5, np.float32)]
    for config in ({"do_resize": False, "do_rescale": False, "do_normalize": False}, {"do_resize": False}):
        proc = fi.ViTImageProcessor(**config)
        want = proc(images, input_data_format="channels_last").pixel_values
        got = proc(images, input_data_format="channels_last", backend="triton", device=DEVICE).pixel_values
        for a, b in zip(got, want, strict=True):
            assert str(a.dtype).removeprefix("torch.") == b.dtype.name
            assert np.array_equal(a.cpu().numpy(), b)


def test_cached_resize_plans_follow_shapes_offsets_and_configs():
    """The device path caches its resize plan by geometry, source mapping and output offsets: interleaved calls
    that differ in any of them each get their own plan (compared with the numpy backend)."""
    rng = np.random.default_rng(11)
    base = torch.from_numpy(rng.integers(0, 256, (2, 40, 50, 3), dtype=np.uint8)).to(DEVICE)
    calls = [
        ({}, [base[0]]), ({}, [base[1]]), ({"size": {"shortest_edge": 20}}, [base[0]]),
        ({}, [base[0][:30]]), ({}, [base[1], base[0]]), ({}, [base[0], base[1]]), ({}, [base[0]]),
    ]
    for _ in range(2):
        for config, tensors in calls:
            proc = fi.CLIPImageProcessor(crop_size={"height": 16, "width": 18}, **config)
            got = proc(tensors, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
            want = proc([t.cpu().numpy() for t in tensors], return_tensors="np").pixel_values
            assert np.array_equal(got.cpu().numpy(), want), (config, [tuple(t.shape) for t in tensors])
