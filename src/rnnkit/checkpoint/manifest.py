"""The on-disk layout of a checkpoint folder: content-named data files and a manifest that commits them.

Layout (``<hex>`` = the first 16 hex digits of the file's SHA-256)::

    ckpt/
      manifest.json                 written last: the single commit point
      model-<hex>.json              model type, config, tied and frozen parameter names
      weights-<hex>.safetensors     the model's tensors (tied ones stored once)
      vocab-<hex>.json              optional
      metadata-<hex>.json           optional
      training-<hex>.json           optional: counters, optimizer/scheduler/RNG state (no tensors)
      training-<hex>.safetensors    optional: the tensors the training JSON refers to

``commit`` writes each data file atomically under a new name, fsyncs the folder, then
atomically replaces ``manifest.json``; only after that does it delete files the new manifest
does not name. A crash at any moment leaves the old or the new checkpoint whole.
``read_verified`` checks sizes and SHA-256 of the files it is asked for before anything is
parsed; files it is not asked for (the training state, when only the model is needed) are
neither read nor verified, so damage there does not block ``eval`` or ``sample``.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> manifest = commit(folder, {"model": b"{}", "weights": b"x"}, {})
    >>> sorted(manifest["files"]), read_verified(folder)[2]["weights"]
    (['model', 'weights'], b'x')
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from collections.abc import Collection
from typing import Any

from rnnkit._version import __version__
from rnnkit.errors import CheckpointError
from rnnkit.checkpoint.atomic import fsync_directory, remove_files, sha256_hex, stale_temp_files, write_atomic

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "MODEL_ROLES", "ROLES", "TRAINING_ROLES", "checkpoint_directory",
           "commit", "read_verified"]

FORMAT = "rnnkit.checkpoint"
FORMAT_VERSION = 1  # bump when a reader of the previous version could not read the new files
MANIFEST = "manifest.json"
ROLES = {  # role -> (file stem, suffix); "model" and "weights" are required
    "model": ("model", ".json"), "weights": ("weights", ".safetensors"), "vocab": ("vocab", ".json"),
    "metadata": ("metadata", ".json"), "training": ("training", ".json"),
    "training_tensors": ("training", ".safetensors"),
}
MODEL_ROLES = ("model", "weights", "vocab", "metadata")  # what eval, sample, info and load read
TRAINING_ROLES = ("training", "training_tensors")  # what only a resume reads
_REQUIRED = ("model", "weights")
MAX_MANIFEST_BYTES = 1 << 20  # a manifest lists a handful of files: about 1 KB
_DATA_FILE = re.compile(r"(model|weights|vocab|metadata|training)-[0-9a-f]{16}\.(json|safetensors)")
_FIX_DAMAGED = "the checkpoint is damaged or was edited by hand; restore it from a copy or save it again"


def _json_bytes(value: Any) -> bytes:
    return json.dumps(value, indent=1, ensure_ascii=False, allow_nan=False).encode("utf-8")


def commit(directory: Path, blobs: dict[str, bytes], header: dict[str, Any]) -> dict[str, Any]:
    """Write ``blobs`` (role -> bytes), then the manifest (``header`` + file list), into ``directory``.

    Returns the manifest written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    created: list[str] = []  # files this call adds; removed again if it fails before the commit
    try:
        for role, data in blobs.items():
            stem, suffix = ROLES[role]
            digest = sha256_hex(data)
            name = f"{stem}-{digest[:16]}{suffix}"
            if not (directory / name).exists():
                created.append(name)
            write_atomic(directory, name, data)
            entries[role] = {"name": name, "size": len(data), "sha256": digest}
        fsync_directory(directory)  # the data files are on disk before the manifest can name them
        manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **header, "files": entries}
        write_atomic(directory, MANIFEST, _json_bytes(manifest))  # the commit point
    except BaseException:
        remove_files(directory, created)
        raise
    fsync_directory(directory)
    keep = {entry["name"] for entry in entries.values()}
    old = [name for name in os.listdir(directory) if _DATA_FILE.fullmatch(name) and name not in keep]
    remove_files(directory, old + stale_temp_files(directory))
    return manifest


def checkpoint_directory(path: str | os.PathLike[str]) -> Path:
    """The checkpoint folder ``path`` names (a folder, or its manifest.json); CheckpointError if it is not one."""
    path = Path(path)
    if path.is_file() and path.name == MANIFEST:
        return path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder, expected a checkpoint folder holding {MANIFEST}. "
                              "Fix: pass the folder given to rnnkit.save(model, path)")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected an rnnkit checkpoint folder holding {MANIFEST}, found a file. "
                              "Fix: pass the folder written by rnnkit.save "
                              "(rnnkit never loads pickle-based .pt/.pth files)")
    if not (path / MANIFEST).is_file():
        found = sorted(p.name for p in path.iterdir())
        interrupted = any(name.endswith(MANIFEST) for name in stale_temp_files(path))
        hint = " A save into it was interrupted before its first commit." if interrupted else ""
        raise CheckpointError(f"{path}: not an rnnkit checkpoint: expected {MANIFEST} inside, found "
                              f"{found[:8] or 'an empty folder'}.{hint} Fix: pass a folder written by rnnkit.save")
    return path


