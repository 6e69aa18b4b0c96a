"""``rnnkit diagnose``: how far back in time does the gradient reach? Elman against LSTM and GRU.

Each cell is measured at initialisation, trained on the task with its default recipe (until
solved, or ``--steps``), and measured again. The figure is the norm of the gradient that the
task's long-range prediction sends back to each earlier step's state, against the distance back
in time (log scale): ``<out>/gradient_flow.png``, the numbers in ``<out>/gradient_flow.json``,
and a table of the norms at distances 1 and 10.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rnnkit.cli.common import CLIError, add_json_argument, check_writable_file, positive_int, user_errors, write_json

__all__ = ["add_parser", "run"]

EXAMPLES = """examples:
  rnnkit diagnose                                   # Elman, LSTM, GRU on the embedded Reber grammar
  rnnkit diagnose --task adding --seq-len 50 --steps 300
  rnnkit diagnose --cells elman,lstm --json flow.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rnnkit.training.diagnose import TASKS

    parser = subparsers.add_parser("diagnose", help="plot the gradient norm against the distance back in time",
                                   description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=TASKS, default="embedded-reber", help="the task (default: embedded-reber)")
    parser.add_argument("--cells", default="elman,lstm,gru", metavar="LIST", help="comma-separated cells")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="training steps per cell (default: the task's budget; stops when solved)")
    parser.add_argument("--sequences", type=positive_int, default=200, metavar="N",
                        help="held-out sequences the gradients are averaged over (default 200)")
    parser.add_argument("--seq-len", type=positive_int, default=50, metavar="T",
                        help="adding task: sequence length (default 50)")
    parser.add_argument("--out", type=Path, default=Path("runs/diagnose"), metavar="DIR",
                        help="folder for the runs, gradient_flow.png and gradient_flow.json (default runs/diagnose)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    add_json_argument(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from rnnkit.training.diagnose import DiagnoseConfig, diagnose, format_table

    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out: expected a folder (created if missing), but {str(args.out)!r} is a file. "
                       "Fix: pass a folder path")
    check_writable_file(args.json)
    from rnnkit.training.run_dir import runs_under

    earlier = runs_under(args.out)
    if earlier:  # a new diagnosis never replaces the runs of an earlier one
        raise CLIError(f"--out: expected a folder without earlier runs, but {str(args.out)!r} holds {len(earlier)} "
                       f"(e.g. {earlier[0]}). Fix: pass another --out, or move or delete that folder")
    cells = tuple(c.strip() for c in args.cells.split(",") if c.strip())
    with user_errors({"cells": "--cells", "sequences": "--sequences", "cell": "--cells"}):
        config = DiagnoseConfig(task=args.task, cells=cells, seed=args.seed, steps=args.steps,
                                sequences=args.sequences, seq_len=args.seq_len, out=str(args.out))
        from rnnkit.training.config import make_config

        for cell in cells:  # every cell must be valid before the first run starts
            make_config(config.task, "modern", {"cell": cell})
    result = diagnose(config, progress=not args.quiet)
    write_json(args.json, result)
    if str(args.json) != "-":
        print(format_table(result))
        print(f"\nplot: {result['plot']}; figures: {result['json']}")
    return 0
