"""The implementations of a case: ours (the Triton backend, through the public API), the copy ceiling lives in
suite.py, and the peers, each only where installed and where it can produce the case's output.

Each builder takes `(case, profile, device, data)` and returns an `Impl` whose `call(slot)` does the whole work
of one timed call, or raises `Unavailable` with the reason ("not installed", ...). Peers:

- `torch eager`: the same crop + uint8-to-float + rescale + normalize + layout as plain PyTorch ops on the device
  (crop cases; a ragged batch image by image, then one `torch.cat`).
- `torch.compile`: that function under `torch.compile` (default mode; automatic dynamic shapes as a user gets
  them). The first call's compile time is in the row's note.
- `torchvision v2`: `v2.Resize(edge, BICUBIC, antialias=True)` (clip, e2e) + `CenterCrop` + `ToDtype(float32,
  scale=True)` + `Normalize`, then the output dtype and layout, on the device.
- `transformers (torchvision)`: transformers' torchvision-backend CLIP processor with `device=` (float32 NCHW
  cases and e2e, where its float32 output is then cast to bfloat16).
- `transformers (PIL)`: transformers' PIL-backend CLIP processor, on the host (float32 NCHW cases; e2e host
  input, its output then copied to the device as bfloat16).
- `fused (numpy)`: our numpy backend on the host, same cases as transformers' PIL processor.

The Qwen cases (`qwen`) use the Qwen2-VL processors instead, built with Qwen2.5-VL's config (`cases.QWEN25_VL`):
ours (`fused_imgproc.Qwen2VLImageProcessor`), transformers' torchvision-backend `Qwen2VLImageProcessor` with
`device=` (float32 patch rows, then cast to bfloat16), transformers' `Qwen2VLImageProcessorPil` and our numpy backend
on the host (host inputs; their rows then copied to the device as bfloat16).

The segmentation post-processing cases (`seg`): ours is `fused_imgproc.SegformerImageProcessor(backend="triton")
.post_process_semantic_segmentation(outputs, target_sizes=...)` (one fused bilinear + argmax launch, under the
interpreter on the CPU), the one peer `transformers (torch ops)`: transformers' `SegformerImageProcessorPil` (4.x
`SegformerImageProcessor`) `.post_process_semantic_segmentation` on the same device logits (per image
`F.interpolate(bilinear, align_corners=False)` then `argmax`, torch ops on the logits' device). Both return a list
of int64 label maps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .cases import QWEN25_VL, Case, CaseData, Profile, output_size, processing_kwargs, torch_dtype

FUSED = "fused (triton)"
FUSED_GRAPH = "fused (triton, CUDA graph)"
COPY = "copy (ceiling)"
EAGER = "torch eager"
COMPILE = "torch.compile"
TV2 = "torchvision v2"
HF_TV = "transformers (torchvision)"
HF_PIL = "transformers (PIL)"
NUMPY = "fused (numpy)"
HF_OPS = "transformers (torch ops)"
# Display order of implementations in tables and the chart.
ORDER = (FUSED, FUSED_GRAPH, COPY, EAGER, COMPILE, TV2, HF_TV, HF_PIL, NUMPY, HF_OPS)


class Unavailable(Exception):
    """A peer that cannot run here: not installed, or no such class in the installed version."""


@dataclass
class Impl:
    """`call(slot)` runs one call on a slot. `clock`: "device" (do_bench / perf_counter) or "wall" (host clock
    with synchronisation). `role`: "ours", "peer" or "ceiling"."""

    name: str
    role: str
    clock: str
    call: Callable[[Any], Any]
    note: str = ""


def as_tensor(result: Any):
    """The pixel values of a call's result as one torch tensor (BatchFeature, tensor, numpy array or a list)."""
    import numpy as np
    import torch

    if hasattr(result, "keys") and "pixel_values" in result:
        result = result["pixel_values"]
    if isinstance(result, np.ndarray):
        return torch.from_numpy(result)
    if isinstance(result, (list, tuple)):
        return torch.stack([as_tensor(item) for item in result])
    return result


def _clip_constants():
    """CLIP's mean, std and rescale factor, as our processor holds them."""
    import fused_imgproc

    proc = fused_imgproc.CLIPImageProcessor()
    return list(proc.image_mean), list(proc.image_std), float(proc.rescale_factor)


def _data_format(case: Case) -> str:
    return "channels_last" if case.channels_last else "channels_first"


