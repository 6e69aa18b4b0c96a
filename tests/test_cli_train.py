"""``rnnkit train``: the JSON summary, resume, and one-line errors with exit code 2 for bad input."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rnnkit.cli import main

TINY_REBER = ["--task", "reber", "--hidden", "8", "--steps", "12", "--eval-every", "6", "--eval-size", "40",
              "--no-plot", "--no-tensorboard", "--quiet"]
TEXT = "A cat sat on a mat. The mat was flat; the cat was fat. " * 30
REQUIRED = {"task", "cell", "checkpoint", "train_sequences", "train_tokens", "wall_seconds", "world_size", "metrics"}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def test_train_writes_the_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", *TINY_REBER, "--out", str(tmp_path / "run"), "--json",
                           str(tmp_path / "s.json"))
    assert code == 0, err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert REQUIRED <= set(summary)
    assert (summary["task"], summary["cell"], summary["world_size"]) == ("reber", "lstm", 1)
    assert summary["train_sequences"] == 12 * 16 and summary["checkpoint"] == str(tmp_path / "run" / "checkpoint")
    assert set(summary["metrics"]) == {"next_symbol_set_accuracy"}
    assert (tmp_path / "run" / "checkpoint" / "manifest.json").is_file()


def test_embedded_reber_json_has_long_range_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [a if a != "reber" else "embedded-reber" for a in TINY_REBER]
    code, out, err = run_cli(capsys, "train", *args, "--out", str(tmp_path), "--json", "-")
    assert code == 0, err
    assert set(json.loads(out)["metrics"]) == {"next_symbol_set_accuracy", "long_range_accuracy"}


def test_text_json_has_val_loss_and_bpc(tmp_path: Path, text_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, "train", "--task", "text", "--data", str(text_file), "--hidden", "16",
                           "--layers", "1", "--embedding", "8", "--batch-size", "2", "--bptt", "16", "--steps", "10",
                           "--eval-every", "5", "--threads", "1", "--no-plot", "--no-tensorboard", "--quiet",
                           "--out", str(tmp_path / "lm"), "--json", str(tmp_path / "lm.json"))
    assert code == 0, err
    metrics = json.loads((tmp_path / "lm.json").read_text())["metrics"]
    assert metrics["val_bpc"] == pytest.approx(metrics["val_loss"] / math.log(2))


def test_resume_continues_and_refuses_other_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    assert run_cli(capsys, "train", *TINY_REBER, "--out", str(run))[0] == 0
    code, out, err = run_cli(capsys, "train", "--resume", str(run), "--steps", "6", "--quiet", "--json", "-")
    assert code == 0, err
    summary = json.loads(out)  # --steps with --resume is more on top: 12 + 6
    assert summary["train_sequences"] == 18 * 16 and summary["task"] == "reber"
    assert "resuming" in err and "at step 12" in err and "6 more steps (to step 18)" in err
    code, _, err = run_cli(capsys, "train", "--resume", str(run), "--lr", "0.5")
    assert_usage_error(code, err, "--resume", "lr")


def test_the_summary_screen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "train", *[a for a in TINY_REBER if a != "--quiet"], "--out", str(tmp_path))
    assert code == 0
    for fragment in ("task", "reber", "parameters", "next_symbol_set_accuracy", "checkpoint", "metrics.jsonl"):
        assert fragment in out


@pytest.mark.parametrize("argv,fragments", [
    (["train", "--task", "tetris"], ["--task", "invalid choice: 'tetris'"]),
    (["train", "--cell", "rnn"], ["--cell", "invalid choice: 'rnn'"]),
    (["train", "--hidden", "-5"], ["--hidden", "expected a positive integer, got '-5'"]),
    (["train", "--batch-size", "0"], ["--batch-size", "expected a positive integer"]),
    (["train", "--time-budget", "ten minutes"], ["--time-budget", "expected a duration such as 90s"]),
    (["train", "--time-budget", "-3m"], ["--time-budget"]),
    (["train", "--bidirectional"], ["bidirectional", "embedded-reber"]),
    (["train", "--task", "text", "--data", "/no/such/file.txt"], ["--data", "does not exist"]),
    (["train", "--task", "sine", "--data", "x.txt"], ["data: expected None for task 'sine'"]),
    (["train", "--recipe", "seed001", "--task", "text"], ["recipe"]),
    (["frobnicate"], ["invalid choice: 'frobnicate'"]),
    ([], ["choose a command"]),
    (["compare", "--cells", "lstm,tcn"], ["cells"]),
    (["compare", "--recipe", "fancy"], ["recipe"]),
    (["info", "/no/such/run"], ["/no/such/run"]),
    (["eval", "/no/such/run"], ["/no/such/run"]),
])
def test_bad_input_is_one_line_and_exit_code_2(argv: list[str], fragments: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(capsys, *argv)
    assert_usage_error(code, err, *fragments)


def test_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9 au lait".encode("latin-1"))
    a_file = tmp_path / "file"
    a_file.write_text("x")
    not_a_run = tmp_path / "folder"
    not_a_run.mkdir()
    cases = [
        (["train", "--task", "text", "--data", str(empty)], ["empty file"]),
        (["train", "--task", "text", "--data", str(latin)], ["UTF-8", "byte offset 3"]),
        (["train", "--out", str(a_file)], ["--out", "is a file"]),
        (["train", "--resume", str(not_a_run)], ["resume", "checkpoint/manifest.json"]),
        (["train", "--resume", str(a_file)], ["resume", "a file"]),
        (["train", "--resume", str(tmp_path / "missing")], ["resume", "does not exist"]),
        (["train", "--json", str(tmp_path)], ["--json", "is a folder"]),
        (["info", str(not_a_run)], ["not an rnnkit checkpoint"]),
    ]
    for argv, fragments in cases:
        code, _, err = run_cli(capsys, *argv)
        assert_usage_error(code, err, *fragments)


@pytest.mark.parametrize("command", ["train", "compare", "eval", "info"])
def test_every_subcommand_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, command, "--help")
    assert code == 0
    assert "examples:" in out and f"rnnkit {command}" in out


def test_the_installed_entry_point(tmp_path: Path) -> None:
    exe = shutil.which("rnnkit")
    command = [exe] if exe else [sys.executable, "-m", "rnnkit.cli"]
    done = subprocess.run([*command, "train", *TINY_REBER, "--out", str(tmp_path / "r"), "--json",
                           str(tmp_path / "s.json")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert REQUIRED <= set(json.loads((tmp_path / "s.json").read_text()))
    bad = subprocess.run([*command, "train", "--cell", "transformer"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


@pytest.mark.parametrize("value, ok", [("1", True), ("1.0", True), ("0.999", True), ("0", True),
                                       ("1.5", False), ("-0.1", False)])
def test_zoneout_flag_takes_what_the_library_takes(value: str, ok: bool, text_file: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """--zoneout accepts [0, 1] like rnnkit.Regularisers(zoneout=) (p = 1 keeps the initial state)."""
    import rnnkit
    from rnnkit.cli import build_parser
    from rnnkit.cli.train import config_from_args

    argv = ["train", "--task", "text", "--data", str(text_file), "--zoneout", value]
    try:
        rnnkit.Regularisers(zoneout=float(value))
        library_ok = True
    except ValueError:
        library_ok = False
    assert library_ok == ok
    if ok:
        config, _ = config_from_args(build_parser().parse_args(argv))
        assert config.zoneout == float(value)
    else:
        code, _, err = run_cli(capsys, *argv)
        assert_usage_error(code, err, "--zoneout", "[0, 1]")
