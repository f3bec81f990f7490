"""The benchmark cases, the two size profiles (the GPU run and its smoke mode) and their input data.

Kinds of case:

- `crop`: the crop/normalize kernel alone (`do_resize=False`, center crop), uint8 inputs already on the device:
  a uniform batch (one 4-D `(N, H, W, 3)` tensor) or a ragged one (a list of separately allocated `(h, w, 3)`
  tensors of varied sizes, each at least the crop on both sides, about the same total pixels), float32 or
  bfloat16 output, NCHW or NHWC, written into a preallocated `out=` buffer.
- `clip`: the full CLIP pipeline (shortest edge bicubic resize on the device, center crop, rescale, normalize)
  from a uint8 `(N, 480, 640, 3)` device tensor, into `out=`.
- `e2e`: batch-1 latency from a host numpy image (`host`) or a uint8 device tensor (`device`) to a bfloat16
  device tensor, on the host clock.
- `qwen`: the Qwen2-VL processor end to end (Qwen2.5-VL-7B's config: `smart_resize` to multiples of 28, patch rows
  of 1176 values, `image_grid_thw`) to bfloat16 device patch rows, on the host clock: one 1080x1920 image from a
  host numpy array (`host`) or a uint8 device tensor (`device`), and a batch of mixed sizes from host arrays.
- `seg`: semantic-segmentation post-processing, `post_process_semantic_segmentation(outputs, target_sizes=...)`:
  Segformer-B0 ADE20K-shaped logits `(B, 150, 128, 128)` on the device (smooth: low-resolution Gaussian noise
  upsampled bilinearly, plus a per-class bias) to int64 512x512 label maps; float32, and bfloat16 at the largest
  batch. Each slot's `images` is a model-output-like object with `logits`.

Every case gets several input sets ("slots"), used in turn by the timed calls, so that on the GPU the inputs and
outputs of the slots together exceed twice the L2 cache: a repeated call never finds its data in L2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import traffic

CHANNELS = 3
DTYPE_NAMES = ("fp32", "bf16")
FORMATS = ("NCHW", "NHWC")
MAX_SLOTS = 256


@dataclass(frozen=True)
class Profile:
    """Sizes and batches of one run."""

    name: str
    crop_src: int  # uniform crop inputs are crop_src x crop_src
    crop: int
    crop_batches: tuple[int, ...]
    ragged_spread: int  # ragged heights vary over crop_src +- spread / 2
    clip_src: tuple[int, int]
    clip_edge: int
    clip_crop: int
    clip_batches: tuple[int, ...]
    qwen_src: tuple[int, int]  # the batch-1 Qwen image
    qwen_mixed: tuple[tuple[int, int], tuple[int, int]]  # mixed batches: heights and widths drawn in these ranges
    qwen_batch: int  # the mixed batch's size
    seg_logits: tuple[int, int, int]  # (classes, height, width) of the segmentation logits
    seg_target: tuple[int, int]  # (height, width) of every label map
    seg_batches: tuple[int, ...]  # float32 logits
    seg_bf16_batches: tuple[int, ...]  # bfloat16 logits


FULL = Profile("full", 256, 224, (1, 8, 64, 256), 64, (480, 640), 224, 224, (1, 8, 64), (1080, 1920),
               ((480, 1080), (640, 1920)), 8, seg_logits=(150, 128, 128), seg_target=(512, 512), seg_batches=(1, 16),
               seg_bf16_batches=(16,))
# Under the Triton interpreter every kernel program costs milliseconds: tiny images, batches of 1 and 2. The Qwen
# images are resized up to Qwen's smallest area (3136 pixels: 56x84 for these) whatever their size.
SMOKE = Profile("smoke", 16, 8, (1, 2), 8, (12, 16), 8, 8, (1, 2), (20, 36), ((16, 24), (20, 40)), 2,
                seg_logits=(7, 8, 8), seg_target=(20, 24), seg_batches=(1, 3), seg_bf16_batches=(3,))

# Segmentation label maps that differ from transformers' (CUDA torch's on a GPU) in more than this fraction of their
# pixels fail the benchmark; fewer (but some) are a reported warning (see benchmarks/gpu/README.md).
SEG_FAIL_FRACTION = 1e-3

# Qwen2.5-VL-7B-Instruct's preprocessor_config.json (less `image_processor_type`): our processor and transformers'
# take these as keyword arguments.
QWEN25_VL = {"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
             "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}


@dataclass(frozen=True)
class Case:
    """One measured configuration. `layout`: "uniform"/"ragged" (crop), "uniform" (clip), "host"/"device" (e2e,
    qwen), "device" (seg). `dtype`: the output's (the logits' in seg); `fmt`: "labels" in seg."""

    kind: str
    batch: int
    layout: str
    dtype: str
    fmt: str

    @property
    def id(self) -> str:
        if self.kind in ("e2e", "qwen"):
            return f"{self.kind} b{self.batch} {self.layout}->{self.dtype}"
        if self.kind == "clip":
            return f"clip b{self.batch} {self.dtype} {self.fmt}"
        if self.kind == "seg":
            return f"seg b{self.batch} {self.dtype} logits->labels"
        return f"crop b{self.batch} {self.layout} {self.dtype} {self.fmt}"

    @property
    def channels_last(self) -> bool:
        return self.fmt == "NHWC"


def all_cases(profile: Profile) -> list[Case]:
    """Every case of a run, cheapest and most quoted first (so a run cut short by its time budget loses the tail).
    Within one output dtype and format the crop batches ascend, uniform before ragged: torch.compile's automatic
    dynamic shapes then recompile as little as they would in a user's program. The Qwen cases (a few seconds, most
    of it transformers' PIL processor) come after CLIP's, then the segmentation post-processing cases (a few
    seconds), before the crop kernel's."""
    cases = [Case("e2e", 1, "host", "bf16", "NCHW"), Case("e2e", 1, "device", "bf16", "NCHW")]
    cases += [Case("clip", batch, "uniform", dtype, "NCHW") for batch in profile.clip_batches for dtype in DTYPE_NAMES]
    cases += [Case("qwen", 1, "host", "bf16", "rows"), Case("qwen", 1, "device", "bf16", "rows"),
              Case("qwen", profile.qwen_batch, "host", "bf16", "rows")]
    cases += [Case("seg", batch, "device", "fp32", "labels") for batch in profile.seg_batches]
    cases += [Case("seg", batch, "device", "bf16", "labels") for batch in profile.seg_bf16_batches]
    for fmt in FORMATS:
        for dtype in DTYPE_NAMES:
            for layout in ("uniform", "ragged"):
                cases += [Case("crop", batch, layout, dtype, fmt) for batch in profile.crop_batches]
    return cases


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[name]


