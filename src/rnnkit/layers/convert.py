"""Conversion between rnnkit layers and ``torch.nn.RNN``/``LSTM``/``GRU``, with the same numerics.

Both directions keep the layout (``batch_first``), ``proj_size`` and every other setting, so the
converted module is called with the same tensors as the original.

    >>> import torch, rnnkit
    >>> ref = torch.nn.GRU(4, 6, num_layers=2, bidirectional=True)      # sequence-first
    >>> layer = rnnkit.from_torch(ref)
    >>> layer.batch_first
    False
    >>> x = torch.randn(5, 3, 4)                                        # (T, B, F)
    >>> torch.allclose(layer(x)[0], ref(x)[0], atol=1e-6)
    True
    >>> type(layer.to_torch()).__name__
    'GRU'
"""
from __future__ import annotations

import torch
from torch import nn

from rnnkit.errors import bad_argument
from rnnkit.layers.classes import GRU, LSTM, RNN
from rnnkit.layers.export import to_torch
from rnnkit.layers.recurrent import RecurrentLayer

__all__ = ["from_torch", "to_torch"]


def from_torch(module: nn.RNNBase, engine: str = "auto") -> RecurrentLayer:
    """Build the rnnkit layer equal to a ``torch.nn.RNN``/``LSTM``/``GRU`` (copies its weights).

    The layer keeps the module's ``batch_first``, ``proj_size``, dtype, device and train/eval mode.
    """
    if not isinstance(module, (nn.LSTM, nn.GRU, nn.RNN)):
        raise bad_argument("module", "a torch.nn.RNN, torch.nn.LSTM or torch.nn.GRU", module,
                           "convert one of those three module types")
    common = dict(num_layers=module.num_layers, bias=module.bias, batch_first=module.batch_first,
                  dropout=module.dropout, bidirectional=module.bidirectional, engine=engine)
    if isinstance(module, nn.LSTM):
        layer: RecurrentLayer = LSTM(module.input_size, module.hidden_size, proj_size=module.proj_size, **common)
    elif isinstance(module, nn.GRU):
        layer = GRU(module.input_size, module.hidden_size, **common)
    else:
        layer = RNN(module.input_size, module.hidden_size, nonlinearity=module.nonlinearity, **common)
    theirs = [w for per_direction in module.all_weights for w in per_direction]
    first = theirs[0]
    layer = layer.to(dtype=first.dtype, device=first.device)
    with torch.no_grad():
        for ours, source in zip(layer.flat_weights(), theirs, strict=True):
            ours.copy_(source)
    layer.train(module.training)
    return layer
