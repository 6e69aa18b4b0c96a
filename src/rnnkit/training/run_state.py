"""What a run saves at a checkpoint and reads back on resume, apart from the loop itself.

A run folder (``TrainConfig.run_dir``) holds:

- ``checkpoint/``: the latest checkpoint (``rnnkit.load`` reads it). Besides the weights it holds
  the training state (optimizer moments, step and data counters, elapsed time, RNG states, the
  carried TBPTT state, the metric history) and, as metadata, the ``TrainConfig``. It is written
  at evaluations (at most every ``checkpoint_interval`` seconds), at the end, and on Ctrl-C.
- ``metrics.jsonl``, ``curve.png``, ``summary.json`` and, with tensorboard installed, ``tensorboard/``.

:func:`resolve_resume` accepts the run folder or its ``checkpoint/`` folder. On resume the
config must match the saved one except for the fields in ``RESUMABLE_FIELDS`` (budgets,
cadences, output), so the continued run is the same run, bit for bit.

Example:
    >>> from rnnkit.training.config import TrainConfig
    >>> changed_fields(TrainConfig(steps=10), TrainConfig(steps=20, seed=1))
    ['seed']
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.checkpoint.runs import CHECKPOINT_DIR, is_run_dir
from rnnkit.errors import CheckpointError, bad_argument
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_base import step_seed

__all__ = ["CHECKPOINT_DIR", "RESUMABLE_FIELDS", "RunState", "changed_fields", "config_from_metadata", "encode_carry",
           "is_run_dir", "resolve_resume", "restore_run", "save_run"]

RESUMABLE_FIELDS = frozenset({"steps", "epochs", "time_budget", "eval_every", "stop_when_solved", "patience",
                              "checkpoint_interval", "plot", "tensorboard", "out", "threads", "device",
                              "on_nonfinite"})


def changed_fields(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Fields that differ between ``saved`` and ``new`` and may not change on resume."""
    return [f.name for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(new, f.name)]


