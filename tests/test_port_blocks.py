"""A port of Blocks' recurrent-brick tests (``tests/bricks/test_recurrent.py``) to rnnkit.

Written from the behaviours that suite checks, not copied: SimpleRecurrent, LSTM (with Blocks'
peepholes) and GatedRecurrent against NumPy recurrences written here, one step (``iterate=False``)
and many steps with a mask, Bidirectional against the single brick and its time reversal, a
RecurrentStack, a brick whose outputs are not its states, ``return_initial_states`` and a learned
initial state.

Mapping (what a Blocks user gets in rnnkit): Blocks is time-major (T, B, F) with a float mask
(T, B); rnnkit is batch-first (B, T, F) with a bool mask (B, T). ``weights_init=Constant(2)`` is
``weight.fill_(2)`` with zero biases. One documented difference: at a masked step Blocks returns
the carried state, rnnkit returns zeros (its outputs follow torch's packed sequences); the carried
state is rnnkit's final state, which these tests check against Blocks' value.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import LSTMCell, SimpleRecurrent

DTYPES = [(torch.float64, 1e-10), (torch.float32, 1e-5)]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def blocks_data(features: int) -> tuple[np.ndarray, np.ndarray]:
    """Blocks' test sequence: 24 steps, 4 rows, x[t, b, :] = 0.1 * permutations(range(4))[t][b]
    (each row holds one value per step), and row 3 masked from step 12 on. Returned batch-first:
    x (B, T, F) = (4, 24, F), mask (B, T) float."""
    perms = 0.1 * np.asarray(list(itertools.permutations(range(4))), dtype=np.float64)  # (24, 4)
    x = np.ones((24, 4, features)) * perms[..., None]  # (T, B, F)
    mask = np.ones((24, 4))
    mask[12:, 3] = 0
    return x.transpose(1, 0, 2).copy(), mask.T.copy()  # (B, T, F), (B, T)


def lstm_data() -> tuple[np.ndarray, np.ndarray]:
    """Blocks' LSTM sequence: step t holds the t-th permutation of range(12) (x 0.1) in every row."""
    perms = 0.1 * np.asarray(list(itertools.islice(itertools.permutations(range(12)), 24)), dtype=np.float64)
    x = np.ones((4, 24, 12)) * perms[None, :, :]  # (B, T, 12)
    mask = np.ones((4, 24))
    mask[3, 12:] = 0
    return x, mask


def carry(mask_t: np.ndarray, new: np.ndarray, old: np.ndarray) -> np.ndarray:
    """Blocks' masked update: the new value where the step is real, the old one elsewhere."""
    return mask_t[:, None] * new + (1 - mask_t[:, None]) * old


def t_(a: np.ndarray, dtype: torch.dtype) -> Tensor:
    return torch.tensor(a, dtype=dtype)


def constant_simple(dtype: torch.dtype) -> SimpleRecurrent:
    cell = SimpleRecurrent(3, activation="tanh").to(dtype)
    with torch.no_grad():
        cell.weight.fill_(2.0)
        cell.bias.zero_()
    return cell


def constant_lstm(dtype: torch.dtype) -> LSTMCell:
    """Blocks' LSTM: peepholes on, every weight 2, biases 0 (rnnkit's forget bias of 1 removed)."""
    cell = LSTMCell(3, peepholes=True).to(dtype)
    with torch.no_grad():
        cell.weight.fill_(2.0)
        cell.bias.zero_()
        for p in (cell.peep_i, cell.peep_f, cell.peep_o):
            p.fill_(2.0)
    return cell


