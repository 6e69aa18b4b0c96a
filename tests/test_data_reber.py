"""rnnkit.data.reber against independent oracles: hand-written regexes, seed 001's printed data,
hand-computed probabilities.

The regular expressions below were derived by hand from the grammar diagram (Reber 1967,
states 1..6 as in seed 001), not generated from rnnkit's automaton:
  state 1: T -> 2, P -> 3;  2: S -> 2, X -> 4;  3: T -> 3, V -> 5;  4: X -> 3, S -> 6;
  5: P -> 4, V -> 6;  6: E.
  From 4: (X T* V P)* (S | X T* V V) E.   From 1: T S* X <from 4>  |  P T* V (V E | P <from 4>).
"""
from __future__ import annotations

import itertools
import random
import re
from collections import Counter

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from rnnkit.data import reber
from rnnkit.data.automaton import Automaton

_FROM4 = r"(?:XT*VP)*(?:S|XT*VV)"
PLAIN = rf"B(?:TS*X{_FROM4}|PT*V(?:V|P{_FROM4}))E"
EMBEDDED = rf"B(?:T{PLAIN}T|P{PLAIN}P)E"
RX = {False: re.compile(PLAIN), True: re.compile(EMBEDDED)}
ALL = "BTSXPVE"
INNER = "TSXPV"