def resolve_resume(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder of the run at ``path`` (a run folder or its checkpoint folder).

    Raises ValueError naming what was found when ``path`` is not a run.
    """
    p = Path(path)
    if not p.exists():
        raise bad_argument("resume", "a run folder written by rnnkit train", f"{str(p)!r}, which does not exist",
                           "pass the --out folder of an earlier run")
    if not p.is_dir():
        raise bad_argument("resume", "a run folder written by rnnkit train", f"{str(p)!r}, a file",
                           "pass the --out folder of an earlier run")
    if is_run_dir(p):
        return p / CHECKPOINT_DIR
    if (p / "manifest.json").is_file():
        return p
    found = sorted(x.name for x in p.iterdir())[:6]
    raise bad_argument("resume", f"a run folder holding {CHECKPOINT_DIR}/manifest.json", f"{str(p)!r} holding "
                       f"{found or 'nothing'}", "pass the --out folder of an earlier rnnkit train run")


def config_from_metadata(metadata: dict | None, where: Path) -> TrainConfig:
    """The ``TrainConfig`` a training checkpoint stores in its metadata; CheckpointError if it has none."""
    from rnnkit.checkpoint import config_from_json

    if not isinstance(metadata, dict) or "train_config" not in metadata:
        raise CheckpointError(f"{where}: this checkpoint holds a model but no training run (no train_config in its "
                              "metadata). Fix: resume only folders written by rnnkit train / Trainer")
    try:
        return config_from_json(metadata["train_config"], TrainConfig)
    except ValueError as error:
        raise CheckpointError(f"{where}: the stored training config does not fit this rnnkit: {error}. "
                              "Fix: resume with the rnnkit version that wrote it") from error


def encode_carry(carry: Any) -> Any:
    """The carried recurrent state as a JSON-able value of tensors (tuple for LSTM, tensor, or None)."""
    if carry is None:
        return None
    return tuple(t.detach().clone() for t in carry) if isinstance(carry, tuple) else carry.detach().clone()


@dataclass
class RunState:
    """The trainer's run state: counters, clocks, the schedule's length and the records so far.

    The ``Trainer`` owns one and updates it step by step; :func:`save_run` writes it into the
    checkpoint and :func:`restore_run` reads it back, so a resumed run continues from exactly
    where the checkpoint left it.

    Example:
        >>> state = RunState(step=3, schedule_steps=100)
        >>> state.step, state.history
        (3, [])
    """

    step: int = 0  # optimiser steps taken (skipped non-finite steps included)
    sequences: int = 0  # training sequences seen, all ranks
    tokens: int = 0  # training tokens seen, all ranks
    elapsed: float = 0.0  # seconds in the training loop, all sessions (what the time budget counts)
    train_seconds: float = 0.0  # of which in training steps (not evaluation or saving)
    wall_seconds: float = 0.0  # wall time of all sessions, start-up and saving included (>= elapsed)
    schedule_steps: int | None = None  # the learning-rate schedule's length (None: not planned yet)
    decay_start: int = 0  # the step where the decay starts (a time-only run: where its length was first planned)
    schedule_plans: list[list[int]] = field(default_factory=list)  # a time-only run's plans: [step, length] each
    plan_elapsed: float = 0.0  # ``elapsed`` at the last plan (the next re-plan measures the speed since)
    history: list[dict[str, Any]] = field(default_factory=list)  # one record per evaluation
    best: float | None = None  # the best headline metric so far
    since_best: int = 0  # evaluations since it
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient (--on-nonfinite skip)
    carry: Any = None  # the recurrent state carried to the next step (text), detached

    def epoch(self, steps_per_epoch: int | None) -> int:
        """Epochs completed (0 for tasks without epochs)."""
        return self.step // steps_per_epoch if steps_per_epoch else 0


def save_run(state: RunState, config: TrainConfig, task: Any, model: nn.Module, optimizer: torch.optim.Optimizer,
             summary: dict | None) -> Path:
    """Write ``<run>/checkpoint``: the model, the run state, the optimizer, the RNG states, the config
    (+ ``summary`` at the end)."""
    from rnnkit.checkpoint import TrainingState, capture_rng_state, config_to_json, save

    per_epoch = task.steps_per_epoch()
    training = TrainingState(
        step=state.step, epoch=state.epoch(per_epoch), tokens=state.tokens, sequences=state.sequences,
        optimizer=optimizer.state_dict(), rng=capture_rng_state(),
        scheduler={"elapsed": state.elapsed, "train_seconds": state.train_seconds, "wall_seconds": state.wall_seconds,
                   "schedule_steps": state.schedule_steps, "decay_start": state.decay_start,
                   "schedule_plans": [list(p) for p in state.schedule_plans], "plan_elapsed": state.plan_elapsed},
        data_position={"step": state.step, "chunk": state.step % per_epoch if per_epoch else None},
        metrics=state.history,
        extra={"carry": encode_carry(state.carry), "best": state.best, "since_best": state.since_best,
               "skipped_steps": state.skipped_steps},
    )
    metadata = {"train_config": config_to_json(config), "task": config.task, "cell": config.cell}
    if summary is not None:
        metadata["summary"] = summary
    return save(model, Path(config.run_dir) / CHECKPOINT_DIR, vocab=task.vocab_json(), training_state=training,
                metadata=metadata)


def restore_run(config: TrainConfig, resume: str | os.PathLike[str], model: nn.Module,
                optimizer: torch.optim.Optimizer, rank: int = 0) -> RunState:
    """Load the run at ``resume`` into ``model`` and ``optimizer`` (and, on rank 0, the RNG states).

    Returns the run state. ValueError if ``config`` differs from the saved one beyond RESUMABLE_FIELDS.
    """
    from rnnkit.checkpoint import load_checkpoint, restore_rng_state

    ckpt = load_checkpoint(resolve_resume(resume), training_state=True)  # a resume verifies every file
    saved = config_from_metadata(ckpt.metadata, ckpt.path)
    changed = changed_fields(saved, config)
    if changed:
        pairs = ", ".join(f"{n}={getattr(saved, n)!r}" for n in changed)
        raise bad_argument("resume", "the run's own settings (only budgets, cadences and --out may change)",
                           f"changes to {', '.join(changed)}", f"keep {pairs}, or start a new run")
    training = ckpt.training_state
    if training is None or training.optimizer is None:
        raise bad_argument("resume", "a checkpoint with a training state", str(ckpt.path), "resume a run folder")
    device = next(model.parameters()).device
    model.load_state_dict(ckpt.model.state_dict())
    optimizer.load_state_dict(training.optimizer)
    clocks, extra = training.scheduler or {}, training.extra
    length = clocks.get("schedule_steps")
    carry = extra.get("carry")
    if carry is not None:
        carry = tuple(t.to(device) for t in carry) if isinstance(carry, tuple) else carry.to(device)
    state = RunState(step=training.step, sequences=training.sequences, tokens=training.tokens,
                     elapsed=float(clocks.get("elapsed", 0.0)), train_seconds=float(clocks.get("train_seconds", 0.0)),
                     wall_seconds=float(clocks.get("wall_seconds", clocks.get("elapsed", 0.0))),
                     schedule_steps=None if length is None else int(length),
                     decay_start=int(clocks.get("decay_start", 0)),
                     schedule_plans=[[int(a), int(b)] for a, b in clocks.get("schedule_plans", [])],
                     plan_elapsed=float(clocks.get("plan_elapsed", 0.0)), history=list(training.metrics),
                     best=extra.get("best"), since_best=int(extra.get("since_best", 0)),
                     skipped_steps=int(extra.get("skipped_steps", 0)), carry=carry)
    if rank == 0 and training.rng is not None:
        restore_rng_state(training.rng)
    else:  # other ranks' dropout streams are not saved: reseed them from the step
        torch.manual_seed(step_seed("dropout", config.seed, rank, state.step))
    return state
