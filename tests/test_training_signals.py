"""SIGTERM / SIGINT stop a run with a checkpoint of its last step; NaN and Inf stop it or skip the step;
kill -9 at random moments, then resume, ends on the uninterrupted run's weights."""
from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnkit.checkpoint import load_checkpoint, load_training_state
from rnnkit.training.config import make_config
from rnnkit.training.interrupt import stop_signals
from rnnkit.training.trainer import Trainer

HERE = Path(__file__).resolve().parent
SIGTERM_FLAGS = ["--task", "embedded-reber", "--hidden", "8", "--steps", "1000", "--eval-every", "50",
                 "--eval-size", "50", "--keep-going", "--no-plot", "--no-tensorboard", "--quiet", "--seed", "2"]


def _kill_resume():
    spec = importlib.util.spec_from_file_location("kill_resume", HERE / "kill_resume.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_handler_only_sets_a_flag_and_is_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with stop_signals() as flag:
        os.kill(os.getpid(), signal.SIGTERM)  # would end the process with the default disposition
        os.kill(os.getpid(), signal.SIGINT)  # a second signal changes nothing: the first one is kept
        assert flag.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_exits_143_with_the_last_step_checkpointed_and_resume_loses_no_step(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "rnnkit.cli", "train", *SIGTERM_FLAGS, "--out", str(run)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists() and time.monotonic() < deadline:  # training has begun
        time.sleep(0.05)
    time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "stopped by SIGTERM after step" in lines[0] and "--resume" in lines[0], err
    step = int(lines[0].split("after step ")[1].split(";")[0].replace(",", ""))
    assert 0 < step < 1000
    assert load_training_state(run / "checkpoint").step == step  # the checkpoint holds the last completed step
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == step and summary["stopped"] == "interrupted" and summary["signal"] == "SIGTERM"
    # resume: no step lost or repeated, and the weights of one uninterrupted run
    done = subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", "--resume", str(run), "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"at step {step:,}" in done.stderr
    whole = Trainer(make_config("embedded-reber", overrides=dict(
        hidden_size=8, steps=1000, eval_every=50, eval_size=50, stop_when_solved=False, plot=False,
        tensorboard=False, seed=2, out=str(tmp_path / "whole"))), progress=False).fit()
    resumed = load_checkpoint(run / "checkpoint").model
    assert all(torch.equal(a, b) for a, b in zip(resumed.state_dict().values(), whole.model.state_dict().values()))
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [h["step"] for h in whole.history]


def _overflow_at(step: int, where: str):
    """A callback that makes the model overflow at optimiser step ``step`` (1-based) only."""
    handles = []

    def callback(trainer: Trainer) -> None:
        for handle in handles:
            handle.remove()
        handles.clear()
        if trainer.step == step - 1:  # the next step overflows
            model = trainer.model
            if where == "loss":  # the output is scaled past float32's range: inf logits, a non-finite loss
                handles.append(model.register_forward_hook(lambda m, args, out: (out[0] * 1e38 * 1e38, *out[1:])))
            else:  # a finite loss whose gradient overflows on its way back
                handles.append(model.head.weight.register_hook(lambda g: g * 1e38 * 1e38))
    return callback


def nan_config(out: Path, on_nonfinite: str):
    return make_config("reber", overrides=dict(hidden_size=8, steps=12, eval_every=4, eval_size=30,
                                               checkpoint_interval=0.0, plot=False, tensorboard=False, out=str(out),
                                               on_nonfinite=on_nonfinite, stop_when_solved=False))


@pytest.mark.parametrize("where", ["loss", "gradient"])
def test_nonfinite_stop_names_the_step_and_tensor_and_keeps_the_last_good_checkpoint(tmp_path: Path,
                                                                                      where: str) -> None:
    config = nan_config(tmp_path, "stop")
    result = Trainer(config, progress=False, callback=_overflow_at(6, where)).fit()
    assert result.stopped == "diverged" and result.summary["steps"] == 5
    expected = "step 6: the loss is" if where == "loss" else "step 6: the gradient of head.weight"
    assert result.extra["nonfinite"].startswith(expected), result.extra
    kept = load_checkpoint(tmp_path / "checkpoint", training_state=True)
    assert kept.training_state.step == 4  # the evaluation at step 4 wrote it; nothing overwrote it since
    assert all(bool(torch.isfinite(p).all()) for p in kept.model.parameters())


def test_nonfinite_skip_skips_only_that_step(tmp_path: Path) -> None:
    skipped = Trainer(nan_config(tmp_path / "skip", "skip"), progress=False, callback=_overflow_at(6, "loss")).fit()
    assert skipped.stopped == "steps" and skipped.summary["steps"] == 12 and skipped.summary["skipped_steps"] == 1
    assert skipped.summary["nonfinite"].startswith("step 6: the loss is")
    assert all(bool(torch.isfinite(p).all()) for p in skipped.model.parameters())
    # Adam counted 11 updates, not 12: the skipped step changed nothing
    state = load_checkpoint(tmp_path / "skip" / "checkpoint", training_state=True).training_state
    assert {float(s["step"]) for s in state.optimizer["state"].values()} == {11.0}


def test_cli_exit_code_and_one_line_for_a_nonfinite_stop(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "rnnkit.cli", "train", "--task", "sine", "--optimizer", "sgd",
                           "--lr", "1e30", "--steps", "50", "--eval-every", "0", "--no-plot", "--no-tensorboard",
                           "--quiet", "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1
    lines = [line for line in done.stderr.strip().splitlines() if line.startswith("rnnkit train:")]
    assert len(lines) == 1 and "step " in lines[0] and "last good checkpoint" in lines[0], done.stderr


def test_kill_9_at_random_moments_then_resume_equals_one_run() -> None:
    """The CI version of tests/kill_resume.py: 3 kills of a text run (the full 20-kill runs are in the report)."""
    result = _kill_resume().main(["--task", "text", "--kills", "3", "--steps", "200", "--seed", "1"])
    assert result["kills"] == 3
    assert result["equal"], result
    assert result["metrics_steps_equal"] and result["metrics_steps_unique"], result
