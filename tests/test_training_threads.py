"""The thread count of a run: from the CPUs the process may use and what other processes keep busy."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from rnnkit.training import threads
from rnnkit.training.threads import ThreadGovernor, cgroup_quota, choose_threads


@pytest.mark.parametrize(("cpus", "busy", "want"), [(2, 0.0, 2), (2, 0.2, 2), (2, 0.5, 1), (2, 1.0, 1), (2, 2.0, 1),
                                                    (8, 3.0, 5), (1.5, 0.0, 1), (4, 0.3, 4)])
def test_choose_threads_leaves_the_busy_cores_to_their_owners(cpus: float, busy: float, want: int) -> None:
    assert choose_threads(cpus, busy) == want


def test_cgroup_quota_reads_v2_and_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert cgroup_quota(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cgroup_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_quota(tmp_path) == 2.0


def test_available_cpus_is_capped_by_the_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "cgroup_quota", lambda: 1.0)
    assert threads.available_cpus() == 1.0


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_busy_elsewhere_sees_a_spinning_neighbour() -> None:
    """A process that spins one core shows up as (at least about) one busy CPU."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        busy = threads.busy_elsewhere(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy >= 0.7  # the spinner, and whatever else the machine runs


def test_governor_follows_neighbours_that_come_and_go() -> None:
    readings = iter([(0.0, 0.0, 0.0), (20.0, 20.0, 10.0), (39.0, 29.0, 20.0), (59.0, 39.0, 30.0), (79.0, 59.0, 40.0)])
    applied: list[int] = []
    governor = ThreadGovernor(cpus=2.0, threads=2, read=lambda: next(readings), apply=applied.append)
    seen = [governor.tick(force=True) for _ in range(5)]
    assert seen == [2, 2, 1, 1, 2] and applied == [1, 2]
    assert governor.tick() == 2  # between looks: no reading, no change
