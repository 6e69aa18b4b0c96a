"""Tasks: data streams that depend only on (seed, rank, step), and metrics checked against brute force."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data import reber
from rnnkit.models import LanguageModel, LanguageModelConfig, RNNConfig
from rnnkit.training.config import make_config
from rnnkit.training.task_reber import ReberTask, reber_metrics
from rnnkit.training.task_synthetic import AddingTask, CopyTask, SineTask
from rnnkit.training.task_text import TextTask, stream_loss
from rnnkit.training.tasks import make_task

TEXT = "The quick brown fox jumps over the lazy dog; pack my box with five dozen liquor jugs. " * 12


def _brute_force(logits: torch.Tensor, words: list[str], embedded: bool) -> dict[str, float]:
    steps = exact = long_ok = 0
    for b, word in enumerate(words):
        for t in range(len(word) - 1):
            predicted = {reber.SYMBOLS[i] for i in range(7) if torch.sigmoid(logits[b, t, i]) > 0.5}
            ok = predicted == set(reber.allowed_next(word[: t + 1], embedded))
            steps += 1
            exact += ok
            if t == len(word) - 3:
                long_ok += predicted == {word[1]}
    out = {"next_symbol_set_accuracy": exact / steps}
    if embedded:
        out["long_range_accuracy"] = long_ok / len(words)
    return out


@pytest.mark.parametrize("embedded", [False, True])
def test_reber_metrics_match_brute_force(embedded: bool) -> None:
    words = reber.dataset(40, seed=5, embedded=embedded)
    batch = reber.encode(words, embedded)
    # near-perfect logits with some steps flipped, so the metrics are strictly between 0 and 1
    logits = (batch.targets * 2 - 1) * 3 + torch.randn(batch.targets.shape) * 2.5
    got = reber_metrics(logits, batch, embedded)
    want = _brute_force(logits, words, embedded)
    assert got.keys() == want.keys()
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-6)
        assert 0 < got[key] < 1


def test_long_range_accuracy_is_the_strict_set_definition() -> None:
    words = reber.dataset(20, seed=1, embedded=True)
    batch = reber.encode(words, embedded=True)
    perfect = (batch.targets * 2 - 1) * 10
    assert reber_metrics(perfect, batch, True) == {"next_symbol_set_accuracy": 1.0, "long_range_accuracy": 1.0}
    both = perfect.clone()
    rows = torch.arange(len(words))
    both[rows, batch.lengths - 2, reber.SYMBOLS.index("T")] = 10.0  # T and P both above 0.5: not a correct answer
    both[rows, batch.lengths - 2, reber.SYMBOLS.index("P")] = 10.0
    assert reber_metrics(both, batch, True)["long_range_accuracy"] == 0.0


def _inputs(batch) -> list[str]:
    return ["".join(reber.SYMBOLS[i] for i in row[: int(n)]) for row, n in zip(batch.inputs, batch.mask.sum(1))]


def test_reber_batches_depend_only_on_seed_rank_and_step() -> None:
    config = make_config("embedded-reber", overrides={"eval_size": 10})
    a, b = ReberTask(config), ReberTask(config)
    assert _inputs(a.batch(7)) == _inputs(b.batch(7))
    assert _inputs(a.batch(7)) != _inputs(a.batch(8))
    assert _inputs(a.batch(3)) != _inputs(ReberTask(config, rank=1, world_size=2).batch(3))
    assert _inputs(a.batch(3)) != _inputs(ReberTask(make_config("embedded-reber", overrides={"seed": 1})).batch(3))
    batch = a.batch(0)
    assert all(reber.in_grammar(w + "E", embedded=True) for w in _inputs(batch))
    assert batch.sequences == config.batch_size == 8 and batch.tokens == int(batch.mask.sum())


def test_held_out_words_do_not_depend_on_the_run_seed() -> None:
    one = ReberTask(make_config("reber", overrides={"seed": 1, "eval_size": 30})).held_out
    two = ReberTask(make_config("reber", overrides={"seed": 2, "eval_size": 30})).held_out
    assert one.words == two.words


def _lm() -> LanguageModel:
    torch.manual_seed(0)
    return LanguageModel(LanguageModelConfig(vocab_size=40, embedding_size=8, rnn=RNNConfig(hidden_size=12,
                                                                                           num_layers=2)))


def test_stream_loss_equals_one_forward_over_the_whole_text() -> None:
    lm = _lm().eval()
    ids = torch.randint(0, 40, (301,))
    with torch.no_grad():
        logits, _ = lm(ids[:-1].unsqueeze(0))  # (1, 300, V): one pass, state carried step by step
    want = F.cross_entropy(logits[0], ids[1:]).item()
    assert stream_loss(lm, ids, chunk=37) == pytest.approx(want, rel=1e-5)


def test_stream_loss_with_several_streams_scores_every_character_once() -> None:
    lm = _lm().eval()
    ids = torch.randint(0, 40, (302,))  # 301 predictions: 3 rows of 100 and a tail of 1
    total = 0.0
    with torch.no_grad():
        for k in range(3):  # the oracle: each row alone from a zero state; the tail continues row 3
            row = ids[100 * k: 100 * k + 101]
            logits, state = lm(row[:-1].unsqueeze(0))
            total += F.cross_entropy(logits[0], row[1:], reduction="sum").item()
        logits, _ = lm(ids[300:301].unsqueeze(0), state)
        total += F.cross_entropy(logits[0], ids[301:302], reduction="sum").item()
    assert stream_loss(lm, ids, chunk=32, streams=3) == pytest.approx(total / 301, rel=1e-5)


def test_text_task_split_streams_and_carry() -> None:
    config = make_config("text", overrides={"batch_size": 3, "bptt": 10})
    task = TextTask(config, text=TEXT)
    n = len(TEXT)
    assert len(task.val_ids) == n - int(n * 0.9)  # the last 10%, as in char-rnn and nanoGPT
    assert task.vocab.decode(task.val_ids) == TEXT[int(n * 0.9):]
    per_epoch = task.steps_per_epoch()
    x0, y0 = task.batch(0).inputs, task.batch(0).targets
    assert torch.equal(x0[:, 1:], y0[:, :-1])
    assert not task.batch(0).carry_state and task.batch(1).carry_state
    # a new epoch restarts every stream from zero: the text does not continue across the wrap
    assert torch.equal(task.batch(per_epoch).inputs, x0) and not task.batch(per_epoch).carry_state
    assert torch.equal(task.batch(1).inputs[:, 0], y0[:, -1])  # row b of chunk 1 continues row b of chunk 0


def test_text_state_resets_are_seeded_rare_and_zero_the_chosen_streams() -> None:
    """state_reset: each stream's carried state restarts from zero with that chance per chunk."""
    config = make_config("text", overrides={"batch_size": 64, "bptt": 4, "state_reset": 0.05, "seed": 3})
    task = TextTask(config, text=TEXT * 4)
    keeps = torch.stack([task.batch(s).keep_state for s in range(1, 201) if task.batch(s).keep_state is not None])
    share = 1.0 - float(keeps.mean())
    assert 0.03 < share < 0.07  # ~5% of 64 x 200 stream-chunks (binomial sd 0.0019)
    assert torch.equal(task.batch(7).keep_state, TextTask(config, text=TEXT * 4).batch(7).keep_state)  # seeded
    assert task.batch(0).keep_state is None  # the first chunk starts from zero anyway
    assert make_config("text").state_reset == 0.05 and make_config("sine").state_reset == 0.0
    off = TextTask(make_config("text", overrides={"batch_size": 64, "bptt": 4, "state_reset": 0.0}), text=TEXT * 4)
    assert off.batch(5).keep_state is None

    model = task.build_model()
    batch = task.batch(next(s for s in range(1, 200) if float(task.batch(s).keep_state.min()) == 0.0))
    zero_rows = batch.keep_state == 0
    state = tuple(torch.randn(2, 64, config.hidden_size) for _ in range(2))
    _, new = task.loss(model.eval(), batch, state)
    fresh = model(batch.inputs)[1]
    for got, want in zip(new, fresh):  # a reset stream continues exactly as one started from zero
        torch.testing.assert_close(got[:, zero_rows], want[:, zero_rows], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(got[:, ~zero_rows], want[:, ~zero_rows], atol=1e-3)


def test_the_text_lstm_starts_from_torch_nn_initialisation() -> None:
    """The character model's LSTM starts as torch.nn.LSTM does: every weight and bias U(-1/sqrt(H), 1/sqrt(H)),
    not rnnkit's orthogonal recurrent blocks with forget bias 1 (which trained slower per step on Tiny Shakespeare)."""
    config = make_config("text", overrides={"hidden_size": 64, "num_layers": 2, "batch_size": 2, "bptt": 8})
    model = TextTask(config, text=TEXT).build_model()
    ref = torch.nn.LSTM(config.embedding_size, 64, num_layers=2, batch_first=True)  # the oracle: torch's own
    ours = model.rnn.state_dict()
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.state_dict().items()}
    bound = 1.0 / math.sqrt(64)
    for name, want in ref.state_dict().items():
        got = ours[name]
        assert float(got.abs().max()) <= bound, name  # orthogonal blocks and a forget bias of 1 exceed it
        assert float(got.std()) == pytest.approx(float(want.std()), rel=0.15), name  # a zero bias fails here
        assert abs(float(got.mean())) < 0.02, name  # U(-b, b): mean 0 (forget bias 1: 0.25 over the 4 gates)


