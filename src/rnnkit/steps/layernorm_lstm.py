"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.steps.structured import StructuredStep
from rnnkit.init import Initializer

__all__ = ["LayerNormLSTMStep"]


class LayerNormLSTMStep(StructuredStep):
    """LSTM with layer normalisation of the input and recurrent contributions and of the cell
    (the math of ``rnnkit.cells.LayerNormLSTMCell``).

    ``inputs`` is the projected input x_t W_ih^T (B, 4H); the recurrent matmul carries no bias,
    the gain/bias of the layer norms do that job::

        gates = LN_x(inputs) + LN_h(h W^T) + b
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g);  h' = sigmoid(o) * tanh(LN_c(c'))

        >>> import torch
        >>> h, c = LayerNormLSTMStep(4).step(torch.randn(2, 16), torch.zeros(2, 4), torch.zeros(2, 4))
        >>> tuple(h.shape)                                          # (B, H)
        (2, 4)
    """

    states = ("h", "c")
    gates = 4

    def __init__(
        self,
        hidden_size: int,
        *,
        forget_bias: float = 1.0,  # initial value of the forget slice of the gate bias
        weight_init: Initializer | None = None,
        learn_initial_state: bool = False,
        eps: float = 1e-5,  # layer-norm epsilon
    ) -> None:
        super().__init__(hidden_size, bias=False, weight_init=weight_init, learn_initial_state=learn_initial_state)
        width = 4 * hidden_size
        self.norm_x = nn.LayerNorm(width, eps=eps)
        self.norm_h = nn.LayerNorm(width, eps=eps, bias=False)
        self.norm_c = nn.LayerNorm(hidden_size, eps=eps)
        self.gate_bias = nn.Parameter(torch.zeros(width))  # (4H,)
        with torch.no_grad():
            self.gate_bias[hidden_size : 2 * hidden_size] = forget_bias

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        gates = self.norm_x(inputs) + self.norm_h(hw) + self.gate_bias  # (B, 4H)
        i, f, g, o = gates.chunk(4, dim=1)  # 4 x (B, H)
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_new = torch.sigmoid(o) * torch.tanh(self.norm_c(c_new))
        return h_new, c_new
