"""Seq2Seq: attention masks, decoding against brute force, teacher forcing vs step-wise, checkpoints."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

import rnnkit
from rnnkit.models import RNNConfig, Seq2Seq, Seq2SeqConfig
from rnnkit.models.attention import Attention, AttentionDecoderCell, masked_softmax


def tiny(attention: str = "bahdanau", cell: str = "gru", target_vocab: int = 5, bidirectional: bool = True,
         seed: int = 0, hidden: int = 8, enc_cell: str = "gru") -> Seq2Seq:
    torch.manual_seed(seed)
    enc = RNNConfig(cell=enc_cell, hidden_size=hidden // 2 if attention == "dot" and bidirectional else hidden,
                    bidirectional=bidirectional)
    model = Seq2Seq(Seq2SeqConfig(source_vocab_size=9, target_vocab_size=target_vocab, embedding_size=6,
                                  encoder=enc, decoder_cell=cell, decoder_hidden=hidden, attention=attention,
                                  attention_size=7))
    # sharpen the output layer so the distributions are far from uniform (beam search has work to do)
    with torch.no_grad():
        model.output.weight.mul_(6.0)
    return model.eval()


SOURCES = torch.tensor([[4, 5, 6, 7, 8], [5, 6, 0, 0, 0], [8, 0, 0, 0, 0], [4, 4, 7, 0, 0]])
LENGTHS = torch.tensor([5, 2, 1, 3])


@pytest.mark.parametrize("attention", ["bahdanau", "dot", "general"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "elman", "layernorm-lstm"])
def test_attention_weights_sum_to_one_over_real_steps_and_are_zero_on_padding(attention: str, cell: str) -> None:
    model = tiny(attention, cell)
    target = torch.tensor([[1, 3, 4, 2], [1, 4, 2, 0], [1, 2, 0, 0], [1, 3, 3, 4]])
    with torch.no_grad():
        _, weights = model(SOURCES, LENGTHS, target, torch.tensor([4, 3, 2, 4]))  # (B, T, S)
    real = torch.arange(5) < LENGTHS.unsqueeze(1)  # (B, S)
    for b, t_len in enumerate([4, 3, 2, 4]):
        w = weights[b, :t_len]  # (T_b, S)
        assert torch.equal(w[:, ~real[b]], torch.zeros_like(w[:, ~real[b]]))  # exactly 0 on padding
        torch.testing.assert_close(w.sum(-1), torch.ones(t_len), atol=1e-6, rtol=0)
        assert bool((w[:, real[b]] > 0).all())


def test_padding_of_the_batch_does_not_change_a_row() -> None:
    """A source decoded alone equals the same source padded inside a batch (the mask really masks)."""
    model = tiny()
    target = torch.tensor([[1, 3, 4]])
    with torch.no_grad():
        alone, w_alone = model(SOURCES[1:2, :2], LENGTHS[1:2], target)
        batched, w_batched = model(SOURCES, LENGTHS, target.expand(4, 3))
    torch.testing.assert_close(batched[1], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w_batched[1, :, :2], w_alone[0], atol=1e-6, rtol=1e-5)


def test_masked_softmax_against_a_softmax_of_the_real_steps_only() -> None:
    scores = torch.randn(3, 6)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [0, 1, 0, 1, 0, 0]], dtype=torch.bool)
    out = masked_softmax(scores, mask)
    for b in range(3):
        torch.testing.assert_close(out[b, mask[b]], torch.softmax(scores[b, mask[b]], -1))
    with pytest.raises(ValueError, match="at least one real source step"):
        masked_softmax(scores, torch.zeros(3, 6, dtype=torch.bool))


def test_additive_score_against_the_formula() -> None:
    torch.manual_seed(1)
    attn = Attention("bahdanau", query_size=3, memory_size=4, attention_size=5)
    memory, query = torch.randn(1, 2, 4), torch.randn(1, 3)
    context, weights = attn(query, attn.keys(memory), memory, torch.ones(1, 2, dtype=torch.bool))
    Wk, Wq, bq, v = attn.key_proj.weight, attn.query_proj.weight, attn.query_proj.bias, attn.v.weight[0]
    e = torch.stack([v @ torch.tanh(Wk @ memory[0, s] + Wq @ query[0] + bq) for s in range(2)])
    a = torch.softmax(e, 0)
    torch.testing.assert_close(weights[0], a)
    torch.testing.assert_close(context[0], a @ memory[0])


@pytest.mark.parametrize("attention", ["bahdanau", "general", "none"])
def test_teacher_forcing_equals_step_by_step(attention: str) -> None:
    """The engine's scan over the target and the decoding step give the same logits."""
    model = tiny(attention, "lstm")
    target = torch.tensor([[1, 3, 4, 4], [1, 4, 3, 3], [1, 3, 3, 3], [1, 4, 4, 4]])
    with torch.no_grad():
        logits, _ = model(SOURCES, LENGTHS, target)
        state = model.encode(SOURCES, LENGTHS)
        steps = []
        for t in range(4):
            step_logits, state = model.step(target[:, t], state)
            steps.append(step_logits)
    torch.testing.assert_close(torch.stack(steps, 1), logits, atol=1e-5, rtol=1e-5)


