"""The generic engine's fast loop for ``Structured`` cells (recurrent matmul, then pointwise).

How it works (the FlashRNN / haste organisation, in eager PyTorch):

* The layer projects the inputs of all T steps in one GEMM before the engine runs; here they
  are copied once into a time-major buffer ``X`` (T, B, G) in processing order (reversed when
  running backwards in time), which the kernel then reuses in place.
* Forward runs inside one ``torch.autograd.Function`` with no autograd graph: per step, one
  ``addmm`` for the recurrent matmul and a few in-place pointwise ops of the cell's kernel
  (``rnnkit.engine.kernels``) writing into preallocated state buffers (T+1, B, H). Masks carry
  the state over at padded steps with one ``where`` per state.
* Backward walks the steps in reverse: the kernel turns d(state) into d(pre-activations) in
  place (stored activations, no recomputation for built-in cells; custom cells re-run their
  pointwise under autograd), the driver adds ``d(hw) @ W`` to d(h_{t-1}), and the BPTT options
  act on d(state) at every step: gradient taps, clipping, truncation.
* The recurrent weight gradient is ONE GEMM over all T*B rows at the end
  (``dHW^T @ H_prev``), instead of T small ones; the input projection's gradient flows back
  through autograd from ``d(xp)``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.base import Scan
from rnnkit.cells.structured import Structured
from rnnkit.engine.bptt import BPTT
from rnnkit.engine.kernels import Kernel, extra_params, make_kernel
from rnnkit.engine.gemm import mm_nt
from rnnkit.engine.native import make_native_kernel

__all__ = ["can_run_structured", "scan_structured"]


def can_run_structured(cell: Any, contexts: dict[str, Tensor]) -> bool:
    """True when the fast loop computes exactly what ``cell.step`` does."""
    return (
        isinstance(cell, Structured)
        and not contexts
        and tuple(cell.sequences) == ("inputs",)
        and cell.output_names == tuple(cell.states)
    )


class _Setup:
    """The per-call constants the forward hands to the backward."""

    def __init__(self, cell: Structured, reverse: bool, bptt: BPTT, scope: str) -> None:
        self.cell, self.reverse, self.bptt, self.scope = cell, reverse, bptt, scope
        self.kernel: Kernel | None = None


def _to_processing(seq: Tensor, reverse: bool) -> Tensor:
    """(B, T, *) -> a fresh contiguous (T, B, *) buffer in processing order."""
    tm = seq.transpose(0, 1)  # (T, B, *)
    return tm.flip(0).contiguous() if reverse else tm.clone(memory_format=torch.contiguous_format)


def _from_processing(buf: Tensor, reverse: bool) -> Tensor:
    """(T, B, *) in processing order -> (B, T, *) in time order."""
    if reverse:
        buf = buf.flip(0)
    return buf.transpose(0, 1)


def _run_forward(setup: _Setup, xp: Tensor, W: Tensor, b: Tensor | None, mask: Tensor | None,
                 states0: tuple[Tensor, ...]) -> tuple[Kernel, list[Tensor], Tensor | None]:
    T, B = xp.shape[1], xp.shape[0]
    X = _to_processing(xp, setup.reverse)  # (T, B, G), owned by the kernel
    bufs = []
    for s in states0:
        buf = s.new_empty(T + 1, *s.shape)  # (T+1, B, H)
        buf[0] = s
        bufs.append(buf)
    kernel = make_native_kernel(setup.cell, X, W, b, bufs, setup.bptt.is_default) or make_kernel(
        setup.cell, X, W, b, bufs)
    m = None
    if getattr(kernel, "native", False):
        if mask is not None:
            m = _to_processing(mask, setup.reverse).unsqueeze(-1)  # (T, B, 1) bool
        kernel.run_forward(None if m is None else m.squeeze(-1).float().contiguous())  # type: ignore[attr-defined]
    elif mask is not None:
        m = _to_processing(mask, setup.reverse).unsqueeze(-1)  # (T, B, 1) bool
        rows = [buf.unbind(0) for buf in bufs]
        ml = m.unbind(0)
        for k in range(T):
            kernel.fwd(k)
            for r in rows:  # padded step: the state carries over
                torch.where(ml[k], r[k + 1], r[k], out=r[k + 1])
    else:
        fwd = kernel.fwd
        for k in range(T):
            fwd(k)
    return kernel, bufs, m


class _StructuredScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, setup: _Setup, xp: Tensor, W: Tensor, b: Tensor | None, mask: Tensor | None,
                n_states: int, *rest: Tensor) -> tuple[Tensor, ...]:
        states0, params = rest[:n_states], rest[n_states:]
        kernel, bufs, m = _run_forward(setup, xp, W, b, mask, states0)
        setup.kernel = kernel
        ctx.setup, ctx.m, ctx.n_params, ctx.has_b = setup, m, len(params), b is not None
        ctx.save_for_backward(xp)
        outs = []
        for buf in bufs:
            seq = _from_processing(buf[1:], setup.reverse)  # (B, T, H)
            outs.append(seq * mask.unsqueeze(-1) if mask is not None else seq.contiguous())
        finals = [buf[-1].clone() for buf in bufs]  # (B, H)
        return (*outs, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        setup: _Setup = ctx.setup
        kernel = setup.kernel
        (xp,) = ctx.saved_tensors
        S = len(kernel.states)
        d_seq, d_final = grads[:S], grads[S:]
        T, B = xp.shape[1], xp.shape[0]
        reverse, bptt, m = setup.reverse, setup.bptt, ctx.m
        gys = [None if g is None else _to_processing(g, reverse) for g in d_seq]  # (T, B, H)
        if m is not None:
            gys = [None if g is None else g.mul_(m) for g in gys]
        d = [torch.zeros_like(s[0]) if g is None else g.clone() for g, s in zip(d_final, kernel.states)]  # (B, H)
        cut = _truncation_cuts(bptt.truncate, m, T, B, xp.device) if bptt.truncate else None
        taps = bptt.tap is not None
        clip = bptt.clip_value is not None or bptt.clip_norm is not None
        order = (lambda k: T - 1 - k) if reverse else (lambda k: k)
        rec = setup.cell.states.index(setup.cell.recurrent_state)
        if getattr(kernel, "native", False):
            mf = None if m is None else m.squeeze(-1).float().contiguous()
            d = kernel.run_backward(gys, d, mf)  # type: ignore[attr-defined]
            return _finish(ctx, kernel, d, T, B, rec, reverse)
        kernel.begin_backward()
        W = kernel.W
        dHW = kernel.dHW.unbind(0)
        ml = m.unbind(0) if m is not None else None
        gyl = [None if g is None else g.unbind(0) for g in gys]
        for k in range(T - 1, -1, -1):
            for s in range(S):
                if gyl[s] is not None:
                    d[s].add_(gyl[s][k])
            if taps:
                for s, name in enumerate(setup.cell.states):
                    bptt.tap._record(f"{setup.scope}/{name}", order(k), d[s])
            if clip:
                d = [bptt.clip(x) for x in d]
            if ml is not None:
                skip = [x * ~ml[k] for x in d]  # padded rows: the gradient passes to step k-1
                d = [x.mul_(ml[k]) for x in d]
            direct = kernel.bwd(k, d)
            prev = []
            for s in range(S):
                if s == rec:
                    if direct[s] is None:
                        p = torch.mm(dHW[k], W)
                    else:
                        p = direct[s].addmm_(dHW[k], W)
                else:
                    p = direct[s] if direct[s] is not None else torch.zeros_like(kernel.states[s][0])
                prev.append(p)
            if ml is not None:
                prev = [p.add_(sk) for p, sk in zip(prev, skip)]
            if cut is not None and bool(cut[k].any()):
                keep = ~cut[k].unsqueeze(-1)
                prev = [p.mul_(keep) for p in prev]
            d = prev
        return _finish(ctx, kernel, d, T, B, rec, reverse)


def _finish(ctx: Any, kernel: Kernel, d: list[Tensor], T: int, B: int, rec: int, reverse: bool) -> tuple[Tensor | None, ...]:
    """The gradients that need the whole sequence: one GEMM for W over all T*B rows."""
    W = kernel.W
    G = W.shape[0]
    dHW_all = kernel.dHW.view(T * B, G)  # (T*B, G)
    h_prev = kernel.states[rec][:T].reshape(T * B, -1)  # (T*B, H)
    dW = mm_nt(dHW_all.t(), h_prev.t())  # (G, H), one GEMM over all T*B rows
    db = dHW_all.sum(0) if ctx.has_b else None
    dW, db, extra = kernel.finish_grads(dW, db)
    dxp = _from_processing(kernel.dx_layout(), reverse)  # (B, T, G)
    extra = extra + [None] * (ctx.n_params - len(extra))
    return (None, dxp, dW, db, None, None, *d, *extra)

def _truncation_cuts(k: int, m: Tensor | None, T: int, B: int, device: torch.device) -> Tensor:
    """(T, B) bool in processing order: rows whose state is detached before step k.

    A row is cut before its real step number j (counting from 0) when j > 0 and j % k == 0,
    exactly as the step-wise engine does.
    """
    if m is None:
        steps = torch.arange(T, device=device).unsqueeze(1).expand(T, B)  # (T, B)
        real = torch.ones(T, B, dtype=torch.bool, device=device)
    else:
        real = m.squeeze(-1)
        steps = real.long().cumsum(0) - real.long()  # real steps done before step k
    return real & (steps > 0) & (steps % k == 0)


def scan_structured(
    cell: Structured,
    xp: Tensor,
    states0: dict[str, Tensor],
    mask: Tensor | None,
    reverse: bool,
    return_initial_states: bool,
    bptt: BPTT,
    scope: str,
) -> Scan:
    """Run a structured cell over xp (B, T, G) with the fast loop. See the module docstring."""
    init = tuple(states0[name] for name in cell.states)
    params = tuple(p for _, p in extra_params(cell))
    if bptt.tap is not None:
        for name in cell.states:
            bptt.tap._start(f"{scope}/{name}", xp.shape[1])
    setup = _Setup(cell, reverse, bptt, scope)
    W, b = cell.weight, cell.bias
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (xp, W, b, *init, *params))
    if needs_grad:
        outs = _StructuredScan.apply(setup, xp, W, b, mask, len(init), *init, *params)
    else:
        with torch.no_grad():
            _, bufs, _ = _run_forward(setup, xp, W.detach(), None if b is None else b.detach(), mask, init)
        outs = []
        for buf in bufs:
            seq = _from_processing(buf[1:], reverse)
            outs.append(seq * mask.unsqueeze(-1) if mask is not None else seq)
        outs += [buf[-1] for buf in bufs]
    S = len(init)
    outputs: dict[str, Tensor] = {}
    for s, name in enumerate(cell.states):
        seq = outs[s]
        if return_initial_states:
            first = init[s].unsqueeze(1)  # (B, 1, H)
            seq = torch.cat([seq, first] if reverse else [first, seq], dim=1)  # (B, T+1, H)
        outputs[name] = seq
    return Scan(outputs=outputs, final={name: outs[S + s] for s, name in enumerate(cell.states)})

