"""``rnnkit diagnose``: how far back in time does the gradient reach? Elman against LSTM and GRU.

Each cell is measured at initialisation, trained on the task with its default recipe (until
solved, or ``--steps``), and measured again. The figure is the norm of the gradient that the
task's long-range prediction sends back to each earlier step's state, against the distance back
in time (log scale): ``<out>/gradient_flow.png``, the numbers in ``<out>/gradient_flow.json``,
and a table of the norms at distances 1 and 10.

Given a run folder (``rnnkit diagnose RUN`` or ``--run RUN``), it measures that run's trained
checkpoint instead, on the run's own task, and writes into ``RUN/diagnose`` unless ``--out`` says.
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
  rnnkit diagnose runs/embedded-reber               # a trained run's checkpoint, on its own task
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    from rnnkit.training.diagnose import TASKS

    parser = subparsers.add_parser("diagnose", help="plot the gradient norm against the distance back in time",
                                   description=__doc__.split("\n\n", 1)[1], epilog=EXAMPLES,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="?", type=Path, default=None, metavar="RUN",
                        help="a run folder (or its checkpoint/ folder): measure its trained model instead")
    parser.add_argument("--run", dest="run_flag", type=Path, default=None, metavar="RUN", help="the same as RUN")
    parser.add_argument("--task", choices=TASKS, default=None, help="the task (default: embedded-reber)")
    parser.add_argument("--cells", default=None, metavar="LIST", help="comma-separated cells (default elman,lstm,gru)")
    parser.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    parser.add_argument("--steps", type=positive_int, default=None, metavar="N",
                        help="training steps per cell (default: the task's budget; stops when solved)")
    parser.add_argument("--sequences", type=positive_int, default=200, metavar="N",
                        help="held-out sequences the gradients are averaged over (default 200)")
    parser.add_argument("--seq-len", type=positive_int, default=None, metavar="T",
                        help="adding task: sequence length (default 50)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="folder for the runs, gradient_flow.png and gradient_flow.json (default runs/diagnose; "
                             "RUN/diagnose with a run)")
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    add_json_argument(parser)
    return parser


def _run_folder(args: argparse.Namespace) -> int:
    """``rnnkit diagnose RUN``: the run's checkpoint on its own task."""
    from rnnkit.training.diagnose import format_table
    from rnnkit.training.diagnose_run import diagnose_run

    if args.run is not None and args.run_flag is not None and args.run != args.run_flag:
        raise CLIError("RUN: expected one run folder, but both RUN and --run were given. Fix: pass only one")
    run = args.run if args.run is not None else args.run_flag
    given = [flag for flag, value in (("--task", args.task), ("--cells", args.cells), ("--steps", args.steps), ("--seed", args.seed),
                                      ("--seq-len", args.seq_len)) if value is not None]
    if given:
        raise CLIError(f"{given[0]}: expected no training option with a run folder (the run's own task and model "
                       f"are measured), but {given[0]} was given. Fix: drop {given[0]}, or drop RUN")
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out: expected a folder (created if missing), but {str(args.out)!r} is a file. "
                       "Fix: pass a folder path")
    check_writable_file(args.json)
    with user_errors({"run": "RUN", "sequences": "--sequences"}):
        result = diagnose_run(run, sequences=args.sequences, out=args.out)
    write_json(args.json, result)
    if str(args.json) != "-":
        print(format_table(result))
        print(f"\nplot: {result['plot']}; figures: {result['json']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from rnnkit.training.diagnose import DiagnoseConfig, diagnose, format_table

    if args.run is not None or args.run_flag is not None:
        return _run_folder(args)
    args.task = args.task or "embedded-reber"
    args.cells = args.cells or "elman,lstm,gru"
    args.seq_len = args.seq_len or 50
    args.seed = 0 if args.seed is None else args.seed
    args.out = args.out or Path("runs/diagnose")
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