def sequence_logprob(model: Seq2Seq, source: torch.Tensor, length: torch.Tensor, tokens: list[int]) -> float:
    """log p(tokens | source) by one teacher-forced pass: an oracle independent of the decoders."""
    target_in = torch.tensor([[model.config.bos_id] + tokens[:-1]])
    with torch.no_grad():
        logits, _ = model(source, length, target_in)
    logp = torch.log_softmax(logits[0].double(), -1)
    return float(sum(logp[t, tok] for t, tok in enumerate(tokens)))


@pytest.mark.parametrize("attention", ["bahdanau", "none"])
def test_beam_of_width_one_is_greedy(attention: str) -> None:
    model = tiny(attention, target_vocab=7)
    greedy = model.translate(SOURCES, LENGTHS, max_length=8)
    beam = model.translate(SOURCES, LENGTHS, max_length=8, beam=1)
    assert greedy == beam


def brute_force_best(model: Seq2Seq, source: torch.Tensor, length: torch.Tensor, max_length: int,
                     length_penalty: float) -> tuple[list[int], float]:
    """Score every output of at most ``max_length`` tokens (ending at </s>, or cut at max_length)."""
    V, eos = model.config.target_vocab_size, model.config.eos_id
    best, best_score = None, -math.inf
    for n in range(1, max_length + 1):
        for seq in itertools.product(range(V), repeat=n):
            seq = list(seq)
            if eos in seq[:-1] or (n < max_length and seq[-1] != eos):
                continue  # </s> ends an output; only cut outputs may lack it
            score = sequence_logprob(model, source, length, seq) / n ** length_penalty
            if score > best_score:
                best, best_score = seq, score
    return best, best_score


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
@pytest.mark.parametrize("row", [0, 1, 2])
def test_beam_as_wide_as_the_vocabulary_finds_the_most_likely_output(length_penalty: float, row: int) -> None:
    """With width = V and 2 steps the beam keeps every 1-token prefix, so it is exhaustive: it must
    find the brute-force optimum. With width V**2 the same holds for 3 steps."""
    from rnnkit.generation import Generator

    model = tiny("bahdanau", target_vocab=4, seed=row)
    V = model.config.target_vocab_size
    src, length = SOURCES[row: row + 1], LENGTHS[row: row + 1]
    for max_length, width in ((2, V), (3, V * V)):
        expected, expected_score = brute_force_best(model, src, length, max_length, length_penalty)
        bound = model.decoder_for(src, length)
        out = Generator(bound).generate(bound.prompt(), beam=width, max_length=max_length, end_token=2,
                                        length_penalty=length_penalty)
        assert out.tokens[0] == expected
        assert out.scores[0] == pytest.approx(expected_score, abs=1e-6)
        greedy = model.translate(src, length, max_length=max_length)
        greedy_ids = greedy[0] + ([2] if len(greedy[0]) < max_length else [])
        greedy_score = sequence_logprob(model, src, length, greedy_ids) / len(greedy_ids) ** length_penalty
        assert greedy_score <= expected_score + 1e-9


