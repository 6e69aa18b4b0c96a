"""The Reber grammar and the embedded Reber grammar: automaton, generator, checker, encoding.

Symbols are one-hot in the order of seed 001's ``reberGrammar`` module, ``SYMBOLS = "BTSXPVE"``
(so the target after ``B`` is ``[0,1,0,0,1,0,0]`` = {T, P}, and T, P are the 2nd and 5th units).
For a word ``w`` of length n, the inputs are the one-hot rows of ``w[:-1]`` and the target at
step t is the multi-hot set of symbols the grammar allows after ``w[:t+1]`` (so the last target
is {E}). In the embedded grammar the automaton remembers the second symbol, so the target
before the second-to-last symbol is that single symbol: the long-range dependency.

Example:
    >>> import random
    >>> from rnnkit.data import reber
    >>> word = reber.sample(random.Random(0))
    >>> reber.in_grammar(word), word[0], word[-1]
    (True, 'B', 'E')
    >>> batch = reber.encode([word, "BTXSE"])
    >>> batch.inputs.shape[0], batch.inputs.shape[2]
    (2, 7)
"""
from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rnnkit.data.automaton import Automaton
from rnnkit.errors import bad_argument

__all__ = [
    "EMBEDDED_REBER",
    "IGNORE_INDEX",
    "REBER",
    "SYMBOLS",
    "ReberBatch",
    "ReberDataset",
    "allowed_next",
    "automaton",
    "batches",
    "dataset",
    "decode",
    "encode",
    "in_grammar",
    "sample",
    "word_tensors",
]

SYMBOLS = "BTSXPVE"  # one-hot index order of seed 001's reberGrammar module
IGNORE_INDEX = -100  # next_ids at padded steps (torch's cross_entropy default ignore_index)

# Reber (1967), as in seed 001: state 0 -B-> 1; 1 -T-> 2, -P-> 3; 2 -S-> 2, -X-> 4;
# 3 -T-> 3, -V-> 5; 4 -X-> 3, -S-> 6; 5 -P-> 4, -V-> 6; 6 -E-> 7 (final).
_REBER_EDGES: dict[int, dict[str, int]] = {
    0: {"B": 1}, 1: {"T": 2, "P": 3}, 2: {"S": 2, "X": 4}, 3: {"T": 3, "V": 5},
    4: {"X": 3, "S": 6}, 5: {"P": 4, "V": 6}, 6: {"E": 7}, 7: {},
}


def _build(edges: dict[int, dict[str, int]], final: int) -> Automaton:
    order = {s: i for i, s in enumerate(SYMBOLS)}
    table = tuple(tuple(sorted(edges[s].items(), key=lambda e: order[e[0]])) for s in range(len(edges)))
    return Automaton(SYMBOLS, table, start=0, accepting=frozenset({final}))


def _embedded_edges() -> tuple[dict[int, dict[str, int]], int]:
    """B, then T or P, then a whole Reber word, then the same T or P again, then E."""
    edges: dict[int, dict[str, int]] = {0: {"B": 1}, 1: {}}
    n = 2
    closing = []
    for branch in "TP":
        offset = n  # copy the plain grammar's states 0..7 to offset..offset+7
        for s, out in _REBER_EDGES.items():
            edges[offset + s] = {sym: offset + t for sym, t in out.items()}
        edges[1][branch] = offset
        closing.append((offset + 7, branch))  # the inner word's final state, remembering the branch
        n += len(_REBER_EDGES)
    before_end, final = n, n + 1
    for inner_final, branch in closing:
        edges[inner_final] = {branch: before_end}
    edges[before_end] = {"E": final}
    edges[final] = {}
    return edges, final


REBER = _build(_REBER_EDGES, final=7)
EMBEDDED_REBER = _build(*_embedded_edges())


def automaton(embedded: bool = False) -> Automaton:
    """The grammar's automaton (plain or embedded), e.g. for grammar-constrained decoding."""
    return EMBEDDED_REBER if embedded else REBER


