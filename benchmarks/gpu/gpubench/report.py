"""The benchmark's outputs from its rows: the CSV, the markdown report, the targets and the headline table.

Derived columns (per case, from the rows of the same case):

- `per_image_us`: median / batch;
- `gbps`: `bytes_moved` (see `traffic`) / median, decimal GB/s;
- `pct_of_copy`: `gbps` as a percentage of the copy ceiling's GB/s in the same case;
- `ratio_to_fused`: this row's median / the median of `fused (triton)` (eager, `out=`) in the same case: above 1
  the row is that many times slower than ours;
- `ratio_to_fused_graph`: the same against `fused (triton, CUDA graph)`, the replayed call: the kernels' time
  without the call's host work.

Segmentation post-processing rows (`seg`) carry `label_pixels` (label pixels compared) and, on the transformers row,
`labels_differ` and `labels_differ_frac`: the pixels where its labels differ from ours on the same logits.
`seg_labels` summarises them (with `cases.SEG_FAIL_FRACTION`: above it FAIL, below WARN, none: exact).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import environment, traffic
from .cases import SEG_FAIL_FRACTION
from .peers import COMPILE, COPY, EAGER, FUSED, FUSED_GRAPH, HF_OPS, HF_PIL, HF_TV, NUMPY, ORDER, TV2

RAW_COLUMNS = ("case", "kind", "batch", "layout", "dtype", "format", "impl", "role", "status", "method",
               "median_ms", "samples", "bytes_moved", "exact", "max_abs_diff", "label_pixels", "labels_differ",
               "labels_differ_frac", "note")
CSV_COLUMNS = ("case", "kind", "batch", "layout", "dtype", "format", "impl", "role", "status", "method",
               "median_ms", "per_image_us", "samples", "bytes_moved", "gbps", "pct_of_copy", "ratio_to_fused",
               "ratio_to_fused_graph", "exact", "max_abs_diff", "label_pixels", "labels_differ", "labels_differ_frac",
               "note", "mode", "device", *environment.FIELDS)
# Headline columns: (heading, implementation) for the peers compared with ours.
VERSUS = (("vs eager", EAGER), ("vs compile", COMPILE), ("vs tv2", TV2), ("vs HF tv", HF_TV),
          ("vs HF PIL", HF_PIL), ("vs numpy", NUMPY), ("vs HF ops", HF_OPS))
STATUS_MARK = {"not installed": "n/i", "n/a": "n/a", "error": "err", "skipped": "skip", "fallback": "fallback"}


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def load_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines file; a truncated last line (a run killed mid-write) is dropped."""
    rows = []
    if not Path(path).is_file():
        return rows
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def derive(rows: list[dict]) -> list[dict]:
    """Copies of `rows` with the derived columns (see the module docstring), ordered by case then implementation."""
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(dict(row))
    result = []
    for case_rows in by_case.values():
        ours = next((r for r in case_rows if r["impl"] == FUSED and r["status"] == "ok"), None)
        graph = next((r for r in case_rows if r["impl"] == FUSED_GRAPH and r["status"] == "ok"), None)
        copy = next((r for r in case_rows if r["impl"] == COPY and r["status"] == "ok"), None)
        copy_gbps = traffic.gigabytes_per_second(copy["bytes_moved"], copy["median_ms"]) if copy else math.nan
        for row in case_rows:
            median = _number(row.get("median_ms"))
            row["per_image_us"] = median * 1e3 / row["batch"] if row.get("batch") else math.nan
            nbytes = row.get("bytes_moved")
            row["gbps"] = traffic.gigabytes_per_second(nbytes, median) if nbytes else math.nan
            row["pct_of_copy"] = 100 * row["gbps"] / copy_gbps if copy_gbps > 0 else math.nan
            row["ratio_to_fused"] = median / ours["median_ms"] if ours and ours["median_ms"] > 0 else math.nan
            row["ratio_to_fused_graph"] = median / graph["median_ms"] if graph and graph["median_ms"] > 0 else math.nan
        case_rows.sort(key=lambda r: ORDER.index(r["impl"]) if r["impl"] in ORDER else len(ORDER))
        result.extend(case_rows)
    return result


