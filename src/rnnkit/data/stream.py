"""Contiguous-stream batching of one long token sequence, for truncated BPTT.

The ids are cut into B equal, contiguous streams, one per batch row: stream b is
``ids[b*L : (b+1)*L]`` with ``L = (len(ids) - 1) // B``. Chunk k holds columns ``k*T .. k*T+T-1``
of every stream, so row b of chunk k continues row b of chunk k-1: carry the recurrent state
from one chunk to the next (detached) and reset it only at the start of an epoch. Targets are
the inputs shifted by one token. The inputs of all chunks tile ``ids[:B*L]`` exactly once (no
gap, no overlap); the last ``len(ids) - 1 - B*L < B`` tokens are the only ones left out. The last
chunk is shorter than T when T does not divide L, unless ``drop_last=True`` (which then also
leaves out the ragged tail of every stream).

Example:
    >>> ids = torch.arange(21)
    >>> stream = TextStream(ids, batch_size=2, bptt=4)
    >>> x, y = stream[0]
    >>> x.tolist(), y.tolist()
    ([[0, 1, 2, 3], [10, 11, 12, 13]], [[1, 2, 3, 4], [11, 12, 13, 14]])
    >>> len(stream), stream[2][0].tolist()  # L = 10: chunks of 4, 4 and 2
    (3, [[8, 9], [18, 19]])
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rnnkit.errors import bad_argument

__all__ = ["TextStream"]


class TextStream:
    """B parallel contiguous streams of ``ids``, served as (x, y) chunks of shape (B, T)."""

    def __init__(self, ids: torch.Tensor | np.ndarray, batch_size: int, bptt: int, *, drop_last: bool = False) -> None:
        for name, value in (("batch_size", batch_size), ("bptt", bptt)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad_argument(name, "a positive int", value, f"use {name} >= 1")
        if isinstance(ids, np.ndarray):
            ids = torch.from_numpy(ids)
        if not isinstance(ids, torch.Tensor) or ids.ndim != 1 or ids.dtype.is_floating_point or ids.is_complex():
            raise bad_argument("ids", "a 1-D integer tensor of token ids", ids, "encode the text with Vocab.encode")
        ids = ids.long().contiguous()
        n = ids.numel()
        length = (n - 1) // batch_size  # tokens per stream
        if drop_last:
            length -= length % bptt
        needed = batch_size * (bptt if drop_last else 1) + 1
        if length < 1:
            raise bad_argument("ids", f"at least {needed} tokens for one batch of {batch_size} streams"
                               + (f" x {bptt} steps" if drop_last else ""), f"{n} tokens",
                               "use a longer corpus, or a smaller batch_size" + (" or bptt" if drop_last else ""))
        self.batch_size = batch_size  # B
        self.bptt = bptt  # T
        self.drop_last = drop_last
        self.stream_length = length  # L, tokens per stream and epoch
        self.dropped = n - 1 - batch_size * length  # tokens never used as inputs
        self._x = ids[: batch_size * length].view(batch_size, length)  # (B, L)
        self._y = ids[1 : batch_size * length + 1].view(batch_size, length)  # (B, L)

    @property
    def tokens_per_epoch(self) -> int:
        """Input tokens served per epoch, ``B * L``."""
        return self.batch_size * self.stream_length

    def __len__(self) -> int:
        """Chunks per epoch, ``ceil(L / T)``."""
        return -(-self.stream_length // self.bptt)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk ``index``: inputs and targets, each int64 ``(B, T)`` (the last may be shorter)."""
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"chunk index must be an int, not {type(index).__name__}")
        if not 0 <= index < len(self):
            raise IndexError(f"chunk {index} out of range 0..{len(self) - 1}")
        cols = slice(index * self.bptt, (index + 1) * self.bptt)
        return self._x[:, cols].contiguous(), self._y[:, cols].contiguous()  # (B, T), (B, T)

    def offset(self, index: int) -> int:
        """Position in ``ids`` of row 0's first input token of chunk ``index`` (row b adds ``b * L``)."""
        return index * self.bptt

    def batches(self, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The chunks from ``start`` to the end of the epoch (resume mid-epoch from a saved index)."""
        if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(self):
            raise bad_argument("start", f"a chunk index in 0..{len(self)}", start,
                               "resume from the index saved with the checkpoint")
        return (self[k] for k in range(start, len(self)))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self.batches(0)

    def __repr__(self) -> str:
        return (f"TextStream(batch_size={self.batch_size}, bptt={self.bptt}, stream_length={self.stream_length}, "
                f"chunks={len(self)}, dropped={self.dropped})")
