"""Layer-normalised GRU (the GRU of Cho et al. 2014 with the layer norms of Ba, Kiros & Hinton 2016)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.steps.structured import StructuredStep
from rnnkit.init import Initializer

__all__ = ["LayerNormGRUStep"]


class LayerNormGRUStep(StructuredStep):
    """GRU (reset-after, gate order r, z, n) with layer normalisation of both contributions
    (the math of ``rnnkit.cells.LayerNormGRUCell``).

    ``inputs`` is the projected input x_t W_ih^T (B, 3H); the recurrent matmul carries no bias, the
    gate bias and the layer norms' gains do that job::

        a = LN_x(inputs) + b;  q = LN_h(h W^T)                 # each (B, 3H), LN over all 3H
        r = sigmoid(a_r + q_r);  z = sigmoid(a_z + q_z)
        n = tanh(a_n + r * q_n);  h' = (1 - z) * n + z * h

        >>> import torch
        >>> tuple(LayerNormGRUStep(4).step(torch.randn(2, 12), torch.zeros(2, 4)).shape)   # (B, 3H), (B, H) -> (B, H)
        (2, 4)
    """

    states = ("h",)
    gates = 3

    def __init__(
        self,
        hidden_size: int,
        *,
        weight_init: Initializer | None = None,
        learn_initial_state: bool = False,
        eps: float = 1e-5,  # layer-norm epsilon
    ) -> None:
        super().__init__(hidden_size, bias=False, weight_init=weight_init, learn_initial_state=learn_initial_state)
        width = 3 * hidden_size
        self.norm_x = nn.LayerNorm(width, eps=eps, bias=False)
        self.norm_h = nn.LayerNorm(width, eps=eps, bias=False)
        self.gate_bias = nn.Parameter(torch.zeros(width))  # (3H,)

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:  # type: ignore[override]
        a_r, a_z, a_n = (self.norm_x(inputs) + self.gate_bias).chunk(3, dim=1)  # 3 x (B, H)
        q_r, q_z, q_n = self.norm_h(hw).chunk(3, dim=1)  # 3 x (B, H)
        r = torch.sigmoid(a_r + q_r)
        z = torch.sigmoid(a_z + q_z)
        n = torch.tanh(a_n + r * q_n)
        return n + z * (h - n)  # (B, H) == (1 - z) * n + z * h
