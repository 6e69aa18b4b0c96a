"""A model's tensors on their way to and from a safetensors file: unwrapping, tied weights, bytes.

Tied parameters (two names, one tensor) are stored once: ``split_tied`` keeps the first name
of each storage and maps every alias to it, so a load ties them again.

Example:
    >>> import torch
    >>> shared = torch.zeros(2, 3)
    >>> canonical, tied = split_tied({"embed.weight": shared, "head.weight": shared, "bias": torch.zeros(3)})
    >>> sorted(canonical), tied
    (['bias', 'embed.weight'], {'head.weight': 'embed.weight'})
"""
from __future__ import annotations

import json

import safetensors.torch
import torch
from torch import nn

__all__ = ["safetensors_bytes", "split_tied", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _storage_key(tensor: torch.Tensor) -> tuple:
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def split_tied(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a state dict into canonical tensors and tied names (alias -> the first name of the same tensor).

    Tensors on the meta device have no storage to compare, so they are matched by identity.
    """
    canonical: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, tensor in state.items():
        if tensor.is_meta:
            key: tuple | None = ("meta", id(tensor))
        else:
            key = _storage_key(tensor) if tensor.numel() else None
        if key is not None and key in first:
            tied[name] = first[key]
        else:
            canonical[name] = tensor
            if key is not None:
                first[key] = name
    return canonical, tied


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes of ``tensors``; tensors that still overlap in memory are copied apart first."""
    ready: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        ready[name] = tensor
    return _sorted_metadata(safetensors.torch.save(ready, metadata=metadata))


def _sorted_metadata(blob: bytes) -> bytes:
    """``blob`` with its header's metadata map in sorted key order, so equal tensors give equal bytes.

    safetensors writes the ``__metadata__`` map in hash order, which changes from process to
    process. Reordering keys keeps the header's length, so every data offset stays valid.
    """
    size = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + size])
    if "__metadata__" not in header:
        return blob
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(raw) > size:  # a formatting difference: keep safetensors' own bytes rather than guess
        return blob
    return blob[:8] + raw + b" " * (size - len(raw)) + blob[8 + size:]
