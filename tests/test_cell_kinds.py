"""Which built-in math a cell runs, decided by the engine from the cell's own methods (issue 9 item 6).

The engine maps a cell to its fused kind (``rnnkit.engine.fused_kind``) and to the built-in step
whose kernels it may use. A subclass of a built-in cell that overrides its math (``pointwise``)
is a new cell: it must never run torch's LSTM kernel or the built-in kernels. A subclass that
only adds behaviour keeps the built-in's kind.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell
from rnnkit.layers import ProjectedLSTMCell


class NoTanhLSTM(LSTMCell):
    """The LSTM with h' = sigmoid(o) * c' (no tanh on the cell): other math, same parameters."""

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        i, f, g, o = (inputs + hw).chunk(4, dim=1)  # 4 x (B, H)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        return torch.sigmoid(o) * c_new, c_new


class NamedLSTM(LSTMCell):
    """A subclass that changes no math."""

    def extra_repr(self) -> str:
        return "named"


def _layer_with(cell_class: type, engine: str) -> tuple[rnnkit.LSTM, torch.nn.Module]:
    torch.manual_seed(0)
    layer = rnnkit.LSTM(3, 4, engine=engine)
    old = layer.layers[0].fwd.cell
    new = cell_class(4)
    new.load_state_dict(old.state_dict())
    layer.layers[0].fwd.cell = new
    return layer, new


def _oracle(layer: rnnkit.LSTM, cell: torch.nn.Module, x: Tensor) -> Tensor:
    """A plain Python loop over the cell's own step: the projection, then cell.step per time step."""
    proj = layer.layers[0].fwd.input
    h = x.new_zeros(x.shape[0], 4)
    c = x.new_zeros(x.shape[0], 4)
    ys = []
    for t in range(x.shape[1]):
        h, c = cell.step(proj(x[:, t]), h, c)
        ys.append(h)
    return torch.stack(ys, 1)  # (B, T, H)


def test_a_subclass_that_overrides_pointwise_never_runs_the_fused_lstm():
    x = torch.randn(2, 5, 3)
    layer, cell = _layer_with(NoTanhLSTM, "auto")
    y, _ = layer(x)
    torch.testing.assert_close(y, _oracle(layer, cell, x), rtol=1e-5, atol=1e-6)
    assert layer.plan(x).backend != "fused"
    fused, _ = _layer_with(NoTanhLSTM, "fused")
    with pytest.raises(ValueError, match="^engine:"):
        fused(x)


def test_a_subclass_that_keeps_the_math_keeps_the_fused_kind():
    x = torch.randn(2, 5, 3)
    layer, cell = _layer_with(NamedLSTM, "fused")
    assert layer.plan(x).backend == "fused"
    y, _ = layer(x)
    torch.testing.assert_close(y, _oracle(layer, cell, x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("make,kind", [
    (lambda: ElmanCell(3), "rnn_tanh"),
    (lambda: ElmanCell(3, "relu"), "rnn_relu"),
    (lambda: ElmanCell(3, "identity"), None),
    (lambda: LSTMCell(3), "lstm"),
    (lambda: LSTMCell(3, peepholes=True), None),
    (lambda: GRUCell(3), "gru"),
    (lambda: LayerNormLSTMCell(3), None),
    (lambda: ProjectedLSTMCell(4, 2), "lstm"),
    (lambda: NoTanhLSTM(3), None),
    (lambda: NamedLSTM(3), "lstm"),
])
def test_fused_kind_of_each_cell(make, kind):
    assert rnnkit.engine.fused_kind(make()) == kind


def test_a_subclass_that_overrides_pointwise_takes_no_built_in_kernel():
    from rnnkit.engine.kinds import builtin_step
    from rnnkit.steps import ElmanStep, GRUStep, LSTMStep

    assert builtin_step(LSTMCell(3)) is LSTMStep and builtin_step(NamedLSTM(3)) is LSTMStep
    assert builtin_step(GRUCell(3)) is GRUStep and builtin_step(ElmanCell(3)) is ElmanStep
    assert builtin_step(NoTanhLSTM(3)) is None and builtin_step(LayerNormLSTMCell(3)) is None
