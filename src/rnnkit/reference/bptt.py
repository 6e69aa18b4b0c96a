"""Backpropagation through time over a whole sequence, for any reference cell.

A cell supplies one step forward and one step backward (``CellOps``); this module owns the
loop over time, the mask (a padded step carries the state over and outputs zero) and the
reverse direction (t from T-1 down to 0 with the same mask). Backward walks the forward
order in reverse and accumulates the parameter gradients of every step.

Example:
    >>> import numpy as np
    >>> from rnnkit.reference import gru_forward, gru_backward, random_params
    >>> p = random_params("gru", 3, 4, np.random.default_rng(0))
    >>> y, hT, cache = gru_forward(p, np.ones((2, 5, 3)), None)
    >>> sorted(gru_backward(np.ones_like(y), None, cache))[:3]
    ['dW_hh', 'dW_ih', 'db_hh']
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rnnkit.errors import bad_argument
from rnnkit.reference._checks import check_array, check_mask, check_params, check_state, shape_text

__all__ = ["CellOps", "SequenceCache", "StateGradHook", "accumulate_linear", "run_backward", "run_forward", "sigmoid"]

States = tuple[np.ndarray, ...]
Params = dict[str, np.ndarray]
Grads = dict[str, np.ndarray]
StepForward = Callable[[Params, np.ndarray, States], tuple[States, Any]]
StepBackward = Callable[[States, Any, Params, Grads], tuple[np.ndarray, States]]
StateGradHook = Callable[[int, States], "States | None"]


@dataclass(frozen=True)
class CellOps:
    """One reference cell: its shape facts and its hand-written step forward/backward."""

    name: str  # e.g. "lstm"; used in messages and kept in the cache
    gates: int  # G: W_ih has G*H rows (1 Elman, 3 GRU, 4 LSTM)
    states: tuple[str, ...]  # state names in order, the output is states[0] ("h")
    allow_peepholes: bool  # True only for the LSTM
    step_forward: StepForward  # (params, x_t (B, F), states) -> (new states, step cache)
    step_backward: StepBackward  # (d new states, step cache, params, grads) -> (dx_t, d old states)


@dataclass
class SequenceCache:
    """Everything ``run_backward`` needs; produced by ``run_forward``. Treat as opaque."""

    ops: CellOps  # the cell that ran
    params: Params  # the checked parameters
    x_shape: tuple[int, int, int]  # (B, T, F)
    dtype: np.dtype  # dtype of outputs and gradients
    mask: np.ndarray  # (B, T) bool, True where the step is real
    order: list[int]  # time indices in the order they ran
    steps: list[Any] = field(default_factory=list)  # one step cache per entry of ``order``


def sigmoid(a: np.ndarray) -> np.ndarray:
    """Logistic function without overflow warnings: exp(-log(1 + exp(-a)))."""
    return np.exp(-np.logaddexp(0.0, -a))


def accumulate_linear(
    grads: Grads, params: Params, da_ih: np.ndarray, da_hh: np.ndarray, x: np.ndarray, h: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Back through ``x W_ih^T + b_ih`` and ``h W_hh^T + b_hh``; return ``(dx, dh)``.

    ``da_ih``, ``da_hh`` are (B, G*H) gradients of the two affine maps; the weight and bias
    gradients are added into ``grads`` in place.
    """
    grads["dW_ih"] += da_ih.T @ x  # (G*H, F)
    grads["dW_hh"] += da_hh.T @ h  # (G*H, H)
    if "db_ih" in grads:
        grads["db_ih"] += da_ih.sum(axis=0)  # (G*H,)
    if "db_hh" in grads:
        grads["db_hh"] += da_hh.sum(axis=0)  # (G*H,)
    return da_ih @ params["W_ih"], da_hh @ params["W_hh"]  # (B, F), (B, H)


