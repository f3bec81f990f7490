"""Semantic segmentation families (MobileNetV2, Segformer, BEiT): label maps in, masks out.

`segmentation_maps=` (docs/BEHAVIOUR.md section 12) runs every label map through the same plan as the images, as a
one-channel image with no rescale or normalize: the family's resize (NEAREST, except BEiT, whose transformers
class resizes label maps with the images' filter) and crop, on the same backend, then int64 `labels`.
`do_reduce_labels` (0 -> 255, 255 stays 255, every other value minus one) runs on the label maps before the resize,
as transformers does, and never touches the images.

`post_process_semantic_segmentation` turns a model's logits into one label map per image: transformers' arithmetic
(bilinear upsampling with `align_corners=False`, then the first maximum over the classes) on the CPU, and on a CUDA
device one fused Triton launch for the whole batch that never writes the upsampled logits (`_kernels.segmentation`).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

from ..backends import numpy as numpy_backend
from ..batch import BatchFeature
from ..geometry import ImageGeometry
from ..image_utils import (
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    IMAGENET_STANDARD_MEAN,
    IMAGENET_STANDARD_STD,
    ChannelDimension,
    PILImageResampling,
    PreparedImage,
    is_pil_image,
    is_torch_tensor,
    prepare_image,
)
from ..plan import CHANNELS_FIRST
from .base import BACKEND_ALIASES, BaseImageProcessor, _select_backend, _triton_backend
from .vit import MobileNetV1ImageProcessor

_LAST = ChannelDimension.LAST
# The logits dtypes the fused kernel takes (named, so that deciding needs no kernel import).
_KERNEL_DTYPES = ("torch.float32", "torch.float16", "torch.bfloat16")
# transformers' reduce_label on uint8: 0 -> 255, 255 -> 255 (254 after the subtraction, put back), k -> k - 1.
_REDUCE_LUT = np.concatenate([[255], np.arange(0, 254), [255]]).astype(np.uint8)


class SemanticSegmentationPostProcessorOutput(BatchFeature):
    """One image's post-processed prediction, as transformers 5.x returns it with `return_segmentation_scores=True`:
    `segmentation` (int64 (H, W) class ids) and `segmentation_scores` ((num_labels, H, W) scores, the upsampled
    logits when target sizes were given)."""


class SemanticSegmentationMixin:
    """`segmentation_maps=` and `post_process_semantic_segmentation` for a `BaseImageProcessor` family."""

    extra_config_keys = ("do_reduce_labels",)
    do_reduce_labels = False
    # The filter label maps are resized with: NEAREST, or None for the images' own (BEiT in transformers 5.x).
    label_resample: int | None = int(PILImageResampling.NEAREST)

    def _standardize(self, values: dict[str, Any], default_to_square: bool) -> dict[str, Any]:
        value = values.get("do_reduce_labels")
        if value is not None and not isinstance(value, (bool, np.bool_)):
            raise TypeError(f"do_reduce_labels must be a bool, got {value!r}")
        return super()._standardize(values, default_to_square)

    def __call__(self, images, segmentation_maps=None, **kwargs) -> BatchFeature:
        """Preprocess images (and their label maps): same as `preprocess`."""
        return self.preprocess(images, segmentation_maps, **kwargs)

    def preprocess(self, images, segmentation_maps=None, **kwargs) -> BatchFeature:
        r"""
        Preprocess images into `pixel_values` and, when given, their label maps into int64 `labels`.

        Args:
            images: as for `BaseImageProcessor.preprocess`.
            segmentation_maps (`PIL.Image.Image`, `np.ndarray`, `torch.Tensor` or a list of them, *optional*):
                One label map per image: 2-D (H, W) integer maps (PIL modes L, P, I, I;16; arrays or tensors), a 3-D
                array/tensor for a batch, or a list. Resized (NEAREST; BEiT: the images' `resample`) and cropped
                like the images, never rescaled or normalized, reduced first when `do_reduce_labels`.
            do_reduce_labels (`bool`, *optional*, defaults to `self.do_reduce_labels`):
                Map label 0 (background) to 255 (ignored) and every other label but 255 to itself minus one.
            **kwargs: every argument of `BaseImageProcessor.preprocess`, by keyword.
        """
        result = super().preprocess(images, **kwargs)
        if segmentation_maps is None:
            return result
        pixel_values = result["pixel_values"]
        labels = self._labels(segmentation_maps, kwargs, len(pixel_values))
        return BatchFeature(data={**result.data, "labels": labels}, tensor_type=kwargs.get("return_tensors"))

    def _labels(self, segmentation_maps, kwargs: dict, count: int) -> list:
        """The int64 label maps of a call: numpy arrays, or tensors on the call's device on the Triton backend."""
        maps = flat_label_maps(segmentation_maps)
        if len(maps) != count:
            raise ValueError(f"Got {len(maps)} segmentation map(s) for {count} image(s): pass one per image")
        given = {key: kwargs.get(key) for key in self._init_kwargs if key not in ("backend", "use_fast")}
        settings = self._call_settings(given)
        settings.update(do_convert_rgb=False, do_rescale=False, do_normalize=False)
        if self.label_resample is not None:
            settings["resample"] = self.label_resample
        reduce = bool(settings["do_reduce_labels"])
        device = kwargs.get("device")
        backend = _select_backend(kwargs.get("backend") if kwargs.get("backend") is not None else self.backend,
                                  device)
        if backend == "triton":
            triton_backend = _triton_backend()
            device = triton_backend.resolve_device(device)
            filter_ = int(settings["resample"]) if settings["do_resize"] else None
            prepared = [_prepare_label_map(m, reduce, device, filter_) for m in maps]
            plan = self._plan(prepared, settings, None, CHANNELS_FIRST)
            if all(image.dtype == np.uint8 for image in prepared):
                program = triton_backend.Program(plan, prepared, device=device, out_dtype=None, stack=False)
                return [values[0].long() for values in program.run(prepared, None)]
            # Maps of other dtypes (int32, uint16, int64, ...) take the numpy backend's path (the same plan, so the
            # same labels), then move to the device.
            import torch

            outputs = numpy_backend.execute(plan, _on_host(prepared), stack=False)
            return [torch.from_numpy(values[0].astype(np.int64)).to(device) for values in outputs]
        prepared = [_prepare_label_map(m, reduce) for m in maps]
        plan = self._plan(prepared, settings, None, CHANNELS_FIRST)
        outputs = numpy_backend.execute(plan, prepared, stack=False)
        return [values[0].astype(np.int64) for values in outputs]

    def post_process_semantic_segmentation(self, outputs, target_sizes=None, return_segmentation_scores: bool = False):
        """Class ids per pixel from a semantic segmentation model's output, as transformers does.

        Args:
            outputs: the model's output, with `logits` of shape (batch, num_labels, height, width).
            target_sizes (`list[tuple[int, int]]` or a (batch, 2) tensor, *optional*):
                The (height, width) of each image's map; the logits are upsampled bilinearly (`align_corners=False`)
                to it. Without, each map has the logits' size.
            return_segmentation_scores (`bool`, *optional*, defaults to `False`):
                Return a `SemanticSegmentationPostProcessorOutput` per image, with the (upsampled) logits as
                `segmentation_scores` next to `segmentation`.

        Returns:
            `list[torch.Tensor]` of int64 (height, width) maps on the logits' device (or the outputs above). On a
            CUDA device (unless the processor's backend is `"numpy"`) with target sizes and no scores, one fused
            Triton launch computes the maps without writing the upsampled logits.
        """
        import torch

        logits = getattr(outputs, "logits", None)
        if logits is None and isinstance(outputs, dict):
            logits = outputs.get("logits")
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"outputs must have a `logits` tensor, got {type(outputs).__name__}")
        if logits.dim() != 4:
            raise ValueError(f"logits must be 4-D (batch, num_labels, height, width), got shape {tuple(logits.shape)}")
        if not logits.is_floating_point():
            raise TypeError(f"logits must be a floating-point tensor, got {logits.dtype}")
        if target_sizes is None:
            maps = logits.argmax(dim=1)
            if return_segmentation_scores:
                return [_scored(maps[i], logits[i]) for i in range(len(logits))]
            return [maps[i] for i in range(len(logits))]
        if not return_segmentation_scores and self._fused_post_processing(logits):
            from .._kernels.segmentation import bilinear_argmax

            # It checks the sizes as `_target_sizes` does; its descriptor table is uploaded once per set of sizes.
            return bilinear_argmax(logits, target_sizes, upload=_cached_upload)
        sizes = _target_sizes(target_sizes, len(logits))
        results = []
        for i, size in enumerate(sizes):
            scores = torch.nn.functional.interpolate(logits[i][None], size=size, mode="bilinear",
                                                     align_corners=False)[0]
            labels = scores.argmax(dim=0)
            results.append(_scored(labels, scores) if return_segmentation_scores else labels)
        return results

    def _fused_post_processing(self, logits) -> bool:
        """Whether the fused kernel post-processes `logits`: CUDA logits unless the backend is `"numpy"` (`"auto"`
        without triton installed uses transformers' arithmetic; `"triton"` without it is `BackendUnavailableError`).
        CPU logits take transformers' code (the same labels), except with `backend="triton"` under
        `TRITON_INTERPRET=1`: the kernel through the interpreter, as the tests run it."""
        backend = BACKEND_ALIASES.get(self.backend, self.backend)
        if backend == "numpy" or str(logits.dtype) not in _KERNEL_DTYPES:  # float64: transformers' arithmetic
            return False
        if logits.device.type == "cuda":
            if backend == "auto":
                return importlib.util.find_spec("triton") is not None
            _triton_backend()  # BackendUnavailableError without torch and triton
            return True
        return backend == "triton" and _triton_backend().INTERPRETED


