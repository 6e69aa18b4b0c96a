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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.checkpoint.runs import CHECKPOINT_DIR, is_run_dir
from rnnkit.errors import CheckpointError, bad_argument
from rnnkit.training.config import TrainConfig
from rnnkit.training.tasks import step_seed

__all__ = ["CHECKPOINT_DIR", "RESUMABLE_FIELDS", "changed_fields", "config_from_metadata", "encode_carry",
           "is_run_dir", "resolve_resume", "restore_run", "save_run"]

RESUMABLE_FIELDS = frozenset({"steps", "epochs", "time_budget", "eval_every", "stop_when_solved", "patience",
                              "checkpoint_interval", "plot", "tensorboard", "out", "threads"})


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
    from rnnkit.models.registry import config_from_json

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


def save_run(trainer: Any, model: nn.Module, optimizer: torch.optim.Optimizer, carry: Any,
             summary: dict | None) -> Path:
    """Write ``<run>/checkpoint``: the model, the trainer's state, and the config (+ ``summary`` at the end)."""
    from rnnkit.models.registry import config_to_json
    from rnnkit.training._state import TrainingState, capture_rng_state
    from rnnkit.training.checkpoint import save

    per_epoch = trainer._task.steps_per_epoch()
    state = TrainingState(
        step=trainer.step, epoch=trainer.step // per_epoch if per_epoch else 0, tokens=trainer.tokens,
        sequences=trainer.sequences, optimizer=optimizer.state_dict(), rng=capture_rng_state(),
        scheduler={"elapsed": trainer.elapsed, "train_seconds": trainer.train_seconds},
        data_position={"step": trainer.step, "chunk": trainer.step % per_epoch if per_epoch else None},
        metrics=trainer.history,
        extra={"carry": encode_carry(carry), "best": trainer._best, "since_best": trainer._since_best},
    )
    config = trainer.config
    metadata = {"train_config": config_to_json(config), "task": config.task, "cell": config.cell}
    if summary is not None:
        metadata["summary"] = summary
    return save(model, Path(config.run_dir) / CHECKPOINT_DIR, vocab=trainer._task.vocab_json(),
                training_state=state, metadata=metadata)


def restore_run(trainer: Any, resume: str | os.PathLike[str], model: nn.Module,
                optimizer: torch.optim.Optimizer) -> Any:
    """Load the run at ``resume`` into ``trainer`` (counters, history), ``model`` and ``optimizer``.

    Returns the carried recurrent state. ValueError if the config differs beyond RESUMABLE_FIELDS.
    """
    from rnnkit.training._state import restore_rng_state
    from rnnkit.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(resolve_resume(resume), training_state=True)  # a resume verifies every file
    saved = config_from_metadata(ckpt.metadata, ckpt.path)
    changed = changed_fields(saved, trainer.config)
    if changed:
        pairs = ", ".join(f"{n}={getattr(saved, n)!r}" for n in changed)
        raise bad_argument("resume", "the run's own settings (only budgets, cadences and --out may change)",
                           f"changes to {', '.join(changed)}", f"keep {pairs}, or start a new run")
    state = ckpt.training_state
    if state is None or state.optimizer is None:
        raise bad_argument("resume", "a checkpoint with a training state", str(ckpt.path), "resume a run folder")
    model.load_state_dict(ckpt.model.state_dict())
    optimizer.load_state_dict(state.optimizer)
    trainer.step, trainer.sequences, trainer.tokens = state.step, state.sequences, state.tokens
    trainer.elapsed = float(state.scheduler["elapsed"])
    trainer.train_seconds = float(state.scheduler["train_seconds"])
    trainer.history = list(state.metrics)
    trainer._best = state.extra.get("best")
    trainer._since_best = int(state.extra.get("since_best", 0))
    rank = trainer.dist_info.rank
    if rank == 0 and state.rng is not None:
        restore_rng_state(state.rng)
    else:  # other ranks' dropout streams are not saved: reseed them from the step
        torch.manual_seed(step_seed("dropout", trainer.config.seed, rank, trainer.step))
    return state.extra.get("carry")
