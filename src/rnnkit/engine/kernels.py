"""The kernel interface of the structured loop (``rnnkit.engine.structured``), and the autograd kernel.

A kernel owns the per-step math of one cell between the recurrent matmuls. Every cell the cell
compiler takes (the built-in ones included) runs on its compiled kernels
(``rnnkit.engine.compiler.kernels``); :class:`AutogradKernel` serves the others. Buffers are
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
does not go through the matmul (None for zero; the driver adds ``dHW[k] @ W``).
``AutogradKernel`` serves a ``Structured`` cell the compiler cannot take by re-running its
``pointwise`` under autograd, one step at a time, in the backward pass.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from rnnkit.steps import StructuredStep

__all__ = ["AutogradKernel", "Kernel"]


class Kernel:
    """Base: holds the buffers and the processing-order views; subclasses do the math."""

    hmask: Tensor | None = None  # recurrent dropout (B, H), set by the driver: the matmul reads h * hmask

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
