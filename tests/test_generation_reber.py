"""Reber sampling from trained checkpoints (issue 5, acceptance 1), and the samples' distribution.

The models are trained with the Trainer API (what ``rnnkit train`` runs) on a short step
budget, saved as checkpoints, loaded back with ``from_checkpoint`` and sampled 1,000 times at a
fixed seed. Oracles: the grammar's automaton (``reber.in_grammar``) for validity, and the
model's whole-sequence forward for the probability of every word, against which the observed
word frequencies go through a chi-square test.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chisquare

from rnnkit.cli import main
from rnnkit.data import reber
from rnnkit.generation import from_checkpoint
from rnnkit.training.config import make_config
from rnnkit.training.trainer import Trainer

SAMPLES = 1000


def train(task: str, steps: int, out: Path) -> Path:
    """A checkpoint of ``task`` after ``steps`` steps (not stopping at 'solved': sampling needs sharp outputs)."""
    config = make_config(task, overrides=dict(steps=steps, stop_when_solved=False, eval_every=0, plot=False,
                                              tensorboard=False, out=str(out)))
    return Trainer(config, progress=False).fit().checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("reber")
    return {"reber": train("reber", 1000, root / "reber"),
            "embedded-reber": train("embedded-reber", 1500, root / "embedded")}


@pytest.mark.parametrize("task,threshold", [("reber", 0.99), ("embedded-reber", 0.97)])
def test_unconstrained_samples_are_valid_and_constrained_ones_always(checkpoints: dict[str, Path], task: str,
                                                                     threshold: float) -> None:
    embedded = task == "embedded-reber"
    generator, info = from_checkpoint(checkpoints[task])
    assert (info.name, info.prompt, info.end_token, info.end_count) == (task, "B", "E", 2 if embedded else 1)
    out = generator.generate("B", num_samples=SAMPLES, seed=0, end_token="E", end_count=info.end_count,
                             max_length=info.max_length)
    valid = [reber.in_grammar(w, embedded) for w in out.texts]
    assert sum(valid) / SAMPLES >= threshold
    assert all(w.startswith("B") for w in out.texts)
    assert all(not ok or done for ok, done in zip(valid, out.finished))  # a valid word is a finished one

    constrained, _ = from_checkpoint(checkpoints[task], constrained=True)
    out = constrained.generate("B", num_samples=SAMPLES, seed=0, end_token="E", end_count=info.end_count,
                               max_length=info.max_length)
    assert all(reber.in_grammar(w, embedded) for w in out.texts)


def word_logprob(model: torch.nn.Module, word: str) -> float:
    """log p(word[1:] | "B") from one whole-sequence forward: the oracle for the sampler."""
    ids = torch.tensor([[reber.SYMBOLS.index(s) for s in word]])  # (1, n)
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])  # (1, n-1, 7)
        logp = model.next_log_probs(logits.double())[0]  # (n-1, 7)
    return float(logp.gather(1, ids[0, 1:].unsqueeze(1)).sum())


def test_word_frequencies_follow_the_model(checkpoints: dict[str, Path]) -> None:
    generator, info = from_checkpoint(checkpoints["reber"])
    draws = 5000
    out = generator.generate("B", num_samples=draws, seed=1, end_token="E", max_length=200)
    counts = Counter(out.texts)
    model = generator.model
    probs = {w: np.exp(word_logprob(model, w)) for w in counts}
    for w, logprob in zip(out.texts[:50], out.logprobs[:50]):  # reported log-probabilities are the model's
        assert logprob == pytest.approx(np.log(probs[w]), abs=1e-4)
    frequent = [w for w in counts if draws * probs[w] >= 20]  # cells with enough expected mass
    assert len(frequent) >= 8
    observed = [counts[w] for w in frequent] + [draws - sum(counts[w] for w in frequent)]
    expected = [draws * probs[w] for w in frequent]
    expected.append(draws - sum(expected))
    assert chisquare(observed, expected).pvalue > 1e-3


def test_beam_search_returns_the_grammars_most_likely_words(checkpoints: dict[str, Path]) -> None:
    generator, _ = from_checkpoint(checkpoints["reber"])
    out = generator.generate("B", beam=7, num_samples=3, end_token="E", max_length=30, length_penalty=0.0)
    # under the grammar's uniform walk the shortest words are the likeliest: BTXSE and BPVVE (1/8 each)
    assert set(out.texts[:2]) == {"BTXSE", "BPVVE"}
    assert all(map(reber.in_grammar, out.texts))


def test_sample_cli_reports_the_valid_fraction(checkpoints: dict[str, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "samples.json"
    run_dir = checkpoints["embedded-reber"].parent  # the run folder rnnkit train writes, checkpoint/ inside
    code = main(["sample", str(run_dir), "--num", "300", "--seed", "0", "--json", str(path)])
    assert code == 0
    printed = capsys.readouterr().out.splitlines()
    summary = json.loads(path.read_text())
    words = [s["text"] for s in summary["samples"]]
    fraction = sum(reber.in_grammar(w, embedded=True) for w in words) / len(words)
    assert summary["valid_fraction"] == pytest.approx(fraction) and fraction >= 0.97
    assert printed[-1] == f"valid: {round(fraction * 300)} of 300 words ({100 * fraction:.1f}%)"
    verdicts = {line.split()[0]: line.split()[1] for line in printed[:-1]}
    assert sorted(verdicts) == sorted(set(words))
    assert all((v == "valid") == reber.in_grammar(w, embedded=True) for w, v in verdicts.items())
