"""The generic engine against independent oracles, in float64.

* The NumPy reference (``rnnkit.reference``, hand-written BPTT, no autodiff): forward values and
  every gradient, for Elman tanh/relu/identity, LSTM with and without peepholes and GRU, with
  lengths, with masks that have holes, and in reverse; both through the layers and through
  ``cell.scan``.
* ``torch.autograd.gradcheck`` (finite differences) for every cell, the custom one included,
  with masks and reverse, differentiating with respect to the inputs, the initial states, the
  contexts and every parameter.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import rnnkit
import rnnkit.reference as ref

B, T, F, H = 4, 5, 3, 3
LAYER_KINDS = ["rnn_tanh", "rnn_relu", "rnn_identity", "lstm", "lstm_peep", "gru"]
CELL_OF = {"rnn_tanh": "elman_tanh", "rnn_relu": "elman_relu", "rnn_identity": "elman_identity",
           "lstm": "lstm", "lstm_peep": "lstm_peep", "gru": "gru"}
ALL_CELLS = ["elman_tanh", "elman_relu", "elman_identity", "lstm", "lstm_peep", "gru", "ln_lstm", "custom"]
LENGTHS = torch.tensor([5, 2, 4, 1])


def holey_mask(batch: int, steps: int) -> Tensor:
    """(B, T) bool with gaps inside rows (not a prefix), at least one real step per row."""
    rows = [[1, 0, 1, 1, 0], [0, 1, 1, 0, 1], [1, 1, 1, 1, 1], [0, 0, 0, 1, 0]]
    return torch.tensor(rows, dtype=torch.bool)[:batch, :steps]


def ref_name(kind: str) -> str:
    return "lstm" if kind == "lstm_peep" else kind


def np_(t: Tensor) -> np.ndarray:
    return t.detach().numpy()


def close(ours: Tensor, theirs: np.ndarray, what: str) -> None:
    np.testing.assert_allclose(np_(ours), theirs, rtol=1e-10, atol=1e-10, err_msg=what)


def make_layer(kind: str) -> rnnkit.layers.RecurrentLayer:
    if kind.startswith("rnn_"):
        layer = rnnkit.RNN(F, H, bidirectional=True, engine="generic", nonlinearity=kind.removeprefix("rnn_"))
    elif kind.startswith("lstm"):
        layer = rnnkit.LSTM(F, H, bidirectional=True, engine="generic", peepholes=kind == "lstm_peep")
    else:
        layer = rnnkit.GRU(F, H, bidirectional=True, engine="generic")
    layer = layer.double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer


def ref_params(direction: nn.Module) -> dict[str, np.ndarray]:
    """One layer direction's weights in the reference's (torch.nn) layout."""
    cell = direction.cell
    out = {"W_ih": np_(direction.input.weight), "W_hh": np_(cell.weight),
           "b_ih": np_(direction.input.bias), "b_hh": np_(cell.bias)}
    if getattr(cell, "peepholes", False):
        out.update(w_ci=np_(cell.peep_i), w_cf=np_(cell.peep_f), w_co=np_(cell.peep_o))
    return out


def param_grads(direction: nn.Module) -> dict[str, Tensor]:
    cell = direction.cell
    out = {"dW_ih": direction.input.weight.grad, "dW_hh": cell.weight.grad,
           "db_ih": direction.input.bias.grad, "db_hh": cell.bias.grad}
    if getattr(cell, "peepholes", False):
        out.update(dw_ci=cell.peep_i.grad, dw_cf=cell.peep_f.grad, dw_co=cell.peep_o.grad)
    return out


@pytest.mark.parametrize("masking", ["lengths", "holes"])
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_bidirectional_layer_matches_numpy_reference(kind, masking):
    layer = make_layer(kind)
    n = 2 if kind.startswith("lstm") else 1
    x = torch.randn(B, T, F, dtype=torch.float64, requires_grad=True)
    s0 = [torch.randn(2, B, H, dtype=torch.float64, requires_grad=True) for _ in range(n)]
    mask = LENGTHS[:, None] > torch.arange(T) if masking == "lengths" else holey_mask(B, T)
    w_y = torch.randn(B, T, 2 * H, dtype=torch.float64)
    w_s = [torch.randn(2, B, H, dtype=torch.float64) for _ in range(n)]
    kwargs = {"lengths": LENGTHS} if masking == "lengths" else {"mask": mask}
    y, final = layer(x, tuple(s0) if n == 2 else s0[0], **kwargs)
    finals = final if n == 2 else (final,)
    ((y * w_y).sum() + sum((f * w).sum() for f, w in zip(finals, w_s))).backward()

    dx = np.zeros((B, T, F))
    for d, direction in enumerate(layer.directions()):
        state0 = tuple(np_(s[d]) for s in s0)
        y_r, fin_r, cache = ref.sequence_forward(ref_name(kind), ref_params(direction), np_(x),
                                                 state0 if n == 2 else state0[0], mask=np_(mask), reverse=d == 1)
        close(y[..., d * H:(d + 1) * H], y_r, f"y of direction {d}")
        fin_r = fin_r if n == 2 else (fin_r,)
        for i in range(n):
            close(finals[i][d], fin_r[i], f"final state {i} of direction {d}")
        dfin = tuple(np_(w[d]) for w in w_s)
        g = ref.sequence_backward(np_(w_y[..., d * H:(d + 1) * H]), dfin if n == 2 else dfin[0], cache)
        dx += g["dx"]
        for i, name in enumerate(["dh0", "dc0"][:n]):
            close(s0[i].grad[d], g[name], f"{name} of direction {d}")
        for key, value in param_grads(direction).items():
            assert np.abs(g[key]).max() > 0, f"{key}: the oracle gradient is zero, the check is void"
            close(value, g[key], f"{key} of direction {d}")
    close(x.grad, dx, "dx")


@pytest.mark.parametrize("masked", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("kind", LAYER_KINDS)
def test_cell_scan_matches_numpy_reference(kind, reverse, masked, make_cell):
    """cell.scan on the projected input equals the reference with W_ih = I and no input bias."""
    cell, seqs, _ = make_cell(CELL_OF[kind], B=B, T=T, hidden=H)
    xp = seqs["inputs"].requires_grad_()  # (B, T, G*H)
    n = len(cell.states)
    s0 = [torch.randn(B, H, dtype=torch.float64, requires_grad=True) for _ in range(n)]
    result = cell.scan(xp, lengths=LENGTHS if masked else None, reverse=reverse,
                       initial_states=dict(zip(cell.states, s0)))
    w_y = torch.randn(B, T, H, dtype=torch.float64)
    w_s = [torch.randn(B, H, dtype=torch.float64) for _ in range(n)]
    loss = (result.outputs["h"] * w_y).sum() + sum((result.final[s] * w).sum() for s, w in zip(cell.states, w_s))
    loss.backward()

    params = {"W_ih": np.eye(cell.input_width), "W_hh": np_(cell.weight), "b_hh": np_(cell.bias)}
    if kind == "lstm_peep":
        params.update(w_ci=np_(cell.peep_i), w_cf=np_(cell.peep_f), w_co=np_(cell.peep_o))
    mask = np_(LENGTHS[:, None] > torch.arange(T)) if masked else None
    state0 = tuple(np_(s) for s in s0)
    y_r, fin_r, cache = ref.sequence_forward(ref_name(kind), params, np_(xp), state0 if n == 2 else state0[0],
                                             mask=mask, reverse=reverse)
    close(result.outputs["h"], y_r, "y")
    fin_r = fin_r if n == 2 else (fin_r,)
    dfin = tuple(np_(w) for w in w_s)
    g = ref.sequence_backward(np_(w_y), dfin if n == 2 else dfin[0], cache)
    for i, s in enumerate(cell.states):
        close(result.final[s], fin_r[i], f"final {s}")
        close(s0[i].grad, g[f"d{s}0"], f"d{s}0")
    close(xp.grad, g["dx"], "d inputs")
    close(cell.weight.grad, g["dW_hh"], "dW_hh")
    close(cell.bias.grad, g["db_hh"], "db_hh")
    if kind == "lstm_peep":
        for ours, key in ((cell.peep_i, "dw_ci"), (cell.peep_f, "dw_cf"), (cell.peep_o, "dw_co")):
            close(ours.grad, g[key], key)


class ScanAll(nn.Module):
    """Wraps ``cell.scan`` so functional_call can swap the cell's parameters for gradcheck inputs."""

    def __init__(self, cell: rnnkit.Recurrent, mask: Tensor, reverse: bool) -> None:
        super().__init__()
        self.cell, self.mask, self.reverse = cell, mask, reverse

    def forward(self, xp: Tensor, states: dict[str, Tensor], ctx: dict[str, Tensor]) -> tuple[Tensor, ...]:
        result = self.cell.scan(xp, mask=self.mask, reverse=self.reverse, initial_states=states, contexts=ctx)
        return tuple(result.outputs.values()) + tuple(result.final.values())


