"""The data rnnkit trains on: Reber grammars, character corpora, synthetic tasks, batching.

Modules:
- ``reber``: the Reber and embedded Reber grammars (automaton, ``sample``, ``in_grammar``, tensors).
- ``text``: character corpora (file, folder, string, built-in default), ``Vocab``, split, ``TextStream``.
- ``synthetic``: sine/cosine regression, the adding problem, the copy task.
- ``batching``: pad + mask + lengths, ``BucketBatchSampler``, ``PadCollate`` for DataLoader.

Example:
    >>> import random
    >>> from rnnkit.data import reber
    >>> reber.in_grammar(reber.sample(random.Random(0)))
    True
"""
from __future__ import annotations

from rnnkit.data import batching, reber, synthetic, text
from rnnkit.data.automaton import Automaton
from rnnkit.data.batching import BucketBatchSampler, PadCollate, lengths_to_mask, pad_sequences, unpad
from rnnkit.data.stream import TextStream
from rnnkit.data.text import CharCorpus, default_corpus, read_text
from rnnkit.data.vocab import Vocab

__all__ = [
    "Automaton",
    "BucketBatchSampler",
    "CharCorpus",
    "PadCollate",
    "TextStream",
    "Vocab",
    "batching",
    "default_corpus",
    "lengths_to_mask",
    "pad_sequences",
    "read_text",
    "reber",
    "synthetic",
    "text",
    "unpad",
]
