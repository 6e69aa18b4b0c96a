"""The Reber and embedded Reber tasks: predict the set of symbols the grammar allows next.

Training: every step draws ``batch_size`` fresh words from ``random.Random(step_seed(...))``;
the model is a :class:`~rnnkit.models.SequenceTagger` with one sigmoid per symbol and the
masked binary cross-entropy of seed 001. Words are right-padded and the model is causal, so
padding never reaches a real step and no packing is needed.

Evaluation, on ``eval_size`` held-out words drawn once from ``EVAL_SEED`` (one batched forward):

- ``next_symbol_set_accuracy``: the share of held-out steps (every real input step of every word)
  where the set of symbols predicted with p > 0.5 equals the set the grammar allows next.
- ``long_range_accuracy`` (embedded only): the share of held-out words whose second-to-last
  symbol is predicted correctly. Precisely: at the input step that reads the inner word's final
  ``E`` (step ``len(word) - 3``), the thresholded set {s : p(s) > 0.5} must be exactly
  {second symbol of the word}, i.e. the right one of T/P is above 0.5 *and* every other symbol,
  the wrong one of T/P included, is below. This is stricter than an argmax between T and P.

The task counts as solved when both metrics (one for the plain grammar) are >= ``SOLVED`` (0.99).

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = ReberTask(make_config("embedded-reber", overrides={"eval_size": 20}))
    >>> sorted(task.evaluate(task.build_model()))
    ['long_range_accuracy', 'next_symbol_set_accuracy']
"""
from __future__ import annotations

import random

import torch
from torch import nn

from rnnkit.data import reber
from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.tasks import EVAL_SEED, SOLVED, Batch, Task, step_seed, unwrap

__all__ = ["ReberTask", "reber_metrics"]


def reber_metrics(logits: torch.Tensor, batch: reber.ReberBatch, embedded: bool) -> dict[str, float]:
    """The task's metrics for ``logits`` (B, T, 7) of the words in ``batch`` (see the module docstring)."""
    exact = ((logits > 0) == (batch.targets > 0.5)).all(dim=-1)  # (B, T): p > 0.5 <=> logit > 0
    mask = batch.mask
    metrics = {"next_symbol_set_accuracy": float((exact & mask).sum()) / float(mask.sum())}
    if embedded:
        rows = torch.arange(exact.shape[0])
        metrics["long_range_accuracy"] = float(exact[rows, batch.lengths - 2].float().mean())  # (B,) -> share
    return metrics


class ReberTask(Task):
    """``reber`` and ``embedded-reber``; see the module docstring."""

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, rank, world_size)
        self.embedded = config.task == "embedded-reber"
        self.name = config.task
        self.headline = "long_range_accuracy" if self.embedded else "next_symbol_set_accuracy"
        self.grammar = reber.automaton(self.embedded)
        self._held_out: reber.ReberBatch | None = None

    @property
    def held_out(self) -> reber.ReberBatch:
        """The held-out words, encoded (drawn on first use, always the same)."""
        if self._held_out is None:
            words = reber.dataset(self.config.eval_size, seed=EVAL_SEED, embedded=self.embedded)
            self._held_out = reber.encode(words, self.embedded)
        return self._held_out

    def build_model(self) -> nn.Module:
        c = self.config
        rnn = RNNConfig(cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers, dropout=c.dropout,
                        engine=c.engine)
        return SequenceTagger(TaggerConfig(vocab_size=len(reber.SYMBOLS), rnn=rnn, target="multi_hot",
                                           learn_initial_state=c.learn_initial_state))

    def batch(self, step: int) -> Batch:
        rng = random.Random(step_seed(self.name, self.config.seed, self.rank, step))
        words = [self.grammar.sample(rng, None, None) for _ in range(self.config.batch_size)]
        return self.encode_words(words)

    def encode_words(self, words: list[str]) -> Batch:
        """A training batch of the given words (they must be in the grammar)."""
        b = reber.encode(words, self.embedded)
        return Batch(inputs=b.input_ids, targets=b.targets, mask=b.mask, sequences=len(words),
                     tokens=int(b.lengths.sum()))

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        return self.evaluate_words(model, self.held_out)

    def evaluate_words(self, model: nn.Module, words: reber.ReberBatch) -> dict[str, float]:
        """The metrics on any encoded words (``rnnkit eval --data words.txt`` uses this)."""
        net = unwrap(model)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            logits, _ = net(words.input_ids)  # (B, T, 7)
        net.train(was_training)
        return reber_metrics(logits, words, self.embedded)

    def solved(self, metrics: dict[str, float]) -> bool:
        return all(metrics[k] >= SOLVED for k in ("next_symbol_set_accuracy", "long_range_accuracy") if k in metrics)

    def describe(self) -> str:
        kind = "embedded Reber grammar" if self.embedded else "Reber grammar"
        return (f"{kind}: {self.config.batch_size} fresh words per step, "
                f"{self.config.eval_size} held-out words (seed {EVAL_SEED})")
