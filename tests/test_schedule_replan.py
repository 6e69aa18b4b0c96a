"""A time-only run re-plans its schedule's length as it goes, so the decay ends when the time budget ends.

Nothing here is timed: the trainer's clock (``time.perf_counter``) is replaced by a fake one that
moves only when a training step ends, by a number of seconds that the test chooses per step. The
oracle for where the decay should end is the number of steps the run actually took; the oracle for
continuity is the learning rate the previous plan gave at each re-plan step.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
import safetensors.torch
import torch
from rnnkit.checkpoint import load_training_state
from rnnkit.training import trainer as trainer_module
from rnnkit.training.config import make_config
from rnnkit.training.schedule import LRSchedule, replan_steps
from rnnkit.training.task_text import TextTask
from rnnkit.training.trainer import Trainer

TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 8
BUDGET = 20.0  # fake seconds
SWITCH = 60  # the step after which the speed changes
SPEEDS = {"faster": (0.1, 0.05), "slower": (0.05, 0.1)}  # seconds per step before / after the switch


class StepClock:
    """A perf_counter that moves only when ``tick(step)`` says a step has ended."""

    def __init__(self, seconds: Callable[[int], float]) -> None:
        self.now = 1000.0
        self.seconds = seconds

    def __call__(self) -> float:
        return self.now

    def tick(self, step: int) -> None:
        self.now += self.seconds(step)


def _config(out: Path, **extra):
    values = dict(hidden_size=8, num_layers=1, embedding_size=4, batch_size=2, bptt=8, steps=None,
                  time_budget=BUDGET, warmup_steps=5, eval_every=20, decay="cosine", min_lr_ratio=0.05,
                  plot=False, tensorboard=False, threads=1, checkpoint_interval=0.0, out=str(out))
    values.update(extra)
    return make_config("text", overrides=values)


def _run(config, clock: StepClock, lrs: dict[int, float], stop_at: int | None = None, resume: Path | None = None):
    def callback(t: Trainer) -> None:
        lrs[t.step - 1] = t.last_lr
        clock.tick(t.step)
        if stop_at is not None and t.step == stop_at:
            t.request_stop()

    with mock.patch.object(trainer_module.time, "perf_counter", clock):
        return Trainer(config, task=TextTask(config, text=TEXT), progress=False, callback=callback).fit(resume=resume)


def _profile(kind: str) -> Callable[[int], float]:
    before, after = SPEEDS[kind]
    return lambda step: before if step <= SWITCH else after


def _weights_sha(run: Path) -> str:
    folder = run / "checkpoint"
    manifest = json.loads((folder / "manifest.json").read_text())
    tensors = safetensors.torch.load_file(folder / manifest["files"]["weights"]["name"])
    digest = hashlib.sha256()
    for name in sorted(tensors):
        digest.update(name.encode() + tensors[name].contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------- the schedule itself
def test_a_replan_maps_the_remaining_decay_onto_the_new_length_without_a_jump() -> None:
    first = LRSchedule(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, steps=110, decay_start=20)
    replanned = LRSchedule(lr=1.0, warmup_steps=10, decay="cosine", min_lr_ratio=0.1, steps=110, decay_start=20,
                           replans=((60, 210),))
    # up to the re-plan step the curve is the first plan's, to the bit
    assert [replanned.lr_at(k) for k in range(61)] == [first.lr_at(k) for k in range(61)]
    p60 = first.progress(60)
    assert replanned.progress(60) == p60 and replanned.length == 210
    # after it the rest of the decay (1 - p60) runs linearly in steps to step 210
    assert replanned.progress(135) == pytest.approx(p60 + (1 - p60) * 75 / 150)
    assert replanned.progress(210) == 1.0 and replanned.lr_at(250) == pytest.approx(0.1)
    # a plan that shrinks is just as continuous
    linear = LRSchedule(lr=1.0, warmup_steps=10, decay="linear", steps=110, decay_start=20)
    shrunk = LRSchedule(lr=1.0, warmup_steps=10, decay="linear", steps=110, decay_start=20, replans=((60, 80),))
    q60 = linear.progress(60)
    assert shrunk.lr_at(60) == linear.lr_at(60) and q60 == pytest.approx(40 / 90)
    assert shrunk.progress(70) == pytest.approx(q60 + (1 - q60) * 0.5) and shrunk.progress(80) == 1.0


def test_replan_steps_extrapolates_the_recent_speed_over_the_time_left() -> None:
    # 100 steps in the last 5 s (20 steps/s), 40 s of the 60 s budget left: 800 more steps
    assert replan_steps(time_budget=60.0, step=300, elapsed=20.0, since_step=200, since_elapsed=15.0) == 1100
    assert replan_steps(time_budget=60.0, step=300, elapsed=61.0, since_step=200, since_elapsed=15.0) == 301
    assert replan_steps(time_budget=60.0, step=300, elapsed=20.0, since_step=300, since_elapsed=20.0) == 301


# ---------------------------------------------------------------- the trainer, on a fake clock
@pytest.mark.parametrize("kind", sorted(SPEEDS))
def test_a_speed_change_mid_run_still_ends_the_decay_at_the_last_step(tmp_path: Path, kind: str) -> None:
    lrs: dict[int, float] = {}
    result = _run(_config(tmp_path), StepClock(_profile(kind)), lrs)
    summary, steps = result.summary, result.summary["steps"]
    before, after = SPEEDS[kind]
    expected = SWITCH + (BUDGET - SWITCH * before) / after  # the steps that fit in the budget
    assert result.stopped == "time_budget" and abs(steps - expected) <= 2
    plans = summary["schedule_plans"]
    first_plan = plans[0][1]
    assert abs(first_plan - steps) > 0.2 * steps  # planning once, from the first steps, would be far off
    # the decay ends within 3% of the last step: neither long at the floor nor cut off early
    assert abs(summary["schedule_steps"] - steps) <= 0.03 * steps
    floor = summary["config"]["lr"] * 0.05  # lr * min_lr_ratio
    at_floor = [k for k in range(steps) if lrs[k] <= floor * (1 + 1e-9)]
    assert not at_floor or at_floor[0] >= 0.97 * steps
    assert lrs[steps - 1] <= floor * 1.05
    # every evaluation record says the length planned at that point
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(r["schedule_steps"] for r in rows if r["step"] >= 20)


@pytest.mark.parametrize("kind", sorted(SPEEDS))
def test_the_learning_rate_is_continuous_across_replans(tmp_path: Path, kind: str) -> None:
    lrs: dict[int, float] = {}
    result = _run(_config(tmp_path), StepClock(_profile(kind)), lrs)
    plans = [tuple(p) for p in result.summary["schedule_plans"]]
    assert len(plans) >= 5 and [p[0] for p in plans] == sorted({p[0] for p in plans})
    c = result.summary["config"]
    for i, (step, _) in enumerate(plans[1:], start=1):
        earlier = LRSchedule(lr=c["lr"], warmup_steps=5, decay="cosine", min_lr_ratio=0.05, steps=plans[0][1],
                             decay_start=plans[0][0], replans=tuple(plans[1:i]))
        assert lrs[step] == earlier.lr_at(step)  # a re-plan changes nothing up to its own step
    steps = result.summary["steps"]
    jumps = [abs(lrs[k + 1] - lrs[k]) for k in range(5, steps - 1)]
    assert max(jumps) <= 0.03 * c["lr"]  # a naive re-plan (progress from scratch) jumps by ~15% of lr here


def test_a_resumed_run_follows_the_uninterrupted_runs_replanned_schedule(tmp_path: Path) -> None:
    whole_lrs: dict[int, float] = {}
    whole = _run(_config(tmp_path / "whole"), StepClock(_profile("faster")), whole_lrs)
    run, lrs, clock = tmp_path / "run", {}, StepClock(_profile("faster"))
    first = _run(_config(run), clock, lrs, stop_at=SWITCH + 10)
    assert first.stopped == "interrupted"
    saved = load_training_state(run / "checkpoint").scheduler
    assert saved["schedule_plans"] == [list(p) for p in whole.summary["schedule_plans"] if p[0] <= SWITCH + 10]
    resumed = _run(_config(run), clock, lrs, resume=run)
    assert resumed.summary["steps"] == whole.summary["steps"]
    assert resumed.summary["schedule_plans"] == whole.summary["schedule_plans"]
    assert [lrs[k] for k in sorted(lrs)] == [whole_lrs[k] for k in sorted(whole_lrs)]
    assert _weights_sha(run) == _weights_sha(tmp_path / "whole")


def test_step_budget_runs_keep_one_fixed_length(tmp_path: Path) -> None:
    lrs: dict[int, float] = {}
    result = _run(_config(tmp_path, steps=90, time_budget=None), StepClock(_profile("faster")), lrs)
    assert result.summary["schedule_steps"] == 90 and result.summary["schedule_plans"] == []
    fixed = LRSchedule(lr=result.summary["config"]["lr"], warmup_steps=5, decay="cosine", min_lr_ratio=0.05, steps=90)
    assert [lrs[k] for k in range(90)] == [fixed.lr_at(k) for k in range(90)]
    assert not math.isclose(lrs[89], lrs[10])
