"""The LSTM cell with a projected hidden state (Sak et al. 2014; torch.nn.LSTM's ``proj_size``).

The recurrent state h has P < H units, the cell state c has H::

    i, f, g, o = split(inputs + h W_hh^T + b_hh)      # W_hh (4H, P)
    c' = sigmoid(f) * c + sigmoid(i) * tanh(g)         # (B, H)
    h' = (sigmoid(o) * tanh(c')) W_hr^T                # W_hr (P, H) -> (B, P)

It is a plain :class:`~rnnkit.steps.RecurrentStep` (not a structured one), so the generic engine runs it step by step under
autograd: correct (it matches torch.nn.LSTM(proj_size=P) to float rounding) but slower than the
structured fast loop, which assumes a square (G*H, H) recurrent weight. The fused backend runs
projected layers in torch's own kernel.

    >>> import torch
    >>> cell = ProjectedLSTMStep(6, 2)
    >>> h, c = cell.step(torch.zeros(3, 24), torch.zeros(3, 2), torch.zeros(3, 6))
    >>> tuple(h.shape), tuple(c.shape)                  # (B, P), (B, H)
    ((3, 2), (3, 6))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.steps.base import RecurrentStep
from rnnkit.init import Initializer, torch_default

__all__ = ["ProjectedLSTMStep"]


class ProjectedLSTMStep(RecurrentStep):
    """LSTM step on an already-projected input (B, 4H), gate order (i, f, g, o), h projected to P
    (the math of ``rnnkit.layers.ProjectedLSTMCell``)."""

    states = ("h", "c")
    gates = 4

    def __init__(self, hidden_size: int, proj_size: int, *, bias: bool = True,
                 weight_init: Initializer | None = None) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.proj_size = proj_size
        fill = torch_default(hidden_size)
        self.weight = nn.Parameter(torch.empty(4 * hidden_size, proj_size))  # (4H, P)
        self.bias = nn.Parameter(torch.zeros(4 * hidden_size)) if bias else None  # (4H,)
        self.weight_hr = nn.Parameter(torch.empty(proj_size, hidden_size))  # (P, H)
        (weight_init or fill)(self.weight.data)
        fill(self.weight_hr.data)

    @property
    def input_width(self) -> int:
        """Width of the projected input each step expects: 4 * hidden_size."""
        return 4 * self.hidden_size

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.proj_size,) if name == "h" else (self.hidden_size,)

    def sequence_shape(self, name: str) -> tuple[int, ...] | None:
        return (self.input_width,)

    def step(self, inputs: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        i, f, g, o = (inputs + F.linear(h, self.weight, self.bias)).chunk(4, dim=1)  # 4 x (B, H)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        h_new = F.linear(torch.sigmoid(o) * torch.tanh(c_new), self.weight_hr)  # (B, P)
        return h_new, c_new

    def extra_repr(self) -> str:
        return f"hidden_size={self.hidden_size}, proj_size={self.proj_size}, bias={self.bias is not None}"
