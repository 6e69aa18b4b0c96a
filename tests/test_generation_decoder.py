"""Step-wise decoding with a carried state: it must equal re-running the whole sequence.

Oracle: the model's own whole-sequence ``forward`` on prompt + generated tokens (teacher
forcing), which gives the log-probability of every generated token and the argmax at every
position. A spy counts the model calls to show the prefix is never re-run.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from rnnkit.data import reber
from rnnkit.data.vocab import Vocab
from rnnkit.generation import Generator, GenerationConfig
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig, SequenceTagger, TaggerConfig

TEXT = "the quick brown fox jumps over the lazy dog\n"
VOCAB = Vocab.build(TEXT)


def make_lm(cell: str = "lstm", layers: int = 2, tie: bool = False) -> LanguageModel:
    config = LanguageModelConfig(vocab_size=len(VOCAB), embedding_size=12, tie_weights=tie,
                                 rnn=RNNConfig(cell=cell, hidden_size=16, num_layers=layers, dropout=0.3), dropout=0.3)
    model = LanguageModel(config)
    with torch.no_grad():  # larger weights: peaked, position-dependent distributions
        for p in model.parameters():
            p.mul_(3.0)
    return model


def teacher_forced(model: torch.nn.Module, prompt: list[int], tokens: list[int]) -> Tensor:
    """log p(tokens[t] | prompt, tokens[:t]) for every t, from one whole-sequence forward."""
    seq = torch.tensor([prompt + tokens])  # (1, P+T)
    with torch.no_grad():
        logits, _ = model(seq, state=None)  # (1, P+T, V)
        logp = model.next_log_probs(logits[0, len(prompt) - 1: -1].double())  # (T, V)
    return logp, logp.gather(1, torch.tensor(tokens).unsqueeze(1)).squeeze(1)  # (T, V), (T,)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("elman", 3)])
def test_sampled_logprobs_equal_the_whole_sequence_forward(cell: str, layers: int) -> None:
    model = make_lm(cell, layers).double()  # float64: the two paths agree to rounding, even on chaotic weights
    out = model.generate("the ", vocab=VOCAB, max_length=30, num_samples=4, seed=1, top_k=5)
    assert model.training  # generation ran in eval mode (no dropout) and restored the mode
    for prompt, tokens, per_token, total in zip(out.prompts, out.tokens, out.token_logprobs, out.logprobs):
        _, want = teacher_forced(model.eval(), prompt, tokens)
        assert torch.allclose(torch.tensor(per_token, dtype=torch.float64), want, atol=1e-9)
        assert total == pytest.approx(float(want.sum()), abs=1e-8)
        model.train()
    assert out.texts == [VOCAB.decode(p + t) for p, t in zip(out.prompts, out.tokens)]


def test_greedy_takes_the_argmax_of_the_whole_sequence_forward_at_every_step() -> None:
    model = make_lm().eval()
    out = model.generate("a lazy ", vocab=VOCAB, greedy=True, max_length=25)
    logp, _ = teacher_forced(model, out.prompts[0], out.tokens[0])
    assert out.tokens[0] == logp.argmax(dim=1).tolist()


class Spy(torch.nn.Module):
    """Wraps a decoding model and records the shapes it is called with."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.forward_shapes: list[tuple[int, ...]] = []
        self.step_shapes: list[tuple[int, ...]] = []

    def forward(self, tokens: Tensor, state: object = None) -> tuple[Tensor, object]:
        self.forward_shapes.append(tuple(tokens.shape))
        return self.inner(tokens, state=state)

    def step(self, tokens: Tensor, state: object) -> tuple[Tensor, object]:
        self.step_shapes.append(tuple(tokens.shape))
        return self.inner.step(tokens, state)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        return self.inner.next_log_probs(logits)


def test_the_prompt_is_read_once_and_each_token_costs_one_step() -> None:
    spy = Spy(make_lm())
    Generator(spy, vocab=VOCAB).generate("the quick ", max_length=40, num_samples=6, seed=0)
    assert spy.forward_shapes == [(1, 10)]  # one whole-sequence pass over the prompt, shared by the 6 samples
    assert spy.step_shapes == [(6,)] * 39  # then one single-token step per new token (the first comes from priming)


