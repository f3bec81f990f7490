#!/usr/bin/env python
"""`make gpu-check`: one command that proves the GPU path on a CUDA machine (see benchmarks/gpu/README.md).

    python benchmarks/gpu/check.py [--smoke] [--out DIR] [--parts tests,bench]
    make gpu-check [ARGS="--smoke ..."] [PY=python3]

Parts, each a subprocess under a hard time limit (a part that fails or runs out of time is reported and the next
one runs; the exit status is 1 if any failed):

- tests: the whole test suite (`pytest tests`; on a GPU machine the tests run on CUDA by themselves), with its
  JUnit XML and log. `tests/test_gpu_check.py` is left out: it runs this script in smoke mode, and the bench part
  that follows is the full version of the same code. With --smoke: one small test only (the suite that runs
  smoke mode is already running), so that this part's code runs too.
- bench: `suite.py`, the GPU benchmark (with --smoke: tiny cases, through the Triton interpreter without a GPU).

Then it writes the CSV, the markdown report and the PNG chart into the output folder (default
benchmarks/results/; build/gpu-check-smoke/ with --smoke), copies every output into $OUT when that variable names
another folder (the GPU machine hands back only $OUT), and prints the parts, the targets and, last, the headline
table. The segmentation cases' label comparison (ours against transformers' on the same logits) is printed just
before the headline.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from gpubench import chart, environment, parts, report  # this folder is sys.path[0]; none of these imports torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

PART_NAMES = ("tests", "bench")
LIMITS_S = {"tests": 240.0, "bench": 200.0}
SMOKE_LIMITS_S = {"tests": 120.0, "bench": 150.0}
TOTAL_LIMIT_S, SMOKE_TOTAL_LIMIT_S = 470.0, 300.0
REPORT_RESERVE_S = 10.0  # kept back from the total for the report
BENCH_MARGIN_S = 25.0  # the benchmark stops starting cases this long before its hard limit
SMOKE_TESTS = ["tests/test_kernels.py::test_ops_are_registered"]
# What this script writes into the output folder (removed at the start of a run, so nothing stale is reported).
TESTS_LOG, TESTS_JUNIT = "gpu_tests.log", "gpu_tests_junit.xml"
BENCH_LOG, BENCH_ROWS, BENCH_ENV = "gpu_bench.log", "gpu_bench_rows.jsonl", "gpu_env.json"
BENCH_CSV, BENCH_MD, BENCH_PNG = "gpu_bench.csv", "gpu_bench.md", "gpu_bench.png"
SUMMARY = "gpu_check_summary.txt"
OUTPUT_FILES = (TESTS_LOG, TESTS_JUNIT, BENCH_LOG, BENCH_ROWS, BENCH_ENV, BENCH_CSV, BENCH_MD, BENCH_PNG, SUMMARY)
TAIL_CHARS = 1500  # of a failed part's log, in the printed summary
MAX_FAILED_SHOWN = 20  # failed test ids in the printed summary (all of them are in the JUnit XML and the log)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="tiny cases (the Triton interpreter without a GPU) and one small test")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results, with --smoke "
                                                 "build/gpu-check-smoke)")
    parser.add_argument("--parts", default=",".join(PART_NAMES),
                        help=f"comma-separated parts to run, of {', '.join(PART_NAMES)} (default: all)")
    parser.add_argument("--tests-timeout", type=float, help="seconds for the tests part (default 240; smoke 120)")
    parser.add_argument("--bench-timeout", type=float, help="seconds for the bench part (default 200; smoke 150)")
    parser.add_argument("--total-timeout", type=float, help="seconds for everything (default 470; smoke 300)")
    args = parser.parse_args(argv)
    args.parts = [name.strip() for name in args.parts.split(",") if name.strip()]
    unknown = [name for name in args.parts if name not in PART_NAMES]
    if unknown or not args.parts:
        parser.error(f"--parts takes a comma-separated subset of {', '.join(PART_NAMES)}, got {unknown or 'none'}")
    limits = SMOKE_LIMITS_S if args.smoke else LIMITS_S
    args.limits = {"tests": args.tests_timeout or limits["tests"], "bench": args.bench_timeout or limits["bench"]}
    args.total = args.total_timeout or (SMOKE_TOTAL_LIMIT_S if args.smoke else TOTAL_LIMIT_S)
    if args.out is None:
        args.out = REPO / ("build/gpu-check-smoke" if args.smoke else "benchmarks/results")
    return args


def preflight() -> str | None:
    """Why this interpreter cannot run the check of this checkout, or None: fused_imgproc (and its kernels
    package, installed from kernels/) must import from this checkout, not from another install."""
    install = f"{sys.executable} -m pip install --no-deps --no-build-isolation -e {REPO}"
    try:
        spec = importlib.util.find_spec("fused_imgproc")
    except (ImportError, ValueError) as error:
        return f"fused_imgproc cannot be found by {sys.executable} ({error}); install this checkout: {install}"
    if spec is None or not spec.origin:
        return f"fused_imgproc is not installed for {sys.executable}; install this checkout: {install}"
    location = Path(spec.origin).resolve()
    if REPO / "fused_imgproc" not in location.parents:
        return (f"{sys.executable} imports fused_imgproc from {location.parent}, not from this checkout ({REPO}); "
                f"install this checkout: {install}")
    try:
        kernels = importlib.util.find_spec("fused_imgproc._kernels")
    except ImportError as error:
        return f"fused_imgproc._kernels cannot be imported ({error}); reinstall: {install}"
    if kernels is None or not kernels.origin or REPO / "kernels" not in Path(kernels.origin).resolve().parents:
        return f"fused_imgproc._kernels does not come from {REPO / 'kernels'}; reinstall: {install}"
    return None


def gpu_preflight() -> str | None:
    """Why the full check cannot run here (torch missing or seeing no CUDA GPU, or TRITON_INTERPRET=1), or None.
    Asked of a child python (importing torch takes a few seconds), so that a machine without a GPU is told at once
    instead of after the whole test suite."""
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        return "TRITON_INTERPRET=1 is set: the full check runs on a CUDA GPU; unset it, or use --smoke"
    probe = "import torch, triton; raise SystemExit(0 if torch.cuda.is_available() else 3)"
    try:
        result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                                check=False)
    except subprocess.TimeoutExpired:
        return "importing torch and triton took more than 120 s"
    if result.returncode == 3:
        return "torch sees no CUDA GPU: the full check needs one (--smoke runs without, through the interpreter)"
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["(no output)"])[-1]
        return f"torch and triton cannot be imported by {sys.executable}: {last}"
    return None


def publish(out: Path) -> None:
    """Copy the outputs into $OUT (the folder the GPU machine hands back) when it is set and is another folder."""
    target = os.environ.get("OUT")
    if not target:
        return
    target_path = Path(target)
    target_path.mkdir(parents=True, exist_ok=True)
    if target_path.resolve() == out.resolve():
        return
    for name in OUTPUT_FILES:
        if (out / name).is_file():
            shutil.copyfile(out / name, target_path / name)


def run_tests(out: Path, limit_s: float, smoke: bool, env: dict[str, str]) -> parts.PartResult:
    selection = SMOKE_TESTS if smoke else ["--ignore=tests/test_gpu_check.py", "tests"]
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={out / TESTS_JUNIT}",
               "--durations=15", *selection]
    result = parts.run_part("tests", command, out / TESTS_LOG, limit_s, REPO, env)
    totals, failed = parts.pytest_summary(out / TESTS_LOG, out / TESTS_JUNIT)
    if totals:
        result.summary = totals if result.status != "timed out" else f"killed at its limit; {totals}"
    result.details = failed
    return result


def run_bench(out: Path, limit_s: float, smoke: bool, env: dict[str, str]) -> parts.PartResult:
    budget = max(limit_s - BENCH_MARGIN_S, limit_s / 2)
    command = [sys.executable, str(HERE / "suite.py"), "--out", str(out), "--budget-s", f"{budget:.0f}"]
    return parts.run_part("bench", command + (["--smoke"] if smoke else []), out / BENCH_LOG, limit_s, REPO, env)


def render(out: Path, results: list[parts.PartResult], smoke: bool) -> tuple[str, str, str]:
    """Write the CSV, markdown and PNG from the rows the benchmark left (all of them, or as many as it measured
    before it failed or was killed); returns (targets table, segmentation labels table or "", headline table)."""
    rows = report.derive(report.load_rows(out / BENCH_ROWS))
    if (out / BENCH_ENV).is_file():
        env = json.loads((out / BENCH_ENV).read_text())
    else:  # the benchmark died before it wrote its environment
        env = dict(environment.collect(REPO), mode="smoke" if smoke else "full", device="unknown")
    found = report.targets(rows)
    report.write_csv(rows, env, out / BENCH_CSV)
    (out / BENCH_MD).write_text(report.markdown(rows, env, [result.line() for result in results], found))
    versions = ", ".join(f"{name} {env.get(name, '?')}" for name in ("torch", "triton", "transformers", "torchvision"))
    title = f"make gpu-check{' --smoke' if smoke else ''}: {env.get('gpu')}, {env.get('date')}"
    notes = ["median per call, log scale; red: fused_imgproc (Triton backend), grey: a device copy of the same bytes",
             f"{versions}; driver {env.get('driver')}"]
    chart.draw(out / BENCH_PNG, rows, title, notes)
    return report.targets_table(found, env.get("mode") == "smoke"), report.seg_labels(rows), report.headline(rows)


def _exit_on_sigterm(signum, frame) -> None:
    """SIGTERM as SystemExit, so that the running part's process group is stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    started = time.monotonic()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:
        (out / name).unlink(missing_ok=True)
    problem = preflight() or (None if args.smoke else gpu_preflight())
    if problem:
        print(f"[gpu-check] cannot run: {problem}", flush=True)
        return 2
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    results: list[parts.PartResult] = []
    for name in args.parts:
        left = args.total - (time.monotonic() - started) - (REPORT_RESERVE_S if "bench" in args.parts else 0)
        limit = min(args.limits[name], left)
        if limit < 10:
            results.append(parts.PartResult(name, "skipped", 0.0, 0.0, None, None, "no time left in the total limit"))
            print(f"[gpu-check] {results[-1].line()}", flush=True)
            continue
        log = out / (TESTS_LOG if name == "tests" else BENCH_LOG)
        print(f"[gpu-check] {name}: running (limit {limit:.0f} s, log {log})", flush=True)
        runner = run_tests if name == "tests" else run_bench
        results.append(runner(out, limit, args.smoke, env))
        print(f"[gpu-check] {results[-1].line()}", flush=True)
        publish(out)

    targets_text = labels_text = headline_text = ""
    if "bench" in args.parts:
        try:
            targets_text, labels_text, headline_text = render(out, results, args.smoke)
        except Exception as error:  # noqa: BLE001 (a report that cannot be written fails the check, loudly)
            results.append(parts.PartResult("report", "failed", 0.0, 0.0, None, None,
                                            f"{type(error).__name__}: {error}"))

    block = ["== gpu-check: parts ==", *(result.line() for result in results)]
    for result in results:
        if result.details:
            block.append(f"-- {result.name}: failed tests ({len(result.details)}) --")
            shown = result.details[:MAX_FAILED_SHOWN]
            block += shown + ([f"... and {len(result.details) - len(shown)} more"] if len(result.details) > len(shown)
                              else [])
        if not result.ok and result.status != "skipped" and result.log is not None:
            block += [f"-- {result.name}: end of {result.log.name} --", parts.tail(result.log, TAIL_CHARS)]
    verdict = "all parts passed" if all(r.ok for r in results) else "FAILED: " + ", ".join(
        f"{r.name} {r.status}" for r in results if not r.ok)
    block.append(f"== gpu-check: {verdict} in {time.monotonic() - started:.0f} s; outputs in {out} ==")
    if targets_text:
        block += ["", "== targets ==", targets_text]
    if labels_text:
        block += ["", "== segmentation labels (ours vs transformers) ==", report.SEG_LEGEND, "", labels_text]
    if headline_text:
        block += ["", "== headline ==", report.HEADLINE_LEGEND, "", headline_text]
    text = "\n".join(block)
    (out / SUMMARY).write_text(text + "\n")
    publish(out)
    print("\n" + text, flush=True)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
