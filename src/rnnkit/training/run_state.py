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

from rnnkit.errors import CheckpointError, bad_argument
from rnnkit.training.config import TrainConfig

__all__ = ["CHECKPOINT_DIR", "RESUMABLE_FIELDS", "changed_fields", "config_from_metadata", "encode_carry",
           "is_run_dir", "resolve_resume"]

CHECKPOINT_DIR = "checkpoint"  # the checkpoint folder inside a run folder
RESUMABLE_FIELDS = frozenset({"steps", "epochs", "time_budget", "eval_every", "stop_when_solved", "patience",
                              "checkpoint_interval", "plot", "tensorboard", "out", "threads"})


def changed_fields(saved: TrainConfig, new: TrainConfig) -> list[str]:
    """Fields that differ between ``saved`` and ``new`` and may not change on resume."""
    return [f.name for f in dataclasses.fields(TrainConfig)
            if f.name not in RESUMABLE_FIELDS and getattr(saved, f.name) != getattr(new, f.name)]


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding ``checkpoint/manifest.json``."""
    return (Path(path) / CHECKPOINT_DIR / "manifest.json").is_file()


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