@pytest.mark.parametrize("variant", ["lengths-fwd", "holes-rev"])
@pytest.mark.parametrize("name", ALL_CELLS)
def test_gradcheck_every_cell_inputs_states_contexts_and_parameters(name, variant, make_cell):
    b, t, h = 2, 3, 2
    cell, seqs, ctx = make_cell(name, B=b, T=t, hidden=h)
    if variant == "lengths-fwd":
        mask, reverse = torch.tensor([[True, True, True], [True, False, False]]), False
    else:
        mask, reverse = torch.tensor([[True, False, True], [False, True, True]]), True
    wrapper = ScanAll(cell, mask, reverse)
    names = [f"cell.{k}" for k, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    states = [torch.randn(b, h, dtype=torch.float64, requires_grad=True) for _ in cell.states]
    ctx_names = list(ctx)
    ctx_values = [v.clone().requires_grad_() for v in ctx.values()]
    xp = seqs["inputs"].clone().requires_grad_()
    n_s, n_c = len(states), len(ctx_values)

    def fn(xp: Tensor, *rest: Tensor) -> tuple[Tensor, ...]:
        st, cx, ps = rest[:n_s], rest[n_s:n_s + n_c], rest[n_s + n_c:]
        return torch.func.functional_call(
            wrapper, dict(zip(names, ps)), (xp, dict(zip(cell.states, st)), dict(zip(ctx_names, cx))))

    inputs = (xp, *states, *ctx_values, *params)
    used = torch.autograd.grad(sum(o.sum() for o in fn(*inputs)), inputs)  # raises if any input is unused
    assert all(g.abs().max() > 0 for g in used[len(inputs) - len(params):]), "a parameter got no gradient"
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_gradcheck_multilayer_bidirectional_generic_layer(kind):
    cls = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU}.get(kind, rnnkit.RNN)
    layer = cls(2, 2, num_layers=2, bidirectional=True, engine="generic").double()
    x = torch.randn(2, 3, 2, dtype=torch.float64, requires_grad=True)
    params = dict(layer.named_parameters())

    def fn(x: Tensor, *ps: Tensor) -> tuple[Tensor, ...]:
        y, final = torch.func.functional_call(layer, dict(zip(params, ps)), (x,), {"lengths": [3, 2]})
        return (y, *(final if isinstance(final, tuple) else (final,)))

    inputs = (x, *(p.detach().clone().requires_grad_() for p in params.values()))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)