def sample(rng: random.Random, embedded: bool = False, *, min_length: int | None = None,
           max_length: int | None = None) -> str:
    """One word of the grammar, by a uniform random walk (each allowed symbol equally likely).

    ``min_length``/``max_length`` (whole word, B and E included) condition the walk exactly on
    the length; seed 001's ``get_one_example(10)`` is ``min_length=11``.

    Example:
        >>> sample(random.Random(3), embedded=True)[1] in "TP"
        True
    """
    if not isinstance(rng, random.Random):
        raise bad_argument("rng", "a random.Random", rng, "pass random.Random(seed)")
    _check_bounds(min_length, max_length)
    return automaton(embedded).sample(rng, min_length, max_length)


def in_grammar(word: str, embedded: bool = False) -> bool:
    """True when ``word`` is a complete word of the grammar, e.g. ``in_grammar("BTXSE")``."""
    if not isinstance(word, str):
        raise bad_argument("word", "a str of the symbols BTSXPVE", word, "decode one-hot rows with decode()")
    return automaton(embedded).accepts(word)


def allowed_next(prefix: str, embedded: bool = False) -> frozenset[str]:
    """The symbols the grammar allows after ``prefix``, e.g. ``allowed_next("B") == {"T", "P"}``."""
    return automaton(embedded).allowed_next(prefix)


def dataset(n: int, seed: int, embedded: bool = False, *, min_length: int | None = None,
            max_length: int | None = None) -> list[str]:
    """``n`` words drawn with ``random.Random(seed)``: the same seed gives the same list.

    Example:
        >>> dataset(3, seed=0) == dataset(3, seed=0)
        True
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise bad_argument("n", "a positive number of words", n, "ask for at least one word")
    rng = random.Random(seed)
    return [sample(rng, embedded, min_length=min_length, max_length=max_length) for _ in range(n)]


@dataclass(frozen=True)
class ReberBatch:
    """Padded training tensors for a list of words; step t reads ``w[t]`` and predicts ``w[t+1]``."""

    words: tuple[str, ...]  # the words, in batch order
    inputs: torch.Tensor  # (B, T, 7) float32 one-hot of w[:-1]; zero rows at padding
    targets: torch.Tensor  # (B, T, 7) float32 multi-hot of the allowed next symbols
    input_ids: torch.Tensor  # (B, T) int64 indices of w[:-1]; 0 at padding
    next_ids: torch.Tensor  # (B, T) int64 indices of w[1:] (teacher forcing); IGNORE_INDEX at padding
    mask: torch.Tensor  # (B, T) bool, True at real steps
    lengths: torch.Tensor  # (B,) int64, len(w) - 1


def word_tensors(word: str, embedded: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(inputs (T, 7), targets (T, 7), next_ids (T,))`` for one word, T = len(word) - 1.

    Example:
        >>> x, y, nxt = word_tensors("BTXSE")
        >>> y[0].tolist()  # after B: {T, P}
        [0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    """
    ids, allowed = _encode_word(word, automaton(embedded))
    eye = np.eye(len(SYMBOLS), dtype=np.float32)
    return (torch.from_numpy(eye[ids[:-1]]), torch.from_numpy(allowed),  # (T, 7), (T, 7)
            torch.from_numpy(ids[1:].astype(np.int64)))  # (T,)


def encode(words: Sequence[str], embedded: bool = False) -> ReberBatch:
    """Pad a list of words into one :class:`ReberBatch` (the grammar checks every word)."""
    if isinstance(words, str) or len(words) == 0:
        raise bad_argument("words", "a non-empty list of words", words, "wrap a single word in a list")
    grammar = automaton(embedded)
    encoded = [_encode_word(w, grammar) for w in words]
    b, t = len(words), max(len(ids) for ids, _ in encoded) - 1
    input_ids = np.zeros((b, t), dtype=np.int64)  # (B, T)
    next_ids = np.full((b, t), IGNORE_INDEX, dtype=np.int64)  # (B, T)
    targets = np.zeros((b, t, len(SYMBOLS)), dtype=np.float32)  # (B, T, 7)
    lengths = np.array([len(ids) - 1 for ids, _ in encoded], dtype=np.int64)  # (B,)
    for row, (ids, allowed) in enumerate(encoded):
        n = len(ids) - 1
        input_ids[row, :n] = ids[:-1]
        next_ids[row, :n] = ids[1:]
        targets[row, :n] = allowed
    mask = np.arange(t)[None, :] < lengths[:, None]  # (B, T)
    inputs = np.eye(len(SYMBOLS), dtype=np.float32)[input_ids] * mask[..., None]  # (B, T, 7)
    return ReberBatch(tuple(words), torch.from_numpy(inputs), torch.from_numpy(targets),
                      torch.from_numpy(input_ids), torch.from_numpy(next_ids), torch.from_numpy(mask),
                      torch.from_numpy(lengths))


