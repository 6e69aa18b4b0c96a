"""Pointwise forward/backward kernels for the structured loop (``rnnkit.engine.structured``).

A kernel owns the per-step math of one cell family between the recurrent matmuls. Buffers are
time-major and in *time* order; a kernel walks them in *processing* order k through lists of
views made once per call (reversed lists when the scan runs backwards in time), so reversing
costs no copy:

* ``X`` (T, B, G): the projected inputs on entry; the forward pass overwrites each step's row
  with what the backward needs (the activations).
* ``states[s]`` (T+1, B, H): the states at the T+1 boundaries. Running forwards, the initial
  state is row 0 and the state after time t is row t+1; running backwards, the initial state is
  row T and the state after time t is row t. ``before[k]``/``after[k]`` name them per step.
* ``D`` (T, B, G), made by ``begin_backward``: d(xp) per step; ``dHW``: d(hw), the gradient of
  the recurrent matmul's output, which is ``D`` itself when the cell adds ``hw`` to ``xp``
  unchanged (LSTM, Elman). ``D`` is ``X`` itself when autograd will not run the backward again
  (no ``retain_graph``); with ``retain_graph=True`` (and gradcheck) it is a new buffer, so the
  backward can run twice. The states are never overwritten.

``fwd(k)`` computes step k (the recurrent matmul included); ``bwd(k, d)`` takes the gradients of
the states after step k (already masked) and returns the part of d(states before step k) that
does not go through the matmul (None for zero; the driver adds ``dHW[k] @ W``). The built-in
kernels use in-place ops on preallocated views, so a step costs a handful of ATen calls and no
autograd graph. ``AutogradKernel`` serves any other ``Structured`` cell by re-running its
``pointwise`` under autograd, one step at a time, in the backward pass.

tanh costs 6-7x a sigmoid on large tensors with this CPU build (MKL VML), so for fp32/bf16 and
B*H >= 1024 the LSTM kernel computes tanh(z) as 2*sigmoid(2z) - 1, with the 2 folded into the
g rows of W and of the inputs (absolute error ~1e-7, far inside the fp32 parity tolerance).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rnnkit.engine.kinds import builtin_step
from rnnkit.steps import ElmanStep, GRUStep, LSTMStep, StructuredStep

__all__ = ["AutogradKernel", "ElmanKernel", "GRUKernel", "Kernel", "LSTMKernel", "extra_params", "make_kernel"]

SIGMOID_TANH_MIN = 1024  # B*H from which tanh goes through a sigmoid (fp32/bf16 only)


class Kernel:
    """Base: holds the buffers and the processing-order views; subclasses do the math."""

    hmask: Tensor | None = None  # recurrent dropout (B, H), set by the driver: the matmul reads h * hmask
    reads_after = False  # bwd(k) reads the states after step k (zoneout then keeps the unmixed ones)

    def __init__(self, cell: StructuredStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool) -> None:
        self.cell, self.X, self.W, self.b, self.states, self.reverse = cell, X, W, b, states, reverse
        self.Wt = W.t()  # (H, G), what forward multiplies by
        self.D: Tensor = X
        self.dHW: Tensor = X

    # ---------------------------------------------------------------- views in processing order
    def steps(self, buf: Tensor) -> list[Tensor]:
        """Rows of a (T, ...) time-ordered buffer, listed in processing order."""
        rows = list(buf.unbind(0))
        return rows[::-1] if self.reverse else rows

    def bounds(self, buf: Tensor) -> list[Tensor]:
        """Rows of a (T+1, ...) state buffer: entry k is the state before step k, k+1 after it."""
        rows = list(buf.unbind(0))
        return rows[::-1] if self.reverse else rows

    def last(self, buf: Tensor) -> Tensor:
        """The final state in a (T+1, ...) state buffer (``bounds(buf)[-1]`` without T+1 views)."""
        return buf[0] if self.reverse else buf[-1]

    def previous(self, s: int) -> Tensor:
        """(T, B, H) time-ordered view of the state s each step started from."""
        buf = self.states[s]
        return buf[1:] if self.reverse else buf[:-1]

    def following(self, s: int) -> Tensor:
        """(T, B, H) time-ordered view of the state s after each step (the output sequence)."""
        buf = self.states[s]
        return buf[:-1] if self.reverse else buf[1:]

    def mm_in(self, h: Tensor) -> Tensor:
        """What the recurrent matmul reads for the state h: h, or h * hmask (recurrent dropout)."""
        return h if self.hmask is None else h * self.hmask

    # ---------------------------------------------------------------- the math
    def fwd(self, k: int) -> None:
        raise NotImplementedError  # every concrete kernel overrides it

    def begin_backward(self, reuse: bool = False) -> None:
        """Allocate the gradient buffers (called once per backward pass).

        ``reuse=True`` (autograd will not run this backward again: no ``retain_graph``) writes
        d(xp) over ``X`` itself: step k's activations are last read by step k's backward, which
        is where its gradient row is written, so the buffer is recycled in place and the peak
        memory of forward+backward is that of the forward alone. Every kernel's ``bwd`` reads a
        row's activations before it overwrites them.
        """
        self.reuse = reuse
        self.D = self.X if reuse else torch.empty_like(self.X)  # (T, B, G)
        self.dHW = self.D

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        """d: gradients of the states after step k (the kernel may modify them in place).
        Returns the direct-path gradients of the states before step k (None for zero)."""
        raise NotImplementedError  # every concrete kernel overrides it

    def back_mm(self, k: int, dHW: Tensor, direct: Tensor | None) -> Tensor:
        """d(state before step k) through the recurrent matmul, plus the direct part if any."""
        return torch.mm(dHW, self.W) if direct is None else direct.addmm_(dHW, self.W)

    def dx_layout(self) -> Tensor:
        """d(xp) in the cell's column order, time-ordered. (T, B, G)"""
        return self.D

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        """Map gradients of the kernel's layout back to the cell's (W, b, extra parameters)."""
        return dW, db, []


