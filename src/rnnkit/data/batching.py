"""Batches of variable-length sequences: pad + bool mask + lengths, bucketing, DataLoader glue.

Conventions (DESIGN.md): batch-first; ``mask`` is bool ``(B, T)``, True at real steps; ``lengths``
is int64 ``(B,)``; every sequence has at least one step.

Example:
    >>> a, b = torch.ones(3, 2), torch.ones(1, 2)
    >>> padded, mask, lengths = pad_sequences([a, b])
    >>> padded.shape, mask.tolist(), lengths.tolist()
    (torch.Size([2, 3, 2]), [[True, True, True], [True, False, False]], [3, 1])
    >>> [t.shape[0] for t in unpad(padded, lengths)]
    [3, 1]
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from rnnkit.errors import bad_argument

__all__ = [
    "BucketBatchSampler",
    "PadCollate",
    "lengths_to_mask",
    "pad_sequences",
    "padded_fraction",
    "unpad",
]


def pad_sequences(sequences: Sequence[torch.Tensor], *, padding_value: float = 0.0,
                  argument: str = "sequences") -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pad tensors ``(T_i, *F)`` along time: ``(padded (B, T, *F), mask (B, T), lengths (B,))``."""
    if isinstance(sequences, torch.Tensor) or not isinstance(sequences, Sequence) or not sequences:
        raise bad_argument(argument, "a non-empty list of tensors shaped (T_i, *F)", sequences,
                           "wrap a single sequence in a list")
    first = sequences[0]
    for i, seq in enumerate(sequences):
        if not isinstance(seq, torch.Tensor) or seq.ndim < 1:
            raise bad_argument(f"{argument}[{i}]", "a tensor with a time dimension first", seq,
                               "give each sequence a shape (T_i, *F)")
        if seq.shape[1:] != first.shape[1:] or seq.dtype != first.dtype:
            raise bad_argument(f"{argument}[{i}]", f"trailing shape {tuple(first.shape[1:])} and dtype {first.dtype}"
                               " like the first sequence", seq, "make all sequences share feature shape and dtype")
        if seq.shape[0] < 1:
            raise bad_argument(f"{argument}[{i}]", "at least one time step", seq,
                               "drop empty sequences before batching")
    lengths = torch.tensor([s.shape[0] for s in sequences], dtype=torch.int64)  # (B,)
    padded = torch.nn.utils.rnn.pad_sequence(list(sequences), batch_first=True,
                                             padding_value=padding_value)  # (B, T, *F)
    return padded, lengths_to_mask(lengths, padded.shape[1]), lengths


def lengths_to_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """Bool mask ``(B, T)``, True at steps ``t < lengths[b]``; ``T = max(lengths)`` by default."""
    lengths = _check_lengths(lengths, "lengths")
    t = int(lengths.max()) if max_length is None else max_length
    if t < int(lengths.max()):
        raise bad_argument("max_length", f"at least max(lengths) = {int(lengths.max())}", t,
                           "leave max_length=None")
    return torch.arange(t, device=lengths.device)[None, :] < lengths[:, None]  # (B, T)


def unpad(padded: torch.Tensor, lengths: torch.Tensor) -> list[torch.Tensor]:
    """The original sequences ``(T_i, *F)`` of a padded batch; ``lengths`` may also be the bool mask."""
    if not isinstance(padded, torch.Tensor) or padded.ndim < 2:
        raise bad_argument("padded", "a tensor shaped (B, T, *F)", padded, "pass the output of pad_sequences")
    if isinstance(lengths, torch.Tensor) and lengths.dtype == torch.bool:
        mask = lengths
        lengths = mask.sum(dim=1)  # (B,)
        if mask.shape != padded.shape[:2] or not torch.equal(mask, lengths_to_mask(lengths, mask.shape[1])):
            raise bad_argument("lengths", f"a left-aligned bool mask of shape {tuple(padded.shape[:2])}", mask,
                               "pass the mask from pad_sequences, or the lengths")
    lengths = _check_lengths(lengths, "lengths")
    if lengths.shape[0] != padded.shape[0] or int(lengths.max()) > padded.shape[1]:
        raise bad_argument("lengths", f"{padded.shape[0]} lengths of at most {padded.shape[1]}", lengths,
                           "pass the lengths returned with this padded batch")
    return [padded[b, :n] for b, n in enumerate(lengths.tolist())]


