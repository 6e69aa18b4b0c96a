"""The Blocks-style call convention: sort a call's arguments by the cell's declarations, or run one step.

``cell(x, h=h0)`` and ``cell.scan(...)`` take sequences positionally (in ``sequences`` order) or by
name, and initial states and contexts by name; :func:`bind` sorts them. ``iterate=False`` runs a
single step (:func:`single_step`), Blocks' semantics.

    >>> import torch
    >>> from rnnkit.steps import ElmanStep
    >>> cell = ElmanStep(3)
    >>> seqs, states, contexts = bind(cell, (torch.ones(2, 4, 3),), {"h": torch.zeros(2, 3)}, None, None)
    >>> sorted(seqs), sorted(states), contexts
    (['inputs'], ['h'], {})
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from rnnkit.errors import bad_argument
from rnnkit.steps.base import RecurrentStep

__all__ = ["bind", "single_step"]


def bind(
    cell: RecurrentStep,
    positional: tuple[Tensor, ...],
    named: Mapping[str, Tensor],
    initial_states: Mapping[str, Tensor] | None,
    contexts: Mapping[str, Tensor] | None,
) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
    """Sort positional and named arguments into sequences, initial states and contexts."""
    cell.check_declarations()
    cls = type(cell).__name__
    if len(positional) > len(cell.sequences):
        raise bad_argument(
            f"{cls}(*sequences)", f"at most {len(cell.sequences)} positional sequences "
            f"{cell.sequences}", f"{len(positional)} positional arguments",
            "pass states and contexts by name",
        )
    seqs = dict(zip(cell.sequences, positional))
    states0 = dict(initial_states or {})
    ctx = dict(contexts or {})
    for key, value in named.items():
        if key in cell.sequences:
            if key in seqs:
                raise TypeError(f"{cls}: sequence {key!r} was given twice")
            seqs[key] = value
        elif key in cell.states:
            states0[key] = value
        elif key in cell.contexts:
            ctx[key] = value
        else:
            raise TypeError(
                f"{cls}: unexpected argument {key!r}; the cell declares sequences "
                f"{cell.sequences}, states {cell.states} and contexts {cell.contexts}"
            )
    missing = [s for s in cell.sequences if s not in seqs]
    if missing:
        raise bad_argument(
            f"{cls}(...)", f"every declared sequence {cell.sequences}",
            f"no value for {missing}", "pass each sequence positionally or by name",
        )
    missing_ctx = [c for c in cell.contexts if c not in ctx]
    if missing_ctx:
        raise bad_argument(
            f"{cls}(...)", f"every declared context {cell.contexts}",
            f"no value for {missing_ctx}", "pass each context by name",
        )
    return seqs, states0, ctx


def single_step(
    cell: RecurrentStep, sequences: tuple[Tensor, ...], named: Mapping[str, Tensor], mask: Tensor | None,
    reset: Tensor | None = None,
) -> Tensor | tuple[Tensor, ...]:
    """One step (``iterate=False``); rows where ``mask`` (B,) is False keep their state, rows where
    ``reset`` (B,) is True start from their initial state."""
    seqs, states0, ctx = bind(cell, sequences, named, None, None)
    batch = next(iter(seqs.values()))
    B = batch.shape[0]
    for name in cell.states:
        if name not in states0:
            states0[name] = cell.initial_state(name, B, batch)
    if reset is not None:
        if not isinstance(reset, Tensor) or reset.dtype != torch.bool or tuple(reset.shape) != (B,):
            raise bad_argument("reset", f"a bool tensor (B,) = ({B},) for one step, True where a row restarts",
                               reset, "pass one flag per row, e.g. torch.tensor([True, False])")
        rows = reset.to(batch.device)
        for name in cell.states:
            value = states0[name]
            m = rows.view(-1, *([1] * (value.dim() - 1)))  # (B, 1, ...)
            states0[name] = torch.where(m, cell.initial_state(name, B, batch), value)
    result = cell.step(**seqs, **states0, **ctx)
    if mask is None:
        return result
    if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
        raise bad_argument("mask", "a bool tensor (B,), True where a row takes the step", mask,
                           "pass e.g. lengths > t for step t")
    if tuple(mask.shape) != (B,):
        raise bad_argument("mask", f"shape (B,) = ({B},) for a single step", mask,
                           "pass one flag per batch row (a scan takes a (B, T) mask)")
    outs = cell.pack_outputs(result)
    kept = []
    for name, value in zip(cell.output_names, outs):
        m = mask.to(value.device).view(-1, *([1] * (value.dim() - 1)))  # (B, 1, ...)
        old = states0[name] if name in cell.states else value.new_zeros(())
        kept.append(torch.where(m, value, old))
    return kept[0] if len(kept) == 1 else tuple(kept)
