"""The GPU resize (Triton; interpreter without a GPU), bit-identical to `PIL.Image.resize` and, through the
processors, to the numpy backend."""

from __future__ import annotations

import types

import numpy as np
import PIL.Image
import pytest
from test_resample import FILTERS, pillow
from triton_mode import DEVICE, SMALL, count_launches, torch

import fused_imgproc as fi
from fused_imgproc.backends import gpu_resize
from fused_imgproc.backends import numpy as numpy_backend
from fused_imgproc.backends import triton as triton_backend
from fused_imgproc.geometry import ImageGeometry
from fused_imgproc.image_utils import PreparedImage
from fused_imgproc.plan import UINT8, BatchPlan, ImagePlan, make_value_map

PAIRS = 300


def random_pairs(rng, count):
    """(input size, output size) pairs: up- and down-scaling by large factors, 1-pixel sides, extreme ratios."""
    small, large = (40, 200) if SMALL else (400, 2000)
    pairs = []
    while len(pairs) < count:
        kind = len(pairs) % 5
        if kind == 0:  # large downscale
            in_hw = (int(rng.integers(1, large)), int(rng.integers(1, large)))
            out_hw = (int(rng.integers(1, 8)), int(rng.integers(1, 8)))
        elif kind == 1:  # large upscale
            in_hw = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
            out_hw = (int(rng.integers(1, small * 2)), int(rng.integers(1, small * 2)))
        elif kind == 2:  # extreme aspect ratios and 1-pixel sides
            in_hw = (1, int(rng.integers(1, large))) if rng.random() < 0.5 else (int(rng.integers(1, large)), 1)
            out_hw = (int(rng.integers(1, small)), int(rng.integers(1, 3)))
        else:
            in_hw = (int(rng.integers(1, small)), int(rng.integers(1, small)))
            out_hw = (int(rng.integers(1, small)), int(rng.integers(1, small)))
        if in_hw != out_hw:
            pairs.append((in_hw, out_hw))
    return pairs


def gpu_resize_batch(images, out_sizes, resample):
    """Resizes a ragged batch through the backend's staging and resample passes; returns each resized image."""
    items = tuple(
        ImagePlan(ImageGeometry.identity(image.shape[:2]).resized(out_hw, resample), UINT8, image.shape[2])
        for image, out_hw in zip(images, out_sizes)
    )
    plan = BatchPlan(items, make_value_map(False, 1.0, False, None, None, 3))
    prepared = [PreparedImage(array=image) for image in images]
    assert all(gpu_resize.on_gpu(item, image) for item, image in zip(items, prepared))
    captured = []

    def descriptor(sources):
        captured.extend(sources)
        return np.zeros((len(sources), 13), dtype=np.int64)

    device = triton_backend.resolve_device(DEVICE)
    launch = types.SimpleNamespace(float_src=False, descriptor=descriptor)  # what a host group needs of its launch
    group = triton_backend._HostGroup(plan, prepared, list(range(len(images))), launch, device)
    work, _ = group.stage(prepared)
    work = work.cpu().numpy()
    results = []
    for (offset, (row, col, _)), (h, w) in zip(captured, out_sizes):
        results.append(work[offset : offset + h * row].reshape(h, w, col))
    return results


@pytest.mark.parametrize("resample", FILTERS)
def test_gpu_resize_equals_pillow(resample):
    rng = np.random.default_rng(100 + resample)
    pairs = random_pairs(rng, PAIRS)
    images = [rng.integers(0, 256, (*in_hw, 3 if k % 3 else 1), dtype=np.uint8) for k, (in_hw, _) in enumerate(pairs)]
    results = gpu_resize_batch(images, [out_hw for _, out_hw in pairs], resample)
    for image, (in_hw, out_hw), got in zip(images, pairs, results):
        np.testing.assert_array_equal(got, pillow(image, out_hw, resample), err_msg=f"{in_hw} -> {out_hw}")


