"""One pass of Pillow's 8-bit resampling along one axis, for a ragged batch in one launch (docs/BEHAVIOUR.md section 7).

Import this module only after deciding on `TRITON_INTERPRET`.

A descriptor row of `DESC_FIELDS` int64 per image says which outputs to compute and where pixels live
(element units; "axis" is the resampled axis, "other" the one kept):

    SRC, S_OTHER, S_AXIS, SC   source element (a, o, c) = src[SRC + o*S_OTHER + a*S_AXIS + c*SC], in the
                               source's own (absolute) coordinates
    DST, D_OTHER, D_AXIS       destination element (j, i, c) = dst[DST + i*D_OTHER + j*D_AXIS + c] (uint8)
    N_OTHER, N_AXIS            computed outputs: i in [0, N_OTHER), j in [0, N_AXIS)
    OTHER0, AXIS0              their absolute coordinates: source position o = OTHER0 + i, output index AXIS0 + j
    COEF, OUT, KSIZE           the axis' coefficient table in `coef` (int32): first[OUT] at COEF, count[OUT] at
                               COEF + OUT, weights[OUT][KSIZE] at COEF + 2*OUT (`fused_imgproc.resample`)
    CH                         channels
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from .crop_normalize import INT32_MAX, INTERPRETED, launch_on, next_power_of_2

SRC, S_OTHER, S_AXIS, SC, DST, D_OTHER, D_AXIS, N_OTHER, N_AXIS, OTHER0, AXIS0, COEF, OUT, KSIZE, CH = range(15)
DESC_FIELDS = 15


@triton.jit
def _resample_kernel(src_ptr, dst_ptr, desc_ptr, coef_ptr, tiles_ptr, CP: tl.constexpr, TAPS: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Program `pid` computes BLOCK outputs (all channels) of image `tiles[pid, 0]`, from output
    `tiles[pid, 1] * BLOCK` on (a host-built map: exactly as many programs as tiles, however ragged the batch):

        dst(j, i, c) = clip((2**21 + sum_{k < count[J]} w[J, k] * src(first[J] + k, OTHER0 + i, c)) >> 22, 0, 255)

    with `J = AXIS0 + j`, int32 accumulation and an arithmetic shift, exactly Pillow's `ImagingResample*_8bpc`
    (TAPS taps per step, summed in any order: int32 addition wraps, so the order cannot change the result).
    Bytes: each output reads `count[J]` source pixels (from L1/L2 after the first touch: compulsory traffic is
    the source rectangle once) plus its coefficients, and writes 1 byte per channel.
    """
    pid = tl.program_id(0)
    n = tl.load(tiles_ptr + 2 * pid)
    tile = tl.load(tiles_ptr + 2 * pid + 1)
    d = desc_ptr + n * 15  # DESC_FIELDS
    src_off = tl.load(d + 0)
    s_other = tl.load(d + 1)
    s_axis = tl.load(d + 2)
    sc = tl.load(d + 3)
    dst_off = tl.load(d + 4)
    d_other = tl.load(d + 5)
    d_axis = tl.load(d + 6)
    n_other = tl.load(d + 7)
    n_axis = tl.load(d + 8)
    other0 = tl.load(d + 9)
    axis0 = tl.load(d + 10)
    coef = tl.load(d + 11)
    out_size = tl.load(d + 12)
    ksize = tl.load(d + 13)
    channels = tl.load(d + 14)

    p = tile * BLOCK + tl.arange(0, BLOCK)
    live = p < n_other * n_axis
    i = p // n_axis
    j = p - i * n_axis
    jj = axis0 + j
    first = tl.load(coef_ptr + coef + jj, mask=live, other=0)
    count = tl.load(coef_ptr + coef + out_size + jj, mask=live, other=0)
    c = tl.arange(0, CP)
    c_live = c < channels
    row = src_off + (other0 + i) * s_other
    acc = tl.full([BLOCK, CP], 1 << 21, tl.int32)
    weights = coef_ptr + coef + 2 * out_size + jj * ksize
    for k0 in range(0, ksize, TAPS):
        k = k0 + tl.arange(0, TAPS)
        tap = live[:, None] & (k[None, :] < count[:, None])
        w = tl.load(weights[:, None] + k[None, :], mask=tap, other=0)
        at = row[:, None] + (first[:, None] + k[None, :]) * s_axis
        x = tl.load(src_ptr + at[:, :, None] + c[None, None, :] * sc, mask=tap[:, :, None] & c_live[None, None, :],
                    other=0)
        acc += tl.sum(x.to(tl.int32) * w[:, :, None], axis=1)
    value = tl.minimum(tl.maximum(acc >> 22, 0), 255).to(tl.uint8)
    out = dst_off + i * d_other + j * d_axis
    tl.store(dst_ptr + out[:, None] + c[None, :], value, mask=live[:, None] & c_live[None, :])


