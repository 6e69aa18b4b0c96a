"""The engine: runs a cell over time; the one dispatch point between the two backends.

* ``generic`` runs any cell (``rnnkit.engine.generic``; structured cells take a faster loop).
* ``fused`` runs built-in layer configurations on PyTorch's native RNN kernels
  (``rnnkit.engine.fused``).

:func:`rnnkit.engine.dispatch.make_plan` decides between them (and the loop form and dtype
handling of the generic engine) for layers' ``forward`` and ``step`` and for cell scans.

The engine imports the cells' math (``rnnkit.steps``) and nothing above it imports the engine
back: :func:`scan` runs any step over time, :func:`apply` is the Blocks-style call
(``cell(x, h=h0, iterate=False, ...)``) that ``rnnkit.Recurrent`` forwards to, and
:func:`fused_kind` is the engine's own map from a cell to PyTorch's native kernels.
:func:`explain` names what keeps a cell off native code.

    >>> import torch, rnnkit
    >>> cell = rnnkit.steps.ElmanStep(3, activation="identity", weight_init=rnnkit.init.identity())
    >>> apply(cell, torch.ones(1, 3, 3))[0, :, 0].tolist()     # (B, T, H): a pure step, run over time
    [1.0, 2.0, 3.0]
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor

from rnnkit.engine.binding import bind, single_step
from rnnkit.engine.bptt import BPTT, GradientTap
from rnnkit.engine.compiler import explain
from rnnkit.engine.dispatch import ENGINES, Plan, check_engine, make_plan
from rnnkit.engine.general import general_plan, scan_general
from rnnkit.engine.generic import scan_stepwise
from rnnkit.engine.hooks import run_pre_hooks
from rnnkit.engine.kinds import fused_kind
from rnnkit.engine.masks import flip_padded, lengths_to_mask, mask_to_lengths, resolve_mask
from rnnkit.engine.regularise import Masks, Regularisers, wrap_step
from rnnkit.engine.reset import check_reset, run_cell_reset
from rnnkit.engine.result import Scan
from rnnkit.engine.structured import can_run_structured, scan_structured
from rnnkit.errors import bad_argument
from rnnkit.steps.base import RecurrentStep

__all__ = [
    "BPTT", "ENGINES", "GradientTap", "Masks", "Plan", "Regularisers", "Scan", "apply", "call", "explain",
    "flip_padded", "fused_kind", "lengths_to_mask", "make_plan", "mask_to_lengths", "plan_call", "run_cell", "run_pre_hooks", "scan",
]


def apply(
    cell: RecurrentStep,
    *sequences: Tensor,
    mask: Tensor | None = None,
    lengths: Tensor | Sequence[int] | None = None,
    reverse: bool = False,
    return_initial_states: bool = False,
    iterate: bool = True,
    bptt: BPTT | None = None,
    engine: str = "auto",
    reset: Tensor | None = None,
    regularisers: Regularisers | None = None,
    **named: Tensor,
) -> Tensor | tuple[Tensor, ...]:
    """Blocks' ``apply``: run ``cell`` over time and return its declared outputs, (B, T, *shape) each.

    Sequences are (B, T, *shape), given positionally in ``cell.sequences`` order or by name;
    initial states (``h=h0``, (B, *shape)) and contexts are given by name. ``mask`` (B, T) bool
    or ``lengths`` (B,) int mark the real steps. With ``iterate=False`` it computes a single
    step: the sequences are then (B, *shape), missing states start from their initial value,
    and ``mask`` (B,) bool marks the rows that step (the others keep their state, and their
    other outputs are zero, as at a padded step of a scan). ``reset`` bool (B, T) (or (B,) for
    one step) restarts rows from their initial state (``rnnkit.engine.reset``); ``regularisers``
    takes an ``rnnkit.Regularisers``. Calling an ``rnnkit.Recurrent`` cell is this call.
    """
    return call(cell, sequences, named, mask=mask, lengths=lengths, reverse=reverse,
                return_initial_states=return_initial_states, iterate=iterate, bptt=bptt, engine=engine,
                reset=reset, regularisers=regularisers)


def call(
    cell: RecurrentStep,
    sequences: tuple[Tensor, ...],
    named: Mapping[str, Tensor],
    *,
    mask: Tensor | None = None,
    lengths: Tensor | Sequence[int] | None = None,
    reverse: bool = False,
    return_initial_states: bool = False,
    iterate: bool = True,
    initial_states: Mapping[str, Tensor] | None = None,
    contexts: Mapping[str, Tensor] | None = None,
    bptt: BPTT | None = None,
    engine: str = "auto",
    full: bool = False,
    run_hooks: bool = True,
    reset: Tensor | None = None,
    regularisers: Regularisers | Masks | None = None,
) -> Any:
    """:func:`apply` with the arguments already split: ``sequences`` positional (B, T, *shape)
    tensors, ``named`` the by-name ones (sequences, initial states, contexts), so no cell's names
    can clash with the options. ``full=True`` returns the whole :class:`Scan` (every output and
    the final states, (B, *shape) each); ``run_hooks=False`` skips the cell's forward pre-hooks
    (a module call has already run them). ``rnnkit.Recurrent.forward`` and ``.scan`` are this call.
    """
    if not iterate:
        return single_step(cell, sequences, named, mask, reset)
    seqs, states0, ctx = bind(cell, sequences, named, initial_states, contexts)
    result = scan(cell, seqs, initial_states=states0, contexts=ctx, mask=mask, lengths=lengths, reverse=reverse,
                  return_initial_states=return_initial_states, bptt=bptt, engine=engine, run_hooks=run_hooks,
                  reset=reset, regularisers=regularisers)
    if full:
        return result
    outs = tuple(result.outputs[name] for name in cell.output_names)
    return outs[0] if len(outs) == 1 else outs


def scan(
    cell: RecurrentStep,
    sequences: Mapping[str, Tensor],
    *,
    initial_states: Mapping[str, Tensor] | None = None,
    contexts: Mapping[str, Tensor] | None = None,
    mask: Tensor | None = None,
    lengths: Tensor | Sequence[int] | None = None,
    reverse: bool = False,
    return_initial_states: bool = False,
    bptt: BPTT | None = None,
    engine: str = "auto",
    scope: str = "",
    run_hooks: bool = True,
    reset: Tensor | None = None,
    regularisers: Regularisers | Masks | None = None,
    donate: bool = False,
    rebuild: Callable[[], Tensor] | None = None,
) -> Scan:
    """Validate the arguments and run ``cell`` over time (sequences by name). See :func:`apply`.

    ``run_hooks`` runs the cell's forward pre-hooks first (``cell(...)`` has already run them).
    ``reset`` bool (B,) or (B, T) restarts rows from the cell's initial state
    (``rnnkit.engine.reset``).
    ``regularisers``: a :class:`Regularisers` (masks drawn here from torch's RNG, in training
    mode as ``cell.training`` says; input dropout acts on every input sequence) or already drawn
    :class:`Masks`.
    ``donate``/``rebuild``: as in :func:`run_cell` (a layer's own input projection, which
    nothing else reads; ignored with ``reset`` or ``regularisers``).
    """
    name = type(cell).__name__
    if run_hooks:
        run_pre_hooks(cell)
    check_engine(engine)
    if bptt is not None and not isinstance(bptt, BPTT):
        raise bad_argument("bptt", "None or an rnnkit.engine.BPTT", bptt, "pass bptt=BPTT(truncate=..., ...)")
    B, T = _check_sequences(cell, sequences)
    first = next(iter(sequences.values()))
    mask, _, _ = resolve_mask(mask, lengths, B, T, first.device)
    contexts = dict(contexts or {})
    masks, inside = None, None
    if isinstance(regularisers, Regularisers):
        sequences = {k: _drop_inputs(regularisers, v, cell.training) for k, v in sequences.items()}
        masks, inside = regularisers.draw(cell, B, T, first, cell.training), regularisers.inside(cell.training)
    elif isinstance(regularisers, Masks):
        masks, inside = regularisers, ("regularisers" if regularisers.step_loop else None)
    elif regularisers is not None:
        raise bad_argument("regularisers", "None, an rnnkit.Regularisers or rnnkit.engine.Masks", regularisers,
                           "pass regularisers=rnnkit.Regularisers(zoneout=0.1, ...)")
    plan = _cell_plan(engine, cell, sequences, contexts, mask, bptt, scope or name, inside)
    states = _initial_states(cell, initial_states or {}, B, first)
    restarts = check_reset(reset, B, T, first.device)
    if restarts is not None:
        fresh = {n: cell.initial_state(n, B, first) for n in cell.states}
        return run_cell_reset(run_cell, cell, sequences, states, fresh, restarts, mask=mask, reverse=reverse,
                              return_initial_states=return_initial_states, bptt=bptt, scope=scope or name,
                              contexts=contexts, plan=plan, regularise=masks)
    own = donate and regularisers is None
    return run_cell(
        cell, sequences, states, contexts, mask=mask, reverse=reverse,
        return_initial_states=return_initial_states, bptt=bptt, scope=scope or name, plan=plan, regularise=masks,
        donate=own, rebuild=rebuild if own else None,
    )


def plan_call(
    cell: RecurrentStep,
    sequences: tuple[Tensor, ...],
    named: Mapping[str, Tensor],
    *,
    mask: Tensor | None = None,
    lengths: Tensor | Sequence[int] | None = None,
    bptt: BPTT | None = None,
    engine: str = "auto",
    regularisers: Regularisers | None = None,
) -> Plan:
    """The dispatch plan a scan of ``cell`` with these arguments runs (``rnnkit.Recurrent.plan``).
    ``sequences`` are (B, T, *shape), positional in ``cell.sequences`` order or by name in
    ``named``; ``mask`` (B, T) bool or ``lengths`` (B,). Nothing is computed.

        >>> import torch, rnnkit
        >>> cell = rnnkit.cells.ElmanCell(4)
        >>> plan_call(cell, (torch.randn(2, 5, 4),), {}).loop     # (B, T, H)
        'native'
    """
    check_engine(engine)
    seqs, _, ctx = bind(cell, sequences, named, None, None)
    B, T = _check_sequences(cell, seqs)
    first = next(iter(seqs.values()))
    mask, _, _ = resolve_mask(mask, lengths, B, T, first.device)
    inside = regularisers.inside(cell.training) if isinstance(regularisers, Regularisers) else None
    return _cell_plan(engine, cell, seqs, ctx, mask, bptt, type(cell).__name__, inside)


def _drop_inputs(reg: Regularisers, seq: Tensor, training: bool) -> Tensor:
    """Input dropout on one sequence (B, T, *): one mask per sequence, the same at every step."""
    m = reg.input_mask(seq.shape[0], tuple(seq.shape[2:]), seq, training) if seq.is_floating_point() else None
    return seq if m is None else seq * m.unsqueeze(1)  # (B, T, *)


def _cell_plan(engine: str, cell: RecurrentStep, sequences: Mapping[str, Tensor], contexts: Mapping[str, Tensor],
               mask: Tensor | None, bptt: BPTT | None, where: str, regularised: str | None = None) -> Plan:
    """The plan of a single-cell scan (the fused backend serves only rnnkit.RNN/LSTM/GRU layers)."""
    first = next(iter(sequences.values()))
    backward = torch.is_grad_enabled() and (any(s.requires_grad for s in sequences.values())
                                            or any(p.requires_grad for p in cell.parameters()))
    structured = can_run_structured(cell, dict(contexts))
    plan = make_plan(
        engine, cell, why_not_fused="a single-cell scan (the fused backend serves rnnkit.RNN/LSTM/GRU layers)",
        dtype=first.dtype, device=first.device, batch=first.shape[0], lengths=mask is not None,
        backward=backward, plain_bptt=bptt is None or bptt.is_default,
        structured=structured, where=where, regularised=regularised,
    )
    if not structured and plan.loop == "autograd":  # a general cell: its compiled loop if its step compiles
        plan = general_plan(plan.engine, cell, sequences, contexts, bptt, regularised, plan.reason("backend").split(";")[0])
    return plan


def run_cell(
    cell: RecurrentStep,
    sequences: Mapping[str, Tensor],
    states: Mapping[str, Tensor],
    contexts: Mapping[str, Tensor],
    *,
    mask: Tensor | None,
    reverse: bool,
    return_initial_states: bool = False,
    bptt: BPTT | None = None,
    scope: str = "",
    donate: bool = False,
    rebuild: Callable[[], Tensor] | None = None,
    plan: Plan | None = None,
    regularise: Masks | None = None,
) -> Scan:
    """Run already-validated arguments on the generic backend (layers call this directly).

    ``donate=True`` lets the engine reuse the memory of ``sequences["inputs"]`` (a layer's own
    input projection, which nothing else reads); ``rebuild()`` recomputes its values (without a
    graph), which a double backward needs. Without it a double backward of a donated call raises.

    ``plan`` (:func:`rnnkit.engine.dispatch.make_plan`; made here when None) picks the loop:
    structured cells take the fast loop of ``rnnkit.engine.structured`` in the plan's loop form;
    any other cell, and an empty batch, runs step by step under autograd (``rnnkit.engine.generic``).
    Shapes as in :func:`scan`: sequences (B, T, *), states (B, *shape), mask (B, T); returns a ``Scan``.
    ``regularise``: the call's drawn regulariser masks (:meth:`Regularisers.draw`), or None.
    """
    if plan is None:
        inside = "regularisers" if regularise is not None and regularise.step_loop else None
        plan = _cell_plan("generic", cell, sequences, contexts, mask, bptt, scope or type(cell).__name__, inside)
    weight = None if regularise is None or regularise.weight is None else cell.weight * regularise.weight
    if plan.loop != "autograd" and can_run_structured(cell, contexts) and next(iter(sequences.values())).numel() > 0:
        return scan_structured(cell, sequences["inputs"], dict(states), mask, reverse, return_initial_states,
                               bptt or BPTT(), scope, donate=donate, rebuild=rebuild, plan=plan, weight=weight,
                               reg=regularise)
    first = next(iter(sequences.values()))
    if plan.backend == "generic-compiled" and regularise is None:  # a general cell's compiled loop
        return scan_general(cell, sequences, states, mask, reverse, return_initial_states, bptt, scope,
                            hybrid=plan.loop == "hybrid")
    step = None if regularise is None else wrap_step(cell, regularise, first.shape[1], reverse, weight,
                                                      getattr(cell, "bias", None))
    return scan_stepwise(
        cell, sequences, states, contexts, mask=mask, reverse=reverse,
        return_initial_states=return_initial_states, bptt=bptt, scope=scope, step=step,
    )


def _check_sequences(cell: RecurrentStep, sequences: Mapping[str, Tensor]) -> tuple[int, int]:
    name = type(cell).__name__
    shape: tuple[int, int] | None = None
    param = next(cell.parameters(), None)
    for key, seq in sequences.items():
        if not isinstance(seq, Tensor) or seq.dim() < 2:
            raise bad_argument(key, "a tensor (B, T, *features), batch first", seq,
                               "add the batch dimension with .unsqueeze(0)")
        if seq.shape[1] == 0:
            raise bad_argument(key, "at least one time step (T >= 1)", seq, "pass a non-empty sequence")
        declared = cell.sequence_shape(key)
        if declared is not None:
            if seq.dim() != 2 + len(declared) or tuple(seq.shape[2:]) != tuple(declared):
                dims = ", ".join(map(str, declared))
                raise bad_argument(key, f"a tensor (B, T, {dims}) for {name} (batch first, one step per T)",
                                   seq, f"project or reshape it to (B, T, {dims})")
            if not seq.is_floating_point():
                raise bad_argument(key, "a floating-point tensor", seq, "convert with .float()")
        if shape is None:
            shape = (seq.shape[0], seq.shape[1])
        elif (seq.shape[0], seq.shape[1]) != shape:
            raise bad_argument(key, f"the same (B, T) = {shape} as the other sequences", seq,
                               "give every sequence the same batch and time sizes")
        if param is not None and seq.is_floating_point() and seq.dtype != param.dtype:
            raise bad_argument(key, f"dtype {param.dtype} (the cell's parameters)", seq,
                               f"convert with .to({param.dtype}) or move the cell with .to(dtype)")
    if shape is None:
        raise bad_argument("sequences", "at least one sequence", "none", "pass the inputs")
    return shape


def _initial_states(cell: RecurrentStep, given: Mapping[str, Tensor], batch: int, like: Tensor) -> dict[str, Tensor]:
    states: dict[str, Tensor] = {}
    for name in cell.states:
        if name not in given or given[name] is None:
            states[name] = cell.initial_state(name, batch, like)
            continue
        value = given[name]
        shape = tuple(cell.state_shape(name))
        if not isinstance(value, Tensor):
            raise bad_argument(f"initial state {name!r}", f"a tensor of shape (B, *{shape})", value,
                               "pass a tensor")
        if tuple(value.shape) == shape:
            value = value.expand(batch, *shape)  # (B, *shape), shared by the batch
        elif tuple(value.shape) == (1, *shape):
            value = value.expand(batch, *shape)
        elif tuple(value.shape) != (batch, *shape):
            raise bad_argument(f"initial state {name!r}", f"shape {(batch, *shape)} (B, *state shape)",
                               value, f"pass a ({batch}, {', '.join(map(str, shape))}) tensor")
        if value.dtype != like.dtype and like.is_floating_point():
            raise bad_argument(f"initial state {name!r}", f"dtype {like.dtype} (the input's)", value,
                               f"convert with .to({like.dtype})")
        states[name] = value
    extra = [k for k in given if k not in cell.states]
    if extra:
        raise bad_argument("initial_states", f"names among the cell's states {cell.states}", extra,
                           "remove the unknown names")
    return states
