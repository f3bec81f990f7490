"""One timer for the GPU run and its CPU smoke mode, rotating input sets, and CUDA-graph replay.

- `Timer.device_time(fn)`: on CUDA `triton.testing.do_bench(fn, warmup, rep, return_mode="median")` (CUDA events
  around each call, L2 flushed between calls by do_bench); on the CPU a warm-up call then the median of a few
  `time.perf_counter` samples.
- `Timer.wall_time(fn)`: the host clock around each call followed by `torch.cuda.synchronize()` (no
  synchronisation on the CPU), the median of many calls, within a time cap. For end-to-end latency (host image in,
  device tensor out) and for implementations that run on the host.
- `Rotation`: calls a function on each of several input sets in turn, so that repeated calls do not find their
  inputs in the cache.
- `capture_graphs`: one CUDA graph per input set, replayed in turn; a capture that fails is reported, not raised.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Timing:
    """A median in milliseconds, how many samples it is the median of (None: do_bench chose), and the method."""

    median_ms: float
    samples: int | None
    method: str


class Timer:
    """Times callables on `device` ("cuda" or "cpu"); `smoke` shortens every measurement."""

    def __init__(self, device: str, smoke: bool):
        self.cuda = device == "cuda"
        self.smoke = smoke
        # do_bench's warm-up and measuring windows (ms of GPU time); CPU repetitions after one warm-up call.
        self.warmup_ms, self.rep_ms = (2, 10) if smoke else (10, 60)
        self.cpu_repeats = 2 if smoke else 7
        # Host-clock measurements: at least `wall_min` samples, at most `wall_max`, stopping after `wall_cap_s`.
        self.wall_min, self.wall_max, self.wall_cap_s = (2, 3, 0.5) if smoke else (3, 300, 1.0)

    def _synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def device_time(self, fn: Callable[[], Any]) -> Timing:
        """Time of one call as the device sees it (CUDA events via do_bench), or perf_counter on the CPU."""
        if self.cuda:
            from triton.testing import do_bench

            median = do_bench(fn, warmup=self.warmup_ms, rep=self.rep_ms, return_mode="median")
            return Timing(float(median), None, "do_bench")
        fn()
        samples = []
        for _ in range(self.cpu_repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        return Timing(statistics.median(samples) * 1e3, len(samples), "perf_counter")

    def wall_time(self, fn: Callable[[], Any]) -> Timing:
        """Host clock per call, synchronising the device after each call, median of many (after one warm-up)."""
        fn()
        self._synchronize()
        samples: list[float] = []
        began = time.perf_counter()
        while len(samples) < self.wall_min or (
            len(samples) < self.wall_max and time.perf_counter() - began < self.wall_cap_s
        ):
            start = time.perf_counter()
            fn()
            self._synchronize()
            samples.append(time.perf_counter() - start)
        method = "host clock + sync" if self.cuda else "host clock"
        return Timing(statistics.median(samples) * 1e3, len(samples), method)


class Rotation:
    """`rotation()` calls `fn(items[i])` for i = 0, 1, ..., len(items) - 1, 0, 1, ... and returns its result."""

    def __init__(self, fn: Callable[[Any], Any], items: Sequence[Any]):
        if not items:
            raise ValueError("a rotation needs at least one item")
        self.fn, self.items, self.next = fn, list(items), 0

    def __call__(self) -> Any:
        item = self.items[self.next]
        self.next = (self.next + 1) % len(self.items)
        return self.fn(item)


@dataclass
class Graphs:
    """Captured CUDA graphs, one per input set, with the output each captured call returned."""

    graphs: list[Any]
    outputs: list[Any]

    def replayer(self) -> Rotation:
        return Rotation(lambda graph: graph.replay(), self.graphs)


def capture_graphs(call: Callable[[Any], Any], items: Sequence[Any]) -> tuple[Graphs | None, str]:
    """Capture `call(item)` once per item into its own CUDA graph, after one warm-up call per item on a side stream
    (the processor caches its device tables on the first call; capture needs them cached). Returns `(graphs, "")`,
    or `(None, reason)` when warm-up or capture raised, so the caller can fall back to eager timing."""
    import torch

    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for item in items:
                call(item)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graphs, outputs = [], []
        for item in items:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                outputs.append(call(item))
            graphs.append(graph)
        torch.cuda.synchronize()
    except Exception as error:  # noqa: BLE001 (any failure to capture is a result to report, not a crash)
        reason = f"capture failed: {type(error).__name__}: {error}".replace("\n", " ")
        try:
            torch.cuda.synchronize()
        except Exception as later:  # noqa: BLE001 (a broken context: report both)
            reason += f"; then synchronize failed: {type(later).__name__}: {later}"
        return None, reason[:400]
    return Graphs(graphs, outputs), ""
