"""Every user error is one short line with a fix that exists; ``docs/errors.md`` is this table.

Each case below feeds one bad input to the library or to the ``rnnkit`` command and records
the message a user sees. The tests check that every message is one line of at most
``MAX_LENGTH`` characters, that it carries a fix (``Fix: ...``, or argparse's pointer to
``--help``), that a CLI fix names only flags the subcommand really has and no Python argument,
and that ``docs/errors.md`` holds exactly the table these cases produce today.

Regenerate the page after changing a message:

    python tests/test_error_table.py > docs/errors.md
"""
from __future__ import annotations

import contextlib
import io
import re
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

MAX_LENGTH = 400  # characters of one message
DOC = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_PYTHON_ARGUMENT = re.compile(r"\b[a-z_]+=(?!\S*/)")  # keyword syntax such as unknown="unk" or extensions=(...)


@dataclass(frozen=True)
class Case:
    where: str  # "library" or "CLI"
    what: str  # the bad input, as a user would describe it
    run: Callable[[Path], object]  # raises (library) or returns the CLI's stderr
    command: str = ""  # CLI: the subcommand whose flags a fix may name


def _raises(call: Callable[[], object]) -> str:
    try:
        call()
    except (ValueError, TypeError, OSError) as error:  # the library's user errors
        return str(error)
    raise AssertionError("no error raised")


def _cli(*argv: str) -> Callable[[Path], str]:
    def run(folder: Path) -> str:
        from rnnkit.cli import main

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main([a.replace("{tmp}", str(folder)) for a in argv])
        assert code == 2, f"exit code {code}: {err.getvalue()}"
        return err.getvalue().strip()
    return run


def _lib(make: Callable[[Path], Callable[[], object]]) -> Callable[[Path], str]:
    return lambda folder: _raises(make(folder))


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _layer():
    from rnnkit.layers import LSTM

    return LSTM(4, 8)


def _fixtures(folder: Path) -> None:
    """The files and the small text model the cases read (made once per table)."""
    _write(folder, "tiny.txt", b"ab\n")
    _write(folder, "utf16.txt", "to be or not to be\n".encode("utf-16"))
    _write(folder, "utf16-nobom.txt", "to be or not to be\n".encode("utf-16-le"))
    _write(folder, "latin1.txt", "café au lait\n".encode("latin-1"))
    _write(folder, "empty.txt", b"")
    _write(folder, "docs/readme.md", b"# not a .txt file\n")
    _write(folder, "small.txt", b"the cat sat on the mat\n" * 40)
    _write(folder, "other.txt", b"the dog sat on the log\n")
    _write(folder, "bad-words.txt", b"BTXSE\nBTTTE\n")
    from rnnkit.cli import main

    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--task", "text", "--data", str(folder / "small.txt"), "--steps", "2", "--hidden", "8",
                     "--layers", "1", "--embedding", "8", "--batch-size", "2", "--bptt", "8", "--threads", "1",
                     "--no-plot", "--no-tensorboard", "--quiet", "--out", str(folder / "lm")]) == 0
        assert main(["train", "--task", "reber", "--steps", "2", "--hidden", "8", "--eval-size", "10", "--no-plot",
                     "--no-tensorboard", "--quiet", "--out", str(folder / "reber")]) == 0


