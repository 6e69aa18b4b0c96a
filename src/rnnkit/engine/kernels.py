"""Pointwise forward/backward kernels for the structured loop (``rnnkit.engine.structured``).

A kernel owns the per-step math of one cell family between the recurrent matmuls. Every buffer
is time-major and in *processing* order (k = 0 is the first step run, the last one in time when
reversing):

* ``X`` (T, B, G): the projected inputs on entry; the forward pass overwrites row k with what
  the backward needs (the activations).
* ``states[s]`` (T+1, B, H): the state s before step k is ``states[s][k]``, after it ``[k+1]``.
* ``D`` (T, B, G), made by ``begin_backward``: d(xp_k) per step; ``dHW``: d(hw_k), the gradient
  of the recurrent matmul's output, which is ``D`` itself when the cell adds ``hw`` to ``xp``
  unchanged (LSTM, Elman). Backward never overwrites X or the states, so it can run twice
  (``retain_graph=True``, gradcheck).

``fwd(k)`` computes step k (the recurrent matmul included); ``bwd(k, d)`` takes the gradients of
the states after step k (already masked) and returns the part of d(states before step k) that
does not go through the matmul (the driver adds ``dHW[k] @ W``). The built-in kernels do it with
in-place ops on views made once per call, so a step costs a handful of ATen calls and no
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

from rnnkit.cells import ElmanCell, GRUCell, LSTMCell
from rnnkit.cells.structured import Structured

__all__ = ["AutogradKernel", "ElmanKernel", "GRUKernel", "Kernel", "LSTMKernel", "extra_params", "make_kernel"]

SIGMOID_TANH_MIN = 1024  # B*H from which tanh goes through a sigmoid (fp32/bf16 only)


class Kernel:
    """Base: holds the buffers; subclasses implement ``fwd`` and ``bwd``."""

    def __init__(self, cell: Structured, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor]) -> None:
        self.cell, self.X, self.W, self.b, self.states = cell, X, W, b, states
        self.Wt = W.t()  # (H, G), what forward multiplies by
        self.D: Tensor = X
        self.dHW: Tensor = X

    def fwd(self, k: int) -> None:
        raise NotImplementedError  # every concrete kernel overrides it

    def begin_backward(self) -> None:
        """Allocate the gradient buffers (called once per backward pass)."""
        self.D = torch.empty_like(self.X)  # (T, B, G)
        self.dHW = self.D

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        """d: gradients of the states after step k (the kernel may modify them in place).
        Returns the direct-path gradients of the states before step k (None for zero)."""
        raise NotImplementedError  # every concrete kernel overrides it

    def dx_layout(self) -> Tensor:
        """d(xp) in the cell's column order. (T, B, G)"""
        return self.D

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        """Map gradients of the kernel's layout back to the cell's (W, b, extra parameters)."""
        return dW, db, []


