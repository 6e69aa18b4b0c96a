"""Smoke tests of the benchmark harness: its pieces measure what they claim (no timing assertions).

The figures themselves are checked by nobody here; these tests pin the machinery: the timer
returns the median of the calls it made, in round-robin order; the memory meter sees known
allocations, including those autograd makes in backward; the RNN suite's four implementations
agree on a tiny case; ``run.py`` builds each script's command from the flags the script declares.
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path

import pytest
import torch

import rnnkit

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _harness as harness  # noqa: E402
import bench_rnn  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
bench_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_run)


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The benchmark mains set torch's thread count for the whole process; put it back for later tests."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_timing_statistics_match_statistics_module():
    t = harness.Timing((0.3, 0.1, 0.2, 0.5, 0.4), warmup=1)
    assert t.median == 0.3 and t.min == 0.1 and t.max == 0.5
    assert t.iqr == pytest.approx((0.2, 0.4))
    assert t.summary()["times_s"] == [0.3, 0.1, 0.2, 0.5, 0.4]


def test_time_interleaved_runs_warmups_then_round_robin_and_reports_the_median():
    order: list[str] = []
    fns = {"a": lambda: order.append("a"), "b": lambda: order.append("b")}
    timings = harness.time_interleaved(fns, repeats=5, warmup={"a": 2, "b": 0})
    assert order == ["a", "a"] + ["a", "b"] * 5  # warm-ups first, then A B A B ...
    for name in fns:
        t = timings[name]
        assert len(t.times) == 5 and len(t.cpu_times) == 5
        assert t.median == statistics.median(t.times)
    assert timings["a"].warmup == 2 and timings["b"].warmup == 0


def test_time_interleaved_rejects_zero_repeats():
    with pytest.raises(ValueError, match="repeats"):
        harness.time_interleaved({"a": lambda: None}, repeats=0)


def test_peak_memory_sees_a_known_allocation_pattern():
    def pattern() -> None:
        a = torch.empty(2_000_000)  # 8 MB
        b = torch.empty(1_000_000)  # 4 MB: 12 MB live
        del a  # 4 MB live
        c = torch.empty(500_000)  # 6 MB live
        del b, c

    peak = harness.peak_memory(pattern)
    assert 12_000_000 <= peak <= 12_000_000 + 100_000


def test_peak_memory_sees_autograd_allocations_in_backward():
    x = torch.randn(1_000_000, requires_grad=True)  # alive before: not counted

    def step() -> None:
        y = x * 2  # 4 MB, alive through backward
        y.sum().backward()  # MulBackward allocates x.grad: 4 MB more

    peak = harness.peak_memory(step)
    assert 8_000_000 <= peak <= 8_000_000 + 100_000
    assert x.grad is not None


def test_gemm_rate_and_bf16_probe_return_sane_values():
    rates = harness.gemm_gflops(32, 16, 24, repeats=2)
    assert "torch.mm" in rates and all(r > 0 and r == r for r in rates.values())  # positive, not NaN
    ok, note = harness.bf16_support()
    assert isinstance(ok, bool) and "bf16" in note


def test_format_table_and_write_json(tmp_path):
    table = harness.format_table(["name", "ms"], [["auto", "1.5"], ["loop", "12.0"]])
    lines = table.splitlines()
    assert lines[0].split() == ["name", "ms"] and set(lines[1]) <= {"-", " "} and lines[3].endswith("12.0")
    path = harness.write_json(tmp_path / "sub" / "r.json", {"t": harness.Timing((1.0, 3.0, 2.0), 0)})
    assert json.loads(path.read_text())["t"]["median_s"] == 2.0


@pytest.mark.parametrize("B,T", [(16, 256), (32, 256), (5, 17)])
def test_padded_lengths_pad_thirty_percent_and_keep_the_longest(B, T):
    lengths = bench_rnn.padded_lengths(B, T, seed=1)
    assert lengths.shape == (B,) and int(lengths.max()) == T and int(lengths.min()) >= round(0.4 * T)
    assert 1 - float(lengths.sum()) / (B * T) == pytest.approx(0.30, abs=0.02)
    assert not torch.equal(lengths, lengths.sort(descending=True).values)  # unsorted: enforce_sorted=False matters


def test_padded_lengths_single_sequence_is_seventy_percent():
    assert bench_rnn.padded_lengths(1, 1024).tolist() == [717]


def test_loop_baseline_masks_like_torch_packed():
    torch.manual_seed(0)
    impls = bench_rnn.build("lstm", bench_rnn.Regime("t", 3, 7, 4, 5), torch.float32, seed=0)
    x = torch.randn(3, 7, 4)
    lengths = torch.tensor([4, 7, 2])
    with torch.no_grad():
        ref = impls["torch"][0](x, lengths)
        for name in ("auto", "generic", "loop"):
            torch.testing.assert_close(impls[name][0](x, lengths), ref, atol=1e-5, rtol=1e-5)
    assert float(ref[2, 2:].abs().max()) == 0.0  # padded outputs are zero


def test_rnn_suite_end_to_end_on_one_tiny_regime(tmp_path, capsys):
    out = tmp_path / "rnn.json"
    results = bench_rnn.main(["--quick", "--regimes", "latency", "--cells", "gru", "--dtypes", "fp32",
                              "--repeats", "1", "--json", str(out)])
    assert len(results["cases"]) == 4  # lengths off/on x fwd, fwd+bwd
    for case in results["cases"]:
        assert case["agree"] and set(case["impls"]) == {"auto", "generic", "torch", "loop"}
        layer = rnnkit.GRU(case["I"], case["H"])  # auto's plan for the same call, made independently
        x = torch.randn(case["B"], case["T"], case["I"])
        lengths = None if case["lengths_list"] is None else torch.tensor(case["lengths_list"])
        with torch.set_grad_enabled(case["mode"] != "fwd"):
            plan = layer.plan(x, lengths=lengths)
        assert (case["auto_backend"], case["auto_loop"]) == (plan.backend, plan.loop)
        assert all(("peak_bytes" in e) == (case["mode"] == "fwd+bwd") for e in case["impls"].values())
    assert {row["status"] for row in results["acceptance"]} <= {"PASS", "MISS", "N/A"}
    assert json.loads(out.read_text())["cases"][0]["impls"]["torch"]["times_s"]
    assert "acceptance (issue 6)" in capsys.readouterr().out


def test_rnn_suite_rejects_an_unknown_cell():
    with pytest.raises(SystemExit, match="--cells"):
        bench_rnn.main(["--quick", "--cells", "lstm,transformer"])


def test_run_builds_commands_from_the_flags_each_script_declares(tmp_path):
    with_quick = tmp_path / "bench_alpha.py"
    with_quick.write_text('p.add_argument("--quick")\np.add_argument("--json")\np.add_argument("--threads")\n')
    cmd = bench_run.script_command(with_quick, quick=True, threads=2, json_path=tmp_path / "a.json")
    assert cmd[2:] == ["--quick", "--threads", "2", "--json", str(tmp_path / "a.json")]
    generation = tmp_path / "bench_generation.py"
    generation.write_text('p.add_argument("--tokens")\np.add_argument("--repeats")\n')  # no --long, no --json
    cmd = bench_run.script_command(generation, quick=True, threads=2, json_path=tmp_path / "g.json")
    assert cmd[2:] == ["--tokens", "50", "--repeats", "1"]
    assert bench_run.script_command(generation, quick=False, threads=None, json_path=None)[2:] == []
    # a flag the script only mentions (e.g. in a command line it runs) is not passed to it
    mentions = tmp_path / "bench_gamma.py"
    mentions.write_text('p.add_argument("--quick")\ncmd = ["rnnkit", "train", "--threads", "2"]\n')
    assert bench_run.script_command(mentions, quick=True, threads=2, json_path=None)[2:] == ["--quick"]


def test_run_discovers_the_rnn_suite_first_and_rejects_unknown_names():
    names = list(bench_run.discover())
    assert names[0] == "rnn" and "data" in names
    with pytest.raises(SystemExit):
        bench_run.main(["--only", "rnn,nonexistent"])


def test_run_quick_mode_makes_idle_openmp_threads_sleep(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert bench_run.child_env(quick=True)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert "OMP_WAIT_POLICY" not in bench_run.child_env(quick=False)
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")  # a user's own choice wins
    assert bench_run.child_env(quick=True)["OMP_WAIT_POLICY"] == "ACTIVE"


def test_run_script_reports_a_failing_script_and_its_output(capsys):
    command = [sys.executable, "-c", "print('partial table'); raise SystemExit(3)"]
    code, seconds, output = bench_run.run_script("boom", command, timeout=60.0)
    assert code == 3 and output == "partial table\n" and seconds >= 0.0
    assert "partial table" in capsys.readouterr().out  # streamed to the console as it ran
