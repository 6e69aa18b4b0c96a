"""A pure-NumPy reference of rnnkit's built-in cells: the independent oracle of the tests.

Forward and hand-written backward (no autodiff) for the Elman RNN (tanh, relu, identity),
the LSTM (torch gate order i, f, g, o; optional diagonal peepholes) and the GRU (torch/cuDNN
reset-after, gate order r, z, n), over whole sequences with rnnkit's mask convention (a
padded step carries the state over and outputs zero) and the reverse direction. Weights use
torch.nn's layout (W_ih (G*H, F), W_hh (G*H, H), b_ih, b_hh (G*H,)); inputs are batch-first.
This package imports only NumPy (and rnnkit.errors for messages), never torch.

Example:
    >>> import numpy as np
    >>> from rnnkit import reference as ref
    >>> rng = np.random.default_rng(0)
    >>> p = ref.random_params("lstm", 3, 4, rng)
    >>> x, mask = rng.normal(size=(2, 5, 3)), np.arange(5)[None, :] < np.array([[5], [2]])
    >>> y, (hT, cT), cache = ref.sequence_forward("lstm", p, x, None, mask=mask, reverse=True)
    >>> g = ref.sequence_backward(np.ones_like(y), None, cache)
    >>> sorted(g)
    ['dW_hh', 'dW_ih', 'db_hh', 'db_ih', 'dc0', 'dh0', 'dx']
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from rnnkit.errors import bad_argument
from rnnkit.reference._checks import PEEPHOLE_KEYS, shape_text
from rnnkit.reference.bptt import CellOps, SequenceCache, StateGradHook, run_backward, run_forward
from rnnkit.reference.clip import NON_PARAMETER_KEYS, clip_grad_norm, clip_grad_value, parameter_keys
from rnnkit.reference.elman import NONLINEARITIES, elman_backward, elman_forward, elman_ops, elman_step
from rnnkit.reference.gru import GRU_OPS, gru_backward, gru_forward, gru_step
from rnnkit.reference.lstm import LSTM_OPS, lstm_backward, lstm_forward, lstm_step

__all__ = [
    "CELL_NAMES", "NONLINEARITIES", "NON_PARAMETER_KEYS", "PEEPHOLE_KEYS", "SequenceCache", "StateGradHook",
    "clip_grad_norm", "clip_grad_value", "elman_backward", "elman_forward", "elman_step", "gru_backward",
    "gru_forward", "gru_step", "lstm_backward", "lstm_forward", "lstm_step", "parameter_keys",
    "params_from_torch_names", "random_params", "sequence_backward", "sequence_forward",
]

CELL_NAMES = ("rnn_tanh", "rnn_relu", "rnn_identity", "lstm", "gru")
_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "rnn_identity": 1, "lstm": 4, "gru": 3}

State = np.ndarray | tuple[np.ndarray | None, np.ndarray | None] | None


def _cell(cell: object) -> str:
    if cell not in CELL_NAMES:
        raise bad_argument("cell", f"one of {CELL_NAMES}", shape_text(cell),
                           "use rnn_<nonlinearity> for the Elman RNN, lstm or gru")
    return str(cell)


def _ops(cell: str) -> CellOps:
    if cell == "lstm":
        return LSTM_OPS
    if cell == "gru":
        return GRU_OPS
    return elman_ops(cell.removeprefix("rnn_"))


def _as_tuple(n_states: int, state: State, name: str) -> tuple[np.ndarray | None, ...]:
    """h (or None) for Elman/GRU; (h, c) (or None) for the LSTM, as a tuple of states."""
    if n_states == 1:
        return (state,)  # type: ignore[return-value]
    if state is None:
        return (None, None)
    if not isinstance(state, tuple) or len(state) != 2:
        raise bad_argument(name, "a tuple (h, c) of (B, H) arrays, or None", shape_text(state),
                           "pass (h, c) for the LSTM")
    return state


def sequence_forward(
    cell: str,
    params: dict[str, np.ndarray],
    x: np.ndarray,
    state0: State,
    mask: np.ndarray | None = None,
    reverse: bool = False,
) -> tuple[np.ndarray, np.ndarray | tuple[np.ndarray, np.ndarray], SequenceCache]:
    """Run ``cell`` (one of ``CELL_NAMES``) over x (B, T, F); return ``(y (B, T, H), final, cache)``.

    ``state0`` and ``final`` are h (B, H) for rnn_* and gru, (h, c) for lstm; None means zeros.
    """
    name = _cell(cell)
    ops = _ops(name)
    y, final, cache = run_forward(ops, params, x, _as_tuple(len(ops.states), state0, "state0"), mask, reverse)
    return y, (final if name == "lstm" else final[0]), cache


def sequence_backward(
    dy: np.ndarray | None,
    dfinal: State,
    cache: SequenceCache,
    state_grad_hook: StateGradHook | None = None,
) -> dict[str, np.ndarray]:
    """Backward of any ``*_forward``/``sequence_forward`` run; ``dfinal`` mirrors its ``final``.

    Returns the grads dict: dx (B, T, F), dh0 and [dc0] (B, H), dW_ih (G*H, F), dW_hh (G*H, H),
    [db_ih, db_hh] (G*H,), [dw_ci, dw_cf, dw_co] (H,).
    """
    if not isinstance(cache, SequenceCache):
        raise bad_argument("cache", "the SequenceCache returned by a forward call", shape_text(cache),
                           "pass the third value returned by sequence_forward")
    return run_backward(dy, _as_tuple(len(cache.ops.states), dfinal, "dfinal"), cache, state_grad_hook)


def random_params(
    cell: str,
    input_size: int,
    hidden_size: int,
    rng: np.random.Generator,
    bias: bool = True,
    peepholes: bool = False,
    dtype: type = np.float64,
) -> dict[str, np.ndarray]:
    """Parameters drawn like torch.nn's default: uniform(-1/sqrt(H), 1/sqrt(H)), torch layout.

    >>> p = random_params("gru", 3, 4, np.random.default_rng(0))
    >>> {k: v.shape for k, v in p.items()}
    {'W_ih': (12, 3), 'W_hh': (12, 4), 'b_ih': (12,), 'b_hh': (12,)}
    """
    name = _cell(cell)
    for arg, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise bad_argument(arg, "a positive int", shape_text(value), f"pass e.g. {arg}=8")
    if peepholes and name != "lstm":
        raise bad_argument("peepholes", "False for a cell other than lstm", "True",
                           "drop peepholes=True or use cell='lstm'")
    k = 1.0 / np.sqrt(hidden_size)
    rows = _GATES[name] * hidden_size
    shapes = {"W_ih": (rows, input_size), "W_hh": (rows, hidden_size)}
    if bias:
        shapes.update(b_ih=(rows,), b_hh=(rows,))
    if peepholes:
        shapes.update({key: (hidden_size,) for key in PEEPHOLE_KEYS})
    return {key: rng.uniform(-k, k, size=s).astype(dtype) for key, s in shapes.items()}


def params_from_torch_names(
    named: Mapping[str, object], layer: int = 0, reverse: bool = False
) -> dict[str, np.ndarray]:
    """Pick one layer/direction out of torch.nn.RNN/LSTM/GRU parameter names, as NumPy arrays.

    ``named`` maps torch names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...) to arrays, e.g.
    ``{k: v.detach().numpy() for k, v in module.state_dict().items()}``.

    >>> w = {"weight_ih_l0": np.ones((4, 3)), "weight_hh_l0": np.ones((4, 4))}
    >>> sorted(params_from_torch_names(w))
    ['W_hh', 'W_ih']
    """
    suffix = f"_l{layer}" + ("_reverse" if reverse else "")
    wanted = {"W_ih": "weight_ih", "W_hh": "weight_hh", "b_ih": "bias_ih", "b_hh": "bias_hh"}
    out = {key: np.asarray(named[f"{torch_name}{suffix}"]) for key, torch_name in wanted.items()
           if f"{torch_name}{suffix}" in named}
    if "W_ih" not in out or "W_hh" not in out:
        raise bad_argument("named", f"entries weight_ih{suffix} and weight_hh{suffix}",
                           f"keys {sorted(named)[:8]}", "check layer= and reverse= against the module")
    return out
