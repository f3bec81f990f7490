"""One part of the check: a subprocess with a hard time limit, its output in a log file, a one-line summary.

A part runs in a session of its own, so that on timeout the whole process group (pytest and any child it started,
the compile workers of torch.compile, ...) is stopped: SIGINT first (pytest then still prints its totals and writes
its JUnit XML), SIGTERM after a grace period, SIGKILL after another.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

# Seconds between the signals (SIGINT, SIGTERM, SIGKILL) sent to a part that ran past its limit.
KILL_GRACE_S = 5.0


@dataclass
class PartResult:
    """How a part ended. `status` is "passed", "failed", "timed out" or "skipped"; `summary` is one line."""

    name: str
    status: str
    seconds: float
    limit_s: float
    returncode: int | None
    log: Path | None
    summary: str = ""
    details: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "passed"

    def line(self) -> str:
        """`tests   passed     212.4 s / 240 s  1012 passed, 15 skipped` (one line for the summary block)."""
        spent = f"{self.seconds:6.1f} s / {self.limit_s:.0f} s"
        return f"{self.name:<6} {self.status:<10} {spent}  {self.summary}".rstrip()


def run_part(name: str, command: list[str], log: Path, limit_s: float, cwd: Path, env: dict[str, str]) -> PartResult:
    """Run `command` with stdout and stderr into `log`; past `limit_s` seconds terminate its process group.

    The exit status decides "passed" (0) or "failed"; a part that ran out of time is "timed out" whatever it would
    have returned. The summary is the last non-empty line of the log (each part prints its own summary last)."""
    start = time.monotonic()
    with open(log, "w", encoding="utf-8", errors="replace") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=stream, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            returncode = process.wait(timeout=limit_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            _terminate_group(process)
            returncode = process.returncode
        except BaseException:  # Ctrl-C or SIGTERM of the check itself: the part's own session would outlive it
            _terminate_group(process)
            raise
    seconds = time.monotonic() - start
    last = last_line(log)
    if timed_out:
        with open(log, "a", encoding="utf-8") as stream:
            stream.write(f"\n[gpu-check] {name}: killed after its time limit of {limit_s:.0f} s\n")
        return PartResult(name, "timed out", seconds, limit_s, returncode, log,
                          f"killed at its limit; last output: {last}" if last else "killed at its limit")
    status = "passed" if returncode == 0 else "failed"
    summary = last if returncode == 0 else f"exit status {returncode}; {last}"
    return PartResult(name, status, seconds, limit_s, returncode, log, summary)


def _terminate_group(process: subprocess.Popen) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the part's process group, `KILL_GRACE_S` apart, until its leader
    exits; then SIGKILL to whatever is left of the group (children that outlived the leader)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:  # the group is already gone
            break
        try:
            process.wait(timeout=KILL_GRACE_S)
            break
        except subprocess.TimeoutExpired:
            continue
    else:
        raise RuntimeError(f"process {process.pid} survived SIGKILL")
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def last_line(path: Path, max_chars: int = 300) -> str:
    """The last non-empty line of a text file (shortened to `max_chars`), or "" when there is none."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.strip():
            line = line.strip()
            return line if len(line) <= max_chars else line[: max_chars - 3] + "..."
    return ""


def tail(path: Path, max_chars: int) -> str:
    """The end of a log, at most `max_chars` characters, starting on a line boundary."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    if len(text) <= max_chars:
        return text.rstrip()
    cut = text[-max_chars:]
    return cut[cut.find("\n") + 1:].rstrip()


_PYTEST_TOTALS = re.compile(r"^=*\s*((?:\d+ [a-z]+(?:, )?)+) in [\d.]+s")


def pytest_summary(log: Path, junit: Path) -> tuple[str, list[str]]:
    """pytest's totals line ("1012 passed, 15 skipped in 201.3s") from the log and, from the JUnit XML when pytest
    got to write it, the ids of failed and erroring tests. Either may be missing (a killed run writes no XML)."""
    totals = ""
    try:
        for line in reversed(Path(log).read_text(encoding="utf-8", errors="replace").splitlines()):
            match = _PYTEST_TOTALS.match(line.strip())
            if match:
                totals = line.strip().strip("= ")
                break
    except OSError:
        pass
    failed: list[str] = []
    if Path(junit).is_file():
        try:
            root = ElementTree.parse(junit).getroot()
        except ElementTree.ParseError as error:
            return totals, [f"(unreadable JUnit XML: {error})"]
        for case in root.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failed.append(f"{case.get('classname', '')}::{case.get('name', '')}")
    return totals, failed
