"""What every task is: the ``Task`` base class, the ``Batch`` of one step, and their helpers.

A task gives the ``Trainer`` five things: the model (from ``rnnkit.models``), the training
batch of each step, the loss, the evaluation on held-out data, and whether that evaluation
counts as solved. The batch of step k is a pure function of ``(seed, rank, k)`` (fresh data
is drawn from a generator seeded by a hash of the three), so a resumed run, or rank r of a
distributed run, needs nothing but the step number to continue the exact data stream. The
held-out set is drawn once from ``EVAL_SEED``, the same for every run and every ``--seed``.

The task modules (``task_reber``, ``task_text``, ...) build on this module; ``rnnkit.training.tasks``
sits above them all and picks one by name (``make_task``).

Example:
    >>> step_seed("reber", 0, 0, 7) == step_seed("reber", 0, 0, 7) != step_seed("reber", 0, 0, 8)
    True
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.training.config import TrainConfig

__all__ = ["EVAL_SEED", "SOLVED", "Batch", "Task", "model_device", "step_seed", "unwrap"]

EVAL_SEED = 20_250_001  # the held-out data of every task comes from this seed, whatever the run's seed
SOLVED = 0.99  # an accuracy at or above this on the held-out set counts as solved


@dataclass(frozen=True)
class Batch:
    """One training step's data."""

    inputs: Tensor  # what the model reads: token ids (B, T) or features (B, T, F)
    targets: Tensor  # what the loss compares with
    mask: Tensor | None  # (B, T) bool, True at real steps; None when every step is real
    sequences: int  # sequences in the batch (words, streams, examples)
    tokens: int  # real time steps in the batch
    carry_state: bool = False  # text: continue the recurrent state of the previous step (stateful TBPTT)
    keep_state: Tensor | None = None  # text: (B,) float, 0 where a stream's carried state restarts from zero


def step_seed(*parts: object) -> int:
    """A 63-bit seed that depends on every part (e.g. ``("reber", seed, rank, step)``), stable across runs."""
    digest = hashlib.blake2b(repr(parts).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters (the CPU for a model without any): where its inputs must go."""
    parameter = next(unwrap(model).parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


class Task:
    """The base class of tasks; see the module docstring for the contract."""

    name: str = ""
    headline: str = ""  # the metric shown in the progress bar and used by ``patience``
    higher_is_better: bool = True
    final_differs: bool = False  # True when evaluate(final=True) scores differently (text: one stream)

    def __init__(self, config: TrainConfig, rank: int = 0, world_size: int = 1) -> None:
        self.config = config
        self.rank = rank
        self.world_size = world_size

    # ------------------------------------------------------------------ to override
    def build_model(self) -> nn.Module:
        """A fresh model (the caller seeds torch first)."""
        raise NotImplementedError

    def batch(self, step: int) -> Batch:
        """The training batch of optimiser step ``step`` (0-based) on this rank."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, final: bool = False) -> dict[str, float]:
        """Metrics on the held-out data; ``final`` is True for the last evaluation of a run."""
        raise NotImplementedError

    # ------------------------------------------------------------------ defaults
    def loss(self, model: nn.Module, batch: Batch, state: Any = None) -> tuple[Tensor, Any]:
        """The training loss of ``batch`` and the state to carry to the next step (None: no carry)."""
        output = model(batch.inputs)
        if isinstance(output, tuple):
            output = output[0]
        return unwrap(model).loss(output, batch.targets, batch.mask), None

    def solved(self, metrics: dict[str, float]) -> bool | None:
        """Whether ``metrics`` count as solving the task; None when the task has no such notion."""
        return None

    def steps_per_epoch(self) -> int | None:
        """Optimiser steps per pass over the training data; None for tasks that draw fresh data."""
        return None

    def vocab_json(self) -> dict | None:
        """The vocabulary to store with the checkpoint (JSON-able), if the task has one."""
        return None

    def baseline(self) -> dict[str, float]:
        """Reference scores of a trivial strategy, to read the metrics against (may be empty)."""
        return {}

    def describe(self) -> str:
        """One line about the data, for the summary."""
        return self.name

    def better(self, new: float, old: float | None) -> bool:
        """Whether the headline value ``new`` improves on ``old``."""
        if old is None:
            return True
        return new > old if self.higher_is_better else new < old
