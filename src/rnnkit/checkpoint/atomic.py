"""Crash-safe file writes for checkpoints: temp file + fsync + rename, then fsync of the folder.

A file written by ``write_atomic`` is either absent or whole under its final name, whatever
moment the process dies at: the bytes go to a hidden temp file first, are flushed to disk,
and only then renamed over the target (a rename is atomic on POSIX and NTFS). The folder is
fsynced afterwards so the rename itself survives a power cut.

Example:
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder, "hello.txt", b"hi")
    >>> (folder / "hello.txt").read_bytes(), [p.name for p in folder.iterdir()]
    (b'hi', ['hello.txt'])
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path

__all__ = ["TEMP_PREFIX", "fsync_directory", "remove_files", "sha256_hex", "stale_temp_files", "write_atomic"]

_log = logging.getLogger(__name__)
TEMP_PREFIX = ".rnnkit-tmp-"  # every temp file a checkpoint write creates starts with this
_TEMP_RE = re.compile(re.escape(TEMP_PREFIX) + r"[0-9a-f]{32}-.+")


def sha256_hex(data: bytes) -> str:
    """The SHA-256 of ``data`` as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def fsync_directory(directory: Path) -> None:
    """Flush a folder's entries (creations, renames, deletions) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except (PermissionError, IsADirectoryError):
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(directory: Path, name: str, data: bytes) -> None:
    """Write ``data`` to ``directory / name`` so that the file is either the old one or the whole new one.

    The caller fsyncs ``directory`` afterwards (once for several files) to make the rename durable.
    """
    temp = directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}-{name}"
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, directory / name)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        except OSError as error:  # the original error matters more; the temp file is removed by the next save
            _log.warning("could not remove temp file %s: %s", temp, error)
        raise


def stale_temp_files(directory: Path) -> list[str]:
    """Names of temp files left in ``directory`` by writes that were interrupted (a crash or a kill)."""
    return sorted(p.name for p in directory.iterdir() if _TEMP_RE.fullmatch(p.name))


def remove_files(directory: Path, names: Iterable[str]) -> None:
    """Delete ``names`` from ``directory``; OS errors are logged, not raised: leftovers are harmless, retried later."""
    removed = False
    for name in names:
        try:
            os.unlink(directory / name)
            removed = True
        except FileNotFoundError:
            pass
        except OSError as error:
            _log.warning("could not remove old checkpoint file %s: %s", directory / name, error)
    if removed:
        fsync_directory(directory)
