"""Regularisers on rnnkit.RNN/LSTM/GRU (issue 13, acceptance 1-3).

Behavioural checks on hand-set weights (which units a mask drops, at which steps), p = 0 and
eval-mode identities, zoneout's p = 1 and expectation against torch.nn cells, DropConnect's
gradient, and the layers' gradients against a per-step loop over torch.nn cells that applies the
masks the layer drew (recorded by wrapping ``Regularisers``'s draws).
"""
from __future__ import annotations

import pytest
import torch

import rnnkit
from rnnkit.engine.regularise import Regularisers

ENGINES = ["generic", "fused"]


@pytest.fixture
def drawn(monkeypatch):
    """Records every mask the layers draw: {"input": [...], "masks": [...], "weight": [...]}."""
    seen = {"input": [], "masks": [], "weight": []}
    for name, key in (("input_mask", "input"), ("draw", "masks"), ("weight_mask", "weight")):
        original = getattr(Regularisers, name)

        def wrapper(self, *a, _o=original, _k=key, **k):
            out = _o(self, *a, **k)
            seen[_k].append(out)
            return out

        monkeypatch.setattr(Regularisers, name, wrapper)
    return seen


def _identity_rnn(H, **reg):
    """Elman, identity activation, W_ih = I, W_hh = I, no bias: h_t = x_t + (h_{t-1} * m) W_hh^T."""
    rnn = rnnkit.RNN(H, H, nonlinearity="identity", bias=False, engine="generic", **reg).double()
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.eye(H))
        rnn.weight_hh_l0.copy_(torch.eye(H))
    return rnn


def test_input_dropout_same_units_every_step_different_across_sequences():
    torch.manual_seed(0)
    rnn = _identity_rnn(16, input_dropout=0.5)
    with torch.no_grad():
        rnn.weight_hh_l0.zero_()  # y_t = x_t * m
    y, _ = rnn(torch.ones(6, 9, 16, dtype=torch.float64))
    dropped = y == 0  # (B, T, H)
    assert dropped.any() and (~dropped).any()
    assert (dropped == dropped[:, :1]).all()  # the same units at every step of a sequence
    assert len({tuple(r.tolist()) for r in dropped[:, 0]}) > 1  # and other units in other sequences
    torch.testing.assert_close(y[~dropped], torch.full_like(y[~dropped], 2.0))  # scaled by 1/(1-p)


def test_recurrent_dropout_same_units_every_step_different_across_sequences():
    torch.manual_seed(0)
    rnn = _identity_rnn(16, recurrent_dropout=0.5)
    y, _ = rnn(torch.ones(6, 9, 16, dtype=torch.float64))  # h_t = 1 + h_{t-1} * m, h_0 = 0
    stuck = y == 1.0  # units whose recurrent input is dropped stay at 1
    assert stuck.any() and (~stuck[:, 1:]).any()
    assert (stuck[:, 1:] == stuck[:, 1:2]).all()  # the same units at every step
    assert len({tuple(r.tolist()) for r in stuck[:, 1]}) > 1  # other units in other sequences
    torch.testing.assert_close(y[:, 2][~stuck[:, 2]], torch.full_like(y[:, 2][~stuck[:, 2]], 1 + 2 * (1 + 2)))


@pytest.mark.parametrize("kind", ["RNN", "LSTM", "GRU"])
@pytest.mark.parametrize("engine", ["auto", "generic"])
def test_p_zero_is_the_plain_layer_exactly(kind, engine):
    x = torch.randn(3, 7, 4)
    torch.manual_seed(0)
    plain = getattr(rnnkit, kind)(4, 6, 2, engine=engine)
    torch.manual_seed(0)
    zero = getattr(rnnkit, kind)(4, 6, 2, engine=engine, input_dropout=0.0, recurrent_dropout=0.0,
                                 zoneout=0.0, weight_drop=0.0)
    assert str(zero.plan(x)) == str(plain.plan(x))
    torch.manual_seed(1)
    y0, _ = plain(x)
    r0 = torch.rand(())
    torch.manual_seed(1)
    y1, _ = zero(x)
    assert torch.equal(y0, y1)
    assert torch.equal(r0, torch.rand(()))  # p = 0 draws nothing from torch's RNG