def test_text_shards_are_disjoint_and_contiguous() -> None:
    config = make_config("text", overrides={"batch_size": 2, "bptt": 8})
    whole = TextTask(config, text=TEXT).train_ids
    shards = [TextTask(config, r, 2, text=TEXT).train_ids for r in range(2)]
    assert torch.equal(torch.cat(shards), whole[: 2 * (len(whole) // 2)])


def test_text_baseline_is_the_unigram_entropy() -> None:
    task = TextTask(make_config("text"), text=TEXT)
    counts = torch.bincount(task.train_ids, minlength=len(task.vocab)).double() + 1
    p = counts / counts.sum()
    want = -sum(math.log(p[i]) for i in task.val_ids[1:].tolist()) / (len(task.val_ids) - 1)
    assert task.baseline()["unigram_val_loss"] == pytest.approx(want)


def test_copy_metrics_and_baseline() -> None:
    task = CopyTask(make_config("copy", overrides={"seq_len": 6, "eval_size": 16}))
    _, y = task.held_out
    model = task.build_model()

    class Oracle(torch.nn.Module):  # answers the targets with huge confidence
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
            return F.one_hot(y, 9).float() * 50, None

        def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            return model.loss(logits, targets)

    metrics = task.evaluate(Oracle())
    assert metrics["recall_accuracy"] == 1.0 and metrics["val_loss"] < 1e-6 and task.solved(metrics)
    assert task.baseline()["baseline_loss"] == pytest.approx(10 * math.log(8) / (6 + 20))


def test_adding_and_sine_tasks() -> None:
    adding = AddingTask(make_config("adding", overrides={"seq_len": 20, "eval_size": 8}))
    x, y = adding.held_out
    assert x.shape == (8, 20, 2) and torch.allclose((x[..., 0] * x[..., 1]).sum(1, keepdim=True), y)
    assert adding.solved({"val_mse": 0.005}) and not adding.solved({"val_mse": 0.1})
    sine = SineTask(make_config("sine", overrides={"seq_len": 10, "eval_size": 4}))
    assert set(sine.evaluate(sine.build_model())) == {"val_mse"}
    assert make_task(make_config("sine")).name == "sine"
