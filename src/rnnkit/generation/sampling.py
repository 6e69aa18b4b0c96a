"""Logit processors and the sampling step: temperature, top-k, top-p (nucleus), greedy.

Every processor maps log-probabilities ``(B, V)`` to log-weights ``(B, V)``: tokens it rules
out get ``-inf``, the others keep finite values. They are applied in the order of
:func:`process` (the order of Hugging Face's ``generate``): the constraint mask first, then
temperature, then top-k, then top-p, and :func:`pick` draws one token per row from the result.

Example:
    >>> import torch
    >>> logp = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    >>> keep_top_k(logp, 2).isfinite().tolist()
    [[True, True, False, False]]
    >>> keep_top_p(logp, 0.8).isfinite().tolist()    # 0.5 + 0.3 reaches 0.8
    [[True, True, False, False]]
    >>> pick(logp, greedy=True).tolist()
    [0]
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from rnnkit.errors import bad_argument

__all__ = [
    "check_beam", "check_temperature", "check_top_k", "check_top_p", "keep_top_k", "keep_top_p", "pick", "process",
    "scale_temperature",
]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_temperature(value: float) -> float:
    """``value`` as a float if it is a finite temperature > 0, else a ValueError that says what to do."""
    if not _is_number(value) or not math.isfinite(value) or value <= 0:
        raise bad_argument("temperature", "a finite number > 0 (1 samples the model as it is; smaller is "
                           "more conservative)", value,
                           "pass e.g. temperature=0.8; for the most likely token at every step use greedy=True "
                           "(--greedy), not temperature=0")
    return float(value)


def check_top_k(value: int | None) -> int | None:
    """``value`` if it is None or an int >= 1, else a ValueError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise bad_argument("top_k", "None or an int >= 1 (the number of most likely tokens kept)", value,
                           "pass e.g. top_k=10, or leave it out to keep every token")
    return value


def check_top_p(value: float | None) -> float | None:
    """``value`` as a float if it is None or in (0, 1], else a ValueError."""
    if value is None:
        return None
    if not _is_number(value) or not 0.0 < value <= 1.0:
        raise bad_argument("top_p", "None or a probability in (0, 1] (the nucleus mass kept)", value,
                           "pass e.g. top_p=0.9; top_p=1 keeps every token")
    return float(value)


def check_beam(value: int | None) -> int | None:
    """``value`` if it is None or an int >= 1, else a ValueError."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise bad_argument("beam", "None (sampling) or a beam width >= 1", value,
                           "pass e.g. beam=5; beam=1 is greedy decoding")
    return value


def scale_temperature(logp: Tensor, value: float) -> Tensor:
    """Divide by the temperature: ``softmax(logp / T)`` is ``p ** (1/T)`` renormalised. (B, V) -> (B, V)."""
    return logp if value == 1.0 else logp / value


def keep_top_k(logp: Tensor, k: int) -> Tensor:
    """Keep exactly the ``k`` largest entries of each row (ties broken by index), ``-inf`` elsewhere.

    (B, V) -> (B, V). Entries that are already ``-inf`` stay out even when fewer than ``k`` are finite.
    """
    if k >= logp.shape[-1]:
        return logp
    values, index = torch.topk(logp, k, dim=-1)  # (B, k)
    return torch.full_like(logp, -math.inf).scatter_(-1, index, values)  # (B, V)


def keep_top_p(logp: Tensor, p: float) -> Tensor:
    """The nucleus: the smallest set of most likely tokens whose probability reaches ``p``.

    Token ``i`` (in decreasing order of probability) is kept when the mass of the tokens before
    it is still below ``p``, so the most likely token always stays. (B, V) -> (B, V).
    """
    if p >= 1.0:
        return logp
    ordered, index = torch.sort(logp, dim=-1, descending=True, stable=True)  # (B, V)
    probs = torch.softmax(ordered, dim=-1)  # (B, V)
    before = torch.cumsum(probs, dim=-1) - probs  # (B, V) mass strictly before each token
    kept = ordered.masked_fill(before >= p, -math.inf)  # (B, V)
    return torch.empty_like(logp).scatter_(-1, index, kept)  # (B, V)


def process(logp: Tensor, *, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
            allowed: Tensor | None = None) -> Tensor:
    """Apply the constraint mask ``allowed`` (B, V) bool, then temperature, top-k and top-p. (B, V) -> (B, V)."""
    if allowed is not None:
        logp = logp.masked_fill(~allowed, -math.inf)
    logp = scale_temperature(logp, temperature)
    if top_k is not None:
        logp = keep_top_k(logp, top_k)
    if top_p is not None:
        logp = keep_top_p(logp, top_p)
    return logp


def pick(weights: Tensor, *, greedy: bool = False, generator: torch.Generator | None = None) -> Tensor:
    """One token per row of log-weights (B, V): the argmax (first on ties) or a draw from ``softmax``. -> (B,)."""
    if greedy:
        return weights.argmax(dim=-1)  # (B,)
    probs = torch.softmax(weights, dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]  # (B,)
