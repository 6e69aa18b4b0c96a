"""The progress display of a training run, on stderr.

On a terminal it is a ``rich`` progress bar: steps, training loss, the headline validation
metric, tokens per second and the time left (from the step or time budget, whichever ends
first), refreshed a few times a second. When stderr is not a terminal (CI logs, ``2> file``),
it prints one plain line per evaluation at most every ``interval`` seconds, plus the last, so
a long run writes tens of lines, not thousands. ``enabled=False`` (``--quiet``) prints nothing.

When the throughput of an evaluation window falls below half of the first window's, a one-line
warning says so (another process has probably taken the CPU), at most every two minutes.

Example:
    >>> import io
    >>> stream = io.StringIO()
    >>> bar = ProgressDisplay(total_steps=100, time_budget=None, headline="val_loss", file=stream)
    >>> bar.start(); bar.update(step=50, elapsed=1.0, train_loss=2.5, tokens_per_second=1e4, lr=1e-3)
    >>> bar.evaluated({"val_loss": 2.25}, final=True); bar.stop()
    >>> "step 50/100" in stream.getvalue() and "val_loss 2.25" in stream.getvalue()
    True
"""
from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

__all__ = ["SLOW", "WARN_EVERY", "ProgressDisplay", "format_duration"]

SLOW = 0.5  # warn when throughput falls below this share of the run's starting pace
WARN_EVERY = 120.0  # seconds between two such warnings


def format_duration(seconds: float) -> str:
    """``"42s"``, ``"3m05s"``, ``"1h02m"``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{seconds:.0f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _number(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


class ProgressDisplay:
    """A progress bar (terminal) or sparse progress lines (anything else) for one run."""

    def __init__(self, *, total_steps: int | None, time_budget: float | None, headline: str, enabled: bool = True,
                 file: IO[str] | None = None, interval: float = 10.0, refresh: float = 0.25,
                 description: str = "training") -> None:
        self.total_steps = total_steps  # the step budget, if any
        self.time_budget = time_budget  # the time budget in seconds, if any
        self.headline = headline  # the metric to show next to the loss
        self.enabled = enabled
        self.file = file if file is not None else sys.stderr
        self.interval = interval  # seconds between plain lines when not on a terminal
        self.refresh = refresh  # seconds between bar updates on a terminal
        self.description = description
        self._bar: Any = None
        self._task: Any = None
        self._last_update = -math.inf
        self._last_line = -math.inf
        self._state: dict[str, Any] = {}
        self._metric: float | None = None
        self._last_printed = ""
        self._start_rate: float | None = None  # tokens/s over the first evaluation window: the run's own pace
        self._warned_at = -math.inf

    @property
    def terminal(self) -> bool:
        isatty = getattr(self.file, "isatty", None)
        return bool(isatty and isatty())

    def start(self) -> None:
        if not self.enabled or not self.terminal:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        console = Console(file=self.file)
        self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(bar_width=28),
                             TextColumn("{task.fields[info]}"), console=console, transient=False,
                             refresh_per_second=4)
        self._task = self._bar.add_task(self.description, total=1.0, info="starting")
        self._bar.start()

    def fraction(self, step: int, elapsed: float) -> float:
        """How far the run is through its budget, in [0, 1] (0 when unknown)."""
        parts = []
        if self.total_steps:
            parts.append(step / self.total_steps)
        if self.time_budget:
            parts.append(elapsed / self.time_budget)
        return min(1.0, max(parts)) if parts else 0.0

    def _info(self) -> str:
        s = self._state
        frac = self.fraction(s["step"], s["elapsed"])
        eta = s["elapsed"] * (1 - frac) / frac if frac > 0 else math.nan
        parts = [f"step {s['step']}" + (f"/{self.total_steps}" if self.total_steps else "")]
        if s.get("train_loss") is not None:
            parts.append(f"loss {s['train_loss']:.4f}")
        if self._metric is not None:
            parts.append(f"{self.headline} {_number(self._metric)}")
        parts.append(f"ETA {format_duration(eta)}")
        parts.append(f"{s['tokens_per_second']:,.0f} tok/s")
        parts.append(f"lr {s['lr']:.2e}")
        parts.append(f"{format_duration(s['elapsed'])} elapsed")
        return " | ".join(parts)

    def update(self, *, step: int, elapsed: float, train_loss: float | None, tokens_per_second: float,
               lr: float) -> None:
        """Record the latest training figures (cheap; the bar redraws at most every ``refresh`` s)."""
        if not self.enabled:
            return
        self._state = {"step": step, "elapsed": elapsed, "train_loss": train_loss,
                       "tokens_per_second": tokens_per_second, "lr": lr}
        now = time.monotonic()
        if self._bar is not None and now - self._last_update >= self.refresh:
            self._last_update = now
            self._bar.update(self._task, completed=self.fraction(step, elapsed), info=self._info())

    def slowdown(self, rate: float) -> str | None:
        """A one-line warning when ``rate`` (tokens/s) fell below ``SLOW`` times the run's starting
        pace (the first evaluation window's), at most once per ``WARN_EVERY`` seconds; else None."""
        if rate <= 0 or not math.isfinite(rate):
            return None
        if self._start_rate is None:
            self._start_rate = rate
            return None
        now = time.monotonic()
        if rate >= SLOW * self._start_rate or now - self._warned_at < WARN_EVERY:
            return None
        self._warned_at = now
        import os

        load = f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs" if hasattr(os, "getloadavg") else "a busy CPU"
        return (f"warning: {rate:,.0f} tok/s, {rate / self._start_rate:.0%} of this run's start "
                f"({self._start_rate:,.0f}); other processes are probably using the CPU ({load}). "
                f"--threads 1 suffers least on a shared CPU")

    def evaluated(self, metrics: dict[str, float], final: bool = False) -> None:
        """Show a new evaluation (plain mode: print a line if ``interval`` has passed, or if ``final``)."""
        if not self.enabled:
            return
        warning = self.slowdown(self._state.get("tokens_per_second", 0.0)) if self._state and not final else None
        if warning is not None:
            self.message(warning)
        if self.headline in metrics:
            self._metric = metrics[self.headline]
        if not self._state:
            return
        if self._bar is not None:
            self._last_update = time.monotonic()
            self._bar.update(self._task, completed=self.fraction(self._state["step"], self._state["elapsed"]),
                             info=self._info())
            return
        now = time.monotonic()
        if final or now - self._last_line >= self.interval:
            self._last_line = now
            self._last_printed = self._info()
            print(f"{self.description}: {self._last_printed}", file=self.file, flush=True)

    def message(self, text: str) -> None:
        """Print a line above the bar (or plainly)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.file, flush=True)

    def stop(self) -> None:
        """Draw the last state (plain mode: print it unless the last line already did) and end the display."""
        if self.enabled and self._bar is None and self._state and self._last_printed != self._info():
            print(f"{self.description}: {self._info()}", file=self.file, flush=True)
        if self._bar is not None:
            if self._state:
                self._bar.update(self._task, completed=self.fraction(self._state["step"], self._state["elapsed"]),
                                 info=self._info())
            self._bar.stop()
            self._bar = None
