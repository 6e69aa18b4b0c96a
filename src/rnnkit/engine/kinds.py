"""Which built-in math a cell runs: the engine's map from a cell to its fused kind and built-in kernels.

Cells carry no backend facts: the engine reads them off the cell's class. A cell runs a built-in
step's math exactly when it is an instance of that step (``rnnkit.steps.LSTMStep``, ...) and
inherits, unchanged, every method that defines the math (``step``, ``pointwise``, ``recurrent``,
``state_shape``, ``sequence_shape``). So ``rnnkit.cells.LSTMCell`` and a subclass that only adds
behaviour keep the LSTM's kernels, while a subclass that overrides ``pointwise`` is a new cell:
it runs its own math (compiled or under autograd), never torch's LSTM kernel.

    >>> import torch, rnnkit
    >>> fused_kind(rnnkit.cells.LSTMCell(4)), fused_kind(rnnkit.cells.LSTMCell(4, peepholes=True))
    ('lstm', None)
    >>> class NoTanh(rnnkit.cells.LSTMCell):
    ...     def pointwise(self, inputs, hw, h, c):
    ...         i, f, g, o = (inputs + hw).chunk(4, dim=1)
    ...         c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    ...         return torch.sigmoid(o) * c, c
    >>> fused_kind(NoTanh(4)), builtin_step(NoTanh(4))
    (None, None)
"""
from __future__ import annotations

from rnnkit.steps import ElmanStep, GRUStep, LSTMStep, ProjectedLSTMStep
from rnnkit.steps.base import RecurrentStep

__all__ = ["builtin_step", "fused_kind"]

_MATH = ("step", "pointwise", "recurrent", "state_shape", "sequence_shape")
_BUILTINS: tuple[type[RecurrentStep], ...] = (LSTMStep, GRUStep, ElmanStep, ProjectedLSTMStep)


def builtin_step(cell: object) -> type[RecurrentStep] | None:
    """The built-in step class whose math ``cell`` runs unchanged, or None (see the module docstring)."""
    cls = type(cell)
    for base in _BUILTINS:
        if isinstance(cell, base):
            same = all(getattr(cls, name, None) is getattr(base, name, None) for name in _MATH)
            own = any(name in vars(cell) for name in _MATH)  # a method replaced on the instance
            return base if same and not own else None
    return None


def fused_kind(cell: object) -> str | None:
    """The configuration of PyTorch's native RNN kernels that computes ``cell``'s step exactly
    ("rnn_tanh", "rnn_relu", "lstm", "gru"), or None when no native kernel does."""
    base = builtin_step(cell)
    if base is LSTMStep:
        return None if cell.peepholes else "lstm"  # type: ignore[attr-defined]
    if base is GRUStep:
        return "gru"
    if base is ElmanStep:
        return {"tanh": "rnn_tanh", "relu": "rnn_relu"}.get(cell.activation)  # type: ignore[attr-defined]
    if base is ProjectedLSTMStep:
        return "lstm"
    return None
