"""The LSTM cell with a projected hidden state (torch.nn.LSTM's ``proj_size``), as a cell you call.

The math is :class:`rnnkit.steps.ProjectedLSTMStep`; the generic engine runs it step by step
under autograd, the fused backend in torch's own kernel.

    >>> import torch
    >>> cell = ProjectedLSTMCell(6, 2)
    >>> h, c = cell(torch.zeros(3, 5, 24))              # (B, T, 4H) -> (B, T, P), (B, T, H)
    >>> tuple(h.shape), tuple(c.shape)
    ((3, 5, 2), (3, 5, 6))
"""
from __future__ import annotations

from rnnkit.cells.base import Recurrent
from rnnkit.steps.projected import ProjectedLSTMStep

__all__ = ["ProjectedLSTMCell"]


class ProjectedLSTMCell(ProjectedLSTMStep, Recurrent):
    """LSTM step on an already-projected input (B, 4H), gate order (i, f, g, o), h projected to P (B, P)."""
