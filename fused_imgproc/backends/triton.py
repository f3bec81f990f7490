"""The Triton backend: executes a `BatchPlan` with the fused crop/normalize kernel, one launch per batch.

Data flow of one call (docs/BEHAVIOUR.md section 8):

1. Host images (PIL, numpy, CPU tensors) travel as uint8 (float32 for unresized float images) in a reused
   pinned staging buffer, with the descriptor and coefficient tables, in one asynchronous copy on the current
   stream: of an image the GPU resizes, only the source rectangle its crop window reads; of any other image
   (not resized, or resized by Pillow on the host: RGBA, filters the GPU lacks), only its crop window.
2. Tensors already on the target device are read in place through their strides (a 4-D batch, views, CHW or
   HWC); only a list of separately allocated tensors is first gathered into one buffer (a device-to-device copy).
3. When any image is resized on the GPU: at most two resampling launches (`gpu_resize`, Pillow's passes).
4. One crop/normalize launch per source dtype (one for any batch of uint8 images) writes every image of the
   batch into one output buffer, or into the caller's `out=`.

The descriptor table and the per-channel value tables come from the plan (`ImageGeometry.source_window`,
`BatchPlan.table`); this module decides no geometry and no numerics. Value tables, parameter vectors and the
descriptors of in-place batches are cached on the device, so a fixed-shape call on device tensors does no
host-to-device copy and no synchronisation; it allocates only from torch's caching allocator (its output unless
`out=` is given, and the uint8 work buffer of a resize), so it can be captured in a CUDA graph after one warm-up
call. Under `TRITON_INTERPRET=1` the same code runs with `device="cpu"` on CPU tensors.

Threads: one processor may be called from many threads. Each thread has its own pinned staging buffers
(`staging`), the device caches are locked, and every call builds its own plan, buffers and output. Under the
interpreter the launches themselves are serialised (`ops.INTERPRETER_LOCK`: Triton's interpreter is not
thread-safe); on a GPU they are not. A cached device tensor is uploaded on the stream of the call that first needs
it and then read on any thread's current stream without an event wait: safe on the default stream, which every
thread shares unless it selects its own (per-thread CUDA streams would need that wait).
"""

from __future__ import annotations

import functools

import numpy as np
import PIL.Image
import torch

from .._kernels import crop_normalize as K
from .._kernels import resample as RK
from ..image_utils import (
    ChannelDimension,
    PreparedImage,
    infer_channel_dimension_format,
    is_torch_tensor,
    prepare_image,
)
from ..plan import RAW, UINT8, UNIT_FLOAT, BatchPlan, PatchLayout
from ..resample import GPU_FILTERS
from . import (
    BackendUnavailableError,
    gpu_resize,
    ops,  # the launches (eagerly direct, through the registered torch.library ops while tracing)
    staging,
)
from . import numpy as numpy_backend

INTERPRETED = K.INTERPRETED
_OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.uint8)
INT32_INDEX_LIMIT = K.INT32_MAX  # past this many elements in a source or output buffer, index in 64 bits

# --- device selection and input preparation -----------------------------------------------------------------------