def numpy_lstm_step(x: np.ndarray, h: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Blocks' LSTM step with W_state = 2, peepholes 2, zero biases; x (B, 12), h and c (B, 3)."""
    a = h @ (2 * np.ones((3, 12))) + x
    i = sigmoid(a[:, :3] + 2 * c)
    f = sigmoid(a[:, 3:6] + 2 * c)
    c_new = f * c + i * np.tanh(a[:, 6:9])
    o = sigmoid(a[:, 9:12] + 2 * c_new)
    return o * np.tanh(c_new), c_new


# ----------------------------------------------------------------------------- SimpleRecurrent
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_simple_recurrent_one_step_with_mask(dtype, tol):
    h0 = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float64)
    x = 0.1 * np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)
    mask = np.array([1, 0], dtype=np.float64)
    want = carry(mask, np.tanh(h0 @ (2 * np.ones((3, 3))) + x), h0)
    got = constant_simple(dtype)(t_(x, dtype), h=t_(h0, dtype), mask=torch.tensor([True, False]), iterate=False)
    torch.testing.assert_close(got, t_(want, dtype), atol=tol, rtol=tol)


@pytest.mark.parametrize("engine", ["auto", "generic"])
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_simple_recurrent_many_steps_with_mask(engine, dtype, tol):
    x, mask = blocks_data(3)
    h = np.zeros((4, 3))
    want = np.zeros((4, 24, 3))
    for t in range(24):
        h = carry(mask[:, t], np.tanh(h @ (2 * np.ones((3, 3))) + x[:, t]), h)
        want[:, t] = h
    scan = constant_simple(dtype).scan(t_(x, dtype), mask=t_(mask, dtype).bool(), engine=engine)
    real = t_(mask, dtype).bool()
    torch.testing.assert_close(scan.outputs["h"][real], t_(want, dtype)[real], atol=tol, rtol=tol)
    assert scan.outputs["h"][~real].abs().max() == 0  # rnnkit: padded outputs are zero
    torch.testing.assert_close(scan.final["h"], t_(want[:, -1], dtype), atol=tol, rtol=tol)  # Blocks' carried value


def test_simple_recurrent_mask_with_holes_carries_the_state():
    x, _ = blocks_data(3)
    mask = np.ones((4, 24))
    mask[0, 3:7] = 0
    mask[2, ::2] = 0  # every other step of row 2, the first included
    h = np.zeros((4, 3))
    want = np.zeros((4, 24, 3))
    for t in range(24):
        h = carry(mask[:, t], np.tanh(h @ (2 * np.ones((3, 3))) + x[:, t]), h)
        want[:, t] = h
    real = torch.tensor(mask).bool()
    scan = constant_simple(torch.float64).scan(torch.tensor(x), mask=real)
    torch.testing.assert_close(scan.outputs["h"][real], torch.tensor(want)[real], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(scan.final["h"], torch.tensor(want[:, -1]), atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------------------------- LSTM (peepholes)
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_lstm_one_step(dtype, tol):
    h0 = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float64)
    c0 = h0.copy()
    x = 0.1 * np.array([range(12), range(12, 24)], dtype=np.float64)
    want_h, want_c = numpy_lstm_step(x, h0, c0)
    h1, c1 = constant_lstm(dtype)(t_(x, dtype), h=t_(h0, dtype), c=t_(c0, dtype), iterate=False)
    torch.testing.assert_close(h1, t_(want_h, dtype), atol=tol, rtol=tol)
    torch.testing.assert_close(c1, t_(want_c, dtype), atol=tol, rtol=tol)


@pytest.mark.parametrize("engine", ["auto", "generic"])
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_lstm_many_steps_with_mask(engine, dtype, tol):
    x, mask = lstm_data()
    h, c = np.zeros((4, 3)), np.zeros((4, 3))
    want_h, want_c = np.zeros((4, 24, 3)), np.zeros((4, 24, 3))
    for t in range(24):
        h_new, c_new = numpy_lstm_step(x[:, t], h, c)
        h, c = carry(mask[:, t], h_new, h), carry(mask[:, t], c_new, c)
        want_h[:, t], want_c[:, t] = h, c
    real = torch.tensor(mask).bool()
    scan = constant_lstm(dtype).scan(t_(x, dtype), mask=real, engine=engine)
    torch.testing.assert_close(scan.outputs["h"][real], t_(want_h, dtype)[real], atol=tol, rtol=tol)
    torch.testing.assert_close(scan.outputs["c"][real], t_(want_c, dtype)[real], atol=tol, rtol=tol)
    torch.testing.assert_close(scan.final["h"], t_(want_h[:, -1], dtype), atol=tol, rtol=tol)
    torch.testing.assert_close(scan.final["c"], t_(want_c[:, -1], dtype), atol=tol, rtol=tol)


# ----------------------------------------------------------------------------- GatedRecurrent
class BlocksGatedRecurrent(rnnkit.Recurrent):
    """Blocks' GatedRecurrent (reset applied before the matmul, z weighting the new candidate):
    gates = act_g(h U + gate_inputs), z, r = split(gates); h' = z * tanh((r * h) W + inputs) + (1 - z) * h.
    rnnkit's built-in GRU is torch's reset-after variant; this is the brick a Blocks user writes."""

    sequences = ("inputs", "gate_inputs")
    states = ("h",)

    def __init__(self, dim: int, gate_activation=torch.tanh) -> None:
        super().__init__()
        self.dim = dim
        self.gate_activation = gate_activation
        self.state_to_state = nn.Parameter(torch.randn(dim, dim) * 0.5)  # (H, H)
        self.state_to_gates = nn.Parameter(torch.randn(dim, 2 * dim) * 0.5)  # (H, 2H): update, reset

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.dim,)

    def step(self, inputs: Tensor, gate_inputs: Tensor, h: Tensor) -> Tensor:
        gates = self.gate_activation(h @ self.state_to_gates + gate_inputs)  # (B, 2H)
        z, r = gates[:, : self.dim], gates[:, self.dim :]
        candidate = torch.tanh((r * h) @ self.state_to_state + inputs)  # (B, H)
        return z * candidate + (1 - z) * h


