"""`make gpu-check ARGS=--smoke`: benchmarks/gpu/check.py end to end in smoke mode, and its pieces alone.

The smoke run executes every code path of the GPU check that can run without a GPU (tiny cases through the Triton
interpreter; on a GPU machine the same tiny cases on CUDA), so the script cannot rot while no GPU is around. Its
outputs go to pytest's temporary folders, never into the repository.
"""

from __future__ import annotations

import csv
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("triton")
pytest.importorskip("transformers")

REPO = Path(__file__).resolve().parents[1]
GPU_CHECK = REPO / "benchmarks" / "gpu"
SMOKE_TIMEOUT_S = 240


def _gpubench(module: str):
    """A module of benchmarks/gpu/gpubench (imported with that folder on sys.path only for the import)."""
    sys.path.insert(0, str(GPU_CHECK))
    try:
        return importlib.import_module(f"gpubench.{module}")
    finally:
        sys.path.remove(str(GPU_CHECK))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One `check.py --smoke` run, with $OUT set to another temporary folder (as on the GPU machine)."""
    out = tmp_path_factory.mktemp("gpu_check")
    published = tmp_path_factory.mktemp("published") / "OUT"
    env = dict(os.environ, OUT=str(published))
    started = time.monotonic()
    run = subprocess.run([sys.executable, str(GPU_CHECK / "check.py"), "--smoke", "--out", str(out)], cwd=REPO,
                         env=env, capture_output=True, check=False, text=True, timeout=SMOKE_TIMEOUT_S)
    return run, out, published, time.monotonic() - started


def _explain(run) -> str:
    return (f"exit {run.returncode}\n--- stdout (end) ---\n{run.stdout[-6000:]}\n"
            f"--- stderr (end) ---\n{run.stderr[-3000:]}")


def test_smoke_run_exits_zero(smoke):
    run, _, _, seconds = smoke
    assert run.returncode == 0, _explain(run)
    assert "all parts passed" in run.stdout
    assert seconds < SMOKE_TIMEOUT_S


def test_csv_has_the_columns_and_a_row_per_case_and_implementation(smoke):
    run, out, _, _ = smoke
    report, cases, peers = _gpubench("report"), _gpubench("cases"), _gpubench("peers")
    with open(out / "gpu_bench.csv", newline="") as stream:
        reader = csv.DictReader(stream)
        assert tuple(reader.fieldnames) == report.CSV_COLUMNS
        rows = list(reader)
    expected_cases = {case.id for case in cases.all_cases(cases.SMOKE)}
    ours = {row["case"]: row for row in rows if row["impl"] == peers.FUSED}
    assert set(ours) == expected_cases, _explain(run)
    for row in ours.values():
        # seg: `exact` is ours against the kernel's numpy model (every seg case)
        assert row["status"] == "ok" and row["exact"] == "yes", row
        assert float(row["median_ms"]) > 0 and float(row["gbps"]) > 0, row
    # The segmentation post-processing cases ran through the kernel (the interpreter here) and transformers', and
    # their labels were compared pixel by pixel: equal (ours follows this CPU torch's arithmetic here).
    seg_cases = {c.id for c in cases.all_cases(cases.SMOKE) if c.kind == "seg"}
    assert {c.dtype for c in cases.all_cases(cases.SMOKE) if c.kind == "seg"} == {"fp32", "bf16"}
    hf_seg = {row["case"]: row for row in rows if row["impl"] == peers.HF_OPS}
    assert set(hf_seg) == seg_cases, _explain(run)
    for case_id, row in hf_seg.items():
        assert row["status"] == "ok" and float(row["ratio_to_fused"]) > 0, row
        assert row["labels_differ"] == "0" and float(row["labels_differ_frac"]) == 0, row
        assert int(row["label_pixels"]) == int(ours[case_id]["batch"]) * 20 * 24, row
    numpy_rows = [row for row in rows if row["impl"] == peers.NUMPY]
    assert numpy_rows and all(row["status"] == "ok" and float(row["ratio_to_fused"]) > 0 for row in numpy_rows)
    copies = [row for row in rows if row["impl"] == peers.COPY]
    assert copies and all(row["status"] == "ok" for row in copies)
    # The copy ceiling is measured in the kernel cases, not the end-to-end ones (e2e, qwen).
    assert {row["case"] for row in copies} == {c.id for c in cases.all_cases(cases.SMOKE) if c.kind in ("crop", "clip")}
    # Every row carries the environment; the mode says smoke.
    assert all(row["mode"] == "smoke" and row["torch"] and row["date"] for row in rows)
    # Each (case, implementation) once.
    assert len({(row["case"], row["impl"]) for row in rows}) == len(rows)


def test_markdown_png_logs_and_test_part(smoke):
    run, out, _, _ = smoke
    markdown = (out / "gpu_bench.md").read_text()
    for section in ("## Parts", "## Targets", "## Segmentation labels", "## Headline", "## All results",
                    "### Semantic segmentation post-processing"):
        assert section in markdown
    labels = markdown.split("## Segmentation labels\n\n", 1)[1].split("\n\n## ", 1)[0]
    seg_lines = [line for line in labels.splitlines() if line.startswith("| seg ")]
    assert len(seg_lines) == 3 and all("| exact " in line for line in seg_lines), labels
    assert "== segmentation labels" in run.stdout and seg_lines[0] in run.stdout
    assert "segmentation post-processing >= 5x transformers" in markdown
    with Image.open(out / "gpu_bench.png") as image:
        assert image.format == "PNG" and image.width >= 600 and image.height >= 400
        image.load()
    assert (out / "gpu_bench.log").read_text().rstrip().splitlines()[-1].startswith("bench: ")
    assert "1 passed" in (out / "gpu_tests.log").read_text()
    assert (out / "gpu_tests_junit.xml").is_file()


def test_headline_table_is_printed_last(smoke):
    run, out, _, _ = smoke
    markdown = (out / "gpu_bench.md").read_text()
    headline = markdown.split("## Headline\n\n", 1)[1].split("\n\n## ", 1)[0]
    table = headline.rsplit("\n\n", 1)[1].strip()
    assert table.startswith("| case ") and table.count("\n") >= 3
    assert run.stdout.rstrip().endswith(table), _explain(run)
    assert (out / "gpu_check_summary.txt").read_text().rstrip().endswith(table)


def test_outputs_are_copied_into_OUT(smoke):
    _, out, published, _ = smoke
    names = ("gpu_bench.csv", "gpu_bench.md", "gpu_bench.png", "gpu_tests.log", "gpu_bench.log",
             "gpu_check_summary.txt")
    for name in names:
        assert (published / name).read_bytes() == (out / name).read_bytes(), name


def _alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc to watch the processes")
def test_a_part_past_its_limit_is_killed_with_its_children(tmp_path):
    parts = _gpubench("parts")
    script = ("import subprocess, sys, time\n"
              "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
              "print(child.pid, flush=True)\n"
              "time.sleep(60)\n")
    started = time.monotonic()
    result = parts.run_part("slow", [sys.executable, "-c", script], tmp_path / "slow.log", 1.5, tmp_path,
                            dict(os.environ))
    assert result.status == "timed out" and not result.ok
    assert time.monotonic() - started < 1.5 + 2 * parts.KILL_GRACE_S
    log = (tmp_path / "slow.log").read_text()
    assert "killed after its time limit" in log
    grandchild = int(next(line for line in log.splitlines() if line.strip().isdigit()))
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)


def test_a_failing_part_is_reported_with_its_last_line(tmp_path):
    parts = _gpubench("parts")
    result = parts.run_part("bad", [sys.executable, "-c", "print('what went wrong'); raise SystemExit(3)"],
                            tmp_path / "bad.log", 30, tmp_path, dict(os.environ))
    assert result.status == "failed" and result.returncode == 3
    assert "exit status 3" in result.summary and "what went wrong" in result.summary
    assert "bad" in result.line() and "failed" in result.line()


def test_pytest_summary_reads_the_totals_and_the_failed_tests(tmp_path):
    parts = _gpubench("parts")
    (tmp_path / "log").write_text("....F\nFAILED tests/test_x.py::test_y - boom\n"
                                  "1 failed, 4 passed, 2 skipped, 3 warnings in 12.34s (0:00:12)\n")
    (tmp_path / "junit.xml").write_text(
        '<?xml version="1.0"?><testsuites><testsuite tests="2"><testcase classname="tests.test_x" name="test_y">'
        '<failure message="boom"/></testcase><testcase classname="tests.test_x" name="test_z"/></testsuite>'
        "</testsuites>")
    totals, failed = parts.pytest_summary(tmp_path / "log", tmp_path / "junit.xml")
    assert totals == "1 failed, 4 passed, 2 skipped, 3 warnings in 12.34s (0:00:12)"
    assert failed == ["tests.test_x::test_y"]
    assert parts.pytest_summary(tmp_path / "missing.log", tmp_path / "missing.xml") == ("", [])


def test_bytes_moved_of_the_clip_and_crop_cases():
    traffic = _gpubench("traffic")
    # 480x640 -> 224x298, crop columns 37..261 read source columns 76..564 (bicubic taps), all 480 rows.
    assert traffic.resize_crop_bytes([(480, 640)], 224, 224, 3, 4) == 480 * 488 * 3 + 224 * 224 * 3 * 4
    assert traffic.crop_bytes([(256, 256), (230, 300)], 224, 3, 2) == 2 * (224 * 224 * 3 * 3)
    assert traffic.crop_bytes([(100, 300)], 224, 3, 4) == 100 * 224 * 3 + 224 * 224 * 3 * 4  # padded rows
    assert traffic.gigabytes_per_second(2_000_000, 1.0) == pytest.approx(2.0)


def test_cpu_timer_and_rotation():
    timing = _gpubench("timing")
    seen = []
    rotation = timing.Rotation(seen.append, ["a", "b", "c"])
    timer = timing.Timer("cpu", smoke=True)
    result = timer.device_time(rotation)
    assert result.method == "perf_counter" and result.samples == timer.cpu_repeats and result.median_ms >= 0
    assert seen == ["a", "b", "c"][: 1 + timer.cpu_repeats]
    wall = timer.wall_time(lambda: time.sleep(0.001))
    assert wall.samples >= timer.wall_min and wall.median_ms >= 1.0


def test_the_full_run_refuses_without_a_gpu(tmp_path):
    """Both the check (before its test part) and the benchmark itself refuse at once, exit status 2."""
    import torch

    if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1":
        pytest.skip("a GPU is here: the full run would run")
    for script, says in (("check.py", "cannot run"), ("suite.py", "needs a CUDA GPU")):
        run = subprocess.run([sys.executable, str(GPU_CHECK / script), "--out", str(tmp_path / script)], cwd=REPO,
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 2, run.stdout + run.stderr
        assert says in run.stdout and "--smoke" in run.stdout
    assert not (tmp_path / "check.py" / "gpu_tests.log").exists()


def test_unknown_parts_are_refused():
    run = subprocess.run([sys.executable, str(GPU_CHECK / "check.py"), "--parts", "tests,benchmark"], cwd=REPO,
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 2 and "--parts" in run.stderr


def test_a_failed_capture_is_reported_not_raised():
    """Without a usable CUDA device (here: none), capture fails inside; the caller gets the reason and falls back."""
    import torch

    if torch.cuda.is_available():
        pytest.skip("capture would work here; the GPU run exercises it")
    graphs, reason = _gpubench("timing").capture_graphs(lambda item: item, [1, 2])
    assert graphs is None and reason.startswith("capture failed: ")


def _row(case, kind, batch, layout, impl, role, median_ms, nbytes=1_000_000, status="ok", dtype="fp32", fmt="NCHW",
         **fields):
    return {"case": case, "kind": kind, "batch": batch, "layout": layout, "dtype": dtype, "format": fmt,
            "impl": impl, "role": role, "status": status, "method": "do_bench", "median_ms": median_ms,
            "samples": None, "bytes_moved": nbytes, "exact": "yes" if role == "ours" else "", "max_abs_diff": 0.0,
            "note": "", **fields}


def test_targets_headline_and_chart_of_a_gpu_run(tmp_path):
    """The report's GPU-only paths (graph rows, a failed capture, every target measured) on made-up rows."""
    report, chart, peers = _gpubench("report"), _gpubench("chart"), _gpubench("peers")
    uniform, ragged, clip, e2e = "crop b64 uniform fp32 NCHW", "crop b64 ragged fp32 NCHW", "clip b64 fp32 NCHW", \
        "e2e b1 host->bf16"
    seg1, seg16, seg16h = "seg b1 fp32 logits->labels", "seg b16 fp32 logits->labels", "seg b16 bf16 logits->labels"
    rows = [
        _row(uniform, "crop", 64, "uniform", peers.FUSED, "ours", 0.50),
        _row(uniform, "crop", 64, "uniform", peers.FUSED_GRAPH, "ours", 0.10),
        _row(uniform, "crop", 64, "uniform", peers.COPY, "ceiling", 0.095),
        _row(uniform, "crop", 64, "uniform", peers.EAGER, "peer", 0.60),
        _row(uniform, "crop", 64, "uniform", peers.COMPILE, "peer", 0.12),
        _row(uniform, "crop", 64, "uniform", peers.TV2, "peer", None, status="not installed"),
        _row(ragged, "crop", 64, "ragged", peers.FUSED, "ours", 0.52),
        _row(ragged, "crop", 64, "ragged", peers.FUSED_GRAPH, "ours", 0.105, status="fallback"),
        _row(clip, "clip", 64, "uniform", peers.FUSED, "ours", 1.0),
        _row(clip, "clip", 64, "uniform", peers.HF_TV, "peer", 4.0),
        _row(clip, "clip", 64, "uniform", peers.HF_PIL, "peer", 250.0),
        _row(e2e, "e2e", 1, "host", peers.FUSED, "ours", 0.4, dtype="bf16"),
        # seg: batch 1 a few differing labels (a warning), batch 16 too many (a failure), bf16 none
        _row(seg1, "seg", 1, "device", peers.FUSED, "ours", 0.05, fmt="labels"),
        _row(seg1, "seg", 1, "device", peers.HF_OPS, "peer", 0.4, fmt="labels", label_pixels=262144,
             labels_differ=3, labels_differ_frac=3 / 262144, note="3 of 262144 label pixels differ; more"),
        _row(seg16, "seg", 16, "device", peers.FUSED, "ours", 0.5, fmt="labels", exact=""),
        _row(seg16, "seg", 16, "device", peers.HF_OPS, "peer", 2.0, fmt="labels", label_pixels=4194304,
             labels_differ=8000, labels_differ_frac=8000 / 4194304),
        _row(seg16h, "seg", 16, "device", peers.FUSED, "ours", 0.3, fmt="labels", exact="", dtype="bf16"),
        _row(seg16h, "seg", 16, "device", peers.HF_OPS, "peer", 1.8, fmt="labels", dtype="bf16", label_pixels=4194304,
             labels_differ=0, labels_differ_frac=0.0),
    ]
    derived = report.derive(rows)
    found = {target.goal.split(" (")[0].split(":")[0]: target for target in report.targets(derived)}
    bandwidth = found["crop+normalize >= 90% of copy bandwidth"]
    assert bandwidth.verdict == "PASS" and bandwidth.measured == "95" and "graph" in bandwidth.basis
    # The ragged capture failed (fallback): ragged and uniform are compared eager to eager.
    assert found["ragged within 10% of uniform"].verdict == "PASS"
    assert found["ragged within 10% of uniform"].measured == "1.040"
    assert found[">= 1.3x torch.compile"].verdict == "MISS" and found[">= 1.3x torch.compile"].measured == "1.20"
    assert found[">= 3x torch eager"].verdict == "PASS" and found[">= 3x torch eager"].measured == "6.00"
    assert found["CLIP pipeline, batch 64"].verdict == "PASS"
    assert found["batch-1 end to end <= 0.5 ms"].verdict == "PASS"
    seg_target = found["segmentation post-processing >= 5x transformers"]
    assert seg_target.verdict == "MISS" and seg_target.measured == "4.00" and seg_target.where == seg16
    labels = {line.split("|")[1].strip(): [cell.strip() for cell in line.strip("|").split("|")]
              for line in report.seg_labels(derived).splitlines() if line.startswith("| seg ")}
    assert labels[seg1][1:6] == ["262144", "3", "0.001144%", "WARN", "yes"]
    assert labels[seg16][4:6] == ["FAIL", "-"] and labels[seg16h][4] == "exact"
    assert "3 of 262144" in labels[seg1][6]
    headline = report.headline(derived)
    line = next(text for text in headline.splitlines() if text.startswith(f"| {uniform}"))
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[1:5] == ["0.5000", "0.1000", "10", "95%"] and cells[5:8] == ["1.20x", "0.24x", "n/i"]
    assert "fallback" in next(text for text in headline.splitlines() if text.startswith(f"| {ragged}"))
    seg_line = next(text for text in headline.splitlines() if text.startswith(f"| {seg16} "))
    assert "8000 px != HF" in seg_line and "FAIL" in seg_line and "4.00x" in seg_line
    assert "labels = HF" in next(text for text in headline.splitlines() if text.startswith(f"| {seg16h} "))
    assert report.seg_labels([row for row in derived if row["kind"] != "seg"]) == ""
    chart.draw(tmp_path / "chart.png", derived, "made-up GPU run", ["a note"])
    with Image.open(tmp_path / "chart.png") as image:
        assert image.format == "PNG"
    report.write_csv(derived, {"gpu": "made-up", "mode": "full"}, tmp_path / "rows.csv")
    with open(tmp_path / "rows.csv", newline="") as stream:
        written = list(csv.DictReader(stream))
    assert len(written) == len(rows) and {row["gpu"] for row in written} == {"made-up"}
    seg_row = next(row for row in written if row["case"] == seg16 and row["impl"] == peers.HF_OPS)
    assert seg_row["labels_differ"] == "8000" and float(seg_row["labels_differ_frac"]) == pytest.approx(8000 / 4194304)
    graph_row = next(row for row in written if row["case"] == uniform and row["impl"] == peers.FUSED_GRAPH)
    assert float(graph_row["pct_of_copy"]) == pytest.approx(95.0) and float(graph_row["ratio_to_fused"]) == 0.2


