"""Constrained decoding: something that says, at every step, which next tokens are allowed.

A :class:`Constraint` keeps one state per row of the batch. The decoder asks it for the allowed
tokens ``(B, V)`` bool, masks every other token to probability zero, and tells it the token it
chose. A row whose constraint allows nothing is complete (an automaton's accepting state has no
outgoing edge), and stops there.

Two ready-made kinds:

* :class:`AutomatonConstraint`: a deterministic automaton such as the Reber grammars
  (``rnnkit.data.reber.automaton()``), stepped with one table lookup per row on the device;
* :class:`FunctionConstraint`: any callable ``allowed(prefix) -> allowed next ids``.

:func:`as_constraint` turns an ``Automaton`` or a plain callable into one of them, so both plug
into the decoder directly.

Example:
    >>> import torch
    >>> from rnnkit.data import reber
    >>> grammar = AutomatonConstraint(reber.automaton(), vocab_size=7)
    >>> state = grammar.start(torch.tensor([[0]]))           # the prompt "B"
    >>> grammar.allowed(state).int().tolist()                # T or P after B
    [[0, 1, 0, 0, 1, 0, 0]]
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.data.automaton import Automaton
from rnnkit.errors import bad_argument

__all__ = ["AutomatonConstraint", "Constraint", "FunctionConstraint", "as_constraint"]


class Constraint(ABC):
    """The decoder's view of a constraint: subclass it and implement the four methods.

    The state is opaque to the decoder; it only ever passes back what the methods returned.
    """

    @abstractmethod
    def start(self, prompt: Tensor) -> Any:
        """The state after the prompt ids (B, P); ValueError if the prompt already breaks the constraint."""

    @abstractmethod
    def allowed(self, state: Any) -> Tensor:
        """Bool (B, V): True where a token may come next. An all-False row means the row is complete."""

    @abstractmethod
    def advance(self, state: Any, tokens: Tensor, live: Tensor) -> Any:
        """The state after rows with ``live`` (B,) bool True take ``tokens`` (B,); other rows keep theirs."""

    @abstractmethod
    def select(self, state: Any, index: Tensor) -> Any:
        """The state of rows ``index`` (N,), in that order (beam search reorders its hypotheses)."""


class AutomatonConstraint(Constraint):
    """Decode only prefixes of words of ``automaton``; ``token_ids[i]`` is the id of ``automaton.symbols[i]``.

    With ``token_ids=None`` the automaton's symbol positions are the token ids (the Reber models'
    one-hot order). The state is a LongTensor (B,) of automaton states.
    """

    def __init__(self, automaton: Automaton, vocab_size: int, token_ids: Sequence[int] | None = None) -> None:
        if not isinstance(automaton, Automaton):
            raise bad_argument("automaton", "an rnnkit.data.automaton.Automaton", automaton,
                               "pass e.g. rnnkit.data.reber.automaton(embedded=True)")
        n = len(automaton.symbols)
        ids = list(range(n)) if token_ids is None else [int(i) for i in token_ids]
        if len(ids) != n or any(not 0 <= i < vocab_size for i in ids) or len(set(ids)) != n:
            raise bad_argument("token_ids", f"{n} distinct ids in 0..{vocab_size - 1}, one per symbol of "
                               f"{automaton.symbols!r}", token_ids,
                               "give the model's id of every symbol of the automaton (or a vocabulary holding them)")
        self.automaton = automaton
        self.vocab_size = vocab_size
        table = torch.full((automaton.n_states, vocab_size), -1, dtype=torch.int64)  # (S, V)
        table[:, ids] = torch.from_numpy(automaton.transition_table())  # (S, n) -> columns of the ids
        self.table = table
        self._symbol_of = {token: symbol for token, symbol in zip(ids, automaton.symbols)}

    def start(self, prompt: Tensor) -> Tensor:
        self.table = table = self.table.to(prompt.device)
        state = torch.full((prompt.shape[0],), self.automaton.start, dtype=torch.int64, device=prompt.device)
        for t in range(prompt.shape[1]):
            nxt = table[state, prompt[:, t]]  # (B,)
            if bool((nxt < 0).any()):
                row = int((nxt < 0).nonzero()[0, 0])
                text = "".join(self._symbol_of.get(int(i), "?") for i in prompt[row, : t + 1].tolist())
                raise bad_argument("prompt", "the start of a word of the constraining grammar", repr(text),
                                   f"begin with a prefix the automaton accepts, e.g. {self.automaton.symbols[0]!r}")
            state = nxt
        return state  # (B,)

    def allowed(self, state: Tensor) -> Tensor:
        return self.table[state] >= 0  # (B, V)

    def advance(self, state: Tensor, tokens: Tensor, live: Tensor) -> Tensor:
        return torch.where(live, self.table[state, tokens], state)  # (B,)

    def select(self, state: Tensor, index: Tensor) -> Tensor:
        return state.index_select(0, index)  # (N,)


class FunctionConstraint(Constraint):
    """Any callable ``allowed(prefix: list[int]) -> iterable of allowed next ids`` (or a bool (V,) mask).

    ``prefix`` holds the prompt and every token generated so far for that row. The callable is
    called once per row and step, so keep it cheap.
    """

    def __init__(self, allowed: Callable[[list[int]], Iterable[int] | Tensor], vocab_size: int) -> None:
        if not callable(allowed):
            raise bad_argument("constraint", "a callable prefix -> allowed next ids", allowed,
                               "pass a function, an Automaton or a Constraint")
        self.fn = allowed
        self.vocab_size = vocab_size

    def start(self, prompt: Tensor) -> list[list[int]]:
        return [list(row) for row in prompt.tolist()]

    def allowed(self, state: list[list[int]]) -> Tensor:
        mask = torch.zeros(len(state), self.vocab_size, dtype=torch.bool)  # (B, V)
        for row, prefix in enumerate(state):
            out = self.fn(prefix)
            if isinstance(out, Tensor) and out.dtype == torch.bool:
                if out.shape != (self.vocab_size,):
                    raise bad_argument("constraint", f"a bool mask of shape ({self.vocab_size},)", out,
                                       "return one flag per token id")
                mask[row] = out
                continue
            ids = list(out.tolist() if isinstance(out, Tensor) else out)
            if any(isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < self.vocab_size for i in ids):
                raise bad_argument("constraint", f"allowed ids in 0..{self.vocab_size - 1}", ids,
                                   "return token ids of the model's vocabulary")
            mask[row, ids] = True
        return mask

    def advance(self, state: list[list[int]], tokens: Tensor, live: Tensor) -> list[list[int]]:
        for prefix, token, go in zip(state, tokens.tolist(), live.tolist()):
            if go:
                prefix.append(token)
        return state

    def select(self, state: list[list[int]], index: Tensor) -> list[list[int]]:
        return [list(state[i]) for i in index.tolist()]


def as_constraint(constraint: Constraint | Automaton | Callable[[list[int]], Iterable[int]] | None,
                  vocab_size: int, token_of: Callable[[str], int] | None = None) -> Constraint | None:
    """A :class:`Constraint` for ``constraint``; ``token_of`` maps an automaton symbol to its token id."""
    if constraint is None or isinstance(constraint, Constraint):
        return constraint
    if isinstance(constraint, Automaton):
        ids = None if token_of is None else [token_of(s) for s in constraint.symbols]
        return AutomatonConstraint(constraint, vocab_size, ids)
    if callable(constraint):
        return FunctionConstraint(constraint, vocab_size)
    raise bad_argument("constraint", "None, a Constraint, an Automaton or a callable prefix -> allowed ids",
                       constraint, "pass e.g. rnnkit.data.reber.automaton()")
