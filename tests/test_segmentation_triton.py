"""Segmentation on the Triton backend (docs/BEHAVIOUR.md section 12): label maps through the same kernels as images
(uint8 identity path) equal the numpy backend's, and post-processing through the fused bilinear + argmax kernel
equals transformers'. Under the interpreter on CPU tensors; on a GPU on CUDA tensors (see triton_mode.py)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
from test_segmentation_kernel import assert_equal_up_to_near_ties
from triton_mode import DEVICE, count_launches

import fused_imgproc as fi

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()
T = transformers

FAMILIES = {
    "MobileNetV2": (fi.MobileNetV2ImageProcessor, T.MobileNetV2ImageProcessorPil, {"size": {"shortest_edge": 20},
                                                                                   "crop_size": 24}),
    "Segformer": (fi.SegformerImageProcessor, T.SegformerImageProcessorPil, {"size": {"height": 19, "width": 26}}),
    "Beit": (fi.BeitImageProcessor, T.BeitImageProcessorPil, {"size": 30, "do_center_crop": True, "crop_size": 22}),
}


def _blocks(height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, (height // 3 + 1, width // 4 + 1)).astype(np.uint8)
    values[0, 0] = 0
    return values[np.arange(height) // 3][:, np.arange(width) // 4]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("reduce", [False, True])
def test_label_maps_equal_the_numpy_backend(family, reduce, monkeypatch):
    ours_cls, ref_cls, config = FAMILIES[family]
    processor = ours_cls(**config, do_reduce_labels=reduce)
    sizes = [(17, 23), (40, 31), (5, 9)]
    images = [np.random.default_rng(i).integers(0, 256, (h, w, 3), dtype=np.uint8) for i, (h, w) in enumerate(sizes)]
    maps = [_blocks(h, w, i) for i, (h, w) in enumerate(sizes)]
    inputs = {
        "arrays": maps,
        "pil": [PIL.Image.fromarray(m) for m in maps],
        "device-tensors": [torch.from_numpy(m).to(DEVICE) for m in maps],
        "int32": [m.astype(np.int32) for m in maps],
    }
    expected = processor(images, maps, return_tensors="pt")
    reference = ref_cls(**config, do_reduce_labels=reduce)(images, [m.copy() for m in maps], return_tensors="pt")
    assert torch.equal(expected["labels"], reference["labels"])
    for name, label_maps in inputs.items():
        launches = count_launches(monkeypatch)
        result = processor(images, label_maps, return_tensors="pt", backend="triton", device=DEVICE)
        labels = result["labels"]
        assert labels.dtype == torch.int64 and labels.device.type == DEVICE, name
        assert torch.equal(labels.cpu(), expected["labels"]), name
        assert torch.equal(result["pixel_values"].cpu(), expected["pixel_values"]), name
        if name != "int32":  # one crop/normalize launch for the images and one for the uint8 label maps
            assert launches.count("crop_normalize_out") == 2, (name, launches)
        else:  # int32 maps take the numpy path: only the images' launch
            assert launches.count("crop_normalize_out") == 1, (name, launches)
        monkeypatch.undo()
    listed = processor(images, maps, backend="triton", device=DEVICE)["labels"]
    assert isinstance(listed, list) and all(torch.equal(a.cpu(), b) for a, b in zip(listed, expected["labels"]))


def test_wide_unresized_label_maps_on_the_triton_backend():
    """int64 maps beyond uint8 are not resized: copied as they are (on the host), then moved to the device."""
    processor = fi.SegformerImageProcessor(do_resize=False)
    image = np.zeros((6, 7, 3), np.uint8)
    labels = np.arange(42, dtype=np.int64).reshape(6, 7) * 100
    result = processor(image, labels, return_tensors="pt", backend="triton", device=DEVICE)
    assert result["labels"].device.type == DEVICE
    assert torch.equal(result["labels"][0].cpu(), torch.from_numpy(labels))


# --- masks out: the fused kernel through the processor --------------------------------------------------------------


class _Outputs:
    def __init__(self, logits):
        self.logits = logits


def _smooth(batch: int, classes: int, h: int, w: int, seed: int) -> torch.Tensor:
    coarse = torch.randn(batch, classes, max(1, h // 4), max(1, w // 4), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse * 4, size=(h, w), mode="bilinear", align_corners=False)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_post_process_through_the_kernel_equals_transformers(family, dtype, monkeypatch):
    """Ragged target sizes (smaller, larger, equal, 1-pixel) in one launch; 151 and 2 classes. On the CPU the kernel
    follows CPU torch (equal labels); on a GPU, CUDA torch (`_kernels.segmentation` documents why that equality is
    not guaranteed where two classes are within an ulp; tests/test_segmentation_kernel.py bounds it)."""
    ours = FAMILIES[family][0](backend="triton")
    ref = FAMILIES[family][1]()
    from fused_imgproc._kernels import segmentation as S

    launches = []
    real = S.launch_on
    monkeypatch.setattr(S, "launch_on", lambda *a, **k: (launches.append(1), real(*a, **k)))
    for classes in (151, 2):
        logits = _smooth(4, classes, 12, 10, seed=classes).to(dtype)
        sizes = [(30, 41), (5, 3), (12, 10), (1, 64)]
        on_device = _Outputs(logits.to(DEVICE))
        got = ours.post_process_semantic_segmentation(on_device, target_sizes=sizes)
        expected = ref.post_process_semantic_segmentation(on_device, target_sizes=sizes, return_segmentation_scores=True)
        for a, b in zip(got, expected, strict=True):
            assert a.dtype == torch.int64 and a.device.type == DEVICE
            if DEVICE == "cpu":
                assert torch.equal(a, b.segmentation)
            else:  # CUDA torch's FMA placement is assumed by the kernel: labels may differ only at near-ties
                assert_equal_up_to_near_ties(a, b.segmentation_scores, rare=False)
    assert len(launches) == 2  # one per batch
    # Without target sizes, or with scores, transformers' own arithmetic (no kernel): identical, on any device.
    logits = _smooth(2, 5, 6, 7, seed=0).to(dtype).to(DEVICE)
    plain = ours.post_process_semantic_segmentation(_Outputs(logits))
    assert all(torch.equal(a, b) for a, b in zip(plain, ref.post_process_semantic_segmentation(_Outputs(logits))))
    scored = ours.post_process_semantic_segmentation(_Outputs(logits), [(9, 9)] * 2, return_segmentation_scores=True)
    reference = ref.post_process_semantic_segmentation(_Outputs(logits), [(9, 9)] * 2, return_segmentation_scores=True)
    for a, b in zip(scored, reference):
        assert torch.equal(a.segmentation, b.segmentation) and torch.equal(a.segmentation_scores, b.segmentation_scores)
    assert len(launches) == 2


def test_post_process_backend_choice():
    """float64 logits (which the kernel does not take) follow transformers' arithmetic on every backend."""
    logits = _smooth(1, 3, 5, 5, seed=1).double().to(DEVICE)
    for backend in ("triton", "numpy", "auto"):
        processor = fi.SegformerImageProcessor(backend=backend)
        got = processor.post_process_semantic_segmentation(_Outputs(logits), [(11, 7)])
        expected = torch.nn.functional.interpolate(logits, size=(11, 7), mode="bilinear", align_corners=False)[0]
        assert torch.equal(got[0], expected.argmax(dim=0))


