"""Budget-aware language-model defaults (issue 12): a time-only text run without model flags is sized for its budget."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from rnnkit.cli import main
from rnnkit.training.budget import LM_BUDGET_TABLE, MODEL_FIELDS, budget_row, describe_budget_choice
from rnnkit.training.config import TASK_DEFAULTS, make_config

SHORT, MEDIUM, STANDARD = LM_BUDGET_TABLE


def fields(config, names):  # type: ignore[no-untyped-def]
    return {name: getattr(config, name) for name in names}


@pytest.mark.parametrize("seconds,row", [(60.0, SHORT), (120.0, SHORT), (SHORT.up_to, SHORT), (SHORT.up_to + 1, MEDIUM),
                                         (300.0, MEDIUM), (MEDIUM.up_to, MEDIUM), (MEDIUM.up_to + 1, STANDARD),
                                         (600.0, STANDARD)])
def test_a_time_only_text_run_takes_its_budget_row(seconds: float, row) -> None:  # type: ignore[no-untyped-def]
    config = make_config("text", overrides={"time_budget": seconds})
    assert fields(config, row.values) == dict(row.values)
    assert config.sized_for_budget == seconds and budget_row(seconds) is row


def test_the_rows_differ_and_the_short_row_is_the_smaller_model() -> None:
    assert SHORT.values["hidden_size"] < STANDARD.values["hidden_size"]
    assert SHORT.values["warmup_steps"] < STANDARD.values["warmup_steps"]
    assert [row.up_to for row in LM_BUDGET_TABLE] == sorted(row.up_to for row in LM_BUDGET_TABLE)


def test_every_row_sets_the_batch_and_short_budgets_take_more_updates() -> None:
    """A short budget is short of updates, not of characters: its rows train on smaller batches (issue 12)."""
    batches = [row.values["batch_size"] for row in LM_BUDGET_TABLE]
    assert batches == sorted(batches) and batches[0] < batches[-1] == TASK_DEFAULTS["text"]["batch_size"]


def test_the_batch_follows_the_budget_and_a_batch_flag_wins() -> None:
    assert make_config("text", overrides={"time_budget": 120.0}).batch_size == SHORT.values["batch_size"]
    assert make_config("text", overrides={"time_budget": 600.0}).batch_size == STANDARD.values["batch_size"]
    config = make_config("text", overrides={"time_budget": 120.0, "batch_size": 8})
    assert config.batch_size == 8 and config.hidden_size == SHORT.values["hidden_size"]
    assert "batch 8" in describe_budget_choice(config)
    assert make_config("text", overrides={"time_budget": 120.0, "hidden_size": 128}).batch_size == 64  # table off


def test_the_default_text_run_is_sized_for_its_default_budget() -> None:
    config = make_config("text")
    assert config.time_budget == TASK_DEFAULTS["text"]["time_budget"] == config.sized_for_budget == 300.0
    assert fields(config, MEDIUM.values) == dict(MEDIUM.values)


def test_the_ten_minute_row_is_the_task_defaults() -> None:
    """Kept as measured at 10 minutes: the longest budgets train the task's own default model."""
    assert all(TASK_DEFAULTS["text"][k] == v for k, v in STANDARD.values.items())


def test_dropout_grows_with_the_budget() -> None:
    """A longer budget reads the text more times over, so it needs more dropout (2 x 256: 0 at 2 minutes,
    0.1 at 5; the plain loop without dropout stopped improving between 2 and 5 minutes)."""
    dropouts = [row.values["dropout"] for row in LM_BUDGET_TABLE]
    assert dropouts == sorted(dropouts) and dropouts[0] == 0.0 < dropouts[1]


@pytest.mark.parametrize("budget", [{"steps": 50}, {"epochs": 1.0}, {"steps": 50, "time_budget": 120.0},
                                    {"epochs": 1.0, "time_budget": 120.0}])
def test_step_and_epoch_budgets_keep_the_task_defaults(budget: dict) -> None:
    """They must stay bitwise reproducible from their flags: nothing is chosen from a budget."""
    config = make_config("text", overrides=budget)
    assert config.sized_for_budget is None
    defaults = {k: v for k, v in TASK_DEFAULTS["text"].items() if k in SHORT.values}
    assert fields(config, defaults) == defaults


@pytest.mark.parametrize("name,value", [("hidden_size", 128), ("num_layers", 1), ("embedding_size", 32),
                                        ("cell", "gru")])
def test_a_model_flag_turns_the_table_off(name: str, value: object) -> None:
    config = make_config("text", overrides={"time_budget": 120.0, name: value})
    assert name in MODEL_FIELDS and getattr(config, name) == value and config.sized_for_budget is None
    assert config.warmup_steps == TASK_DEFAULTS["text"]["warmup_steps"]  # the task's defaults, not the short row's
    assert describe_budget_choice(config) is None


def test_other_flags_win_over_the_row_one_by_one() -> None:
    config = make_config("text", overrides={"time_budget": 120.0, "lr": 1e-3, "dropout": 0.3, "eval_every": 7})
    assert (config.lr, config.dropout, config.eval_every) == (1e-3, 0.3, 7)
    assert config.hidden_size == SHORT.values["hidden_size"] and config.sized_for_budget == 120.0


def test_other_tasks_ignore_the_table() -> None:
    assert make_config("words", overrides={"time_budget": 120.0}).sized_for_budget is None
    assert make_config("reber", overrides={"time_budget": 120.0}).hidden_size == 64


TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 80  # 13k characters


def test_the_cli_prints_and_records_the_choice_and_resume_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "--task", "text", "--data", str(data), "--time-budget", "2s", "--threads", "1",
                 "--no-plot", "--no-tensorboard", "--out", str(run), "--json", "-"])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert "the 'short' row of the budget table: 2 x 256 LSTM" in err
    assert summary["config"]["sized_for_budget"] == 2.0 and summary["budget_defaults"].startswith("time budget 2")
    assert summary["config"]["hidden_size"] == SHORT.values["hidden_size"]
    batch = SHORT.values["batch_size"]
    assert summary["config"]["batch_size"] == batch and f"batch {batch}," in err
    planned = summary["schedule_steps"]
    # more time on top: the same model, the same record of the choice, the same planned curve
    code = main(["train", "--resume", str(run), "--time-budget", "1s", "--quiet", "--json", "-"])
    out, err = capsys.readouterr()
    resumed = json.loads(out)
    assert code == 0, err
    assert resumed["config"]["sized_for_budget"] == 2.0 and resumed["config"]["hidden_size"] == 256
    assert resumed["config"]["batch_size"] == SHORT.values["batch_size"]
    assert resumed["schedule_steps"] == planned and resumed["steps"] > summary["steps"]