def processing_kwargs(case: Case, profile: Profile) -> dict[str, Any]:
    """The transformers-style preprocess arguments of a case (shared by every processor we call; the Qwen cases
    set theirs when the processor is built, `QWEN25_VL`)."""
    if case.kind in ("qwen", "seg"):
        return {}
    if case.kind == "crop":
        crop = profile.crop
        return {"do_resize": False, "do_center_crop": True, "crop_size": {"height": crop, "width": crop}}
    return {"do_resize": True, "size": {"shortest_edge": profile.clip_edge}, "do_center_crop": True,
            "crop_size": {"height": profile.clip_crop, "width": profile.clip_crop}}


def output_size(case: Case, profile: Profile) -> int:
    return profile.crop if case.kind == "crop" else profile.clip_crop


def output_shape(case: Case, profile: Profile) -> tuple[int, ...]:
    side = output_size(case, profile)
    return (case.batch, side, side, CHANNELS) if case.channels_last else (case.batch, CHANNELS, side, side)


def image_sizes(case: Case, profile: Profile, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(height, width) of each image. Ragged crop batches: heights drawn around the uniform side, widths chosen so
    each image has about the uniform pixel count; every side at least the crop. Qwen batches of more than one
    image: heights and widths drawn in the profile's ranges, every fourth image turned to portrait. Segmentation:
    the label maps' (target) size."""
    if case.kind == "seg":
        return [profile.seg_target] * case.batch
    if case.kind == "qwen":
        if case.batch == 1:
            return [profile.qwen_src]
        (h0, h1), (w0, w1) = profile.qwen_mixed
        drawn = zip(rng.integers(h0, h1 + 1, case.batch), rng.integers(w0, w1 + 1, case.batch))
        return [(int(h), int(w)) if k % 4 != 3 else (int(w), int(h)) for k, (h, w) in enumerate(drawn)]
    if case.kind != "crop":
        return [profile.clip_src] * case.batch
    side = profile.crop_src
    if case.layout == "uniform":
        return [(side, side)] * case.batch
    half = profile.ragged_spread // 2
    heights = rng.integers(side - half, side + half + 1, case.batch)
    sizes = [(int(h), round(side * side / h)) for h in heights]
    if min(min(size) for size in sizes) < profile.crop:
        raise ValueError(f"ragged sizes {sizes} include a side below the crop {profile.crop}")
    return sizes


def bytes_moved(case: Case, profile: Profile, sizes: list[tuple[int, int]]) -> int:
    itemsize = {"fp32": 4, "bf16": 2}[case.dtype]
    if case.kind == "seg":
        classes, height, width = profile.seg_logits
        return traffic.segmentation_bytes(case.batch, classes, (height, width), profile.seg_target, itemsize)
    if case.kind == "qwen":
        return traffic.patch_rows_bytes(sizes, QWEN25_VL, CHANNELS, itemsize)
    if case.kind == "crop":
        return traffic.crop_bytes(sizes, profile.crop, CHANNELS, itemsize)
    return traffic.resize_crop_bytes(sizes, profile.clip_edge, profile.clip_crop, CHANNELS, itemsize)


def slot_count(nbytes: int, device: str, l2_bytes: int) -> int:
    """Input sets per case: on CUDA enough that their traffic exceeds twice the L2 (at least 2, at most
    `MAX_SLOTS`); on the CPU 2 (the rotation is exercised, the cache is not the point under the interpreter)."""
    if device != "cuda":
        return 2
    return max(2, min(MAX_SLOTS, math.ceil(2 * l2_bytes / max(nbytes, 1))))


@dataclass
class Slot:
    """One input set: `images` as the measured call takes them (device tensors; a host array for `e2e host`),
    `host` the same pixels as numpy for host-side implementations, `out` the preallocated output (or None)."""

    images: Any
    host: Any
    out: Any


@dataclass
class CaseData:
    sizes: list[tuple[int, int]]
    bytes_moved: int
    slots: list[Slot]


def build(case: Case, profile: Profile, device: str, l2_bytes: int, seed: int) -> CaseData:
    """Random uint8 inputs for every slot of `case` (reproducible from `seed`), and the preallocated outputs;
    segmentation logits (`seg_logits`) for the seg cases."""
    import torch

    rng = np.random.default_rng(seed)
    sizes = image_sizes(case, profile, rng)
    moved = bytes_moved(case, profile, sizes)
    count = slot_count(moved, device, l2_bytes)
    generator = torch.Generator(device=device).manual_seed(seed)
    slots = []
    if case.kind == "seg":
        for _ in range(count):
            logits = seg_logits(case.batch, profile.seg_logits, torch_dtype(case.dtype), device, generator)
            slots.append(Slot(ModelOutput(logits), None, None))
        return CaseData(sizes, moved, slots)
    for _ in range(count):
        if case.layout == "ragged" or (case.kind == "qwen" and case.batch > 1):
            images = [torch.randint(0, 256, (h, w, CHANNELS), dtype=torch.uint8, device=device, generator=generator)
                      for h, w in sizes]
            host = [image.cpu().numpy() for image in images]
            if case.layout == "host":
                images = host  # a list of host images
        else:
            height, width = sizes[0]
            one_image = case.kind in ("e2e", "qwen")  # a single (H, W, C) image, not an (N, H, W, C) batch
            shape = (height, width, CHANNELS) if one_image else (case.batch, height, width, CHANNELS)
            images = torch.randint(0, 256, shape, dtype=torch.uint8, device=device, generator=generator)
            host = images.cpu().numpy()
            if case.layout == "host":
                images = host  # the end-to-end case starts from a host image
        out = None
        if case.kind in ("crop", "clip"):
            out = torch.empty(output_shape(case, profile), dtype=torch_dtype(case.dtype), device=device)
        slots.append(Slot(images, host, out))
    return CaseData(sizes, moved, slots)


@dataclass
class ModelOutput:
    """What a segmentation model returns, as far as `post_process_semantic_segmentation` reads it."""

    logits: Any


def seg_logits(batch: int, shape: tuple[int, int, int], dtype, device: str, generator):
    """Smooth `(batch, classes, height, width)` logits of `dtype`, generated on `device`: Gaussian noise (scale 3)
    on a grid 8 times coarser (at least 2x2), upsampled bilinearly in float32, plus a per-class bias (scale 2, so
    that some classes win more often): connected regions of a few classes, with boundaries where two classes are
    close, as a segmentation model's logits are."""
    import torch

    classes, height, width = shape
    coarse = torch.randn(batch, classes, max(2, height // 8), max(2, width // 8), device=device, generator=generator)
    bias = torch.randn(1, classes, 1, 1, device=device, generator=generator)
    smooth = torch.nn.functional.interpolate(3 * coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (smooth + 2 * bias).to(dtype).contiguous()
