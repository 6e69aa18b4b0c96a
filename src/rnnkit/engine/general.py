"""The compiled loop of general cells: a ``Recurrent`` step with matmuls inside, on native code.

A cell such as the README's FeedbackRNN or a two-layer cell (h1 = tanh(x W + h1 U),
h2 = tanh(h1 V + h2 R)) is compiled whole (``rnnkit.engine.compiler.general``): the forward
runs every step of every row in ONE C call (matvecs and pointwise math; a padded step keeps
the state), saving each matmul's input A_m and output Y_m. The backward is one more C call
(or, with BPTT truncation, clipping or a gradient tap, one C call per step between which Python
applies them, exactly as the structured loop does), and each weight gradient is ONE GEMM over
all T*B rows at the end: dW_m = dY_m^T A_m. A double backward (``create_graph=True``)
differentiates a step-wise recomputation instead.
"""
from __future__ import annotations

import ctypes
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from rnnkit.engine.bptt import BPTT
from rnnkit.engine.compiler.general import CompiledGeneral, compile_general, general_explain
from rnnkit.engine.dispatch import Plan
from rnnkit.engine.general_hybrid import hybrid_backward, hybrid_forward
from rnnkit.engine.generic import scan_stepwise
from rnnkit.engine.gemm import mm_tn
from rnnkit.engine.result import Scan
from rnnkit.engine.structured import _truncation_cuts

__all__ = ["general_plan", "scan_general"]

MAX_BATCH = 16  # rows up to which the per-row C matvecs are used
# Batch size from which the plan picks the hybrid loop (general_hybrid.py); None: never. Measured
# (BENCHMARKS.md, B = 32, T = 256, H = 256, 2 threads) it ran at 0.90-0.92x the speed of the
# autograd loop, whose per-step GEMMs are the same, so autograd stays the plan's choice.
HYBRID_FROM: int | None = None


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _arr(ts: Sequence[Tensor | None]) -> ctypes.Array:
    return (ctypes.c_void_p * max(len(ts), 1))(*[_p(t) for t in ts])


def widths_of(cell: Any, sequences: Mapping[str, Tensor]) -> tuple[int, ...] | None:
    """The per-step feature widths of the sequences, None unless each is (B, T, F)."""
    seqs = [sequences[n] for n in cell.sequences if n in sequences]
    if len(seqs) != len(cell.sequences) or any(s.dim() != 3 for s in seqs):
        return None
    return tuple(int(s.shape[2]) for s in seqs)


def general_plan(engine: str, cell: Any, sequences: Mapping[str, Tensor], contexts: Mapping[str, Tensor],
                 bptt: BPTT | None, regularised: str | None, why: str) -> Plan:
    """The plan of a scan of a non-Structured cell on the generic engine: the compiled general
    loop when the cell compiles and the call suits it, else the step-wise autograd loop. ``why``:
    why the backend is the generic one."""
    first = next(iter(sequences.values()))
    dtype, device, B = first.dtype, first.device, first.shape[0]

    def autograd(reason: str) -> Plan:
        return Plan(engine, "generic-autograd", "autograd", dtype, dtype,
                    (("backend", f"{why}; {reason}, so autograd runs its step"),
                     ("loop", "one cell.step per time step under autograd"), ("dtype", "the call's own")))

    if contexts:
        return autograd("the cell takes contexts")
    widths = widths_of(cell, sequences)
    if widths is None:
        return autograd("a sequence is not (B, T, features)")
    not_compiled = general_explain(cell, widths)
    if not_compiled is not None:
        return autograd(f"its step does not compile ({not_compiled})")
    if regularised:
        return autograd(f"{regularised} act between steps (the compiled general loop has none)")
    if B == 0:
        return autograd("the batch is empty")
    cg = compile_general(cell, widths, dtype, device)
    if cg is None or cg.c("fwd_seq", dtype) is None or device.type != "cpu":
        return autograd(f"its step compiles, but compiled C serves float32/float64 CPU calls with a C compiler "
                        f"(this call: {dtype}, {device.type})")
    plain = bptt is None or bptt.is_default
    hoist = f"{len(cg.hoisted)} of the inputs as one GEMM before it"
    if B > MAX_BATCH and (HYBRID_FROM is None or B < HYBRID_FROM):
        return autograd(f"B = {B} > {MAX_BATCH} (the C loop's per-row matvecs lose to GEMMs there, and the hybrid "
                        "loop, torch.mm between compiled segments, measured no faster than autograd: "
                        "rnnkit.engine.general.HYBRID_FROM)")
    if B > MAX_BATCH:
        hp = cg.hybrid
        loop_why = (f"hybrid loop, B = {B} > {MAX_BATCH}: per step {len(hp.fwd)} C segment(s) between "
                    f"{len(cg.mm)} torch.mm GEMM(s) (the step split at its matmuls; at this batch a GEMM beats "
                    f"per-row matvecs), {hoist}; backward the same way, BPTT options between steps; "
                    "weight gradients: one GEMM per matmul")
        loop = "hybrid"
    else:
        loop_why = (f"whole-sequence C loop over the general step ({len(cg.mm)} matmul(s) as matvecs, {hoist}, "
                    f"B = {B} <= {MAX_BATCH}); weight gradients: one GEMM per matmul"
                    + ("" if plain else "; backward one C call per step (BPTT options between steps)"))
        loop = "native"
    return Plan(engine, "generic-compiled", loop, dtype, dtype,
                (("backend", f"{why}; the general cell's step compiles (unit {cg.unit})"),
                 ("loop", loop_why), ("dtype", "the call's own")))