def test_post_process_bad_target_sizes_on_the_kernel_path():
    processor = fi.SegformerImageProcessor(backend="triton")
    outputs = _Outputs(_smooth(2, 3, 4, 4, seed=2).to(DEVICE))
    with pytest.raises(ValueError, match="as many target sizes as the batch dimension"):
        processor.post_process_semantic_segmentation(outputs, target_sizes=[(8, 8)])
    for sizes, error in [([(8, 0), (8, 8)], ValueError), ([(8,), (8, 8)], ValueError), ([(8.0, 8), (8, 8)], TypeError),
                         ([(8, 8, 8), (8, 8)], ValueError), (torch.ones(2, 2), TypeError)]:
        with pytest.raises(error):
            processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
    uniform = processor.post_process_semantic_segmentation(outputs, target_sizes=torch.tensor([[9, 7], [9, 7]]))
    ragged = processor.post_process_semantic_segmentation(outputs, target_sizes=[(9, 7), (9, 8)])
    assert torch.equal(uniform[0], ragged[0]) and tuple(ragged[1].shape) == (9, 8)


def test_post_process_uploads_its_descriptor_table_once_per_set_of_sizes(monkeypatch):
    """A repeated call (a server's steady state) finds its descriptor table on the device: no copy, no sync."""
    from fused_imgproc.backends import staging

    uploads = []
    real = staging.upload_array
    monkeypatch.setattr(staging, "upload_array", lambda *a, **k: (uploads.append(1), real(*a, **k))[1])
    processor = fi.SegformerImageProcessor(backend="triton")
    outputs = _Outputs(_smooth(2, 3, 4, 4, seed=3).to(DEVICE))
    first = processor.post_process_semantic_segmentation(outputs, target_sizes=[(13, 11), (6, 5)])
    again = processor.post_process_semantic_segmentation(outputs, target_sizes=[(13, 11), (6, 5)])
    assert len(uploads) == 1 and all(torch.equal(a, b) for a, b in zip(first, again))
    processor.post_process_semantic_segmentation(outputs, target_sizes=[(13, 11), (6, 6)])
    assert len(uploads) == 2
