"""Issue 10's engine and cell bugs 4-7, each pinned against torch.nn where torch.nn has the case.

* 4: second-order gradients (double backward) equal torch.nn's on every engine, or raise;
* 5: an empty batch runs forward and backward as in torch.nn; T = 0 is refused as torch does;
* 6: a single step (``iterate=False``) honours ``mask=``: masked rows keep their state;
* 7: forward pre-hooks of cells and projections run once per call, so weight_norm,
  spectral_norm and prune train exactly as they do on torch.nn.

The layers are built with ``rnnkit.from_torch`` from a ``batch_first=True`` torch module, so the
tests hold whatever the default layout of ``rnnkit.LSTM`` is.
"""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
from rnnkit.cells import ElmanCell, LSTMCell
from rnnkit.cells.examples import UserLSTM  # the LSTM math written by a user

ENGINES = ["auto", "fused", "generic"]
KINDS = ["rnn_tanh", "lstm", "gru"]


def torch_module(kind: str, F: int, H: int, dtype: torch.dtype, **kw) -> nn.RNNBase:
    kw = dict(batch_first=True, dtype=dtype, **kw)
    if kind.startswith("rnn_"):
        return nn.RNN(F, H, nonlinearity=kind.removeprefix("rnn_"), **kw)
    return (nn.LSTM if kind == "lstm" else nn.GRU)(F, H, **kw)


def run_torch(module: nn.RNNBase, x, lengths=None, state=None):
    if lengths is None:
        return module(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, final = module(packed, state)
    y, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])  # (B, T, D*H)
    return y, final


def as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def torch_weights(module: nn.RNNBase) -> list[torch.Tensor]:
    return [w for per_direction in module.all_weights for w in per_direction]


# ---------------------------------------------------------------------------------- bug 4
def _penalty(run, x, w_y):
    """Gradient-penalty loss: || d(sum(y * w_y) + sum(final^2)) / dx ||^2, backpropagated."""
    xx = x.clone().requires_grad_()
    y, final = run(xx)
    out = (y * w_y).sum() + sum(f.pow(2).sum() for f in as_tuple(final))
    g, = torch.autograd.grad(out, xx, create_graph=True)
    loss = g.pow(2).sum()
    loss.backward()
    return loss.detach(), xx.grad


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "len"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_double_backward_gradient_penalty_matches_torch_nn(engine, kind, with_lengths):
    B, T, F, H = 3, 5, 3, 4
    module = torch_module(kind, F, H, torch.float64, num_layers=2, bidirectional=True)
    layer = rnnkit.from_torch(module, engine=engine)
    lengths = torch.tensor([5, 2, 4]) if with_lengths else None
    x = torch.randn(B, T, F, dtype=torch.float64)
    w_y = torch.randn(B, T, 2 * H, dtype=torch.float64)
    ours = _penalty(lambda xx: layer(xx, lengths=lengths), x, w_y)
    theirs = _penalty(lambda xx: run_torch(module, xx, lengths), x, w_y)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-10, rtol=1e-10)
    for i, (a, b) in enumerate(zip(layer.flat_weights(), torch_weights(module), strict=True)):
        assert b.grad is not None and b.grad.abs().max() > 0, f"oracle weight {i} has no gradient"
        assert a.grad is not None, f"weight {i}: second-order gradient missing (silently dropped)"
        torch.testing.assert_close(a.grad, b.grad, atol=1e-10, rtol=1e-10, msg=lambda m: f"weight {i}: {m}")


@pytest.mark.parametrize("kind", KINDS)
def test_double_backward_float32_native_loop_matches_torch_nn(kind):
    """Small float32 batches run the C loop; its double backward must be right too."""
    B, T, F, H = 2, 6, 3, 5
    module = torch_module(kind, F, H, torch.float32)
    layer = rnnkit.from_torch(module, engine="generic")
    x = torch.randn(B, T, F)
    w_y = torch.randn(B, T, H)
    ours = _penalty(lambda xx: layer(xx), x, w_y)
    theirs = _penalty(lambda xx: run_torch(module, xx), x, w_y)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-5, rtol=1e-4)
    for i, (a, b) in enumerate(zip(layer.flat_weights(), torch_weights(module), strict=True)):
        assert a.grad is not None, f"weight {i}: second-order gradient missing"
        torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-4, msg=lambda m: f"weight {i}: {m}")


