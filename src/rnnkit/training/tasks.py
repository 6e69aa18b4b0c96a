"""Tasks: what a training run learns, and how it is scored; ``make_task`` picks one by name.

The contract (``Task``, ``Batch``, seeds) is in :mod:`rnnkit.training.task_base`, re-exported
here. This module sits above every task module: each imports only the base, and ``make_task``
imports the one a run names, on first use (so a Reber run never loads the text corpus code).

Built-in tasks (``make_task(config)``):

- ``embedded-reber`` / ``reber``: :class:`~rnnkit.training.task_reber.ReberTask`
- ``text``: :class:`~rnnkit.training.task_text.TextTask`
- ``sine``, ``adding``, ``copy``: :mod:`rnnkit.training.task_synthetic`
- ``translate``, ``reverse``, ``add``, ``dates``: :class:`~rnnkit.training.task_pairs.PairTask`
- ``words``: :class:`~rnnkit.training.task_words.WordTask`

Example:
    >>> from rnnkit.training.config import make_config
    >>> task = make_task(make_config("reber", overrides={"eval_size": 50}))
    >>> batch = task.batch(0)
    >>> batch.sequences, task.batch(0).inputs.equal(batch.inputs)   # the same step, the same words
    (16, True)
"""
from __future__ import annotations

from rnnkit.training.config import TrainConfig
from rnnkit.training.task_base import EVAL_SEED, SOLVED, Batch, Task, model_device, step_seed, unwrap

__all__ = ["EVAL_SEED", "SOLVED", "Batch", "Task", "make_task", "model_device", "step_seed", "unwrap"]


def make_task(config: TrainConfig, rank: int = 0, world_size: int = 1) -> Task:
    """The task object ``config.task`` names, for process ``rank`` of ``world_size``.

    Example:
        >>> from rnnkit.training.config import make_config
        >>> make_task(make_config("sine")).name
        'sine'
    """
    if config.task in ("embedded-reber", "reber"):
        from rnnkit.training.task_reber import ReberTask

        return ReberTask(config, rank, world_size)
    if config.task == "text":
        from rnnkit.training.task_text import TextTask

        return TextTask(config, rank, world_size)
    if config.task in ("translate", "reverse", "add", "dates"):
        from rnnkit.training.task_pairs import PairTask

        return PairTask(config, rank, world_size)
    if config.task == "words":
        from rnnkit.training.task_words import WordTask

        return WordTask(config, rank, world_size)
    from rnnkit.training.task_synthetic import SYNTHETIC

    return SYNTHETIC[config.task](config, rank, world_size)