def run_forward(
    ops: CellOps,
    params: object,
    x: object,
    state0: tuple[object, ...],
    mask: object = None,
    reverse: bool = False,
) -> tuple[np.ndarray, States, SequenceCache]:
    """Run ``ops`` over x (B, T, F) from ``state0``; return ``(y (B, T, H), final states, cache)``.

    Each entry of ``state0`` is (B, H) or None (zeros). ``mask`` is bool (B, T) or None.
    """
    checked, features, hidden = check_params(params, ops.gates, ops.allow_peepholes)
    if not isinstance(x, np.ndarray) or x.ndim != 3:
        raise bad_argument("x", "a floating numpy array of shape (B, T, F)", shape_text(x),
                           "add a batch axis with x[None] or a time axis with x[:, None]")
    batch, steps, _ = x.shape
    check_array("x", x, (batch, steps, features),
                f"x's last axis must equal W_ih's second axis ({features})")
    dtype = np.result_type(x.dtype, *(v.dtype for v in checked.values()))
    names = [f"{n}0" for n in ops.states]
    state = tuple(check_state(n, s, batch, hidden, dtype) for n, s in zip(names, state0))
    m_all = check_mask(mask, batch, steps)
    order = list(range(steps - 1, -1, -1)) if reverse else list(range(steps))
    cache = SequenceCache(ops, checked, (batch, steps, features), dtype, m_all, order)
    y = np.zeros((batch, steps, hidden), dtype=dtype)  # (B, T, H)
    for t in order:
        new, step_cache = ops.step_forward(checked, x[:, t], state)
        m = m_all[:, t, None]  # (B, 1)
        state = tuple(np.where(m, n, s) for n, s in zip(new, state))  # padded rows keep the old state
        y[:, t] = np.where(m, state[0], 0.0)  # (B, H); padded steps output zero
        cache.steps.append(step_cache)
    return y, state, cache


def run_backward(
    dy: object,
    dfinal: tuple[object, ...],
    cache: object,
    state_grad_hook: StateGradHook | None = None,
) -> Grads:
    """Gradients of ``sum(dy * y) + sum(dfinal * final)`` for the run that made ``cache``.

    ``dy`` is (B, T, H) or None; each entry of ``dfinal`` is (B, H) or None (zeros).
    ``state_grad_hook(t, d_states)``, if given, is called once per step (in backward order,
    ``t`` the time index) with the total gradient of the state tuple *after* step t, that is
    the gradient carried back from later steps plus ``mask[:, t] * dy[:, t]`` on h. It may
    return a replacement tuple (to clip or cut the gradient) or None to leave it unchanged.
    Returns a dict with ``dx``, ``dh0`` (and ``dc0`` for the LSTM) and ``d<key>`` for every
    parameter key that was present (``dW_ih``, ``dW_hh``, ``db_ih``, ``db_hh``, ``dw_ci``, ...).
    """
    if not isinstance(cache, SequenceCache):
        raise bad_argument("cache", "the SequenceCache returned by the matching *_forward call",
                           shape_text(cache), "pass the third value returned by the forward function")
    ops, params = cache.ops, cache.params
    batch, steps, features = cache.x_shape
    hidden = params["W_hh"].shape[1]
    dy = np.zeros((batch, steps, hidden), dtype=cache.dtype) if dy is None else dy
    check_array("dy", dy, (batch, steps, hidden), "pass dy with the shape of the forward output y")
    dstate = tuple(check_state(f"d{n}T", d, batch, hidden, cache.dtype) for n, d in zip(ops.states, dfinal))
    grads: Grads = {f"d{k}": np.zeros_like(v, dtype=cache.dtype) for k, v in params.items()}
    dx = np.zeros(cache.x_shape, dtype=cache.dtype)  # (B, T, F)
    for i in range(len(cache.order) - 1, -1, -1):
        t = cache.order[i]
        m = cache.mask[:, t, None]  # (B, 1)
        d = (dstate[0] + np.where(m, dy[:, t], 0.0),) + dstate[1:]
        if state_grad_hook is not None:
            replaced = state_grad_hook(t, d)
            if replaced is not None:
                if not isinstance(replaced, tuple) or len(replaced) != len(ops.states):
                    raise bad_argument("state_grad_hook", f"a tuple of {len(ops.states)} arrays or None",
                                       shape_text(replaced), "return one (B, H) gradient per state")
                d = tuple(check_array(f"state_grad_hook result[{j}]", r, (batch, hidden),
                                      "return arrays shaped like the ones received") for j, r in enumerate(replaced))
        d_new = tuple(np.where(m, di, 0.0) for di in d)  # only real rows reach the cell
        dx_t, d_old = ops.step_backward(d_new, cache.steps[i], params, grads)
        dx[:, t] = dx_t
        dstate = tuple(do + np.where(m, 0.0, di) for do, di in zip(d_old, d))  # carry-over at padding
    grads["dx"] = dx
    for name, d in zip(ops.states, dstate):
        grads[f"d{name}0"] = d  # (B, H)
    return grads
