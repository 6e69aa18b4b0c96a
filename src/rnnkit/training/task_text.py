"""The character language-model task: stateful truncated BPTT over a text, scored in nats per character.

Data: ``config.data`` (a UTF-8 file or a folder of .txt files) or, by default, CPython's
``pydoc_data.topics``. The vocabulary is every character of the whole text; the first 90% is
training text and the last 10% validation (``val_fraction``), as in char-rnn and nanoGPT.

Training (stateful TBPTT): the training text is cut into ``batch_size`` contiguous streams
(:class:`~rnnkit.data.TextStream`); step k reads chunk ``k mod chunks`` of every stream, so each
row continues the row before it. The recurrent state is carried from chunk to chunk and
detached at every chunk boundary (gradients flow back ``bptt`` steps). It is carried across
epoch boundaries too, where each row jumps back to its start, as across a document boundary:
the state is zero only at the first step of the run, so the model learns to read streams far
longer than one epoch's rows, as the validation stream is. In a distributed run rank r trains
on the r-th contiguous shard of the training text.

Initialisation: untied character embeddings are drawn from N(0, 1), as ``torch.nn.Embedding``
does, instead of ``LanguageModel``'s N(0, 0.1) (which suits tied weights). On Tiny Shakespeare
(2 x 256 LSTM, batch 32) the N(0, 0.1) embedding trained far slower: 2.42 against 2.09 nats
of training loss over steps 125-150. The recurrent layers start as ``torch.nn.LSTM`` does
(every weight and bias U(-1/sqrt(H), 1/sqrt(H)), ``reset_parameters``), not from rnnkit's
orthogonal recurrent blocks with a forget bias of 1: with the same recipe (fp32, 2 x 256, batch
32, Adam 2e-3, no schedule, seed 0) the latter scored 1.602 after 1,000 steps against 1.562
(the plain torch.nn loop 1.549); with the short budget row's recipe 1.615 against 1.558.

Evaluation: ``val_loss`` is the mean cross-entropy, in nats per character, of predicting every
validation character from all those before it: the whole validation text is one stream, read
in chunks with the state carried and never reset, so no character is skipped or scored twice.
``val_bpc`` is ``val_loss / ln 2``. That is how the final evaluation (and ``rnnkit eval``) scores.
The evaluations during training, which only draw the curve, cut the validation text into
``PERIODIC_STREAMS`` contiguous streams read side by side: every character is still scored once,
with 7 fresh starts in ~100k characters (a difference in the third decimal at most), and the
evaluation costs several times less wall time on the CPU.

Example:
    >>> from rnnkit.training.config import make_config
    >>> text = "to be or not to be, that is the question. " * 20
    >>> task = TextTask(make_config("text", overrides={"batch_size": 2, "bptt": 8}), text=text)
    >>> batch = task.batch(0)
    >>> tuple(batch.inputs.shape), batch.carry_state, task.batch(1).carry_state, task.batch(999).carry_state
    ((2, 8), False, True, True)
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.data import CharCorpus, TextStream, Vocab
from rnnkit.errors import bad_argument
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_base import Batch, Task, model_device, step_seed, unwrap
from rnnkit.training.threads import ThreadGovernor

__all__ = ["TextTask", "stream_loss"]

EVAL_CHUNK = 1024  # validation characters per forward call (the state is carried between calls)
PERIODIC_STREAMS = 8  # evaluations during training read the validation text as 8 contiguous streams


def stream_loss(model: nn.Module, ids: Tensor, chunk: int = EVAL_CHUNK, streams: int = 1) -> float:
    """Mean next-character cross-entropy (nats) over ``ids`` (N,), every character but the first predicted.

    ``streams=1`` reads ``ids`` as one stream: each character is predicted from all those before it.
    ``streams=S`` cuts the text into S contiguous rows read side by side (the state of each carried,
    the ragged tail read after the last row, continuing its state): the same characters, each
    scored once, S times fewer sequential steps, at the price of S - 1 fresh starts. The model is
    put in eval mode for the call (no dropout) and restored afterwards.
    """
    net = unwrap(model)
    was_training = net.training
    net.eval()
    ids = ids.to(model_device(net))
    x, y = ids[:-1], ids[1:]
    n = x.numel()
    streams = max(1, min(streams, n))
    length = n // streams
    rows_x, rows_y = x[: streams * length].view(streams, length), y[: streams * length].view(streams, length)
    total, state = 0.0, None
    with torch.no_grad():
        for start in range(0, length, chunk):
            part, state = _chunk_loss(net, rows_x[:, start:start + chunk], rows_y[:, start:start + chunk], state)
            total += part
        if streams * length < n:  # the tail continues the last row
            state = tuple(s[:, -1:] for s in state) if isinstance(state, tuple) else state[:, -1:]
            for start in range(streams * length, n, chunk):
                part, state = _chunk_loss(net, x[start:start + chunk].unsqueeze(0),
                                          y[start:start + chunk].unsqueeze(0), state)
                total += part
    net.train(was_training)
    return total / n


def _chunk_loss(net: nn.Module, x: Tensor, y: Tensor, state: Any) -> tuple[float, Any]:
    """Summed cross-entropy of one (S, T) chunk, and the state after it."""
    logits, state = net(x, state)  # (S, T, V)
    return float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum")), state


class TextTask(Task):
    """Character language modelling; see the module docstring."""

    name = "text"
    headline = "val_loss"
    higher_is_better = False
    final_differs = True

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1, *, text: str | None = None,
                 vocab: Vocab | None = None) -> None:
        super().__init__(config, rank, world_size)
        if text is not None:
            corpus = CharCorpus.from_string(text, vocab)
        elif config.data is not None:
            corpus = CharCorpus.from_path(config.data, vocab)
        else:
            corpus = CharCorpus.default(vocab)
        self.corpus = corpus
        self.vocab = corpus.vocab
        train, self.val_ids = corpus.split(config.val_fraction)
        if len(self.val_ids) < 2:  # the validation loss predicts each character from the one before
            need = math.ceil(2 / config.val_fraction)
            raise bad_argument("data", f"at least {need} characters, so the validation split (the last "
                               f"{config.val_fraction:.0%}) holds 2 or more", f"{len(corpus.ids)} characters in "
                               f"{corpus.source}", f"use a longer text (at least {need} characters)",
                               cli_fix=f"pass a text of at least {need} characters to --data")
        shard = len(train) // world_size
        self.train_ids = train[rank * shard:(rank + 1) * shard] if world_size > 1 else train
        self.stream = TextStream(self.train_ids, config.batch_size, config.bptt)
        # the thread count follows the free CPUs during the run, unless the user fixed it (--threads)
        adaptive = config.threads is None and config.steps is None and config.epochs is None  # time-only runs
        self._governor = ThreadGovernor() if adaptive and world_size == 1 else None

    def build_model(self) -> nn.Module:
        c = self.config
        rnn = RNNConfig(cell=c.cell, hidden_size=c.hidden_size, num_layers=c.num_layers, dropout=c.dropout,
                        engine=c.engine, input_dropout=c.input_dropout, recurrent_dropout=c.recurrent_dropout,
                        zoneout=c.zoneout, weight_drop=c.weight_drop)
        model = LanguageModel(LanguageModelConfig(vocab_size=len(self.vocab), embedding_size=c.embedding_size,
                                                  rnn=rnn, dropout=c.dropout, tie_weights=c.tie_weights))
        if not c.tie_weights:
            nn.init.normal_(model.embedding.weight, std=1.0)  # see the module docstring
        model.rnn.reset_parameters()  # torch.nn.LSTM's U(-1/sqrt(H), 1/sqrt(H)); see the module docstring
        return model

    def steps_per_epoch(self) -> int:
        return len(self.stream)

    def batch(self, step: int) -> Batch:
        if self._governor is not None:
            self._governor.tick()  # a clock read; every 10 s a look at what else uses the CPUs
        chunk = step % len(self.stream)
        x, y = self.stream[chunk]  # (B, T) each
        keep = None
        if chunk > 0 and self.config.state_reset > 0:  # seeded by (seed, rank, step): exact resume
            gen = torch.Generator().manual_seed(step_seed("text-reset", self.config.seed, self.rank, step))
            keep = (torch.rand(x.shape[0], generator=gen) >= self.config.state_reset).float()  # (B,)
        # each epoch starts every stream from a zero state (the text does not continue across the wrap)
        return Batch(inputs=x, targets=y, mask=None, sequences=x.shape[0], tokens=x.numel(), carry_state=chunk > 0,
                     keep_state=keep)

    def loss(self, model: nn.Module, batch: Batch, state: Any = None) -> tuple[Tensor, Any]:
        if batch.carry_state and state is not None and batch.keep_state is not None:
            keep = batch.keep_state.view(1, -1, 1)  # (1, B, 1) over the (L, B, H) state
            state = tuple(s * keep for s in state) if isinstance(state, tuple) else state * keep
        logits, state = model(batch.inputs, state if batch.carry_state else None)  # (B, T, V)
        net = unwrap(model)
        loss = net.loss(logits, batch.targets)
        dtype = net.embedding.weight.dtype  # under bf16 autocast the kernel returns bf16 states: carry them as fp32
        detached = tuple(s.detach().to(dtype) for s in state) if isinstance(state, tuple) else state.detach().to(dtype)
        return loss, detached

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        val_loss = stream_loss(model, self.val_ids, streams=1 if final else PERIODIC_STREAMS)
        return {"val_loss": val_loss, "val_bpc": val_loss / math.log(2)}

    def vocab_json(self) -> dict:
        return self.vocab.to_json()

    def baseline(self) -> dict[str, float]:
        """The unigram model of the training text: what a model with no context would score."""
        counts = torch.bincount(self.train_ids, minlength=len(self.vocab)).double() + 1.0  # add-one smoothing
        log_p = (counts / counts.sum()).log()
        return {"unigram_val_loss": float(-log_p[self.val_ids[1:]].mean())}

    def describe(self) -> str:
        return (f"text {self.corpus.source}: {len(self.corpus.text):,} characters, vocabulary {len(self.vocab)}, "
                f"{len(self.train_ids):,} training / {len(self.val_ids):,} validation characters; "
                f"{self.config.batch_size} streams x {self.config.bptt} steps, {len(self.stream)} steps per epoch")
