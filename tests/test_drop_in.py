"""What transformers' own image-processor test suite checks, run against our classes and compared with transformers'
classes on the same configs and inputs: swapping the import line must change nothing a user can observe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from test_parity import FAMILIES  # noqa: E402

import fused_imgproc as fi  # noqa: E402
from fused_imgproc.processors.base import CONFIG_KEYS  # noqa: E402

PAIRS = [pytest.param(ours, ref, base, id=ours.__name__) for ours, ref, base, _ in FAMILIES]
# Families whose reference is their own transformers 5 class (ViTHybrid and EfficientFormer were removed).
NATIVE = [p for p in PAIRS if p.values[1].__name__ == p.values[0].__name__ + "Pil"]


def _images(seed: int, channels: int = 3):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, channels), dtype=np.uint8) for h, w in ((30, 40), (41, 29), (16, 16))]


def _run(processor, images, **kwargs):
    """Output of one call, or the exception type it raised."""
    try:
        return processor(images, return_tensors="np", **kwargs).pixel_values
    except (ValueError, TypeError) as error:
        return type(error)


def _same(ours, ref):
    if isinstance(ref, type):
        assert ours is ref or (isinstance(ours, type) and issubclass(ours, ref)), (ours, ref)
        return
    assert not isinstance(ours, type), ours
    assert ours.dtype == ref.dtype and ours.shape == ref.shape, (ours.dtype, ours.shape, ref.dtype, ref.shape)
    assert np.array_equal(ours, ref), f"{np.sum(ours != ref)} of {ours.size} values differ"


def _explicit_none_keys(cls) -> list[str]:
    return list(CONFIG_KEYS + cls.extra_config_keys)


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", NATIVE)
def test_explicit_none_is_kept_like_transformers(ours_cls, ref_cls, ref_base):
    """`Cls(key=None)` keeps None (saved as null) and behaves as transformers' class does: the step is off, or the
    call fails the same way (a None size with do_resize on is an error in both). Where transformers' class reads a
    None as its default (Qwen2-VL's size), so do we."""
    images = _images(1)
    for key in _explicit_none_keys(ours_cls):
        ours, ref = ours_cls(**{key: None}), ref_cls(**{**ref_base, key: None})
        assert (getattr(ours, key) is None) == (getattr(ref, key, None) is None), key
        assert json.loads(ours.to_json_string()) == json.loads(ref.to_json_string()), key
        _same(_run(ours, images), _run(ref, images))


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", NATIVE)
def test_explicit_none_in_a_config_file(ours_cls, ref_cls, ref_base, tmp_path):
    key = "do_normalize" if ours_cls is not fi.PoolFormerImageProcessor else "crop_pct"
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps({"image_processor_type": ours_cls.__name__, key: None}))
    ours = fi.AutoImageProcessor.from_pretrained(str(tmp_path))
    ref = transformers.AutoImageProcessor.from_pretrained(str(tmp_path), backend="pil")
    assert getattr(ours, key) is None and getattr(ref, key) is None
    assert json.loads(ours.to_json_string()) == json.loads(ref.to_json_string())
    _same(_run(ours, _images(2)), _run(ref, _images(2)))


def test_explicit_none_reported_cases():
    """The cases that changed pixel values before: CLIP do_resize=None, ViT do_normalize=None, PoolFormer
    crop_pct=None; and ConvNeXt crop_pct=None, which transformers cannot run below 384 (a TypeError there too)."""
    image = np.random.default_rng(3).integers(0, 256, (300, 320, 3), dtype=np.uint8)
    for ours, ref in ((fi.CLIPImageProcessor(do_resize=None), transformers.CLIPImageProcessorPil(do_resize=None)),
                      (fi.ViTImageProcessor(do_normalize=None), transformers.ViTImageProcessorPil(do_normalize=None)),
                      (fi.PoolFormerImageProcessor(crop_pct=None),
                       transformers.PoolFormerImageProcessorPil(crop_pct=None))):
        _same(_run(ours, image), _run(ref, image))
    with pytest.raises(TypeError, match="crop_pct is None"):
        fi.ConvNextImageProcessor(crop_pct=None, size={"shortest_edge": 224})(image)
    with pytest.raises(TypeError):
        transformers.ConvNextImageProcessorPil(crop_pct=None, size={"shortest_edge": 224})(image)
    _same(_run(fi.ConvNextImageProcessor(crop_pct=None, size={"shortest_edge": 384}), image),
          _run(transformers.ConvNextImageProcessorPil(crop_pct=None, size={"shortest_edge": 384}), image))


