"""Recurrent regularisers for every cell: variational dropout, zoneout and DropConnect.

:class:`Regularisers` is what a user sets (on a layer, or per call on a cell's ``scan``);
:meth:`Regularisers.draw` turns it into :class:`Masks` for one call, drawn from torch's RNG
(so a seeded run repeats exactly). The engine applies the masks on its fast loop:

* **input dropout** (Gal & Ghahramani 2016): one mask per sequence on the input features, the
  same at every step. It acts before the recurrence (layers: on each layer's input, before the
  projection; a cell's ``scan``: on its input sequences).
* **recurrent dropout** (Gal & Ghahramani 2016): one mask per sequence on the state that feeds
  the recurrent matmul, ``hw_t = (h_{t-1} * m) W^T + b``; the state itself, the outputs and the
  cell's pointwise math see the unmasked ``h``. ``Structured`` cells only (one recurrent matmul).
* **zoneout** (Krueger et al. 2017): per step and unit, every state keeps its previous value
  with probability p, ``s_t = a_t s_new + (1 - a_t) s_{t-1}`` with ``a_t ~ Bernoulli(1 - p)``;
  in eval mode ``a_t = 1 - p`` (the expectation). Any cell.
* **weight drop** (DropConnect on W_hh, as in AWD-LSTM, Merity et al. 2017): one mask on the
  recurrent matrix per forward call; gradients reach only the kept weights. ``Structured`` cells.

Dropout masks are scaled by 1/(1-p) (inverted dropout, as ``F.dropout``). In eval mode the
dropouts are the identity; zoneout is its expectation. Every p = 0 is exactly the plain cell.

    >>> import torch, rnnkit
    >>> reg = rnnkit.Regularisers(recurrent_dropout=0.25, zoneout=0.1)
    >>> cell = rnnkit.cells.GRUCell(8)
    >>> h = cell(torch.randn(2, 5, 24), regularisers=reg)      # (B, T, H)
    >>> tuple(h.shape)
    (2, 5, 8)
"""
from __future__ import annotations

import itertools
import numbers
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.errors import bad_argument, describe

__all__ = ["Masks", "Regularisers", "wrap_step"]


@dataclass(frozen=True)
class Regularisers:
    """Recurrent regularisers (probabilities; 0 switches one off). See the module docstring.

    ``input_dropout``, ``recurrent_dropout``, ``weight_drop`` in [0, 1); ``zoneout`` in [0, 1]
    (1 keeps the initial state).

        >>> Regularisers(zoneout=0.1).inside(training=False)
        'zoneout (each state keeps its previous value with p = 0.1; eval mode uses the expectation)'
    """

    input_dropout: float = 0.0
    recurrent_dropout: float = 0.0
    zoneout: float = 0.0
    weight_drop: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            top = 1.0 if f.name == "zoneout" else 0.999999
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= top:
                interval = "[0, 1]" if f.name == "zoneout" else "[0, 1)"
                raise bad_argument(f.name, f"a probability in {interval}", describe(value),
                                   f"use e.g. {f.name}=0.1, or 0 to switch it off")
            object.__setattr__(self, f.name, float(value))

    @property
    def active(self) -> bool:
        """True when any regulariser is on (p > 0)."""
        return any(getattr(self, f.name) > 0 for f in fields(self))

    def inside(self, training: bool) -> str | None:
        """Why this call's recurrence differs from the plain cell's (None: it does not). Names
        what the fused kernels cannot do and what keeps the generic engine off its whole-sequence
        C loop."""
        parts = []
        if training and self.recurrent_dropout:
            parts.append(f"recurrent dropout (p = {self.recurrent_dropout:g} on the state feeding the recurrent matmul)")
        if self.zoneout:
            parts.append(f"zoneout (each state keeps its previous value with p = {self.zoneout:g}"
                         + ("" if training else "; eval mode uses the expectation") + ")")
        return " and ".join(parts) or None

    def check_cell(self, cell: Any) -> None:
        """Recurrent dropout and weight drop need one recurrent matmul: a ``Structured`` cell."""
        from rnnkit.steps.structured import StructuredStep

        for name in ("recurrent_dropout", "weight_drop"):
            if getattr(self, name) and not isinstance(cell, StructuredStep):
                raise bad_argument(name, "0 for a cell without one recurrent matrix (not a rnnkit.Structured cell)",
                                   f"{getattr(self, name)} with {type(cell).__name__}",
                                   "subclass rnnkit.Structured, or use zoneout / input_dropout")

    def input_mask(self, batch: int, shape: tuple[int, ...], like: Tensor, training: bool) -> Tensor | None:
        """One input-dropout mask per sequence, (B, *shape), scaled; None when off."""
        if not (training and self.input_dropout):
            return None
        return _bernoulli((batch, *shape), self.input_dropout, like)

    def weight_mask(self, weight: Tensor, training: bool) -> Tensor | None:
        """One DropConnect mask for ``weight`` (its shape, scaled); None when off."""
        if not (training and self.weight_drop):
            return None
        return _bernoulli(tuple(weight.shape), self.weight_drop, weight)

    def draw(self, cell: Any, batch: int, steps: int, like: Tensor, training: bool) -> Masks | None:
        """This call's masks for ``cell`` over B = ``batch`` rows and T = ``steps`` steps (None
        when nothing acts on the recurrence). Draw order: state, zoneout per state, weight."""
        self.check_cell(cell)
        masks = Masks()
        if training and self.recurrent_dropout:
            masks.state = _bernoulli((batch, *cell.state_shape(cell.recurrent_state)), self.recurrent_dropout, like)
        if self.zoneout:
            keep = 1.0 - self.zoneout
            masks.zone = tuple(_keep_mask((steps, batch, *cell.state_shape(name)), keep, like) if training else keep
                               for name in cell.states)  # (T, B, *shape) in time order: 1 takes the new value
        masks.weight = self.weight_mask(cell.weight, training)
        return masks if masks.any else None


