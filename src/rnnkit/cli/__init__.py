"""The ``rnnkit`` command line: ``rnnkit train``, ``compare``, ``eval``, ``info``.

Each subcommand is a module of this package with ``add_parser(subparsers)`` and
``run(args) -> int``, listed once in ``SUBCOMMANDS``. Subcommands fill the same config
dataclasses as the Python API (``rnnkit.training.TrainConfig``) and import torch only when
they run, so ``rnnkit --help`` is quick. Bad input prints one line on stderr and exits with 2;
an interrupted run exits with 130 after writing its checkpoint.

Example:
    >>> main(["info", "no/such/folder"])  # doctest: +SKIP
    2
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from rnnkit.cli.common import CLIError, Parser, one_line

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

SUBCOMMANDS = ("train", "compare", "evaluate", "info", "sample", "diagnose")  # modules of rnnkit.cli, in help order

_DESCRIPTION = """Recurrent neural networks on PyTorch: train, compare, evaluate and inspect.

  rnnkit train                          the main job: an LSTM learns the embedded Reber grammar
  rnnkit train --task text --data shakespeare.txt --time-budget 10m
  rnnkit compare --cells elman,lstm,gru --seeds 3
  rnnkit eval runs/embedded-reber       score a run's checkpoint on held-out data
  rnnkit info runs/embedded-reber       config, parameter count, training history
"""


def build_parser() -> Parser:
    """The top-level parser with one subparser per module in ``SUBCOMMANDS``."""
    import argparse

    parser = Parser(prog="rnnkit", description=_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    from rnnkit import __version__

    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    parser.set_defaults(_commands=subparsers.choices)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"rnnkit.cli.{name}")
        except ModuleNotFoundError as error:
            if error.name == f"rnnkit.cli.{name}":  # a subcommand not shipped in this checkout (e.g. sample)
                continue
            raise
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``rnnkit`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if getattr(args, "_run", None) is None:
            raise CLIError(f"rnnkit: error: choose a command: {', '.join(args._commands)} (see rnnkit --help)")
        return int(args._run(args))
    except CLIError as error:
        print(one_line(str(error)), file=sys.stderr)
        return 2
    except SystemExit as exit_:  # --help and --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except KeyboardInterrupt:
        print("rnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
