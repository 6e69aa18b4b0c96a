"""Persistence: checkpoints of models and training state; no pickle anywhere.

A checkpoint is a folder: the model's config and tied/frozen names as JSON, its tensors as
safetensors, optionally a vocabulary, metadata and a training state, and ``manifest.json``
with every file's size and SHA-256, written last and atomically. This package sits below the
models and knows none of them: a model class registers itself (``@register_model`` in its
own module) and ``load`` rebuilds it from its registered name and config.

- ``save``, ``load``, ``load_checkpoint``, ``load_training_state``, ``verify_checkpoint``: the API;
- ``registry``: model registration and the exact JSON form of configs;
- ``state``: ``TrainingState``, the record a trainer hands to ``save`` for an exact resume;
- ``manifest`` and ``atomic``: the layout on disk and crash-safe writes;
- ``rebuild`` and ``config_check``: loading files that may have been crafted;
- ``runs``: the ``checkpoint/`` folder inside a run folder.

Example:
    >>> import tempfile, torch, rnnkit
    >>> lstm = rnnkit.LSTM(3, 5)
    >>> folder = save(lstm, tempfile.mkdtemp() + "/lstm")
    >>> all(torch.equal(a, b) for a, b in zip(load(folder).parameters(), lstm.parameters()))
    True
"""
from __future__ import annotations

from rnnkit.checkpoint.manifest import FORMAT_VERSION
from rnnkit.checkpoint.reader import Checkpoint, load, load_checkpoint, load_training_state, verify_checkpoint
from rnnkit.checkpoint.registry import (build_model, config_from_json, config_to_json, model_class, model_name,
                                        register_config, register_model, registered_models)
from rnnkit.checkpoint.runs import CHECKPOINT_DIR, checkpoint_folder, is_run_dir
from rnnkit.checkpoint.state import RNGState, TrainingState, capture_rng_state, restore_rng_state
from rnnkit.checkpoint.writer import save
from rnnkit.errors import CheckpointError

__all__ = [
    "CHECKPOINT_DIR", "Checkpoint", "CheckpointError", "FORMAT_VERSION", "RNGState", "TrainingState", "build_model",
    "capture_rng_state", "checkpoint_folder", "config_from_json", "config_to_json", "is_run_dir", "load",
    "load_checkpoint", "load_training_state", "model_class", "model_name", "register_config", "register_model",
    "registered_models", "restore_rng_state", "save", "verify_checkpoint",
]
