"""The summary ``rnnkit train`` ends with says what happened (issue 12: every divergence was called a NaN loss)."""
from __future__ import annotations

from pathlib import Path

import pytest
from rnnkit.cli.summary import print_summary


def summary(tmp_path: Path, **extra: object) -> dict:
    base = {"task": "text", "cell": "lstm", "data": "t", "parameters": 10, "steps": 3, "train_sequences": 6,
            "train_tokens": 60, "world_size": 1, "wall_seconds": 1.0, "train_seconds": 0.5, "tokens_per_second": 120.0,
            "stopped": "steps", "solved": None, "metrics": {"val_loss": 2.0}, "baseline": {}, "run_dir": str(tmp_path),
            "config": {"num_layers": 1, "hidden_size": 8, "optimizer": "adam", "lr": 0.003, "batch_size": 2}}
    return {**base, **extra}


def printed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, data: dict) -> str:
    monkeypatch.setenv("COLUMNS", "400")
    print_summary(data, [])
    return " ".join(capsys.readouterr().out.split())


def test_a_gradient_divergence_is_not_called_a_nan_loss(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    text = printed(capsys, monkeypatch, summary(tmp_path, stopped="diverged",
                                                nonfinite="step 4: the gradient of rnn.layers.0.weight_hh"))
    assert "step 4: the gradient of rnn.layers.0.weight_hh was not finite" in text
    assert "loss became NaN" not in text and "loss" not in text.split("stopped", 1)[1].split("held-out")[0]


@pytest.mark.parametrize("what,expected", [("step 7: the loss is nan", "step 7: the loss is nan"),
                                           ("step 2: the gradient norm", "step 2: the gradient norm was not finite")])
def test_the_divergence_line_names_what_was_not_finite(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch, what: str,
                                                        expected: str) -> None:
    text = printed(capsys, monkeypatch, summary(tmp_path, stopped="diverged", nonfinite=what))
    assert expected in text and "last good checkpoint" in text


def test_an_old_summary_without_the_detail_still_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    assert "a loss or gradient became NaN or infinite" in printed(capsys, monkeypatch, summary(tmp_path,
                                                                                               stopped="diverged"))


def test_the_budget_choice_is_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    text = printed(capsys, monkeypatch, summary(tmp_path, budget_defaults="time budget 2m00s and no model flags: x"))
    assert "defaults time budget 2m00s and no model flags: x" in text
    assert "defaults" not in printed(capsys, monkeypatch, summary(tmp_path))


def test_a_time_only_run_prints_its_planned_and_actual_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    plans = [[300, 1318], [600, 1576], [900, 1625], [1200, 1567], [1500, 1560]]
    text = printed(capsys, monkeypatch, summary(tmp_path, steps=1556, schedule_steps=1560, schedule_plans=plans,
                                                stopped="time_budget"))
    assert "schedule the learning-rate decay was planned to end at step 1,560 and the run took 1,556 steps" in text
    assert "first planned at step 300 for 1,318, re-planned 4 times" in text
    assert "schedule" not in printed(capsys, monkeypatch, summary(tmp_path, schedule_steps=3, schedule_plans=[]))