def _parse_manifest(directory: Path, raw: bytes) -> dict[str, Any]:
    where = directory / MANIFEST
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise CheckpointError(f"{where}: expected JSON, found invalid JSON ({error}). Fix: {_FIX_DAMAGED}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise CheckpointError(f"{where}: not an rnnkit checkpoint manifest: expected \"format\": \"{FORMAT}\", "
                              f"found {found!r}. Fix: pass a folder written by rnnkit.save")
    version = manifest.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{where}: expected an int format_version >= 1, found {version!r}. Fix: {_FIX_DAMAGED}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{where}: format_version {version} is newer than this rnnkit {__version__} reads "
                              f"(up to {FORMAT_VERSION}); it was written by rnnkit "
                              f"{manifest.get('rnnkit_version', '?')}. "
                              "Fix: upgrade rnnkit (pip install -U rnnkit)")
    files = manifest.get("files")
    if not isinstance(files, dict) or any(role not in files for role in _REQUIRED):
        raise CheckpointError(f"{where}: expected a \"files\" object naming at least {list(_REQUIRED)}, found "
                              f"{sorted(files) if isinstance(files, dict) else files!r}. Fix: {_FIX_DAMAGED}")
    for role, entry in files.items():
        ok = (role in ROLES and isinstance(entry, dict) and isinstance(entry.get("name"), str)
              and _DATA_FILE.fullmatch(entry["name"]) is not None and entry["name"].endswith(ROLES[role][1])
              and isinstance(entry.get("size"), int) and entry["size"] >= 0
              and isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]) is not None)
        if not ok:
            raise CheckpointError(f"{where}: files[{role!r}] should be one of the roles {sorted(ROLES)} with a plain "
                                  f"file name, a size and a sha256, found {entry!r}. Fix: {_FIX_DAMAGED}")
    return manifest


def _read_manifest(directory: Path) -> bytes:
    path = directory / MANIFEST
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_MANIFEST_BYTES + 1)
    except OSError as error:
        raise CheckpointError(f"{path}: could not read the manifest ({error.strerror or error}). "
                              f"Fix: {_FIX_DAMAGED}") from None
    if len(raw) > MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: expected a manifest of at most {MAX_MANIFEST_BYTES:,} bytes, found a larger "
                              f"file. Fix: {_FIX_DAMAGED}")
    return raw


class _Missing(CheckpointError):
    """A file the manifest names is absent (perhaps a concurrent save replaced the checkpoint)."""


def _read_file(directory: Path, role: str, entry: dict[str, Any]) -> bytes:
    path = directory / entry["name"]
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise _Missing(f"{path}: missing: {MANIFEST} lists it as the {role} file, but it does not exist. "
                       f"Fix: {_FIX_DAMAGED}") from None
    if size != entry["size"]:
        how = "truncated" if size < entry["size"] else "grown"
        raise CheckpointError(f"{path}: size mismatch: {MANIFEST} records {entry['size']} bytes, the file has {size} "
                              f"bytes ({how}). Fix: {_FIX_DAMAGED}")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"{path}: could not read the {role} file ({error.strerror or error}). "
                              f"Fix: {_FIX_DAMAGED}") from None
    digest = sha256_hex(data)
    if len(data) != entry["size"] or digest != entry["sha256"]:
        raise CheckpointError(f"{path}: hash mismatch: {MANIFEST} records sha256 {entry['sha256']}, the file has "
                              f"{digest} (its bytes were changed). Fix: {_FIX_DAMAGED}")
    return data


def read_verified(path: str | os.PathLike[str], roles: Collection[str] | None = None,
                  ) -> tuple[Path, dict[str, Any], dict[str, bytes]]:
    """Read and verify a checkpoint: (folder, manifest, role -> bytes whose size and SHA-256 match the manifest).

    ``roles`` limits what is read to those roles (the ones the manifest lists); None reads all.
    """
    directory = checkpoint_directory(path)
    attempts = 3  # a concurrent save may replace the checkpoint between reading the manifest and its files
    while True:
        raw = _read_manifest(directory)
        manifest = _parse_manifest(directory, raw)
        wanted = {role: entry for role, entry in manifest["files"].items() if roles is None or role in roles}
        try:
            blobs = {role: _read_file(directory, role, entry) for role, entry in wanted.items()}
        except _Missing:
            attempts -= 1
            try:
                replaced = _read_manifest(directory) != raw
            except CheckpointError:
                replaced = False
            if attempts and replaced:
                continue
            raise
        return directory, manifest, blobs
