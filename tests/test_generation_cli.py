"""``rnnkit sample``: streaming, the JSON summary, and one-line errors with exit code 2 (acceptance 5).

The oracle for what the CLI prints and writes is the Python API run with the same options:
the CLI fills the same GenerationConfig, so both must agree exactly.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import rnnkit
from rnnkit.cli import main
from rnnkit.data import reber
from rnnkit.data.vocab import Vocab
from rnnkit.generation import from_checkpoint
from rnnkit.models import (ClassifierConfig, LanguageModel, LanguageModelConfig, RNNConfig, SequenceClassifier,
                           SequenceTagger, TaggerConfig)

TEXT = "to be or not to be, that is the question\n"


def run_cli(argv: list[str]) -> int:
    """``rnnkit <argv>``, in process, through the real entry point."""
    return main(argv)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    vocab = Vocab.build(TEXT)
    lm = LanguageModel(LanguageModelConfig(vocab_size=len(vocab), embedding_size=8, rnn=RNNConfig(hidden_size=16)))
    tagger = SequenceTagger(TaggerConfig(vocab_size=7, rnn=RNNConfig(hidden_size=8)))
    clf = SequenceClassifier(ClassifierConfig(input_size=3, num_classes=2))
    return {
        "text": rnnkit.save(lm, root / "text", vocab=vocab.to_json(), metadata={"task": "text"}),
        "reber": rnnkit.save(tagger, root / "reber", metadata={"task": "reber"}),
        "bare-tagger": rnnkit.save(tagger, root / "bare-tagger"),
        "copy-tagger": rnnkit.save(tagger, root / "copy", metadata={"task": "copy"}),
        "classifier": rnnkit.save(clf, root / "classifier"),
        "no-vocab": rnnkit.save(lm, root / "no-vocab", metadata={"task": "text"}),
    }


def test_text_streams_the_api_sample_and_writes_json(checkpoints: dict[str, Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "out" / "s.json"
    assert run_cli(["sample", str(checkpoints["text"]), "--prompt", "to be", "--length", "40", "--temperature", "0.8",
                    "--top-k", "5", "--seed", "3", "--json", str(path)]) == 0
    generator, _ = from_checkpoint(checkpoints["text"])
    want = generator.generate("to be", max_length=40, temperature=0.8, top_k=5, seed=3)
    assert capsys.readouterr().out == want.texts[0] + "\n"
    summary = json.loads(path.read_text())
    assert [s["text"] for s in summary["samples"]] == want.texts
    assert summary["samples"][0]["logprob"] == pytest.approx(want.logprobs[0])
    assert "valid_fraction" not in summary and summary["seed"] == 3


def test_text_several_samples_greedy_and_beam(checkpoints: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    generator, _ = from_checkpoint(checkpoints["text"])
    assert run_cli(["sample", str(checkpoints["text"]), "--prompt", "not", "--length", "12", "--num", "3",
                    "--top-p", "0.9", "--seed", "1"]) == 0
    want = generator.generate("not", max_length=12, num_samples=3, top_p=0.9, seed=1)
    out = capsys.readouterr().out
    assert out == "".join(f"--- sample {i + 1}\n{text}\n" for i, text in enumerate(want.texts))
    assert run_cli(["sample", str(checkpoints["text"]), "--prompt", "not", "--length", "12", "--greedy"]) == 0
    assert capsys.readouterr().out == generator.generate("not", max_length=12, greedy=True).texts[0] + "\n"
    assert run_cli(["sample", str(checkpoints["text"]), "--prompt", "to", "--length", "6", "--beam", "4",
                    "--num", "2"]) == 0
    want = generator.generate("to", max_length=6, beam=4, num_samples=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[1::2] == want.texts
    assert lines[0] == f"--- hypothesis 1: logprob {want.logprobs[0]:.4f}, score {want.scores[0]:.4f}"


def test_reber_words_with_verdicts_and_the_valid_share(checkpoints: dict[str, Path], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "r.json"
    assert run_cli(["sample", str(checkpoints["reber"]), "--num", "50", "--seed", "0", "--json", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    summary = json.loads(path.read_text())
    words = [s["text"] for s in summary["samples"]]
    valid = [reber.in_grammar(w) for w in words]
    assert summary["valid_fraction"] == sum(valid) / 50 and [s["valid"] for s in summary["samples"]] == valid
    assert len(lines) == 51 and lines[-1] == f"valid: {sum(valid)} of 50 words ({2 * sum(valid):.1f}%)"
    assert sorted(lines[:-1]) == sorted(f"{w:<24} {'valid' if ok else 'INVALID'}" for w, ok in zip(words, valid))
    # the untrained model errs; the grammar mask makes every word valid
    assert run_cli(["sample", str(checkpoints["bare-tagger"]), "--grammar", "reber", "--num", "50", "--constrained",
                    "--json", str(path)]) == 0
    assert json.loads(path.read_text())["valid_fraction"] == 1.0
    assert capsys.readouterr().out.splitlines()[-1] == "valid: 50 of 50 words (100.0%)"


@pytest.mark.parametrize("argv,pattern", [
    (["--prompt", "to bX"], r"--prompt: .*'X' \(U\+0058\) at position 4 is not in it"),
    (["--temperature", "0"], r"--temperature: expected a finite number > 0.*--greedy"),
    (["--temperature", "-1"], r"--temperature: expected a finite number > 0"),
    (["--top-p", "0"], r"--top-p: expected None or a probability in \(0, 1\]"),
    (["--top-p", "1.5"], r"--top-p: expected None or a probability in \(0, 1\]"),
    (["--top-k", "0"], r"--top-k: expected None or an int >= 1"),
    (["--beam", "0"], r"--beam: expected None \(sampling\) or a beam width >= 1"),
    (["--beam", "2", "--num", "3"], r"--num: expected at most beam=2 hypotheses"),
    (["--greedy", "--temperature", "0.5"], r"--greedy: expected no sampling flags"),
    (["--constrained"], r"constrained: expected a Reber model"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_flags_fail_with_one_line_and_exit_2(checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                 argv: list[str], pattern: str) -> None:
    assert run_cli(["sample", str(checkpoints["text"]), *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing streamed before the error
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in captured.err
    assert re.search(pattern, lines[0]), lines[0]


@pytest.mark.parametrize("name,pattern", [
    ("classifier", r"checkpoint: expected a language model.*SequenceClassifier"),
    ("copy-tagger", r"checkpoint: expected a language model.*trained on task 'copy'"),
    ("bare-tagger", r"grammar: expected the Reber grammar this model learned.*--grammar reber"),
    ("no-vocab", r"checkpoint: expected a language model saved with its vocabulary"),
    ("missing", r"no such file or folder"),
])
def test_checkpoints_that_do_not_sample_fail_with_one_line(checkpoints: dict[str, Path], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str], name: str,
                                                           pattern: str) -> None:
    path = checkpoints.get(name, tmp_path / "missing")
    assert run_cli(["sample", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and re.search(pattern, err[0]), err


def test_json_to_stdout_and_quiet(checkpoints: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["sample", str(checkpoints["reber"]), "--num", "7", "--seed", "2", "--json", "-"]) == 0
    summary = json.loads(capsys.readouterr().out)  # stdout holds the JSON and nothing else
    assert len(summary["samples"]) == 7 and summary["task"] == "reber" and summary["seed"] == 2
    assert run_cli(["sample", str(checkpoints["reber"]), "--num", "7", "--seed", "2", "--quiet"]) == 0
    valid = sum(reber.in_grammar(s["text"]) for s in summary["samples"])
    assert capsys.readouterr().out == f"valid: {valid} of 7 words ({100 * valid / 7:.1f}%)\n"


def test_a_run_folder_and_the_installed_command(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    rnnkit.save(rnnkit.load(checkpoints["text"]), run_dir / "checkpoint",
                vocab=Vocab.build(TEXT).to_json(), metadata={"task": "text"})
    done = subprocess.run([sys.executable, "-m", "rnnkit.cli", "sample", str(run_dir), "--prompt", "to ",
                           "--length", "15", "--seed", "4"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    generator, _ = from_checkpoint(run_dir / "checkpoint")
    assert done.stdout == generator.generate("to ", max_length=15, seed=4).texts[0] + "\n"
    bad = subprocess.run([sys.executable, "-m", "rnnkit.cli", "sample", str(run_dir), "--top-p", "2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
