"""Generated source/target pairs that need no download: number translation, reversal, addition, dates.

Every generator draws one pair from a ``random.Random``; :class:`PairSource` splits off a
held-out set once (from a fixed seed) and then draws training pairs that never repeat a
held-out *source*, so every held-out score is on unseen inputs.

* ``translate``: a number in 0..99,999 written out by ``num2words`` in one language and in
  another (default French to English), word-level: "quatre-vingt-dix-sept" -> "ninety-seven".
* ``reverse``: a string of ``length`` lowercase letters -> the same string reversed.
* ``add``: "123+89" -> "212" (each operand 0..999).
* ``dates``: one date (1900-2099) in one of many formats -> ISO 8601 "YYYY-MM-DD".

Example:
    >>> import random
    >>> rng = random.Random(0)
    >>> add_pair(rng)
    ('864+394', '1258')
    >>> reverse_pair(rng, 5)
    ('ynbiq', 'qibny')
    >>> date_pair(random.Random(3))[1]
    '1985-05-25'
"""
from __future__ import annotations

import datetime
import random
import string
from collections.abc import Callable
from dataclasses import dataclass

from rnnkit.errors import bad_argument

__all__ = ["DATE_FORMATS", "GENERATED", "MAX_NUMBER", "PairSource", "add_pair", "date_pair", "number_pair",
           "require_num2words", "reverse_pair"]

MAX_NUMBER = 99_999  # translate: numbers 0..MAX_NUMBER
GENERATED = ("translate", "reverse", "add", "dates")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def _formats() -> list[Callable[[datetime.date], str]]:
    def month(d: datetime.date) -> str:
        return _MONTHS[d.month - 1]

    return [
        lambda d: f"{month(d)} {d.day}, {d.year}",  # March 5, 2024
        lambda d: f"{d.day} {month(d)} {d.year}",  # 5 March 2024
        lambda d: f"{month(d)[:3]} {d.day} {d.year}",  # Mar 5 2024
        lambda d: f"{d.day:02d}-{month(d)[:3].upper()}-{d.year}",  # 05-MAR-2024
        lambda d: f"{d.month:02d}/{d.day:02d}/{d.year}",  # 03/05/2024 (US order)
        lambda d: f"{d.day}.{d.month}.{d.year}",  # 5.3.2024 (European order)
        lambda d: f"{d.year}{d.month:02d}{d.day:02d}",  # 20240305
        lambda d: f"{_DAYS[d.weekday()]}, {month(d)} {d.day}, {d.year}",  # Tuesday, March 5, 2024
        lambda d: f"{d.year}/{d.month}/{d.day}",  # 2024/3/5
    ]


DATE_FORMATS = _formats()  # no two-digit years: they cannot say their century


def require_num2words() -> Callable[..., str]:
    """``num2words.num2words``, or a clear error saying how to install it."""
    try:
        from num2words import num2words
    except ImportError:
        raise bad_argument("task", "the num2words package for --task translate", "it is not installed",
                           "pip install num2words (or pip install 'rnnkit[seq2seq]')") from None
    return num2words


def number_pair(rng: random.Random, source_lang: str = "fr", target_lang: str = "en") -> tuple[str, str]:
    """One number in words in ``source_lang`` and ``target_lang``."""
    n = rng.randint(0, MAX_NUMBER)
    words = require_num2words()
    return words(n, lang=source_lang), words(n, lang=target_lang)


def reverse_pair(rng: random.Random, length: int = 30) -> tuple[str, str]:
    """A string of ``length`` lowercase letters and its reversal."""
    text = "".join(rng.choice(string.ascii_lowercase) for _ in range(length))
    return text, text[::-1]


def add_pair(rng: random.Random) -> tuple[str, str]:
    """'a+b' -> the sum, a and b in 0..999."""
    a, b = rng.randint(0, 999), rng.randint(0, 999)
    return f"{a}+{b}", str(a + b)


def date_pair(rng: random.Random) -> tuple[str, str]:
    """A date in one of ``DATE_FORMATS`` -> ISO 8601."""
    start = datetime.date(1900, 1, 1).toordinal()
    day = datetime.date.fromordinal(rng.randint(start, datetime.date(2099, 12, 31).toordinal()))
    return rng.choice(DATE_FORMATS)(day), day.isoformat()


@dataclass
class PairSource:
    """Draw pairs of one generated task; ``held_out(n)`` first, then ``draw(rng)`` avoids its sources."""

    task: str  # one of GENERATED
    length: int = 30  # reverse: string length
    languages: str = "fr-en"  # translate: source-target language codes of num2words

    def __post_init__(self) -> None:
        if self.task not in GENERATED:
            raise bad_argument("task", f"one of {', '.join(GENERATED)}", self.task, "pick a generated pair task")
        parts = self.languages.split("-")
        if len(parts) != 2 or not all(parts):
            raise bad_argument("languages", "'SRC-TGT' num2words language codes, e.g. 'fr-en'", self.languages,
                               "pass e.g. --languages de-en")
        if self.task == "translate":
            words = require_num2words()
            for lang in parts:
                try:
                    words(97, lang=lang)
                except NotImplementedError:
                    raise bad_argument("languages", "language codes num2words knows (e.g. en, fr, de, es, it)",
                                       lang, "pick another language") from None
        self._exclude: set[str] = set()

    def draw_one(self, rng: random.Random) -> tuple[str, str]:
        if self.task == "translate":
            src, tgt = self.languages.split("-")
            return number_pair(rng, src, tgt)
        if self.task == "reverse":
            return reverse_pair(rng, self.length)
        if self.task == "add":
            return add_pair(rng)
        return date_pair(rng)

    def held_out(self, n: int, seed: int) -> list[tuple[str, str]]:
        """``n`` pairs with distinct sources, drawn from ``seed``; later draws never repeat their sources."""
        rng = random.Random(seed)
        pairs: dict[str, str] = {}
        attempts = 0
        while len(pairs) < n:
            src, tgt = self.draw_one(rng)
            pairs.setdefault(src, tgt)
            attempts += 1
            if attempts > 50 * n:
                raise bad_argument("eval_size", "fewer held-out pairs than the task has distinct sources", n,
                                   "lower --eval-size")
        self._exclude = set(pairs)
        return list(pairs.items())

    def draw(self, rng: random.Random) -> tuple[str, str]:
        """One training pair whose source is not held out."""
        while True:
            pair = self.draw_one(rng)
            if pair[0] not in self._exclude:
                return pair
