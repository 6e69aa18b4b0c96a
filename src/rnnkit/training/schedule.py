"""The learning-rate schedule: linear warm-up, then a decay over a length in steps.

The learning rate of optimiser step k is a pure function of k and of the schedule's plan (its
length in steps, and for a time-only run the steps where that length was re-planned), never of
wall time read at step k, so a run resumed from a checkpoint continues on the same curve. The
length comes from the run's budgets (:func:`schedule_length`):

- a step budget, an epoch budget (turned into steps), or the smaller of the two: that many steps,
  fixed once; a time budget given as well only stops the run, it never shapes the curve;
- a time budget alone: the length is the steps that fit in the budget. It is first planned from
  the throughput of the first steps (:func:`plan_steps`), at the first evaluation after
  ``max(warmup_steps, PLAN_STEPS)`` steps, and the decay starts there (until then the learning
  rate stays at its peak). Throughput drifts (a 10-minute run planned 1,168 steps that way and ran
  1,620), so the length is re-planned at every later evaluation (every ``REPLAN_STEPS`` steps
  for a run without evaluations) from the speed since the previous plan (:func:`replan_steps`).
  A re-plan never moves the curve up to its own step: the decay's progress p there is kept and
  the remaining 1 - p is spread linearly over the steps up to the new length, so the learning
  rate has no jump and the decay ends when the time runs out.

The plan (``schedule_plans``: each ``[step, length]``) is stored in the checkpoint as JSON; a
resumed run keeps it and re-plans from there (a run extended past its length continues at, or
close to, the final learning rate).

Example:
    >>> s = LRSchedule(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, steps=110)
    >>> [round(s.lr_at(k), 3) for k in (0, 9, 10, 60, 110)]
    [0.1, 1.0, 1.0, 0.55, 0.1]
    >>> plan_steps(time_budget=60.0, steps_done=100, seconds=3.0)   # 100 steps in 3 s: 2,000 fit in 60 s
    2000
    >>> r = LRSchedule(lr=1.0, decay="linear", steps=100, decay_start=0, replans=((50, 150),))
    >>> r.progress(50), r.progress(100), r.length                 # half done at 50, the other half by 150
    (0.5, 0.75, 150)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from rnnkit.training.config import TrainConfig

__all__ = ["PLAN_STEPS", "REPLAN_STEPS", "LRSchedule", "plan_point", "plan_steps", "replan_due", "replan_steps",
           "schedule_length"]

PLAN_STEPS = 20  # a time-only run measures its throughput over max(warmup_steps, PLAN_STEPS) steps
REPLAN_STEPS = 100  # a time-only run without evaluations re-plans its length this often


@dataclass(frozen=True)
class LRSchedule:
    """lr(step) = lr * warm-up factor * decay factor; the decay runs over ``steps``, then over each re-plan's length."""

    lr: float  # the peak learning rate
    warmup_steps: int = 0  # steps of linear warm-up (step k uses (k + 1) / warmup_steps of lr)
    decay: str = "none"  # "none" | "linear" | "cosine"
    min_lr_ratio: float = 0.0  # where the decay ends, as a fraction of lr
    steps: int | None = None  # the (first planned) length; None: not known yet (the decay has not started)
    decay_start: int = 0  # the decay starts at step max(warmup_steps, decay_start) (a time-only run: its plan point)
    replans: tuple[tuple[int, int], ...] = ()  # (step, length): from that step the rest of the decay ends at length

    @classmethod
    def from_config(cls, config: TrainConfig, length: int | None, decay_start: int = 0,
                    replans: tuple[tuple[int, int], ...] = ()) -> LRSchedule:
        """The schedule of ``config`` over ``length`` steps (see :func:`schedule_length`), then ``replans``."""
        return cls(lr=config.lr, warmup_steps=config.warmup_steps, decay=config.decay,
                   min_lr_ratio=config.min_lr_ratio, steps=length, decay_start=decay_start, replans=tuple(replans))

    @classmethod
    def from_plans(cls, config: TrainConfig, plans: list[list[int]] | tuple[tuple[int, int], ...]) -> LRSchedule:
        """The schedule of a time-only run from its plans (``[step, length]`` each, the first where the decay
        starts); no plans: the decay has not started."""
        if not plans:
            return cls.from_config(config, None)
        first, *rest = (tuple(int(v) for v in p) for p in plans)
        return cls.from_config(config, first[1], first[0], tuple(rest))  # type: ignore[arg-type]

    @property
    def length(self) -> int | None:
        """Where the decay ends now: the last re-plan's length, else ``steps``."""
        return self.replans[-1][1] if self.replans else self.steps

    def progress(self, step: int) -> float:
        """How far the decay is along, in [0, 1] (0 before it starts and while the length is unknown)."""
        start = max(self.warmup_steps, self.decay_start)
        if self.steps is None or step <= start:
            return 0.0
        anchor, done, end = start, 0.0, self.steps  # the current segment: from (anchor, done) to 1 at end
        for at, length in self.replans:
            if step < at:
                break
            done = _along(done, anchor, end, at)
            anchor, end = at, length
        return _along(done, anchor, end, step)

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


def _along(done: float, anchor: int, end: int, step: int) -> float:
    """The progress at ``step`` of a segment that is ``done`` along at ``anchor`` and ends (at 1) at ``end``."""
    if step <= anchor:
        return done
    if end <= anchor:
        return 1.0
    return min(1.0, done + (1.0 - done) * (step - anchor) / (end - anchor))


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


def replan_steps(time_budget: float, step: int, elapsed: float, since_step: int, since_elapsed: float) -> int:
    """The schedule's new length at ``step`` (``elapsed`` seconds into the budget): the steps left in the budget
    at the speed since the previous plan (``since_step`` at ``since_elapsed`` seconds); at least ``step + 1``."""
    steps, seconds = step - since_step, elapsed - since_elapsed
    left = time_budget - elapsed
    if steps <= 0 or seconds <= 0 or left <= 0:
        return step + 1
    return max(step + 1, step + int(left * steps / seconds))


def replan_due(config: TrainConfig, plans: list[list[int]], fixed: bool, step: int, at_evaluation: bool) -> bool:
    """Whether a run of ``config`` plans (or re-plans) its length at ``step``: a time-only run with a decay
    (``fixed``: the length came from a step or epoch budget, or from an earlier rnnkit that planned once) at
    its evaluations after :func:`plan_point`, at least ``PLAN_STEPS`` apart (every ``REPLAN_STEPS`` steps
    without evaluations)."""
    if fixed or config.decay == "none" or config.time_budget is None or step < plan_point(config):
        return False
    if bool(config.eval_every) != at_evaluation:
        return False
    if not plans:
        return True
    return step - plans[-1][0] >= (PLAN_STEPS if at_evaluation else REPLAN_STEPS)


def plan_point(config: TrainConfig) -> int:
    """The earliest step at which a time-only run fixes its schedule's length (the trainer waits for the
    next evaluation after it); its decay starts where the plan is made."""
    return max(config.warmup_steps, PLAN_STEPS)
