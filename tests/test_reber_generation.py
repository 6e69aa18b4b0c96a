""""Solved" includes generation: ``sample_validity`` against two oracles, and a trained model that samples.

The oracles are independent of the estimator: an exact sum over every grammatical word up to a
length (depth-first over valid prefixes, with the model's own step-by-step probabilities), and
the real sampler of ``rnnkit sample`` (``Generator``), judged word by word by ``in_grammar``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from rnnkit.data import reber
from rnnkit.generation import Generator
from rnnkit.training.config import make_config
from rnnkit.training.task_reber import GENERATION_SOLVED, ReberTask, held_out_validity, sample_validity
from rnnkit.training.trainer import Trainer


@pytest.fixture(scope="module")
def half_trained() -> torch.nn.Module:
    """A plain-Reber model that samples grammatical words about half of the time (seeded)."""
    torch.manual_seed(0)
    task = ReberTask(make_config("reber", overrides={"seed": 4, "eval_size": 50}))
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(90):
        batch = task.batch(step)
        logits, _ = model(batch.inputs)
        loss = model.loss(logits, batch.targets, batch.mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _exact_validity(model: torch.nn.Module, max_length: int) -> float:
    """Sum of p(word) over every Reber word of at most ``max_length`` generated symbols (brute force)."""
    grammar = reber.automaton()
    total = 0.0
    stack = [("B", 0.0)]
    with torch.no_grad():
        while stack:
            prefix, logp = stack.pop()
            ids = torch.tensor([[reber.SYMBOLS.index(c) for c in prefix]])
            logits, _ = model(ids)  # (1, P, 7): the whole prefix, no carried state
            next_logp = model.next_log_probs(logits[0, -1]).double()  # (7,)
            for symbol in grammar.allowed(grammar.run(prefix)):
                word, lp = prefix + symbol, logp + float(next_logp[reber.SYMBOLS.index(symbol)])
                if grammar.accepts(word):
                    total += math.exp(lp)
                elif len(word) - 1 < max_length:
                    stack.append((word, lp))
    return total


def test_sample_validity_is_the_exact_probability_of_a_grammatical_word(half_trained: torch.nn.Module) -> None:
    exact = _exact_validity(half_trained, max_length=10)
    estimate = sample_validity(half_trained, reber.automaton(), paths=20_000, max_length=10)
    assert 0.1 < exact < 0.9  # a model that is neither hopeless nor perfect
    assert estimate == pytest.approx(exact, abs=0.01)


def test_sample_validity_matches_the_share_rnnkit_sample_draws(half_trained: torch.nn.Module) -> None:
    out = Generator(half_trained, vocab=reber.SYMBOLS).generate("B", num_samples=4000, end_token="E",
                                                                 max_length=200, seed=3)
    share = sum(reber.in_grammar(text) for text in out.texts) / len(out.texts)
    estimate = sample_validity(half_trained, reber.automaton())
    assert estimate == pytest.approx(share, abs=4 * math.sqrt(share * (1 - share) / 4000) + 0.005)


def test_held_out_validity_is_one_for_a_perfect_tagger() -> None:
    batch = reber.encode(reber.dataset(30, seed=2, embedded=True), embedded=True)
    assert held_out_validity((batch.targets * 2 - 1) * 40, batch) == pytest.approx(1.0, abs=1e-9)
    assert held_out_validity((batch.targets * 2 - 1) * 2, batch) < 0.5  # mass left on forbidden symbols


def test_not_solved_until_sample_validity_is_known_and_high() -> None:
    task = ReberTask(make_config("reber", overrides={"eval_size": 10}))
    assert not task.solved({"next_symbol_set_accuracy": 1.0})
    assert not task.solved({"next_symbol_set_accuracy": 1.0, "sample_validity": 0.99})
    assert task.solved({"next_symbol_set_accuracy": 1.0, "sample_validity": GENERATION_SOLVED})


@pytest.mark.slow
def test_a_solved_reber_run_samples_grammatical_words(tmp_path: Path) -> None:
    """Issue 12 acceptance 1, one seed in CI: default flags, then 1,000 free-running samples."""
    result = Trainer(make_config("reber", overrides={"seed": 123, "out": str(tmp_path), "plot": False,
                                                 "tensorboard": False}), progress=False).fit()
    assert result.stopped == "solved" and result.solved
    from rnnkit.generation.setup import from_checkpoint

    generator, task = from_checkpoint(tmp_path)
    out = generator.generate(task.prompt, num_samples=1000, end_token=task.end_token, end_count=task.end_count,
                             max_length=task.max_length, seed=11)
    assert sum(task.valid(text) for text in out.texts) >= 990
