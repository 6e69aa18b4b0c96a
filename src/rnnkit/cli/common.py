"""Shared pieces of the ``rnnkit`` subcommands: the usage error, argument types, JSON output.

Bad input never shows a traceback: an argument type or a check raises :class:`CLIError`, and
``rnnkit.cli.main`` prints it as one line on stderr and returns exit code 2.

Example:
    >>> positive_int("64")
    64
    >>> duration("1h30m")
    5400.0
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

__all__ = ["CLIError", "Parser", "add_json_argument", "check_writable_file", "closed_probability", "duration",
           "non_negative_int", "one_line", "positive_float", "positive_int", "probability", "user_errors", "write_json"]


class CLIError(Exception):
    """Bad command-line input: printed as one line on stderr, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``rnnkit train: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise CLIError(f"{self.prog}: error: {message} (see {self.prog} --help)")


def one_line(text: str) -> str:
    """``text`` with its lines joined, for a one-line error message."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def positive_int(text: str) -> int:
    """An argparse type: an int >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """An argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """An argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def probability(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}")
    return value


def closed_probability(text: str) -> float:
    """An argparse type: a number in [0, 1] (zoneout: p = 1 keeps the initial state)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def duration(text: str) -> float:
    """An argparse type: a duration such as 90s, 10m, 1h30m, 1.5h or plain seconds."""
    from rnnkit.training.config import parse_duration

    try:
        return parse_duration(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a duration such as 90s, 10m, 1h30m, 1.5h or plain seconds, "
                                         f"got {text!r}") from None


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="PATH", type=Path, default=None,
                        help="also write a machine-readable summary to PATH ('-' for stdout)")


def check_writable_file(path: Path | None, flag: str = "--json") -> None:
    """CLIError unless ``path`` can be written as a file (its folder exists or can be made; not a folder)."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        raise CLIError(f"{flag}: expected a file path, but {str(path)!r} is a folder. Fix: name a file, "
                       f"e.g. {flag} {path / 'summary.json'}")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise CLIError(f"{flag}: cannot create {str(path)!r}: {parent} is not a writable folder. Fix: pick another path")


def write_json(path: Path | None, data: Any) -> None:
    """Write ``data`` as JSON to ``path`` ('-' is stdout); no-op when ``path`` is None."""
    if path is None:
        return
    text = json.dumps(data, indent=2, ensure_ascii=False, allow_nan=True) + "\n"
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def user_errors(rename: dict[str, str] | None = None) -> Iterator[None]:
    """Turn the ValueErrors (bad_argument, CheckpointError) and OSErrors of input preparation into CLIError.

    ``rename`` maps the argument a message starts with (``"hidden_size: ..."``) to the flag the user
    typed (``"--hidden: ..."``); a fix given in flags (``BadArgument.cli_fix``) replaces the
    library's, which may name Python arguments that have no flag.
    """
    try:
        yield
    except (ValueError, OSError) as error:
        text = one_line(str(error))
        cli_fix = getattr(error, "cli_fix", None)
        if cli_fix:  # the library's fix names Python arguments; say it in flags
            text = text.rpartition(" Fix: ")[0] + f" Fix: {cli_fix}"
        head, sep, rest = text.partition(": ")
        if sep and rename and head in rename:
            text = f"{rename[head]}: {rest}"
        raise CLIError(text) from error
