"""Runs you can trust: never overwritten, reproducible by construction, predictable resume budgets."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from rnnkit.cli import main
from rnnkit.checkpoint import load_training_state
from rnnkit.training.config import make_config
from rnnkit.training.schedule import LRSchedule
from rnnkit.training.task_text import TextTask
from rnnkit.training.trainer import Trainer

TINY_REBER = ["--task", "reber", "--hidden", "8", "--steps", "12", "--eval-every", "6", "--eval-size", "40",
              "--no-plot", "--no-tensorboard", "--quiet"]
TEXT = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
        "foolishness, it was the epoch of belief, it was the epoch of incredulity. ") * 8


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder``, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def weights_sha(run: Path) -> str:
    """SHA-256 of the checkpoint's tensors (names, dtypes, shapes, bytes): the file's own bytes also hold a
    metadata map that safetensors writes in hash order, which differs between processes."""
    folder = run / "checkpoint"
    manifest = json.loads((folder / "manifest.json").read_text())
    tensors = safetensors.torch.load_file(folder / manifest["files"]["weights"]["name"])
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------- never lose or overwrite a run
def test_a_second_run_into_an_existing_run_folder_keeps_the_first_byte_for_byte(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "named"
    assert cli(capsys, "train", *TINY_REBER, "--out", str(run))[0] == 0
    first = snapshot(run)
    assert "checkpoint/manifest.json" in first and "metrics.jsonl" in first
    # a named --out that holds a run is refused: one line, exit code 2, the fixes named
    code, out, err = cli(capsys, "train", *TINY_REBER, "--seed", "3", "--out", str(run))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "holds a run" in err and "--resume" in err and "--overwrite" in err
    assert snapshot(run) == first
    # the default folder takes a fresh name and says which
    monkeypatch.chdir(tmp_path)
    assert cli(capsys, "train", *TINY_REBER)[0] == 0
    default = snapshot(tmp_path / "runs" / "reber")
    code, _, err = cli(capsys, "train", *TINY_REBER, "--seed", "4")
    assert code == 0 and "runs/reber-2" in err, err
    assert snapshot(tmp_path / "runs" / "reber") == default
    assert json.loads((tmp_path / "runs" / "reber-2" / "summary.json").read_text())["config"]["seed"] == 4
    # the Python API refuses too
    with pytest.raises(ValueError, match=r"out: expected a folder that holds no run"):
        Trainer(make_config("reber", overrides=dict(steps=2, eval_size=20, out=str(run), plot=False)),
                progress=False).fit()
    assert snapshot(run) == first


def test_overwrite_replaces_the_old_run_on_purpose(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    (tmp_path / "run").mkdir()
    (run / "notes.txt").write_text("mine")
    assert cli(capsys, "train", *TINY_REBER, "--out", str(run))[0] == 0
    before = weights_sha(run)
    assert cli(capsys, "train", *TINY_REBER, "--seed", "7", "--out", str(run), "--overwrite")[0] == 0
    assert weights_sha(run) != before and [r["step"] for r in records(run)] == [6, 12]
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are replaced


# ---------------------------------------------------------------- reproducible by construction
def test_the_time_budget_does_not_change_a_step_budgeted_runs_learning_rates(tmp_path: Path) -> None:
    """Before: lr followed max(step / steps, elapsed / time_budget), so a slow machine decayed faster."""
    lrs: list[float] = []

    def slow(trainer: Trainer) -> None:  # a busy machine: every step takes 50 ms more
        lrs.append(trainer.last_lr)
        time.sleep(0.05)
        if trainer.step == 10:
            trainer.request_stop()

    config = make_config("reber", overrides=dict(hidden_size=8, steps=10_000, time_budget=2.0, decay="cosine",
                                                 warmup_steps=2, eval_every=0, eval_size=20, plot=False,
                                                 tensorboard=False, out=str(tmp_path)))
    Trainer(config, progress=False, callback=slow).fit()
    schedule = LRSchedule(lr=config.lr, warmup_steps=2, decay="cosine", steps=10_000)
    assert lrs == [schedule.lr_at(k) for k in range(10)]


TEXT_FLAGS = ["--task", "text", "--hidden", "24", "--layers", "1", "--embedding", "8", "--batch-size", "4",
              "--bptt", "16", "--steps", "110", "--eval-every", "10", "--seed", "5", "--threads", "1", "--quiet",
              "--no-plot", "--no-tensorboard"]  # 110 steps: past the default warm-up of 100, into the decay


def test_two_text_runs_with_steps_are_bitwise_equal(tmp_path: Path) -> None:
    """Before: the default time budget (300 s) entered the lr decay, and checkpoints (timed) shifted wall time."""
    data = tmp_path / "corpus.txt"
    data.write_text(TEXT * 3, encoding="utf-8")
    shas = []
    for name, extra in (("a", []), ("b", ["--checkpoint-interval", "0.001s"]), ("c", ["--checkpoint-interval", "0.01s"])):
        done = subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", *TEXT_FLAGS, "--data", str(data),
                               "--out", str(tmp_path / name), *extra], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        shas.append(weights_sha(tmp_path / name))
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["precision"] == make_config("text").precision_for  # the default precision
    assert shas[0] == shas[1] == shas[2]


def test_a_time_only_run_plans_its_length_and_resume_follows_it(tmp_path: Path) -> None:
    lrs: dict[int, float] = {}

    def record(trainer: Trainer) -> None:
        lrs[trainer.step - 1] = trainer.last_lr
        if trainer.step == 30:
            trainer.request_stop()

    config = make_config("text", overrides=dict(hidden_size=8, num_layers=1, embedding_size=4, batch_size=2, bptt=8,
                                                steps=None, time_budget=3600.0, warmup_steps=5, eval_every=0,
                                                plot=False, tensorboard=False, threads=1, out=str(tmp_path)))
    Trainer(config, task=TextTask(config, text=TEXT), progress=False, callback=record).fit()
    state = load_training_state(tmp_path / "checkpoint")
    planned = state.scheduler["schedule_steps"]
    assert state.step == 30 and planned > 30 and state.scheduler["decay_start"] == 20

    def more(trainer: Trainer) -> None:
        lrs[trainer.step - 1] = trainer.last_lr
        if trainer.step == 40:
            trainer.request_stop()

    Trainer(config, task=TextTask(config, text=TEXT), progress=False, callback=more).fit(resume=tmp_path)
    assert load_training_state(tmp_path / "checkpoint").scheduler["schedule_steps"] == planned
    schedule = LRSchedule(lr=config.lr, warmup_steps=5, decay="cosine", min_lr_ratio=config.min_lr_ratio,
                          steps=planned, decay_start=20)
    assert [lrs[k] for k in range(40)] == [schedule.lr_at(k) for k in range(40)]


# ---------------------------------------------------------------- resume budgets
def test_resume_with_a_budget_is_more_on_top_with_no_duplicate_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert cli(capsys, "train", *TINY_REBER, "--out", str(run))[0] == 0
    # nothing to add: the run's own budget is used up; no new row
    code, out, err = cli(capsys, "train", "--resume", str(run), "--quiet", "--json", "-")
    assert code == 0 and json.loads(out)["steps"] == 12 and "0 more steps" in err, err
    assert [r["step"] for r in records(run)] == [6, 12]
    # the README's form: a time budget with --resume is that much more training time
    code, out, err = cli(capsys, "train", "--resume", str(run), "--time-budget", "0.5s", "--quiet", "--json", "-")
    summary = json.loads(out)
    assert code == 0 and summary["steps"] > 12 and summary["stopped"] == "time_budget", err
    steps = [r["step"] for r in records(run)]
    assert len(steps) == len(set(steps)) and steps[-1] == summary["steps"]
    assert summary["wall_seconds"] >= summary["loop_seconds"] >= summary["train_seconds"]
    # and --steps with --resume is that many more steps
    code, out, _ = cli(capsys, "train", "--resume", str(run), "--steps", "5", "--quiet", "--json", "-")
    assert code == 0 and json.loads(out)["steps"] == summary["steps"] + 5


def test_resume_after_an_interruption_equals_one_long_run_adding(tmp_path: Path) -> None:
    def config(out: Path):
        return make_config("adding", overrides=dict(hidden_size=8, seq_len=12, batch_size=8, steps=30, eval_every=7,
                                                    eval_size=32, decay="cosine", warmup_steps=3, plot=False,
                                                    tensorboard=False, out=str(out)))

    whole = Trainer(config(tmp_path / "whole"), progress=False).fit()
    run = tmp_path / "run"
    Trainer(config(run), progress=False, callback=lambda t: t.request_stop() if t.step == 11 else None).fit()
    resumed = Trainer(config(run), progress=False).fit(resume=run)
    assert weights_sha(run) == weights_sha(tmp_path / "whole")
    assert resumed.metrics == whole.metrics and [r["step"] for r in records(run)] == [7, 14, 21, 28, 30]


def test_the_run_state_is_a_dataclass_the_trainer_owns(tmp_path: Path) -> None:
    from rnnkit.training.run_state import RunState

    trainer = Trainer(make_config("reber", overrides=dict(steps=4, eval_size=20, out=str(tmp_path), plot=False)),
                      progress=False)
    trainer.fit()
    assert isinstance(trainer.state, RunState) and trainer.state.step == trainer.step == 4
    saved = load_training_state(tmp_path / "checkpoint")
    assert (saved.step, saved.sequences, saved.scheduler["schedule_steps"]) == (4, trainer.state.sequences, 4)


def test_a_time_only_run_plans_at_an_evaluation_so_its_cost_is_measured(tmp_path: Path) -> None:
    config = make_config("text", overrides=dict(hidden_size=8, num_layers=1, embedding_size=4, batch_size=2, bptt=8,
                                                steps=None, time_budget=3600.0, warmup_steps=5, eval_every=25,
                                                plot=False, tensorboard=False, threads=1, out=str(tmp_path)))
    Trainer(config, task=TextTask(config, text=TEXT), progress=False,
            callback=lambda t: t.request_stop() if t.step == 30 else None).fit()
    clocks = load_training_state(tmp_path / "checkpoint").scheduler
    assert clocks["decay_start"] == 25 and clocks["schedule_steps"] > 30  # the first evaluation after step 20


@pytest.mark.parametrize("command", ["compare", "diagnose"])
def test_compare_and_diagnose_never_replace_earlier_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                         command: str) -> None:
    earlier = tmp_path / "out" / "group" / "lstm-seed0"
    earlier.mkdir(parents=True)
    (earlier / "summary.json").write_text("{}")
    code, _, err = cli(capsys, command, "--out", str(tmp_path / "out"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "holds 1" in err and "--out" in err, err
    assert (earlier / "summary.json").read_text() == "{}"
