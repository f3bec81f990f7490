"""The Qwen2-VL family on the Triton backend: patch rows bit-identical to the numpy backend (itself bit-exact with
transformers, test_qwen2_vl.py) for every output dtype, ragged batches of every input kind, `out=`, the call cache.

Runs on a CUDA GPU when there is one, else through the Triton interpreter on CPU tensors (small images there).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from test_qwen2_vl import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, OTHER, QWEN2_5_VL_7B, QWEN3_VL, _config_kwargs, _photo
from test_triton_backend import DTYPES, assert_bits_equal, host_copy
from triton_mode import DEVICE, SMALL, count_launches, torch

import fused_imgproc as fi

CONFIGS = {
    "qwen2.5-vl": _config_kwargs(QWEN2_5_VL_7B),
    "qwen3-vl": _config_kwargs(QWEN3_VL),
    "other0": OTHER[0],
    "other1-up": OTHER[1],
    "nearest-no-normalize": OTHER[3] | {"do_normalize": False},
}
# Under the interpreter, resized images of 2000 to 6000 pixels (inputs of 400 to 8100: up- and downscaled); on a GPU
# the configs' own pixel ranges.
SMALL_SIZE = {"size": {"shortest_edge": 2000, "longest_edge": 6000}}


def processor(name: str) -> fi.Qwen2VLImageProcessor:
    config = CONFIGS[name]
    if SMALL:
        config = {key: value for key, value in config.items() if key not in ("min_pixels", "max_pixels")} | SMALL_SIZE
    return fi.Qwen2VLImageProcessor(**config)


def mixed_batch(rng, device_tensors: bool = True, extreme: bool = False):
    """Photos and noise of ragged sizes, as HWC and CHW arrays, a PIL image, a float image, device tensors (and an
    image of aspect ratio 200, as far as is legal, when `extreme`)."""
    side = (lambda: int(rng.integers(20, 90))) if SMALL else (lambda: int(rng.integers(200, 1200)))
    batch = [
        _photo(side(), side()),
        np.ascontiguousarray(rng.integers(0, 256, (side(), side(), 3), dtype=np.uint8).transpose(2, 0, 1)),
        PIL.Image.fromarray(_photo(side(), side(), "portrait.png")).convert("RGBA"),
        rng.random((side(), side(), 3), dtype=np.float32),  # floats in [0, 1]: quantized for the resize
    ]
    if extreme:
        batch.append(rng.integers(0, 256, (2, 400, 3), dtype=np.uint8))
    if device_tensors:
        batch.append(torch.from_numpy(_photo(side(), side()).copy()).to(DEVICE))
        batch.append(torch.from_numpy(_photo(side(), side())).permute(2, 0, 1).contiguous().to(DEVICE))
    return batch


@pytest.mark.parametrize("name, dtype", [(name, torch.float32) for name in CONFIGS] + [
    ("qwen2.5-vl", torch.bfloat16), ("qwen3-vl", torch.float16), ("other1-up", torch.bfloat16)], ids=str)
def test_ragged_batches_equal_the_numpy_backend(name, dtype):
    proc = processor(name)
    images = mixed_batch(np.random.default_rng(len(name)), extreme=name == "qwen2.5-vl" and dtype == torch.float32)
    ref = proc(host_copy(images), return_tensors="pt", dtype=dtype)
    got = proc(images, return_tensors="pt", dtype=dtype, backend="triton", device=DEVICE)
    assert got.pixel_values.device.type == DEVICE
    assert_bits_equal(got.pixel_values, ref.pixel_values)
    assert got.image_grid_thw.device.type == "cpu" and torch.equal(got.image_grid_thw, ref.image_grid_thw)
    if dtype == torch.float32 and name == "qwen3-vl":  # the reference's own dtype without dtype=
        assert_bits_equal(proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values,
                          ref.pixel_values)


def test_return_tensors_none_gives_one_tensor():
    proc = processor("qwen2.5-vl")
    images = mixed_batch(np.random.default_rng(1), device_tensors=False)
    got = proc(images, backend="triton", device=DEVICE)
    ref = proc(images)
    assert isinstance(got.pixel_values, torch.Tensor) and isinstance(got.image_grid_thw, torch.Tensor)
    assert_bits_equal(got.pixel_values, torch.from_numpy(ref.pixel_values))
    assert np.array_equal(got.image_grid_thw.numpy(), ref.image_grid_thw)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_out_is_fully_written(dtype):
    """A NaN-poisoned buffer of the total row count is overwritten everywhere and returned as it is."""
    proc = processor("qwen3-vl")
    rng = np.random.default_rng(2)
    images = mixed_batch(rng)
    expected = proc(host_copy(images), return_tensors="pt", dtype=dtype).pixel_values
    out = torch.full(expected.shape, float("nan"), dtype=dtype, device=DEVICE)
    result = proc(images, return_tensors="pt", dtype=dtype, backend="triton", device=DEVICE, out=out)
    assert result.pixel_values is out and not bool(torch.isnan(out).any())
    assert_bits_equal(out, expected)
    out.fill_(float("nan"))
    again = proc(images, return_tensors="pt", dtype=dtype, backend="triton", device=DEVICE, out=out)  # a replay
    assert again.pixel_values is out
    assert_bits_equal(out, expected)
    with pytest.raises(ValueError, match="out has shape"):
        proc(images, return_tensors="pt", dtype=dtype, backend="triton", device=DEVICE, out=out[1:])


def test_one_crop_normalize_launch_for_the_batch(monkeypatch):
    calls = count_launches(monkeypatch)
    proc = processor("other0")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (int(rng.integers(10, 60)), int(rng.integers(10, 60)), 3), dtype=np.uint8)
              for _ in range(9)]
    proc(images, return_tensors="pt", backend="triton", device=DEVICE)
    assert calls.count("crop_normalize_out") == 1 and calls.count("resample_out") <= 2, calls


def test_replayed_calls_see_new_pixels_and_return_their_own_grid():
    proc = processor("qwen2.5-vl")
    rng = np.random.default_rng(4)
    shape = (40, 70, 3) if SMALL else (1080, 1920, 3)
    for _ in range(3):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        got = proc(image, return_tensors="pt", backend="triton", device=DEVICE, dtype=torch.bfloat16)
        ref = proc(image, return_tensors="pt", dtype=torch.bfloat16)
        assert_bits_equal(got.pixel_values, ref.pixel_values)
        assert torch.equal(got.image_grid_thw, ref.image_grid_thw)
        got.image_grid_thw[0, 0] = 99  # the caller's to change: the next replay's grid is its own
    assert len(proc._calls()) == 1
    assert proc(image, return_tensors="pt", backend="triton", device=DEVICE).image_grid_thw[0, 0] == 1


def test_patch_rows_follow_the_documented_mapping():
    """The kernel's row and column of every value (docs/BEHAVIOUR.md section 11), independently of the numpy
    backend: an image whose values encode their own (c, y, x) position, without rescale or normalize."""
    size, merge, temporal = 3, 2, 3
    proc = fi.Qwen2VLImageProcessor(patch_size=size, merge_size=merge, temporal_patch_size=temporal,
                                    do_resize=False, do_rescale=False, do_normalize=False)
    h, w = 12, 18
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    image = np.stack([(y * w + x) % 256, (y * 7 + x * 3) % 256, (x * 11 + y) % 256], axis=-1).astype(np.uint8)
    rows = proc(image, return_tensors="pt", backend="triton", device=DEVICE).pixel_values.cpu().numpy()
    gw = w // size
    for c in range(3):
        for yy in range(h):
            for xx in range(w):
                by, my, py = yy // (size * merge), yy // size % merge, yy % size
                bx, mx, px = xx // (size * merge), xx // size % merge, xx % size
                row = ((by * (gw // merge) + bx) * merge + my) * merge + mx
                for t in range(temporal):
                    assert rows[row, ((c * temporal + t) * size + py) * size + px] == image[yy, xx, c]


def test_padded_geometries_in_patch_rows():
    """A plan whose crop window pads (no processor of ours makes one today, the layout allows it): both backends give
    the image layout's (C, H, W) values, padding included, cut into rows by transformers' reshape and transpose."""
    from fused_imgproc.backends import numpy as numpy_backend
    from fused_imgproc.backends import triton as triton_backend
    from fused_imgproc.geometry import ImageGeometry
    from fused_imgproc.image_utils import PreparedImage
    from fused_imgproc.plan import UINT8, BatchPlan, ImageLayout, ImagePlan, PatchLayout, make_value_map

    rng = np.random.default_rng(6)
    value_map = make_value_map(True, 1 / 255, True, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, 3)
    layout = PatchLayout(patch_size=3, merge_size=2, temporal_patch_size=2)
    images, items = [], []
    for (h, w), crop in [((10, 7), (12, 12)), ((20, 25), (18, 24)), ((6, 6), (6, 6))]:
        array = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        images.append(PreparedImage(array=array))
        geometry = ImageGeometry.identity((h, w)).resized((h + 1, w - 1), 2).center_cropped(crop)
        items.append(ImagePlan(geometry, UINT8, 3))
    chw = numpy_backend.execute(BatchPlan(tuple(items), value_map, ImageLayout()), images, stack=False)
    expected = []
    for image in chw:  # transformers' patchify of the (C, H, W) image
        c, h, w = image.shape
        gh, gw = h // 3, w // 3
        patches = image.reshape(c, gh // 2, 2, 3, gw // 2, 2, 3).transpose(1, 4, 2, 5, 0, 3, 6)
        expected.append(np.broadcast_to(patches[:, :, :, :, :, None], (*patches.shape[:5], 2, 3, 3)).reshape(gh * gw, -1))
    expected = np.concatenate(expected)
    plan = BatchPlan(tuple(items), value_map, layout)
    assert np.array_equal(numpy_backend.execute(plan, images), expected)
    device = triton_backend.resolve_device(DEVICE)
    got = triton_backend.execute(plan, images, device=device)
    assert_bits_equal(got, torch.from_numpy(expected))
