"""``Seq2Seq``: an RNN encoder, a bridge, and an attention decoder built from any cell.

* **Encoder**: an rnnkit layer stack (``RNNConfig``: Elman, LSTM or GRU, any depth,
  bidirectional allowed) over the embedded source, with the source lengths, so padding never
  reaches the outputs or the final state.
* **Bridge**: ``tanh(W [final states of the top layer, both directions])`` becomes the decoder's
  initial hidden state (and, for an LSTM decoder, a second projection its cell state);
  ``bridge="zero"`` starts the decoder from zeros.
* **Decoder**: :class:`~rnnkit.models.attention.AttentionDecoderCell` around a built-in cell
  (``decoder_cell``), run by the engine over the target with the encoder outputs and the source
  mask as *contexts*; ``attention`` is ``"bahdanau"``, ``"dot"``, ``"general"`` or ``"none"``.
* **Training**: teacher forcing (``forward``), or scheduled sampling (``sampling_rate`` > 0: each
  step feeds the model's own previous prediction instead of the reference with that chance).
* **Decoding**: :meth:`Seq2Seq.decoder` binds encoded sources into a decoding model for
  ``rnnkit.generation`` (its state carries the decoder states *and* the encoder memory, keys and
  mask, reordered together by beam search); :meth:`Seq2Seq.translate` runs greedy, sampling or
  beam search (length-normalised) through ``rnnkit.generation.Generator``.

Example:
    >>> import torch
    >>> model = Seq2Seq(Seq2SeqConfig(source_vocab_size=7, target_vocab_size=6, embedding_size=8,
    ...                 encoder=RNNConfig(cell="gru", hidden_size=8, bidirectional=True), decoder_hidden=8))
    >>> src, src_len = torch.tensor([[4, 5, 6], [4, 3, 0]]), torch.tensor([3, 2])
    >>> logits, attention = model(src, src_len, torch.tensor([[1, 3], [1, 4]]))
    >>> tuple(logits.shape), tuple(attention.shape)        # (B, T, V), (B, T, S)
    ((2, 2, 6), (2, 2, 3))
    >>> len(model.translate(src, src_len, max_length=4)) # greedy by default: one output per source
    2
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells import ElmanCell, GRUCell, LayerNormLSTMCell, LSTMCell, Recurrent
from rnnkit.checkpoint.registry import register_model
from rnnkit.errors import bad_argument
from rnnkit.models.attention import ATTENTIONS, AttentionDecoderCell
from rnnkit.models.body import RNNConfig, build_rnn, final_hidden

__all__ = ["DECODER_CELLS", "BoundDecoder", "Seq2Seq", "Seq2SeqConfig"]

DECODER_CELLS = ("elman", "lstm", "gru", "layernorm-lstm")


@dataclass(frozen=True)
class Seq2SeqConfig:
    """An encoder-decoder with attention."""

    source_vocab_size: int  # source token ids, <pad> and <unk> included
    target_vocab_size: int  # target token ids, <pad>, <s> and </s> included
    embedding_size: int = 64  # width of both embeddings
    encoder: RNNConfig = field(default_factory=lambda: RNNConfig(cell="gru", hidden_size=128, bidirectional=True))
    decoder_cell: str = "gru"  # one of DECODER_CELLS
    decoder_hidden: int = 128  # the decoder cell's hidden size
    attention: str = "bahdanau"  # "bahdanau" (additive) | "dot" | "general" (Luong) | "none"
    attention_size: int = 128  # Bahdanau only: width of the additive score's hidden layer
    bridge: str = "linear"  # "linear": tanh(W h_enc) starts the decoder | "zero": zero initial state
    dropout: float = 0.0  # on the embeddings and the decoder output (training only)
    pad_id: int = 0  # padding id (both vocabularies)
    bos_id: int = 1  # target start id, the first decoder input
    eos_id: int = 2  # target end id

    def __post_init__(self) -> None:
        for name in ("source_vocab_size", "target_vocab_size", "embedding_size", "decoder_hidden", "attention_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise bad_argument(name, "a positive int", value, f"pass e.g. {name}=64")
        if self.decoder_cell not in DECODER_CELLS:
            raise bad_argument("decoder_cell", f"one of {', '.join(DECODER_CELLS)}", self.decoder_cell,
                               "pick e.g. decoder_cell='gru'")
        if self.attention not in ATTENTIONS:
            raise bad_argument("attention", f"one of {', '.join(ATTENTIONS)}", self.attention,
                               "pick e.g. attention='bahdanau'")
        if self.bridge not in ("linear", "zero"):
            raise bad_argument("bridge", "'linear' or 'zero'", self.bridge, "pick bridge='linear'")
        if not 0.0 <= self.dropout < 1.0:
            raise bad_argument("dropout", "a probability in [0, 1)", self.dropout, "use e.g. 0.1")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < self.target_vocab_size:
                raise bad_argument(name, f"a target id in 0..{self.target_vocab_size - 1}", value,
                                   "use the ids of the target vocabulary's special tokens")


def _decoder_cell(kind: str, hidden: int) -> Recurrent:
    if kind == "lstm":
        return LSTMCell(hidden)
    if kind == "gru":
        return GRUCell(hidden)
    if kind == "layernorm-lstm":
        return LayerNormLSTMCell(hidden)
    return ElmanCell(hidden)


@register_model
class Seq2Seq(nn.Module):
    """source ids (B, S) + lengths (B,), target inputs (B, T) -> logits (B, T, V) and attention (B, T, S)."""

    config_class = Seq2SeqConfig  # the config a checkpoint stores and rebuilds it from

    def __init__(self, config: Seq2SeqConfig) -> None:
        super().__init__()
        self.config = config
        E, Hd = config.embedding_size, config.decoder_hidden
        self.source_embedding = nn.Embedding(config.source_vocab_size, E, padding_idx=config.pad_id)
        self.target_embedding = nn.Embedding(config.target_vocab_size, E, padding_idx=config.pad_id)
        self.encoder = build_rnn(config.encoder, E)
        memory = config.encoder.output_size
        self.decoder = AttentionDecoderCell(_decoder_cell(config.decoder_cell, Hd), memory_size=memory,
                                            attention=config.attention, attention_size=config.attention_size)
        self.target_input = nn.Linear(E, self.decoder.cell.input_width)  # the embedding part of each step's input
        self.bridge = nn.ModuleDict()
        if config.bridge == "linear":
            for name in self.decoder.cell.states:
                self.bridge[name] = nn.Linear(memory, Hd)
        self.output = nn.Linear(Hd, config.target_vocab_size)

    # ------------------------------------------------------------------ encoder and bridge
    def encode(self, source: Tensor, lengths: Tensor) -> dict[str, Tensor]:
        """The decoder's initial state and contexts for ``source`` (B, S) of ``lengths`` (B,): a dict of (B, ...)."""
        if not isinstance(source, Tensor) or source.dim() != 2 or source.dtype != torch.int64:
            raise bad_argument("source", "int64 token ids of shape (B, S)", source, "encode the sources with the vocabulary")
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=source.device)
        if lengths.shape != source.shape[:1] or int(lengths.min()) < 1 or int(lengths.max()) > source.shape[1]:
            raise bad_argument("lengths", f"(B,) ints in 1..{source.shape[1]}", lengths,
                               "pass each source's real length (empty sources cannot be attended to)")
        p = self.config.dropout if self.training else 0.0
        x = F.dropout(self.source_embedding(source), p, self.training)  # (B, S, E)
        memory, final = self.encoder(x, None, lengths)  # (B, S, D*H)
        enc = self.config.encoder
        h_n, c_n = final if isinstance(final, tuple) else (final, None)
        summary_h = final_hidden(h_n, enc.num_layers, enc.bidirectional)  # (B, D*H)
        summary_c = final_hidden(c_n, enc.num_layers, enc.bidirectional) if c_n is not None else summary_h
        mask = torch.arange(source.shape[1], device=source.device) < lengths.unsqueeze(1)  # (B, S)
        state: dict[str, Tensor] = {}
        for i, name in enumerate(self.decoder.cell.states):
            if name in self.bridge:
                state[name] = torch.tanh(self.bridge[name](summary_h if i == 0 else summary_c))  # (B, Hd)
            else:
                state[name] = memory.new_zeros(source.shape[0], *self.decoder.state_shape(name))
        if "feed" in self.decoder.states:
            state["feed"] = memory.new_zeros(source.shape[0], self.config.decoder_hidden)  # (B, Hd)
        if self.decoder.contexts:
            state.update(memory=memory, keys=self.decoder.attention.keys(memory), source_mask=mask)
        return state

    # ------------------------------------------------------------------ teacher forcing
    def forward(self, source: Tensor, source_lengths: Tensor, target_in: Tensor, target_lengths: Tensor | None = None,
                sampling_rate: float = 0.0, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor | None]:
        """Teacher-forced logits (B, T, V) for ``target_in`` (B, T) (``<s>`` first) and the attention (B, T, S).

        ``sampling_rate`` > 0 (training only) feeds, at each step after the first and for each row
        with that chance, the model's own previous argmax instead of the reference token.
        """
        encoded = self.encode(source, source_lengths)
        mask = None
        if target_lengths is not None:
            mask = torch.arange(target_in.shape[1], device=target_in.device) < target_lengths.unsqueeze(1)  # (B, T)
        if sampling_rate > 0.0 and self.training:
            return self._scheduled(encoded, target_in, mask, sampling_rate, generator)
        states = {n: encoded[n] for n in self.decoder.states}
        contexts = {n: encoded[n] for n in self.decoder.contexts}
        inputs = self.target_input(self._embed(target_in))  # (B, T, G*H)
        scan = self.decoder.scan(inputs, mask=mask, initial_states=states, contexts=contexts)
        out = F.dropout(scan.outputs["out"], self.config.dropout if self.training else 0.0, self.training)
        return self.output(out), scan.outputs.get("attention")  # (B, T, V), (B, T, S)

    def _embed(self, tokens: Tensor) -> Tensor:
        p = self.config.dropout if self.training else 0.0
        return F.dropout(self.target_embedding(tokens), p, self.training)  # (B, T, E)

    def _scheduled(self, encoded: dict[str, Tensor], target_in: Tensor, mask: Tensor | None, rate: float,
                   generator: torch.Generator | None) -> tuple[Tensor, Tensor | None]:
        state = dict(encoded)
        logits_all, attention_all = [], []
        previous = None
        for t in range(target_in.shape[1]):
            token = target_in[:, t]  # (B,)
            if previous is not None:
                draw = torch.rand(token.shape, generator=generator, device=token.device if generator is None
                                  else torch.device("cpu")).to(token.device)
                token = torch.where(draw < rate, previous, token)
            logits, new = self.step(token, state)  # (B, V)
            if mask is not None:  # padded steps keep the state
                keep = mask[:, t].unsqueeze(1)
                new = {n: torch.where(keep, v, state[n]) if n in self.decoder.states else v for n, v in new.items()}
            state = new
            previous = logits.detach().argmax(-1)
            logits_all.append(logits)
            attention_all.append(state.get("attention"))
        attention = torch.stack(attention_all, 1) if attention_all and attention_all[0] is not None else None
        return torch.stack(logits_all, 1), attention  # (B, T, V), (B, T, S)

    # ------------------------------------------------------------------ step-wise decoding
    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """One target token per row: tokens (B,) and a state from :meth:`encode` -> logits (B, V), new state."""
        inputs = self.target_input(self._embed(tokens))  # (B, G*H)
        outs = self.decoder.step(inputs, **{n: state[n] for n in self.decoder.contexts},
                                 **{n: state[n] for n in self.decoder.states})
        named = dict(zip(self.decoder.output_names, outs))
        new = dict(state)
        new.update({n: named[n] for n in self.decoder.states})
        if "attention" in named:
            new["attention"] = named["attention"]  # (B, S): the weights of the step just taken
        out = F.dropout(named["out"], self.config.dropout if self.training else 0.0, self.training)
        return self.output(out), new  # (B, V)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        """Log-probabilities of the next target token, (..., V) -> (..., V)."""
        return F.log_softmax(logits, dim=-1)

    def loss(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> Tensor:
        """Mean cross-entropy per real target token (nats)."""
        per = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="none")
        if mask is None:
            return per.mean()
        m = mask.reshape(-1).to(per.dtype)
        return (per * m).sum() / m.sum().clamp_min(1.0)

    def decoder_for(self, source: Tensor, lengths: Tensor) -> BoundDecoder:
        """A decoding model (``rnnkit.generation`` protocol) for these sources, one row each."""
        return BoundDecoder(self, source, lengths)

    def translate(self, source: Tensor, lengths: Tensor, *, max_length: int = 64, beam: int | None = None,
                  length_penalty: float = 1.0, greedy: bool | None = None, seed: int | None = 0,
                  **options: Any) -> list[list[int]]:
        """Decoded target ids per source (``</s>`` stripped): greedy by default, sampling with
        ``greedy=False`` (plus temperature/top_k/top_p), or beam search with ``beam=W``."""
        from rnnkit.generation import Generator

        was_training = self.training
        self.eval()
        try:
            results: list[list[int]] = []
            cfg: dict[str, Any] = dict(max_length=max_length, end_token=self.config.eos_id, seed=seed, **options)
            if beam is not None:
                for b in range(source.shape[0]):
                    bound = self.decoder_for(source[b: b + 1], lengths[b: b + 1])
                    out = Generator(bound).generate(bound.prompt(), beam=beam, length_penalty=length_penalty, **cfg)
                    results.append(out.tokens[0])
            else:
                bound = self.decoder_for(source, lengths)
                greedy = True if greedy is None else greedy
                out = Generator(bound).generate(bound.prompt(), greedy=greedy, **cfg)
                results = out.tokens
        finally:
            self.train(was_training)
        eos = self.config.eos_id
        return [ids[: ids.index(eos)] if eos in ids else list(ids) for ids in results]


