"""The NumPy reference against its own oracles: finite differences, torch.nn and torch autograd.

The reference is itself the oracle of the engine tests, so here it is pinned from outside:
every hand-written backward against central differences (float64), every cell with a torch.nn
counterpart against torch.nn's forward and autograd (plain, and packed with lengths in both
directions), and the variants torch lacks (identity, peepholes) by differences and reductions.
"""
from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit.reference as ref

CELLS = ["rnn_tanh", "rnn_relu", "rnn_identity", "lstm", "lstm_peep", "gru"]
TORCH_CELLS = ["rnn_tanh", "rnn_relu", "lstm", "gru"]
B, T, F, H = 3, 4, 3, 2


def _setup(cell: str, seed: int, bias: bool = True, dtype: type = np.float64):
    """Random params, x, state0 and a matching random dfinal for ``cell`` ("lstm_peep" = peepholes)."""
    rng = np.random.default_rng(seed)
    name = "lstm" if cell == "lstm_peep" else cell
    p = ref.random_params(name, F, H, rng, bias=bias, peepholes=cell == "lstm_peep", dtype=dtype)
    p = {k: v * 2.0 for k, v in p.items()}  # larger weights: saturating gates get exercised too
    x = rng.normal(size=(B, T, F)).astype(dtype)  # (B, T, F)
    states = [rng.normal(size=(B, H)).astype(dtype) for _ in range(2 if name == "lstm" else 1)]
    state0 = tuple(states) if name == "lstm" else states[0]
    dstates = [rng.normal(size=(B, H)) for _ in states]
    dfinal = tuple(dstates) if name == "lstm" else dstates[0]
    return name, p, x, state0, dfinal, rng


def _loss(name, p, x, state0, dy, dfinal, mask, reverse) -> float:
    y, final, _ = ref.sequence_forward(name, p, x, state0, mask=mask, reverse=reverse)
    finals = final if name == "lstm" else (final,)
    dfin = dfinal if name == "lstm" else (dfinal,)
    return float(np.sum(dy * y) + sum(np.sum(a * b) for a, b in zip(dfin, finals)))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("masked,reverse,bias", [(False, False, True), (True, False, True),
                                                 (True, True, True), (False, True, False)])
