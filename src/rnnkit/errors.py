"""The error types of rnnkit: one per family.

Every message names the argument, what was expected, what was received and the fix,
so a user can act on it without reading the source.
"""
from __future__ import annotations

__all__ = ["CheckpointError", "RNNKitError", "describe"]


class RNNKitError(Exception):
    """Base class of rnnkit's own error types."""


class CheckpointError(RNNKitError, ValueError):
    """A checkpoint folder or file is missing, truncated, tampered with or not an rnnkit checkpoint.

    The message says which file is wrong and how.
    """


def describe(value: object) -> str:
    """A short description of a received value for an error message (shape and dtype for tensors)."""
    import torch

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}, on {value.device}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value[:4])
        more = ", ..." if len(value) > 4 else ""
        return f"a {type(value).__name__} of {len(value)} ({inner}{more})"
    return f"{value!r} ({type(value).__name__})"


def bad_argument(argument: str, expected: str, received: object, fix: str) -> ValueError:
    """Build the ValueError every user-facing check raises: argument, expected, received, fix."""
    got = received if isinstance(received, str) else describe(received)
    return ValueError(f"{argument}: expected {expected}, but received {got}. Fix: {fix}")
