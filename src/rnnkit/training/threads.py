"""How many torch threads a run should use: the CPUs this process may use, minus what others keep busy.

Torch sizes its OpenMP pool to every core of the machine, whatever else runs, and its threads
spin-wait between parallel regions. When another CPU-bound process shares the cores, each of
our parallel regions waits for a thread that the kernel has descheduled: text training ran 5x
slower with one busy neighbour on two cores, but lost only a third with one thread. Forcing
``OMP_WAIT_POLICY=PASSIVE`` instead is no cure: it makes a batch-1 ``torch.nn.LSTM`` ~20x slower
here. So the count is chosen from measurements:

- :func:`available_cpus`: the CPUs the process may run on (``os.sched_getaffinity``), capped by
  the cgroup's CPU quota (``cpu.max`` of cgroup v2, ``cpu.cfs_quota_us`` of v1): a container
  limited to 1.5 CPUs on a 64-core host gets 1, not 64.
- :func:`busy_elsewhere`: how many of those CPUs other processes kept busy over a short window
  (``/proc/stat`` minus this process's own CPU time), measured while this process is idle.
- :func:`choose_threads`: the first minus the second, rounded, at least 1.
- :class:`ThreadGovernor`: the same decision again during a run, every ``interval`` seconds,
  from the CPU time used since its last look (no extra waiting), so a neighbour that starts or
  stops mid-run changes the thread count. The text task calls it once per batch.

Example:
    >>> choose_threads(cpus=2.0, busy=0.0), choose_threads(cpus=2.0, busy=0.95), choose_threads(cpus=1.5, busy=0.0)
    (2, 1, 1)
    >>> 1 <= auto_threads() <= max(1, int(available_cpus()))
    True
"""
from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["BUSY_WINDOW", "ThreadGovernor", "auto_threads", "available_cpus", "busy_elsewhere", "choose_threads", "cgroup_quota"]

BUSY_WINDOW = 0.25  # seconds over which busy_elsewhere samples /proc/stat
_SPARE = 0.35  # a neighbour using less than this share of a core leaves the core to us


def cgroup_quota(root: str | os.PathLike[str] = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (e.g. 1.5), or None when there is none.

    Reads cgroup v2 ``cpu.max`` ("max 100000" means no limit) or v1 ``cpu.cfs_quota_us`` and
    ``cpu.cfs_period_us`` (a quota of -1 means no limit), at ``root`` and, for v2, at the
    process's own cgroup path from ``/proc/self/cgroup``.
    """
    base = Path(root)
    candidates = [base / "cpu.max"]
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                candidates.insert(0, base / line[3:].lstrip("/") / "cpu.max")
    except OSError:
        pass
    for path in candidates:
        try:
            quota, period = path.read_text().split()[:2]
        except (OSError, ValueError):
            continue
        return None if quota == "max" else int(quota) / int(period)
    try:
        quota_us = int((base / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((base / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def available_cpus() -> float:
    """The CPUs this process may use: its affinity set, capped by the cgroup quota (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_quota()
    return max(1.0, min(float(cores), quota) if quota is not None else float(cores))


def _cpu_jiffies(cpus: set[int] | None) -> int | None:
    """Busy jiffies (user, nice, system, irq, softirq, steal) summed over ``cpus`` (None: all)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or name == "cpu":
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        values = [int(v) for v in fields]
        total += values[0] + values[1] + values[2] + sum(values[5:8])  # not idle (3) nor iowait (4)
    return total


def busy_elsewhere(window: float = BUSY_WINDOW) -> float:
    """CPUs of this process's affinity set that other processes kept busy over ``window`` seconds.

    0.0 where ``/proc/stat`` is not available (not Linux).
    """
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    before, own_before, t0 = _cpu_jiffies(cpus), _own_seconds(), time.monotonic()
    if before is None:
        return 0.0
    time.sleep(window)
    after, own_after, t1 = _cpu_jiffies(cpus), _own_seconds(), time.monotonic()
    if after is None or t1 <= t0:
        return 0.0
    busy = (after - before) / tick - (own_after - own_before)  # CPU-seconds used by everything else
    return max(0.0, busy / (t1 - t0))


def _own_seconds() -> float:
    times = os.times()
    return times.user + times.system


def choose_threads(cpus: float, busy: float) -> int:
    """Threads for ``cpus`` available CPUs of which others keep ``busy`` busy: the free ones, at least 1."""
    free = cpus - busy + _SPARE  # a core counts as free unless a neighbour uses over _SPARE of it
    return max(1, min(int(cpus), math.floor(free)))


def auto_threads(window: float = BUSY_WINDOW) -> int:
    """:func:`choose_threads` from :func:`available_cpus` and a :func:`busy_elsewhere` measurement."""
    cpus = available_cpus()
    if cpus < 2:
        return 1
    return choose_threads(cpus, busy_elsewhere(window))


class ThreadGovernor:
    """Re-decides torch's thread count during a run from what other processes use (see the module docstring).

    ``tick()`` is cheap (a clock read) except every ``interval`` seconds, when it reads
    ``/proc/stat`` and this process's CPU time, and calls ``torch.set_num_threads`` if the free
    CPUs changed. ``read`` (tests) replaces the readings: it returns (busy CPU-seconds of
    everything, own CPU-seconds, wall seconds).

    Example:
        >>> readings = iter([(0.0, 0.0, 0.0), (10.0, 10.0, 10.0), (29.0, 19.0, 20.0)])
        >>> governor = ThreadGovernor(cpus=2.0, threads=2, read=lambda: next(readings), apply=lambda n: None)
        >>> [governor.tick(force=True) for _ in range(3)]   # first look; idle neighbours; one busy core
        [2, 2, 1]
    """

    def __init__(self, cpus: float | None = None, threads: int | None = None, interval: float = 10.0,
                 read: Callable[[], tuple[float, float, float]] | None = None,
                 apply: Callable[[int], None] | None = None) -> None:
        import torch

        self.cpus = available_cpus() if cpus is None else cpus
        self.threads = threads  # None: torch's count at the first tick (the run sets it after building the task)
        self.interval = interval
        self._read = read or _readings
        self._apply = apply or torch.set_num_threads
        self._last: tuple[float, float, float] | None = None
        self._next = time.monotonic() + interval

    def tick(self, force: bool = False) -> int:
        """The thread count now (changed when the free CPUs changed since the last look)."""
        if self.threads is None:
            import torch

            self.threads = torch.get_num_threads()
        if not force and time.monotonic() < self._next:
            return self.threads
        self._next = time.monotonic() + self.interval
        now = self._read()
        last, self._last = self._last, now
        if last is None or now[2] <= last[2]:
            return self.threads
        busy = max(0.0, (now[0] - last[0]) - (now[1] - last[1])) / (now[2] - last[2])
        wanted = choose_threads(self.cpus, busy)
        if wanted != self.threads:
            self._apply(wanted)
            self.threads = wanted
        return self.threads


def _readings() -> tuple[float, float, float]:
    cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    jiffies = _cpu_jiffies(cpus)
    own = _own_seconds()
    return ((jiffies / tick) if jiffies is not None else own, own, time.monotonic())
