"""``LanguageModel``: embedding, stacked RNN, softmax over the next token (seed 002)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.checkpoint.registry import register_model
from rnnkit.errors import bad_argument
from rnnkit.models.body import RNNConfig, build_rnn

__all__ = ["LanguageModel", "LanguageModelConfig"]


@dataclass(frozen=True)
class LanguageModelConfig:
    """A character (or token) language model."""

    vocab_size: int  # number of token ids, <unk> included if the vocabulary has one
    embedding_size: int = 128  # width of the input embedding
    rnn: RNNConfig = field(default_factory=lambda: RNNConfig(cell="lstm", hidden_size=512, num_layers=2, dropout=0.25))
    dropout: float = 0.25  # on the embedding output and on the top RNN output (training only)
    tie_weights: bool = False  # share the embedding and softmax matrices (Press & Wolf 2017)

    def __post_init__(self) -> None:
        if not isinstance(self.vocab_size, int) or self.vocab_size <= 0:
            raise bad_argument("vocab_size", "a positive int", self.vocab_size, "build the vocabulary first")
        if self.rnn.bidirectional:
            raise bad_argument("rnn.bidirectional", "False: a language model predicts the next token from the past",
                               True, "drop bidirectional for language modelling")
        if not 0.0 <= self.dropout < 1.0:
            raise bad_argument("dropout", "a probability in [0, 1)", self.dropout, "use e.g. 0.2")


@register_model
class LanguageModel(nn.Module):
    """tokens (B, T) -> next-token logits (B, T, V), carrying the RNN state across calls.

    With ``tie_weights`` and a hidden size different from the embedding size, a linear
    projection (H -> E) sits before the tied decoder.

        >>> import torch
        >>> lm = LanguageModel(LanguageModelConfig(vocab_size=30, embedding_size=16,
        ...                    rnn=RNNConfig(hidden_size=32), tie_weights=True))
        >>> logits, state = lm(torch.randint(0, 30, (2, 9)))
        >>> tuple(logits.shape), lm.decoder.weight is lm.embedding.weight
        ((2, 9, 30), True)
    """

    config_class = LanguageModelConfig  # the config a checkpoint stores and rebuilds it from

    def __init__(self, config: LanguageModelConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_size)
        self.rnn = build_rnn(config.rnn, config.embedding_size)
        H, E = config.rnn.hidden_size, config.embedding_size
        self.proj = nn.Linear(H, E) if config.tie_weights and H != E else None
        self.decoder = nn.Linear(E if config.tie_weights else H, config.vocab_size)
        nn.init.normal_(self.embedding.weight, std=0.1)
        if config.tie_weights:
            self.decoder.weight = self.embedding.weight

    def forward(self, tokens: Tensor, state: object = None, lengths: Tensor | None = None, *,
                reset: Tensor | None = None) -> tuple[Tensor, object]:
        """tokens (B, T) int64 -> (logits (B, T, V), state). ``reset`` (B,) or (B, T) bool restarts
        rows from zeros (``rnnkit.engine.reset``)."""
        if not isinstance(tokens, Tensor) or tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise bad_argument("tokens", "int64 token ids of shape (B, T)", tokens, "encode the text with the model's vocabulary")
        p = self.config.dropout if self.training else 0.0
        x = F.dropout(self.embedding(tokens), p, self.training)  # (B, T, E)
        y, state = self.rnn(x, state, lengths, reset=reset)  # (B, T, H)
        y = F.dropout(y, p, self.training)
        if self.proj is not None:
            y = self.proj(y)  # (B, T, E)
        return self.decoder(y), state  # (B, T, V)

    def step(self, tokens: Tensor, state: object = None, *, reset: Tensor | None = None) -> tuple[Tensor, object]:
        """One token per sequence: tokens (B,) -> (logits (B, V), state). O(1) in the past length.
        ``reset`` (B,) bool restarts the marked rows before the step."""
        logits, state = self(tokens.unsqueeze(1), state, reset=reset)  # (B, 1, V)
        return logits[:, 0], state

    def generate(self, prompt: Any, config: Any = None, *, vocab: Any = None, constraint: Any = None,
                 on_token: Any = None, **options: Any) -> Any:
        """Decode from ``prompt`` with ``rnnkit.generation.Generator``; ``options`` are GenerationConfig fields.

        >>> from rnnkit.data.vocab import Vocab
        >>> vocab = Vocab.build("abc")
        >>> lm = LanguageModel(LanguageModelConfig(vocab_size=3, embedding_size=4, rnn=RNNConfig(hidden_size=8)))
        >>> out = lm.generate("ab", vocab=vocab, max_length=4, top_k=2, seed=0)
        >>> len(out.texts[0])
        6
        """
        from rnnkit.generation.decoder import Generator

        generator = Generator(self, vocab=vocab, constraint=constraint)
        return generator.generate(prompt, config, on_token=on_token, **options)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities of the next token, (..., V) -> (..., V)."""
        return F.log_softmax(logits, dim=-1)

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean cross-entropy in nats per token; targets (B, T) ids."""
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        if mask is None:
            return per.mean()
        m = mask.reshape(-1).to(per.dtype)
        return (per * m).sum() / m.sum()
