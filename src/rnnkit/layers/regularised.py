"""The regularisers of ``rnnkit.RNN``/``LSTM``/``GRU`` on the fused backend, and their plan reasons.

The generic backend applies them per (layer, direction) in ``rnnkit.layers.generic_path.forward_generic``
(``rnnkit.engine.regularise``). The fused kernels run a whole stack in one call, so they can
take only what acts outside the recurrence: input dropout on the first layer's input and a
weight-dropped W_hh. Recurrent dropout, zoneout and input dropout above the first layer make
``why_not_fused`` give a reason, and ``auto`` then runs the generic engine.

    >>> import torch, rnnkit
    >>> lstm = rnnkit.LSTM(4, 8, weight_drop=0.5, engine="fused")
    >>> lstm.plan(torch.randn(2, 3, 4)).backend            # DropConnect runs on the fused kernels too
    'fused'
    >>> print(rnnkit.LSTM(4, 8, zoneout=0.1, engine="auto").plan(torch.randn(2, 3, 4)).reason("backend"))
    the fused kernels cannot run it: zoneout (each state keeps its previous value with p = 0.1)
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

__all__ = ["drop_fused_input", "drop_packed_input", "fused_weights", "why_not_fused"]


def why_not_fused(layer: Any) -> str | None:
    """Why the fused kernels cannot apply the layer's regularisers in this mode (None: they can)."""
    reg, training = layer.regularisers, layer.training
    inside = reg.inside(training)
    if inside is not None:
        return inside
    if training and reg.input_dropout and layer.num_layers > 1:
        return ("input dropout on the inputs of layers above the first (the native kernel runs the "
                "whole stack in one call)")
    return None


def fused_weights(layer: Any) -> list[Tensor]:
    """``layer.flat_weights()`` with every W_hh weight-dropped (training with weight_drop only).
    One mask per direction, drawn in torch's order from torch's RNG."""
    weights = layer.flat_weights()
    reg = layer.regularisers
    if not (layer.training and reg.weight_drop):
        return weights
    per = 2 + 2 * layer.config.bias + (1 if layer.config.proj_size else 0)  # tensors per direction
    out = list(weights)
    for start in range(0, len(out), per):
        W = out[start + 1]
        out[start + 1] = W * reg.weight_mask(W, True)  # type: ignore[operator]
    return out


def drop_fused_input(layer: Any, x: Tensor) -> Tensor:
    """Input dropout on the first layer's input x ((B, T, F) or (T, B, F)): one mask per sequence."""
    bf = layer.config.batch_first
    B = x.shape[0 if bf else 1]
    m = layer.regularisers.input_mask(B, (x.shape[2],), x, layer.training)
    return x if m is None else x * m.unsqueeze(1 if bf else 0)


def drop_packed_input(layer: Any, packed: PackedSequence) -> PackedSequence:
    """Input dropout on a PackedSequence: the mask of each sequence, (B, F) in the caller's order,
    multiplies every row of packed.data that belongs to it."""
    B = int(packed.batch_sizes[0])
    m = layer.regularisers.input_mask(B, (packed.data.shape[1],), packed.data, layer.training)
    if m is None:
        return packed
    pos = torch.cat([torch.arange(int(n)) for n in packed.batch_sizes]).to(packed.data.device)  # sorted rows
    rows = pos if packed.sorted_indices is None else packed.sorted_indices[pos]  # the caller's rows
    return PackedSequence(packed.data * m[rows], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