def test_backward_matches_central_differences(cell, masked, reverse, bias):
    name, p, x, state0, dfinal, rng = _setup(cell, seed=len(cell) + 7 * reverse + 3 * masked, bias=bias)
    mask = (np.arange(T)[None, :] < np.array([[T], [2], [0]])) if masked else None  # (B, T), one empty row
    y, _, cache = ref.sequence_forward(name, p, x, state0, mask=mask, reverse=reverse)
    dy = rng.normal(size=y.shape)
    grads = ref.sequence_backward(dy, dfinal, cache)
    states = state0 if name == "lstm" else (state0,)
    inputs = {"dx": x, "dh0": states[0], **({"dc0": states[1]} if name == "lstm" else {})}
    inputs.update({f"d{k}": v for k, v in p.items()})
    assert set(grads) == set(inputs)
    eps = 1e-6
    for key, arr in inputs.items():
        numeric = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            up = _loss(name, p, x, state0, dy, dfinal, mask, reverse)
            arr[idx] = old - eps
            down = _loss(name, p, x, state0, dy, dfinal, mask, reverse)
            arr[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        assert _rel(grads[key], numeric) < 1e-6, key
        assert np.abs(numeric).max() > 0 or key == "dh0" and masked, key  # the check saw a real gradient


def _torch_module(cell: str, bidirectional: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    kw = dict(batch_first=True, bidirectional=bidirectional, dtype=torch.float64)
    if cell.startswith("rnn_"):
        return torch.nn.RNN(F, H, nonlinearity=cell.removeprefix("rnn_"), **kw)
    return (torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(F, H, **kw)


def _torch_grads(module: torch.nn.Module, suffix: str) -> dict[str, np.ndarray]:
    names = {"dW_ih": "weight_ih", "dW_hh": "weight_hh", "db_ih": "bias_ih", "db_hh": "bias_hh"}
    return {k: getattr(module, f"{v}_l0{suffix}").grad.numpy() for k, v in names.items()}


def _close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_forward_and_backward_match_torch_nn(cell):
    module = _torch_module(cell)
    p = ref.params_from_torch_names({k: v.detach().numpy() for k, v in module.state_dict().items()})
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(B, T, F)), requires_grad=True)
    h0 = torch.tensor(rng.normal(size=(1, B, H)), requires_grad=True)
    c0 = torch.tensor(rng.normal(size=(1, B, H)), requires_grad=True)
    lstm = cell == "lstm"
    y_t, fin_t = module(x, (h0, c0) if lstm else h0)
    fins_t = fin_t if lstm else (fin_t,)
    state0 = (h0[0].detach().numpy(), c0[0].detach().numpy()) if lstm else h0[0].detach().numpy()
    y, final, cache = ref.sequence_forward(cell, p, x.detach().numpy(), state0)
    finals = final if lstm else (final,)
    _close(y, y_t.detach().numpy())
    for mine, theirs in zip(finals, fins_t):
        _close(mine, theirs[0].detach().numpy())
    dy = rng.normal(size=y.shape)
    dfin = tuple(rng.normal(size=(B, H)) for _ in finals)
    loss = (y_t * torch.tensor(dy)).sum() + sum((f[0] * torch.tensor(d)).sum() for f, d in zip(fins_t, dfin))
    loss.backward()
    grads = ref.sequence_backward(dy, dfin if lstm else dfin[0], cache)
    for key, want in _torch_grads(module, "").items():
        _close(grads[key], want)
    _close(grads["dx"], x.grad.numpy())
    _close(grads["dh0"], h0.grad[0].numpy())
    if lstm:
        _close(grads["dc0"], c0.grad[0].numpy())


def test_relu_gradient_at_exactly_zero_matches_torch():
    """Pre-activation exactly 0 (zero input, state, biases): torch's relu passes no gradient there."""
    module = _torch_module("rnn_relu")
    with torch.no_grad():
        module.bias_ih_l0.zero_()
        module.bias_hh_l0.zero_()
    x = torch.zeros(B, T, F, dtype=torch.float64, requires_grad=True)
    y_t, _ = module(x)
    y_t.sum().backward()
    p = ref.params_from_torch_names({k: v.detach().numpy() for k, v in module.state_dict().items()})
    y, _, cache = ref.elman_forward(p, x.detach().numpy(), None, nonlinearity="relu")
    np.testing.assert_array_equal(ref.elman_backward(np.ones_like(y), None, cache)["dx"], x.grad.numpy())


@pytest.mark.parametrize("cell", TORCH_CELLS)
def test_masked_both_directions_match_packed_bidirectional_torch(cell):
    """Forward with mask == torch's packed forward; reverse with mask == torch's packed reverse."""
    module = _torch_module(cell, bidirectional=True)
    named = {k: v.detach().numpy() for k, v in module.state_dict().items()}
    rng = np.random.default_rng(2)
    lengths = torch.tensor([2, T, 1])
    mask = np.arange(T)[None, :] < lengths.numpy()[:, None]  # (B, T)
    x = torch.tensor(rng.normal(size=(B, T, F)), requires_grad=True)
    h0 = torch.tensor(rng.normal(size=(2, B, H)), requires_grad=True)
    c0 = torch.tensor(rng.normal(size=(2, B, H)), requires_grad=True)
    lstm = cell == "lstm"
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, fin_t = module(packed, (h0, c0) if lstm else h0)
    y_t, _ = pad_packed_sequence(out, batch_first=True, total_length=T)  # (B, T, 2H)
    fins_t = fin_t if lstm else (fin_t,)
    dy = rng.normal(size=(B, T, 2 * H))
    dfin = [rng.normal(size=(2, B, H)) for _ in fins_t]
    loss = (y_t * torch.tensor(dy)).sum() + sum((f * torch.tensor(d)).sum() for f, d in zip(fins_t, dfin))
    loss.backward()
    dx = np.zeros((B, T, F))
    for d, suffix in enumerate(["", "_reverse"]):
        p = ref.params_from_torch_names(named, reverse=bool(d))
        state0 = (h0[d].detach().numpy(), c0[d].detach().numpy()) if lstm else h0[d].detach().numpy()
        y, final, cache = ref.sequence_forward(cell, p, x.detach().numpy(), state0, mask=mask, reverse=bool(d))
        _close(y, y_t[..., d * H:(d + 1) * H].detach().numpy())
        for mine, theirs in zip(final if lstm else (final,), fins_t):
            _close(mine, theirs[d].detach().numpy())
        dfin_d = tuple(f[d] for f in dfin)
        grads = ref.sequence_backward(dy[..., d * H:(d + 1) * H], dfin_d if lstm else dfin_d[0], cache)
        for key, want in _torch_grads(module, suffix).items():
            _close(grads[key], want)
        _close(grads["dh0"], h0.grad[d].numpy())
        if lstm:
            _close(grads["dc0"], c0.grad[d].numpy())
        dx += grads["dx"]
    _close(dx, x.grad.numpy())


@pytest.mark.parametrize("cell", CELLS)
def test_mask_and_reverse_equal_per_sequence_runs(cell):
    """Right-padded masked runs == each sequence alone; reverse == each sequence flipped over its length."""
    name, p, x, state0, _, _ = _setup(cell, seed=5)
    lengths = np.array([T, 2, 1])
    mask = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
    for reverse in (False, True):
        y, final, _ = ref.sequence_forward(name, p, x, state0, mask=mask, reverse=reverse)
        for b, n in enumerate(lengths):
            xb = x[b:b + 1, :n][:, ::-1] if reverse else x[b:b + 1, :n]  # (1, n, F)
            sb = tuple(s[b:b + 1] for s in state0) if name == "lstm" else state0[b:b + 1]
            yb, fb, _ = ref.sequence_forward(name, p, np.ascontiguousarray(xb), sb)
            yb = yb[:, ::-1] if reverse else yb
            np.testing.assert_allclose(y[b:b + 1, :n], yb, rtol=1e-13, atol=1e-14)
            assert not y[b, n:].any()  # padded outputs are exactly zero
            for mine, alone in zip(final if name == "lstm" else (final,), fb if name == "lstm" else (fb,)):
                np.testing.assert_allclose(mine[b:b + 1], alone, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("masked,reverse", [(False, False), (True, True)])
def test_zero_peepholes_reduce_exactly_to_plain_lstm(masked, reverse):
    _, p, x, state0, dfinal, rng = _setup("lstm", seed=11)
    mask = (np.arange(T)[None, :] < np.array([[T], [3], [1]])) if masked else None
    peep = {**p, **{k: np.zeros(H) for k in ref.PEEPHOLE_KEYS}}
    y0, f0, c0 = ref.lstm_forward(p, x, *state0, mask=mask, reverse=reverse)
    y1, f1, c1 = ref.lstm_forward(peep, x, *state0, mask=mask, reverse=reverse)
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(np.stack(f0), np.stack(f1))
    dy = rng.normal(size=y0.shape)
    g0, g1 = ref.lstm_backward(dy, dfinal, c0), ref.lstm_backward(dy, dfinal, c1)
    assert set(g1) == set(g0) | {"dw_ci", "dw_cf", "dw_co"}
    for key, value in g0.items():
        np.testing.assert_array_equal(value, g1[key])
    assert all(np.abs(g1[k]).max() > 0 for k in ("dw_ci", "dw_cf", "dw_co"))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_state_grad_hook_taps_and_truncates(cell):
    name, p, x, state0, dfinal, rng = _setup(cell, seed=3)
    y, final, cache = ref.sequence_forward(name, p, x, state0)
    dy = rng.normal(size=y.shape)
    seen = []
    plain = ref.sequence_backward(dy, dfinal, cache)
    tapped = ref.sequence_backward(dy, dfinal, cache, lambda t, d: seen.append((t, d)))
    assert [t for t, _ in seen] == list(range(T - 1, -1, -1))
    dh_last = (dfinal[0] if name == "lstm" else dfinal) + dy[:, T - 1]
    np.testing.assert_allclose(seen[0][1][0], dh_last, rtol=1e-14)
    for key in plain:
        np.testing.assert_array_equal(plain[key], tapped[key])
    # Zeroing the state gradient at step k cuts BPTT there: steps k+1.. see state_k as a constant
    # input, and steps 0..k-1 only get their own dy. So: (prefix over 0..k-1) + (tail over k+1..).
    k = 2
    cut = ref.sequence_backward(dy, dfinal, cache, lambda t, d: tuple(np.zeros_like(a) for a in d) if t == k else None)
    _, _, head = ref.sequence_forward(name, p, np.ascontiguousarray(x[:, :k]), state0)
    _, mid, _ = ref.sequence_forward(name, p, x[:, :k + 1], state0)
    _, _, tail = ref.sequence_forward(name, p, np.ascontiguousarray(x[:, k + 1:]), mid)
    g_head = ref.sequence_backward(np.ascontiguousarray(dy[:, :k]), None, head)
    g_tail = ref.sequence_backward(np.ascontiguousarray(dy[:, k + 1:]), dfinal, tail)
    assert not cut["dx"][:, k].any()
    np.testing.assert_allclose(cut["dx"][:, :k], g_head["dx"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cut["dx"][:, k + 1:], g_tail["dx"], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cut["dh0"], g_head["dh0"], rtol=1e-12, atol=1e-14)
    for key in ref.parameter_keys(g_tail):
        np.testing.assert_allclose(cut[key], g_head[key] + g_tail[key], rtol=1e-12, atol=1e-14)
    assert not np.allclose(cut["dW_hh"], plain["dW_hh"])  # the cut changed something


@pytest.mark.parametrize("max_norm,norm_type", [(0.5, 2.0), (1e3, 2.0), (0.1, math.inf), (0.3, 1.0)])
def test_clip_grad_norm_matches_torch(max_norm, norm_type):
    name, p, x, state0, dfinal, rng = _setup("lstm_peep", seed=4)
    y, _, cache = ref.sequence_forward(name, p, x, state0)
    grads = ref.sequence_backward(rng.normal(size=y.shape), dfinal, cache)
    keys = ref.parameter_keys(grads)
    assert keys == ["dW_ih", "dW_hh", "db_ih", "db_hh", "dw_ci", "dw_cf", "dw_co"]
    before = {k: v.copy() for k, v in grads.items()}
    tensors = [torch.zeros(grads[key].shape, dtype=torch.float64) for key in keys]
    for t, key in zip(tensors, keys):
        t.grad = torch.tensor(grads[key])
    total_t = torch.nn.utils.clip_grad_norm_(tensors, max_norm, norm_type=norm_type)
    clipped, total = ref.clip_grad_norm(grads, max_norm, norm_type=norm_type)
    assert total == pytest.approx(float(total_t), rel=1e-12)
    assert (max_norm < total) == (not np.array_equal(clipped["dW_hh"], grads["dW_hh"]))
    for t, key in zip(tensors, keys):
        np.testing.assert_allclose(clipped[key], t.grad.numpy(), rtol=1e-12)
    assert clipped["dx"] is grads["dx"]  # non-parameter gradients pass through
    value_clipped = ref.clip_grad_value(grads, 0.05)
    for t, key in zip(tensors, keys):
        t.grad = torch.tensor(grads[key])
    torch.nn.utils.clip_grad_value_(tensors, 0.05)
    for t, key in zip(tensors, keys):
        np.testing.assert_array_equal(value_clipped[key], t.grad.numpy())
    for key, value in before.items():  # the input dict is untouched
        np.testing.assert_array_equal(grads[key], value)


def test_dtype_follows_inputs():
    name, p, x, state0, _, rng = _setup("gru", seed=6, dtype=np.float32)
    y, hT, cache = ref.gru_forward(p, x, state0)
    grads = ref.gru_backward(np.ones_like(y), None, cache)
    assert y.dtype == hT.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())
    y64, _, _ = ref.gru_forward({k: v.astype(np.float64) for k, v in p.items()}, x.astype(np.float64), state0)
    np.testing.assert_allclose(y, y64, rtol=1e-5, atol=1e-6)


def test_single_steps_equal_one_step_sequences():
    _, p, x, (h, c), _, _ = _setup("lstm", seed=8)
    h1, c1 = ref.lstm_step(p, x[:, 0], h, c)
    y, (hT, cT), _ = ref.lstm_forward(p, x[:, :1], h, c)
    np.testing.assert_array_equal(h1, y[:, 0])
    np.testing.assert_array_equal(c1, cT)
    _, pg, _, h0, _, _ = _setup("gru", seed=8)
    np.testing.assert_array_equal(ref.gru_step(pg, x[:, 0], h0), ref.gru_forward(pg, x[:, :1], h0)[1])
    _, pe, _, h0, _, _ = _setup("rnn_relu", seed=8)
    want = np.maximum(x[:, 0] @ pe["W_ih"].T + pe["b_ih"] + h0 @ pe["W_hh"].T + pe["b_hh"], 0.0)
    np.testing.assert_allclose(ref.elman_step(pe, x[:, 0], h0, "relu"), want, rtol=1e-14)


def test_bad_inputs_raise_clear_errors():
    _, p, x, (h, c), _, _ = _setup("lstm", seed=9)
    cases = [
        (lambda: ref.lstm_forward(p, x[0], h, c), r"^x: expected .*\(B, T, F\).*Fix:"),
        (lambda: ref.lstm_forward(p, x[..., :2], h, c), r"^x: expected shape \(3, 4, 3\)"),
        (lambda: ref.lstm_forward(p, x, h[:, :1], c), r"^h0: expected shape \(3, 2\)"),
        (lambda: ref.lstm_forward(p, x, h, c, mask=np.ones((B, T))), r"^mask: expected a bool"),
        (lambda: ref.lstm_forward({**p, "W_xx": p["W_ih"]}, x, h, c), r"^params: .*unknown keys \['W_xx'\]"),
        (lambda: ref.lstm_forward({**p, "w_ci": np.zeros(H)}, x, h, c), r"^params: expected all of"),
        (lambda: ref.lstm_forward({**p, "b_ih": np.zeros(3)}, x, h, c), r"^params\['b_ih'\]: expected shape"),
        (lambda: ref.gru_forward({**p, "w_ci": np.zeros(H)}, x, h), r"^params: .*peepholes exist only"),
        (lambda: ref.elman_forward(p, x, h, nonlinearity="sigmoid"), r"^nonlinearity: expected one of"),
        (lambda: ref.sequence_forward("rnn", p, x, h), r"^cell: expected one of"),
        (lambda: ref.sequence_forward("lstm", p, x, h), r"^state0: expected a tuple \(h, c\)"),
        (lambda: ref.lstm_forward(p, x.astype(int), h, c), r"^x: expected a floating numpy array"),
        (lambda: ref.lstm_step(p, x, h, c), r"^x: expected .*\(B, F\) for one step"),
        (lambda: ref.lstm_backward(None, None, "cache"), r"^cache: expected the SequenceCache"),
        (lambda: ref.random_params("gru", 3, 0, np.random.default_rng()), r"^hidden_size: expected a positive"),
        (lambda: ref.random_params("gru", 3, 2, np.random.default_rng(), peepholes=True), r"^peepholes:"),
        (lambda: ref.params_from_torch_names({"weight_ih_l0": 1}, layer=1), r"^named: expected .*weight_ih_l1"),
        (lambda: ref.clip_grad_norm({"dW_ih": h}, -1.0), r"^max_norm: expected a number >= 0"),
        (lambda: ref.clip_grad_value({"dW_ih": h}, 1.0, keys=["dW_hh"]), r"^keys: expected keys present"),
    ]
    for call, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            call()
    y, _, cache = ref.lstm_forward(p, x, h, c)
    with pytest.raises(ValueError, match=r"^dy: expected shape \(3, 4, 2\)"):
        ref.lstm_backward(y[:, :1], None, cache)
    with pytest.raises(ValueError, match=r"^state_grad_hook: expected a tuple of 2 arrays"):
        ref.lstm_backward(y, None, cache, lambda t, d: d[0])


def test_library_imports_only_numpy():
    """The oracle must not share code with what it checks: no torch, no other rnnkit module."""
    allowed = {"__future__", "collections.abc", "dataclasses", "math", "typing", "numpy", "rnnkit.errors"}
    package = Path(ref.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for module in names:
                assert module in allowed or module.startswith("rnnkit.reference"), (path.name, module)
