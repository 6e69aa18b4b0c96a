"""The GRU cell (Cho et al. 2014), reset-after variant as in cuDNN and torch.nn.GRU."""
from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.steps.structured import StructuredStep

__all__ = ["GRUStep"]


class GRUStep(StructuredStep):
    """GRU transition on an already-projected input, gate order (r, z, n) as in torch.nn
    (the math of ``rnnkit.cells.GRUCell``).

    ``inputs`` is x_t W_ih^T + b_ih, (B, 3H); ``hw = h W^T + b`` (B, 3H)::

        r = sigmoid(x_r + hw_r);  z = sigmoid(x_z + hw_z)
        n = tanh(x_n + r * hw_n)                  # reset applied after the matmul
        h' = (1 - z) * n + z * h

        >>> import torch
        >>> tuple(GRUStep(4).step(torch.zeros(2, 12), torch.zeros(2, 4)).shape)   # (B, 3H), (B, H) -> (B, H)
        (2, 4)
    """

    states = ("h",)
    gates = 3

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        x_r, x_z, x_n = inputs.chunk(3, dim=1)  # 3 x (B, H)
        h_r, h_z, h_n = hw.chunk(3, dim=1)  # 3 x (B, H)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        return n + z * (h - n)  # (B, H) == (1 - z) * n + z * h
