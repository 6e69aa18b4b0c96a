"""``rnnkit eval``, ``info`` and ``compare`` on fresh runs."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rnnkit.cli import main
from rnnkit.data import Vocab, reber
from rnnkit.training.checkpoint import load, load_checkpoint

TEXT = "A cat sat on a mat. The mat was flat; the cat was fat. " * 30


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def reber_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("reber") / "run"
    assert main(["train", "--task", "reber", "--hidden", "8", "--steps", "12", "--eval-every", "6",
                 "--eval-size", "40", "--no-plot", "--no-tensorboard", "--quiet", "--out", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("text")
    (folder / "corpus.txt").write_text(TEXT, encoding="utf-8")
    run = folder / "run"
    assert main(["train", "--task", "text", "--data", str(folder / "corpus.txt"), "--hidden", "16", "--layers", "1",
                 "--embedding", "8", "--batch-size", "2", "--bptt", "16", "--steps", "8", "--eval-every", "4",
                 "--threads", "1", "--no-plot", "--no-tensorboard", "--quiet", "--out", str(run)]) == 0
    return run


def test_eval_reproduces_the_training_metrics(reber_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", str(reber_run), "--json", "-")
    assert code == 0, err
    result = json.loads(out)
    summary = json.loads((reber_run / "summary.json").read_text())
    # eval always adds sample_validity (issue 12); training computes it only once the held-out metrics pass
    assert {k: v for k, v in result["metrics"].items() if k in summary["metrics"]} == summary["metrics"]
    assert 0.0 <= result["metrics"]["sample_validity"] <= 1.0
    code, out, _ = run_cli(capsys, "eval", str(reber_run / "checkpoint"))
    assert code == 0 and "next_symbol_set_accuracy" in out


def test_eval_on_a_file_of_reber_words(reber_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words = reber.dataset(25, seed=9)
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n\n")
    code, out, err = run_cli(capsys, "eval", str(reber_run), "--data", str(tmp_path / "words.txt"), "--json", "-")
    assert code == 0, err
    model = load(reber_run / "checkpoint")
    batch = reber.encode(words)
    with torch.no_grad():
        logits, _ = model(batch.input_ids)
    exact = ((logits > 0) == (batch.targets > 0.5)).all(-1)
    assert json.loads(out)["metrics"]["next_symbol_set_accuracy"] == pytest.approx(
        float(exact[batch.mask].float().mean()))
    (tmp_path / "bad.txt").write_text("BTXSE\nBTTTE\n")
    code, _, err = run_cli(capsys, "eval", str(reber_run), "--data", str(tmp_path / "bad.txt"))
    assert code == 2 and "word 2 ('BTTTE')" in err and len(err.strip().splitlines()) == 1


def test_eval_text_scores_a_whole_file_as_one_stream(text_run: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    other = "The fat cat sat. A mat was on the cat."
    (tmp_path / "other.txt").write_text(other, encoding="utf-8")
    code, out, err = run_cli(capsys, "eval", str(text_run), "--data", str(tmp_path / "other.txt"), "--json", "-")
    assert code == 0, err
    ckpt = load_checkpoint(text_run / "checkpoint")
    ids = Vocab.from_json(ckpt.vocab).encode(other)
    with torch.no_grad():
        logits, _ = ckpt.model(ids[:-1].unsqueeze(0))
    want = F.cross_entropy(logits[0], ids[1:]).item()
    metrics = json.loads(out)["metrics"]
    assert metrics["val_loss"] == pytest.approx(want, rel=1e-5)
    assert metrics["val_bpc"] == pytest.approx(want / math.log(2), rel=1e-5)
    (tmp_path / "unknown.txt").write_text("Zebra!", encoding="utf-8")
    code, _, err = run_cli(capsys, "eval", str(text_run), "--data", str(tmp_path / "unknown.txt"))
    assert code == 2 and err.startswith("--data: expected only characters of the vocabulary")


def test_eval_without_data_uses_the_validation_split(text_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "eval", str(text_run), "--json", "-")
    assert code == 0, err
    summary = json.loads((text_run / "summary.json").read_text())
    assert json.loads(out)["metrics"]["val_loss"] == pytest.approx(summary["metrics"]["val_loss"], rel=1e-6)


def test_info_shows_config_parameters_and_history(reber_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "info", str(reber_run), "--json", "-")
    assert code == 0, err
    info = json.loads(out)
    model = load(reber_run / "checkpoint")
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["config"]["rnn"]["hidden_size"] == 8 and info["train_config"]["task"] == "reber"
    assert [h["step"] for h in info["training"]["history"]] == [6, 12]
    code, out, _ = run_cli(capsys, "info", str(reber_run))
    assert code == 0 and "training history (2 evaluations)" in out and "rnn.hidden_size" in out


def test_info_reports_a_tampered_checkpoint(reber_run: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reber_run / "checkpoint", copy)
    weights = next(copy.glob("weights-*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    code, _, err = run_cli(capsys, "info", str(copy))
    assert code == 2 and weights.name in err and "hash mismatch" in err


def test_compare_prints_a_table_and_one_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "compare", "--task", "reber", "--cells", "elman,lstm", "--seeds", "2",
                             "--steps", "6", "--hidden", "8", "--long-lag", "adding", "--lag", "12",
                             "--long-lag-budget", "0.3s", "--quiet", "--out", str(tmp_path), "--json",
                             str(tmp_path / "c.json"))
    assert code == 0, err
    assert "| elman h8 | " in out and "| lstm h8 | " in out and "adding, lag 12" in out
    result = json.loads((tmp_path / "c.json").read_text())
    assert [g["group"] for g in result["groups"]] == ["reber, modern recipe", "adding, lag 12"]
    rows = result["groups"][0]["rows"]
    assert [len(r["runs"]) for r in rows] == [2, 2]
    assert all(run["train_sequences"] == 6 * 16 or run["solved"] for r in rows for run in r["runs"])
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"
