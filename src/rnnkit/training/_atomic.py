"""Moved to ``rnnkit.checkpoint.atomic``; re-exported here for code written before the move."""
from rnnkit.checkpoint.atomic import (TEMP_PREFIX, fsync_directory, remove_files, sha256_hex, stale_temp_files,
                                      write_atomic)

__all__ = ["TEMP_PREFIX", "fsync_directory", "remove_files", "sha256_hex", "stale_temp_files", "write_atomic"]
