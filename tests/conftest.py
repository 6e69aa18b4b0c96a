"""Shared fixtures of the core tests: a fixed seed and one builder for every kind of cell.

``make_cell(name)`` returns ``(cell, sequences, contexts)`` for any name ``build_cell`` knows
(each test module lists the names it parametrises over), with every parameter perturbed
so that no gate sits at its initial value and every gradient path carries signal.
"""
from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell


# Test tensors are tiny: one intra-op thread is faster, and avoids oversubscribing the two
# cores when pytest-xdist runs two workers.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class TwoStateContextCell(rnnkit.Recurrent):
    """A custom cell with two states, a context and an extra (non-recurrent) output::

        h' = tanh(x A^T + h U^T + ctx V^T);  m' = sigmoid(h') * m + h';  y = h' * m'
    """

    sequences = ("inputs",)
    states = ("h", "m")
    contexts = ("ctx",)
    outputs = ("h", "m", "y")

    def __init__(self, features: int, hidden: int, context: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.A = nn.Parameter(torch.randn(hidden, features) / features ** 0.5)
        self.U = nn.Parameter(torch.randn(hidden, hidden) / hidden ** 0.5)
        self.V = nn.Parameter(torch.randn(hidden, context) / context ** 0.5)

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.hidden,)

    def step(self, inputs: Tensor, h: Tensor, m: Tensor, ctx: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h_new = torch.tanh(inputs @ self.A.T + h @ self.U.T + ctx @ self.V.T)  # (B, H)
        m_new = torch.sigmoid(h_new) * m + h_new  # (B, H)
        return h_new, m_new, h_new * m_new


def build_cell(name: str, hidden: int = 3) -> rnnkit.Recurrent:
    if name.startswith("elman_"):
        return ElmanCell(hidden, name.removeprefix("elman_"))
    if name == "lstm":
        return LSTMCell(hidden)
    if name == "lstm_peep":
        return LSTMCell(hidden, peepholes=True)
    if name == "gru":
        return GRUCell(hidden)
    if name == "ln_lstm":
        return LayerNormLSTMCell(hidden)
    if name == "custom":
        return TwoStateContextCell(4, hidden, 2)
    raise KeyError(name)


@pytest.fixture
def make_cell() -> Callable[..., tuple[rnnkit.Recurrent, dict[str, Tensor], dict[str, Tensor]]]:
    """Build ``(cell, sequences {name: (B, T, *)}, contexts {name: (B, *)})`` in ``dtype``."""

    def make(name: str, B: int = 3, T: int = 5, hidden: int = 3, dtype: torch.dtype = torch.float64):
        cell = build_cell(name, hidden).to(dtype)
        with torch.no_grad():
            for p in cell.parameters():
                p.add_(0.3 * torch.randn_like(p))
        width = cell.input_width if isinstance(cell, rnnkit.Structured) else 4
        seqs = {"inputs": torch.randn(B, T, width, dtype=dtype)}
        ctx = {"ctx": torch.randn(B, 2, dtype=dtype)} if name == "custom" else {}
        return cell, seqs, ctx

    return make


@pytest.fixture
def custom_cell_class() -> type[TwoStateContextCell]:
    return TwoStateContextCell
