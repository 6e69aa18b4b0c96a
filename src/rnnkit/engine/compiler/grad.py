"""Rewrites of the traced IR and its reverse-mode derivative, both as IR graphs.

* :func:`sum_inputs`: when every use of the projected input block x_g and of hw_g is the sum
  x_g + hw_g (LSTM, Elman and most cells), the graph reads one load ("z", g) instead. The
  forward then stores only z (the matmul accumulates straight into the input buffer, the
  recurrent bias is folded into it once), and d(x) and d(hw) are one buffer.
* :func:`backward`: the backward graph of a forward graph. Its loads are the forward's plus
  ("gy", i), d(state i after the step); it recomputes the forward values it needs from the
  stored inputs (nothing but the inputs and the states is kept between the passes). Per-row
  reductions in the forward produce per-row reductions in the backward (the adjoint of a row
  value sums its column contributions), so LayerNorm cells differentiate like any other.
"""
from __future__ import annotations

from typing import Any, Iterator

from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.ops import RESULT_ONLY, grad

__all__ = ["adjoints", "backward", "save_activations", "sum_inputs"]



def adjoints(g: Graph, order: list[int], adj: dict[int, list[int]]) -> Iterator[tuple[int, Any, int]]:
    """Reverse-mode walk: for each node of ``order`` with contributions in ``adj``, its summed adjoint.

    Yields ``(n, node, a)`` for every node whose adjoint is not zero; a row node's column-wise
    contributions are summed over the features (``rsum``) first. The caller adds the node's own
    contributions to ``adj`` before asking for the next node, so later (smaller) ids see them.
    """
    zero = g.const(0.0)
    for n in order:
        if n not in adj:
            continue
        node = g.nodes[n]
        terms = adj.pop(n)
        if node.row:
            cols = [t for t in terms if not g.nodes[t].row]
            rows = [t for t in terms if g.nodes[t].row]
            if cols:
                rows.append(g.add("rsum", tuple(cols)))
            a = g.sum_of(rows)
        else:
            a = g.sum_of(terms)
        if a is None or a == zero:
            continue
        yield n, node, a

def sum_inputs(g: Graph, G: int) -> Graph | None:
    """The graph over ("z", b) = x_b + hw_b loads, or None when x or hw is used otherwise."""
    users = g.users()
    live = set(g.live())
    loads = {}
    for n in live:
        node = g.nodes[n]
        if node.op in ("x", "hw"):
            loads[(node.op, node.attr[0])] = n
    mapping: dict[int, int] = {}
    out = Graph()
    for (kind, b), n in loads.items():
        other = loads.get(("hw" if kind == "x" else "x", b))
        if other is None:
            return None
        for u in users[n]:
            if u not in live:
                continue
            node = g.nodes[u]
            if node.op != "add" or sorted(node.args) != sorted((n, other)):
                return None
            mapping[u] = out.load("z", b)
    for n in loads.values():
        mapping[n] = -1  # never read again: every user is rewritten
    g.replay(mapping, out)
    out.outputs = {k: mapping[v] for k, v in g.outputs.items()}
    return out


def backward(fwd: Graph, G: int, S: int, summed: bool) -> Graph:
    """The backward graph (see :func:`_backward`), with the activations the forward stores (see
    :func:`save_activations`) read instead of recomputed. May add ("a", g) stores to ``fwd``."""
    bwd, mapping = _backward(fwd, G, S, summed)
    return save_activations(fwd, bwd, mapping, G, summed)


def save_activations(fwd: Graph, bwd: Graph, mapping: dict[int, int], G: int, summed: bool) -> Graph:
    """Store activations over the input blocks the backward no longer needs (the trick of the
    retired hand-written kernels, for every cell): when input block g reaches the backward only
    through one unary op whose derivative reads its result alone (sigmoid, tanh, exp, relu, sqrt, rsqrt),
    directly (z_g) or through one add (x_g + something), the forward stores that op's result
    over block g (store ("a", g)) and the backward loads it instead of recomputing it."""
    live = set(bwd.live())
    users = {n: [u for u in us if u in live] for n, us in bwd.users().items()}
    back = {v: k for k, v in mapping.items()}  # backward id -> forward id (the replayed nodes)
    rebind: dict[int, int] = {}
    out = Graph()
    for n in sorted(live):
        node = bwd.nodes[n]
        if node.op != ("z" if summed else "x"):
            continue
        chain = users[n]
        if len(chain) != 1:
            continue
        u = chain[0]
        if not summed and bwd.nodes[u].op == "add" and len(users[u]) == 1:
            u = users[u][0]
        if bwd.nodes[u].op not in RESULT_ONLY or u in rebind or u not in back:
            continue
        b = node.attr[0]
        rebind[u] = out.load("a", b)
        fwd.outputs[("a", b)] = back[u]
    if not rebind:
        return bwd
    full = bwd.replay(dict(rebind), out)
    out.outputs = {k: full[v] for k, v in bwd.outputs.items()}
    return out


def _backward(fwd: Graph, G: int, S: int, summed: bool) -> tuple[Graph, dict[int, int]]:
    """The backward graph of ``fwd`` (see the module docstring). Stores: ("dz", b) or
    ("dx", b) and ("dhw", b) for every block, ("ds", i) for every state (the part of d(state
    before the step) that does not go through the matmul), ("dp", i, b) accumulated."""
    g = Graph()
    mapping = fwd.replay({}, g)
    outs = {k: mapping[v] for k, v in fwd.outputs.items()}
    order = sorted(set(mapping.values()), reverse=True)
    adj: dict[int, list[int]] = {}
    for i in range(S):
        adj.setdefault(outs[("s", i)], []).append(g.load("gy", i))
    stores: dict[tuple, int] = {}
    zero = g.const(0.0)
    for n, node, a in adjoints(g, order, adj):
        if node.op == "z":
            stores[("dz", node.attr[0])] = a
        elif node.op == "x":
            stores[("dx", node.attr[0])] = a
        elif node.op == "hw":
            stores[("dhw", node.attr[0])] = a
        elif node.op == "s":
            stores[("ds", node.attr[0])] = a
        elif node.op == "p":
            stores[("dp", *node.attr)] = a
        else:
            for arg, contrib in grad(g, n, a):
                if contrib != zero:
                    adj.setdefault(arg, []).append(contrib)
    keys = [("dz", b) for b in range(G)] if summed else [(k, b) for k in ("dx", "dhw") for b in range(G)]
    keys += [("ds", i) for i in range(S)]
    for k in keys:
        stores.setdefault(k, zero)
    g.outputs = stores
    return g, mapping
