"""Checkpoints: a model, its config, vocabulary and training state in a folder; no pickle anywhere.

Tensors are stored with safetensors, everything else as JSON. ``load`` needs no code from the
user: the model's registered name and config (see ``rnnkit.models.registry``) rebuild it.
Every file's SHA-256 sits in ``manifest.json`` and is checked before anything is parsed; a
missing, truncated, tampered or foreign file raises ``CheckpointError`` naming the file.
Saving is atomic (see ``rnnkit.training._manifest``): a crash mid-save leaves the previous
checkpoint loadable. The hashes catch damage, not forgery: whoever can rewrite the manifest
too can change the checkpoint, so load checkpoints only from sources you trust.

Example:
    >>> import dataclasses, tempfile, torch
    >>> from rnnkit.models.registry import register_model
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from rnnkit.errors import CheckpointError, bad_argument
from rnnkit.models.registry import (build_model, config_from_json, config_to_json, decode_json, encode_json,
                                    model_class, model_name)
from rnnkit.training._manifest import FORMAT_VERSION, commit, read_verified
from rnnkit.training._state import (RNGState, TrainingState, capture_rng_state, restore_rng_state,
                                    training_state_from_json, training_state_to_json)

__all__ = ["FORMAT_VERSION", "Checkpoint", "RNGState", "TrainingState", "capture_rng_state", "load",
           "load_checkpoint", "load_training_state", "restore_rng_state", "save", "verify_checkpoint"]

_FIX_CODE = ("load it with the model code it was saved with, or save the model again with this code")


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """Everything a checkpoint folder holds, rebuilt."""

    model: nn.Module  # the rebuilt model, weights loaded, in eval mode
    config: Any  # model.config, the frozen dataclass it was built from
    vocab: dict | None  # the vocab passed to save, None if none was
    training_state: TrainingState | None  # the training state passed to save, None if none was
    metadata: dict | None  # the metadata passed to save, None if none was
    path: Path  # the checkpoint folder
    model_type: str  # the registered model name
    rnnkit_version: str  # the rnnkit version that wrote it


def _unwrap(model: nn.Module) -> nn.Module:
    """The model inside DataParallel/DistributedDataParallel and torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def _storage_key(tensor: torch.Tensor) -> tuple:
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def _split_tied(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a state dict into canonical tensors and tied names (alias -> the first name of the same tensor)."""
    canonical: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    first: dict[tuple, str] = {}
    for name, tensor in state.items():
        key = _storage_key(tensor) if tensor.numel() else None
        if key is not None and key in first:
            tied[name] = first[key]
        else:
            canonical[name] = tensor
            if key is not None:
                first[key] = name
    return canonical, tied


def _safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """safetensors bytes of ``tensors``; tensors that still overlap in memory are copied apart first."""
    ready: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        tensor = tensor.detach().cpu().contiguous()
        if tensor.numel() and tensor.untyped_storage().data_ptr() in seen:
            tensor = tensor.clone()
        seen.add(tensor.untyped_storage().data_ptr())
        ready[name] = tensor
    return safetensors.torch.save(ready, metadata=metadata)


def _json_bytes(value: Any, where: str) -> bytes:
    return json.dumps(encode_json(value, where=where), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _plain_dict(value: Any, argument: str, fix: str) -> dict:
    if not isinstance(value, dict):
        raise bad_argument(argument, "a dict of JSON-able values", value, fix)
    return value


def save(model: nn.Module, path: str | os.PathLike[str], *, vocab: dict | None = None,
         training_state: TrainingState | None = None, metadata: dict | None = None) -> Path:
    """Save ``model`` (and optionally vocab, training state, metadata) atomically into the folder ``path``.

    The folder is created if needed; saving again into it replaces the checkpoint atomically and
    removes the files only the old one used (other files in the folder are left alone). Returns
    the folder. Raises ValueError if the model is not registered or something is not storable.
    """
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise bad_argument("path", "a folder (created if missing)", f"{str(directory)!r}, an existing file",
                           "pass a folder path, e.g. 'runs/lm/checkpoint'")
    model = _unwrap(model)
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
    canonical, tied = _split_tied(model.state_dict())
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    model_doc = {"model_type": name, "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                 "config": config_json, "tied": tied, "frozen": frozen}
    blobs = {"model": json.dumps(model_doc, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8"),
             "weights": _safetensors_bytes(canonical, {"format": "pt", "rnnkit.model_type": name})}
    if vocab is not None:
        blobs["vocab"] = _json_bytes(_plain_dict(vocab, "vocab", "pass vocab.to_json()"), "vocab")
    if metadata is not None:
        metadata = _plain_dict(metadata, "metadata", "pass a dict, e.g. {'task': 'reber'}")
        blobs["metadata"] = _json_bytes(metadata, "metadata")
    if training_state is not None:
        doc, tensors = training_state_to_json(training_state)
        blobs["training"] = json.dumps(doc, ensure_ascii=False, allow_nan=False).encode("utf-8")
        blobs["training_tensors"] = _safetensors_bytes(tensors, {"format": "pt"})
    from rnnkit import __version__

    header = {"rnnkit_version": __version__, "torch_version": torch.__version__,
              "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "model_type": name}
    commit(directory, blobs, header)
    return directory


def _file(directory: Path, manifest: dict[str, Any], role: str) -> Path:
    return directory / manifest["files"][role]["name"]


def _parse_json(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes], role: str) -> Any:
    try:
        return json.loads(blobs[role].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{_file(directory, manifest, role)}: expected JSON, found invalid JSON ({error}). "
                              "Fix: the file was corrupted before its hash was recorded; "
                              "save the checkpoint again") from None


def _parse_tensors(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes],
                   role: str) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load(blobs[role])
    except safetensors.SafetensorError as error:
        raise CheckpointError(f"{_file(directory, manifest, role)}: expected a safetensors file, found bytes that are "
                              f"not one ({error}). Fix: the file was corrupted before its hash was recorded; "
                              "save the checkpoint again") from None


def _decoded(where: Path, role: str, data: Any) -> Any:
    try:
        return decode_json(data, where=role)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where}: {error}. Fix: save the checkpoint again") from error


def _fill_weights(model: nn.Module, tensors: dict[str, torch.Tensor], tied: dict[str, str], where: Path) -> None:
    """Copy ``tensors`` into ``model`` bit for bit, after checking names, shapes, dtypes and ties against it."""
    target = model.state_dict(keep_vars=True)
    target_tied = _split_tied(target)[1]
    stored = set(tensors) | set(tied)
    missing = sorted(set(target) - stored)
    unexpected = sorted(stored - set(target))
    misshaped = [f"{n} (file {tuple(t.shape)}, model {tuple(target[n].shape)})"
                 for n, t in tensors.items() if n in target and t.shape != target[n].shape]
    dangling = sorted(alias for alias, source in tied.items() if source not in tensors)
    if missing or unexpected or misshaped or dangling:
        found = {"missing tensors": missing, "unexpected tensors": unexpected, "mis-shaped tensors": misshaped,
                 "tied to absent tensors": dangling}
        problems = "; ".join(f"{label} {items}" for label, items in found.items() if items)
        raise CheckpointError(f"{where}: the weights do not match a {type(model).__qualname__} built from the stored "
                              f"config: {problems}. Fix: {_FIX_CODE}")
    if tied != target_tied:
        raise CheckpointError(f"{where}: tied weights differ: the checkpoint ties {tied}, a {type(model).__qualname__} "
                              f"built from the stored config ties {target_tied}. Fix: {_FIX_CODE}")
    for n, tensor in tensors.items():
        live = target[n]
        if live.dtype != tensor.dtype:
            if not (live.is_floating_point() and tensor.is_floating_point()):
                raise CheckpointError(f"{where}: tensor {n} has dtype {tensor.dtype}, the model expects {live.dtype}. "
                                      f"Fix: {_FIX_CODE}")
            live.data = live.data.to(tensor.dtype)  # the model was saved after .to(dtype): follow it, keep ties
    full = {**tensors, **{alias: tensors[source] for alias, source in tied.items()}}
    model.load_state_dict(full, strict=True)


def _rebuild(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes],
             device: str | torch.device) -> tuple[nn.Module, str]:
    """The model the checkpoint describes, weights loaded, and its registered name."""
    import rnnkit.models  # noqa: F401  (registers the built-in models)

    where = _file(directory, manifest, "model")
    doc = _parse_json(directory, manifest, blobs, "model")
    if not (isinstance(doc, dict) and isinstance(doc.get("model_type"), str) and isinstance(doc.get("tied"), dict)
            and isinstance(doc.get("frozen"), list) and "config" in doc):
        raise CheckpointError(f"{where}: expected an object with model_type, config, tied and frozen, found "
                              f"{str(doc)[:200]}. Fix: save the checkpoint again")
    try:
        cls = model_class(doc["model_type"])
    except ValueError as error:
        raise CheckpointError(f"{where}: unknown model type {doc['model_type']!r} (saved from class "
                              f"{doc.get('model_class', '?')}). {str(error).split(': ', 1)[-1]}") from None
    try:
        config = config_from_json(doc["config"], cls.config_class)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where}: the stored config does not fit {cls.__qualname__}.config_class: {error}. "
                              f"Fix: {_FIX_CODE}") from error
    try:
        model = build_model(cls, config)
    except Exception as error:
        raise CheckpointError(f"{where}: building {cls.__qualname__} from the stored config failed: {error!r}. "
                              f"Fix: {_FIX_CODE}") from error
    tensors = _parse_tensors(directory, manifest, blobs, "weights")
    _fill_weights(model, tensors, doc["tied"], _file(directory, manifest, "weights"))
    frozen = set(doc["frozen"])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name not in frozen)
    return model.to(device).eval(), doc["model_type"]


def _training_state(directory: Path, manifest: dict[str, Any], blobs: dict[str, bytes]) -> TrainingState | None:
    if "training" not in blobs:
        return None
    if "training_tensors" not in blobs:
        raise CheckpointError(f"{directory / 'manifest.json'}: lists a training file but no training tensors file. "
                              "Fix: save the checkpoint again")
    tensors = _parse_tensors(directory, manifest, blobs, "training_tensors")
    where = _file(directory, manifest, "training")
    doc = _parse_json(directory, manifest, blobs, "training")
    try:
        return training_state_from_json(doc, tensors)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{where}: {error}. Fix: save the checkpoint again") from error


def verify_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Check every file's size and SHA-256 without building anything; return the manifest or raise CheckpointError."""
    return read_verified(path)[1]


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> Checkpoint:
    """Verify the checkpoint folder ``path`` and rebuild everything in it; CheckpointError on any bad file.

    The model comes back in eval mode on ``device``; call ``.train()`` to go on training.
    """
    directory, manifest, blobs = read_verified(path)
    model, model_type = _rebuild(directory, manifest, blobs, device)
    optional = {role: _decoded(_file(directory, manifest, role), role, _parse_json(directory, manifest, blobs, role))
                if role in blobs else None for role in ("vocab", "metadata")}
    return Checkpoint(model=model, config=model.config, vocab=optional["vocab"], metadata=optional["metadata"],
                      training_state=_training_state(directory, manifest, blobs), path=directory,
                      model_type=model_type, rnnkit_version=str(manifest.get("rnnkit_version", "?")))


def load(path: str | os.PathLike[str], *, device: str | torch.device = "cpu") -> nn.Module:
    """Verify the checkpoint folder ``path`` and rebuild its model; CheckpointError on any bad file.

    The model comes back in eval mode on ``device``; call ``.train()`` to go on training.
    """
    directory, manifest, blobs = read_verified(path)
    return _rebuild(directory, manifest, blobs, device)[0]


def load_training_state(path: str | os.PathLike[str]) -> TrainingState:
    """Verify the checkpoint folder ``path`` and return its training state; CheckpointError if it has none."""
    directory, manifest, blobs = read_verified(path)
    state = _training_state(directory, manifest, blobs)
    if state is None:
        raise CheckpointError(f"{directory}: this checkpoint holds no training state, so training cannot resume "
                              "exactly from it. Fix: save with save(model, path, training_state=TrainingState(...)), "
                              "or start a new run from its weights with load(path)")
    return state
