"""More of torch's RNN tests (``test/test_nn.py``), ported where ``tests/test_torch_rnn_port.py``
stops: zero-size batches, zero-length sequences, every from_torch/to_torch configuration,
initial-state gradients under variable lengths, expanded and non-contiguous initial states,
the RNNCell/LSTMCell/GRUCell single step, double backward with lengths, and Bidirectional over
sequence-first (torch-layout) layers. The oracle is always a torch.nn module with the same weights.
"""
from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit import nn as rnn_nn

ENGINES = ["auto", "fused", "generic"]
KINDS = ["RNN", "LSTM", "GRU"]


def flat(state):
    return state if isinstance(state, tuple) else (state,)


def close(a, b, tol=1e-5):
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def torch_and_ours(kind, engine, *args, **kw):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(*args, **kw)
    return ref, rnnkit.from_torch(ref, engine=engine)


# ----------------------------------------------------------------------------- zero sizes
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_zero_batch_equals_torch(kind, engine):
    ref, ours = torch_and_ours(kind, engine, 3, 4, 2, bidirectional=True)
    x = torch.randn(5, 0, 3, requires_grad=True)  # (T, B=0, F)
    y, s = ours(x)
    y_ref, s_ref = ref(x)
    close(y, y_ref)
    for a, b in zip(flat(s), flat(s_ref), strict=True):
        close(a, b)
    y.sum().backward()
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_length_sequence_is_refused_as_torch_does(engine):
    ref, ours = torch_and_ours("LSTM", engine, 3, 4)
    x = torch.randn(0, 2, 3)  # (T=0, B, F)
    with pytest.raises(RuntimeError):
        ref(x)
    with pytest.raises(ValueError, match="at least one time step"):
        ours(x)


# ----------------------------------------------------------------------------- from_torch / to_torch
def configurations(kind):
    for bias, batch_first, bidirectional, layers, proj, dtype in itertools.product(
            [True, False], [True, False], [True, False], [1, 2], [0, 2], [torch.float32, torch.float64]):
        if proj and kind != "LSTM":
            continue
        kw = dict(bias=bias, batch_first=batch_first, bidirectional=bidirectional, num_layers=layers, dtype=dtype)
        if proj:
            kw["proj_size"] = proj
        if kind == "RNN":
            kw["nonlinearity"] = "relu" if bias else "tanh"
        yield kw


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_configuration_round_trips_through_from_torch_and_to_torch(kind, engine):
    for kw in configurations(kind):
        torch.manual_seed(1)
        ref = getattr(nn, kind)(3, 4, **kw)
        ours = rnnkit.from_torch(ref, engine=engine)
        x = torch.randn(2, 5, 3, dtype=kw["dtype"])  # (B, T, F) or (T, B, F): both are valid shapes
        tol = 1e-5 if kw["dtype"] == torch.float32 else 1e-10
        y_ref, s_ref = ref(x)
        y, s = ours(x)
        close(y, y_ref, tol)
        for a, b in zip(flat(s), flat(s_ref), strict=True):
            close(a, b, tol)
        back = ours.to_torch()
        assert type(back) is type(ref)
        for name in ("batch_first", "bias", "bidirectional", "num_layers", "proj_size", "hidden_size", "input_size"):
            assert getattr(back, name) == getattr(ref, name), (name, kw)
        if kind == "RNN":
            assert back.nonlinearity == ref.nonlinearity
        for (name, a), b in zip(back.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(a, b), (name, kw)
        close(back(x)[0], y_ref, 0)


# ----------------------------------------------------------------------------- initial states
@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_gradients_under_lengths_equal_torch_packed(kind, engine, batch_first):
    ref, ours = torch_and_ours(kind, engine, 3, 4, 2, bidirectional=True, batch_first=batch_first, dtype=torch.float64)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    x = x if batch_first else x.transpose(0, 1)  # (B, T, F) or (T, B, F)
    lengths = torch.tensor([6, 2, 4])
    h0 = tuple(torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True) for _ in range(2 if kind == "LSTM" else 1))
    state = h0 if kind == "LSTM" else h0[0]
    y, s = ours(x, state, lengths=lengths)
    packed, s_ref = ref(pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False), state)
    y_ref = pad_packed_sequence(packed, batch_first=batch_first, total_length=6)[0]
    close(y, y_ref, 1e-10)
    w = torch.randn_like(y)

    def loss(y, s):
        return (y * w).sum() + sum(part.pow(2).sum() for part in flat(s))

    got = torch.autograd.grad(loss(y, s), [*h0, ours.weight_hh_l0_reverse])
    want = torch.autograd.grad(loss(y_ref, s_ref), [*h0, ref.weight_hh_l0_reverse])
    for a, b in zip(got, want):
        close(a, b, 1e-10)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_expanded_and_noncontiguous_initial_states_equal_torch(kind, engine):
    ref, ours = torch_and_ours(kind, engine, 3, 4, 2)
    x = torch.randn(5, 3, 3)
    expanded = torch.randn(1, 1, 4).expand(2, 3, 4)  # zero strides
    strided = torch.randn(3, 2, 4).transpose(0, 1)  # (L, B, H), not contiguous
    for h0 in (expanded, strided):
        state = (h0, strided) if kind == "LSTM" else h0
        y, s = ours(x, state)
        y_ref, s_ref = ref(x, state)
        close(y, y_ref)
        for a, b in zip(flat(s), flat(s_ref), strict=True):
            close(a, b)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input_with_batch_first_true_equals_torch(kind, engine):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(3, 4, 2, batch_first=True)
    torch.manual_seed(0)
    ours = getattr(rnn_nn, kind)(3, 4, 2, batch_first=True, engine=engine)  # the drop-in takes unbatched inputs
    x = torch.randn(6, 3)  # (T, F): batch_first does not apply to an unbatched input
    with pytest.raises(ValueError, match=r"Fix: add a batch dimension with x\.unsqueeze\(0\)"):
        rnnkit.from_torch(ref, engine=engine)(x)  # rnnkit's own layers refuse it, naming the fix
    y, s = ours(x)
    y_ref, s_ref = ref(x)
    close(y, y_ref)
    for a, b in zip(flat(s), flat(s_ref), strict=True):
        close(a, b)


