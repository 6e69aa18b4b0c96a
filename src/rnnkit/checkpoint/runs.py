"""Where a checkpoint sits in a run folder: ``<run>/checkpoint/``.

``rnnkit train`` writes its checkpoint into the ``checkpoint`` folder of its run folder; every
command that reads a model (``eval``, ``sample``, ``info``) accepts either folder.

Example:
    >>> import tempfile, rnnkit
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = rnnkit.save(rnnkit.GRU(2, 3), run / CHECKPOINT_DIR)
    >>> is_run_dir(run), checkpoint_folder(run) == checkpoint_folder(run / CHECKPOINT_DIR)
    (True, True)
"""
from __future__ import annotations

import os
from pathlib import Path

from rnnkit.checkpoint.manifest import MANIFEST

__all__ = ["CHECKPOINT_DIR", "checkpoint_folder", "is_run_dir"]

CHECKPOINT_DIR = "checkpoint"  # the checkpoint folder inside a run folder


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """True when ``path`` is a folder holding ``checkpoint/manifest.json``."""
    return (Path(path) / CHECKPOINT_DIR / MANIFEST).is_file()


def checkpoint_folder(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names: its ``checkpoint/`` if ``path`` is a run folder, else ``path``."""
    path = Path(path)
    return path / CHECKPOINT_DIR if is_run_dir(path) else path
