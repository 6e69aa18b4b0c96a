"""Per-row resets on the fused backend: ``layer(x, state, reset=...)`` when PyTorch's kernels run it.

The whole call is cut into time segments at the columns where some row resets
(``rnnkit.engine.reset``); each segment runs PyTorch's native kernel and, between segments,
``torch.where`` puts zeros (the layers' initial state) in the rows that restart, in every layer.

* A unidirectional stack runs whole per segment: layer l at step t reads only layer l - 1 at
  steps <= t, so cutting time does not change any value.
* A bidirectional stack runs layer by layer, each direction alone; the backward direction reads
  each row flipped over its own length, with the flipped reset of
  :func:`rnnkit.engine.reset.flip_reset`.

The generic backend takes resets inside the engine, per (layer, direction). ``layer.plan(x,
reset=...)`` names the segments (:func:`plan_resets`).
"""
from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.engine.bptt import BPTT
from rnnkit.engine.dispatch import Plan
from rnnkit.engine.fused import run_fused
from rnnkit.engine.masks import flip_padded, lengths_to_mask
from rnnkit.engine.reset import flip_reset, restart, segment_starts, truncation_cuts
from rnnkit.layers import regularised

__all__ = ["fused_segments", "fused_with_resets", "plan_resets", "plan_step_reset"]