class PadCollate:
    """A DataLoader ``collate_fn`` for samples of variable length.

    A sample is one tensor ``(T_i, *F)``, or a tuple of fields: fields with a time dimension
    (all of the same ``T_i`` within a sample) are padded, 0-dim fields (labels) are stacked.
    Returns ``(padded, mask, lengths)``, or ``(field_1, ..., field_k, mask, lengths)``.
    ``padding_values`` is one value for all fields or one per field (e.g. ``(0.0, -100)`` to pad
    class targets with cross-entropy's ignore index). It pickles, so ``num_workers > 0`` works.

    Example:
        >>> collate = PadCollate((0.0, -100))
        >>> x, y, mask, lengths = collate([(torch.ones(2, 3), torch.zeros(2, dtype=torch.long)),
        ...                               (torch.ones(1, 3), torch.zeros(1, dtype=torch.long))])
        >>> y.tolist(), lengths.tolist()
        ([[0, 0], [0, -100]], [2, 1])
    """

    def __init__(self, padding_values: float | Sequence[float] = 0.0) -> None:
        self.padding_values = padding_values  # one value, or one per field

    def __call__(self, samples: Sequence[torch.Tensor | Sequence[torch.Tensor]]) -> tuple[torch.Tensor, ...]:
        if not samples:
            raise bad_argument("samples", "a non-empty batch", samples, "check the sampler's batches")
        if isinstance(samples[0], torch.Tensor):
            return pad_sequences(samples, padding_value=self._value(0, 1), argument="samples")
        width = len(samples[0])
        if any(isinstance(s, torch.Tensor) or len(s) != width for s in samples):
            raise bad_argument("samples", f"tuples of {width} fields, like the first sample", samples,
                               "return the same fields from every __getitem__")
        out: list[torch.Tensor] = []
        mask = lengths = None
        for k in range(width):
            column = [s[k] for s in samples]
            if all(isinstance(c, torch.Tensor) and c.ndim == 0 for c in column):
                out.append(torch.stack(column))  # (B,)
                continue
            padded, m, n = pad_sequences(column, padding_value=self._value(k, width), argument=f"field {k}")
            if lengths is not None and not torch.equal(n, lengths):
                raise bad_argument(f"field {k}", "the same length as field 0 in each sample", n.tolist(),
                                   "give inputs and targets of a sample the same number of steps")
            mask, lengths = m, n
            out.append(padded)  # (B, T, *F)
        if lengths is None:
            raise bad_argument("samples", "at least one field with a time dimension", samples[0],
                               "use torch's default_collate for fixed-size samples")
        return (*out, mask, lengths)

    def _value(self, k: int, width: int) -> float:
        if isinstance(self.padding_values, (int, float)):
            return self.padding_values
        if len(self.padding_values) != width:
            raise bad_argument("padding_values", f"one value or {width} values (one per field)",
                               self.padding_values, "match the fields of a sample")
        return self.padding_values[k]


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of indices with similar lengths, to limit padding; use as ``batch_sampler=``.

    Each epoch: shuffle the indices (``seed`` and the epoch set by :meth:`set_epoch`), cut them
    into pools of ``batch_size * bucket_size_multiplier``, sort each pool by length, cut the
    pools into batches, and shuffle the order of the batches. Every index appears exactly once
    per epoch; ``drop_last`` drops the one batch that may be short. With ``shuffle=False``
    pools follow index order and batches are served in that order.

    Example:
        >>> sampler = BucketBatchSampler([5, 1, 4, 2], batch_size=2, shuffle=False)
        >>> list(sampler)
        [[1, 3], [2, 0]]
    """

    def __init__(self, lengths: Sequence[int] | torch.Tensor | np.ndarray, batch_size: int, *,
                 bucket_size_multiplier: int = 50, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False) -> None:
        for name, value in (("batch_size", batch_size), ("bucket_size_multiplier", bucket_size_multiplier)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad_argument(name, "a positive int", value, f"use {name} >= 1")
        self.lengths = _check_lengths(torch.as_tensor(np.asarray(lengths)), "lengths").numpy()  # (N,)
        self.batch_size = batch_size  # examples per batch
        self.bucket_size_multiplier = bucket_size_multiplier  # pool = batch_size * this, sorted by length
        self.shuffle = shuffle  # shuffle pools' contents and batch order each epoch
        self.seed = seed  # with the epoch, fixes the order
        self.drop_last = drop_last  # drop the final short batch
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's order (call before each epoch for a fresh, reproducible shuffle)."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(len(self.lengths)) if self.shuffle else np.arange(len(self.lengths))
        pool = self.batch_size * self.bucket_size_multiplier
        batches: list[list[int]] = []
        for start in range(0, len(order), pool):
            chunk = order[start : start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return iter(batches)


def padded_fraction(lengths: Sequence[int] | np.ndarray, batches: Sequence[Sequence[int]]) -> float:
    """The share of padding cells when ``batches`` (lists of indices) are padded to their longest."""
    lengths = np.asarray(lengths)
    real = padded = 0
    for batch in batches:
        sizes = lengths[list(batch)]
        real += int(sizes.sum())
        padded += int(sizes.max()) * len(batch)
    return 1.0 - real / padded if padded else 0.0


def _check_lengths(lengths: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.ndim != 1 or lengths.numel() == 0 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise bad_argument(name, "a non-empty 1-D integer tensor", lengths, "pass one length per sequence")
    if int(lengths.min()) < 1:
        raise bad_argument(name, "lengths >= 1", f"a length of {int(lengths.min())}",
                           "drop empty sequences; every sequence needs at least one step")
    return lengths.long()
