"""The kernel launches as `torch.library` custom ops (with fake implementations), so that they compose with
`torch.compile(fullgraph=True)` and are checked by `torch.library.opcheck`. Imported by the Triton backend.

Thread safety: Triton's interpreter patches `triton.language` process-wide while it runs a kernel, so two
interpreted launches at once fail inside it ("Did you forget to add @triton.jit ?"). Under `TRITON_INTERPRET=1`
(the setting the kernels were decorated with, `K.INTERPRETED`) every launch therefore holds `INTERPRETER_LOCK`.
Compiled for a GPU, no lock is taken: threads launch concurrently, each on its current stream.
"""

from __future__ import annotations

import contextlib
import threading

import torch
from torch._subclasses.fake_tensor import FakeTensor

from .._kernels import crop_normalize as K
from .._kernels import resample as RK

# One lock for every interpreted launch of this package; None when the kernels were compiled for a GPU.
INTERPRETER_LOCK: threading.Lock | None = threading.Lock() if K.INTERPRETED else None


def launch_guard():
    """The context a kernel launch runs in: `INTERPRETER_LOCK` held under the interpreter, nothing on a GPU."""
    return INTERPRETER_LOCK if INTERPRETER_LOCK is not None else contextlib.nullcontext()


def _crop_normalize_launch(src, desc, table, params, out, max_pixels, max_channels, do_rescale, do_normalize,
                           layout, index_64) -> None:
    with launch_guard():
        K.crop_normalize(
            src, desc, table, params, out, max_pixels=max_pixels, max_channels=max_channels, do_rescale=do_rescale,
            do_normalize=do_normalize, layout=layout, index_64=index_64,
        )


def _resample_launch(src, dst, desc, coef, tiles, max_channels) -> None:
    with launch_guard():
        RK.resample(src, dst, desc, coef, tiles, max_channels=max_channels)


def _traced(tensor: torch.Tensor) -> bool:
    """Whether a graph is being captured by torch.compile / export (or fake tensors flow): then the launches must go
    through the registered ops, which those systems know; eagerly they are called directly."""
    return torch.compiler.is_compiling() or isinstance(tensor, FakeTensor)


def crop_normalize_into(*args, launch=None) -> None:
    """`crop_normalize_out` as the backend calls it: through the op while tracing, directly when eager (the
    dispatcher's Python layers cost more host time than the rest of a batch-1 call). `launch`: the call's
    `K.CropNormalizeLaunch`, configured once, for the eager launch."""
    if _traced(args[0]):
        torch.ops.fused_imgproc.crop_normalize_out(*args)
    elif launch is not None:
        with launch_guard():
            launch(*args[:5], args[-1])
    else:
        _crop_normalize_launch(*args)


def resample_into(*args, launch=None) -> None:
    """`resample_out` as the backend calls it (see `crop_normalize_into`; `launch`: an `RK.ResampleLaunch`)."""
    if _traced(args[0]):
        torch.ops.fused_imgproc.resample_out(*args)
    elif launch is not None:
        with launch_guard():
            launch(*args[:5])
    else:
        _resample_launch(*args)


@torch.library.custom_op("fused_imgproc::crop_normalize_out", mutates_args=("out",))
def crop_normalize_out(
    src: torch.Tensor, desc: torch.Tensor, table: torch.Tensor, params: torch.Tensor, out: torch.Tensor,
    max_pixels: int, max_channels: int, do_rescale: bool, do_normalize: bool, layout: list[int], index_64: bool,
) -> None:
    """Writes the batch described by `desc` into the flat buffer `out` (see `_kernels.crop_normalize`; `layout`: the
    fields of its `Layout`, `[channels_last, patch, merge, temporal]`)."""
    _crop_normalize_launch(src, desc, table, params, out, max_pixels, max_channels, do_rescale, do_normalize,
                           layout, index_64)


@crop_normalize_out.register_fake
def _(src, desc, table, params, out, max_pixels, max_channels, do_rescale, do_normalize, layout, index_64):
    return None


@torch.library.custom_op("fused_imgproc::crop_normalize", mutates_args=())
def crop_normalize(
    src: torch.Tensor, desc: torch.Tensor, table: torch.Tensor, params: torch.Tensor, out_numel: int,
    out_dtype: torch.dtype, max_pixels: int, max_channels: int, do_rescale: bool, do_normalize: bool,
    layout: list[int], index_64: bool,
) -> torch.Tensor:
    """Functional form of `crop_normalize_out`: returns a new flat buffer of `out_numel` elements."""
    out = torch.empty(out_numel, dtype=out_dtype, device=src.device)
    crop_normalize_out(
        src, desc, table, params, out, max_pixels, max_channels, do_rescale, do_normalize, layout, index_64
    )
    return out


@crop_normalize.register_fake
def _(src, desc, table, params, out_numel, out_dtype, max_pixels, max_channels, do_rescale, do_normalize,
      layout, index_64):
    return src.new_empty(out_numel, dtype=out_dtype)


@torch.library.custom_op("fused_imgproc::resample_out", mutates_args=("dst",))
def resample_out(src: torch.Tensor, dst: torch.Tensor, desc: torch.Tensor, coef: torch.Tensor, tiles: torch.Tensor,
                 max_channels: int) -> None:
    """One Pillow resampling pass for every image of `desc` (see `_kernels.resample`), uint8 `src` -> `dst`."""
    _resample_launch(src, dst, desc, coef, tiles, max_channels)


@resample_out.register_fake
def _(src, dst, desc, coef, tiles, max_channels):
    return None
