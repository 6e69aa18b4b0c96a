"""What the engine returns for one cell run over time: :class:`Scan`.

    >>> import torch
    >>> result = Scan(outputs={"h": torch.zeros(2, 5, 3)}, final={"h": torch.zeros(2, 3)})
    >>> tuple(result.outputs["h"].shape), tuple(result.final["h"].shape)   # (B, T, H), (B, H)
    ((2, 5, 3), (2, 3))
"""
from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["Scan"]


class Scan(NamedTuple):
    """What the engine returns for one cell run over time.

    ``outputs`` maps each declared output to a (B, T, *shape) tensor (T + 1 steps for states when
    ``return_initial_states`` is set); ``final`` maps each state to its value after the last real
    step of every sequence, (B, *shape).
    """

    outputs: dict[str, Tensor]
    final: dict[str, Tensor]
