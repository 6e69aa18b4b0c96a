"""Compare cells: train each (cell, seed) on a task under one or more recipes, tabulate, plot.

``compare_cells`` runs the ``Trainer`` once per (group, cell, seed), where a group is a recipe
on the main task (e.g. ``"embedded-reber, seed001"``) or the long-lag task. For each cell it
reports how many seeds solved the task, the median (and range) of training sequences the
solved runs needed (every sequence the optimiser saw until the evaluation that solved it), the
median final headline metric and the median wall time. Figures are whatever the runs give:
no cell is tuned to fail. Every run's folder is kept under ``out``; ``comparison.png`` holds all
learning curves (one panel per group, one colour per cell) and ``comparison.json`` all figures.

Example:
    >>> import tempfile
    >>> result = compare_cells(CompareConfig(task="reber", cells=("lstm",), seeds=1, long_lag=None,
    ...                        overrides={"steps": 20, "eval_size": 50}, out=tempfile.mkdtemp()), progress=False)
    >>> [row["cell"] for row in result["groups"][0]["rows"]]
    ['lstm']
"""
from __future__ import annotations

import statistics
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rnnkit.errors import bad_argument
from rnnkit.training.config import CELLS, RECIPES, REBER_TASKS, TASKS, make_config

__all__ = ["LONG_LAG_TASKS", "CompareConfig", "compare_cells", "format_table"]

LONG_LAG_TASKS = ("copy", "adding")


@dataclass(frozen=True)
class CompareConfig:
    """What ``rnnkit compare`` runs."""

    task: str = "embedded-reber"  # the main task
    cells: tuple[str, ...] = CELLS  # cells to compare
    seeds: int = 3  # seeds 0..seeds-1 per cell
    recipes: tuple[str, ...] = ("modern",)  # recipes for the main task, e.g. ("seed001", "modern")
    long_lag: str | None = "adding"  # the harder long-lag task run after the main one; None: skip it
    lag: int = 100  # its lag (copy) or length (adding)
    long_lag_budget: float = 120.0  # seconds per long-lag run (plus its step budget)
    overrides: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields for the main task's runs
    out: str = "runs/compare"  # where the runs, comparison.png and comparison.json go

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise bad_argument("task", f"one of {', '.join(TASKS)}", self.task, "pick e.g. embedded-reber")
        if not self.cells or any(c not in CELLS for c in self.cells):
            raise bad_argument("cells", f"a non-empty list of {', '.join(CELLS)}", ",".join(self.cells),
                               "pass e.g. --cells elman,lstm,gru")
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise bad_argument("seeds", "a positive number of seeds", self.seeds, "pass e.g. --seeds 3")
        if not self.recipes or any(r not in RECIPES for r in self.recipes):
            raise bad_argument("recipe", f"a list of {', '.join(RECIPES)}", ",".join(self.recipes),
                               "pass e.g. --recipe seed001,modern")
        if "seed001" in self.recipes and self.task not in REBER_TASKS:
            raise bad_argument("recipe", f"recipes for task {self.task!r}", "seed001 (a Reber recipe)",
                               "drop seed001 or use --task embedded-reber")
        if self.long_lag is not None and self.long_lag not in LONG_LAG_TASKS:
            raise bad_argument("long_lag", f"one of {', '.join(LONG_LAG_TASKS)} or none", self.long_lag,
                               "pass e.g. --long-lag copy")
        if isinstance(self.lag, bool) or not isinstance(self.lag, int) or self.lag < 2:
            raise bad_argument("lag", "an int >= 2", self.lag, "pass e.g. --lag 100")


def _median_range(values: list[float]) -> tuple[float | None, float | None, float | None]:
    if not values:
        return None, None, None
    return statistics.median(values), min(values), max(values)


def _row(cell: str, hidden: int, runs: list[dict[str, Any]], headline: str) -> dict[str, Any]:
    solved = [r for r in runs if r["solved"]]
    med, low, high = _median_range([r["train_sequences"] for r in solved])
    finals = [r["metrics"].get(headline) for r in runs if r["metrics"].get(headline) is not None]
    return {"cell": cell, "hidden_size": hidden, "seeds": len(runs), "solved": len(solved), "median_sequences_to_solve": med,
            "min_sequences_to_solve": low, "max_sequences_to_solve": high,
            "median_final_" + headline: statistics.median(finals) if finals else None,
            "median_wall_seconds": statistics.median(r["wall_seconds"] for r in runs), "runs": runs}


