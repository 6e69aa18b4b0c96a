"""A layer to the equal ``torch.nn.RNN``/``LSTM``/``GRU`` (``RecurrentLayer.to_torch``).

It reads only what every layer has (its config, ``flat_weights()`` and ``why_not_fused()``: the
``Convertible`` protocol), so it imports no layer class, not even for type checking: ``rnnkit.layers.recurrent`` uses it, and ``rnnkit.layers.convert`` (which
builds layers, ``from_torch``) re-exports it.

    >>> import torch, rnnkit
    >>> layer = rnnkit.LSTM(4, 6, num_layers=2)
    >>> module = to_torch(layer)
    >>> x = torch.randn(3, 5, 4)                                      # (B, T, F), batch first
    >>> torch.allclose(module(x)[0], layer(x)[0], atol=1e-6)
    True
"""
from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor, nn

__all__ = ["to_torch"]


class Convertible(Protocol):
    """What ``to_torch`` reads of a layer (``rnnkit.layers.RecurrentLayer`` has it all)."""

    config: Any  # rnnkit.layers.LayerConfig
    training: bool

    def why_not_fused(self) -> str | None: ...

    def flat_weights(self) -> list[Tensor]: ...


def to_torch(layer: Convertible) -> nn.RNNBase:
    """The ``torch.nn`` module equal to ``layer`` (same ``batch_first``); built-in kernels only."""
    why = layer.why_not_fused()
    if why is not None:
        raise ValueError(f"layer: expected a configuration torch.nn implements, but it has {why}. "
                         "Fix: keep it as an rnnkit layer; torch.nn has no equivalent.")
    c = layer.config
    common = dict(num_layers=c.num_layers, bias=c.bias, batch_first=c.batch_first, dropout=c.dropout,
                  bidirectional=c.bidirectional)
    if c.kind == "lstm":
        module: nn.RNNBase = nn.LSTM(c.input_size, c.hidden_size, proj_size=c.proj_size, **common)
    elif c.kind == "gru":
        module = nn.GRU(c.input_size, c.hidden_size, **common)
    else:
        module = nn.RNN(c.input_size, c.hidden_size, nonlinearity=c.nonlinearity, **common)
    ours = layer.flat_weights()
    module = module.to(dtype=ours[0].dtype, device=ours[0].device)
    theirs = [w for per_direction in module.all_weights for w in per_direction]
    with torch.no_grad():
        for target, source in zip(theirs, ours, strict=True):
            target.copy_(source)
    module.train(layer.training)
    return module
