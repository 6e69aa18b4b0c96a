"""Training: the Trainer, its configs and tasks, checkpoints, records, resume and torchrun.

The names below are imported lazily (on first use), so ``import rnnkit`` stays light and the
checkpoint module can be imported on its own.

Example:
    >>> from rnnkit.training import TrainConfig, make_config
    >>> make_config("text").decay
    'cosine'
"""
from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Checkpoint", "LRSchedule", "RECIPES", "TASKS", "TASK_DEFAULTS", "Task", "TrainConfig", "TrainResult", "Trainer",
    "TrainingState", "compare_cells", "load", "load_checkpoint", "make_config", "make_task", "parse_duration", "save",
]

_WHERE = {
    "Checkpoint": "checkpoint", "TrainingState": "checkpoint", "load": "checkpoint", "load_checkpoint": "checkpoint",
    "save": "checkpoint", "LRSchedule": "schedule", "RECIPES": "config", "TASKS": "config",
    "TASK_DEFAULTS": "config", "TrainConfig": "config", "make_config": "config", "parse_duration": "config",
    "Task": "tasks", "make_task": "tasks", "TrainResult": "trainer", "Trainer": "trainer", "compare_cells": "compare",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'rnnkit.training' has no attribute {name!r}")
    module = importlib.import_module(f"rnnkit.training.{_WHERE[name]}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