class ElmanKernel(Kernel):
    """h' = act(xp + h W^T + b). Nothing is stored beyond the states."""

    def __init__(self, cell: ElmanCell, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor]) -> None:
        if b is not None:
            X.add_(b)  # fold the recurrent bias into the inputs once
        super().__init__(cell, X, W, b, states)
        self.act = cell.activation
        self.x = X.unbind(0)  # T x (B, H)
        self.h = states[0].unbind(0)  # (T+1) x (B, H)

    def fwd(self, k: int) -> None:
        out = self.h[k + 1]
        torch.addmm(self.x[k], self.h[k], self.Wt, out=out)
        if self.act == "tanh":
            out.tanh_()
        elif self.act == "relu":
            out.relu_()

    def begin_backward(self) -> None:
        super().begin_backward()
        self.dl = self.D.unbind(0)

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

    def __init__(self, cell: LSTMCell, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 trick: bool | None = None) -> None:
        T, B, G = X.shape
        H = G // 4
        idx = torch.arange(H, device=X.device)
        self.perm = torch.cat([idx, idx + H, idx + 3 * H, idx + 2 * H])  # (i, f, o, g) from (i, f, g, o)
        self.peep = cell.peepholes
        if trick is None:  # tanh as a sigmoid where that is faster (see the module docstring)
            trick = X.dtype in (torch.float32, torch.bfloat16) and B * H >= SIGMOID_TANH_MIN
        self.trick = trick and not self.peep
        X.copy_(X.index_select(2, self.perm))
        if b is not None:
            X.add_(b.index_select(0, self.perm))
        super().__init__(cell, X, W.index_select(0, self.perm), b, states)  # (4H, H) in the layout
        if self.trick:  # forward uses 2x the g rows; backward the true ones (module docstring)
            scaled = self.W.clone()
            scaled[3 * H:].mul_(2.0)
            self.Wt = scaled.t()
            X[:, :, 3 * H:].mul_(2.0)
        self.H = H
        self.tc = X.new_empty(T, B, H)  # tanh(c_t), kept for backward
        self.g = X.unbind(0)
        self.sig = X[:, :, : 3 * H].unbind(0)
        self.i = X[:, :, :H].unbind(0)
        self.f = X[:, :, H: 2 * H].unbind(0)
        self.o = X[:, :, 2 * H: 3 * H].unbind(0)
        self.gg = X[:, :, 3 * H:].unbind(0)
        self.tcl = self.tc.unbind(0)
        self.h = states[0].unbind(0)
        self.c = states[1].unbind(0)
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
        g.addmm_(self.h[k], self.Wt)  # pre-activations (B, 4H)
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

    def begin_backward(self) -> None:
        super().begin_backward()
        H, D = self.H, self.D
        self.Dsig = D[:, :, : 3 * H].unbind(0)
        self.Dif = D[:, :, : 2 * H].unbind(0)
        self.Di = D[:, :, :H].unbind(0)
        self.Df = D[:, :, H: 2 * H].unbind(0)
        self.Do = D[:, :, 2 * H: 3 * H].unbind(0)
        self.Dg = D[:, :, 3 * H:].unbind(0)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        dh, dc = d
        i, f, o, gg, tc, tmp = self.i[k], self.f[k], self.o[k], self.gg[k], self.tcl[k], self.tmp
        Do = self.Do[k]
        torch.mul(tc, tc, out=tmp).neg_().add_(1.0).mul_(dh)  # dh (1 - tanh(c')^2)
        dc.addcmul_(tmp, o)
        torch.mul(dh, tc, out=Do)  # upstream of o
        if self.peep:  # o saw c': its pre-activation gradient feeds dc too
            Do.mul_(torch.addcmul(o, o, o, value=-1.0))
            dc.addcmul_(Do, self.po)
        torch.mul(dc, gg, out=self.Di[k])  # upstream of i
        torch.mul(dc, self.c[k], out=self.Df[k])  # upstream of f
        torch.mul(gg, gg, out=self.Dg[k]).neg_().add_(1.0).mul_(i).mul_(dc)  # d(g_pre), unscaled
        dc.mul_(f)  # direct path to c_{t-1}
        s3 = self.s3
        if self.peep:
            s2 = s3[:, : 2 * self.H]
            torch.addcmul(self.sig[k][:, : 2 * self.H], self.sig[k][:, : 2 * self.H], self.sig[k][:, : 2 * self.H],
                          value=-1.0, out=s2)
            self.Dif[k].mul_(s2)  # d(pre) = up s (1 - s)
            dc.addcmul_(self.Di[k], self.pi).addcmul_(self.Df[k], self.pf)
        else:
            s = self.sig[k]
            torch.addcmul(s, s, s, value=-1.0, out=s3)
            self.Dsig[k].mul_(s3)  # d(pre) = up s (1 - s)
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
            D, c_prev, c_new = self.D, self.states[1][:-1], self.states[1][1:]
            extra = [(D[:, :, :H] * c_prev).sum((0, 1)), (D[:, :, H: 2 * H] * c_prev).sum((0, 1)),
                     (D[:, :, 2 * H: 3 * H] * c_new).sum((0, 1))]
        return dW.index_select(0, inv), None if db is None else db.index_select(0, inv), extra


