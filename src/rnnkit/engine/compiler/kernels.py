"""Kernels of the structured loop (``rnnkit.engine.structured``) that run a compiled cell.

* :class:`SeqKernel`: the whole recurrence in one C call each way (small float32/float64 CPU
  batches, no per-step BPTT options; masks are handled in C).
* :class:`StepKernel`: per step, the recurrent matmul on oneDNN (``engine.gemm``) and one C call
  for the pointwise math; the Python driver keeps masks, taps, clipping and truncation.
* :class:`EagerKernel`: per step, the matmul and the eager-printed torch ops (any device/dtype).

All three share the buffer scheme of ``engine.kernels.Kernel``. A *summed* cell (it only adds x
and hw) folds the recurrent bias into X once, accumulates h W^T into X and keeps only that sum;
any other cell keeps hw per step in HW (T, B, G). The backward recomputes the forward values it
needs from X, HW and the states, and writes d(xp) over X (and d(hw) over HW) when the graph is
not retained.
"""
from __future__ import annotations

import ctypes
from typing import Sequence

import torch
from torch import Tensor

from rnnkit.engine.compiler import CompiledCell
from rnnkit.engine.gemm import mm_nt
from rnnkit.engine.kernels import Kernel
from rnnkit.engine.native import MAX_BATCH

__all__ = ["EagerKernel", "SeqKernel", "StepKernel", "make_compiled_kernel"]


