"""Property test of the cell compiler: random Structured cells, compiled vs eager autograd.

Every run draws FRESH cells: 200 random programs (tests/_random_cells.py: 1-4 gate blocks, 1-3
states, per-feature parameters, unary/binary ops, cat/chunk round trips, per-row reductions)
from a hypothesis seed taken from the OS, all compiled into ONE shared library (one compiler
call per run). The seed is printed in every failure; ``RNNKIT_PROPERTY_SEED=<seed>`` replays
the same cells (their parameters and inputs are seeded too).

Each cell's scan on the engine (whole-sequence C for B=2, per-step C beside oneDNN otherwise)
must equal the step-wise autograd engine, outputs, final states, every gradient and the tapped
gradient norms, in float64 (1e-10) and float32 (1e-5), with lengths, reverse, truncation,
clipping and the gradient tap; a sample gets float64 torch.autograd.gradcheck through the C
loop. The test counts what it exercised and asserts each of those was hit.

The oracle and conditioning. Two float32 computations that sum in a different order differ by
rounding times the program's condition number, so "equal within 1e-5" is the right oracle only
for well-conditioned programs. The generator keeps its ops well-conditioned (_random_cells's
docstring: the one ill-conditioned op found in ~16,000 random cells, layer norm with eps=1e-5
over nearly equal values, now uses eps=0.05). As a second guard a float32 mismatch is judged
against the exact answer: the same cell and inputs in float64 on the step-wise engine. The
compiled result passes if it is within 1e-5 of that answer, or no farther from it than twice
eager autograd's own float32 result is (then the program, not the compiler, is what rounds).
A compiler bug is far from the exact answer while autograd is close, so it still fails; and at
most 2% of the cells may need this judgement, so a systematic error cannot hide behind it.
"""
from __future__ import annotations

import copy
import os
import secrets
import shutil
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from _random_cells import BINARY, ROWWISE, UNARY, make_cell, programs
from rnnkit.engine import BPTT, GradientTap, _cell_plan
from rnnkit.engine.compiler import CompiledCell, compile_cell, compile_cells, explain
from rnnkit.engine.generic import scan_stepwise

needs_cc = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler")
N_CELLS = 200
H = 3
T = 5
GRADCHECK_EVERY = 20  # every 20th cell also gets float64 gradcheck: 10 per run
CASES = [  # (B, reverse, BPTT options): B=2 takes the whole-sequence C loop unless options are on
    (2, False, {}), (2, True, {}), (6, False, {"truncate": 2}), (6, True, {"clip": 0.05}), (3, False, {"tap": True}),
]


def run_seed() -> int:
    """This run's seed: RNNKIT_PROPERTY_SEED to replay one, else fresh from the OS."""
    given_seed = os.environ.get("RNNKIT_PROPERTY_SEED")
    return int(given_seed) if given_seed else secrets.randbits(32)


