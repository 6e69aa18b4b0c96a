"""Masks, lengths and per-sequence reversal, with the checks that guard them.

Conventions (DESIGN.md): a mask is bool (B, T), True where a step is real; lengths are int
(B,). Sequences are right-padded. At a padded step the state carries over unchanged and the
output is zero.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from rnnkit.errors import bad_argument, describe

__all__ = ["check_lengths", "check_mask", "flip_padded", "lengths_to_mask", "mask_to_lengths", "resolve_mask"]


def lengths_to_mask(lengths: Tensor, max_len: int, device: torch.device | None = None) -> Tensor:
    """(B,) int -> (B, T) bool, True on the first ``lengths[b]`` steps of row b."""
    steps = torch.arange(max_len, device=device if device is not None else lengths.device)
    return steps.unsqueeze(0) < lengths.to(steps.device).unsqueeze(1)  # (B, T)


def mask_to_lengths(mask: Tensor) -> tuple[Tensor, bool]:
    """(B, T) bool -> (lengths (B,) int64, whether every row is a prefix of True steps)."""
    lengths = mask.sum(dim=1, dtype=torch.int64)  # (B,)
    prefix = bool(torch.equal(lengths_to_mask(lengths, mask.shape[1], mask.device), mask))
    return lengths, prefix


def check_lengths(lengths: Tensor | Sequence[int], batch: int, max_len: int, device: torch.device) -> Tensor:
    """Validate user lengths and return them as an int64 CPU tensor (B,)."""
    fix_dtype = "pass integer lengths, e.g. torch.tensor([5, 3], dtype=torch.long)"
    if not isinstance(lengths, Tensor):
        if not isinstance(lengths, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in lengths
        ):
            raise bad_argument("lengths", "a 1-D integer tensor (B,) or a list of ints", lengths, fix_dtype)
        lengths = torch.tensor(lengths, dtype=torch.int64)
    if lengths.dtype.is_floating_point or lengths.dtype.is_complex or lengths.dtype == torch.bool:
        raise bad_argument("lengths", "an integer dtype (int64)", lengths, fix_dtype)
    if lengths.device.type not in ("cpu", device.type):
        raise bad_argument(
            "lengths", f"a tensor on the CPU or on the input's device ({device})", lengths,
            "move it with lengths.cpu()",
        )
    if lengths.shape != (batch,):
        raise bad_argument("lengths", f"shape ({batch},), one length per sequence", lengths,
                           "give exactly one length per batch row")
    lengths = lengths.to("cpu", torch.int64)
    if batch and int(lengths.min()) <= 0:
        bad = lengths[lengths <= 0].tolist()
        raise bad_argument("lengths", "every length >= 1", f"lengths containing {bad}",
                           "drop empty sequences from the batch before the RNN")
    if batch and int(lengths.max()) > max_len:
        raise bad_argument("lengths", f"every length <= T = {max_len} (the input's time size)",
                           f"a maximum length of {int(lengths.max())}",
                           "pad the input to the longest sequence or fix the lengths")
    return lengths


def check_mask(mask: Tensor, batch: int, max_len: int, device: torch.device) -> Tensor:
    """Validate a user mask: bool (B, T) on the input's device, at least one real step per row."""
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise bad_argument("mask", "a bool tensor (B, T), True where a step is real", mask,
                           "build it with lengths, e.g. torch.arange(T) < lengths[:, None]")
    if mask.shape != (batch, max_len):
        raise bad_argument("mask", f"shape (B, T) = ({batch}, {max_len}) to match the input",
                           mask, "one row per sequence and one column per time step")
    if mask.device != device:
        raise bad_argument("mask", f"a tensor on the input's device ({device})", mask,
                           f"move it with mask.to({str(device)!r})")
    if batch and not bool(mask.any(dim=1).all()):
        raise bad_argument("mask", "at least one real step in every row", describe(mask) +
                           " with an all-False row", "drop empty sequences from the batch")
    return mask


def resolve_mask(
    mask: Tensor | None, lengths: Tensor | Sequence[int] | None, batch: int, max_len: int, device: torch.device
) -> tuple[Tensor | None, Tensor | None, bool]:
    """Combine ``mask``/``lengths`` into (mask (B, T) on device or None, lengths (B,) CPU or None,
    prefix). ``prefix`` is True when every row is real steps followed by padding."""
    if mask is not None and lengths is not None:
        raise bad_argument("mask, lengths", "at most one of the two", "both",
                           "pass lengths for right-padded batches, or a mask")
    if lengths is not None:
        lens = check_lengths(lengths, batch, max_len, device)
        return lengths_to_mask(lens, max_len, device), lens, True
    if mask is not None:
        mask = check_mask(mask, batch, max_len, device)
        lens, prefix = mask_to_lengths(mask)
        return mask, lens.cpu(), prefix
    return None, None, True


def flip_padded(x: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse each sequence over its own length, leaving the padding in place. (B, T, *) -> same.

    Applying it twice gives back ``x``.
    """
    if lengths is None:
        return x.flip(1)
    T = x.shape[1]
    steps = torch.arange(T, device=x.device).unsqueeze(0)  # (1, T)
    lens = lengths.to(x.device).unsqueeze(1)  # (B, 1)
    index = torch.where(steps < lens, lens - 1 - steps, steps)  # (B, T)
    index = index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x)
    return x.gather(1, index)  # (B, T, *)
