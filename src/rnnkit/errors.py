"""The error types of rnnkit: one per family.

Every message names the argument, what was expected, what was received and the fix,
so a user can act on it without reading the source.
"""
from __future__ import annotations

__all__ = ["MAX_REPR", "BadArgument", "CheckpointError", "RNNKitError", "bad_argument", "describe"]


class RNNKitError(Exception):
    """Base class of rnnkit's own error types."""


class CheckpointError(RNNKitError, ValueError):
    """A checkpoint folder or file is missing, truncated, tampered with or not an rnnkit checkpoint.

    The message says which file is wrong and how.
    """


MAX_REPR = 80  # characters of a received value's repr kept in a message


def describe(value: object) -> str:
    """A short, one-line description of a received value for an error message.

    Tensors and arrays give their shape and dtype, never their contents; other values their repr
    cut to ``MAX_REPR`` characters, so a message stays one short line whatever was passed.

    Example:
        >>> import numpy as np
        >>> describe(np.zeros((300, 4)))
        'a numpy.ndarray of shape (300, 4), dtype float64'
        >>> len(describe("x" * 10_000)) < 120
        True
    """
    import torch

    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}, dtype {value.dtype}, on {value.device}"
    shape, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
    if isinstance(shape, tuple) and dtype is not None:  # NumPy, JAX, CuPy arrays ...
        kind = f"{type(value).__module__.split('.')[0]}.{type(value).__name__}"
        return f"a {kind} of shape {shape}, dtype {dtype}"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(describe(v) for v in value[:4])
        more = ", ..." if len(value) > 4 else ""
        return _cut(f"a {type(value).__name__} of {len(value)} ({inner}{more})")
    return f"{_cut(repr(value))} ({type(value).__name__})"


def _cut(text: str, limit: int = MAX_REPR) -> str:
    """``text`` on one line, at most ``limit`` characters (the cut marked with an ellipsis)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


class BadArgument(ValueError):
    """The ValueError of :func:`bad_argument`; ``cli_fix`` is the fix in ``rnnkit`` flags, when it differs."""

    def __init__(self, message: str, cli_fix: str | None = None) -> None:
        super().__init__(message)
        self.cli_fix = cli_fix


def bad_argument(argument: str, expected: str, received: object, fix: str, cli_fix: str | None = None) -> ValueError:
    """Build the ValueError every user-facing check raises: argument, expected, received, fix.

    ``fix`` speaks the Python API (``Vocab.build(..., unknown="unk")``); ``cli_fix``, when given,
    says the same in the command line's terms (``pass --unk``), and ``rnnkit`` prints that one.

    Example:
        >>> str(bad_argument("n", "a positive int", -1, "use n >= 1"))
        'n: expected a positive int, but received -1 (int). Fix: use n >= 1'
    """
    got = _cut(received, 2 * MAX_REPR) if isinstance(received, str) else describe(received)
    return BadArgument(f"{argument}: expected {expected}, but received {got}. Fix: {fix}", cli_fix)
