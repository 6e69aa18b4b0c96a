"""The learning-rate schedule: linear warm-up, then a decay over the run's budget.

The decay follows the run's progress, the larger of ``step / steps`` and ``elapsed / time_budget``,
so a time-budgeted run reaches its final learning rate exactly when its time is up, whatever
the speed of the machine. It is a pure function of (step, elapsed seconds), both of which a
checkpoint stores, so a resumed run continues on the same curve.

Example:
    >>> s = LRSchedule(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, steps=110)
    >>> [round(s.lr_at(k), 3) for k in (0, 9, 10, 60, 110)]
    [0.1, 1.0, 1.0, 0.55, 0.1]
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rnnkit.training.config import TrainConfig

__all__ = ["LRSchedule"]


@dataclass(frozen=True)
class LRSchedule:
    """lr(step, elapsed) = lr * warm-up factor * decay factor."""

    lr: float  # the peak learning rate
    warmup_steps: int = 0  # steps of linear warm-up (step k uses (k + 1) / warmup_steps of lr)
    decay: str = "none"  # "none" | "linear" | "cosine"
    min_lr_ratio: float = 0.0  # where the decay ends, as a fraction of lr
    steps: int | None = None  # the step budget, if any
    time_budget: float | None = None  # the time budget in seconds, if any
    total_steps_hint: int | None = None  # a step count the budget implies (e.g. epochs x steps per epoch)

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int | None = None) -> LRSchedule:
        """The schedule of ``config``; ``steps_per_epoch`` turns an epoch budget into steps."""
        hint = None
        if config.epochs is not None and steps_per_epoch:
            hint = max(1, math.ceil(config.epochs * steps_per_epoch))
        return cls(lr=config.lr, warmup_steps=config.warmup_steps, decay=config.decay,
                   min_lr_ratio=config.min_lr_ratio, steps=config.steps, time_budget=config.time_budget,
                   total_steps_hint=hint)

    def progress(self, step: int, elapsed: float = 0.0) -> float:
        """How far the run is through its budget, in [0, 1] (0 when it has no budget to decay over)."""
        done = 0.0
        after_warmup = max(0, step - self.warmup_steps)
        for total in (self.steps, self.total_steps_hint):
            if total is not None and total > self.warmup_steps:
                done = max(done, after_warmup / (total - self.warmup_steps))
        if self.time_budget:
            done = max(done, elapsed / self.time_budget)
        return min(1.0, max(0.0, done))

    def factor(self, step: int, elapsed: float = 0.0) -> float:
        """The multiplier of ``lr`` for optimiser step ``step`` (0-based) taken after ``elapsed`` seconds."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "none":
            return 1.0
        p = self.progress(step, elapsed)
        low = self.min_lr_ratio
        if self.decay == "linear":
            return 1.0 - (1.0 - low) * p
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * p))

    def lr_at(self, step: int, elapsed: float = 0.0) -> float:
        """The learning rate for optimiser step ``step`` taken after ``elapsed`` seconds."""
        return self.lr * self.factor(step, elapsed)
