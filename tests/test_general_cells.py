"""General cells (a ``Recurrent`` step with matmuls against its own parameters) on compiled C:
the whole-sequence C loop (B <= 16) and the hybrid loop (B > 16: per step, torch.mm for the
matmuls between C pointwise segments).

The oracle is the step-wise autograd engine (``scan_stepwise``) running the same cell: outputs,
final states, every gradient and the tapped gradient norms must agree in float64 (1e-10) and
float32 (1e-5, relative to each tensor's scale, as in test_compiler_property.py), with lengths,
reverse, truncation, clipping and the gradient tap. The cells: the README's FeedbackRNN (tanh
and identity), a two-layer cell with unequal widths, and 40 random programs per run
(tests/_random_general.py; ``RNNKIT_PROPERTY_SEED`` replays a run), all compiled into one library.
"""
from __future__ import annotations

import os
import random
import secrets
import shutil
from collections import Counter

import pytest
import torch

import rnnkit
from _random_general import KINDS, LIN_FORMS, UNARY, RandomGeneral, draw_program
from rnnkit.cells import ElmanCell
from rnnkit.engine import BPTT, GradientTap, explain
from rnnkit.engine.compiler.general import compile_general, compile_generals, general_explain
import rnnkit.engine.general as general
from rnnkit.engine.general import MAX_BATCH
from rnnkit.engine.generic import scan_stepwise

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
T = 6
CASES = [(2, False, {}), (3, True, {}), (2, False, {"truncate": 2}), (3, True, {"clip": 0.05}), (2, True, {"tap": True})]
WIDE = [(MAX_BATCH + 4, False, {}), (MAX_BATCH + 1, True, {}), (MAX_BATCH + 2, False, {"truncate": 2}),
        (MAX_BATCH + 3, True, {"clip": 0.05}), (MAX_BATCH + 1, True, {"tap": True})]  # the hybrid loop


@pytest.fixture(autouse=True)
def _plan_the_hybrid_loop(monkeypatch):  # type: ignore[no-untyped-def]
    """B > 16 plans the hybrid loop here (by default autograd, measured as fast: HYBRID_FROM)."""
    monkeypatch.setattr(general, "HYBRID_FROM", MAX_BATCH + 1)


class FeedbackRNN(rnnkit.Recurrent):
    """The README's cell: two Elman layers, the first reading both states."""

    states = ("first", "second")

    def __init__(self, dim: int, activation: str = "identity") -> None:
        super().__init__()
        self.dim = dim
        init = rnnkit.init.identity() if activation == "identity" else None
        self.first_layer = ElmanCell(dim, activation=activation, weight_init=init)
        self.second_layer = ElmanCell(dim, activation=activation, weight_init=init)

    def state_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.dim,)

    def step(self, inputs, first, second):  # type: ignore[no-untyped-def]
        first_h = self.first_layer.step(inputs, first + second)
        return first_h, self.second_layer.step(first_h, second)


class TwoLayer(rnnkit.Recurrent):
    """h1 = tanh(x W + h1 U), h2 = tanh(h1 V + h2 R), with unequal widths and every matmul form."""

    states = ("h1", "h2")

    def __init__(self, i: int, n: int, m: int) -> None:
        super().__init__()
        self.n, self.m = n, m
        self.W = torch.nn.Linear(i, n)
        self.U = torch.nn.Parameter(torch.randn(n, n) / n ** 0.5)
        self.V = torch.nn.Parameter(torch.randn(n, m) / n ** 0.5)
        self.R = torch.nn.Linear(m, m, bias=False)

    def state_shape(self, name):  # type: ignore[no-untyped-def]
        return (self.n,) if name == "h1" else (self.m,)

    def step(self, inputs, h1, h2):  # type: ignore[no-untyped-def]
        h1 = torch.tanh(self.W(inputs) + h1 @ self.U.t())
        return h1, torch.tanh(h1 @ self.V + self.R(h2))


