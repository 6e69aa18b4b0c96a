"""Backpropagation-through-time options that work for every cell, custom ones included.

* ``truncate=k`` cuts the gradient into blocks of k steps: the state is detached every k steps,
  as in chunked truncated BPTT (Williams & Peng's BPTT(k, k)). The forward pass is unchanged.
* ``clip_value`` / ``clip_norm`` clip dL/d(state_t) *inside* the recurrence, at every step,
  before it flows into step t-1 (by value, or by each example's L2 norm). This is the per-step
  clipping of Graves 2013, distinct from clipping the final parameter gradient.
* ``tap=GradientTap()`` records ||dL/d(state_t)|| at every step during backward: the
  diagnostic that shows gradients vanishing or exploding over time.

    >>> import torch, rnnkit
    >>> from rnnkit.engine import BPTT, GradientTap
    >>> layer = rnnkit.RNN(3, 8)
    >>> tap = GradientTap()
    >>> y, h = layer(torch.randn(2, 20, 3), bptt=BPTT(tap=tap))
    >>> y[:, -1].sum().backward()
    >>> tuple(tap.norms("h").shape)            # one norm per step of layer 0
    (20,)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from rnnkit.errors import bad_argument

__all__ = ["BPTT", "GradientTap"]


class GradientTap:
    """Collects the gradient norm flowing into each step's state during backward.

    After ``loss.backward()``, ``norms(name)`` is a (T,) tensor in time order: entry t is the L2
    norm over the batch of dL/d(state_t). With several layers or directions each scan records
    under its own key, ``"<scope>/<state>"``, e.g. ``"layer1.backward/h"``; ``norms("h")`` reads
    the first scope (layer 0, forward). ``clear()`` empties it for the next batch.
    """

    def __init__(self) -> None:
        self._records: dict[str, dict[int, Tensor]] = {}
        self._lengths: dict[str, int] = {}

    def clear(self) -> None:
        """Forget every record (call it between batches)."""
        self._records.clear()
        self._lengths.clear()

    def _start(self, key: str, steps: int) -> None:
        self._records[key] = {}
        self._lengths[key] = steps

    def _record(self, key: str, t: int, grad: Tensor) -> None:
        self._records[key][t] = grad.detach().double().norm()

    def keys(self) -> list[str]:
        """The recorded keys, ``"<scope>/<state>"``, in the order the scans ran."""
        return list(self._records)

    def norms(self, name: str) -> Tensor:
        """(T,) float64 norms in time order; steps the gradient never reached read 0."""
        key = name if name in self._records else next((k for k in self._records if k.endswith("/" + name)), None)
        if key is None:
            raise KeyError(f"GradientTap has no record {name!r}; it has {self.keys()}")
        out = torch.zeros(self._lengths[key], dtype=torch.float64)
        for t, value in self._records[key].items():
            out[t] = value
        return out


@dataclass(frozen=True)
class BPTT:
    """Options for backpropagation through time; the default is full, unclipped BPTT."""

    truncate: int | None = None  # None: gradients flow through the whole sequence
    clip_value: float | None = None  # None: no per-step clipping by value
    clip_norm: float | None = None  # None: no per-step clipping by each example's L2 norm
    tap: GradientTap | None = field(default=None, compare=False)  # None: no recording

    def __post_init__(self) -> None:
        if self.truncate is not None and (not isinstance(self.truncate, int) or self.truncate < 1):
            raise bad_argument("BPTT.truncate", "None or an int >= 1 (steps per gradient block)",
                               self.truncate, "use e.g. truncate=35")
        for name in ("clip_value", "clip_norm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise bad_argument(f"BPTT.{name}", "None or a positive number", value, f"use e.g. {name}=1.0")

    @property
    def is_default(self) -> bool:
        return self.truncate is None and self.clip_value is None and self.clip_norm is None and self.tap is None

    @property
    def needs_hooks(self) -> bool:
        return self.clip_value is not None or self.clip_norm is not None or self.tap is not None

    def clip(self, grad: Tensor) -> Tensor:
        """Apply the per-step clipping to dL/d(state_t), (B, *shape)."""
        if self.clip_value is not None:
            grad = grad.clamp(-self.clip_value, self.clip_value)
        if self.clip_norm is not None:
            flat = grad.reshape(grad.shape[0], -1)  # (B, prod(shape))
            norm = flat.norm(dim=1).clamp_min(1e-12)
            scale = (self.clip_norm / norm).clamp(max=1.0)  # (B,)
            grad = grad * scale.view(-1, *([1] * (grad.dim() - 1)))
        return grad
