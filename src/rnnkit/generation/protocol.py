"""What a model needs to be decoded, and the two things every decoder does with it: prime and reorder.

A decoding model has

* ``forward(tokens (B, T), state=...) -> (logits (B, T, V), state)``: the whole-sequence path,
  used once to read the prompt;
* ``step(tokens (B,), state) -> (logits (B, V), state)``: one token, O(1) in the past length;
* ``next_log_probs(logits (..., V)) -> (..., V)``: normalised log-probabilities of the next token.

``rnnkit.models.LanguageModel`` and ``SequenceTagger`` are decoding models. The state may be a
tensor or a (nested) tuple of tensors whose dimension 1 is the batch (torch's ``(L*D, B, H)``
layout); a model with another layout defines ``select_state(state, index)``.

Example:
    >>> import torch
    >>> from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
    >>> lm = LanguageModel(LanguageModelConfig(vocab_size=5, embedding_size=4, rnn=RNNConfig(hidden_size=8))).eval()
    >>> logits, state = prime(lm, torch.tensor([[1, 2, 3]]), repeat=4)
    >>> tuple(logits.shape), tuple(state[0].shape)     # (B, V), (L, B, H)
    ((4, 5), (1, 4, 8))
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from rnnkit.errors import bad_argument

__all__ = ["DecodingModel", "check_decoding_model", "model_device", "prime", "select_state"]


@runtime_checkable
class DecodingModel(Protocol):
    """The three methods a decoder calls (see the module docstring)."""

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """One token per sequence: tokens (B,) -> (logits (B, V), the new state)."""
        ...

    def next_log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities of the next token: logits (..., V) -> (..., V)."""
        ...

    def __call__(self, tokens: Tensor, *, state: Any = None) -> tuple[Tensor, Any]: ...


def check_decoding_model(model: object) -> nn.Module:
    """``model`` if it can be decoded step by step, else a ValueError saying why and what to use instead."""
    missing = [name for name in ("step", "next_log_probs") if not callable(getattr(model, name, None))]
    if not isinstance(model, nn.Module) or missing:
        raise bad_argument("model", "a model that predicts the next token (an rnnkit LanguageModel or "
                           "SequenceTagger, or any nn.Module with step() and next_log_probs())",
                           f"{type(model).__module__}.{type(model).__qualname__}"
                           + (f" (no {', '.join(missing)})" if missing else ""),
                           "train a language model (rnnkit train --task lm / reber / embedded-reber) and "
                           "decode that")
    config = getattr(model, "config", None)
    rnn = getattr(config, "rnn", None)
    if getattr(rnn, "bidirectional", False):
        raise bad_argument("model", "a unidirectional model (decoding only sees the past)",
                           "a bidirectional model", "decode a model trained with bidirectional=False")
    outputs = getattr(config, "num_outputs", None)
    if outputs is not None and outputs != getattr(config, "vocab_size", outputs):
        raise bad_argument("model", "a model whose outputs are its inputs (num_outputs == vocab_size), so each "
                           "token can be fed back", f"{outputs} outputs for {config.vocab_size} input tokens",
                           "decode a next-token model")
    return model


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (the CPU for a model without parameters)."""
    for parameter in model.parameters():
        return parameter.device
    return torch.device("cpu")


def select_state(model: nn.Module, state: Any, index: Tensor) -> Any:
    """Rows ``index`` (N,) of a decoding state, in that order (batch on dimension 1 unless the model says otherwise)."""
    custom = getattr(model, "select_state", None)
    if callable(custom):
        return custom(state, index)
    return _select(state, index)


def _select(state: Any, index: Tensor) -> Any:
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(1, index)  # (L*D, N, H)
    if isinstance(state, (tuple, list)):
        return type(state)(_select(part, index) for part in state)
    raise bad_argument("state", "a tensor or a tuple of tensors with the batch on dimension 1", state,
                       "give the model a select_state(state, index) method for its own state layout")


def prime(model: nn.Module, prompt: Tensor, repeat: int = 1) -> tuple[Tensor, Any]:
    """Read ``prompt`` (B, P) once on the whole-sequence path; each row is then repeated ``repeat`` times.

    Returns the next-token logits (B*repeat, V) and the state after the prompt, rows in order
    ``[0]*repeat + [1]*repeat + ...``.
    """
    logits, state = model(prompt, state=None)  # (B, P, V)
    last = logits[:, -1]  # (B, V)
    if repeat == 1:
        return last, state
    index = torch.arange(prompt.shape[0], device=prompt.device).repeat_interleave(repeat)  # (B*repeat,)
    return last.index_select(0, index), select_state(model, state, index)  # (B*repeat, V)
