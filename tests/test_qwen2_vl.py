"""The Qwen2-VL family (Qwen2-VL, Qwen2.5-VL, Qwen3-VL): bit-identical with transformers' `Qwen2VLImageProcessorPil`
(pixel_values and image_grid_thw), config loading, patch counts, bad inputs; the numpy backend's banded resize."""

from __future__ import annotations

import json
import warnings

import numpy as np
import PIL.Image
import pytest
from fake_hub import fake_hub  # noqa: F401  (a pytest fixture: a Hub on 127.0.0.1)

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

import fused_imgproc as fi
from fused_imgproc.backends import native
from fused_imgproc.backends import numpy as numpy_backend
from fused_imgproc.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from fused_imgproc.processors.auto import image_processor_class_for

NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5
SAMPLES = fi.__path__[0] + "/samples/"

# The preprocessor_config.json files of the Hub checkpoints (Qwen2-VL-7B-Instruct, Qwen2.5-VL-7B-Instruct,
# Qwen3-VL-8B-Instruct), and the one transformers 4.45-4.48 saved (size under the old key names, plus the keys).
QWEN2_VL_7B = {
    "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
    "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD),
    "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2VLProcessor",
}
QWEN2_5_VL_7B = {**QWEN2_VL_7B, "processor_class": "Qwen2_5_VLProcessor"}
QWEN3_VL = {
    "size": {"longest_edge": 16777216, "shortest_edge": 65536}, "patch_size": 16, "temporal_patch_size": 2,
    "merge_size": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "do_convert_rgb": True,
    "do_normalize": True, "do_rescale": True, "do_resize": True, "resample": 3, "rescale_factor": 1 / 255,
    "image_processor_type": "Qwen2VLImageProcessorFast", "processor_class": "Qwen3VLProcessor",
}
QWEN2_VL_4_45 = {**QWEN2_VL_7B, "size": {"min_pixels": 3136, "max_pixels": 12845056}, "do_convert_rgb": True}
REAL = {"qwen2-vl-7b": QWEN2_VL_7B, "qwen2.5-vl-7b": QWEN2_5_VL_7B, "qwen3-vl": QWEN3_VL, "qwen2-vl-4.45": QWEN2_VL_4_45}
OTHER = [
    {"patch_size": 8, "merge_size": 3, "temporal_patch_size": 3, "max_pixels": 40000, "resample": BILINEAR},
    {"patch_size": 7, "merge_size": 1, "temporal_patch_size": 1, "min_pixels": 200000, "max_pixels": 400000},  # up
    {"max_pixels": 20000, "resample": LANCZOS},  # down
    {"size": {"shortest_edge": 100000, "longest_edge": 150000}, "resample": NEAREST, "image_mean": 0.3},
    {"resample": BOX, "do_normalize": False},
    {"resample": HAMMING, "do_rescale": False, "image_std": [0.2, 0.3, 0.4]},
    {"do_rescale": False, "do_normalize": False, "max_pixels": 30000},
]
CONFIGS = [pytest.param(config, id=name) for name, config in REAL.items()] + [
    pytest.param(config, id=f"other{k}") for k, config in enumerate(OTHER)
]


def _config_kwargs(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in ("image_processor_type", "processor_class")}


def _pair(config: dict):
    kwargs = _config_kwargs(config)
    return fi.Qwen2VLImageProcessor(**kwargs), Qwen2VLImageProcessorPil(**kwargs)


def _photo(height: int, width: int, name: str = "landscape.jpg") -> np.ndarray:
    return np.asarray(PIL.Image.open(SAMPLES + name).convert("RGB").resize((width, height), PIL.Image.BICUBIC))


def _assert_same(ours, ref) -> None:
    assert type(ours["pixel_values"]) is type(ref["pixel_values"])
    assert np.asarray(ours["pixel_values"]).dtype == np.asarray(ref["pixel_values"]).dtype
    np.testing.assert_array_equal(np.asarray(ours["image_grid_thw"]), np.asarray(ref["image_grid_thw"]))
    assert np.asarray(ours["image_grid_thw"]).dtype == np.int64
    ours_values, ref_values = np.asarray(ours["pixel_values"]), np.asarray(ref["pixel_values"])
    assert ours_values.shape == ref_values.shape
    assert ours_values.tobytes() == ref_values.tobytes()  # bit for bit (NaN-safe, -0.0 vs 0.0 distinguished)


