"""Words for a word-level language model (seed 002): sentences, tokens with punctuation, n-gram baselines.

* :func:`sentences` splits a text into sentences (at . ! ? followed by a space, and at blank
  lines) and each sentence into word and punctuation tokens (``tokenize(..., "words")``).
* The vocabulary is a :class:`~rnnkit.data.pairs.TokenVocab` of the V most frequent tokens:
  ``<pad>`` 0, ``<s>`` 1, ``</s>`` 2, ``<unk>`` 3, then the words.
* :func:`ngram_perplexities` scores held-out sentences with an add-one-smoothed unigram and an
  add-one-smoothed bigram model counted on the training sentences, over exactly the tokens the
  RNN predicts (every word and the ``</s>`` of each sentence, after ``<s>``).

Example:
    >>> sentences("Hello, world. It works!\\n\\nNew paragraph")
    [['Hello', ',', 'world', '.'], ['It', 'works', '!'], ['New', 'paragraph']]
"""
from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from rnnkit.data.pairs import TokenVocab, tokenize

__all__ = ["encode_sentences", "ngram_perplexities", "sentences"]

_BREAK = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def sentences(text: str, max_tokens: int | None = None) -> list[list[str]]:
    """The non-empty sentences of ``text`` as token lists; longer ones are cut into ``max_tokens`` pieces."""
    out = []
    for piece in _BREAK.split(text):
        tokens = tokenize(piece, "words")
        if not tokens:
            continue
        if max_tokens is None:
            out.append(tokens)
        else:
            out.extend(tokens[i: i + max_tokens] for i in range(0, len(tokens), max_tokens))
    return out


def encode_sentences(sents: Sequence[Sequence[str]], vocab: TokenVocab) -> list[list[int]]:
    """Each sentence as ids ``[<s>, w1, ..., wn, </s>]`` (unknown words -> ``<unk>``)."""
    return [[1] + vocab.encode(s) + [2] for s in sents]


def ngram_perplexities(train: Sequence[Sequence[int]], held: Sequence[Sequence[int]],
                       vocab_size: int) -> dict[str, float]:
    """Perplexities of add-one unigram and bigram models (trained on ``train``) on ``held``.

    Sequences are id lists that start with ``<s>`` and end with ``</s>``; the predicted tokens are
    all but the first. The outcome space is every id except ``<pad>`` and ``<s>``
    (``vocab_size - 2`` outcomes), the same tokens the RNN's softmax competes over in practice.
    """
    outcomes = vocab_size - 2
    unigram: Counter[int] = Counter()
    bigram: Counter[tuple[int, int]] = Counter()
    context: Counter[int] = Counter()
    for seq in train:
        for prev, token in zip(seq, seq[1:]):
            unigram[token] += 1
            bigram[prev, token] += 1
            context[prev] += 1
    total = sum(unigram.values())
    nll_uni = nll_bi = 0.0
    count = 0
    for seq in held:
        for prev, token in zip(seq, seq[1:]):
            nll_uni -= math.log((unigram[token] + 1) / (total + outcomes))
            nll_bi -= math.log((bigram[prev, token] + 1) / (context[prev] + outcomes))
            count += 1
    return {"unigram_add1_ppl": math.exp(nll_uni / count), "bigram_add1_ppl": math.exp(nll_bi / count)}