class ElmanKernel(Kernel):
    """h' = act(xp + h W^T + b). Nothing is stored beyond the states."""

    def __init__(self, cell: ElmanStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool) -> None:
        if b is not None:
            X.add_(b)  # fold the recurrent bias into the inputs once
        super().__init__(cell, X, W, b, states, reverse)
        self.act = cell.activation
        self.x = self.steps(X)  # T x (B, H)
        self.h = self.bounds(states[0])  # (T+1) x (B, H)

    def fwd(self, k: int) -> None:
        out = self.h[k + 1]
        torch.addmm(self.x[k], self.mm_in(self.h[k]), self.Wt, out=out)
        if self.act == "tanh":
            out.tanh_()
        elif self.act == "relu":
            out.relu_()

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        self.dl = self.steps(self.D)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        dpre, h = self.dl[k], self.h[k + 1]
        if self.act == "tanh":
            torch.mul(h, h, out=dpre).neg_().add_(1.0).mul_(d[0])  # (1 - h^2) dh
        elif self.act == "relu":
            torch.mul(d[0], h > 0, out=dpre)
        else:
            dpre.copy_(d[0])
        return [None]


class LSTMKernel(Kernel):
    """LSTM, gate rows reordered to (i, f, o, g) so one sigmoid covers i, f and o."""

    def __init__(self, cell: LSTMStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool) -> None:
        T, B, G = X.shape
        H = G // 4
        idx = torch.arange(H, device=X.device)
        self.perm = torch.cat([idx, idx + H, idx + 3 * H, idx + 2 * H])  # (i, f, o, g) from (i, f, g, o)
        self.peep = cell.peepholes
        self.trick = X.dtype in (torch.float32, torch.bfloat16) and B * H >= SIGMOID_TANH_MIN and not self.peep
        X.copy_(X.index_select(2, self.perm))
        if b is not None:
            X.add_(b.index_select(0, self.perm))
        super().__init__(cell, X, W.index_select(0, self.perm), b, states, reverse)  # (4H, H) in the layout
        if self.trick:  # forward uses 2x the g rows; backward the true ones (module docstring)
            scaled = self.W.clone()
            scaled[3 * H:].mul_(2.0)
            self.Wt = scaled.t()
            X[:, :, 3 * H:].mul_(2.0)
        self.H = H
        self.tc = X.new_empty(T, B, H)  # tanh(c_t), kept for backward
        self.g = self.steps(X)
        self.sig = self.steps(X[:, :, : 3 * H])
        self.i = self.steps(X[:, :, :H])
        self.f = self.steps(X[:, :, H: 2 * H])
        self.o = self.steps(X[:, :, 2 * H: 3 * H])
        self.gg = self.steps(X[:, :, 3 * H:])
        self.tcl = self.steps(self.tc)
        self.h = self.bounds(states[0])
        self.c = self.bounds(states[1])
        self.tmp = X.new_empty(B, H)
        self.s3 = X.new_empty(B, 3 * H)
        # The peephole tensors of this call (not read from the cell again: under
        # torch.func.functional_call the module's attributes change back after the forward).
        self.pi, self.pf, self.po = (cell.peep_i, cell.peep_f, cell.peep_o) if self.peep else (None, None, None)

    def _tanh(self, src: Tensor, out: Tensor) -> None:
        if self.trick:
            torch.mul(src, 2.0, out=out).sigmoid_().mul_(2.0).sub_(1.0)
        else:
            torch.tanh(src, out=out)

    def fwd(self, k: int) -> None:
        g, c_prev, c = self.g[k], self.c[k], self.c[k + 1]
        g.addmm_(self.mm_in(self.h[k]), self.Wt)  # pre-activations (B, 4H)
        if self.peep:
            self.i[k].addcmul_(self.pi, c_prev).sigmoid_()
            self.f[k].addcmul_(self.pf, c_prev).sigmoid_()
            self.gg[k].tanh_()
        elif self.trick:
            g.sigmoid_()
            self.gg[k].mul_(2.0).sub_(1.0)
        else:
            self.sig[k].sigmoid_()
            self.gg[k].tanh_()
        torch.mul(self.f[k], c_prev, out=c)
        c.addcmul_(self.i[k], self.gg[k])  # c' = f c + i g
        if self.peep:
            self.o[k].addcmul_(self.po, c).sigmoid_()
        tc = self.tcl[k]
        self._tanh(c, tc)
        torch.mul(self.o[k], tc, out=self.h[k + 1])  # h' = o tanh(c')

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        H, D = self.H, self.D
        self.Dsig = self.steps(D[:, :, : 3 * H])
        self.Dif = self.steps(D[:, :, : 2 * H])
        self.Di = self.steps(D[:, :, :H])
        self.Df = self.steps(D[:, :, H: 2 * H])
        self.Do = self.steps(D[:, :, 2 * H: 3 * H])
        self.Dg = self.steps(D[:, :, 3 * H:])
        self.tmp2 = self.X.new_empty(self.tmp.shape)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        # D may be X itself (begin_backward(reuse=True)): each gate is read before its own
        # gradient overwrites it, in this order: o, then i and g, then f.
        dh, dc = d
        i, f, o, gg, tc, tmp, tmp2, s3 = self.i[k], self.f[k], self.o[k], self.gg[k], self.tcl[k], self.tmp, \
            self.tmp2, self.s3
        s = self.sig[k]
        torch.addcmul(s, s, s, value=-1.0, out=s3)  # s (1 - s) for (i, f, o), before any is overwritten
        torch.mul(tc, tc, out=tmp).neg_().add_(1.0).mul_(dh)  # dh (1 - tanh(c')^2)
        dc.addcmul_(tmp, o)
        Do = self.Do[k]
        torch.mul(dh, tc, out=Do).mul_(s3[:, 2 * self.H:])  # d(o_pre), o is not read again
        if self.peep:  # o saw c': its pre-activation gradient feeds dc too
            dc.addcmul_(Do, self.po)
        torch.mul(gg, gg, out=tmp2).neg_().add_(1.0).mul_(i).mul_(dc)  # d(g_pre), unscaled
        torch.mul(dc, gg, out=self.Di[k])  # upstream of i (i is not read again)
        self.Dg[k].copy_(tmp2)
        torch.mul(dc, self.c[k], out=tmp)  # upstream of f
        dc.mul_(f)  # direct path to c_{t-1}
        Df = self.Df[k]
        Df.copy_(tmp)
        self.Dif[k].mul_(s3[:, : 2 * self.H])  # d(pre) = up s (1 - s)
        if self.peep:
            dc.addcmul_(self.Di[k], self.pi).addcmul_(Df, self.pf)
        return [None, dc]

    def _inverse(self) -> Tensor:
        inv = torch.empty_like(self.perm)
        inv[self.perm] = torch.arange(4 * self.H, device=self.perm.device)
        return inv

    def dx_layout(self) -> Tensor:
        return self.D.index_select(2, self._inverse())  # (T, B, 4H) in (i, f, g, o) order

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        H, inv = self.H, self._inverse()
        extra: list[Tensor | None] = []
        if self.peep:
            D, c_prev, c_new = self.D, self.previous(1), self.following(1)
            extra = [(D[:, :, :H] * c_prev).sum((0, 1)), (D[:, :, H: 2 * H] * c_prev).sum((0, 1)),
                     (D[:, :, 2 * H: 3 * H] * c_new).sum((0, 1))]
        return dW.index_select(0, inv), None if db is None else db.index_select(0, inv), extra


