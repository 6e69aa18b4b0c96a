"""Beam search with a width, length normalisation, an end token and an optional constraint.

The beam holds ``width`` hypotheses. At every step each live hypothesis is extended by every
token, and the finished hypotheses compete again unchanged; the ``width`` best by normalised
score, ``logprob / length ** length_penalty``, form the next beam. A hypothesis finishes when
it emits the end token (its ``end_count``-th one), or when the constraint allows nothing more. The search stops when
every hypothesis in the beam is finished, or at ``max_length`` (live hypotheses then compete
as they are). With ``width=1`` this is greedy decoding, whatever the length penalty, because
the extensions of one hypothesis all have the same length.

The beam keeps back-pointers (parent, token) per step, so a step costs the same at any length;
the sequences are read back once at the end.

Example:
    >>> import torch
    >>> from rnnkit.generation.protocol import prime
    >>> from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
    >>> lm = LanguageModel(LanguageModelConfig(vocab_size=6, embedding_size=4, rnn=RNNConfig(hidden_size=8))).eval()
    >>> logits, state = prime(lm, torch.tensor([[1]]))
    >>> hyps = beam_search(lm, logits, state, width=3, max_length=4, end=0)
    >>> len(hyps), hyps[0].score >= hyps[-1].score
    (3, True)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.generation.constraints import Constraint
from rnnkit.generation.protocol import select_state

__all__ = ["Hypothesis", "beam_search"]


@dataclass(frozen=True)
class Hypothesis:
    """One finished (or cut) beam hypothesis."""

    tokens: list[int]  # generated ids, the end token included
    token_logprobs: list[float]  # the model's log-probability of each token
    logprob: float  # their sum
    score: float  # logprob / max(1, len(tokens)) ** length_penalty: what the beam ranks by
    finished: bool  # ended by the end token or a complete constraint (False: cut at max_length)


def _norm(lengths: Tensor, length_penalty: float) -> Tensor:
    return lengths.clamp_min(1).double().pow(length_penalty)  # (A,)


@torch.no_grad()
def beam_search(model: nn.Module, logits: Tensor, state: Any, *, width: int, max_length: int, end: int | None,
                end_count: int = 1, length_penalty: float = 1.0, constraint: Constraint | None = None,
                constraint_state: Any = None) -> list[Hypothesis]:
    """The beam's hypotheses after priming, best first. logits (1, V): the next-token logits after the prompt."""
    device = logits.device
    V = logits.shape[-1]
    raw = torch.zeros(1, dtype=torch.float64, device=device)  # (A,) summed log-probabilities
    finished = torch.zeros(1, dtype=torch.bool, device=device)  # (A,)
    lengths = torch.zeros(1, dtype=torch.int64, device=device)  # (A,) real generated tokens
    seen = torch.zeros(1, dtype=torch.int64, device=device)  # (A,) end tokens generated
    parents: list[Tensor] = []  # per step (A',): the row each new hypothesis came from
    tokens_at: list[Tensor] = []  # per step (A',): the token it added (a placeholder when carried)
    logprob_at: list[Tensor] = []  # per step (A',): that token's log-probability
    cstate = constraint_state
    for t in range(max_length):
        logp = model.next_log_probs(logits).double()  # (A, V)
        A = logp.shape[0]
        ext = raw.unsqueeze(1) + logp  # (A, V)
        if constraint is not None:
            allowed = constraint.allowed(cstate)  # (A, V)
            finished = finished | ~allowed.any(dim=-1)  # complete: the constraint allows nothing more
            ext = ext.masked_fill(~allowed, -math.inf)
        if bool(finished.all()):
            break
        ext = ext.masked_fill(finished.unsqueeze(1), -math.inf)  # finished rows are not extended
        carried = torch.where(finished, raw / _norm(lengths, length_penalty), -math.inf)  # (A,)
        candidates = torch.cat([(ext / (t + 1) ** length_penalty).flatten(), carried])  # (A*V + A,)
        k = min(width, int(torch.isfinite(candidates).sum()))
        if k == 0:
            break
        _, index = torch.topk(candidates, k)  # (k,) best first
        extended = index < A * V  # (k,)
        parent = torch.where(extended, index // V, index - A * V)  # (k,)
        token = torch.where(extended, index % V, 0)  # (k,)
        token_logp = torch.where(extended, logp[parent, token], 0.0)  # (k,)
        raw = torch.where(extended, raw[parent] + token_logp, raw[parent])
        if end is not None:
            seen = seen[parent] + (extended & (token == end))
        ended = seen >= end_count if end is not None else torch.zeros_like(extended)  # (k,)
        finished = ~extended | ended  # carried rows stay finished
        lengths = torch.where(extended, t + 1, lengths[parent])
        parents.append(parent)
        tokens_at.append(token)
        logprob_at.append(token_logp)
        if constraint is not None:
            cstate = constraint.advance(constraint.select(cstate, parent), token, extended)
        if bool(finished.all()) or t + 1 == max_length:
            break
        state = select_state(model, state, parent)
        logits, state = model.step(token, state)  # (k, V)
    scores = raw / _norm(lengths, length_penalty)  # (A,)
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    return [_read_back(row, parents, tokens_at, logprob_at, int(lengths[row]), float(raw[row]), float(scores[row]),
                       bool(finished[row])) for row in order]


def _read_back(row: int, parents: list[Tensor], tokens_at: list[Tensor], logprob_at: list[Tensor], length: int,
               logprob: float, score: float, finished: bool) -> Hypothesis:
    """Follow the back-pointers of final row ``row`` to its first ``length`` tokens."""
    tokens: list[int] = []
    logprobs: list[float] = []
    for parent, token, token_logp in zip(reversed(parents), reversed(tokens_at), reversed(logprob_at)):
        tokens.append(int(token[row]))
        logprobs.append(float(token_logp[row]))
        row = int(parent[row])
    tokens.reverse()
    logprobs.reverse()
    return Hypothesis(tokens[:length], logprobs[:length], logprob, score, finished)
