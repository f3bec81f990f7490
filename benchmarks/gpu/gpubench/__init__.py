"""Helpers of `make gpu-check` (benchmarks/gpu/check.py and benchmarks/gpu/suite.py).

- `parts`: each part of the check as a subprocess under a hard time limit, its log, pytest's summary.
- `timing`: one timer for both machines (`triton.testing.do_bench` on CUDA, `perf_counter` medians on the CPU),
  rotating input sets and CUDA-graph replay.
- `traffic`: the bytes-moved model behind the GB/s figures.
- `environment`: the machine and library versions stamped on every result row.
- `peers`: the implementations we are measured against, each only where installed.
- `report`: the CSV, the markdown tables, the targets and the headline table; `chart`: the PNG bar chart.

`parts`, `traffic`, `environment`, `report` and `chart` import neither torch nor triton.
"""
