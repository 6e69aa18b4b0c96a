"""--device for the word LM and the sequence-to-sequence tasks (issue 14): every tensor a model is given lives on
the model's device. Checked on the CPU with the "meta" device: the model moves there, and a spy on its forward
records where its inputs are (then stops the call, as meta tensors hold no values)."""
from __future__ import annotations

import argparse
import io

import pytest
import torch

from rnnkit.training.config import make_config
from rnnkit.training.device import to_device
from rnnkit.training.task_pairs import PairTask
from rnnkit.training.task_words import WordTask

META = torch.device("meta")
WORDS = "The cat sat on the mat. The dog sat on the log. A cat and a dog ran. " * 30


class Stop(Exception):
    pass


def spy(model: torch.nn.Module, method: str = "forward") -> list[torch.device]:
    """Replace ``model.<method>`` with one that records the devices of its tensor arguments and raises Stop."""
    seen: list[torch.device] = []

    def record(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(a.device for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor))
        raise Stop

    setattr(model, method, record)
    return seen


def pair_task() -> PairTask:
    return PairTask(make_config("reverse", overrides=dict(hidden_size=8, embedding_size=4, batch_size=4, seq_len=5,
                                                          eval_size=6, steps=2)))


def test_a_pair_batch_moves_with_its_padded_pairs() -> None:
    moved = to_device(pair_task().batch(0), META)
    pairs = moved.pairs
    tensors = [pairs.source, pairs.source_lengths, pairs.target_in, pairs.target_out, pairs.target_lengths]
    assert moved.inputs.device == moved.mask.device == META and all(t.device == META for t in tensors)


def test_the_pair_loss_and_evaluation_feed_the_model_on_its_device() -> None:
    task = pair_task()
    model = task.build_model().to(META)
    seen = spy(model)
    with pytest.raises(Stop):
        task.loss(model, to_device(task.batch(0), META))  # the Trainer moves the batch; the loss reads its pairs
    with pytest.raises(Stop):
        task.evaluate(model)
    assert seen and set(seen) == {META}


def test_the_word_evaluation_feeds_the_model_on_its_device() -> None:
    task = WordTask(make_config("words", overrides=dict(hidden_size=8, embedding_size=4, batch_size=2, bptt=8,
                                                        steps=2, vocab_size=20)), text=WORDS)
    model = task.build_model().to(META)
    seen = spy(model)
    with pytest.raises(Stop):
        task.evaluate(model)
    assert seen and set(seen) == {META}


def test_rnnkit_sample_translates_on_the_model_device() -> None:
    from rnnkit.cli.sample_tokens import run_tokens

    task = pair_task()
    model = task.build_model().to(META)
    seen = spy(model, "translate")
    ckpt = argparse.Namespace(model=model, vocab=task.vocab_json())
    args = argparse.Namespace(beam=None, greedy=False, prompt="abc", length=None, length_penalty=1.0, seed=0,
                              min_length=0, checkpoint="run", num=None)
    with pytest.raises(Stop):
        run_tokens(args, ckpt, "pairs", io.StringIO())
    assert seen and set(seen) == {META}
