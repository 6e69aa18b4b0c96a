"""The fused backend: PyTorch's native multi-layer RNN kernels (oneDNN on CPU, cuDNN on GPU).

It is what ``torch.nn.RNN/LSTM/GRU`` call, with the same flat weight list, so numerics and
speed match them. Variable lengths go through a packed sequence, exactly as a torch.nn user
would do with ``pack_padded_sequence(..., enforce_sorted=False)``.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = ["KINDS", "run_fused"]

KINDS: dict[str, Callable[..., tuple[Tensor, ...]]] = {
    "lstm": torch.lstm,
    "gru": torch.gru,
    "rnn_tanh": torch.rnn_tanh,
    "rnn_relu": torch.rnn_relu,
}


def run_fused(
    kind: str,
    x: Tensor,
    hx: tuple[Tensor, ...],
    weights: list[Tensor],
    *,
    has_biases: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    lengths: Tensor | None,
    zero_state: bool = False,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run a whole stack. x (B, T, F); hx: (h,) or (h, c), each (L*D, B, H).

    Returns y (B, T, D*H), zero at padded steps, and the final states in torch's layout.
    ``lengths`` (B,) int64 on the CPU, or None when every sequence fills T. ``zero_state``: hx
    is all zeros (no reordering needed).
    """
    op = KINDS[kind]
    state = list(hx) if kind == "lstm" else hx[0]
    if lengths is None:
        result = op(x, state, weights, has_biases, num_layers, dropout, training, bidirectional, True)
        return result[0], tuple(result[1:])  # (B, T, D*H), states (L*D, B, H)
    T = x.shape[1]
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    order = packed.sorted_indices  # (B,) longest first
    if zero_state:
        pass  # all zeros: the batch order does not matter
    elif kind == "lstm":
        state = [s.index_select(1, order) for s in state]
    else:
        state = state.index_select(1, order)
    result = op(packed.data, packed.batch_sizes, state, weights, has_biases, num_layers, dropout,
                training, bidirectional)
    out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    y, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, D*H)
    finals = tuple(s.index_select(1, packed.unsorted_indices) for s in result[1:])  # (L*D, B, H)
    return y, finals