def resolve_device(device) -> torch.device:
    """The target device, checked to be usable: a CUDA GPU, or the CPU under `TRITON_INTERPRET=1`."""
    device = torch.device("cpu" if device is None else device)
    if device.type == "cuda":
        if INTERPRETED:
            raise BackendUnavailableError(
                "TRITON_INTERPRET=1 runs the Triton kernels on the CPU: use device='cpu' with backend='triton'"
            )
        if not torch.cuda.is_available():
            raise BackendUnavailableError(f"device={str(device)!r} was asked for but torch sees no CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device.index >= torch.cuda.device_count():
            raise BackendUnavailableError(f"device={str(device)!r}: only {torch.cuda.device_count()} GPU(s) visible")
        return device
    if device.type == "cpu":
        if not INTERPRETED:
            raise BackendUnavailableError(
                "backend='triton' needs a CUDA device (device='cuda'); on the CPU it runs only under the Triton "
                "interpreter (TRITON_INTERPRET=1 set before fused_imgproc's kernels are first used)"
            )
        return device
    raise BackendUnavailableError(f"backend='triton' cannot run on device {str(device)!r}")


def prepare(image, do_convert_rgb: bool, input_data_format, device: torch.device, resize_filter) -> PreparedImage:
    """`prepare_image`, except that a tensor already on `device` stays there when the GPU can take it as it is:
    uint8 (resized on the GPU when `resize_filter` is one of Pillow's filters the GPU has), or float32 without a
    resize (`resize_filter` is None).

    Such a tensor becomes an (H, W, C) view read in place (a 1-channel image converted to RGB is a stride-0
    view). Everything else goes through the host: a device tensor that must be alpha-composited, resized as
    RGBA (premultiplied) or resized from float values is copied to the host first (a synchronising round trip).
    """
    if _stays_on_device(image, device, resize_filter):
        fmt = input_data_format if input_data_format is not None else infer_channel_dimension_format(image, (1, 3, 4))
        hwc = image.permute(1, 2, 0) if ChannelDimension(fmt) == ChannelDimension.FIRST else image
        channels = hwc.shape[-1]
        if 0 in hwc.shape:
            raise ValueError(f"Got an empty image of shape {tuple(image.shape)}: every side must be at least 1")
        if not (channels == 4 and (do_convert_rgb or resize_filter is not None)):
            if channels not in (1, 3, 4):
                raise ValueError(
                    f"Images must have 1, 3 or 4 channels, got {channels} (a tensor of shape {tuple(image.shape)}); "
                    "pass `input_data_format` if the channel axis was guessed wrong"
                )
            if do_convert_rgb and channels == 1:
                hwc = hwc.expand(-1, -1, 3)
            # A CUDA tensor is not scanned for NaN/inf: that would synchronise. NaN in gives NaN out.
            if hwc.dtype == torch.float32 and device.type == "cpu" and not torch.isfinite(hwc).all():
                raise ValueError("The image contains NaN or infinite values")
            return PreparedImage(tensor=hwc)
    if is_torch_tensor(image) and image.device.type != "cpu":
        image = image.cpu()
    return prepare_image(image, do_convert_rgb, input_data_format)


def _stays_on_device(image, device: torch.device, resize_filter) -> bool:
    if not is_torch_tensor(image) or image.device != device or image.dim() != 3:
        return False
    if resize_filter is None:
        return image.dtype in (torch.uint8, torch.float32)
    return image.dtype == torch.uint8 and resize_filter in GPU_FILTERS


def replay_recipe(image, prepared: PreparedImage, preparation: dict):
    """A function `f(image)` that prepares any input of the same signature as `image` (see
    `processors/call_cache.input_signature`) as `prepare(image, **preparation)` prepared this one, or None when that
    preparation depends on more than the signature (the values of a non-uint8 array are scanned and classified).

    A PIL image whose preparation is a PIL image (L, RGB or RGBA, or made RGB): `prepare` itself, whose every
    decision depends only on the mode, size and transparency key the signature holds. An array or tensor: views
    alone (a permute, an expand), accepted only when they reproduce this image's prepared view exactly (same memory,
    shape and strides), so they are the same preparation; None when `prepare` did more than take a view (a
    conversion, a copy, a value scan: anything but uint8). A processor's call cache replays `f` instead of the
    full path."""
    if isinstance(image, PIL.Image.Image):
        return functools.partial(prepare, **preparation) if prepared.pil is not None else None
    if is_torch_tensor(image):
        if image.dtype != torch.uint8:
            return None
        if prepared.tensor is not None:
            target = prepared.tensor
            for recipe in _TENSOR_RECIPES:
                try:
                    view = recipe(image)
                except RuntimeError:  # an expand of more than one channel
                    continue
                if (view.data_ptr() == target.data_ptr() and view.shape == target.shape
                        and view.stride() == target.stride() and view.device == target.device):
                    return lambda x, recipe=recipe: PreparedImage(tensor=recipe(x))
            return None
        as_array = _tensor_as_array  # a CPU tensor on a CUDA call: prepared as its numpy view
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8:
        as_array = _same
    else:
        return None
    target = prepared.array
    if target is None:
        return None
    for recipe in (as_array, lambda x, as_array=as_array: as_array(x).transpose(1, 2, 0)):
        view = recipe(image)
        if (view.__array_interface__["data"][0] == target.__array_interface__["data"][0]
                and view.shape == target.shape and view.strides == target.strides and view.dtype == target.dtype):
            return lambda x, recipe=recipe: PreparedImage(array=recipe(x))
    return None


def _same(x):
    return x


def _tensor_as_array(x):
    return x.detach().numpy()


_TENSOR_RECIPES = (
    lambda x: x,
    lambda x: x.permute(1, 2, 0),
    lambda x: x.expand(-1, -1, 3),
    lambda x: x.permute(1, 2, 0).expand(-1, -1, 3),
)


def torch_dtype(plan: BatchPlan, images: list[PreparedImage], out_dtype) -> torch.dtype:
    """The output dtype of the batch (the numpy backend's rule), as a torch dtype this backend can write."""
    if out_dtype == "bfloat16":
        return torch.bfloat16
    name = numpy_backend.output_dtype(plan, images, out_dtype).name
    dtype = getattr(torch, name, None)
    if dtype not in _OUT_DTYPES:
        raise TypeError(f"backend='triton' writes float32, float16, bfloat16 or float64 outputs, not {name}")
    return dtype


def check_sources(plan: BatchPlan, images: list[PreparedImage]) -> None:
    """Rejects, before any work, images whose values the kernel cannot reproduce exactly."""
    for index, (item, image) in enumerate(zip(plan.images, images)):
        if item.source != RAW or image.dtype == np.float32:
            continue
        dtype = image.dtype
        exact_as_float32 = (np.issubdtype(dtype, np.integer) and dtype.itemsize <= 2) or (
            dtype == np.float16 and plan.value_map.do_rescale
        )
        if not exact_as_float32 or plan.value_map.is_identity:
            raise TypeError(
                f"backend='triton' reads uint8, float32 and 8/16-bit integer images; image {index} is {dtype} and "
                "is not resized, so its values would be computed in that dtype. Convert it to float32 or uint8, "
                "or use backend='numpy'"
            )


def _value_tables(plan: BatchPlan, items, dtype: torch.dtype, device: torch.device):
    """The concatenated (C, 256) tables of `items` in the output dtype, and each table's element offset."""
    kinds = sorted({(item.channels, item.source == UNIT_FLOAT) for item in items})
    by_kind = {(item.channels, item.source == UNIT_FLOAT): item for item in items}
    offsets, start = {}, 0
    for kind in kinds:
        offsets[kind] = start
        start += kind[0] * 256

    def make():
        tables = np.concatenate([plan.table(by_kind[kind]).reshape(-1) for kind in kinds])
        values = torch.from_numpy(np.ascontiguousarray(tables)).to(dtype)  # round to nearest even, once
        return staging.upload_array(values.view(torch.uint8).numpy() if dtype == torch.bfloat16 else values.numpy(),
                             device).view(dtype).reshape(-1)

    return staging.TABLES.get((device, "table", plan.value_map, tuple(kinds), dtype), make), offsets


def _params(plan: BatchPlan, max_channels: int, device: torch.device) -> torch.Tensor:
    """float64 `[scale, mean_0..MAX_C-1, std_0..MAX_C-1]` for the arithmetic (float32 source) path."""
    vm = plan.value_map

    def make():
        params = np.zeros(1 + 2 * max_channels, dtype=np.float64)
        params[0] = vm.rescale_factor
        if vm.do_normalize:
            params[1 : 1 + len(vm.mean)] = vm.mean
            params[1 + max_channels : 1 + max_channels + len(vm.std)] = vm.std
        return staging.upload_array(params, device)

    return staging.TABLES.get((device, "params", vm, max_channels), make)


# --- executing a plan ------------------------------------------------------------------------------------------


def execute(
    plan: BatchPlan, images: list[PreparedImage], *, device: torch.device, out_dtype=None, stack: bool = True,
    out: torch.Tensor | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Runs `plan` on `images` on `device` (see the module docstring): `Program(...).run(images, out)`."""
    program = Program(plan, images, device=device, out_dtype=out_dtype, stack=stack, out=out)
    return program.run(images, out)


class Program:
    """A call's work on the device, built from the plan and the inputs' shapes, dtypes and strides; nothing here reads
    a pixel. It holds the output layout, each launch group's descriptor and value tables (on the device), and the
    staging layout of host images, so that `run` only fetches pixels, stages them and launches.

    A processor keeps the programs of its recent calls keyed by everything they are built from (settings, limits,
    and each input's kind, shape, dtype, strides and device), so a repeated call of the same shapes, the inference
    server's steady state, does only `run` (docs/BEHAVIOUR.md section 8).

    Args:
        plan (`BatchPlan`): geometry, value map and output layout of every image.
        images (`list[PreparedImage]`): the inputs (`prepare`d), one per `plan.images` entry.
        device (`torch.device`): from `resolve_device`.
        out_dtype (`np.dtype` or `"bfloat16"`, *optional*): output dtype (the plan's own when `None`).
        stack (`bool`, *optional*, defaults to `True`): one (N, ...) tensor when every output has the same shape.
        out (`torch.Tensor`, *optional*): a contiguous (N, ...) tensor of the output dtype on `device` to write; every
            `run` must then be given one of the same shape, dtype and device.
    """

    def __init__(self, plan: BatchPlan, images: list[PreparedImage], *, device: torch.device, out_dtype=None,
                 stack: bool = True, out: torch.Tensor | None = None):
        self.device = device
        self.dtype = dtype = torch_dtype(plan, images, out_dtype)
        check_sources(plan, images)
        shapes = [plan.layout.shape(item) for item in plan.images]
        out_offsets = np.concatenate([[0], np.cumsum([int(np.prod(shape)) for shape in shapes])]).astype(np.int64)
        self.total = int(out_offsets[-1])
        self.concatenated = plan.layout.concatenated
        if self.concatenated:  # patch rows: the images' rows one after the other, always one tensor
            whole = (sum(shape[0] for shape in shapes),) + shapes[0][1:]
        else:
            whole = (len(shapes),) + shapes[0] if len(set(shapes)) == 1 else None
        self.has_out = out is not None
        if out is not None:
            check_out(out, whole, dtype, device)
        # The result: one view of the output buffer in `whole`'s shape, or one view per image (each in its own dtype
        # when no dtype was asked for: the batch buffer holds the promoted dtype, from which the narrower values come
        # back exactly, as the numpy backend's list does).
        self.batch_shape = whole if stack or self.concatenated else None
        self.views = [(int(out_offsets[i]), int(out_offsets[i + 1]), shape) for i, shape in enumerate(shapes)]
        self.own_dtypes = None
        if out_dtype is None and self.batch_shape is None:
            self.own_dtypes = [getattr(torch, numpy_backend.output_dtype(plan, [image], None, [item]).name)
                               for item, image in zip(plan.images, images)]

        groups: dict[object, list[int]] = {}
        for i, (item, image) in enumerate(zip(plan.images, images)):
            key = ("device", image.tensor.dtype) if image.tensor is not None else ("host", item.source == RAW)
            groups.setdefault(key, []).append(i)
        self.groups = []
        for (where, _), indices in groups.items():
            launch = _Launch(plan, indices, out_offsets, dtype, device)
            group = _DeviceGroup if where == "device" else _HostGroup
            self.groups.append(group(plan, images, indices, launch, device))
        # The device memory of the tables this program keeps alive (what a cache of programs holds).
        self.table_bytes = sum(group.table_bytes() for group in self.groups)
        self.pinned = False

    def run(self, images: list[PreparedImage], out: torch.Tensor | None = None):
        """The call's uploads and launches for `images`, which must have the shapes, dtypes, strides and devices of
        those the program was built from (and `out` those of its `out`). Returns `out`, the (N, ...) result or the
        list of per-image results."""
        if self.device.type == "cuda" and not self.pinned and torch.cuda.is_current_stream_capturing():
            # A captured graph keeps reading this program's device tables: they must outlive every cache eviction.
            staging.pin(self)
            self.pinned = True
        if out is not None:
            target = out
        else:
            shape = self.total if self.batch_shape is None else self.batch_shape
            target = torch.empty(shape, dtype=self.dtype, device=self.device)
        for group in self.groups:  # the kernels write the contiguous target through its data pointer
            group.run(images, target)
        if out is not None or self.batch_shape is not None:
            return target
        views = [target[start:stop].view(shape) for start, stop, shape in self.views]
        if self.own_dtypes is not None:
            views = [v if v.dtype == dtype else v.to(dtype) for v, dtype in zip(views, self.own_dtypes)]
        return views


def check_out(out, shape, dtype: torch.dtype, device: torch.device) -> None:
    """`out=` must be a contiguous tensor of exactly the result's shape, dtype and device."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"out must be a torch.Tensor, got {type(out).__name__}")
    if shape is None:
        raise ValueError("out= needs every output image to have the same shape; this batch's outputs differ")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"out has shape {tuple(out.shape)}, but the result has shape {tuple(shape)}")
    if out.dtype != dtype:
        raise ValueError(f"out has dtype {out.dtype}, but the result is {dtype} (pass dtype= to choose it)")
    if out.device != device:
        raise ValueError(f"out is on {out.device}, but the result is computed on {device}")
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")


class _Launch:
    """The crop/normalize launch of one group of images that share a source dtype (and, on the device, a buffer):
    value tables or parameters (cached on the device), a descriptor builder, and the launch's configuration."""

    def __init__(self, plan: BatchPlan, indices: list[int], out_offsets, dtype: torch.dtype, device: torch.device):
        items = [plan.images[i] for i in indices]
        self.float_src = items[0].source == RAW
        self.max_channels = max(item.channels for item in items)
        self.max_pixels = max(item.geometry.out_hw[0] * item.geometry.out_hw[1] for item in items)
        if self.float_src:
            self.table = self.params = _params(plan, self.max_channels, device)
            table_offsets = {}
        else:
            self.table, table_offsets = _value_tables(plan, items, dtype, device)
            self.params = self.table
        self.descriptor = _Descriptor(items, [int(out_offsets[i]) for i in indices], table_offsets)
        self.total = int(out_offsets[-1])  # elements of the output buffer
        vm = plan.value_map
        self.flags = (vm.do_rescale, vm.do_normalize, _kernel_layout(plan.layout))
        self.kernel = K.CropNormalizeLaunch(len(items), self.max_pixels, self.max_channels, *self.flags,
                                            torch.float32 if self.float_src else torch.uint8, dtype)

    def __call__(self, src: torch.Tensor, desc: torch.Tensor, flat: torch.Tensor, span: int) -> None:
        """Launches on `src` (`span`: one past the largest element offset of `src` the descriptor reaches) writing
        the contiguous output `flat` (flat, or already in the result's shape)."""
        index_64 = max(span, self.total) > INT32_INDEX_LIMIT
        ops.crop_normalize_into(src, desc, self.table, self.params, flat, self.max_pixels, self.max_channels,
                                *self.flags, index_64, launch=self.kernel)


def _kernel_layout(layout) -> list[int]:
    """The plan's output layout as the kernel's `Layout` fields (ints: what the registered op takes)."""
    if isinstance(layout, PatchLayout):
        fields = K.Layout(patch=layout.patch_size, merge=layout.merge_size, temporal=layout.temporal_patch_size)
    else:
        fields = K.Layout(channels_last=not layout.channels_first)
    return [int(value) for value in fields]


class _Descriptor:
    """Builds a launch group's crop/normalize descriptor: `descriptor(sources)` gives the (N, DESC_FIELDS) int64 rows
    from each image's (source offset, (SY, SX, SC)). `key` is everything the rows depend on besides the images'
    plans and sources (output and table offsets), for caches keyed by shape."""

    def __init__(self, items, out_offsets: list[int], table_offsets: dict):
        self.items, self.out_offsets, self.table_offsets = items, out_offsets, table_offsets
        self.key = (tuple(out_offsets), tuple(sorted(table_offsets.items())))

    def __call__(self, sources) -> np.ndarray:
        rows = [
            _row(item, offset, self.table_offsets.get((item.channels, item.source == UNIT_FLOAT), 0), *src)
            for item, offset, src in zip(self.items, self.out_offsets, sources)
        ]
        return np.array(rows, dtype=np.int64).reshape(-1, K.DESC_FIELDS)


def _row(item, out_offset: int, table_offset: int, src_offset: int, strides) -> list[int]:
    _, _, (oy0, oy1), (ox0, ox1) = item.geometry.source_window()
    oh, ow = item.geometry.out_hw
    return [src_offset, *strides, out_offset, oh, ow, oy0, oy1, ox0, ox1, item.channels, table_offset]


def _packed(shapes) -> tuple[np.ndarray, list[tuple[int, tuple[int, int, int]]]]:
    """Element offsets of (rows, cols, channels) blocks packed back to back, and each block's (offset, strides)."""
    starts = np.concatenate([[0], np.cumsum([int(np.prod(shape)) for shape in shapes])]).astype(np.int64)
    return starts, [(int(start), (cols * channels, channels, 1)) for start, (_, cols, channels) in zip(starts, shapes)]


class _HostGroup:
    """Host images (PIL, numpy, CPU tensors on a CUDA call): every call packs what the kernels read into a reused
    pinned staging buffer and uploads it in one asynchronous copy.

    Of an image the GPU resizes, that is only the source rectangle its crop window reads; of any other image (not
    resized, or resized by Pillow on the host: RGBA, filters the GPU lacks), only its crop window. Shapes, offsets,
    the descriptor and the resize's pass tables are fixed here and uploaded once; `run` copies pixels and launches.
    """

    def __init__(self, plan: BatchPlan, images, indices: list[int], launch: _Launch, device: torch.device):
        self.indices, self.launch, self.device = indices, launch, device
        self.items = items = [plan.images[i] for i in indices]
        float_src = launch.float_src
        self.src_dtype = np.dtype(np.float32 if float_src else np.uint8)
        self.resize_here = [not float_src and gpu_resize.on_gpu(item, images[i]) for item, i in zip(items, indices)]
        # Of each image, the rectangle uploaded: of the image entering the resize when the GPU resizes it, else of
        # the (host-resized or unresized) image.
        self.rects = [
            item.geometry.source_rect() if here else item.geometry.source_window()[:2]
            for item, here in zip(items, self.resize_here)
        ]
        shapes = [(y1 - y0, x1 - x0, item.channels) for item, ((y0, y1), (x0, x1)) in zip(items, self.rects)]
        self.starts, sources = _packed(shapes)
        # Taking a window is a view, except where Pillow resizes on the host or a PIL image or a non-uint8 array is
        # converted first: only then does `run` spread the windows over the pool.
        self.host_work = any(
            item.source not in (UINT8, RAW) or (not here and item.geometry.resample is not None)
            for item, here in zip(items, self.resize_here)
        )
        self.passes = None
        if any(self.resize_here):
            mappings = tuple(
                (offset - y0 * s_row - x0 * s_col, s_row, s_col, 1)
                for (offset, (s_row, s_col, _)), ((y0, _), (x0, _)) in zip(sources, self.rects)
            )
            split, final, channels, tables, sources = gpu_resize.planned(tuple(items), mappings,
                                                                         tuple(self.resize_here))
            *tables, self.desc = staging.upload_tables([*tables, launch.descriptor(sources)], device)
            self.passes = _Passes(split, final, channels, tables)
        else:
            (self.desc,) = staging.upload_tables([launch.descriptor(sources)], device)
        self.span = self.passes.size if self.passes is not None else int(self.starts[-1])  # of the launch's source

    def table_bytes(self) -> int:
        return _tables_bytes(self.passes, self.desc)

    def _window(self, images, k: int) -> np.ndarray:
        item, image, ((y0, y1), (x0, x1)) = self.items[k], images[self.indices[k]], self.rects[k]
        if self.resize_here[k]:
            pixels = numpy_backend.source_pixels(image, item)
            pixels = np.asarray(pixels) if isinstance(pixels, PIL.Image.Image) else pixels
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        else:
            pixels = numpy_backend.resized_pixels(image, item)
        return pixels[y0:y1, x0:x1]

    def stage(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Uploads the call's pixels and runs the resample passes: `(src, desc)` for the crop/normalize launch."""
        run = staging.runner(len(self.indices) if self.host_work else 1)
        windows = run(lambda k: self._window(images, k), len(self.indices))
        pixels = staging.upload_windows(windows, self.starts, self.src_dtype, self.device)
        if self.passes is not None:
            pixels = self.passes(pixels, self.device)
        return pixels, self.desc

    def run(self, images, flat: torch.Tensor) -> None:
        src, desc = self.stage(images)
        self.launch(src, desc, flat, self.span)


class _Passes:
    """The resample passes of a launch group (`gpu_resize`) into a fresh `work` buffer: stage 1 reads the source and
    writes intermediates and single-pass final windows; stage 2 (two-pass images) reads the intermediates and writes
    their final windows. Every offset is into `work` itself, which the crop/normalize launch then reads."""

    def __init__(self, split: int, final: int, channels: int, tables: list[torch.Tensor]):
        self.size, self.channels = split + final, channels
        self.stage1, self.tiles1, self.stage2, self.tiles2, self.blob = tables
        self.launch1 = RK.ResampleLaunch(self.tiles1.shape[0], channels)
        self.launch2 = RK.ResampleLaunch(self.tiles2.shape[0], channels) if len(self.stage2) else None

    def tables(self) -> list[torch.Tensor]:
        return [self.stage1, self.tiles1, self.stage2, self.tiles2, self.blob]

    def __call__(self, src: torch.Tensor, device: torch.device) -> torch.Tensor:
        work = torch.empty(self.size, dtype=torch.uint8, device=device)
        ops.resample_into(src, work, self.stage1, self.blob, self.tiles1, self.channels, launch=self.launch1)
        if self.launch2 is not None:
            ops.resample_into(work, work, self.stage2, self.blob, self.tiles2, self.channels, launch=self.launch2)
        return work


class _DeviceGroup:
    """Tensors already on the device: read in place when they share one storage (a 4-D batch and its views), else
    gathered into one buffer with a device-to-device copy. Descriptors and the resize's pass tables (offsets, no
    addresses) are uploaded once and cached on the device, so a call uploads nothing and never synchronises."""

    def __init__(self, plan: BatchPlan, images, indices: list[int], launch: _Launch, device: torch.device):
        self.indices, self.launch, self.device = indices, launch, device
        self.items = items = tuple(plan.images[i] for i in indices)
        self.resizing = any(item.geometry.resample is not None for item in items)
        # What each image's first kernel reads: the source rectangle a GPU resize needs, else the crop window.
        self.boxes = [
            item.geometry.source_rect() if self.resizing else item.geometry.source_window()[:2] for item in items
        ]
        self.variants = {}  # in place (True) or gathered (False) -> (base, span, passes, desc) of that layout
        self._source(images)  # uploads the tables now, on the first call (before any CUDA-graph capture)

    def _source(self, images):
        """`(src, variant)`: the tensor the first kernel reads (its data pointer is the base of the descriptors'
        offsets) and the variant for reading it: `(base, span, passes, desc)`, `span` one past the largest element
        offset of `src` the descriptors reach, `passes` the resize's `_Passes` (None without a resize)."""
        tensors = [images[i].tensor for i in self.indices]
        if len(tensors) == 1:
            in_place = True
        else:
            storage = tensors[0].untyped_storage().data_ptr()
            in_place = all(t.untyped_storage().data_ptr() == storage for t in tensors[1:])
        variant = self.variants.get(in_place)
        if variant is None:
            variant = self.variants[in_place] = self._variant(tensors, in_place)
        if in_place:
            return tensors[variant[0]], variant
        rects = [t[y0:y1, x0:x1] for t, ((y0, y1), (x0, x1)) in zip(tensors, self.boxes)]
        return torch.cat([r.reshape(-1) for r in rects]), variant

    def _variant(self, tensors, in_place: bool):
        if in_place:
            # Offsets from the image that starts first in the shared storage (read through its own data pointer):
            # element (r, c, ch) of image t is src[offset + r*s_row + c*s_col + ch*s_c].
            base = min(range(len(tensors)), key=lambda k: tensors[k].storage_offset())
            origin = tensors[base].storage_offset()
            mappings = [(t.storage_offset() - origin, *t.stride()) for t in tensors]
            span = max(m[0] + sum((n - 1) * s for n, s in zip(t.shape, m[1:])) for t, m in zip(tensors, mappings)) + 1
        else:
            shapes = [(y1 - y0, x1 - x0, t.shape[2]) for t, ((y0, y1), (x0, x1)) in zip(tensors, self.boxes)]
            starts, sources = _packed(shapes)
            base, span = None, int(starts[-1])
            mappings = [
                (offset - y0 * s_row - x0 * s_col, s_row, s_col, 1)
                for (offset, (s_row, s_col, _)), ((y0, _), (x0, _)) in zip(sources, self.boxes)
            ]
        descriptor = self.launch.descriptor
        if not self.resizing:
            desc = descriptor([
                (offset + y0 * s_row + x0 * s_col, (s_row, s_col, s_c))
                for (offset, s_row, s_col, s_c), ((y0, _), (x0, _)) in zip(mappings, self.boxes)
            ])
            key = (self.device, desc.tobytes())
            return base, span, None, staging.DESCRIPTORS.get(key, lambda: staging.upload_array(desc, self.device))

        def build():
            resize_here = tuple(item.geometry.resample is not None for item in self.items)
            split, final, channels, tables, sources = gpu_resize.planned(self.items, tuple(mappings), resize_here)
            *tables, desc = staging.upload_tables([*tables, descriptor(sources)], self.device)
            return _Passes(split, final, channels, tables), desc

        # Keyed by what the pass plan is computed from: another program of the same shapes shares the upload.
        key = (self.device, "resize", self.items, tuple(mappings), descriptor.key)
        return (base, span, *staging.DESCRIPTORS.get(key, build))

    def table_bytes(self) -> int:
        return sum(_tables_bytes(passes, desc) for _, _, passes, desc in self.variants.values())

    def run(self, images, flat: torch.Tensor) -> None:
        src, (_, span, passes, desc) = self._source(images)
        if passes is None:
            self.launch(src, desc, flat, span)
        else:
            self.launch(passes(src, self.device), desc, flat, passes.size)


def _tables_bytes(passes, desc: torch.Tensor) -> int:
    """Device bytes of a launch group's descriptor and resize tables."""
    tables = [desc] if passes is None else [desc, *passes.tables()]
    return sum(t.numel() * t.element_size() for t in tables)
