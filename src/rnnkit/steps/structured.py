"""Structured cells: one recurrent matmul, then pointwise math.

Most recurrent cells, the built-in ones included, compute a step as

    hw_t = h_{t-1} @ W^T + b                    # the only recurrent matmul, (B, G)
    outputs_t = pointwise(x_t, hw_t, states)    # elementwise only

where ``x_t`` is the input already projected by the layer (one GEMM over all T, outside the
loop). A cell that declares this split lets the generic engine run it without a per-step
autograd graph and compute the recurrent weight gradient as one GEMM over all T (see
``rnnkit.engine.structured``). Its ``step`` is derived from ``pointwise``, so the two can
never disagree.

    >>> import torch
    >>> class Decay(StructuredStep):          # h' = tanh(x + h W^T + b)
    ...     def pointwise(self, inputs, hw, h):
    ...         return torch.tanh(inputs + hw)
    >>> Decay(4).step(torch.zeros(2, 4), torch.zeros(2, 4)).shape   # (B, G*H), (B, H) -> (B, H)
    torch.Size([2, 4])
"""
from __future__ import annotations

from abc import abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.steps.base import RecurrentStep
from rnnkit.errors import bad_argument
from rnnkit.init import Initializer, constant, orthogonal

__all__ = ["StructuredStep"]


class StructuredStep(RecurrentStep):
    """Base of cells whose step is ``pointwise(inputs, h @ W^T + b, states)``.

    Subclasses set ``gates`` (G = gates * hidden_size columns of ``hw``), the state that feeds
    the matmul (``recurrent_state``, default ``"h"``), and implement ``pointwise`` with keyword
    names ``inputs``, ``hw`` and the state names.
    """

    gates: int = 1
    recurrent_state: str = "h"

    def __init__(
        self,
        hidden_size: int,
        *,
        bias: bool = True,
        weight_init: Initializer | None = None,  # None: orthogonal per gate block
        bias_init: Initializer | None = None,  # None: zeros
        learn_initial_state: bool = False,  # False: zero initial states unless given
    ) -> None:
        """Create the recurrent weight (G*H, H), orthogonal per gate block unless ``weight_init`` says otherwise."""
        super().__init__()
        if not isinstance(hidden_size, int) or isinstance(hidden_size, bool) or hidden_size < 0:
            raise bad_argument("hidden_size", "an int >= 0 (0, as torch.nn.LSTMCell allows)", hidden_size,
                               "pass e.g. hidden_size=128")
        self.hidden_size = hidden_size
        width = self.gates * hidden_size
        self.weight = nn.Parameter(torch.empty(width, hidden_size))  # (G*H, H)
        self.bias = nn.Parameter(torch.empty(width)) if bias else None  # (G*H,)
        (weight_init or orthogonal())(self.weight.data)
        if self.bias is not None:
            (bias_init or constant(0.0))(self.bias.data)
        if learn_initial_state:
            self.learnable_initial_states()

    @property
    def input_width(self) -> int:
        """Width of the projected input each step expects: gates * hidden_size."""
        return self.gates * self.hidden_size

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.hidden_size,)

    def sequence_shape(self, name: str) -> tuple[int, ...] | None:
        return (self.input_width,)

    def recurrent(self, h: Tensor) -> Tensor:
        """The recurrent matmul ``h @ W^T + b``: (B, H) -> (B, G*H)."""
        return F.linear(h, self.weight, self.bias)

    @abstractmethod
    def pointwise(self, inputs: Tensor, hw: Tensor, **states: Tensor) -> Tensor | tuple[Tensor, ...]:
        """The elementwise part of a step: projected input (B, G*H), ``hw`` (B, G*H), states."""

    def step(self, inputs: Tensor, *states: Tensor, **named: Tensor) -> Tensor | tuple[Tensor, ...]:  # type: ignore[override]
        """One step: projected input (B, G*H) and states (B, H), positional in ``states`` order
        or by name -> the declared outputs."""
        bound = dict(zip(self.states, states))
        bound.update(named)
        return self.pointwise(inputs=inputs, hw=self.recurrent(bound[self.recurrent_state]), **bound)

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, bias={self.bias is not None}"

