"""Semantic-segmentation post-processing in one launch: bilinear upsampling of the logits fused with the argmax
over classes, for a batch with one target size per image, never writing the upsampled logits.

Import this module only after deciding on `TRITON_INTERPRET` (Triton reads it when `@triton.jit` runs).

What it computes. transformers' `post_process_semantic_segmentation(outputs, target_sizes)` is, per image i,

    F.interpolate(logits[i][None], size=(H_i, W_i), mode="bilinear", align_corners=False)[0].argmax(dim=0)

and `bilinear_argmax` returns labels EQUAL to that on the CPU: the same interpolated values bit for bit, rounded to
the logits' dtype, then torch's argmax (the first maximum wins; NaN counts as the largest value, the first NaN
wins). PyTorch's CPU kernel (aten/src/ATen/native/cpu/UpSampleKernel.cpp) has two code paths with different
arithmetic, and its x86-64 AVX2/AVX512 builds are compiled with GCC's default FMA contraction, so which expression
torch evaluates was determined empirically (bit-exact over thousands of size pairs, channel counts, layouts and
value scales, torch 2.13 on AVX2 and under ATEN_CPU_CAPABILITY=default). float64 logits are refused (TypeError:
torch's float64 arithmetic is not reproduced). In float32, with `fma(a, b, c)` rounding once and every other
operation rounding to float32:

Per axis (input size `n` -> output size `m`, output coordinate `o`; both paths):

    if n == m:  i0 = i1 = o, l0 = 1, l1 = 0             (torch's special case: also 0 * x1, so inf -> NaN)
    else:       scale = div_rn(float(n), float(m))        (correctly rounded division)
                src = fma(scale, o + 0.5, -0.5)           (no FMA: scale * (o + 0.5) - 0.5, rounding twice)
                src = 0 if src < 0 else src
                i0 = min(floor(src), n - 1);  i1 = i0 + (1 if i0 < n - 1 else 0)
                l1 = min(max(src - i0, 0), 1);  l0 = 1 - l1

GENERIC path (`upsample_non_separable`): the weights are stored in the logits' dtype (float16/bfloat16: `l1` is
rounded to the dtype first, then `l0 = round(1 - l1)`), the value is computed in float32 and rounded once:

    t0 = fma(x00, lw0, x01 * lw1),  t1 = fma(x10, lw0, x11 * lw1),  v = round(fma(t0, lh0, t1 * lh1))
    (no FMA: t0 = x00*lw0 + x01*lw1, ..., v = round(t0*lh0 + t1*lh1))

CHANNELS-LAST path (`upsample_linear_channels_last`): float32 weights `w_ab = lh_a * lw_b`, and a chain
`acc = x_A * w_A; acc = fma(x_B, w_B, acc); acc = fma(x_C, w_C, acc); v = round(fma(x_D, w_D, acc))` whose order
(A, B, C, D) depends on the class index c (torch vectorises over channels: the first `C - C % L` classes take the
vector code, the rest the scalar tail; L = `Vectorized<float>::size()` = 8 on AVX2 and DEFAULT, 16 on AVX512, twice
that for 16-bit dtypes) and on the dtype:

    vector classes, float32:            (10, 11, 01, 00)
    vector classes, float16/bfloat16:   (11, 10, 01, 00)
    tail classes, float32/bfloat16:     (01, 00, 10, 11)
    tail classes, float16:              (00, 01, 10, 11)
    (no FMA: the same chains with `acc = acc + x * w`; the sums are then p00 + (p01 + (p10 + p11)) for vector classes
    and ((p00 + p01) + p10) + p11 for tail classes)

torch takes the channels-last path for image i when (`logits[i][None]` is channels-last contiguous and C > 3) or
`H_i + W_i <= 128` or (`torch.get_num_threads() == 1` and C == 3), the generic path otherwise: `TorchArithmetic`
describes the build (FMA or not, vector width, one thread) and `bilinear_argmax` follows the same rule per image.
Verified: x86-64 AVX2 and DEFAULT builds (the kernel's tests pass under OMP_NUM_THREADS=1 and
ATEN_CPU_CAPABILITY=default too); AVX512 is assumed to contract like AVX2 with twice the lanes (unverified);
other CPUs (aarch64, POWER, s390x) are given the AVX2 description and may differ.

CUDA torch (UpSampleBilinear2d.cu) is a third arithmetic, `TorchArithmetic.CUDA`, the default for CUDA logits:
one 2-level formula for every size and layout with float32 weights (never rounded to the logits' dtype), the
general per-axis formula even for equal sizes (l1 = 0, i1 the next row or column), and a plain copy when both sizes
are equal. Its FMA placement is nvcc's choice; the kernel assumes the generic CPU path's (LLVM fuses the first
product of each sum: `t0 = fma(x00, lw0, x01*lw1)`, ..., `v = fma(t0, lh0, t1*lh1)`, `src = fma(scale, o + 0.5,
-0.5)`), which has not been checked on a GPU yet: where two classes are within an ulp at a pixel a different
placement would change the label, and `make gpu-check` counts such pixels against CUDA torch. Any arithmetic runs
on any device (`arithmetic=`): fma.rn.f32 and div.rn.f32 exactly where written, no other contraction (launched
with `enable_fp_fusion=False`). `reference_bilinear` (pure numpy) evaluates every variant, e.g. to measure how
often FMA contraction alone changes a label.

Launch: one program per (image, BLOCK output pixels): program `pid` handles image `n = pid // tiles_per_image`,
pixels `p = (pid % tiles_per_image) * BLOCK + [0, BLOCK)` of its H x W output (`oy = p // W`, `ox = p % W`;
programs past the image's last pixel return at once), and loops over the classes at run time keeping the running
(max, argmax). It reads `logits[n, c, y, x]` at `n*SB + c*SC + y*SH + x*SW` (any strides) and writes the int64
label of pixel p at `out[OUT + p]`. A descriptor row of `DESC_FIELDS` int64 per image: OUT (offset of the image's
first label in the flat output), H, W (target size), MODE (0 generic, 1 channels-last).
Bytes: 4 gathered logits per class per output pixel (from L1/L2: compulsory traffic is the logits once) and 8 B
written per output pixel; nothing else.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import numpy as np
import torch
import triton
import triton.language as tl

from .crop_normalize import INT32_MAX, INTERPRETED, launch_on, next_power_of_2

OUT, H, W, MODE = range(4)
DESC_FIELDS = 4
GENERIC, CHANNELS_LAST = 0, 1
MAX_SIDE = 1 << 24  # sizes convert to float32 exactly below this
DTYPE_CODES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
# Chain orders of the channels-last path (see the module docstring), corners numbered 00=0, 01=1, 10=2, 11=3.
ORDERS = {"vec32": (2, 3, 1, 0), "vec16": (3, 2, 1, 0), "tail_ab": (1, 0, 2, 3), "tail_ba": (0, 1, 2, 3)}
_ORDER_CODE = {name: i for i, name in enumerate(ORDERS)}


class TorchArithmetic(NamedTuple):
    """Which PyTorch kernel's arithmetic to reproduce (see the module docstring).

    CPU (`cuda=False`, `TorchArithmetic.current()` describes this process's torch): `fma` whether its kernels were
    compiled with FMA contraction (x86-64 AVX2/AVX512 builds; not DEFAULT), `lanes` = `Vectorized<float>::size()`
    (16-bit dtypes: twice that), `single_thread` whether `at::get_num_threads() == 1` (then C == 3 takes the
    channels-last path).

    CUDA (`cuda=True`, `TorchArithmetic.CUDA`): UpSampleBilinear2d.cu's one 2-level formula with float32 weights
    (never rounded to the logits' dtype, no channels-last path), a plain copy when both sizes are equal, and
    nvcc's contraction assumed to be the FMA pattern of the generic CPU path (`fma=True`). Unverified on a GPU so
    far: `make gpu-check` counts the labels that differ from CUDA torch's."""

    fma: bool = True
    lanes: int = 8
    single_thread: bool = False
    cuda: bool = False

    @classmethod
    def current(cls) -> TorchArithmetic:
        capability = torch.backends.cpu.get_cpu_capability()
        return cls(fma=capability != "DEFAULT", lanes=16 if capability.startswith("AVX512") else 8,
                   single_thread=torch.get_num_threads() == 1)

    def channels_last_path(self, channels: int, size: tuple[int, int], channels_last_input: bool) -> bool:
        """Whether torch's CPU kernel takes the channels-last path for one image (`_use_channels_last_kernel_2d`);
        never for CUDA."""
        return not self.cuda and ((channels_last_input and channels > 3) or size[0] + size[1] <= 128
                or (self.single_thread and channels == 3))

    def vector_classes(self, channels: int, dtype_name: str) -> int:
        """The classes that torch's channels-last path computes with vector code: `C - C % lanes`."""
        lanes = self.lanes if dtype_name == "float32" else 2 * self.lanes
        return channels - channels % lanes


TorchArithmetic.CUDA = TorchArithmetic(cuda=True)


def _orders(dtype_name: str) -> tuple[str, str]:
    return ("vec32" if dtype_name == "float32" else "vec16", "tail_ba" if dtype_name == "float16" else "tail_ab")


@triton.jit
def _round_to(v, DTYPE: tl.constexpr):
    """float32 `v` rounded to the logits' dtype (0 float32, 1 float16, 2 bfloat16) and back, to nearest even."""
    if DTYPE == 1:
        v = v.to(tl.float16).to(tl.float32)
    elif DTYPE == 2:
        # fp32 -> bf16 on the bits: exact on the GPU and in the interpreter alike (NaN stays NaN).
        bits = v.to(tl.uint32, bitcast=True)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        rounded = tl.where((bits & 0x7FFFFFFF) > 0x7F800000, bits | 0x400000, rounded)
        v = (rounded & 0xFFFF0000).to(tl.float32, bitcast=True)
    return v


@triton.jit
def _axis(o, n_in, n_out, FMA: tl.constexpr, CUDA: tl.constexpr):
    """(i0, i1, l0, l1) of output coordinates `o` (a block) along one axis, torch's arithmetic (CPU: equal sizes
    give i1 = i0 = o; CUDA: the general formula, which gives l1 = 0 and the next row or column as i1)."""
    n_in = o * 0 + n_in  # blocks: a size of 1 reaches the compiler as a constexpr (Triton's specialization)
    n_out = o * 0 + n_out
    scale = tl.math.div_rn(n_in.to(tl.float32), n_out.to(tl.float32))
    d = o.to(tl.float32) + 0.5
    if FMA:
        src = tl.fma(scale, d, -0.5)
    else:
        src = scale * d - 0.5
    src = tl.where(src < 0.0, 0.0, src)
    i0 = tl.minimum(src.to(tl.int32), n_in - 1)
    l1 = tl.minimum(tl.maximum(src - i0.to(tl.float32), 0.0), 1.0)
    i1 = i0 + tl.where(i0 < n_in - 1, 1, 0)
    if not CUDA:
        same = n_in == n_out
        i0 = tl.where(same, o, i0)
        i1 = tl.where(same, o, i1)
        l1 = tl.where(same, 0.0, l1)
    return i0, i1, 1.0 - l1, l1


@triton.jit
def _mul_add(x, w, acc, FMA: tl.constexpr):
    if FMA:
        return tl.fma(x, w, acc)
    else:
        return acc + x * w


@triton.jit
def _chain(x00, x01, x10, x11, w00, w01, w10, w11, ORDER: tl.constexpr, FMA: tl.constexpr):
    """The channels-last path's sum of the four weighted corners, in the chain order ORDER (see `ORDERS`)."""
    if ORDER == 0:  # vec32: (10, 11, 01, 00)
        acc = _mul_add(x00, w00, _mul_add(x01, w01, _mul_add(x11, w11, x10 * w10, FMA), FMA), FMA)
    elif ORDER == 1:  # vec16: (11, 10, 01, 00)
        acc = _mul_add(x00, w00, _mul_add(x01, w01, _mul_add(x10, w10, x11 * w11, FMA), FMA), FMA)
    elif ORDER == 2:  # tail_ab: (01, 00, 10, 11)
        acc = _mul_add(x11, w11, _mul_add(x10, w10, _mul_add(x00, w00, x01 * w01, FMA), FMA), FMA)
    else:  # tail_ba: (00, 01, 10, 11)
        acc = _mul_add(x11, w11, _mul_add(x10, w10, _mul_add(x01, w01, x00 * w00, FMA), FMA), FMA)
    return acc


@triton.jit
def _wide(i, INDEX_64: tl.constexpr):
    if INDEX_64:
        return i.to(tl.int64)
    else:
        return i


@triton.jit
def _corners(plane, o00, o01, o10, o11, live):
    """One class's four source corners of every pixel, in float32."""
    x00 = tl.load(plane + o00, mask=live, other=0.0).to(tl.float32)
    x01 = tl.load(plane + o01, mask=live, other=0.0).to(tl.float32)
    x10 = tl.load(plane + o10, mask=live, other=0.0).to(tl.float32)
    x11 = tl.load(plane + o11, mask=live, other=0.0).to(tl.float32)
    return x00, x01, x10, x11


@triton.jit
def _take(best, label, v, c):
    """torch.argmax's running step: a larger value, or the first NaN, replaces the best so far."""
    take = (v > best) | ((v != v) & (best == best))  # noqa: PLR0124 (x != x: x is NaN)
    return tl.where(take, v, best), tl.where(take, c, label)


@triton.jit
def _bilinear_argmax_kernel(
    logits_ptr,
    desc_ptr,
    out_ptr,
    channels,
    in_h,
    in_w,
    sb,
    sc,
    sh,
    sw,
    vector_classes,
    tiles_per_image,
    DTYPE: tl.constexpr,
    FMA: tl.constexpr,
    CUDA: tl.constexpr,
    VEC_ORDER: tl.constexpr,
    TAIL_ORDER: tl.constexpr,
    INDEX_64: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """Labels of BLOCK output pixels of one image (index mapping, arithmetic and bytes: the module docstring)."""
    pid = tl.program_id(0)
    n = pid // tiles_per_image
    tile = pid - n * tiles_per_image
    desc = desc_ptr + n * 4  # DESC_FIELDS
    out_off = tl.load(desc + 0)
    out_h = tl.load(desc + 1).to(tl.int32)
    out_w = tl.load(desc + 2).to(tl.int32)
    mode = tl.load(desc + 3).to(tl.int32)
    npix = out_h * out_w
    if tile * BLOCK >= npix:
        return
    p = tile * BLOCK + tl.arange(0, BLOCK)
    live = p < npix
    oy = p // out_w
    ox = p - oy * out_w
    hy0, hy1, lh0, lh1 = _axis(oy, in_h, out_h, FMA, CUDA)
    wx0, wx1, lw0, lw1 = _axis(ox, in_w, out_w, FMA, CUDA)
    copy = (in_h == out_h) & (in_w == out_w)  # CUDA torch copies the logits when both sizes are equal
    if INDEX_64:
        base = n.to(tl.int64) * sb
        r0, r1 = hy0.to(tl.int64) * sh, hy1.to(tl.int64) * sh
        c0, c1 = wx0.to(tl.int64) * sw, wx1.to(tl.int64) * sw
        dst = out_off + p.to(tl.int64)
    else:  # every offset of this launch fits in int32 (checked by the launcher)
        base = n * sb
        r0, r1 = hy0 * sh, hy1 * sh
        c0, c1 = wx0 * sw, wx1 * sw
        dst = out_off.to(tl.int32) + p
    o00, o01, o10, o11 = r0 + c0, r0 + c1, r1 + c0, r1 + c1
    best = tl.full([BLOCK], float("-inf"), tl.float32)
    label = tl.zeros([BLOCK], tl.int32)
    if mode == 0:  # GENERIC: 2-level, weights in the logits' dtype (CPU) or float32 (CUDA)
        if not CUDA:
            lh1 = _round_to(lh1, DTYPE)
            lh0 = _round_to(1.0 - lh1, DTYPE)
            lw1 = _round_to(lw1, DTYPE)
            lw0 = _round_to(1.0 - lw1, DTYPE)
        for c in range(channels):
            plane = logits_ptr + (base + _wide(c, INDEX_64) * sc)
            x00, x01, x10, x11 = _corners(plane, o00, o01, o10, o11, live)
            t0 = _mul_add(x00, lw0, x01 * lw1, FMA)
            t1 = _mul_add(x10, lw0, x11 * lw1, FMA)
            v = _round_to(_mul_add(t0, lh0, t1 * lh1, FMA), DTYPE)
            if CUDA:
                v = tl.where(copy, x00, v)
            best, label = _take(best, label, v, c)
    else:  # CHANNELS_LAST: float32 corner weights, the chain order of torch's vector code, then of its tail
        w00, w01, w10, w11 = lh0 * lw0, lh0 * lw1, lh1 * lw0, lh1 * lw1
        for c in range(vector_classes):
            plane = logits_ptr + (base + _wide(c, INDEX_64) * sc)
            x00, x01, x10, x11 = _corners(plane, o00, o01, o10, o11, live)
            v = _round_to(_chain(x00, x01, x10, x11, w00, w01, w10, w11, VEC_ORDER, FMA), DTYPE)
            best, label = _take(best, label, v, c)
        for c in range(vector_classes, channels):
            plane = logits_ptr + (base + _wide(c, INDEX_64) * sc)
            x00, x01, x10, x11 = _corners(plane, o00, o01, o10, o11, live)
            v = _round_to(_chain(x00, x01, x10, x11, w00, w01, w10, w11, TAIL_ORDER, FMA), DTYPE)
            best, label = _take(best, label, v, c)
    tl.store(out_ptr + dst, label.to(tl.int64), mask=live)


def _block_size(max_pixels: int) -> tuple[int, int]:
    """(BLOCK, num_warps): 256 pixels and 4 warps on a GPU (each pixel loops over every class); under the
    interpreter, whose cost is per program and operation, one program per image of up to 4096 pixels."""
    if INTERPRETED:
        return min(4096, next_power_of_2(max(max_pixels, 16))), 1
    return 256, 4


def _target_sizes(sizes, batch: int) -> list[tuple[int, int]]:
    if isinstance(sizes, torch.Tensor):
        if sizes.dim() != 2 or sizes.shape[1] != 2:
            raise ValueError(f"target sizes as a tensor must be (batch, 2), got shape {tuple(sizes.shape)}")
        if sizes.is_floating_point() or sizes.is_complex() or sizes.dtype == torch.bool:
            raise TypeError(f"target sizes must be integers, got a {sizes.dtype} tensor")
        sizes = sizes.tolist()
    elif isinstance(sizes, np.ndarray):
        sizes = sizes.tolist()
    try:
        count = len(sizes)
    except TypeError:
        raise TypeError(
            f"target sizes must be a sequence of (height, width) pairs, got {type(sizes).__name__}"
        ) from None
    if count != batch:
        raise ValueError(f"Make sure that you pass in as many target sizes as the batch dimension of the logits: got "
                         f"{count} target sizes for {batch} images")
    result = []
    for i, size in enumerate(sizes):
        if isinstance(size, (str, bytes)) or not hasattr(size, "__len__") or len(size) != 2:
            raise ValueError(f"target size {i} must be a (height, width) pair, got {size!r}")
        pair = []
        for side in size:
            if isinstance(side, bool) or (isinstance(side, torch.Tensor) and side.is_floating_point()):
                raise TypeError(f"target size {i} must be two integers, got {size!r}")
            try:
                pair.append(operator.index(side))
            except TypeError:
                raise TypeError(f"target size {i} must be two integers, got {size!r}") from None
        if not (0 < pair[0] < MAX_SIDE and 0 < pair[1] < MAX_SIDE):
            raise ValueError(f"target size {i} must be two positive integers below 2**24, got {tuple(pair)}")
        result.append((pair[0], pair[1]))
    return result


def bilinear_argmax(logits: torch.Tensor, sizes, *, arithmetic: TorchArithmetic | None = None,
                    upload=None) -> list[torch.Tensor]:
    """Per image i, `F.interpolate(logits[i][None], size=sizes[i], mode="bilinear", align_corners=False)[0]
    .argmax(dim=0)` as PyTorch on the logits' device computes it (module docstring), in one launch for the batch.

    `logits`: (B, C, h, w) float32/float16/bfloat16 with any strides, on a CUDA device (or the CPU under
    `TRITON_INTERPRET=1`); float64 is refused (TypeError). `sizes`: B (height, width) pairs of positive ints, or a
    (B, 2) integer tensor. `arithmetic`: the torch kernel to match: `TorchArithmetic.CUDA` for CUDA logits,
    `TorchArithmetic.current()` (this process's CPU torch) for CPU ones, by default.
    `upload(desc, device)`: the device copy of the (B, DESC_FIELDS) int64 numpy descriptor table (by default a plain
    copy; fused_imgproc passes its cache of pinned, asynchronous uploads, so that a repeated call neither copies nor
    synchronises). Returns B int64 (H_i, W_i) label tensors on the logits' device, views into one flat buffer.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4:
        raise ValueError(f"logits must be 4-D (batch, num_labels, height, width), got shape {tuple(logits.shape)}")
    if logits.dtype not in DTYPE_CODES:
        raise TypeError(f"logits must be float32, float16 or bfloat16, got {logits.dtype}")
    batch, channels, in_h, in_w = logits.shape
    if channels < 1 or in_h < 1 or in_w < 1:
        raise ValueError(f"logits need at least one class and one pixel, got shape {tuple(logits.shape)}")
    if max(in_h, in_w) >= MAX_SIDE:
        raise ValueError(f"logits sides must be below 2**24, got shape {tuple(logits.shape)}")
    if not logits.is_cuda and not INTERPRETED:
        raise ValueError(f"logits must be on a CUDA device (or the CPU under TRITON_INTERPRET=1), got {logits.device}")
    sizes = _target_sizes(sizes, batch)
    if arithmetic is None:
        arithmetic = TorchArithmetic.CUDA if logits.is_cuda else TorchArithmetic.current()
    arithmetic = TorchArithmetic(*arithmetic)
    dtype_name = str(logits.dtype).removeprefix("torch.")
    channels_last_input = batch > 0 and logits[0][None].is_contiguous(memory_format=torch.channels_last)

    pixels = [h * w for h, w in sizes]
    total = sum(pixels)
    out = torch.empty(total, dtype=torch.int64, device=logits.device)
    starts = [0] * batch
    for i in range(1, batch):
        starts[i] = starts[i - 1] + pixels[i - 1]
    if total:
        rows = [[start, h, w, int(arithmetic.channels_last_path(channels, (h, w), channels_last_input))]
                for start, (h, w) in zip(starts, sizes)]
        desc = np.array(rows, dtype=np.int64)
        desc = upload(desc, logits.device) if upload is not None else torch.from_numpy(desc).to(logits.device)
        block, num_warps = _block_size(max(pixels))
        tiles = -(-max(pixels) // block)
        if batch * tiles > INT32_MAX:
            raise ValueError(f"{batch} images of up to {max(pixels)} pixels need more than 2**31 programs")
        strides = logits.stride()
        span = sum((size - 1) * stride for size, stride in zip(logits.shape, strides))
        index_64 = max(span, total + block) > INT32_MAX
        vec_order, tail_order = _orders(dtype_name)
        args = (logits, desc, out, channels, in_h, in_w, *strides, arithmetic.vector_classes(channels, dtype_name),
                tiles)
        constants = {"DTYPE": DTYPE_CODES[logits.dtype], "FMA": bool(arithmetic.fma), "CUDA": bool(arithmetic.cuda),
                     "VEC_ORDER": _ORDER_CODE[vec_order], "TAIL_ORDER": _ORDER_CODE[tail_order], "INDEX_64": index_64,
                     "BLOCK": block, "num_warps": num_warps, "enable_fp_fusion": False}
        kernel = _bilinear_argmax_kernel[(batch * tiles,)]
        if INTERPRETED:
            with np.errstate(invalid="ignore", over="ignore"):  # the interpreter's numpy on inf/NaN logits
                launch_on(logits, kernel, *args, **constants)
        else:
            launch_on(logits, kernel, *args, **constants)
    if batch and sizes.count(sizes[0]) == batch:  # one target size: one call makes every view
        return list(out.view(batch, *sizes[0]).unbind(0))
    return [out[start:start + h * w].view(h, w) for start, (h, w) in zip(starts, sizes)]


# ---- Pure-numpy reference (any variant of the arithmetic above; no torch, no triton needed to run it) ----

def _f32(x):
    return np.asarray(x, np.float32)


def _fma(a, b, c):
    """fma in float32 through float64: the product of two float32 is exact in float64; the sum then rounds twice,
    which can differ from one rounding only when it lands within 2**-29 ulp of a float32 tie (negligible here)."""
    return (np.asarray(a, np.float64) * np.asarray(b, np.float64) + np.asarray(c, np.float64)).astype(np.float32)


def _mul_add_np(x, w, acc, fma: bool):
    return _fma(x, w, acc) if fma else _f32(_f32(acc) + _f32(_f32(x) * _f32(w)))


def round_to_dtype(x, dtype_name: str) -> np.ndarray:
    """float32 values rounded to float32/float16/bfloat16 (to nearest even) and back to float32."""
    x = _f32(x)
    if dtype_name == "float32":
        return x
    if dtype_name == "float16":
        return x.astype(np.float16).astype(np.float32)
    if dtype_name == "bfloat16":
        bits = x.view(np.uint32).astype(np.uint64)
        rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
        rounded = np.where((bits & 0x7FFFFFFF) > 0x7F800000, bits | 0x400000, rounded) & 0xFFFF0000
        return rounded.astype(np.uint32).view(np.float32)
    raise ValueError(f"dtype_name must be float32, float16 or bfloat16, got {dtype_name!r}")


def reference_axis(n_in: int, n_out: int, fma: bool = True, cuda: bool = False):
    """(i0, i1, l0, l1) for output coordinates 0..n_out-1 along one axis (module docstring), float32 weights."""
    o = np.arange(n_out)
    if n_in == n_out and not cuda:
        return o, o.copy(), np.ones(n_out, np.float32), np.zeros(n_out, np.float32)
    scale = np.float32(np.float32(n_in) / np.float32(n_out))
    d = o.astype(np.float32) + np.float32(0.5)
    src = _fma(scale, d, np.float32(-0.5)) if fma else _f32(_f32(scale * d) - np.float32(0.5))
    src = np.where(src < 0, np.float32(0), src).astype(np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    l1 = np.minimum(np.maximum(_f32(src - i0.astype(np.float32)), np.float32(0)), np.float32(1)).astype(np.float32)
    return i0, np.minimum(i0 + 1, n_in - 1), _f32(np.float32(1) - l1), l1


def reference_bilinear(values: np.ndarray, size: tuple[int, int], *, dtype_name: str | None = None,
                       arithmetic: TorchArithmetic | None = None, path: str | None = None) -> np.ndarray:
    """The interpolated (C, H, W) values of one image's (C, h, w) logits, as float32 numbers of the logits' dtype.

    `values`: float32 or float16 numpy array (bfloat16 logits as float32 values, with `dtype_name="bfloat16"`).
    `arithmetic`: FMA contraction, vector width, threads, CPU or CUDA torch (default: `TorchArithmetic.current()`,
    this process's CPU torch); `path`: "generic", "channels_last" or None for the one torch's kernel takes for a
    contiguous NCHW tensor. Variants (e.g. `TorchArithmetic(fma=False, cuda=True)`: CUDA torch had nvcc not
    contracted) are for measuring label differences.
    """
    arithmetic = TorchArithmetic.current() if arithmetic is None else TorchArithmetic(*arithmetic)
    dtype_name = dtype_name or str(np.asarray(values).dtype)
    x = _f32(values)
    channels, in_h, in_w = x.shape
    out_h, out_w = size
    if path is None:
        path = "channels_last" if arithmetic.channels_last_path(channels, size, False) else "generic"
    fma = arithmetic.fma
    if arithmetic.cuda and (in_h, in_w) == (out_h, out_w):
        return round_to_dtype(x, dtype_name)  # CUDA torch copies
    hy0, hy1, lh0, lh1 = reference_axis(in_h, out_h, fma, arithmetic.cuda)
    wx0, wx1, lw0, lw1 = reference_axis(in_w, out_w, fma, arithmetic.cuda)
    rows0, rows1 = x[:, hy0], x[:, hy1]
    x00, x01, x10, x11 = rows0[:, :, wx0], rows0[:, :, wx1], rows1[:, :, wx0], rows1[:, :, wx1]
    with np.errstate(invalid="ignore", over="ignore"):
        if path == "generic":
            if not arithmetic.cuda:  # CPU torch keeps the weights in the logits' dtype
                lh1 = round_to_dtype(lh1, dtype_name)
                lh0 = round_to_dtype(np.float32(1) - lh1, dtype_name)
                lw1 = round_to_dtype(lw1, dtype_name)
                lw0 = round_to_dtype(np.float32(1) - lw1, dtype_name)
            t0 = _mul_add_np(x00, lw0, _f32(x01 * lw1), fma)
            t1 = _mul_add_np(x10, lw0, _f32(x11 * lw1), fma)
            return round_to_dtype(_mul_add_np(t0, lh0[:, None], _f32(t1 * lh1[:, None]), fma), dtype_name)
        if path != "channels_last":
            raise ValueError(f"path must be 'generic', 'channels_last' or None, got {path!r}")
        corners = (x00, x01, x10, x11)
        weights = [_f32(a[:, None] * b) for a in (lh0, lh1) for b in (lw0, lw1)]
        out = np.empty((channels, out_h, out_w), np.float32)
        split = arithmetic.vector_classes(channels, dtype_name)
        for part, order in zip((slice(0, split), slice(split, channels)), _orders(dtype_name)):
            a, b, c, d = ORDERS[order]
            acc = _f32(corners[a][part] * weights[a])
            for k in (b, c, d):
                acc = _mul_add_np(corners[k][part], weights[k], acc, fma)
            out[part] = acc
        return round_to_dtype(out, dtype_name)


def reference_labels(values: np.ndarray, size: tuple[int, int], **kwargs) -> np.ndarray:
    """torch's argmax over classes (first maximum; NaN is the maximum, first NaN) of `reference_bilinear`."""
    return np.argmax(reference_bilinear(values, size, **kwargs), axis=0)


