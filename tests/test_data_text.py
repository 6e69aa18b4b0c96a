"""rnnkit.data.text, vocab and stream: round trips, reading rules, split, stream coverage, errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rnnkit.data.text import (
    UNK_TEXT,
    CharCorpus,
    TextStream,
    Vocab,
    default_corpus,
    read_text,
    split,
    text_files,
)

SHAKESPEARE = Path("/work/shared/data/tinyshakespeare.txt")
MIXED = "Grüße, 世界! naïve café — e\u0301 \U0001f600 \U00010348\r\n\ttab\x00nul ∑ ¿qué?\n"


@pytest.mark.parametrize("text", [MIXED, MIXED.encode("ascii", "ignore").decode() + "çé€", "x"])
def test_vocab_round_trips_non_ascii_text(text: str) -> None:
    """Both encoders: the dense table (text below U+10000) and searchsorted (MIXED has U+1F600)."""
    vocab = Vocab.build(text)
    assert vocab.chars == tuple(sorted(set(text)))  # sorted by code point, each once
    ids = vocab.encode(text)
    assert ids.dtype == torch.int64 and ids.shape == (len(text),)
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    assert ids.tolist() == [stoi[c] for c in text]  # naive Python oracle
    assert vocab.decode(ids) == text
    assert vocab.decode(ids.numpy()) == vocab.decode(ids.tolist()) == text
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)


def test_vocab_json_round_trip() -> None:
    vocab = Vocab.build(MIXED, unknown="unk")
    data = json.loads(json.dumps(vocab.to_json()))
    again = Vocab.from_json(data)
    assert again == vocab and again.unknown == "unk"
    assert torch.equal(again.encode(MIXED), vocab.encode(MIXED))


def test_unknown_characters_error_or_unk() -> None:
    strict = Vocab.build("abc")
    with pytest.raises(ValueError, match=r"text: expected only characters of the vocabulary.*'z' \(U\+007A\) at "
                                         r"character 3.*Fix: .*unknown=\"unk\""):
        strict.encode("abcz")
    lenient = Vocab.build("abc", unknown="unk")
    assert len(lenient) == 4 and lenient.unk_id == 3 and strict.unk_id is None
    ids = lenient.encode("a€c")
    assert ids.tolist() == [0, 3, 2]  # known characters keep their ids
    assert lenient.decode(ids) == "a" + UNK_TEXT + "c"
    assert lenient.encode("\U0001f600ab").tolist() == [3, 0, 1]  # beyond U+FFFF: the searchsorted path
    with pytest.raises(ValueError, match=r"U\+1F600\) at character 2, one of 2 unseen"):
        strict.encode("ab\U0001f600c\U0001f600")


def test_vocab_bad_input() -> None:
    with pytest.raises(ValueError, match="text: expected a non-empty str"):
        Vocab.build("")
    with pytest.raises(ValueError, match="chars: expected distinct characters in sorted order"):
        Vocab(("b", "a"))
    with pytest.raises(ValueError, match='unknown: expected "error" or "unk"'):
        Vocab(("a",), "skip")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"ids: expected ids in 0..2"):
        Vocab.build("abc").decode([0, 3])
    with pytest.raises(ValueError, match='data: expected a dict with "format": "rnnkit.vocab"'):
        Vocab.from_json({"chars": "abc"})
    with pytest.raises(ValueError, match="data\\['version'\\]: expected 1"):
        Vocab.from_json({"format": "rnnkit.vocab", "version": 9, "chars": "abc"})
    with pytest.raises(ValueError, match="text: expected text without lone surrogates"):
        Vocab.build("a\udcff")


def test_read_file_and_folder(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_bytes("\ufeffline one\r\n".encode())  # BOM dropped, CRLF kept
    assert read_text(tmp_path / "one.txt") == "line one\r\n"
    (tmp_path / "notes.md").write_text("markdown", encoding="utf-8")
    assert read_text(tmp_path / "notes.md") == "markdown"  # a named file counts whatever its extension
    sub = tmp_path / "b_dir"
    sub.mkdir()
    (sub / "two.TXT").write_text("zwei", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first", encoding="utf-8")
    (tmp_path / ".hidden.txt").write_text("secret", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "x.txt").write_text("git", encoding="utf-8")
    assert [p.relative_to(tmp_path).as_posix() for p in text_files(tmp_path)] == ["a.txt", "b_dir/two.TXT", "one.txt"]
    assert read_text(tmp_path) == "first\nzwei\nline one\r\n"
    assert read_text(tmp_path, extensions=("md", ".txt"), separator="|") == "first|zwei|markdown|line one\r\n"


def test_read_errors_name_the_problem_and_write_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café au lait".encode("utf-8") + b" \xe9t\xe9")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(ValueError, match="path: expected a file with some text.*empty.txt"):
        read_text(empty)
    with pytest.raises(ValueError, match=r"latin.txt: byte\(s\) e9 at byte offset 14 .*Fix: convert the file"):
        read_text(latin)
    with pytest.raises(ValueError, match="latin.txt: .*byte offset 14"):
        read_text(tmp_path)  # the folder holds it too
    csv_only = tmp_path / "csv"
    csv_only.mkdir()
    (csv_only / "data.csv").write_text("1,2", encoding="utf-8")
    with pytest.raises(ValueError, match=r"files ending in \.txt.*1 other file\(s\).*extensions="):
        read_text(csv_only)
    empties = tmp_path / "empties"
    empties.mkdir()
    (empties / "a.txt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"text files with some text.*1 empty file"):
        read_text(empties)
    with pytest.raises(ValueError, match="path: expected an existing file or folder"):
        read_text(tmp_path / "missing.txt")
    with pytest.raises(ValueError, match="extensions: expected a non-empty tuple"):
        read_text(tmp_path, extensions=".txt")
    after = sorted(p.name for p in tmp_path.rglob("*"))
    assert after == sorted(before + ["csv", "data.csv", "empties", "a.txt"])  # nothing else appeared


def test_default_corpus_is_pydoc_topics() -> None:
    from pydoc_data.topics import topics

    text = default_corpus()
    assert text == default_corpus()
    assert text == "\n\n".join(topics[k].strip("\n") for k in sorted(topics)) + "\n"
    assert len(text) > 400_000 and topics["assert"].strip("\n") in text
    corpus = CharCorpus.default()
    assert corpus.vocab.decode(corpus.ids) == text and corpus.source == "pydoc_data.topics"


def test_split_is_first_90_last_10() -> None:
    ids = torch.arange(1003)
    train, val = split(ids)
    assert len(train) == int(1003 * 0.9) == 902 and torch.equal(torch.cat([train, val]), ids)
    text_train, text_val = split("abcdefghij", 0.2)
    assert (text_train, text_val) == ("abcdefgh", "ij")
    assert split("abc", 0.0) == ("abc", "")
    with pytest.raises(ValueError, match=r"val_fraction: expected a number in \[0, 1\)"):
        split(ids, 1.0)
    with pytest.raises(ValueError, match="data: expected enough items for a 0.1 validation split.*1 item"):
        split("a")


def _reconstruct(stream: TextStream) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's chunks end to end, then the rows end to end: the inputs and targets served."""
    xs, ys = zip(*stream)
    return torch.cat(xs, dim=1).reshape(-1), torch.cat(ys, dim=1).reshape(-1)


