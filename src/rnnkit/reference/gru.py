"""GRU in NumPy with a hand-written backward: torch/cuDNN "reset-after", gate order (r, z, n).

    r  = sigmoid(x W_ir^T + b_ir + h W_hr^T + b_hr)
    z  = sigmoid(x W_iz^T + b_iz + h W_hz^T + b_hz)
    n  = tanh(x W_in^T + b_in + r * (h W_hn^T + b_hn))    (reset applied after the matmul)
    h' = (1 - z) * n + z * h

Weights in torch.nn.GRU's layout: W_ih (3H, F), W_hh (3H, H), b_ih (3H,), b_hh (3H,).

Example:
    >>> import numpy as np
    >>> from rnnkit.reference import gru_step, random_params
    >>> p = random_params("gru", 3, 4, np.random.default_rng(0))
    >>> gru_step(p, np.ones((2, 3)), np.zeros((2, 4))).shape  # (B, H)
    (2, 4)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.reference._checks import check_step_input
from rnnkit.reference.bptt import (
    CellOps, Grads, Params, SequenceCache, StateGradHook, States, accumulate_linear, run_backward, run_forward,
    sigmoid,
)

__all__ = ["GRU_OPS", "gru_backward", "gru_forward", "gru_step"]


def _step_forward(params: Params, x: np.ndarray, state: States) -> tuple[States, Any]:
    (h,) = state
    hidden = h.shape[1]
    gi = x @ params["W_ih"].T  # (B, 3H)
    gh = h @ params["W_hh"].T  # (B, 3H)
    if "b_ih" in params:
        gi = gi + params["b_ih"]
    if "b_hh" in params:
        gh = gh + params["b_hh"]
    r = sigmoid(gi[:, :hidden] + gh[:, :hidden])  # (B, H)
    z = sigmoid(gi[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
    gh_n = gh[:, 2 * hidden:]
    n = np.tanh(gi[:, 2 * hidden:] + r * gh_n)
    h_new = (1.0 - z) * n + z * h  # (B, H)
    return (h_new,), (x, h, r, z, n, gh_n)


def _step_backward(d_new: States, cache: Any, params: Params, grads: Grads) -> tuple[np.ndarray, States]:
    x, h, r, z, n, gh_n = cache
    (dh_new,) = d_new
    da_n = dh_new * (1.0 - z) * (1.0 - n * n)  # (B, H), gradient of n's pre-activation
    da_z = dh_new * (h - n) * z * (1.0 - z)
    da_r = da_n * gh_n * r * (1.0 - r)
    dgi = np.concatenate([da_r, da_z, da_n], axis=1)  # (B, 3H)
    dgh = np.concatenate([da_r, da_z, da_n * r], axis=1)  # (B, 3H)
    dx, dh = accumulate_linear(grads, params, dgi, dgh, x, h)
    return dx, (dh + dh_new * z,)


GRU_OPS = CellOps("gru", 3, ("h",), False, _step_forward, _step_backward)


def gru_step(params: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """One step: x (B, F), h (B, H) -> h' (B, H)."""
    _, h_t, _ = gru_forward(params, check_step_input(x)[:, None], h)
    return h_t  # (B, H)


def gru_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None,
    mask: np.ndarray | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray, SequenceCache]:
    """Run over x (B, T, F) from h0 (B, H) (None: zeros); return ``(y (B, T, H), hT (B, H), cache)``.

    ``mask`` bool (B, T): at a padded step h carries over and y is zero. ``reverse`` runs
    t = T-1 ... 0. ``params``: W_ih (3H, F), W_hh (3H, H), optional b_ih, b_hh (3H,).
    """
    y, (h_t,), cache = run_forward(GRU_OPS, params, x, (h0,), mask, reverse)
    return y, h_t, cache


def gru_backward(
    dy: np.ndarray | None,
    dhT: np.ndarray | None,
    cache: SequenceCache,
    state_grad_hook: StateGradHook | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(dy * y) + sum(dhT * hT)``: keys dx (B, T, F), dh0 (B, H), dW_ih,
    dW_hh, and db_ih, db_hh when the biases were given. ``dy``/``dhT`` None means zeros.
    """
    return run_backward(dy, (dhT,), cache, state_grad_hook)