def test_sampling_and_greedy_decode_through_the_generator() -> None:
    model = tiny(target_vocab=6)
    sampled = model.translate(SOURCES, LENGTHS, max_length=6, greedy=False, seed=3, temperature=0.7)
    again = model.translate(SOURCES, LENGTHS, max_length=6, greedy=False, seed=3, temperature=0.7)
    assert sampled == again and len(sampled) == 4
    assert all(2 not in row and len(row) <= 6 for row in sampled)


def test_scheduled_sampling_at_rate_zero_is_teacher_forcing_and_at_one_feeds_predictions() -> None:
    model = tiny("bahdanau", target_vocab=6).train()
    model.config.__class__  # dropout is 0: train mode changes nothing else
    target = torch.tensor([[1, 3, 4, 5], [1, 4, 3, 3], [1, 3, 3, 3], [1, 4, 4, 4]])
    with torch.no_grad():
        forced, _ = model(SOURCES, LENGTHS, target)
        rate0, _ = model(SOURCES, LENGTHS, target, sampling_rate=1e-12, generator=torch.Generator().manual_seed(0))
        free, _ = model(SOURCES, LENGTHS, target, sampling_rate=1.0, generator=torch.Generator().manual_seed(0))
        model.eval()
        greedy_in = torch.cat([target[:, :1], forced.new_zeros(4, 3, dtype=torch.int64)], 1)
        state = model.encode(SOURCES, LENGTHS)
        token, steps = target[:, 0], []
        for _ in range(4):
            logits, state = model.step(token, state)
            steps.append(logits)
            token = logits.argmax(-1)
    torch.testing.assert_close(rate0, forced, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(free, torch.stack(steps, 1), atol=1e-5, rtol=1e-5)
    assert greedy_in.shape == (4, 4)


def test_bridge_and_bidirectional_lstm_encoder_save_and_load(tmp_path) -> None:
    model = tiny("general", "lstm", enc_cell="lstm")
    assert set(model.bridge) == {"h", "c"}
    rnnkit.save(model, tmp_path / "ckpt")
    loaded = rnnkit.load(tmp_path / "ckpt")
    assert isinstance(loaded, Seq2Seq) and loaded.config == model.config
    assert loaded.eval().translate(SOURCES, LENGTHS, max_length=5) == model.translate(SOURCES, LENGTHS, max_length=5)


def test_decoder_cell_accepts_a_custom_recurrent_cell() -> None:
    class Leaky(rnnkit.Recurrent):
        states = ("h",)

        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Linear(4, 4)

        def state_shape(self, name: str) -> tuple[int, ...]:
            return (4,)

        def sequence_shape(self, name: str) -> tuple[int, ...]:
            return (4,)

        def step(self, inputs: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
            return 0.5 * h + torch.tanh(inputs + self.w(h))

    cell = AttentionDecoderCell(Leaky(), memory_size=6, attention="bahdanau", attention_size=3)
    memory = torch.randn(2, 3, 6)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    h, out, weights = cell(torch.randn(2, 5, 4), memory=memory, keys=cell.attention.keys(memory), source_mask=mask)
    assert tuple(out.shape) == (2, 5, 4) and torch.equal(weights[1, :, 1:], torch.zeros(5, 2))


def test_config_errors_name_the_argument() -> None:
    with pytest.raises(ValueError, match="attention='dot'.*decoder hidden size"):
        Seq2Seq(Seq2SeqConfig(source_vocab_size=5, target_vocab_size=5, decoder_hidden=8, attention="dot",
                              encoder=RNNConfig(hidden_size=8, bidirectional=True)))
    with pytest.raises(ValueError, match="decoder_cell"):
        Seq2SeqConfig(source_vocab_size=5, target_vocab_size=5, decoder_cell="transformer")
    model = tiny()
    with pytest.raises(ValueError, match="lengths"):
        model(SOURCES, torch.tensor([5, 0, 1, 1]), torch.tensor([[1]] * 4))