def _p(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _arr(ts: Sequence[Tensor | None]) -> ctypes.Array:
    return (ctypes.c_void_p * max(len(ts), 1))(*[_p(t) for t in ts])


class CompiledKernel(Kernel):
    def __init__(self, cc: CompiledCell, cell: object, X: Tensor, W: Tensor, b: Tensor | None,
                 states: list[Tensor], reverse: bool, params: Sequence[Tensor]) -> None:
        W = W.detach()
        b = None if b is None else b.detach()
        if cc.summed and b is not None:
            X.add_(b)  # fold the recurrent bias into the inputs once
        super().__init__(cell, X, W, b, states, reverse)  # type: ignore[arg-type]
        self.cc = cc
        self.mm_bias = None if cc.summed else b
        self.T, self.B, G = X.shape
        self.H = G // cc.gates
        self.HW = None if cc.summed else torch.empty_like(X)  # (T, B, G), X's memory layout
        # bit 0: backwards in time; bit 1: X (and HW, D, DHW, made like it) is batch-major in memory
        self.flags = int(reverse) | (0 if X.is_contiguous() else 2)
        self.P = [p.detach().to(X.dtype).contiguous() for p in params]
        self.dP: list[Tensor] = []
        self.zargs: tuple = ()  # the regularised loops' extra arguments (``zone``)

    zoned = False  # the regularised C loops run (``zone``): zoneout mixes and padding inside the step

    def zone(self, weights: Sequence[Tensor], M: Tensor | None) -> bool:
        """Run the regularised C loops (``compiler/czone.py``): ``weights`` per state, the weight of
        the new value, broadcastable to (T, B, H) in time order; ``M`` (T, B) float 1/0 padding or
        None. Returns False (nothing changed) when this dtype has no C."""
        name = "fwd_seq" if getattr(self, "native", False) else "step_fwd"
        if self.cc.cz(name, self.X.dtype) is None:
            return False
        T, B, H = self.T, self.B, self.H
        Z = []
        for w in weights:
            w = w.to(self.X.dtype).expand(T, B, H)  # a view: an eval-mode (H,) row keeps strides 0, 0
            Z.append(w if w.stride(2) == 1 else w.contiguous())
        self.Z, self.Mz = Z, M
        self.zargs = (_p(M), _arr(Z), (ctypes.c_long * (2 * len(Z)))(*[n for w in Z for n in w.stride()[:2]]))
        self.zoned = True
        return True

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        if not self.cc.summed:
            self.dHW = self.HW if reuse else torch.empty_like(self.HW)  # type: ignore[arg-type]
        self.dP = [torch.zeros_like(p) for p in self.P]

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        used = self.cc.grads_params
        return dW, db, [g if i in used else None for i, g in enumerate(self.dP)]


class SeqKernel(CompiledKernel):
    native = True

    def run_forward(self, m: Tensor | None) -> None:
        self.Wc = self.W.contiguous()
        self.St = _arr(self.states)
        self.Pa = _arr(self.P)
        args = (self.T, self.B, self.H, self.flags, _p(self.X), _p(self.HW), _p(self.Wc), _p(self.mm_bias), self.St,
                self.Pa, _p(m))
        if self.zoned or self.hmask is not None:  # the regularised loop (weights 1: recurrent dropout alone)
            if not self.zoned and not self.zone([self.X.new_ones(self.H)] * len(self.states), m):
                raise RuntimeError("rnnkit: the regularised C loop of this cell failed to build; run it on "
                                   "the per-step loop (a plan with loop='hybrid')")
            self.HM = None if self.hmask is None else self.hmask.to(self.X.dtype).contiguous()
            self.cc.cz("fwd_seq", self.X.dtype)(*args, *self.zargs[1:], _p(self.HM))
        else:
            self.cc.c("fwd_seq", self.X.dtype)(*args)

    def run_backward(self, gys: list[Tensor | None], d: list[Tensor], m: Tensor | None,
                     reuse: bool = False) -> list[Tensor]:
        self.begin_backward(reuse)
        dS = [x.contiguous() for x in d]
        args = (self.T, self.B, self.H, self.flags, _p(self.X), _p(self.HW), _p(self.Wc), self.St, self.Pa,
                _arr(gys), _arr(dS), _p(self.D), _p(None if self.cc.summed else self.dHW), _arr(self.dP), _p(m))
        if self.zoned:
            self.cc.cz("bwd_seq", self.X.dtype)(*args, *self.zargs[1:], _p(self.HM))
        else:
            self.cc.c("bwd_seq", self.X.dtype)(*args)
        return dS


class _StepMatmul:
    """h W^T (+ b) and d(hw) W per step, on oneDNN; ``dtype=torch.bfloat16`` rounds the
    operands to bf16 and accumulates in float32, as oneDNN's own bf16 LSTM does."""

    def __init__(self, W: Tensor, b: Tensor | None, dtype: torch.dtype | None) -> None:
        self.dtype = dtype
        self.W = (W if dtype is None else W.to(dtype)).contiguous()
        self.Wt = self.W.t()
        self.b = b if b is None or dtype is None else b.to(dtype)

    def forward(self, h: Tensor) -> Tensor:
        if self.dtype is None:
            return mm_nt(h, self.W, self.b)
        return mm_nt(h.to(self.dtype), self.W, self.b).float()

    def backward(self, d: Tensor) -> Tensor:
        if self.dtype is None:
            return mm_nt(d, self.Wt)
        return mm_nt(d.to(self.dtype), self.Wt).float()


class StepKernel(CompiledKernel):
    def __init__(self, *args: object, mm_dtype: torch.dtype | None = None) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.mm = _StepMatmul(self.W, self.mm_bias, mm_dtype)
        self.h = self.bounds(self.states[self.cc.rec])
        self.St, self.Pa = _arr(self.states), _arr(self.P)
        self.f = self.cc.c("step_fwd", self.X.dtype)
        self.g = self.cc.c("step_bwd", self.X.dtype)
        bwd = self.cc.bwd
        # states whose direct gradient (not through the matmul) is the constant 0: returned as
        # None, so the driver adds nothing (the LSTM's h: d(h_{t-1}) comes only through W)
        self.direct = [bwd.value(bwd.outputs[("ds", i)]) != 0.0 for i in range(len(self.states))]

    def zone(self, weights: Sequence[Tensor], M: Tensor | None) -> bool:
        if not super().zone(weights, M):
            return False
        self.f = self.cc.cz("step_fwd", self.X.dtype)
        self.g = self.cc.cz("step_bwd", self.X.dtype)
        self.direct = [True] * len(self.states)  # the kept share reaches every state before the step
        return True

    def fwd(self, k: int) -> None:
        hw = self.mm.forward(self.mm_in(self.h[k]))  # (B, G)
        self.f(self.T, self.B, self.H, self.flags, k, _p(self.X), _p(hw), _p(self.HW), self.St, self.Pa,
               *self.zargs)

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        self.dPa = _arr(self.dP)
        self.dHWp = _p(None if self.cc.summed else self.dHW)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        d = [x if x.is_contiguous() else x.contiguous() for x in d]
        self.g(self.T, self.B, self.H, self.flags, k, _p(self.X), _p(self.HW), self.St, self.Pa, _arr(d),
               _p(self.D), self.dHWp, self.dPa, *self.zargs)
        return [x if keep else None for x, keep in zip(d, self.direct)]

    def back_mm(self, k: int, dHW: Tensor, direct: Tensor | None) -> Tensor:
        p = self.mm.backward(dHW)  # d(hw) W, (B, H)
        return p if direct is None else p.add_(direct)


class EagerKernel(CompiledKernel):
    def zone(self, weights: Sequence[Tensor], M: Tensor | None) -> bool:
        return False  # torch ops per step: the driver mixes the states (one lerp each)

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.x = self.steps(self.X)
        self.hw = None if self.HW is None else self.steps(self.HW)
        self.rows = [self.bounds(s) for s in self.states]
        self.h = self.rows[self.cc.rec]

    def fwd(self, k: int) -> None:
        x, h = self.x[k], self.mm_in(self.h[k])
        if self.hw is None:
            x.addmm_(h, self.Wt)
            hw = None
        else:
            hw = self.hw[k]
            if self.mm_bias is not None:
                torch.addmm(self.mm_bias, h, self.Wt, out=hw)
            else:
                torch.mm(h, self.Wt, out=hw)
        self.cc.eager_fwd(self.H, x, hw, [r[k] for r in self.rows], [r[k + 1] for r in self.rows], self.P)

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        self.dl = self.steps(self.D)
        self.dhwl = None if self.cc.summed else self.steps(self.dHW)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        self.cc.eager_bwd(self.H, self.x[k], None if self.hw is None else self.hw[k], [r[k] for r in self.rows], d,
                          self.dl[k], None if self.dhwl is None else self.dhwl[k], self.dP, self.P)
        return d  # type: ignore[return-value]


def make_compiled_kernel(cc: CompiledCell, cell: object, X: Tensor, W: Tensor, b: Tensor | None,
                         states: list[Tensor], reverse: bool, params: Sequence[Tensor], whole: bool,
                         mm_dtype: torch.dtype | None = None) -> Kernel:
    """The fastest kernel for this call: whole-sequence C (``whole``: plain BPTT, small batch),
    per-step C between oneDNN matmuls, or eager torch ops."""
    args = (cc, cell, X, W, b, states, reverse, params)
    if cc.c("fwd_seq", X.dtype) is not None and X.device.type == "cpu":
        if whole and X.shape[1] <= MAX_BATCH:  # a bf16 call (mm_dtype) too: its C loop runs in float32
            return SeqKernel(*args)
        return StepKernel(*args, mm_dtype=mm_dtype)
    return EagerKernel(*args)