class GRUKernel(Kernel):
    """GRU, reset-after: the recurrent matmul output hw is kept (hw_n feeds the n gate)."""

    def __init__(self, cell: GRUStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool) -> None:
        super().__init__(cell, X, W, b, states, reverse)
        T, B, G = X.shape
        H = self.H = G // 3
        self.HW = X.new_empty(T, B, G)
        self.hw = self.steps(self.HW)
        self.hwn = self.steps(self.HW[:, :, 2 * H:])
        self.hwrz = self.steps(self.HW[:, :, : 2 * H])
        self.rz = self.steps(X[:, :, : 2 * H])
        self.r = self.steps(X[:, :, :H])
        self.z = self.steps(X[:, :, H: 2 * H])
        self.n = self.steps(X[:, :, 2 * H:])
        self.h = self.bounds(states[0])
        self.tmp = X.new_empty(B, H)

    def fwd(self, k: int) -> None:
        hw = self.hw[k]
        if self.b is not None:
            torch.addmm(self.b, self.mm_in(self.h[k]), self.Wt, out=hw)
        else:
            torch.mm(self.mm_in(self.h[k]), self.Wt, out=hw)
        self.rz[k].add_(self.hwrz[k]).sigmoid_()
        n = self.n[k]
        n.addcmul_(self.r[k], self.hwn[k]).tanh_()
        out = self.h[k + 1]
        torch.sub(self.h[k], n, out=out)
        out.mul_(self.z[k]).add_(n)  # n + z (h - n)

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)
        H = self.H
        self.dHW = self.HW if reuse else torch.empty_like(self.HW)
        self.Dr = self.steps(self.D[:, :, :H])
        self.Dz = self.steps(self.D[:, :, H: 2 * H])
        self.Dn = self.steps(self.D[:, :, 2 * H:])
        self.Drz = self.steps(self.D[:, :, : 2 * H])
        self.dHWrz = self.steps(self.dHW[:, :, : 2 * H])
        self.dHWn = self.steps(self.dHW[:, :, 2 * H:])
        self.tmp2 = self.X.new_empty(self.tmp.shape)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        # D and dHW may be X and HW themselves (begin_backward(reuse=True)): every value is read
        # before the gradient that shares its memory is written.
        dh = d[0]
        r, z, n, tmp, tmp2 = self.r[k], self.z[k], self.n[k], self.tmp, self.tmp2
        Dr, Dz, Dn = self.Dr[k], self.Dz[k], self.Dn[k]
        dh_prev = dh * z
        torch.sub(self.h[k], n, out=tmp).mul_(dh)  # dz = dh (h - n)
        dn = dh.sub_(dh_prev)  # dh (1 - z)
        torch.mul(n, n, out=Dn).neg_().add_(1.0).mul_(dn)  # d(n_pre), over n
        torch.addcmul(z, z, z, value=-1.0, out=Dz).mul_(tmp)  # d(z_pre), over z
        torch.addcmul(r, r, r, value=-1.0, out=tmp2).mul_(self.hwn[k]).mul_(Dn)  # d(r_pre)
        torch.mul(Dn, r, out=self.dHWn[k])  # d(hw_n) = d(n_pre) r, over hw_n
        Dr.copy_(tmp2)  # over r
        self.dHWrz[k].copy_(self.Drz[k])
        return [dh_prev]


