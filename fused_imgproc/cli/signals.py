"""SIGINT, SIGTERM and SIGHUP as an exception while a command runs, so that its cleanup (the scratch and temporary
files next to the output) runs instead of the process dying on the spot.

A signal raises `Interrupted` (a `KeyboardInterrupt`) in the main thread; `main` turns it into the exit status
128 + the signal's number (130, 143, 129). A signal inside a `guard.deferred()` block (the cleanup runs in one)
takes effect when the block ends: a second Ctrl-C cannot cut the cleanup short. A signal that was ignored when the
command started (`nohup`) stays ignored, and the previous handlers come back afterwards.
"""

from __future__ import annotations

import contextlib
import signal
import threading

SIGNAL_NAMES = ("SIGINT", "SIGTERM", "SIGHUP")


class Interrupted(KeyboardInterrupt):
    """Raised by a signal while `interrupt_on_signals` is active; `signum` is the signal's number."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Guard:
    def __init__(self):
        self.deferring = 0
        self.pending: int | None = None

    def handler(self, signum, frame) -> None:
        if self.deferring:
            self.pending = self.pending or signum
            return
        raise Interrupted(signum)

    @contextlib.contextmanager
    def deferred(self):
        """Signals arriving inside the block take effect when it ends (for steps that must not be cut in two, such
        as the cleanup itself)."""
        self.deferring += 1
        try:
            yield
        finally:
            self.deferring -= 1
            if not self.deferring and self.pending is not None:
                signum, self.pending = self.pending, None
                raise Interrupted(signum)


@contextlib.contextmanager
def interrupt_on_signals():
    """Installs the handlers for the block (main thread only; elsewhere signals are left alone) and yields the
    guard, whose `deferred()` protects a step from being interrupted in the middle."""
    guard = _Guard()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = {}
    for name in SIGNAL_NAMES:
        signum = getattr(signal, name, None)
        if signum is None:  # SIGHUP on Windows
            continue
        handler = signal.getsignal(signum)
        if handler is signal.SIG_IGN or handler is None:  # ignored on purpose, or installed outside Python
            continue
        previous[signum] = handler
        signal.signal(signum, guard.handler)
    try:
        yield guard
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