def _far(a, b, tol):  # type: ignore[no-untyped-def]
    """max |a - b| over tol * (|b| + max(1, max |b|)): > 1 means not equal."""
    if a is None or b is None:
        other = b if a is None else a
        return 0.0 if other is None or not other.abs().any() else float("inf")
    a, b = a.detach().double(), b.detach().double()
    return float(((a - b).abs() / (tol * (b.abs() + max(1.0, float(b.abs().max()))))).max()) if a.numel() else 0.0


def _results(cell, widths, B, reverse, options, seed, stepwise, dtype):  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(seed)
    xs = {n: torch.randn(B, T, w, generator=gen).to(dtype).requires_grad_() for n, w in zip(cell.sequences, widths)}
    init = {s: (0.5 * torch.randn(B, cell.state_shape(s)[0], generator=gen)).to(dtype).requires_grad_()
            for s in cell.states}
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = torch.arange(T) < lengths[:, None]  # (B, T)
    g = {s: torch.randn(B, T, cell.state_shape(s)[0], generator=gen).to(dtype) for s in cell.states}
    tap = GradientTap() if options.get("tap") else None
    bptt = BPTT(truncate=options.get("truncate"), clip_value=options.get("clip"), tap=tap)
    if stepwise:
        res = scan_stepwise(cell, xs, init, {}, mask=mask, reverse=reverse, bptt=bptt, scope="c")
    else:
        plan = cell.plan(mask=mask, bptt=bptt, engine="generic", **xs)
        loop = "native" if B <= MAX_BATCH else "hybrid"
        assert (plan.backend, plan.loop) == ("generic-compiled", loop), plan
        res = cell.scan(mask=mask, reverse=reverse, bptt=bptt, engine="generic", **xs, **init)
    loss = sum((res.outputs[s] * g[s]).sum() + res.final[s].sum() for s in cell.states)
    grads = torch.autograd.grad(loss, [*xs.values(), *init.values(), *cell.parameters()], allow_unused=True)
    out = [res.outputs[s] for s in cell.states] + [res.final[s] for s in cell.states] + list(grads)
    return out + ([tap.norms(s) for s in cell.states] if tap else [])


def check(cell, widths, B, reverse, options, seed=0) -> None:  # type: ignore[no-untyped-def]
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-5)):
        cell = cell.to(dtype)
        got = _results(cell, widths, B, reverse, options, seed, False, dtype)
        want = _results(cell, widths, B, reverse, options, seed, True, dtype)
        assert len(got) == len(want)
        for i, (a, b) in enumerate(zip(got, want)):
            assert _far(a, b, tol) <= 1, f"{dtype} result {i}: {_far(a, b, tol) * tol:.3g} relative"


@needs_cc
def test_readme_feedback_rnn_runs_compiled_and_prints_the_tutorial_numbers():
    cell = FeedbackRNN(3)
    x = torch.ones(1, 3, 3)
    assert explain(cell) is None
    plan = cell.plan(x)
    assert (plan.backend, plan.loop) == ("generic-compiled", "native"), plan
    first, second = cell(x)
    assert first[0, :, 0].tolist() == [1.0, 3.0, 8.0] and second[0, :, 0].tolist() == [1.0, 4.0, 12.0]


@needs_cc
@pytest.mark.parametrize("case", CASES + WIDE, ids=lambda c: f"B{c[0]}-rev{int(c[1])}-{'-'.join(c[2]) or 'plain'}")
@pytest.mark.parametrize("which", ["feedback-tanh", "feedback-identity", "two-layer"])
def test_general_cells_equal_eager_autograd(which, case):
    torch.manual_seed(0)
    cell = {"feedback-tanh": lambda: FeedbackRNN(5, "tanh"), "feedback-identity": lambda: FeedbackRNN(4),
            "two-layer": lambda: TwoLayer(3, 4, 6)}[which]()
    widths = (3,) if which == "two-layer" else (cell.dim,)
    if which == "feedback-identity":  # keep the accumulating sums small
        for p in cell.parameters():
            p.data.mul_(0.5)
    B, reverse, options = case
    check(cell, widths, B, reverse, options)


def run_seed() -> int:
    given = os.environ.get("RNNKIT_PROPERTY_SEED")
    return int(given) if given else secrets.randbits(32)


