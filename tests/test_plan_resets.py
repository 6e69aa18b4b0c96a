"""``layer.plan(x, lengths=..., reset=...)`` shows the reset segments the call really runs.

The oracle is the call itself: the kernels it launches are recorded (PyTorch's native kernel on
the fused backend, the engine's ``run_cell`` on the generic one) and their time spans must be
the segments the plan names.
"""
from __future__ import annotations

import re

import pytest
import torch

import rnnkit
from rnnkit.layers import generic_path, resets

T = 12


def _reset():
    r = torch.zeros(3, T, dtype=torch.bool)
    r[0, 4] = True  # row 0 restarts at step 4
    r[1, 9] = True  # row 1 at step 9
    r[2, 0] = True  # row 2 drops its incoming state
    return r


def _segments(text: str) -> list[int]:
    """The segment lengths a plan's reason names, from its "[a, b)" spans."""
    return [int(b) - int(a) for a, b in re.findall(r"\[(\d+), (\d+)\)", text)]


def _recorded(monkeypatch, engine: str) -> list[int]:
    spans: list[int] = []
    if engine == "fused":
        original = resets.run_fused

        def run_fused(kind, x, *a, **k):  # x (B, t, F) batch first: one segment
            spans.append(x.shape[1])
            return original(kind, x, *a, **k)

        monkeypatch.setattr(resets, "run_fused", run_fused)
    else:
        original = generic_path.run_cell

        def run_cell(cell, sequences, *a, reverse=False, **k):
            if not reverse:
                spans.append(sequences["inputs"].shape[1])
            return original(cell, sequences, *a, reverse=reverse, **k)

        monkeypatch.setattr(generic_path, "run_cell", run_cell)
    return spans


@pytest.mark.parametrize("engine", ["fused", "generic"])
def test_the_plan_names_the_segments_the_call_runs(engine, monkeypatch):
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, num_layers=2, engine=engine)
    x = torch.randn(3, T, 3)
    plan = layer.plan(x, reset=_reset())
    text = plan.reason("resets")
    assert "row 2" in text and "step 0" in text, text
    assert _segments(text) == [4, 5, 3], text
    spans = _recorded(monkeypatch, engine)
    layer(x, reset=_reset())
    per_call = [4, 5, 3] if engine == "fused" else [4, 5, 3] * 2  # generic: per layer
    assert spans == per_call
    assert "resets" in str(plan) and "segment" in plan.reason("loop"), str(plan)


def test_bidirectional_fused_plan_says_each_direction_runs_alone(monkeypatch):
    layer = rnnkit.GRU(3, 4, bidirectional=True, engine="fused")
    x = torch.randn(3, T, 3)
    lengths = torch.tensor([12, 10, 7])
    plan = layer.plan(x, lengths=lengths, reset=_reset())
    assert _segments(plan.reason("resets").split("reverse")[0]) == [4, 5, 3]
    spans = _recorded(monkeypatch, "fused")
    layer(x, lengths=lengths, reset=_reset())
    n_reverse = int(re.search(r"reverse direction[^.;]*?(\d+) segments", plan.reason("resets")).group(1))
    assert len(spans) == 3 + n_reverse and sum(spans) == 2 * T  # forward then reverse, T steps each
    assert "each direction alone" in plan.reason("loop")


def test_a_reset_at_step_0_only_cuts_nothing_and_no_reset_changes_nothing():
    layer = rnnkit.GRU(3, 4, engine="fused")
    x = torch.randn(3, T, 3)
    plan = layer.plan(x, reset=torch.tensor([True, False, True]))
    assert "rows 0, 2" in plan.reason("resets") and "no cut" in plan.reason("resets")
    assert str(layer.plan(x)) == str(layer.plan(x, reset=torch.zeros(3, dtype=torch.bool)))
    assert layer.plan(x).reason("resets") == ""


def test_the_plan_checks_reset_as_the_call_does():
    layer = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match=r"^reset: expected .*shape"):
        layer.plan(torch.randn(3, T, 3), reset=torch.zeros(2, T, dtype=torch.bool))


def test_a_step_plan_shows_its_restarting_rows():
    layer = rnnkit.LSTM(3, 4)
    plan = layer.plan(torch.randn(2, 3), reset=torch.tensor([False, True]))
    assert plan.loop in ("fused", "step") and "row 1" in plan.reason("resets") and "before the step" in plan.reason("resets")


def test_generic_segments_include_the_truncation_cuts(monkeypatch):
    layer = rnnkit.GRU(3, 4, engine="generic")
    x = torch.randn(3, T, 3)
    lengths = torch.tensor([12, 10, 7])
    bptt = rnnkit.engine.BPTT(truncate=3)
    plan = layer.plan(x, lengths=lengths, reset=_reset(), bptt=bptt)
    spans = _recorded(monkeypatch, "generic")
    layer(x, lengths=lengths, reset=_reset(), bptt=bptt)
    assert _segments(plan.reason("resets")) == spans and "truncate" in plan.reason("resets")