class AutogradKernel(Kernel):
    """Any other ``Structured`` cell: ``pointwise`` runs without a graph in forward and is
    re-run under autograd, one step at a time, in backward (the matmuls stay outside)."""

    def __init__(self, cell: StructuredStep, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 reverse: bool, extra_params: Sequence[tuple[str, Tensor]] = ()) -> None:
        super().__init__(cell, X, W, b, states, reverse)  # X keeps the raw inputs for recomputation
        self.HW = X.new_empty(X.shape)
        self.x, self.hw = self.steps(X), self.steps(self.HW)
        self.names = tuple(cell.states)
        self.rec = self.names.index(cell.recurrent_state)
        self.rows = [self.bounds(s) for s in states]
        # The parameters of this call, rebound by name when the backward re-runs pointwise, so
        # it differentiates what the forward used (functional_call swaps them only meanwhile).
        self.param_names = tuple(n for n, _ in extra_params)
        self.extra_params = tuple(p for _, p in extra_params)
        self.call = _Pointwise(cell)

    def fwd(self, k: int) -> None:
        hw, h = self.hw[k], self.mm_in(self.rows[self.rec][k])
        if self.b is not None:
            torch.addmm(self.b, h, self.Wt, out=hw)
        else:
            torch.mm(h, self.Wt, out=hw)
        prev = {n: rows[k] for n, rows in zip(self.names, self.rows)}
        out = self.cell.pack_outputs(self.cell.pointwise(inputs=self.x[k], hw=hw, **prev))
        for rows, value in zip(self.rows, out):
            rows[k + 1].copy_(value)

    def begin_backward(self, reuse: bool = False) -> None:
        super().begin_backward(reuse)  # pointwise reads x[k], hw[k] before their rows are overwritten
        self.dHW = self.HW if reuse else torch.empty_like(self.HW)
        self.dl, self.dhwl = self.steps(self.D), self.steps(self.dHW)
        self.param_grads: list[Tensor | None] = [None] * len(self.extra_params)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        with torch.enable_grad():
            x = self.x[k].detach().requires_grad_()
            hw = self.hw[k].detach().requires_grad_()
            prev = [rows[k].detach().requires_grad_() for rows in self.rows]
            params = [p.detach().requires_grad_() for p in self.extra_params]
            bound = {f"cell.{n}": p for n, p in zip(self.param_names, params)}
            out = torch.func.functional_call(self.call, bound, (x, hw, dict(zip(self.names, prev))))
            grads = torch.autograd.grad(out, [x, hw, *prev, *params], d, allow_unused=True)
        self.dl[k].copy_(_or_zeros(grads[0], x))
        self.dhwl[k].copy_(_or_zeros(grads[1], hw))
        for j, g in enumerate(grads[2 + len(prev):]):
            if g is not None:
                self.param_grads[j] = g if self.param_grads[j] is None else self.param_grads[j] + g
        return list(grads[2: 2 + len(prev)])

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        return dW, db, list(self.param_grads)