@needs_cc
def test_random_general_cells_equal_eager_autograd():
    run = run_seed()
    rng = random.Random(run)
    progs = [draw_program(rng) for _ in range(40)]
    cells = [RandomGeneral(p, seed=i) for i, p in enumerate(progs)]
    compiled = compile_generals([(c, p.seqs) for c, p in zip(cells, progs)])
    assert all(cg is not None for cg in compiled), [general_explain(c, p.seqs) for c, p in zip(cells, progs)]
    counts: Counter = Counter()
    for i, (prog, cell) in enumerate(zip(progs, cells)):
        B, reverse, options = (CASES + WIDE)[i % (len(CASES) + len(WIDE))]  # half on each loop
        try:
            check(cell, prog.seqs, B, reverse, options, seed=i)
            if i % 5 == 0:
                _gradcheck(cell.double(), prog.seqs, reverse, B=2 if i % 10 == 0 else MAX_BATCH + 1)
                counts["gradcheck"] += 1
        except AssertionError as err:
            raise AssertionError(f"cell {i} of seed {run} (replay: RNNKIT_PROPERTY_SEED={run}): {prog!r}, "
                                 f"B={B}, reverse={reverse}, {options}: {err}") from None
        for step in prog.steps:
            counts[step[0]] += 1
            if step[0] in ("lin", "un"):
                counts[step[2]] += 1
        counts["states"] |= 1 << len(prog.states)
    drawn = [k for k in (*KINDS, *LIN_FORMS, *UNARY) if counts[k] == 0]
    assert counts["lin"] >= 5 and len(drawn) <= 2, (counts, run)  # nearly every op and form was drawn
    assert counts["gradcheck"] == 8


