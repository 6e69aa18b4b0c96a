"""Matrix products for the generic engine, on oneDNN where that is the fast library.

On CPUs where MKL is not tuned (this project's AMD EPYC machines measure MKL at 87-210 GFLOP/s
and oneDNN at 345-460 GFLOP/s on the same shapes), ``torch.mm`` is the slow choice for the big
products of a recurrent layer: the input projection of all T steps, d(inputs) and the weight
gradients. ``torch.nn.LSTM`` runs those inside oneDNN, so the generic engine must too. This
module routes float32/bfloat16 CPU products with enough rows through oneDNN's linear primitive
(``torch.ops.mkldnn._linear_pointwise``, the op PyTorch's own CPU linear fusion uses) and keeps
``torch.mm`` for everything else (float64, small products, other devices, or when the op is
missing from a build). ``RNNKIT_ONEDNN=0`` turns the routing off.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

__all__ = ["linear", "mm_nt", "mm_tn"]

MIN_ROWS = 64  # below this, oneDNN's per-call overhead (~15 us) outweighs its speed


def _op() -> Any:
    if os.environ.get("RNNKIT_ONEDNN", "1") == "0" or not torch.backends.mkldnn.is_available():
        return None
    return getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)


_LINEAR = _op()


def _fast(a: Tensor, rows: int) -> bool:
    return (_LINEAR is not None and a.device.type == "cpu" and a.dtype in (torch.float32, torch.bfloat16)
            and rows >= MIN_ROWS)


def mm_nt(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """a (M, K) @ b (N, K)^T (+ bias (N,)) -> (M, N), without autograd."""
    if _fast(a, max(a.shape[0], b.shape[0])):
        return _LINEAR(a, b, bias, "none", [], "")
    return a.mm(b.t()) if bias is None else torch.addmm(bias, a, b.t())


def mm_tn(a: Tensor, b: Tensor) -> Tensor:
    """a (R, P)^T @ b (R, Q) -> (P, Q), without autograd: the weight gradients, summed over R rows.

    oneDNN's linear wants its input row-major, so one operand is copied transposed; copying the
    narrower one (the activations, not the (R, 4H) gate gradients) costs least time and memory.
    The result may be a transposed view.
    """
    if _fast(a, a.shape[0]):
        if a.shape[1] >= b.shape[1]:
            return _LINEAR(b.t().contiguous(), a.t(), None, "none", [], "").t()  # (Q, P)^T
        return _LINEAR(a.t().contiguous(), b.t(), None, "none", [], "")
    return a.t().mm(b)


class _Linear(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        y = _LINEAR(x, weight, bias, "none", [], "")  # (M, N)
        return y

    @staticmethod
    def backward(ctx: Any, dy: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: oneDNN's op has no derivative, use plain mm
            return (dy.mm(weight) if ctx.needs_input_grad[0] else None,
                    dy.t().mm(x) if ctx.needs_input_grad[1] else None,
                    dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None)
        dx = mm_nt(dy, weight.t()) if ctx.needs_input_grad[0] else None  # (M, K)
        dw = mm_tn(dy, x) if ctx.needs_input_grad[1] else None  # (N, K)
        db = dy.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` for (..., K) inputs, on oneDNN when that is faster (see the module docstring)."""
    rows = x.numel() // max(x.shape[-1], 1)
    if not _fast(x, rows) or weight.dtype != x.dtype:
        return torch.nn.functional.linear(x, weight, bias)
    flat = x.reshape(rows, x.shape[-1])  # (M, K)
    return _Linear.apply(flat, weight, bias).view(*x.shape[:-1], weight.shape[0])  # (..., N)
