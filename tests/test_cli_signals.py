"""`fused-imgproc preprocess` in a child process: signals (SIGTERM, SIGINT, SIGHUP) remove the scratch and temporary
files, and a FIFO among the inputs is never opened (a hang would fail these tests at their timeout instead of
taking the suite down with it). Also the signal guard itself, in-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_cli import load_npz, write_image

from fused_imgproc import cli
from fused_imgproc.cli import preprocess as cli_preprocess
from fused_imgproc.cli.signals import Interrupted, interrupt_on_signals

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="POSIX signals, FIFOs")

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60  # seconds before a test gives up on a child that hangs (the bug these tests guard against)

# Runs the command, but the third call of the processor (after the option check and the first batch, which is in
# the scratch file by then) announces itself in a file and sleeps: the parent then sends its signal.
SLOW_RUN = textwrap.dedent("""
    import pathlib, sys, time
    from fused_imgproc import cli
    from fused_imgproc.cli import preprocess

    calls, original = [], preprocess.Preprocessor.__call__

    def slow(self, images):
        calls.append(len(images))
        if len(calls) == 3:
            pathlib.Path(sys.argv[1]).write_text("busy")
            time.sleep(120)
        return original(self, images)

    preprocess.Preprocessor.__call__ = slow
    sys.exit(cli.main(sys.argv[2:]))
""")


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def run_child(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, argv)], env=child_env(), capture_output=True, text=True,
                          timeout=TIMEOUT, check=False)


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_removes_scratch_and_temporary_files(tmp_path, signum):
    for k in range(3):
        write_image(tmp_path / "in" / f"{k}.png", (30, 40), seed=k)
    (tmp_path / "out").mkdir()
    script, busy = tmp_path / "slow_run.py", tmp_path / "busy"
    script.write_text(SLOW_RUN)
    child = subprocess.Popen(
        [sys.executable, str(script), str(busy), "preprocess", str(tmp_path / "in"), "--batch-size", "1", "-q",
         "--out", str(tmp_path / "out" / "o.npz")],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not busy.exists() and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert busy.exists(), child.communicate()
        kinds = {name.rsplit(".", 1)[-1] for name in hidden_files(tmp_path / "out")}
        assert kinds == {"tmp", "scratch"}  # what the signal must clean up
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=TIMEOUT)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 128 + signum, stderr
    assert f"fused-imgproc: interrupted by {signum.name}; nothing written" in stderr and "Traceback" not in stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_fifo_among_the_inputs_is_skipped_never_opened(tmp_path):
    """Given directly, found in a folder, matched by a glob: the FIFO has no writer, so opening it would block."""
    image = write_image(tmp_path / "d" / "a.png", (30, 40))
    fifo = tmp_path / "d" / "pipe.png"
    os.mkfifo(fifo)
    out = tmp_path / "o.npz"
    for inputs in ([tmp_path / "d"], [f"{tmp_path}/d/*.png"], [f"{tmp_path}/**/*.png"], [image, fifo]):
        child = run_child("-m", "fused_imgproc", "preprocess", *inputs, "--out", out)
        assert child.returncode == 1, child.stderr
        assert f"skipping {fifo}: not a regular file (a FIFO): not opened" in child.stderr
        assert "skipped 1 of 2 input(s)" in child.stderr
        assert load_npz(out)[1] == [str(image)]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "o.npz"]  # no temporary file left


def test_fifo_swapped_in_after_listing_is_not_opened(tmp_path):
    """The reader checks the opened file (non-blocking open, then fstat), not only the listing."""
    fifo = tmp_path / "late.png"
    os.mkfifo(fifo)
    code = ("import sys; from fused_imgproc.cli.decode import Skip, load_image, probe\n"
            "for read in (lambda p: probe(p, None), load_image):\n"
            "    try:\n        read(sys.argv[1])\n    except Skip as error:\n        print(error)\n")
    child = run_child("-c", code, fifo)
    assert child.returncode == 0, child.stderr
    assert child.stdout.splitlines() == ["not a regular file (a FIFO): not opened"] * 2


# --- the guard, in-process --------------------------------------------------------------------------------------


def test_handlers_are_restored_and_ignored_signals_stay_ignored(tmp_path, capsys, monkeypatch):
    write_image(tmp_path / "a.png", (30, 40))
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    seen = []
    original = cli_preprocess.Preprocessor.__call__

    def spy(self, images):
        seen.append({s: signal.getsignal(s) for s in before})
        return original(self, images)

    monkeypatch.setattr(cli_preprocess.Preprocessor, "__call__", spy)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as under nohup
    try:
        assert cli.main(["preprocess", str(tmp_path / "a.png"), "--out", str(tmp_path / "o.npz")]) == 0
        during = seen[-1]
        assert during[signal.SIGHUP] is signal.SIG_IGN
        assert during[signal.SIGTERM] is not before[signal.SIGTERM] and during[signal.SIGINT] is not before[
            signal.SIGINT]
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, before[signal.SIGHUP])
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_signal_during_a_deferred_step_waits_for_its_end():
    steps = []
    with pytest.raises(Interrupted) as info, interrupt_on_signals() as guard:
        with guard.deferred():
            signal.raise_signal(signal.SIGTERM)  # arrives now; must not cut the step in two
            steps.append("cleanup finished")
        steps.append("not reached")
    assert steps == ["cleanup finished"] and info.value.signum == signal.SIGTERM
    assert isinstance(info.value, KeyboardInterrupt)
    with pytest.raises(Interrupted, match="SIGTERM"), interrupt_on_signals():
        signal.raise_signal(signal.SIGTERM)
