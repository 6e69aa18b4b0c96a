"""SIGINT (Ctrl-C) and SIGTERM during training: the run stops at the next step boundary.

Within :func:`stop_signals`, a SIGINT or SIGTERM only records which signal came (the handler
sets a flag and does nothing else: no I/O, no exception in the middle of a step). The
``Trainer`` checks the flag between steps; on seeing it, it finishes the step under way,
writes a checkpoint and returns with ``stopped == "interrupted"``; ``rnnkit train`` then exits
with 128 + the signal number (130 for SIGINT, 143 for SIGTERM, as shells report them) and one
line saying how to continue. A run that must die at once is killed with SIGKILL: checkpoints
are written atomically, so the last one survives.

Handlers are installed only in the main thread and only over the default ones (someone else's
handler is left alone), and the previous handlers are always put back.

Example:
    >>> import os, signal
    >>> with stop_signals() as flag:
    ...     os.kill(os.getpid(), signal.SIGTERM)
    ...     flag.signum == signal.SIGTERM
    True
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["SIGNAL_NAMES", "StopFlag", "exit_code", "stop_signals"]

SIGNAL_NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
_DEFAULTS = {signal.SIGINT: (signal.default_int_handler, signal.SIG_DFL), signal.SIGTERM: (signal.SIG_DFL,)}


class StopFlag:
    """Which stop signal arrived first (None: none yet)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handler(self, signum: int, frame: Any) -> None:
        """The signal handler: record the first signal, nothing else."""
        if self.signum is None:
            self.signum = signum


def exit_code(signum: int) -> int:
    """The exit code of a run stopped by ``signum``: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + int(signum)


@contextlib.contextmanager
def stop_signals() -> Iterator[StopFlag]:
    """Within the block, SIGINT and SIGTERM set the yielded flag instead of ending the process."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signals are delivered to the main thread only: not ours to handle here
        return
    previous: dict[int, Any] = {}
    try:
        for signum, defaults in _DEFAULTS.items():
            if signal.getsignal(signum) in defaults:
                previous[signum] = signal.signal(signum, flag.handler)
        yield flag
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
