"""benchmarks/bench_dropin.py runs end to end in --quick mode (timings are not checked here)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_dropin.py"


def test_bench_dropin_quick_reports_every_case(tmp_path):
    threads = torch.get_num_threads()
    spec = importlib.util.spec_from_file_location("bench_dropin", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_dropin"] = module
    try:
        spec.loader.exec_module(module)
        out = module.main(["--quick", "--threads", "1", "--json", str(tmp_path / "d.json")])
    finally:
        torch.set_num_threads(threads)
        sys.modules.pop("bench_dropin", None)
    cases = {(r["kind"], r["input"]) for r in out["results"]}
    assert cases == {(k, i) for k in ("GRU", "RNN", "LSTM") for i in ("padded", "packed")} | {
        ("encoder-decoder", "accelerate")}
    assert all(r["torch.nn"] > 0 and r["rnnkit auto"] > 0 for r in out["results"])
    assert (tmp_path / "d.json").exists()
