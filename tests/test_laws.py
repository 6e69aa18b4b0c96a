"""Three laws for every cell and every backend (after Flax's recurrent tests).

1. A masked batch equals running each sequence alone (values and gradients; padding never leaks).
2. Reverse equals flipping each sequence over its own length (``flip_padded``).
3. A scan equals a step-by-step loop of single steps.

Cells run through the public ``cell.scan`` (whatever path the generic engine takes for them)
and, separately, through ``rnnkit.engine.generic.scan_stepwise``. Layers run through
``layer(...)`` with engine "fused" and "generic".
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

import rnnkit
from rnnkit.engine import flip_padded, lengths_to_mask
from rnnkit.engine.generic import scan_stepwise

CELLS = ["elman_tanh", "elman_relu", "elman_identity", "lstm", "lstm_peep", "gru", "ln_lstm", "custom"]
RUNNERS = ["cell.scan", "scan_stepwise"]
LENGTHS = torch.tensor([5, 2, 4])
B, T = 3, 5


def run(runner: str, cell, seqs, ctx, init=None, lengths=None, mask=None, reverse=False):
    """Run ``cell`` with either public entry point; returns a Scan."""
    batch = next(iter(seqs.values())).shape[0]
    init = dict(init) if init else {}
    if runner == "cell.scan":
        return cell.scan(**seqs, initial_states=init, contexts=ctx, lengths=lengths, mask=mask, reverse=reverse)
    first = next(iter(seqs.values()))
    full = {s: init.get(s, cell.initial_state(s, batch, first)) for s in cell.states}
    if lengths is not None:
        mask = lengths_to_mask(lengths, first.shape[1])
    return scan_stepwise(cell, seqs, full, ctx, mask=mask, reverse=reverse)


def random_init(cell, batch: int) -> dict[str, Tensor]:
    return {s: torch.randn(batch, *cell.state_shape(s), dtype=torch.float64) for s in cell.states}


def close(a: Tensor, b: Tensor, what: str = "") -> None:
    torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=lambda m: f"{what}: {m}")


# ---------------------------------------------------------------------------------- cells
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", CELLS)
def test_cell_masked_batch_equals_each_sequence_alone(name, runner, make_cell):
    cell, seqs, ctx = make_cell(name, B=B, T=T)
    x = seqs["inputs"].clone()
    pad = ~lengths_to_mask(LENGTHS, T)
    x[pad] = 1e3  # garbage in the padding must not leak anywhere
    x.requires_grad_()
    init = random_init(cell, B)
    batch = run(runner, cell, {"inputs": x}, ctx, init, lengths=LENGTHS)
    w = {k: torch.randn_like(v) for k, v in batch.outputs.items()}
    grad = torch.autograd.grad(sum((batch.outputs[k] * w[k]).sum() for k in w), x)[0]
    for b, length in enumerate(LENGTHS.tolist()):
        xb = x[b:b + 1, :length].detach().requires_grad_()
        alone = run(runner, cell, {"inputs": xb}, {k: v[b:b + 1] for k, v in ctx.items()},
                    {k: v[b:b + 1] for k, v in init.items()})
        for k, out in batch.outputs.items():
            close(out[b, :length], alone.outputs[k][0], f"output {k} of row {b}")
            assert torch.all(out[b, length:] == 0), f"output {k} of row {b} is not zero on padding"
        for s in cell.states:
            close(batch.final[s][b], alone.final[s][0], f"final {s} of row {b}")
        g_alone = torch.autograd.grad(sum((alone.outputs[k] * w[k][b:b + 1, :length]).sum() for k in w), xb)[0]
        close(grad[b, :length], g_alone[0], f"gradient of row {b}")
        assert torch.all(grad[b, length:] == 0), f"padding of row {b} received gradient"


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", CELLS)
def test_cell_mask_with_holes_equals_the_compacted_sequence(name, runner, make_cell):
    cell, seqs, ctx = make_cell(name, B=2, T=T)
    mask = torch.tensor([[True, False, True, True, False], [False, True, False, False, True]])
    init = random_init(cell, 2)
    batch = run(runner, cell, seqs, ctx, init, mask=mask)
    for b in range(2):
        keep = mask[b]
        alone = run(runner, cell, {"inputs": seqs["inputs"][b:b + 1, keep]}, {k: v[b:b + 1] for k, v in ctx.items()},
                    {k: v[b:b + 1] for k, v in init.items()})
        for k, out in batch.outputs.items():
            close(out[b, keep], alone.outputs[k][0], f"output {k} of row {b}")
            assert torch.all(out[b, ~keep] == 0)
        for s in cell.states:
            close(batch.final[s][b], alone.final[s][0], f"final {s} of row {b}")


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", CELLS)
def test_cell_reverse_equals_flip_by_own_length(name, runner, make_cell):
    cell, seqs, ctx = make_cell(name, B=B, T=T)
    x = seqs["inputs"].requires_grad_()
    init = random_init(cell, B)
    rev = run(runner, cell, {"inputs": x}, ctx, init, lengths=LENGTHS, reverse=True)
    fwd = run(runner, cell, {"inputs": flip_padded(x, LENGTHS)}, ctx, init, lengths=LENGTHS)
    w = {k: torch.randn_like(v) for k, v in rev.outputs.items()}
    for k in rev.outputs:
        close(rev.outputs[k], flip_padded(fwd.outputs[k], LENGTHS), f"output {k}")
    for s in cell.states:
        close(rev.final[s], fwd.final[s], f"final {s}")
    g_rev = torch.autograd.grad(sum((rev.outputs[k] * w[k]).sum() for k in w), x)[0]
    g_fwd = torch.autograd.grad(sum((fwd.outputs[k] * flip_padded(w[k], LENGTHS)).sum() for k in w), x)[0]
    close(g_rev, g_fwd, "gradient")


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("name", CELLS)
def test_cell_scan_equals_a_loop_of_single_steps(name, runner, reverse, make_cell):
    cell, seqs, ctx = make_cell(name, B=B, T=T)
    init = random_init(cell, B)
    result = run(runner, cell, seqs, ctx, init, reverse=reverse)
    state, outs = dict(init), {}
    for t in (reversed(range(T)) if reverse else range(T)):
        values = cell.pack_outputs(cell.step(inputs=seqs["inputs"][:, t], **state, **ctx))
        outs[t] = dict(zip(cell.output_names, values))
        state = {s: outs[t][s] for s in cell.states}
    for k in cell.output_names:
        close(result.outputs[k], torch.stack([outs[t][k] for t in range(T)], dim=1), f"output {k}")
    for s in cell.states:
        close(result.final[s], state[s], f"final {s}")


@pytest.mark.parametrize("name", CELLS)
def test_cell_return_initial_states_adds_the_boundary_state(name, make_cell):
    cell, seqs, ctx = make_cell(name, B=B, T=T)
    init = random_init(cell, B)
    for reverse, where in ((False, 0), (True, T)):
        plain = cell.scan(**seqs, initial_states=init, contexts=ctx, lengths=LENGTHS, reverse=reverse)
        full = cell.scan(**seqs, initial_states=init, contexts=ctx, lengths=LENGTHS, reverse=reverse,
                         return_initial_states=True)
        for k in cell.output_names:
            if k in cell.states:
                close(full.outputs[k].select(1, where), init[k])
                rest = torch.cat([full.outputs[k][:, :where], full.outputs[k][:, where + 1:]], dim=1)
                close(rest, plain.outputs[k])
            else:
                close(full.outputs[k], plain.outputs[k])


# ---------------------------------------------------------------------------------- layers
LAYERS = ["rnn_tanh", "rnn_relu", "rnn_identity", "lstm", "lstm_peep", "gru"]
LAYER_CASES = [(k, e) for k in LAYERS for e in ("fused", "generic")
               if not (e == "fused" and k in ("rnn_identity", "lstm_peep"))]  # fused cannot run those
F, H = 3, 4


def make_layer(kind: str, engine: str, num_layers: int = 2, bidirectional: bool = True):
    if kind.startswith("rnn_"):
        cls, extra = rnnkit.RNN, {"nonlinearity": kind.removeprefix("rnn_")}
    elif kind.startswith("lstm"):
        cls, extra = rnnkit.LSTM, {"peepholes": kind == "lstm_peep"}
    else:
        cls, extra = rnnkit.GRU, {}
    layer = cls(F, H, num_layers, bidirectional=bidirectional, engine=engine, **extra).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return layer


def parts(state) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


@pytest.mark.parametrize("kind,engine", LAYER_CASES)
def test_layer_masked_batch_equals_each_sequence_alone(kind, engine):
    layer = make_layer(kind, engine)
    x = torch.randn(B, T, F, dtype=torch.float64)
    x[~lengths_to_mask(LENGTHS, T)] = 1e3
    x.requires_grad_()
    y, state = layer(x, lengths=LENGTHS)
    w = torch.randn_like(y)
    grad = torch.autograd.grad((y * w).sum(), x)[0]
    for b, length in enumerate(LENGTHS.tolist()):
        xb = x[b:b + 1, :length].detach().requires_grad_()
        y_b, state_b = layer(xb)
        close(y[b, :length], y_b[0], f"y of row {b}")
        assert torch.all(y[b, length:] == 0)
        for ours, alone in zip(parts(state), parts(state_b), strict=True):
            close(ours[:, b], alone[:, 0], f"final state of row {b}")
        g_b = torch.autograd.grad((y_b * w[b:b + 1, :length]).sum(), xb)[0]
        close(grad[b, :length], g_b[0], f"gradient of row {b}")
        assert torch.all(grad[b, length:] == 0)


@pytest.mark.parametrize("kind,engine", LAYER_CASES)
def test_layer_backward_direction_equals_forward_over_flipped_input(kind, engine):
    bi = make_layer(kind, engine, num_layers=1, bidirectional=True)
    uni = make_layer(kind, engine, num_layers=1, bidirectional=False)
    uni.layers[0].fwd.load_state_dict(bi.layers[0].bwd.state_dict())
    x = torch.randn(B, T, F, dtype=torch.float64)
    y, state = bi(x, lengths=LENGTHS)
    y_u, state_u = uni(flip_padded(x, LENGTHS), lengths=LENGTHS)
    close(y[..., H:], flip_padded(y_u, LENGTHS), "backward half of y")
    for ours, theirs in zip(parts(state), parts(state_u), strict=True):
        close(ours[1], theirs[0], "backward final state")


@pytest.mark.parametrize("kind,engine", LAYER_CASES)
def test_layer_equals_a_loop_of_single_step_calls(kind, engine):
    layer = make_layer(kind, engine, num_layers=2, bidirectional=False)
    x = torch.randn(B, T, F, dtype=torch.float64)
    y, final = layer(x)
    state, steps = None, []
    for t in range(T):
        y_t, state = layer(x[:, t:t + 1], state)
        steps.append(y_t)
    close(y, torch.cat(steps, dim=1), "y")
    for ours, loop in zip(parts(final), parts(state), strict=True):
        close(ours, loop, "final state")
