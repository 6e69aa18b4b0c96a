"""Bidirectional, Stack, the initialisers, BPTT options and bf16, each against an oracle.

* ``Bidirectional`` over two cells / two layers against rnnkit's own bidirectional layer and
  torch.nn's, with copied weights; ``Stack`` against ``LSTM(num_layers=2)`` and hand-written
  residual/skip sums.
* ``BPTT(truncate=k)`` against a loop that detaches the state every k steps by hand;
  ``clip_value``/``clip_norm``/``GradientTap`` against the NumPy reference's ``state_grad_hook``.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit
import rnnkit.reference as ref
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.engine import BPTT, GradientTap, flip_padded

B, T, FEAT, H = 3, 6, 3, 4
LENGTHS = torch.tensor([6, 2, 4])
LAYER = {"rnn_tanh": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}
TORCH = {"rnn_tanh": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def close(a: Tensor, b: Tensor, what: str = "", tol: float = 1e-10) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=tol, msg=lambda m: f"{what}: {m}")


def parts(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def perturb(module: nn.Module) -> nn.Module:
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return module


# ----------------------------------------------------------------------------- Bidirectional
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_bidirectional_over_cells_equals_the_bidirectional_layer(kind):
    make = {"rnn_tanh": lambda: ElmanCell(H), "lstm": lambda: LSTMCell(H), "gru": lambda: GRUCell(H)}[kind]
    cell_f, cell_b = perturb(make()), perturb(make())
    width = cell_f.input_width
    layer = LAYER[kind](width, H, bidirectional=True).double()
    with torch.no_grad():
        for direction, cell in zip(layer.layers[0].directions(), (cell_f, cell_b)):
            direction.input.weight.copy_(torch.eye(width))  # the cells see x itself as projected input
            direction.input.bias.zero_()
            direction.cell.load_state_dict(cell.state_dict())
    x = torch.randn(B, T, width, dtype=torch.float64, requires_grad=True)
    out = rnnkit.Bidirectional(cell_f, cell_b)(x, lengths=LENGTHS)
    y = out[0] if isinstance(out, tuple) else out  # h first; the LSTM also returns c
    y_layer, _ = layer(x, lengths=LENGTHS)
    close(y, y_layer, "y")
    w = torch.randn_like(y)
    g_cells = torch.autograd.grad((y * w).sum(), [x, cell_f.weight, cell_b.weight])
    g_layer = torch.autograd.grad((y_layer * w).sum(), [x, layer.layers[0].fwd.cell.weight,
                                                        layer.layers[0].bwd.cell.weight])
    for a, b, what in zip(g_cells, g_layer, ["x", "forward weight", "backward weight"]):
        close(a, b, f"gradient of {what}")


@pytest.mark.parametrize("engine", ["fused", "generic"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_bidirectional_over_layers_equals_torch_and_rnnkit_bidirectional(kind, engine):
    fwd, bwd = (perturb(LAYER[kind](FEAT, H, engine=engine)) for _ in range(2))
    theirs = TORCH[kind](FEAT, H, bidirectional=True, batch_first=True, dtype=torch.float64)
    ours = LAYER[kind](FEAT, H, bidirectional=True, engine=engine).double()
    with torch.no_grad():
        for target, source in zip(theirs.all_weights, (fwd.flat_weights(), bwd.flat_weights())):
            for t, s in zip(target, source, strict=True):
                t.copy_(s)
    ours.layers[0].fwd.load_state_dict(fwd.layers[0].fwd.state_dict())
    ours.layers[0].bwd.load_state_dict(bwd.layers[0].fwd.state_dict())
    n = 2 if kind == "lstm" else 1
    x = torch.randn(B, T, FEAT, dtype=torch.float64)
    s0 = [torch.randn(2, B, H, dtype=torch.float64) for _ in range(n)]
    pack = lambda s: tuple(s) if n == 2 else s[0]  # noqa: E731
    y, (s_f, s_b) = rnnkit.Bidirectional(fwd, bwd)(x, (pack([s[:1] for s in s0]), pack([s[1:] for s in s0])),
                                                   lengths=LENGTHS)
    packed = pack_padded_sequence(x, LENGTHS, batch_first=True, enforce_sorted=False)
    out, s_t = theirs(packed, pack(s0))
    y_t, _ = pad_packed_sequence(out, batch_first=True, total_length=T)
    y_o, s_o = ours(x, pack(s0), lengths=LENGTHS)
    close(y, y_t, "y vs torch")
    close(y, y_o, "y vs rnnkit bidirectional")
    for i in range(n):
        close(parts(s_f)[i][0], parts(s_t)[i][0], "forward final state")
        close(parts(s_b)[i][0], parts(s_t)[i][1], "backward final state")
        close(torch.cat([parts(s_f)[i], parts(s_b)[i]]), parts(s_o)[i], "final states vs rnnkit")


# ----------------------------------------------------------------------------- Stack
def test_stack_of_two_lstms_equals_a_two_layer_lstm():
    first, second = perturb(rnnkit.LSTM(FEAT, H)), perturb(rnnkit.LSTM(H, H))
    deep = rnnkit.LSTM(FEAT, H, num_layers=2).double()
    deep.layers[0].load_state_dict(first.layers[0].state_dict())
    deep.layers[1].load_state_dict(second.layers[0].state_dict())
    x = torch.randn(B, T, FEAT, dtype=torch.float64, requires_grad=True)
    y, states = rnnkit.Stack([first, second])(x, lengths=LENGTHS)
    y_d, (h_d, c_d) = deep(x, lengths=LENGTHS)
    close(y, y_d, "y")
    close(torch.cat([states[0][0], states[1][0]]), h_d, "h")
    close(torch.cat([states[0][1], states[1][1]]), c_d, "c")
    w = torch.randn_like(y)
    close(torch.autograd.grad((y * w).sum(), x)[0], torch.autograd.grad((y_d * w).sum(), x)[0], "dx")


def test_stack_passes_each_layer_its_own_state():
    layers = [perturb(rnnkit.GRU(FEAT, H)), perturb(rnnkit.GRU(H, H))]
    x = torch.randn(B, T, FEAT, dtype=torch.float64)
    h0 = [torch.randn(1, B, H, dtype=torch.float64) for _ in layers]
    y, _ = rnnkit.Stack(layers)(x, h0)
    close(y, layers[1](layers[0](x, h0[0])[0], h0[1])[0])


def test_stack_residual_adds_the_input_where_widths_match():
    layers = [perturb(rnnkit.LSTM(FEAT, H)), perturb(rnnkit.LSTM(H, H)), perturb(rnnkit.LSTM(H, H))]
    x = torch.randn(B, T, FEAT, dtype=torch.float64)
    y, _ = rnnkit.Stack(layers, residual=True)(x)
    y1 = layers[0](x)[0]  # FEAT != H: no residual on the first layer
    y2 = layers[1](y1)[0] + y1
    y3 = layers[2](y2)[0] + y2
    close(y, y3)


def test_stack_skip_concatenates_every_layer_output():
    layers = [perturb(rnnkit.GRU(FEAT, H)), perturb(rnnkit.GRU(H, 5))]
    x = torch.randn(B, T, FEAT, dtype=torch.float64)
    y, _ = rnnkit.Stack(layers, skip=True)(x, lengths=LENGTHS)
    y1 = layers[0](x, lengths=LENGTHS)[0]
    y2 = layers[1](y1, lengths=LENGTHS)[0]
    close(y, torch.cat([y1, y2], dim=-1))
    assert y.shape == (B, T, H + 5)


def test_stack_dropout_between_layers_in_training_only():
    layers = [perturb(rnnkit.GRU(FEAT, H)), perturb(rnnkit.GRU(H, H))]
    stack = rnnkit.Stack(layers, dropout=0.5)
    x = torch.randn(B, T, FEAT, dtype=torch.float64)
    close(stack.eval()(x)[0], layers[1](layers[0](x)[0])[0], "eval: no dropout")
    torch.manual_seed(7)
    y_train = stack.train()(x)[0]
    torch.manual_seed(7)
    close(y_train, layers[1](F.dropout(layers[0](x)[0], 0.5, training=True))[0], "train: dropout between layers")


# ----------------------------------------------------------------------------- init
def test_identity_is_per_gate_block():
    w = rnnkit.init.identity(0.5)(torch.empty(4 * H, H))
    for block in w.split(H):
        assert torch.equal(block, 0.5 * torch.eye(H))
    cell = ElmanCell(H, weight_init=rnnkit.init.identity())
    assert torch.equal(cell.weight.data, torch.eye(H))


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_orthogonal_is_orthogonal_per_gate_block(gain):
    w = rnnkit.init.orthogonal(gain)(torch.empty(4 * H, H))
    blocks = w.split(H)
    for block in blocks:
        close(block.T @ block, gain ** 2 * torch.eye(H), "W_block^T W_block", tol=1e-5)
    assert not torch.allclose(blocks[0], blocks[1]), "gate blocks must be drawn independently"


def test_default_recurrent_weights_are_orthogonal_per_gate_block():
    for cell in (ElmanCell(H), LSTMCell(H), GRUCell(H)):
        for block in cell.weight.data.split(H):
            close(block.T @ block, torch.eye(H), type(cell).__name__, tol=1e-5)
    wide = rnnkit.init.orthogonal()(torch.empty(3, 7))  # not a stack of squares: orthonormal rows
    close(wide @ wide.T, torch.eye(3), "semi-orthogonal", tol=1e-5)


@pytest.mark.parametrize("shape", [(10, 10), (6, 4), (3, 8)])
@pytest.mark.parametrize("radius", [0.5, 1.0, 1.7])
def test_spectral_sets_the_largest_singular_value(shape, radius):
    w = rnnkit.init.spectral(radius=radius)(torch.empty(*shape))
    s = torch.linalg.svdvals(w.double())
    assert abs(s[0].item() - radius) < 1e-5
    assert s[-1] < s[0] - 1e-3  # a rescaled random matrix, not an orthogonal one


def test_layer_initialisers():
    layer = rnnkit.RNN(FEAT, 16, recurrent_init=rnnkit.init.identity())  # Le et al.'s IRNN
    assert torch.equal(layer.layers[0].fwd.cell.weight.data, torch.eye(16))
    bound = 16 ** -0.5  # torch's default for the input weights
    assert layer.layers[0].fwd.input.weight.abs().max() <= bound
    assert layer.layers[0].fwd.input.weight.abs().max() > bound / 2
    custom = rnnkit.GRU(FEAT, H, input_init=rnnkit.init.constant(0.25))
    assert torch.all(custom.layers[0].fwd.input.weight == 0.25)
    w = rnnkit.init.uniform(-0.1, 0.3)(torch.empty(1000))
    assert w.min() >= -0.1 and w.max() <= 0.3 and w.mean() > 0


# ----------------------------------------------------------------------------- BPTT
@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru", "custom"])
def test_truncate_equals_detaching_every_k_steps_by_hand(name, k, make_cell):
    cell, seqs, ctx = make_cell(name, B=B, T=7)
    x = seqs["inputs"].requires_grad_()
    result = cell.scan(x, contexts=ctx, bptt=BPTT(truncate=k))
    w = {n: torch.randn_like(v) for n, v in result.outputs.items()}
    params = [x, *cell.parameters()]
    g_trunc = torch.autograd.grad(sum((result.outputs[n] * w[n]).sum() for n in w), params)

    state = {s: cell.initial_state(s, B, x) for s in cell.states}
    loss = 0.0
    for t in range(7):
        if t and t % k == 0:
            state = {s: v.detach() for s, v in state.items()}
        out = dict(zip(cell.output_names, cell.pack_outputs(cell.step(inputs=x[:, t], **state, **ctx))))
        state = {s: out[s] for s in cell.states}
        loss = loss + sum((out[n] * w[n][:, t]).sum() for n in w)
    g_hand = torch.autograd.grad(loss, params)
    full = cell.scan(x, contexts=ctx)
    g_full = torch.autograd.grad(sum((full.outputs[n] * w[n]).sum() for n in w), params)
    for a, b in zip(g_trunc, g_hand, strict=True):
        close(a, b, "truncated gradient")
    assert not torch.allclose(g_trunc[0], g_full[0]), "truncation changed nothing: the test is void"


@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_layer_truncate_equals_chunked_calls_with_detached_state(kind):
    layer = perturb(LAYER[kind](FEAT, H, num_layers=2))
    x = torch.randn(B, T, FEAT, dtype=torch.float64, requires_grad=True)
    w = torch.randn(B, T, H, dtype=torch.float64)
    y, _ = layer(x, bptt=BPTT(truncate=2))
    g = torch.autograd.grad((y * w).sum(), [x, *layer.parameters()])
    state, chunks = None, []
    for start in range(0, T, 2):
        if state is not None:
            state = tuple(s.detach() for s in parts(state)) if kind == "lstm" else state.detach()
        y_c, state = layer(x[:, start:start + 2], state)
        chunks.append(y_c)
    y_hand = torch.cat(chunks, dim=1)
    close(y, y_hand, "forward is unchanged")
    g_hand = torch.autograd.grad((y_hand * w).sum(), [x, *layer.parameters()])
    for a, b in zip(g, g_hand, strict=True):
        close(a, b, "truncated gradient")


def test_truncate_in_reverse_is_independent_of_padding():
    cell = perturb(ElmanCell(H))
    x = torch.randn(2, T, H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([T, 3])
    batch = cell.scan(x, lengths=lengths, reverse=True, bptt=BPTT(truncate=2))
    g = torch.autograd.grad(batch.outputs["h"].sum(), x)[0]
    alone_x = x[1:, :3].detach().requires_grad_()
    alone = cell.scan(alone_x, reverse=True, bptt=BPTT(truncate=2))
    close(g[1, :3], torch.autograd.grad(alone.outputs["h"].sum(), alone_x)[0][0])


def clip_np(d: np.ndarray, bptt: BPTT) -> np.ndarray:
    if bptt.clip_value is not None:
        d = np.clip(d, -bptt.clip_value, bptt.clip_value)
    if bptt.clip_norm is not None:
        norms = np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        d = d * np.minimum(1.0, bptt.clip_norm / norms)
    return d


@pytest.mark.parametrize("option", ["tap", "clip_value", "clip_norm"])
@pytest.mark.parametrize("kind", ["rnn_tanh", "lstm", "gru"])
def test_per_step_clipping_and_tap_match_the_reference_state_grad_hook(kind, option):
    tap = GradientTap()
    bptt = BPTT(tap=tap, **({"clip_value": 0.2} if option == "clip_value" else
                            {"clip_norm": 0.5} if option == "clip_norm" else {}))
    layer = perturb(LAYER[kind](FEAT, H, bidirectional=True))
    n = 2 if kind == "lstm" else 1
    x = torch.randn(B, T, FEAT, dtype=torch.float64, requires_grad=True)
    y, final = layer(x, lengths=LENGTHS, bptt=bptt)
    w_y = torch.randn_like(y)
    w_s = [torch.randn(2, B, H, dtype=torch.float64) for _ in range(n)]
    ((y * w_y).sum() + sum((f * w).sum() for f, w in zip(parts(final), w_s))).backward()

    mask = (LENGTHS[:, None] > torch.arange(T)).numpy()
    dx, clipped = np.zeros((B, T, FEAT)), 0
    for d, direction in enumerate(layer.directions()):
        params = {"W_ih": direction.input.weight, "W_hh": direction.cell.weight,
                  "b_ih": direction.input.bias, "b_hh": direction.cell.bias}
        y_r, _, cache = ref.sequence_forward(kind, {k: v.detach().numpy() for k, v in params.items()},
                                             x.detach().numpy(), None, mask=mask, reverse=d == 1)
        norms = np.zeros((n, T))

        def hook(t: int, grads: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
            nonlocal clipped
            out = []
            for i, g in enumerate(grads):
                norms[i, t] = np.linalg.norm(g)
                out.append(clip_np(g, bptt))
                clipped += int(not np.array_equal(out[-1], g))
            return tuple(out)

        dfinal = tuple(w[d].numpy() for w in w_s)
        g = ref.sequence_backward(w_y[..., d * H:(d + 1) * H].numpy(), dfinal if n == 2 else dfinal[0], cache,
                                  state_grad_hook=hook)
        dx += g["dx"]
        scope = f"layer0.{'bwd' if d else 'fwd'}"
        for i, state_name in enumerate(["h", "c"][:n]):
            np.testing.assert_allclose(tap.norms(f"{scope}/{state_name}").numpy(), norms[i], rtol=1e-10,
                                       atol=1e-12, err_msg=f"tap {scope}/{state_name}")
        for key, value in params.items():
            np.testing.assert_allclose(value.grad.numpy(), g[f"d{key}"], rtol=1e-10, atol=1e-12, err_msg=key)
    np.testing.assert_allclose(x.grad.numpy(), dx, rtol=1e-10, atol=1e-12, err_msg="dx")
    assert sorted(tap.keys()) == sorted(f"layer0.{s}/{n_}" for s in ("fwd", "bwd") for n_ in ["h", "c"][:n])
    assert (clipped > 0) == (option != "tap"), "the clipping threshold never bit: the test is void"


def test_tap_on_a_cell_scan_and_clear():
    cell = perturb(GRUCell(H))
    tap = GradientTap()
    x = torch.randn(2, T, 3 * H, dtype=torch.float64, requires_grad=True)
    result = cell.scan(x, bptt=BPTT(tap=tap))
    result.outputs["h"][:, -1].sum().backward()  # only the last step is in the loss
    norms = tap.norms("h")
    assert norms.shape == (T,) and norms.dtype == torch.float64
    assert torch.all(norms > 0)
    assert norms[-1] == torch.ones(2, H, dtype=torch.float64).norm()  # dL/dh_T is all ones
    tap.clear()
    assert tap.keys() == []
    with pytest.raises(KeyError, match="no record 'h'"):
        tap.norms("h")


# ----------------------------------------------------------------------------- bf16
def test_bf16_fused_forward_runs_and_tracks_float32():
    layer = rnnkit.LSTM(FEAT, H, num_layers=2, engine="fused")
    x = torch.randn(B, T, FEAT)
    y32, _ = layer(x, lengths=LENGTHS)
    try:
        y16, (h16, _) = layer.to(torch.bfloat16)(x.to(torch.bfloat16), lengths=LENGTHS)
    except RuntimeError as err:  # the CPU build may lack bf16 RNN kernels
        pytest.skip(f"bf16 RNN kernels unavailable: {err}")
    assert y16.dtype == h16.dtype == torch.bfloat16
    close(y16.float(), y32, "bf16 vs float32", tol=5e-2)
