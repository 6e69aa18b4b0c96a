"""Text in and out of a decoder: a character ``Vocab`` or a symbol alphabet such as Reber's ``"BTSXPVE"``.

The codec turns a prompt into ids with an error that names the prompt's first unknown
character and its position, and turns generated ids back into text.

Example:
    >>> codec = Codec.of("BTSXPVE")
    >>> codec.encode("BTX").tolist(), codec.decode([1, 3, 2])
    ([0, 1, 3], 'TXS')
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.data.vocab import Vocab
from rnnkit.errors import bad_argument

__all__ = ["Codec"]


@dataclass(frozen=True)
class Codec:
    """Characters <-> ids. ``chars[i]`` is the text of id ``i``; ``unk_id`` takes unknown characters if set."""

    chars: tuple[str, ...]  # the text of each id, in id order
    unk_id: int | None = None  # None: unknown prompt characters are an error
    unk_text: str = "\ufffd"  # what the unk id decodes to

    @classmethod
    def of(cls, vocab: Vocab | str | Sequence[str] | Codec) -> Codec:
        """A codec from a ``Vocab``, an alphabet string (id = position) or a sequence of single characters."""
        if isinstance(vocab, Codec):
            return vocab
        if isinstance(vocab, Vocab):
            return cls(tuple(vocab.chars), vocab.unk_id)
        if isinstance(vocab, (str, list, tuple)) and vocab and all(isinstance(c, str) and len(c) == 1 for c in vocab):
            chars = tuple(vocab)
            if len(set(chars)) != len(chars):
                raise bad_argument("vocab", "distinct characters", "".join(chars), "remove the repeated characters")
            return cls(chars)
        raise bad_argument("vocab", "an rnnkit.data.vocab.Vocab or an alphabet string such as 'BTSXPVE'", vocab,
                           "pass the vocabulary the model was trained with (load_checkpoint(path).vocab)")

    def __len__(self) -> int:
        return len(self.chars) + (self.unk_id is not None)

    def id_of(self, char: str, argument: str) -> int:
        """The id of one character; ValueError naming ``argument`` if it has none."""
        try:
            return self.chars.index(char)
        except ValueError:
            raise bad_argument(argument, f"one character of the vocabulary ({self._alphabet()})", char,
                               "pick a character the model was trained on") from None

    def encode(self, text: str, argument: str = "prompt") -> Tensor:
        """Ids of ``text``, int64 (N,). An unknown character is an error naming it and its position."""
        if not isinstance(text, str):
            raise bad_argument(argument, "a str", text, "pass the prompt as text, or as a tensor of token ids")
        index = {c: i for i, c in enumerate(self.chars)}
        ids = []
        for position, char in enumerate(text):
            token = index.get(char, self.unk_id)
            if token is None:
                raise bad_argument(argument, f"only characters of the model's vocabulary ({self._alphabet()})",
                                   f"{text!r:.80}, whose character {char!r} (U+{ord(char):04X}) at position "
                                   f"{position} is not in it",
                                   f"remove or replace {char!r}; the vocabulary is fixed when the model is trained")
            ids.append(token)
        return torch.tensor(ids, dtype=torch.int64)  # (N,)

    def decode(self, ids: Tensor | Sequence[int]) -> str:
        """The text of a 1-D sequence of ids."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        table = self.chars + ((self.unk_text,) if self.unk_id is not None else ())
        return "".join(table[i] for i in values)

    def _alphabet(self) -> str:
        text = "".join(self.chars)
        shown = repr(text) if len(text) <= 40 else repr(text[:40]) + "..."
        return f"{len(self.chars)} characters: {shown}"
