"""The learning-rate schedule: linear warm-up, then a decay over a length in steps fixed once per run.

The learning rate of optimiser step k is a pure function of k and of the schedule's length
(``steps``), never of wall time, so two runs with the same flags follow the same curve on any
machine, however busy. The length is fixed once, when the run starts (:func:`schedule_length`):

- a step budget, an epoch budget (turned into steps), or the smaller of the two: that many steps;
  a time budget given as well only stops the run, it never shapes the curve;
- a time budget alone: the length is planned from the throughput measured over the first steps
  (:func:`plan_steps`), the steps that fit in the budget at that speed. The plan is made at the
  first evaluation after ``max(warmup_steps, PLAN_STEPS)`` steps (so the time measured includes an
  evaluation and a checkpoint, in their usual proportion) and the decay starts there: until then
  the learning rate stays at its peak, so the plan changes nothing that came before it.

The length is stored in the checkpoint; a resumed run keeps it, so it continues on the same curve
(and a run extended past its length continues at the final learning rate).

Example:
    >>> s = LRSchedule(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, steps=110)
    >>> [round(s.lr_at(k), 3) for k in (0, 9, 10, 60, 110)]
    [0.1, 1.0, 1.0, 0.55, 0.1]
    >>> plan_steps(time_budget=60.0, steps_done=100, seconds=3.0)   # 100 steps in 3 s: 2,000 fit in 60 s
    2000
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rnnkit.training.config import TrainConfig

__all__ = ["PLAN_STEPS", "LRSchedule", "plan_point", "plan_steps", "schedule_length"]

PLAN_STEPS = 20  # a time-only run measures its throughput over max(warmup_steps, PLAN_STEPS) steps


@dataclass(frozen=True)
class LRSchedule:
    """lr(step) = lr * warm-up factor * decay factor; ``steps`` is the length the decay runs over."""

    lr: float  # the peak learning rate
    warmup_steps: int = 0  # steps of linear warm-up (step k uses (k + 1) / warmup_steps of lr)
    decay: str = "none"  # "none" | "linear" | "cosine"
    min_lr_ratio: float = 0.0  # where the decay ends, as a fraction of lr
    steps: int | None = None  # the schedule's length; None: not known yet (the decay has not started)
    decay_start: int = 0  # the decay starts at step max(warmup_steps, decay_start) (a time-only run: its plan point)

    @classmethod
    def from_config(cls, config: TrainConfig, length: int | None, decay_start: int = 0) -> LRSchedule:
        """The schedule of ``config`` over ``length`` steps (see :func:`schedule_length`)."""
        return cls(lr=config.lr, warmup_steps=config.warmup_steps, decay=config.decay,
                   min_lr_ratio=config.min_lr_ratio, steps=length, decay_start=decay_start)

    def progress(self, step: int) -> float:
        """How far the decay is along, in [0, 1] (0 before it starts and while the length is unknown)."""
        start = max(self.warmup_steps, self.decay_start)
        if self.steps is None or step <= start:
            return 0.0
        if self.steps <= start:
            return 1.0
        return min(1.0, (step - start) / (self.steps - start))

    def factor(self, step: int) -> float:
        """The multiplier of ``lr`` for optimiser step ``step`` (0-based)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.decay == "none":
            return 1.0
        p = self.progress(step)
        low = self.min_lr_ratio
        if self.decay == "linear":
            return 1.0 - (1.0 - low) * p
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * p))

    def lr_at(self, step: int) -> float:
        """The learning rate for optimiser step ``step``."""
        return self.lr * self.factor(step)


def schedule_length(config: TrainConfig, steps_per_epoch: int | None) -> int | None:
    """The schedule's length from the step and epoch budgets (the smaller); None for a time-only run."""
    lengths = []
    if config.steps is not None:
        lengths.append(config.steps)
    if config.epochs is not None and steps_per_epoch:
        lengths.append(max(1, math.ceil(config.epochs * steps_per_epoch)))
    return min(lengths) if lengths else None


def plan_steps(time_budget: float, steps_done: int, seconds: float) -> int:
    """The steps that fit in ``time_budget`` seconds at the speed of ``steps_done`` steps in ``seconds``."""
    if steps_done <= 0 or seconds <= 0:
        return max(1, steps_done)
    return max(steps_done, int(time_budget * steps_done / seconds))


def plan_point(config: TrainConfig) -> int:
    """The earliest step at which a time-only run fixes its schedule's length (the trainer waits for the
    next evaluation after it); its decay starts where the plan is made."""
    return max(config.warmup_steps, PLAN_STEPS)
