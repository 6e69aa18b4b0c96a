"""Second-order gradients of the structured loop: differentiate a step-wise recomputation.

The structured loop (``rnnkit.engine.structured``) computes its backward by hand, without an
autograd graph, so that backward cannot itself be differentiated. When autograd asks for a
differentiable backward (``torch.autograd.grad(..., create_graph=True)``: gradient penalties,
Hessian-vector products, ``gradgradcheck``), :func:`recompute_backward` runs the same scan again
on the step-wise engine (``rnnkit.engine.generic``) with the call's own inputs, recurrent
weight and parameters, and returns autograd's gradients of it, built with ``create_graph``.
First-order training keeps the fast hand-written backward.

A layer lets the kernel overwrite its input projection (``donate``); it then hands over
``rebuild``, which recomputes the projection's values. Without one, a double backward through a
donated projection raises instead of returning a wrong gradient.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.engine.generic import scan_stepwise
from rnnkit.engine.regularise import wrap_step

__all__ = ["recompute_backward"]


class _Substitute(torch.autograd.Function):
    """Identity for gradients, but with the values of ``values``: re-attaches rebuilt values to
    the graph of the tensor they were computed as (whose own storage the kernel overwrote)."""

    @staticmethod
    def forward(ctx: Any, like: Tensor, values: Tensor) -> Tensor:
        return values.clone()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _Rebind(nn.Module):
    """Runs a closure with the cell's extra parameters rebound to the call's tensors (they differ
    from the module's own under ``torch.func.functional_call``)."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, fn: Callable[[], Any]) -> Any:
        return fn()


def recompute_backward(setup: Any, inputs: Sequence[Any], needs: Sequence[bool],
                       grads: Sequence[Tensor | None]) -> tuple[Tensor | None, ...]:
    """The structured scan's backward, differentiable: gradients for every ``Function`` input.

    ``inputs`` are the forward's ``(setup, xp, W, b, mask, n_states, *states0, *params)`` and
    ``needs`` its ``ctx.needs_input_grad``; ``grads`` the output gradients (None for unused).
    """
    _, xp, W, b, mask, n_states, *rest = inputs
    states0, params = rest[:n_states], rest[n_states:]
    cell = setup.cell
    if setup.donate and (xp.transpose(0, 1).is_contiguous() or setup.kernel.X.data_ptr() == xp.data_ptr()):
        # the kernel wrote over xp (time-major, or batch-major read in place)
        if setup.rebuild is None:
            raise RuntimeError(
                "double backward: expected the values of the donated input projection, but the "
                "structured loop overwrote them and the caller gave no rebuild. Fix: call run_cell "
                "with donate=False (or pass rebuild=) to differentiate twice.")
        with torch.no_grad():
            values = setup.rebuild()  # (B, T, G)
        xp = _Substitute.apply(xp, values)
    rec = cell.recurrent_state

    def step(inputs: Tensor, **state: Tensor) -> Any:
        return cell.pointwise(inputs=inputs, hw=F.linear(state[rec], W, b), **state)

    if setup.reg is not None:  # recurrent dropout / zoneout, as the forward applied them
        step = wrap_step(cell, setup.reg, xp.shape[1], setup.reverse, W, b)

    def run() -> list[Tensor]:
        scan = scan_stepwise(cell, {"inputs": xp}, dict(zip(cell.states, states0)), {}, mask=mask,
                             reverse=setup.reverse, bptt=setup.bptt, scope=setup.scope, step=step)
        return [scan.outputs[n] for n in cell.states] + [scan.final[n] for n in cell.states]

    bound = {f"cell.{name}": p for name, p in zip(setup.param_names, params)}
    with torch.enable_grad():
        outs = torch.func.functional_call(_Rebind(cell), bound, (run,))
        pairs = [(o, g) for o, g in zip(outs, grads) if g is not None and o.requires_grad]
        wrt = [(i, t) for i, t in enumerate(inputs) if needs[i] and isinstance(t, Tensor)]
        wrt = [(i, xp if i == 1 else t) for i, t in wrt]
        result: list[Tensor | None] = [None] * len(inputs)
        if pairs and wrt:
            found = torch.autograd.grad([o for o, _ in pairs], [t for _, t in wrt], [g for _, g in pairs],
                                        create_graph=True, allow_unused=True)
            for (i, _), g in zip(wrt, found):
                result[i] = g
    return tuple(result)
