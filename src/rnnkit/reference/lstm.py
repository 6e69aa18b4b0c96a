"""LSTM in NumPy with a hand-written backward, torch gate order (i, f, g, o).

    a       = x W_ih^T + b_ih + h W_hh^T + b_hh                 (B, 4H), split i | f | g | o
    i, f    = sigmoid(a_i + w_ci * c), sigmoid(a_f + w_cf * c)  (peepholes see the old cell)
    g       = tanh(a_g)
    c'      = f * c + i * g
    o       = sigmoid(a_o + w_co * c')                          (the output gate sees the new cell)
    h'      = o * tanh(c')

Peepholes (Gers & Schmidhuber, diagonal) are used when ``params`` holds all of ``w_ci``,
``w_cf``, ``w_co`` (H,); without them this is exactly torch.nn.LSTM.

Example:
    >>> import numpy as np
    >>> from rnnkit.reference import lstm_forward, lstm_backward, random_params
    >>> p = random_params("lstm", 3, 4, np.random.default_rng(0), peepholes=True)
    >>> y, (hT, cT), cache = lstm_forward(p, np.ones((2, 5, 3)), None, None)
    >>> g = lstm_backward(np.ones_like(y), (None, np.ones_like(cT)), cache)
    >>> g["dc0"].shape, g["dw_co"].shape                    # (B, H), (H,)
    ((2, 4), (4,))
"""
from __future__ import annotations

from typing import Any

import numpy as np

from rnnkit.reference._checks import check_step_input
from rnnkit.reference.bptt import (
    CellOps, Grads, Params, SequenceCache, StateGradHook, States, accumulate_linear, run_backward, run_forward,
    sigmoid,
)

__all__ = ["LSTM_OPS", "lstm_backward", "lstm_forward", "lstm_step"]


def _step_forward(params: Params, x: np.ndarray, state: States) -> tuple[States, Any]:
    h, c = state
    hidden = h.shape[1]
    a = x @ params["W_ih"].T + h @ params["W_hh"].T  # (B, 4H)
    if "b_ih" in params:
        a = a + params["b_ih"]
    if "b_hh" in params:
        a = a + params["b_hh"]
    a_i, a_f, a_g, a_o = (a[:, k * hidden:(k + 1) * hidden] for k in range(4))  # 4 x (B, H)
    peep = "w_ci" in params
    if peep:
        a_i = a_i + params["w_ci"] * c
        a_f = a_f + params["w_cf"] * c
    i, f, g = sigmoid(a_i), sigmoid(a_f), np.tanh(a_g)
    c_new = f * c + i * g  # (B, H)
    if peep:
        a_o = a_o + params["w_co"] * c_new
    o = sigmoid(a_o)
    tanh_c = np.tanh(c_new)
    h_new = o * tanh_c  # (B, H)
    return (h_new, c_new), (x, h, c, i, f, g, o, c_new, tanh_c)


def _step_backward(d_new: States, cache: Any, params: Params, grads: Grads) -> tuple[np.ndarray, States]:
    x, h, c, i, f, g, o, c_new, tanh_c = cache
    dh_new, dc_new = d_new
    da_o = dh_new * tanh_c * o * (1.0 - o)  # (B, H)
    dc = dc_new + dh_new * o * (1.0 - tanh_c * tanh_c)  # total gradient of c'
    peep = "w_ci" in params
    if peep:
        dc = dc + da_o * params["w_co"]
        grads["dw_co"] += (da_o * c_new).sum(axis=0)
    da_i = dc * g * i * (1.0 - i)
    da_f = dc * c * f * (1.0 - f)
    da_g = dc * i * (1.0 - g * g)
    dc_prev = dc * f  # (B, H)
    if peep:
        dc_prev = dc_prev + da_i * params["w_ci"] + da_f * params["w_cf"]
        grads["dw_ci"] += (da_i * c).sum(axis=0)
        grads["dw_cf"] += (da_f * c).sum(axis=0)
    da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)  # (B, 4H)
    dx, dh = accumulate_linear(grads, params, da, da, x, h)
    return dx, (dh, dc_prev)


LSTM_OPS = CellOps("lstm", 4, ("h", "c"), True, _step_forward, _step_backward)


def lstm_step(
    params: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, c: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One step: x (B, F), h (B, H), c (B, H) -> (h' (B, H), c' (B, H))."""
    _, final, _ = lstm_forward(params, check_step_input(x)[:, None], h, c)
    return final  # (B, H), (B, H)


def lstm_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None,
    c0: np.ndarray | None,
    mask: np.ndarray | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], SequenceCache]:
    """Run over x (B, T, F); return ``(y (B, T, H), (hT, cT) each (B, H), cache)``.

    ``h0``/``c0`` (B, H) or None (zeros). ``mask`` bool (B, T): at a padded step h and c
    carry over and y is zero. ``reverse`` runs t = T-1 ... 0. ``params``: W_ih (4H, F),
    W_hh (4H, H), optional b_ih, b_hh (4H,), optional peepholes w_ci, w_cf, w_co (H,).
    """
    y, (h_t, c_t), cache = run_forward(LSTM_OPS, params, x, (h0, c0), mask, reverse)
    return y, (h_t, c_t), cache


def lstm_backward(
    dy: np.ndarray | None,
    dfinal: tuple[np.ndarray | None, np.ndarray | None] | None,
    cache: SequenceCache,
    state_grad_hook: StateGradHook | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(dy * y) + sum(dhT * hT) + sum(dcT * cT)`` with ``dfinal = (dhT, dcT)``.

    Keys: dx (B, T, F), dh0, dc0 (B, H), dW_ih, dW_hh, db_ih, db_hh (when given) and
    dw_ci, dw_cf, dw_co (with peepholes). Any of dy, dfinal, dhT, dcT may be None (zeros).
    """
    dh_t, dc_t = (None, None) if dfinal is None else dfinal
    return run_backward(dy, (dh_t, dc_t), cache, state_grad_hook)