class BoundDecoder(nn.Module):
    """A :class:`Seq2Seq` with its sources encoded: the decoding model that ``rnnkit.generation`` drives.

    ``forward(prompt (B, P), state=None)`` reads target prefixes (``<s>`` first) from the encoder's
    state; ``step`` takes one token; the state is a dict of (B, ...) tensors (decoder states,
    encoder memory, keys and mask) that ``select_state`` reorders row-wise for beam search.
    """

    def __init__(self, model: Seq2Seq, source: Tensor, lengths: Tensor) -> None:
        super().__init__()
        self.model = model
        with torch.inference_mode(False), torch.no_grad():
            self.initial = model.encode(source, lengths)

    def prompt(self) -> Tensor:
        """``<s>`` for every bound source, (B, 1)."""
        batch = next(iter(self.initial.values())).shape[0]
        device = next(iter(self.initial.values())).device
        return torch.full((batch, 1), self.model.config.bos_id, dtype=torch.int64, device=device)  # (B, 1)

    def forward(self, tokens: Tensor, state: dict[str, Tensor] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        state = dict(self.initial) if state is None else state
        logits = []
        for t in range(tokens.shape[1]):
            step_logits, state = self.model.step(tokens[:, t], state)  # (B, V)
            logits.append(step_logits)
        return torch.stack(logits, 1), state  # (B, P, V)

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        return self.model.step(tokens, state)

    def next_log_probs(self, logits: Tensor) -> Tensor:
        return self.model.next_log_probs(logits)

    def select_state(self, state: dict[str, Tensor], index: Tensor) -> dict[str, Tensor]:
        return {name: value.index_select(0, index) for name, value in state.items()}  # (N, ...)
