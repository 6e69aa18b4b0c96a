"""The eager printer: the same graphs as a few torch ops per step (any device and dtype).

It serves every case the C printer does not: GPUs, dtypes other than float32/float64, and
machines without a C compiler (or ``RNNKIT_NATIVE=0``). The printed Python functions work on
whole (B, k*H) rows of the engine's buffers: a column node is a (B, H) tensor, a row node a
(B, 1) tensor, a constant a Python float. Outputs are written only after every value is
computed, so they may overwrite the inputs in place, as in the C row functions.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.ops import torch_expr

__all__ = ["eager_functions"]


def _t(v: Any, ref: Tensor) -> Tensor:
    return v if isinstance(v, Tensor) else torch.full((), v, dtype=ref.dtype, device=ref.device)


def _lines(g: Graph, load: Callable[..., str]) -> list[str]:
    out = []
    name = lambda n: torch_expr(g, n, name) if g.nodes[n].op in ("const", "count") else f"v{n}"  # noqa: E731
    for n in g.live():
        node = g.nodes[n]
        if node.op in ("const", "count"):
            continue
        if node.op in ("x", "z", "a", "hw", "s", "p", "gy"):
            out.append(f"    v{n} = {load(node.op, *node.attr)}")
        else:
            out.append(f"    v{n} = {torch_expr(g, n, name)}")
    return out


def _val(g: Graph, n: int) -> str:
    node = g.nodes[n]
    if node.op == "const":
        return repr(float(node.attr[0]))
    if node.op == "count":
        return torch_expr(g, n, lambda a: "")
    if node.op in ("x", "z", "a", "hw", "s", "p", "gy"):
        return f"v{n}.clone()"  # a view of a buffer an earlier store may overwrite
    return f"v{n}"


def eager_functions(fwd: Graph, bwd: Graph, summed: bool) -> tuple[Callable[..., None], Callable[..., None]]:
    """(fwd, bwd) Python functions printed from the graphs.

    ``fwd(H, x, hw, sp, sn, P)``: x (B, G) the projected input row (summed cells: hw is added
    into it, hw may be None when it already holds the sum); sp/sn lists of (B, H) states;
    P the extra parameters. ``bwd(H, x, hw, sp, ds, dx, dhw, dP, P)``: ds holds d(states after
    the step) and receives the direct part of d(states before it); dx/dhw (B, G) receive the
    input gradients (dx only, for summed cells); dP accumulate.
    """
    sl = "[:, {b} * H:({b} + 1) * H]"

    def f_load(op: str, *attr: Any) -> str:
        if op in ("x", "z", "a"):
            return "x" + sl.format(b=attr[0])
        if op == "hw":
            return "hw" + sl.format(b=attr[0])
        if op == "s":
            return f"sp[{attr[0]}]"
        if op == "p":
            return f"P[{attr[0]}][{attr[1]} * H:({attr[1]} + 1) * H].view(1, H)"  # (1, H)
        return f"ds[{attr[0]}]"

    src = ["def fwd(H, x, hw, sp, sn, P):", "    dt = x.dtype; ref = x"]
    if summed:
        src.append("    if hw is not None: x.add_(hw)")
    src += _lines(fwd, f_load)
    src.append("    outs = []")
    for (kind, i), n in fwd.outputs.items():
        target = f"sn[{i}]" if kind == "s" else "x" + sl.format(b=i)
        src.append(f"    outs.append(({target}, {_val(fwd, n)}))")
    src.append("    for target, v in outs: target.copy_(_t(v, ref).expand_as(target))")
    src += ["def bwd(H, x, hw, sp, ds, dx, dhw, dP, P):", "    dt = x.dtype; ref = x; B = x.shape[0]"]
    src += _lines(bwd, f_load)
    src.append("    outs = []")
    for key, n in bwd.outputs.items():
        v = _val(bwd, n)
        kind = key[0]
        if kind in ("dz", "dx", "dhw"):
            target = ("dhw" if kind == "dhw" else "dx") + sl.format(b=key[1])
            src.append(f"    outs.append(({target}, {v}))")
        elif kind == "ds":
            src.append(f"    outs.append((ds[{key[1]}], {v}))")
        else:
            target = f"dP[{key[1]}][{key[2]} * H:({key[2]} + 1) * H]"
            src.append(f"    _acc({target}, {v}, B)")
    src.append("    for target, v in outs: target.copy_(_t(v, ref).expand_as(target))")
    scope: dict[str, Any] = {"torch": torch, "_t": _t, "_acc": _acc}
    exec(compile("\n".join(src), "<rnnkit compiled cell>", "exec"), scope)  # noqa: S102 - our own printed code
    return scope["fwd"], scope["bwd"]


def _acc(target: Tensor, v: Any, B: int) -> None:
    if isinstance(v, Tensor):
        target.add_(v.sum(0))
    else:
        target.add_(v * B)