class GRUKernel(Kernel):
    """GRU, reset-after: the recurrent matmul output hw is kept (hw_n feeds the n gate)."""

    def __init__(self, cell: GRUCell, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor]) -> None:
        super().__init__(cell, X, W, b, states)
        T, B, G = X.shape
        H = self.H = G // 3
        self.HW = X.new_empty(T, B, G)
        self.hw = self.HW.unbind(0)
        self.hwn = self.HW[:, :, 2 * H:].unbind(0)
        self.hwrz = self.HW[:, :, : 2 * H].unbind(0)
        self.rz = X[:, :, : 2 * H].unbind(0)
        self.r = X[:, :, :H].unbind(0)
        self.z = X[:, :, H: 2 * H].unbind(0)
        self.n = X[:, :, 2 * H:].unbind(0)
        self.h = states[0].unbind(0)
        self.tmp = X.new_empty(B, H)

    def fwd(self, k: int) -> None:
        hw = self.hw[k]
        if self.b is not None:
            torch.addmm(self.b, self.h[k], self.Wt, out=hw)
        else:
            torch.mm(self.h[k], self.Wt, out=hw)
        self.rz[k].add_(self.hwrz[k]).sigmoid_()
        n = self.n[k]
        n.addcmul_(self.r[k], self.hwn[k]).tanh_()
        out = self.h[k + 1]
        torch.sub(self.h[k], n, out=out)
        out.mul_(self.z[k]).add_(n)  # n + z (h - n)

    def begin_backward(self) -> None:
        super().begin_backward()
        H = self.H
        self.dHW = torch.empty_like(self.HW)
        self.Dr = self.D[:, :, :H].unbind(0)
        self.Dz = self.D[:, :, H: 2 * H].unbind(0)
        self.Dn = self.D[:, :, 2 * H:].unbind(0)
        self.Drz = self.D[:, :, : 2 * H].unbind(0)
        self.dHWrz = self.dHW[:, :, : 2 * H].unbind(0)
        self.dHWn = self.dHW[:, :, 2 * H:].unbind(0)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        dh = d[0]
        r, z, n, tmp = self.r[k], self.z[k], self.n[k], self.tmp
        Dr, Dz, Dn = self.Dr[k], self.Dz[k], self.Dn[k]
        dh_prev = dh * z
        torch.sub(self.h[k], n, out=tmp).mul_(dh)  # dz = dh (h - n)
        dn = dh.sub_(dh_prev)  # dh (1 - z)
        torch.mul(n, n, out=Dn).neg_().add_(1.0).mul_(dn)  # d(n_pre)
        torch.addcmul(z, z, z, value=-1.0, out=Dz).mul_(tmp)  # d(z_pre)
        torch.addcmul(r, r, r, value=-1.0, out=Dr).mul_(self.hwn[k]).mul_(Dn)  # d(r_pre)
        self.dHWrz[k].copy_(self.Drz[k])
        torch.mul(Dn, r, out=self.dHWn[k])  # d(hw_n) = d(n_pre) r
        return [dh_prev]


