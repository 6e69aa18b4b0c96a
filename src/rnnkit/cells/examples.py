"""Example user cells: recurrent cells written as a user writes them, on :class:`Structured`.

Each is a few lines of ``pointwise`` math that the generic engine compiles to native code
(``rnnkit.engine.compiler``), so they run at the built-in cells' speed. Use them as they are,
or copy one as the start of your own cell. The tests check them against independent oracles
(``UserLSTM`` against ``torch.nn.LSTM``), and ``benchmarks/bench_user_cells.py`` times them.

* :class:`UserLSTM`: the LSTM of ``torch.nn.LSTM`` (the same compiled unit as ``LSTMCell``);
* :class:`UserGRU`: the GRU of ``torch.nn.GRU`` (reset gate applied after the matmul);
* :class:`CIFG`: an LSTM whose input gate is ``1 - f`` (Greff et al. 2017);
* :class:`MGU`: the minimal gated unit, one forget gate (Zhou et al. 2016);
* :class:`LNLSTM`: an LSTM with layer norm over its gate pre-activations and its cell.

Each takes ``inputs`` (B, G*H), the input already projected to the cell's ``gates`` blocks
(``rnnkit.CellLayer(cell, input_size)`` adds that projection), and ``hw`` (B, G*H), the state
feeding the recurrent matmul times ``W_hh``.

    >>> import torch, rnnkit
    >>> from rnnkit.cells.examples import MGU
    >>> layer = rnnkit.CellLayer(MGU(16), input_size=4)
    >>> y, h = layer(torch.randn(2, 7, 4))
    >>> tuple(y.shape), tuple(h.shape)          # (B, T, H), (B, H)
    ((2, 7, 16), (2, 16))
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.structured import Structured

__all__ = ["CIFG", "LNLSTM", "MGU", "UserGRU", "UserLSTM"]


class UserLSTM(Structured):
    """The LSTM of ``torch.nn.LSTM`` (gates i, f, g, o), as a user writes it: the same math,
    so the same compiled unit, as the built-in ``rnnkit.cells.LSTMCell``.

        >>> import torch
        >>> h, c = UserLSTM(8)(torch.randn(3, 5, 32))   # (B, T, 4H) -> (B, T, H) each
        >>> tuple(h.shape), tuple(c.shape)
        ((3, 5, 8), (3, 5, 8))
    """

    states = ("h", "c")
    gates = 4

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step: inputs, hw (B, 4H); h, c (B, H) -> new (h, c), each (B, H)."""
        i, f, g, o = (inputs + hw).chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class UserGRU(Structured):
    """The GRU of ``torch.nn.GRU`` (gates r, z, n; the reset gate scales ``hw``'s candidate
    block after the matmul). It reads x and hw apart, so it compiles to the engine's split path.

        >>> import torch
        >>> tuple(UserGRU(8)(torch.randn(3, 5, 24)).shape)   # (B, T, 3H) -> (B, T, H)
        (3, 5, 8)
    """

    states = ("h",)
    gates = 3

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        """One step: inputs, hw (B, 3H); h (B, H) -> new h (B, H)."""
        xr, xz, xn = inputs.chunk(3, dim=1)
        hr, hz, hn = hw.chunk(3, dim=1)
        r = torch.sigmoid(xr + hr)
        z = torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return n + z * (h - n)


class CIFG(Structured):
    """Coupled input-forget gate LSTM (Greff et al. 2017): the input gate is ``1 - f``, so three
    gate blocks (f, g, o) instead of four.

        >>> import torch
        >>> h, c = CIFG(8)(torch.randn(3, 5, 24))   # (B, T, 3H) -> (B, T, H) each
        >>> tuple(h.shape)
        (3, 5, 8)
    """

    states = ("h", "c")
    gates = 3

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step: inputs, hw (B, 3H); h, c (B, H) -> new (h, c), each (B, H)."""
        f, g, o = (inputs + hw).chunk(3, dim=1)
        f = torch.sigmoid(f)
        c = f * c + (1 - f) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class MGU(Structured):
    """Minimal gated unit (Zhou et al. 2016): one forget gate f, which also gates the
    candidate's recurrent block.

        >>> import torch
        >>> tuple(MGU(8)(torch.randn(3, 5, 16)).shape)   # (B, T, 2H) -> (B, T, H)
        (3, 5, 8)
    """

    states = ("h",)
    gates = 2

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        """One step: inputs, hw (B, 2H); h (B, H) -> new h (B, H)."""
        xf, xn = inputs.chunk(2, dim=1)
        hf, hn = hw.chunk(2, dim=1)
        f = torch.sigmoid(xf + hf)
        return (1 - f) * h + f * torch.tanh(xn + f * hn)


class LNLSTM(Structured):
    """LayerNorm-LSTM as a user writes it: one layer norm over all four gate pre-activations
    (gain ``ln_g``, bias ``ln_b``, (4H,)) and one over the cell before its tanh (gain ``ln_c``,
    (H,)). The built-in ``rnnkit.cells.LayerNormLSTMCell`` is the other common variant.

        >>> import torch
        >>> h, c = LNLSTM(8)(torch.randn(3, 5, 32))   # (B, T, 4H) -> (B, T, H) each
        >>> tuple(h.shape)
        (3, 5, 8)
    """

    states = ("h", "c")
    gates = 4

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        self.ln_g = nn.Parameter(torch.ones(4 * hidden_size))
        self.ln_b = nn.Parameter(torch.zeros(4 * hidden_size))
        self.ln_c = nn.Parameter(torch.ones(hidden_size))

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        """One step: inputs, hw (B, 4H); h, c (B, H) -> new (h, c), each (B, H)."""
        z = F.layer_norm(inputs + hw, (inputs.shape[1],), self.ln_g, self.ln_b)  # (B, 4H)
        i, f, g, o = z.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(F.layer_norm(c, (c.shape[1],), self.ln_c, None)), c
