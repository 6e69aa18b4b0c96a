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

- ``sample_validity``: the probability that a free-running sample of ``rnnkit sample`` (prompt
  ``B``, temperature 1, the normalised sigmoids of seed 001, at most ``MAX_LENGTH`` symbols) is a
  word of the grammar. It is computed from the mass the model puts on forbidden symbols along
  valid prefixes (see :func:`sample_validity`), not by counting invalid samples. It is computed
  at the final evaluation and wherever the held-out metrics pass and so does the same product
  along the held-out words (:func:`held_out_validity`, free from the held-out forward pass).

The task counts as solved when the held-out metrics are >= ``SOLVED`` (0.99) *and*
``sample_validity`` >= ``GENERATION_SOLVED`` (0.997): a model that is "solved" generates
grammatical words, and a 1,000-sample check at 99% passes (see ``GENERATION_SOLVED``).

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = ReberTask(make_config("embedded-reber", overrides={"eval_size": 20}))
    >>> sorted(task.evaluate(task.build_model(), final=True))
    ['long_range_accuracy', 'next_symbol_set_accuracy', 'sample_validity']
"""
from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.data import reber
from rnnkit.data.automaton import Automaton
from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_base import EVAL_SEED, SOLVED, Batch, Task, model_device, step_seed, unwrap

__all__ = ["GENERATION_SOLVED", "MAX_LENGTH", "ReberTask", "held_out_validity", "reber_metrics",
           "sample_validity"]

# A true rate of 0.997 passes a 1,000-sample check at 99% with probability ~0.9997 (binomial: 10 or fewer
# invalid words when 3 are expected; at 0.995 it would be ~0.986, so one of 20 checkpoints would fail
# in about a quarter of such checks). The estimate below has a standard deviation under 1e-4 there.
GENERATION_SOLVED = 0.997
MAX_LENGTH = 200  # symbols per sample, as rnnkit sample's default for Reber models
VALIDITY_PATHS = 512  # constrained walks per estimate
_NEGLIGIBLE = 1e-4  # a walk whose validity probability fell below this counts as 0 (a conservative estimate)


def reber_metrics(logits: torch.Tensor, batch: reber.ReberBatch, embedded: bool) -> dict[str, float]:
    """The task's metrics for ``logits`` (B, T, 7) of the words in ``batch`` (see the module docstring)."""
    exact = ((logits > 0) == (batch.targets > 0.5)).all(dim=-1)  # (B, T): p > 0.5 <=> logit > 0
    mask = batch.mask
    metrics = {"next_symbol_set_accuracy": float((exact & mask).sum()) / float(mask.sum())}
    if embedded:
        rows = torch.arange(exact.shape[0])
        metrics["long_range_accuracy"] = float(exact[rows, batch.lengths - 2].float().mean())  # (B,) -> share
    return metrics


