"""The hybrid form of a general cell: its step split at the matmuls into C pointwise segments.

For larger batches a per-row matvec loses to a GEMM, so the engine (``rnnkit.engine.ghybrid``)
runs each step as: C segment 0, the GEMMs (``torch.mm``) of the matmuls whose inputs segment 0
stored, C segment 1, more GEMMs, ..., and the last segment stores the new states. The backward
is split the same way at its ``mmt`` nodes (d(x) = d(y) W).

**Levels.** A node's level is the largest number of matmuls on a path from a load to it (a
matmul is one more than its input). Segment k computes what has level <= k, with every matmul of
level <= k read from the buffer its GEMM filled (the forward's saved output Y_m; the backward's
DA_j), and stores the inputs of the matmuls of level k + 1 (the forward's A_m, the backward's
DY_m). So no matmul runs in C, and a pointwise value two segments need is recomputed by the
later one from the loads (cheap next to a GEMM, and no extra buffer).

Entry points per unit, level k and C type (``<unit>_hf<k>_<f32|f64>``, ``<unit>_hb<k>_...``),
all for processing step ``k`` of ``T`` (time ``t``: reversed by ``flags & 1``); buffers as in
``gprint.py``, plus DA_j (B, K_j), the backward's d(matmul input) of ``mmt`` node j:

* ``hf<k>(T, B, flags, k, X, St, P, A, Y, M, wk)``: forward segment (a padded row's A is zeroed, its
  state kept);
* ``hb<k>(T, B, flags, k, X, St, P, Y, Din, Dout, DX, dP, DY, DA, M, wk)``: backward segment; Din holds
  d(states after the step), the last segment writes d(states before it) to Dout; ``wk``: the
  caller's scratch of B * ``hybrid_source(...)[1]`` elements (a malloc per call would cost more
  than the segment at large B: it maps and faults in fresh pages).
"""
from __future__ import annotations

from dataclasses import dataclass

from rnnkit.engine.compiler.cprint import TYPES
from rnnkit.engine.compiler.ggrad import node_widths
from rnnkit.engine.compiler.gprint import _Step
from rnnkit.engine.compiler.ir import Graph

__all__ = ["HybridPlan", "hybrid_plan", "hybrid_source", "levels"]


def levels(g: Graph, op: str) -> dict[int, int]:
    """Level of every live node: the most ``op`` nodes (matmuls) on a path to it."""
    lv: dict[int, int] = {}
    for n in g.live():
        node = g.nodes[n]
        base = max((lv[a] for a in node.args), default=0)
        lv[n] = base + 1 if node.op == op else base
    return lv


@dataclass(frozen=True)
class HybridPlan:
    """The segments of one general cell. ``fwd[k]``/``bwd[k]``: segment graphs; ``fwd_mm[k]``:
    the matmuls m whose GEMMs run after forward segment k; ``bwd_mm[k]``: the backward GEMMs after
    segment k, as j: DA_j = DY_m W_w (W^T for a non-``lin`` matmul) with (m, w) = ``da[j]``: the
    matmul whose d(output) buffer holds the ``mmt`` node's argument, and one whose weight it uses
    (several matmuls may share one ``mmt`` node: same weight, same d(output))."""

    fwd: tuple[Graph, ...]
    bwd: tuple[Graph, ...]
    fwd_mm: tuple[tuple[int, ...], ...]
    bwd_mm: tuple[tuple[int, ...], ...]
    da: tuple[tuple[int, int], ...]


def _segment(g: Graph, replace: dict[int, tuple], outputs: dict[tuple, int]) -> Graph:
    """The part of ``g`` the outputs need, with the nodes in ``replace`` read as loads."""
    keep: set[int] = set()
    stack = list(outputs.values())
    while stack:  # the live nodes, not looking behind a replaced one
        n = stack.pop()
        if n not in keep:
            keep.add(n)
            stack.extend(() if n in replace else g.nodes[n].args)
    out = Graph()
    mapping: dict[int, int] = {}
    for n in sorted(keep):
        node = g.nodes[n]
        if n in replace:
            mapping[n] = out.load(*replace[n])
        else:
            mapping[n] = out.add(node.op, tuple(mapping[a] for a in node.args), node.attr,
                                 None if node.args else node.row)
    out.outputs = {k: mapping[v] for k, v in outputs.items()}
    return out


