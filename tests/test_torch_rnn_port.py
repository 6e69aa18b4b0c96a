"""A port of PyTorch's own RNN tests (the behaviours ``test/test_nn.py`` checks), run with one
test body against torch.nn and against ``rnnkit.nn`` on every engine.

Written from the documented behaviour of torch.nn.RNN/LSTM/GRU, not copied. Under the same seed
``rnnkit.nn`` draws the same weights as torch.nn, so each body also compares every rnnkit
result with torch.nn's (the oracle); bodies that need no oracle (shapes, per-sequence packing,
gradcheck) check the implementation against itself.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence, pad_packed_sequence

from rnnkit import nn as rnn_nn

IMPLS = ["torch", "auto", "fused", "generic"]
KINDS = ["RNN", "LSTM", "GRU"]


def make(impl: str, kind: str, *args, **kw):
    torch.manual_seed(0)
    if impl == "torch":
        return getattr(nn, kind)(*args, **kw)
    return getattr(rnn_nn, kind)(*args, engine=impl, **kw)


def oracle(kind: str, *args, **kw):
    return make("torch", kind, *args, **kw)


def flat(state):
    return state if isinstance(state, tuple) else (state,)


def close(a, b, tol=1e-5):
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def hidden(kind, L, B, H, P=None, dtype=torch.float32):
    h = torch.randn(L, B, P or H, dtype=dtype)
    return (h, torch.randn(L, B, H, dtype=dtype)) if kind == "LSTM" else h


# ----------------------------------------------------------------------------- args checks
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_rnn_args_check(impl, kind):
    rnn = make(impl, kind, 4, 6, 2)
    x = torch.randn(5, 3, 4)
    bad = [
        lambda: rnn(torch.randn(5, 3, 7)),  # wrong input size
        lambda: rnn(x, hidden(kind, 1, 3, 6)),  # wrong number of layers in hx
        lambda: rnn(x, hidden(kind, 2, 4, 6)),  # wrong batch in hx
        lambda: rnn(x, hidden(kind, 2, 3, 5)),  # wrong hidden size in hx
        lambda: rnn(torch.randn(5, 3, 4, 1)),  # 4-D input
    ]
    for call in bad:
        with pytest.raises((RuntimeError, ValueError)):
            call()


@pytest.mark.parametrize("impl", IMPLS)
def test_constructor_rejects_what_torch_rejects(impl):
    for kw in (dict(dropout=-0.1), dict(dropout=1.5), dict(proj_size=-1), dict(proj_size=6)):
        with pytest.raises(ValueError):
            make(impl, "LSTM", 4, 6, **kw)
    with pytest.raises(ValueError):
        make(impl, "GRU", 4, 6, proj_size=2)
    with pytest.raises(ValueError):
        make(impl, "RNN", 4, 6, nonlinearity="sigmoid")


# ----------------------------------------------------------------------------- initial hidden state
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_rnn_initial_hidden_state(impl, kind):
    rnn = make(impl, kind, 4, 6, 2)
    x = torch.randn(5, 3, 4)
    zeros = tuple(torch.zeros_like(h) for h in flat(hidden(kind, 2, 3, 6)))
    y0, s0 = rnn(x)
    y1, s1 = rnn(x, zeros if kind == "LSTM" else zeros[0])
    close(y0, y1, 0)
    given = hidden(kind, 2, 3, 6)
    y, s = rnn(x, given)
    y_ref, s_ref = oracle(kind, 4, 6, 2)(x, given)
    close(y, y_ref)
    for a, b in zip(flat(s), flat(s_ref)):
        close(a, b)


# ----------------------------------------------------------------------------- packed sequences
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("enforce_sorted", [True, False])
def test_variable_sequence_equals_each_sequence_alone(impl, kind, enforce_sorted):
    rnn = make(impl, kind, 3, 5, 2, bidirectional=True)
    lengths = [7, 5, 5, 2] if enforce_sorted else [5, 7, 2, 5]
    seqs = [torch.randn(n, 3) for n in lengths]
    packed = pack_sequence(seqs, enforce_sorted=enforce_sorted)
    given = hidden(kind, 4, 4, 5)
    out, state = rnn(packed, given)
    assert torch.equal(out.batch_sizes, packed.batch_sizes)
    for got, want in ((out.sorted_indices, packed.sorted_indices), (out.unsorted_indices, packed.unsorted_indices)):
        assert (got is None and want is None) or torch.equal(got, want)
    padded, lens = pad_packed_sequence(out)  # (T, B, 2H), the caller's order
    assert lens.tolist() == lengths
    for b, seq in enumerate(seqs):  # oracle: the same module on one sequence
        alone = tuple(h[:, b : b + 1] for h in flat(given))
        y, s = rnn(seq.unsqueeze(1), alone if kind == "LSTM" else alone[0])
        close(padded[: lengths[b], b], y[:, 0])
        assert padded[lengths[b]:, b].abs().max().item() == 0 if lengths[b] < max(lengths) else True
        for final, one in zip(flat(state), flat(s)):
            close(final[:, b], one[:, 0])
    ref_out, ref_state = oracle(kind, 3, 5, 2, bidirectional=True)(packed, given)
    close(out.data, ref_out.data)
    for a, b in zip(flat(state), flat(ref_state)):
        close(a, b)


@pytest.mark.parametrize("impl", IMPLS)
def test_packed_gradients_equal_torch(impl):
    rnn, ref = make(impl, "GRU", 3, 4, batch_first=True), oracle("GRU", 3, 4, batch_first=True)
    x = torch.randn(3, 6, 3, requires_grad=True)
    lengths = torch.tensor([4, 6, 1])
    grads = []
    for m in (rnn, ref):
        out, h = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
        loss = pad_packed_sequence(out, batch_first=True)[0].pow(2).sum() + h.sum()
        grads.append(torch.autograd.grad(loss, [x, m.weight_hh_l0]))
    for a, b in zip(*grads):
        close(a, b)


# ----------------------------------------------------------------------------- proj_size
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_proj(impl, dtype, tol, bidirectional):
    L, D, B, H, P = 2, 2 if bidirectional else 1, 3, 6, 4
    rnn = make(impl, "LSTM", 5, H, L, bidirectional=bidirectional, proj_size=P, dtype=dtype)
    ref = oracle("LSTM", 5, H, L, bidirectional=bidirectional, proj_size=P, dtype=dtype)
    x = torch.randn(7, B, 5, dtype=dtype, requires_grad=True)
    h0 = hidden("LSTM", L * D, B, H, P, dtype=dtype)
    y, (h, c) = rnn(x, h0)
    assert y.shape == (7, B, D * P) and h.shape == (L * D, B, P) and c.shape == (L * D, B, H)
    y_ref, (h_ref, c_ref) = ref(x, h0)
    for a, b in ((y, y_ref), (h, h_ref), (c, c_ref)):
        close(a, b, tol)
    g = torch.autograd.grad(y.sum() + c.sum(), [x, rnn.weight_hr_l0, rnn.weight_hh_l1])
    g_ref = torch.autograd.grad(y_ref.sum() + c_ref.sum(), [x, ref.weight_hr_l0, ref.weight_hh_l1])
    for a, b in zip(g, g_ref):
        close(a, b, tol)


# ----------------------------------------------------------------------------- double precision gradcheck
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_rnn_gradcheck_double(impl, kind):
    rnn = make(impl, kind, 2, 3, 2, bidirectional=True, dtype=torch.float64)
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)

    def fn(x, h0):
        y, s = rnn(x, (h0, torch.zeros_like(h0)) if kind == "LSTM" else h0)
        return y, flat(s)[0]

    assert torch.autograd.gradcheck(fn, (x, h0))
    assert torch.autograd.gradgradcheck(fn, (x, h0))


# ----------------------------------------------------------------------------- dropout
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_dropout_is_off_in_eval_mode(impl, kind):
    rnn = make(impl, kind, 4, 6, 3, dropout=0.5).eval()
    ref = oracle(kind, 4, 6, 3, dropout=0.0)
    x = torch.randn(5, 2, 4)
    close(rnn(x)[0], rnn(x)[0], 0)
    close(rnn(x)[0], ref(x)[0])


@pytest.mark.parametrize("impl", IMPLS)
def test_change_dropout_takes_effect(impl):
    rnn = make(impl, "RNN", 4, 6, 2, dropout=0.0).train()
    ref = oracle("RNN", 4, 6, 2).train()
    x = torch.randn(5, 2, 4)
    for p in (0.0, 1.0):  # deterministic in training: nothing or everything dropped between layers
        rnn.dropout = ref.dropout = p
        close(rnn(x)[0], ref(x)[0])
    rnn.dropout = 1.0
    y_all_dropped = rnn(x)[0]
    rnn.dropout = 0.0
    assert (rnn(x)[0] - y_all_dropped).abs().max() > 1e-3


# ----------------------------------------------------------------------------- state shapes, layouts
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first", [False, True])
def test_state_shapes_and_bidirectional_layout(impl, kind, batch_first):
    L, B, T, H = 3, 2, 5, 4
    rnn = make(impl, kind, 3, H, L, bidirectional=True, batch_first=batch_first)
    x = torch.randn(B, T, 3) if batch_first else torch.randn(T, B, 3)
    y, state = rnn(x)
    assert y.shape == ((B, T, 2 * H) if batch_first else (T, B, 2 * H))
    for s in flat(state):
        assert s.shape == (2 * L, B, H)
    h = flat(state)[0].view(L, 2, B, H)[-1]  # top layer: (2, B, H)
    y_tb = y.transpose(0, 1) if batch_first else y  # (T, B, 2H)
    close(h[0], y_tb[-1, :, :H], 0)  # forward direction ends at the last step
    close(h[1], y_tb[0, :, H:], 0)  # reverse direction ends at the first step


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_unbatched_input(impl, kind):
    rnn = make(impl, kind, 3, 4, 2)
    x = torch.randn(6, 3)
    h0 = tuple(torch.randn(2, 4) for _ in flat(hidden(kind, 2, 1, 4)))
    y, s = rnn(x, h0 if kind == "LSTM" else h0[0])
    y_b, s_b = rnn(x.unsqueeze(1), tuple(h.unsqueeze(1) for h in h0) if kind == "LSTM" else h0[0].unsqueeze(1))
    assert y.shape == (6, 4)
    close(y, y_b[:, 0], 0)
    for a, b in zip(flat(s), flat(s_b)):
        close(a, b[:, 0], 0)


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("kind", KINDS)
def test_noncontiguous_input(impl, kind):
    rnn = make(impl, kind, 3, 4, 2, bidirectional=True)
    x = torch.randn(2, 5, 3).transpose(0, 1)  # (T, B, F), not contiguous
    assert not x.is_contiguous()
    y, s = rnn(x)
    y_c, s_c = rnn(x.contiguous())
    close(y, y_c, 0)
    x.requires_grad_(True)
    rnn(x)[0].sum().backward()
    assert x.grad.shape == x.shape


# ----------------------------------------------------------------------------- weight_norm
@pytest.mark.parametrize("impl", ["auto", "fused", "generic"])
def test_weight_norm_trains_as_on_torch(impl):
    rnn = make(impl, "LSTM", 3, 4)
    ref = oracle("LSTM", 3, 4)
    torch.nn.utils.weight_norm(ref, name="weight_hh_l0")
    # torch.nn names the parameter on the module; rnnkit keeps it in the cell (a real submodule)
    torch.nn.utils.weight_norm(rnn.layers[0].fwd.cell, name="weight")
    x = torch.randn(5, 2, 3)
    for _ in range(2):  # twice: a stale weight from the first call would fail the second backward
        y, y_ref = rnn(x)[0], ref(x)[0]
        close(y, y_ref)
        y.sum().backward()
        y_ref.sum().backward()
    close(rnn.layers[0].fwd.cell.weight_g.grad, ref.weight_hh_l0_g.grad)
    close(rnn.layers[0].fwd.cell.weight_v.grad, ref.weight_hh_l0_v.grad)