def _cached_upload(desc: np.ndarray, device):
    """The device copy of a kernel descriptor table, from the backends' cache of small device tensors (one pinned,
    asynchronous upload per distinct table; none on a repeated call, and none during CUDA-graph capture)."""
    from ..backends import staging

    return staging.DESCRIPTORS.get((device, "segmentation", desc.tobytes()), lambda: staging.upload_array(desc, device))


def _scored(segmentation, scores) -> SemanticSegmentationPostProcessorOutput:
    return SemanticSegmentationPostProcessorOutput(data={"segmentation": segmentation, "segmentation_scores": scores})


def _target_sizes(target_sizes, batch: int) -> list[tuple[int, int]]:
    """`target_sizes` as a list of (height, width) ints, one per image, or a `ValueError`/`TypeError`."""
    if is_torch_tensor(target_sizes) or isinstance(target_sizes, np.ndarray):
        target_sizes = target_sizes.tolist()
    if not isinstance(target_sizes, (list, tuple)):
        raise TypeError(f"target_sizes must be a list of (height, width) pairs or a tensor, got {target_sizes!r}")
    if len(target_sizes) != batch:
        raise ValueError("Make sure that you pass in as many target sizes as the batch dimension of the logits")
    sizes = []
    for size in target_sizes:
        size = size.tolist() if is_torch_tensor(size) or isinstance(size, np.ndarray) else size
        if not isinstance(size, (list, tuple)) or len(size) != 2:
            raise ValueError(f"Each target size must be a (height, width) pair, got {size!r}")
        if any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in size):
            raise TypeError(f"Target sizes must be ints, got {size!r}")
        if min(size) <= 0:
            raise ValueError(f"Target sizes must be positive, got {size!r}")
        sizes.append((int(size[0]), int(size[1])))
    return sizes