@pytest.mark.parametrize("engine", ENGINES)
def test_eval_mode_dropouts_are_the_identity_and_deterministic(engine):
    torch.manual_seed(0)
    reg = rnnkit.LSTM(4, 6, engine=engine, input_dropout=0.3, weight_drop=0.5,
                      recurrent_dropout=0.0 if engine == "fused" else 0.4).eval()
    plain = rnnkit.LSTM(4, 6, engine=engine).eval()
    plain.load_state_dict(reg.state_dict())
    x = torch.randn(3, 7, 4)
    a, _ = reg(x)
    b, _ = reg(x)
    assert torch.equal(a, b)
    torch.testing.assert_close(a, plain(x)[0], atol=0, rtol=0)


def _torch_cells(layer):
    kind = type(layer).__name__
    cell = getattr(torch.nn, f"{kind}Cell")(layer.input_size, layer.hidden_size).double()
    with torch.no_grad():
        for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, n).copy_(getattr(layer, f"{n}_l0"))
    return cell


def _loop(cell, x, states, a=None, zone=None):
    """torch.nn cell per step; ``zone``: per state, the weight a of the new value (float or (T, B, H))."""
    out = []
    for t in range(x.shape[1]):
        new = cell(x[:, t], states if len(states) > 1 else states[0])
        new = new if isinstance(new, tuple) else (new,)
        if zone is not None:
            new = tuple(w * n + (1 - w) * s for n, s, w in
                        zip(new, states, [z if isinstance(z, float) else z[t] for z in zone]))
        states = new
        out.append(states[0])
    return torch.stack(out, 1), states


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_zoneout_p1_keeps_the_initial_state_and_eval_uses_the_expectation(kind):
    torch.manual_seed(0)
    B, T, H = 3, 6, 5
    x = torch.randn(B, T, 4, dtype=torch.float64)
    layer = getattr(rnnkit, kind)(4, H, zoneout=1.0).double()
    h0 = torch.randn(1, B, H, dtype=torch.float64)
    state = (h0, torch.randn(1, B, H, dtype=torch.float64)) if kind == "LSTM" else h0
    for mode in (True, False):
        layer.train(mode)
        y, _ = layer(x, state)
        torch.testing.assert_close(y, h0[0].unsqueeze(1).expand(B, T, H), atol=0, rtol=0)
    layer = getattr(rnnkit, kind)(4, H, zoneout=0.3).double().eval()
    y, _ = layer(x, state)
    init = (state[0][0], state[1][0]) if kind == "LSTM" else (h0[0],)
    ref, _ = _loop(_torch_cells(layer), x, init, zone=[0.7] * len(init))
    torch.testing.assert_close(y, ref, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_dropconnect_gradient_flows_only_through_kept_weights(kind, engine, drawn):
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(4, 8, engine=engine, weight_drop=0.5).double()
    x = torch.randn(5, 6, 4, dtype=torch.float64)
    y, _ = layer(x)
    (y ** 2).sum().backward()
    M = drawn["weight"][-1]
    assert M is not None and (M == 0).any() and (M > 0).any()
    g = layer.weight_hh_l0.grad
    assert (g[M == 0] == 0).all()
    assert (g[M > 0] != 0).float().mean() > 0.9
    # the same gradient as a per-step loop on the dropped matrix W * M
    cell = _torch_cells(layer)
    W = layer.weight_hh_l0.detach().clone().requires_grad_()
    del cell.weight_hh
    cell.weight_hh = W * M
    init = tuple(torch.zeros(5, 8, dtype=torch.float64) for _ in range(2 if kind == "LSTM" else 1))
    ref, _ = _loop(cell, x, init)
    (ref ** 2).sum().backward()
    torch.testing.assert_close(y, ref, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(g, W.grad, atol=1e-10, rtol=1e-10)


def _masked_loop(layer, x, m_in, masks, reset=None):
    """The layer's math written out per step with the drawn masks; ``reset`` (B, T) zeroes rows first."""
    kind, H, batch = type(layer).__name__, layer.hidden_size, x.shape[0]
    W = layer.weight_hh_l0
    states = tuple(torch.zeros(batch, H, dtype=torch.float64) for _ in masks.zone)
    out = []
    Wd = W * masks.weight
    xd = x * m_in.unsqueeze(1)
    for t in range(x.shape[1]):
        if reset is not None:
            states = tuple(torch.where(reset[:, t:t + 1], torch.zeros_like(s), s) for s in states)
        hd = states[0] * masks.state
        gi = xd[:, t] @ layer.weight_ih_l0.t() + layer.bias_ih_l0
        gh = hd @ Wd.t() + layer.bias_hh_l0
        if kind == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, 1)
            c = torch.sigmoid(f) * states[1] + torch.sigmoid(i) * torch.tanh(g)
            new = (torch.sigmoid(o) * torch.tanh(c), c)
        else:
            ir, iz, in_ = gi.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(in_ + r * hn)
            new = ((1 - z) * n + z * states[0],)
        states = tuple(a[t] * nv + (1 - a[t]) * s for nv, s, a in zip(new, states, masks.zone))
        out.append(states[0])
    return torch.stack(out, 1)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch", [2, 8])
@pytest.mark.parametrize("with_reset", [False, True])
def test_all_regularisers_layer_gradients_against_the_written_out_loop(kind, batch, with_reset, drawn):
    torch.manual_seed(0)
    layer = getattr(rnnkit, kind)(4, 5, engine="auto", input_dropout=0.2, recurrent_dropout=0.3, zoneout=0.2,
                                  weight_drop=0.4).double()
    x = torch.randn(batch, 7, 4, dtype=torch.float64, requires_grad=True)
    reset = None
    if with_reset:  # row 0 restarts at step 3 (rnnkit's streaming resets)
        reset = torch.zeros(batch, 7, dtype=torch.bool)
        reset[0, 3] = True
    y, _ = layer(x, reset=reset) if with_reset else layer(x)
    assert not layer.plan(x).fused
    ref = _masked_loop(layer, x, drawn["input"][-1], drawn["masks"][-1], reset)
    torch.testing.assert_close(y, ref, atol=1e-10, rtol=1e-10)
    params = [layer.weight_ih_l0, layer.weight_hh_l0, layer.bias_ih_l0, layer.bias_hh_l0]
    probe = torch.randn_like(y)
    got = torch.autograd.grad(y, [x, *params], probe)
    want = torch.autograd.grad(ref, [x, *params], probe)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


def test_packed_input_dropout_matches_padded_on_both_engines(drawn):
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    x = torch.randn(4, 6, 3, dtype=torch.float64)
    lens = torch.tensor([3, 6, 2, 5])
    outs = []
    for engine in ENGINES:
        torch.manual_seed(0)
        layer = rnnkit.GRU(3, 5, engine=engine, input_dropout=0.5).double()
        torch.manual_seed(1)
        out, _ = layer(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
        outs.append(pad_packed_sequence(out, batch_first=True)[0])
    torch.testing.assert_close(outs[0], outs[1], atol=1e-12, rtol=1e-12)


def test_bad_values_are_named():
    with pytest.raises(ValueError, match="zoneout"):
        rnnkit.LSTM(4, 8, zoneout=1.5)
    with pytest.raises(ValueError, match="recurrent_dropout"):
        rnnkit.GRU(4, 8, recurrent_dropout=1.0)
    with pytest.raises(ValueError, match="weight_drop"):
        rnnkit.LSTM(4, 8, proj_size=2, weight_drop=0.5)
    with pytest.raises(ValueError, match="input_dropout"):
        rnnkit.RNN(4, 8, input_dropout="0.1")
    with pytest.raises(ValueError, match="fused"):
        rnnkit.LSTM(4, 8, engine="fused", zoneout=0.1)(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="eval mode"):
        rnnkit.LSTM(4, 8, recurrent_dropout=0.1).step(torch.randn(2, 4))


def test_checkpoint_keeps_the_regularisers(tmp_path):
    layer = rnnkit.LSTM(4, 8, zoneout=0.1, recurrent_dropout=0.2, weight_drop=0.3, input_dropout=0.05)
    rnnkit.save(layer, tmp_path / "m")
    back = rnnkit.load(tmp_path / "m")
    assert back.config == layer.config and back.regularisers == layer.regularisers