@dataclass
class Masks:
    """One call's drawn masks (see :meth:`Regularisers.draw`). All optional.

    ``state`` (B, H): multiplies the state feeding the recurrent matmul (scaled by 1/(1-p)).
    ``zone``: per state, the weight of the new value, (T, B, *shape) of 0/1 in time order
    (training) or the float 1 - p (eval); None for no zoneout on that state.
    ``weight`` (G, H): multiplies the recurrent matrix (scaled by 1/(1-p)).
    """

    state: Tensor | None = None
    zone: tuple[Tensor | float | None, ...] = ()
    weight: Tensor | None = None

    def window(self, start: int, stop: int) -> Masks:
        """These masks for the time steps [start, stop) (a segment between resets)."""
        zone = tuple(z if z is None or isinstance(z, float) else z[start:stop] for z in self.zone)
        return Masks(self.state, zone, self.weight)

    @property
    def any(self) -> bool:
        return self.state is not None or self.weight is not None or self.zoned

    @property
    def zoned(self) -> bool:
        return any(z is not None for z in self.zone)

    @property
    def step_loop(self) -> bool:
        """True when the masks act between steps (the whole-sequence C loop cannot apply them)."""
        return self.state is not None or self.zoned


def _keep_mask(shape: tuple[int, ...], keep: float, like: Tensor) -> Tensor:
    """1 with probability ``keep``, else 0, in like's dtype and device: a uniform draw compared in
    place, half the time of ``bernoulli_`` on CPU (the zoneout masks are (T, B, H) per state, so
    their draw is a visible part of zoneout's cost). Half-precision draws go through float32."""
    dtype = torch.float32 if like.dtype in (torch.float16, torch.bfloat16) else like.dtype
    return torch.empty(shape, dtype=dtype, device=like.device).uniform_().lt_(keep).to(like.dtype)


def _bernoulli(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """A 0 / (1/(1-p)) mask from torch's RNG, in like's dtype and device."""
    return like.new_empty(shape).bernoulli_(1.0 - p).div_(1.0 - p)


def wrap_step(cell: Any, masks: Masks, steps: int, reverse: bool, weight: Tensor | None = None,
              bias: Tensor | None = None) -> Callable[..., Any]:
    """A ``step`` for the step-wise engine that applies ``masks`` (the reference form of the fast
    loop's regularisers; it also serves the double backward).

    ``weight``/``bias``: the recurrent matrix to use (already weight-dropped) for a
    ``Structured`` cell; None: the cell's own. Zoneout mixes every zoned state with its previous
    value; steps are counted in processing order (``reverse`` runs t = T-1 .. 0).
    """
    base = cell.step
    if masks.state is not None or weight is not None:
        W = cell.weight if weight is None else weight
        b = cell.bias if weight is None else bias
        rec, m = cell.recurrent_state, masks.state

        def base(inputs: Tensor, **state: Tensor) -> Any:  # noqa: F811 (the masked matmul)
            h = state[rec] if m is None else state[rec] * m
            return cell.pointwise(inputs=inputs, hw=F.linear(h, W, b), **state)

    if not masks.zoned:
        return base
    counter = itertools.count()
    names = cell.output_names

    def step(**kw: Tensor) -> tuple[Tensor, ...]:
        k = next(counter)
        t = steps - 1 - k if reverse else k
        out = list(cell.pack_outputs(base(**kw)))
        for name, z in zip(cell.states, masks.zone):
            if z is not None:
                i = names.index(name)
                out[i] = torch.lerp(kw[name], out[i], z if isinstance(z, float) else z[t])
        return tuple(out)

    return step