def test_gated_recurrent_one_step_constant_weights():
    cell = BlocksGatedRecurrent(3).double()
    with torch.no_grad():
        cell.state_to_state.fill_(2.0)
        cell.state_to_gates.fill_(2.0)
    h0 = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float64)
    x = 0.1 * np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float64)
    zi, ri = (h0 + x) / 2, -x
    W = 2 * np.ones((3, 3))
    z, r = np.tanh(h0 @ W + zi), np.tanh(h0 @ W + ri)
    want = z * np.tanh((r * h0) @ W + x) + (1 - z) * h0
    got = cell(torch.tensor(x), torch.tensor(np.hstack([zi, ri])), h=torch.tensor(h0), iterate=False)
    torch.testing.assert_close(got, torch.tensor(want), atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_gated_recurrent_many_steps_with_mask(dtype, tol):
    torch.manual_seed(1)
    cell = BlocksGatedRecurrent(3).to(dtype)
    x, mask = blocks_data(3)
    ri = 0.3 - x
    zi = 2 * ri
    W = cell.state_to_state.detach().double().numpy()
    Wz, Wr = (cell.state_to_gates.detach().double().numpy()[:, s] for s in (slice(0, 3), slice(3, 6)))
    h = np.zeros((4, 3))
    want = np.zeros((4, 24, 3))
    for t in range(24):
        z, r = np.tanh(h @ Wz + zi[:, t]), np.tanh(h @ Wr + ri[:, t])
        h = carry(mask[:, t], z * np.tanh((r * h) @ W + x[:, t]) + (1 - z) * h, h)
        want[:, t] = h
    real = torch.tensor(mask).bool()
    gate_inputs = t_(np.concatenate([zi, ri], axis=2), dtype)
    scan = cell.scan(t_(x, dtype), gate_inputs, mask=real)
    torch.testing.assert_close(scan.outputs["h"][real], t_(want, dtype)[real], atol=tol, rtol=tol)
    torch.testing.assert_close(scan.final["h"], t_(want[:, -1], dtype), atol=tol, rtol=tol)


def test_gated_recurrent_gradients_equal_a_plain_torch_loop():
    torch.manual_seed(2)
    cell = BlocksGatedRecurrent(4).double()
    x = torch.randn(3, 9, 4, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 9, 8, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([9, 4, 7])
    w = torch.randn(3, 9, 4, dtype=torch.float64)
    out = cell.scan(x, g, lengths=lengths)
    loss = (out.outputs["h"] * w).sum() + out.final["h"].pow(2).sum()
    got = torch.autograd.grad(loss, [x, g, cell.state_to_state, cell.state_to_gates])
    h = torch.zeros(3, 4, dtype=torch.float64)  # oracle: the same step in a Python loop, masked by hand
    ys = []
    for t in range(9):
        live = (lengths > t).view(3, 1)
        h = torch.where(live, cell.step(x[:, t], g[:, t], h), h)
        ys.append(torch.where(live, h, torch.zeros_like(h)))
    loss_ref = (torch.stack(ys, 1) * w).sum() + h.pow(2).sum()
    want = torch.autograd.grad(loss_ref, [x, g, cell.state_to_state, cell.state_to_gates])
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10)


# ----------------------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_bidirectional_halves_are_the_brick_and_its_reversal(dtype, tol):
    torch.manual_seed(3)
    fwd = SimpleRecurrent(3, weight_init=rnnkit.init.orthogonal()).to(dtype)
    bwd = SimpleRecurrent(3).to(dtype)
    bwd.load_state_dict(fwd.state_dict())  # Blocks copies the same parameters into both children
    x, mask = blocks_data(3)
    real = torch.tensor(mask).bool()
    y = rnnkit.Bidirectional(fwd, bwd)(t_(x, dtype), mask=real)  # (B, T, 6)
    simple = fwd(t_(x, dtype), mask=real)
    torch.testing.assert_close(y[..., :3], simple, atol=tol, rtol=tol)
    lengths = real.sum(1)
    for b in range(4):  # the reverse half: the brick run on each row's own steps, reversed
        n = int(lengths[b])
        rev = fwd(t_(x, dtype)[b : b + 1, :n].flip(1))[0].flip(0)  # (n, 3)
        torch.testing.assert_close(y[b, :n, 3:], rev, atol=tol, rtol=tol)
        assert y[b, n:].abs().sum() == 0


# ----------------------------------------------------------------------------- RecurrentStack
def stack_layer(input_size: int, weight: float | None, dtype: torch.dtype) -> rnnkit.CellLayer:
    layer = rnnkit.CellLayer(constant_lstm(dtype), input_size=input_size).to(dtype)
    with torch.no_grad():
        if weight is None:  # the first layer reads the 12-wide inputs as they are
            layer.input.weight.copy_(torch.eye(12, dtype=dtype))
        else:  # Blocks' forks: each state to the next layer's inputs, weights 2, biases 0
            layer.input.weight.fill_(weight)
        layer.input.bias.zero_()
    return layer


@pytest.mark.parametrize("dtype,tol", DTYPES)
def test_recurrent_stack_many_steps_with_mask(dtype, tol):
    depth = 4
    x, mask = lstm_data()
    stack = rnnkit.Stack([stack_layer(12, None, dtype)] + [stack_layer(3, 2.0, dtype) for _ in range(depth - 1)])
    hs, cs = [np.zeros((4, 3)) for _ in range(depth)], [np.zeros((4, 3)) for _ in range(depth)]
    top = np.zeros((4, 24, 3))
    for t in range(24):
        inp = x[:, t]
        for d in range(depth):
            h_new, c_new = numpy_lstm_step(inp, hs[d], cs[d])
            hs[d], cs[d] = carry(mask[:, t], h_new, hs[d]), carry(mask[:, t], c_new, cs[d])
            inp = hs[d] @ (2 * np.ones((3, 12)))
        top[:, t] = hs[-1]
    lengths = torch.tensor(mask.sum(1), dtype=torch.long)
    y, finals = stack(t_(x, dtype), lengths=lengths)
    real = torch.tensor(mask).bool()
    torch.testing.assert_close(y[real], t_(top, dtype)[real], atol=tol, rtol=tol)
    for d in range(depth):
        torch.testing.assert_close(finals[d][0], t_(hs[d], dtype), atol=tol, rtol=tol)
        torch.testing.assert_close(finals[d][1], t_(cs[d], dtype), atol=tol, rtol=tol)


def test_recurrent_stack_one_step_by_hand_equals_numpy():
    # Blocks' iterate=False on a stack: each layer's single step, fed the layer below's state
    h0 = 0.1 * np.array([[1, 1, 0], [0, 1, 1]], dtype=np.float64)
    x = 0.1 * np.array([range(12), range(12, 24)], dtype=np.float64)
    layers = [stack_layer(12, None, torch.float64)] + [stack_layer(3, 2.0, torch.float64) for _ in range(3)]
    inp, want_inp = torch.tensor(x), x
    for layer in layers:
        h, c = layer.cell(layer.input(inp), h=torch.tensor(h0), c=torch.tensor(h0), iterate=False)
        want_h, want_c = numpy_lstm_step(want_inp, h0, h0)
        torch.testing.assert_close(h, torch.tensor(want_h), atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(c, torch.tensor(want_c), atol=1e-12, rtol=1e-12)
        inp, want_inp = h, want_h @ (2 * np.ones((3, 12)))


# ----------------------------------------------------------------------------- outputs, initial states
class Wrapper(rnnkit.Recurrent):
    """Blocks' RecurrentWrapperTestClass: outputs in another order than the states, extra outputs."""

    sequences = ("inputs",)
    states = ("states", "states_2")
    outputs = ("outputs", "states_2", "outputs_2", "states")

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (1,)

    def step(self, inputs: Tensor, states: Tensor, states_2: Tensor) -> tuple[Tensor, ...]:
        nxt, nxt_2 = states + inputs, states_2 + 0.5
        return 10 * nxt, nxt_2, 10 * nxt_2, nxt


def test_outputs_in_declared_order_and_zero_initial_states():
    out, h2, out2, h = Wrapper()(torch.ones(1, 5, 1))
    steps = torch.arange(1, 6, dtype=torch.float32).view(1, 5, 1)
    torch.testing.assert_close(h, steps)  # cumulative sum of ones from a zero initial state
    torch.testing.assert_close(h2, 0.5 * steps)
    torch.testing.assert_close(out, 10 * h)
    torch.testing.assert_close(out2, 10 * h2)


def test_return_initial_states_prepends_to_states_only():
    class WithOutputs(rnnkit.Recurrent):
        states = ("states",)
        outputs = ("outputs", "states")

        def state_shape(self, name: str) -> tuple[int, ...]:
            return (4,)

        def step(self, inputs: Tensor, states: Tensor) -> tuple[Tensor, Tensor]:
            return states + 1, states + 1

    outputs, states = WithOutputs()(torch.zeros(5, 3, 4), return_initial_states=True)
    assert outputs.shape == (5, 3, 4) and states.shape == (5, 4, 4)
    torch.testing.assert_close(outputs[:, 0], torch.ones(5, 4))  # the first step's output
    torch.testing.assert_close(states[:, 0], torch.zeros(5, 4))  # the initial state


def test_learned_initial_state_is_a_parameter_and_trains():
    cell = SimpleRecurrent(3)
    cell.learnable_initial_states()
    assert any(p is cell.initial["h"] for p in cell.parameters())
    with torch.no_grad():
        cell.initial["h"].copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(4, 6, 3)
    given = cell.initial["h"].detach().expand(4, 3).clone().requires_grad_(True)
    y = cell(x)
    y_given = cell(x, h=given)
    torch.testing.assert_close(y, y_given, atol=0, rtol=0)
    w = torch.randn_like(y)
    (grad_learned,) = torch.autograd.grad((y * w).sum(), [cell.initial["h"]])
    (grad_given,) = torch.autograd.grad((y_given * w).sum(), [given])
    torch.testing.assert_close(grad_learned, grad_given.sum(0), atol=1e-6, rtol=1e-6)  # shared over the batch