def sample_validity(model: nn.Module, grammar: Automaton, *, paths: int = VALIDITY_PATHS,
                    max_length: int = MAX_LENGTH, seed: int = EVAL_SEED) -> float:
    """The probability that a free-running sample of ``model`` from the prompt ``B`` is a word of ``grammar``.

    A sample is grammatical exactly when every symbol it draws is allowed, until the grammar's
    final state. So P(valid) = sum over words w of prod_t p(w_t | w_<t) = E_q[prod_t A_t], where
    A_t is the model's mass on the allowed symbols after the prefix and q is the model's own
    distribution restricted to the allowed symbols (q(w_t) = p(w_t) / A_t). Walking ``paths``
    prefixes from q and averaging prod_t A_t is an unbiased estimate whose terms all lie near 1
    for a good model, so a few hundred walks give ~0.001 precision where counting invalid samples
    would need tens of thousands. Walks still unfinished after ``max_length`` symbols count as
    invalid (as ``rnnkit sample`` cuts them); walks whose product fell below 1e-4 are dropped as 0
    (this only lowers the estimate). ``seed`` fixes the walks, so the figure is reproducible.

    The model must be a multi-hot ``SequenceTagger``; p is its ``next_log_probs`` (normalised
    sigmoids), exactly what ``rnnkit sample`` draws from at temperature 1.

    Example:
        >>> import torch
        >>> from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
        >>> model = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=8)))
        >>> 0.0 <= sample_validity(model, reber.automaton(), paths=16) < 0.5  # untrained
        True
    """
    from rnnkit.generation.protocol import prime  # here: rnnkit.generation imports the training package

    net = unwrap(model)
    device = next(net.parameters()).device
    table = torch.as_tensor(grammar.transition_table(), device=device)  # (S, V) next state, -1: forbidden
    first = grammar.step(grammar.start, "B")
    was_training = net.training
    net.eval()
    try:
        with torch.inference_mode():
            generator = torch.Generator(device=device)
            generator.manual_seed(seed)
            prompt = torch.full((1, 1), reber.SYMBOLS.index("B"), dtype=torch.int64, device=device)  # (1, 1)
            logits, state = prime(net, prompt, repeat=paths)  # (N, V), as rnnkit sample reads its prompt
            states = torch.full((paths,), first, dtype=torch.int64, device=device)  # (N,) automaton states
            log_valid = torch.zeros(paths, dtype=torch.float64, device=device)  # (N,) log prod_t A_t
            live = torch.ones(paths, dtype=torch.bool, device=device)  # (N,) walks still drawing
            finished = torch.zeros(paths, dtype=torch.bool, device=device)  # (N,) walks that reached the end
            floor = torch.log(torch.tensor(_NEGLIGIBLE, dtype=torch.float64))
            for _ in range(max_length):
                logp = net.next_log_probs(logits).double()  # (N, V)
                allowed = table[states] >= 0  # (N, V)
                kept = logp.masked_fill(~allowed, float("-inf"))  # (N, V)
                log_allowed = torch.logsumexp(kept, dim=-1)  # (N,) log A_t
                log_valid = torch.where(live, log_valid + log_allowed, log_valid)
                live = live & (log_valid > floor)
                if not bool(live.any()):
                    break
                weights = torch.where(live.unsqueeze(1), (kept - log_allowed.unsqueeze(1)).exp(),
                                      1.0)  # (N, V): q; rows no longer walking draw a placeholder, never used
                tokens = torch.multinomial(weights, 1, generator=generator).squeeze(1)  # (N,)
                states = torch.where(live, table[states, tokens], states)
                done = live & (table[states] < 0).all(dim=-1)  # (N,) reached a final state
                finished |= done
                live = live & ~done
                if not bool(live.any()):
                    break
                logits, state = net.step(tokens, state)  # (N, V)
    finally:
        net.train(was_training)
    return float(torch.where(finished, log_valid.exp(), 0.0).mean())


def held_out_validity(logits: torch.Tensor, batch: reber.ReberBatch) -> float:
    """The mean over the words of ``batch`` of prod_t A_t, A_t the mass the normalised sigmoids of
    ``logits`` (B, T, 7) put on the symbols the grammar allows at step t.

    The same product as :func:`sample_validity`, but along the held-out words (uniform walks)
    instead of the model's own walks: free from the held-out forward pass, and close to it for a
    trained model, whose next-symbol distribution is near uniform over the allowed symbols. The
    task uses it only to skip the sampling estimate while it cannot pass yet.
    """
    log_p = F.logsigmoid(logits.double())  # (B, T, 7)
    log_p = log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)  # normalised, as in next_log_probs
    log_allowed = torch.logsumexp(log_p.masked_fill(batch.targets <= 0.5, float("-inf")), dim=-1)  # (B, T)
    per_word = torch.where(batch.mask, log_allowed, 0.0).sum(dim=1)  # (B,) log prod_t A_t
    return float(per_word.exp().mean())


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
        logits = self._logits(model, self.held_out)
        metrics = reber_metrics(logits, self.held_out, self.embedded)
        ready = all(v >= SOLVED for v in metrics.values()) and held_out_validity(logits, self.held_out) >= GENERATION_SOLVED
        if final or ready:  # sample_validity only decides solved: skip its cost while it cannot pass
            metrics["sample_validity"] = sample_validity(model, self.grammar)
        return metrics

    def evaluate_words(self, model: nn.Module, words: reber.ReberBatch) -> dict[str, float]:
        """The metrics on any encoded words (``rnnkit eval --data words.txt`` uses this)."""
        return reber_metrics(self._logits(model, words), words, self.embedded)

    @staticmethod
    def _logits(model: nn.Module, words: reber.ReberBatch) -> torch.Tensor:
        net = unwrap(model)
        was_training = net.training
        net.eval()
        with torch.no_grad():
            logits, _ = net(words.input_ids.to(model_device(net)))  # (B, T, 7)
        net.train(was_training)
        return logits.cpu()

    def solved(self, metrics: dict[str, float]) -> bool:
        held_out = all(metrics[k] >= SOLVED for k in ("next_symbol_set_accuracy", "long_range_accuracy") if k in metrics)
        return held_out and metrics.get("sample_validity", 0.0) >= GENERATION_SOLVED  # absent: not yet worth computing

    def describe(self) -> str:
        kind = "embedded Reber grammar" if self.embedded else "Reber grammar"
        return (f"{kind}: {self.config.batch_size} fresh words per step, "
                f"{self.config.eval_size} held-out words (seed {EVAL_SEED})")