class _Pointwise(nn.Module):
    """Calls ``cell.pointwise``, so torch.func.functional_call can rebind the cell's parameters."""

    def __init__(self, cell: StructuredStep) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, hw: Tensor, states: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.cell.pack_outputs(self.cell.pointwise(inputs=x, hw=hw, **states))


def _or_zeros(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def extra_params(cell: StructuredStep) -> tuple[tuple[str, Tensor], ...]:
    """The (name, parameter) pairs the pointwise part uses besides (weight, bias), in the order
    the kernels report their gradients."""
    kind = builtin_step(cell)
    if kind is LSTMStep:
        return (("peep_i", cell.peep_i), ("peep_f", cell.peep_f), ("peep_o", cell.peep_o)) if cell.peepholes else ()
    if kind in (GRUStep, ElmanStep):
        return ()
    return tuple((n, p) for n, p in cell.named_parameters() if n not in ("weight", "bias"))


def make_kernel(cell: StructuredStep, X: Tensor, W: Tensor, b: Tensor | None, states: Sequence[Tensor],
                reverse: bool) -> Kernel:
    """The fastest eager kernel that computes exactly ``cell.pointwise``."""
    kind = builtin_step(cell)
    if kind is LSTMStep:
        return LSTMKernel(cell, X, W, b, list(states), reverse)
    if kind is GRUStep:
        return GRUKernel(cell, X, W, b, list(states), reverse)
    if kind is ElmanStep:
        return ElmanKernel(cell, X, W, b, list(states), reverse)
    return AutogradKernel(cell, X, W, b, list(states), reverse, extra_params(cell))