class _Setup:
    def __init__(self, cell: Any, cg: CompiledGeneral, reverse: bool, bptt: BPTT, scope: str, hybrid: bool) -> None:
        self.cell, self.cg, self.reverse, self.bptt, self.scope = cell, cg, reverse, bptt, scope
        self.hybrid = hybrid  # the per-step GEMM + C segments loop (general_hybrid.py), else the C loop


def _forward(setup: _Setup, seqs: Sequence[Tensor], states0: Sequence[Tensor], params: Sequence[Tensor],
             mf: Tensor | None) -> dict[str, Any]:
    """Run the forward C loop; returns the buffers the backward reads."""
    cg = setup.cg
    B, T = seqs[0].shape[0], seqs[0].shape[1]
    dtype = seqs[0].dtype
    X = [s.detach().transpose(0, 1).contiguous() for s in seqs]  # (T, B, I) each
    first = T if setup.reverse else 0
    St = []
    for s in states0:
        buf = s.new_empty(T + 1, *s.shape)  # (T+1, B, H)
        buf[first] = s.detach()
        St.append(buf)
    A = [X[0].new_empty(T, B, K) for (_, _, _, K) in cg.mm]  # (T, B, K) each
    Y = [X[0].new_empty(T, B, O) for (_, _, O, _) in cg.mm]  # (T, B, O) each
    P = [p.detach().to(dtype).contiguous() for p in params]
    for i, pi, lin, O, K in cg.hoisted:  # matmuls of an input itself: one GEMM over all T*B rows
        xi = X[i].view(T * B, K)  # (T*B, K)
        X.append(torch.mm(xi, P[pi].t() if lin else P[pi]).view(T, B, O))  # (T, B, O)
    bufs = {"X": X, "St": St, "A": A, "Y": Y, "P": P, "T": T, "B": B}
    if setup.hybrid:
        hybrid_forward(cg, T, B, setup.reverse, bufs, mf)
    else:
        cg.c("fwd_seq", dtype)(T, B, int(setup.reverse), _arr(X), _arr(St), _arr(P), _arr(A), _arr(Y), _p(mf))
    return bufs


def _outputs(setup: _Setup, bufs: dict[str, Any], mask: Tensor | None) -> list[Tensor]:
    outs = []
    for buf in bufs["St"]:
        seq = (buf[:-1] if setup.reverse else buf[1:]).transpose(0, 1)  # (B, T, H) view
        outs.append(seq * mask.unsqueeze(-1) if mask is not None else seq)
    finals = [(buf[0] if setup.reverse else buf[-1]).clone() for buf in bufs["St"]]  # (B, H)
    return outs + finals