def _regex_accepts(codes: np.ndarray, embedded: bool) -> np.ndarray:
    """Regex verdict for every row of a uint8 ``(N, n)`` array of ASCII letters, scanned in C."""
    n = codes.shape[1]
    lines = np.concatenate([codes, np.full((len(codes), 1), ord("\n"), np.uint8)], axis=1)
    pattern = re.compile(b"^" + RX[embedded].pattern.encode() + b"$", re.M)
    hits = np.zeros(len(codes), dtype=bool)
    hits[[m.start() // (n + 1) for m in pattern.finditer(lines.tobytes())]] = True
    return hits


def _product(alphabets: list[str]) -> np.ndarray:
    """Every string whose i-th letter is drawn from alphabets[i], as uint8 ``(N, n)``."""
    grids = np.meshgrid(*[np.frombuffer(a.encode(), np.uint8) for a in alphabets], indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


_LOOKUP = np.zeros(256, dtype=np.int64)
_LOOKUP[np.frombuffer(reber.SYMBOLS.encode(), np.uint8)] = np.arange(7)


def _compare(alphabets: list[str], embedded: bool) -> int:
    """Library and regex agree on every string of the product; returns how many were accepted."""
    codes = _product(alphabets)
    library = reber.automaton(embedded).accepts_ids(_LOOKUP[codes])
    oracle = _regex_accepts(codes, embedded)
    wrong = np.flatnonzero(library != oracle)
    assert wrong.size == 0, f"disagree on {codes[wrong[:5]].tobytes()!r}"
    return int(oracle.sum())


def test_brute_force_agrees_with_regex() -> None:
    """Exhaustive comparison, library automaton vs hand-written regex, on these string sets:

    1. every string over all 7 symbols of length 1..8 (6,725,600 strings), both grammars;
    2. plain: every ``B w E`` with w over T,S,X,P,V of length 7..10, i.e. every string of
       length 9..12 that starts with B, ends with E and has no B/E inside (12,187,500);
    3. embedded: every ``B u E`` with u over all 7 symbols of length 7, 8 (lengths 9, 10:
       6,588,344), and every ``B a B w E b E`` with a, b any symbol and w over T,S,X,P,V of
       length 0..6 (lengths 6..12: 957,019).
    All 16 billion strings of length <= 12 are out of reach; sets 2 and 3 hold every grammatical
    word of length <= 12 and all their near misses at the positions that matter, and set 1
    shows that B/E elsewhere is refused. The vectorised checker is tied to ``in_grammar`` below.

    Word counts by length, by hand: a_k(s) = paths of k inner symbols from state s to state 6,
    a_k(s) = sum of a_{k-1} over the two exits of s; a_{n-2}(1) for n = 5..12 gives
    2, 3, 4, 7, 11, 16, 24, 36. An embedded word of length n holds a plain word of length n - 4
    and a branch T or P, so lengths 9..12 have 2 * (2 + 3 + 4 + 7) = 32 words.
    """
    plain = [_compare([first] + [ALL] * (n - 1), False) for n in range(1, 9) for first in ALL]
    assert sum(plain) == 2 + 3 + 4 + 7  # lengths 5..8
    assert sum(_compare([first] + [ALL] * (n - 1), True) for n in range(1, 9) for first in ALL) == 0
    plain = [_compare(["B", first] + [INNER] * (n - 1) + ["E"], False) for n in range(7, 11) for first in INNER]
    assert sum(plain) == 11 + 16 + 24 + 36  # lengths 9..12
    embedded = [_compare(["B", first] + [ALL] * (n - 1) + ["E"], True) for n in (7, 8) for first in ALL]
    assert sum(embedded) == 2 * (2 + 3)  # lengths 9, 10
    embedded = [_compare(["B", a, "B"] + [INNER] * n + ["E", ALL, "E"], True) for n in range(7) for a in ALL]
    assert sum(embedded) == 2 * (2 + 3 + 4 + 7)  # lengths 9..12


def test_in_grammar_matches_regex_on_strings() -> None:
    """The string API against the regex: all short strings, ``B w E`` words, mutated samples."""
    rng = random.Random(7)
    words = ["".join(p) for n in range(1, 7) for p in itertools.product(ALL, repeat=n)]
    words += ["B" + "".join(p) + "E" for n in range(8) for p in itertools.product(INNER, repeat=n)]
    words += ["".join(rng.choice(ALL) for _ in range(rng.randint(1, 12))) for _ in range(100_000)]
    for embedded in (False, True):
        seeds = [reber.sample(rng, embedded) for _ in range(5_000)]
        words += [_mutate(rng, w) for w in seeds for _ in range(4)]
    for embedded in (False, True):
        library = [reber.in_grammar(w, embedded) for w in words]
        oracle = [RX[embedded].fullmatch(w) is not None for w in words]
        assert library == oracle
        # the vectorised checker of the brute-force test gives the same verdicts
        short = rng.sample([w for w in words if len(w) <= 12], 50_000)
        ids = np.zeros((len(short), 12), dtype=np.int64)
        for i, w in enumerate(short):
            ids[i, : len(w)] = [reber.SYMBOLS.index(c) for c in w]
        lengths = np.array([len(w) for w in short])
        assert reber.automaton(embedded).accepts_ids(ids, lengths).tolist() == [
            reber.in_grammar(w, embedded) for w in short]


def _mutate(rng: random.Random, word: str) -> str:
    i = rng.randrange(len(word))
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + rng.choice(ALL) + word[i + 1 :]
    if kind == 1:
        return word[:i] + rng.choice(ALL) + word[i:]
    return word[:i] + word[i + 1 :]


@pytest.mark.parametrize("embedded", [False, True])
def test_100k_samples_are_grammatical(embedded: bool) -> None:
    rng = random.Random(2024)
    words = [reber.sample(rng, embedded) for _ in range(100_000)]
    assert all(reber.in_grammar(w, embedded) for w in words)
    assert all(RX[embedded].fullmatch(w) for w in words)
    if embedded:
        assert all(w[1] == w[-2] for w in words)
        assert abs(sum(w[1] == "T" for w in words) / len(words) - 0.5) < 0.01


def test_sampling_probabilities_match_the_random_walk() -> None:
    """Every state 1..5 has two exits, so P(word) = 2^-(len - 2): P(BTXSE) = P(BPVVE) = 1/8."""
    rng = random.Random(5)
    counts = Counter(reber.sample(rng) for _ in range(40_000))
    for word in ("BTXSE", "BPVVE"):
        assert abs(counts[word] / 40_000 - 1 / 8) < 4 * (0.125 * 0.875 / 40_000) ** 0.5


def test_length_conditioned_sampling_is_exact() -> None:
    """Conditioned on 9 <= len <= 10, P(word) ∝ 2^-len over the regex's words of those lengths."""
    words = ["B" + "".join(p) + "E" for n in (7, 8) for p in itertools.product(INNER, repeat=n)]
    words = [w for w in words if RX[False].fullmatch(w)]
    rng = random.Random(11)
    counts = Counter(reber.sample(rng, min_length=9, max_length=10) for _ in range(20_000))
    assert set(counts) <= set(words)
    weights = np.array([2.0 ** -len(w) for w in words])
    expected = weights / weights.sum() * 20_000
    assert chisquare([counts[w] for w in words], expected).pvalue > 1e-3
    long = [reber.sample(rng, True, min_length=200) for _ in range(20)]
    assert all(len(w) >= 200 and reber.in_grammar(w, True) for w in long)


def test_targets_match_seed_001_printout() -> None:
    """The 18 target rows printed in seed 001 (symbol order B T S X P V E) for its example word."""
    seed_rows = ["0100100", "0100010", "0100010", "0000110", "0011000", "0100010", "0100010", "0000110",
                 "0011000", "0100010", "0100010", "0100010", "0000110", "0011000", "0100010", "0100010",
                 "0000110", "0000001"]
    word = "BPTVPXTVPXTTVPXTVVE"  # the only word with these targets
    inputs, targets, next_ids = reber.word_tensors(word)
    assert targets.tolist() == [[float(c) for c in row] for row in seed_rows]
    assert reber.decode(inputs) == word[:-1]
    assert "".join(reber.SYMBOLS[i] for i in next_ids) == word[1:]
    seed_verdicts = {"BTXXVVE": True, "BTSSXSE": True, "BSXXXTTVPSE": False, "BTSSXSXXTVPXTTVPXTVVE": False,
                     "BPVPXVPSE": True, "BTSSXXTTTVVE": True, "BPTVPSE": True, "BTXSXXTTVVE": False,
                     "BPVPXTTTTTTTTVPSE": True, "BTSSSSSSXXTTVPSE": True, "BTSXXTTTTVVE": True}
    assert {w: reber.in_grammar(w) for w in seed_verdicts} == seed_verdicts


def _allowed_by_regex(prefix: str) -> set[str]:
    """Symbols c with prefix+c completable: every plain state finishes within 3 inner symbols + E."""
    tails = [""] + ["".join(p) + "E" for n in range(4) for p in itertools.product(INNER, repeat=n)]
    return {c for c in ALL if any(RX[False].fullmatch(prefix + c + t) for t in tails)}


def test_targets_are_the_allowed_next_symbols() -> None:
    rng = random.Random(3)
    for word in reber.dataset(60, seed=1):
        _, targets, _ = reber.word_tensors(word)
        for t in range(len(word) - 1):
            got = {reber.SYMBOLS[i] for i in np.flatnonzero(targets[t].numpy())}
            assert got == _allowed_by_regex(word[: t + 1]) == reber.allowed_next(word[: t + 1])
    for _ in range(60):  # embedded: B a <plain word> a E, the plain targets inside
        word = reber.sample(rng, embedded=True)
        a, inner = word[1], word[2:-2]
        _, targets, _ = reber.word_tensors(word, embedded=True)
        rows = [{reber.SYMBOLS[i] for i in np.flatnonzero(r)} for r in targets.numpy()]
        inner_rows = [_allowed_by_regex(inner[: t + 1]) for t in range(len(inner) - 1)]
        assert rows == [{"T", "P"}, {"B"}] + inner_rows + [{a}, {"E"}]


def test_encode_pads_and_masks() -> None:
    words = ["BTXSE", "BPVPXVPSE", "BTSSXXTVVE"]
    batch = reber.encode(words)
    assert batch.inputs.shape == (3, 9, 7) and batch.targets.shape == (3, 9, 7)
    assert batch.lengths.tolist() == [4, 8, 9] and batch.mask.dtype == torch.bool
    for b, word in enumerate(words):
        x, y, nxt = reber.word_tensors(word)
        n = len(word) - 1
        assert torch.equal(batch.inputs[b, :n], x) and torch.equal(batch.targets[b, :n], y)
        assert torch.equal(batch.next_ids[b, :n], nxt) and torch.equal(batch.input_ids[b, :n], x.argmax(1))
        assert batch.mask[b].tolist() == [True] * n + [False] * (9 - n)
        assert not batch.inputs[b, n:].any() and not batch.targets[b, n:].any()
        assert (batch.next_ids[b, n:] == reber.IGNORE_INDEX).all()
    # the actual next symbol is always among the allowed ones
    real = batch.mask
    picked = batch.targets.gather(2, batch.next_ids.clamp(min=0).unsqueeze(2)).squeeze(2)
    assert (picked[real] == 1).all()


def test_datasets_and_batches_are_reproducible() -> None:
    assert reber.dataset(50, seed=3) == reber.dataset(50, seed=3) != reber.dataset(50, seed=4)
    a, b = reber.batches(8, seed=9, embedded=True), reber.batches(8, seed=9, embedded=True)
    for _ in range(3):
        x, y = next(a), next(b)
        assert x.words == y.words and torch.equal(x.targets, y.targets)
        assert all(reber.in_grammar(w, True) for w in x.words)
    words = next(reber.batches(64, seed=0, min_length=12, max_length=14)).words
    assert all(12 <= len(w) <= 14 for w in words)
    ds = reber.ReberDataset(10, seed=3)
    assert ds.words == reber.dataset(10, seed=3) and ds.lengths == [len(w) - 1 for w in ds.words]


def test_automaton_interface() -> None:
    g = reber.automaton()
    state = g.start
    for symbol in "BTX":
        state = g.step(state, symbol)
    assert g.allowed(state) == {"S", "X"} and g.step(state, "E") is None
    assert g.run("BTXS") is not None and g.allowed(g.run("BTXSE")) == frozenset()
    table = g.transition_table()
    assert table.shape == (g.n_states, 7) and ((table >= 0).sum(1) == [len(g.allowed(s)) for s in range(8)]).all()
    e = reber.automaton(embedded=True)
    assert e.allowed_next("BPBTXSE") == {"P"} and e.allowed_next("BTBTXSE") == {"T"}


def test_bad_input_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="rng: expected a random.Random"):
        reber.sample(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n: expected a positive number of words"):
        reber.dataset(0, seed=1)
    with pytest.raises(ValueError, match="min_length: expected at most max_length=5"):
        reber.dataset(3, seed=1, min_length=6, max_length=5)
    with pytest.raises(ValueError, match="max_length: expected a positive int"):
        reber.sample(random.Random(0), max_length=-1)
    with pytest.raises(ValueError, match="length range that holds words"):
        reber.sample(random.Random(0), max_length=4)
    with pytest.raises(ValueError, match="word: expected a complete word of the grammar.*BTXS"):
        reber.encode(["BTXS"])
    with pytest.raises(ValueError, match="words: expected a non-empty list"):
        reber.encode("BTXSE")
    with pytest.raises(ValueError, match="prefix: expected the start of a word"):
        reber.allowed_next("BX")
    with pytest.raises(ValueError, match="batch_size: expected a positive int"):
        reber.batches(0, seed=1)
    with pytest.raises(ValueError, match=r"onehot: expected rows of shape \(T, 7\)"):
        reber.decode(torch.zeros(3, 5))
    with pytest.raises(ValueError, match="transitions: expected every state able to reach an accepting state"):
        Automaton("ab", ((("a", 1),), (("b", 1),), ()), accepting=frozenset({2}))
    with pytest.raises(ValueError, match="accepting: expected final states"):
        Automaton("ab", ((("a", 1),), (("b", 0),)), accepting=frozenset({1}))