@pytest.mark.parametrize(("n", "batch", "bptt"), [(1001, 4, 7), (1001, 10, 100), (65, 64, 3), (2000, 3, 1)])
def test_stream_covers_text_without_gap_or_overlap(n: int, batch: int, bptt: int) -> None:
    ids = torch.randint(0, 50, (n,), generator=torch.Generator().manual_seed(n))
    stream = TextStream(ids, batch, bptt)
    length = (n - 1) // batch
    assert stream.stream_length == length and stream.dropped == n - 1 - batch * length < batch
    assert len(stream) == -(-length // bptt) and stream.tokens_per_epoch == batch * length
    x, y = _reconstruct(stream)
    assert torch.equal(x, ids[: batch * length])  # every input token once, in order
    assert torch.equal(y, ids[1 : batch * length + 1])  # targets are inputs shifted by one
    chunks = list(stream)
    for k, (cx, cy) in enumerate(chunks):
        assert cx.shape == cy.shape == (batch, min(bptt, length - k * bptt))
        assert torch.equal(cx[:, 0], ids[torch.arange(batch) * length + stream.offset(k)])
        if k:  # row b of chunk k continues row b of chunk k-1: carry the state
            assert torch.equal(chunks[k - 1][1][:, -1], cx[:, 0])


def test_stream_reconstructs_text_and_resumes() -> None:
    text = MIXED * 40
    corpus = CharCorpus.from_string(text)
    stream = TextStream(corpus.ids, 5, 16)
    x, _ = _reconstruct(stream)
    assert corpus.vocab.decode(x) + text[len(x):] == text
    full = list(stream)
    resumed = list(stream.batches(start=3))
    assert len(resumed) == len(full) - 3 and all(torch.equal(a[0], b[0]) for a, b in zip(full[3:], resumed))
    assert list(stream.batches(start=len(stream))) == []
    dropped = TextStream(corpus.ids, 5, 16, drop_last=True)
    assert all(cx.shape == (5, 16) for cx, _ in dropped) and dropped.stream_length % 16 == 0
    assert TextStream(np.arange(30), 2, 4).stream_length == 14


def test_stream_bad_input() -> None:
    with pytest.raises(ValueError, match=r"ids: expected at least 65 tokens for one batch of 64 streams.*64 tokens"):
        TextStream(torch.arange(64), 64, 128)
    with pytest.raises(ValueError, match=r"ids: expected at least 8193 tokens.*x 128 steps.*Fix: .*or bptt"):
        TextStream(torch.arange(5000), 64, 128, drop_last=True)
    with pytest.raises(ValueError, match="batch_size: expected a positive int, but received 0"):
        TextStream(torch.arange(100), 0, 4)
    with pytest.raises(ValueError, match="bptt: expected a positive int, but received -3"):
        TextStream(torch.arange(100), 2, -3)
    with pytest.raises(ValueError, match="ids: expected a 1-D integer tensor"):
        TextStream(torch.rand(100), 2, 3)
    with pytest.raises(ValueError, match=r"start: expected a chunk index in 0..17"):
        TextStream(torch.arange(100), 2, 3).batches(start=18)
    with pytest.raises(IndexError):
        TextStream(torch.arange(100), 2, 3)[17]


def test_corpus_from_path_with_a_saved_vocab(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("hello world", encoding="utf-8")
    vocab = Vocab.build("dehlorw ")
    corpus = CharCorpus.from_path(tmp_path, vocab)
    assert corpus.vocab is vocab and vocab.decode(corpus.ids) == "hello world"
    train, val = corpus.split(0.1)
    assert len(train) == 9 and len(val) == 2
    with pytest.raises(ValueError, match="text: expected only characters of the vocabulary"):
        CharCorpus.from_path(tmp_path, Vocab.build("helo"))


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="Tiny Shakespeare is not on this machine")
def test_tiny_shakespeare() -> None:
    corpus = CharCorpus.from_path(SHAKESPEARE)
    assert len(corpus.text) == 1_115_394 and len(corpus.vocab) == 65  # the char-rnn / nanoGPT figures
    assert corpus.vocab.decode(corpus.ids) == SHAKESPEARE.read_text(encoding="utf-8")
    train, val = corpus.split()
    assert len(train) == 1_003_854  # nanoGPT's prepare.py: "train has 1,003,854 tokens"


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="Tiny Shakespeare is not on this machine")
def test_readme_checksum_is_the_shared_copy_of_tiny_shakespeare() -> None:
    """The README tells users how to fetch the file and which SHA-256 to expect; it must be this file's."""
    import hashlib
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    stated = re.search(r'echo "([0-9a-f]{64})  data/tinyshakespeare.txt" \| sha256sum -c', readme)
    assert stated is not None
    assert stated.group(1) == hashlib.sha256(SHAKESPEARE.read_bytes()).hexdigest()