RNG = np.random.default_rng(0)
IMAGES = {
    "photo": _photo(333, 500),
    "portrait-photo": _photo(420, 260, "portrait.png"),
    "noise": RNG.integers(0, 256, (97, 131, 3), dtype=np.uint8),
    "tiny": RNG.integers(0, 256, (1, 1, 3), dtype=np.uint8),
    "tiny-2x3": RNG.integers(0, 256, (2, 3, 3), dtype=np.uint8),
    "tall-200": RNG.integers(0, 256, (400, 2, 3), dtype=np.uint8),  # aspect ratio exactly 200: legal
    "wide-150": RNG.integers(0, 256, (3, 450, 3), dtype=np.uint8),
    "exact-grid": RNG.integers(0, 256, (56, 112, 3), dtype=np.uint8),
    "structured": np.broadcast_to((np.arange(120)[:, None, None] * 7 + np.arange(90)[None, :, None] * 3
                                   + np.arange(3)) % 256, (120, 90, 3)).astype(np.uint8),
}


@pytest.mark.parametrize("config", CONFIGS)
def test_numpy_images_bit_identical(config):
    ours, ref = _pair(config)
    for name, image in IMAGES.items():
        if config.get("min_pixels", 0) >= 200000 and name.startswith(("tall", "wide")):
            continue  # an upscale of 2x400 to 200k pixels is a legal but slow reference call
        _assert_same(ours(image), ref(image))
    batch = [IMAGES["photo"], IMAGES["noise"], IMAGES["tiny-2x3"], IMAGES["structured"]]
    _assert_same(ours(batch), ref(batch))
    _assert_same(ours(batch, return_tensors="np"), ref(batch, return_tensors="np"))


def test_a_1080p_photo_bit_identical():
    photo = _photo(1080, 1920)
    for config in (QWEN2_5_VL_7B, QWEN3_VL):
        ours, ref = _pair(config)
        _assert_same(ours(photo), ref(photo))


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "P", "CMYK", "I;16", "1", "YCbCr"])
@pytest.mark.parametrize("config", [QWEN2_5_VL_7B, QWEN3_VL, OTHER[0]], ids=["qwen2.5", "qwen3", "other0"])
def test_pil_modes(mode, config):
    ours, ref = _pair(config)
    image = PIL.Image.fromarray(_photo(61, 83)).convert(mode)
    _assert_same(ours(image), ref(image))
    _assert_same(ours([image, image.resize((40, 30))]), ref([image, image.resize((40, 30))]))


def test_pil_modes_without_rgb_conversion():
    ours, ref = _pair({**QWEN2_VL_7B, "do_convert_rgb": False})
    for mode in ("RGB", "RGBA"):
        image = PIL.Image.fromarray(_photo(45, 70)).convert(mode)
        kwargs = {"image_mean": [0.5] * 4, "image_std": [0.5] * 4} if mode == "RGBA" else {}
        _assert_same(ours(image, **kwargs), ref(image, **kwargs))
    gray = PIL.Image.fromarray(_photo(45, 70)).convert("L")
    _assert_same(ours(gray, image_mean=0.5, image_std=0.5), ref(gray, image_mean=0.5, image_std=0.5))