@pytest.mark.parametrize("engine", ENGINES)
def test_hessian_vector_product_over_weights_matches_torch_nn(engine):
    """MAML-style: differentiate the norm of the weight gradient with respect to the weights."""
    B, T, F, H = 2, 4, 3, 3
    module = torch_module("gru", F, H, torch.float64)
    layer = rnnkit.from_torch(module, engine=engine)
    x = torch.randn(B, T, F, dtype=torch.float64)

    def hvp(run, params):
        y, h = run(x)
        grads = torch.autograd.grad(y.pow(2).sum() + h.sum(), params, create_graph=True)
        sum(g.pow(2).sum() for g in grads).backward()
        return [p.grad for p in params]

    ours = hvp(lambda xx: layer(xx), layer.flat_weights())
    theirs = hvp(lambda xx: module(xx), torch_weights(module))
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a is not None, f"weight {i}: second-order gradient missing"
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-10, msg=lambda m: f"weight {i}: {m}")


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_gradgradcheck_small_layer(engine, kind):
    B, T, F, H = 2, 3, 2, 2
    module = torch_module(kind, F, H, torch.float64)
    layer = rnnkit.from_torch(module, engine=engine)
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in layer.named_parameters()]
    x = torch.randn(B, T, F, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 2])

    def fn(x, *ps):
        y, _ = torch.func.functional_call(layer, dict(zip(names, ps)), (x,), {"lengths": lengths})
        return y

    assert torch.autograd.gradgradcheck(fn, (x, *params))


def test_gradgradcheck_custom_structured_cell_scan():
    cell = UserLSTM(2).double()
    with torch.no_grad():
        cell.bias.normal_()
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in cell.named_parameters()]
    x = torch.randn(2, 3, 8, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])

    def fn(x, *ps):
        return torch.func.functional_call(cell, dict(zip(names, ps)), (x,), {"mask": mask})

    assert torch.autograd.gradgradcheck(fn, (x, *params))


# ---------------------------------------------------------------------------------- bug 5
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("engine", ENGINES)
def test_empty_batch_matches_torch_nn(engine, kind):
    module = torch_module(kind, 3, 4, torch.float32, num_layers=2, bidirectional=True)
    layer = rnnkit.from_torch(module, engine=engine)
    results = []
    for run in (lambda xx: layer(xx), lambda xx: module(xx)):
        x = torch.zeros(0, 5, 3, requires_grad=True)
        y, final = run(x)
        (y.sum() + sum(f.sum() for f in as_tuple(final))).backward()
        results.append((tuple(y.shape), [tuple(f.shape) for f in as_tuple(final)], x.grad))
    (ys, fs, gx), (yt, ft, gt) = results
    assert ys == yt == (0, 5, 8) and fs == ft
    assert gx is not None and gx.shape == gt.shape == (0, 5, 3)


@pytest.mark.parametrize("engine", ["generic", "auto"])
def test_empty_batch_with_lengths(engine):
    layer = rnnkit.from_torch(torch_module("lstm", 3, 4, torch.float32), engine=engine)
    x = torch.zeros(0, 5, 3, requires_grad=True)
    y, (h, c) = layer(x, lengths=torch.zeros(0, dtype=torch.long))
    (y.sum() + h.sum()).backward()
    assert y.shape == (0, 5, 4) and h.shape == (1, 0, 4) and x.grad.shape == (0, 5, 3)


def test_empty_batch_cell_scan():
    cell = LSTMCell(4)
    x = torch.zeros(0, 5, 16, requires_grad=True)
    h, c = cell(x)
    (h.sum() + c.sum()).backward()
    assert h.shape == (0, 5, 4) and x.grad.shape == (0, 5, 16)


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_length_sequence_is_refused_like_torch_nn(engine):
    module = torch_module("gru", 3, 4, torch.float32)
    with pytest.raises(RuntimeError, match="sequence length"):
        module(torch.zeros(2, 0, 3))
    layer = rnnkit.from_torch(module, engine=engine)
    with pytest.raises(ValueError, match=r"T >= 1"):
        layer(torch.zeros(2, 0, 3))


def test_zero_hidden_size_layer_is_refused_like_torch_nn():
    with pytest.raises(ValueError, match="hidden_size"):
        nn.LSTM(3, 0)
    with pytest.raises(ValueError, match="hidden_size"):
        rnnkit.LSTM(3, 0)


# ---------------------------------------------------------------------------------- bug 6
def test_single_step_mask_keeps_masked_rows():
    cell = ElmanCell(3)
    x, h0 = torch.randn(2, 3), torch.randn(2, 3)
    out = cell(x, h=h0, mask=torch.tensor([True, False]), iterate=False)
    free = cell(x, h=h0, iterate=False)
    torch.testing.assert_close(out[0], free[0], atol=0, rtol=0)
    torch.testing.assert_close(out[1], h0[1], atol=0, rtol=0)


