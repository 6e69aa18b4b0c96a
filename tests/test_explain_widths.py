"""``rnnkit.engine.explain(cell)`` on a bare general cell: which input width it traces the step with.

With no tensor to look at, explain must pick each input sequence's width. It takes the declared
one (``sequence_shape``, else the torch-style ``input_size`` attribute of a one-sequence cell) and
only guesses (the first state's width) when the cell declares none, saying so. The oracle is
``general_explain(cell, widths)`` with the true width, and what ``cell.plan(x)`` does on real data.
"""
from __future__ import annotations

import torch

import rnnkit
from rnnkit.engine import explain
from rnnkit.engine.compiler.general import general_explain


class TwoLayer(rnnkit.Recurrent):
    """tanh(W x + U h1), then tanh(V h1 + R h2): the input width (i) differs from both state widths."""

    sequences = ("inputs",)
    states = ("h1", "h2")

    def __init__(self, i: int, n: int, m: int) -> None:
        super().__init__()
        self.n, self.m = n, m
        self.W = torch.nn.Linear(i, n)
        self.U = torch.nn.Parameter(torch.randn(n, n) / n ** 0.5)
        self.V = torch.nn.Linear(n, m)

    def state_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.n,) if name == "h1" else (self.m,)

    def step(self, inputs, h1, h2):  # type: ignore[no-untyped-def]
        h1 = torch.tanh(self.W(inputs) + h1 @ self.U)
        return h1, torch.tanh(self.V(h1) + h2)


class WithInputSize(TwoLayer):
    def __init__(self, i: int, n: int, m: int) -> None:
        super().__init__(i, n, m)
        self.input_size = i  # torch's convention (nn.RNNCell, nn.LSTMCell): the declared input width


class WithSequenceShape(TwoLayer):
    def __init__(self, i: int, n: int, m: int) -> None:
        super().__init__(i, n, m)
        self.i = i

    def sequence_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.i,)


def test_the_oracle_the_cell_compiles_at_its_true_width_and_not_at_the_state_width() -> None:
    cell = TwoLayer(3, 5, 4)
    assert general_explain(cell, (3,)) is None
    assert general_explain(cell, (5,)) is not None  # the first state's width is the wrong guess here


def test_explain_uses_the_declared_input_size() -> None:
    assert explain(WithInputSize(3, 5, 4)) is None
    assert explain(WithSequenceShape(3, 5, 4)) is None


def test_explain_says_when_it_had_to_guess_the_width_and_how_to_declare_it() -> None:
    why = explain(TwoLayer(3, 5, 4))
    assert why is not None
    assert "guessed" in why and "(5,)" in why and "first state" in why
    assert "input_size" in why and "sequence_shape" in why  # the fix, named


def test_a_declared_input_size_that_disagrees_with_the_step_is_reported_without_a_guess() -> None:
    cell = WithInputSize(3, 5, 4)
    cell.input_size = 7
    why = explain(cell)
    assert why is not None and "guessed" not in why and "7" in why


def test_plan_on_real_data_agrees_with_explain() -> None:
    cell = WithInputSize(3, 5, 4)
    plan = cell.plan(torch.randn(2, 6, 3))
    assert (explain(cell) is None) == (plan.backend == "generic-compiled" or "compiler" not in plan.reason("backend"))