def test_array_and_tensor_layouts():
    torch = pytest.importorskip("torch")
    ours, ref = _pair(QWEN2_5_VL_7B)
    hwc = _photo(75, 130).copy()
    chw = np.ascontiguousarray(hwc.transpose(2, 0, 1))
    for image in (hwc, chw, torch.from_numpy(hwc), torch.from_numpy(chw), hwc[::2, ::3], np.stack([hwc, hwc])):
        _assert_same(ours(image), ref(image))
    _assert_same(ours(chw, input_data_format="channels_first"), ref(chw, input_data_format="channels_first"))
    gray = hwc[..., :1]
    _assert_same(ours(gray), ref(gray))
    # transformers' patch rows ignore data_format; torch out for return_tensors="pt"
    _assert_same(ours(hwc, data_format="channels_last"), ref(hwc, data_format="channels_last"))
    pt_ours, pt_ref = ours([hwc, chw], return_tensors="pt"), ref([hwc, chw], return_tensors="pt")
    assert isinstance(pt_ours["pixel_values"], torch.Tensor) and isinstance(pt_ours["image_grid_thw"], torch.Tensor)
    assert torch.equal(pt_ours["pixel_values"], pt_ref["pixel_values"])
    assert torch.equal(pt_ours["image_grid_thw"], pt_ref["image_grid_thw"])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.float16])
def test_float_and_integer_inputs(dtype):
    ours, ref = _pair(QWEN2_VL_7B)
    image = _photo(50, 70).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        image = image / 255
    _assert_same(ours(image), ref(image))


def test_no_resize_keeps_the_values_and_needs_the_grid():
    ours, ref = _pair(QWEN2_VL_7B)
    exact = _photo(56, 84)
    _assert_same(ours(exact, do_resize=False), ref(exact, do_resize=False))
    floats = exact.astype(np.float64) / 255  # RAW values: the value map in float64, then float32 rows
    _assert_same(ours(floats, do_resize=False, do_rescale=False), ref(floats, do_resize=False, do_rescale=False))
    rows = ours(floats, do_resize=False, do_rescale=False).pixel_values
    half = ours(floats, do_resize=False, do_rescale=False, dtype=np.float16).pixel_values
    assert half.dtype == np.float16 and np.array_equal(half, rows.astype(np.float16))  # the float32 rows, rounded once
    with pytest.raises(ValueError, match="multiples of patch_size \\* merge_size = 28"):
        ours(_photo(60, 84), do_resize=False)


def test_per_call_arguments():
    ours, ref = _pair(QWEN2_VL_7B)
    image = _photo(200, 300)
    for kwargs in ({"size": {"shortest_edge": 3136, "longest_edge": 50000}}, {"patch_size": 16, "merge_size": 1},
                   {"temporal_patch_size": 3}, {"resample": NEAREST}, {"image_mean": 0.5, "image_std": 0.5}):
        _assert_same(ours(image, **kwargs), ref(image, **kwargs))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        a = ours(image, max_pixels=50000, min_pixels=1000)
        b = ref(image, max_pixels=50000, min_pixels=1000)
    _assert_same(a, b)
    assert any(issubclass(w.category, FutureWarning) and "min_pixels" in str(w.message) for w in caught)
    assert ours.size == {"shortest_edge": 3136, "longest_edge": 12845056}  # a call changes no setting


@pytest.mark.parametrize("name", list(REAL))
def test_configs_load_from_a_folder_and_round_trip(name, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "preprocessor_config.json").write_text(json.dumps(REAL[name]))
    ours = fi.AutoImageProcessor.from_pretrained(tmp_path / "model")
    ref = transformers.AutoImageProcessor.from_pretrained(tmp_path / "model", backend="pil")
    assert type(ours) is fi.Qwen2VLImageProcessor
    assert ours.size == {"shortest_edge": ref.size.shortest_edge, "longest_edge": ref.size.longest_edge}
    image = _photo(150, 210)
    _assert_same(ours(image), ref(image))
    # what we save, transformers loads (and the other way round), with the same outputs
    ours.save_pretrained(tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "preprocessor_config.json").read_text())
    assert saved["image_processor_type"] == "Qwen2VLImageProcessor"
    assert "min_pixels" not in saved and "max_pixels" not in saved
    _assert_same(ours(image), Qwen2VLImageProcessorPil.from_pretrained(tmp_path / "ours")(image))
    ref.save_pretrained(tmp_path / "ref")
    _assert_same(fi.AutoImageProcessor.from_pretrained(tmp_path / "ref")(image), ref(image))


