"""Moved to ``rnnkit.checkpoint.manifest``; re-exported here for code written before the move."""
from rnnkit.checkpoint.manifest import (FORMAT, FORMAT_VERSION, MANIFEST, ROLES, checkpoint_directory, commit,
                                        read_verified)

__all__ = ["FORMAT", "FORMAT_VERSION", "MANIFEST", "ROLES", "checkpoint_directory", "commit", "read_verified"]
