"""Segmentation on the Triton backend (docs/BEHAVIOUR.md section 12): label maps through the same kernels as images
(uint8 identity path) equal the numpy backend's, and post-processing through the fused bilinear + argmax kernel
equals transformers'. Under the interpreter on CPU tensors; on a GPU on CUDA tensors (see triton_mode.py)."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
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
        launches = count_launches(monkeypatch) if name == "arrays" else []
        result = processor(images, label_maps, return_tensors="pt", backend="triton", device=DEVICE)
        labels = result["labels"]
        assert labels.dtype == torch.int64 and labels.device.type == DEVICE, name
        assert torch.equal(labels.cpu(), expected["labels"]), name
        assert torch.equal(result["pixel_values"].cpu(), expected["pixel_values"]), name
        if launches:  # one crop/normalize launch for the images and one for the label maps
            assert launches.count("crop_normalize_out") == 2, launches
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
