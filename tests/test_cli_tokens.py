"""``rnnkit train/sample`` for the word-level LM and the sequence-to-sequence tasks, and their errors."""
from __future__ import annotations

import json

import pytest

from rnnkit.cli import main

COMMON = ["--no-plot", "--no-tensorboard", "--quiet", "--hidden", "16", "--embedding", "8"]
TEXT = "The cat sat on the mat. The dog sat on the log! A cat saw a dog. Zebras are rare here. " * 20


def test_words_train_then_sample_whole_sentences(tmp_path, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    run = tmp_path / "run"
    code = main(["train", "--task", "words", "--data", str(corpus), "--steps", "30", "--eval-every", "0",
                 "--vocab-size", "12", "--out", str(run), "--json", str(tmp_path / "t.json"), *COMMON])
    assert code == 0
    summary = json.loads((tmp_path / "t.json").read_text())
    assert {"val_ppl", "val_loss"} <= set(summary["metrics"])
    assert {"unigram_add1_ppl", "bigram_add1_ppl"} <= set(summary["baseline"])
    capsys.readouterr()
    code = main(["sample", str(run), "--num", "6", "--min-length", "4", "--seed", "0", "--length", "80",
                 "--json", str(tmp_path / "s.json")])
    assert code == 0
    samples = json.loads((tmp_path / "s.json").read_text())["samples"]
    assert len(samples) == 6
    for s in samples:
        if s["finished"]:
            assert s["tokens"][0] == "<s>" and s["tokens"][-1] == "</s>" and len(s["tokens"]) >= 6
        assert "<unk>" not in s["tokens"]  # vocab 12 < the corpus' words: <unk> is common in training


def test_translate_tsv_train_sample_and_bad_lines(tmp_path, capsys) -> None:
    good = tmp_path / "pairs.tsv"
    good.write_text("".join(f"w{i % 7} x{i % 5}\ty{i % 7}\n" for i in range(40)), encoding="utf-8")
    run = tmp_path / "run"
    assert main(["train", "--task", "translate", "--data", str(good), "--steps", "5", "--eval-every", "0",
                 "--out", str(run), *COMMON]) == 0
    capsys.readouterr()
    assert main(["sample", str(run), "--prompt", "w3 qqq", "--json", str(tmp_path / "s.json")]) == 0
    out = capsys.readouterr().out
    assert "1 unknown source token(s) read as <unk>: qqq" in out
    sample = json.loads((tmp_path / "s.json").read_text())["samples"][0]
    assert sample["unknown_source_tokens"] == 1 and sample["logprob"] < 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\nc d\n", encoding="utf-8")
    assert main(["train", "--task", "translate", "--data", str(bad), "--steps", "1", "--out", str(run / "x"),
                 *COMMON]) == 2
    err = capsys.readouterr().err
    assert "bad.tsv line 2" in err and "tab" in err


def test_source_longer_than_the_maximum_is_a_one_line_cli_error(tmp_path, capsys) -> None:
    code = main(["train", "--task", "reverse", "--seq-len", "12", "--max-source-length", "10", "--steps", "1",
                 "--eval-size", "5", "--out", str(tmp_path / "r"), *COMMON])
    assert code == 2
    err = capsys.readouterr().err
    assert "expected at most 10 tokens" in err and "--max-source-length" in err


@pytest.mark.parametrize("flag, value", [("--attention", "cosine"), ("--lm-unit", "pages")])
def test_bad_choices_are_refused(tmp_path, capsys, flag: str, value: str) -> None:
    assert main(["train", "--task", "add", flag, value]) == 2
    assert f"argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err


def test_task_text_tokens_word_is_the_word_model_and_misuse_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """The issue's spelling, ``--task text --tokens word``, is ``--task words``; ``--tokens char`` is ``--task text``."""
    import argparse

    from rnnkit.cli import build_parser, main
    from rnnkit.cli.train import config_from_args

    def config(*argv: str):  # type: ignore[no-untyped-def]
        return config_from_args(build_parser().parse_args(["train", *argv]))[0]

    assert config("--task", "text", "--tokens", "word").task == "words"
    assert config("--tokens", "word").task == "words"
    assert config("--task", "words", "--tokens", "word") == config("--task", "words")
    assert config("--task", "text", "--tokens", "char") == config("--task", "text")
    for bad in (["--task", "reber", "--tokens", "word"], ["--task", "words", "--tokens", "char"]):
        code = main(["train", *bad, "--out", str(tmp_path / "x")])
        err = capsys.readouterr().err
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Fix: drop --tokens" in err, err
    assert isinstance(build_parser(), argparse.ArgumentParser)