def _gradcheck(cell, widths, reverse, B=2) -> None:  # type: ignore[no-untyped-def]
    gen = torch.Generator().manual_seed(1)
    xs = [torch.randn(B, 3, w, generator=gen, dtype=torch.float64, requires_grad=True) for w in widths]
    init = [0.5 * torch.randn(B, cell.state_shape(s)[0], generator=gen, dtype=torch.float64).requires_grad_()
            for s in cell.states]
    mask = torch.arange(3) < torch.tensor([3, 2] * (B // 2) + [1] * (B % 2))[:, None]  # (B, 3) ragged
    n = len(xs)

    def f(*args):  # type: ignore[no-untyped-def]
        named = dict(zip(cell.sequences, args[:n])) | dict(zip(cell.states, args[n:]))
        res = cell.scan(mask=mask, reverse=reverse, engine="generic", **named)
        return tuple(res.outputs[s] for s in cell.states)

    assert torch.autograd.gradcheck(f, (*xs, *init), atol=1e-6, rtol=1e-5)


@needs_cc
@pytest.mark.parametrize("B", [2, MAX_BATCH + 1], ids=["c-loop", "hybrid"])
def test_gradcheck_through_the_compiled_loops_reaches_the_weights(B):
    cell = TwoLayer(3, 4, 5).double()
    x = torch.randn(B, 4, 3, dtype=torch.float64)
    names = [n for n, _ in cell.named_parameters()]

    def f(*params):  # type: ignore[no-untyped-def]
        out = torch.func.functional_call(cell, dict(zip(names, params)), (x,))
        return out

    assert cell.plan(x).loop == ("native" if B <= MAX_BATCH else "hybrid")
    assert torch.autograd.gradcheck(f, tuple(p.detach().clone().requires_grad_() for p in cell.parameters()),
                                    atol=1e-6, rtol=1e-5)


class SinCell(FeedbackRNN):
    def step(self, inputs, first, second):  # type: ignore[no-untyped-def]
        return torch.sin(self.first_layer.step(inputs, first)), second


class MatrixElementwise(TwoLayer):
    def step(self, inputs, h1, h2):  # type: ignore[no-untyped-def]
        return torch.tanh(self.W(inputs) + (h1 @ self.U) * self.U.sum()), h2


def test_an_unsupported_op_keeps_the_autograd_loop_and_is_named():
    cell = SinCell(3, "tanh")
    x = torch.randn(2, 4, 3, requires_grad=True)
    assert explain(cell) == "sin"
    plan = cell.plan(x)
    assert (plan.backend, plan.loop) == ("generic-autograd", "autograd") and "sin" in plan.reason("backend"), plan
    ref = scan_stepwise(cell, {"inputs": x}, {s: torch.zeros(2, 3) for s in cell.states}, {})
    torch.testing.assert_close(cell(x)[0], ref.outputs["first"])
    assert general_explain(MatrixElementwise(3, 4, 4), (3,)) == "sum of a weight matrix (only matmuls take one)"


@needs_cc
def test_plans_outside_the_compiled_loop_say_why(monkeypatch):
    cell = TwoLayer(3, 4, 4)
    monkeypatch.setattr(general, "HYBRID_FROM", None)  # the default: autograd beyond B = 16
    auto = cell.plan(torch.randn(MAX_BATCH + 1, 2, 3))
    assert auto.loop == "autograd" and f"B = {MAX_BATCH + 1} > {MAX_BATCH}" in auto.reason("backend"), auto
    assert "HYBRID_FROM" in auto.reason("backend"), auto
    monkeypatch.setattr(general, "HYBRID_FROM", MAX_BATCH + 1)
    big = cell.plan(torch.randn(MAX_BATCH + 1, 2, 3))
    assert (big.backend, big.loop) == ("generic-compiled", "hybrid"), big
    assert f"B = {MAX_BATCH + 1} > {MAX_BATCH}" in big.reason("loop") and "torch.mm" in big.reason("loop"), big
    small = cell.plan(torch.randn(MAX_BATCH, 2, 3))
    assert small.loop == "native" and f"B = {MAX_BATCH} <= {MAX_BATCH}" in small.reason("loop"), small
    reg = cell.plan(torch.randn(2, 2, 3), regularisers=rnnkit.Regularisers(zoneout=0.1))
    assert reg.loop == "autograd" and "act between steps" in reg.reason("backend"), reg
    cell.to(torch.bfloat16)
    plan = cell.plan(torch.randn(2, 2, 3, dtype=torch.bfloat16))
    assert plan.loop == "autograd" and "bfloat16" in plan.reason("backend"), plan


@needs_cc
@pytest.mark.parametrize("B", [2, MAX_BATCH + 1], ids=["c-loop", "hybrid"])
def test_double_backward_and_no_grad_match_the_stepwise_engine(B):
    torch.manual_seed(3)
    cell = TwoLayer(3, 4, 4).double()
    x = torch.randn(B, 5, 3, dtype=torch.float64, requires_grad=True)
    zeros = {s: torch.zeros(B, 4, dtype=torch.float64) for s in cell.states}

    def penalty(run):  # type: ignore[no-untyped-def]
        h1, h2 = run()
        (gx,) = torch.autograd.grad((h1 * h2).sum(), x, create_graph=True)
        return torch.autograd.grad(gx.square().sum(), cell.U)[0]

    ref = penalty(lambda: tuple(scan_stepwise(cell, {"inputs": x}, zeros, {}).outputs[s] for s in cell.states))
    torch.testing.assert_close(penalty(lambda: cell(x)), ref, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(cell(x)[1], scan_stepwise(cell, {"inputs": x}, zeros, {}).outputs["h2"])


@needs_cc
def test_same_math_shares_one_unit_and_widths_are_part_of_it():
    a, b = compile_general(TwoLayer(3, 4, 4), (3,), torch.float32, "cpu"), \
        compile_general(TwoLayer(3, 4, 4), (3,), torch.float32, "cpu")
    c = compile_general(TwoLayer(3, 8, 4), (3,), torch.float32, "cpu")
    assert a is b and a.unit != c.unit and a.lib is not None
    assert len(a.mm) == 3 and a.hoisted == ((0, 2, True, 4, 3),)  # W(inputs): one GEMM before the loop
    assert {lin for (_, lin, _, _) in a.mm} == {True, False}  # F.linear / .t() and x @ W both occur
