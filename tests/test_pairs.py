"""Pairs data and the sequence-to-sequence tasks: TSV errors, <unk> counting, length limits, generators."""
from __future__ import annotations

import random

import pytest
import torch

from rnnkit.data.pair_tasks import GENERATED, PairSource, date_pair
from rnnkit.data.pairs import TokenVocab, detokenize, encode_pairs, read_tsv, tokenize
from rnnkit.training.config import make_config
from rnnkit.training.task_pairs import PairTask, corpus_scores


def test_tsv_line_without_a_tab_names_the_line(tmp_path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("un\tone\ndeux\ttwo\n\ntrois three\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"pairs.tsv line 4.*no tab.*line 4"):
        read_tsv(path)


def test_tsv_empty_target_names_the_line(tmp_path) -> None:
    path = tmp_path / "pairs.tsv"
    path.write_text("un\tone\ndeux\t  \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 2\): expected a non-empty target"):
        read_tsv(path)
    assert read_tsv(_write(tmp_path, "un\tone\n\ndeux\ttwo\n")) == [("un", "one"), ("deux", "two")]


def _write(tmp_path, text: str):
    path = tmp_path / "ok.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_source_tokens_become_unk_and_are_counted() -> None:
    vocab = TokenVocab.build([["a", "b"]])
    enc = encode_pairs([(["a", "x", "y"], ["b"]), (["b"], ["a", "b"])], vocab, vocab)
    assert enc.source[0].tolist() == [vocab.index["a"], 3, 3]
    assert enc.unknown_tokens == 2
    assert enc.target_in[1].tolist() == [1, vocab.index["a"], vocab.index["b"]]
    assert enc.target_out[1].tolist() == [vocab.index["a"], vocab.index["b"], 2]
    assert enc.target_lengths.tolist() == [2, 3]


def test_source_longer_than_the_maximum_is_an_error() -> None:
    vocab = TokenVocab.build([["a"]])
    with pytest.raises(ValueError, match=r"pair 1 source: expected at most 3 tokens.*4 tokens.*max-source-length"):
        encode_pairs([(["a"], ["a"]), (["a"] * 4, ["a"])], vocab, vocab, max_source_length=3)
    with pytest.raises(ValueError, match=r"pair 0: expected a non-empty target"):
        encode_pairs([(["a"], [])], vocab, vocab)


def test_word_tokens_round_trip() -> None:
    for text in ("quatre-vingt-dix-sept", "one thousand, two hundred and thirty-four", "vingt et un"):
        assert detokenize(tokenize(text, "words"), "words") == text


def test_generated_pairs_are_right_and_held_out_sources_never_train() -> None:
    import datetime

    for _ in range(50):
        src, iso = date_pair(random.Random(_))
        assert datetime.date.fromisoformat(iso)
        assert str(datetime.date.fromisoformat(iso).year) in src
    for task in GENERATED:
        source = PairSource(task, length=6)
        held = dict(source.held_out(200, seed=1))
        rng = random.Random(2)
        assert not any(source.draw(rng)[0] in held for _ in range(2000))
    add = PairSource("add")
    for a_plus_b, total in add.held_out(20, 3):
        a, b = a_plus_b.split("+")
        assert int(a) + int(b) == int(total)
    from num2words import num2words

    assert ("quatre-vingt-dix-sept", "ninety-seven") == (num2words(97, lang="fr"), num2words(97, lang="en"))


def test_scores_against_hand_counts() -> None:
    scores = corpus_scores(["ninety-seven", "one"], ["ninety-seven", "two"])
    assert scores["exact_match"] == 0.5
    perfect = corpus_scores(["a b c d e"], ["a b c d e"])
    assert perfect["bleu"] == pytest.approx(100.0) and perfect["chrf"] == pytest.approx(100.0)


def test_tsv_task_counts_unknown_held_out_tokens(tmp_path) -> None:
    lines = [f"w{i} x{i}\ty{i}" for i in range(9)] + ["w1 zzz\ty1"]
    path = tmp_path / "pairs.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = PairTask(make_config("translate", overrides={"data": str(path), "batch_size": 3}))
    assert task.held.unknown_tokens == 1  # "zzz" is only in the held-out (last 10%) pair
    assert "1 held-out source tokens unknown" in task.describe()
    assert task.batch(0).sequences == 3


def test_pair_task_learns_addition_a_little() -> None:
    """A few steps lower the held-out loss (the task, model and loss are wired together)."""
    from rnnkit.training.trainer import Trainer

    config = make_config("add", overrides={"steps": 60, "eval_every": 0, "eval_size": 50, "plot": False,
                                           "tensorboard": False, "out": None, "hidden_size": 32})
    task = PairTask(config)
    torch.manual_seed(0)
    before = task.evaluate(task.build_model())["val_loss"]
    import tempfile

    config = make_config("add", overrides={"steps": 60, "eval_every": 0, "eval_size": 50, "plot": False,
                                           "tensorboard": False, "out": tempfile.mkdtemp(), "hidden_size": 32})
    result = Trainer(config, progress=False).fit()
    assert result.metrics["val_loss"] < before - 0.3
    assert {"bleu", "chrf", "exact_match"} <= set(result.metrics)


def test_quality_script_quick_runs_every_path(tmp_path) -> None:
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "quality_seq2seq.py"
    spec = importlib.util.spec_from_file_location("quality_seq2seq", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    try:
        report = module.main(["--quick", "--out", str(tmp_path), "--json", str(tmp_path / "q.json")])
    finally:
        torch.set_num_threads(threads)
    models = report["tasks"][0]["models"]
    assert set(models) == {"bahdanau", "none"}
    assert {"exact_match", "bleu", "chrf"} <= set(models["bahdanau"]["beam5"])
    assert (tmp_path / "add_attention.png").stat().st_size > 1000
