"""Smoke test of benchmarks/bench_reset.py: every case runs, and the reset masks cut time as its table says."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_spec = importlib.util.spec_from_file_location(
    "bench_reset", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_reset.py")
bench_reset = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_reset)


def test_bench_reset_quick_runs_every_case(tmp_path):
    threads = torch.get_num_threads()
    try:
        assert bench_reset.main(["--quick", "--threads", "1", "--json", str(tmp_path / "r.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads((tmp_path / "r.json").read_text())["results"]
    assert set(results) == {f"{e}/{c}" for e in ("fused", "generic")
                            for c in ("none", "rows", "sparse", "episodes", "dense")}
    assert results["fused/sparse"]["segments"] == 3 and results["generic/episodes"]["segments"] == 17
    assert results["fused/none"]["ratio"] == 1.0
