"""rnnkit.CellLayer: a user's cell with its input projection, against independent oracles.

torch.nn.LSTM is the oracle for a user-written LSTM cell (weights copied, fp64 1e-10); the plain
``nn.Linear`` + ``cell(...)`` path under autograd is the oracle for lengths, reverse, carried
state and resets; gradcheck/gradgradcheck cover the donated projection's backward and double
backward.
"""
from __future__ import annotations

from unittest import mock

import pytest
import torch
import torch.nn.functional as F

import rnnkit
import rnnkit.engine as engine
from rnnkit.cells.examples import MGU, UserLSTM


def _grads(y, wrt):  # type: ignore[no-untyped-def]
    torch.manual_seed(9)
    return torch.autograd.grad((y * torch.randn_like(y)).sum(), wrt)


@pytest.mark.parametrize("B", [2, 9], ids=["whole-loop-in-C", "per-step"])
def test_a_user_lstm_in_a_cell_layer_equals_torch_nn_lstm(B):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(5, 8, batch_first=True).double()
    layer = rnnkit.CellLayer(UserLSTM(8), 5).double()
    with torch.no_grad():
        layer.input.weight.copy_(ref.weight_ih_l0)
        layer.input.bias.copy_(ref.bias_ih_l0)
        layer.cell.weight.copy_(ref.weight_hh_l0)
        layer.cell.bias.copy_(ref.bias_hh_l0)
    x = torch.randn(B, 11, 5, dtype=torch.float64, requires_grad=True)
    h0, c0 = torch.randn(B, 8, dtype=torch.float64), torch.randn(B, 8, dtype=torch.float64)
    y, (h, c) = layer(x, (h0, c0))
    y_ref, (h_ref, c_ref) = ref(x, (h0[None], c0[None]))
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close((h, c), (h_ref[0], c_ref[0]), atol=1e-10, rtol=0)
    ours = _grads(y, [x, layer.input.weight, layer.input.bias, layer.cell.weight, layer.cell.bias])
    theirs = _grads(y_ref, [x, ref.weight_ih_l0, ref.bias_ih_l0, ref.weight_hh_l0, ref.bias_hh_l0])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_equals_linear_plus_cell_with_lengths_reverse_and_state(reverse, dtype):
    torch.manual_seed(1)
    layer = rnnkit.CellLayer(MGU(6), 4).to(dtype)
    x = torch.randn(5, 9, 4, dtype=dtype, requires_grad=True)
    h0 = torch.randn(5, 6, dtype=dtype)
    lengths = torch.tensor([9, 3, 7, 1, 5])
    y, h = layer(x, h0, lengths, reverse=reverse)
    out = layer.cell.scan(F.linear(x, layer.input.weight, layer.input.bias), lengths=lengths, reverse=reverse, h=h0)
    tol = dict(atol=1e-10, rtol=0) if dtype == torch.float64 else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y, out.outputs["h"], **tol)
    torch.testing.assert_close(h, out.final["h"], **tol)
    params = [x, *layer.parameters()]
    for a, b in zip(_grads(y, params), _grads(out.outputs["h"], params)):
        torch.testing.assert_close(a, b, **tol)


