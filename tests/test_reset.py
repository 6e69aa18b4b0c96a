"""Per-row resets (issue 13, acceptance 7): ``layer(x, state, reset=...)`` and ``scan(..., reset=...)``.

The oracle is the definition: a (B, T) reset equals cutting each row at its reset steps and
running the pieces separately from fresh states (row by row, B = 1, no reset argument); a (B,)
reset equals a fresh run of the reset rows, and leaves the others as a run from the given state.
Outputs, final states and gradients (inputs and parameters) are compared, fp64 at 1e-10 and
fp32 at 1e-6.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.engine import BPTT, GradientTap

TOL = {torch.float64: 1e-10, torch.float32: 1e-6}
CLASSES = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def _states(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _reset(B: int, T: int, seed: int, p: float = 0.25) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(B, T, generator=g) < p  # (B, T)


def _pieces(row_reset: Tensor, length: int) -> list[tuple[int, int]]:
    cuts = [0] + [t for t in range(1, length) if bool(row_reset[t])] + [length]
    return list(zip(cuts, cuts[1:]))


def _split_oracle(layer, x: Tensor, lengths: list[int], reset: Tensor, weights):
    """Loss and per-row outputs/finals of running every piece of every row alone, from zeros."""
    B, T = reset.shape
    D = 2 if layer.config.bidirectional else 1
    wy, ws = weights
    out = torch.zeros(B, T, wy.shape[-1], dtype=x.dtype)
    finals = [torch.zeros_like(w) for w in ws]  # (L*D, B, H)
    loss = x.new_zeros(())
    for b in range(B):
        pieces = _pieces(reset[b], lengths[b])
        for i, (a, e) in enumerate(pieces):
            y, state = layer(x[b:b + 1, a:e])
            loss = loss + (y[0] * wy[b, a:e]).sum()
            out[b, a:e] = y[0].detach()
            for s, value in enumerate(_states(state)):
                for k in range(value.shape[0]):
                    forward_dir = k % D == 0
                    if (forward_dir and i == len(pieces) - 1) or (not forward_dir and i == 0):
                        fresh_fwd = forward_dir and bool(reset[b, lengths[b]:].any())  # reset in the padding
                        v = torch.zeros_like(value[k, 0]) if fresh_fwd else value[k, 0]
                        loss = loss + (v * ws[s][k, b]).sum()
                        finals[s][k, b] = v.detach()
    return loss, out, finals


def _grads(module: nn.Module, x: Tensor, loss: Tensor) -> list[Tensor]:
    params = [x] + [p for p in module.parameters()]
    return [g if g is not None else torch.zeros_like(p) for g, p in zip(torch.autograd.grad(loss, params), params)]


def _close(a: Tensor, b: Tensor, tol: float) -> None:
    torch.testing.assert_close(a, b, atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("engine", ["fused", "generic"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("ragged", [False, True])
def test_step_resets_equal_running_the_pieces_separately(kind, engine, bidirectional, dtype, ragged):
    torch.manual_seed(0)
    B, T, F, H, L = 4, 11, 3, 5, 2
    layer = CLASSES[kind](F, H, num_layers=L, bidirectional=bidirectional, engine=engine, dtype=dtype)
    D = 2 if bidirectional else 1
    x = torch.randn(B, T, F, dtype=dtype, requires_grad=True)
    lengths = [11, 7, 11, 4] if ragged else [T] * B
    reset = _reset(B, T, seed=1)
    reset[0, 5] = True  # at least one reset inside a row
    reset[3, 9] = True  # in row 3's padding when ragged: its forward final state is fresh
    wy = torch.randn(B, T, D * H, dtype=dtype)
    ws = [torch.randn(L * D, B, H, dtype=dtype) for _ in range(2 if kind == "lstm" else 1)]
    assert layer.plan(x).backend == {"fused": "fused", "generic": "generic-compiled"}[engine]
    y, state = layer(x, lengths=torch.tensor(lengths) if ragged else None, reset=reset)
    loss = (y * wy).sum() + sum((s * w).sum() for s, w in zip(_states(state), ws))
    got = _grads(layer, x, loss)
    ref_loss, ref_y, ref_finals = _split_oracle(layer, x, lengths, reset, (wy, ws))
    want = _grads(layer, x, ref_loss)
    tol = TOL[dtype]
    _close(y.detach(), ref_y, tol)
    for s, f in zip(_states(state), ref_finals):
        _close(s.detach(), f, tol)
    for g, w in zip(got, want):
        _close(g, w, tol * 10)


@pytest.mark.parametrize("engine", ["fused", "generic"])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_row_reset_is_a_fresh_run_and_leaves_the_other_rows(kind, engine, bidirectional):
    torch.manual_seed(1)
    layer = CLASSES[kind](3, 4, num_layers=2, bidirectional=bidirectional, engine=engine, dtype=torch.float64)
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    shape = (4 if bidirectional else 2, 3, 4)
    state = tuple(torch.randn(shape, dtype=torch.float64) for _ in range(2)) if kind == "lstm" \
        else torch.randn(shape, dtype=torch.float64)
    y, out = layer(x, state, reset=torch.tensor([False, True, False]))
    y_carry, out_carry = layer(x, state)
    y_fresh, out_fresh = layer(x[1:2])
    _close(y[1:2], y_fresh, 1e-12)
    _close(y[[0, 2]], y_carry[[0, 2]], 1e-12)
    for s, c, f in zip(_states(out), _states(out_carry), _states(out_fresh)):
        _close(s[:, 1:2], f, 1e-12)
        _close(s[:, [0, 2]], c[:, [0, 2]], 1e-12)
    # the (B, T) form with only step 0 marked is the same call
    full = torch.zeros(3, 6, dtype=torch.bool)
    full[1, 0] = True
    _close(layer(x, state, reset=full)[0], y, 0.0)


def test_no_gradient_crosses_a_reset():
    torch.manual_seed(2)
    layer = rnnkit.GRU(2, 3, engine="generic", dtype=torch.float64)
    x = torch.randn(2, 8, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, 2, 3, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(2, 8, dtype=torch.bool)
    reset[0, 4] = True
    y, _ = layer(x, h0, reset=reset)
    y[:, 4:].sum().backward()
    assert x.grad[0, :4].abs().max() == 0 and h0.grad[0, 0].abs().max() == 0  # row 0 restarted at 4
    assert x.grad[1, :4].abs().max() > 0 and h0.grad[0, 1].abs().max() > 0  # row 1 carried on


@pytest.mark.parametrize("engine", ["fused", "generic"])
def test_step_with_reset_restarts_rows(engine):
    torch.manual_seed(3)
    layer = rnnkit.LSTM(3, 4, num_layers=2, engine=engine)
    x = torch.randn(3, 3)
    state = (torch.randn(2, 3, 4), torch.randn(2, 3, 4))
    y, (h, c) = layer.step(x, state, reset=torch.tensor([True, False, False]))
    y_fresh, _ = layer.step(x[:1])
    y_carry, _ = layer.step(x, state)
    _close(y[:1], y_fresh, 1e-6)
    _close(y[1:], y_carry[1:], 1e-6)


def test_bptt_options_with_resets_match_the_pieces():
    """Truncation restarts its count at a reset; taps and per-step clipping see the whole call."""
    torch.manual_seed(4)
    layer = rnnkit.LSTM(3, 4, engine="generic", dtype=torch.float64)
    x = torch.randn(1, 12, 3, dtype=torch.float64, requires_grad=True)
    reset = torch.zeros(1, 12, dtype=torch.bool)
    reset[0, 5] = True
    tap = GradientTap()
    assert layer.plan(x, bptt=BPTT(truncate=3)).loop == "hybrid"
    y, _ = layer(x, reset=reset, bptt=BPTT(truncate=3, clip_norm=0.5, tap=tap))
    (y ** 2).sum().backward()
    got, norms = x.grad.clone(), tap.norms("h")
    x.grad = None
    loss = x.new_zeros(())
    ref_norms = []
    for a, e in ((0, 5), (5, 12)):
        piece_tap = GradientTap()
        yp, _ = layer(x[:, a:e], bptt=BPTT(truncate=3, clip_norm=0.5, tap=piece_tap))
        loss = loss + (yp ** 2).sum()
        ref_norms.append(piece_tap)
    loss.backward()
    _close(got, x.grad, 1e-10)
    _close(norms, torch.cat([t.norms("h") for t in ref_norms]), 1e-10)


# ---------------------------------------------------------------- cells: custom ones and the engines
class Leaky(rnnkit.Structured):
    """A user's structured cell (compiled loop), with a learned initial state."""

    gates = 1

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size, learn_initial_state=True)
        with torch.no_grad():
            self.initial["h"].normal_()

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        return 0.5 * h + 0.5 * torch.tanh(inputs + hw)


