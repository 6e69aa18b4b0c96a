"""A port of Lasagne's recurrent-layer tests (``lasagne/tests/layers/test_recurrent.py``) to rnnkit.

Written from the behaviours that suite checks, not copied. Lasagne's options map onto rnnkit as a
Lasagne user would look for them:

* ``backwards=True``       -> ``reverse=True`` on a cell or ``CellLayer`` (outputs in time order);
* ``unroll_scan=True``     -> the same layer stepped by hand (``layer.step`` / ``iterate=False``),
  against the fused and generic engines' whole-sequence loops;
* ``precompute_input``     -> ``CellLayer`` (one GEMM over all steps) against ``nn.Linear`` per step;
* ``only_return_final``    -> the final state ``h_n``, equal to the last real step's output;
* ``mask_input``           -> ``mask=`` (bool) / ``lengths=``; ``learn_init`` / ``hid_init`` ->
  ``cell.learnable_initial_states()`` / a given initial state;
* gradients are checked against numeric ones (``torch.autograd.gradcheck``, float64).

Lasagne flattens trailing input dimensions; rnnkit refuses a 4-D input with the fix to apply.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell

ENGINES = ["auto", "fused", "generic"]
KINDS = ["RNN", "LSTM", "GRU"]
CELLS = {"RNN": lambda H: ElmanCell(H), "LSTM": lambda H: LSTMCell(H), "GRU": lambda H: GRUCell(H)}


def flat(state):
    return state if isinstance(state, tuple) else (state,)


def close(a, b, tol=1e-5):
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, atol=tol, rtol=tol)


def layer(kind, engine="auto", **kw):
    torch.manual_seed(1234)
    return getattr(rnnkit, kind)(4, 6, engine=engine, **kw)


# ----------------------------------------------------------------------------- shapes and inputs
@pytest.mark.parametrize("kind", KINDS)
def test_return_shape_and_trailing_dimensions(kind):
    x = torch.rand(5, 3, 10, 11)  # (B, T, F1, F2): Lasagne flattens F1 x F2
    rnn = getattr(rnnkit, kind)(110, 6)
    with pytest.raises(ValueError, match=r"expected a 3-D tensor \(B, T, F\).*Fix: reshape"):
        rnn(x)
    y, _ = rnn(x.flatten(2))
    assert y.shape == (5, 3, 6)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_variable_batch_and_sequence_length(kind, engine):
    rnn = layer(kind, engine)
    ref = rnn.to_torch()
    for B, T in ((7, 10), (6, 15), (1, 1)):
        x = torch.ones(B, T, 4)
        y, _ = rnn(x)
        assert y.shape == (B, T, 6)
        close(y, ref(x)[0])


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_parameter_gets_a_gradient_under_a_mask(kind, engine):
    rnn = layer(kind, engine, bidirectional=True, num_layers=2)
    y, _ = rnn(torch.randn(5, 3, 4), lengths=torch.tensor([3, 1, 2, 3, 2]))
    y.mean().backward()
    for name, p in rnn.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_float_mask_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        rnnkit.GRU(4, 6)(torch.randn(2, 3, 4), mask=torch.ones(2, 3))


# ----------------------------------------------------------------------------- backwards
@pytest.mark.parametrize("kind", KINDS)
def test_backwards_on_constant_input_is_the_forward_output_reversed(kind):
    cell = CELLS[kind](2)
    x = torch.ones(2, 3, cell.input_width)
    fwd = cell.scan(x)
    bwd = cell.scan(x, reverse=True)
    close(fwd.outputs["h"], bwd.outputs["h"].flip(1), 1e-6)
    close(bwd.final["h"], bwd.outputs["h"][:, 0], 0)  # a reverse scan ends at step 0


@pytest.mark.parametrize("kind", KINDS)
def test_backwards_cell_layer_equals_the_forward_layer_on_flipped_rows(kind):
    torch.manual_seed(0)
    lay = rnnkit.CellLayer(CELLS[kind](5), input_size=3).double()
    x = torch.randn(3, 7, 3, dtype=torch.float64)
    lengths = torch.tensor([7, 4, 1])
    y, s = lay(x, lengths=lengths, reverse=True)
    for b, n in enumerate(lengths.tolist()):  # oracle: the forward layer on the row's steps, reversed
        y_one, s_one = lay(x[b : b + 1, :n].flip(1))
        close(y[b, :n], y_one[0].flip(0), 1e-12)
        for a, c in zip(flat(s), flat(s_one)):
            close(a[b], c[0], 1e-12)
        assert y[b, n:].abs().sum() == 0


# ----------------------------------------------------------------------------- unroll_scan
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_whole_sequence_equals_the_layer_stepped_by_hand(kind, engine):
    rnn = layer(kind, engine, num_layers=2).double()
    x = torch.rand(2, 5, 4, dtype=torch.float64)
    y, s = rnn(x)
    state, steps = None, []
    for t in range(5):  # the unrolled loop
        out, state = rnn.step(x[:, t], state)
        steps.append(out)
    close(y, torch.stack(steps, 1), 1e-12)
    for a, b in zip(flat(s), flat(state)):
        close(a, b, 1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("kind", KINDS)
def test_cell_scan_equals_iterate_false_by_hand_with_a_mask(kind, reverse):
    torch.manual_seed(0)
    cell = CELLS[kind](3).double()
    x = torch.rand(3, 6, cell.input_width, dtype=torch.float64)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    mask[2, 2] = False  # a hole: the state carries over it
    scan = cell.scan(x, mask=mask, reverse=reverse)
    states = {name: torch.zeros(3, 3, dtype=torch.float64) for name in cell.states}
    outs = torch.zeros(3, 6, 3, dtype=torch.float64)
    for t in (reversed(range(6)) if reverse else range(6)):
        new = flat(cell(x[:, t], mask=mask[:, t], iterate=False, **states))
        states = dict(zip(cell.states, new))
        outs[:, t] = torch.where(mask[:, t, None], states["h"], 0.0)
    close(scan.outputs["h"], outs, 1e-12)
    for name in cell.states:
        close(scan.final[name], states[name], 1e-12)


# ----------------------------------------------------------------------------- precompute_input
@pytest.mark.parametrize("kind", KINDS)
def test_precomputed_projection_equals_a_linear_per_step(kind):
    torch.manual_seed(0)
    lay = rnnkit.CellLayer(CELLS[kind](6), input_size=4)
    x = torch.rand(2, 3, 4)
    mask = torch.ones(2, 3, dtype=torch.bool)
    y, _ = lay(x, mask=mask)
    proj = nn.Linear(4, lay.cell.input_width)
    proj.load_state_dict(lay.input.state_dict())
    per_step = torch.stack([proj(x[:, t]) for t in range(3)], 1)  # (B, T, G)
    close(y, flat(lay.cell(per_step, mask=mask))[0])


# ----------------------------------------------------------------------------- only_return_final
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_final_state_is_the_last_real_output(kind, engine):
    rnn = layer(kind, engine, num_layers=2)
    x = torch.rand(3, 5, 4)
    y, s = rnn(x)
    close(flat(s)[0][-1], y[:, -1], 0)
    lengths = torch.tensor([5, 2, 4])
    y, s = rnn(x, lengths=lengths)
    last = y[torch.arange(3), lengths - 1]  # (B, H)
    close(flat(s)[0][-1], last, 0)


# ----------------------------------------------------------------------------- learn_init / hid_init
@pytest.mark.parametrize("kind", KINDS)
def test_learned_initial_state_adds_one_parameter_per_state_and_equals_a_given_one(kind):
    cell = CELLS[kind](7)
    before = len(list(cell.parameters()))
    cell.learnable_initial_states()
    assert len(list(cell.parameters())) == before + len(cell.states)
    with torch.no_grad():
        for p in cell.initial.values():
            p.fill_(1.0)
    x = torch.ones(2, 2, cell.input_width)
    given = {name: torch.ones(2, 7) for name in cell.states}  # Lasagne's hid_init array, tiled over the batch
    close(flat(cell(x))[0], flat(cell(x, **given))[0], 0)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", KINDS)
def test_initial_state_computed_by_another_layer_trains_it(kind, engine):
    # Lasagne's hid_init=<a DenseLayer>: the initial state is an expression; its weights get gradients
    rnn = layer(kind, engine).double()
    ref = rnn.to_torch()
    torch.manual_seed(5)
    dense = nn.Linear(3, 6).double()
    z = torch.randn(2, 3, dtype=torch.float64)
    x = torch.rand(2, 4, 4, dtype=torch.float64)
    grads = []
    for module in (rnn, ref):
        h0 = dense(z).unsqueeze(0)  # (1, B, H)
        state = (h0, torch.zeros_like(h0)) if kind == "LSTM" else h0
        y, _ = module(x, state)
        grads.append(torch.autograd.grad(y.pow(2).sum(), [dense.weight, dense.bias]))
    for a, b in zip(*grads):
        close(a, b, 1e-10)


# ----------------------------------------------------------------------------- numeric gradients
@pytest.mark.parametrize("kind", KINDS)
def test_cell_gradients_equal_numeric_ones_with_mask_and_reverse(kind):
    torch.manual_seed(0)
    cell = CELLS[kind](2).double()
    x = torch.randn(2, 4, cell.input_width, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 2, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, False, True], [True, True, True, False]])

    def fn(x, h0):
        scan = cell.scan(x, mask=mask, reverse=True, h=h0)
        return scan.outputs["h"], scan.final["h"]

    assert torch.autograd.gradcheck(fn, (x, h0))
    weights = tuple(cell.parameters())

    analytic = torch.autograd.grad(fn(x, h0)[0].sum(), weights)
    eps = 1e-6
    for w, g in zip(weights, analytic):  # central differences, entry by entry
        numeric = torch.zeros_like(w)
        flat_w = w.detach().view(-1)
        for i in range(flat_w.numel()):
            with torch.no_grad():
                flat_w[i] += eps
                up = fn(x, h0)[0].sum()
                flat_w[i] -= 2 * eps
                down = fn(x, h0)[0].sum()
                flat_w[i] += eps
            numeric.view(-1)[i] = (up - down) / (2 * eps)
        close(g, numeric, 1e-6)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_layer_refuses_learned_initial_states_it_would_ignore(engine):
    # Lasagne's learn_init on a layer: rnnkit's built-in layers start from zeros or the given state, so
    # a learned initial state set on one of their cells must not be silently ignored.
    rnn = layer("GRU", engine, num_layers=2)
    rnn.layers[1].fwd.cell.learnable_initial_states()
    x = torch.rand(2, 3, 4)
    with pytest.raises(ValueError, match=r"layers\[1\]\.fwd\.cell.*Fix: .*CellLayer"):
        rnn(x)
    with pytest.raises(ValueError, match="learned initial states"):
        rnn.step(x[:, 0])
    y, _ = rnn(x, torch.zeros(2, 2, 6))  # a given state is what the layer runs from
    assert y.shape == (2, 3, 6)
