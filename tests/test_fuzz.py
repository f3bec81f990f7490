"""Fuzz test (issue 11, item 5): random images and configs through our processors and transformers' `*Pil` ones.

Every example (tests/fuzz_cases.py: shapes, dtypes, value ranges, PIL modes, nesting, config values) must end in
one of these outcomes, for our numpy backend:

- both we and transformers return a result: the two are bit-identical (type, dtype, shape, every bit);
- we raise one of the documented exception types (docs/BEHAVIOUR.md section 9: `ValueError` (including
  `BackendUnavailableError`), `TypeError`, `OSError`, `ImportError`), whatever transformers does.

Never another exception type (OverflowError, MemoryError, RecursionError, ZeroDivisionError, IndexError, ...), a
result where transformers raised, or a different result. Two call-time differences are taken into account: a
call argument given as `None` means the processor's own value (docs/BEHAVIOUR.md section 1), so transformers gets
the call without it; and 5.x type-checks call arguments (not constructor ones) strictly, refusing an int where a
float goes (`image_std=1`, `rescale_factor=1`), which we accept at call time as both accept it at construction, so
transformers then gets the same call with the float, and the results must still be bit-identical.
Small examples also run our Triton backend (under Triton's interpreter, on CPU tensors), which must give the
numpy backend's result bit for bit, or raise what it raised (or the Triton backend's documented `TypeError`).

The fuzz body runs in a child process (this file run as a script) under an address-space limit (`RLIMIT_AS`:
the address space in use after imports and a warm-up, about 1 GiB, plus `FUZZ_MEMORY_MB`, 1536 by default) and a
time limit per example (`FUZZ_EXAMPLE_SECONDS`, 60), so a regression that allocates without bound or hangs fails
this test instead of taking the machine down. The library's own per-call budget is set to a sixth of that headroom
(`set_limits(max_call_bytes=...)`, docs/BEHAVIOUR.md section 9), so a call it accepts must fit: a MemoryError of
ours is a call it under-counted. transformers running out of memory is only a missing reference (skipped).

Profiles (`FUZZ_PROFILE`): "ci" (the default) runs 1500 derandomized examples, the same on every run (about 50 s
on two cores); "long" (`make fuzz`) runs 5000 random ones. `FUZZ_EXAMPLES` changes the count, `FUZZ_SEED` makes
a random run repeatable, `FUZZ_KEEP_GOING=1` lists every distinct failure (smallest example of each, unshrunk)
instead of stopping at the first. The child runs the Triton kernels under the interpreter even on a GPU machine
(no CUDA context under an address-space limit). The child can be run directly: `python tests/test_fuzz.py`.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import traceback
import warnings
from pathlib import Path

import pytest

DOCUMENTED = (ValueError, TypeError, OSError, ImportError)
PROFILES = {"ci": (1500, True), "long": (5000, False)}  # (examples, derandomize)
FLOAT_KEYS = ("image_mean", "image_std", "rescale_factor", "crop_pct")
TRITON_MESSAGE = "backend='triton'"  # the Triton backend's own documented refusals (docs/BEHAVIOUR.md section 8)


def _profile() -> tuple[int, bool]:
    """(examples, derandomize) from FUZZ_PROFILE, FUZZ_EXAMPLES and FUZZ_SEED."""
    examples, derandomize = PROFILES[os.environ.get("FUZZ_PROFILE", "ci")]
    return int(os.environ.get("FUZZ_EXAMPLES", examples)), derandomize and "FUZZ_SEED" not in os.environ


def test_fuzz_outcomes_are_transformers_results_or_documented_errors():
    pytest.importorskip("hypothesis")
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    pytest.importorskip("triton")
    examples, _ = _profile()
    env = {**os.environ, "TRITON_INTERPRET": "1", "MALLOC_ARENA_MAX": "2", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    try:
        child = subprocess.run([sys.executable, __file__], check=False, cwd=Path(__file__).parent, env=env,
                               capture_output=True, text=True, timeout=300 + examples // 2)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"the fuzz child did not finish in {error.timeout} s:\n{error.stdout}\n{error.stderr}")
    assert child.returncode == 0, f"{child.stdout}\n{child.stderr}"
    print(child.stdout)  # the outcome counts (pytest -s shows them)


# --- the child process --------------------------------------------------------------------------------------------


class ExampleTimeout(BaseException):
    """Raised by the alarm when one example runs too long (a BaseException: nothing may swallow it)."""


def _ours(fn):
    """(result, None), or (None, error) for a documented error; any other exception propagates, annotated."""
    try:
        return fn(), None
    except DOCUMENTED as error:
        return None, error
    except Exception as error:
        error.add_note(f"fused_imgproc raised {type(error).__name__}, not a documented type (BEHAVIOUR.md section 9)")
        raise


def _reference(fn):
    try:
        return fn(), None
    except Exception as error:  # noqa: BLE001  (transformers may raise anything)
        return None, error


def _floats(call: dict) -> dict:
    """`call` with the ints (not bools) of its float-typed arguments as floats."""

    def as_float(value):
        if isinstance(value, list):
            return [as_float(v) for v in value]
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**1000:
            return float(value)
        return value

    return {key: as_float(value) if key in FLOAT_KEYS else value for key, value in call.items()}


def _as_arrays(values) -> list:
    import numpy as np

    if isinstance(values, list):
        return [a for v in values for a in _as_arrays(v)]
    return [values.numpy() if hasattr(values, "numpy") else np.asarray(values)]


def assert_bit_identical(got, want) -> None:
    assert type(got) is type(want), f"result type {type(got).__name__}, transformers {type(want).__name__}"
    got, want = _as_arrays(got), _as_arrays(want)
    assert len(got) == len(want), f"{len(got)} outputs, transformers {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.dtype == w.dtype, f"output {i}: dtype {g.dtype}, transformers {w.dtype}"
        assert g.shape == w.shape, f"output {i}: shape {g.shape}, transformers {w.shape}"
        if g.tobytes() != w.tobytes():
            differ = int((g.view(f"u{g.itemsize}") != w.view(f"u{w.itemsize}")).sum()) if g.size else 0
            raise AssertionError(f"output {i}: {differ} of {g.size} values differ from transformers'")


class Fuzzer:
    """Runs one example through ours and transformers; counts the outcomes."""

    def __init__(self):
        import numpy as np
        import torch
        import transformers
        from fuzz_cases import FAMILIES, build_images

        import fused_imgproc

        self.np, self.torch, self.T, self.fi = np, torch, transformers, fused_imgproc
        self.families, self.build = FAMILIES, build_images
        self.counts = collections.Counter()
        self.foreign = {}  # documented types raised inside numpy/Pillow/torch rather than by a check of ours

    def __call__(self, example) -> None:
        ours_name, ref_name, _ = self.families[example["family"]]
        ours_cls, ref_cls = getattr(self.fi, ours_name), getattr(self.T, ref_name)
        ctor, call = example["ctor"], example["call"]
        common = {"return_tensors": example["return_tensors"], "input_data_format": example["input_data_format"]}

        def ours(**kwargs):
            return ours_cls(**ctor)(self.build(example["images"], self.torch), **call, **common, **kwargs)

        result, error = _ours(lambda: ours(backend="numpy").pixel_values)
        if example["triton"]:
            self._check_triton(ours, result, error)
        if error is not None:
            self.counts[f"ours raised {type(error).__name__}"] += 1
            origin = traceback.extract_tb(error.__traceback__)[-1]
            if f"{os.sep}fused_imgproc{os.sep}" not in origin.filename:  # allowed, but not our message: listed
                _record(self.foreign, error, example, f"raised in {Path(origin.filename).name}:{origin.lineno}")
            return
        ref_call = {key: value for key, value in call.items() if value is not None}
        want, ref_error = _reference(
            lambda: ref_cls(**ctor)(self.build(example["images"], self.torch), **ref_call, **common).pixel_values
        )
        if isinstance(ref_error, MemoryError):  # transformers over the address-space limit: no reference
            self.counts["transformers out of memory (skipped)"] += 1
            return
        strict = type(ref_error).__name__ == "StrictDataclassFieldValidationError"
        if strict and repr(ref_call) != repr(_floats(ref_call)):  # an int where 5.x wants a float (module docstring)
            ref_call = _floats(ref_call)
            want, ref_error = _reference(
                lambda: ref_cls(**ctor)(self.build(example["images"], self.torch), **ref_call, **common).pixel_values
            )
        if ref_error is not None:
            raise AssertionError(
                f"fused_imgproc returned a result where transformers raised {type(ref_error).__name__}: {ref_error}"
            )
        assert_bit_identical(result, want)
        self.counts["bit-identical to transformers"] += 1

    def _check_triton(self, ours, result, error) -> None:
        got, triton_error = _ours(lambda: ours(backend="triton", device="cpu").pixel_values)
        if triton_error is not None:
            documented_refusal = isinstance(triton_error, TypeError) and TRITON_MESSAGE in str(triton_error)
            if not documented_refusal and (error is None or type(triton_error) is not type(error)):
                raise AssertionError(
                    f"the Triton backend raised {type(triton_error).__name__} ({triton_error}); the numpy backend "
                    + (f"raised {type(error).__name__} ({error})" if error is not None else "returned a result")
                )
            self.counts["triton raised like numpy"] += 1
            return
        assert error is None, f"the Triton backend returned a result; the numpy backend raised {error!r}"
        assert isinstance(got, list) == isinstance(result, list), (type(got).__name__, type(result).__name__)
        assert_bit_identical(_as_arrays(got), _as_arrays(result))
        self.counts["triton bit-identical to numpy"] += 1


def _record(failures: dict, error: BaseException, example, where: str = "") -> None:
    """Counts errors by type and message (digits dropped), keeping the smallest example of each."""
    message = "".join("#" if c.isdigit() else c for c in str(error).split("\n")[0])[:100]
    key = (f"{type(error).__name__} {where}".strip(), message)
    smallest, count = failures.get(key, (example, 0))
    failures[key] = (min(smallest, example, key=lambda e: len(repr(e))), count + 1)


def _address_space() -> int:
    """The process's current virtual size (Linux: what RLIMIT_AS limits)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def _warm_up(fuzzer) -> None:
    """One call down every path (thread pool, Pillow, torch, the interpreter) before the memory limit is set."""
    np, fi = fuzzer.np, fuzzer.fi
    images = [np.full((9, 7, 3), 100, np.uint8)] * max(2, os.cpu_count() or 1)
    proc = fi.CLIPImageProcessor(size={"shortest_edge": 8}, crop_size=8)
    proc(images, return_tensors="pt")
    proc(images[:2], return_tensors="pt", backend="triton", device="cpu")
    fuzzer.T.CLIPImageProcessorPil()(images[:2], return_tensors="np")