def _cell(value) -> str:
    """CSV text of a value: blanks for missing numbers, 6 significant digits for floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_csv(rows: list[dict], env: dict, path: Path) -> None:
    """One line per (case, implementation) with every column of `CSV_COLUMNS` (the environment in every line)."""
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: _cell(row.get(column, env.get(column))) for column in CSV_COLUMNS})


def fmt_ms(value: float) -> str:
    if value is None or math.isnan(value):
        return "-"
    if value < 1:
        return f"{value:.4f}"
    return f"{value:.3f}" if value < 100 else f"{value:.1f}"


def _fmt(value: float, spec: str, suffix: str = "") -> str:
    return "-" if value is None or math.isnan(value) else f"{value:{spec}}{suffix}"


def _table(header: list[str], lines: Iterable[list[str]], right: set[int] | None = None) -> str:
    """A markdown table with padded columns (readable as plain text too)."""
    lines = [header, *lines]
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    right = right or set()

    def render(line):
        cells = [cell.rjust(w) if k in right else cell.ljust(w) for k, (cell, w) in enumerate(zip(line, widths))]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if k in right else "-" * (w + 2) for k, w in enumerate(widths)) + "|"
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def _case_index(rows: list[dict]) -> dict[str, dict[str, dict]]:
    index: dict[str, dict[str, dict]] = {}
    for row in rows:
        index.setdefault(row["case"], {})[row["impl"]] = row
    return index


def _best(impls: dict[str, dict]) -> dict | None:
    """Ours measured on the kernels: the CUDA-graph replay where it was captured, else the eager call."""
    for name in (FUSED_GRAPH, FUSED):
        row = impls.get(name)
        if row is not None and row["status"] == "ok":
            return row
    return None


def seg_verdict(peer: dict | None) -> str:
    """Of a seg case's transformers row: "exact" (no label differs from ours), "WARN" (some, at most
    `SEG_FAIL_FRACTION` of them), "FAIL" (more), or "-" (not compared)."""
    if not peer or peer.get("labels_differ") is None:
        return "-"
    differ, fraction = int(peer["labels_differ"]), _number(peer.get("labels_differ_frac"))
    if differ == 0:
        return "exact"
    return "FAIL" if math.isnan(fraction) or fraction > SEG_FAIL_FRACTION else "WARN"


def _seg_differ_cell(peer: dict | None) -> str:
    verdict = seg_verdict(peer)
    if verdict == "-":
        return "labels not compared"
    if verdict == "exact":
        return "labels = HF"
    return f"{int(peer['labels_differ'])} px != HF ({100 * _number(peer['labels_differ_frac']):.3g}%) {verdict}"


def headline(rows: list[dict]) -> str:
    """One line per case: ours eager (`out=`) and replayed from a CUDA graph, the bandwidth of the replay (of the
    eager call without one), how many times faster ours is than each peer (both eager), and the bit-exactness
    check. Printed last by check.py."""
    lines = []
    for case, impls in _case_index(rows).items():
        ours = impls.get(FUSED, {})
        if ours.get("status") != "ok":
            mark = STATUS_MARK.get(ours.get("status"), ours.get("status", "-"))
            lines.append([case, mark, *["-"] * (3 + len(VERSUS)), ours.get("exact") or "-"])
            continue
        graph = impls.get(FUSED_GRAPH)
        if graph is None:
            graph_cell = "-"
        elif graph["status"] == "ok":
            graph_cell = fmt_ms(graph["median_ms"])
        else:
            graph_cell = STATUS_MARK.get(graph["status"], graph["status"])
        best = _best(impls)
        versus = []
        for _, name in VERSUS:
            peer = impls.get(name)
            if peer is None:
                versus.append("-")
            elif peer["status"] == "ok":
                versus.append(_fmt(peer["ratio_to_fused"], ".2f", "x"))
            else:
                versus.append(STATUS_MARK.get(peer["status"], peer["status"]))
        exact = ours.get("exact") or "-"
        if graph is not None and graph.get("exact") == "NO":
            exact = "NO (graph)"
        if ours.get("kind") == "seg":  # ours against the kernel's numpy model, then against transformers
            exact = f"{exact}; {_seg_differ_cell(impls.get(HF_OPS))}"
        lines.append([case, fmt_ms(ours["median_ms"]), graph_cell, _fmt(best["gbps"], ".3g"),
                      _fmt(best["pct_of_copy"], ".0f", "%"), *versus, exact])
    header = ["case", "ours ms", "graph ms", "GB/s", "% copy", *(heading for heading, _ in VERSUS), "exact"]
    return _table(header, lines, right=set(range(1, len(header) - 1)))


HEADLINE_LEGEND = ("ours ms: fused (triton) eager, into out= (e2e, qwen: host clock, a new tensor; seg: new label "
                   "maps, device clock, no graph); graph ms: the "
                   "same call replayed from a CUDA graph (the kernels without the call's host work). GB/s and % copy "
                   "(of a device copy of the same bytes, same run; no copy in e2e and qwen): of the graph replay, "
                   "else of the eager call. vs X: X's median / ours eager, above 1 ours is faster. exact: "
                   "bit-identical to our numpy backend. seg (logits -> labels): exact is ours against the kernel's "
                   "numpy model (32 classes of image 0 to 160x200), then the label pixels that differ from "
                   "transformers' (HF ops) "
                   f"on the same logits: WARN up to {100 * SEG_FAIL_FRACTION:g}% of them, FAIL above (fails the "
                   "check). n/i: not installed; -: not run for this case.")


@dataclass(frozen=True)
class Target:
    goal: str
    basis: str
    measured: str
    where: str
    verdict: str


def _large(values: Iterable[int]) -> set[int]:
    """Batches the throughput targets apply to: 64 and above, else (smoke sizes) the largest."""
    values = set(values)
    return {b for b in values if b >= 64} or ({max(values)} if values else set())


def targets(rows: list[dict]) -> list[Target]:
    """The project's GPU targets (benchmarks/gpu/README.md), each at its worst case among the rows. Kernel targets
    (bandwidth, ragged, torch peers) compare ours replayed from a CUDA graph (eager where capture failed) with the
    peers' eager calls, at batches of 64 and more, where the peers are bound by the device, not by their launches;
    the pipeline and latency targets compare eager calls."""
    index = _case_index(rows)
    kinds = {case: next(iter(impls.values()))["kind"] for case, impls in index.items()}
    found: list[Target] = []

    def worst(goal: str, basis: str, candidates: list[tuple[float, str]], passes, spec: str,
              lowest_is_worst: bool = True) -> None:
        candidates = [(value, where) for value, where in candidates if not math.isnan(value)]
        if not candidates:
            found.append(Target(goal, basis, "-", "-", "n/a (not measured)"))
            return
        value, where = (min if lowest_is_worst else max)(candidates)
        found.append(Target(goal, basis, format(value, spec), where, "PASS" if passes(value) else "MISS"))

    crop = {case: impls for case, impls in index.items() if kinds[case] == "crop" and _best(impls)}
    large = _large(_best(impls)["batch"] for impls in crop.values())
    crop = {case: impls for case, impls in crop.items() if _best(impls)["batch"] in large}
    used = {_best(impls)["impl"] for impls in crop.values()}
    kernel = {frozenset([FUSED_GRAPH]): "ours graph replay", frozenset([FUSED]): "ours eager (no graph)"}.get(
        frozenset(used), "ours graph replay (eager where capture failed)")
    worst("crop+normalize >= 90% of copy bandwidth (uniform, fp32 and bf16)", kernel + ", % of copy",
          [(_best(impls)["pct_of_copy"], case) for case, impls in crop.items() if "uniform" in case],
          lambda v: v >= 90, ".0f")
    ratios = []
    for case, impls in crop.items():
        uniform = index.get(case.replace("ragged", "uniform"), {})
        for name in (FUSED_GRAPH, FUSED) if "ragged" in case else ():  # like with like: graphs, else eager calls
            pair = impls.get(name), uniform.get(name)
            if all(row is not None and row["status"] == "ok" for row in pair):
                ratios.append((pair[0]["median_ms"] / pair[1]["median_ms"], case))
                break
    worst("ragged within 10% of uniform", kernel + ", time ragged / uniform", ratios, lambda v: v <= 1.10, ".3f",
          lowest_is_worst=False)
    for name, factor in ((COMPILE, 1.3), (EAGER, 3.0)):
        worst(f">= {factor:g}x {name} (crop)", f"{name} / {kernel}",
              [(impls[name]["median_ms"] / _best(impls)["median_ms"], case) for case, impls in crop.items()
               if name in impls and impls[name]["status"] == "ok"], lambda v, f=factor: v >= f, ".2f")

    clip = {case: impls for case, impls in index.items() if kinds[case] == "clip" and impls.get(FUSED, {}).get(
        "status") == "ok"}
    biggest = max((impls[FUSED]["batch"] for impls in clip.values()), default=None)
    for name, factor in ((HF_TV, 3.0), (HF_PIL, 30.0)):
        worst(f"CLIP pipeline, batch {biggest}: >= {factor:g}x {name}", "both eager",
              [(_number(impls[name]["ratio_to_fused"]), case) for case, impls in clip.items()
               if impls[FUSED]["batch"] == biggest and name in impls and impls[name]["status"] == "ok"],
              lambda v, f=factor: v >= f, ".1f")

    seg = [(_number(impls[HF_OPS]["ratio_to_fused"]), case) for case, impls in index.items()
           if kinds[case] == "seg" and impls.get(FUSED, {}).get("status") == "ok"
           and impls.get(HF_OPS, {}).get("status") == "ok"]
    worst("segmentation post-processing >= 5x transformers", "both eager, device time", seg, lambda v: v >= 5.0,
          ".2f")

    e2e = [(impls[FUSED]["median_ms"], case) for case, impls in index.items()
           if kinds[case] == "e2e" and impls.get(FUSED, {}).get("status") == "ok"]
    worst("batch-1 end to end <= 0.5 ms", "eager, host clock + sync, ms", e2e, lambda v: v <= 0.5, ".3f",
          lowest_is_worst=False)
    return found


def targets_table(found: list[Target], smoke: bool) -> str:
    table = _table(["target", "basis", "worst", "where", "verdict"],
                   [[t.goal, t.basis, t.measured, t.where, t.verdict] for t in found])
    if smoke:
        return "Smoke sizes under the interpreter: the verdicts exercise the code, they mean nothing.\n\n" + table
    return table


def full_tables(rows: list[dict]) -> str:
    """Every row, one table per kind of case."""
    sections = []
    titles = {"e2e": "Batch-1 end to end (host clock)", "clip": "CLIP pipeline (resize + crop + normalize)",
              "qwen": "Qwen2.5-VL end to end: patch rows (host clock)",
              "seg": "Semantic segmentation post-processing: logits -> labels",
              "crop": "Crop + normalize kernel (no resize)"}
    for kind, title in titles.items():
        lines = []
        for row in rows:
            if row["kind"] != kind:
                continue
            diff = _number(row.get("max_abs_diff"))
            lines.append([row["case"], row["impl"], row["status"], fmt_ms(_number(row.get("median_ms"))),
                          _fmt(row["per_image_us"], ".2f"), _fmt(row["gbps"], ".3g"), _fmt(row["pct_of_copy"], ".0f"),
                          _fmt(row["ratio_to_fused"], ".2f"), _fmt(row["ratio_to_fused_graph"], ".2f"),
                          row.get("exact") or "",
                          "" if math.isnan(diff) else f"{diff:.3g}", row.get("method") or "",
                          (row.get("note") or "").replace("|", "/")])
        if lines:
            header = ["case", "implementation", "status", "median ms", "us/image", "GB/s", "% copy", "x fused",
                      "x graph", "exact", "max diff", "method", "note"]
            sections.append(f"### {title}\n\n" + _table(header, lines, right={3, 4, 5, 6, 7, 8, 10}))
    return "\n\n".join(sections)


SEG_LEGEND = ("Our segmentation post-processing (one fused bilinear + argmax launch) against transformers' "
              "post_process_semantic_segmentation on the same logits (CUDA torch on a GPU; CPU torch in smoke "
              "mode): differ = label pixels where the two disagree, of pixels. verdict: exact (none), WARN (at most "
              f"{100 * SEG_FAIL_FRACTION:g}% of the pixels: reported, the check passes), FAIL (more: the bench part "
              "fails). model: ours equal to the kernel's numpy model (reference_labels, the same arithmetic; first "
              "image, batch-1 cases only; a difference fails the bench part).")


def seg_labels(rows: list[dict]) -> str:
    """One line per segmentation case: the label pixels where ours and transformers' differ and the verdict, and
    ours against the kernel's numpy model; "" without seg rows."""
    lines = []
    for case, impls in _case_index(rows).items():
        ours, peer = impls.get(FUSED, {}), impls.get(HF_OPS)
        if ours.get("kind") != "seg":
            continue
        verdict = seg_verdict(peer)
        if verdict == "-":
            differ = pixels = pct = "-"
            why = (f"transformers: {peer['status']}" if peer else "not compared") + (
                f"; ours: {ours.get('status')}" if ours.get("status") != "ok" else "")
        else:
            differ, pixels = str(peer["labels_differ"]), str(peer["label_pixels"])
            pct = f"{100 * _number(peer['labels_differ_frac']):.4g}%"
            why = (peer.get("note") or "").split("; ")[0] if verdict != "exact" else ""
        lines.append([case, pixels, differ, pct, verdict, ours.get("exact") or "-", why.replace("|", "/")])
    if not lines:
        return ""
    return _table(["case", "pixels", "differ", "% differ", "verdict", "model", "note"], lines, right={1, 2, 3})


def markdown(rows: list[dict], env: dict, parts: list[str], found: list[Target]) -> str:
    """The whole report: environment, parts, targets, headline, every row."""
    smoke = env.get("mode") == "smoke"
    title = f"# make gpu-check{' --smoke' if smoke else ''}: {env.get('gpu', 'unknown GPU')}, {env.get('date', '')}"
    environment_table = _table(["", ""], [[key, str(env.get(key, ""))] for key in ("mode", "device",
                                                                                 *environment.FIELDS)])
    parts_block = "\n".join(f"    {line}" for line in parts) if parts else "    (no parts recorded)"
    labels = seg_labels(rows)
    return "\n\n".join([
        title,
        environment_table,
        "## Parts\n\n" + parts_block,
        "## Targets\n\n" + targets_table(found, smoke),
        *(["## Segmentation labels\n\n" + SEG_LEGEND + "\n\n" + labels] if labels else []),
        "## Headline\n\n" + HEADLINE_LEGEND + "\n\n" + headline(rows),
        "## All results\n\n" + full_tables(rows),
    ]) + "\n"