class AutogradKernel(Kernel):
    """Any other ``Structured`` cell: ``pointwise`` runs without a graph in forward and is
    re-run under autograd, one step at a time, in backward (the matmuls stay outside)."""

    def __init__(self, cell: Structured, X: Tensor, W: Tensor, b: Tensor | None, states: list[Tensor],
                 extra_params: Sequence[tuple[str, Tensor]] = ()) -> None:
        super().__init__(cell, X, W, b, states)  # X keeps the raw inputs for recomputation
        self.HW = X.new_empty(X.shape)
        self.names = tuple(cell.states)
        self.rec = self.names.index(cell.recurrent_state)
        # The parameters of this call, rebound by name when the backward re-runs pointwise, so
        # it differentiates what the forward used (functional_call swaps them only meanwhile).
        self.param_names = tuple(n for n, _ in extra_params)
        self.extra_params = tuple(p for _, p in extra_params)
        self.call = _Pointwise(cell)

    def fwd(self, k: int) -> None:
        hw, h = self.HW[k], self.states[self.rec][k]
        if self.b is not None:
            torch.addmm(self.b, h, self.Wt, out=hw)
        else:
            torch.mm(h, self.Wt, out=hw)
        prev = {n: s[k] for n, s in zip(self.names, self.states)}
        out = self.cell.pack_outputs(self.cell.pointwise(inputs=self.X[k], hw=hw, **prev))
        for s, value in zip(self.states, out):
            s[k + 1].copy_(value)

    def begin_backward(self) -> None:
        super().begin_backward()
        self.dHW = torch.empty_like(self.HW)
        self.param_grads: list[Tensor | None] = [None] * len(self.extra_params)

    def bwd(self, k: int, d: list[Tensor]) -> list[Tensor | None]:
        with torch.enable_grad():
            x = self.X[k].detach().requires_grad_()
            hw = self.HW[k].detach().requires_grad_()
            prev = [s[k].detach().requires_grad_() for s in self.states]
            params = [p.detach().requires_grad_() for p in self.extra_params]
            bound = {f"cell.{n}": p for n, p in zip(self.param_names, params)}
            out = torch.func.functional_call(self.call, bound, (x, hw, dict(zip(self.names, prev))))
            grads = torch.autograd.grad(out, [x, hw, *prev, *params], d, allow_unused=True)
        self.D[k].copy_(_or_zeros(grads[0], x))
        self.dHW[k].copy_(_or_zeros(grads[1], hw))
        for j, g in enumerate(grads[2 + len(prev):]):
            if g is not None:
                self.param_grads[j] = g if self.param_grads[j] is None else self.param_grads[j] + g
        return list(grads[2: 2 + len(prev)])

    def finish_grads(self, dW: Tensor, db: Tensor | None) -> tuple[Tensor, Tensor | None, list[Tensor | None]]:
        return dW, db, list(self.param_grads)


class _Pointwise(nn.Module):
    """Calls ``cell.pointwise``, so torch.func.functional_call can rebind the cell's parameters."""

    def __init__(self, cell: Structured) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: Tensor, hw: Tensor, states: dict[str, Tensor]) -> tuple[Tensor, ...]:
        return self.cell.pack_outputs(self.cell.pointwise(inputs=x, hw=hw, **states))


def _or_zeros(g: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else g


def extra_params(cell: Structured) -> tuple[tuple[str, Tensor], ...]:
    """The (name, parameter) pairs the pointwise part uses besides (weight, bias), in the order
    the kernels report their gradients."""
    if type(cell) is LSTMCell:
        return (("peep_i", cell.peep_i), ("peep_f", cell.peep_f), ("peep_o", cell.peep_o)) if cell.peepholes else ()
    if type(cell) in (GRUCell, ElmanCell):
        return ()
    return tuple((n, p) for n, p in cell.named_parameters() if n not in ("weight", "bias"))


def make_kernel(cell: Structured, X: Tensor, W: Tensor, b: Tensor | None, states: Sequence[Tensor]) -> Kernel:
    """The fastest kernel that computes exactly ``cell.pointwise``."""
    kind = type(cell)
    if kind is LSTMCell:
        return LSTMKernel(cell, X, W, b, list(states))
    if kind is GRUCell:
        return GRUKernel(cell, X, W, b, list(states))
    if kind is ElmanCell:
        return ElmanKernel(cell, X, W, b, list(states))
    return AutogradKernel(cell, X, W, b, list(states), extra_params(cell))
