"""rnnkit.data.synthetic against the seed's NumPy code, loops and the published baselines."""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.synthetic import (
    ADDING_BASELINE_MSE,
    adding_problem,
    copy_baseline,
    copy_task,
    sine_cosine,
    sine_exercise,
)


def test_sine_exercise_is_seed_001_data() -> None:
    # seed 001, "Exercise: Scan Operator", with dtype = float32
    x = np.array(np.arange(0.0, 2 * np.pi, 0.2), dtype="float32")
    x = x.reshape(len(x), 1)
    s_ = np.concatenate([np.sin(x), np.cos(x)], axis=1)
    sh_ = np.roll(s_, 1, axis=0)
    S_ = np.array([s_, sh_])
    T_ = np.roll(S_, 1, axis=1)
    inputs, targets = sine_exercise()
    assert inputs.shape == (2, 32, 2) and inputs.dtype == torch.float32
    assert np.array_equal(inputs.numpy(), S_) and np.array_equal(targets.numpy(), T_)


def test_sine_cosine_regression() -> None:
    x, y = sine_cosine(8, 40, generator=1)
    assert x.shape == y.shape == (8, 40, 2) and x.dtype == torch.float32
    assert torch.allclose(x.pow(2).sum(-1), torch.ones(8, 40))  # a point on the unit circle
    assert torch.allclose(x[:, 1:], y[:, :-1], atol=1e-6)  # target = the next step
    angle = torch.atan2(x[..., 0], x[..., 1])
    step = torch.remainder(angle[:, 1:] - angle[:, :-1], 2 * math.pi)
    assert torch.allclose(step, torch.full_like(step, 0.2), atol=1e-5)
    echo_x, echo_y = sine_cosine(3, 10, shift=-1, step=0.5, generator=2)
    assert torch.allclose(echo_y[:, 1:], echo_x[:, :-1], atol=1e-6)  # the seed's roll: previous step
    assert torch.equal(sine_cosine(2, 5, generator=4)[0], sine_cosine(2, 5, generator=4)[0])
    gen = torch.Generator().manual_seed(0)
    assert not torch.equal(sine_cosine(2, 5, generator=gen)[0], sine_cosine(2, 5, generator=gen)[0])


def test_adding_problem() -> None:
    x, y = adding_problem(64, 101, generator=3)
    assert x.shape == (64, 101, 2) and y.shape == (64, 1)
    values, markers = x[..., 0].numpy(), x[..., 1].numpy()
    assert ((values >= 0) & (values < 1)).all()
    for b in range(64):
        marked = np.flatnonzero(markers[b])
        assert set(np.unique(markers[b])) == {0.0, 1.0} and len(marked) == 2
        assert marked[0] < 101 // 2 <= marked[1]
        assert math.isclose(y[b, 0].item(), values[b, marked].sum(), rel_tol=1e-6)
    _, big_y = adding_problem(200_000, 2, generator=5)
    mse_of_one = (big_y - 1).pow(2).mean().item()  # std of the estimate ~ 0.2 / sqrt(2e5) = 4.4e-4
    assert abs(mse_of_one - ADDING_BASELINE_MSE) < 2e-3 and abs(ADDING_BASELINE_MSE - 0.167) < 1e-3


def test_copy_task_layout_and_baseline() -> None:
    lag, k = 30, 10
    ids, targets = copy_task(16, lag, n_copy=k, one_hot=False, generator=0)
    assert ids.shape == targets.shape == (16, lag + 2 * k) and ids.dtype == targets.dtype == torch.int64
    data = ids[:, :k]
    assert ((data >= 1) & (data <= 8)).all()
    assert (ids[:, k : k + lag - 1] == 0).all() and (ids[:, k + lag - 1] == 9).all() and (ids[:, k + lag :] == 0).all()
    assert (targets[:, : lag + k] == 0).all() and torch.equal(targets[:, lag + k :], data)
    onehot, same = copy_task(16, lag, n_copy=k, generator=0)
    assert onehot.shape == (16, lag + 2 * k, 10) and torch.equal(onehot.argmax(-1), ids) and torch.equal(same, targets)
    # the memoryless strategy: blank for sure, then uniform over the 8 data symbols
    probs = torch.zeros(16, lag + 2 * k, 10)
    probs[:, : lag + k, 0] = 1.0
    probs[:, lag + k :, 1:9] = 1 / 8
    loss = F.nll_loss(probs.clamp_min(1e-30).log().reshape(-1, 10), targets.reshape(-1)).item()
    assert math.isclose(loss, copy_baseline(lag, n_copy=k), rel_tol=1e-5)
    assert math.isclose(copy_baseline(100), 10 * math.log(8) / 120)  # Arjovsky et al. 2016, T = 100


def test_lengths_dial_the_difficulty() -> None:
    for lag in (1, 5, 500):
        x, y = copy_task(2, lag, n_copy=3, one_hot=False, generator=lag)
        assert x.shape == (2, lag + 6) and torch.equal(y[:, -3:], x[:, :3])
    assert adding_problem(1, 2, generator=0)[0].shape == (1, 2, 2)
    assert adding_problem(1, 1000, generator=0)[0].shape == (1, 1000, 2)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sine_cosine(2, 0), "length: expected a positive int, but received 0"),
        (lambda: sine_cosine(-1, 5), "batch_size: expected a positive int, but received -1"),
        (lambda: sine_cosine(2, 5, step=0.0), "step: expected a finite non-zero angle"),
        (lambda: adding_problem(2, -5), "length: expected a positive int, but received -5"),
        (lambda: adding_problem(2, 1), r"length: expected at least 2 steps"),
        (lambda: copy_task(2, 0), "lag: expected a positive int, but received 0"),
        (lambda: copy_task(2, 5, n_copy=0), "n_copy: expected a positive int"),
        (lambda: copy_baseline(-2), "lag: expected a positive int"),
        (lambda: adding_problem(2, 5, generator="seed"), "generator: expected a torch.Generator, an int seed"),
    ],
)
def test_bad_input(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