def _cases() -> list[Case]:
    from rnnkit.data import reber
    from rnnkit.data.text import CharCorpus, read_text, split
    from rnnkit.data.vocab import Vocab
    from rnnkit.training.config import TrainConfig, make_config, parse_duration

    return [
        Case("library", "a NumPy array passed to a layer", _lib(lambda f: lambda: _layer()(np.random.rand(300, 50, 4)))),
        Case("library", "int64 features passed to a float32 layer",
             _lib(lambda f: lambda: _layer()(torch.ones(2, 5, 4, dtype=torch.int64)))),
        Case("library", "a (T, F) tensor without a batch dimension", _lib(lambda f: lambda: _layer()(torch.ones(5, 4)))),
        Case("library", "5 features into a layer built for 4", _lib(lambda f: lambda: _layer()(torch.ones(2, 3, 5)))),
        Case("library", "a list of 1,000 numbers passed to a layer", _lib(lambda f: lambda: _layer()(list(range(1000))))),
        Case("library", "encoding a character the vocabulary lacks", _lib(lambda f: lambda: Vocab.build("abc").encode("abd"))),
        Case("library", "decoding ids beyond the vocabulary", _lib(lambda f: lambda: Vocab.build("abc").decode([0, 7]))),
        Case("library", "a UTF-16 file with a byte-order mark", _lib(lambda f: lambda: read_text(f / "utf16.txt"))),
        Case("library", "a UTF-16 file without a byte-order mark",
             _lib(lambda f: lambda: read_text(f / "utf16-nobom.txt"))),
        Case("library", "a Latin-1 file", _lib(lambda f: lambda: read_text(f / "latin1.txt"))),
        Case("library", "a path that does not exist", _lib(lambda f: lambda: read_text(f / "missing.txt"))),
        Case("library", "an empty file", _lib(lambda f: lambda: read_text(f / "empty.txt"))),
        Case("library", "a folder without .txt files", _lib(lambda f: lambda: read_text(f / "docs"))),
        Case("library", "a validation fraction of 1.5", _lib(lambda f: lambda: split("abcdef", 1.5))),
        Case("library", "a 3-character text for a language model",
             _lib(lambda f: lambda: _text_task(make_config("text", overrides={"batch_size": 1}), "ab\n"))),
        Case("library", "a 10,000-symbol word that is not Reber", _lib(lambda f: lambda: reber.encode(["B" * 10_000]))),
        Case("library", "a number instead of a Reber word", _lib(lambda f: lambda: reber.in_grammar(123))),
        Case("library", "zero Reber words", _lib(lambda f: lambda: reber.dataset(0, seed=0))),
        Case("library", "a misspelt config field", _lib(lambda f: lambda: make_config("text", overrides={"hiden_size": 8}))),
        Case("library", "a negative learning rate", _lib(lambda f: lambda: make_config("text", overrides={"lr": -1.0}))),
        Case("library", "a config without any budget",
             _lib(lambda f: lambda: TrainConfig(steps=None, epochs=None, time_budget=None))),
        Case("library", "a duration in words", _lib(lambda f: lambda: parse_duration("ten minutes"))),
        Case("library", "a corpus of an empty string", _lib(lambda f: lambda: CharCorpus.from_string(""))),
        Case("library", "loading a checkpoint folder that does not exist",
             _lib(lambda f: lambda: __import__("rnnkit").load(str(f / "nowhere")))),
        Case("CLI", "a 3-character text with --batch-size 1 (was a ZeroDivisionError)",
             _cli("train", "--task", "text", "--data", "{tmp}/tiny.txt", "--batch-size", "1"), command="train"),
        Case("CLI", "a UTF-16 training text", _cli("train", "--task", "text", "--data", "{tmp}/utf16.txt"), command="train"),
        Case("CLI", "a training folder without .txt files", _cli("train", "--task", "text", "--data", "{tmp}/docs"), command="train"),
        Case("CLI", "a training text that does not exist",
             _cli("train", "--task", "text", "--data", "{tmp}/missing.txt"), command="train"),
        Case("CLI", "--data for a task that makes its own data", _cli("train", "--task", "reber", "--data", "x.txt"), command="train"),
        Case("CLI", "--epochs for the Reber grammar", _cli("train", "--task", "reber", "--epochs", "2"), command="train"),
        Case("CLI", "--hidden 0", _cli("train", "--hidden", "0"), command="train"),
        Case("CLI", "a time budget in words", _cli("train", "--time-budget", "tenminutes"), command="train"),
        Case("CLI", "eval --data with a character the model never saw",
             _cli("eval", "{tmp}/lm", "--data", "{tmp}/other.txt"), command="eval"),
        Case("CLI", "eval --data with a word outside the grammar",
             _cli("eval", "{tmp}/reber", "--data", "{tmp}/bad-words.txt"), command="eval"),
        Case("CLI", "eval of a folder that holds no checkpoint", _cli("eval", "{tmp}/docs"), command="eval"),
        Case("CLI", "sample from a text model with --constrained", _cli("sample", "{tmp}/lm", "--constrained"), command="sample"),
        Case("CLI", "sample with a prompt of unseen characters", _cli("sample", "{tmp}/lm", "--prompt", "XYZ"), command="sample"),
        Case("CLI", "no command", _cli()),
    ]


