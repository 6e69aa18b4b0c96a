"""Attention over an encoder's outputs, and the decoder cell that carries it (custom-cell API).

Three scores (M: memory width, the encoder's D*H; A: attention size; Hd: decoder hidden):

* ``"bahdanau"`` (additive, Bahdanau et al. 2015): ``v^T tanh(W_k m_s + W_q h_{t-1})``, read with
  the decoder's *previous* state, before the cell step;
* ``"dot"`` (Luong et al. 2015): ``h_t . m_s`` (needs Hd == M);
* ``"general"`` (Luong): ``h_t^T W_g m_s``, read with the *new* state; Luong's attentional
  vector ``tanh(W_c [c_t; h_t])`` is fed to the next step's input ("input feeding").

Padded source steps get a score of ``-inf`` before the softmax, so their weight is exactly 0
and the weights of every row sum to 1 over its real steps. A row with no real step at all is
rejected (there is nothing to attend to).

:class:`AttentionDecoderCell` is a :class:`rnnkit.Recurrent`: the engine runs it over the target
sequence; the encoder outputs (``memory``), their precomputed ``keys`` and the ``source_mask`` are
*contexts*, handed unchanged to every step; the attention weights are an extra (non-recurrent)
output, so ``scan`` returns them as a (B, T, S) map.

Example:
    >>> import torch
    >>> attn = Attention("bahdanau", query_size=4, memory_size=6, attention_size=5)
    >>> memory = torch.randn(2, 3, 6)                        # (B, S, M)
    >>> mask = torch.tensor([[True, True, False], [True, True, True]])
    >>> context, weights = attn(torch.randn(2, 4), attn.keys(memory), memory, mask)
    >>> weights[0, 2].item(), round(weights[0].sum().item(), 6), tuple(context.shape)
    (0.0, 1.0, (2, 6))
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import Recurrent
from rnnkit.errors import bad_argument

__all__ = ["ATTENTIONS", "Attention", "AttentionDecoderCell", "input_width", "masked_softmax"]

ATTENTIONS = ("bahdanau", "dot", "general", "none")


def masked_softmax(scores: Tensor, mask: Tensor) -> Tensor:
    """Softmax over the last axis of ``scores`` (B, S) where ``mask`` (B, S) is True; exactly 0 elsewhere."""
    if not bool(mask.any(dim=-1).all()):
        raise bad_argument("mask", "at least one real source step in every row", "a row with none",
                           "drop empty sources before encoding them")
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)  # (B, S)
    return weights.masked_fill(~mask, 0.0)  # (B, S): exact zeros even if a score was -inf on a real step


class Attention(nn.Module):
    """One attention score (see the module docstring): ``(query, keys, memory, mask) -> (context, weights)``."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int = 128) -> None:
        super().__init__()
        if kind not in ATTENTIONS[:3]:
            raise bad_argument("attention", f"one of {', '.join(ATTENTIONS[:3])}", kind, "pick e.g. 'bahdanau'")
        if kind == "dot" and query_size != memory_size:
            raise bad_argument("attention='dot'", f"the decoder hidden size equal to the memory width "
                               f"({memory_size}: encoder directions x hidden)", query_size,
                               f"set the decoder hidden size to {memory_size}, or use attention='general'")
        self.kind = kind
        if kind == "bahdanau":
            self.key_proj = nn.Linear(memory_size, attention_size, bias=False)
            self.query_proj = nn.Linear(query_size, attention_size)
            self.v = nn.Linear(attention_size, 1, bias=False)
        elif kind == "general":
            self.key_proj = nn.Linear(memory_size, query_size, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """What the scores compare the query with, computed once per source: (B, S, M) -> (B, S, K)."""
        return memory if self.kind == "dot" else self.key_proj(memory)  # (B, S, K)

    def forward(self, query: Tensor, keys: Tensor, memory: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, Hq), keys (B, S, K), memory (B, S, M), mask (B, S) -> context (B, M), weights (B, S)."""
        if self.kind == "bahdanau":
            hidden = torch.tanh(keys + self.query_proj(query).unsqueeze(1))  # (B, S, A)
            scores = self.v(hidden).squeeze(-1)  # (B, S)
        else:
            scores = torch.bmm(keys, query.unsqueeze(-1)).squeeze(-1)  # (B, S)
        weights = masked_softmax(scores, mask)  # (B, S)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)  # (B, M)
        return context, weights


def input_width(cell: Recurrent) -> int:
    """The width of the projected input ``cell`` reads per step (``Structured.input_width`` or its declared shape)."""
    width = getattr(cell, "input_width", None)
    if isinstance(width, int):
        return width
    shape = cell.sequence_shape(cell.sequences[0]) if len(cell.sequences) == 1 else None
    if shape is None or len(shape) != 1:
        raise bad_argument("decoder cell", "a cell with one sequence of a declared width (an rnnkit Structured "
                           "cell, or sequence_shape(name) -> (F,))", type(cell).__name__,
                           "declare sequence_shape on the cell, or use a built-in cell")
    return int(shape[0])


class AttentionDecoderCell(Recurrent):
    """A decoder step built from any cell, with attention over the encoder's outputs.

    Sequence ``inputs``: the previous target token's embedding, already projected to the inner
    cell's input width (B, G*H). States: the inner cell's, plus ``feed`` (B, Hd) for Luong's input
    feeding. Contexts: ``memory`` (B, S, M), ``keys`` (B, S, K), ``source_mask`` (B, S) bool (not ``mask``,
    which names the engine's mask of the *target* steps). Outputs: the
    states, ``out`` (B, Hd), the vector the softmax layer reads, and ``attention`` (B, S).
    With ``attention="none"`` there are no contexts and ``out`` is the cell's hidden state.
    """

    sequences = ("inputs",)

    def __init__(self, cell: Recurrent, *, memory_size: int, attention: str = "bahdanau",
                 attention_size: int = 128) -> None:
        super().__init__()
        if not isinstance(cell, Recurrent) or tuple(cell.sequences) != ("inputs",):
            raise bad_argument("cell", "an rnnkit.Recurrent cell with the single sequence 'inputs'", cell,
                               "pass e.g. rnnkit.cells.GRUCell(128)")
        if attention not in ATTENTIONS:
            raise bad_argument("attention", f"one of {', '.join(ATTENTIONS)}", attention, "pick e.g. 'bahdanau'")
        self.cell = cell
        self.kind = attention
        hidden = cell.state_shape(cell.states[0])[0]
        self.hidden_size = hidden
        width = input_width(cell)
        self.luong = attention in ("dot", "general")
        self.states = tuple(cell.states) + (("feed",) if self.luong else ())
        if attention == "none":
            self.contexts = ()
            self.outputs = self.states + ("out",)
            return
        self.contexts = ("memory", "keys", "source_mask")
        self.outputs = self.states + ("out", "attention")
        self.attention = Attention(attention, hidden, memory_size, attention_size)
        # the extra input of each step: the context (Bahdanau) or the previous attentional vector (Luong)
        self.extra = nn.Linear(hidden if self.luong else memory_size, width, bias=False)
        self.combine = nn.Linear(memory_size + hidden, hidden)  # [context; h] -> out

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.hidden_size,) if name == "feed" else self.cell.state_shape(name)

    def _cell_step(self, x: Tensor, states: dict[str, Tensor]) -> dict[str, Tensor]:
        result = self.cell.pack_outputs(self.cell.step(inputs=x, **{n: states[n] for n in self.cell.states}))
        return dict(zip(self.cell.output_names, result))

    def step(self, inputs: Tensor, memory: Tensor | None = None, keys: Tensor | None = None,  # type: ignore[override]
             source_mask: Tensor | None = None, **states: Tensor) -> tuple[Tensor, ...]:
        """One decoder step; returns the declared outputs in order (states, out[, attention])."""
        if self.kind == "none":
            new = self._cell_step(inputs, states)
            return tuple(new[n] for n in self.cell.states) + (new[self.cell.states[0]],)
        if self.luong:
            new = self._cell_step(inputs + self.extra(states["feed"]), states)
            h = new[self.cell.states[0]]  # (B, Hd)
            context, weights = self.attention(h, keys, memory, source_mask)  # (B, M), (B, S)
        else:
            query = states[self.cell.states[0]]  # (B, Hd): Bahdanau reads the previous state
            context, weights = self.attention(query, keys, memory, source_mask)  # (B, M), (B, S)
            new = self._cell_step(inputs + self.extra(context), states)
            h = new[self.cell.states[0]]  # (B, Hd)
        out = torch.tanh(self.combine(torch.cat([context, h], dim=-1)))  # (B, Hd)
        cell_states = tuple(new[n] for n in self.cell.states)
        return cell_states + ((out,) if self.luong else ()) + (out, weights)

    def extra_repr(self) -> str:
        return f"attention={self.kind!r}, hidden_size={self.hidden_size}"
