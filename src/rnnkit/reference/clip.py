"""Gradient clipping on a reference grads dict, with torch.nn.utils' semantics.

Exploding gradients are the other face of BPTT: the usual fix caps either the global norm
of all parameter gradients (rescaling them together, direction kept) or each entry's value.

By default only parameter gradients are clipped (every key except ``dx``, ``dh0``, ``dc0``),
as ``torch.nn.utils.clip_grad_norm_(module.parameters(), ...)`` would. Both functions return
a new dict and leave the input untouched.

Example:
    >>> import numpy as np
    >>> g = {"dW_ih": np.array([[3.0]]), "dW_hh": np.array([[4.0]]), "dx": np.ones((1, 1, 1))}
    >>> clipped, norm = clip_grad_norm(g, 1.0)
    >>> float(norm), round(float(clipped["dW_hh"][0, 0]), 6), float(clipped["dx"].sum())
    (5.0, 0.8, 1.0)
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from rnnkit.errors import bad_argument
from rnnkit.reference._checks import shape_text

__all__ = ["NON_PARAMETER_KEYS", "clip_grad_norm", "clip_grad_value", "parameter_keys"]

NON_PARAMETER_KEYS = ("dx", "dh0", "dc0")


def parameter_keys(grads: Mapping[str, np.ndarray]) -> list[str]:
    """The keys of ``grads`` that hold parameter gradients (not dx, dh0, dc0), in dict order.

    E.g. ``dW_ih`` (G*H, F), ``dW_hh`` (G*H, H), ``db_ih``/``db_hh`` (G*H,); not ``dx`` (B, T, F).
    """
    return [k for k in grads if k not in NON_PARAMETER_KEYS]


def _selected(grads: object, keys: Iterable[str] | None) -> list[str]:
    if not isinstance(grads, Mapping):
        raise bad_argument("grads", "a dict of numpy arrays as returned by a *_backward call",
                           shape_text(grads), "pass the grads dict itself")
    chosen = parameter_keys(grads) if keys is None else list(keys)
    missing = [k for k in chosen if k not in grads]
    if missing:
        raise bad_argument("keys", f"keys present in grads {sorted(grads)}", f"{missing}",
                           "leave keys=None to clip every parameter gradient")
    return chosen


def clip_grad_norm(
    grads: Mapping[str, np.ndarray],
    max_norm: float,
    norm_type: float = 2.0,
    keys: Iterable[str] | None = None,
) -> tuple[dict[str, np.ndarray], float]:
    """Rescale the selected gradients so their joint ``norm_type``-norm is at most ``max_norm``.

    As torch: ``total = ||(||g_1||, ..., ||g_k||)||_p`` (``inf``: the largest |entry|), then
    every selected gradient is multiplied by ``min(1, max_norm / (total + 1e-6))``.
    Returns ``(new grads dict, total norm before clipping)``; each gradient keeps its shape, e.g. dW_hh (G*H, H).
    """
    chosen = _selected(grads, keys)
    if not isinstance(max_norm, (int, float)) or isinstance(max_norm, bool) or not max_norm >= 0:
        raise bad_argument("max_norm", "a number >= 0", shape_text(max_norm), "pass e.g. max_norm=1.0")
    if not isinstance(norm_type, (int, float)) or isinstance(norm_type, bool) or not norm_type > 0:
        raise bad_argument("norm_type", "a number > 0 or math.inf", shape_text(norm_type),
                           "pass 2.0 (Euclidean, the default) or math.inf")
    flat = [np.abs(np.asarray(grads[k])).ravel() for k in chosen]
    if not flat:
        return dict(grads), 0.0
    if math.isinf(norm_type):
        total = float(max(f.max(initial=0.0) for f in flat))
    else:
        per = np.array([np.sum(f ** norm_type) ** (1.0 / norm_type) for f in flat])
        total = float(np.sum(per ** norm_type) ** (1.0 / norm_type))
    scale = min(1.0, max_norm / (total + 1e-6))
    out = dict(grads)
    for k in chosen:
        out[k] = grads[k] * scale
    return out, total


def clip_grad_value(
    grads: Mapping[str, np.ndarray],
    clip_value: float,
    keys: Iterable[str] | None = None,
) -> dict[str, np.ndarray]:
    """Clip every entry of the selected gradients to ``[-clip_value, clip_value]``, as torch does.

    Each gradient keeps its shape (e.g. ``dW_hh`` (G*H, H)); returns a new dict.
    """
    chosen = _selected(grads, keys)
    if not isinstance(clip_value, (int, float)) or isinstance(clip_value, bool) or not clip_value >= 0:
        raise bad_argument("clip_value", "a number >= 0", shape_text(clip_value), "pass e.g. clip_value=5.0")
    out = dict(grads)
    for k in chosen:
        out[k] = np.clip(grads[k], -clip_value, clip_value)
    return out
