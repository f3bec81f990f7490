"""Resource limits and exception types (docs/BEHAVIOUR.md section 9): a request that would take gigabytes, or a
parameter that does not fit a float, fails at once with a ValueError/TypeError naming the problem."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fused_imgproc as fi
from fused_imgproc import limits
from fused_imgproc.image_utils import _blocks, all_finite

IMAGE = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)

# Each reproducer of the issue: what it is, the call, the message fragment. They run in a child process whose
# address space is capped, so a regression that allocates gigabytes fails the test instead of taking CI down.
REPRODUCERS = {
    "shortest_edge 20000": ("fi.CLIPImageProcessor(size={'shortest_edge': 20000})(big)", "over the limit of"),
    "2 x 20000 image": ("fi.CLIPImageProcessor()(np.zeros((2, 20000, 3), np.uint8))", "over the limit of"),
    "crop 10**6": ("fi.CLIPImageProcessor(crop_size=10**6)(big)", "output would be 1000000x1000000"),
    "size 2**31": ("fi.ViTImageProcessor(size={'height': 2**31, 'width': 1})(big)", "over the limit of"),
    "shortest_edge 10**9 (triton)": (
        ("fi.CLIPImageProcessor(size={'shortest_edge': 10**9})(big, return_tensors='pt', backend='triton', "
         "device='cpu')"), "over the limit of"),
    "broadcast NaN check": ("fi.ViTImageProcessor()(np.broadcast_to(np.float32(0.5), (10**6, 10**6, 3)))",
                            "input image of shape (1000000, 1000000, 3)"),
    "degenerate aspect ratio": ("fi.CLIPImageProcessor()(np.zeros((2, 500, 3), np.uint8))", "aspect ratio of 250:1"),
    "rescale_factor 10**400": ("fi.CLIPImageProcessor(rescale_factor=10**400)", "too large to be a float"),
    "image_std 10**400": ("fi.CLIPImageProcessor(image_std=10**400)", "too large to be a float"),
    "image_mean 10**400 in a call": ("fi.CLIPImageProcessor()(big, image_mean=[10**400, 1, 1])", "too large"),
    "crop_pct 10**400": ("fi.PoolFormerImageProcessor(crop_pct=10**400)", "too large to be a float"),
    "image_std 1e-50": ("fi.CLIPImageProcessor(image_std=1e-50)(big)", "non-zero in float32"),
    "image_mean 1e39": ("fi.CLIPImageProcessor(image_mean=1e39)(big)", "finite in float32"),
    "rescale_factor 1e300": ("fi.CLIPImageProcessor(rescale_factor=1e300)(big)", "finite in float32"),
    "functional rescale 10**400": ("fi.rescale(big, 10**400)", "too large to be a float"),
    "functional normalize 10**400": ("fi.normalize(big, 10**400, 1)", "too large to be a float"),
    "functional resize 2**31": ("fi.resize(big, (2**31, 5))", "over the limit of"),
    "functional center_crop 10**6": ("fi.center_crop(big, (10**6, 10**6))", "over the limit of"),
    "method resize 2 x 20000": (
        "fi.CLIPImageProcessor().resize(np.zeros((2, 20000, 3), np.uint8), {'shortest_edge': 224})", "over the limit"),
}

CHILD = textwrap.dedent("""
    import json, os, resource, sys, warnings
    os.environ.setdefault("TRITON_INTERPRET", "1")
    import numpy as np, torch  # imported before the cap: their libraries map gigabytes of address space
    import fused_imgproc as fi
    import fused_imgproc.backends.triton  # noqa: F401
    warnings.simplefilter("ignore")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (used + 768 * 2**20, hard))  # 768 MiB more than the imports took
    big = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    results = {}
    for name, code in json.loads(sys.argv[1]).items():
        try:
            eval(code)
            results[name] = ["returned", ""]
        except BaseException as error:  # noqa: BLE001 (the type is what is checked)
            results[name] = [type(error).__name__, str(error)]
    print(json.dumps(results))