def small_clip(**config):
    if SMALL:
        config = {"size": {"shortest_edge": 15}, "crop_size": {"height": 13, "width": 12}, **config}
    return fi.CLIPImageProcessor(**config)


def test_pipeline_resizes_on_the_gpu(monkeypatch):
    """With the GPU resize, the host never resizes an L/RGB image: Pillow's resize is not called."""
    proc = small_clip()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 60), (61, 23), (9, 90), (15, 15)]]
    images.append(PIL.Image.fromarray(images[0]))
    images.append(PIL.Image.fromarray(images[1][..., 0]))  # L
    expected = proc(images, return_tensors="pt").pixel_values
    original = numpy_backend.resized_pixels

    def no_host_resize(image, item):
        assert item.geometry.resample is None, "resized on the host"
        return original(image, item)

    monkeypatch.setattr(numpy_backend, "resized_pixels", no_host_resize)
    monkeypatch.setattr(PIL.Image.Image, "resize", lambda *a, **k: pytest.fail("PIL resize called"))
    got = proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
    assert torch.equal(got.cpu(), expected)


def test_inputs_pillow_treats_specially_take_the_host_path():
    """RGBA (premultiplied alpha) and filters without a GPU version: Pillow on the host. (A palette image has
    become an array before the resize, RGB or its indices, as in transformers: the GPU resizes that.)"""
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (30, 41, 4), dtype=np.uint8)
    palette = PIL.Image.fromarray(rng.integers(0, 256, (25, 33, 3), dtype=np.uint8)).convert("P")
    cases = [
        (fi.ViTImageProcessor(size={"height": 9, "width": 14}, image_mean=0.5, image_std=0.5), [rgba]),
        (fi.ViTImageProcessor(size={"height": 9, "width": 14}, image_mean=0.5, image_std=0.5),
         [PIL.Image.fromarray(rgba, "RGBA")]),
        (fi.ViTImageProcessor(size={"height": 11, "width": 8}, image_mean=0.5, image_std=0.5), [palette]),
        (fi.CLIPImageProcessor(size={"shortest_edge": 12}, crop_size={"height": 10, "width": 10}, resample=6),
         [rgba[..., :3]]),  # MKS2013
    ]
    for proc, images in cases:
        expected = proc(images, return_tensors="pt").pixel_values
        got = proc(images, return_tensors="pt", backend="triton", device=DEVICE).pixel_values
        assert torch.equal(got.cpu(), expected)
    prepared = PreparedImage(pil=PIL.Image.fromarray(rgba, "RGBA"))
    geometry = ImageGeometry.identity((30, 41)).resized((9, 14), 3)
    assert not gpu_resize.on_gpu(ImagePlan(geometry, UINT8, 4), prepared)


@pytest.mark.parametrize("resample", FILTERS)
def test_every_filter_through_the_pipeline(resample):
    proc = small_clip(resample=resample)
    rng = np.random.default_rng(3)
    sizes = [(1, 1), (2, 70), (70, 2), (31, 47), (12, 13), (100, 9)] if SMALL else [(480, 640), (1, 900), (2000, 30)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    for dtype in (None, torch.bfloat16):
        expected = proc(images, return_tensors="pt", dtype=dtype, input_data_format="channels_last").pixel_values
        got = proc(images, return_tensors="pt", dtype=dtype, input_data_format="channels_last", backend="triton",
                   device=DEVICE).pixel_values
        assert torch.equal(got.cpu(), expected)


def test_launches_do_not_grow_with_the_batch(monkeypatch):
    calls = count_launches(monkeypatch)
    proc = small_clip()
    rng = np.random.default_rng(4)
    for n in (1, 7, 20):
        calls.clear()
        images = [rng.integers(0, 256, (int(rng.integers(10, 60)), int(rng.integers(10, 60)), 3), dtype=np.uint8)
                  for _ in range(n)]
        proc(images, return_tensors="pt", backend="triton", device=DEVICE)
        assert calls.count("crop_normalize_out") == 1 and calls.count("resample_out") <= 2, (n, calls)
