"""Structured cells: one recurrent matmul, then pointwise math (the math: ``rnnkit.steps.StructuredStep``).

Most recurrent cells, the built-in ones included, compute a step as

    hw_t = h_{t-1} @ W^T + b                    # the only recurrent matmul, (B, G)
    outputs_t = pointwise(x_t, hw_t, states)    # elementwise only

where ``x_t`` is the input already projected by the layer (one GEMM over all T, outside the
loop). A cell that declares this split lets the generic engine run it without a per-step
autograd graph, compile its ``pointwise`` to native code, and compute the recurrent weight
gradient as one GEMM over all T (see ``rnnkit.engine.structured``). Its ``step`` is derived
from ``pointwise``, so the two can never disagree.

    >>> import torch, rnnkit
    >>> class MGU(rnnkit.Structured):
    ...     gates = 2
    ...     def pointwise(self, inputs, hw, h):
    ...         x_f, x_n = inputs.chunk(2, dim=1)
    ...         h_f, h_n = hw.chunk(2, dim=1)
    ...         f = torch.sigmoid(x_f + h_f)
    ...         return (1 - f) * h + f * torch.tanh(x_n + f * h_n)
    >>> tuple(MGU(4)(torch.randn(3, 7, 8)).shape)       # (B, T, 2H) -> (B, T, H)
    (3, 7, 4)
"""
from __future__ import annotations

from rnnkit.cells.base import Recurrent
from rnnkit.steps.structured import StructuredStep

__all__ = ["Structured"]


class Structured(StructuredStep, Recurrent):
    """Base of the cells you call whose step is ``pointwise(inputs, h @ W^T + b, states)``.

    Subclasses set ``gates`` (G = gates * hidden_size columns of ``hw``), the state that feeds
    the matmul (``recurrent_state``, default ``"h"``), and implement ``pointwise`` with keyword
    names ``inputs``, ``hw`` and the state names. Inputs are (B, T, G*H); outputs (B, T, H).
    """
