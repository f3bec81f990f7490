"""The processors' call cache: a repeated call of the same shapes does only the pixels' work.

An inference server calls its processor once per request, with the same settings and mostly the same image
shapes. On the Triton backend everything a call does besides moving pixels and launching kernels (argument checks,
the plan, descriptor rows, the resize's pass plan, value tables) depends only on:

- the processor's settings (every config attribute, compared by value, so changing one in place is seen);
- the call's arguments (by value and type: `do_resize=1` is not `do_resize=True`);
- the resource limits in force (`fused_imgproc.limits`);
- each input's type, shape and dtype (for tensors also their strides, storage offset and device; for PIL images
  their mode, size and whether a transparency key is set).

A processor keeps, for its `MAX_ENTRIES` most recent such keys (and at most `MAX_TABLE_BYTES` of their device
tables: a batch of 64 images holds about 2 MB), the backend's `Program` and how to prepare each input again, so
that a repeated call prepares its inputs, stages host pixels and launches, and nothing else (docs/BEHAVIOUR.md
section 8).

A PIL image is prepared again on every replay (its conversion to RGB is the same function of the same mode, size
and transparency key); arrays and tensors by views alone. Never cached, always taking the full path with the same
results: arrays and tensors that are not uint8 (their preparation scans and classifies the values), PIL images in
modes read as such arrays (I;16, F, ...), uint8 arrays whose preparation is more than a view (alpha compositing, a
1-channel array made RGB), nested lists, and arguments that cannot be frozen into a key (a numpy array or a tensor
as `image_mean`, ...).
"""

from __future__ import annotations

import enum
import threading
from collections import OrderedDict

import numpy as np
import PIL.Image

from ..batch import BatchFeature, TensorType
from ..limits import get_limits

MAX_ENTRIES = 64  # per processor; an entry holds its device tables (descriptors, resize coefficients), no pixels
MAX_TABLE_BYTES = 64 << 20  # per processor: the device memory its entries may hold
_ATOMS = (bool, int, float, complex, str, bytes, enum.Enum, np.generic, np.dtype)


class CallCache:
    """A small LRU of `CachedCall`s, safe to share between threads."""

    def __init__(self, size: int = MAX_ENTRIES, table_bytes: int = MAX_TABLE_BYTES):
        self.size, self.table_bytes, self.entries, self.lock = size, table_bytes, OrderedDict(), threading.Lock()
        self.held = 0  # device table bytes of the entries
        self.settings: _Settings | None = None  # the processor's settings as last seen (see `call_key`)

    def get(self, key) -> CachedCall | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
            return entry

    def put(self, key, entry: CachedCall) -> None:
        """Keeps `entry`, evicting the least recently used ones past the entry count or the table bytes (an entry
        larger than the whole budget is not kept)."""
        size = entry.program.table_bytes
        if size > self.table_bytes:
            return
        with self.lock:
            previous = self.entries.pop(key, None)
            if previous is not None:
                self.held -= previous.program.table_bytes
            self.entries[key] = entry
            self.held += size
            while len(self.entries) > self.size or self.held > self.table_bytes:
                _, evicted = self.entries.popitem(last=False)
                self.held -= evicted.program.table_bytes

    def __len__(self) -> int:
        return len(self.entries)


class CachedCall:
    """What a repeated call replays: the backend's program, how to prepare each input again, the result's form, and
    the outputs besides `pixel_values` (`image_grid_thw`: they depend only on the plan; each replay returns a copy)."""

    __slots__ = ("as_list", "batch", "outputs", "program", "recipes", "tensor_type")

    def __init__(self, program, recipes, batch: bool, return_tensors, outputs: dict | None = None):
        self.program, self.recipes, self.batch = program, recipes, batch
        self.outputs = {name: _copy(value) for name, value in (outputs or {}).items()}  # not the caller's
        self.as_list = return_tensors is None and not program.concatenated
        # A single torch tensor is already what `return_tensors="pt"` converts to (BatchFeature keeps it as it is).
        single = program.batch_shape is not None or program.has_out
        torch_out = return_tensors is not None and TensorType(return_tensors) == TensorType.PYTORCH
        self.tensor_type = None if single and torch_out and not self.outputs else return_tensors

    def __call__(self, images, out) -> BatchFeature:
        flat = list(images) if self.batch else [images]
        prepared = [recipe(image) for recipe, image in zip(self.recipes, flat)]
        pixel_values = self.program.run(prepared, out)
        if self.as_list and not isinstance(pixel_values, list):
            pixel_values = list(pixel_values)
        data = {"pixel_values": pixel_values}
        for name, value in self.outputs.items():
            data[name] = _copy(value)
        return BatchFeature(data=data, tensor_type=self.tensor_type)


def _copy(value):
    """A new array or tensor of `value`'s contents."""
    return value.clone() if hasattr(value, "clone") else value.copy()


