#!/usr/bin/env python
"""The GPU benchmark suite: the `bench` part of `make gpu-check` (see benchmarks/gpu/README.md).

    python benchmarks/gpu/suite.py --out DIR [--smoke] [--budget-s SECONDS]

For every case of `gpubench.cases.all_cases` it times our Triton backend (eager, into `out=`, and replayed from
CUDA graphs: the kernels' time without the call's host work), a device-to-device copy of the same bytes (the
bandwidth ceiling) and the peers of `gpubench.peers`, and checks our output bit for bit against our numpy
backend. The segmentation post-processing cases (`seg`) instead time ours and transformers' post-processing of the
same logits, count the label pixels where they differ, and check the kernel against its numpy model.
Each result is appended, as it is measured, to DIR/gpu_bench_rows.jsonl (so a run killed at its time limit keeps
what it measured), and the machine to DIR/gpu_env.json; check.py turns them into the CSV, markdown and PNG.

Without `--smoke` it needs a CUDA GPU. With `--smoke` it runs tiny cases on the GPU when torch sees one, else
through the Triton interpreter on CPU tensors (TRITON_INTERPRET=1, set here before fused_imgproc's kernels are
imported). Past `--budget-s` seconds the remaining cases are recorded as skipped.

Exit status: 0 all measured and bit-exact; 1 one of our calls failed or differed from the numpy backend (seg: from
the kernel's numpy model, or in more than `cases.SEG_FAIL_FRACTION` of the label pixels from transformers'; fewer
differing label pixels are a warning); 2 it cannot run here; 3 cases were skipped for the time budget.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import sys
import time
from pathlib import Path

from gpubench import cases, environment, peers, timing  # this folder is sys.path[0]; none imports torch here

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

ROWS_FILE = "gpu_bench_rows.jsonl"
ENV_FILE = "gpu_env.json"


def choose_device(smoke: bool) -> str:
    """"cuda" when torch sees a GPU and TRITON_INTERPRET is not 1; in smoke mode otherwise "cpu" through the
    interpreter; without --smoke and a GPU, SystemExit(2). TRITON_INTERPRET=1 is set before triton itself is
    imported: triton reads parts of it at import (a kernel calling a jitted helper fails otherwise)."""
    try:
        import torch
    except ImportError as error:
        print(f"bench: cannot run: torch is needed ({error})", flush=True)
        raise SystemExit(2) from None
    interpreted = os.environ.get("TRITON_INTERPRET", "0") == "1"
    if not interpreted and torch.cuda.is_available():
        device = "cuda"
    elif not smoke:
        why = "TRITON_INTERPRET=1 is set" if interpreted else "torch sees no CUDA GPU"
        print(f"bench: cannot run: the full benchmark needs a CUDA GPU ({why}); --smoke runs tiny cases through the "
              "Triton interpreter", flush=True)
        raise SystemExit(2)
    else:
        if not interpreted and ("triton" in sys.modules or "fused_imgproc._kernels" in sys.modules):
            print("bench: cannot run: triton was imported before TRITON_INTERPRET=1 could be set", flush=True)
            raise SystemExit(2)
        os.environ["TRITON_INTERPRET"] = "1"
        device = "cpu"
    try:
        import triton  # noqa: F401
    except ImportError as error:
        print(f"bench: cannot run: triton is needed ({error})", flush=True)
        raise SystemExit(2) from None
    return device


class Deadline:
    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.end


class Rows:
    """Appends result rows to the JSON-lines file as they come and echoes each to stdout (the part's log)."""

    def __init__(self, path: Path):
        self.path = path
        self.count = 0
        path.write_text("")

    def write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps(row) + "\n")
        self.count += 1
        median = row.get("median_ms")
        shown = f"{median:10.4f} ms" if isinstance(median, float) and not math.isnan(median) else " " * 13
        exact = f" exact={row['exact']}" if row.get("exact") else ""
        if row.get("labels_differ") is not None:
            exact += f" labels_differ={row['labels_differ']}"
        print(f"{row['case']:<30} {row['impl']:<28} {row['status']:<14}{shown}{exact}  {row.get('note', '')}",
              flush=True)