# ----------------------------------------------------------------------------- dropout values
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("p", [0.0, 0.276, 0.731, 1.0])
def test_dropout_between_layers_zeroes_or_rescales(engine, p):
    # torch's test_RNN_dropout: ones everywhere, relu, no bias; layer 2 sees each unit dropped or scaled by 1/(1-p)
    torch.manual_seed(0)
    ours = rnn_nn.RNN(100, 100, 2, nonlinearity="relu", bias=False, dropout=p, engine=engine)
    with torch.no_grad():
        for w in ours.parameters():
            w.fill_(1.0)
    x = torch.ones(1, 1, 100)
    for train in (True, False):
        ours.train(train)
        y, h = ours(x, torch.zeros(2, 1, 100))
        if p == 0 or not train:
            assert y.sum().item() == 100 * 100 * 100
        elif p == 1:
            assert y.sum().item() == 0
        else:  # every output unit is the same: 100 * (number of kept units) / (1 - p)
            kept = y[0, 0, 0].item() * (1 - p) / 100
            assert abs(kept - round(kept)) < 1e-3 and 0 < round(kept) < 100
            assert y.min().item() == y.max().item()
        close(h[0], torch.full((1, 100), 100.0), 0)  # the first layer is never dropped
        close(h[1], y[0], 0)