class _GeneralScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, setup: _Setup, mask: Tensor | None, n_seqs: int, n_states: int,
                *tensors: Tensor) -> tuple[Tensor, ...]:
        seqs, states0, params = tensors[:n_seqs], tensors[n_seqs:n_seqs + n_states], tensors[n_seqs + n_states:]
        mf = None if mask is None else mask.t().float().contiguous()  # (T, B) 1/0
        bufs = _forward(setup, seqs, states0, params, mf)
        ctx.set_materialize_grads(False)
        ctx.setup, ctx.bufs, ctx.mask, ctx.mf, ctx.counts = setup, bufs, mask, mf, (n_seqs, n_states)
        ctx.inputs = tensors  # for a double backward only
        return tuple(_outputs(setup, bufs, mask))

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph=True: differentiate a step-wise recomputation
            return _recompute(ctx, grads)
        setup: _Setup = ctx.setup
        cg, b = setup.cg, ctx.bufs
        T, B, dtype = b["T"], b["B"], b["X"][0].dtype
        S = len(b["St"])
        d_seq, d_final = grads[:S], grads[S:]
        gys = [None if g is None else g.transpose(0, 1).contiguous() for g in d_seq]  # (T, B, H)
        d = [torch.zeros_like(s[0]) if g is None else g.contiguous().clone() for g, s in zip(d_final, b["St"])]
        DX = [torch.empty_like(x) for x in b["X"]]
        DY = [torch.empty_like(y) for y in b["Y"]]
        vec = cg.grads_vectors
        DP = [torch.zeros_like(p) if i in vec else None for i, p in enumerate(b["P"])]
        common = (_arr(b["X"]), _arr(b["St"]), _arr(b["P"]), _arr(b["Y"]))
        bptt = setup.bptt
        if setup.hybrid:
            d = hybrid_backward(ctx, gys, d, DX, DP, DY)
        elif bptt.is_default:
            cg.c("bwd_seq", dtype)(T, B, int(setup.reverse), *common, _arr(gys), _arr(d), _arr(DX), _arr(DP),
                                   _arr(DY), _p(ctx.mf))
        else:
            d = _driver(ctx, gys, d, DX, DP, DY, common)
        grads_p: list[Tensor | None] = list(DP)
        for m, (pi, lin, O, K) in enumerate(cg.mm):  # one GEMM per matmul over all T*B rows
            dy, a = DY[m].view(T * B, O), b["A"][m].view(T * B, K)  # (T*B, O), (T*B, K)
            dw = mm_tn(dy, a) if lin else mm_tn(a, dy)  # (O, K) or (K, O)
            grads_p[pi] = dw if grads_p[pi] is None else grads_p[pi] + dw
        n = ctx.counts[0]
        for j, (i, pi, lin, O, K) in enumerate(cg.hoisted):  # the hoisted matmuls' GEMMs
            dh, xi = DX[n + j].view(T * B, O), b["X"][i].view(T * B, K)  # (T*B, O), (T*B, K)
            DX[i].view(T * B, K).add_(torch.mm(dh, b["P"][pi]) if lin else torch.mm(dh, b["P"][pi].t()))
            dw = mm_tn(dh, xi) if lin else mm_tn(xi, dh)  # (O, K) or (K, O)
            grads_p[pi] = dw if grads_p[pi] is None else grads_p[pi] + dw
        DX = DX[:n]
        params = ctx.inputs[sum(ctx.counts):]
        grads_p = [None if g is None else g.view_as(p).to(p.dtype) for g, p in zip(grads_p, params)]
        dseqs = [dx.transpose(0, 1) for dx in DX]  # (B, T, I) each
        return (None, None, None, None, *dseqs, *d, *grads_p)


def _driver(ctx: Any, gys: list[Tensor | None], d: list[Tensor], DX: list[Tensor], DP: list[Tensor | None],
            DY: list[Tensor], common: tuple) -> list[Tensor]:
    """The backward one C call per step, with truncation, clipping and taps between the steps
    (in the structured loop's order: add the output gradient, tap, clip, step, cut)."""
    setup, b = ctx.setup, ctx.bufs
    T, B, dtype = b["T"], b["B"], b["X"][0].dtype
    bptt, mask = setup.bptt, ctx.mask
    m = None if mask is None else mask.t().unsqueeze(-1)  # (T, B, 1) time order
    order = list(range(T))
    proc = order[::-1] if setup.reverse else order  # processing step k -> time t
    cut = None
    if bptt.truncate:
        mp = None if m is None else torch.stack([m[t] for t in proc])  # (T, B, 1) processing order
        cut = _truncation_cuts(bptt.truncate, mp, T, B, d[0].device)
    fn = setup.cg.c("step_bwd", dtype)
    names = setup.cell.states
    for k in range(T - 1, -1, -1):
        t = proc[k]
        for s, g in enumerate(gys):
            if g is not None:
                d[s].add_(g[t] * m[t] if m is not None else g[t])
        if bptt.tap is not None:
            for s, name in enumerate(names):
                bptt.tap._record(f"{setup.scope}/{name}", t, d[s])
        if bptt.clip_value is not None or bptt.clip_norm is not None:
            d = [bptt.clip(x).contiguous() for x in d]
        out = [torch.empty_like(x) for x in d]
        fn(T, B, int(setup.reverse), k, *common, _arr(d), _arr(out), _arr(DX), _arr(DP), _arr(DY), _p(ctx.mf))
        if cut is not None and bool(cut[k].any()):
            keep = ~cut[k].unsqueeze(-1)
            out = [x.mul_(keep) for x in out]
        d = out
    return d


