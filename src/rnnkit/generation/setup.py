"""From a checkpoint to a ready ``Generator``: what kind of model it is, its vocabulary, its defaults.

Two kinds of checkpoint decode:

* a **text** language model (``LanguageModel``, ``rnnkit train --task text``): the vocabulary
  is the checkpoint's (``Vocab.from_json(checkpoint.vocab)``); samples run to the length asked for;
* a **Reber** model (``SequenceTagger`` over ``"BTSXPVE"``, ``--task reber`` or
  ``embedded-reber``): the prompt is ``"B"``, a word ends at its ``E`` (the second ``E`` for the
  embedded grammar, whose words hold two), each word can be checked against the grammar, and
  ``constrained=True`` masks every step with the grammar's automaton.

The task is read from the checkpoint's metadata (``metadata["task"]``, as ``rnnkit train`` writes
it, or the ``task`` field of ``metadata["train_config"]``); ``grammar=`` names it for
a Reber model saved without metadata. Anything else (a classifier, a regressor, a model of
another task) is refused with an error that says so. The kind of model is the checkpoint's
registered model type (``checkpoint.model_type``): this package decodes any model through the
``DecodingModel`` protocol and imports no model class, so ``rnnkit.models`` can offer
``generate()`` on top of it without an import cycle.

Example:
    >>> import tempfile, rnnkit
    >>> from rnnkit.models import RNNConfig, SequenceTagger, TaggerConfig
    >>> path = rnnkit.save(SequenceTagger(TaggerConfig(rnn=RNNConfig(hidden_size=8))), tempfile.mkdtemp() + "/m",
    ...                    metadata={"task": "embedded-reber"})
    >>> generator, task = from_checkpoint(path)
    >>> task.name, task.prompt, task.end_token, task.end_count
    ('embedded-reber', 'B', 'E', 2)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from rnnkit.checkpoint import Checkpoint, checkpoint_folder, load_checkpoint
from rnnkit.data import reber
from rnnkit.data.automaton import Automaton
from rnnkit.data.vocab import Vocab
from rnnkit.errors import bad_argument
from rnnkit.generation.decoder import Generator

__all__ = ["GRAMMARS", "DecodingTask", "from_checkpoint", "task_of"]

GRAMMARS = ("reber", "embedded-reber")


@dataclass(frozen=True)
class DecodingTask:
    """What a checkpoint's model generates, and the defaults that go with it."""

    name: str  # "text", "reber" or "embedded-reber"
    prompt: str | None  # the default prompt; None: the caller must give one
    max_length: int  # the default maximum number of generated tokens
    end_token: str | None  # the character that ends a sample; None: samples run to max_length
    end_count: int  # the sample ends at this occurrence of end_token
    grammar: Automaton | None  # Reber: the grammar that judges (and may constrain) the words

    @property
    def is_reber(self) -> bool:
        return self.grammar is not None

    def valid(self, text: str) -> bool:
        """True when ``text`` (prompt included) is a complete word of the grammar."""
        if self.grammar is None:
            raise bad_argument("task", "a Reber task (only grammars judge samples)", self.name,
                               "check validity only for Reber models")
        return self.grammar.accepts(text)


def task_of(checkpoint: Checkpoint) -> str | None:
    """The task name stored with ``checkpoint``, or None when its metadata does not say."""
    metadata: Any = checkpoint.metadata or {}
    nested = [metadata.get(key) for key in ("train_config", "config")] if isinstance(metadata, dict) else []
    for holder in (metadata, *nested):
        if isinstance(holder, dict) and isinstance(holder.get("task"), str):
            return holder["task"]
    return None


def _not_a_language_model(checkpoint: Checkpoint, why: str) -> ValueError:
    return bad_argument("checkpoint", "a language model: a text LanguageModel or a Reber next-symbol model",
                        f"{checkpoint.path} ({checkpoint.model_type}{why})",
                        "sample from a checkpoint of rnnkit train --task text, reber or embedded-reber")


def from_checkpoint(checkpoint: str | os.PathLike[str] | Checkpoint, *, grammar: str | None = None,
                    constrained: bool = False, device: str = "cpu") -> tuple[Generator, DecodingTask]:
    """The Generator and task of a checkpoint folder, a run folder of ``rnnkit train`` (its
    ``checkpoint/``), or an already loaded ``Checkpoint``.

    Raises ``CheckpointError`` for a damaged folder and ValueError for a model that does not
    generate, naming what was found.
    """
    ckpt = (checkpoint if isinstance(checkpoint, Checkpoint)
            else load_checkpoint(checkpoint_folder(checkpoint), device=device))
    if grammar is not None and grammar not in GRAMMARS:
        raise bad_argument("grammar", f"one of {', '.join(GRAMMARS)}", grammar, "pick the grammar the model learned")
    task = task_of(ckpt)
    model = ckpt.model
    if ckpt.model_type == "LanguageModel":
        if task not in (None, "text"):
            raise _not_a_language_model(ckpt, f", trained on task {task!r}")
        if grammar is not None or constrained:
            raise bad_argument("grammar" if grammar is not None else "constrained",
                               "a Reber model (grammars judge and constrain Reber words only)",
                               "a text language model", "drop --grammar/--constrained for text models")
        if ckpt.vocab is None:
            raise bad_argument("checkpoint", "a language model saved with its vocabulary",
                               f"{ckpt.path}, which holds no vocab file",
                               "save it with rnnkit.save(model, path, vocab=vocab.to_json())")
        vocab = Vocab.from_json(ckpt.vocab)
        prompt = "\n" if "\n" in vocab.chars else None
        return Generator(model, vocab=vocab), DecodingTask("text", prompt, 500, None, 1, None)
    if ckpt.model_type == "SequenceTagger":
        if task is not None and task not in GRAMMARS:
            raise _not_a_language_model(ckpt, f", trained on task {task!r}")
        if task is not None and grammar is not None and grammar != task:
            raise bad_argument("grammar", f"the checkpoint's own task ({task!r}) or nothing", grammar,
                               "drop --grammar; the checkpoint says which grammar it learned")
        name = task or grammar
        if name is None:
            raise bad_argument("grammar", "the Reber grammar this model learned (its checkpoint does not say)",
                               "nothing", "pass --grammar reber or --grammar embedded-reber")
        config = model.config
        if config.vocab_size != len(reber.SYMBOLS) or (config.num_outputs or config.vocab_size) != len(reber.SYMBOLS):
            raise _not_a_language_model(ckpt, f", {config.vocab_size} inputs and "
                                              f"{config.num_outputs or config.vocab_size} outputs, not Reber's 7")
        automaton = reber.automaton(embedded=name == "embedded-reber")
        generator = Generator(model, vocab=reber.SYMBOLS, constraint=automaton if constrained else None)
        count = 2 if name == "embedded-reber" else 1
        return generator, DecodingTask(name, "B", 200, "E", count, automaton)
    raise _not_a_language_model(ckpt, "")
