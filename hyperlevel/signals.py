"""Graceful stop on SIGINT (Ctrl-C) and SIGTERM (what SLURM, Kubernetes and most schedulers send).

The first signal only sets a flag: the engine finishes the step it is in, writes a checkpoint and returns a
summary whose ``exit_status`` is ``128 + signal number`` (130 for SIGINT, 143 for SIGTERM), the status a
process killed by that signal would report, so a command line can ``sys.exit(summary.exit_status)`` and a
scheduler sees the usual code. A second signal of either kind aborts at once: ``KeyboardInterrupt`` for SIGINT,
``SystemExit(143)`` for SIGTERM (a temporary file of a checkpoint being written is removed on the way out).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

__all__ = ["STOP_SIGNALS", "StopSignals", "exit_status"]

#: the signals that ask for a graceful stop (SIGTERM does not exist on every platform's signal module)
STOP_SIGNALS: tuple[int, ...] = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None)) if s is not None)


def exit_status(signum: int | None) -> int:
    """The shell's exit status for a process ended by ``signum``: 128 + its number (0 for ``None``)."""
    return 0 if signum is None else 128 + int(signum)


class StopSignals:
    """Context manager: while active (main thread only), SIGINT and SIGTERM set :attr:`requested` and
    :attr:`signum` instead of ending the process; the previous handlers come back on exit."""

    def __init__(self) -> None:
        self.requested = False
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def request(self, signum: int | None = None) -> None:
        """Ask for a stop as a signal would (data-parallel ranks agreeing on a stop call this)."""
        self.requested = True
        if self.signum is None:
            self.signum = signum

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # the second signal: stop now
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(exit_status(signum))
        self.request(signum)

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous)
        self._previous = {}