# --- label maps -------------------------------------------------------------------------------------------------


def flat_label_maps(segmentation_maps) -> list:
    """transformers' structure rules for 2-D inputs: one label map (PIL image, 2-D array or tensor), a 3-D array or
    tensor (a batch), or a list (nested once) of those."""
    if is_pil_image(segmentation_maps):
        return [segmentation_maps]
    if isinstance(segmentation_maps, np.ndarray) or is_torch_tensor(segmentation_maps):
        if segmentation_maps.ndim == 2:
            return [segmentation_maps]
        if segmentation_maps.ndim == 3:
            return list(segmentation_maps)
        raise ValueError(
            "A segmentation map must be a 2-D (height, width) array, or 3-D for a batch; got shape "
            f"{tuple(segmentation_maps.shape)}"
        )
    if isinstance(segmentation_maps, (list, tuple)):
        if not segmentation_maps:
            raise ValueError("Received an empty list of segmentation maps")
        flat = []
        for item in segmentation_maps:
            if isinstance(item, (list, tuple)):
                flat.extend(flat_label_maps(item))
            elif is_pil_image(item) or (isinstance(item, np.ndarray) or is_torch_tensor(item)) and item.ndim == 2:
                flat.append(item)
            elif (isinstance(item, np.ndarray) or is_torch_tensor(item)) and item.ndim == 3:
                flat.extend(list(item))
            else:
                raise _bad_label_map(item)
        return flat
    raise _bad_label_map(segmentation_maps)


