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

__all__ = ["KINDS", "run_fused", "run_fused_packed"]

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
    batch_first: bool = True,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Run a whole stack. x (B, T, F), or (T, B, F) with ``batch_first=False``; hx: (h,) or
    (h, c), each (L*D, B, H) (h is (L*D, B, P) for a projected LSTM, whose weights hold W_hr).

    Returns y (B, T, D*H) (or (T, B, D*H)), zero at padded steps, and the final states in
    torch's layout. ``lengths`` (B,) int64 on the CPU, or None when every sequence fills T.
    ``zero_state``: hx is all zeros (no reordering needed).
    """
    op = KINDS[kind]
    state = list(hx) if kind == "lstm" else hx[0]
    if lengths is None:
        result = op(x, state, weights, has_biases, num_layers, dropout, training, bidirectional, batch_first)
        return result[0], tuple(result[1:])  # (B, T, D*H), states (L*D, B, H)
    T = x.shape[1 if batch_first else 0]
    packed = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, finals = run_fused_packed(kind, packed, hx, weights, has_biases=has_biases, num_layers=num_layers,
                                   dropout=dropout, training=training, bidirectional=bidirectional,
                                   zero_state=zero_state)
    y, _ = pad_packed_sequence(out, batch_first=batch_first, total_length=T)  # (B, T, D*H)
    return y, finals


def run_fused_packed(
    kind: str,
    packed: PackedSequence,
    hx: tuple[Tensor, ...],
    weights: list[Tensor],
    *,
    has_biases: bool,
    num_layers: int,
    dropout: float,
    training: bool,
    bidirectional: bool,
    zero_state: bool = False,
) -> tuple[PackedSequence, tuple[Tensor, ...]]:
    """Run a whole stack on a PackedSequence, as torch.nn does: hx and the returned final states
    are in the caller's batch order (permuted through ``sorted_indices``/``unsorted_indices``),
    the output is packed like the input (same batch sizes and indices)."""
    op = KINDS[kind]
    state = list(hx) if kind == "lstm" else hx[0]
    order = packed.sorted_indices  # (B,) longest first, or None when the input was sorted
    if order is not None and not zero_state:  # all zeros: the batch order does not matter
        state = [s.index_select(1, order) for s in state] if kind == "lstm" else state.index_select(1, order)
    result = op(packed.data, packed.batch_sizes, state, weights, has_biases, num_layers, dropout,
                training, bidirectional)
    out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    finals = tuple(result[1:])
    if packed.unsorted_indices is not None:
        finals = tuple(s.index_select(1, packed.unsorted_indices) for s in finals)  # (L*D, B, H)
    return out, finals
