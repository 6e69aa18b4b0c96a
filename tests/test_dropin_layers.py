"""The drop-in layers against torch.nn: constructor order, both layouts on every engine,
from_torch/to_torch keeping the layout, torch state dicts, torch's attributes, old checkpoints.

Issue 10, bugs 1-3. Every comparison is against a torch.nn module holding the same weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit import nn as rnn_nn

ENGINES = ["auto", "fused", "generic"]
KINDS = ["RNN", "LSTM", "GRU"]
FIXTURES = Path(__file__).parent / "fixtures"


def _states(s):
    return s if isinstance(s, tuple) else (s,)


def _close(a, b, tol):
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


# ----------------------------------------------------------------------------- bug 1: argument order
@pytest.mark.parametrize("kind", KINDS)
def test_positional_arguments_mean_what_torch_means(kind):
    # torch: (input_size, hidden_size, num_layers, [nonlinearity,] bias, batch_first, dropout, bidirectional)
    args = (3, 5, 2, "relu", False, True, 0.25, True) if kind == "RNN" else (3, 5, 2, False, True, 0.25, True)
    ref = getattr(nn, kind)(*args)
    ours = getattr(rnnkit, kind)(*args)
    for name in ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional"):
        assert getattr(ours, name) == getattr(ref, name), name
    if kind == "RNN":
        assert ours.nonlinearity == ref.nonlinearity == "relu" and ours.mode == ref.mode == "RNN_RELU"
    assert [tuple(p.shape) for p in ours._flat_weights] == [tuple(p.shape) for p in ref._flat_weights]


def test_lstm_positional_bias_is_not_bidirectional():
    layer = rnnkit.LSTM(10, 20, 2, True)  # torch reads the 4th argument as bias
    assert layer.bias is True and layer.bidirectional is False and layer.batch_first is True


def test_rnnkit_nn_takes_torch_defaults():
    for kind in KINDS:
        layer = getattr(rnn_nn, kind)(3, 4)
        assert layer.batch_first is False and layer.num_layers == 1 and layer.dropout == 0.0
    with pytest.warns(UserWarning, match="dropout option adds dropout"):
        rnn_nn.LSTM(3, 4, dropout=1)  # torch accepts dropout=1 and warns for one layer


def test_rnnkit_nn_initialises_as_torch_under_the_same_seed():
    for kind, kw in (("LSTM", dict(proj_size=2, bidirectional=True)), ("GRU", {}), ("RNN", dict(num_layers=2))):
        torch.manual_seed(3)
        ref = getattr(nn, kind)(3, 4, **kw)
        torch.manual_seed(3)
        ours = getattr(rnn_nn, kind)(3, 4, **kw)
        for a, b in zip(ours._flat_weights, ref._flat_weights, strict=True):
            assert torch.equal(a, b)


def test_dropout_one_is_accepted_and_zeroes_between_layers():
    layer = rnnkit.GRU(3, 4, 2, dropout=1.0).train()
    ref = layer.to_torch().train()
    x = torch.randn(2, 5, 3)
    _close(layer(x)[0], ref(x)[0], 1e-6)  # layer 2 sees zeros in both


# ----------------------------------------------------------------------------- bug 2: layouts
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_both_layouts_on_every_engine_equal_torch(kind, engine, batch_first):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True, batch_first=batch_first).double()
    ours = rnnkit.from_torch(ref, engine=engine)
    x = torch.randn(5, 3, 4, dtype=torch.double, requires_grad=True)  # (T, B, F) or (B, T, F)
    h0 = tuple(torch.randn(4, 3 if not batch_first else 5, 6, dtype=torch.double) for _ in _states(ref(x)[1]))
    h0 = h0 if kind == "LSTM" else h0[0]
    y_ref, s_ref = ref(x, h0)
    y, s = ours(x, h0)
    _close(y, y_ref, 1e-10)
    for a, b in zip(_states(s), _states(s_ref), strict=True):
        _close(a, b, 1e-10)
    g_ref = torch.autograd.grad(y_ref.pow(2).sum(), [x, ref.weight_hh_l1_reverse])
    g = torch.autograd.grad(y.pow(2).sum(), [x, ours.weight_hh_l1_reverse])
    for a, b in zip(g, g_ref):
        _close(a, b, 1e-10)
    if not batch_first:
        assert y.is_contiguous()


@pytest.mark.parametrize("kind", KINDS)
def test_from_torch_keeps_sequence_first(kind):
    torch.manual_seed(1)
    ref = getattr(nn, kind)(8, 16)  # torch's default layout: (T, B, F)
    layer = rnnkit.from_torch(ref)
    assert layer.batch_first is False
    x = torch.randn(7, 3, 8)
    _close(layer(x)[0], ref(x)[0], 1e-5)
    back = layer.to_torch()
    assert back.batch_first is False
    _close(back(x)[0], ref(x)[0], 1e-6)


def test_batch_first_and_dropout_are_live_other_settings_read_only():
    layer = rnnkit.LSTM(3, 4, 2)
    ref = layer.to_torch()
    x = torch.randn(5, 2, 3)
    layer.batch_first = False
    ref.batch_first = False
    _close(layer(x)[0], ref(x)[0], 1e-6)
    layer.dropout = 0.5
    assert layer.config.dropout == 0.5 and layer.dropout == 0.5
    with pytest.raises(ValueError, match=r"^dropout: expected a probability in \[0, 1\]"):
        layer.dropout = 2.0
    for name, value in (("bidirectional", True), ("hidden_size", 8), ("num_layers", 3), ("bias", False),
                        ("proj_size", 2), ("input_size", 4), ("nonlinearity", "relu")):
        with pytest.raises(AttributeError, match=f"^{name}: expected no assignment.*Fix: build a new layer"):
            setattr(layer, name, value)


# ----------------------------------------------------------------------------- bug 3: torch names
@pytest.mark.parametrize("kind", KINDS)
def test_torch_state_dict_loads_both_ways(kind):
    kw = dict(proj_size=3) if kind == "LSTM" else {}
    ref = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True, **kw)
    ours = getattr(rnnkit, kind)(4, 6, num_layers=2, bidirectional=True, batch_first=False, **kw)
    ours.load_state_dict(ref.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    for (name, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
        assert torch.equal(a, b), name
    fresh = getattr(nn, kind)(4, 6, num_layers=2, bidirectional=True, **kw)
    fresh.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 4)
    _close(fresh(x)[0], ref(x)[0], 1e-6)
    _close(ours(x)[0], ref(x)[0], 1e-5)


def test_torch_attribute_names():
    ref = nn.LSTM(3, 4, 2, bidirectional=True, proj_size=2)
    ours = rnnkit.from_torch(ref)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert [[tuple(w.shape) for w in g] for g in ours.all_weights] == [[tuple(w.shape) for w in g] for g in ref.all_weights]
    assert ours.weight_hr_l1_reverse is ours.layers[1].bwd.cell.weight_hr
    assert ours.mode == "LSTM" and ours.proj_size == 2
    ours.flatten_parameters()  # a no-op, as torch code calls it
    replacement = nn.Parameter(torch.zeros_like(ours.weight_ih_l0))
    ours.weight_ih_l0 = replacement
    assert ours.layers[0].fwd.input.weight is replacement
    with pytest.raises(AttributeError):
        rnnkit.GRU(3, 4, bias=False).bias_ih_l0  # noqa: B018  (torch has no such attribute either)


def test_old_checkpoint_keys_load_into_a_layer():
    layer = rnnkit.GRU(3, 4, 2, bidirectional=True)
    old = {f"layers.{i}.{side}.{sub}.{p}": t for i in range(2) for side in ("fwd", "bwd")
           for sub, p, t in (("input", "weight", torch.randn(12, 3 if i == 0 else 8)), ("input", "bias", torch.randn(12)),
                             ("cell", "weight", torch.randn(12, 4)), ("cell", "bias", torch.randn(12)))}
    layer.load_state_dict(old)
    assert torch.equal(layer.weight_hh_l1_reverse, old["layers.1.bwd.cell.weight"])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_checkpoint_saved_before_the_drop_in_loads_and_computes_the_same(cell, tmp_path):
    expected = json.loads((FIXTURES / f"legacy_{cell}_classifier.expected.json").read_text())
    assert any(".fwd.cell.weight" in k for k in expected["keys"])  # it is an old-style checkpoint
    model = rnnkit.load(FIXTURES / f"legacy_{cell}_classifier")
    x = torch.tensor(expected["x"])
    _close(model(x), torch.tensor(expected["y"]), 1e-6)
    assert any(k.endswith("weight_hh_l1_reverse") for k in model.state_dict())
    rnnkit.save(model, tmp_path / "again")  # round trip under the new keys
    again = rnnkit.load(tmp_path / "again")
    _close(again(x), torch.tensor(expected["y"]), 1e-6)