def test_qwen3_vl_from_the_hub(fake_hub, tmp_path):  # noqa: F811
    fake_hub.commit("Qwen/Qwen3-VL-8B-Instruct", {"preprocessor_config.json": QWEN3_VL})
    ours = fi.AutoImageProcessor.from_pretrained("Qwen/Qwen3-VL-8B-Instruct", cache_dir=tmp_path)
    assert type(ours) is fi.Qwen2VLImageProcessor and ours.patch_size == 16 and ours.image_mean == (0.5, 0.5, 0.5)
    image = _photo(300, 200)
    _assert_same(ours(image), Qwen2VLImageProcessorPil(**_config_kwargs(QWEN3_VL))(image))


@pytest.mark.parametrize("name", ["Qwen2VLImageProcessor", "Qwen2VLImageProcessorFast", "Qwen2VLImageProcessorPil"])
def test_auto_maps_every_transformers_name(name):
    assert image_processor_class_for({"image_processor_type": name}) is fi.Qwen2VLImageProcessor
    assert fi.AutoImageProcessor.from_dict({**QWEN2_VL_7B, "image_processor_type": name}).max_pixels is None


def test_get_number_of_image_patches():
    rng = np.random.default_rng(3)
    for config in (QWEN2_VL_7B, QWEN3_VL, OTHER[0]):
        ours, ref = _pair(config)
        for height, width in [(1, 1), (1080, 1920), (2, 400), (4000, 3000), *rng.integers(1, 3000, (40, 2))]:
            height, width = int(height), int(width)
            for kwargs in ({}, {"max_pixels": 50000}, {"min_pixels": 500000, "patch_size": 16, "merge_size": 1}):
                if max(height, width) > 200 * min(height, width):
                    for processor in (ours, ref):
                        with pytest.raises(ValueError, match="aspect ratio"):
                            processor.get_number_of_image_patches(height, width, kwargs)
                    continue
                expected = ref.get_number_of_image_patches(height, width, kwargs)
                assert ours.get_number_of_image_patches(height, width, kwargs) == expected
    ours, _ = _pair(QWEN2_VL_7B)
    grid = ours(_photo(333, 500))["image_grid_thw"][0]
    assert ours.get_number_of_image_patches(333, 500) == grid[1] * grid[2]


def _no_work(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("pixel work started before the error")

    monkeypatch.setattr(numpy_backend, "execute", fail)


@pytest.mark.parametrize("build, call, error, match", [
    ({}, lambda p: p(np.zeros((2, 500, 3), np.uint8)), ValueError, "aspect ratio must be smaller than 200"),
    ({}, lambda p: p([np.zeros((9, 9, 3), np.uint8), np.zeros((2, 450, 3), np.uint8)]), ValueError, "aspect ratio"),
    ({}, lambda p: p(np.zeros((30, 30, 3), np.uint8), size={"shortest_edge": 100}), ValueError,
     "must contain 'shortest_edge' and 'longest_edge'"),
    ({}, lambda p: p(np.zeros((30, 30, 3), np.uint8), patch_size=0), ValueError, "patch_size must be positive"),
    ({}, lambda p: p(np.zeros((30, 30, 3), np.uint8), merge_size=2.0), TypeError, "merge_size must be an int"),
    ({}, lambda p: p(np.zeros((30, 31, 3), np.uint8), do_resize=False), ValueError, "multiples of"),
    ({"do_convert_rgb": False, "do_normalize": False},
     lambda p: p([np.zeros((28, 28, 3), np.uint8), np.zeros((28, 28, 1), np.uint8)]), ValueError, "channels"),
])
def test_bad_inputs_raise_before_any_work(build, call, error, match, monkeypatch):
    processor = fi.Qwen2VLImageProcessor(**build)
    _no_work(monkeypatch)
    with pytest.raises(error, match=match):
        call(processor)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"patch_size": "14"}, TypeError, "patch_size must be an int"),
    ({"temporal_patch_size": -1}, ValueError, "temporal_patch_size must be positive"),
    ({"merge_size": True}, TypeError, "merge_size must be an int"),
    ({"size": {"shortest_edge": 3136}, "max_pixels": "big"}, TypeError, "longest_edge"),
    ({"size": {"height": 10, "width": 10, "longest_edge": 4}}, ValueError, "size must have one of"),
    ({"min_pixels": 0}, ValueError, "must be positive"),  # no size rounds to zero: min_pixels >= 1
])
def test_bad_configs_raise_when_built(kwargs, error, match):
    with pytest.raises(error, match=match):
        fi.Qwen2VLImageProcessor(**kwargs)


