"""TrainConfig, make_config, recipes, parse_duration and the learning-rate schedule."""
from __future__ import annotations

import dataclasses
import math

import pytest

from rnnkit.training.budget import budget_row
from rnnkit.training.config import RECIPES, TASK_DEFAULTS, TASKS, TrainConfig, make_config, parse_duration
from rnnkit.training.schedule import PLAN_STEPS, LRSchedule, plan_point, plan_steps, schedule_length


def test_main_job_defaults_are_the_issue_setup() -> None:
    c = make_config()
    # lr 3e-2 since issue 12: "solved" includes sampling grammatical words, reached in ~40% of the words of 1e-2;
    # batch 8 since stop 17: about half the words of batch 16 (median 7,120 vs 13,600 over seeds 1-10)
    assert (c.task, c.cell, c.hidden_size, c.optimizer, c.lr, c.batch_size) == ("embedded-reber", "lstm", 64, "adam",
                                                                                0.03, 8)
    assert c.stop_when_solved and c.eval_every == 10 and c.eval_size == 1000


@pytest.mark.parametrize("task", TASKS)
def test_every_task_has_a_valid_default_config(task: str) -> None:
    c = make_config(task)
    expected = dict(TASK_DEFAULTS[task])
    if c.sized_for_budget is not None:  # the text task's default 5 minutes take their row of the budget table
        expected.update(budget_row(c.sized_for_budget).values)
    for key, value in expected.items():
        assert getattr(c, key) == value
    assert c.run_dir == f"runs/{task}"


def test_layers_apply_in_order_task_recipe_overrides() -> None:
    c = make_config("embedded-reber", "seed001", {"hidden_size": 12})
    assert (c.optimizer, c.lr, c.batch_size, c.learn_initial_state) == ("sgd", 0.2, 1, True)
    assert c.hidden_size == 12  # the override beats the recipe's 10
    assert make_config("embedded-reber", "seed001").hidden_size == RECIPES["seed001"]["hidden_size"] == 10


def test_unknown_field_is_named_not_swallowed() -> None:
    with pytest.raises(ValueError, match=r"overrides: expected TrainConfig field names.*but received hiden_size"):
        make_config("reber", overrides={"hiden_size": 3})


def test_seed001_recipe_is_for_reber_only() -> None:
    with pytest.raises(ValueError, match=r"recipe: expected a recipe for task 'text'.*seed001"):
        make_config("text", "seed001")


@pytest.mark.parametrize("field,value,pattern", [
    ("task", "tetris", r"task: expected one of embedded-reber"),
    ("cell", "rnn", r"cell: expected one of elman, lstm, gru"),
    ("hidden_size", -4, r"hidden_size: expected an int >= 1, but received -4"),
    ("lr", 0.0, r"lr: expected a finite number > 0"),
    ("dropout", 1.0, r"dropout: expected a number in \[0, 1\)"),
    ("decay", "step", r"decay: expected one of none, linear, cosine"),
    ("time_budget", -1.0, r"time_budget: expected a finite number > 0"),
    ("eval_every", 1.5, r"eval_every: expected an int >= 0"),
])
def test_bad_values_raise_naming_the_field(field: str, value: object, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        TrainConfig(**{field: value})


def test_bidirectional_only_where_the_task_allows_it() -> None:
    with pytest.raises(ValueError, match=r"bidirectional: expected False for task 'embedded-reber'"):
        TrainConfig(bidirectional=True)
    assert make_config("copy", overrides={"bidirectional": True}).bidirectional


def test_a_budget_is_required_and_epochs_need_text() -> None:
    with pytest.raises(ValueError, match=r"steps/epochs/time_budget: expected at least one budget"):
        TrainConfig(steps=None)
    with pytest.raises(ValueError, match=r"epochs: expected None for task 'reber'"):
        TrainConfig(task="reber", epochs=1.0)
    with pytest.raises(ValueError, match=r"data: expected None for task 'sine'"):
        TrainConfig(task="sine", data="x.txt")


def test_precision_auto_is_bf16_only_on_cpus_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnkit.training import config as config_module

    assert make_config("text").precision == "auto" and make_config("reber").precision_for == "fp32"
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(config_module, "native_bf16", lambda native=native: native)
        assert make_config("text").precision_for == expected
    assert make_config("text", overrides={"precision": "fp32"}).precision_for == "fp32"
    with pytest.raises(ValueError, match="precision"):
        make_config("text", overrides={"precision": "fp16"})


def test_threads_default_one_for_small_tasks() -> None:
    assert make_config("embedded-reber").threads_for == 1
    assert make_config("reber", overrides={"threads": 3}).threads_for == 3


@pytest.mark.parametrize("text,seconds", [
    ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0), ("1.5h", 5400.0), ("45", 45.0), ("2.5", 2.5),
    (" 1m 30s ", 90.0), ("1d", 86400.0), ("0.5m", 30.0), (12, 12.0),
])
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "-5", "0", "0s", "1m1m", "inf", "nan", "h", "5m-3s"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match=r"time_budget: expected a positive duration such as 90s, 10m"):
        parse_duration(text)


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 1.0  # type: ignore[misc]


