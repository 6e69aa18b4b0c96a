"""``save``: a model, its config and, optionally, vocab, metadata and training state, into a folder.

Tensors go to safetensors, everything else to JSON (see ``rnnkit.checkpoint.registry`` for the
JSON form of configs); ``rnnkit.checkpoint.manifest`` commits the files atomically, so a crash,
a full disk or a read-only folder leaves the previous checkpoint whole.

Example:
    >>> import tempfile
    >>> from rnnkit.layers import LSTM
    >>> folder = save(LSTM(3, 4), tempfile.mkdtemp() + "/ckpt", metadata={"note": "demo"})
    >>> sorted(p.name.split("-")[0] for p in folder.iterdir())
    ['manifest.json', 'metadata', 'model', 'weights']
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rnnkit.checkpoint.manifest import MANIFEST, commit
from rnnkit.checkpoint.registry import config_from_json, config_to_json, encode_json, model_name
from rnnkit.checkpoint.state import TrainingState, training_state_to_json
from rnnkit.checkpoint.weights import safetensors_bytes, split_tied, unwrap
from rnnkit._version import __version__
from rnnkit.errors import CheckpointError, bad_argument

__all__ = ["model_document", "save"]


def _json_bytes(value: Any, where: str) -> bytes:
    return json.dumps(encode_json(value, where=where), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _plain_dict(value: Any, argument: str, fix: str) -> dict:
    if not isinstance(value, dict):
        raise bad_argument(argument, "a dict of JSON-able values", value, fix)
    return value


def model_document(model: nn.Module) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The model file's JSON (type, class, config, tied and frozen names) and the tensors to store.

    Raises ValueError if the model is not registered or its config does not survive JSON.
    """
    name = model_name(model)
    config_class = type(model).config_class
    config = getattr(model, "config", None)
    if not isinstance(config, config_class):
        raise bad_argument("model.config", f"a {config_class.__qualname__} (the class's config_class)", config,
                           "store the config the model was built from as self.config")
    config_json = config_to_json(config)
    try:
        round_trip = config_to_json(config_from_json(config_json, config_class))
    except (ValueError, TypeError) as error:
        round_trip = f"an error: {error}"
    if round_trip != config_json:
        raise bad_argument("model.config", "a config that survives JSON and back unchanged",
                           f"{config!r:.300} -> {round_trip!r:.300}",
                           "annotate nested dataclass fields with their types, or decorate them with @register_config")
    canonical, tied = split_tied(model.state_dict())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    doc = {"model_type": name, "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
           "config": config_json, "tied": tied, "frozen": frozen}
    return doc, canonical


def save(model: nn.Module, path: str | os.PathLike[str], *, vocab: dict | None = None,
         training_state: TrainingState | None = None, metadata: dict | None = None) -> Path:
    """Save ``model`` (and optionally vocab, training state, metadata) atomically into the folder ``path``.

    The folder is created if needed; saving again into it replaces the checkpoint atomically and
    removes the files only the old one used (other files in the folder are left alone). Returns
    the folder. Raises ValueError if the model is not registered or something is not storable,
    and CheckpointError if the disk refuses the write (full, read-only): the previous
    checkpoint in the folder is then left as it was.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise bad_argument("path", "a folder (created if missing)", f"{str(directory)!r}, an existing file",
                           "pass a folder path, e.g. 'runs/lm/checkpoint'")
    model = unwrap(model)
    doc, canonical = model_document(model)
    name = doc["model_type"]
    blobs = {"model": json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8"),
             "weights": safetensors_bytes(canonical, {"format": "pt", "rnnkit.model_type": name})}
    if vocab is not None:
        blobs["vocab"] = _json_bytes(_plain_dict(vocab, "vocab", "pass vocab.to_json()"), "vocab")
    if metadata is not None:
        metadata = _plain_dict(metadata, "metadata", "pass a dict, e.g. {'task': 'reber'}")
        blobs["metadata"] = _json_bytes(metadata, "metadata")
    if training_state is not None:
        state_doc, tensors = training_state_to_json(training_state)
        blobs["training"] = json.dumps(state_doc, ensure_ascii=False, allow_nan=False).encode("utf-8")
        blobs["training_tensors"] = safetensors_bytes(tensors, {"format": "pt"})
    header = {"rnnkit_version": __version__, "torch_version": torch.__version__,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model_type": name}
    had_checkpoint = (directory / MANIFEST).is_file()
    try:
        commit(directory, blobs, header)
    except OSError as error:
        kept = ("the previous checkpoint there is intact" if had_checkpoint
                else "no checkpoint was written there")
        raise CheckpointError(f"{directory}: could not write the checkpoint ({error.strerror or error}"
                              f"{': ' + str(error.filename) if error.filename else ''}); {kept}. "
                              "Fix: free disk space or make the folder writable, then save again") from error
    return directory
