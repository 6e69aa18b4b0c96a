"""Whole sentences from a word-level language model: from ``<s>`` to ``</s>``, seed 002's options.

:class:`SentenceConstraint` is a :class:`~rnnkit.generation.constraints.Constraint`: it never
allows ``<pad>``, ``<s>`` or (unless ``allow_unk``) ``<unk>``, and allows ``</s>`` only once a
sentence holds ``min_length`` words. Seed 002's generator rejects short sentences and resamples
them; masking ``</s>`` until the minimum length is reached samples from the model conditioned on
the same event without the wasted draws. Because it is an ordinary constraint, every decoding
strategy of :class:`~rnnkit.generation.Generator` works with it: sampling (temperature, top-k,
top-p), greedy and beam search.

Example:
    >>> import torch
    >>> from rnnkit.data.pairs import TokenVocab
    >>> from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
    >>> vocab = TokenVocab.build([["the", "cat", "sat", "."]])
    >>> lm = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_size=4, rnn=RNNConfig(hidden_size=8)))
    >>> out = generate_sentences(lm, vocab, num_samples=3, min_length=2, seed=0)
    >>> all(s.tokens[0] == "<s>" and len(s.tokens) - 2 >= 2 and "<unk>" not in s.tokens for s in out if s.finished)
    True
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.pairs import TokenVocab, detokenize
from rnnkit.errors import bad_argument
from rnnkit.generation.constraints import Constraint

__all__ = ["Sentence", "SentenceConstraint", "generate_sentences"]

PAD, BOS, EOS, UNK = 0, 1, 2, 3


class SentenceConstraint(Constraint):
    """No ``<pad>``/``<s>``/``<unk>``; ``</s>`` only after ``min_length`` words. State: words so far (B,)."""

    def __init__(self, vocab_size: int, min_length: int = 0, allow_unk: bool = False) -> None:
        if isinstance(min_length, bool) or not isinstance(min_length, int) or min_length < 0:
            raise bad_argument("min_length", "an int >= 0 (words before </s>)", min_length, "pass e.g. min_length=5")
        self.vocab_size, self.min_length = vocab_size, min_length
        self.base = torch.ones(vocab_size, dtype=torch.bool)  # (V,)
        self.base[[PAD, BOS]] = False
        if not allow_unk:
            self.base[UNK] = False

    def start(self, prompt: Tensor) -> Tensor:
        if not bool((prompt[:, 0] == BOS).all()):
            raise bad_argument("prompt", "sentences that start at <s> (id 1)", prompt[:, :1].flatten().tolist(),
                               "start every prompt with <s>")
        return (prompt.shape[1] - 1) * torch.ones(prompt.shape[0], dtype=torch.int64, device=prompt.device)  # (B,)

    def allowed(self, state: Tensor) -> Tensor:
        allowed = self.base.to(state.device).expand(state.shape[0], -1).clone()  # (B, V)
        allowed[:, EOS] = state >= self.min_length
        return allowed

    def advance(self, state: Tensor, tokens: Tensor, live: Tensor) -> Tensor:
        return state + live.to(state.dtype)

    def select(self, state: Tensor, index: Tensor) -> Tensor:
        return state.index_select(0, index)


@dataclass(frozen=True)
class Sentence:
    """One generated sentence."""

    tokens: list[str]  # "<s>", the words, then "</s>" when finished
    text: str  # the words detokenised
    logprob: float  # the model's log-probability of the generated tokens (</s> included)
    finished: bool  # False: cut at max_length before </s>


def generate_sentences(model: nn.Module, vocab: TokenVocab, *, num_samples: int = 1, min_length: int = 0,
                       allow_unk: bool = False, max_length: int = 100, prompt: list[str] | None = None,
                       **options: Any) -> list[Sentence]:
    """Sentences from ``<s>`` (plus ``prompt`` words) to ``</s>``; ``options`` are GenerationConfig fields
    (``temperature``, ``top_k``, ``top_p``, ``greedy``, ``beam``, ``length_penalty``, ``seed``)."""
    from rnnkit.generation.decoder import Generator

    words = list(prompt or [])
    unknown = [w for w in words if w not in vocab.index]
    if unknown:
        raise bad_argument("prompt", "words of the model's vocabulary", unknown[0],
                           "pick words the model was trained on (its vocabulary is in the checkpoint)")
    ids = torch.tensor([[BOS] + vocab.encode(words)])  # (1, P)
    constraint = SentenceConstraint(len(vocab), min_length, allow_unk)
    out = Generator(model, constraint=constraint).generate(ids, end_token=EOS, max_length=max_length,
                                                           num_samples=num_samples, **options)
    result = []
    for gen_ids, logprob, finished in zip(out.tokens, out.logprobs, out.finished):
        body = words + [vocab.tokens[i] for i in gen_ids if i != EOS]
        tokens = ["<s>"] + body + (["</s>"] if finished else [])
        result.append(Sentence(tokens, detokenize(body, "words"), logprob, finished))
    return result