def test_none_in_a_call_means_the_processors_value():
    """A call's `do_resize=None` means "the processor's value" (transformers 4 and both versions' documentation);
    transformers 5 applies the None itself. The behaviour document lists this difference."""
    image = _images(4)[0]
    proc = fi.CLIPImageProcessor()
    _same(_run(proc, image, do_resize=None, do_normalize=None), _run(proc, image))


# --- transformers' ImageProcessingTestMixin, family by family ---------------------------------------------------

METHODS = ("rescale", "normalize", "center_crop", "resize", "pad", "convert_to_rgb", "fetch_images", "preprocess")


def _processor_dict(ours_cls) -> dict:
    """A non-default config of the family, as transformers' testers build one (`prepare_image_processor_dict`)."""
    for ours, _, _, configs in FAMILIES:
        if ours is ours_cls and configs:
            return {key: value for key, value in configs[0].items()}
    return {}


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_properties(ours_cls, ref_cls, ref_base):
    proc = ours_cls(**_processor_dict(ours_cls))
    for key in CONFIG_KEYS + ours_cls.extra_config_keys:
        assert hasattr(proc, key), key
    for method in METHODS:
        assert callable(getattr(proc, method)), method
    if ref_cls.__name__ == ours_cls.__name__ + "Pil":
        ref = ref_cls()
        for key in json.loads(ref.to_json_string()):
            assert hasattr(proc, key) or key == "image_processor_type", key


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_json_string_file_and_save_load(ours_cls, ref_cls, ref_base, tmp_path):
    config = _processor_dict(ours_cls)
    first = ours_cls(**config)
    obj = json.loads(first.to_json_string())
    for key, value in config.items():
        assert obj[key] == value, key
    path = tmp_path / "image_processor.json"
    first.to_json_file(path)
    assert ours_cls.from_json_file(path).to_dict() == first.to_dict()
    saved = first.save_pretrained(tmp_path / "saved")[0]
    assert json.loads(Path(saved).read_text()) == obj  # valid JSON, as written
    assert ours_cls.from_pretrained(tmp_path / "saved").to_dict() == first.to_dict()
    assert fi.AutoImageProcessor.from_pretrained(tmp_path / "saved").to_dict() == first.to_dict()
    for use_fast in (True, False):
        assert fi.AutoImageProcessor.from_pretrained(tmp_path / "saved", use_fast=use_fast).to_dict() == first.to_dict()
    assert ours_cls().to_dict() is not None  # init without parameters


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_from_dict_with_kwargs(ours_cls, ref_cls, ref_base):
    proc = ours_cls.from_dict(ours_cls().to_dict(), crop_size=84, size=42)
    ref = ref_cls.from_dict(ref_cls(**ref_base).to_dict(), crop_size=84, size=42)
    assert proc.crop_size == dict(ref.crop_size) == {"height": 84, "width": 84}
    assert proc.size == dict(ref.size)
    proc, unused = ours_cls.from_dict({}, do_normalize=False, not_a_key=1, return_unused_kwargs=True)
    assert proc.do_normalize is False and unused == {"not_a_key": 1}


def _inputs(kind: str, seed: int, channels: int = 3):
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (channels, h, w), dtype=np.uint8) for h, w in ((18, 23), (30, 11), (7, 40))]
    if kind == "pil":
        return [PIL.Image.fromarray(np.moveaxis(image, 0, -1)) for image in images]
    if kind == "numpy":
        return [np.ascontiguousarray(image.transpose(1, 2, 0)) for image in images]
    torch = pytest.importorskip("torch")
    return [torch.from_numpy(image) for image in images]


@pytest.mark.parametrize("kind", ["pil", "numpy", "torch"])
@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_call_single_and_batched(ours_cls, ref_cls, ref_base, kind):
    config = _processor_dict(ours_cls)
    ours, ref = ours_cls(**config), ref_cls(**{**ref_base, **config})
    images = _inputs(kind, 5)
    for given in (images[0], images):
        got, want = _run(ours, given), _run(ref, given)
        _same(got, want)
        if not isinstance(want, type) and "image_grid_thw" not in ours_cls.model_input_names:  # not patch rows
            assert got.shape[0] == (1 if given is images[0] else len(images))


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS)
def test_call_numpy_4_channels(ours_cls, ref_cls, ref_base):
    config = _processor_dict(ours_cls)
    ours, ref = ours_cls(**config), ref_cls(**{**ref_base, **config})
    images = _inputs("numpy", 6, channels=4)
    for given in (images[0], images):
        kwargs = {"input_data_format": "channels_last", "image_mean": 0.0, "image_std": 1.0}
        _same(_run(ours, given, **kwargs), _run(ref, given, **kwargs))