def _cosine(p: float, low: float) -> float:
    return low + (1 - low) * 0.5 * (1 + math.cos(math.pi * p))


def test_schedule_warmup_then_cosine_over_steps() -> None:
    s = LRSchedule(lr=2.0, warmup_steps=4, decay="cosine", min_lr_ratio=0.1, steps=104)
    assert [s.lr_at(k) for k in range(4)] == [0.5, 1.0, 1.5, 2.0]
    for k in (4, 30, 54, 90, 104, 200):
        p = min(1.0, (k - 4) / 100)
        assert s.lr_at(k) == pytest.approx(2.0 * _cosine(p, 0.1), rel=1e-12)


def test_schedule_linear_and_none() -> None:
    s = LRSchedule(lr=1.0, decay="linear", min_lr_ratio=0.0, steps=10)
    assert [round(s.lr_at(k), 12) for k in (0, 5, 10)] == [1.0, 0.5, 0.0]
    assert LRSchedule(lr=0.3, steps=10).lr_at(9) == 0.3


def test_schedule_is_a_function_of_the_step_alone() -> None:
    """The time budget never shapes the curve: a config's budgets give the length in steps, once."""
    steps_and_time = make_config("text", overrides={"steps": 400, "time_budget": 1.0})
    assert schedule_length(steps_and_time, steps_per_epoch=50) == 400
    both = make_config("text", overrides={"steps": 400, "epochs": 2.0})
    assert schedule_length(both, steps_per_epoch=50) == 100  # the nearer budget
    assert schedule_length(make_config("text", overrides={"steps": None, "time_budget": 60.0}), 50) is None
    unknown = LRSchedule(lr=1.0, decay="cosine", steps=None)
    assert [unknown.lr_at(k) for k in (0, 10, 10_000)] == [1.0, 1.0, 1.0]  # no decay before the length is planned


def test_a_time_only_run_plans_its_length_from_the_measured_speed() -> None:
    assert plan_steps(time_budget=60.0, steps_done=100, seconds=3.0) == 2000
    assert plan_steps(time_budget=1.0, steps_done=100, seconds=3.0) == 100  # never fewer than already taken
    c = make_config("text", overrides={"steps": None, "time_budget": 60.0, "warmup_steps": 5})
    assert plan_point(c) == PLAN_STEPS  # the warm-up is shorter than the measuring window
    s = LRSchedule.from_config(c, 2000, decay_start=PLAN_STEPS)
    assert s.lr_at(PLAN_STEPS) == c.lr and s.progress(PLAN_STEPS + (2000 - PLAN_STEPS) // 2) == pytest.approx(0.5)


def test_schedule_from_config_turns_epochs_into_steps() -> None:
    c = make_config("text", overrides={"epochs": 2.0, "time_budget": None, "warmup_steps": 0})
    s = LRSchedule.from_config(c, schedule_length(c, steps_per_epoch=50))
    assert s.progress(50) == pytest.approx(0.5) and s.progress(100) == 1.0


def test_text_threads_follow_load_only_for_time_only_runs(monkeypatch):
    """A step- or epoch-budgeted text run must be bitwise reproducible, so its thread count may not
    depend on what else the machine is doing; a time-only run (the default) adapts to the load."""
    from rnnkit.training import threads

    monkeypatch.setattr(threads, "available_cpus", lambda: 2.0)
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window=0.25: 1.9)  # a busy neighbour
    assert make_config("text").threads_for == 1  # time-only: leaves the busy core alone
    assert make_config("text", overrides={"steps": 50}).threads_for == 2
    assert make_config("text", overrides={"epochs": 1.0}).threads_for == 2
    monkeypatch.setattr(threads, "busy_elsewhere", lambda window=0.25: 0.0)
    assert make_config("text", overrides={"steps": 50}).threads_for == 2


@pytest.mark.parametrize("task,given", [("text", {"steps": 60}), ("text", {"epochs": 0.5}), ("words", {"steps": 60})])
def test_a_step_or_epoch_budget_given_alone_is_not_cut_by_the_tasks_default_time_budget(task, given):
    """`rnnkit train --task text --steps 60` runs 60 steps on any machine: the task's default
    5-minute cap (its default run length) does not stay on as a silent second stop (newcomer find:
    on a busy machine the run ended early with exit 0)."""
    assert make_config(task).time_budget == 300.0  # the task's own default length
    config = make_config(task, overrides=given)
    assert config.time_budget is None
    both = make_config(task, overrides={**given, "time_budget": 30.0})  # both given: both stop the run
    assert both.time_budget == 30.0