def test_carried_state_equals_one_long_call_and_resets_restart_rows():
    torch.manual_seed(2)
    layer = rnnkit.CellLayer(UserLSTM(5), 3).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    y, _ = layer(x)
    y1, s = layer(x[:, :6])
    y2, _ = layer(x[:, 6:], s)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, atol=1e-12, rtol=0)
    reset = torch.zeros(2, 10, dtype=torch.bool)
    reset[0, 4] = True
    y_r, _ = layer(x, reset=reset)
    fresh, _ = layer(x[:1, 4:])  # row 0 restarts at t = 4 from the initial state
    torch.testing.assert_close(y_r[0, 4:], fresh[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(y_r[1], y[1], atol=1e-12, rtol=0)


def test_the_projection_is_donated_and_double_backward_recomputes_it():
    layer = rnnkit.CellLayer(MGU(3), 2).double()
    x = torch.randn(2, 4, 2, dtype=torch.float64, requires_grad=True)
    seen = []
    real = engine.run_cell

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append((kwargs.get("donate"), kwargs.get("rebuild") is not None))
        return real(*args, **kwargs)

    with mock.patch.object(engine, "run_cell", spy):
        layer(x)
    assert seen == [(True, True)]  # the engine takes the layer's own projection without a copy
    assert torch.autograd.gradcheck(lambda x: layer(x, lengths=[4, 2])[0], (x,))
    assert torch.autograd.gradgradcheck(lambda x: layer(x, lengths=[4, 2])[0], (x,))


def test_stacks_and_pairs_like_the_built_in_layers():
    torch.manual_seed(3)
    deep = rnnkit.Stack([rnnkit.CellLayer(MGU(6), 4), rnnkit.CellLayer(UserLSTM(6), 6)], residual=True)
    y, states = deep(torch.randn(3, 5, 4), lengths=torch.tensor([5, 2, 4]))
    assert tuple(y.shape) == (3, 5, 6) and tuple(states[0].shape) == (3, 6) and len(states[1]) == 2
    bi = rnnkit.Bidirectional(rnnkit.CellLayer(MGU(6), 4), rnnkit.CellLayer(MGU(6), 4))
    y, _ = bi(torch.randn(3, 5, 4), lengths=torch.tensor([5, 2, 4]))
    assert tuple(y.shape) == (3, 5, 12)
    assert (y[1, 2:] == 0).all()  # padding stays zero


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match="cell"):
        rnnkit.CellLayer(torch.nn.Linear(2, 2), 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="input_size"):
        rnnkit.CellLayer(MGU(3), 0)
    layer = rnnkit.CellLayer(UserLSTM(3), 2)
    with pytest.raises(ValueError, match=r"x: expected a 3-D tensor \(B, T, F\) with F = 2"):
        layer(torch.randn(1, 4, 5))
    with pytest.raises(ValueError, match="state"):
        layer(torch.randn(1, 4, 2), torch.zeros(1, 3))  # an LSTM-like cell wants (h, c)


def _same_weights(layer, ref):  # type: ignore[no-untyped-def]
    """CellLayer(UserLSTM) <- rnnkit.LSTM's one direction (the same gate order as torch.nn.LSTM)."""
    with torch.no_grad():
        layer.input.weight.copy_(ref.weight_ih_l0)
        layer.input.bias.copy_(ref.bias_ih_l0)
        layer.cell.weight.copy_(ref.weight_hh_l0)
        layer.cell.bias.copy_(ref.bias_hh_l0)


REGULARISERS = [dict(zoneout=0.3), dict(recurrent_dropout=0.4), dict(input_dropout=0.35), dict(weight_drop=0.5),
                dict(input_dropout=0.2, recurrent_dropout=0.3, zoneout=0.15, weight_drop=0.25)]


@pytest.mark.parametrize("reg", REGULARISERS, ids=lambda r: "+".join(r))
@pytest.mark.parametrize("B", [2, 9], ids=["whole-loop-in-C", "per-step"])
def test_regularisers_equal_the_built_in_layer_under_the_same_seed(reg, B):
    """A user LSTM in a CellLayer takes the built-in layers' regularisers and draws the same masks
    in the same order: in training, under one seed, it computes what rnnkit.LSTM computes."""
    torch.manual_seed(4)
    ref = rnnkit.LSTM(5, 8, engine="generic", **reg).double()
    layer = rnnkit.CellLayer(UserLSTM(8), 5, **reg).double()
    _same_weights(layer, ref)
    x = torch.randn(B, 7, 5, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([7, 3] + [5] * (B - 2))
    torch.manual_seed(11)
    y_ref, (h_ref, c_ref) = ref(x, lengths=lengths)
    torch.manual_seed(11)
    y, (h, c) = layer(x, lengths=lengths)
    torch.testing.assert_close(y, y_ref, atol=1e-10, rtol=0)
    torch.testing.assert_close((h, c), (h_ref[0], c_ref[0]), atol=1e-10, rtol=0)
    ours = _grads(y, [x, layer.input.weight, layer.cell.weight, layer.cell.bias])
    theirs = _grads(y_ref, [x, ref.weight_ih_l0, ref.weight_hh_l0, ref.bias_hh_l0])
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)
    torch.manual_seed(12)
    assert not torch.allclose(layer(x, lengths=lengths)[0], y)  # a new call draws new masks


def test_regularisers_in_eval_mode_are_the_identity_and_zoneouts_expectation():
    """Eval mode: the dropouts do nothing; zoneout keeps (1 - p) of the new value, by hand."""
    torch.manual_seed(5)
    layer = rnnkit.CellLayer(MGU(6), 4, input_dropout=0.5, recurrent_dropout=0.5, weight_drop=0.5,
                             zoneout=0.25).double().eval()
    plain = rnnkit.CellLayer(MGU(6), 4).double().eval()
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(3, 6, 4, dtype=torch.float64)
    y, h = layer(x)
    xp = plain.input(x)  # (B, T, G), the projection
    state = torch.zeros(3, 6, dtype=torch.float64)
    for t in range(6):  # s_t = 0.75 s_new + 0.25 s_{t-1}
        new = plain.cell.step(xp[:, t], h=state)
        new = new[0] if isinstance(new, tuple) else new
        state = 0.75 * new + 0.25 * state
        torch.testing.assert_close(y[:, t], state, atol=1e-12, rtol=0)
    torch.testing.assert_close(h, state, atol=1e-12, rtol=0)
    off = rnnkit.CellLayer(MGU(6), 4, input_dropout=0.5, recurrent_dropout=0.5, weight_drop=0.5).double().eval()
    off.load_state_dict(layer.state_dict())
    torch.testing.assert_close(off(x)[0], plain(x)[0], atol=0, rtol=0)


def test_regularisers_are_checked_when_the_layer_is_built():
    class Feedback(rnnkit.Recurrent):  # no single recurrent matrix: recurrent dropout cannot apply
        states, sequences = ("h",), ("inputs",)

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Linear(3, 3)

        def state_shape(self, name):  # type: ignore[no-untyped-def]
            return (3,)

        def sequence_shape(self, name):  # type: ignore[no-untyped-def]
            return (3,)

        def step(self, inputs, h):  # type: ignore[no-untyped-def]
            return torch.tanh(inputs + self.w(h))

    with pytest.raises(ValueError, match="recurrent_dropout: expected 0 for a cell without one recurrent matrix"):
        rnnkit.CellLayer(Feedback(), 2, recurrent_dropout=0.1)
    with pytest.raises(ValueError, match=r"zoneout: expected a probability in \[0, 1\]"):
        rnnkit.CellLayer(MGU(3), 2, zoneout=1.5)
    layer = rnnkit.CellLayer(Feedback(), 2, zoneout=0.2, input_dropout=0.1)  # any cell takes these
    assert layer.regularisers == rnnkit.Regularisers(input_dropout=0.1, zoneout=0.2)
    assert "zoneout=0.2" in repr(layer)
