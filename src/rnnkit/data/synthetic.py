"""Synthetic sequence tasks whose long-range difficulty is set by one length argument.

- ``sine_cosine``: regression on a rotating point (sin, cos), the exercise of seed 001.
- ``adding_problem``: add the two marked numbers of a long sequence (Hochreiter & Schmidhuber
  1997, in the form of Le et al. 2015 and Arjovsky et al. 2016).
- ``copy_task``: recall K symbols after a lag of L blanks (Arjovsky et al. 2016).

Every function returns batch-first tensors and takes ``generator``: a ``torch.Generator`` (its
state advances, so successive calls give fresh data), an int seed (same seed, same data), or
None (torch's global generator).

Example:
    >>> x, y = adding_problem(4, length=50, generator=0)
    >>> x.shape, y.shape
    (torch.Size([4, 50, 2]), torch.Size([4, 1]))
"""
from __future__ import annotations

import math

import numpy as np
import torch

from rnnkit.errors import bad_argument

__all__ = [
    "ADDING_BASELINE_MSE",
    "adding_problem",
    "copy_baseline",
    "copy_task",
    "sine_cosine",
    "sine_exercise",
]

ADDING_BASELINE_MSE = 1.0 / 6.0  # MSE of always answering 1: Var(U1 + U2) for U ~ U[0, 1]


