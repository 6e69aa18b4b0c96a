"""Parity with torch.nn.RNN/LSTM/GRU: outputs, final states and every gradient, on both engines.

torch.nn is the oracle. With lengths its side runs packed (pack_padded_sequence with
enforce_sorted=False, then pad_packed_sequence); both sides zero the padding, so every step is
compared. The loss weights the outputs and the final states at random, so every gradient path
(through y, through h_n and c_n, into x, h0, c0 and each parameter) carries signal.
"""
from __future__ import annotations

import itertools
from unittest import mock

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
import rnnkit.layers.generic_path as generic_module
import rnnkit.layers.recurrent as recurrent_module

KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
B, T, F, H = 4, 6, 5, 4
LENGTHS = torch.tensor([5, 2, 6, 1])  # unsorted, one full row
TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def torch_module(kind: str, num_layers: int, bidirectional: bool, dtype: torch.dtype) -> nn.RNNBase:
    kw = dict(num_layers=num_layers, bidirectional=bidirectional, batch_first=True, dtype=dtype)
    if kind.startswith("rnn_"):
        return nn.RNN(F, H, nonlinearity=kind.removeprefix("rnn_"), **kw)
    return (nn.LSTM if kind == "lstm" else nn.GRU)(F, H, **kw)


def run_torch(module: nn.RNNBase, x, state, lengths):
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = module(packed, state)
    y, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D*H)
    return y, final


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def torch_weights(module: nn.RNNBase) -> list[torch.Tensor]:
    return [w for per_direction in module.all_weights for w in per_direction]