def _processor(case: Case):
    """Our processor of a case: Qwen2-VL's with Qwen2.5-VL's config for the Qwen cases, else CLIP's."""
    import fused_imgproc

    if case.kind == "qwen":
        return fused_imgproc.Qwen2VLImageProcessor(**QWEN25_VL)
    return fused_imgproc.CLIPImageProcessor()


def _our_kwargs(case: Case, profile: Profile, **call) -> dict:
    """Our call's arguments: the case's preprocess arguments, `call`, the output dtype and (images, not patch
    rows) the data format."""
    kwargs = dict(processing_kwargs(case, profile), return_tensors="pt", dtype=torch_dtype(case.dtype), **call)
    if case.kind != "qwen":
        kwargs["data_format"] = _data_format(case)
    return kwargs


def fused_triton(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    """Our processor on the device (`backend="triton"`; under the interpreter on CPU tensors), into the slot's
    `out=` buffer where the case has one."""
    proc = _processor(case)
    kwargs = _our_kwargs(case, profile, device=device, backend="triton")

    def call(slot):
        if slot.out is not None:
            return proc(slot.images, out=slot.out, **kwargs)
        return proc(slot.images, **kwargs)

    end_to_end = case.kind in ("e2e", "qwen")
    return Impl(FUSED, "ours", "wall" if end_to_end else "device", call,
                "returns a new tensor" if end_to_end else "out= buffer")


def fused_numpy(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    """Our numpy backend from the host pixels; in e2e and qwen its result is then copied to the device."""
    proc = _processor(case)
    kwargs = _our_kwargs(case, profile, backend="numpy")
    if case.kind in ("e2e", "qwen"):
        return Impl(NUMPY, "peer", "wall", lambda slot: proc(slot.host, **kwargs)["pixel_values"].to(device),
                    "host, then copied to the device")
    return Impl(NUMPY, "peer", "wall", lambda slot: proc(slot.host, **kwargs), "host")


def reference(case: Case, profile: Profile, host_images: Any):
    """Our numpy backend's output for `host_images` (the bit-exactness reference of the Triton backend)."""
    return _processor(case)(host_images, **_our_kwargs(case, profile, backend="numpy"))["pixel_values"]


def torch_crop_normalize(x, top: int, left: int, size: int, scale: float, mean, std, dtype, channels_last: bool):
    """Center-cropped uint8 `(N, H, W, C)` -> `(N, C, size, size)` (or NHWC) of `dtype`: crop, float32, rescale,
    normalize with per-channel `mean`/`std` tensors, cast, layout. The plain-PyTorch peer of the crop kernel."""
    import torch

    y = x[:, top:top + size, left:left + size, :].to(torch.float32) * scale
    y = ((y - mean) / std).to(dtype)
    return y.contiguous() if channels_last else y.permute(0, 3, 1, 2).contiguous()


def _crop_peer(fn: Callable, case: Case, profile: Profile, device: str) -> Callable[[Any], Any]:
    import torch

    mean_list, std_list, scale = _clip_constants()
    mean = torch.tensor(mean_list, dtype=torch.float32, device=device)
    std = torch.tensor(std_list, dtype=torch.float32, device=device)
    size, dtype = profile.crop, torch_dtype(case.dtype)

    def one(x):
        height, width = x.shape[1], x.shape[2]
        return fn(x, (height - size) // 2, (width - size) // 2, size, scale, mean, std, dtype, case.channels_last)

    if case.layout == "ragged":
        return lambda slot: torch.cat([one(image[None]) for image in slot.images])
    return lambda slot: one(slot.images)


def torch_eager(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    return Impl(EAGER, "peer", "device", _crop_peer(torch_crop_normalize, case, profile, device),
                "image by image + cat" if case.layout == "ragged" else "")


_COMPILED: dict[str, Callable] = {}


def compile_backend(device: str) -> str:
    """inductor on CUDA (it generates Triton kernels). On the CPU (smoke mode only) "aot_eager": the same dynamo
    tracing and graph handling of our code path without inductor's C++ code generation, which costs tens of
    seconds on a small CI machine and is not what the GPU run measures."""
    return "inductor" if device == "cuda" else "aot_eager"


def torch_compiled(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    """`torch.compile(torch_crop_normalize)`, one compiled function for the whole run (its recompilations follow
    the shapes, as in a user's program); the first call on this case (compiling, if needed) is timed for the note."""
    import torch

    backend = compile_backend(device)
    if backend not in _COMPILED:
        for option in ("recompile_limit", "cache_size_limit"):  # the newer name first; both bound recompilations
            if hasattr(torch._dynamo.config, option):
                setattr(torch._dynamo.config, option, 64)
        _COMPILED[backend] = torch.compile(torch_crop_normalize, backend=backend)
    call = _crop_peer(_COMPILED[backend], case, profile, device)
    start = time.perf_counter()
    call(data.slots[0])
    if device == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - start
    extra = "image by image + cat; " if case.layout == "ragged" else ""
    return Impl(COMPILE, "peer", "device", call, f"{extra}backend={backend}, first call {first:.2f} s")


def torchvision_v2(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    import torch

    try:
        from torchvision.transforms import InterpolationMode, v2
    except ImportError as error:
        raise Unavailable(f"not installed ({error})") from None
    mean, std, _ = _clip_constants()
    steps = []
    if case.kind != "crop":
        steps.append(v2.Resize(profile.clip_edge, interpolation=InterpolationMode.BICUBIC, antialias=True))
    size = output_size(case, profile)
    steps += [v2.CenterCrop(size), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    pipeline = v2.Compose(steps)
    dtype = torch_dtype(case.dtype)

    def finish(y):
        y = y.to(dtype)
        return y.permute(0, 2, 3, 1).contiguous() if case.channels_last else y

    if case.layout == "ragged":
        return Impl(TV2, "peer", "device",
                    lambda slot: finish(torch.stack([pipeline(image.permute(2, 0, 1)) for image in slot.images])),
                    "image by image + stack")
    if case.layout == "host":
        return Impl(TV2, "peer", "wall",
                    lambda slot: finish(pipeline(torch.from_numpy(slot.images).to(device).permute(2, 0, 1)[None])),
                    "upload, then on the device")
    if case.layout == "device":
        return Impl(TV2, "peer", "wall", lambda slot: finish(pipeline(slot.images.permute(2, 0, 1)[None])))
    return Impl(TV2, "peer", "device", lambda slot: finish(pipeline(slot.images.permute(0, 3, 1, 2))))


def transformers_classes() -> tuple[Any, Any, str]:
    """`(pil_class, torchvision_class_or_None, why_none)` for CLIP in the installed transformers: 5.x names the PIL
    one `CLIPImageProcessorPil` and the torchvision one `CLIPImageProcessor`; 4.x `CLIPImageProcessor` (PIL) and
    `CLIPImageProcessorFast`. The torchvision one needs torchvision."""
    try:
        import transformers
    except ImportError as error:
        raise Unavailable(f"not installed ({error})") from None
    transformers.logging.set_verbosity_error()
    pil = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return pil, None, "not installed (its torchvision backend needs torchvision)"
    fast = getattr(transformers, "CLIPImageProcessorFast", None)
    if fast is None:
        from transformers.models.clip.image_processing_clip import CLIPImageProcessor as fast
    if getattr(fast(), "backend", "torchvision") != "torchvision":
        return pil, None, f"{fast.__name__} is not a torchvision-backend processor here"
    return pil, fast, ""


def qwen_transformers_classes() -> tuple[Any, Any, str]:
    """`(pil_class, torchvision_class_or_None, why_none)` for Qwen2-VL: transformers 5.x's
    `Qwen2VLImageProcessorPil` and, in `image_processing_qwen2_vl`, the torchvision-backend `Qwen2VLImageProcessor`
    (which falls back to the PIL one without torchvision); 4.x's `Qwen2VLImageProcessor` (PIL) and
    `Qwen2VLImageProcessorFast`."""
    try:
        import transformers
    except ImportError as error:
        raise Unavailable(f"not installed ({error})") from None
    transformers.logging.set_verbosity_error()
    pil = getattr(transformers, "Qwen2VLImageProcessorPil", None)
    if pil is None:  # 4.x
        try:
            pil = transformers.Qwen2VLImageProcessor
        except AttributeError as error:
            raise Unavailable(f"no Qwen2-VL image processor in this transformers ({error})") from None
    try:
        import torchvision  # noqa: F401
    except ImportError:
        return pil, None, "not installed (its torchvision backend needs torchvision)"
    if hasattr(transformers, "Qwen2VLImageProcessorPil"):
        from transformers.models.qwen2_vl.image_processing_qwen2_vl import Qwen2VLImageProcessor as fast
    else:
        fast = transformers.Qwen2VLImageProcessorFast
    if fast is pil or getattr(fast(**QWEN25_VL), "backend", "torchvision") != "torchvision":
        return pil, None, f"{fast.__name__} is not a torchvision-backend processor here"
    return pil, fast, ""


def hf_torchvision(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    import torch

    if case.kind == "qwen":
        _, fast, why = qwen_transformers_classes()
        if fast is None:
            raise Unavailable(why)
        proc = fast(**QWEN25_VL)
    else:
        _, fast, why = transformers_classes()
        if fast is None:
            raise Unavailable(why)
        proc = fast()
    kwargs = dict(processing_kwargs(case, profile), return_tensors="pt", device=device)
    if case.kind in ("e2e", "qwen"):
        return Impl(HF_TV, "peer", "wall",
                    lambda slot: proc(slot.images, **kwargs)["pixel_values"].to(torch.bfloat16),
                    f"{type(proc).__name__}, float32 then cast to bfloat16")
    return Impl(HF_TV, "peer", "device", lambda slot: proc(slot.images, **kwargs), type(proc).__name__)


def hf_pil(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    import torch

    if case.kind == "qwen":
        pil, _, _ = qwen_transformers_classes()
        proc = pil(**QWEN25_VL)
    else:
        pil, _, _ = transformers_classes()
        proc = pil()
    kwargs = dict(processing_kwargs(case, profile), return_tensors="pt")
    if case.kind in ("e2e", "qwen"):
        return Impl(HF_PIL, "peer", "wall",
                    lambda slot: proc(slot.host, **kwargs)["pixel_values"].to(device, torch.bfloat16),
                    f"{type(proc).__name__} on the host, then to the device as bfloat16")
    return Impl(HF_PIL, "peer", "wall", lambda slot: proc(slot.host, **kwargs), f"{type(proc).__name__}, host")


def fused_segmentation(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    """Our segmentation post-processing: `backend="triton"`, so that CPU logits (smoke, under the interpreter) go
    through the kernel too (on CUDA logits the default backend does as well)."""
    import fused_imgproc

    proc = fused_imgproc.SegformerImageProcessor(backend="triton")
    sizes = [profile.seg_target] * case.batch
    return Impl(FUSED, "ours", "device",
                lambda slot: proc.post_process_semantic_segmentation(slot.images, target_sizes=sizes),
                "one fused bilinear + argmax launch; a list of int64 label maps")


def hf_segmentation(case: Case, profile: Profile, device: str, data: CaseData) -> Impl:
    """transformers' post-processing on the same device logits: per image F.interpolate + argmax."""
    try:
        import transformers
    except ImportError as error:
        raise Unavailable(f"not installed ({error})") from None
    transformers.logging.set_verbosity_error()
    cls = getattr(transformers, "SegformerImageProcessorPil", None) or transformers.SegformerImageProcessor
    proc = cls()
    sizes = [profile.seg_target] * case.batch
    return Impl(HF_OPS, "peer", "device",
                lambda slot: proc.post_process_semantic_segmentation(slot.images, target_sizes=sizes),
                f"{cls.__name__}.post_process_semantic_segmentation: per image F.interpolate + argmax on the device")


def peer_builders(case: Case) -> list[tuple[str, Callable[[Case, Profile, str, CaseData], Impl]]]:
    """The peers that apply to `case`, in display order. transformers' processors and the host implementations only
    produce float32 NCHW, so they run on those cases (and on e2e, cast); torch eager/compile on crop cases. The Qwen
    cases: transformers' processors (torchvision; PIL and our numpy backend for host inputs), no torchvision v2
    (it has no patch rows). The seg cases: transformers' post-processing."""
    builders: list[tuple[str, Callable]] = []
    if case.kind == "seg":
        return [(HF_OPS, hf_segmentation)]
    if case.kind == "qwen":
        builders.append((HF_TV, hf_torchvision))
        if case.layout == "host":
            builders += [(HF_PIL, hf_pil), (NUMPY, fused_numpy)]
        return builders
    if case.kind == "crop":
        builders += [(EAGER, torch_eager), (COMPILE, torch_compiled)]
    builders.append((TV2, torchvision_v2))
    plain = case.dtype == "fp32" and case.fmt == "NCHW"
    if plain or case.kind == "e2e":
        builders.append((HF_TV, hf_torchvision))
    if plain or (case.kind == "e2e" and case.layout == "host"):
        builders += [(HF_PIL, hf_pil), (NUMPY, fused_numpy)]
    return builders
