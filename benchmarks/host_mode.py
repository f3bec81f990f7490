"""Shared by the benchmark modules (not a test module): whether the host-work cases can run here, a plain timer, and
the same-run ratio against transformers.

The host-work cases run the Triton backend under Triton's interpreter on CPU tensors with the kernel launches
stubbed out, so that what they time is the host work of a GPU call. They need torch and triton, no GPU (a GPU
machine measures them directly: benchmarks/gpu), and `TRITON_INTERPRET=1` set before the kernels are imported.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time


def host_skip_reason(torch) -> str | None:
    """None when the host-work cases can run (setting `TRITON_INTERPRET=1` if nothing decided it yet), else why
    not. `torch`: the module, or None when it is not installed."""
    if torch is None or importlib.util.find_spec("triton") is None:
        return "the host-work cases need torch and triton"
    if torch.cuda.is_available():
        return "host work is measured directly on a GPU machine (see benchmarks/gpu)"
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before the kernels are imported
    if os.environ["TRITON_INTERPRET"] != "1":
        return "needs TRITON_INTERPRET=1 (set before the kernels were imported)"
    return None


def seconds(fn, repeats: int) -> list[float]:
    """Wall-clock seconds of `repeats` calls of `fn`, one by one."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def record_ratio(benchmark, reference_call, repeats: int, name: str = "transformers_pil") -> None:
    """Times `reference_call` (transformers' `name` processor) `repeats` times right after `benchmark`'s case (ours)
    and records both medians in ms, `ratio_vs_<name>` (its median / ours: above 1 ours is faster) and
    `ratio_of_minimums[_vs_<name>]` (noise only adds time: on a shared machine the steadier one) in
    `benchmark.extra_info`. Nothing under `--benchmark-disable`."""
    if benchmark.stats is None:
        return
    stats = benchmark.stats.stats
    reference = seconds(reference_call, repeats)
    minimums = "ratio_of_minimums" if name == "transformers_pil" else f"ratio_of_minimums_vs_{name}"
    benchmark.extra_info["median_ms"] = round(stats.median * 1e3, 2)
    benchmark.extra_info[f"{name}_median_ms"] = round(statistics.median(reference) * 1e3, 2)
    benchmark.extra_info[f"ratio_vs_{name}"] = round(statistics.median(reference) / stats.median, 2)
    benchmark.extra_info[minimums] = round(min(reference) / stats.min, 2)
