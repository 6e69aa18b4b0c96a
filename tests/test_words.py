"""The word-level language model: sentences, vocabulary, n-gram baselines, sentence generation."""
from __future__ import annotations

import math
import tempfile

import pytest
import torch

from rnnkit.data.pairs import TokenVocab
from rnnkit.data.words import encode_sentences, ngram_perplexities, sentences
from rnnkit.generation.sentences import SentenceConstraint, generate_sentences
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
from rnnkit.training.config import make_config
from rnnkit.training.task_words import WordTask

TEXT = "The cat sat on the mat. The dog sat on the log! A cat saw a dog. " * 40


def test_sentences_keep_punctuation_as_tokens() -> None:
    assert sentences("Hi, you. Yes!") == [["Hi", ",", "you", "."], ["Yes", "!"]]
    assert sentences("a b c d e", max_tokens=2) == [["a", "b"], ["c", "d"], ["e"]]


def test_vocabulary_keeps_the_most_frequent_words_and_maps_the_rest_to_unk() -> None:
    vocab = TokenVocab.build([["a", "a", "a", "b", "b", "c"]], max_size=6)
    assert vocab.tokens == ("<pad>", "<s>", "</s>", "<unk>", "a", "b")
    assert encode_sentences([["a", "c"]], vocab) == [[1, 4, 3, 2]]


def test_ngram_baselines_against_hand_computation() -> None:
    train = [[1, 4, 5, 2], [1, 4, 2]]
    held = [[1, 5, 2]]
    V = 6  # outcomes: ids 2..5 -> 4
    out = ngram_perplexities(train, held, V)
    # unigram counts: 4:2, 5:1, 2:2 (total 5); add-one over 4 outcomes
    uni = [(1 + 1) / (5 + 4), (2 + 1) / (5 + 4)]  # p(5), p(</s>)
    bi = [(0 + 1) / (2 + 4), (1 + 1) / (1 + 4)]  # p(5|<s>), p(</s>|5)
    assert out["unigram_add1_ppl"] == pytest.approx(math.exp(-sum(map(math.log, uni)) / 2))
    assert out["bigram_add1_ppl"] == pytest.approx(math.exp(-sum(map(math.log, bi)) / 2))


def biased_model(vocab: TokenVocab, unk_bias: float, end_bias: float) -> LanguageModel:
    torch.manual_seed(0)
    lm = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_size=8, rnn=RNNConfig(hidden_size=16)))
    with torch.no_grad():
        lm.decoder.bias[3] += unk_bias  # the model loves <unk> ...
        lm.decoder.bias[2] += end_bias  # ... and wants to stop at once
    return lm.eval()


@pytest.mark.parametrize("options", [dict(seed=0), dict(seed=1, temperature=0.7, top_k=5), dict(greedy=True),
                                     dict(beam=4)])
def test_generated_sentences_start_at_bos_end_at_eos_respect_min_length_and_never_emit_unk(options) -> None:
    vocab = TokenVocab.build(sentences(TEXT))
    lm = biased_model(vocab, unk_bias=8.0, end_bias=6.0)
    num = 4 if "beam" in options else 20
    out = generate_sentences(lm, vocab, num_samples=num, min_length=5, max_length=60, **options)
    assert len(out) == num
    for sentence in out:
        assert sentence.finished
        assert sentence.tokens[0] == "<s>" and sentence.tokens[-1] == "</s>"
        words = sentence.tokens[1:-1]
        assert len(words) >= 5 and "<unk>" not in words and "</s>" not in words and "<s>" not in words
    # the bias is real: unconstrained, the same model emits <unk> and stops early
    free = lm.generate(torch.tensor([[1]]), max_length=10, num_samples=20, seed=0, end_token=2)
    assert any(3 in row for row in free.tokens) and any(len(row) < 5 for row in free.tokens)


def test_sentence_constraint_masks() -> None:
    c = SentenceConstraint(6, min_length=2)
    state = c.start(torch.tensor([[1], [1]]))
    assert c.allowed(state).tolist()[0] == [False, False, False, False, True, True]
    state = c.advance(c.advance(state, torch.tensor([4, 4]), torch.tensor([True, True])), torch.tensor([5, 5]),
                      torch.tensor([True, False]))
    assert c.allowed(state)[:, 2].tolist() == [True, False]
    with pytest.raises(ValueError, match="min_length"):
        SentenceConstraint(6, min_length=-1)


def test_word_task_trains_beats_the_baselines_and_checkpoints_its_vocabulary() -> None:
    from rnnkit.training.checkpoint import load_checkpoint
    from rnnkit.training.trainer import Trainer

    config = make_config("words", overrides={"steps": 150, "time_budget": None, "eval_every": 0, "hidden_size": 32,
                                             "embedding_size": 16, "batch_size": 16, "plot": False,
                                             "tensorboard": False, "out": tempfile.mkdtemp(), "vocab_size": 20})
    task = WordTask(config, text=TEXT)
    result = Trainer(config, task=task, progress=False).fit()
    baseline = result.summary["baseline"]
    # on this repetitive text the bigram is nearly exact; 150 steps must at least beat the unigram
    assert baseline["bigram_add1_ppl"] < result.metrics["val_ppl"] < baseline["unigram_add1_ppl"]
    ckpt = load_checkpoint(result.checkpoint)
    assert TokenVocab.from_json(ckpt.vocab) == task.vocab and ckpt.vocab["kind"] == "words"


def test_stream_unit_batches_are_windows_of_the_token_stream() -> None:
    task = WordTask(make_config("words", overrides={"lm_unit": "stream", "bptt": 7, "batch_size": 3}), text=TEXT)
    batch = task.batch(5)
    assert tuple(batch.inputs.shape) == (3, 7) and batch.mask is None
    assert torch.equal(batch.inputs[:, 1:], batch.targets[:, :-1])
