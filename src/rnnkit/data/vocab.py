"""A character vocabulary: sorted characters, ids, a lossless JSON form.

Ids follow the sorted order of the characters (by code point). With ``unknown="unk"`` one more
id, ``len(chars)``, stands for any character outside the vocabulary and decodes to ``UNK_TEXT``
(U+FFFD); known characters keep the same ids in both modes. The default, ``unknown="error"``,
refuses such characters at encode time and names the first one and its position: a silent
``<unk>`` would hide a corpus/vocabulary mismatch.

Encoding works on code points with NumPy (UTF-32 view, then a lookup table, or
``searchsorted`` for text beyond the Basic Multilingual Plane), so a million characters
encode in milliseconds.

Example:
    >>> v = Vocab.build("hello, wörld")
    >>> v.decode(v.encode("wörld"))
    'wörld'
    >>> Vocab.from_json(v.to_json()) == v
    True
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from rnnkit.errors import bad_argument

__all__ = ["UNK_TEXT", "Vocab"]

UNK_TEXT = "\ufffd"  # what decode() writes for the <unk> id
_DENSE_LIMIT = 1 << 16  # below this code point, encode through a dense lookup table
_FORMAT = "rnnkit.vocab"
_VERSION = 1


@dataclass(frozen=True)
class Vocab:
    """A frozen character vocabulary; build it with :meth:`Vocab.build`."""

    chars: tuple[str, ...]  # distinct single characters, sorted by code point
    unknown: Literal["error", "unk"] = "error"  # "error": refuse unseen chars; "unk": map them to unk_id
    _codes: np.ndarray = field(init=False, repr=False, compare=False)  # (V,) uint32 sorted code points

    def __post_init__(self) -> None:
        if self.unknown not in ("error", "unk"):
            raise bad_argument("unknown", '"error" or "unk"', self.unknown,
                               'pick "error" (strict) or "unk" (map unseen characters to <unk>)')
        chars = tuple(self.chars)
        if not chars or any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise bad_argument("chars", "a non-empty sequence of single characters", chars,
                               "build the vocabulary with Vocab.build(text)")
        if any(a >= b for a, b in zip(chars, chars[1:])):
            raise bad_argument("chars", "distinct characters in sorted order", "".join(chars)[:80],
                               "pass sorted(set(text)), or use Vocab.build(text)")
        if any(0xD800 <= ord(c) <= 0xDFFF for c in chars):
            raise bad_argument("chars", "characters that UTF-8 can encode", "a lone surrogate",
                               "decode the text with errors='strict' or 'replace', not 'surrogateescape'")
        object.__setattr__(self, "chars", chars)
        object.__setattr__(self, "_codes", np.fromiter(map(ord, chars), dtype=np.uint32, count=len(chars)))

    @classmethod
    def build(cls, text: str, unknown: Literal["error", "unk"] = "error") -> Vocab:
        """The vocabulary of every distinct character in ``text``."""
        if not isinstance(text, str) or not text:
            raise bad_argument("text", "a non-empty str", text if not isinstance(text, str) else "''",
                               "load the corpus first, e.g. read_text(path) or default_corpus()")
        points = _code_points(text, "text")  # (N,)
        if int(points.max()) < _DENSE_LIMIT:  # counting is faster than sorting for small code points
            codes = np.flatnonzero(np.bincount(points))  # (V,) sorted
        else:
            codes = np.unique(points)  # (V,) sorted
        return cls(tuple(map(chr, codes.tolist())), unknown)

    def __len__(self) -> int:
        """The number of ids, ``<unk>`` included."""
        return len(self.chars) + (self.unknown == "unk")

    @property
    def unk_id(self) -> int | None:
        """The id of ``<unk>``, or None with ``unknown="error"``."""
        return len(self.chars) if self.unknown == "unk" else None

    def encode(self, text: str) -> torch.Tensor:
        """Ids of the characters of ``text``: int64 ``(N,)``."""
        return torch.from_numpy(self.encode_numpy(text))

    def encode_numpy(self, text: str) -> np.ndarray:
        """Like :meth:`encode`, as a NumPy int64 array ``(N,)``."""
        if not isinstance(text, str):
            raise bad_argument("text", "a str", text, "decode bytes first, e.g. data.decode('utf-8')")
        points = _code_points(text, "text")  # (N,)
        if not points.size:
            return np.zeros(0, dtype=np.int64)
        top = int(points.max())
        if top < _DENSE_LIMIT:  # a dense code point -> id table, -1 for unseen
            table = np.full(top + 1, -1, dtype=np.int64)
            known = self._codes[self._codes <= top]
            table[known] = np.searchsorted(self._codes, known)
            ids = table[points]  # (N,)
            unseen = ids < 0  # (N,)
        else:
            ids = np.searchsorted(self._codes, points).astype(np.int64)  # (N,)
            unseen = self._codes[np.minimum(ids, len(self._codes) - 1)] != points  # (N,)
        if unseen.any():
            if self.unknown == "unk":
                ids[unseen] = len(self.chars)
            else:
                first = int(np.argmax(unseen))
                raise bad_argument("text", "only characters of the vocabulary",
                                   f"{text[first]!r} (U+{ord(text[first]):04X}) at character {first}, "
                                   f"one of {int(unseen.sum())} unseen characters",
                                   'build the vocabulary from this text too, or use Vocab.build(..., unknown="unk")')
        return ids

    def decode(self, ids: torch.Tensor | np.ndarray | Sequence[int]) -> str:
        """The text of a 1-D sequence of ids (``<unk>`` becomes ``UNK_TEXT``)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.detach().cpu().numpy()
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise bad_argument("ids", "a 1-D sequence of integer ids", f"shape {arr.shape}, dtype {arr.dtype}",
                               "decode one row at a time, e.g. vocab.decode(batch[0])")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            raise bad_argument("ids", f"ids in 0..{len(self) - 1}", f"values in {arr.min()}..{arr.max()}",
                               "decode with the vocabulary the ids were encoded with")
        table = np.append(self._codes, np.uint32(ord(UNK_TEXT)))  # (V+1,)
        return table[arr.astype(np.int64)].astype("<u4").tobytes().decode("utf-32-le")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the checkpoint stores this; no pickle)."""
        return {"format": _FORMAT, "version": _VERSION, "chars": "".join(self.chars), "unknown": self.unknown}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Vocab:
        """The vocabulary saved by :meth:`to_json`; ValueError names what is wrong."""
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise bad_argument("data", f'a dict with "format": "{_FORMAT}"', data if not isinstance(data, dict)
                               else f"format {data.get('format')!r}", "pass the dict written by Vocab.to_json()")
        if data.get("version") != _VERSION:
            raise bad_argument("data['version']", str(_VERSION), data.get("version"),
                               "upgrade rnnkit to read this vocabulary")
        chars = data.get("chars")
        if not isinstance(chars, str):
            raise bad_argument("data['chars']", "a str of the vocabulary's characters", chars,
                               "pass the dict written by Vocab.to_json()")
        return cls(tuple(chars), data.get("unknown", "error"))


def _code_points(text: str, argument: str) -> np.ndarray:
    """Code points of ``text`` as uint32 ``(N,)``; lone surrogates are refused clearly."""
    try:
        raw = text.encode("utf-32-le")
    except UnicodeEncodeError as err:
        raise bad_argument(argument, "text without lone surrogates", f"U+{ord(text[err.start]):04X} at "
                           f"character {err.start}", "decode files strictly (read_text does)") from None
    return np.frombuffer(raw, dtype="<u4")
