"""Sequence-to-sequence tasks: ``translate``, ``reverse``, ``add``, ``dates``, or a TSV of pairs (``--data``).

The held-out set (``eval_size`` pairs, 1,000 by default) is drawn once from ``EVAL_SEED``;
training pairs are drawn fresh at every step from a generator seeded by ``(task, seed, rank,
step)`` and never repeat a held-out source. With ``--data pairs.tsv`` (translate only) the
pairs are the file's: the last ``val_fraction`` of them (at least one) is held out, and each
step draws a random batch from the rest.

Tokens: words and punctuation for ``translate``, characters for the others. The vocabularies
are built from the training side (generated tasks: from 20,000 draws plus the held-out set's
targets, which only adds output *types*; a TSV: its training pairs), so a held-out source token
never seen in training becomes ``<unk>``; the summary counts them (``describe``).

Scores (greedy decoding of the held-out sources): ``exact_match`` (the share of outputs equal
to the reference), ``val_loss`` (teacher-forced cross-entropy per target token, nats) and, in
the final evaluation, ``bleu`` and ``chrf`` from ``sacrebleu`` on the detokenised text. Solved:
exact match >= 0.99.

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = PairTask(make_config("add", overrides={"eval_size": 20, "batch_size": 4}))
    >>> batch = task.batch(0)
    >>> batch.sequences, task.batch(0).inputs.equal(batch.inputs)
    (4, True)
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from rnnkit.data.pair_tasks import PairSource
from rnnkit.data.pairs import EncodedPairs, TokenVocab, detokenize, encode_pairs, read_tsv, tokenize
from rnnkit.models import RNNConfig, Seq2Seq, Seq2SeqConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.device import to_device
from rnnkit.training.task_base import EVAL_SEED, SOLVED, Batch, Task, model_device, step_seed, unwrap

__all__ = ["PairBatch", "PairTask", "corpus_scores", "require_sacrebleu"]

VOCAB_DRAWS = 20_000  # generated tasks: training pairs drawn to build the vocabularies


def require_sacrebleu() -> Any:
    """The ``sacrebleu`` module, or a clear error saying how to install it."""
    try:
        import sacrebleu
    except ImportError:
        raise ValueError("evaluation: expected the sacrebleu package for BLEU and chrF, but it is not installed. "
                         "Fix: pip install sacrebleu (or pip install 'rnnkit[seq2seq]')") from None
    return sacrebleu


def corpus_scores(hypotheses: list[str], references: list[str], level: str = "words") -> dict[str, float]:
    """Exact match (0..1), BLEU and chrF (0..100) of detokenised outputs; BLEU counts character
    n-grams for character-level tasks (sacrebleu's ``tokenize="char"``), else its default 13a."""
    sacrebleu = require_sacrebleu()
    exact = sum(h == r for h, r in zip(hypotheses, references)) / max(1, len(references))
    tokenizer = "char" if level == "chars" else "13a"
    return {"exact_match": exact, "bleu": sacrebleu.corpus_bleu(hypotheses, [references], tokenize=tokenizer).score,
            "chrf": sacrebleu.corpus_chrf(hypotheses, [references]).score}


class PairTask(Task):
    """Train a :class:`~rnnkit.models.Seq2Seq` on generated or TSV pairs; see the module docstring."""

    headline = "exact_match"
    higher_is_better = True
    final_differs = True  # the final evaluation adds BLEU and chrF

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1) -> None:
        super().__init__(config, rank, world_size)
        self.name = config.task
        self.level = "words" if config.task == "translate" else "chars"
        self.source: PairSource | None = None
        if config.data is not None:
            pairs = read_tsv(config.data)
            n_val = max(1, int(len(pairs) * config.val_fraction)) if len(pairs) > 1 else 0
            if n_val == 0:
                raise ValueError(f"data: expected at least 2 pairs (one to train on, one to hold out), but "
                                 f"{config.data} has 1. Fix: add pairs")
            self.train_text, self.held_text = pairs[:-n_val], pairs[-n_val:]
            vocab_from = self.train_text
        else:
            self.source = PairSource(config.task, length=config.seq_len, languages=config.languages)
            self.held_text = self.source.held_out(config.eval_size, EVAL_SEED)
            rng = random.Random(step_seed(config.task, "vocab"))
            vocab_from = [self.source.draw(rng) for _ in range(VOCAB_DRAWS)]
            self.train_text = None
        tok = [(tokenize(s, self.level), tokenize(t, self.level)) for s, t in vocab_from]
        self.source_vocab = TokenVocab.build(s for s, _ in tok)
        held_tok = [(tokenize(s, self.level), tokenize(t, self.level)) for s, t in self.held_text]
        self.target_vocab = TokenVocab.build([t for _, t in tok] + [t for _, t in held_tok])
        self.held = encode_pairs(held_tok, self.source_vocab, self.target_vocab, config.max_source_length)
        self.train_encoded = None
        if self.train_text is not None:
            self.train_encoded = encode_pairs(tok, self.source_vocab, self.target_vocab, config.max_source_length)

    # ------------------------------------------------------------------ model and data
    def build_model(self) -> nn.Module:
        c = self.config
        encoder = RNNConfig(cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers,
                            bidirectional=c.bidirectional, dropout=c.dropout if c.num_layers > 1 else 0.0,
                            engine=c.engine)
        return Seq2Seq(Seq2SeqConfig(
            source_vocab_size=len(self.source_vocab), target_vocab_size=len(self.target_vocab),
            embedding_size=c.embedding_size, encoder=encoder, decoder_cell=c.cell, decoder_hidden=c.hidden_size,
            attention=c.attention, attention_size=c.hidden_size, dropout=c.dropout))

    def batch(self, step: int) -> Batch:
        seed = step_seed(self.name, self.config.seed, self.rank, step)
        if self.train_encoded is not None:
            g = torch.Generator().manual_seed(seed)
            index = torch.randint(0, len(self.train_encoded), (self.config.batch_size,), generator=g)
            data = self.train_encoded.rows(index)
        else:
            rng = random.Random(seed)
            pairs = [self.source.draw(rng) for _ in range(self.config.batch_size)]  # type: ignore[union-attr]
            data = encode_pairs([(tokenize(s, self.level), tokenize(t, self.level)) for s, t in pairs],
                                self.source_vocab, self.target_vocab, self.config.max_source_length)
        mask = torch.arange(data.target_out.shape[1]) < data.target_lengths.unsqueeze(1)  # (B, T)
        return PairBatch(inputs=data.source, targets=data.target_out, mask=mask, sequences=len(data),
                         tokens=int(data.target_lengths.sum()), pairs=data, seed=seed)

    def loss(self, model: nn.Module, batch: Batch, state: Any = None) -> tuple[torch.Tensor, Any]:
        assert isinstance(batch, PairBatch) and batch.pairs is not None  # internal: batches come from self.batch
        data = batch.pairs
        generator = torch.Generator().manual_seed(batch.seed)
        logits, _ = model(data.source, data.source_lengths, data.target_in, data.target_lengths,
                          sampling_rate=self.config.sampling_rate, generator=generator)
        return unwrap(model).loss(logits, data.target_out, batch.mask), None

    # ------------------------------------------------------------------ scores
    def decode(self, model: nn.Module, data: EncodedPairs, beam: int | None = None,
               chunk: int = 500) -> list[list[int]]:
        """Decoded target ids of every pair of ``data`` (greedy, or beam search of width ``beam``)."""
        net = unwrap(model)
        out: list[list[int]] = []
        max_length = int(data.target_lengths.max()) + 10
        for start in range(0, len(data), chunk):
            index = torch.arange(start, min(start + chunk, len(data)), device=data.source.device)
            out += net.translate(data.source[index], data.source_lengths[index], max_length=max_length, beam=beam)
        return out

    def texts(self, ids: list[list[int]]) -> list[str]:
        return [detokenize(self.target_vocab.decode(row), self.level) for row in ids]

    def references(self) -> list[str]:
        return [detokenize(tokenize(t, self.level), self.level) for _, t in self.held_text]

    def evaluate(self, model: nn.Module, final: bool = False, beam: int | None = None) -> dict[str, float]:
        net = unwrap(model)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            data = to_device(self.held, model_device(net))  # the model's device (--device)
            logits, _ = net(data.source, data.source_lengths, data.target_in, data.target_lengths)
            mask = torch.arange(data.target_out.shape[1], device=data.target_out.device) < \
                data.target_lengths.unsqueeze(1)  # (N, T)
            val_loss = float(net.loss(logits, data.target_out, mask))
            hyps = self.texts(self.decode(net, data, beam=beam))
        net.train(was_training)
        refs = self.references()
        metrics = {"val_loss": val_loss, "exact_match": sum(h == r for h, r in zip(hyps, refs)) / len(refs)}
        if final:
            metrics.update(corpus_scores(hyps, refs, self.level))
        return metrics

    def solved(self, metrics: dict[str, float]) -> bool:
        return metrics["exact_match"] >= SOLVED

    def vocab_json(self) -> dict | None:
        return {"format": "rnnkit.pair_vocab", "version": 1, "tokens": self.level,
                "source": self.source_vocab.to_json(), "target": self.target_vocab.to_json()}

    def baseline(self) -> dict[str, float]:
        """Copying the source as the output (exact for nothing here but a sanity floor for BLEU/chrF)."""
        refs = self.references()
        copies = [detokenize(tokenize(s, self.level), self.level) for s, _ in self.held_text]
        return {f"copy_source_{k}": v for k, v in corpus_scores(copies, refs, self.level).items()}

    def describe(self) -> str:
        origin = f"TSV {self.config.data}" if self.config.data else f"generated {self.name} pairs"
        return (f"{origin}: {self.level} tokens, source vocab {len(self.source_vocab)}, target vocab "
                f"{len(self.target_vocab)}, {len(self.held)} held-out pairs (seed {EVAL_SEED}), "
                f"{self.held.unknown_tokens} held-out source tokens unknown (<unk>)")


@dataclass(frozen=True)
class PairBatch(Batch):
    """A Batch that also carries the padded pairs and the step's seed (for scheduled sampling)."""

    pairs: EncodedPairs | None = None
    seed: int = 0
