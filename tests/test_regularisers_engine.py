"""Regularisers on the fast loop against an independent oracle.

The oracle is a plain per-step torch loop written here: it applies the same drawn masks
(recurrent dropout on the state feeding the matmul, zoneout mixing, a weight-dropped W_hh)
around the cell's own ``pointwise`` and lets autograd differentiate it. Every loop form the
engine runs (the compiled C per-step kernels, the eager-printed kernels, the autograd pointwise
kernel, the step-wise engine) must match it, in fp64 at 1e-10 and in fp32 at 1e-5.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

import rnnkit
from rnnkit.cells.examples import MGU  # a user cell the compiler takes
from rnnkit.engine import Regularisers, make_plan, run_cell


class SinCell(rnnkit.Structured):  # a user cell the compiler refuses (sin): the autograd kernel
    gates = 1
    states = ("h", "c")

    def pointwise(self, inputs, hw, h, c):
        c_new = 0.5 * c + torch.sin(inputs + hw)
        return torch.tanh(c_new) + 0.1 * h, c_new


CELLS = {
    "lstm": lambda: rnnkit.cells.LSTMCell(5),
    "gru": lambda: rnnkit.cells.GRUCell(5),
    "elman": lambda: rnnkit.cells.ElmanCell(5),
    "peephole_lstm": lambda: rnnkit.cells.LSTMCell(5, peepholes=True),
    "mgu": lambda: MGU(5),
    "layernorm_lstm": lambda: rnnkit.cells.LayerNormLSTMCell(5),
    "sin": lambda: SinCell(5),
}
ALL = Regularisers(recurrent_dropout=0.3, zoneout=0.25, weight_drop=0.4)


def oracle(cell, x, init, masks, mask=None, reverse=False):
    """Per-step torch loop with the same masks: states after every step (B, T, H) + finals."""
    B, T, _ = x.shape
    W = cell.weight if masks.weight is None else cell.weight * masks.weight
    state = dict(init)
    seqs = {n: [None] * T for n in cell.states}
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h = state[cell.recurrent_state]
        if masks.state is not None:
            h = h * masks.state
        hw = h @ W.t() + (cell.bias if cell.bias is not None else 0)
        new = cell.pointwise(inputs=x[:, t], hw=hw, **state)
        new = dict(zip(cell.states, (new,) if isinstance(new, torch.Tensor) else new))
        for i, n in enumerate(cell.states):
            z = masks.zone[i] if masks.zone else None
            if z is not None:
                a = z if isinstance(z, float) else z[t]
                new[n] = a * new[n] + (1 - a) * state[n]
            if mask is not None:
                keep = mask[:, t].unsqueeze(1)
                new[n] = torch.where(keep, new[n], state[n])
        state = new
        for n in cell.states:
            seqs[n][t] = state[n] if mask is None else state[n] * mask[:, t].unsqueeze(1)
    return [torch.stack(seqs[n], 1) for n in cell.states] + [state[n] for n in cell.states]


def _run(cell, x, init, masks, loop, mask=None, reverse=False):
    plan = make_plan("generic", cell, why_not_fused="a cell scan", dtype=x.dtype, device=x.device,
                     batch=x.shape[0], lengths=mask is not None, backward=True, regularised="regularisers")
    assert plan.loop != "native"  # masks between steps keep the call off the whole-sequence C loop
    plan = dataclasses.replace(plan, loop=loop)
    scan = run_cell(cell, {"inputs": x}, init, {}, mask=mask, reverse=reverse, plan=plan, regularise=masks)
    return [scan.outputs[n] for n in cell.states] + [scan.final[n] for n in cell.states]


def _compare(name, loop, dtype, batch, reg, training=True, lengths=False, reverse=False, tol=1e-10):
    torch.manual_seed(1)
    cell = CELLS[name]().to(dtype)
    B, T, H = batch, 7, cell.hidden_size
    x = torch.randn(B, T, cell.input_width, dtype=dtype, requires_grad=True)
    init = {n: torch.randn(B, H, dtype=dtype, requires_grad=True) for n in cell.states}
    mask = None
    if lengths:
        lens = torch.randint(1, T + 1, (B,))
        lens[0] = T
        mask = torch.arange(T).unsqueeze(0) < lens.unsqueeze(1)  # (B, T)
    masks = reg.draw(cell, B, T, x, training)
    assert masks is not None
    wrt = [x, *init.values(), *cell.parameters()]
    got = _run(cell, x, init, masks, loop, mask, reverse)
    ref = oracle(cell, x, init, masks, mask, reverse)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
    probes = [torch.randn_like(r) for r in ref]
    g_got = torch.autograd.grad(got, wrt, probes, allow_unused=True)
    g_ref = torch.autograd.grad(ref, wrt, probes, allow_unused=True)
    for a, b in zip(g_got, g_ref):
        if b is None:
            assert a is None or not a.abs().any()
        else:
            torch.testing.assert_close(a, b, atol=tol, rtol=tol)


@pytest.mark.parametrize("loop", ["hybrid", "eager", "autograd"])
@pytest.mark.parametrize("name", list(CELLS))
def test_all_regularisers_fp64_every_loop(name, loop):
    _compare(name, loop, torch.float64, batch=6, reg=ALL)


@pytest.mark.parametrize("what", ["recurrent_dropout", "zoneout", "weight_drop"])
@pytest.mark.parametrize("name", ["lstm", "gru", "mgu"])
def test_each_regulariser_alone_with_lengths_and_reverse(name, what):
    reg = Regularisers(**{what: 0.35})
    _compare(name, "hybrid", torch.float64, batch=5, reg=reg, lengths=True, reverse=True)
    _compare(name, "eager", torch.float64, batch=5, reg=reg, lengths=True)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "mgu", "peephole_lstm"])
@pytest.mark.parametrize("batch", [2, 8])  # small batches would take the C loop without regularisers
def test_float32_c_kernels(name, batch):
    _compare(name, "hybrid", torch.float32, batch=batch, reg=ALL, lengths=True, tol=1e-5)


@pytest.mark.parametrize("name", ["lstm", "mgu", "sin"])
def test_eval_mode_zoneout_is_the_expectation(name):
    _compare(name, "hybrid", torch.float64, batch=4, reg=ALL, training=False, lengths=True)


def test_double_backward_with_masks():
    torch.manual_seed(0)
    cell = rnnkit.cells.GRUCell(3).double()
    x = torch.randn(2, 4, 9, dtype=torch.float64, requires_grad=True)
    masks = ALL.draw(cell, 2, 4, x, True)

    def f(inp):
        return rnnkit.engine.scan(cell, {"inputs": inp}, regularisers=masks, engine="generic").outputs["h"]

    assert torch.autograd.gradgradcheck(f, (x,))


@pytest.mark.parametrize("what", ["all", "zoneout", "recurrent_dropout"])
@pytest.mark.parametrize("name", ["lstm", "gru", "mgu", "layernorm_lstm"])
def test_whole_sequence_c_loop_with_masks(name, what):
    """The whole-sequence C loop (``loop="native"``) applies zoneout, padding and recurrent
    dropout inside its C step (compiler/czone.py): fp64 1e-10 against the oracle, with lengths,
    reversed, and in eval mode."""
    reg = ALL if what == "all" else Regularisers(**{what: 0.35})
    _compare(name, "native", torch.float64, batch=3, reg=reg, lengths=True)
    _compare(name, "native", torch.float64, batch=3, reg=reg, reverse=True)
    if what != "recurrent_dropout":  # eval mode: zoneout's expectation (the dropouts are off)
        _compare(name, "native", torch.float64, batch=3, reg=reg, training=False, lengths=True)
    _compare(name, "native", torch.float32, batch=2, reg=reg, lengths=True, tol=1e-5)


def test_whole_sequence_c_loop_with_masks_runs_in_c():
    """A forced native plan with masks takes the C loop (not the per-step kernels)."""
    import rnnkit.engine.structured as structured

    cell = MGU(4).double()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    masks = ALL.draw(cell, 2, 5, x, True)
    plan = dataclasses.replace(make_plan("generic", cell, why_not_fused="a cell scan", dtype=x.dtype, device=x.device,
                                         batch=2, regularised="regularisers"), loop="native")
    seen = []
    real = structured._run_forward

    def spy(setup, *args):
        kernel, m = real(setup, *args)
        seen.append(type(kernel).__name__)
        return kernel, m

    structured._run_forward = spy
    try:
        run_cell(cell, {"inputs": x}, {"h": torch.zeros(2, 4, dtype=torch.float64)}, {}, mask=None, reverse=False,
                 plan=plan, regularise=masks)
    finally:
        structured._run_forward = real
    assert seen == ["SeqKernel"]
