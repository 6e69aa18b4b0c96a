"""Source/target pairs for sequence-to-sequence models: tokens, a vocabulary, TSV files, padded batches.

* Tokens are characters (``"chars"``) or words with punctuation kept as tokens (``"words"``:
  ``"quatre-vingt-dix-sept"`` -> ``quatre - vingt - dix - sept``); :func:`detokenize` undoes it.
* :class:`TokenVocab` has the special ids ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, then the
  tokens by decreasing frequency (ties by text). Its JSON form goes in checkpoints.
* :func:`read_tsv` reads ``source<TAB>target`` lines and names the line of any bad one.
* :func:`encode_pairs` turns pairs into padded id tensors, maps unknown source tokens to
  ``<unk>`` and counts them, and refuses a source longer than the maximum.

Example:
    >>> tokenize("quatre-vingt-dix-sept", "words")
    ['quatre', '-', 'vingt', '-', 'dix', '-', 'sept']
    >>> detokenize(['one', 'thousand', ',', 'two', 'hundred'], "words")
    'one thousand, two hundred'
    >>> vocab = TokenVocab.build([["a", "b", "a"]])
    >>> vocab.tokens[:5], vocab.encode(["a", "z"])
    (('<pad>', '<s>', '</s>', '<unk>', 'a'), [4, 3])
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rnnkit.errors import bad_argument

__all__ = ["BOS", "EOS", "PAD", "SPECIALS", "UNK", "EncodedPairs", "TokenVocab", "detokenize", "encode_pairs",
           "read_tsv", "tokenize"]

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)  # ids 0, 1, 2, 3 in every TokenVocab
_WORD = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str, level: str) -> list[str]:
    """``text`` as tokens: characters (``"chars"``) or words and punctuation marks (``"words"``)."""
    if level == "chars":
        return list(text)
    if level == "words":
        return _WORD.findall(text)
    raise bad_argument("tokens", "'chars' or 'words'", level, "pick the token level of the data")


def detokenize(tokens: Sequence[str], level: str) -> str:
    """The text of ``tokens``: characters joined, or words joined by spaces with no space around
    hyphens, slashes and apostrophes and none before , . ; : ! ? (the inverse of ``tokenize`` on
    ordinary text)."""
    if level == "chars":
        return "".join(tokens)
    text = " ".join(tokens)
    text = re.sub(r" ?([-/'’]) ?", r"\1", text)
    return re.sub(r" ([,.;:!?)])", r"\1", text)


@dataclass(frozen=True)
class TokenVocab:
    """Special tokens first, then the known tokens; ``index`` maps text to id."""

    tokens: tuple[str, ...]  # id -> text; tokens[:4] == SPECIALS
    index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if tuple(self.tokens[:4]) != SPECIALS or len(set(self.tokens)) != len(self.tokens):
            raise bad_argument("tokens", f"distinct tokens starting with {SPECIALS}", self.tokens[:6],
                               "build the vocabulary with TokenVocab.build")
        object.__setattr__(self, "index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def build(cls, sequences: Iterable[Sequence[str]], max_size: int | None = None) -> TokenVocab:
        """The ``max_size`` most frequent tokens of ``sequences`` (all if None) after the specials."""
        counts = Counter(t for seq in sequences for t in seq)
        for special in SPECIALS:
            counts.pop(special, None)
        ordered = sorted(counts, key=lambda t: (-counts[t], t))
        if max_size is not None:
            ordered = ordered[: max(0, max_size - len(SPECIALS))]
        return cls(SPECIALS + tuple(ordered))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Sequence[str]) -> list[int]:
        """Ids of ``tokens``; unknown tokens become ``<unk>`` (3)."""
        return [self.index.get(t, 3) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Token texts of ``ids``, stopping at ``</s>`` and skipping ``<pad>`` and ``<s>``."""
        out = []
        for i in ids:
            if i == 2:
                break
            if i > 1:
                out.append(self.tokens[i])
        return out

    def to_json(self) -> dict[str, Any]:
        return {"format": "rnnkit.token_vocab", "version": 1, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, data: Any) -> TokenVocab:
        if not isinstance(data, dict) or data.get("format") != "rnnkit.token_vocab" or \
                not isinstance(data.get("tokens"), list):
            raise bad_argument("vocab", "a token vocabulary written by TokenVocab.to_json", str(data)[:80],
                               "load a checkpoint of a seq2seq or word-level run")
        return cls(tuple(data["tokens"]))


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """``(source, target)`` pairs of a UTF-8 file with one ``source<TAB>target`` per line.

    Blank lines are skipped. A line without a tab, with an empty source or target, or with more
    than one tab is a ValueError naming the file and the line number.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise bad_argument("data", "a readable UTF-8 TSV file", str(path), f"check the file ({error})") from None
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        where = f"{path.name} line {number}"
        if len(parts) != 2:
            what = "no tab" if len(parts) == 1 else f"{len(parts) - 1} tabs"
            raise bad_argument(f"data ({where})", "'source<TAB>target' (exactly one tab)",
                               f"{line[:60]!r} with {what}", f"separate the source and target of line {number} "
                               "with a single tab")
        source, target = parts[0].strip(), parts[1].strip()
        for side, value in (("source", source), ("target", target)):
            if not value:
                raise bad_argument(f"data ({where})", f"a non-empty {side}", repr(line[:60]),
                                   f"give line {number} a {side}, or delete the line")
        pairs.append((source, target))
    if not pairs:
        raise bad_argument("data", "at least one source<TAB>target line", f"{path} (no pairs)",
                           "point --data at a TSV of pairs")
    return pairs


@dataclass(frozen=True)
class EncodedPairs:
    """Padded ids of a list of pairs (pad id 0)."""

    source: torch.Tensor  # (N, S) int64
    source_lengths: torch.Tensor  # (N,) int64
    target_in: torch.Tensor  # (N, T) int64: <s> + target
    target_out: torch.Tensor  # (N, T) int64: target + </s>
    target_lengths: torch.Tensor  # (N,) int64, </s> included
    unknown_tokens: int  # source tokens that were mapped to <unk>

    def __len__(self) -> int:
        return int(self.source.shape[0])

    def rows(self, index: torch.Tensor) -> EncodedPairs:
        """The pairs at ``index`` (K,), trimmed to their longest source and target."""
        s_len, t_len = self.source_lengths[index], self.target_lengths[index]
        S, T = int(s_len.max()), int(t_len.max())
        return EncodedPairs(self.source[index, :S], s_len, self.target_in[index, :T], self.target_out[index, :T],
                            t_len, 0)


def encode_pairs(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], source_vocab: TokenVocab,
                 target_vocab: TokenVocab, max_source_length: int | None = None) -> EncodedPairs:
    """Ids of tokenised pairs. Unknown source tokens become ``<unk>`` and are counted; an empty
    source or target, or a source longer than ``max_source_length``, is a ValueError naming the pair."""
    sources, targets, unknown = [], [], 0
    for number, (src, tgt) in enumerate(pairs):
        if not src or not tgt:
            side = "source" if not src else "target"
            raise bad_argument(f"pair {number}", f"a non-empty {side}", f"({' '.join(src)!r:.40}, "
                               f"{' '.join(tgt)!r:.40})", f"drop the pair or give it a {side}")
        if max_source_length is not None and len(src) > max_source_length:
            raise bad_argument(f"pair {number} source", f"at most {max_source_length} tokens (the maximum source "
                               "length)", f"{len(src)} tokens: {' '.join(src)[:60]!r}",
                               "shorten the source, or raise --max-source-length / max_source_length")
        ids = source_vocab.encode(src)
        unknown += sum(1 for token, i in zip(src, ids) if i == 3 and token != "<unk>")
        sources.append(ids)
        targets.append(target_vocab.encode(tgt))
    N = len(sources)
    S = max(len(s) for s in sources)
    T = max(len(t) for t in targets) + 1
    source = torch.zeros(N, S, dtype=torch.int64)  # (N, S)
    target_in = torch.zeros(N, T, dtype=torch.int64)  # (N, T)
    target_out = torch.zeros(N, T, dtype=torch.int64)  # (N, T)
    for i, (s, t) in enumerate(zip(sources, targets)):
        source[i, : len(s)] = torch.tensor(s)
        target_in[i, : len(t) + 1] = torch.tensor([1] + t)
        target_out[i, : len(t) + 1] = torch.tensor(t + [2])
    return EncodedPairs(source, torch.tensor([len(s) for s in sources]), target_in, target_out,
                        torch.tensor([len(t) + 1 for t in targets]), unknown)
