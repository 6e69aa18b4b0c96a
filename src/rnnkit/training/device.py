"""Where a run computes: ``--device auto|cpu|cuda|cuda:N`` for train, eval and sample.

``auto`` means the GPU (``cuda``, or the rank's own ``cuda:LOCAL_RANK`` under torchrun) when
CUDA is available, else the CPU. A device that is not there is refused with the fix, before
anything is built. :func:`to_device` moves a batch, a tensor or a tuple of tensors (a carried
LSTM state) there.

Example:
    >>> check_device_spec("cuda:1"), check_device_spec("auto")
    ('cuda:1', 'auto')
    >>> resolve_device("cpu")
    device(type='cpu')
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import torch

from rnnkit.errors import bad_argument

__all__ = ["DEVICE_CHOICES", "check_device_spec", "resolve_device", "to_device"]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
_SPEC = re.compile(r"auto|cpu|cuda(:\d+)?")


def check_device_spec(spec: Any, argument: str = "device") -> str:
    """``spec`` if it is a device name this module understands, else ValueError naming ``argument``."""
    if not isinstance(spec, str) or not _SPEC.fullmatch(spec):
        raise bad_argument(argument, DEVICE_CHOICES, spec, "pass e.g. --device cpu or --device cuda:0")
    return spec


def resolve_device(spec: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The torch.device ``spec`` names; ``auto``/None: ``cuda:local_rank`` when CUDA is available, else CPU.

    Raises ValueError when CUDA (or that GPU) is not available.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    spec = check_device_spec("auto" if spec is None else spec)
    if spec == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise bad_argument("device", "a device this machine has (no CUDA GPU is available here)", spec,
                           "pass --device cpu (or auto)")
    index = int(spec.split(":")[1]) if ":" in spec else local_rank
    count = torch.cuda.device_count()
    if index >= count:
        raise bad_argument("device", f"cuda:0 to cuda:{count - 1} ({count} GPU(s) here)", spec,
                           "pass an index below the GPU count, or cuda / auto")
    return torch.device("cuda", index)


def to_device(value: Any, device: torch.device) -> Any:
    """``value`` (a tensor, a tuple/list of them, a dataclass of them such as a Batch, nested, or None) on ``device``."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True) if value.device != device else value
    if isinstance(value, (tuple, list)):
        return type(value)(to_device(v, device) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: to_device(getattr(value, f.name), device) for f in dataclasses.fields(value)
                   if isinstance(getattr(value, f.name), (torch.Tensor, tuple, list))
                   or _is_instance_of_dataclass(getattr(value, f.name))}  # e.g. a PairBatch's padded pairs
        return dataclasses.replace(value, **changes) if changes else value
    return value


def _is_instance_of_dataclass(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)
