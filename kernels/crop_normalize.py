"""The fused crop/pad + uint8-to-float + rescale + normalize + layout kernel, for a ragged batch in one launch.

Import this module only after deciding on `TRITON_INTERPRET` (Triton reads it when `@triton.jit` runs).

Per-image geometry comes from a descriptor table, one row of `DESC_FIELDS` int64 per image, built by
`fused_imgproc.backends.triton` from the plan (`ImageGeometry.source_window`). Field meanings (element units):

    SRC      offset in `src` of the source pixel that output pixel (OY0, OX0) reads, channel 0
    SY, SX, SC  source strides of a row, a column and a channel (any sign-free strides: HWC, CHW, views;
             SC = 0 repeats one channel)
    OUT      offset in `out` of the image's first output element
    OH, OW   output height and width
    OY0, OY1, OX0, OX1  the output rectangle that holds image data; every other output pixel is padding
    CH       channels of the image (<= MAX_C)
    TAB      offset in `table` of the image's (CH, 256) value table (uint8 sources)
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import triton
import triton.language as tl

SRC, SY, SX, SC, OUT, OH, OW, OY0, OY1, OX0, OX1, CH, TAB = range(13)
DESC_FIELDS = 13
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"
INT32_MAX = 2**31 - 1


class Layout(NamedTuple):
    """Where output value (c, y, x) of an image goes, from the image's OUT offset (see `_crop_normalize_kernel`):
    (C, H, W) or, with `channels_last`, (H, W, C); with `patch > 0`, Qwen2-VL's patch rows (`fused_imgproc.plan.
    PatchLayout`: `patch` the patch side, `merge` the merge size, `temporal` the copies over time)."""

    channels_last: bool = False
    patch: int = 0
    merge: int = 1
    temporal: int = 1


def next_power_of_2(n: int) -> int:
    """`triton.next_power_of_2` for n >= 1 in plain Python: Triton 3.x routes its own through the constexpr machinery,
    which costs microseconds of host time per launch."""
    return 1 << (n - 1).bit_length()


def launch_on(tensor: torch.Tensor, kernel, *args, **kwargs) -> None:
    """`kernel(*args, **kwargs)` with `tensor`'s GPU current, switching only when another one is (a context manager
    per launch would cost host time for nothing)."""
    if tensor.is_cuda and tensor.device.index != torch.cuda.current_device():
        with torch.cuda.device(tensor.device):
            kernel(*args, **kwargs)
    else:
        kernel(*args, **kwargs)


@triton.jit
def _crop_normalize_kernel(
    src_ptr,
    desc_ptr,
    table_ptr,
    params_ptr,
    out_ptr,
    tiles_per_image,
    MAX_C: tl.constexpr,
    FLOAT_SRC: tl.constexpr,
    DO_RESCALE: tl.constexpr,
    DO_NORMALIZE: tl.constexpr,
    ROUND_BF16: tl.constexpr,
    CHANNELS_LAST: tl.constexpr,
    PATCH: tl.constexpr,
    MERGE: tl.constexpr,
    TEMPORAL: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """One program writes BLOCK consecutive output pixels (all channels) of one image.

    Index mapping: program `pid` handles image `n = pid // tiles_per_image`, pixels
    `p = (pid % tiles_per_image) * BLOCK + [0, BLOCK)` of that image's OH x OW output, `oy = p // OW`,
    `ox = p % OW`. For channel `c`:

        out[OUT + c*OH*OW + p]      (NCHW)   or   out[OUT + p*CH + c]   (NHWC)
          = f_c(src[SRC + (oy - OY0)*SY + (ox - OX0)*SX + c*SC])   if OY0 <= oy < OY1 and OX0 <= ox < OX1
          = f_c(0)                                                otherwise (zero padding in the input domain)

    With PATCH > 0 (patch rows; P = PATCH, m = MERGE, T = TEMPORAL), the same value goes instead to the T elements
    `out[OUT + row*CH*T*P*P + ((c*T + t)*P + py)*P + px]`, t < T, where `oy = (by*m + my)*P + py`,
    `ox = (bx*m + mx)*P + px` and `row = ((by*(OW/(P*m)) + bx)*m + my)*m + mx`.

    with `f_c(x) = table[TAB + c*256 + x]` for uint8 sources (the plan's rescale+normalize table, already in the
    output dtype) and, for float32 sources, `f_c(x) = div_rn(float32(float64(x) * scale) - mean_c, std_c)`
    (each step only when enabled; `params = [scale, mean_0..MAX_C-1, std_0..MAX_C-1]` in float64), the
    reference's arithmetic with correctly rounded division.

    Bytes: reads each in-window source element once (1 B uint8 / 4 B float32), each output element written
    once (2 or 4 B; patch rows: T elements per value), plus the descriptor row and a table that stays in L1; padding
    reads nothing.
    """
    pid = tl.program_id(0)
    n = pid // tiles_per_image
    tile = pid - n * tiles_per_image
    desc = desc_ptr + n * 13  # DESC_FIELDS
    src_off = tl.load(desc + 0)
    sy = tl.load(desc + 1)
    sx = tl.load(desc + 2)
    sc = tl.load(desc + 3)
    out_off = tl.load(desc + 4)
    oh = tl.load(desc + 5)
    ow = tl.load(desc + 6)
    oy0 = tl.load(desc + 7)
    oy1 = tl.load(desc + 8)
    ox0 = tl.load(desc + 9)
    ox1 = tl.load(desc + 10)
    channels = tl.load(desc + 11)
    tab = tl.load(desc + 12)
    if not INDEX_64:  # every offset of this launch fits in int32 (checked by the launcher)
        src_off, sy, sx, sc = src_off.to(tl.int32), sy.to(tl.int32), sx.to(tl.int32), sc.to(tl.int32)
        out_off, oh, ow = out_off.to(tl.int32), oh.to(tl.int32), ow.to(tl.int32)
        oy0, oy1, ox0, ox1 = oy0.to(tl.int32), oy1.to(tl.int32), ox0.to(tl.int32), ox1.to(tl.int32)
        channels, tab = channels.to(tl.int32), tab.to(tl.int32)
    npix = oh * ow
    p = tile * BLOCK + tl.arange(0, BLOCK)
    in_image = p < npix
    oy = p // ow
    ox = p - oy * ow
    inside = in_image & (oy >= oy0) & (oy < oy1) & (ox >= ox0) & (ox < ox1)
    src = src_off + (oy - oy0) * sy + (ox - ox0) * sx
    if PATCH > 0:
        gy = oy // PATCH
        gx = ox // PATCH
        row = ((gy // MERGE) * (ow // (PATCH * MERGE)) + gx // MERGE) * (MERGE * MERGE) + (gy % MERGE) * MERGE
        patch_base = out_off + (row + gx % MERGE) * (channels * TEMPORAL * PATCH * PATCH)
        patch_base += (oy - gy * PATCH) * PATCH + (ox - gx * PATCH)
    if FLOAT_SRC and DO_RESCALE:
        scale = tl.load(params_ptr)
    for c in tl.static_range(MAX_C):
        live = (p * 0 + c) < channels  # a block, not a scalar: the interpreter rejects scalar-and-block masks
        x = tl.load(src_ptr + src + c * sc, mask=inside & live, other=0)
        if FLOAT_SRC:
            y = x.to(tl.float32)
            if DO_RESCALE:
                y = (y.to(tl.float64) * scale).to(tl.float32)
            if DO_NORMALIZE:
                mean = tl.load(params_ptr + 1 + c).to(tl.float32)
                std = tl.load(params_ptr + 1 + MAX_C + c).to(tl.float32)
                y = tl.math.div_rn(y - mean, std)
            if ROUND_BF16:
                # fp32 -> bf16, round to nearest even on the bits: exact on the GPU and in the interpreter alike.
                bits = y.to(tl.uint32, bitcast=True)
                rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
                rounded = tl.where((bits & 0x7FFFFFFF) > 0x7F800000, (bits >> 16) | 0x40, rounded)
                y = rounded.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            y = tl.load(table_ptr + tab + c * 256 + x.to(tl.int32), mask=in_image & live)
        if PATCH > 0:
            for t in tl.static_range(TEMPORAL):
                dst = patch_base + (c * TEMPORAL + t) * (PATCH * PATCH)
                tl.store(out_ptr + dst, y.to(out_ptr.dtype.element_ty), mask=in_image & live)
        else:
            if CHANNELS_LAST:
                dst = out_off + p * channels + c
            else:
                dst = out_off + c * npix + p
            tl.store(out_ptr + dst, y.to(out_ptr.dtype.element_ty), mask=in_image & live)


def _block_size(max_pixels: int) -> tuple[int, int]:
    """(BLOCK, num_warps): 1024 pixels and 4 warps on a GPU; under the interpreter, whose cost is per program,
    one program per image of up to 4096 pixels."""
    if INTERPRETED:
        return min(4096, next_power_of_2(max(max_pixels, 16))), 1
    return 1024, 4


def crop_normalize(
    src: torch.Tensor,
    desc: torch.Tensor,
    table: torch.Tensor,
    params: torch.Tensor,
    out: torch.Tensor,
    *,
    max_pixels: int,
    max_channels: int,
    do_rescale: bool,
    do_normalize: bool,
    layout,
    index_64: bool,
) -> None:
    """Launches the kernel once over every image of `desc` (see the module docstring for the fields).

    `src` is uint8 (table path) or float32 (arithmetic path); `out` a contiguous float32/float16/bfloat16
    (or float64, or uint8 for an identity table) buffer; `max_pixels` the largest `OH * OW` in `desc`; `layout` a
    `Layout` or its fields as a sequence (what the registered op passes).
    The caller (the backend) has validated every offset against the buffers; this checks types and devices.
    """
    if desc.dtype != torch.int64 or desc.dim() != 2 or desc.shape[1] != DESC_FIELDS or not desc.is_contiguous():
        raise ValueError(f"desc must be a contiguous (N, {DESC_FIELDS}) int64 tensor, got {tuple(desc.shape)}")
    devices = {t.device for t in (src, desc, table, params, out)}
    if len(devices) != 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    launch = CropNormalizeLaunch(desc.shape[0], max_pixels, max_channels, do_rescale, do_normalize, layout,
                                 src.dtype, out.dtype)
    launch(src, desc, table, params, out, index_64)


class CropNormalizeLaunch:
    """A launch whose configuration (everything but the tensors and the index width) is checked and computed once:
    the Triton backend keeps one per launch group of a cached call, so that a call only launches."""

    def __init__(self, n: int, max_pixels: int, max_channels: int, do_rescale: bool, do_normalize: bool,
                 layout, src_dtype: torch.dtype, out_dtype: torch.dtype):
        layout = Layout(*layout)  # a Layout, or its fields as the registered op passes them (a list of ints)
        if layout.patch < 0 or layout.merge < 1 or layout.temporal < 1:
            raise ValueError(f"bad layout {layout}: patch >= 0, merge >= 1 and temporal >= 1")
        if src_dtype not in (torch.uint8, torch.float32):
            raise TypeError(f"src must be uint8 or float32, got {src_dtype}")
        if not 1 <= max_channels <= 4:
            raise ValueError(f"max_channels must be 1..4, got {max_channels}")
        block, num_warps = _block_size(max_pixels)
        self.tiles = -(-max_pixels // block)
        self.empty = n == 0 or max_pixels == 0
        if n * self.tiles > INT32_MAX:
            raise ValueError(f"{n} images of up to {max_pixels} pixels need more than 2**31 programs")
        self.kernel = _crop_normalize_kernel[(n * self.tiles,)]
        self.constants = {
            "MAX_C": max_channels,
            "FLOAT_SRC": src_dtype == torch.float32,
            "DO_RESCALE": do_rescale,
            "DO_NORMALIZE": do_normalize,
            "ROUND_BF16": out_dtype == torch.bfloat16 and src_dtype == torch.float32,
            "CHANNELS_LAST": bool(layout.channels_last),
            "PATCH": int(layout.patch),
            "MERGE": int(layout.merge),
            "TEMPORAL": int(layout.temporal),
            "BLOCK": block,
            "num_warps": num_warps,
        }

    def __call__(self, src, desc, table, params, out, index_64: bool) -> None:
        if self.empty:
            return
        launch_on(out, self.kernel, src, desc, table, params, out, self.tiles, INDEX_64=index_64, **self.constants)
