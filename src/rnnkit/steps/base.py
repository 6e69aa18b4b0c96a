"""The math of one time step (after Blocks' ``@recurrent``): declarations, ``step``, initial states.

A step subclasses :class:`RecurrentStep` and declares, as class (or instance) attributes,

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

This package is pure math: it imports no engine. The engine (``rnnkit.engine``) runs a step
over time, and the cells you call (``rnnkit.Recurrent``, ``rnnkit.cells``) are these steps plus
the engine's call, one layer down::

    >>> import torch
    >>> class Accumulator(RecurrentStep):
    ...     states = ("h",)
    ...     def state_shape(self, name):
    ...         return (3,)
    ...     def step(self, inputs, h):
    ...         return inputs + h
    >>> Accumulator().step(torch.ones(2, 3), torch.ones(2, 3))[0].tolist()   # (B, H)
    [2.0, 2.0, 2.0]
"""
from __future__ import annotations

from abc import abstractmethod

import torch
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["RecurrentStep"]


class RecurrentStep(nn.Module):
    """The math of one time step of a recurrent cell, built-in or custom. See the module docstring.

    ``step`` takes each sequence's slice (B, *shape), each state (B, *shape) and each context,
    and returns the declared outputs, (B, *shape) each.
    """

    sequences: tuple[str, ...] = ("inputs",)
    states: tuple[str, ...] = ("h",)
    contexts: tuple[str, ...] = ()
    outputs: tuple[str, ...] | None = None  # None: the outputs are the states

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