def main() -> int:
    import logging
    import resource

    from hypothesis import HealthCheck, given, seed, settings

    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)  # transformers' and our warnings about odd inputs
    fuzzer = Fuzzer()
    fuzzer.torch.set_num_threads(1)
    _warm_up(fuzzer)
    base = _address_space()
    headroom = int(os.environ.get("FUZZ_MEMORY_MB", "1536")) * 2**20
    limit = base + headroom
    # The library's own budget per call, well inside the address-space headroom: a call the library accepts must
    # then fit, so a MemoryError of ours is a call it under-counted (transformers' is only a missing reference).
    fuzzer.fi.set_limits(max_call_bytes=headroom // 6)
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    examples, derandomize = _profile()
    print(f"address space after imports: {base / 2**30:.2f} GiB; limit {limit / 2**30:.2f} GiB; max_call_bytes "
          f"{headroom // 6 // 2**20} MiB; {examples} examples ({'derandomized' if derandomize else 'random'})",
          flush=True)

    from fuzz_cases import examples as example_strategy

    seconds = int(os.environ.get("FUZZ_EXAMPLE_SECONDS", "60"))
    current, failures = {}, {}
    keep_going = os.environ.get("FUZZ_KEEP_GOING") == "1"

    def alarm(signum, frame):
        raise ExampleTimeout(f"one example ran over {seconds} s: {current.get('example')!r}")

    signal.signal(signal.SIGALRM, alarm)

    @settings(max_examples=examples, derandomize=derandomize, database=None, deadline=None, print_blob=True,
              suppress_health_check=list(HealthCheck))
    @given(example_strategy())
    def fuzz(example):
        current["example"] = example
        signal.alarm(seconds)
        try:
            fuzzer(example)
        except Exception as error:
            if not keep_going:
                raise
            _record(failures, error, example)
        finally:
            signal.alarm(0)

    if "FUZZ_SEED" in os.environ:
        fuzz = seed(int(os.environ["FUZZ_SEED"]))(fuzz)
    try:
        fuzz()
    except BaseException:  # noqa: BLE001  (the falsifying examples are in the exceptions' notes; a timeout too)
        traceback.print_exc()
        print(dict(fuzzer.counts))
        return 1
    print(dict(sorted(fuzzer.counts.items())))
    for title, found in (("Documented error types raised by a library we call, not by our checks (allowed):",
                          fuzzer.foreign), ("FAILURES:", failures)):
        if found:
            print(f"\n{title}")
        for (kind, message), (example, count) in sorted(found.items()):
            print(f"\n{count} x {kind}: {message}\n  smallest example: {example!r}")
    if failures:
        return 1
    # Not vacuous: a fifth of the examples reach a result compared with transformers, some with the Triton backend.
    compared, triton = fuzzer.counts["bit-identical to transformers"], fuzzer.counts["triton bit-identical to numpy"]
    if examples >= 200 and (compared < examples // 5 or triton < examples // 100):
        print(f"only {compared} of {examples} examples were compared with transformers, {triton} with the Triton "
              "backend: the strategies are off")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