def compare_cells(config: CompareConfig, *, progress: bool = True,
                  report: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every (group, cell, seed); return ``{"groups": [...], "plot": path, "json": path}``."""
    from rnnkit.training.records import plot_comparison, write_json_atomic
    from rnnkit.training.tasks import make_task
    from rnnkit.training.trainer import Trainer

    say = report or (lambda text: print(text, file=sys.stderr, flush=True))
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    plans: list[tuple[str, str, str, dict[str, Any]]] = [  # (group, task, recipe, overrides)
        (f"{config.task}, {recipe} recipe", config.task, recipe, dict(config.overrides)) for recipe in config.recipes]
    if config.long_lag is not None:
        plans.append((f"{config.long_lag}, lag {config.lag}", config.long_lag, "modern",
                      {"seq_len": config.lag, "time_budget": config.long_lag_budget}))
    groups, curves, metric, x_label = [], {}, {}, {}
    for group, task_name, recipe, overrides in plans:
        rows, histories = [], {}
        headline = ""
        for cell in config.cells:
            runs = []
            for seed in range(config.seeds):
                folder = out / group.replace(", ", "-").replace(" ", "-") / f"{cell}-seed{seed}"
                run_config = make_config(task_name, recipe, {**overrides, "cell": cell, "seed": seed,
                                                             "out": str(folder), "plot": False, "tensorboard": False})
                task = make_task(run_config)
                headline = task.headline
                result = Trainer(run_config, task=task, progress=False).fit()
                s = result.summary
                runs.append({"seed": seed, "solved": bool(result.solved), "train_sequences": s["train_sequences"],
                             "steps": s["steps"], "wall_seconds": s["wall_seconds"], "metrics": s["metrics"],
                             "stopped": s["stopped"], "run_dir": str(folder)})
                histories.setdefault(cell, []).append(result.history)
                if progress:
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in s["metrics"].items())
                    say(f"{group}: {cell} seed {seed}: {'solved' if result.solved else 'not solved'} after "
                        f"{s['train_sequences']:,} sequences ({s['stopped']}, {s['wall_seconds']:.1f} s); {shown}")
            rows.append(_row(cell, run_config.hidden_size, runs, headline))
        baseline = make_task(make_config(task_name, recipe, {**overrides, "cell": config.cells[0]})).baseline() \
            if task_name != "text" else {}
        groups.append({"group": group, "task": task_name, "recipe": recipe, "headline": headline, "rows": rows,
                       "baseline": baseline, "settings": {k: v for k, v in {**RECIPES[recipe], **overrides}.items()}})
        curves[group], metric[group] = histories, headline
        x_label[group] = "training characters" if task_name == "text" else "training sequences"
    plot = plot_comparison(curves, metric, out / "comparison.png", x_label=x_label)
    result = {"config": {"task": config.task, "cells": list(config.cells), "seeds": config.seeds,
                         "recipes": list(config.recipes), "long_lag": config.long_lag, "lag": config.lag},
              "groups": groups, "plot": str(plot), "json": str(out / "comparison.json")}
    write_json_atomic(out / "comparison.json", result)
    return result


def _num(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.4g}"
    return f"{int(value):,}"


def format_table(group: dict[str, Any]) -> str:
    """A Markdown table of one group: cell, seeds solved, sequences to solve, final metric, wall time."""
    headline = group["headline"]
    lines = [f"{group['group']}",
             f"| model | seeds solved | median training sequences to solve (range) | median final {headline} "
             f"| median wall s |", "|---|---|---|---|---|"]
    for row in group["rows"]:
        med = row["median_sequences_to_solve"]
        span = "-" if med is None else (f"{_num(med)} ({_num(row['min_sequences_to_solve'])}"
                                         f"-{_num(row['max_sequences_to_solve'])})")
        lines.append(f"| {row['cell']} h{row['hidden_size']} | {row['solved']}/{row['seeds']} | {span} | "
                     f"{_num(row['median_final_' + headline])} | {row['median_wall_seconds']:.1f} |")
    if group.get("baseline"):
        lines.append("reference: " + ", ".join(f"{k} {v:.4g}" for k, v in group["baseline"].items()))
    return "\n".join(lines)
