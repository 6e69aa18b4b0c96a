"""Beam search against exhaustive enumeration (issue 5, acceptance 2), and width 1 against greedy.

The model: a small character LSTM language model over ``"BTSXPVE"``, trained for a few hundred
steps on Reber words (softmax + cross-entropy, so its distributions are peaked but not
certain). The oracle enumerates every continuation of ``"B"`` of at most ``N`` tokens (ending
at the first ``E``, or cut at ``N``), scores each with one whole-sequence forward pass, and
takes the best by the same normalised score the beam ranks by.
"""
from __future__ import annotations

import itertools

import pytest
import torch

from rnnkit.data import reber
from rnnkit.generation import Generator
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig

N = 6  # longest continuation enumerated: 7**6 = 117,649 sequences
V = len(reber.SYMBOLS)
END = reber.SYMBOLS.index("E")


@pytest.fixture(scope="module")
def model() -> LanguageModel:
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=V, embedding_size=8, dropout=0.0,
                                           rnn=RNNConfig(cell="lstm", hidden_size=24)))
    opt = torch.optim.Adam(lm.parameters(), lr=1e-2)
    stream = reber.batches(32, seed=0)
    for _ in range(150):
        batch = next(stream)
        logits, _ = lm(batch.input_ids, lengths=batch.lengths)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), batch.next_ids,
                                                 ignore_index=reber.IGNORE_INDEX)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lm.eval()


def brute_force(lm: LanguageModel, length_penalty: float, grammatical: bool = False) -> tuple[str, float]:
    """The best continuation of "B" with at most N tokens, by exhaustive enumeration."""
    seqs = torch.tensor(list(itertools.product(range(V), repeat=N)))  # (V**N, N)
    tokens = torch.cat([torch.zeros(len(seqs), 1, dtype=torch.int64), seqs], dim=1)  # (V**N, 1+N), "B" first
    with torch.no_grad():
        logits, _ = lm(tokens[:, :-1])  # (V**N, N, V)
        logp = torch.log_softmax(logits.double(), dim=-1).gather(2, seqs.unsqueeze(2)).squeeze(2)  # (V**N, N)
    is_end = seqs == END
    first_end = torch.where(is_end.any(1), is_end.int().argmax(1) + 1, N)  # (V**N,) length of the candidate
    steps = torch.arange(N).unsqueeze(0) < first_end.unsqueeze(1)  # (V**N, N)
    raw = (logp * steps).sum(1)
    score = raw / first_end.double() ** length_penalty
    if grammatical:  # a complete word, or a prefix of one cut at N tokens
        words = ["B" + "".join(reber.SYMBOLS[i] for i in row[: int(n)]) for row, n in zip(seqs.tolist(), first_end)]
        ok = torch.tensor([reber.in_grammar(w) or (len(w) == 1 + N and reber.REBER.run(w) is not None) for w in words])
        score = torch.where(ok, score, -torch.inf)
    best = int(score.argmax())
    word = "B" + "".join(reber.SYMBOLS[i] for i in seqs[best, : int(first_end[best])].tolist())
    return word, float(raw[best])


@pytest.mark.parametrize("length_penalty", [0.0, 0.5, 1.0])
def test_beam_as_wide_as_the_vocabulary_finds_the_most_likely_sequence(model: LanguageModel,
                                                                       length_penalty: float) -> None:
    want, want_logprob = brute_force(model, length_penalty)
    for width in (V, 2 * V):
        out = Generator(model, vocab=reber.SYMBOLS).generate("B", beam=width, max_length=N, end_token="E",
                                                             length_penalty=length_penalty)
        assert out.texts[0] == want
        assert out.logprobs[0] == pytest.approx(want_logprob, abs=1e-4)


def test_beam_with_a_grammar_constraint_finds_the_best_grammatical_prefix(model: LanguageModel) -> None:
    want, _ = brute_force(model, 1.0, grammatical=True)
    out = Generator(model, vocab=reber.SYMBOLS, constraint=reber.automaton()).generate(
        "B", beam=V, max_length=N, end_token="E")
    assert out.texts[0] == want


def test_width_one_is_greedy(model: LanguageModel) -> None:
    gen = Generator(model, vocab=reber.SYMBOLS)
    for penalty in (0.0, 1.0):
        for prompt in ("B", "BT", "BPV"):
            beam = gen.generate(prompt, beam=1, max_length=12, end_token="E", length_penalty=penalty)
            greedy = gen.generate(prompt, greedy=True, max_length=12, end_token="E")
            assert beam.tokens == greedy.tokens
            assert beam.logprobs[0] == pytest.approx(greedy.logprobs[0], abs=1e-9)


def test_hypotheses_come_best_first_with_their_scores(model: LanguageModel) -> None:
    out = Generator(model, vocab=reber.SYMBOLS).generate("B", beam=10, num_samples=10, max_length=20, end_token="E")
    assert out.scores == sorted(out.scores, reverse=True)
    assert len(set(out.texts)) == 10
    for text, logprob, score, tokens, finished in zip(out.texts, out.logprobs, out.scores, out.tokens, out.finished):
        assert score == pytest.approx(logprob / len(tokens))
        assert finished == text.endswith("E") and reber.in_grammar(text) == finished  # a trained model, short words


def test_a_tiny_temperature_samples_the_greedy_sequence(model: LanguageModel) -> None:
    gen = Generator(model, vocab=reber.SYMBOLS)
    greedy = gen.generate("B", greedy=True, max_length=20, end_token="E")
    cold = gen.generate("B", temperature=1e-4, num_samples=50, max_length=20, end_token="E", seed=0)
    assert cold.texts == greedy.texts * 50
    warm = gen.generate("B", temperature=1.0, num_samples=50, max_length=20, end_token="E", seed=0)
    assert len(set(warm.texts)) > 5  # at temperature 1 the same model does not collapse to one word
