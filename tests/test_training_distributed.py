"""Data-parallel training under torchrun (2 processes, gloo): the same update as averaging the ranks' losses."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnkit.training.checkpoint import load
from rnnkit.training.config import make_config
from rnnkit.training.distributed import DistInfo, agree_stop, all_sum, setup
from rnnkit.training.task_reber import ReberTask
from rnnkit.training.trainer import seed_everything


def test_single_process_needs_no_process_group() -> None:
    info = setup(env={"WORLD_SIZE": "1"})
    assert info == DistInfo() and info.is_main and not info.distributed
    assert agree_stop(True, info) and all_sum(7, info) == 7
    with pytest.raises(ValueError, match=r"environment variable WORLD_SIZE: expected an int"):
        setup(env={"WORLD_SIZE": "two"})


@pytest.mark.slow
def test_torchrun_two_ranks_average_their_gradients(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "rnnkit.cli",
         "train", "--task", "reber", "--hidden", "8", "--steps", "6", "--eval-every", "3", "--eval-size", "30",
         "--no-plot", "--no-tensorboard", "--quiet", "--out", str(out), "--json", str(tmp_path / "s.json")],
        capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["world_size"] == 2 and summary["train_sequences"] == 6 * 16 * 2
    # the oracle: one process, the mean of rank 0's and rank 1's losses at every step
    config = make_config("reber", overrides={"hidden_size": 8, "steps": 6, "eval_size": 30})
    seed_everything(config.seed)
    ranks = [ReberTask(config, rank, 2) for rank in range(2)]
    model = ranks[0].build_model()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    tokens = 0
    for step in range(6):
        losses = []
        for task in ranks:
            batch = task.batch(step)
            tokens += batch.tokens
            logits, _ = model(batch.inputs)
            losses.append(model.loss(logits, batch.targets, batch.mask))
        opt.zero_grad()
        (sum(losses) / 2).backward()
        opt.step()
    assert summary["train_tokens"] == tokens
    trained = load(out / "checkpoint").state_dict()
    for name, value in model.state_dict().items():
        torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6)
