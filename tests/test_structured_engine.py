"""The generic engine's structured fast loop against the step-wise engine and torch.nn.

The fast loop (rnnkit.engine.structured) has code paths that the small-size parity tests do not
reach: the sigmoid form of tanh used from B*H >= 1024, the custom-cell kernel that re-runs a
user's pointwise under autograd, repeated backward passes, and the no-grad forward.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import rnnkit
from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.engine import BPTT, GradientTap
from rnnkit.engine.generic import scan_stepwise
from rnnkit.engine.kernels import SIGMOID_TANH_MIN, AutogradKernel, make_kernel
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
def test_fast_loop_equals_stepwise_at_sizes_that_take_the_sigmoid_path(make, reverse):
    torch.manual_seed(1)
    cell = make()
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    B, T, H = 24, 9, cell.hidden_size
    assert B * H >= SIGMOID_TANH_MIN
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


def test_custom_structured_cell_takes_the_autograd_kernel_and_gets_every_gradient():
    cell = MinimalGatedUnit(3).double()
    X = torch.zeros(2, 1, 6, dtype=torch.float64)
    kernel = make_kernel(cell, X, cell.weight, cell.bias, [torch.zeros(3, 1, 3, dtype=torch.float64)], False)
    assert isinstance(kernel, AutogradKernel)
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
def test_native_library_builds_and_serves_small_float32_batches():
    from rnnkit.engine import native
    assert native.library() is not None
    kernel = native.make_native_kernel(ElmanCell(4), torch.zeros(5, 2, 4), torch.zeros(4, 4), None,
                                       [torch.zeros(6, 2, 4)], False, True)
    assert getattr(kernel, "native", False)
    assert native.make_native_kernel(ElmanCell(4), torch.zeros(5, 2, 4), torch.zeros(4, 4), None,
                                     [torch.zeros(6, 2, 4)], False, False) is None  # BPTT options: eager
    assert native.make_native_kernel(ElmanCell(4), torch.zeros(5, 9, 4), torch.zeros(4, 4), None,
                                     [torch.zeros(6, 9, 4)], False, True) is None  # B > MAX_BATCH: BLAS per step
    assert native.make_native_kernel(ElmanCell(4).double(), torch.zeros(5, 2, 4, dtype=torch.float64),
                                     torch.zeros(4, 4, dtype=torch.float64), None,
                                     [torch.zeros(6, 2, 4, dtype=torch.float64)], False, True) is None  # float32 only


@needs_native
@pytest.mark.parametrize("make", [lambda: LSTMCell(16), lambda: GRUCell(16), lambda: ElmanCell(16),
                                  lambda: ElmanCell(16, "relu"), lambda: ElmanCell(16, "identity")],
                         ids=["lstm", "gru", "tanh", "relu", "identity"])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("B", [3, 9], ids=["whole-loop-in-C", "hybrid"])
def test_native_loops_equal_the_eager_kernels(make, reverse, B, monkeypatch):
    """B <= MAX_BATCH runs the whole loop in C; above it, LSTM and GRU take the hybrid kernels
    (oneDNN matmul + one C call per step). Both must match the eager torch kernels."""
    from rnnkit.engine import native
    torch.manual_seed(2)
    cell = make()
    with torch.no_grad():
        for p in cell.parameters():
            p.mul_(0.5).add_(0.05 * torch.randn_like(p))
    X = torch.zeros(8, B, cell.input_width)
    bufs = [torch.zeros(9, B, 16) for _ in cell.states]
    hybrid = native.make_hybrid_kernel(cell, X, cell.weight, cell.bias, bufs, reverse)
    assert (hybrid is not None) == (type(cell) in (LSTMCell, GRUCell))
    xp = torch.randn(B, 8, cell.input_width, requires_grad=True)
    mask = torch.arange(8) < torch.tensor([8, 5, 1, 8, 2, 7, 3, 6, 4][:B])[:, None]
    init = {s: torch.randn(B, 16, requires_grad=True) for s in cell.states}
    wrt = [xp, *init.values(), *cell.parameters()]
    runs = []
    for lib in (native.library(), None):
        monkeypatch.setattr(native, "library", lambda lib=lib: lib)
        out = cell.scan(xp, mask=mask, reverse=reverse, **init)
        loss_terms = {**out.outputs, **{f"final_{k}": v for k, v in out.final.items()}}
        runs.append((out, _grads(loss_terms, wrt, 1)))
    (fast, g_fast), (eager, g_eager) = runs
    for name in cell.states:
        torch.testing.assert_close(fast.outputs[name], eager.outputs[name], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(fast.final[name], eager.final[name], atol=1e-5, rtol=1e-5)
    for a, b in zip(g_fast, g_eager):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
