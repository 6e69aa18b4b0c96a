"""``rnnkit.RNN``, ``rnnkit.LSTM``, ``rnnkit.GRU``: torch.nn's constructor, batch-first by default.

The positional order is torch.nn's, so ``rnnkit.LSTM(10, 20, 2, True)`` means ``bias=True`` as it
does in torch; rnnkit's own options (``engine``, ``peepholes``, ``input_init``,
``recurrent_init`` and the regularisers ``input_dropout``, ``recurrent_dropout``, ``zoneout``,
``weight_drop``, see ``rnnkit.Regularisers``) are keyword-only. The one default that differs from torch.nn is
``batch_first=True``; ``rnnkit.nn.RNN``/``LSTM``/``GRU`` take torch's ``False`` and torch's
initialisation, for code written against torch.nn.

    >>> import torch, rnnkit
    >>> lstm = rnnkit.LSTM(8, 16, 2, True, True, 0.0, True, 4)   # torch's positional order
    >>> y, (h, c) = lstm(torch.randn(3, 5, 8))
    >>> tuple(y.shape), tuple(h.shape), tuple(c.shape)   # (B, T, D*P), (L*D, B, P), (L*D, B, H)
    ((3, 5, 8), (4, 3, 4), (4, 3, 16))
"""
from __future__ import annotations

import torch

from rnnkit.checkpoint.registry import register_model
from rnnkit.init import Initializer
from rnnkit.layers.recurrent import RecurrentLayer

__all__ = ["GRU", "LSTM", "RNN"]

Device = torch.device | str | None


def _regularisers(input_dropout: float, recurrent_dropout: float, zoneout: float, weight_drop: float) -> dict:
    return dict(input_dropout=input_dropout, recurrent_dropout=recurrent_dropout, zoneout=zoneout,
                weight_drop=weight_drop)


@register_model
class RNN(RecurrentLayer):
    """Elman RNN layer, ``h_t = tanh(W x_t + U h_{t-1} + b)``: torch.nn.RNN's constructor and results, batch-first.

    ``nonlinearity`` is "tanh", "relu" (both fused) or "identity" (generic); ``engine`` picks the
    backend ("auto": the faster one measured here). Returns ``(y, h)``: y (B, T, D*H), h (L*D, B, H).

        >>> import torch, rnnkit
        >>> y, h = rnnkit.RNN(4, 8)(torch.randn(2, 5, 4))
        >>> tuple(y.shape), tuple(h.shape)
        ((2, 5, 8), (1, 2, 8))
    """

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device: Device = None, dtype: torch.dtype | None = None, *,
                 engine: str = "auto", input_init: Initializer | None = None,
                 recurrent_init: Initializer | None = None, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, weight_drop: float = 0.0) -> None:
        """Build the layer: torch.nn's arguments in torch.nn's positional order; rnnkit's own options are keyword-only."""
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device, dtype, nonlinearity=nonlinearity, engine=engine, input_init=input_init,
                         recurrent_init=recurrent_init, **_regularisers(input_dropout, recurrent_dropout, zoneout, weight_drop))


@register_model
class LSTM(RecurrentLayer):
    """LSTM layer (gate order i, f, g, o): torch.nn.LSTM's constructor and results, batch-first by default.

    ``proj_size`` as in torch.nn; ``peepholes=True`` adds peephole connections (generic engine);
    ``engine`` picks the backend ("auto": the faster one measured here, "fused": torch's kernels,
    "generic": rnnkit's compiled loops). Returns ``(y, (h, c))``: y (B, T, D*H), h and c (L*D, B, H).

        >>> import torch, rnnkit
        >>> y, (h, c) = rnnkit.LSTM(4, 8, num_layers=2)(torch.randn(2, 5, 4))
        >>> tuple(y.shape), tuple(h.shape), tuple(c.shape)
        ((2, 5, 8), (2, 2, 8), (2, 2, 8))
    """

    kind = "lstm"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Device = None, dtype: torch.dtype | None = None, *, engine: str = "auto",
                 peepholes: bool = False, input_init: Initializer | None = None,
                 recurrent_init: Initializer | None = None, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, weight_drop: float = 0.0) -> None:
        """Build the layer: torch.nn's arguments in torch.nn's positional order; rnnkit's own options are keyword-only."""
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device, dtype, engine=engine, peepholes=peepholes, input_init=input_init,
                         recurrent_init=recurrent_init, **_regularisers(input_dropout, recurrent_dropout, zoneout, weight_drop))


@register_model
class GRU(RecurrentLayer):
    """GRU layer, reset-after variant (gate order r, z, n) as in cuDNN and torch.nn.GRU, batch-first by default.

    torch.nn.GRU's constructor and results; ``engine`` picks the backend ("auto": the faster one
    measured here). Returns ``(y, h)``: y (B, T, D*H), h (L*D, B, H).

        >>> import torch, rnnkit
        >>> y, h = rnnkit.GRU(4, 8, bidirectional=True)(torch.randn(2, 5, 4))
        >>> tuple(y.shape), tuple(h.shape)
        ((2, 5, 16), (2, 2, 8))
    """

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = True, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device: Device = None, dtype: torch.dtype | None = None, *, engine: str = "auto",
                 input_init: Initializer | None = None, recurrent_init: Initializer | None = None, input_dropout: float = 0.0,
                 recurrent_dropout: float = 0.0, zoneout: float = 0.0, weight_drop: float = 0.0) -> None:
        """Build the layer: torch.nn's arguments in torch.nn's positional order; rnnkit's own options are keyword-only."""
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, proj_size,
                         device, dtype, engine=engine, input_init=input_init, recurrent_init=recurrent_init, **_regularisers(input_dropout, recurrent_dropout, zoneout, weight_drop))