def hybrid_plan(fwd: Graph, bwd: Graph, mms: list[int]) -> HybridPlan:
    """Split a general cell's forward and backward graphs at their matmuls (module docstring)."""
    lv = levels(fwd, "mm")
    top = max((lv[n] for n in fwd.outputs.values()), default=0)
    yload = {n: ("y", m) for m, n in enumerate(mms)}
    fsegs, fmm = [], []
    for k in range(top + 1):
        if k < top:
            at = tuple(m for m, n in enumerate(mms) if lv[n] == k + 1)
            outs = {("a", m): fwd.nodes[mms[m]].args[0] for m in at}
            fmm.append(at)
        else:
            outs = dict(fwd.outputs)
        fsegs.append(_segment(fwd, yload, outs))
    mmts = [n for n in bwd.live() if bwd.nodes[n].op == "mmt"]
    dy_of = {v: k[1] for k, v in bwd.outputs.items() if k[0] == "dy"}
    attrs = [tuple(fwd.nodes[n].attr) for n in mms]
    da = tuple((dy_of[bwd.nodes[n].args[0]], attrs.index(tuple(bwd.nodes[n].attr))) for n in mmts)
    blv = levels(bwd, "mmt")
    btop = max((blv[n] for n in bwd.outputs.values()), default=0)
    daload = {n: ("da", j) for j, n in enumerate(mmts)}
    bsegs, bmm = [], []
    for k in range(btop + 1):
        if k < btop:
            at2 = tuple(j for j, n in enumerate(mmts) if blv[n] == k + 1)
            outs = {key: v for key, v in bwd.outputs.items() if key[0] == "dy" and blv[v] == k}
            bmm.append(at2)
        else:
            outs = {key: v for key, v in bwd.outputs.items() if key[0] != "dy" or blv[v] >= k}
        bsegs.append(_segment(bwd, daload, outs))
    return HybridPlan(tuple(fsegs), tuple(bsegs), tuple(fmm), tuple(bmm), da)


def hybrid_source(unit: str, hp: HybridPlan, loads: dict[tuple, int], seqs: tuple[int, ...],
                  states: tuple[int, ...], mm: tuple[tuple[int, bool, int, int], ...], pwidths: dict[int, int],
                  ctype: str) -> tuple[str, int]:
    """C of the hybrid segments of one general cell for one C type, and the scratch they need
    per batch row (elements). ``loads``: widths of the loads (``general._loads``); ``mm``: per
    matmul (param, lin, O, K); ``pwidths``: the vector parameters' widths."""
    sfx = dict((T, s) for T, s, _ in TYPES)[ctype]
    T = ctype
    K = [k for (_, _, _, k) in mm]
    O = [o for (_, _, o, _) in mm]
    loads = dict(loads)
    for j, (_, w) in enumerate(hp.da):
        loads[("da", j)] = K[w]
    load = {"x": lambda i: (f"X[{i}] + t * B * {seqs[i]}", str(seqs[i])),
            "s": lambda i: (f"St[{i}] + sb * B * {states[i]}", str(states[i])),
            "p": lambda i: (f"(const {T} *)P[{i}]", "0"),
            "y": lambda m: (f"Y[{m}] + t * B * {O[m]}", str(O[m])),
            "gy": lambda i: (f"Din[{i}]", str(states[i])),
            "da": lambda j: (f"DA[{j}]", str(K[hp.da[j][1]]))}
    step = ("const long t = (flags & 1) ? T - 1 - k : k, sb = (flags & 1) ? t + 1 : t, "
            "sa = (flags & 1) ? t : t + 1; (void)sa;")
    src, size = [], 1
    for k, g in enumerate(hp.fwd):
        f = _Step(g, node_widths(g, loads), T, load)
        for n in g.live():
            f.emit(n, {})
        for key, n in g.outputs.items():
            if key[0] == "a":
                f.store(f"(A[{key[1]}] + t * B * {K[key[1]]})", n, K[key[1]])
            else:
                i = key[1]
                f.store(f"(St[{i}] + sa * B * {states[i]})", n, states[i], keep=f"(St[{i}] + sb * B * {states[i]})")
        src.append(_function(f"{unit}_hf{k}_{sfx}", f"{T} *const *X, {T} *const *St, const void *const *P, "
                             f"{T} *const *A, {T} *const *Y", T, f, step))
        size = max(size, f.size)
    for k, g in enumerate(hp.bwd):
        b = _Step(g, node_widths(g, loads), T, load)
        for n in g.live():
            b.emit(n, {})
        for (kind, i), n in g.outputs.items():
            if kind == "dx":
                b.store(f"(DX[{i}] + t * B * {seqs[i]})", n, seqs[i])
            elif kind == "ds":
                b.store(f"Dout[{i}]", n, states[i], keep=f"Din[{i}]")
            elif kind == "dy":
                b.store(f"(DY[{i}] + t * B * {O[i]})", n, O[i])
            else:
                b.store(f"dP[{i}]", n, pwidths[i], acc=True)
        src.append(_function(f"{unit}_hb{k}_{sfx}", f"{T} *const *X, {T} *const *St, const void *const *P, "
                             f"{T} *const *Y, {T} *const *Din, {T} *const *Dout, {T} *const *DX, {T} *const *dP, "
                             f"{T} *const *DY, {T} *const *DA", T, b, step))
        size = max(size, b.size)
    return "".join(src), size


def _function(name: str, buffers: str, T: str, s: _Step, step: str) -> str:
    body = "".join(f"    {ln}\n" for ln in s.lines)
    return (f"void {name}(long T, long B, int flags, long k, {buffers}, const float *M, {T} *wk) {{\n"
            f"    unsigned char *rl = (unsigned char *)malloc(B);\n"
            f"    {step}\n    (void)wk; (void)X; (void)St; (void)P;\n"
            f"    for (long b = 0; b < B; ++b) rl[b] = !M || M[t * B + b] != 0;\n"
            f"{body}    free(rl);\n}}\n")
