"""The word-level language-model task (``--task words``, seed 002): perplexity against n-gram baselines.

Data: ``config.data`` (a UTF-8 file or folder of .txt files) or, by default, the character
task's corpus (CPython's ``pydoc_data.topics``). The text is split into sentences of word and
punctuation tokens (:mod:`rnnkit.data.words`); sentences longer than ``bptt`` tokens are cut.
The last ``val_fraction`` of the sentences is validation. The vocabulary is the
``vocab_size`` most frequent training tokens with ``<pad>``, ``<s>``, ``</s>`` and ``<unk>``;
the checkpoint records it.

Training (``lm_unit``): ``"sentences"`` draws ``batch_size`` random sentences per step, each
``<s> w1 .. wn </s>``, padded and masked; ``"stream"`` reads random windows of ``bptt + 1``
tokens of all training sentences laid end to end. Either way each step starts from a zero state.

Scores: ``val_loss`` (nats per predicted token: every word and ``</s>`` of each validation
sentence, read from its ``<s>``) and ``val_ppl = exp(val_loss)``. The baselines, computed on the
same split and the same tokens, are add-one-smoothed unigram and bigram perplexities.

Initialisation: the LSTM keeps rnnkit's own (orthogonal recurrent blocks, forget bias 1). The
character task switched to ``torch.nn.LSTM``'s U(-1/sqrt(H), 1/sqrt(H)) because it trained
better per step there; here it did not: with this task's defaults on ``pydoc_data.topics``,
1,000 steps, seeds 0-3, validation loss 3.1316 / 3.1632 / 3.1109 / 3.1355 with rnnkit's init
against 3.1411 / 3.1065 / 3.1215 / 3.1532 with torch's (rnnkit's lower in 3 of 4 seeds, means
3.135 and 3.131: a difference smaller than the spread between seeds).

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = WordTask(make_config("words", overrides={"batch_size": 2, "vocab_size": 50}),
    ...                 text="The cat sat. The dog ran! A cat ran. " * 30)
    >>> batch = task.batch(0)
    >>> batch.inputs[:, 0].tolist(), task.vocab.tokens[:4]        # every sentence starts at <s>
    ([1, 1], ('<pad>', '<s>', '</s>', '<unk>'))
"""
from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data.pairs import TokenVocab
from rnnkit.data.words import encode_sentences, ngram_perplexities, sentences
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.device import to_device
from rnnkit.training.task_base import Batch, Task, model_device, step_seed, unwrap

__all__ = ["WordTask"]

EVAL_BATCH = 128  # validation sentences per forward pass


def _pad(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inputs (B, T), targets (B, T), mask (B, T) of id rows that start at <s> and end at </s>."""
    T = max(len(r) for r in rows) - 1
    ids = torch.zeros(len(rows), T + 1, dtype=torch.int64)  # (B, T+1)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    lengths = torch.tensor([len(r) - 1 for r in rows])
    mask = torch.arange(T) < lengths.unsqueeze(1)  # (B, T)
    return ids[:, :-1], ids[:, 1:], mask


class WordTask(Task):
    """A word-level LanguageModel on sentences or a stream; see the module docstring."""

    name = "words"
    headline = "val_ppl"
    higher_is_better = False

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1, *, text: str | None = None) -> None:
        super().__init__(config, rank, world_size)
        from rnnkit.data.text import default_corpus, read_text

        if text is None:
            text = read_text(config.data) if config.data is not None else default_corpus()
        sents = sentences(text, max_tokens=config.bptt)
        n_val = max(1, int(len(sents) * config.val_fraction))
        if len(sents) < 2:
            raise ValueError(f"data: expected at least 2 sentences (one to train on, one to validate), but found "
                             f"{len(sents)}. Fix: give a longer text")
        train, held = sents[:-n_val], sents[-n_val:]
        self.vocab = TokenVocab.build(train, max_size=config.vocab_size)
        self.train = encode_sentences(train, self.vocab)
        self.held = sorted(encode_sentences(held, self.vocab), key=len)
        self.stream = [i for row in self.train for i in row]
        self.unknown_held = sum(row.count(3) for row in self.held)

    def build_model(self) -> nn.Module:
        c = self.config
        rnn = RNNConfig(cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers,
                        dropout=c.dropout if c.num_layers > 1 else 0.0, engine=c.engine,
                        input_dropout=c.input_dropout, recurrent_dropout=c.recurrent_dropout, zoneout=c.zoneout,
                        weight_drop=c.weight_drop)
        return LanguageModel(LanguageModelConfig(vocab_size=len(self.vocab), embedding_size=c.embedding_size, rnn=rnn,
                                                 dropout=c.dropout, tie_weights=c.tie_weights))

    def batch(self, step: int) -> Batch:
        rng = random.Random(step_seed("words", self.config.seed, self.rank, step))
        B, T = self.config.batch_size, self.config.bptt
        if self.config.lm_unit == "stream" and len(self.stream) > T + 1:
            starts = [rng.randrange(0, len(self.stream) - T - 1) for _ in range(B)]
            ids = torch.tensor([self.stream[s: s + T + 1] for s in starts])  # (B, T+1)
            return Batch(inputs=ids[:, :-1], targets=ids[:, 1:], mask=None, sequences=B, tokens=B * T)
        inputs, targets, mask = _pad([self.train[rng.randrange(len(self.train))] for _ in range(B)])
        return Batch(inputs=inputs, targets=targets, mask=mask, sequences=B, tokens=int(mask.sum()))

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        net = unwrap(model)
        was_training = net.training
        net.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, len(self.held), EVAL_BATCH):
                inputs, targets, mask = to_device(_pad(self.held[start: start + EVAL_BATCH]), model_device(net))
                logits, _ = net(inputs)  # (B, T, V)
                nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1),
                                      reduction="none")
                total += float(nll[mask.reshape(-1)].sum())
                count += int(mask.sum())
        net.train(was_training)
        loss = total / count
        return {"val_loss": loss, "val_ppl": math.exp(loss)}

    def baseline(self) -> dict[str, float]:
        return ngram_perplexities(self.train, self.held, len(self.vocab))

    def vocab_json(self) -> dict:
        return {"kind": "words", **self.vocab.to_json()}

    def describe(self) -> str:
        where = self.config.data or "pydoc_data.topics"
        tokens = sum(len(r) - 1 for r in self.train)
        return (f"{where}: {len(self.train)} training sentences ({tokens} tokens), {len(self.held)} validation "
                f"sentences, vocabulary {len(self.vocab)} words ({self.unknown_held} validation tokens <unk>), "
                f"{self.config.lm_unit}")