def decode(onehot: torch.Tensor | np.ndarray) -> str:
    """Symbols of one-hot (or score) rows ``(T, 7)`` by argmax: seed 001's ``sequenceToWord``."""
    rows = np.asarray(onehot.detach().cpu() if isinstance(onehot, torch.Tensor) else onehot)
    if rows.ndim != 2 or rows.shape[1] != len(SYMBOLS):
        raise bad_argument("onehot", f"rows of shape (T, {len(SYMBOLS)})", f"shape {rows.shape}",
                           "decode one word at a time, e.g. batch.inputs[i, :batch.lengths[i]]")
    return "".join(SYMBOLS[i] for i in rows.argmax(axis=1))


def batches(batch_size: int, seed: int, embedded: bool = False, *, min_length: int | None = None,
            max_length: int | None = None) -> Iterator[ReberBatch]:
    """An endless stream of batches of fresh words, reproducible from ``seed``.

    Example:
        >>> stream = batches(4, seed=0)
        >>> next(stream).inputs.shape[0]
        4
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise bad_argument("batch_size", "a positive int", batch_size, "use batch_size >= 1")
    _check_bounds(min_length, max_length)
    return _batches(batch_size, random.Random(seed), embedded, min_length, max_length)


def _batches(batch_size: int, rng: random.Random, embedded: bool, lo: int | None,
             hi: int | None) -> Iterator[ReberBatch]:
    grammar = automaton(embedded)
    while True:
        yield encode([grammar.sample(rng, lo, hi) for _ in range(batch_size)], embedded)


class ReberDataset(torch.utils.data.Dataset):
    """``n`` words from :func:`dataset` as a map-style dataset of ``word_tensors`` triples.

    Use with ``rnnkit.data.batching.PadCollate`` (and ``BucketBatchSampler(ds.lengths, ...)``).
    """

    def __init__(self, n: int, seed: int, embedded: bool = False, *, min_length: int | None = None,
                 max_length: int | None = None) -> None:
        self.embedded = embedded
        self.words = dataset(n, seed, embedded, min_length=min_length, max_length=max_length)
        self.lengths = [len(w) - 1 for w in self.words]  # time steps per example

    def __len__(self) -> int:
        return len(self.words)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return word_tensors(self.words[index], self.embedded)


def _encode_word(word: str, grammar: Automaton) -> tuple[np.ndarray, np.ndarray]:
    """Symbol indices ``(n,)`` and allowed-next multi-hot ``(n-1, 7)`` of a grammatical word."""
    if not isinstance(word, str) or not grammar.accepts(word):
        raise bad_argument("word", "a complete word of the grammar" + (" (embedded)" if grammar is
                           EMBEDDED_REBER else ""), word, "generate words with sample()/dataset()")
    ids = np.fromiter((SYMBOLS.index(c) for c in word), dtype=np.int64, count=len(word))
    allowed = np.zeros((len(word) - 1, len(SYMBOLS)), dtype=np.float32)  # (T, 7)
    state = grammar.start
    for t, symbol in enumerate(word[:-1]):
        state = grammar.step(state, symbol)
        for nxt in grammar.allowed(state):
            allowed[t, SYMBOLS.index(nxt)] = 1.0
    return ids, allowed


def _check_bounds(min_length: int | None, max_length: int | None) -> None:
    for name, value in (("min_length", min_length), ("max_length", max_length)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise bad_argument(name, "a positive int or None", value, "give a word length >= 1, or None")
    if min_length is not None and max_length is not None and min_length > max_length:
        raise bad_argument("min_length", f"at most max_length={max_length}", min_length, "swap or widen the bounds")