def _bad_label_map(value) -> Exception:
    if isinstance(value, np.ndarray) or is_torch_tensor(value):
        return ValueError(f"A segmentation map must be a 2-D (height, width) array, got shape {tuple(value.shape)}")
    return TypeError(
        "segmentation_maps must be PIL images, 2-D numpy arrays or torch tensors (or a list of them), got "
        f"{type(value).__name__}"
    )


def reduce_labels(values):
    """transformers' `reduce_label` on a numpy array or a torch tensor (never in place): 0 -> 255, 255 stays 255,
    every other value k -> k - 1."""
    if isinstance(values, np.ndarray):
        if values.dtype == np.uint8:
            return _REDUCE_LUT[values]
        return np.where((values == 0) | (values == 255), 255, values - 1).astype(values.dtype, copy=False)
    import torch

    return torch.where((values == 0) | (values == 255), torch.tensor(255, dtype=values.dtype, device=values.device),
                       values - 1)


def _label_array(label_map):
    """A label map as a 2-D numpy array or torch tensor (PIL images: `np.array`, as transformers reads them)."""
    if is_pil_image(label_map):
        array = np.array(label_map)
    elif is_torch_tensor(label_map):
        array = label_map.detach()
    else:
        array = label_map
    if array.ndim != 2:
        raise ValueError(
            f"A segmentation map must have one channel, got shape {tuple(array.shape)}"
            + (f" (a {label_map.mode} image)" if is_pil_image(label_map) else "")
        )
    dtype = str(array.dtype).removeprefix("torch.")
    try:
        kind = np.dtype(dtype)
    except TypeError:  # a torch dtype numpy does not have (bfloat16, ...)
        kind = None
    if kind is None or dtype == "bool" or not (np.issubdtype(kind, np.integer) or np.issubdtype(kind, np.floating)):
        raise TypeError(f"Segmentation maps must hold integer labels, got dtype {dtype}")
    return array


def _prepare_label_map(label_map, reduce: bool, device=None, resize_filter=None):
    """One label map as a one-channel `PreparedImage` (reduced first when `reduce`): for the numpy backend, or, with
    `device`, for the Triton backend (a uint8 tensor on the device stays there)."""
    if is_pil_image(label_map) and label_map.mode == "L" and not reduce:
        return prepare_image(label_map, False)
    values = _label_array(label_map)
    if reduce:
        values = reduce_labels(values)
    if device is not None:
        return _triton_backend().prepare(values[..., None], False, _LAST, device, resize_filter)
    if is_torch_tensor(values):
        values = values.cpu().numpy()
    return prepare_image(values[..., None], False, _LAST)


def _on_host(prepared: list) -> list:
    """`PreparedImage`s with their device tensors copied to the host."""
    return [image if image.tensor is None else PreparedImage(array=image.tensor.cpu().numpy()) for image in prepared]


# --- families ---------------------------------------------------------------------------------------------------


class MobileNetV2ImageProcessor(SemanticSegmentationMixin, MobileNetV1ImageProcessor):
    """MobileNetV2: shortest edge 256 (bilinear), center crop 224, mean/std 0.5; label maps resized NEAREST."""


class SegformerImageProcessor(SemanticSegmentationMixin, BaseImageProcessor):
    """Segformer: warp to 512x512 (bilinear), ImageNet mean/std, no center crop (transformers' Segformer ignores
    `do_center_crop`); label maps resized NEAREST."""

    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"height": 512, "width": 512}
    do_resize = True
    do_rescale = True
    do_normalize = True

    def _geometry(self, image, settings) -> ImageGeometry:
        return super()._geometry(image, {**settings, "do_center_crop": False})


class BeitImageProcessor(SemanticSegmentationMixin, BaseImageProcessor):
    """BEiT: warp to 224x224 (bicubic), mean/std 0.5, center crop off (224 when on); label maps are resized with
    the same filter as the images, as transformers 5.x's BEiT does."""

    resample = PILImageResampling.BICUBIC
    image_mean = IMAGENET_STANDARD_MEAN
    image_std = IMAGENET_STANDARD_STD
    size = {"height": 224, "width": 224}
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = False
    do_rescale = True
    do_normalize = True
    label_resample = None
