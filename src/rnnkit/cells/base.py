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
"""
from __future__ import annotations

from abc import abstractmethod
from typing import Any, Mapping, NamedTuple

import torch
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["Recurrent", "Scan"]


class Scan(NamedTuple):
    """What the engine returns for one cell run over time.

    ``outputs`` maps each declared output to a (B, T, *shape) tensor (T + 1 steps for states when
    ``return_initial_states`` is set); ``final`` maps each state to its value after the last real
    step of every sequence, (B, *shape).
    """

    outputs: dict[str, Tensor]
    final: dict[str, Tensor]


class Recurrent(nn.Module):
    """Base class of every recurrent cell, built-in or custom. See the module docstring."""

    sequences: tuple[str, ...] = ("inputs",)
    states: tuple[str, ...] = ("h",)
    contexts: tuple[str, ...] = ()
    outputs: tuple[str, ...] | None = None  # None: the outputs are the states

    #: A built-in cell configuration that PyTorch's native kernels implement ("rnn_tanh",
    #: "rnn_relu", "lstm", "gru"), or None. Only the engine's fused backend reads it.
    fused_kind: str | None = None

    # ------------------------------------------------------------------ declarations
    @property
    def output_names(self) -> tuple[str, ...]:
        """The names ``step`` returns, in order."""
        return tuple(self.outputs) if self.outputs is not None else tuple(self.states)

    @abstractmethod
    def state_shape(self, name: str) -> tuple[int, ...]:
        """The per-example shape of state ``name``, e.g. ``(H,)``."""

    def sequence_shape(self, name: str) -> tuple[int, ...] | None:
        """The per-example, per-step shape of sequence ``name`` (e.g. ``(F,)``), or None to
        accept any. The engine checks declared shapes and raises a ValueError on a mismatch."""
        return None

    @abstractmethod
    def step(self, *args: Tensor, **kwargs: Tensor) -> Tensor | tuple[Tensor, ...]:
        """One time step; returns the declared ``outputs`` in order (one tensor if there is one)."""

    def check_declarations(self) -> None:
        """Raise a ValueError if the declared names are inconsistent."""
        names = list(self.sequences) + list(self.states) + list(self.contexts)
        if len(set(names)) != len(names):
            raise bad_argument(
                f"{type(self).__name__}.sequences/states/contexts",
                "distinct names",
                f"sequences={self.sequences}, states={self.states}, contexts={self.contexts}",
                "give every sequence, state and context its own name",
            )
        missing = [s for s in self.states if s not in self.output_names]
        if missing:
            raise bad_argument(
                f"{type(self).__name__}.outputs",
                "every state among the outputs (states are recurrent outputs, as in Blocks)",
                f"outputs={self.output_names}, states={self.states}",
                f"add {missing} to outputs",
            )
        if not self.sequences:
            raise bad_argument(
                f"{type(self).__name__}.sequences", "at least one sequence", "()",
                "declare the per-step inputs, e.g. sequences = ('inputs',)",
            )

    # ------------------------------------------------------------------ initial states
    def learnable_initial_states(self) -> None:
        """Make every initial state a learned parameter (zeros at start), shared across the batch.

        Call it at the end of ``__init__``, once ``state_shape`` can answer.
        """
        self.initial = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(self.state_shape(name))) for name in self.states}
        )

    def initial_state(self, name: str, batch_size: int, like: Tensor) -> Tensor:
        """The default initial state ``name``: learned if enabled, else zeros. (B, *shape)"""
        shape = self.state_shape(name)
        learned = getattr(self, "initial", None)
        if learned is not None and name in learned:
            return learned[name].to(like.dtype).expand(batch_size, *shape)  # (B, *shape)
        return like.new_zeros(batch_size, *shape)  # (B, *shape)

    # ------------------------------------------------------------------ helpers for step
    def pack_outputs(self, result: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Normalise what ``step`` returned to a tuple that matches ``output_names``."""
        names = self.output_names
        out = (result,) if isinstance(result, Tensor) else tuple(result)
        if len(out) != len(names):
            raise ValueError(
                f"{type(self).__name__}.step: expected {len(names)} outputs {names}, but it "
                f"returned {len(out)}. Fix: return the declared outputs, in order."
            )
        return out

    # ------------------------------------------------------------------ whole-sequence use
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
        from rnnkit.engine import scan as engine_scan

        seqs, states0, ctx = self._bind(sequences, named, initial_states, contexts)
        return engine_scan(
            self, seqs, initial_states=states0, contexts=ctx, mask=mask, lengths=lengths,
            reverse=reverse, return_initial_states=return_initial_states, bptt=bptt,
            engine=engine, reset=reset, regularisers=regularisers,
        )

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
        if not iterate:
            return self._single_step(sequences, named, mask, reset)
        from rnnkit.engine import scan as engine_scan

        seqs, states0, ctx = self._bind(sequences, named, None, None)
        result = engine_scan(  # the call already ran the forward pre-hooks
            self, seqs, initial_states=states0, contexts=ctx, mask=mask, lengths=lengths,
            reverse=reverse, return_initial_states=return_initial_states, bptt=bptt,
            engine=engine, run_hooks=False, reset=reset, regularisers=regularisers,
        )
        outs = tuple(result.outputs[name] for name in self.output_names)
        return outs[0] if len(outs) == 1 else outs

    def _single_step(
        self, sequences: tuple[Tensor, ...], named: Mapping[str, Tensor], mask: Tensor | None,
        reset: Tensor | None = None,
    ) -> Tensor | tuple[Tensor, ...]:
        """One step (``iterate=False``); rows where ``mask`` (B,) is False keep their state."""
        seqs, states0, ctx = self._bind(sequences, named, None, None)
        batch = next(iter(seqs.values()))
        B = batch.shape[0]
        for name in self.states:
            if name not in states0:
                states0[name] = self.initial_state(name, B, batch)
        if reset is not None:
            if not isinstance(reset, Tensor) or reset.dtype != torch.bool or tuple(reset.shape) != (B,):
                raise bad_argument("reset", f"a bool tensor (B,) = ({B},) for one step, True where a row restarts",
                                   reset, "pass one flag per row, e.g. torch.tensor([True, False])")
            rows = reset.to(batch.device)
            for name in self.states:
                value = states0[name]
                m = rows.view(-1, *([1] * (value.dim() - 1)))  # (B, 1, ...)
                states0[name] = torch.where(m, self.initial_state(name, B, batch), value)
        result = self.step(**seqs, **states0, **ctx)
        if mask is None:
            return result
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool:
            raise bad_argument("mask", "a bool tensor (B,), True where a row takes the step", mask,
                               "pass e.g. lengths > t for step t")
        if tuple(mask.shape) != (B,):
            raise bad_argument("mask", f"shape (B,) = ({B},) for a single step", mask,
                               "pass one flag per batch row (a scan takes a (B, T) mask)")
        outs = self.pack_outputs(result)
        kept = []
        for name, value in zip(self.output_names, outs):
            m = mask.to(value.device).view(-1, *([1] * (value.dim() - 1)))  # (B, 1, ...)
            old = states0[name] if name in self.states else value.new_zeros(())
            kept.append(torch.where(m, value, old))
        return kept[0] if len(kept) == 1 else tuple(kept)

    def _bind(
        self,
        positional: tuple[Tensor, ...],
        named: Mapping[str, Tensor],
        initial_states: Mapping[str, Tensor] | None,
        contexts: Mapping[str, Tensor] | None,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        """Sort positional and named arguments into sequences, initial states and contexts."""
        self.check_declarations()
        cls = type(self).__name__
        if len(positional) > len(self.sequences):
            raise bad_argument(
                f"{cls}(*sequences)", f"at most {len(self.sequences)} positional sequences "
                f"{self.sequences}", f"{len(positional)} positional arguments",
                "pass states and contexts by name",
            )
        seqs = dict(zip(self.sequences, positional))
        states0 = dict(initial_states or {})
        ctx = dict(contexts or {})
        for key, value in named.items():
            if key in self.sequences:
                if key in seqs:
                    raise TypeError(f"{cls}: sequence {key!r} was given twice")
                seqs[key] = value
            elif key in self.states:
                states0[key] = value
            elif key in self.contexts:
                ctx[key] = value
            else:
                raise TypeError(
                    f"{cls}: unexpected argument {key!r}; the cell declares sequences "
                    f"{self.sequences}, states {self.states} and contexts {self.contexts}"
                )
        missing = [s for s in self.sequences if s not in seqs]
        if missing:
            raise bad_argument(
                f"{cls}(...)", f"every declared sequence {self.sequences}",
                f"no value for {missing}", "pass each sequence positionally or by name",
            )
        missing_ctx = [c for c in self.contexts if c not in ctx]
        if missing_ctx:
            raise bad_argument(
                f"{cls}(...)", f"every declared context {self.contexts}",
                f"no value for {missing_ctx}", "pass each context by name",
            )
        return seqs, states0, ctx