def sine_cosine(batch_size: int, length: int, *, step: float = 0.2, shift: int = 1,
                generator: torch.Generator | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A point rotating by ``step`` radians per time step, from a random phase per sequence.

    inputs ``(B, T, 2)`` = (sin θ_t, cos θ_t) with θ_t = φ + t·step; targets ``(B, T, 2)`` are
    the same point ``shift`` steps later (1: predict the next step; -1: echo the previous one,
    which is what seed 001's ``np.roll`` targets ask for). Float32.

    Example:
        >>> x, y = sine_cosine(2, 5, generator=0)
        >>> torch.allclose(x[:, 1:], y[:, :-1])
        True
    """
    _check_positive("batch_size", batch_size)
    _check_positive("length", length)
    if isinstance(shift, bool) or not isinstance(shift, int):
        raise bad_argument("shift", "an int number of steps", shift, "use 1 for next-step prediction")
    if not isinstance(step, (int, float)) or isinstance(step, bool) or not math.isfinite(step) or step == 0:
        raise bad_argument("step", "a finite non-zero angle in radians", step, "use e.g. 0.2 as in seed 001")
    gen = _generator(generator)
    phase = torch.rand(batch_size, 1, generator=gen, dtype=torch.float64) * (2 * math.pi)  # (B, 1)
    theta = phase + step * torch.arange(length, dtype=torch.float64)  # (B, T)
    ahead = theta + step * shift  # (B, T)
    inputs = torch.stack([theta.sin(), theta.cos()], dim=-1).float()  # (B, T, 2)
    targets = torch.stack([ahead.sin(), ahead.cos()], dim=-1).float()  # (B, T, 2)
    return inputs, targets


def sine_exercise() -> tuple[torch.Tensor, torch.Tensor]:
    """Seed 001's exercise data exactly: ``S_`` ``(2, 32, 2)`` and ``T_ = np.roll(S_, 1, axis=1)``.

    The two sequences are (sin, cos) of ``arange(0, 2π, 0.2)`` and the same rolled by one step;
    the target at step t is the input at step t-1 (cyclically). Float32.
    """
    x = np.arange(0.0, 2 * np.pi, 0.2).astype(np.float32).reshape(-1, 1)  # (32, 1), as the seed casts
    s = np.concatenate([np.sin(x), np.cos(x)], axis=1)  # (T, 2)
    both = np.stack([s, np.roll(s, 1, axis=0)])  # (2, T, 2)
    return torch.from_numpy(both.copy()), torch.from_numpy(np.roll(both, 1, axis=1).copy())  # (B, T, 2) x2


def adding_problem(batch_size: int, length: int, *,
                   generator: torch.Generator | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The adding problem: inputs ``(B, T, 2)``, targets ``(B, 1)``, float32.

    Channel 0 holds numbers drawn from U[0, 1); channel 1 marks exactly two steps with 1, one
    uniformly in the first half (``t < T // 2``) and one in the second half. The target is the
    sum of the two marked numbers. Answering 1 whatever the input scores ``ADDING_BASELINE_MSE``
    (1/6 ≈ 0.167); a model that solves the task goes well below it. Needs ``length >= 2``.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("length", length)
    if length < 2:
        raise bad_argument("length", "at least 2 steps (one marker per half)", length, "use length >= 2")
    gen = _generator(generator)
    values = torch.rand(batch_size, length, generator=gen)  # (B, T)
    half = length // 2
    first = torch.randint(0, half, (batch_size,), generator=gen)  # (B,)
    second = torch.randint(half, length, (batch_size,), generator=gen)  # (B,)
    markers = torch.zeros(batch_size, length)  # (B, T)
    rows = torch.arange(batch_size)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    targets = (values[rows, first] + values[rows, second]).unsqueeze(1)  # (B, 1)
    return torch.stack([values, markers], dim=-1), targets  # (B, T, 2), (B, 1)


def copy_task(batch_size: int, lag: int, *, n_copy: int = 10, n_symbols: int = 8, one_hot: bool = True,
              generator: torch.Generator | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The copy (delayed recall) task; sequences have ``T = lag + 2 * n_copy`` steps.

    Ids: 0 blank, 1..n_symbols data, ``n_symbols + 1`` delimiter. The input is ``n_copy`` random
    data symbols, ``lag - 1`` blanks, the delimiter, then ``n_copy`` blanks; the target is blank
    for ``lag + n_copy`` steps, then the ``n_copy`` data symbols. Inputs are one-hot float32
    ``(B, T, n_symbols + 2)`` (or int64 ids ``(B, T)`` with ``one_hot=False``); targets are int64
    ids ``(B, T)`` for cross-entropy. Predicting blanks then uniform guesses, without memory,
    scores the baseline cross-entropy ``copy_baseline(lag) = n_copy·log(n_symbols)/(lag + 2·n_copy)``.

    Example:
        >>> x, y = copy_task(1, lag=3, n_copy=2, one_hot=False, generator=0)
        >>> x[0, :2].tolist() == y[0, -2:].tolist(), x[0, 2:].tolist(), y[0, :5].tolist()
        (True, [0, 0, 9, 0, 0], [0, 0, 0, 0, 0])
    """
    _check_positive("batch_size", batch_size)
    _check_positive("lag", lag)
    _check_positive("n_copy", n_copy)
    _check_positive("n_symbols", n_symbols)
    gen = _generator(generator)
    total = lag + 2 * n_copy
    data = torch.randint(1, n_symbols + 1, (batch_size, n_copy), generator=gen)  # (B, K)
    inputs = torch.zeros(batch_size, total, dtype=torch.int64)  # (B, T)
    inputs[:, :n_copy] = data
    inputs[:, n_copy + lag - 1] = n_symbols + 1
    targets = torch.zeros(batch_size, total, dtype=torch.int64)  # (B, T)
    targets[:, lag + n_copy:] = data
    if one_hot:
        inputs = torch.nn.functional.one_hot(inputs, n_symbols + 2).float()  # (B, T, n_symbols + 2)
    return inputs, targets


def copy_baseline(lag: int, n_copy: int = 10, n_symbols: int = 8) -> float:
    """Mean cross-entropy per step (nats) of the memoryless strategy on ``copy_task``.

    Example:
        >>> round(copy_baseline(100), 4)  # Arjovsky et al.: 10 log 8 / (T + 20)
        0.1733
    """
    _check_positive("lag", lag)
    _check_positive("n_copy", n_copy)
    _check_positive("n_symbols", n_symbols)
    return n_copy * math.log(n_symbols) / (lag + 2 * n_copy)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise bad_argument(name, "a positive int", value, f"use {name} >= 1")


def _generator(generator: torch.Generator | int | None) -> torch.Generator | None:
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, bool) or not isinstance(generator, int):
        raise bad_argument("generator", "a torch.Generator, an int seed or None", generator,
                           "pass e.g. generator=0 or torch.Generator().manual_seed(0)")
    return torch.Generator().manual_seed(generator)
