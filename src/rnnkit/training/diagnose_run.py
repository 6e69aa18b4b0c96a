"""``rnnkit diagnose RUN``: the gradient-flow curve of a trained run, on its own task.

The run's checkpoint is verified and rebuilt (``rnnkit.checkpoint.load_checkpoint``: every
file's SHA-256 against the manifest), its training config read from the checkpoint's metadata,
and the model's gradient norm against the distance back in time measured on the task's held-out
probe sequences (:func:`rnnkit.training.diagnose.gradient_flow`), as ``rnnkit diagnose`` does
for fresh cells: ``gradient_flow.png``, ``gradient_flow.json`` and the same table.

Example:
    >>> import tempfile
    >>> from rnnkit.training.diagnose import DiagnoseConfig, diagnose
    >>> folder = tempfile.mkdtemp()
    >>> _ = diagnose(DiagnoseConfig(cells=("gru",), steps=2, sequences=10, out=folder), progress=False)
    >>> result = diagnose_run(f"{folder}/gru", sequences=10, out=f"{folder}/again")
    >>> [(c["cell"], c["moment"]) for c in result["curves"]]
    [('gru', 'checkpoint')]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rnnkit.checkpoint import CheckpointError
from rnnkit.checkpoint.runs import checkpoint_folder
from rnnkit.errors import bad_argument
from rnnkit.training.diagnose import TASKS, _ratio, gradient_flow, plot_flow

__all__ = ["diagnose_run"]


def _steps(run: Path) -> int | None:
    """Training steps from the run's summary.json, when there is one."""
    try:
        steps = json.loads((run / "summary.json").read_text()).get("steps")
    except (OSError, ValueError, AttributeError):
        return None
    return steps if isinstance(steps, int) else None


def diagnose_run(run: str | os.PathLike[str], *, sequences: int = 200, out: str | os.PathLike[str] | None = None,
                 device: str = "cpu") -> dict[str, Any]:
    """Measure the gradient flow of the trained model in ``run`` (a run folder or its checkpoint folder).

    Writes ``gradient_flow.png`` and ``gradient_flow.json`` into ``out`` (default ``<run>/diagnose``)
    and returns the figures. CheckpointError for a folder that holds no valid checkpoint; a
    ValueError for a run whose task has no gradient probe (``TASKS`` lists those that do).
    """
    from rnnkit.checkpoint import load_checkpoint
    from rnnkit.training.records import write_json_atomic
    from rnnkit.training.run_state import config_from_metadata

    path = Path(run)
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a run folder (rnnkit train --out) or its checkpoint/ folder, but "
                              "it is not a folder. Fix: pass the folder the training run wrote")
    folder = checkpoint_folder(path)
    if not (folder / "manifest.json").is_file():
        raise CheckpointError(f"{path}: expected a run folder (holding checkpoint/manifest.json) or a checkpoint "
                              "folder, but it holds neither. Fix: pass the folder rnnkit train --out wrote")
    ckpt = load_checkpoint(folder, device=device)  # verified: sizes and SHA-256 of every file
    config = config_from_metadata(ckpt.metadata, ckpt.path)
    if config.task not in TASKS:
        raise bad_argument("run", f"a run on a task with a gradient probe ({', '.join(TASKS)})",
                           f"a {config.task!r} run", "diagnose a Reber, embedded-Reber or adding run")
    if sequences < 1:
        raise bad_argument("sequences", "a positive int", sequences, "use e.g. sequences=200")
    flow = gradient_flow(ckpt.model, config.task, sequences, config.seq_len)
    run_dir = ckpt.path.parent if folder != path else path
    curve = {"cell": config.cell, "moment": "checkpoint", "distance": list(flow), "norm": list(flow.values()),
             "ratio_10_to_1": _ratio(flow)}
    target = Path(out) if out is not None else run_dir / "diagnose"
    target.mkdir(parents=True, exist_ok=True)
    plot = plot_flow([curve], target / "gradient_flow.png", config.task)
    result = {"config": {"run": str(path), "task": config.task, "cell": config.cell, "sequences": sequences,
                         "seq_len": config.seq_len if config.task == "adding" else None},
              "curves": [curve],
              "runs": [{"cell": config.cell, "run_dir": str(run_dir), "checkpoint": str(ckpt.path),
                        "steps": _steps(run_dir)}],
              "plot": str(plot), "json": str(target / "gradient_flow.json")}
    write_json_atomic(target / "gradient_flow.json", result)
    return result
