"""The built-in cells' single steps, their initialisation facts, and the custom-cell API.

Steps are pinned to the NumPy reference (with W_ih = I, since cells take the projected input)
or to the published formula written out by hand.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import rnnkit
import rnnkit.reference as ref
from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell, SimpleRecurrent

B, H = 3, 4


def np_(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def perturbed(cell):
    cell = cell.double()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def ref_params(cell) -> dict[str, np.ndarray]:
    p = {"W_ih": np.eye(cell.input_width), "W_hh": np_(cell.weight)}
    if cell.bias is not None:
        p["b_hh"] = np_(cell.bias)
    if getattr(cell, "peepholes", False):
        p.update(w_ci=np_(cell.peep_i), w_cf=np_(cell.peep_f), w_co=np_(cell.peep_o))
    return p


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("activation", ["tanh", "relu", "identity"])
def test_elman_step_matches_reference(activation, bias):
    cell = perturbed(ElmanCell(H, activation, bias=bias))
    x, h = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    want = ref.elman_step(ref_params(cell), np_(x), np_(h), nonlinearity=activation)
    np.testing.assert_allclose(np_(cell.step(x, h)), want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("peepholes", [False, True])
def test_lstm_step_matches_reference(peepholes, bias):
    cell = perturbed(LSTMCell(H, peepholes=peepholes, bias=bias))
    x = torch.randn(B, 4 * H, dtype=torch.float64)
    h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    want_h, want_c = ref.lstm_step(ref_params(cell), np_(x), np_(h), np_(c))
    got_h, got_c = cell.step(x, h, c)
    np.testing.assert_allclose(np_(got_h), want_h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np_(got_c), want_c, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [True, False])
def test_gru_step_matches_reference(bias):
    cell = perturbed(GRUCell(H, bias=bias))
    x, h = torch.randn(B, 3 * H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)
    want = ref.gru_step(ref_params(cell), np_(x), np_(h))
    np.testing.assert_allclose(np_(cell.step(x, h)), want, rtol=1e-12, atol=1e-12)


def test_layernorm_lstm_step_matches_the_formula():
    cell = perturbed(LayerNormLSTMCell(H))
    x = torch.randn(B, 4 * H, dtype=torch.float64)
    h, c = torch.randn(B, H, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)

    def ln(v: Tensor, gain: Tensor, shift: Tensor | None) -> Tensor:
        mean, var = v.mean(-1, keepdim=True), v.var(-1, unbiased=False, keepdim=True)
        out = (v - mean) / torch.sqrt(var + 1e-5) * gain
        return out if shift is None else out + shift

    gates = (ln(x, cell.norm_x.weight, cell.norm_x.bias) + ln(h @ cell.weight.T, cell.norm_h.weight, None)
             + cell.gate_bias)
    i, f, g, o = gates.split(H, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new = torch.sigmoid(o) * torch.tanh(ln(c_new, cell.norm_c.weight, cell.norm_c.bias))
    got_h, got_c = cell.step(x, h, c)
    torch.testing.assert_close(got_h, h_new, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(got_c, c_new, rtol=1e-12, atol=1e-12)
    assert cell.bias is None  # the recurrent matmul has no bias; the layer norms' shifts do that job


@pytest.mark.parametrize("cell", [ElmanCell(H), LSTMCell(H, peepholes=True), GRUCell(H), LayerNormLSTMCell(H)],
                         ids=["elman", "lstm_peep", "gru", "ln_lstm"])
def test_structured_step_is_pointwise_of_the_recurrent_matmul(cell):
    x = torch.randn(B, cell.input_width)
    states = [torch.randn(B, H) for _ in cell.states]
    by_position = cell.pack_outputs(cell.step(x, *states))
    by_name = cell.pack_outputs(cell.step(inputs=x, **dict(zip(cell.states, states))))
    split = cell.pack_outputs(cell.pointwise(inputs=x, hw=F.linear(states[0], cell.weight, cell.bias),
                                             **dict(zip(cell.states, states))))
    for a, b, c in zip(by_position, by_name, split, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("cell,width,kind", [
    (ElmanCell(H, "tanh"), H, "rnn_tanh"), (ElmanCell(H, "relu"), H, "rnn_relu"), (ElmanCell(H, "identity"), H, None),
    (LSTMCell(H), 4 * H, "lstm"), (LSTMCell(H, peepholes=True), 4 * H, None), (GRUCell(H), 3 * H, "gru"),
    (LayerNormLSTMCell(H), 4 * H, None),
], ids=["tanh", "relu", "identity", "lstm", "lstm_peep", "gru", "ln_lstm"])
def test_input_width_and_fused_kind(cell, width, kind):
    assert cell.input_width == width
    assert tuple(cell.weight.shape) == (width, H)
    assert rnnkit.engine.fused_kind(cell) == kind  # the engine maps a cell to its kernel; cells carry no backend facts


def test_forget_bias_initialises_only_the_forget_slice():
    cell = LSTMCell(H, forget_bias=1.0)
    expected = torch.zeros(4 * H)
    expected[H:2 * H] = 1.0
    assert torch.equal(cell.bias.data, expected)
    assert torch.equal(LSTMCell(H, forget_bias=0.0).bias.data, torch.zeros(4 * H))
    assert torch.equal(LayerNormLSTMCell(H, forget_bias=2.0).gate_bias.data[H:2 * H], torch.full((H,), 2.0))
    assert torch.equal(LayerNormLSTMCell(H, forget_bias=2.0).gate_bias.data[:H], torch.zeros(H))


def test_simple_recurrent_is_the_elman_cell():
    assert SimpleRecurrent is ElmanCell


def test_cell_float64_runs_in_float64():
    out = LSTMCell(H).double()(torch.randn(B, 5, 4 * H, dtype=torch.float64))
    assert all(o.dtype == torch.float64 for o in out)


@pytest.mark.parametrize("make", [lambda: ElmanCell(H, learn_initial_state=True),
                                  lambda: LSTMCell(H, learn_initial_state=True),
                                  lambda: LayerNormLSTMCell(H, learn_initial_state=True)],
                         ids=["elman", "lstm", "ln_lstm"])
def test_learnable_initial_states_get_the_summed_gradient(make):
    cell = make().double()
    with torch.no_grad():
        for p in cell.initial.values():
            p.normal_()
    x = torch.randn(B, 5, cell.input_width, dtype=torch.float64)
    lengths = torch.tensor([5, 2, 3])
    w = torch.randn(B, 5, H, dtype=torch.float64)
    (cell.scan(x, lengths=lengths).outputs["h"] * w).sum().backward()
    learned = {k: v.grad.clone() for k, v in cell.initial.items()}
    assert all(g.abs().max() > 0 for g in learned.values())
    # Oracle: the same initial values passed explicitly, one copy per row; their gradients summed.
    explicit = {k: v.detach().expand(B, H).clone().requires_grad_() for k, v in cell.initial.items()}
    (cell.scan(x, lengths=lengths, initial_states=explicit).outputs["h"] * w).sum().backward()
    for k, g in learned.items():
        torch.testing.assert_close(g, explicit[k].grad.sum(0), rtol=1e-12, atol=1e-12)


def test_initial_state_of_per_example_shape_is_shared_by_the_batch():
    cell = GRUCell(H)
    x = torch.randn(B, 5, 3 * H)
    h0 = torch.randn(H)
    shared = cell.scan(x, h=h0).outputs["h"]
    assert torch.equal(shared, cell.scan(x, h=h0.expand(B, H)).outputs["h"])
    assert torch.equal(shared, cell.scan(x, h=h0[None]).outputs["h"])


def test_iterate_false_on_lstm_starts_from_zero_states():
    cell = LSTMCell(H)
    x = torch.randn(B, 4 * H)
    h, c = cell(x, iterate=False)
    want_h, want_c = cell.step(x, torch.zeros(B, H), torch.zeros(B, H))
    assert torch.equal(h, want_h) and torch.equal(c, want_c)


# ----------------------------------------------------------------------------- custom cells
class Echo(rnnkit.Recurrent):
    """Counts real steps in ``n`` and echoes the context plus the input in a non-state output."""

    states = ("n",)
    contexts = ("ctx",)
    outputs = ("echo", "n")

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (2,)

    def step(self, inputs: Tensor, n: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor]:
        return ctx + inputs, n + 1


def test_custom_cell_outputs_order_contexts_and_padding():
    ctx = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    x = torch.arange(12.0).view(2, 3, 2)
    echo, n = Echo()(x, ctx=ctx, lengths=torch.tensor([3, 1]))  # returned in ``outputs`` order
    assert torch.equal(echo[0], x[0] + ctx[0])
    assert torch.equal(echo[1, 0], x[1, 0] + ctx[1]) and torch.all(echo[1, 1:] == 0)
    assert n[:, :, 0].tolist() == [[1.0, 2.0, 3.0], [1.0, 0.0, 0.0]]
    result = Echo().scan(x, contexts={"ctx": ctx}, lengths=torch.tensor([3, 1]))
    assert set(result.outputs) == {"echo", "n"} and set(result.final) == {"n"}
    assert result.final["n"][:, 0].tolist() == [3.0, 1.0]  # the state after each row's last real step


def test_custom_cell_with_two_sequences_by_name():
    class Sum(rnnkit.Recurrent):
        sequences = ("a", "b")

        def state_shape(self, name: str) -> tuple[int, ...]:
            return (1,)

        def step(self, a: Tensor, b: Tensor, h: Tensor) -> Tensor:
            return h + a * b

    a, b = torch.randn(2, 4, 1), torch.randn(2, 4, 1)
    expected = (a * b).cumsum(1)
    torch.testing.assert_close(Sum()(a, b), expected)
    torch.testing.assert_close(Sum()(b=b, a=a), expected)
    torch.testing.assert_close(Sum()(a, b=b), expected)


def test_custom_cell_with_two_states_and_a_context_trains_every_parameter(custom_cell_class):
    cell = custom_cell_class(4, 3, 2)
    seqs = torch.randn(2, 5, 4)
    h, m, y = cell(seqs, ctx=torch.randn(2, 2))
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().max() > 0 for p in cell.parameters())
    assert h.shape == m.shape == y.shape == (2, 5, 3)