def same_bits(a, b) -> tuple[bool, str]:
    """Whether two tensors have the same shape, dtype and bits (NaN payloads and signed zeros included)."""
    import torch

    a, b = a.detach().cpu().contiguous(), b.detach().cpu().contiguous()
    if a.shape != b.shape or a.dtype != b.dtype:
        return False, f"got {tuple(a.shape)} {a.dtype}, the numpy backend {tuple(b.shape)} {b.dtype}"
    integer = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16,
               torch.float64: torch.int64}.get(a.dtype)
    differ = int((a.view(integer) != b.view(integer)).sum()) if integer is not None else int((a != b).sum())
    return differ == 0, f"{differ} of {a.numel()} values differ from the numpy backend" if differ else ""


class Suite:
    """Runs the cases of one profile on one device and records a row per (case, implementation)."""

    def __init__(self, profile, device: str, timer, rows: Rows, deadline: Deadline, l2_bytes: int):
        self.profile, self.device, self.timer, self.rows, self.deadline = profile, device, timer, rows, deadline
        self.l2_bytes = l2_bytes
        self.failures: list[str] = []  # our calls that raised or were not bit-exact
        self.warnings: list[str] = []  # capture failures, peer errors
        self.skipped = 0

    # -- helpers -----------------------------------------------------------------------------------------------
    def _synchronize(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def record(self, case, impl: str, role: str, status: str, **fields) -> dict:
        row = {"case": case.id, "kind": case.kind, "batch": case.batch, "layout": case.layout, "dtype": case.dtype,
               "format": case.fmt, "impl": impl, "role": role, "status": status, "method": "", "median_ms": math.nan,
               "samples": None, "bytes_moved": None, "exact": "", "max_abs_diff": math.nan, "label_pixels": None,
               "labels_differ": None, "labels_differ_frac": math.nan, "note": ""}
        row.update(fields)
        self.rows.write(row)
        return row

    def _time(self, clock: str, fn):
        return self.timer.device_time(fn) if clock == "device" else self.timer.wall_time(fn)

    @staticmethod
    def describe_error(error: BaseException) -> str:
        return f"{type(error).__name__}: {error}".replace("\n", " ")[:300]

    # -- one case ----------------------------------------------------------------------------------------------
    def run(self, index: int, case) -> None:
        if case.kind == "seg":
            self._segmentation(index, case)
            return
        data = cases.build(case, self.profile, self.device, self.l2_bytes, seed=index)
        moved = data.bytes_moved
        pixels = sum(h * w for h, w in data.sizes)
        sizes_note = f"{len(data.slots)} input sets; {pixels} source pixels"
        reference = peers.reference(case, self.profile, data.slots[0].host)

        ours = peers.fused_triton(case, self.profile, self.device, data)
        ours_first = None
        try:
            eager = self._time(ours.clock, timing.Rotation(ours.call, data.slots))
            exact, why, ours_first = self._verify(lambda: ours.call(data.slots[0]), data.slots[0].out, reference)
            self.record(case, peers.FUSED, "ours", "ok", method=eager.method, median_ms=eager.median_ms,
                        samples=eager.samples, bytes_moved=moved, exact="yes" if exact else "NO",
                        note="; ".join(filter(None, [ours.note, sizes_note, why])))
            if not exact:
                self.failures.append(f"{case.id}: {why}")
        except Exception as error:  # noqa: BLE001 (recorded, counted as a failure of ours)
            self.failures.append(f"{case.id}: {peers.FUSED} raised {self.describe_error(error)}")
            self.record(case, peers.FUSED, "ours", "error", bytes_moved=moved, note=self.describe_error(error))
            eager = None

        if case.layout != "host":  # captured at every batch size: eagerly, the call's host work hides the kernels
            self._graph(case, ours, data, reference, eager)
        if case.kind in ("crop", "clip"):  # not the end-to-end cases (e2e, qwen): the host work is the point
            self._copy(case, moved)
        for name, builder in peers.peer_builders(case):
            self._peer(case, name, builder, data, ours_first)

    def _verify(self, call, out, reference):
        """Poison the output buffer (if any), run once, compare bit for bit with the numpy backend's result.
        Returns (exact, why not, the result as float32 on the host)."""
        if out is not None:
            out.fill_(float("nan"))
        result = peers.as_tensor(call())
        self._synchronize()
        exact, why = same_bits(result, reference)
        return exact, why, result.float().cpu()

    def _graph(self, case, ours, data, reference, eager) -> None:
        if self.device != "cuda":
            self.record(case, peers.FUSED_GRAPH, "ours", "n/a", note="CUDA graphs need a CUDA GPU")
            return
        graphs, reason = timing.capture_graphs(ours.call, data.slots)
        if graphs is None:
            self.warnings.append(f"{case.id}: {reason}")
            if eager is None:
                self.record(case, peers.FUSED_GRAPH, "ours", "error", bytes_moved=data.bytes_moved, note=reason)
            else:
                self.record(case, peers.FUSED_GRAPH, "ours", "fallback", method=f"{eager.method} (eager)",
                            median_ms=eager.median_ms, samples=eager.samples, bytes_moved=data.bytes_moved,
                            note=f"eager timing; {reason}")
            return
        try:
            measured = self._time(ours.clock, graphs.replayer())
            first = peers.as_tensor(graphs.outputs[0])
            exact, why, _ = self._verify(lambda: (graphs.graphs[0].replay(), first)[1], first, reference)
            self.record(case, peers.FUSED_GRAPH, "ours", "ok", method=f"{measured.method}, graph replay",
                        median_ms=measured.median_ms, samples=measured.samples, bytes_moved=data.bytes_moved,
                        exact="yes" if exact else "NO", note=f"{len(graphs.graphs)} graphs, one per input set; {why}")
            if not exact:
                self.failures.append(f"{case.id} (CUDA graph): {why}")
        except Exception as error:  # noqa: BLE001 (a replay that fails is our failure)
            self.failures.append(f"{case.id}: graph replay raised {self.describe_error(error)}")
            self.record(case, peers.FUSED_GRAPH, "ours", "error", bytes_moved=data.bytes_moved,
                        note=self.describe_error(error))

    def _copy(self, case, moved: int) -> None:
        """A device-to-device copy of `moved / 2` bytes (so `moved` bytes read + written), rotated over enough
        buffer pairs to miss L2 like the case itself."""
        import torch

        half = max(moved // 2, 1)
        count = cases.slot_count(2 * half, self.device, self.l2_bytes)
        pairs = [(torch.randint(0, 256, (half,), dtype=torch.uint8, device=self.device),
                  torch.empty(half, dtype=torch.uint8, device=self.device)) for _ in range(count)]
        try:
            measured = self.timer.device_time(timing.Rotation(lambda pair: pair[1].copy_(pair[0]), pairs))
            self.record(case, peers.COPY, "ceiling", "ok", method=measured.method, median_ms=measured.median_ms,
                        samples=measured.samples, bytes_moved=2 * half,
                        note=f"{half} bytes copied, {count} buffer pairs")
        except Exception as error:  # noqa: BLE001
            self.warnings.append(f"{case.id}: copy raised {self.describe_error(error)}")
            self.record(case, peers.COPY, "ceiling", "error", note=self.describe_error(error))

    def _build_peer(self, case, name: str, builder, data):
        """The peer `name` built for `case`, or None when it is not run (out of time, unavailable, or its builder
        failed), with its row recorded."""
        if self.deadline.passed():
            self.skipped += 1
            self.record(case, name, "peer", "skipped", note="time budget")
            return None
        try:
            return builder(case, self.profile, self.device, data)
        except peers.Unavailable as why:
            self.record(case, name, "peer", "not installed" if str(why).startswith("not installed") else "n/a",
                        note=str(why))
        except Exception as error:  # noqa: BLE001 (a peer that fails is reported, not fatal)
            self.warnings.append(f"{case.id}: {name} raised {self.describe_error(error)}")
            self.record(case, name, "peer", "error", note=self.describe_error(error))
        return None

    def _peer(self, case, name: str, builder, data, ours_first) -> None:
        impl = self._build_peer(case, name, builder, data)
        if impl is None:
            return
        try:
            measured = self._time(impl.clock, timing.Rotation(impl.call, data.slots))
            diff = math.nan
            if ours_first is not None:
                result = peers.as_tensor(impl.call(data.slots[0])).float().cpu()
                diff = float((result - ours_first).abs().max()) if result.shape == ours_first.shape else math.nan
            self.record(case, name, "peer", "ok", method=measured.method, median_ms=measured.median_ms,
                        samples=measured.samples, bytes_moved=data.bytes_moved, max_abs_diff=diff, note=impl.note)
        except Exception as error:  # noqa: BLE001
            self.warnings.append(f"{case.id}: {name} raised {self.describe_error(error)}")
            self.record(case, name, "peer", "error", note=self.describe_error(error))

    # -- segmentation post-processing ---------------------------------------------------------------------------
    def _segmentation(self, index: int, case) -> None:
        """Ours and transformers' post-processing of the same logits, both timed on the device clock. Then, on the
        first input set: the kernel against its numpy model (`exact`: must be equal, else a failure; `_seg_model`);
        every label pixel of ours against transformers' (on the transformers row: `labels_differ`, of
        `label_pixels`; more than `cases.SEG_FAIL_FRACTION` of them fails, fewer warns)."""
        import torch

        data = cases.build(case, self.profile, self.device, self.l2_bytes, seed=index)
        classes, height, width = self.profile.seg_logits
        target_h, target_w = self.profile.seg_target
        shape_note = (f"{len(data.slots)} input sets; logits ({case.batch}, {classes}, {height}, {width}) -> "
                      f"{target_h}x{target_w}")
        first = data.slots[0]
        ours = peers.fused_segmentation(case, self.profile, self.device, data)
        ours_labels = None
        try:
            eager = self._time(ours.clock, timing.Rotation(ours.call, data.slots))
            ours_labels = torch.stack(list(ours.call(first)))
            self._synchronize()
            exact, why = self._seg_model(first.images.logits)
            if exact != "yes":
                self.failures.append(f"{case.id}: {why}")
            self.record(case, peers.FUSED, "ours", "ok", method=eager.method, median_ms=eager.median_ms,
                        samples=eager.samples, bytes_moved=data.bytes_moved, exact=exact,
                        label_pixels=ours_labels.numel(), note=f"{ours.note}; {shape_note}; {why}")
        except Exception as error:  # noqa: BLE001 (recorded, counted as a failure of ours)
            self.failures.append(f"{case.id}: {peers.FUSED} raised {self.describe_error(error)}")
            self.record(case, peers.FUSED, "ours", "error", bytes_moved=data.bytes_moved,
                        note=self.describe_error(error))

        name = peers.HF_OPS
        impl = self._build_peer(case, name, peers.hf_segmentation, data)
        if impl is None:
            return
        try:
            measured = self._time(impl.clock, timing.Rotation(impl.call, data.slots))
            theirs = torch.stack(list(impl.call(first)))
            self._synchronize()
            fields, note = {}, impl.note
            if ours_labels is not None:
                fields, compared = self._seg_compare(case, first.images.logits, ours_labels, theirs)
                note = f"{compared}; {note}"
            self.record(case, name, "peer", "ok", method=measured.method, median_ms=measured.median_ms,
                        samples=measured.samples, bytes_moved=data.bytes_moved, note=note, **fields)
        except Exception as error:  # noqa: BLE001
            self.warnings.append(f"{case.id}: {name} raised {self.describe_error(error)}")
            self.record(case, name, "peer", "error", note=self.describe_error(error))

    def _seg_model(self, logits) -> tuple[str, str]:
        """("yes" or "NO", why) for the kernel against `reference_labels`, its numpy model, on the first image's first
        32 classes to a 160x200 target (a fraction of a second on the host, where the full 150 x 512 x 512 model
        takes about 8 s and 2 GB): CUDA torch's arithmetic on a GPU, this CPU torch's under the interpreter, as the
        kernel chooses by device."""
        from fused_imgproc._kernels import segmentation as kernel

        arithmetic = kernel.TorchArithmetic.CUDA if self.device == "cuda" else kernel.TorchArithmetic.current()
        started = time.monotonic()
        part = logits[:1, :32]
        size = (160, 200)
        labels = kernel.bilinear_argmax(part, [size])[0]
        expected = kernel.reference_labels(part[0].float().cpu().numpy(), size, arithmetic=arithmetic,
                                           dtype_name=str(logits.dtype).removeprefix("torch."))
        differ = int((labels.cpu().numpy() != expected).sum())
        which = "CUDA" if arithmetic.cuda else "CPU"
        shape = f"{part.shape[1]} classes {tuple(part.shape[2:])} -> {size}"
        if differ:
            return "NO", (f"{differ} of {expected.size} labels of image 0 ({shape}) differ from the kernel's numpy "
                          f"model ({which} arithmetic)")
        seconds = time.monotonic() - started
        return "yes", f"image 0 ({shape}) equal to the kernel's numpy model ({which} arithmetic, {seconds:.1f} s)"

    def _seg_compare(self, case, logits, ours, theirs) -> tuple[dict, str]:
        """Label pixels where ours differs from transformers' (the row's fields and a note), and, where some do,
        the largest gap between the two labels' scores in torch's upsampled logits there (an ulp or so: rounding
        of the interpolation, as FMA placement; large: a bug). Counts it as a failure or a warning."""
        import torch

        if ours.shape != theirs.shape:
            why = f"label maps of shape {tuple(ours.shape)} (ours) and {tuple(theirs.shape)} (transformers')"
            self.failures.append(f"{case.id}: {why}")
            return {}, why
        mask = ours != theirs
        differ, total = int(mask.sum()), mask.numel()
        fraction = differ / total if total else math.nan
        fields = {"label_pixels": total, "labels_differ": differ, "labels_differ_frac": fraction}
        if not differ:
            return fields, f"labels equal to ours (all {total} pixels)"
        gap = relative = 0.0
        images = [i for i in range(len(mask)) if bool(mask[i].any())]
        for i in images[:4]:  # torch's scores, as transformers computes them, at the differing pixels
            scores = torch.nn.functional.interpolate(logits[i][None], size=tuple(ours.shape[1:]), mode="bilinear",
                                                     align_corners=False)[0].float()
            ours_score = scores.gather(0, ours[i][None])[0][mask[i]]
            their_score = scores.gather(0, theirs[i][None])[0][mask[i]]
            diff = (their_score - ours_score).abs()
            gap = max(gap, float(diff.max()))
            relative = max(relative, float((diff / their_score.abs().clamp_min(1e-30)).max()))
        why = (f"{differ} of {total} label pixels ({100 * fraction:.4g}%) differ from ours, in {len(images)} of "
               f"{len(mask)} images, where torch's scores of the two labels differ by at most {gap:.3g} "
               f"(relative {relative:.3g}, first {min(len(images), 4)} images)")
        if fraction > cases.SEG_FAIL_FRACTION:
            self.failures.append(f"{case.id}: {why} (more than {100 * cases.SEG_FAIL_FRACTION:g}%)")
        else:
            self.warnings.append(f"{case.id}: {why}")
        return fields, why


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="folder for the rows and the environment")
    parser.add_argument("--smoke", action="store_true", help="tiny cases; the Triton interpreter without a GPU")
    parser.add_argument("--budget-s", type=float, default=170.0,
                        help="seconds after which remaining cases are skipped (default 170)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    device = choose_device(args.smoke)

    import torch

    profile = cases.SMOKE if args.smoke else cases.FULL
    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        l2_bytes = int(getattr(properties, "L2_cache_size", 0) or 50 * 2**20)
        env = environment.collect(REPO, gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    else:
        l2_bytes = 0
        env = environment.collect(REPO, gpu="none (CPU: Triton interpreter)")
    env.update(mode=profile.name, device=device)
    (args.out / ENV_FILE).write_text(json.dumps(env, indent=1) + "\n")
    print(f"bench: {profile.name} run on {device} ({env['gpu']}), L2 {l2_bytes / 2**20:.0f} MiB, "
          f"budget {args.budget_s:.0f} s", flush=True)

    rows = Rows(args.out / ROWS_FILE)
    suite = Suite(profile, device, timing.Timer(device, args.smoke), rows, Deadline(args.budget_s), l2_bytes)
    all_cases = cases.all_cases(profile)
    done = 0
    for index, case in enumerate(all_cases):
        if suite.deadline.passed():
            for rest in all_cases[index:]:
                suite.skipped += 1
                suite.record(rest, peers.FUSED, "ours", "skipped", note="time budget")
            break
        case_started = time.monotonic()
        try:
            suite.run(index, case)
            done += 1
            print(f"bench: {case.id}: {time.monotonic() - case_started:.1f} s", flush=True)
        except Exception as error:  # noqa: BLE001 (building the inputs or the reference failed: ours)
            suite.failures.append(f"{case.id}: {suite.describe_error(error)}")
            suite.record(case, peers.FUSED, "ours", "error", note=suite.describe_error(error))
        finally:  # the case's inputs, outputs and graphs went with its frame: hand their memory back
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()

    for problem in suite.failures:
        print(f"bench: FAILED {problem}", flush=True)
    for warning in suite.warnings:
        print(f"bench: warning: {warning}", flush=True)
    verdict = "all bit-exact" if not suite.failures else f"{len(suite.failures)} failures"
    print(f"bench: {done} of {len(all_cases)} cases, {rows.count} rows, {verdict}, {len(suite.warnings)} warnings, "
          f"{suite.skipped} skipped for the time budget, {time.monotonic() - started:.1f} s", flush=True)
    if suite.failures:
        return 1
    return 3 if suite.skipped else 0


if __name__ == "__main__":
    sys.exit(main())
