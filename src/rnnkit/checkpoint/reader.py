"""Loading checkpoints: ``load`` (the model), ``load_checkpoint`` (everything), ``load_training_state``.

``load`` needs no code from the user: the model's registered name and config (see
``rnnkit.checkpoint.registry``) rebuild it. Every file's size and SHA-256 is checked against
``manifest.json`` before anything is parsed; a missing, truncated, tampered or foreign file
raises ``CheckpointError`` naming the file. What only needs the model (``load``,
``load_checkpoint``, and so ``eval``, ``sample`` and ``info``) reads and verifies only the
model's files (model, weights, vocab, metadata): a damaged training state does not block it.
``load_training_state`` (a resume) verifies everything. The hashes catch damage, not forgery,
so shapes are checked against the config before anything is built (see ``rebuild``).

Example:
    >>> import dataclasses, tempfile, torch
    >>> from rnnkit.checkpoint import register_model, save
    >>> @dataclasses.dataclass(frozen=True)
    ... class TinyConfig:
    ...     vocab_size: int = 5  # tokens in the vocabulary
    >>> @register_model
    ... class TinyTied(torch.nn.Module):
    ...     config_class = TinyConfig
    ...     def __init__(self, config: TinyConfig) -> None:
    ...         super().__init__()
    ...         self.config = config
    ...         self.embed = torch.nn.Embedding(config.vocab_size, 3)
    ...         self.head = torch.nn.Linear(3, config.vocab_size, bias=False)
    ...         self.head.weight = self.embed.weight  # tied: stored once, tied again on load
    >>> folder = save(TinyTied(TinyConfig()), tempfile.mkdtemp() + "/ckpt", metadata={"note": "demo"})
    >>> model = load(folder)
    >>> model.head.weight is model.embed.weight
    True
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from rnnkit.checkpoint.config_check import check_config_json
from rnnkit.checkpoint.manifest import MANIFEST, MODEL_ROLES, read_verified
from rnnkit.checkpoint.rebuild import rebuild
from rnnkit.checkpoint.registry import config_from_json, decode_json, model_class
from rnnkit.checkpoint.runs import checkpoint_folder
from rnnkit.checkpoint.state import TrainingState, training_state_from_json
from rnnkit.errors import CheckpointError

__all__ = ["Checkpoint", "load", "load_checkpoint", "load_training_state", "verify_checkpoint"]

_FIX_CODE = "load it with the model code it was saved with, or save the model again with this code"
_FIX_SAVE = "the file was corrupted before its hash was recorded, or crafted; save the checkpoint again"


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """What a checkpoint folder holds for using its model, rebuilt."""

    model: nn.Module  # the rebuilt model, weights loaded, in eval mode
    config: Any  # model.config, the frozen dataclass it was built from
    vocab: dict | None  # the vocab passed to save, None if none was
    training_state: TrainingState | None  # read only with load_checkpoint(..., training_state=True), else None
    metadata: dict | None  # the metadata passed to save, None if none was
    path: Path  # the checkpoint folder
    model_type: str  # the registered model name
    rnnkit_version: str  # the rnnkit version that wrote it
    files: dict[str, str]  # role -> file name, every file the manifest lists (read or not)


def _file(directory: Path, manifest: dict[str, Any], role: str) -> Path:
    return directory / manifest["files"][role]["name"]


def _parse_json(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes], role: str) -> Any:
    try:
        return json.loads(blobs[role].decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{_file(directory, manifest, role)}: expected JSON, found invalid JSON "
                              f"({str(error)[:100]}). Fix: {_FIX_SAVE}") from None


def _decoded(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes], role: str) -> Any:
    if role not in blobs:
        return None
    where = _file(directory, manifest, role)
    data = _parse_json(directory, manifest, blobs, role)
    try:
        value = decode_json(data, where=role)
    except (ValueError, TypeError, RecursionError) as error:
        raise CheckpointError(f"{where}: {str(error)[:300]}. Fix: {_FIX_SAVE}") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{where}: expected a JSON object, found {type(value).__name__}. Fix: {_FIX_SAVE}")
    return value


def _model(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes],
           device: str | torch.device) -> tuple[nn.Module, str]:
    """The model the checkpoint describes, weights loaded, and its registered name."""
    where = _file(directory, manifest, "model")
    doc = _parse_json(directory, manifest, blobs, "model")
    if not (isinstance(doc, dict) and isinstance(doc.get("model_type"), str) and isinstance(doc.get("tied"), dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in doc["tied"].items())
            and isinstance(doc.get("frozen"), list) and "config" in doc):
        raise CheckpointError(f"{where}: expected an object with model_type, config, tied (names to names) and "
                              f"frozen, found {str(doc)[:200]}. Fix: {_FIX_SAVE}")
    try:
        cls = model_class(doc["model_type"])
    except ValueError as error:
        raise CheckpointError(f"{where}: unknown model type {doc['model_type'][:100]!r} (saved from class "
                              f"{str(doc.get('model_class', '?'))[:100]}). {str(error).split(': ', 1)[-1]}") from None
    check_config_json(doc["config"], where)
    try:
        config = config_from_json(doc["config"], cls.config_class)
    except (ValueError, TypeError, RecursionError) as error:
        raise CheckpointError(f"{where}: the stored config does not fit {cls.__qualname__}.config_class: "
                              f"{str(error)[:300]}. Fix: {_FIX_CODE}") from None
    model = rebuild(cls, config, blobs["weights"], doc["tied"], _file(directory, manifest, "weights"))
    frozen = set(doc["frozen"])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen and parameter.is_floating_point())
    return model.to(device).eval(), doc["model_type"]


def _training_state(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes]) -> TrainingState | None:
    if "training" not in blobs:
        if "training_tensors" in blobs:
            raise CheckpointError(f"{directory / MANIFEST}: lists a training tensors file but no training file. "
                                  f"Fix: {_FIX_SAVE}")
        return None
    if "training_tensors" not in blobs:
        raise CheckpointError(f"{directory / MANIFEST}: lists a training file but no training tensors file. "
                              f"Fix: {_FIX_SAVE}")
    try:
        tensors = safetensors.torch.load(blobs["training_tensors"])
    except safetensors.SafetensorError as error:
        raise CheckpointError(f"{_file(directory, manifest, 'training_tensors')}: expected a safetensors file, found "
                              f"bytes that are not one ({error}). Fix: {_FIX_SAVE}") from None
    doc = _parse_json(directory, manifest, blobs, "training")
    try:
        return training_state_from_json(doc, tensors)
    except (ValueError, TypeError, RecursionError) as error:
        raise CheckpointError(f"{_file(directory, manifest, 'training')}: {str(error)[:300]}. "
                              f"Fix: {_FIX_SAVE}") from None


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file's size and SHA-256 without building anything; return the manifest or raise CheckpointError."""
    return read_verified(checkpoint_folder(path))[1]


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                    training_state: bool = False) -> Checkpoint:
    """Verify the checkpoint folder ``path`` and rebuild its model, vocab and metadata; CheckpointError on a bad file.

    ``path`` may also be a run folder (the checkpoint is its ``checkpoint/``), as for every loader here.
    Only the model's files are read unless ``training_state=True``, which also reads and
    verifies the training state (for a resume). The model comes back in eval mode on
    ``device``; call ``.train()`` to go on training.
    """
    roles = None if training_state else MODEL_ROLES
    directory, manifest, blobs = read_verified(checkpoint_folder(path), roles)
    model, model_type = _model(directory, manifest, blobs, device)
    return Checkpoint(model=model, config=model.config, vocab=_decoded(directory, manifest, blobs, "vocab"),
                      metadata=_decoded(directory, manifest, blobs, "metadata"),
                      training_state=_training_state(directory, manifest, blobs) if training_state else None,
                      path=directory, model_type=model_type, rnnkit_version=str(manifest.get("rnnkit_version", "?")),
                      files={role: entry["name"] for role, entry in manifest["files"].items()})


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Verify the model's files in the checkpoint folder ``path`` and rebuild it; CheckpointError on any bad file.

    The model comes back in eval mode on ``device``; call ``.train()`` to go on training.
    """
    directory, manifest, blobs = read_verified(checkpoint_folder(path), ("model", "weights"))
    return _model(directory, manifest, blobs, device)[0]


def load_training_state(path: str | os.PathLike[str]) -> TrainingState:
    """Verify the checkpoint folder ``path`` and return its training state; CheckpointError if it has none."""
    directory, manifest, blobs = read_verified(checkpoint_folder(path))
    state = _training_state(directory, manifest, blobs)
    if state is None:
        raise CheckpointError(f"{directory}: this checkpoint holds no training state, so training cannot resume "
                              "exactly from it. Fix: save with save(model, path, training_state=TrainingState(...)), "
                              "or start a new run from its weights with load(path)")
    return state
