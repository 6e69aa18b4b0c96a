"""A layer to the equal ``torch.nn.RNN``/``LSTM``/``GRU`` (``RecurrentLayer.to_torch``).

It reads only what every layer has (its config, ``flat_weights()`` and ``why_not_fused()``: the
``Convertible`` protocol), so it imports no layer class, not even for type checking: ``rnnkit.layers.recurrent`` uses it, and ``rnnkit.layers.convert`` (which
builds layers, ``from_torch``) re-exports it.

torch.nn has no regularisers, so a regularised layer is never converted silently: the dropouts
(``input_dropout``, ``recurrent_dropout``, ``weight_drop``) are dropped only when asked,
``to_torch(layer, drop_regularisers=True)`` (the module then equals the layer in eval mode and
trains without them), and ``zoneout`` is refused: its eval mode is its expectation, which no
torch.nn module computes.

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

from rnnkit.errors import bad_argument

__all__ = ["to_torch"]


class Convertible(Protocol):
    """What ``to_torch`` reads of a layer (``rnnkit.layers.RecurrentLayer`` has it all)."""

    config: Any  # rnnkit.layers.LayerConfig
    training: bool

    def why_not_fused(self, *, regularisers: bool = True) -> str | None: ...

    def flat_weights(self) -> list[Tensor]: ...


DROPOUTS = ("input_dropout", "recurrent_dropout", "weight_drop")  # the identity in eval mode


def to_torch(layer: Convertible, *, drop_regularisers: bool = False) -> nn.RNNBase:
    """The ``torch.nn`` module equal to ``layer`` (same ``batch_first``); built-in kernels only.

    A layer with dropout regularisers raises unless ``drop_regularisers=True``, which returns the
    plain module (equal to the layer in eval mode). A layer with zoneout always raises.
    """
    c = layer.config
    if c.zoneout:
        raise bad_argument("zoneout", "0 to convert to torch.nn (which has no zoneout; even in eval mode this "
                           "layer mixes each new state with the old one)", c.zoneout,
                           "keep it as an rnnkit layer, or train one without zoneout to export")
    for name in DROPOUTS:
        if getattr(c, name) and not drop_regularisers:
            raise bad_argument(name, f"0 to convert to torch.nn (torch.nn has no {name})", getattr(c, name),
                               "keep the rnnkit layer to train with it, or pass drop_regularisers=True for "
                               "the plain module (equal in eval mode)")
    why = layer.why_not_fused(regularisers=False)
    if why is not None:
        raise ValueError(f"layer: expected a configuration torch.nn implements, but it has {why}. "
                         "Fix: keep it as an rnnkit layer; torch.nn has no equivalent.")
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