def fused_segments(
    kind: str, x: Tensor, hx: tuple[Tensor, ...], weights: list[Tensor], *, has_biases: bool, num_layers: int,
    dropout: float, training: bool, lengths: Tensor | None, reset: Tensor,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """A unidirectional stack on the native kernel with resets: x (B, T, F) -> (y (B, T, H), finals (L, B, H)).

    ``reset`` (B, T) bool: rows restart from zeros before the marked steps; ``lengths`` (B,) CPU or None.
    """
    T = x.shape[1]
    starts = segment_starts(reset)
    ys: list[Tensor] = []
    state = hx
    for a, b in zip(starts, [*starts[1:], T]):
        if a > 0 or bool(reset[:, 0].any()):
            state = restart(state, reset[:, a], batch_dim=1)  # zeros in the restarting rows
        seg, empty = None, None
        if lengths is not None:
            steps = (lengths - a).clamp(0, b - a)  # (B,) real steps of each row in this segment
            if int(steps.min()) < b - a:
                empty = (steps == 0).to(x.device)
                seg = steps.clamp(min=1)  # the kernel needs one step; those rows are put back below
        y, new = run_fused(kind, x[:, a:b], state, weights, has_biases=has_biases, num_layers=num_layers,
                           dropout=dropout, training=training, bidirectional=False, lengths=seg)
        if empty is not None and bool(empty.any()):
            y = torch.where(empty.view(-1, 1, 1), y.new_zeros(()), y)  # (B, b - a, H): padding reads zero
            new = restart(new, empty, state, batch_dim=1)  # a row with no real step keeps its state
        ys.append(y)
        state = new
    return torch.cat(ys, dim=1), state  # (B, T, H), (L, B, H) each


def fused_with_resets(layer, x: Tensor, hx: tuple[Tensor, ...], lengths: Tensor | None,  # type: ignore[no-untyped-def]
                      reset: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``layer`` (an ``rnnkit.RNN/LSTM/GRU``) on the fused kernels with ``reset`` (B, T).

    x in the layer's layout, hx (L*D, B, H) each; returns (y in the layer's layout, finals).
    """
    cfg = layer.config
    xb = x if cfg.batch_first else x.transpose(0, 1)  # (B, T, F)
    weights = regularised.fused_weights(layer)  # weight-dropped in training with weight_drop
    common = dict(has_biases=cfg.bias, training=layer.training)
    if not cfg.bidirectional:
        y, finals = fused_segments(layer.fused_kind, xb, hx, weights, num_layers=cfg.num_layers,
                                   dropout=cfg.dropout, lengths=lengths, reset=reset, **common)
    else:
        y, finals = _bidirectional(layer, xb, hx, weights, lengths, reset, common)
    return (y if cfg.batch_first else y.transpose(0, 1)), finals


def _bidirectional(layer, x: Tensor, hx: tuple[Tensor, ...], weights: list[Tensor],  # type: ignore[no-untyped-def]
                   lengths: Tensor | None, reset: Tensor, common: dict) -> tuple[Tensor, tuple[Tensor, ...]]:
    """Layer by layer, each direction alone on the native kernel; x (B, T, F) -> (B, T, 2H)."""
    cfg = layer.config
    per = len(weights) // (2 * cfg.num_layers)  # weights of one direction
    backward_reset = flip_reset(reset, lengths)
    finals: list[list[Tensor]] = [[] for _ in hx]
    inp = x
    for index in range(cfg.num_layers):
        outs = []
        for d in range(2):
            k = index * 2 + d
            h = tuple(s[k:k + 1] for s in hx)  # (1, B, H)
            src = inp if d == 0 else flip_padded(inp, lengths)
            y, f = fused_segments(layer.fused_kind, src, h, weights[k * per:(k + 1) * per], num_layers=1,
                                  dropout=0.0, lengths=lengths, reset=reset if d == 0 else backward_reset, **common)
            outs.append(y if d == 0 else flip_padded(y, lengths))  # (B, T, H) in time order
            for i, value in enumerate(f):
                finals[i].append(value)
        inp = torch.cat(outs, dim=2)  # (B, T, 2H)
        if cfg.dropout and layer.training and index < cfg.num_layers - 1:
            inp = F.dropout(inp, cfg.dropout, training=True)
    return inp, tuple(torch.cat(f, dim=0) for f in finals)  # (L*2, B, H) each


# ---------------------------------------------------------------- what layer.plan(..., reset=...) shows
def plan_resets(layer, plan: Plan, reset: Tensor | None, lengths: Tensor | None, mask: Tensor | None,  # type: ignore[no-untyped-def]
                bptt: BPTT | None) -> Plan:
    """``plan`` with what a checked ``reset`` (B, T) does to the call, as ``forward`` runs it: the
    rows that restart at step 0 and the segments time is cut into (the "resets" reason, and the
    loop reason when the kernels run once per segment). ``lengths`` (B,) CPU or None."""
    if reset is None:
        return plan
    T = reset.shape[1]
    parts, loop = [], plan.reason("loop")
    if bool(reset[:, 0].any()):
        parts.append(f"{_rows(reset[:, 0])} from zeros at step 0 (the incoming state is dropped)")
    if not bool(reset[:, 1:].any()):
        parts.append("no cut in time")
        return _with(plan, "; ".join(parts), loop)
    events, truncated = reset, ""
    if not plan.fused and bptt is not None and bptt.truncate:
        real = mask if mask is not None or lengths is None else lengths_to_mask(lengths, T, reset.device)
        events = reset | truncation_cuts(bptt.truncate, reset, real)
        truncated = f" and every {bptt.truncate} real steps of a row since its restart (BPTT truncate)"
    starts = segment_starts(events)
    later = reset[:, 1:].any(1)
    parts.append(f"{_rows(later)} from zeros later: time is cut where some row restarts{truncated}, "
                 f"into {len(starts)} segments {_spans(starts, T)}")
    if plan.fused and layer.config.bidirectional:
        back = len(segment_starts(flip_reset(reset, lengths)))
        parts.append(f"the reverse direction reads each row backwards from its last real step, in {back} segments")
        loop = "PyTorch's kernel runs each layer and each direction alone, once per segment"
    elif plan.fused:
        loop = "PyTorch's multi-layer kernel runs once per segment"
    else:
        if layer.config.bidirectional:
            parts.append("the reverse direction runs the same restarts backwards"
                         + (" (its own truncation cuts)" if truncated else ""))
        loop += "; once per segment, in each layer and direction"
    return _with(plan, "; ".join(parts), loop)


def plan_step_reset(plan: Plan, reset: Tensor) -> Plan:
    """A step plan with the rows a checked step ``reset`` (B,) restarts."""
    if not bool(reset.any()):
        return plan
    return _with(plan, f"{_rows(reset)} from zeros before the step", plan.reason("loop"))


def _with(plan: Plan, resets: str, loop: str) -> Plan:
    reasons = tuple((k, loop if k == "loop" else v) for k, v in plan.reasons)
    return replace(plan, reasons=(*reasons, ("resets", resets)))


def _rows(flags: Tensor) -> str:
    """'row 2 restarts', 'rows 0, 2 restart' (the first 8 rows, then the count) of a bool (B,)."""
    idx = flags.nonzero().flatten().tolist()
    if len(idx) == 1:
        return f"row {idx[0]} restarts"
    shown = ", ".join(str(i) for i in idx[:8])
    return f"rows {shown}" + (f", ... ({len(idx)} rows)" if len(idx) > 8 else "") + " restart"


def _spans(starts: list[int], T: int) -> str:
    """'[0, 4) [4, 9) [9, 12)' (the first 8, then the count)."""
    spans = [f"[{a}, {b})" for a, b in zip(starts, [*starts[1:], T])]
    return " ".join(spans[:8]) + (f" ... ({len(spans)} segments)" if len(spans) > 8 else "")
