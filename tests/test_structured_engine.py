"""The generic engine's structured fast loop against the step-wise engine and torch.nn.

The fast loop (rnnkit.engine.structured) has code paths that the small-size parity tests do not
reach: the per-step (hybrid) kernels at larger batches, the kernel that re-runs the pointwise of
a cell the compiler cannot take under autograd, repeated backward passes, and the no-grad forward.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.engine import BPTT, GradientTap
from rnnkit.engine.generic import scan_stepwise
from rnnkit.engine.compiler import explain
from rnnkit.engine.structured import can_run_structured


class MinimalGatedUnit(rnnkit.Structured):
    """Zhou et al. 2016's MGU, written as a custom structured cell: one forget gate."""

    states = ("h",)
    gates = 2

    def __init__(self, hidden_size: int) -> None:
        super().__init__(hidden_size)
        self.scale = nn.Parameter(torch.ones(hidden_size) * 0.9)  # a pointwise-only parameter

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        x_f, x_n = inputs.chunk(2, dim=1)
        hw_f, hw_n = hw.chunk(2, dim=1)
        f = torch.sigmoid(x_f + hw_f)
        n = torch.tanh(x_n + self.scale * f * hw_n)
        return (1 - f) * h + f * n


def _grads(outputs: dict[str, Tensor], wrt: list[Tensor], seed: int) -> list[Tensor]:
    gen = torch.Generator().manual_seed(seed)
    loss = sum((o * torch.randn(o.shape, generator=gen, dtype=o.dtype)).sum() for o in outputs.values())
    return list(torch.autograd.grad(loss, wrt))


@pytest.mark.parametrize("make", [lambda: LSTMCell(64), lambda: GRUCell(64), lambda: ElmanCell(64),
                                  lambda: ElmanCell(64, "relu"), lambda: LSTMCell(64, peepholes=True),
                                  lambda: MinimalGatedUnit(64), lambda: rnnkit.cells.LayerNormLSTMCell(64)],
                         ids=["lstm", "gru", "tanh", "relu", "peepholes", "custom-mgu", "ln-lstm"])
@pytest.mark.parametrize("reverse", [False, True])
def test_fast_loop_equals_stepwise_at_hybrid_sizes(make, reverse):
    torch.manual_seed(1)
    cell = make()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    B, T, H = 24, 9, cell.hidden_size
    assert can_run_structured(cell, {})
    xp = torch.randn(B, T, cell.input_width, requires_grad=True)
    lengths = torch.randint(1, T + 1, (B,))
    mask = torch.arange(T) < lengths[:, None]
    init = {s: torch.randn(B, H, requires_grad=True) for s in cell.states}
    fast = cell.scan(xp, mask=mask, reverse=reverse, **init)
    slow = scan_stepwise(cell, {"inputs": xp}, init, {}, mask=mask, reverse=reverse)
    for name in cell.states:
        torch.testing.assert_close(fast.outputs[name], slow.outputs[name], atol=2e-6, rtol=1e-5)
        torch.testing.assert_close(fast.final[name], slow.final[name], atol=2e-6, rtol=1e-5)
    wrt = [xp, *init.values(), *cell.parameters()]
    for g_fast, g_slow in zip(_grads(fast.outputs, wrt, 0), _grads(slow.outputs, wrt, 0)):
        torch.testing.assert_close(g_fast, g_slow, atol=5e-5, rtol=1e-4)


class SineGatedUnit(MinimalGatedUnit):
    """An MGU with a sine in its candidate: sin is not in the compiler's op table."""

    def pointwise(self, inputs: Tensor, hw: Tensor, h: Tensor) -> Tensor:
        return super().pointwise(inputs, hw, h) + 0.1 * torch.sin(h)


def test_custom_structured_cell_takes_the_autograd_kernel_and_gets_every_gradient():
    cell = SineGatedUnit(3).double()
    assert explain(cell) == "sin"  # so the autograd kernel runs it
    xp = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    out = cell.scan(xp, lengths=[5, 2], reverse=True)
    grads = torch.autograd.grad(out.outputs["h"].sum() + out.final["h"].pow(2).sum(), [xp, cell.scale, cell.weight])
    assert all(g.abs().max() > 0 for g in grads)
    assert torch.autograd.gradcheck(lambda x, s: torch.func.functional_call(cell, {"scale": s}, (x,), {"lengths": [5, 2]}),
                                    (xp, cell.scale.detach().clone().requires_grad_()))


def test_backward_can_run_twice_with_retain_graph():
    layer = rnnkit.LSTM(4, 8, engine="generic")
    x = torch.randn(3, 6, 4, requires_grad=True)
    y, _ = layer(x)
    loss = y.square().sum()
    first = torch.autograd.grad(loss, x, retain_graph=True)[0]
    second = torch.autograd.grad(loss, x)[0]
    torch.testing.assert_close(first, second, rtol=0, atol=0)


@pytest.mark.parametrize("make", [lambda: LSTMCell(48), lambda: GRUCell(48), lambda: ElmanCell(48),
                                  lambda: LSTMCell(48, peepholes=True), lambda: MinimalGatedUnit(48),
                                  lambda: rnnkit.cells.LayerNormLSTMCell(48)],
                         ids=["lstm", "gru", "tanh", "peepholes", "custom-mgu", "ln-lstm"])
