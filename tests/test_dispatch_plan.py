"""The one dispatch plan (issue 9 item 3) and the measured ``auto`` (item 4).

* ``make_plan`` decides backend, loop form and dtype handling; ``layer.plan(x)`` shows it;
* ``forward`` and ``step`` obey it: the kernels that run are the plan's, and ``engine="fused"``
  raises in ``step`` with the same message as in ``forward``;
* it logs its reasons once, at debug level;
* ``auto`` follows the cost table (fused on CUDA), and whichever it picks equals torch.nn.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
from unittest import mock

import pytest
import torch
from torch import nn

import rnnkit
import rnnkit.engine.structured as structured
import rnnkit.layers.recurrent as recurrent_module
from rnnkit.engine import costs, dispatch
from rnnkit.engine.dispatch import Plan, make_plan
from rnnkit.engine.native import native_available

needs_c = pytest.mark.skipif(not native_available(), reason="no C compiler: the native loops are absent")


def test_plan_is_a_frozen_named_record_with_reasons():
    plan = rnnkit.LSTM(4, 8, engine="generic").plan(torch.randn(2, 5, 4))
    assert isinstance(plan, Plan)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.backend = "fused"  # type: ignore[misc]
    assert plan.backend in dispatch.BACKENDS and plan.loop in dispatch.LOOPS
    assert {k for k, _ in plan.reasons} == {"backend", "loop", "dtype"}
    assert "engine='generic' was requested" in plan.reason("backend")
    assert "generic-compiled" in str(plan)


@needs_c
@pytest.mark.parametrize("batch,dtype,loop,compute", [
    (2, torch.float32, "native", torch.float32),
    (8, torch.float32, "hybrid", torch.float32),
    (8, torch.float64, "hybrid", torch.float64),
    (8, torch.bfloat16, "hybrid", torch.float32),
    (2, torch.bfloat16, "native", torch.float32),  # regression: ran per-step bf16 matmuls, 5x slower at B=1
])
def test_forward_runs_the_kernel_the_plan_names(batch, dtype, loop, compute):  # type: ignore[no-untyped-def]
    layer = rnnkit.GRU(3, 5, engine="generic").to(dtype)
    x = torch.randn(batch, 4, 3, dtype=dtype)
    plan = layer.plan(x)
    assert (plan.backend, plan.loop, plan.compute_dtype) == ("generic-compiled", loop, compute)
    made = []

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        kernel = choose(*args, **kwargs)
        made.append(type(kernel))
        return kernel

    choose = structured._choose_kernel
    with mock.patch.object(structured, "_choose_kernel", spy):
        layer(x)
    kinds = {"native": structured.SeqKernel, "hybrid": structured.StepKernel, "eager": structured.EagerKernel}
    assert made == [kinds[loop]], f"plan says {loop}, the engine made {made}"


@needs_c
def test_engine_obeys_a_given_plan_and_results_agree():
    """A plan that says eager runs the eager kernel even where the C loop could run; same numbers."""
    from rnnkit.engine import run_cell

    cell = rnnkit.cells.LSTMCell(4)
    xp = torch.randn(2, 6, 16)
    init = {"h": torch.zeros(2, 4), "c": torch.zeros(2, 4)}
    native_plan = make_plan("generic", cell, why_not_fused=None, dtype=torch.float32, device="cpu", batch=2)
    assert native_plan.loop == "native"
    eager_plan = dataclasses.replace(native_plan, loop="eager")
    with mock.patch.object(structured, "SeqKernel", wraps=structured.SeqKernel) as native:
        eager = run_cell(cell, {"inputs": xp}, init, {}, mask=None, reverse=False, plan=eager_plan)
    assert not native.called
    ref = run_cell(cell, {"inputs": xp}, init, {}, mask=None, reverse=False, plan=native_plan)
    torch.testing.assert_close(eager.outputs["h"], ref.outputs["h"], atol=1e-6, rtol=1e-5)


def test_fused_engine_raises_in_step_exactly_as_in_forward():
    layer = rnnkit.LSTM(3, 4, engine="fused", peepholes=True)
    with pytest.raises(ValueError) as in_forward:
        layer(torch.randn(2, 5, 3))
    with pytest.raises(ValueError) as in_step:
        layer.step(torch.randn(2, 3))
    assert str(in_step.value) == str(in_forward.value)
    assert "peepholes" in str(in_step.value) and "engine='generic'" in str(in_step.value)


@pytest.mark.parametrize("engine,fused", [("fused", True), ("generic", False), ("auto", True)])
def test_step_obeys_the_plan(engine, fused):
    layer = rnnkit.GRU(3, 4, engine=engine)
    x = torch.randn(2, 3)
    plan = layer.plan(x)
    assert plan.fused == fused and (plan.loop == "fused" if fused else plan.loop == "step")
    with mock.patch.object(recurrent_module, "run_fused", wraps=recurrent_module.run_fused) as run_fused:
        y, h = layer.step(x)
    assert run_fused.called == fused
    ref = nn.GRU(3, 4, batch_first=True)
    with torch.no_grad():
        for ours, theirs in zip(layer.flat_weights(), [w for ws in ref.all_weights for w in ws], strict=True):
            theirs.copy_(ours)
    torch.testing.assert_close(y, ref(x.unsqueeze(1))[0][:, 0], atol=1e-6, rtol=1e-5)


def test_plan_logs_its_reason_once_at_debug_level(caplog):
    dispatch._plan.cache_clear()
    dispatch._said.clear()
    layer = rnnkit.RNN(3, 4, engine="generic", nonlinearity="relu")
    x = torch.randn(3, 5, 3)
    with caplog.at_level(logging.DEBUG, logger="rnnkit.engine"):
        layer(x)
        layer(x)
        layer(x)
    records = [r for r in caplog.records if r.name == "rnnkit.engine"]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    assert "engine='generic' was requested" in records[0].getMessage()


def _table(faster: str) -> dict:
    rows = {}
    for bucket in ("1", "2-4", "5-16", "17-64", "65+"):
        for lengths in ("full", "lengths"):
            for mode in ("fwd", "fwd+bwd"):
                key = f"gru|float32|cpu|{bucket}|{lengths}|{mode}"
                rows[key] = {"fused_s": 1.0 if faster == "fused" else 2.0,
                             "generic_s": 2.0 if faster == "fused" else 1.0, "size": "test"}
    return {"meta": {}, "rows": rows}


@pytest.mark.parametrize("faster", ["fused", "generic"])
def test_auto_follows_the_measured_table(faster):
    dispatch._plan.cache_clear()
    with mock.patch.object(costs, "load_table", return_value=_table(faster)):
        plan = rnnkit.GRU(3, 4).plan(torch.randn(2, 5, 3), lengths=torch.tensor([5, 2]))
        cuda = make_plan("auto", rnnkit.cells.GRUCell(4), why_not_fused=None, dtype=torch.float32,
                         device="cuda", batch=2)
    dispatch._plan.cache_clear()
    assert plan.fused == (faster == "fused")
    assert "measured" in plan.reason("backend") and "gru|float32|cpu|2-4|lengths" in plan.reason("backend")
    assert cuda.fused and "not measured on a GPU" in cuda.reason("backend")


def test_cost_table_lookup_takes_the_nearest_batch_bucket():
    table = {"meta": {}, "rows": {"lstm|float32|cpu|17-64|full|fwd": {"fused_s": 1.0, "generic_s": 3.0,
                                                                      "size": "B=32"}}}
    row = costs.lookup(costs.cost_key("lstm", "float32", "cpu", 100, False, False), table)
    assert row is not None and not row.exact and row.faster == "fused"
    assert costs.lookup(costs.cost_key("gru", "float32", "cpu", 100, False, False), table) is None


def test_shipped_table_covers_the_suite_grid():
    rows = costs.load_table()["rows"]
    for kind in ("lstm", "gru", "rnn"):
        for bucket in ("1", "5-16", "17-64"):
            for lengths in ("full", "lengths"):
                for mode in ("fwd", "fwd+bwd"):
                    assert f"{kind}|float32|cpu|{bucket}|{lengths}|{mode}" in rows


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_auto_equals_torch_nn_whatever_it_picks(kind):
    module = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind](3, 5, batch_first=True)
    layer = rnnkit.from_torch(module, engine="auto")
    x = torch.randn(4, 6, 3)
    lengths = torch.tensor([6, 3, 5, 1])
    y, _ = layer(x, lengths=lengths)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref, _ = nn.utils.rnn.pad_packed_sequence(module(packed)[0], batch_first=True, total_length=6)
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("faster_bf16", ["fused", "generic"])
def test_auto_under_cpu_bf16_autocast_reads_the_bfloat16_rows(faster_bf16):
    """Under a CPU bf16 autocast the float32 input runs as bf16 (the fused kernel is autocast to bf16), so auto
    must read the bfloat16 rows of the table, not the float32 ones (which had made text training 1.5x slower)."""
    rows = {}
    for dtype, faster in (("float32", "generic" if faster_bf16 == "fused" else "fused"), ("bfloat16", faster_bf16)):
        for mode in ("fwd", "fwd+bwd"):
            rows[f"gru|{dtype}|cpu|2-4|full|{mode}"] = {"fused_s": 1.0 if faster == "fused" else 2.0,
                                                       "generic_s": 2.0 if faster == "fused" else 1.0, "size": "t"}
    dispatch._plan.cache_clear()
    layer = rnnkit.GRU(3, 4)
    x = torch.randn(2, 5, 3)
    try:
        with mock.patch.object(costs, "load_table", return_value={"meta": {}, "rows": rows}):
            plain = layer.plan(x)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                cast = layer.plan(x)
                y, _ = layer(x)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=False):
                off = layer.plan(x)
    finally:
        dispatch._plan.cache_clear()
    assert cast.fused == (faster_bf16 == "fused") and "gru|bfloat16|cpu" in cast.reason("backend")
    assert plain.fused != cast.fused and "gru|float32|cpu" in plain.reason("backend")
    assert off.fused == plain.fused
    assert plain.dtype == cast.dtype == torch.float32  # the call's own dtype is unchanged; only the lookup differs
    assert torch.isfinite(y).all() and y.shape == (2, 5, 4)
def test_a_near_tie_that_flips_between_passes_takes_the_backend_never_far_behind():
    # pass 1: fused 2% ahead; pass 2: fused 17% behind. Medians say fused, the worst pass says generic.
    row = {"fused_s": 1.0, "generic_s": 1.02, "size": "B=32", "passes": [[1.0, 1.02], [1.2, 1.03]]}
    key = "gru|float32|cpu|17-64|full|fwd"
    measured = costs.lookup(key, {"meta": {}, "rows": {key: row}})
    assert measured is not None and measured.faster == "generic"
    assert measured.regret == pytest.approx({"fused": 1.2 / 1.03, "generic": 1.02})
    one_pass = costs.Measured("k", 1.0, 1.02, "", True)  # a single pass: the smaller median
    assert one_pass.faster == "fused" and one_pass.regret == pytest.approx({"fused": 1.0, "generic": 1.02})


def _rows(dtype: str, faster: str) -> dict:
    return {f"gru|{dtype}|cpu|2-4|full|fwd+bwd": {"fused_s": 1.0 if faster == "fused" else 2.0,
                                                   "generic_s": 2.0 if faster == "fused" else 1.0, "size": "t"}}


@pytest.mark.parametrize("amp_faster", ["fused", "generic"])
def test_auto_under_cpu_bf16_autocast_reads_its_own_rows(amp_faster):
    other = "generic" if amp_faster == "fused" else "fused"
    table = {"meta": {}, "rows": {**_rows("float32", other), **_rows("autocast-bfloat16", amp_faster)}}
    layer, x = rnnkit.GRU(3, 4), torch.randn(2, 5, 3)
    dispatch._plan.cache_clear()
    with mock.patch.object(costs, "load_table", return_value=table):
        plain = layer.plan(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            amp = layer.plan(x)
    dispatch._plan.cache_clear()
    assert plain.fused == (other == "fused") and "gru|float32|" in plain.reason("backend")
    assert amp.fused == (amp_faster == "fused") and "gru|autocast-bfloat16|" in amp.reason("backend")


def test_autocast_without_its_rows_reads_the_bfloat16_rows():
    table = {"meta": {}, "rows": {**_rows("float32", "fused"), **_rows("bfloat16", "generic")}}
    dispatch._plan.cache_clear()
    with mock.patch.object(costs, "load_table", return_value=table), torch.autocast("cpu", dtype=torch.bfloat16):
        plan = rnnkit.GRU(3, 4).plan(torch.randn(2, 5, 3))
    dispatch._plan.cache_clear()
    assert not plan.fused and "gru|bfloat16|" in plan.reason("backend")


def test_calibration_pools_passes_into_one_row(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "calibrate_auto.py"
    spec = importlib.util.spec_from_file_location("calibrate_auto", path)
    calibrate = importlib.util.module_from_spec(spec)
    with mock.patch.dict(sys.modules, {"calibrate_auto": calibrate}):  # its dataclass looks its module up
        spec.loader.exec_module(calibrate)  # type: ignore[union-attr]
    case = {"key": "gru|float32|cpu|17-64|full|fwd", "B": 32, "T": 8, "I": 4, "H": 4}
    cases = [{**case, "median_s": {"fused": f, "generic": g}} for f, g in ((1.0, 1.02), (1.2, 1.03), (1.1, 1.0))]
    table = json.loads(calibrate.write_table(cases, tmp_path / "t.json", "test").read_text())
    row = table["rows"][case["key"]]
    assert row["passes"] == [[1.0, 1.02], [1.2, 1.03], [1.1, 1.0]]
    assert row["fused_s"] == 1.1 and row["generic_s"] == 1.02
    assert costs.lookup(case["key"], table).faster == "generic"