def draw_programs(n: int, run: int) -> list:
    """n random programs drawn by hypothesis from seed ``run`` (generation only: a list drawn as
    ONE example would start from the simplest programs, so each program is its own example)."""
    drawn: list = []

    @seed(run)
    @settings(max_examples=n, deadline=None, phases=[Phase.generate], database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(programs())
    def collect(p):  # type: ignore[no-untyped-def]
        drawn.append(p)

    collect()
    return drawn


def _results(cell, B, reverse, options, case_seed, stepwise, dtype):  # type: ignore[no-untyped-def]
    """Outputs, finals, gradients (xp, initial states, parameters) and tap norms of one scan of
    ``cell`` (already in its dtype); inputs are drawn in float32 and cast, so a float64 run of a
    float32 cell sees exactly the float32 call's values."""
    gen = torch.Generator().manual_seed(case_seed)
    xp = torch.randn(B, T, cell.input_width, generator=gen).to(dtype).requires_grad_()  # (B, T, G*H)
    init = {s: (0.5 * torch.randn(B, H, generator=gen)).to(dtype).requires_grad_() for s in cell.states}
    lengths = torch.randint(1, T + 1, (B,), generator=gen)
    mask = torch.arange(T) < lengths[:, None]  # (B, T)
    g = {s: torch.randn(B, T, H, generator=gen).to(dtype) for s in cell.states}
    taps = GradientTap() if options.get("tap") else None
    bptt = BPTT(truncate=options.get("truncate"), clip_value=options.get("clip"), tap=taps)
    if stepwise:
        res = scan_stepwise(cell, {"inputs": xp}, init, {}, mask=mask, reverse=reverse, bptt=bptt, scope="c")
    else:
        res = cell.scan(xp, mask=mask, reverse=reverse, bptt=bptt, engine="generic", **init)
    loss = sum((res.outputs[s] * g[s]).sum() + res.final[s].sum() for s in cell.states)
    grads = torch.autograd.grad(loss, [xp, *init.values(), *cell.parameters()], allow_unused=True)
    tapped = [] if taps is None else [taps.norms(s) for s in cell.states]
    named = [(f"outputs[{s}]", res.outputs[s]) for s in cell.states] + [(f"final[{s}]", res.final[s])
                                                                         for s in cell.states]
    names = ["d xp", *(f"d init[{s}]" for s in cell.states), *(f"d {n}" for n, _ in cell.named_parameters())]
    named += list(zip(names, grads)) + [(f"tap[{s}]", t) for s, t in zip(cell.states, tapped)]
    return [(n, None if t is None else t.detach()) for n, t in named], mask


def _far(a, b, tol):  # type: ignore[no-untyped-def]
    """max |a - b| over tol * (|b| + max(1, max |b|)): > 1 means not equal (absolute errors are
    measured against the tensor's own scale: a gradient summed over many steps and rows, e.g. a
    bias's, carries a proportionally larger rounding)."""
    if a is None or b is None:
        other = b if a is None else a
        return 0.0 if other is None or not other.abs().any() else float("inf")
    if not a.numel():
        return 0.0
    a, b = a.double(), b.double()
    scale = max(1.0, float(b.abs().max()))
    return float(((a - b).abs() / (tol * (b.abs() + scale))).max())


def check_cell(cell, B, reverse, options, case_seed, counts):  # type: ignore[no-untyped-def]
    """Compiled vs step-wise autograd in float64 and float32 (see the module docstring)."""
    cell64 = cell.double()
    got, mask = _results(cell64, B, reverse, options, case_seed, False, torch.float64)
    want, _ = _results(cell64, B, reverse, options, case_seed, True, torch.float64)
    for (name, a), (_, b) in zip(got, want):
        assert _far(a, b, 1e-10) <= 1, f"float64 {name}: {_far(a, b, 1e-10) * 1e-10:.3g} relative"
    cell32 = cell.float()
    got, _ = _results(cell32, B, reverse, options, case_seed, False, torch.float32)
    want, _ = _results(cell32, B, reverse, options, case_seed, True, torch.float32)
    bad = [i for i, ((_, a), (_, b)) in enumerate(zip(got, want)) if _far(a, b, 1e-5) > 1]
    if bad:
        exact, _ = _results(copy.deepcopy(cell32).double(), B, reverse, options, case_seed, True, torch.float64)
        counts["float32 judged against float64"] += 1
        for i in bad:
            (name, a), (_, b), (_, x) = got[i], want[i], exact[i]
            far, autograd_far = _far(a, x, 1e-5), _far(b, x, 1e-5)
            assert far <= max(1.0, 2 * autograd_far), (
                f"float32 {name}: compiled is {far * 1e-5:.3g} (relative) from the float64 answer, eager "
                f"autograd {autograd_far * 1e-5:.3g}; compiled vs autograd {_far(a, b, 1e-5) * 1e-5:.3g}")
    counts["float64"] += 1
    counts["float32"] += 1
    counts["lengths"] += int((~mask).any())
    counts["reverse"] += int(reverse)
    for option in ("truncate", "clip", "tap"):
        counts[option] += int(option in options)
    return mask


def _gradcheck(cell, reverse, counts) -> None:  # type: ignore[no-untyped-def]
    """float64 gradcheck of the compiled C loop (B=2, a ragged mask)."""
    cell = cell.double()
    gen = torch.Generator().manual_seed(1)
    xp = torch.randn(2, 3, cell.input_width, generator=gen, dtype=torch.float64, requires_grad=True)
    init = [0.5 * torch.randn(2, H, generator=gen, dtype=torch.float64).requires_grad_() for _ in cell.states]
    mask = torch.tensor([[True, True, True], [True, True, False]])
    plan = _cell_plan("generic", cell, {"inputs": xp}, {}, mask, None, "c")
    assert plan.loop == "native", plan

    def f(xp, *init):  # type: ignore[no-untyped-def]
        res = cell.scan(xp, mask=mask, reverse=reverse, engine="generic", **dict(zip(cell.states, init)))
        return tuple(res.outputs[s] for s in cell.states)

    assert torch.autograd.gradcheck(f, (xp, *init), atol=1e-6, rtol=1e-5)
    counts["gradcheck"] += 1


@needs_cc
def test_random_cells_compile_and_equal_eager_autograd():
    run = run_seed()
    progs = draw_programs(N_CELLS, run)
    replay = f"(replay: RNNKIT_PROPERTY_SEED={run} pytest {__file__})"
    assert len(progs) >= N_CELLS and len({repr(p) for p in progs}) > N_CELLS // 2, replay
    cells = [make_cell(p, H, seed=i) for i, p in enumerate(progs)]
    compiled = compile_cells(cells)  # every new C unit of this run goes into ONE library
    assert all(cc is not None for cc in compiled), ([explain(c) for c in cells if explain(c)], replay)
    counts: Counter = Counter()
    for i, (prog, cell, cc) in enumerate(zip(progs, cells, compiled)):
        B, reverse, options = CASES[i % len(CASES)]
        try:
            assert cc.lib is not None, "no C library"
            for dtype in (torch.float64, torch.float32):
                probe = torch.zeros(B, T, cell.input_width, dtype=dtype)
                plan = _cell_plan("generic", cell.to(dtype), {"inputs": probe}, {}, None, BPTT(
                    truncate=options.get("truncate"), clip_value=options.get("clip"),
                    tap=GradientTap() if options.get("tap") else None), "c")
                assert plan.backend == "generic-compiled" and plan.loop in ("native", "hybrid"), plan
                counts[plan.loop] += 1
            check_cell(cell, B, reverse, options, i, counts)
            if i % GRADCHECK_EVERY == 0:
                _gradcheck(cell, bool(i // GRADCHECK_EVERY % 2), counts)
        except AssertionError as err:
            raise AssertionError(f"cell {i} of seed {run} {replay}: {prog!r}, B={B}, reverse={reverse}, "
                                 f"{options}: {err}") from None
        counts["gates"] |= 1 << prog.gates  # bit sets of what the programs held
        counts["states"] |= 1 << prog.n_states
        counts["params"] += int(bool(prog.params))
        for step in prog.steps:
            counts["op " + step[1]] += 1
    n = len(cells)
    # what this run exercised: every feature the property promises, in float32 and float64
    assert counts["float64"] == counts["float32"] == n
    assert counts["gates"] == 0b11110 and counts["states"] == 0b1110 and counts["params"] >= n // 4, (counts, replay)
    assert counts["native"] >= n // 2 and counts["hybrid"] >= n // 2, counts
    for feature in ("lengths", "reverse", "truncate", "clip", "tap"):
        assert counts[feature] >= n // 10, (feature, counts)
    assert counts["gradcheck"] == len(range(0, n, GRADCHECK_EVERY)), counts
    assert all(counts["op " + op] for op in UNARY + BINARY + ROWWISE), (counts, replay)
    assert counts["float32 judged against float64"] <= n // 50, (counts, replay)


def test_fresh_draws_differ_between_runs_and_replay_from_their_seed(monkeypatch):
    monkeypatch.delenv("RNNKIT_PROPERTY_SEED", raising=False)
    first, second = run_seed(), run_seed()
    assert first != second
    assert draw_programs(20, first) == draw_programs(20, first)
    assert draw_programs(20, first) != draw_programs(20, second)
    monkeypatch.setenv("RNNKIT_PROPERTY_SEED", "1234")
    assert run_seed() == 1234
    a, b = make_cell(draw_programs(1, 7)[0], H, seed=3), make_cell(draw_programs(1, 7)[0], H, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(programs(), st.integers(0, 2**16))
def test_eager_printer_equals_eager_autograd(prog, case_seed):
    """The eager printer (GPUs, other dtypes, no compiler): C switched off for the call."""
    cell = make_cell(prog, H, seed=case_seed)
    before = os.environ.get("RNNKIT_NATIVE")
    os.environ["RNNKIT_NATIVE"] = "0"  # no library is built ...
    original = CompiledCell.c
    CompiledCell.c = lambda self, name, dtype: None  # type: ignore[method-assign]  # ... or used
    try:
        assert compile_cell(cell, torch.float64, "cpu") is not None, explain(cell)
        options = {"truncate": 2} if case_seed % 3 == 0 else {}
        cell = cell.double()
        got, _ = _results(cell, 4, bool(case_seed % 2), options, case_seed, False, torch.float64)
        want, _ = _results(cell, 4, bool(case_seed % 2), options, case_seed, True, torch.float64)
        for (name, a), (_, b) in zip(got, want):
            assert _far(a, b, 1e-10) <= 1, name
    finally:
        CompiledCell.c = original  # type: ignore[method-assign]
        if before is None:
            del os.environ["RNNKIT_NATIVE"]
        else:
            os.environ["RNNKIT_NATIVE"] = before