def test_several_prompts_come_out_prompt_major() -> None:
    model = make_lm().eval()
    prompts = torch.stack([VOCAB.encode("the "), VOCAB.encode("dog ")])  # (2, 4)
    out = Generator(model, vocab=VOCAB).generate(prompts, num_samples=3, max_length=5, greedy=True)
    assert out.prompts == [prompts[0].tolist()] * 3 + [prompts[1].tolist()] * 3
    for b in range(2):
        alone = Generator(model, vocab=VOCAB).generate(prompts[b], max_length=5, greedy=True)
        assert out.tokens[3 * b] == alone.tokens[0]


def test_end_token_stops_each_row_and_is_kept() -> None:
    model = make_lm().eval()
    out = model.generate("the", vocab=VOCAB, end_token=" ", max_length=60, num_samples=40, seed=2)
    space = VOCAB.encode(" ").item()
    for tokens, finished, per_token in zip(out.tokens, out.finished, out.token_logprobs):
        assert len(per_token) == len(tokens)
        if finished:
            assert tokens[-1] == space and space not in tokens[:-1]
        else:
            assert len(tokens) == 60 and space not in tokens
    assert any(out.finished) and len({len(t) for t in out.tokens}) > 1
    twice = model.generate("the", vocab=VOCAB, end_token=" ", end_count=2, max_length=60, num_samples=20, seed=2)
    for tokens, finished in zip(twice.tokens, twice.finished):
        assert tokens.count(space) == (2 if finished else tokens.count(space)) and tokens.count(space) <= 2
        if finished:
            assert tokens[-1] == space


def test_automaton_and_callable_constraints_keep_every_word_in_the_grammar() -> None:
    model = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=8)))  # untrained: errs freely
    plain = model.generate("B", vocab=reber.SYMBOLS, end_token="E", num_samples=200, seed=0, max_length=50)
    assert sum(map(reber.in_grammar, plain.texts)) < 20  # without a constraint, almost nothing is valid
    for embedded in (False, True):
        grammar = reber.automaton(embedded)
        out = model.generate("B", vocab=reber.SYMBOLS, constraint=grammar, end_token="E", end_count=1 + embedded,
                             num_samples=200, seed=0, max_length=400)
        assert all(out.finished) and all(reber.in_grammar(w, embedded) for w in out.texts)

    def allowed(prefix: list[int]) -> list[int]:
        word = "".join(reber.SYMBOLS[i] for i in prefix)
        return [reber.SYMBOLS.index(s) for s in reber.allowed_next(word)]

    # no end token: a row stops when the callable allows nothing more (the word is complete)
    out = Generator(model, vocab=reber.SYMBOLS, constraint=allowed).generate("B", num_samples=50, seed=1,
                                                                            max_length=400)
    assert all(out.finished) and all(map(reber.in_grammar, out.texts))


def test_a_config_object_and_keyword_options_are_the_same() -> None:
    model = make_lm().eval()
    config = GenerationConfig(max_length=12, top_p=0.9, num_samples=2, seed=5)
    a = Generator(model, vocab=VOCAB).generate("the ", config)
    b = model.generate("the ", vocab=VOCAB, max_length=12, top_p=0.9, num_samples=2, seed=5)
    c = model.generate("the ", config, vocab=VOCAB, seed=6)
    assert a.texts == b.texts and a.texts != c.texts


def test_on_token_streams_what_is_returned() -> None:
    model = make_lm().eval()
    seen: list[list[int]] = [[], []]

    def on_token(tokens: Tensor, live: Tensor, done: Tensor) -> None:
        for row in live.nonzero().flatten().tolist():
            seen[row].append(int(tokens[row]))

    out = model.generate("the", vocab=VOCAB, end_token=" ", max_length=30, num_samples=2, seed=4, on_token=on_token)
    assert seen == out.tokens


def test_tied_and_float64_models_decode() -> None:
    model = make_lm(tie=True).double().eval()
    out = model.generate("fox", vocab=VOCAB, max_length=8, seed=0)
    _, want = teacher_forced(model, out.prompts[0], out.tokens[0])
    assert out.logprobs[0] == pytest.approx(float(want.sum()), abs=1e-9)
    assert math.isfinite(out.logprobs[0])
