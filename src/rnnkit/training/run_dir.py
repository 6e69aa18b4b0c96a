"""Run folders are never lost or overwritten by accident.

A folder *holds a run* when it has a checkpoint (``checkpoint/manifest.json``), ``metrics.jsonl``
or ``summary.json``. A new run (not ``--resume``) whose folder holds a run:

- with the default folder (``--out`` not given, ``runs/<task>``) takes the first free name
  ``runs/<task>-2``, ``runs/<task>-3``, ... and says so: the user never named a folder, so a new
  one serves them best, and ``rnnkit eval runs/<task>`` keeps scoring the first run;
- with a folder the user named (``--out DIR``) is refused: one line, exit code 2, naming the fix
  (``--resume DIR`` to continue, ``--overwrite`` to replace, or another ``--out``). A script that
  named a folder reads from that folder afterwards, so silently writing elsewhere would mislead it;
- with ``overwrite=True`` (``--overwrite``) the old run's files are deleted first, on purpose.

``--resume`` continues a run in its own folder. Nothing else deletes a run.

Example:
    >>> import tempfile
    >>> from rnnkit.training.config import make_config
    >>> root = tempfile.mkdtemp()
    >>> (Path(root) / "runs" / "reber").mkdir(parents=True)
    >>> _ = (Path(root) / "runs" / "reber" / "summary.json").write_text("{}")
    >>> config = make_config("reber")
    >>> claimed, note = claim_run_dir(config, base=root)
    >>> claimed.run_dir, note.startswith("runs/reber holds a run")
    ('runs/reber-2', True)
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

from rnnkit.checkpoint.runs import is_run_dir
from rnnkit.errors import bad_argument
from rnnkit.training.config import TrainConfig

__all__ = ["RUN_FILES", "claim_run_dir", "clear_run", "holds_run", "runs_under"]

RUN_FILES = ("checkpoint", "metrics.jsonl", "summary.json", "curve.png", "tensorboard")  # what a run writes


def holds_run(path: str | os.PathLike[str]) -> bool:
    """True when the folder ``path`` holds a run (a checkpoint, metrics.jsonl or summary.json)."""
    p = Path(path)
    return p.is_dir() and (is_run_dir(p) or any((p / name).is_file() for name in ("metrics.jsonl", "summary.json")))


def clear_run(path: str | os.PathLike[str]) -> None:
    """Delete the files a run writes (``RUN_FILES``) from the folder ``path``; other files stay."""
    p = Path(path)
    for name in RUN_FILES:
        target = p / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()


def claim_run_dir(config: TrainConfig, *, overwrite: bool = False,
                  base: str | os.PathLike[str] | None = None) -> tuple[TrainConfig, str | None]:
    """The config of a new run, with ``out`` set to a folder that holds no run, and a note if it changed.

    ``base`` is the folder relative paths start from (default: the working folder). Raises
    ValueError (argument ``out``) when the folder named by ``config.out`` holds a run and
    ``overwrite`` is False.
    """
    root = Path(base) if base is not None else Path.cwd()
    folder = root / config.run_dir
    if not holds_run(folder):
        return config, None
    if overwrite:
        clear_run(folder)
        return config, f"{config.run_dir} held a run; --overwrite replaced it"
    if config.out is not None:
        raise bad_argument("out", "a folder that holds no run (a new run never replaces one)",
                           f"{config.out!r}, which holds a run",
                           f"continue it with --resume {config.out}, replace it with --overwrite, or pick another --out")
    n = 2
    while True:
        name = f"{config.run_dir}-{n}"
        try:
            (root / name).mkdir(parents=True, exist_ok=False)  # claims the name: a parallel run takes the next
        except FileExistsError:
            n += 1
            continue
        note = f"{config.run_dir} holds a run; this one goes to {name} (--out DIR to choose, --overwrite to replace)"
        return dataclasses.replace(config, out=name), note


def runs_under(path: str | os.PathLike[str], depth: int = 3) -> list[Path]:
    """The folders at most ``depth`` levels below ``path`` (itself included) that hold a run.

    ``rnnkit compare`` and ``rnnkit diagnose`` write many runs under one folder; they refuse a
    folder where this finds any, so an earlier comparison is never replaced.
    """
    root = Path(path)
    found, level = [], [root] if root.is_dir() else []
    for _ in range(depth + 1):
        found += [p for p in level if holds_run(p)]
        level = [child for p in level for child in sorted(p.iterdir()) if child.is_dir() and not child.is_symlink()]
    return found