# --- the numpy backend's banded Pillow resize (one large image on every core, without the CPU resampler) ------------

@pytest.mark.parametrize("resample", [LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING])
def test_banded_resize_equals_pillow(resample):
    rng = np.random.default_rng(resample)
    for case in range(40):
        h, w = (int(v) for v in rng.integers(1, 160, 2))
        oh, ow = (int(v) for v in rng.integers(1, 320, 2))
        if case % 5 == 0:
            oh = h  # one pass only
        elif case % 5 == 1:
            ow = w
        mode = "L" if case % 2 else "RGB"
        image = PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode)
        expected = np.asarray(image.resize((ow, oh), resample=resample))
        for parts in (2, 3, 7):
            got = np.asarray(numpy_backend._banded_resize(image, (oh, ow), resample, parts))
            assert got.shape == expected.shape and np.array_equal(got, expected), (h, w, oh, ow, mode, parts)


def test_one_large_image_takes_the_banded_path_without_the_cpu_resampler(monkeypatch):
    calls = []
    banded = numpy_backend._banded_resize
    monkeypatch.setattr(native, "module", lambda: None)  # as where the extension is not built
    monkeypatch.setattr(numpy_backend, "WORKERS", 2)
    monkeypatch.setattr(numpy_backend, "_banded_resize", lambda *a: calls.append(a[1:]) or banded(*a))
    ours, ref = _pair(QWEN2_VL_7B)
    photo = _photo(700, 1000)
    _assert_same(ours(photo), ref(photo))
    assert calls == [((700, 1008), BICUBIC, 2)]


def test_processor_methods_equal_transformers():
    """`resize` (smart_resize to multiples of `factor`), `rescale`, `normalize`: transformers' Qwen2-VL methods."""
    from transformers.image_utils import SizeDict

    ours, ref = _pair(QWEN2_VL_7B)
    image = np.ascontiguousarray(_photo(300, 400).transpose(2, 0, 1))
    for size, factor, resample in [({"shortest_edge": 3136, "longest_edge": 50000}, 28, BICUBIC),
                                   ({"shortest_edge": 200000, "longest_edge": 400000}, 32, LANCZOS)]:
        expected = ref.resize(image, size=SizeDict(**size), resample=resample, factor=factor)
        got = ours.resize(image, size=size, resample=resample, factor=factor)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    default = ours.resize(image, size=ours.size, resample=BICUBIC)  # factor: patch_size * merge_size
    assert default.shape[1] % 28 == 0 and default.shape[2] % 28 == 0
    with pytest.raises(ValueError, match="'shortest_edge' and 'longest_edge'"):
        ours.resize(image, size={"height": 10, "width": 10})
    floats = ours.rescale(image, 1 / 255)
    assert np.array_equal(floats, ref.rescale(image, 1 / 255))
    assert np.array_equal(ours.normalize(floats, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
                          ref.normalize(floats, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))


def test_the_call_memory_limit_counts_the_temporal_copies(monkeypatch):
    """The output of patch rows is temporal_patch_size times the image's values: the memory limit sees all of it."""
    ours, _ = _pair({**QWEN2_VL_7B, "temporal_patch_size": 4})
    image = _photo(560, 560)  # 940800 values: 3.8 MB in float32, 15 MB of rows with 4 temporal copies
    _no_work(monkeypatch)
    with fi.set_limits(max_call_bytes=4 << 20), pytest.raises(ValueError, match="This call"):
        ours(image)
