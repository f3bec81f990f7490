"""Getting bytes to the device without synchronising: reused pinned staging buffers, one asynchronous copy per
upload, and a cache of small device tensors (value tables, descriptors) for fixed-shape calls and CUDA graphs."""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict

import numpy as np
import torch

from . import numpy as numpy_backend

ALIGN = 64  # bytes between the sections of a staging buffer


class DeviceCache:
    """LRU of small device tensors keyed by their contents. Entries used during CUDA-graph capture are never
    evicted (a captured graph keeps reading them)."""

    def __init__(self, size: int = 256):
        self.size, self.entries, self.pinned, self.lock = size, OrderedDict(), {}, threading.Lock()

    def get(self, key, make):
        with self.lock:
            value = self.pinned.get(key)
            if value is None:
                value = self.entries.get(key)
                if value is not None:
                    self.entries.move_to_end(key)
        capturing = key[0].type == "cuda" and torch.cuda.is_current_stream_capturing()
        if value is None:
            if capturing:
                raise RuntimeError(
                    "fused_imgproc needs one call with the same shapes before CUDA-graph capture (to upload its "
                    "descriptor and value tables outside the graph)"
                )
            value = make()
        with self.lock:
            if capturing:
                self.pinned[key] = value
            else:
                self.entries[key] = value
                while len(self.entries) > self.size:
                    self.entries.popitem(last=False)
        return value


TABLES = DeviceCache()
DESCRIPTORS = DeviceCache()
# Objects holding device tables that a captured CUDA graph reads (programs first run during a capture): kept alive
# for the life of the process, whatever the caches evict.
_CAPTURED: list = []


def pin(holder) -> None:
    """Keeps `holder` (and the device tensors it references) alive for the rest of the process."""
    with DESCRIPTORS.lock:
        _CAPTURED.append(holder)


