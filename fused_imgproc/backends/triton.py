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

import numpy as np
import PIL.Image
import torch

from .._kernels import crop_normalize as K
from ..image_utils import (
    ChannelDimension,
    PreparedImage,
    infer_channel_dimension_format,
    is_torch_tensor,
    prepare_image,
)
from ..plan import RAW, UNIT_FLOAT, BatchPlan
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
    plan: BatchPlan, images: list[PreparedImage], *, device: torch.device, channels_first: bool = True,
    out_dtype=None, stack: bool = True, out: torch.Tensor | None = None,
) -> torch.Tensor | list[torch.Tensor]:
    """Runs `plan` on `images` on `device` (see the module docstring).

    Args:
        plan (`BatchPlan`): geometry and value map of every image.
        images (`list[PreparedImage]`): the inputs (`prepare`d), one per `plan.images` entry.
        device (`torch.device`): from `resolve_device`.
        channels_first (`bool`, *optional*, defaults to `True`): (C, H, W) outputs, else (H, W, C).
        out_dtype (`np.dtype` or `"bfloat16"`, *optional*): output dtype (the plan's own when `None`).
        stack (`bool`, *optional*, defaults to `True`): one (N, ...) tensor when every output has the same shape.
        out (`torch.Tensor`, *optional*): a contiguous (N, ...) tensor of the output dtype on `device` to write.
    """
    dtype = torch_dtype(plan, images, out_dtype)
    check_sources(plan, images)
    shapes = []
    for item in plan.images:
        h, w = item.geometry.out_hw
        shapes.append((item.channels, h, w) if channels_first else (h, w, item.channels))
    numels = [int(np.prod(shape)) for shape in shapes]
    out_offsets = np.concatenate([[0], np.cumsum(numels)]).astype(np.int64)
    uniform = len(set(shapes)) == 1
    if out is not None:
        check_out(out, (len(shapes),) + shapes[0] if uniform else None, dtype, device)
        flat = out.view(-1)
    else:
        flat = torch.empty(int(out_offsets[-1]), dtype=dtype, device=device)

    groups: dict[object, list[int]] = {}
    for i, (item, image) in enumerate(zip(plan.images, images)):
        key = ("device", image.tensor.dtype) if image.tensor is not None else ("host", item.source == RAW)
        groups.setdefault(key, []).append(i)
    for (where, _), indices in groups.items():
        _launch(plan, images, indices, where == "device", flat, out_offsets, device, channels_first)

    if out is not None:
        return out
    if stack and uniform:
        return flat.view((len(shapes),) + shapes[0])
    views = [flat[out_offsets[i] : out_offsets[i + 1]].view(shape) for i, shape in enumerate(shapes)]
    if out_dtype is None:
        # A list keeps each image's own result dtype, as the numpy backend's does (the batch buffer holds the
        # promoted dtype, from which the narrower values come back exactly).
        own = [getattr(torch, numpy_backend.output_dtype(plan, [image], None, [item]).name)
               for item, image in zip(plan.images, images)]
        views = [v if v.dtype == dtype else v.to(dtype) for v, dtype in zip(views, own)]
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


def _launch(plan, images, indices, on_device: bool, flat, out_offsets, device, channels_first: bool) -> None:
    """One kernel launch for the images `indices`, which share a source dtype (and, on the device, a buffer)."""
    items = [plan.images[i] for i in indices]
    float_src = items[0].source == RAW
    max_channels = max(item.channels for item in items)
    max_pixels = max(item.geometry.out_hw[0] * item.geometry.out_hw[1] for item in items)
    if float_src:
        table = params = _params(plan, max_channels, device)
        table_offsets = {}
    else:
        table, table_offsets = _value_tables(plan, items, flat.dtype, device)
        params = table

    descriptor = _Descriptor(items, [int(out_offsets[i]) for i in indices], table_offsets)
    stage = _stage_device if on_device else _stage_host
    src, desc = stage(plan, images, indices, descriptor, device, float_src)
    vm = plan.value_map
    index_64 = max(src.numel(), flat.numel()) > INT32_INDEX_LIMIT
    ops.crop_normalize_into(
        src, desc, table, params, flat, max_pixels, max_channels, vm.do_rescale, vm.do_normalize,
        not channels_first, index_64,
    )


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


def _stage_host(plan, images, indices, descriptor, device, float_src: bool):
    """Host images without a GPU resize: resized with Pillow (thread pool) when the plan says so; the crop windows
    and the descriptor travel in one upload. Returns the device (src, desc) the crop/normalize kernel reads."""
    if not float_src and any(gpu_resize.on_gpu(plan.images[i], images[i]) for i in indices):
        return _stage_host_gpu_resize(plan, images, indices, descriptor, device)
    src_dtype = np.dtype(np.float32 if float_src else np.uint8)
    run = staging.runner(len(indices))

    def window(k):
        item = plan.images[indices[k]]
        (y0, y1), (x0, x1), _, _ = item.geometry.source_window()
        pixels = numpy_backend.resized_pixels(images[indices[k]], item)[y0:y1, x0:x1]
        return pixels.astype(src_dtype, copy=False)

    windows = run(window, len(indices))
    starts = np.concatenate([[0], np.cumsum([w.size for w in windows])]).astype(np.int64)
    desc = descriptor([(int(starts[k]), (w.shape[1] * w.shape[2], w.shape[2], 1)) for k, w in enumerate(windows)])
    (desc_view,), src, _ = staging.upload_sections([desc], windows, src_dtype, device, run, transient=True)
    return src, desc_view