# ----------------------------------------------------------------------------- backward
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_backward_twice_with_retain_graph_and_through_one_output_only(kind, engine):
    ref, ours = torch_and_ours(kind, engine, 3, 4, 2, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    y, s = ours(x, lengths=torch.tensor([5, 3]))
    loss = y.pow(2).sum() + flat(s)[-1].pow(2).sum()
    first = torch.autograd.grad(loss, [x, *ours.parameters()], retain_graph=True)
    second = torch.autograd.grad(loss, [x, *ours.parameters()])
    for a, b in zip(first, second):
        close(a, b, 0)
    for pick in range(len(flat(s))):  # torch's test_lstmcell_backward_only_one_output_grad, for h_n and c_n
        got = torch.autograd.grad(flat(ours(x)[1])[pick].sum(), [x, ours.weight_hh_l0])
        want = torch.autograd.grad(flat(ref(x)[1])[pick].sum(), [x, ref.weight_hh_l0])
        for a, b in zip(got, want):
            close(a, b, 1e-10)


# ----------------------------------------------------------------------------- single steps
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind,cell_kw", [("RNN", dict(nonlinearity="tanh")), ("RNN", dict(nonlinearity="relu")),
                                          ("LSTM", {}), ("GRU", {}), ("GRU", dict(bias=False))])
def test_layer_step_equals_torch_cell(kind, cell_kw, engine):
    torch.manual_seed(0)
    cell = getattr(nn, kind + "Cell")(3, 5, **cell_kw).double()
    layer_kw = dict(cell_kw)
    ours = getattr(rnnkit, kind)(3, 5, engine=engine, dtype=torch.float64, **layer_kw)
    names = ["weight_ih", "weight_hh"] + (["bias_ih", "bias_hh"] if cell_kw.get("bias", True) else [])
    with torch.no_grad():
        for name in names:
            getattr(ours, name + "_l0").copy_(getattr(cell, name))
    for B in (4, 1, 0):
        x = torch.randn(B, 3, dtype=torch.float64)
        h = torch.randn(B, 5, dtype=torch.float64)
        if kind == "LSTM":
            c = torch.randn(B, 5, dtype=torch.float64)
            y, (h1, c1) = ours.step(x, (h.unsqueeze(0), c.unsqueeze(0)))
            h_ref, c_ref = cell(x, (h, c))
            close(c1[0], c_ref, 1e-12)
        else:
            y, h1 = ours.step(x, h.unsqueeze(0))
            h_ref = cell(x, h)
        close(y, h_ref, 1e-12)
        close(h1[0], h_ref, 1e-12)


# ----------------------------------------------------------------------------- double backward
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_with_lengths(kind, engine):
    torch.manual_seed(0)
    ours = getattr(rnnkit, kind)(2, 3, bidirectional=True, engine=engine, dtype=torch.float64)
    x = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([4, 1, 3])

    def fn(x):
        y, s = ours(x, lengths=lengths)
        return y, flat(s)[0]

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))


# ----------------------------------------------------------------------------- Bidirectional, torch layout
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_bidirectional_over_sequence_first_layers_equals_torch(kind, with_lengths):
    torch.manual_seed(0)
    ref = getattr(nn, kind)(3, 4, bidirectional=True).double()  # torch's layout: (T, B, F)
    fwd = getattr(rnn_nn, kind)(3, 4, dtype=torch.float64)
    bwd = getattr(rnn_nn, kind)(3, 4, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(fwd, name + "_l0").copy_(getattr(ref, name + "_l0"))
            getattr(bwd, name + "_l0").copy_(getattr(ref, name + "_l0_reverse"))
    x = torch.randn(6, 3, 3, dtype=torch.float64)  # (T, B, F)
    lengths = torch.tensor([6, 2, 4]) if with_lengths else None
    y, (s_f, s_b) = rnnkit.Bidirectional(fwd, bwd)(x, lengths=lengths)
    if with_lengths:
        packed, s_ref = ref(pack_padded_sequence(x, lengths, enforce_sorted=False))
        y_ref = pad_packed_sequence(packed, total_length=6)[0]
    else:
        y_ref, s_ref = ref(x)
    close(y, y_ref, 1e-10)  # (T, B, 2H)
    close(flat(s_f)[0][0], flat(s_ref)[0][0], 1e-10)
    close(flat(s_b)[0][0], flat(s_ref)[0][1], 1e-10)


def test_bidirectional_refuses_layers_of_different_layouts():
    with pytest.raises(ValueError, match="batch_first"):
        rnnkit.Bidirectional(rnnkit.GRU(3, 4), rnn_nn.GRU(3, 4))(torch.randn(2, 5, 3))