""")


def test_reproducers_fail_fast_with_value_errors_in_bounded_memory():
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    codes = {name: code for name, (code, _) in REPRODUCERS.items()}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(codes)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TRITON_INTERPRET": "1"}, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for name, (_, fragment) in REPRODUCERS.items():
        kind, message = results[name]
        assert kind == "ValueError", (name, kind, message)
        assert fragment in message, (name, message)


def test_limit_messages_name_the_image_sizes_and_limit():
    with pytest.raises(ValueError) as info:
        fi.CLIPImageProcessor(size={"shortest_edge": 20000})([IMAGE, IMAGE[:40]])
    message = str(info.value)
    assert message.startswith("Image 0 (48x64) resized would be 20000x26666 = 533,320,000 pixels")
    assert "268,435,456" in message and "set_limits(max_image_pixels=...)" in message


def test_set_limits_changes_and_restores():
    proc = fi.ViTImageProcessor(size={"height": 100, "width": 100})
    before = limits.get_limits()
    with limits.set_limits(max_image_pixels=99 * 100), pytest.raises(ValueError, match="over the limit of 9,900"):
        proc(IMAGE)
    assert limits.get_limits() == before
    assert proc(IMAGE, return_tensors="np").pixel_values.shape == (1, 3, 100, 100)
    with limits.set_limits(max_call_bytes=3 * 100 * 100 * 4 * 2):  # two outputs fit, not three
        proc([IMAGE, IMAGE], do_resize=False, do_center_crop=True, crop_size=100)
        with pytest.raises(ValueError, match=r"This call \(3 image\(s\)\) needs about"):
            proc([IMAGE, IMAGE, IMAGE], do_resize=False, do_center_crop=True, crop_size=100)
    with limits.set_limits(max_aspect_ratio=None):
        assert fi.CLIPImageProcessor()(np.zeros((2, 500, 3), np.uint8), return_tensors="np").pixel_values.shape == (
            1, 3, 224, 224)
    with pytest.raises(TypeError, match="Unknown limit"):
        limits.set_limits(max_pixels=1)
    with pytest.raises(ValueError, match="positive number or None"):
        limits.set_limits(max_call_bytes=0)
    assert limits.get_limits() == before


def test_limits_from_the_environment():
    code = "from fused_imgproc import limits; print(limits.get_limits())"
    env = {**os.environ, "FUSED_IMGPROC_MAX_IMAGE_PIXELS": "1000", "FUSED_IMGPROC_MAX_ASPECT_RATIO": "0",
           "FUSED_IMGPROC_MAX_CALL_BYTES": "2048"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "Limits(max_image_pixels=1000, max_aspect_ratio=None, max_call_bytes=2048)"
    env["FUSED_IMGPROC_MAX_CALL_BYTES"] = "lots"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert done.returncode != 0 and "FUSED_IMGPROC_MAX_CALL_BYTES='lots' is not a number" in done.stderr


def test_real_sizes_pass_the_default_limits():
    """An 8K frame through CLIP, and a large warp (4096 x 4096, as high-resolution configs ask), are not refused."""
    frame = np.zeros((4320, 7680, 3), np.uint8)
    frame[::7, ::5] = 200
    assert fi.CLIPImageProcessor()(frame, return_tensors="np").pixel_values.shape == (1, 3, 224, 224)
    warp = fi.ViTImageProcessor(size={"height": 4096, "width": 4096}, resample=0)
    assert warp(frame[:2000, :3000], return_tensors="np").pixel_values.shape == (1, 3, 4096, 4096)


def test_thin_images_of_reasonable_ratios_still_work():
    for shape in ((9, 300, 3), (1200, 17, 3), (1, 5, 3), (3, 600, 3)):
        assert fi.CLIPImageProcessor()(np.zeros(shape, np.uint8), return_tensors="np").pixel_values.shape == (
            1, 3, 224, 224)


@pytest.mark.parametrize("call, exc, fragment", [
    (lambda: fi.CLIPImageProcessor(rescale_factor=float("nan"))(IMAGE), ValueError, "rescale_factor must be finite"),
    (lambda: fi.CLIPImageProcessor()(IMAGE, image_std=[1, 2, 10**309]), ValueError, "too large to be a float"),
    (lambda: fi.ConvNextImageProcessor(crop_pct=float("inf")), ValueError, "crop_pct must be finite"),
    (lambda: fi.rescale(IMAGE, float("inf")), ValueError, "scale must be finite"),
    (lambda: fi.rescale(IMAGE, "2"), TypeError, "scale must be a number"),
    (lambda: fi.normalize(IMAGE, ["a", 1, 2], 1), TypeError, "mean must be a number"),
    (lambda: fi.ViTImageProcessor()(np.broadcast_to(np.float32(np.nan), (50, 60, 3))), ValueError, "NaN"),
])
def test_parameter_errors_are_typed(call, exc, fragment):
    with pytest.raises(exc, match=fragment):
        call()


def test_bounded_elementwise_checks(monkeypatch):
    """The NaN and range checks visit blocks (a broadcast axis once): identical answers, bounded temporaries."""
    from fused_imgproc import image_utils

    monkeypatch.setattr(image_utils, "_BLOCK_ELEMENTS", 64)
    rng = np.random.default_rng(1)
    for shape in ((3, 20, 30), (20, 30, 3), (1, 1, 1), (5, 700, 2)):
        array = rng.random(shape)
        blocks = list(_blocks(array))
        assert sum(block.size for block in blocks) == array.size
        assert all(block.size <= 64 or block.ndim == 1 for block in blocks)
        assert all_finite(array)
        array.flat[rng.integers(array.size)] = np.inf
        assert not all_finite(array)
        for values in (rng.random(shape), np.floor(rng.random(shape) * 255), rng.random(shape) * 3):
            expected = _reference_rule(values)
            got = _our_rule(values)
            assert got == expected, (shape, got, expected)
    broadcast = np.broadcast_to(np.float32(0.25), (10**6, 10**6, 3))
    assert len(list(_blocks(broadcast))) == 1 and all_finite(broadcast)


def _reference_rule(image):
    if np.allclose(image, image.astype(int)):
        return "integral" if image.min() >= 0 and image.max() <= 255 else "error"
    return "unit" if image.min() >= 0 and image.max() <= 1 else "error"


def _our_rule(image):
    from fused_imgproc.image_utils import rescale_for_pil_conversion

    try:
        return "unit" if rescale_for_pil_conversion(image) else "integral"
    except ValueError:
        return "error"


def test_float32_bounds_agree_with_numpy():
    from fused_imgproc.plan import _F32_OVERFLOW, _F32_ZERO, _finite_in_float32, _zero_in_float32

    rng = np.random.default_rng(2)
    values = [0.0, 1e-50, _F32_ZERO, np.nextafter(_F32_ZERO, 1), 2.0**-149, 1e-45, 1.0, 3.4028234663852886e38,
              _F32_OVERFLOW, np.nextafter(_F32_OVERFLOW, 0), np.nextafter(_F32_OVERFLOW, np.inf), 1e39, np.inf, np.nan]
    values += list(rng.standard_normal(2000) * 10.0 ** rng.integers(-60, 60, 2000))
    with np.errstate(over="ignore"):
        for value in values + [-v for v in values]:
            single = np.float32(value)
            assert _finite_in_float32(value) == bool(np.isfinite(single)), value
            if np.isfinite(value):
                assert _zero_in_float32(value) == (single == 0), value


def test_pillow_sides_are_bounded_even_with_the_limits_disabled():
    image = np.zeros((5, 6, 3), np.uint8)
    with limits.set_limits(max_image_pixels=None, max_aspect_ratio=None, max_call_bytes=None):
        with pytest.raises(ValueError, match="Pillow's sides are below 2\\*\\*31"):
            fi.resize(image, (2**31, 1))
        with pytest.raises(ValueError, match="Image 0 \\(5x6\\) resized would be 2147483648x1"):
            fi.ViTImageProcessor(size={"height": 2**31, "width": 1})(image)
