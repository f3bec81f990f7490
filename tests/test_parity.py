"""Bit-exact parity with transformers' PIL-backend image processors, for every family of docs/BEHAVIOUR.md section 6."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

import fused_imgproc as fi  # noqa: E402
from fused_imgproc.image_utils import (  # noqa: E402
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    OPENAI_CLIP_MEAN,
)

T = transformers
BICUBIC, BILINEAR, NEAREST, LANCZOS, BOX, HAMMING = 3, 2, 0, 1, 4, 5

# ViTHybrid and EfficientFormer were removed from transformers 5: their reference is the 5.x class with the same
# pipeline (BiT; DeiT's resize -> crop), given the removed class's defaults explicitly.
EFFICIENTFORMER_DEFAULTS = dict(
    size={"height": 224, "width": 224}, crop_size={"height": 224, "width": 224}, resample=BICUBIC,
    image_mean=IMAGENET_DEFAULT_MEAN, image_std=IMAGENET_DEFAULT_STD,
)

# (ours, reference, reference kwargs added to every config, [non-default configs])
FAMILIES = [
    (fi.CLIPImageProcessor, T.CLIPImageProcessorPil, {}, [
        {"size": {"shortest_edge": 96}, "crop_size": {"height": 80, "width": 64}},
        {"size": 150, "crop_size": 128, "resample": BILINEAR, "image_mean": [0.1, 0.2, 0.3], "image_std": [0.3, 0.2, 0.1]},
        {"do_center_crop": False, "size": {"height": 70, "width": 90}, "resample": LANCZOS},
    ]),
    (fi.BitImageProcessor, T.BitImageProcessorPil, {}, [
        {"size": {"shortest_edge": 256}, "crop_size": {"height": 224, "width": 224}, "resample": BILINEAR},
        {"do_normalize": False, "crop_size": {"height": 300, "width": 300}},
    ]),
    (fi.ViTHybridImageProcessor, T.BitImageProcessorPil, {}, [
        {"size": {"shortest_edge": 384}, "crop_size": {"height": 384, "width": 384}},
        {"resample": HAMMING, "do_rescale": False},
    ]),
    (fi.ChineseCLIPImageProcessor, T.ChineseCLIPImageProcessorPil, {}, [
        {"size": {"height": 224, "width": 224}},
        {"do_convert_rgb": False, "resample": BOX, "crop_size": {"height": 99, "width": 101}},
    ]),
    (fi.ViTImageProcessor, T.ViTImageProcessorPil, {}, [
        {"size": {"height": 384, "width": 384}, "resample": BICUBIC},
        {"size": {"height": 97, "width": 33}, "image_mean": IMAGENET_DEFAULT_MEAN, "image_std": IMAGENET_DEFAULT_STD},
        {"do_resize": False, "do_center_crop": True, "crop_size": {"height": 50, "width": 61}},
    ]),
    (fi.PvtImageProcessor, T.PvtImageProcessorPil, {}, [
        {"size": {"height": 512, "width": 512}},
        {"resample": NEAREST, "rescale_factor": 1 / 127.5},
    ]),
    (fi.DeiTImageProcessor, T.DeiTImageProcessorPil, {}, [
        {"size": {"height": 240, "width": 250}, "crop_size": {"height": 251, "width": 199}},
        {"resample": BILINEAR, "image_mean": 0.4, "image_std": 0.25},
    ]),
    (fi.ConvNextImageProcessor, T.ConvNextImageProcessorPil, {}, [
        {"size": {"shortest_edge": 224}},
        {"size": {"shortest_edge": 160}, "crop_pct": 0.95},
        {"size": {"shortest_edge": 100}, "crop_pct": 1.1},
    ]),
    (fi.SiglipImageProcessor, T.SiglipImageProcessorPil, {}, [
        {"size": {"height": 384, "width": 384}},
        {"size": {"height": 256, "width": 128}, "do_normalize": False},
    ]),
    (fi.BlipImageProcessor, T.BlipImageProcessorPil, {}, [
        {"size": {"height": 224, "width": 224}},
        {"size": {"height": 150, "width": 300}, "image_mean": OPENAI_CLIP_MEAN[::-1]},
    ]),
    (fi.LevitImageProcessor, T.LevitImageProcessorPil, {}, [
        {"size": {"shortest_edge": 160}, "crop_size": {"height": 160, "width": 160}},
        {"size": {"height": 200, "width": 180}, "crop_size": {"height": 190, "width": 170}},
    ]),
    (fi.PoolFormerImageProcessor, T.PoolFormerImageProcessorPil, {}, [
        {"crop_pct": 0.875},
        {"size": {"height": 200, "width": 200}, "crop_pct": 0.8, "crop_size": {"height": 180, "width": 180}},
        {"size": {"height": 210, "width": 150}, "crop_pct": 0.9},
    ]),
    (fi.MobileNetV1ImageProcessor, T.MobileNetV1ImageProcessorPil, {}, [
        {"size": {"shortest_edge": 200}, "crop_size": {"height": 192, "width": 192}},
        {"do_center_crop": False, "size": {"height": 224, "width": 224}},
    ]),
    (fi.MobileNetV2ImageProcessor, T.MobileNetV2ImageProcessorPil, {}, [
        {"size": {"shortest_edge": 224}, "resample": BICUBIC},
        {"crop_size": {"height": 300, "width": 257}, "image_mean": IMAGENET_STANDARD_MEAN, "image_std": 0.2},
    ]),
    (fi.Qwen2VLImageProcessor, T.Qwen2VLImageProcessorPil, {}, [  # more in test_qwen2_vl.py
        {"size": {"shortest_edge": 3136, "longest_edge": 20000}, "patch_size": 16, "resample": BILINEAR},
        {"min_pixels": 100000, "max_pixels": 200000, "merge_size": 1, "image_mean": 0.5, "image_std": 0.5},
    ]),
    (fi.SegformerImageProcessor, T.SegformerImageProcessorPil, {}, [  # label maps in test_segmentation.py
        {"size": {"height": 1024, "width": 1024}},
        {"size": 64, "do_center_crop": True, "crop_size": 32, "do_reduce_labels": True},
        {"size": {"shortest_edge": 50}, "resample": BICUBIC, "image_mean": 0.5, "image_std": 0.25},
    ]),
    (fi.BeitImageProcessor, T.BeitImageProcessorPil, {}, [
        {"size": {"height": 100, "width": 120}, "do_center_crop": True, "crop_size": {"height": 90, "width": 90}},
        {"size": 640, "crop_size": 640, "do_center_crop": False, "resample": BILINEAR},
    ]),
    (fi.EfficientFormerImageProcessor, T.DeiTImageProcessorPil, EFFICIENTFORMER_DEFAULTS, [
        {"size": {"height": 256, "width": 256}, "crop_size": {"height": 224, "width": 224}},
        {"size": {"shortest_edge": 240}, "crop_size": {"height": 211, "width": 211}, "resample": BILINEAR},
    ]),
]

CASES = [
    pytest.param(ours, ref, base, config, id=f"{ours.__name__}-{i}")
    for ours, ref, base, configs in FAMILIES
    for i, config in enumerate([{}] + configs)
]

# Sizes: landscape, portrait, square, smaller than every crop, odd crop paddings, thin, 1-pixel sides.
SIZES = [(480, 640), (640, 480), (256, 256), (37, 53), (224, 223), (223, 226), (9, 300), (1200, 17), (1, 5), (3, 1)]


def _random_images(seed: int, sizes=SIZES, channels_last=True):
    rng = np.random.default_rng(seed)
    images = []
    for h, w in sizes:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        images.append(image if channels_last else np.ascontiguousarray(image.transpose(2, 0, 1)))
    return images


def _assert_identical(ours, ref):
    assert type(ours) is type(ref)
    assert ours.dtype == ref.dtype, (ours.dtype, ref.dtype)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    assert np.array_equal(ours, ref), f"{np.sum(ours != ref)} of {ours.size} values differ"


def _processors(ours_cls, ref_cls, ref_base, config):
    return ours_cls(**config), ref_cls(**{**ref_base, **config})


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base, config", CASES)
def test_numpy_images_bit_identical(ours_cls, ref_cls, ref_base, config):
    ours, ref = _processors(ours_cls, ref_cls, ref_base, config)
    images = _random_images(hash(ours_cls.__name__) % 1000)
    for image in images:  # one at a time: transformers' shapes may differ per image
        _assert_identical(
            ours(image, return_tensors="np", input_data_format="channels_last").pixel_values,
            ref(image, return_tensors="np", input_data_format="channels_last").pixel_values,
        )
    # a ragged batch through both, without stacking: lists of per-image arrays (Qwen2-VL: one array of every
    # image's patch rows, as transformers returns it)
    got = ours(images, input_data_format="channels_last").pixel_values
    want = ref(images, input_data_format="channels_last").pixel_values
    if not isinstance(want, list):
        _assert_identical(got, want)
        return
    assert isinstance(got, list) and len(got) == len(want)
    for g, w in zip(got, want):
        _assert_identical(g, w)


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base, config", CASES)
def test_pil_images_bit_identical(ours_cls, ref_cls, ref_base, config):
    ours, ref = _processors(ours_cls, ref_cls, ref_base, config)
    rng = np.random.default_rng(7)
    rgb = [PIL.Image.fromarray(a) for a in _random_images(3, SIZES[:6])]
    gray = PIL.Image.fromarray(rng.integers(0, 256, (40, 70), dtype=np.uint8))
    rgba = PIL.Image.fromarray(rng.integers(0, 256, (50, 30, 4), dtype=np.uint8))
    palette = rgb[3].convert("P")
    for image in rgb + [gray, rgba, palette]:
        try:
            want = ref(image, return_tensors="np").pixel_values
        except ValueError:  # e.g. a 1-channel image with 3-value mean in a family that does not convert to RGB
            with pytest.raises(ValueError):
                ours(image, return_tensors="np")
            continue
        _assert_identical(ours(image, return_tensors="np").pixel_values, want)


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base, config", CASES[::3])
def test_channels_first_and_batched_inputs(ours_cls, ref_cls, ref_base, config):
    ours, ref = _processors(ours_cls, ref_cls, ref_base, config)
    chw = _random_images(11, [(64, 48)] * 4, channels_last=False)
    batch = np.stack(chw)
    _assert_identical(ours(batch, return_tensors="np").pixel_values, ref(batch, return_tensors="np").pixel_values)
    torch = pytest.importorskip("torch")
    got = ours(torch.from_numpy(batch), return_tensors="pt").pixel_values
    want = ref(torch.from_numpy(batch), return_tensors="pt").pixel_values
    assert isinstance(got, torch.Tensor) and got.dtype == want.dtype and torch.equal(got, want)


@pytest.mark.parametrize(
    "kind", ["unit_float32", "unit_float64", "integral_float", "float_no_resize", "uint16_integral"]
)
@pytest.mark.parametrize("ours_cls, ref_cls", [(fi.CLIPImageProcessor, T.CLIPImageProcessorPil),
                                               (fi.ViTImageProcessor, T.ViTImageProcessorPil)])
def test_float_and_integer_inputs(ours_cls, ref_cls, kind):
    rng = np.random.default_rng(5)
    config = {"do_resize": False} if kind == "float_no_resize" else {}
    ours, ref = ours_cls(**config), ref_cls(**config)
    for h, w in [(300, 200), (57, 91), (230, 224)]:
        raw = rng.random((h, w, 3))
        image = {
            "unit_float32": raw.astype(np.float32),
            "unit_float64": raw,
            "integral_float": np.floor(raw * 256).astype(np.float32),
            "float_no_resize": raw.astype(np.float32) * 3 - 1,
            "uint16_integral": (raw * 256).astype(np.uint16),
        }[kind]
        _assert_identical(ours(image, return_tensors="np").pixel_values, ref(image, return_tensors="np").pixel_values)


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base, config", CASES)
def test_config_json_and_transformers_roundtrip(ours_cls, ref_cls, ref_base, config, tmp_path):
    ours, ref = _processors(ours_cls, ref_cls, ref_base, config)
    if not ref_base and ref_cls.__name__ == ours_cls.__name__ + "Pil":
        assert ours.to_json_string() == ref.to_json_string()
    ours.save_pretrained(tmp_path)
    if ours_cls in (fi.ViTHybridImageProcessor, fi.EfficientFormerImageProcessor):
        pytest.skip(f"transformers 5 has no {ours_cls.__name__} to load the saved config")
    loaded = T.AutoImageProcessor.from_pretrained(tmp_path)
    assert type(loaded).__name__ == ours_cls.__name__ + "Pil"
    image = _random_images(1, [(333, 251)])[0]
    _assert_identical(ours(image, return_tensors="np").pixel_values, loaded(image, return_tensors="np").pixel_values)
    # and back: the reference's saved config loads in ours with identical outputs
    ref.save_pretrained(tmp_path / "ref")
    ours_again = fi.AutoImageProcessor.from_pretrained(tmp_path / "ref")
    assert type(ours_again) is (ours_cls if not ref_base else fi.DeiTImageProcessor)


def test_clip_default_json_byte_identical(tmp_path):
    ours = fi.CLIPImageProcessor()
    assert ours.to_json_string() == T.CLIPImageProcessorPil().to_json_string()
    (path,) = ours.save_pretrained(tmp_path / "ours")
    T.CLIPImageProcessorPil().save_pretrained(tmp_path / "ref")
    assert open(path, "rb").read() == (tmp_path / "ref" / "preprocessor_config.json").read_bytes()


@pytest.mark.parametrize(
    "legacy",
    [
        {"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224, "do_center_crop": True,
         "do_normalize": True, "do_resize": True, "image_mean": OPENAI_CLIP_MEAN,
         "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3},
        {"image_processor_type": "CLIPImageProcessorFast", "size": {"shortest_edge": 224}, "crop_size": 224},
        {"image_processor_type": "ViTImageProcessor", "size": 224, "do_resize": True, "resample": 2},
        {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224}, "crop_pct": 0.875},
    ],
)
def test_legacy_configs(legacy, tmp_path):
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(legacy))
    ours = fi.AutoImageProcessor.from_pretrained(tmp_path)
    ref = T.AutoImageProcessor.from_pretrained(tmp_path)
    assert type(ref).__name__ == type(ours).__name__ + "Pil"
    if "crop_size" in legacy and isinstance(legacy["crop_size"], int):
        assert ours.crop_size == {"height": 224, "width": 224}
    image = _random_images(2, [(281, 377)])[0]
    _assert_identical(ours(image, return_tensors="np").pixel_values, ref(image, return_tensors="np").pixel_values)


def test_structured_images():
    """Flat fields, ramps and checkerboards (extreme values and sharp edges stress the filters' clipping)."""
    ours, ref = fi.CLIPImageProcessor(), T.CLIPImageProcessorPil()
    yy, xx = np.mgrid[0:317, 0:451]
    images = [
        np.zeros((317, 451, 3), np.uint8),
        np.full((317, 451, 3), 255, np.uint8),
        np.stack([(xx % 256), (yy % 256), ((xx + yy) % 256)], -1).astype(np.uint8),
        (((xx // 3 + yy // 3) % 2) * 255).astype(np.uint8)[..., None].repeat(3, -1),
    ]
    for image in images:
        _assert_identical(ours(image, return_tensors="np").pixel_values, ref(image, return_tensors="np").pixel_values)


def test_output_dtypes_and_layouts():
    torch = pytest.importorskip("torch")
    ours = fi.CLIPImageProcessor()
    images = _random_images(9, [(300, 400), (250, 250)])
    base = ours(images, return_tensors="np").pixel_values
    assert base.dtype == np.float32 and base.flags.c_contiguous and base.shape == (2, 3, 224, 224)
    half = ours(images, return_tensors="np", dtype=np.float16).pixel_values
    _assert_identical(half, base.astype(np.float16))
    bf16 = ours(images, return_tensors="pt", dtype=torch.bfloat16).pixel_values
    assert bf16.dtype == torch.bfloat16 and torch.equal(bf16, torch.from_numpy(base).to(torch.bfloat16))
    pt16 = ours(images, return_tensors="pt", dtype=torch.float16).pixel_values
    assert torch.equal(pt16, torch.from_numpy(base).half())
    last = ours(images, return_tensors="np", data_format="channels_last").pixel_values
    _assert_identical(last, np.ascontiguousarray(base.transpose(0, 2, 3, 1)))
    listed = ours(images).pixel_values
    assert isinstance(listed, list) and all(np.array_equal(a, b) for a, b in zip(listed, base))


@pytest.mark.parametrize("config", [
    {"do_resize": False, "do_rescale": False, "do_normalize": False},
    {"do_resize": False, "do_rescale": False},
    {"do_resize": False},
])
@pytest.mark.parametrize("float_dtype", [np.float32, np.float64])
def test_batch_mixing_uint8_and_float_images(config, float_dtype):
    """Each image keeps its own dtype in a list; a stacked batch has the promoted dtype (found by the fuzz test)."""
    images = [np.random.default_rng(8).integers(0, 256, (5, 4, 3), dtype=np.uint8),
              np.full((5, 4, 3), 0.5, float_dtype)]
    ours, ref = fi.ViTImageProcessor(**config), T.ViTImageProcessorPil(**config)
    got = ours(images, input_data_format="channels_last").pixel_values
    want = ref(images, input_data_format="channels_last").pixel_values
    for a, b in zip(got, want, strict=True):
        _assert_identical(a, b)
    _assert_identical(ours(images, input_data_format="channels_last", return_tensors="np").pixel_values,
                      ref(images, input_data_format="channels_last", return_tensors="np").pixel_values)
