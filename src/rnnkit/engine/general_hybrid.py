"""The hybrid loop of general cells: per step, GEMMs for the matmuls and C for the rest.

For B > ``rnnkit.engine.general.MAX_BATCH`` a per-row matvec loses to a GEMM, so each step runs
as the compiler split it (``rnnkit.engine.compiler.ghybrid``): C segment 0, the ``torch.mm`` of
every matmul whose input it stored (into the saved-output buffer Y_m, ``out=``), C segment 1,
..., and the last segment stores the states. The backward walks the steps in reverse the same
way (DA_j = DY_m W per matmul per step) and applies the BPTT options between the steps in the
structured loop's order (add the output gradient, tap, clip, step, cut). The buffers, the
hoisted input GEMMs and the weight gradients (ONE GEMM per matmul over all T*B rows) are
``rnnkit.engine.general``'s, shared with the whole-sequence C loop.
"""
from __future__ import annotations

import ctypes
from typing import Any, Sequence

import torch
from torch import Tensor

from rnnkit.engine.structured import _truncation_cuts

__all__ = ["hybrid_backward", "hybrid_forward"]


def _arr(ts: Sequence[Tensor | None]) -> ctypes.Array:
    return (ctypes.c_void_p * max(len(ts), 1))(*[None if t is None else t.data_ptr() for t in ts])


def _weights(cg: Any, P: list[Tensor], backward: bool) -> list[Tensor]:
    """Per matmul, the right operand of its forward GEMM (x W^T or x W), or of its backward
    one (d(x) = d(y) W or d(y) W^T)."""
    out = []
    for pi, lin, _, _ in cg.mm:
        w = P[pi]
        out.append(w if lin == backward else w.t())
    return out


def hybrid_forward(cg: Any, T: int, B: int, reverse: bool, bufs: dict[str, Any], mf: Tensor | None) -> None:
    """Fill the state buffers and the saved A_m / Y_m step by step (see the module docstring)."""
    dtype = bufs["X"][0].dtype
    hp = cg.hybrid
    fns = [cg.c(f"hf{k}", dtype) for k in range(len(hp.fwd))]
    W = _weights(cg, bufs["P"], backward=False)
    A = [a.unbind(0) for a in bufs["A"]]  # per matmul, T views (B, K)
    Y = [y.unbind(0) for y in bufs["Y"]]  # per matmul, T views (B, O)
    gemms = [[(A[m], W[m], Y[m]) for m in at] for at in hp.fwd_mm]
    wk = bufs["X"][0].new_empty(B * cg.hybrid_scratch(dtype))
    args = (_arr(bufs["X"]), _arr(bufs["St"]), _arr(bufs["P"]), _arr(bufs["A"]), _arr(bufs["Y"]),
            None if mf is None else mf.data_ptr(), wk.data_ptr())
    flags = int(reverse)
    last = len(fns) - 1
    for k in range(T):
        t = T - 1 - k if reverse else k
        for level, fn in enumerate(fns):
            fn(T, B, flags, k, *args)
            if level < last:
                for a, w, y in gemms[level]:
                    torch.mm(a[t], w, out=y[t])


def hybrid_backward(ctx: Any, gys: list[Tensor | None], d: list[Tensor], DX: list[Tensor], DP: list[Tensor | None],
                    DY: list[Tensor]) -> list[Tensor]:
    """The backward over all steps (DX, DP and DY filled); returns d(initial states)."""
    setup, b = ctx.setup, ctx.bufs
    cg = setup.cg
    T, B, dtype = b["T"], b["B"], b["X"][0].dtype
    bptt, mask = setup.bptt, ctx.mask
    hp = cg.hybrid
    fns = [cg.c(f"hb{k}", dtype) for k in range(len(hp.bwd))]
    W = _weights(cg, b["P"], backward=True)
    DA = [b["X"][0].new_empty(B, cg.mm[w][3]) for _, w in hp.da]  # (B, K) per mmt node
    dys = [y.unbind(0) for y in DY]  # per matmul, T views (B, O)
    gemms = [[(dys[hp.da[j][0]], W[hp.da[j][1]], DA[j]) for j in at] for at in hp.bwd_mm]
    m = None if mask is None else mask.t().unsqueeze(-1).to(dtype)  # (T, B, 1) time order
    gys = [None if g is None else (g * m if m is not None else g) for g in gys]  # padding adds nothing
    proc = list(range(T))[::-1] if setup.reverse else list(range(T))  # processing step k -> time t
    cut = None
    if bptt.truncate:
        mp = None if mask is None else mask.t().unsqueeze(-1)[proc]  # (T, B, 1) processing order
        cut = _truncation_cuts(bptt.truncate, mp, T, B, d[0].device)
    head = (_arr(b["X"]), _arr(b["St"]), _arr(b["P"]), _arr(b["Y"]))
    wk = b["X"][0].new_empty(B * cg.hybrid_scratch(dtype))
    tail = (_arr(DX), _arr(DP), _arr(DY), _arr(DA), None if ctx.mf is None else ctx.mf.data_ptr(), wk.data_ptr())
    flags, last = int(setup.reverse), len(fns) - 1
    taps, clip = bptt.tap is not None, bptt.clip_value is not None or bptt.clip_norm is not None
    names = setup.cell.states
    out = [torch.empty_like(x) for x in d]
    for k in range(T - 1, -1, -1):
        t = proc[k]
        for s, g in enumerate(gys):
            if g is not None:
                d[s].add_(g[t])
        if taps:
            for s, name in enumerate(names):
                bptt.tap._record(f"{setup.scope}/{name}", t, d[s])
        if clip:
            d = [bptt.clip(x).contiguous() for x in d]
        din, dout = _arr(d), _arr(out)
        for level, fn in enumerate(fns):
            fn(T, B, flags, k, *head, din, dout, *tail)
            if level < last:
                for dy, w, da in gemms[level]:
                    torch.mm(dy[t], w, out=da)
        if cut is not None and bool(cut[k].any()):
            keep = ~cut[k].unsqueeze(-1)
            out = [x.mul_(keep) for x in out]
        d, out = out, d  # ping-pong: the old d(states after) is the next step's output buffer
    return d