def _text_task(config, text: str):
    from rnnkit.training.task_text import TextTask

    return TextTask(config, text=text)


def _messages() -> list[tuple[Case, str]]:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _fixtures(folder)
        return [(case, " ".join(str(case.run(folder)).replace(str(folder), "<tmp>").split()))
                for case in _cases()]


@pytest.fixture(scope="module")
def messages() -> list[tuple[Case, str]]:
    return _messages()


def _options() -> dict[str, set[str]]:
    from rnnkit.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if hasattr(a, "choices") and isinstance(a.choices, dict))
    top = {o for a in parser._actions for o in a.option_strings}
    return {name: top | {o for a in sub._actions for o in a.option_strings} for name, sub in subparsers.choices.items()}


def table(messages: list[tuple[Case, str]]) -> str:
    lines = ["# Error messages", "",
             "Every bad input a user can give gets one line: the argument, what was expected, what was "
             "received, and a fix that exists where the error happened (a flag for the `rnnkit` command, "
             "an argument for the library). This table is generated by `tests/test_error_table.py`, "
             "which also checks that it is up to date (`python tests/test_error_table.py > docs/errors.md`).",
             "", "| # | where | bad input | message |", "|---|---|---|---|"]
    for number, (case, message) in enumerate(messages, 1):
        cell = message.replace("|", "\\|")
        lines.append(f"| {number} | {case.where} | {case.what} | `{cell}` |" if "`" not in cell
                     else f"| {number} | {case.where} | {case.what} | {cell} |")
    return "\n".join(lines) + "\n"


def test_there_are_at_least_thirty_cases_across_library_and_cli(messages) -> None:
    assert len(messages) >= 30
    assert {case.where for case, _ in messages} == {"library", "CLI"}


def test_every_message_is_one_short_line_with_a_fix(messages) -> None:
    for case, message in messages:
        assert "\n" not in message and "Traceback" not in message, case.what
        assert 0 < len(message) <= MAX_LENGTH, (case.what, len(message))
        assert "Fix: " in message or "--help)" in message, (case.what, message)


def test_every_cli_fix_names_only_real_flags(messages) -> None:
    options = _options()
    for case, message in messages:
        if case.where != "CLI":
            continue
        fix = message.partition("Fix: ")[2]
        allowed = options[case.command] if case.command else set().union(*options.values())
        assert set(_FLAG.findall(fix)) <= allowed, (case.what, set(_FLAG.findall(fix)) - allowed)
        assert not _PYTHON_ARGUMENT.search(fix), (case.what, fix)  # no Python keyword arguments in a CLI fix


def test_messages_the_issue_named(messages) -> None:
    by_what = {case.what: message for case, message in messages}
    assert len(by_what["a NumPy array passed to a layer"]) < 200  # was 6,663 characters on 123 lines
    assert ".to(torch.int64)" not in by_what["int64 features passed to a float32 layer"]
    assert "iconv -f latin1" not in by_what["a UTF-16 file with a byte-order mark"]
    assert "UTF-16" in by_what["a UTF-16 training text"]
    assert "--unk" in by_what["eval --data with a character the model never saw"]
    assert "ZeroDivisionError" not in by_what["a 3-character text with --batch-size 1 (was a ZeroDivisionError)"]
    for message in by_what.values():
        for wrong in ("val_fraction", "extensions=", 'unknown="unk"'):
            assert not (wrong in message and message.startswith("--")), message


def test_docs_errors_md_is_the_generated_table(messages) -> None:
    assert DOC.read_text(encoding="utf-8") == table(messages), "regenerate: python tests/test_error_table.py > docs/errors.md"


if __name__ == "__main__":
    sys.stdout.write(table(_messages()))
