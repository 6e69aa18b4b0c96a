"""``rnnkit compare``: train Elman, LSTM and GRU on the same task over several seeds; table and plot.

The default runs the modern recipe (Adam 1e-2, batch 16, hidden 64) on the embedded Reber
grammar, then the adding problem at a length of 100, where plain and gated cells part. ``--recipe
seed001`` uses seed 001's own setup instead (hidden 10, SGD lr 0.2, one word per step), and
``--recipe seed001,modern`` runs both. The figures are printed as Markdown tables, whatever
they show, and every learning curve goes into one plot, <out>/comparison.png.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rnnkit.cli.common import (CLIError, add_json_argument, check_writable_file, duration, positive_int, user_errors,
                               write_json)

__all__ = ["add_parser", "run"]

EXAMPLES = """examples:
  rnnkit compare                                         # embedded Reber (modern recipe) + adding, 3 seeds
  rnnkit compare --task embedded-reber --cells elman,lstm,gru --seeds 3
  rnnkit compare --recipe seed001,modern --long-lag copy --lag 100
  rnnkit compare --long-lag none --steps 500 --json compare.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rnnkit.training.config import TASKS

    parser = subparsers.add_parser("compare", help="train several cells over seeds and tabulate the figures",
                                   description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="embedded-reber", help="the main task (default: "
                                                                                 "embedded-reber)")
    parser.add_argument("--cells", default="elman,lstm,gru", metavar="LIST", help="comma-separated cells")
    parser.add_argument("--seeds", type=positive_int, default=3, metavar="N", help="seeds per cell (default 3)")
    parser.add_argument("--recipe", default="modern", metavar="LIST",
                        help="comma-separated recipes for the main task: modern (default), seed001")
    parser.add_argument("--long-lag", default="adding", metavar="TASK",
                        help="the long-lag task: adding (default), copy, or none")
    parser.add_argument("--lag", type=positive_int, default=100, metavar="T",
                        help="its sequence length (adding) or lag (copy), default 100")
    parser.add_argument("--long-lag-budget", type=duration, default=120.0, metavar="DURATION",
                        help="time budget of each long-lag run (default 2m)")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="step budget of each main-task run (default: the task's or recipe's)")
    parser.add_argument("--hidden", type=positive_int, default=None, metavar="N",
                        help="hidden units for the main task (default: the recipe's)")
    parser.add_argument("--out", type=Path, default=Path("runs/compare"), metavar="DIR",
                        help="folder for the runs and comparison.png (default runs/compare)")
    parser.add_argument("--quiet", action="store_true", help="print only the tables")
    add_json_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from rnnkit.training.compare import CompareConfig, compare_cells, format_table

    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out: expected a folder (created if missing), but {str(args.out)!r} is a file. "
                       "Fix: pass a folder path")
    check_writable_file(args.json)
    from rnnkit.training.run_dir import runs_under

    earlier = runs_under(args.out)
    if earlier:  # a new comparison never replaces the runs of an earlier one
        raise CLIError(f"--out: expected a folder without earlier runs, but {str(args.out)!r} holds {len(earlier)} "
                       f"(e.g. {earlier[0]}). Fix: pass another --out, or move or delete that folder")
    overrides = {k: v for k, v in (("steps", args.steps), ("hidden_size", args.hidden)) if v is not None}
    long_lag = None if args.long_lag.lower() == "none" else args.long_lag
    rename = {"cells": "--cells", "recipe": "--recipe", "long_lag": "--long-lag", "hidden_size": "--hidden",
              "steps": "--steps"}
    with user_errors(rename):
        config = CompareConfig(task=args.task, cells=tuple(c.strip() for c in args.cells.split(",") if c.strip()),
                               seeds=args.seeds, recipes=tuple(r.strip() for r in args.recipe.split(",") if r.strip()),
                               long_lag=long_lag, lag=args.lag, long_lag_budget=args.long_lag_budget,
                               overrides=overrides, out=str(args.out))
        from rnnkit.training.config import make_config

        for recipe in config.recipes:  # every run's config must be valid before the first one starts
            make_config(config.task, recipe, {**overrides, "cell": config.cells[0]})
    result = compare_cells(config, progress=not args.quiet)
    write_json(args.json, result)
    if str(args.json) != "-":
        for group in result["groups"]:
            print()
            print(format_table(group))
        print(f"\nlearning curves: {result['plot']}; all figures: {result['json']}")
    return 0