@pytest.mark.parametrize("B", [3, 24], ids=["native-size", "eager-size"])
def test_recycled_gradient_buffers_equal_fresh_ones(make, B):
    """Without retain_graph the backward writes d(xp) over the forward's activations; the
    gradients must be bitwise those of the retain_graph run, which allocates fresh buffers."""
    torch.manual_seed(3)
    cell = make()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    T = 7
    xp = torch.randn(B, T, cell.input_width, requires_grad=True)
    mask = torch.arange(T) < torch.randint(1, T + 1, (B,))[:, None]
    init = {s: torch.randn(B, 48, requires_grad=True) for s in cell.states}
    wrt = [xp, *init.values(), *cell.parameters()]
    runs = []
    for retain in (True, False):
        for reverse in (False, True):
            out = cell.scan(xp, mask=mask, reverse=reverse, **init)
            gen = torch.Generator().manual_seed(5)
            loss = sum((o * torch.randn(o.shape, generator=gen)).sum() for o in out.outputs.values())
            runs.append(torch.autograd.grad(loss, wrt, retain_graph=retain))
    for fresh, recycled in zip(runs[:2], runs[2:]):
        for a, b in zip(fresh, recycled):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_no_grad_forward_equals_the_differentiable_forward(kind):
    layer = {"lstm": rnnkit.LSTM, "gru": rnnkit.GRU, "rnn": rnnkit.RNN}[kind](5, 40, 2, bidirectional=True, engine="generic")
    x = torch.randn(30, 7, 5)
    lengths = torch.tensor([7, 3] * 15)
    with torch.no_grad():
        y0, s0 = layer(x, lengths=lengths)
    y1, s1 = layer(x.requires_grad_(), lengths=lengths)
    torch.testing.assert_close(y0, y1.detach(), rtol=0, atol=0)


def test_taps_and_clipping_agree_between_fast_and_stepwise_loops():
    torch.manual_seed(3)
    cell = GRUCell(32)
    xp = torch.randn(40, 12, 96, requires_grad=True)
    mask = torch.arange(12) < torch.randint(1, 13, (40,))[:, None]
    results = []
    for run in ("fast", "slow"):
        tap = GradientTap()
        bptt = BPTT(clip_norm=0.05, truncate=4, tap=tap)
        if run == "fast":
            out = cell.scan(xp, mask=mask, reverse=True, bptt=bptt, engine="generic").outputs
        else:
            init = {"h": torch.zeros(40, 32)}
            out = scan_stepwise(cell, {"inputs": xp}, init, {}, mask=mask, reverse=True, bptt=bptt, scope="GRUCell").outputs
        g = torch.autograd.grad(out["h"].sum(), xp)[0]
        results.append((g, tap.norms("h")))
    torch.testing.assert_close(results[0][0], results[1][0], atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], atol=1e-6, rtol=1e-5)


def test_bf16_generic_lstm_runs_forward_and_backward_close_to_fp32():
    torch.manual_seed(0)
    layer = rnnkit.LSTM(16, 64, engine="generic")
    x = torch.randn(8, 10, 16)
    y32, _ = layer(x)
    y16, _ = layer.bfloat16()(x.bfloat16().requires_grad_())
    y16.float().sum().backward()
    assert (y16.float() - y32).abs().max() < 5e-2


needs_native = pytest.mark.skipif(__import__("shutil").which("cc") is None and __import__("shutil").which("gcc") is None,
                                  reason="no C compiler: the native loops are off and the eager kernels run")


@needs_native
def test_compiled_kernels_serve_small_batches_whole_and_the_rest_per_step():
    from rnnkit.engine.compiler import compile_cell
    from rnnkit.engine.compiler.kernels import SeqKernel, StepKernel, make_compiled_kernel
    cell = ElmanCell(4)

    def kernel(B, whole, dtype=torch.float32):  # type: ignore[no-untyped-def]
        cc = compile_cell(cell, dtype, "cpu")
        return make_compiled_kernel(cc, cell, torch.zeros(5, B, 4, dtype=dtype), torch.zeros(4, 4, dtype=dtype), None,
                                    [torch.zeros(6, B, 4, dtype=dtype)], False, (), whole)
    assert isinstance(kernel(2, True), SeqKernel)
    assert isinstance(kernel(2, False), StepKernel)  # BPTT options: per step
    assert isinstance(kernel(9, True), StepKernel)  # B > MAX_BATCH: a oneDNN matmul per step
    assert isinstance(kernel(2, True, torch.float64), SeqKernel)  # float64 has C too


@needs_native
@pytest.mark.parametrize("make", [lambda: LSTMCell(16), lambda: GRUCell(16), lambda: ElmanCell(16),
                                  lambda: ElmanCell(16, "relu"), lambda: ElmanCell(16, "identity")],
                         ids=["lstm", "gru", "tanh", "relu", "identity"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("B", [3, 9], ids=["whole-loop-in-C", "hybrid"])
def test_native_kernels_equal_the_stepwise_engine(make, reverse, B):
    """B <= MAX_BATCH runs the whole loop in C; above it, each step is a oneDNN matmul + one C
    call. Both must match the step-wise autograd engine."""
    torch.manual_seed(2)
    cell = make()
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(0.5).add_(0.05 * torch.randn_like(p))
    xp = torch.randn(B, 8, cell.input_width, requires_grad=True)
    mask = torch.arange(8) < torch.tensor([8, 5, 1, 8, 2, 7, 3, 6, 4][:B])[:, None]
    init = {s: torch.randn(B, 16, requires_grad=True) for s in cell.states}
    wrt = [xp, *init.values(), *cell.parameters()]
    runs = []
    for out in (cell.scan(xp, mask=mask, reverse=reverse, **init),
                scan_stepwise(cell, {"inputs": xp}, init, {}, mask=mask, reverse=reverse)):
        loss_terms = {**out.outputs, **{f"final_{k}": v for k, v in out.final.items()}}
        runs.append((out, _grads(loss_terms, wrt, 1)))
    (fast, g_fast), (eager, g_eager) = runs
    for name in cell.states:
        torch.testing.assert_close(fast.outputs[name], eager.outputs[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast.final[name], eager.final[name], atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_eager):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
