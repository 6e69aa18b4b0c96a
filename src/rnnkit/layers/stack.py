"""``Stack``: a deep RNN of layers, with optional residual and skip connections.

    >>> import torch, rnnkit
    >>> deep = rnnkit.Stack([rnnkit.LSTM(4, 8), rnnkit.LSTM(8, 8), rnnkit.LSTM(8, 8)], residual=True)
    >>> y, states = deep(torch.randn(2, 5, 4))
    >>> tuple(y.shape), len(states)         # (B, T, H), one state per layer
    ((2, 5, 8), 3)
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["Stack"]


class Stack(nn.Module):
    """Layers applied in turn, each ``layer(x, state, lengths) -> (y, state)``.

    * ``residual=True`` adds each layer's input to its output wherever the two widths match
      (Wu et al. 2016's residual LSTM stacks); the first layer usually changes the width.
    * ``skip=True`` returns the concatenation of every layer's output, (B, T, sum of widths):
      the skip connections from every hidden layer to the output of Graves (2013).
    * ``dropout`` applies between layers, in training only.
    """

    def __init__(self, layers: Sequence[nn.Module], *, residual: bool = False, skip: bool = False,
                 dropout: float = 0.0) -> None:
        """Stack ``layers`` (each ``layer(x, state, lengths) -> (y, state)``); see the class docstring."""
        super().__init__()
        if len(layers) == 0:
            raise bad_argument("layers", "at least one layer", "an empty list", "pass the layers to stack")
        if not 0.0 <= dropout < 1.0:
            raise bad_argument("dropout", "a probability in [0, 1)", dropout, "use e.g. dropout=0.2")
        self.layers = nn.ModuleList(layers)
        self.residual = residual
        self.skip = skip
        self.dropout = dropout

    def forward(
        self, x: Tensor, states: Sequence[Any] | None = None, lengths: Tensor | Sequence[int] | None = None,
        *, reset: Tensor | None = None,
    ) -> tuple[Tensor, list[Any]]:
        """x (B, T, F) -> (y, [state of each layer]). ``reset`` (B,) or (B, T) bool restarts the
        marked rows in every layer (``rnnkit.engine.reset``)."""
        if states is not None and len(states) != len(self.layers):
            raise bad_argument("states", f"one state per layer ({len(self.layers)})", f"{len(states)} states",
                               "pass the list returned by a previous call, or None")
        finals: list[Any] = []
        outputs: list[Tensor] = []
        inp = x
        for index, layer in enumerate(self.layers):
            if index > 0 and self.dropout and self.training:
                inp = F.dropout(inp, self.dropout, training=True)
            extra = {} if reset is None else {"reset": reset}
            y, state = layer(inp, None if states is None else states[index], lengths, **extra)
            if self.residual and y.shape[-1] == inp.shape[-1]:
                y = y + inp  # padded steps stay zero only if the input was zero there
            finals.append(state)
            outputs.append(y)
            inp = y
        out = torch.cat(outputs, dim=-1) if self.skip else inp  # (B, T, *)
        return out, finals
