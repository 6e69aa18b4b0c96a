"""``SequenceTagger``: a prediction at every step, e.g. the next-symbol sets of the Reber tasks."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.checkpoint.registry import register_model
from rnnkit.errors import bad_argument
from rnnkit.models.body import RNNConfig, build_rnn

__all__ = ["SequenceTagger", "TaggerConfig"]


@dataclass(frozen=True)
class TaggerConfig:
    """A many-to-many tagger over token ids."""

    vocab_size: int = 7  # input symbols (7: Reber's B T S X P V E)
    rnn: RNNConfig = field(default_factory=RNNConfig)  # the recurrent stack
    target: str = "multi_hot"  # "multi_hot": sigmoid + BCE per symbol (seed 001); "class": softmax + CE
    num_outputs: int | None = None  # None: one output per input symbol
    learn_initial_state: bool = False  # seed 001 learns h0; the modern recipe does not need to

    def __post_init__(self) -> None:
        if self.target not in ("multi_hot", "class"):
            raise bad_argument("target", "'multi_hot' or 'class'", self.target, "pick one of the two losses")
        if self.vocab_size <= 0:
            raise bad_argument("vocab_size", "a positive int", self.vocab_size, "count the input symbols")


@register_model
class SequenceTagger(nn.Module):
    """tokens (B, T) -> logits (B, T, O). One-hot inputs, as in seed 001.

    With ``target="multi_hot"`` each output is an independent sigmoid: the probability that the
    symbol may come next. ``loss`` is then the masked binary cross-entropy of seed 001.

        >>> import torch
        >>> model = SequenceTagger(TaggerConfig(vocab_size=7))
        >>> logits, _ = model(torch.tensor([[0, 1, 2]]))
        >>> tuple(logits.shape)                 # (B, T, 7)
        (1, 3, 7)
    """

    config_class = TaggerConfig  # the config a checkpoint stores and rebuilds it from

    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = config
        self.rnn = build_rnn(config.rnn, config.vocab_size)
        self.head = nn.Linear(config.rnn.output_size, config.num_outputs or config.vocab_size)
        L, D, H = config.rnn.num_layers, 2 if config.rnn.bidirectional else 1, config.rnn.hidden_size
        n_states = 2 if config.rnn.cell == "lstm" else 1
        self.h0 = nn.Parameter(torch.zeros(n_states, L * D, 1, H)) if config.learn_initial_state else None

    def forward(self, tokens: Tensor, lengths: Tensor | None = None, state: object = None, *,
                reset: Tensor | None = None) -> tuple[Tensor, object]:
        """tokens (B, T) int64 -> (logits (B, T, O), state). ``reset`` (B,) or (B, T) bool restarts
        rows from zeros (``rnnkit.engine.reset``; refused with a learned initial state, which a
        restarted row would not get). ``rnnkit.Stream`` passes the carried state as ``state=``."""
        if tokens.dim() != 2 or tokens.dtype != torch.int64:
            raise bad_argument("tokens", "int64 token ids of shape (B, T)", tokens, "encode the symbols first")
        if reset is not None and self.h0 is not None:
            raise bad_argument("reset", "None for a tagger with learn_initial_state=True (a reset row restarts "
                               "from zeros, not from the learned h0)", reset,
                               "start those rows in a call of their own, or build the tagger without a learned h0")
        weight = self.head.weight
        x = F.one_hot(tokens.clamp_min(0), self.config.vocab_size).to(weight.dtype)  # (B, T, V)
        if state is None:
            state = self.initial_state(tokens.shape[0])
        y, state = self.rnn(x, state, lengths, reset=reset)  # (B, T, D*H)
        return self.head(y), state  # (B, T, O)

    def initial_state(self, batch: int) -> object:
        """The state a call without one starts from: the learned h0 (``learn_initial_state``),
        expanded to ``batch`` rows in the stack's layout (L*D, B, H), or None for zeros.

            >>> model = SequenceTagger(TaggerConfig(learn_initial_state=True, rnn=RNNConfig(hidden_size=4)))
            >>> [tuple(s.shape) for s in model.initial_state(3)]  # an LSTM's (h, c), each (L*D, B, H)
            [(1, 3, 4), (1, 3, 4)]
        """
        if self.h0 is None:
            return None
        h = self.h0.expand(-1, -1, batch, -1)  # (S, L*D, B, H)
        return (h[0], h[1]) if self.config.rnn.cell == "lstm" else h[0]

    def step(self, tokens: Tensor, state: object = None, *, reset: Tensor | None = None) -> tuple[Tensor, object]:
        """One symbol per sequence: tokens (B,) -> (logits (B, O), state), for decoding.
        ``reset`` (B,) bool restarts the marked rows before the step (as in ``forward``)."""
        logits, state = self(tokens.unsqueeze(1), None, state, reset=reset)  # (B, 1, O)
        return logits[:, 0], state

    def generate(self, prompt: Any, config: Any = None, *, vocab: Any = None, constraint: Any = None,
                 on_token: Any = None, **options: Any) -> Any:
        """Decode from ``prompt`` with ``rnnkit.generation.Generator``; ``options`` are GenerationConfig fields.

        >>> from rnnkit.data import reber
        >>> model = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=8)))
        >>> out = model.generate("B", vocab=reber.SYMBOLS, constraint=reber.automaton(), end_token="E", seed=0)
        >>> reber.in_grammar(out.texts[0])
        True
        """
        from rnnkit.generation.decoder import Generator

        generator = Generator(self, vocab=vocab, constraint=constraint)
        return generator.generate(prompt, config, on_token=on_token, **options)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities of the next symbol, (..., O) -> (..., O).

        multi_hot: seed 001's sampler, the per-symbol sigmoids normalised to sum to one;
        class: a softmax.
        """
        if self.config.target == "class":
            return F.log_softmax(logits, dim=-1)
        log_p = F.logsigmoid(logits)
        return log_p - torch.logsumexp(log_p, dim=-1, keepdim=True)

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean loss over real steps. multi_hot: targets (B, T, O) in {0, 1}; class: (B, T) ids."""
        if self.config.target == "multi_hot":
            per = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none").mean(-1)
        else:
            per = F.cross_entropy(logits.transpose(1, 2), targets.clamp_min(0), reduction="none")  # (B, T)
        if mask is None:
            return per.mean()
        m = mask.to(per.dtype)
        return (per * m).sum() / m.sum()