@pytest.mark.parametrize("ours_cls, ref_cls, ref_base", PAIRS[:4])
def test_cast_dtype_device(ours_cls, ref_cls, ref_base):
    torch = pytest.importorskip("torch")
    proc = ours_cls(**_processor_dict(ours_cls))
    images = _inputs("torch", 7)
    encoding = proc(images, return_tensors="pt")
    assert encoding.pixel_values.device == torch.device("cpu") and encoding.pixel_values.dtype == torch.float32
    encoding = proc(images, return_tensors="pt").to(torch.float16)
    assert encoding.pixel_values.dtype == torch.float16
    encoding = proc(images, return_tensors="pt").to("cpu", torch.bfloat16)
    assert encoding.pixel_values.device == torch.device("cpu") and encoding.pixel_values.dtype == torch.bfloat16
    with pytest.raises(TypeError):
        proc(images, return_tensors="pt").to(torch.bfloat16, "cpu")
    encoding = proc(images, return_tensors="pt")
    encoding.update({"input_ids": torch.LongTensor([[1, 2, 3], [4, 5, 6]])})
    encoding = encoding.to(torch.float16)
    assert encoding.pixel_values.dtype == torch.float16 and encoding.input_ids.dtype == torch.long


def test_unknown_call_arguments_are_logged_once(caplog):
    proc = fi.ViTImageProcessor()
    image = _images(8)[0]
    with caplog.at_level("WARNING", logger="fused_imgproc"):
        proc(image, extra_argument=True)
        proc(image, extra_argument=True)
    messages = [r.getMessage() for r in caplog.records if "extra_argument" in r.getMessage()]
    assert len(messages) == 1


# --- transformers 5's backend names ------------------------------------------------------------------------------


def test_backend_names_of_transformers_5(tmp_path):
    image = _images(9)[0]
    proc = fi.CLIPImageProcessor()
    want = _run(transformers.CLIPImageProcessorPil(), image)
    for backend in ("pil", "torchvision", "numpy", "auto", None):
        _same(_run(proc, image, backend=backend), want)
    proc.save_pretrained(tmp_path)
    for kwargs, default in (({}, "auto"), ({"use_fast": True}, "torchvision"), ({"use_fast": False}, "pil"),
                            ({"backend": "pil"}, "pil"), ({"backend": "torchvision", "use_fast": False}, "torchvision"),
                            ({"backend": "numpy"}, "numpy")):
        for loaded in (fi.AutoImageProcessor.from_pretrained(tmp_path, **kwargs),
                       fi.CLIPImageProcessor.from_pretrained(tmp_path, **kwargs), fi.CLIPImageProcessor(**kwargs)):
            assert loaded.backend == default, (kwargs, loaded.backend)
            assert "backend" not in loaded.to_dict() and "use_fast" not in loaded.to_dict()
            assert loaded.to_json_string() == proc.to_json_string()
            _same(_run(loaded, image), want)
    with pytest.raises(ValueError, match="backend must be one of"):
        fi.CLIPImageProcessor(backend="opencv")
    with pytest.raises(ValueError, match="backend must be one of"):
        proc(image, backend="torch")
    with pytest.raises(TypeError, match="use_fast must be a bool"):
        fi.CLIPImageProcessor(use_fast="yes")
    with pytest.raises(fi.BackendUnavailableError, match="backend='pil' \\(the numpy backend\\) runs on the CPU"):
        proc(image, backend="pil", device="cuda")


def test_missing_framework_fails_before_pixel_work(monkeypatch):
    """Without torch, return_tensors='pt' (and so bfloat16) is one ImportError saying how to install it, raised
    before any image is touched."""
    import sys

    import fused_imgproc.backends.numpy as numpy_backend

    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setattr(numpy_backend, "execute", lambda *a, **k: pytest.fail("pixel work started"))
    proc = fi.CLIPImageProcessor()
    image = _images(10)[0]
    for kwargs in ({"return_tensors": "pt"}, {"return_tensors": "pt", "dtype": "bfloat16"}):
        with pytest.raises(ImportError, match="needs torch, which is not installed.*pip install torch"):
            proc(image, **kwargs)
    monkeypatch.setitem(sys.modules, "jax", None)
    with pytest.raises(ImportError, match="needs jax"):
        proc(image, return_tensors="jax")