def assert_close(ours, theirs, dtype, what):
    tol = TOL[dtype]
    torch.testing.assert_close(ours, theirs, atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def check_parity(layer, module, dtype, lengths, give_state=True):
    """Run both with the same inputs and loss; compare y, finals and all gradients."""
    L, D = module.num_layers, 2 if module.bidirectional else 1
    n_states = 2 if isinstance(module, nn.LSTM) else 1
    x = torch.randn(B, T, F, dtype=dtype)
    states = [torch.randn(L * D, B, H, dtype=dtype) for _ in range(n_states)] if give_state else []
    w_y = torch.randn(B, T, D * H, dtype=dtype)
    w_s = [torch.randn(L * D, B, H, dtype=dtype) for _ in range(n_states)]

    def run(fn):
        xx = x.clone().requires_grad_()
        ss = [s.clone().requires_grad_() for s in states]
        state = None if not ss else (tuple(ss) if n_states == 2 else ss[0])
        y, final = fn(xx, state)
        loss = (y * w_y).sum() + sum((f * w).sum() for f, w in zip(as_tuple(final), w_s))
        loss.backward()
        return y.detach(), [f.detach() for f in as_tuple(final)], xx.grad, [s.grad for s in ss]

    y_o, fin_o, gx_o, gs_o = run(lambda xx, s: layer(xx, s, lengths))
    y_t, fin_t, gx_t, gs_t = run(lambda xx, s: run_torch(module, xx, s, lengths))
    assert_close(y_o, y_t, dtype, "y")
    for i, (a, b) in enumerate(zip(fin_o, fin_t, strict=True)):
        assert_close(a, b, dtype, f"final state {i}")
    assert_close(gx_o, gx_t, dtype, "dL/dx")
    for i, (a, b) in enumerate(zip(gs_o, gs_t, strict=True)):
        assert_close(a, b, dtype, f"dL/d initial state {i}")
    ours, theirs = layer.flat_weights(), torch_weights(module)
    assert len(ours) == len(theirs) == L * D * (4 if module.bias else 2)
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.grad is not None and b.grad is not None, f"weight {i} got no gradient"
        assert b.grad.abs().max() > 0, f"weight {i}: the oracle's gradient is zero, the check is void"
        assert_close(a.grad, b.grad, dtype, f"gradient of weight {i} ({tuple(a.shape)})")


CASES = list(itertools.product(KINDS, [1, 2, 3], [False, True], [False, True]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("engine", ["fused", "generic"])
@pytest.mark.parametrize(
    "kind,num_layers,bidirectional,with_lengths", CASES,
    ids=[f"{k}-L{n}-{'bi' if b else 'uni'}-{'len' if ln else 'full'}" for k, n, b, ln in CASES],
)
def test_matches_torch_nn(kind, num_layers, bidirectional, with_lengths, engine, dtype):
    module = torch_module(kind, num_layers, bidirectional, dtype)
    layer = rnnkit.from_torch(module, engine=engine)
    assert layer.engine == engine
    check_parity(layer, module, dtype, LENGTHS if with_lengths else None)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ["fused", "generic"])
def test_zero_initial_state_matches_torch_nn(kind, engine):
    module = torch_module(kind, 2, True, torch.float64)
    layer = rnnkit.from_torch(module)
    layer.engine = engine
    check_parity(layer, module, torch.float64, LENGTHS, give_state=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bidirectional", [False, True])
def test_to_torch_round_trip(kind, bidirectional):
    module = torch_module(kind, 2, bidirectional, torch.float32)
    back = rnnkit.from_torch(module).to_torch()
    assert type(back) is type(module) and back.batch_first
    assert back.num_layers == 2 and back.bidirectional == bidirectional
    assert getattr(back, "nonlinearity", None) == getattr(module, "nonlinearity", None)
    theirs = dict(module.named_parameters())
    assert set(dict(back.named_parameters())) == set(theirs)
    for name, value in back.named_parameters():
        assert torch.equal(value, theirs[name]), name
    x = torch.randn(B, T, F)
    torch.testing.assert_close(back(x)[0], module(x)[0], atol=0, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ["fused", "generic"])
def test_native_layer_matches_its_to_torch_export(kind, engine):
    """Weights born in rnnkit (orthogonal recurrent init) survive export; generic engine set by attribute."""
    cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}.get(kind, rnnkit.RNN)
    extra = {"nonlinearity": kind.removeprefix("rnn_")} if kind.startswith("rnn_") else {}
    layer = cls(F, H, num_layers=2, bidirectional=True, **extra).double()
    layer.engine = engine
    check_parity(layer, layer.to_torch(), torch.float64, LENGTHS)


@pytest.mark.parametrize("engine,ran,skipped", [("fused", "run_fused", "run_cell"),
                                                 ("generic", "run_cell", "run_fused")])
def test_engine_argument_selects_the_backend(engine, ran, skipped):
    layer = rnnkit.LSTM(F, H, num_layers=2, engine=engine)
    home = {"run_fused": recurrent_module, "run_cell": generic_module}  # where each backend is called from
    with mock.patch.object(home[ran], ran, wraps=getattr(home[ran], ran)) as used, \
         mock.patch.object(home[skipped], skipped, wraps=getattr(home[skipped], skipped)) as unused:
        layer(torch.randn(B, T, F), lengths=LENGTHS)
    assert used.called and not unused.called


@pytest.mark.parametrize("kind", KINDS)
def test_auto_engine_runs_the_backend_its_plan_names(kind):
    """auto picks fused or generic from the measured cost table; the call runs what the plan says."""
    layer = rnnkit.from_torch(torch_module(kind, 1, False, torch.float32))
    x = torch.randn(B, T, F)
    plan = layer.plan(x, lengths=LENGTHS)
    with mock.patch.object(generic_module, "run_cell", wraps=generic_module.run_cell) as generic, \
         mock.patch.object(recurrent_module, "run_fused", wraps=recurrent_module.run_fused) as fused:
        layer(x, lengths=LENGTHS)
    assert fused.called == plan.fused and generic.called == (not plan.fused)


def test_from_torch_copies_dropout_and_bias_and_training_mode():
    module = nn.GRU(F, H, num_layers=2, dropout=0.25, bias=False, batch_first=True).eval()
    layer = rnnkit.from_torch(module)
    assert layer.config.dropout == 0.25 and layer.config.bias is False and not layer.training
    check_parity(layer, module, torch.float32, LENGTHS)
