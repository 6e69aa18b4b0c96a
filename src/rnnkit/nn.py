"""``rnnkit.nn``: the exact drop-in for ``torch.nn.RNN``/``LSTM``/``GRU``.

Same signature and defaults as torch.nn (``batch_first=False``: x (T, B, F)), the same
initialisation (under the same seed, the same weights as the torch.nn module), unbatched 2-D
inputs, ``PackedSequence`` in and out, ``proj_size``, torch's ``state_dict`` keys and
attributes. Swapping ``nn.LSTM`` for ``rnnkit.nn.LSTM`` never changes what the code computes;
rnnkit's own options (``engine=``, and ``lengths=``/``mask=`` in the call) come on top.

    >>> import torch
    >>> from rnnkit import nn as rnn_nn
    >>> torch.manual_seed(0); ref = torch.nn.LSTM(4, 8, 2)               # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> torch.manual_seed(0); ours = rnn_nn.LSTM(4, 8, 2)                # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> x = torch.randn(7, 3, 4)                                          # (T, B, F)
    >>> torch.allclose(ours(x)[0], ref(x)[0], atol=1e-6)
    True

``rnnkit.RNN``/``LSTM``/``GRU`` are the same layers with ``batch_first=True`` and rnnkit's
initialisation (orthogonal recurrent weights, zero biases, forget-gate bias 1).
"""
from __future__ import annotations

from typing import Sequence

from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from rnnkit.checkpoint.registry import register_model
from rnnkit.engine import BPTT
from rnnkit.layers import classes

__all__ = ["GRU", "LSTM", "RNN"]


class _TorchDefaults:
    """torch.nn's defaults on top of an rnnkit layer: sequence-first, torch's init, unbatched inputs."""

    _torch_init = True
    _unbatched_ok = True

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | tuple[Tensor, Tensor] | None = None,  # noqa: A002
                lengths: Tensor | Sequence[int] | None = None, *, mask: Tensor | None = None,
                bptt: BPTT | None = None):  # type: ignore[no-untyped-def]
        """torch.nn's call: ``(input, hx=None)`` -> ``(output, h_n)`` or ``(output, (h_n, c_n))``."""
        return super().forward(input, hx, lengths, mask=mask, bptt=bptt)  # type: ignore[misc]


@register_model(name="rnnkit.nn.RNN")
class RNN(_TorchDefaults, classes.RNN):
    """``torch.nn.RNN(input_size, hidden_size, num_layers=1, nonlinearity='tanh', bias=True,
    batch_first=False, dropout=0.0, bidirectional=False, device=None, dtype=None)``, on rnnkit."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None, *, engine: str = "auto") -> None:  # type: ignore[no-untyped-def]
        super().__init__(input_size, hidden_size, num_layers, nonlinearity, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, engine=engine)


@register_model(name="rnnkit.nn.LSTM")
class LSTM(_TorchDefaults, classes.LSTM):
    """``torch.nn.LSTM(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None)``, on rnnkit."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, engine: str = "auto") -> None:  # type: ignore[no-untyped-def]
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, engine=engine)


@register_model(name="rnnkit.nn.GRU")
class GRU(_TorchDefaults, classes.GRU):
    """``torch.nn.GRU(input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device=None, dtype=None)``, on rnnkit."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, proj_size: int = 0,
                 device=None, dtype=None, *, engine: str = "auto") -> None:  # type: ignore[no-untyped-def]
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size, device, dtype, engine=engine)