def test_differing_segmentation_labels_warn_or_fail(tmp_path):
    """The suite's label comparison on made-up labels: a few differing pixels are a warning, more than
    SEG_FAIL_FRACTION of them a failure; the note gives torch's score gap between the two labels there."""
    import torch

    sys.path.insert(0, str(GPU_CHECK))
    try:
        suite = importlib.import_module("suite")
    finally:
        sys.path.remove(str(GPU_CHECK))
    cases = _gpubench("cases")
    bench = suite.Suite(cases.SMOKE, "cpu", None, suite.Rows(tmp_path / "rows.jsonl"), suite.Deadline(60), 0)
    case = cases.Case("seg", 2, "device", "fp32", "labels")
    logits = torch.randn(2, 5, 8, 8)
    theirs = torch.stack([torch.nn.functional.interpolate(x[None], size=(50, 40), mode="bilinear",
                                                          align_corners=False)[0].argmax(0) for x in logits])
    ours = theirs.clone()
    ours[1, 0, 0] = (ours[1, 0, 0] + 1) % 5  # 1 of 4000 pixels: below 0.1%
    fields, note = bench._seg_compare(case, logits, ours, theirs)
    assert fields == {"label_pixels": 4000, "labels_differ": 1, "labels_differ_frac": 1 / 4000}
    assert "1 of 4000 label pixels" in note and "in 1 of 2 images" in note and "differ by at most" in note
    assert len(bench.warnings) == 1 and not bench.failures
    ours[0, :10, :] = (ours[0, :10, :] + 1) % 5  # 401 pixels: a failure
    fields, _ = bench._seg_compare(case, logits, ours, theirs)
    assert fields["labels_differ"] == 401 and len(bench.failures) == 1 and "more than 0.1%" in bench.failures[0]
    assert bench._seg_compare(case, logits, theirs, theirs)[0]["labels_differ"] == 0 and len(bench.failures) == 1