def test_single_step_mask_two_states_and_initial_state():
    cell = LSTMCell(3)
    x, h0 = torch.randn(3, 12), torch.randn(3, 3)
    mask = torch.tensor([False, True, False])
    h, c = cell(x, h=h0, mask=mask, iterate=False)  # c starts from its initial value (zeros)
    h_free, c_free = cell(x, h=h0, iterate=False)
    torch.testing.assert_close(h[1], h_free[1], atol=0, rtol=0)
    torch.testing.assert_close(c[1], c_free[1], atol=0, rtol=0)
    torch.testing.assert_close(h[[0, 2]], h0[[0, 2]], atol=0, rtol=0)
    assert torch.equal(c[[0, 2]], torch.zeros(2, 3))


def test_single_step_mask_equals_one_step_scan():
    """The single step with a mask agrees with a one-step scan under the same mask."""
    cell = LSTMCell(3)
    x, h0, c0 = torch.randn(3, 12), torch.randn(3, 3), torch.randn(3, 3)
    mask = torch.tensor([True, False, True])
    h, c = cell(x, h=h0, c=c0, mask=mask, iterate=False)
    scan = cell.scan(x.unsqueeze(1), initial_states={"h": h0, "c": c0})  # a scan refuses all-padded rows
    for got, ran, start in ((h, scan.final["h"], h0), (c, scan.final["c"], c0)):
        torch.testing.assert_close(got[mask], ran[mask], atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(got[~mask], start[~mask], atol=0, rtol=0)


def test_single_step_mask_bad_shape_is_a_clear_error():
    cell = ElmanCell(3)
    with pytest.raises(ValueError, match=r"mask.*\(B,\)"):
        cell(torch.randn(2, 3), mask=torch.ones(2, 1, dtype=torch.bool), iterate=False)
    with pytest.raises(ValueError, match="mask.*bool"):
        cell(torch.randn(2, 3), mask=torch.ones(2), iterate=False)


# ---------------------------------------------------------------------------------- bug 7
def _reparametrize(how: str, torch_lstm: nn.LSTM, layer) -> None:
    """Apply the same reparametrisation to torch's and rnnkit's recurrent and input weights."""
    cell, proj = layer.layers[0].fwd.cell, layer.layers[0].fwd.input
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module, name in ((torch_lstm, "weight_hh_l0"), (cell, "weight"),
                             (torch_lstm, "weight_ih_l0"), (proj, "weight")):
            torch.manual_seed(7)  # spectral_norm draws its power-iteration vector
            if how == "weight_norm":
                nn.utils.weight_norm(module, name)
            elif how == "spectral_norm":
                nn.utils.spectral_norm(module, name)
            else:
                prune.l1_unstructured(module, name, amount=0.4)


def _train(model, run, x, steps=2):
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        y, (h, c) = run(x)
        loss = y.pow(2).mean() + h.sum()
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return torch.stack(losses)


@pytest.mark.parametrize("how", ["weight_norm", "spectral_norm", "prune"])
@pytest.mark.parametrize("engine", ENGINES)
def test_reparametrized_weights_train_like_torch_nn(engine, how):
    module = torch_module("lstm", 3, 4, torch.float64)
    layer = rnnkit.from_torch(module, engine=engine)
    _reparametrize(how, module, layer)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    theirs = _train(module, lambda xx: module(xx), x)
    ours = _train(layer, lambda xx: layer(xx), x)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)
    # the effective weights after two steps agree too
    torch.testing.assert_close(layer.layers[0].fwd.cell.weight, module.weight_hh_l0, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("how", ["weight_norm", "spectral_norm", "prune"])
@pytest.mark.parametrize("engine", ENGINES)
def test_reparametrized_weights_train_through_step_like_torch_nn(engine, how):
    module = torch_module("lstm", 3, 4, torch.float64)
    layer = rnnkit.from_torch(module, engine=engine)
    _reparametrize(how, module, layer)
    x = torch.randn(2, 3, dtype=torch.float64)
    theirs = _train(module, lambda xx: (lambda y, s: (y[:, 0], s))(*module(xx.unsqueeze(1))), x)
    ours = _train(layer, lambda xx: layer.step(xx), x)
    torch.testing.assert_close(ours, theirs, atol=1e-10, rtol=1e-10)


def test_cell_pre_hooks_run_once_per_call():
    """torch.nn runs a module's forward pre-hooks once per call; so do cells and scans."""
    cell = LSTMCell(3)
    calls = []
    cell.register_forward_pre_hook(lambda module, args: calls.append(1))
    cell(torch.randn(2, 4, 12))
    assert len(calls) == 1
    cell.scan(torch.randn(2, 4, 12))
    assert len(calls) == 2
    cell(torch.randn(2, 12), iterate=False)
    assert len(calls) == 3


def test_cell_scan_with_weight_norm_trains_twice():
    cell = ElmanCell(3).double()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.utils.weight_norm(cell, "weight")
    x = torch.randn(2, 4, 3, dtype=torch.float64)
    for _ in range(2):  # the second backward failed: the weight was computed once, at wrap time
        cell.zero_grad()
        cell.scan(x).final["h"].sum().backward()
        assert cell.weight_v.grad is not None and cell.weight_v.grad.abs().max() > 0


@pytest.mark.parametrize("B", [3, 12], ids=["C-loop", "hybrid"])
@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_double_backward_float32_large_batches_match_torch_nn(kind, B):
    """Projections with >= 64 rows run on oneDNN (rnnkit.engine.gemm); B above the C loop's
    limit runs the hybrid kernels. Both backwards must differentiate."""
    T, F, H = 24, 3, 5
    module = torch_module(kind, F, H, torch.float32)
    layer = rnnkit.from_torch(module, engine="generic")
    x = torch.randn(B, T, F)
    w_y = torch.randn(B, T, H)
    ours = _penalty(lambda xx: layer(xx), x, w_y)
    theirs = _penalty(lambda xx: run_torch(module, xx), x, w_y)
    torch.testing.assert_close(ours[1], theirs[1], atol=1e-4, rtol=1e-4)
    for i, (a, b) in enumerate(zip(layer.flat_weights(), torch_weights(module), strict=True)):
        assert a.grad is not None, f"weight {i}: second-order gradient missing"
        torch.testing.assert_close(a.grad, b.grad, atol=1e-4, rtol=1e-4, msg=lambda m: f"weight {i}: {m}")


def test_double_backward_bfloat16_is_close_to_float32():
    module = torch_module("gru", 3, 4, torch.float32)
    layer = rnnkit.from_torch(module, engine="generic")
    x = torch.randn(2, 6, 3)
    w_y = torch.randn(2, 6, 4)
    ref = _penalty(lambda xx: layer(xx), x, w_y)
    ref_grads = [p.grad.clone() for p in layer.flat_weights()]
    layer.zero_grad()
    half = layer.to(torch.bfloat16)
    got = _penalty(lambda xx: half(xx), x.bfloat16(), w_y.bfloat16())
    torch.testing.assert_close(got[0].float(), ref[0], atol=0.1, rtol=0.05)
    for a, b in zip(half.flat_weights(), ref_grads, strict=True):
        assert a.grad is not None
        torch.testing.assert_close(a.grad.float(), b, atol=0.1, rtol=0.1)


def test_double_backward_of_a_donated_projection_without_rebuild_raises():
    from rnnkit.engine import run_cell

    cell = LSTMCell(3).double()
    x = torch.randn(4, 2, 12, dtype=torch.float64, requires_grad=True)
    xp = (x * 1.0).transpose(0, 1)  # (B, T, G) view of a time-major buffer, donated to the engine
    h0 = torch.zeros(2, 3, dtype=torch.float64)
    result = run_cell(cell, {"inputs": xp}, {"h": h0, "c": h0}, {}, mask=None, reverse=False, donate=True)
    g, = torch.autograd.grad(result.final["h"].sum(), x, create_graph=False, retain_graph=True)
    assert g.abs().max() > 0  # first order is fine
    with pytest.raises(RuntimeError, match="double backward.*rebuild"):
        torch.autograd.grad(result.final["h"].pow(2).sum(), x, create_graph=True)


@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_zero_hidden_size_cells_run_like_torch_nn(name):
    """torch.nn.LSTMCell(3, 0) and friends are accepted and return (B, 0) states; so are ours."""
    ours = {"lstm": LSTMCell, "gru": rnnkit.cells.GRUCell, "elman": ElmanCell}[name](0)
    theirs = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "elman": nn.RNNCell}[name](3, 0)
    ref = theirs(torch.randn(2, 3))
    ref = ref[0] if isinstance(ref, tuple) else ref
    x = torch.randn(2, 5, 0, requires_grad=True)
    out = ours(x)
    first = out[0] if isinstance(out, tuple) else out
    assert first.shape == (2, 5, *ref.shape[1:]) == (2, 5, 0)
    first.sum().backward()
    assert x.grad.shape == (2, 5, 0)
