"""A ``PackedSequence`` through a recurrent layer: a ``PackedSequence`` out, with the same batch
sizes and indices, and the final states in torch's order (the original batch order). The fused
backend runs PyTorch's packed kernels; the generic backend pads, runs with lengths, and packs
the output again.

    >>> import torch, rnnkit
    >>> from torch.nn.utils.rnn import pack_padded_sequence
    >>> gru = rnnkit.GRU(3, 4, engine="generic")
    >>> x, lens = torch.randn(2, 5, 3), torch.tensor([5, 2])
    >>> y, h = gru(pack_padded_sequence(x, lens, batch_first=True))
    >>> torch.allclose(h, gru(x, lengths=lens)[1]), type(y).__name__
    (True, 'PackedSequence')
"""
from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.engine import BPTT
from rnnkit.engine.fused import run_fused_packed
from rnnkit.engine.hooks import run_pre_hooks
from rnnkit.engine.masks import lengths_to_mask
from rnnkit.layers import regularised
from rnnkit.layers.generic_path import forward_generic

__all__ = ["forward_packed"]

State = Tensor | tuple[Tensor, Tensor]


def forward_packed(rnn: nn.Module, packed: PackedSequence, state: State | None,
                   bptt: BPTT | None) -> tuple[PackedSequence, State]:
    """A PackedSequence in, a PackedSequence out (same batch sizes and indices), torch's h_n order."""
    data = packed.data  # (N, F), the steps of all sequences, time-major
    rnn._check_input(data.unsqueeze(1), packed=True)
    B = int(packed.batch_sizes[0])
    hx = rnn._check_state(state, B, data)
    run_pre_hooks(*(m for d in rnn.directions() for m in (d.input, d.cell)))  # weight_norm, prune, ...
    plan = rnn._plan(data, B, int(packed.batch_sizes[-1]) != B, True, bptt, step=False)
    if plan.fused:
        if rnn.regularisers.active:
            packed = regularised.drop_packed_input(rnn, packed)
        out, finals = run_fused_packed(
            rnn.fused_kind, packed, hx, regularised.fused_weights(rnn), has_biases=rnn.config.bias,
            num_layers=rnn.num_layers, dropout=rnn.config.dropout, training=rnn.training,
            bidirectional=rnn.config.bidirectional, zero_state=state is None,
        )
    else:  # padded + lengths on the generic engine: no per-step packed kernels
        x, lens = pad_packed_sequence(packed)  # (T, B, F) in the caller's order, lens (B,) on the CPU
        T = x.shape[0]
        mask = None if int(lens.min()) == T else lengths_to_mask(lens, T, x.device)
        y, finals = forward_generic(rnn, x, hx, mask, bptt, plan)  # (T, B, D*H)
        if packed.sorted_indices is not None:
            y = y.index_select(1, packed.sorted_indices)  # (T, B, D*H), longest first
            lens = lens.index_select(0, packed.sorted_indices.cpu())
        out = PackedSequence(pack_padded_sequence(y, lens).data, packed.batch_sizes,
                             packed.sorted_indices, packed.unsorted_indices)
    return out, (finals if rnn.kind == "lstm" else finals[0])