def _recompute(ctx: Any, grads: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
    """A differentiable backward: autograd of the step-wise engine's recomputation."""
    setup = ctx.setup
    n_seqs, n_states = ctx.counts
    tensors = ctx.inputs
    seqs, states0 = tensors[:n_seqs], tensors[n_seqs:n_seqs + n_states]
    cell = setup.cell
    res = scan_stepwise(cell, dict(zip(cell.sequences, seqs)), dict(zip(cell.states, states0)), {},
                        mask=ctx.mask, reverse=setup.reverse, bptt=setup.bptt, scope=setup.scope)
    outs = [res.outputs[s] for s in cell.states] + [res.final[s] for s in cell.states]
    pairs = [(o, g) for o, g in zip(outs, grads) if g is not None]
    wrt = [i for i, t in enumerate(tensors) if t.requires_grad]
    got = torch.autograd.grad([o for o, _ in pairs], [tensors[i] for i in wrt], [g for _, g in pairs],
                              create_graph=True, allow_unused=True) if pairs and wrt else []
    out: list[Tensor | None] = [None] * len(tensors)
    for i, g in zip(wrt, got):
        out[i] = g
    return (None, None, None, None, *out)


def scan_general(cell: Any, sequences: Mapping[str, Tensor], states: Mapping[str, Tensor], mask: Tensor | None,
                 reverse: bool, return_initial_states: bool, bptt: BPTT | None, scope: str,
                 hybrid: bool | None = None) -> Scan:
    """Run a general cell over time on its compiled C loop (see the module docstring), or with
    ``hybrid`` (default: B > MAX_BATCH) on the per-step GEMM + C segments loop
    (``rnnkit.engine.general_hybrid``). Shapes as in ``rnnkit.engine.scan``: sequences (B, T, F),
    states (B, H), mask (B, T) bool."""
    bptt = bptt or BPTT()
    seqs = [sequences[n] for n in cell.sequences]
    first = seqs[0]
    cg = compile_general(cell, tuple(int(s.shape[2]) for s in seqs), first.dtype, first.device)
    if cg is None or cg.c("fwd_seq", first.dtype) is None:
        raise RuntimeError(f"rnnkit: {type(cell).__name__} has no compiled general loop for this call; plan it "
                           "with rnnkit.engine.make_plan (its plan then runs the autograd loop)")
    init = [states[n] for n in cell.states]
    params = [p for _, p in cell.named_parameters()]
    if bptt.tap is not None:
        for name in cell.states:
            bptt.tap._start(f"{scope}/{name}", first.shape[1])
    hybrid = first.shape[0] > MAX_BATCH if hybrid is None else hybrid
    setup = _Setup(cell, cg, reverse, bptt, scope, hybrid)
    tensors = (*seqs, *init, *params)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        outs = list(_GeneralScan.apply(setup, mask, len(seqs), len(init), *tensors))
    else:
        with torch.no_grad():
            mf = None if mask is None else mask.t().float().contiguous()
            outs = _outputs(setup, _forward(setup, seqs, init, params, mf), mask)
    S = len(init)
    outputs: dict[str, Tensor] = {}
    for s, name in enumerate(cell.states):
        seq = outs[s]
        if return_initial_states:
            init_s = init[s].unsqueeze(1)  # (B, 1, H)
            seq = torch.cat([seq, init_s] if reverse else [init_s, seq], dim=1)  # (B, T+1, H)
        outputs[name] = seq
    return Scan(outputs=outputs, final={name: outs[S + s] for s, name in enumerate(cell.states)})
