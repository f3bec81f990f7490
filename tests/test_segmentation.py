"""Semantic segmentation (docs/BEHAVIOUR.md section 12): MobileNetV2, Segformer and BEiT load their checkpoints'
configs, preprocess label maps (`segmentation_maps=`, `do_reduce_labels`) and post-process logits bit for bit like
transformers' PIL classes, on the numpy backend. The Triton backend's label maps and fused post-processing are in
test_segmentation_triton.py."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
from fake_hub import fake_hub  # noqa: F401  (a pytest fixture: a Hub on 127.0.0.1)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

import fused_imgproc as fi  # noqa: E402
from fused_imgproc.processors.segmentation import reduce_labels  # noqa: E402

T = transformers
NEAREST, LANCZOS, BILINEAR, BICUBIC, BOX, HAMMING = 0, 1, 2, 3, 4, 5
FAMILIES = {
    "MobileNetV2": (fi.MobileNetV2ImageProcessor, T.MobileNetV2ImageProcessorPil),
    "Segformer": (fi.SegformerImageProcessor, T.SegformerImageProcessorPil),
    "Beit": (fi.BeitImageProcessor, T.BeitImageProcessorPil),
}

# preprocessor_config.json in the shape the checkpoints publish (legacy feature-extractor keys included):
# nvidia/segformer-b0-finetuned-ade-512-512, nvidia/segformer-b0-finetuned-cityscapes-1024-1024 (and its newer
# size-dict form), microsoft/beit-base-finetuned-ade-640-640, google/deeplabv3_mobilenet_v2_1.0_513.
SEGFORMER_ADE_512 = {
    "do_normalize": True, "do_resize": True, "feature_extractor_type": "SegformerFeatureExtractor",
    "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "reduce_labels": True, "resample": 2,
    "size": 512,
}
SEGFORMER_CITYSCAPES_1024 = {**SEGFORMER_ADE_512, "reduce_labels": False, "size": 1024}
SEGFORMER_CITYSCAPES_1024_DICT = {
    **SEGFORMER_CITYSCAPES_1024, "size": {"height": 1024, "width": 1024}, "do_rescale": True,
    "rescale_factor": 1 / 255, "do_reduce_labels": False, "image_processor_type": "SegformerImageProcessor",
}
BEIT_ADE_640 = {
    "crop_size": 640, "do_center_crop": False, "do_normalize": True, "do_resize": True,
    "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "reduce_labels": True, "resample": 2, "size": 640,
}
DEEPLABV3_MOBILENET_V2 = {
    "crop_size": {"height": 513, "width": 513}, "do_center_crop": True, "do_normalize": True, "do_reduce_labels": False,
    "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    "image_processor_type": "MobileNetV2ImageProcessor", "resample": 2, "rescale_factor": 1 / 255,
    "size": {"shortest_edge": 513},
}
CHECKPOINTS = {
    "nvidia/segformer-b0-finetuned-ade-512-512": (SEGFORMER_ADE_512, "Segformer"),
    "nvidia/segformer-b0-finetuned-cityscapes-1024-1024": (SEGFORMER_CITYSCAPES_1024, "Segformer"),
    "nvidia/segformer-b2-finetuned-cityscapes-1024-1024": (SEGFORMER_CITYSCAPES_1024_DICT, "Segformer"),
    "microsoft/beit-base-finetuned-ade-640-640": (BEIT_ADE_640, "Beit"),
    "google/deeplabv3_mobilenet_v2_1.0_513": (DEEPLABV3_MOBILENET_V2, "MobileNetV2"),
}

RNG = np.random.default_rng(0)


def _photo(height: int, width: int) -> np.ndarray:
    image = PIL.Image.open(fi.__path__[0] + "/samples/landscape.jpg").convert("RGB")
    return np.asarray(image.resize((width, height), PIL.Image.BICUBIC))


def _blocks(height: int, width: int, labels: int = 151, seed: int = 0) -> np.ndarray:
    """A structured label map: rectangles of random labels (0 and 255 included), like an annotation."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, labels, (max(1, height // 7) + 1, max(1, width // 5) + 1)).astype(np.uint8)
    values[0, 0], values[-1, -1] = 0, 255
    rows = np.minimum(np.arange(height) // 7, values.shape[0] - 1)
    cols = np.minimum(np.arange(width) // 5, values.shape[1] - 1)
    return values[rows][:, cols]


def _assert_same(ours, ref) -> None:
    """Same type, dtype, shape and bytes (for lists: item by item)."""
    if isinstance(ref, list):
        assert isinstance(ours, list) and len(ours) == len(ref)
        for a, b in zip(ours, ref):
            _assert_same(a, b)
        return
    assert type(ours) is type(ref), (type(ours), type(ref))
    assert ours.dtype == ref.dtype and tuple(ours.shape) == tuple(ref.shape), (ours.dtype, ref.dtype, ours.shape)
    assert np.asarray(ours).tobytes() == np.asarray(ref).tobytes()


def _copies(maps):
    """transformers' reduce_label writes into the caller's arrays: give it copies."""
    if isinstance(maps, list):
        return [_copies(m) for m in maps]
    return maps.copy() if isinstance(maps, (np.ndarray, PIL.Image.Image)) else maps.clone()


def _compare(ours, ref, images, maps, **kwargs) -> None:
    for return_tensors in (None, "np", "pt"):
        a = ours(images, _copies(maps), return_tensors=return_tensors, **kwargs)
        b = ref(images, _copies(maps), return_tensors=return_tensors, **kwargs)
        assert sorted(a.keys()) == sorted(b.keys()) == ["labels", "pixel_values"]
        _assert_same(a["pixel_values"], b["pixel_values"])
        _assert_same(a["labels"], b["labels"])


# --- configs -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("repo", list(CHECKPOINTS))
def test_checkpoint_configs_load_from_the_hub_and_match(repo, fake_hub, tmp_path):  # noqa: F811
    config, family = CHECKPOINTS[repo]
    ours_cls, ref_cls = FAMILIES[family]
    fake_hub.commit(repo, {"preprocessor_config.json": config})
    ours = fi.AutoImageProcessor.from_pretrained(repo, cache_dir=tmp_path)
    assert type(ours) is ours_cls
    ref = ref_cls.from_dict(dict(config))
    # transformers 5.x keeps the legacy `reduce_labels` key as a plain attribute: do_reduce_labels stays False.
    assert ours.do_reduce_labels is ref.do_reduce_labels is (config.get("do_reduce_labels") or False)
    assert getattr(ours, "reduce_labels", None) == config.get("reduce_labels")
    assert json.loads(ours.to_json_string()) == {**json.loads(ref.to_json_string())}
    images = [_photo(375, 500), _photo(333, 251)]
    maps = [_blocks(375, 500), _blocks(333, 251, seed=1)]
    a = ours(images, maps, return_tensors="pt")
    b = ref(images, _copies(maps), return_tensors="pt")
    _assert_same(a["pixel_values"], b["pixel_values"])
    _assert_same(a["labels"], b["labels"])
    a = ours(images, maps, do_reduce_labels=True, return_tensors="np")
    b = ref(images, _copies(maps), do_reduce_labels=True, return_tensors="np")
    _assert_same(a["labels"], b["labels"])
    # save_pretrained / from_pretrained both ways
    ours.save_pretrained(tmp_path / "ours")
    assert type(ref_cls.from_pretrained(tmp_path / "ours")) is ref_cls
    assert ours_cls.from_pretrained(tmp_path / "ours").to_dict() == ours.to_dict()


def test_auto_names():
    from fused_imgproc.processors.auto import image_processor_class_for

    for ours_cls, _ in FAMILIES.values():
        name = ours_cls.__name__
        for suffix in ("", "Fast", "Pil"):
            assert image_processor_class_for({"image_processor_type": name + suffix}) is ours_cls
        legacy = {"feature_extractor_type": name.replace("ImageProcessor", "FeatureExtractor")}
        assert image_processor_class_for(legacy) is ours_cls


# --- label maps in -----------------------------------------------------------------------------------------------

LABEL_CONFIGS = [
    pytest.param("MobileNetV2", {}, id="mobilenetv2"),
    pytest.param("MobileNetV2", {"do_reduce_labels": True, "size": {"shortest_edge": 40}, "crop_size": 50},
                 id="mobilenetv2-reduce-pad"),
    pytest.param("Segformer", {}, id="segformer"),
    pytest.param("Segformer", {"do_reduce_labels": True, "size": {"height": 61, "width": 47}}, id="segformer-reduce"),
    pytest.param("Segformer", {"size": {"height": 30, "width": 20}, "do_center_crop": True, "crop_size": 10},
                 id="segformer-crop-ignored"),
    pytest.param("Beit", {}, id="beit"),
    pytest.param("Beit", {"do_reduce_labels": True, "size": 90, "do_center_crop": True, "crop_size": 70},
                 id="beit-reduce-crop"),
    pytest.param("Beit", {"resample": NEAREST, "size": {"height": 33, "width": 80}}, id="beit-nearest"),
]
SIZES = [(37, 53), (120, 90), (2, 7), (300, 301)]


@pytest.mark.parametrize("family, config", LABEL_CONFIGS)
def test_label_maps_match_transformers(family, config):
    ours_cls, ref_cls = FAMILIES[family]
    ours, ref = ours_cls(**config), ref_cls(**config)
    images = [RNG.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]
    random_maps = [RNG.integers(0, 256, (h, w), dtype=np.uint8) for h, w in SIZES]
    _compare(ours, ref, images, random_maps)
    _compare(ours, ref, images, [_blocks(h, w, seed=i) for i, (h, w) in enumerate(SIZES)])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_label_map_inputs(family):
    """PIL L/P/I/I;16 label maps, int/uint arrays, tensors, 3-D batches, nested lists; per-call arguments."""
    ours_cls, ref_cls = FAMILIES[family]
    config = {"size": {"height": 45, "width": 38}} if family != "MobileNetV2" else {"size": {"shortest_edge": 40}}
    ours, ref = ours_cls(**config), ref_cls(**config)
    h, w = 29, 41
    images = [_photo(h, w)] * 3
    blocks = [_blocks(h, w, seed=s) for s in range(3)]

    def palette(values):
        image = PIL.Image.frombytes("P", (w, h), values.tobytes())
        image.putpalette(list(range(256)) * 3)
        return image

    inputs = {
        "pil-L": [PIL.Image.fromarray(b) for b in blocks],
        "pil-P": [palette(b) for b in blocks],
        "pil-I": [PIL.Image.fromarray(b.astype(np.int32)) for b in blocks],
        "pil-I;16": [PIL.Image.fromarray(b.astype(np.uint16)) for b in blocks],
        "int64": [b.astype(np.int64) for b in blocks],
        "int32-strided": [np.asfortranarray(b.astype(np.int32)) for b in blocks],
        "tensor": [torch.from_numpy(b) for b in blocks],
        "batch-array": np.stack(blocks),
        "batch-tensor": torch.from_numpy(np.stack(blocks)),
        "nested": [[blocks[0]], [blocks[1], blocks[2]]],
    }
    for name, maps in inputs.items():
        for kwargs in ({}, {"do_reduce_labels": True}, {"do_resize": False}, {"do_reduce_labels": True,
                                                                              "do_resize": False}):
            a = ours(images, _copies(maps), return_tensors="pt", **kwargs)
            b = ref(images, _copies(maps), return_tensors="pt", **kwargs)
            _assert_same(a["labels"], b["labels"])
            _assert_same(a["pixel_values"], b["pixel_values"])
        a = ours(images[0], _copies(maps[0]) if isinstance(maps, list) and name != "nested" else blocks[0])
        b = ref(images[0], _copies(blocks[0]))
        _assert_same(a["labels"], b["labels"])
    # Per-call size and resample: the label maps follow the images' geometry.
    kwargs = {"size": {"height": 17, "width": 64}, "resample": BICUBIC}
    _compare(ours, ref, images, blocks, **kwargs)
    # Wider label values than uint8 survive when nothing is resized (and are reduced like transformers).
    wide = [b.astype(np.int64) * 3 for b in blocks]
    for reduce in (False, True):
        a = ours(images, wide, do_resize=False, do_reduce_labels=reduce, return_tensors="np")
        b = ref(images, _copies(wide), do_resize=False, do_reduce_labels=reduce, return_tensors="np")
        _assert_same(a["labels"], b["labels"])


def test_reduce_labels_is_transformers_and_never_writes_the_input():
    values = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = T.SegformerImageProcessorPil().reduce_label(values.copy()[None])[0]
    _assert_same(reduce_labels(values), expected)
    wide = np.array([[0, 1, 254, 255, 256, 1000]], dtype=np.int64)
    _assert_same(reduce_labels(wide), T.SegformerImageProcessorPil().reduce_label(wide.copy()))
    assert torch.equal(reduce_labels(torch.from_numpy(wide)), torch.from_numpy(reduce_labels(wide)))
    # transformers' reduce_label writes 255 into the caller's array; ours leaves it alone.
    ours = fi.SegformerImageProcessor(do_reduce_labels=True, size=8)
    before = values.copy()
    ours(np.zeros((16, 16, 3), np.uint8), values)
    assert np.array_equal(values, before)


def test_images_are_never_reduced():
    """do_reduce_labels changes labels only (transformers turns it off for the images)."""
    ours = fi.SegformerImageProcessor(size=20)
    image = _photo(40, 50)
    plain = ours(image, return_tensors="np")["pixel_values"]
    reduced = ours(image, _blocks(40, 50), do_reduce_labels=True, return_tensors="np")
    assert np.array_equal(plain, reduced["pixel_values"])


def test_positional_segmentation_maps_and_no_maps():
    ours, ref = fi.MobileNetV2ImageProcessor(), T.MobileNetV2ImageProcessorPil()
    image, labels = _photo(300, 400), _blocks(300, 400)
    a = ours.preprocess(image, labels, return_tensors="np")
    b = ref.preprocess(image, labels.copy(), return_tensors="np")
    _assert_same(a["labels"], b["labels"])
    a, b = ours(image, return_tensors="np"), ref(image, return_tensors="np")
    assert list(a.keys()) == list(b.keys()) == ["pixel_values"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_bad_label_maps(family):
    ours = FAMILIES[family][0](size={"height": 8, "width": 8} if family != "MobileNetV2" else {"shortest_edge": 8},
                               crop_size=8)
    image = np.zeros((10, 12, 3), np.uint8)
    good = np.zeros((10, 12), np.uint8)
    cases = [
        ([good, good], ValueError, "2 segmentation map"),
        (np.zeros((10, 12, 3, 1), np.uint8), ValueError, "2-D"),
        (np.zeros(12, np.uint8), ValueError, "2-D"),
        ([np.zeros(12, np.uint8)], ValueError, "2-D"),
        (PIL.Image.new("RGB", (12, 10)), ValueError, "one channel"),
        (good.astype(bool), TypeError, "integer labels"),
        (good.astype(np.complex64), TypeError, "integer labels"),
        (torch.zeros(10, 12, dtype=torch.bfloat16), TypeError, "integer labels"),
        ("labels.png", TypeError, "segmentation_maps"),
        ([], ValueError, "empty"),
        (good.astype(np.int64) + 256, ValueError, "outside the range"),  # resized: must fit in uint8
        (good.astype(np.int64) - 1, ValueError, "outside the range"),
    ]
    for maps, error, message in cases:
        with pytest.raises(error, match=message):
            ours(image, maps)
    with pytest.raises(TypeError, match="do_reduce_labels must be a bool"):
        ours(image, good, do_reduce_labels="yes")
    with pytest.raises(TypeError, match="do_reduce_labels must be a bool"):
        type(ours)(do_reduce_labels=1)


# --- masks out (CPU: transformers' arithmetic) ---------------------------------------------------------------------


class _Outputs:
    def __init__(self, logits):
        self.logits = logits


def _smooth_logits(batch: int, classes: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Real-looking logits: low-frequency random fields per class (bilinearly upsampled coarse noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(batch, classes, max(1, h // 4), max(1, w // 4), generator=generator) * 4
    return torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)


LOGITS = {
    "random-19": lambda: torch.randn(3, 19, 13, 17, generator=torch.Generator().manual_seed(1)),
    "smooth-150": lambda: _smooth_logits(2, 150, 32, 32),
    "one-class": lambda: torch.randn(2, 1, 8, 9),
    "ties": lambda: torch.zeros(2, 5, 6, 7),
    "fp16": lambda: torch.randn(2, 7, 9, 11, generator=torch.Generator().manual_seed(2)).half(),
}


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("logits_name", list(LOGITS))
def test_post_process_matches_transformers(family, logits_name):
    ours, ref = FAMILIES[family][0](), FAMILIES[family][1]()
    logits = LOGITS[logits_name]()
    outputs = _Outputs(logits)
    n = len(logits)
    for target_sizes in (None, [(64, 64)] * n, [(5, 3), (100, 41), (1, 1)][:n],
                         torch.tensor([[20, 30]] * n), [(logits.shape[2], logits.shape[3])] * n):
        # transformers' Segformer and BEiT fail on a tensor of sizes (numpy rows reach interpolate); MobileNetV2
        # and we take it: compare with the same sizes as a list.
        ref_sizes = target_sizes.tolist() if isinstance(target_sizes, torch.Tensor) else target_sizes
        a = ours.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)
        b = ref.post_process_semantic_segmentation(outputs, target_sizes=ref_sizes)
        assert len(a) == len(b) == n
        for x, y in zip(a, b):
            assert x.dtype == y.dtype == torch.int64 and torch.equal(x, y)
        a = ours.post_process_semantic_segmentation(outputs, target_sizes, return_segmentation_scores=True)
        b = ref.post_process_semantic_segmentation(outputs, ref_sizes, return_segmentation_scores=True)
        for x, y in zip(a, b):
            assert torch.equal(x.segmentation, y.segmentation) and torch.equal(x["segmentation"], y["segmentation"])
            assert x.segmentation_scores.dtype == y.segmentation_scores.dtype
            assert torch.equal(x.segmentation_scores, y.segmentation_scores)
            assert sorted(x.keys()) == sorted(y.keys())


def test_post_process_bad_inputs():
    ours = fi.SegformerImageProcessor()
    outputs = _Outputs(torch.randn(2, 3, 4, 4))
    with pytest.raises(ValueError, match="as many target sizes as the batch dimension"):
        ours.post_process_semantic_segmentation(outputs, target_sizes=[(8, 8)])
    with pytest.raises(ValueError, match="4-D"):
        ours.post_process_semantic_segmentation(_Outputs(torch.randn(3, 4, 4)), target_sizes=[(8, 8)] * 3)
    with pytest.raises(TypeError, match="floating-point"):
        ours.post_process_semantic_segmentation(_Outputs(torch.ones(1, 3, 4, 4, dtype=torch.int64)))
    with pytest.raises(TypeError, match="logits"):
        ours.post_process_semantic_segmentation(torch.randn(1, 3, 4, 4))
    for sizes, error in [([(8, 0), (8, 8)], ValueError), ([(8,), (8, 8)], ValueError), ([(8.0, 8), (8, 8)], TypeError),
                         ([(8, 8, 8), (8, 8)], ValueError), ("8x8", TypeError)]:
        with pytest.raises(error):
            ours.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    # a dict with logits works too
    assert len(ours.post_process_semantic_segmentation({"logits": outputs.logits})) == 2
