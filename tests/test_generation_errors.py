"""Bad input to the Python API gets a clear ValueError naming the argument, the value and the fix (acceptance 5)."""
from __future__ import annotations

import math

import pytest
import torch

import rnnkit
from rnnkit.data import reber
from rnnkit.data.vocab import Vocab
from rnnkit.generation import Generator, GenerationConfig, from_checkpoint
from rnnkit.models import (LanguageModel, LanguageModelConfig, RegressorConfig, RNNConfig, SequenceRegressor,
                           SequenceTagger, TaggerConfig)

VOCAB = Vocab.build("abc \n")


@pytest.fixture
def lm() -> LanguageModel:
    return LanguageModel(LanguageModelConfig(vocab_size=len(VOCAB), embedding_size=4, rnn=RNNConfig(hidden_size=8)))


def test_prompt_character_outside_the_vocabulary_names_it_and_its_position(lm: LanguageModel) -> None:
    with pytest.raises(ValueError, match=r"prompt: .*'abd', whose character 'd' \(U\+0064\) at position 2 is not in"):
        lm.generate("abd", vocab=VOCAB)
    with pytest.raises(ValueError, match=r"prompt: .*'é' \(U\+00E9\) at position 0"):
        Generator(lm, vocab=VOCAB).generate("é")


@pytest.mark.parametrize("value", [0, 0.0, -0.5, math.inf, math.nan, "1"])
def test_temperature_must_be_positive(value: object) -> None:
    with pytest.raises(ValueError, match=r"temperature: expected a finite number > 0.*greedy=True"):
        GenerationConfig(temperature=value)


@pytest.mark.parametrize("value", [0, 0.0, -0.1, 1.0001, 2, math.nan])
def test_top_p_must_lie_in_zero_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"top_p: expected None or a probability in \(0, 1\]"):
        GenerationConfig(top_p=value)


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_top_k_must_be_at_least_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"top_k: expected None or an int >= 1"):
        GenerationConfig(top_k=value)


@pytest.mark.parametrize("value", [0, -1, 1.5])
def test_beam_must_be_at_least_one(value: object) -> None:
    with pytest.raises(ValueError, match=r"beam: expected None \(sampling\) or a beam width >= 1"):
        GenerationConfig(beam=value)


@pytest.mark.parametrize("options,pattern", [
    ({"greedy": True, "top_k": 3}, r"top_k: expected no sampling options with greedy=True"),
    ({"beam": 3, "temperature": 0.5}, r"beam: expected no sampling options and no greedy"),
    ({"beam": 2, "num_samples": 3}, r"num_samples: expected at most beam=2 hypotheses"),
    ({"max_length": 0}, r"max_length: expected an int >= 1"),
    ({"length_penalty": -1.0}, r"length_penalty: expected a finite number >= 0"),
    ({"seed": -1}, r"seed: expected None or an int in \[0, 2\*\*63\)"),
    ({"end_token": "EE"}, r"end_token: expected None, a token id >= 0 or a single character"),
    ({"end_count": 0}, r"end_count: expected an int >= 1"),
])
def test_inconsistent_options(options: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        GenerationConfig(**options)


def test_misspelt_option_is_named(lm: LanguageModel) -> None:
    with pytest.raises(ValueError, match=r"temprature: expected a GenerationConfig field"):
        lm.generate("ab", vocab=VOCAB, temprature=0.5)


def test_prompt_forms(lm: LanguageModel) -> None:
    with pytest.raises(ValueError, match=r"prompt: expected token ids \(the Generator has no vocabulary"):
        Generator(lm).generate("ab")
    with pytest.raises(ValueError, match=r"prompt: expected at least one token"):
        Generator(lm, vocab=VOCAB).generate("")
    with pytest.raises(ValueError, match=r"prompt: expected token ids in 0..4"):
        Generator(lm).generate(torch.tensor([1, 9]))
    with pytest.raises(ValueError, match=r"prompt: expected integer token ids of shape \(P,\) or \(B, P\)"):
        Generator(lm).generate(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"end_token: expected a token id \(the Generator has no vocabulary"):
        Generator(lm).generate([1], end_token="a")


def test_models_that_do_not_decode() -> None:
    regressor = SequenceRegressor(RegressorConfig(input_size=2, output_size=1))
    with pytest.raises(ValueError, match=r"model: expected a model that predicts the next token.*no step"):
        Generator(regressor)
    bidirectional = SequenceTagger(TaggerConfig(rnn=RNNConfig(hidden_size=4, bidirectional=True)))
    with pytest.raises(ValueError, match=r"model: expected a unidirectional model"):
        Generator(bidirectional)
    other_outputs = SequenceTagger(TaggerConfig(vocab_size=7, num_outputs=3))
    with pytest.raises(ValueError, match=r"model: expected a model whose outputs are its inputs"):
        Generator(other_outputs)


def test_vocabulary_and_constraint_mismatches(lm: LanguageModel) -> None:
    with pytest.raises(ValueError, match=r"vocab: expected 5 tokens, the model's vocab_size, but received 7 tokens"):
        Generator(lm, vocab=reber.SYMBOLS)
    with pytest.raises(ValueError, match=r"constraint: expected None, a Constraint, an Automaton or a callable"):
        Generator(lm, constraint=42)
    with pytest.raises(ValueError, match=r"constraint: expected one character of the vocabulary"):
        Generator(lm, vocab=VOCAB, constraint=reber.automaton()).generate("a")  # 'B' is not in "abc \n"
    tagger = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=4)))
    with pytest.raises(ValueError, match=r"prompt: expected the start of a word of the constraining grammar.*'BE'"):
        tagger.generate("BE", vocab=reber.SYMBOLS, constraint=reber.automaton())
    with pytest.raises(ValueError, match=r"constraint: expected allowed ids in 0..4"):
        Generator(lm, constraint=lambda prefix: [7]).generate([1])


def test_from_checkpoint_refuses_what_is_not_a_language_model(tmp_path) -> None:
    regressor = SequenceRegressor(RegressorConfig(input_size=2, output_size=1))
    path = rnnkit.save(regressor, tmp_path / "regressor")
    with pytest.raises(ValueError, match=r"checkpoint: expected a language model.*SequenceRegressor"):
        from_checkpoint(path)
    tagger = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=4)))
    path = rnnkit.save(tagger, tmp_path / "tagger", metadata={"task": "reber"})
    with pytest.raises(ValueError, match=r"grammar: expected the checkpoint's own task \('reber'\)"):
        from_checkpoint(path, grammar="embedded-reber")
    with pytest.raises(ValueError, match=r"grammar: expected one of reber, embedded-reber"):
        from_checkpoint(path, grammar="english")
    with pytest.raises(rnnkit.CheckpointError):
        from_checkpoint(tmp_path / "nowhere")
