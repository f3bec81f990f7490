"""What transformers' own image-processor test suite checks, run against our classes and compared with transformers'
classes on the same configs and inputs: swapping the import line must change nothing a user can observe."""

from __future__ import annotations

import json

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
    call fails the same way (a None size with do_resize on is an error in both)."""
    images = _images(1)
    for key in _explicit_none_keys(ours_cls):
        ours, ref = ours_cls(**{key: None}), ref_cls(**{**ref_base, key: None})
        assert getattr(ours, key) is None
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
