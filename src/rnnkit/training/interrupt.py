"""Ctrl-C during training: the first one asks the run to stop at the next step boundary.

A run stopped that way writes a checkpoint and reports ``stopped == "interrupted"``; a second
Ctrl-C raises ``KeyboardInterrupt`` at once. The handler is installed only in the main thread
and only over Python's default one, and the previous handler is always put back.

Example:
    >>> flags = []
    >>> with graceful_sigint(lambda: flags.append("stop")):
    ...     pass
    >>> flags
    []
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["graceful_sigint"]


@contextlib.contextmanager
def graceful_sigint(request_stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first SIGINT calls ``request_stop()``; the next raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield  # not ours to handle: someone else owns Ctrl-C here
        return
    seen = []

    def handler(signum: int, frame: Any) -> None:
        if seen:
            raise KeyboardInterrupt
        seen.append(signum)
        request_stop()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
