"""The floor the host-work benchmarks compare with: a plain copy of the bytes a call stages (not a test module)."""

from __future__ import annotations

import time

import numpy as np


def median_copy_seconds(arrays, repeats: int = 15) -> float:
    """A plain single-threaded copy of every byte of `arrays` into one preallocated buffer (the floor): the median of
    `repeats` copies, in seconds."""
    total = sum(a.nbytes for a in arrays)
    buffer = np.empty(total, np.uint8)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        offset = 0
        for array in arrays:
            buffer[offset:offset + array.nbytes] = array.reshape(-1).view(np.uint8)
            offset += array.nbytes
        times.append(time.perf_counter() - start)
    return float(np.median(times))
