"""Per-row state resets inside a call: ``reset`` (B,) or (B, T) restarts chosen rows at chosen steps.

``reset[b, t]`` True means row b starts a new sequence AT step t: before it consumes ``x[b, t]``
its state is replaced by the initial state (zeros, or the cell's learned initial state), so no
value and no gradient crosses the reset. A (B,) reset is the same as a (B, T) one that is True
only at t = 0: the rows' incoming state is dropped, as if the call started them fresh.

Time is cut into segments between the columns where some row resets (and, with
``BPTT(truncate=k)``, where some row's gradient block ends); each segment runs on the usual
backend (fused, compiled or autograd) and, at each boundary, ``torch.where`` swaps in the fresh
state for the rows that reset. With sparse resets this costs a few extra kernel launches
(BENCHMARKS.md, "Streaming resets"); a reset in every column degrades to one step per call.

A reverse (backward) scan obeys the same segments: a reset at t ends the segment before it, so
the backward direction starts fresh at step t - 1; ``reset[:, 0]`` drops the incoming state in
both directions. A reset at a padded step still restarts the row (the state carried through the
padding, and the final state, are the fresh one).

    >>> import torch, rnnkit
    >>> cell = rnnkit.cells.GRUCell(4)
    >>> x = torch.randn(2, 6, 3 * 4)                     # (B, T, 3H): a GRU cell's projected input
    >>> reset = torch.zeros(2, 6, dtype=torch.bool)
    >>> reset[0, 3] = True                               # row 0 starts over at step 3
    >>> out = rnnkit.engine.scan(cell, {"inputs": x}, reset=reset).outputs["h"]
    >>> fresh = rnnkit.engine.scan(cell, {"inputs": x[:1, 3:]}).outputs["h"]
    >>> torch.allclose(out[:1, 3:], fresh, atol=1e-6)
    True
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping

import torch
from torch import Tensor

from rnnkit.engine.bptt import BPTT, GradientTap
from rnnkit.engine.masks import lengths_to_mask
from rnnkit.engine.result import Scan
from rnnkit.errors import bad_argument
from rnnkit.steps.base import RecurrentStep

__all__ = ["check_reset", "check_step_reset", "flip_reset", "restart", "run_cell_reset", "segment_starts", "truncation_cuts"]


def check_reset(reset: Tensor | None, batch: int, steps: int, device: torch.device) -> Tensor | None:
    """Validate a user ``reset`` and return it as bool (B, T) on ``device``, or None if no row resets.

    Accepts a bool tensor (B,) (restart rows at the first step) or (B, T), on the CPU or the
    input's device.

        >>> check_reset(torch.tensor([True, False]), 2, 3, torch.device("cpu")).tolist()
        [[True, False, False], [False, False, False]]
    """
    if reset is None:
        return None
    fix = "pass a bool tensor, e.g. torch.tensor([True, False]) for rows, or (B, T) for steps"
    if not isinstance(reset, Tensor) or reset.dtype != torch.bool:
        raise bad_argument("reset", f"a bool tensor (B,) = ({batch},) or (B, T) = ({batch}, {steps})", reset, fix)
    if tuple(reset.shape) not in ((batch,), (batch, steps)):
        raise bad_argument("reset", f"shape (B,) = ({batch},) or (B, T) = ({batch}, {steps}) to match the input",
                           reset, "one flag per row, or one per row and time step")
    if reset.device.type not in ("cpu", device.type):
        raise bad_argument("reset", f"a tensor on the CPU or on the input's device ({device})", reset,
                           f"move it with reset.to({str(device)!r})")
    reset = reset.to(device)
    if reset.dim() == 1:
        full = torch.zeros(batch, steps, dtype=torch.bool, device=device)
        full[:, 0] = reset
        reset = full  # (B, T)
    return reset if bool(reset.any()) else None


def check_step_reset(reset: Tensor, batch: int, device: torch.device) -> Tensor:
    """Validate the ``reset`` of a single step: bool (B,) -> on ``device``.

        >>> check_step_reset(torch.tensor([False, True]), 2, torch.device("cpu")).tolist()
        [False, True]
    """
    if not isinstance(reset, Tensor) or reset.dtype != torch.bool or tuple(reset.shape) != (batch,):
        raise bad_argument("reset", f"a bool tensor (B,) = ({batch},) for one step, True where a row restarts",
                           reset, "pass one flag per row, e.g. torch.tensor([True, False])")
    if reset.device.type not in ("cpu", device.type):
        raise bad_argument("reset", f"a tensor on the CPU or on the input's device ({device})", reset,
                           f"move it with reset.to({str(device)!r})")
    return reset.to(device)


def restart(states: tuple[Tensor, ...], rows: Tensor, fresh: tuple[Tensor, ...] | None = None,
            batch_dim: int = 0) -> tuple[Tensor, ...]:
    """``states`` with the rows where ``rows`` (B,) is True replaced by ``fresh`` (zeros if None).

    ``batch_dim`` is the batch axis of the states (0 for a cell's (B, *), 1 for a layer's (L*D, B, H)).
    """
    out = []
    for i, s in enumerate(states):
        shape = [1] * s.dim()
        shape[batch_dim] = -1
        m = rows.to(s.device).view(shape)  # broadcasts over every other axis
        new = s.new_zeros(()) if fresh is None else fresh[i]
        out.append(torch.where(m, new, s))
    return tuple(out)


def segment_starts(events: Tensor) -> list[int]:
    """Sorted columns (always 0 first) where some row of ``events`` (B, T) is True."""
    cols = events[:, 1:].any(0).nonzero().flatten().add(1).tolist()  # one host sync for the call
    return [0, *cols]


def truncation_cuts(k: int, restarts: Tensor, mask: Tensor | None) -> Tensor:
    """(B, T) bool in processing order: rows detached before a step, as ``BPTT(truncate=k)`` does.

    A row's real steps are counted from its last restart (a restarted row is a fresh sequence),
    and the row is cut before real step j when j > 0 and j % k == 0 (the engines' rule).
    """
    real = torch.ones_like(restarts) if mask is None else mask
    done = real.long().cumsum(1) - real.long()  # (B, T) real steps before each step
    base = torch.where(restarts, done, torch.zeros_like(done)).cummax(1).values  # done at the last restart
    since = done - base
    return real & (since > 0) & (since % k == 0)


def flip_reset(reset: Tensor, lengths: Tensor | None) -> Tensor:
    """The reset (B, T) of a backward pass that reads each row flipped over its own length.

    A reset at t ends the segment before it, so reading backwards the row restarts before the
    flipped position of t - 1; a reset at 0, or inside the padding, drops the incoming state.
    Used where a layer runs on ``flip_padded(x, lengths)`` (``rnnkit.Bidirectional`` and the
    fused bidirectional path); the result is in the flipped positions, False on the padding.

        >>> r = torch.tensor([[False, False, True, False]])
        >>> flip_reset(r, None).tolist()    # cut before t=2; flipped, t=1 sits at position 2
        [[False, False, True, False]]
    """
    B, T = reset.shape
    lens = torch.full((B,), T, dtype=torch.int64) if lengths is None else lengths.to("cpu", torch.int64)
    real = lengths_to_mask(lens, T, reset.device)  # (B, T)
    tail = reset[:, 0] | (reset & ~real).any(1)  # the incoming state is dropped
    shifted = torch.cat([reset[:, 1:], reset.new_zeros(B, 1)], dim=1) & real  # reset[b, t + 1]
    last = (lens - 1).clamp(min=0).to(reset.device).unsqueeze(1)  # (B, 1)
    shifted = shifted.scatter(1, last, tail.unsqueeze(1))
    from rnnkit.engine.masks import flip_padded

    return flip_padded(shifted.unsqueeze(-1), lens).squeeze(-1)  # (B, T)


class _ShiftedTap(GradientTap):
    """Forwards one segment's records to the call's tap, at the segment's offset in time."""

    def __init__(self, tap: GradientTap, offset: int) -> None:
        super().__init__()
        self.tap, self.offset = tap, offset

    def _start(self, key: str, steps: int) -> None:  # the call's record was started once
        pass

    def _record(self, key: str, t: int, grad: Tensor) -> None:
        self.tap._record(key, t + self.offset, grad)


def run_cell_reset(
    run: Callable[..., Scan],
    cell: RecurrentStep,
    sequences: Mapping[str, Tensor],
    states: Mapping[str, Tensor],
    fresh: Mapping[str, Tensor],
    reset: Tensor,
    *,
    mask: Tensor | None,
    reverse: bool,
    return_initial_states: bool = False,
    bptt: BPTT | None = None,
    scope: str = "",
    **engine: object,
) -> Scan:
    """Run ``cell`` with per-row resets, segment by segment, on ``run`` (``rnnkit.engine.run_cell``).

    sequences (B, T, *), states and fresh (B, *), reset (B, T) bool in time order (see the
    module docstring for the reverse direction). ``engine`` goes to ``run`` unchanged (contexts,
    plan). Returns the ``Scan`` the whole call would, in time order.
    """
    bptt = bptt or BPTT()
    first = next(iter(sequences.values()))
    T = first.shape[1]
    names = list(cell.states)
    if reverse:  # restart before consuming x[t] reading backwards: at t - 1 for a reset at t
        restarts = torch.cat([reset[:, 1:], reset[:, :1]], dim=1)  # reset[:, 0] at T - 1, the entry
    else:
        restarts = reset
    cuts = None
    if bptt.truncate:
        order = (lambda m: m.flip(1)) if reverse else (lambda m: m)
        cuts = order(truncation_cuts(bptt.truncate, order(restarts), None if mask is None else order(mask)))
    events = restarts if cuts is None else restarts | cuts
    starts = segment_starts(events.flip(1) if reverse else events)
    bounds = [(s, e) for s, e in zip(starts, [*starts[1:], T])]
    if reverse:
        bounds = [(T - e, T - s) for s, e in bounds]  # time slices, processed from the last one
    if bptt.tap is not None:
        for name in names:
            bptt.tap._start(f"{scope}/{name}", T)
    inner = replace(bptt, truncate=None)
    state = tuple(states[n] for n in names)
    fresh_t = tuple(fresh[n] for n in names) if fresh else None  # None: zeros
    pieces: list[dict[str, Tensor]] = []
    entry: tuple[Tensor, ...] | None = None
    for a, b in bounds:
        col = b - 1 if reverse else a
        if cuts is not None and bool(cuts[:, col].any()):
            state = tuple(torch.where(cuts[:, col].view(-1, *[1] * (s.dim() - 1)), s.detach(), s) for s in state)
        if bool(restarts[:, col].any()):
            state = restart(state, restarts[:, col], fresh_t)
        if entry is None:
            entry = state
        seg_bptt = inner if bptt.tap is None else replace(inner, tap=_ShiftedTap(bptt.tap, a))
        extra = engine
        if engine.get("regularise") is not None:  # the call's masks, zoneout's cut to this segment
            extra = {**engine, "regularise": engine["regularise"].window(a, b)}  # type: ignore[attr-defined]
        result = run(cell, {k: v[:, a:b] for k, v in sequences.items()}, dict(zip(names, state)),
                     mask=None if mask is None else mask[:, a:b], reverse=reverse, bptt=seg_bptt, scope=scope,
                     **extra)
        pieces.append(result.outputs)
        state = tuple(result.final[n] for n in names)
    if reverse:
        pieces.reverse()
    outputs = {k: torch.cat([p[k] for p in pieces], dim=1) for k in pieces[0]}  # (B, T, *)
    if return_initial_states and entry is not None:
        for n, value in zip(names, entry):
            parts = [outputs[n], value.unsqueeze(1)] if reverse else [value.unsqueeze(1), outputs[n]]
            outputs[n] = torch.cat(parts, dim=1)  # (B, T + 1, *)
    return Scan(outputs=outputs, final=dict(zip(names, state)))
