"""Elman (vanilla) RNN in NumPy with a hand-written backward.

    h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh),   act in {tanh, relu, identity}

Weights in torch.nn.RNN's layout: W_ih (H, F), W_hh (H, H), b_ih (H,), b_hh (H,).

Example:
    >>> import numpy as np
    >>> from rnnkit.reference import elman_forward, elman_backward, random_params
    >>> p = random_params("rnn_relu", 3, 4, np.random.default_rng(0))
    >>> y, hT, cache = elman_forward(p, np.ones((2, 5, 3)), None, nonlinearity="relu")
    >>> y.shape, hT.shape                                  # (B, T, H), (B, H)
    ((2, 5, 4), (2, 4))
    >>> elman_backward(np.ones_like(y), None, cache)["dx"].shape  # (B, T, F)
    (2, 5, 3)
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rnnkit.errors import bad_argument
from rnnkit.reference._checks import check_step_input, shape_text
from rnnkit.reference.bptt import (
    CellOps, Grads, Params, SequenceCache, StateGradHook, States, accumulate_linear, run_backward, run_forward,
)

__all__ = ["NONLINEARITIES", "elman_backward", "elman_forward", "elman_ops", "elman_step"]

NONLINEARITIES = ("tanh", "relu", "identity")


def _activation(nonlinearity: str) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[..., np.ndarray]]:
    """Return (act, dact) where dact(a, h) is act'(a) given pre-activation a and output h."""
    if nonlinearity == "tanh":
        return np.tanh, lambda a, h: 1.0 - h * h
    if nonlinearity == "relu":
        # torch's relu backward passes gradient only where the input is > 0 (zero at 0).
        return (lambda a: np.maximum(a, 0.0)), (lambda a, h: (a > 0).astype(a.dtype))
    if nonlinearity == "identity":
        return (lambda a: a), (lambda a, h: np.ones_like(a))
    raise bad_argument("nonlinearity", f"one of {NONLINEARITIES}", shape_text(nonlinearity),
                       "pick tanh (torch's default), relu or identity")


def elman_ops(nonlinearity: str = "tanh") -> CellOps:
    """The ``CellOps`` of an Elman cell with the given activation."""
    act, dact = _activation(nonlinearity)

    def step_forward(params: Params, x: np.ndarray, state: States) -> tuple[States, Any]:
        (h,) = state
        a = x @ params["W_ih"].T + h @ params["W_hh"].T  # (B, H)
        if "b_ih" in params:
            a = a + params["b_ih"]
        if "b_hh" in params:
            a = a + params["b_hh"]
        h_new = act(a)  # (B, H)
        return (h_new,), (x, h, a, h_new)

    def step_backward(d_new: States, cache: Any, params: Params, grads: Grads) -> tuple[np.ndarray, States]:
        x, h, a, h_new = cache
        da = d_new[0] * dact(a, h_new)  # (B, H)
        dx, dh = accumulate_linear(grads, params, da, da, x, h)
        return dx, (dh,)

    return CellOps(f"rnn_{nonlinearity}", 1, ("h",), False, step_forward, step_backward)


def elman_step(params: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, nonlinearity: str = "tanh") -> np.ndarray:
    """One step: x (B, F), h (B, H) -> h' (B, H).

    >>> import numpy as np
    >>> p = {"W_ih": np.eye(2), "W_hh": np.zeros((2, 2))}
    >>> elman_step(p, np.array([[1.0, -1.0]]), np.zeros((1, 2)), "relu")
    array([[1., 0.]])
    """
    _, h_t, _ = elman_forward(params, check_step_input(x)[:, None], h, nonlinearity=nonlinearity)
    return h_t  # (B, H)


def elman_forward(
    params: dict[str, np.ndarray],
    x: np.ndarray,
    h0: np.ndarray | None,
    mask: np.ndarray | None = None,
    reverse: bool = False,
    nonlinearity: str = "tanh",
) -> tuple[np.ndarray, np.ndarray, SequenceCache]:
    """Run over x (B, T, F) from h0 (B, H) (None: zeros); return ``(y (B, T, H), hT (B, H), cache)``.

    ``mask`` bool (B, T): True where the step is real; at a padded step h carries over and
    y is zero. ``reverse`` runs t = T-1 ... 0. ``params``: W_ih (H, F), W_hh (H, H),
    optional b_ih (H,), b_hh (H,).
    """
    y, (h_t,), cache = run_forward(elman_ops(nonlinearity), params, x, (h0,), mask, reverse)
    return y, h_t, cache


def elman_backward(
    dy: np.ndarray | None,
    dhT: np.ndarray | None,
    cache: SequenceCache,
    state_grad_hook: StateGradHook | None = None,
) -> dict[str, np.ndarray]:
    """Gradients of ``sum(dy * y) + sum(dhT * hT)``: keys dx (B, T, F), dh0 (B, H), dW_ih,
    dW_hh, and db_ih, db_hh when the biases were given. ``dy``/``dhT`` None means zeros.
    See ``run_backward`` for ``state_grad_hook``.
    """
    return run_backward(dy, (dhT,), cache, state_grad_hook)