def _stage_host_gpu_resize(plan, images, indices, descriptor, device):
    """Uploads, for each image the GPU resizes, only the source rectangle its crop window reads (other images:
    their final window), then runs the resample passes into a work buffer: two launches at most."""
    run = staging.runner(len(indices))

    resize_here = [gpu_resize.on_gpu(plan.images[i], images[i]) for i in indices]

    def part(k):
        """Of image k, what to upload and the (row, col) of the resized or source image it starts at."""
        item, image = plan.images[indices[k]], images[indices[k]]
        if resize_here[k]:
            pixels = numpy_backend.source_pixels(image, item)
            pixels = np.asarray(pixels) if isinstance(pixels, PIL.Image.Image) else pixels
            pixels = pixels[..., None] if pixels.ndim == 2 else pixels
            (sy0, sy1), (sx0, sx1) = gpu_resize.source_rect(item)
            return pixels[sy0:sy1, sx0:sx1], (sy0, sx0)
        (y0, y1), (x0, x1), _, _ = item.geometry.source_window()
        return numpy_backend.resized_pixels(image, item)[y0:y1, x0:x1], (y0, x0)

    parts = run(part, len(indices))
    windows = [pixels for pixels, _ in parts]
    starts = np.concatenate([[0], np.cumsum([w.size for w in windows])]).astype(np.int64)
    mappings = []
    for start, (pixels, (row0, col0)) in zip(starts, parts):
        row, col = pixels.shape[1] * pixels.shape[2], pixels.shape[2]
        mappings.append((int(start) - row0 * row - col0 * col, row, col, 1))
    items = tuple(plan.images[i] for i in indices)
    split, final, channels, tables, sources = gpu_resize.planned(items, tuple(mappings), tuple(resize_here))
    (*tables_t, desc_t), pixels_t, _ = staging.upload_sections(
        [*tables, descriptor(sources)], windows, np.dtype(np.uint8), device, run, transient=True
    )
    work = torch.empty(split + final, dtype=torch.uint8, device=device)
    _run_passes(pixels_t, work, split, tables_t, channels)
    return work[split:], desc_t


def _stage_device(plan, images, indices, descriptor, device, float_src: bool):
    """Device tensors: read in place when they share one storage (a 4-D batch and its views), else gathered into
    one buffer with a device-to-device copy. The descriptor (offsets, no addresses) is cached on the device."""
    tensors = [images[i].tensor for i in indices]
    resizing = any(plan.images[i].geometry.resample is not None for i in indices)
    # What each image's first kernel reads: the source rectangle a GPU resize needs, else the crop window.
    boxes = [
        gpu_resize.source_rect(plan.images[i]) if resizing else plan.images[i].geometry.source_window()[:2]
        for i in indices
    ]
    storage = tensors[0].untyped_storage()
    if all(t.untyped_storage().data_ptr() == storage.data_ptr() for t in tensors):
        itemsize = tensors[0].element_size()
        src = tensors[0].new_empty(0).set_(storage, 0, (storage.nbytes() // itemsize,), (1,))
        # Absolute mapping: element (r, c, ch) of image t is src[offset + r*s_row + c*s_col + ch*s_c].
        mappings = [(t.storage_offset(), *t.stride()) for t in tensors]
    else:
        rects = [t[y0:y1, x0:x1] for t, ((y0, y1), (x0, x1)) in zip(tensors, boxes)]
        src = torch.cat([r.reshape(-1) for r in rects])
        starts = np.concatenate([[0], np.cumsum([r.numel() for r in rects])])
        mappings = [
            (int(s) - y0 * r.shape[1] * r.shape[2] - x0 * r.shape[2], r.shape[1] * r.shape[2], r.shape[2], 1)
            for s, r, ((y0, _), (x0, _)) in zip(starts, rects, boxes)
        ]
    if resizing:
        return _device_gpu_resize(plan, indices, src, mappings, descriptor, device)
    sources = [
        (offset + y0 * s_row + x0 * s_col, (s_row, s_col, s_c))
        for (offset, s_row, s_col, s_c), ((y0, _), (x0, _)) in zip(mappings, boxes)
    ]
    desc = descriptor(sources)
    return src, staging.DESCRIPTORS.get((device, desc.tobytes()), lambda: staging.upload_array(desc, device))


def _device_gpu_resize(plan, indices, src, mappings, descriptor, device):
    """The resample passes for device images (mapped in `src`), then the crop/normalize inputs."""
    items = tuple(plan.images[i] for i in indices)

    def build():
        resize_here = tuple(item.geometry.resample is not None for item in items)
        split, final, channels, tables, sources = gpu_resize.planned(items, tuple(mappings), resize_here)
        tables = [*tables, descriptor(sources)]
        uploaded = staging.upload_sections(tables, [], np.dtype(np.uint8), device, staging.runner(1))[0]
        return split, final, channels, uploaded

    # Keyed by what the pass plan is computed from, so a repeated fixed-shape call skips planning altogether.
    key = (device, "resize", items, tuple(mappings), descriptor.key)
    split, final, channels, (*tables_t, desc_t) = staging.DESCRIPTORS.get(key, build)
    work = torch.empty(split + final, dtype=torch.uint8, device=device)
    _run_passes(src, work, split, tables_t, channels)
    return work[split:], desc_t


def _run_passes(src, work, split, tables, channels) -> None:
    """Stage 1 reads `src` and writes `work`; stage 2 (two-pass images) reads `work[:split]`, writes `work[split:]`."""
    stage1, tiles1, stage2, tiles2, blob = tables
    ops.resample_into(src, work, stage1, blob, tiles1, channels)
    if len(stage2):
        ops.resample_into(work[:split], work[split:], stage2, blob, tiles2, channels)
