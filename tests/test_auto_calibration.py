"""The measurement protocol behind engine="auto" (benchmarks/calibrate_auto.py) and the table's
near-tie rule (rnnkit.engine.costs.Measured.faster). Oracles: hand-computed medians and ratios
of fixed times; the clock is a fake one, so nothing here is timed."""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
from pathlib import Path
from unittest import mock

import pytest
import torch

import rnnkit
from rnnkit.engine import costs, dispatch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def calibrate():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("calibrate_auto", ROOT / "benchmarks" / "calibrate_auto.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # its dataclass looks its module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    yield module
    sys.modules.pop(spec.name, None)  # type: ignore[union-attr]


KEY = "lstm|autocast-bfloat16|cpu|5-16|full|fwd+bwd"


def _row(passes, spread=None):  # type: ignore[no-untyped-def]
    row = {"fused_s": statistics.median(f for f, _ in passes), "generic_s": statistics.median(g for _, g in passes),
           "size": "B=16", "passes": [list(p) for p in passes]}
    if spread is not None:
        row["spread"] = {"fused": spread[0], "generic": spread[1]}
    return costs.lookup(KEY, {"meta": {}, "rows": {KEY: row}})


def test_a_near_tie_goes_to_the_steadier_backend():
    # fused 2% ahead in both passes, but its calls spread over 40% of the median: generic's 5%
    tie = _row([(1.0, 1.02), (0.99, 1.01)], spread=(0.40, 0.05))
    assert tie is not None and tie.spread == (0.40, 0.05)
    assert max(tie.regret.values()) <= 1 + costs.TIE and tie.faster == "generic"
    steady_fused = _row([(1.0, 1.02), (0.99, 1.01)], spread=(0.05, 0.40))
    assert steady_fused is not None and steady_fused.faster == "fused"


def test_over_three_passes_auto_takes_the_smaller_median_regret():
    # fused: ahead by 25-30% in two passes, 1.6x behind in one; generic: never more than 1.3x behind.
    # The mean regrets (1.2 against 1.183) would take generic; in two runs of three it loses 25-30%
    row = _row([(1.0, 1.3), (1.6, 1.0), (1.0, 1.25)], spread=(0.1, 0.1))
    assert row is not None and row.regret == pytest.approx({"fused": 1.6, "generic": 1.3})
    assert row.mean_regret == pytest.approx({"fused": 3.6 / 3, "generic": 3.55 / 3})
    assert row.median_regret == pytest.approx({"fused": 1.0, "generic": 1.25}) and row.faster == "fused"
    # generic ahead in two passes of three: generic, however far behind fused is in those
    row = _row([(1.3, 1.0), (1.0, 1.6), (1.02, 1.0)], spread=(0.1, 0.1))
    assert row is not None and row.median_regret["generic"] == 1.0 and row.faster == "generic"
    # two passes, each backend ahead once: the median, the mean and the worst pass agree
    two = _row([(1.0, 1.2), (1.1, 1.0)], spread=(0.1, 0.1))
    assert two is not None and two.faster == "fused"


def test_a_slow_process_does_not_outvote_the_others():
    # fused 8% ahead in four processes, 1.6x behind in one (oneDNN's slow mode at B=1): the mean
    # regrets (fused 1.12, generic 1.064) would take generic, which loses 8% in four runs of five;
    # the median regrets (1.0 against 1.08) take fused
    row = _row([(1.0, 1.08)] * 4 + [(1.6, 1.0)], spread=(0.1, 0.1))
    assert row is not None and row.median_regret == pytest.approx({"fused": 1.0, "generic": 1.08})
    assert row.mean_regret["generic"] < row.mean_regret["fused"] and row.faster == "fused"
    # two passes: the median is the mean (each backend ahead once: the one that loses less)
    two = _row([(1.0, 1.2), (1.1, 1.0)], spread=(0.1, 0.1))
    assert two is not None and two.median_regret == pytest.approx(two.mean_regret) and two.faster == "fused"
    # equal medians: the mean decides
    even = _row([(1.0, 1.1), (1.0, 1.1), (1.1, 1.0), (1.5, 1.0)], spread=(0.1, 0.1))
    assert even is not None and even.median_regret == pytest.approx({"fused": 1.05, "generic": 1.05})
    assert even.mean_regret["generic"] < even.mean_regret["fused"] and even.faster == "generic"


def test_beyond_the_tie_the_spread_does_not_decide():
    # fused 10% ahead in both passes: it wins however much its calls spread
    row = _row([(1.0, 1.1), (1.0, 1.12)], spread=(0.40, 0.01))
    assert row is not None and row.regret["generic"] > 1 + costs.TIE and row.faster == "fused"
    # no spread recorded (an older table): the worst-pass regret, as before
    old = _row([(1.0, 1.02), (1.2, 1.03)])
    assert old is not None and old.spread == () and old.faster == "generic"


def test_the_plan_names_the_spread_it_read():
    passes = [(1.0, 1.02), (0.99, 1.01)]
    table = {"meta": {}, "rows": {KEY: {"fused_s": 1.0, "generic_s": 1.02, "size": "B=16",
                                        "passes": [list(p) for p in passes],
                                        "spread": {"fused": 0.4, "generic": 0.05}}}}
    dispatch._plan.cache_clear()
    with mock.patch.object(costs, "load_table", return_value=table), torch.autocast("cpu", dtype=torch.bfloat16):
        layer = rnnkit.LSTM(3, 4)
        layer.train()
        plan = layer.plan(torch.randn(8, 5, 3).requires_grad_())
    dispatch._plan.cache_clear()
    assert not plan.fused and "spread 40% (fused) vs 5% (generic)" in plan.reason("backend")


class FakeClock:
    """perf_counter that moves only when a fake call runs."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def call(self, seconds: float):  # type: ignore[no-untyped-def]
        def run() -> None:
            self.now += seconds
        return run


def _rounds(calibrate, durations, rounds):  # type: ignore[no-untyped-def]
    clock = FakeClock()
    calls = {name: clock.call(t) for name, t in durations.items()}
    with mock.patch.object(calibrate.time, "perf_counter", clock):
        return calibrate.rotated_rounds(calls, rounds)


def test_rounds_run_until_the_target_time(calibrate):
    # a round of 0.3 s: 10 rounds reach 3 s; never fewer than `least`, never more than `most`
    near = {"fused": 0.1, "generic": 0.11, "auto": 0.09}
    assert len(_rounds(calibrate, near, calibrate.Rounds(4, 61, 3.0))) == 10
    assert len(_rounds(calibrate, near, calibrate.Rounds(12, 61, 3.0))) == 12
    assert len(_rounds(calibrate, near, calibrate.Rounds(4, 6, 3.0))) == 6
    done = _rounds(calibrate, near, calibrate.Rounds(3, 3, 0.0))
    assert done == [{"fused": pytest.approx(0.1), "generic": pytest.approx(0.11), "auto": pytest.approx(0.09)}] * 3


def test_rounds_stop_at_least_when_the_backends_are_far_apart(calibrate):
    far = {"fused": 1.0, "generic": 0.1}  # fused 10x slower in every round: more rounds decide nothing
    assert len(_rounds(calibrate, far, calibrate.Rounds(5, 61, 100.0))) == 5
    assert len(_rounds(calibrate, far, calibrate.Rounds(5, 61, 100.0, clear=20.0))) == 61
    # the check also times auto: auto / the faster backend needs the full rounds, the slower
    # backend leaves them (it decides nothing and would cost 10x auto's time)
    checked = _rounds(calibrate, {**far, "auto": 0.1, "auto_own": 0.1}, calibrate.Rounds(5, 61, 100.0))
    assert len(checked) == 61 and all("fused" in r for r in checked[:5])
    assert [sorted(r) for r in checked[5:]] == [["auto", "auto_own", "generic"]] * 56
    out = calibrate.compare(checked)
    assert out["best"] == "generic" and out["fused_over_generic"] == pytest.approx(10.0)
    assert out["auto_over_best"] == pytest.approx(1.0) and out["auto_own_over_best"] == pytest.approx(1.0)
    # within the clear margin in one round: both backends keep being timed
    clock = FakeClock()
    fused = iter([1.0, 1.0, 0.12] + [1.0] * 100)  # 1.2x generic in round 3
    calls = {"fused": lambda: setattr(clock, "now", clock.now + next(fused)), "generic": clock.call(0.1),
             "auto": clock.call(0.1)}
    with mock.patch.object(calibrate.time, "perf_counter", clock):
        assert all(len(r) == 3 for r in calibrate.rotated_rounds(calls, calibrate.Rounds(3, 20, 100.0)))


def test_the_call_order_rotates_from_round_to_round(calibrate):
    order = []
    calls = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    calibrate.rotated_rounds(calls, 3)
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_every_call_follows_every_other_equally_often(calibrate, n):
    # a call runs faster after its own backend: a fixed cyclic order (auto always after generic)
    # biased auto / the faster backend; over one cycle of orders, each ordered pair of
    # neighbours within a round occurs equally often (counted by brute force)
    names = "abcde"[:n]
    order: list[str] = []
    calls = {name: (lambda name=name: order.append(name)) for name in names}
    cycle = n if n % 2 == 0 else 2 * n
    calibrate.rotated_rounds(calls, cycle)
    rounds = [order[i:i + n] for i in range(0, len(order), n)]
    assert all(sorted(r) == list(names) for r in rounds)
    pairs = [(r[i], r[i + 1]) for r in rounds for i in range(n - 1)]
    counts = {(a, b): pairs.count((a, b)) for a in names for b in names if a != b}
    assert len(set(counts.values())) == 1 and min(counts.values()) >= 1


def test_the_check_compares_auto_with_the_faster_backend_of_the_rounds(calibrate):
    # generic is faster in 2 of 3 rounds; auto ran generic and timed 4% over it in the median round
    rounds = [{"fused": 1.0, "generic": 0.9, "auto": 0.936}, {"fused": 1.0, "generic": 1.1, "auto": 1.144},
              {"fused": 1.0, "generic": 0.8, "auto": 0.8}]
    out = calibrate.compare(rounds)
    assert out["best"] == "generic" and out["fused_over_generic"] == pytest.approx(1 / 0.9)
    assert out["auto_over_best"] == pytest.approx(1.04)  # ratios 1.04, 1.04, 1.0
    assert out["auto_over_round_min"] == pytest.approx(1.04)  # per-round minimum: 0.9, 1.0, 0.8
    assert calibrate.spread([1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx((4.0 - 2.0) / 3.0)


def test_the_table_records_spread_load_and_a_repository_command(calibrate, tmp_path):
    case = {"key": KEY, "B": 16, "T": 8, "I": 4, "H": 4}
    cases = [{**case, "median_s": {"fused": 1.0, "generic": 1.02}, "spread": {"fused": 0.1, "generic": 0.02}},
             {**case, "median_s": {"fused": 0.99, "generic": 1.01}, "spread": {"fused": 0.3, "generic": 0.04}}]
    inside = ROOT / "benchmarks" / "README.md"
    command = "calibrate " + " ".join(calibrate.repo_relative(a) for a in (str(inside), "/no/such/run.json"))
    table = json.loads(calibrate.write_table(cases, tmp_path / "t.json", command, [1.5, 0.5, 1.0]).read_text())
    row = table["rows"][KEY]
    assert row["spread"] == {"fused": 0.3, "generic": 0.04}  # each backend's worst pass
    assert row["passes"] == [[1.0, 1.02], [0.99, 1.01]]
    assert costs.lookup(KEY, table).faster == "generic"  # a near-tie: the steadier
    meta = table["meta"]
    assert meta["command"] == "calibrate benchmarks/README.md /no/such/run.json"
    assert meta["load_average_1min_while_measuring"] == {"min": 0.5, "median": 1.0, "max": 1.5}
    assert "load_average" not in meta["machine"]  # the load at write time is not recorded


def test_the_shipped_table_was_written_from_repository_paths():
    meta = costs.load_table()["meta"]
    assert "/tmp/" not in meta["command"]


def test_pooled_check_runs_judge_a_case_on_all_their_rounds(calibrate):
    # two processes: in the first, auto timed 8% over generic in its median round; in the second
    # at par: over the pooled rounds, the median round is the second run's
    case = {"regime": "throughput", "cell": "lstm", "dtype": "fp32", "lengths": True, "mode": "fwd",
            "auto_backend": "generic-compiled"}
    one = {**case, "auto_over_best": 1.08,
           "round_s": [{"fused": 2.0, "generic": 1.0, "auto": a} for a in (1.06, 1.08, 1.1)]}
    two = {**case, "auto_over_best": 1.0,
           "round_s": [{"fused": 2.0, "generic": 1.0, "auto": a} for a in (0.98, 1.0, 1.01, 1.02, 0.99)]}
    (pooled,) = calibrate.pool([[one], [two]])
    assert pooled["runs"] == 2 and pooled["rounds"] == 8 and pooled["per_run"] == [1.08, 1.0]
    assert pooled["auto_over_best"] == pytest.approx((1.01 + 1.02) / 2)  # the median of 8 ratios
    assert pooled["median_s"]["fused"] == 2.0 and pooled["best"] == "generic"
    assert pooled["auto_backend"] == "generic-compiled"


def test_the_check_times_auto_on_the_layer_that_times_both_backends(calibrate):
    # one layer serves fused, generic and auto (its engine set per call); auto_own is a second
    # layer with the same weights, built as a user would
    regime = calibrate.bench_rnn.Regime("tiny", 2, 5, 3, 4)
    layers = calibrate.build("gru", regime, torch.float32, 0, check=True)
    shared, own = layers["shared"], layers["own"]
    assert shared is not own and own.engine == "auto"
    assert all(torch.equal(a, b) for a, b in zip(shared.parameters(), own.parameters(), strict=True))
    seen = []
    real = shared.forward
    with mock.patch.object(shared, "forward", side_effect=lambda *a, **k: (seen.append(shared.engine), real(*a, **k))[1]):
        case = calibrate.run_case(layers, regime, "gru", "fp32", True, "fwd+bwd", calibrate.Rounds(3, 3, 0.0), 1, 0)
    assert sorted(set(seen)) == ["auto", "fused", "generic"]
    assert [sorted(r) for r in case["round_s"]] == [["auto", "auto_own", "fused", "generic"]] * 3
    assert case["auto_backend"] == case["auto_own_backend"] and "auto_own_over_best" in case
