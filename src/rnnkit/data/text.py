"""Character corpora: from a file, a folder, a string, or the built-in default; split; stream.

Reading rules (``read_text``):
- A file path is read whatever its extension (you named it).
- A folder is walked recursively; a file counts as text when its name ends with one of
  ``extensions`` (default ``(".txt",)``, case-insensitive). Hidden files and folders (name
  starting with ".") are skipped. Files are read in sorted relative-path order and joined
  with ``separator`` (default ``"\\n"``), so the result does not depend on the file system.
- Bytes are decoded as strict UTF-8; a leading byte-order mark is dropped; line endings are
  kept as they are (so decoding the ids gives back the file exactly). A file that is not
  UTF-8 raises ValueError naming the file and the byte offset.
- Nothing is cached or written to disk, so a failure never leaves a partial file behind.

``default_corpus()`` is CPython's own ``pydoc_data.topics`` (about 465k characters of English
documentation, topics joined in sorted-key order): the main job trains with no download.

Split (``split``): the first 90% is training data, the last 10% validation, as in char-rnn and
nanoGPT's ``prepare.py`` (``n_train = int(n * (1 - val_fraction))``).

Example:
    >>> corpus = CharCorpus.from_string("to be or not to be")
    >>> train, val = corpus.split(0.25)
    >>> corpus.vocab.decode(train) + corpus.vocab.decode(val) == corpus.text
    True
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

import torch

from rnnkit.data.stream import TextStream
from rnnkit.data.vocab import UNK_TEXT, Vocab
from rnnkit.errors import bad_argument

__all__ = [
    "UNK_TEXT",
    "CharCorpus",
    "TextStream",
    "Vocab",
    "default_corpus",
    "guess_encoding",
    "read_text",
    "split",
    "text_files",
]

S = TypeVar("S", str, torch.Tensor)


def text_files(folder: str | os.PathLike[str], extensions: Sequence[str] = (".txt",)) -> list[Path]:
    """The text files of ``folder`` by the rules above, in sorted relative-path order."""
    root = Path(folder)
    exts = _normalise_extensions(extensions)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if not name.startswith(".") and name.lower().endswith(exts) and path.is_file():
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def read_text(path: str | os.PathLike[str], *, extensions: Sequence[str] = (".txt",),
              separator: str = "\n") -> str:
    """The text of a file, or of a folder's text files joined by ``separator`` (rules above).

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> _ = p.write_text("héllo", encoding="utf-8")
        >>> read_text(p)
        'héllo'
    """
    target = Path(path)
    if not target.exists():
        raise bad_argument("path", "an existing file or folder", str(target), "check the path")
    if target.is_file():
        text = _decode_file(target)
        if not text:
            raise bad_argument("path", "a file with some text", f"the empty file {target}",
                               "point at a non-empty UTF-8 text file")
        return text
    files = text_files(target, extensions)
    if not files:
        others = sum(len(names) for _, _, names in os.walk(target))
        raise bad_argument("path", f"a folder holding files ending in {', '.join(_normalise_extensions(extensions))}",
                           f"{target} with {others} other file(s) and no such file",
                           "add text files, or pass extensions=(...) naming the ones you have",
                           cli_fix="put .txt files in the folder, or pass one text file to --data")
    texts = [_decode_file(f) for f in files]
    if not any(texts):
        raise bad_argument("path", "text files with some text", f"{len(files)} empty file(s) in {target}",
                           "put text in the files")
    return separator.join(texts)


def default_corpus() -> str:
    """CPython's ``pydoc_data.topics``, topics joined by blank lines in sorted-key order (~465k chars)."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def split(data: S, val_fraction: float = 0.1) -> tuple[S, S]:
    """``(train, val)``: the first ``int(n * (1 - val_fraction))`` items, then the rest.

    Works on a str or a 1-D tensor of ids. Deterministic: no shuffling, so validation text
    is a contiguous tail the model never saw, as in char-rnn and nanoGPT.
    """
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 <= val_fraction < 1:
        raise bad_argument("val_fraction", "a number in [0, 1)", val_fraction, "use e.g. 0.1 for 10% validation")
    n = len(data)
    n_train = int(n * (1 - val_fraction))
    if n_train < 1 or (val_fraction > 0 and n_train == n):
        raise bad_argument("data", f"enough items for a {val_fraction:g} validation split", f"{n} item(s)",
                           "use a longer corpus or a different val_fraction",
                           cli_fix="pass a longer text to --data (the last 10% is held out for validation)")
    return data[:n_train], data[n_train:]


