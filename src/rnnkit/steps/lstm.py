"""The LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.steps.structured import StructuredStep
from rnnkit.init import Initializer

__all__ = ["LSTMStep"]


class LSTMStep(StructuredStep):
    """LSTM transition on an already-projected input, gate order (i, f, g, o) as in torch.nn
    (the math of ``rnnkit.cells.LSTMCell``).

    ``inputs`` is x_t W_ih^T + b_ih, (B, 4H)::

        i, f, g, o = split(inputs + h W^T + b)           # each (B, H)
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
        h' = sigmoid(o) * tanh(c')

    ``peepholes=True`` adds Gers & Schmidhuber's diagonal peepholes: the i and f gates see the
    previous cell c, the o gate sees the new cell c'. ``forget_bias`` initialises the forget
    slice of the recurrent bias (Jozefowicz et al. 2015 recommend 1.0).

        >>> import torch
        >>> h, c = LSTMStep(4).step(torch.zeros(2, 16), torch.zeros(2, 4), torch.zeros(2, 4))   # (B, 4H), (B, H) x 2
        >>> tuple(h.shape), tuple(c.shape)
        ((2, 4), (2, 4))
    """

    states = ("h", "c")
    gates = 4

    def __init__(
        self,
        hidden_size: int,
        *,
        peepholes: bool = False,
        forget_bias: float = 1.0,  # added to the forget slice of the bias at init
        bias: bool = True,
        weight_init: Initializer | None = None,
        bias_init: Initializer | None = None,
        learn_initial_state: bool = False,
    ) -> None:
        super().__init__(
            hidden_size, bias=bias, weight_init=weight_init, bias_init=bias_init,
            learn_initial_state=learn_initial_state,
        )
        self.peepholes = peepholes
        if self.bias is not None and forget_bias:
            with torch.no_grad():
                self.bias[hidden_size : 2 * hidden_size] += forget_bias
        if peepholes:
            self.peep_i = nn.Parameter(torch.zeros(hidden_size))  # (H,)
            self.peep_f = nn.Parameter(torch.zeros(hidden_size))  # (H,)
            self.peep_o = nn.Parameter(torch.zeros(hidden_size))  # (H,)

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        i, f, g, o = (inputs + hw).chunk(4, dim=1)  # 4 x (B, H)
        if self.peepholes:
            i = i + self.peep_i * c
            f = f + self.peep_f * c
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # (B, H)
        if self.peepholes:
            o = o + self.peep_o * c_new
        h_new = torch.sigmoid(o) * torch.tanh(c_new)  # (B, H)
        return h_new, c_new

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, peepholes={self.peepholes}"
