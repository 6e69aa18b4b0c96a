"""The step-wise generic backend: any cell, one ``cell.step`` call per time step.

Autograd records every step, so this path serves every cell and every feature (masks, reverse,
contexts, BPTT truncation, per-step clipping, gradient taps). Structured cells have a faster
path in ``rnnkit.engine.structured``; this one is also its reference in the tests.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import Tensor

from rnnkit.engine.result import Scan
from rnnkit.steps.base import RecurrentStep
from rnnkit.engine.bptt import BPTT

__all__ = ["scan_stepwise"]

StepFn = Callable[..., "Tensor | tuple[Tensor, ...]"]


def _bcast(mask_t: Tensor, like: Tensor) -> Tensor:
    return mask_t.view(-1, *([1] * (like.dim() - 1)))  # (B, 1, ...)


def scan_stepwise(
    cell: RecurrentStep,
    sequences: Mapping[str, Tensor],
    initial_states: Mapping[str, Tensor],
    contexts: Mapping[str, Tensor],
    mask: Tensor | None = None,
    reverse: bool = False,
    return_initial_states: bool = False,
    bptt: BPTT | None = None,
    scope: str = "",
    step: StepFn | None = None,
) -> Scan:
    """Run ``cell`` over the time axis of ``sequences`` (each (B, T, *)), step by step.

    ``step`` replaces ``cell.step`` (same keyword arguments); the double backward of the
    structured loop passes one that takes the recurrent weight as an explicit tensor.

    ``mask`` (B, T) bool marks real steps. ``reverse`` iterates t = T-1 .. 0; with right
    padding that equals running each sequence flipped over its own length. Outputs come back in
    time order; with ``return_initial_states`` every state output has T + 1 entries, the initial
    state standing at index 0 (forward) or index T (reverse), the boundary it belongs to.
    """
    bptt = bptt or BPTT()
    names = cell.output_names
    first = next(iter(sequences.values()))
    T = first.shape[1]
    order = range(T - 1, -1, -1) if reverse else range(T)
    step = step or cell.step
    per_step = {name: list(seq.unbind(1)) for name, seq in sequences.items()}  # T x (B, *)
    masks = mask.unbind(1) if mask is not None else None  # T x (B,)
    state = dict(initial_states)
    collected: dict[str, list[Tensor | None]] = {name: [None] * T for name in names}
    if bptt.tap is not None:
        for name in cell.states:
            bptt.tap._start(f"{scope}/{name}", T)

    # Truncation counts each row's own real steps, so a row's gradient blocks do not depend on
    # the padding of the batch (which, in reverse, is met first).
    done = torch.zeros(first.shape[0], dtype=torch.int64, device=first.device) if bptt.truncate else None
    for k, t in enumerate(order):
        if done is not None:
            real = masks[t] if masks is not None else None
            cut = (done > 0) & (done % bptt.truncate == 0)
            if real is not None:
                cut &= real
            if bool(cut.any()):
                state = {n: torch.where(_bcast(cut, v), v.detach(), v) for n, v in state.items()}
            done += 1 if real is None else real.to(torch.int64)
        inputs = {name: steps[t] for name, steps in per_step.items()}
        result = cell.pack_outputs(step(**inputs, **state, **contexts))
        step_out = dict(zip(names, result))
        m = masks[t] if masks is not None else None
        if m is not None:  # padded step: the state carries over
            state = {n: torch.where(_bcast(m, step_out[n]), step_out[n], state[n]) for n in cell.states}
        else:
            state = {n: step_out[n] for n in cell.states}
        if bptt.needs_hooks:
            state = {n: _hooked(value, bptt, f"{scope}/{n}", t) for n, value in state.items()}
        for name in names:
            value = state[name] if name in state else step_out[name]
            if m is not None:  # padded step: the output is zero
                value = torch.where(_bcast(m, value), value, value.new_zeros(()))
            collected[name][t] = value

    outputs: dict[str, Tensor] = {}
    for name in names:
        seq = torch.stack(collected[name], dim=1)  # type: ignore[arg-type]  # (B, T, *)
        if return_initial_states and name in cell.states:
            init = initial_states[name].unsqueeze(1)  # (B, 1, *)
            seq = torch.cat([seq, init] if reverse else [init, seq], dim=1)  # (B, T+1, *)
        outputs[name] = seq
    return Scan(outputs=outputs, final=state)


def _hooked(value: Tensor, bptt: BPTT, key: str, t: int) -> Tensor:
    """Attach the per-step tap and clip to a state tensor (a fresh view, so hooks stay local)."""
    if not value.requires_grad:
        return value
    value = value.view_as(value)

    def hook(grad: Tensor) -> Tensor:
        if bptt.tap is not None:
            bptt.tap._record(key, t, grad)
        return bptt.clip(grad)

    value.register_hook(hook)
    return value