class _PinnedRing:
    """Two reused pinned host buffers per thread and device. A slot is refilled only after the copy that last
    read it has finished (its event; normally long done, so this does not wait)."""

    def __init__(self, device: torch.device):
        self.device, self.buffers, self.events, self.next = device, [None, None], [None, None], 0

    def upload(self, nbytes: int, fill) -> torch.Tensor:
        """Calls `fill(host_uint8_numpy_view)`, then copies those bytes to a new device buffer asynchronously."""
        slot, self.next = self.next, 1 - self.next
        if self.events[slot] is not None:
            self.events[slot].synchronize()
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < nbytes:
            buffer = torch.empty(max(nbytes, 1 << 20) * 5 // 4, dtype=torch.uint8, pin_memory=True)
            self.buffers[slot] = buffer
        fill(buffer.numpy()[:nbytes])
        device_buffer = torch.empty(nbytes, dtype=torch.uint8, device=self.device)
        device_buffer.copy_(buffer[:nbytes], non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        self.events[slot] = event
        return device_buffer


_local = threading.local()


class _HostRing:
    """The CPU stand-in of `_PinnedRing` (the interpreter's "device" is the host): two reused buffers per thread,
    filled in place. Only for transient uploads, read by the launches of the same call."""

    def __init__(self):
        self.buffers, self.next = [None, None], 0

    def upload(self, nbytes: int, fill) -> torch.Tensor:
        slot, self.next = self.next, 1 - self.next
        buffer = self.buffers[slot]
        if buffer is None or buffer.numel() < nbytes:
            buffer = self.buffers[slot] = torch.empty(max(nbytes, 1 << 20) * 5 // 4, dtype=torch.uint8)
        fill(buffer.numpy()[:nbytes])
        return buffer[:nbytes]


def upload(nbytes: int, fill, device: torch.device, transient: bool = False) -> torch.Tensor:
    """A device uint8 buffer holding the bytes `fill` writes (pinned staging on CUDA, in place on the CPU).

    `transient=True` (pixels and descriptors read only by this call's launches) lets the CPU reuse its buffers as
    the GPU path reuses its pinned ones, so the host work measured under the interpreter is the GPU call's; a
    cached upload (value tables, descriptors of device batches) must not be transient.
    """
    if device.type == "cpu":
        if transient:
            ring = getattr(_local, "host_ring", None)
            if ring is None:
                ring = _local.host_ring = _HostRing()
            return ring.upload(nbytes, fill)
        buffer = torch.empty(nbytes, dtype=torch.uint8)
        fill(buffer.numpy())
        return buffer
    if torch.cuda.is_current_stream_capturing():
        raise RuntimeError(
            "CUDA-graph capture needs every input already on the GPU: host images would be baked into the graph"
        )
    rings = _local.__dict__.setdefault("rings", {})
    ring = rings.get(device)
    if ring is None:
        ring = rings[device] = _PinnedRing(device)
    return ring.upload(nbytes, fill)


def upload_array(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A device copy of one array (see `upload_tables`)."""
    return upload_tables([np.ascontiguousarray(array)], device)[0]


def runner(n: int):
    """`run(f, n)` over the shared thread pool (Pillow and numpy copies release the GIL) when there is work for it."""
    pool = numpy_backend._pool() if n > 1 else None
    if pool is None:
        return lambda f, count: [f(k) for k in range(count)]
    return lambda f, count: list(pool.map(f, range(count)))


_TORCH_DTYPES = {
    np.dtype(name): getattr(torch, name) for name in ("uint8", "int16", "int32", "int64", "float16", "float32", "float64")
}


def upload_tables(tables: list[np.ndarray], device) -> list[torch.Tensor]:
    """Device copies of `tables` (each 64-byte aligned in one staging buffer) in one upload; kept by the caller."""
    sizes = [-(-table.nbytes // ALIGN) * ALIGN for table in tables]
    nbytes = sum(sizes)

    def fill(view):
        offset = 0
        for table, size in zip(tables, sizes):
            view[offset : offset + table.nbytes] = table.reshape(-1).view(np.uint8)
            offset += size

    buffer = upload(nbytes, fill, device)
    return [
        part[: table.nbytes].view(_TORCH_DTYPES[table.dtype]).view(table.shape)
        for part, table in zip(buffer.split(sizes), tables)
    ]


def upload_windows(windows: list[np.ndarray], starts: np.ndarray, dtype: np.dtype, device) -> torch.Tensor:
    """The pixel windows packed back to back (window k at element `starts[k]`) in a transient upload (see `upload`):
    the one copy of a call's host pixels. Returns the device buffer as a flat tensor of `dtype`.

    A large batch is copied by every core at once, in contiguous runs of windows of about equal bytes (the calling
    thread takes one run itself); a small one by the calling thread alone, where handing work to a pool costs more
    than it saves."""
    nbytes = int(starts[-1]) * dtype.itemsize
    pool = numpy_backend._pool() if len(windows) > 1 and nbytes >= PARALLEL_COPY_BYTES else None

    def fill(view):
        values = view.view(dtype)

        def copy(run):
            for k in range(*run):
                np.copyto(values[starts[k] : starts[k + 1]].reshape(windows[k].shape), windows[k])

        if pool is None:
            copy((0, len(windows)))
            return
        runs = balanced_runs(starts, numpy_backend.WORKERS)
        pending = [pool.submit(copy, run) for run in runs[1:]]
        try:
            copy(runs[0])
        finally:  # never leave a copy running into a buffer the next call may refill
            for future in pending:
                future.result()

    buffer = upload(nbytes, fill, device, transient=True)
    return buffer.view(_TORCH_DTYPES[dtype])


PARALLEL_COPY_BYTES = 4 << 20  # below this, one thread copies a call's pixels


def balanced_runs(starts: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Splits items `[0, n)` with element offsets `starts` (n + 1 of them) into at most `parts` contiguous runs of
    about equal size (none empty)."""
    n = len(starts) - 1
    cuts = np.searchsorted(starts, starts[-1] * np.arange(1, parts) / parts, side="left")
    bounds = sorted({0, n, *(int(c) for c in cuts if 0 < c < n)})
    return list(itertools.pairwise(bounds))
