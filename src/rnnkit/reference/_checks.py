"""Input checks for the NumPy reference: every bad argument raises one clear ValueError.

The reference is an oracle, so a silently broadcast shape would make it agree with a bug.
Each check names the argument, what was expected, what was received and the fix.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnkit.errors import bad_argument

__all__ = [
    "PEEPHOLE_KEYS",
    "check_array",
    "check_mask",
    "check_params",
    "check_state",
    "check_step_input",
    "shape_text",
]

PEEPHOLE_KEYS = ("w_ci", "w_cf", "w_co")
_BASE_KEYS = ("W_ih", "W_hh", "b_ih", "b_hh")


def shape_text(value: object) -> str:
    """A short description of a received value that never prints a whole array."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape}, dtype {value.dtype}"
    if value is None:
        return "None"
    return f"{type(value).__name__} {value!r}"[:120]


def check_array(name: str, value: object, shape: tuple[int, ...], fix: str) -> np.ndarray:
    """Return ``value`` as a floating ndarray of exactly ``shape``, or raise naming ``name``."""
    if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
        raise bad_argument(
            name, f"a floating numpy array of shape {shape}", shape_text(value),
            "pass np.asarray(value, dtype=np.float64)",
        )
    if value.shape != shape:
        raise bad_argument(name, f"shape {shape}", shape_text(value), fix)
    return value


def check_params(
    params: object, gates: int, allow_peepholes: bool
) -> tuple[dict[str, np.ndarray], int, int]:
    """Check a parameter dict in torch.nn's layout and return ``(params, F, H)``.

    Required: ``W_ih`` (G*H, F), ``W_hh`` (G*H, H). Optional: ``b_ih``, ``b_hh`` (G*H,)
    (absent means zero, like ``bias=False``) and, for the LSTM only, all three peephole
    vectors ``w_ci``, ``w_cf``, ``w_co`` (H,) together.
    """
    if not isinstance(params, Mapping):
        raise bad_argument(
            "params", "a dict with keys W_ih, W_hh[, b_ih, b_hh]", shape_text(params),
            "build it with rnnkit.reference.random_params or params_from_torch_names",
        )
    allowed = _BASE_KEYS + (PEEPHOLE_KEYS if allow_peepholes else ())
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise bad_argument(
            "params", f"only the keys {allowed}", f"unknown keys {unknown}",
            "remove or rename them (peepholes exist only for the LSTM)",
        )
    for key in ("W_ih", "W_hh"):
        if key not in params:
            raise bad_argument("params", f"a '{key}' entry", f"keys {sorted(params)}", f"add params['{key}']")
    w_hh = params["W_hh"]
    if not isinstance(w_hh, np.ndarray) or w_hh.ndim != 2 or w_hh.shape[0] != gates * w_hh.shape[1]:
        raise bad_argument(
            "params['W_hh']", f"an array of shape ({gates}*H, H)", shape_text(w_hh),
            f"stack the {gates} gate blocks along axis 0, torch.nn order",
        )
    hidden = w_hh.shape[1]
    w_ih = params["W_ih"]
    if not isinstance(w_ih, np.ndarray) or w_ih.ndim != 2:
        raise bad_argument("params['W_ih']", f"an array of shape ({gates * hidden}, F)", shape_text(w_ih),
                           "pass the input weights in torch.nn's (G*H, F) layout")
    features = w_ih.shape[1]
    fix = "use torch.nn's layout: W_ih (G*H, F), W_hh (G*H, H), biases (G*H,), peepholes (H,)"
    out = {
        "W_ih": check_array("params['W_ih']", w_ih, (gates * hidden, features), fix),
        "W_hh": check_array("params['W_hh']", w_hh, (gates * hidden, hidden), fix),
    }
    for key in ("b_ih", "b_hh"):
        if key in params:
            out[key] = check_array(f"params['{key}']", params[key], (gates * hidden,), fix)
    present = [k for k in PEEPHOLE_KEYS if k in params]
    if present and len(present) != len(PEEPHOLE_KEYS):
        raise bad_argument(
            "params", f"all of {PEEPHOLE_KEYS} or none", f"only {present}",
            "pass all three peephole vectors (zeros for an unused one)",
        )
    for key in present:
        out[key] = check_array(f"params['{key}']", params[key], (hidden,), fix)
    return out, features, hidden


def check_state(name: str, value: object, batch: int, hidden: int, dtype: np.dtype) -> np.ndarray:
    """Return a (B, H) state; ``None`` means zeros of ``dtype``."""
    if value is None:
        return np.zeros((batch, hidden), dtype=dtype)  # (B, H)
    return check_array(name, value, (batch, hidden), f"pass {name} of shape (B, H) = ({batch}, {hidden})")


def check_mask(mask: object, batch: int, steps: int) -> np.ndarray:
    """Return a bool (B, T) mask; ``None`` means every step is real."""
    if mask is None:
        return np.ones((batch, steps), dtype=bool)  # (B, T)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (batch, steps):
        raise bad_argument(
            "mask", f"a bool numpy array of shape (B, T) = ({batch}, {steps})", shape_text(mask),
            "build it as np.arange(T)[None, :] < lengths[:, None]",
        )
    return mask


def check_step_input(x: object) -> np.ndarray:
    """Return a one-step input x (B, F), or raise; the single-step helpers add the time axis."""
    if not isinstance(x, np.ndarray) or x.ndim != 2:
        raise bad_argument("x", "a floating numpy array of shape (B, F) for one step", shape_text(x),
                           "pass x[:, t] of a (B, T, F) batch, or x[None] for a single example")
    return x
