"""A deterministic finite automaton over a small alphabet: the grammar behind the Reber tasks.

The automaton maps a prefix to the set of symbols the language allows next, which is what the
Reber targets are made of and what grammar-constrained decoding needs. It also samples words
by a uniform random walk (the seed's generator), optionally conditioned on the word length.

Example:
    >>> from rnnkit.data.reber import REBER
    >>> sorted(REBER.allowed_next("BT"))
    ['S', 'X']
    >>> REBER.accepts("BTXSE")
    True
"""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass

import numpy as np

from rnnkit.errors import bad_argument

__all__ = ["Automaton"]


@dataclass(frozen=True)
class Automaton:
    """A DFA: states are ``0..n_states-1``; a missing transition means the word is rejected.

    symbols: the alphabet, in the index order of the one-hot encoding (e.g. ``"BTSXPVE"``).
    transitions: per state, the ``(symbol, next_state)`` pairs (the sampler draws among them in this order).
    start: the state before the first symbol.
    accepting: the final states, where a complete word ends; they have no outgoing edges.

    Every state must be able to reach an accepting state, so a random walk always ends.
    """

    symbols: str  # the alphabet; position = one-hot index
    transitions: tuple[tuple[tuple[str, int], ...], ...]  # per state: ((symbol, next), ...)
    start: int = 0  # the initial state
    accepting: frozenset[int] = frozenset()  # states where a word may end

    def __post_init__(self) -> None:
        n = len(self.transitions)
        if len(set(self.symbols)) != len(self.symbols):
            raise bad_argument("symbols", "distinct characters", self.symbols, "remove the repeated symbols")
        for state, edges in enumerate(self.transitions):
            seen = [s for s, _ in edges]
            if len(set(seen)) != len(seen) or any(s not in self.symbols for s in seen):
                raise bad_argument(f"transitions[{state}]", f"distinct symbols from {self.symbols!r}",
                                   seen, "give each symbol at most one edge per state")
            if any(not 0 <= t < n for _, t in edges):
                raise bad_argument(f"transitions[{state}]", f"next states in 0..{n - 1}",
                                   [t for _, t in edges], "point every edge at an existing state")
        if not 0 <= self.start < n or any(not 0 <= a < n for a in self.accepting):
            raise bad_argument("start/accepting", f"states in 0..{n - 1}", (self.start, sorted(self.accepting)),
                               "use existing state numbers")
        if any(self.transitions[a] for a in self.accepting):
            raise bad_argument("accepting", "final states without outgoing edges (words end with a marker)",
                               sorted(a for a in self.accepting if self.transitions[a]),
                               "add an end symbol leading to a final state")
        live = set(self.accepting)  # states from which a word can still be completed
        grew = True
        while grew:
            grew = False
            for state, edges in enumerate(self.transitions):
                if state not in live and any(t in live for _, t in edges):
                    live.add(state)
                    grew = True
        if len(live) != n:
            raise bad_argument("transitions", "every state able to reach an accepting state",
                               f"dead states {sorted(set(range(n)) - live)}", "remove the dead states")

    @property
    def n_states(self) -> int:
        """The number of states."""
        return len(self.transitions)

    def step(self, state: int, symbol: str) -> int | None:
        """The state after reading ``symbol`` in ``state``, or None if the symbol is not allowed there."""
        return self._table_dict[state].get(symbol)

    def allowed(self, state: int) -> frozenset[str]:
        """The symbols allowed in ``state`` (empty in an accepting state: the word is complete)."""
        return frozenset(self._table_dict[state])

    def run(self, prefix: str) -> int | None:
        """The state after reading ``prefix`` from the start, or None once a symbol is not allowed."""
        table = self._table_dict
        state: int | None = self.start
        for symbol in prefix:
            state = table[state].get(symbol)
            if state is None:
                return None
        return state

    def accepts(self, word: str) -> bool:
        """True when ``word`` is a complete word of the language."""
        return self.run(word) in self.accepting

    def allowed_next(self, prefix: str) -> frozenset[str]:
        """The symbols the language allows after ``prefix``.

        Raises ValueError when ``prefix`` is not the start of any word of the language.
        """
        state = self.run(prefix)
        if state is None:
            raise bad_argument("prefix", "the start of a word of the language", prefix,
                               "check the prefix with run() first; it already left the grammar")
        return self.allowed(state)

    def transition_table(self) -> np.ndarray:
        """Dense table ``(n_states, len(symbols))`` of next states; -1 where a symbol is not allowed.

        Meant for vectorised checks and constrained decoding: ``allowed mask = table[state] >= 0``.
        """
        table = np.full((self.n_states, len(self.symbols)), -1, dtype=np.int64)  # (S, V)
        for state, edges in enumerate(self.transitions):
            for symbol, nxt in edges:
                table[state, self.symbols.index(symbol)] = nxt
        return table

    def accepts_ids(self, ids: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """Vectorised ``accepts`` for many words given as symbol indices.

        ids: integer array ``(N, T)`` of indices into ``symbols``; lengths: optional ``(N,)``,
        the real length of each row (the rest is padding). Returns bool ``(N,)``.
        """
        ids = np.asarray(ids)
        if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
            raise bad_argument("ids", "an integer array of shape (N, T)", f"shape {ids.shape}, dtype {ids.dtype}",
                               "stack equal-length words, or pad them and pass lengths=")
        if ids.size and (ids.min() < 0 or ids.max() >= len(self.symbols)):
            raise bad_argument("ids", f"symbol indices in 0..{len(self.symbols) - 1}",
                               f"values in {ids.min()}..{ids.max()}", "encode words with the automaton's symbols")
        n, t = ids.shape
        if lengths is None:
            lengths = np.full(n, t, dtype=np.int64)
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.shape != (n,) or (n and (lengths.min() < 0 or lengths.max() > t)):
            raise bad_argument("lengths", f"an array of shape ({n},) with values in 0..{t}",
                               f"shape {lengths.shape}", "give one real length per row of ids")
        dead = self.n_states  # an extra absorbing state for rejected prefixes
        table = np.full((self.n_states + 1, len(self.symbols)), dead, dtype=np.int64)  # (S+1, V)
        live = self.transition_table()
        table[: self.n_states] = np.where(live >= 0, live, dead)
        state = np.full(n, self.start, dtype=np.int64)  # (N,)
        for k in range(t):
            nxt = table[state, ids[:, k]]
            state = np.where(k < lengths, nxt, state)
        accept = np.zeros(self.n_states + 1, dtype=bool)
        accept[list(self.accepting)] = True
        return accept[state]  # (N,)

    def sample(self, rng: random.Random, min_length: int | None = None, max_length: int | None = None) -> str:
        """A word drawn by a uniform random walk: each allowed symbol has the same probability.

        With ``min_length``/``max_length`` the walk is conditioned exactly on the word length
        lying in that range (no rejection loop), so long words are as cheap as short ones.
        """
        edges_of = self.transitions
        if min_length is None and max_length is None:
            state, out = self.start, []
            while state not in self.accepting:
                symbol, state = edges_of[state][rng.randrange(len(edges_of[state]))]
                out.append(symbol)
            return "".join(out)
        lo = 0 if min_length is None else min_length
        weights = _length_weights(self, lo, max_length)
        if weights[0][self.start] == 0.0:
            raise bad_argument("min_length/max_length", "a length range that holds words of the language",
                               (min_length, max_length), "widen the range")
        state, out = self.start, []
        while state not in self.accepting:
            depth = len(out) + 1  # the depth after taking the next symbol
            level = weights[depth] if depth < len(weights) else None  # None: every walk ends in range
            edges = edges_of[state]
            scores = [1.0 if level is None else level[nxt] for _, nxt in edges]
            pick = rng.random() * sum(scores)
            for (symbol, nxt), score in zip(edges, scores):
                if pick < score:
                    break
                pick -= score
            else:  # rounding pushed pick to the end: take the last edge that can still succeed
                symbol, nxt = next(e for e, sc in zip(reversed(edges), reversed(scores)) if sc > 0)
            out.append(symbol)
            state = nxt
        return "".join(out)

    @functools.cached_property
    def _table_dict(self) -> tuple[dict[str, int], ...]:
        return tuple(dict(edges) for edges in self.transitions)


@functools.lru_cache(maxsize=64)
def _length_weights(automaton: Automaton, lo: int, hi: int | None) -> tuple[tuple[float, ...], ...]:
    """``w[d][s]`` ∝ P(a walk in state s after d symbols ends with a length in [lo, hi]), per depth d.

    Only ratios within one depth drive the sampler, so each depth is divided by its maximum:
    that keeps long conditions (thousands of symbols) away from float underflow. Depths past
    the last one stored have every walk ending in range (hi is None and d > lo).
    """
    deepest = lo if hi is None else hi
    accepting = automaton.accepting
    below: list[float] = []  # the next depth, divided by exp(below_log)
    below_log = 0.0
    levels: list[list[float]] = []
    for depth in range(deepest, -1, -1):
        logs = []  # log of the true (unscaled) probability, -inf for zero
        for s, edges in enumerate(automaton.transitions):
            if s in accepting:  # final: the word ends here, with length = depth
                inside = lo <= depth and (hi is None or depth <= hi)
                logs.append(0.0 if inside else -math.inf)
            elif depth == deepest:  # still going: in range only without an upper bound
                logs.append(0.0 if hi is None else -math.inf)
            else:
                mean = sum(below[t] for _, t in edges) / len(edges)
                logs.append(math.log(mean) + below_log if mean > 0 else -math.inf)
        below_log = max(logs)
        below = [math.exp(v - below_log) if v > -math.inf else 0.0 for v in logs]
        if below_log == -math.inf:  # nothing can end in range from this depth on
            below, below_log = [0.0] * len(logs), 0.0
        levels.append(below)
    return tuple(tuple(v) for v in reversed(levels))