@dataclass(frozen=True)
class CharCorpus:
    """A text with its vocabulary and ids: the input of a character language model.

    Example:
        >>> corpus = CharCorpus.default()
        >>> corpus.ids.shape == (len(corpus.text),)
        True
    """

    text: str  # the whole corpus
    vocab: Vocab  # built from text unless given
    ids: torch.Tensor  # (N,) int64 ids of text
    source: str  # where the text came from (a path, "<string>" or "pydoc_data.topics")

    @classmethod
    def from_string(cls, text: str, vocab: Vocab | None = None, *, source: str = "<string>",
                    unknown: Literal["error", "unk"] = "error") -> CharCorpus:
        """A corpus of ``text``; its own vocabulary unless ``vocab`` (e.g. from a checkpoint) is given."""
        if not isinstance(text, str) or not text:
            raise bad_argument("text", "a non-empty str", text if not isinstance(text, str) else "''",
                               "pass some text, or use CharCorpus.default()")
        vocab = vocab if vocab is not None else Vocab.build(text, unknown)
        return cls(text, vocab, vocab.encode(text), source)

    @classmethod
    def from_path(cls, path: str | os.PathLike[str], vocab: Vocab | None = None, *,
                  extensions: Sequence[str] = (".txt",), unknown: Literal["error", "unk"] = "error") -> CharCorpus:
        """A corpus read with :func:`read_text` from a file or a folder."""
        return cls.from_string(read_text(path, extensions=extensions), vocab, source=str(path), unknown=unknown)

    @classmethod
    def default(cls, vocab: Vocab | None = None) -> CharCorpus:
        """The built-in corpus, :func:`default_corpus`."""
        return cls.from_string(default_corpus(), vocab, source="pydoc_data.topics")

    def split(self, val_fraction: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
        """``(train ids, val ids)`` by :func:`split`."""
        return split(self.ids, val_fraction)


def _normalise_extensions(extensions: Sequence[str]) -> tuple[str, ...]:
    if isinstance(extensions, str) or not extensions or not all(isinstance(e, str) and e for e in extensions):
        raise bad_argument("extensions", 'a non-empty tuple of name endings, e.g. (".txt", ".md")', extensions,
                           "wrap a single extension in a tuple")
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"), (b"\xff\xfe", "UTF-16LE"),
         (b"\xfe\xff", "UTF-16BE"))  # longest first: the UTF-32LE mark starts with UTF-16LE's


def guess_encoding(data: bytes) -> str | None:
    """The encoding a byte-order mark (or a NUL-byte pattern) announces for bytes that are not UTF-8.

    Example:
        >>> guess_encoding("hi".encode("utf-16")), guess_encoding("hé".encode("latin-1"))
        ('UTF-16LE', None)
    """
    for mark, name in _BOMS:
        if data.startswith(mark):
            return name
    head = data[:4096]
    if len(head) >= 4 and head.count(0) >= len(head) // 4:  # ASCII text in UTF-16 has a NUL in every pair
        return "UTF-16LE" if head[1::2].count(0) > head[0::2].count(0) else "UTF-16BE"
    return None


def _decode_file(path: Path) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        encoding = guess_encoding(data)
        if encoding is not None:
            marked = any(data.startswith(mark) for mark, _ in _BOMS)
            source = encoding.rstrip("LEB") if marked else encoding  # iconv reads the mark itself
            raise bad_argument("path", "UTF-8 text", f"{path}, which looks like {encoding} "
                               f"({'it starts with a byte-order mark' if marked else 'NUL bytes between characters'})",
                               f"convert it to UTF-8, e.g. iconv -f {source} -t UTF-8 {path} > "
                               f"{path.stem}.utf8{path.suffix}") from None
        bad = data[err.start:err.end].hex(" ")
        raise bad_argument("path", "UTF-8 text", f"{path}: byte(s) {bad} at byte offset {err.start} "
                           f"({err.reason})", "convert the file to UTF-8 from its encoding, e.g. iconv -f cp1252 "
                           "-t UTF-8 (check the encoding with: file -i)") from None
    if "\x00" in text[:4096]:  # valid UTF-8 but NUL bytes: a UTF-16 file of ASCII text without a mark?
        encoding = guess_encoding(data)
        if encoding is not None:
            raise bad_argument("path", "UTF-8 text", f"{path}, which looks like {encoding} (NUL bytes between "
                               "characters)", f"convert it to UTF-8, e.g. iconv -f {encoding} -t UTF-8 {path} > "
                               f"{path.stem}.utf8{path.suffix}")
    return text[1:] if text.startswith("\ufeff") else text
