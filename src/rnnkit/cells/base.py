"""The custom-cell API: write one step, get the whole sequence (after Blocks' ``@recurrent``).

A cell subclasses :class:`Recurrent` and declares, as class (or instance) attributes,

* ``sequences``: the names of the per-time-step inputs, e.g. ``("inputs",)``;
* ``states``: the names of the recurrent states, e.g. ``("h", "c")``;
* ``contexts``: the names of non-sequence inputs passed unchanged to every step;
* ``outputs``: what ``step`` returns, in order. It defaults to ``states``; every state must
  appear in it (extra, non-recurrent outputs are allowed).

It then implements two methods with real signatures:

* ``state_shape(name) -> tuple[int, ...]``: the per-example shape of a state, e.g. ``(H,)``;
* ``step(**one_step) -> Tensor | tuple[Tensor, ...]``: one time step. The engine calls it with
  keyword arguments named after ``sequences``, ``states`` and ``contexts``, so a typo in the
  signature is a plain ``TypeError`` from Python, never a silent mismatch.

Calling the cell runs it over time with the engine::

    >>> import torch, rnnkit
    >>> class Accumulator(rnnkit.Recurrent):
    ...     states = ("h",)
    ...     def state_shape(self, name):
    ...         return (3,)
    ...     def step(self, inputs, h):
    ...         return inputs + h
    >>> Accumulator()(torch.ones(1, 3, 3))[0, :, 0].tolist()   # (B, T, H) -> one row
    [1.0, 2.0, 3.0]

``cell.step(...)`` is the single-step use (Blocks' ``iterate=False``), so a cell can call other
cells' steps inside its own, as the FeedbackRNN in the README does.

Where the parts live: the declarations and the step are pure math
(:class:`rnnkit.steps.RecurrentStep`, which imports no engine); running over time is the
engine's (:func:`rnnkit.engine.call`). :class:`Recurrent` is the one class that joins them, so
the dependency points one way: this module imports the engine, the engine imports only the steps.
"""
from __future__ import annotations

from typing import Any, Mapping

from torch import Tensor

from rnnkit.engine import call, plan_call
from rnnkit.engine.result import Scan
from rnnkit.steps.base import RecurrentStep

__all__ = ["Recurrent", "Scan"]


class Recurrent(RecurrentStep):
    """Base class of every recurrent cell you call, built-in or custom: a step (``RecurrentStep``)
    that the engine runs over time when called. See the module docstring."""

    def scan(
        self,
        *sequences: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        reverse: bool = False,
        return_initial_states: bool = False,
        initial_states: Mapping[str, Tensor] | None = None,
        contexts: Mapping[str, Tensor] | None = None,
        bptt: Any = None,
        engine: str = "auto",
        reset: Tensor | None = None,
        regularisers: Any = None,
        **named: Tensor,
    ) -> Scan:
        """Run the cell over time and return all outputs and the final states.

        Sequences are (B, T, *shape), given positionally in ``sequences`` order or by name;
        initial states and contexts may also be given by name. ``mask`` (B, T) bool or
        ``lengths`` (B,) int mark the real steps. ``bptt`` takes :class:`rnnkit.engine.BPTT`.
        ``reset`` bool (B,) or (B, T) restarts rows from the initial state (``rnnkit.engine.reset``).
        ``regularisers`` takes an :class:`rnnkit.Regularisers` (dropout, zoneout, weight drop;
        masks drawn in training mode).
        """
        return call(self, sequences, named, mask=mask, lengths=lengths, reverse=reverse,
                    return_initial_states=return_initial_states, initial_states=initial_states,
                    contexts=contexts, bptt=bptt, engine=engine, full=True, reset=reset,
                    regularisers=regularisers)

    def plan(
        self,
        *sequences: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        bptt: Any = None,
        engine: str = "auto",
        regularisers: Any = None,
        **named: Tensor,
    ) -> Any:
        """The dispatch plan (``rnnkit.engine.Plan``: backend, loop form, dtype and the reasons)
        that calling the cell with these arguments runs. Nothing is computed.

            >>> import torch, rnnkit
            >>> class Accumulator(rnnkit.Recurrent):
            ...     states = ("h",)
            ...     def state_shape(self, name):
            ...         return (3,)
            ...     def step(self, inputs, h):
            ...         return inputs + h
            >>> plan = Accumulator().plan(torch.ones(1, 4, 3))
            >>> plan.backend, plan.loop
            ('generic-compiled', 'native')
        """
        return plan_call(self, sequences, named, mask=mask, lengths=lengths, bptt=bptt, engine=engine,
                         regularisers=regularisers)

    def forward(
        self,
        *sequences: Tensor,
        mask: Tensor | None = None,
        lengths: Tensor | None = None,
        reverse: bool = False,
        return_initial_states: bool = False,
        iterate: bool = True,
        bptt: Any = None,
        engine: str = "auto",
        reset: Tensor | None = None,
        regularisers: Any = None,
        **named: Tensor,
    ) -> Tensor | tuple[Tensor, ...]:
        """Whole-sequence application: the declared outputs as (B, T, *shape) tensors.

        With ``iterate=False`` it computes a single step instead (Blocks' semantics): the
        sequences are then (B, *shape) and missing states start from their initial value.
        ``mask`` (B,) bool then marks the rows that step: the others keep their state, and
        their other outputs are zero, as at a padded step of a scan. ``reset`` bool (B,) (or
        (B, T) for a whole sequence) restarts rows from their initial state (``rnnkit.engine.reset``).
        """
        return call(self, sequences, named, mask=mask, lengths=lengths, reverse=reverse,  # the call ran the pre-hooks
                    return_initial_states=return_initial_states, iterate=iterate, bptt=bptt, engine=engine,
                    run_hooks=False, reset=reset, regularisers=regularisers)