# Outputs per program: one setting under the interpreter (few, wide steps: its cost is per operation), one on a GPU.
BLOCK, TAPS, NUM_WARPS = (256, 64, 1) if INTERPRETED else (128, 4, 4)


def tile_map(desc_rows) -> np.ndarray:
    """(T, 2) int32 `(image, tile)` pairs covering every image's `N_OTHER * N_AXIS` outputs in BLOCK tiles."""
    outputs = np.asarray(desc_rows)[:, N_OTHER] * np.asarray(desc_rows)[:, N_AXIS]
    tiles = -(-outputs // BLOCK)
    image = np.repeat(np.arange(len(tiles)), tiles)
    first = np.repeat(np.cumsum(tiles) - tiles, tiles)
    return np.stack([image, np.arange(len(image)) - first], axis=1).astype(np.int32).reshape(-1, 2)


def resample(src: torch.Tensor, dst: torch.Tensor, desc: torch.Tensor, coef: torch.Tensor, tiles: torch.Tensor, *,
             max_channels: int) -> None:
    """Launches one pass: one program per row of `tiles` (from `tile_map(desc)`)."""
    if desc.dtype != torch.int64 or desc.dim() != 2 or desc.shape[1] != DESC_FIELDS or not desc.is_contiguous():
        raise ValueError(f"desc must be a contiguous (N, {DESC_FIELDS}) int64 tensor, got {tuple(desc.shape)}")
    if src.dtype != torch.uint8 or dst.dtype != torch.uint8 or coef.dtype != torch.int32:
        raise TypeError(f"resample reads and writes uint8 with int32 coefficients, got {src.dtype}, {dst.dtype}, "
                        f"{coef.dtype}")
    if tiles.dtype != torch.int32 or tiles.dim() != 2 or tiles.shape[1] != 2 or not tiles.is_contiguous():
        raise ValueError(f"tiles must be a contiguous (T, 2) int32 tensor, got {tuple(tiles.shape)}")
    ResampleLaunch(tiles.shape[0], max_channels)(src, dst, desc, coef, tiles)


class ResampleLaunch:
    """One pass's launch with its configuration (program count, channel block) checked and computed once."""

    def __init__(self, n_tiles: int, max_channels: int):
        if not 1 <= max_channels <= 4:
            raise ValueError(f"max_channels must be 1..4, got {max_channels}")
        if n_tiles > INT32_MAX:
            raise ValueError(f"{n_tiles} tiles: more than 2**31 programs")
        self.empty = n_tiles == 0
        self.kernel = _resample_kernel[(n_tiles,)]
        self.constants = {"CP": next_power_of_2(max_channels), "TAPS": TAPS, "BLOCK": BLOCK, "num_warps": NUM_WARPS}

    def __call__(self, src, dst, desc, coef, tiles) -> None:
        if self.empty:
            return
        launch_on(dst, self.kernel, src, dst, desc, coef, tiles, **self.constants)