_SCALARS = frozenset({bool, int, float, str, type(None)})


def freeze(value):
    """A hashable, type-exact stand-in for an argument or setting; `TypeError` for a value that may change in place
    or compare by identity (arrays, tensors, other objects), which makes the call uncacheable."""
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if kind is dict:
        return (dict, tuple([(key, freeze(item)) for key, item in value.items()]))
    if kind is list or kind is tuple:
        return (kind, tuple([freeze(item) for item in value]))
    if isinstance(value, _ATOMS) or (kind.__module__ == "torch" and kind.__name__ in ("dtype", "device")):
        return (kind, value)
    raise TypeError(f"not cacheable: {kind.__name__}")


def _tensor_signature(tensor) -> tuple:
    return (type(tensor), tensor.shape, tensor.dtype, tensor.device, tensor.stride(), tensor.storage_offset())


def input_signature(images) -> tuple | None:
    """`(batch, per-input signature)` for one image (a 3-D array/tensor or a PIL image), a 4-D array/tensor or a
    flat list of images, else `None`."""
    kind = type(images)
    if kind is list or kind is tuple:
        signature = []
        for image in images:
            one = _image_signature(image)
            if one is None:
                return None
            signature.append(one)
        return (True, tuple(signature)) if signature else None
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return (True, (kind, images.shape, images.dtype))
    if _is_tensor(images) and images.dim() == 4:
        return (True, _tensor_signature(images))
    one = _image_signature(images)
    return None if one is None else (False, one)


def _image_signature(image) -> tuple | None:
    """What a single image's preparation depends on: the kind, shape and dtype of an array (for a tensor also its
    strides, storage offset and device), the mode, size and transparency key of a PIL image."""
    if isinstance(image, np.ndarray):
        return (type(image), image.shape, image.dtype) if image.ndim == 3 else None
    if _is_tensor(image):
        return _tensor_signature(image) if image.dim() == 3 else None
    if isinstance(image, PIL.Image.Image):
        return (type(image), image.mode, image.size, image.info.get("transparency") is not None)
    return None


def _is_tensor(value) -> bool:
    kind = type(value)
    return kind.__module__.startswith("torch") and hasattr(value, "untyped_storage")


def call_key(processor, images, arguments: tuple, extras: dict, out, device) -> tuple | None:
    """The key of a call (see the module docstring), or `None` when it cannot be cached."""
    signature = input_signature(images)
    if signature is None:
        return None
    try:
        settings = _settings(processor)
        frozen = [None if value is None else freeze(value) for value in arguments]
        if extras:
            frozen.append(freeze(dict(sorted(extras.items()))))
    except TypeError:
        return None
    if out is not None:
        if not _is_tensor(out):
            return None
        out = (out.shape, out.dtype, out.device, out.is_contiguous())
    return (type(processor), settings, tuple(frozen), _device_index(device), out, get_limits(), signature)


def batched(key: tuple) -> bool:
    """Whether the inputs of a call with this key (from `call_key`) are a batch (a list or a 4-D array/tensor)."""
    return key[-1][0]


class _Settings:
    """A processor's frozen settings with their hash computed once: while they do not change, every call's key holds
    this same object, which hashes and compares (by identity) in constant time."""

    __slots__ = ("frozen", "hash", "mutable", "values")

    def __init__(self, values: tuple, frozen: tuple):
        self.values, self.frozen, self.hash = values, frozen, hash(frozen)
        # Where a value could change without being reassigned (a dict, a list, a tuple holding one), the next call
        # freezes it again; for the others being the same object is being the same value.
        self.mutable = [k for k, value in enumerate(values) if not _immutable(value)]

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        return isinstance(other, _Settings) and self.frozen == other.frozen

    def still(self, values: tuple) -> bool:
        """Whether `values` (the processor's attributes now) are these settings."""
        return all(a is b for a, b in zip(values, self.values)) and all(
            freeze(values[k]) == self.frozen[k] for k in self.mutable
        )


def _immutable(value) -> bool:
    kind = type(value)
    if kind in _SCALARS or isinstance(value, (enum.Enum, np.generic)):
        return True
    return kind is tuple and all(type(item) in _SCALARS for item in value)


def _settings(processor) -> _Settings:
    values = processor._settings_getter(processor)
    cache = processor._calls()
    memo = cache.settings
    if memo is None or not memo.still(values):
        memo = cache.settings = _Settings(values, tuple(freeze(value) for value in values))
    return memo


def _device_index(device):
    """The current CUDA device when `device` names CUDA without an index (the current one may change between
    calls), else `None`."""
    if isinstance(device, str):
        unindexed = device == "cuda"
    else:
        unindexed = getattr(device, "type", None) == "cuda" and getattr(device, "index", 0) is None
    if not unindexed:
        return None
    import torch

    return torch.cuda.current_device() if torch.cuda.is_available() else None