class Attend(rnnkit.Recurrent):
    """A user's cell with a context and an extra output: it runs under autograd, step by step."""

    sequences = ("inputs",)
    states = ("h", "c")
    contexts = ("memory",)
    outputs = ("h", "c", "score")

    def __init__(self, size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(2 * size, 2 * size)
        self.size = size
        self.learnable_initial_states()
        with torch.no_grad():
            for p in self.initial.values():
                p.normal_()

    def state_shape(self, name: str) -> tuple[int, ...]:
        return (self.size,)

    def step(self, inputs: Tensor, h: Tensor, c: Tensor, memory: Tensor):
        z = torch.tanh(self.lin(torch.cat([inputs + memory, h], dim=1)))
        h2, c2 = z.chunk(2, dim=1)
        return h2 + 0.1 * c, c2 + c, (h2 * memory).sum(1)


def test_the_cells_run_on_the_engines_they_claim():
    leaky, seqs, _ = _cell_case("leaky", torch.float64)
    attend, _, ctx = _cell_case("attend", torch.float64)
    assert rnnkit.engine.make_plan("auto", leaky, why_not_fused="-", dtype=torch.float64, device="cpu",
                                   batch=3).backend == "generic-compiled"
    assert rnnkit.engine.make_plan("auto", attend, why_not_fused="-", dtype=torch.float64, device="cpu",
                                   batch=3, structured=False).backend == "generic-autograd"


def _cell_case(name: str, dtype: torch.dtype):
    torch.manual_seed(5)
    if name == "leaky":
        cell = Leaky(4).to(dtype)
        return cell, {"inputs": torch.randn(3, 9, 4, dtype=dtype, requires_grad=True)}, {}
    if name == "attend":
        cell = Attend(4).to(dtype)
        return cell, {"inputs": torch.randn(3, 9, 4, dtype=dtype, requires_grad=True)}, \
            {"memory": torch.randn(3, 4, dtype=dtype)}
    cell = rnnkit.cells.LSTMCell(4).to(dtype)
    return cell, {"inputs": torch.randn(3, 9, 16, dtype=dtype, requires_grad=True)}, {}


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", ["leaky", "attend", "lstm"])
def test_scan_resets_equal_pieces_from_the_cells_initial_state(name, dtype, reverse):
    cell, seqs, ctx = _cell_case(name, dtype)
    x = seqs["inputs"]
    B, T = x.shape[:2]
    lengths = [9, 6, 8]
    mask = torch.arange(T) < torch.tensor(lengths)[:, None]
    reset = _reset(B, T, seed=6, p=0.3)
    reset[1, 3] = True
    reset[1, 0] = True
    given = {n: torch.randn(B, *cell.state_shape(n), dtype=dtype) for n in cell.states}
    scan = rnnkit.engine.scan(cell, seqs, initial_states=given, contexts=ctx, mask=mask, reverse=reverse,
                              reset=reset)
    w = {k: torch.randn_like(v) for k, v in scan.outputs.items()}
    wf = {k: torch.randn_like(v) for k, v in scan.final.items()}
    loss = sum((scan.outputs[k] * w[k]).sum() for k in w) + sum((scan.final[k] * wf[k]).sum() for k in wf)
    got = _grads(cell, x, loss)
    ref_loss = x.new_zeros(())
    tol = TOL[dtype]
    for b in range(B):
        pieces = _pieces(reset[b], lengths[b])
        first, last = (len(pieces) - 1, 0) if reverse else (0, len(pieces) - 1)
        padded = bool(reset[b, lengths[b]:].any())  # a reset in the padding: an empty last segment
        drop = bool(reset[b, 0]) or (reverse and padded)  # ... which the backward pass enters first
        for i, (a, e) in enumerate(pieces):
            init = {n: v[b:b + 1] for n, v in given.items()} if i == first and not drop else None
            piece = rnnkit.engine.scan(cell, {"inputs": x[b:b + 1, a:e]}, initial_states=init,
                                       contexts={k: v[b:b + 1] for k, v in ctx.items()}, reverse=reverse)
            for k in w:
                _close(scan.outputs[k][b:b + 1, a:e].detach(), piece.outputs[k].detach(), tol)
                ref_loss = ref_loss + (piece.outputs[k] * w[k][b:b + 1, a:e]).sum()
            if i == last:
                for k in wf:
                    final = piece.final[k]
                    if padded and not reverse:  # the forward pass ends in the fresh segment
                        final = cell.initial_state(k, 1, x)
                    _close(scan.final[k][b:b + 1].detach(), final.detach(), tol)
                    ref_loss = ref_loss + (final * wf[k][b:b + 1]).sum()
    for g, r in zip(got, _grads(cell, x, ref_loss)):
        _close(g, r, tol * 10)


def test_scan_reset_with_return_initial_states_and_cell_call():
    cell, seqs, _ = _cell_case("leaky", torch.float64)
    reset = torch.tensor([True, False, False])
    given = {"h": torch.randn(3, 4, dtype=torch.float64)}
    out = cell.scan(seqs["inputs"], initial_states=given, return_initial_states=True, reset=reset)
    _close(out.outputs["h"][0, 0], cell.initial["h"].detach(), 0.0)  # row 0 entered from the learned state
    _close(out.outputs["h"][1, 0], given["h"][1], 0.0)
    _close(cell(seqs["inputs"], h=given["h"], reset=reset).detach(), out.outputs["h"][:, 1:].detach(), 1e-12)
    one = cell(seqs["inputs"][:, 0], h=given["h"], iterate=False, reset=reset)
    ref = cell(seqs["inputs"][:1, 0], iterate=False)
    _close(one[:1], ref, 1e-12)


def test_bidirectional_wrapper_matches_the_bidirectional_layer():
    torch.manual_seed(7)
    layer = rnnkit.GRU(3, 4, bidirectional=True, dtype=torch.float64)
    fwd, bwd = rnnkit.GRU(3, 4, dtype=torch.float64), rnnkit.GRU(3, 4, dtype=torch.float64)
    sd = layer.state_dict()
    fwd.load_state_dict({k.replace("_l0", "_l0"): v for k, v in sd.items() if not k.endswith("_reverse")})
    bwd.load_state_dict({k.removesuffix("_reverse"): v for k, v in sd.items() if k.endswith("_reverse")})
    bi = rnnkit.Bidirectional(fwd, bwd)
    x = torch.randn(3, 10, 3, dtype=torch.float64)
    lengths = torch.tensor([10, 6, 8])
    reset = _reset(3, 10, seed=8, p=0.3)
    reset[1, 7] = True  # in row 1's padding: drops its backward incoming state
    h0 = torch.randn(2, 3, 4, dtype=torch.float64)
    y, h = layer(x, h0, lengths=lengths, reset=reset)
    y2, (hf, hb) = bi(x, (h0[:1], h0[1:]), lengths=lengths, reset=reset)
    _close(y, y2, 1e-12)
    _close(h, torch.cat([hf, hb]), 1e-12)


def test_stack_restarts_every_layer():
    torch.manual_seed(9)
    stack = rnnkit.Stack([rnnkit.LSTM(3, 4), rnnkit.GRU(4, 4, engine="generic")], residual=True).double()
    x = torch.randn(2, 7, 3, dtype=torch.float64)
    reset = torch.zeros(2, 7, dtype=torch.bool)
    reset[1, 3] = True
    y, _ = stack(x, reset=reset)
    y_piece, _ = stack(x[1:, 3:])
    _close(y[1:, 3:], y_piece, 1e-12)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, match", [
    (torch.zeros(2, 5, dtype=torch.int64), "bool tensor"),
    (torch.zeros(3, dtype=torch.bool), r"shape \(B,\) = \(2,\)"),
    (torch.zeros(2, 4, dtype=torch.bool), r"\(B, T\) = \(2, 5\)"),
    ([True, False], "bool tensor"),
])
def test_bad_reset_gets_a_clear_error(bad, match):
    layer = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match=match) as info:
        layer(torch.randn(2, 5, 3), reset=bad)
    assert "reset" in str(info.value) and "Fix" in str(info.value)


def test_bad_reset_in_step_scan_and_packed_input():
    layer = rnnkit.GRU(3, 4)
    with pytest.raises(ValueError, match="reset.*one step"):
        layer.step(torch.randn(2, 3), reset=torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="reset"):
        rnnkit.cells.GRUCell(4).scan(torch.randn(2, 3, 12), reset=torch.ones(2, 3))
    packed = nn.utils.rnn.pack_padded_sequence(torch.randn(2, 5, 3), [5, 3], batch_first=True)
    with pytest.raises(ValueError, match="PackedSequence"):
        layer(packed, reset=torch.zeros(2, dtype=torch.bool))
