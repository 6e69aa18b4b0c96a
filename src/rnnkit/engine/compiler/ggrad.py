"""Widths and the reverse-mode derivative of a general cell's IR (``gtrace.py``).

The backward graph reads what the forward kept: the inputs ("x", i), the states before the
step ("s", i), the parameters ("p", i) and, for every matmul m, its output ("y", m), so no
matmul runs again. It stores, per step and row, d(inputs) ("dx", i), d(states before the step)
("ds", i, the whole of it: the matmuls are inside the step), d(matmul output) ("dy", m), and
accumulates d(vector parameters) ("dp", i). The weight gradients are not in the graph: the
engine computes dW_m = sum over steps and rows of dy_m^T x_m as ONE GEMM per matmul at the end,
from the matmul inputs the forward stored and the dy_m the backward stored.

Derivatives: ``mm`` sends ``mmt(a)`` = a W (``lin``) or a W^T to its input; ``slice`` sends
``pad(a)`` (a in place, zeros around it); ``cat`` sends each piece its ``slice`` of a; every
other op takes its rule from ``ops.grad``.
"""
from __future__ import annotations

from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.grad import adjoints
from rnnkit.engine.compiler.ops import grad

__all__ = ["general_backward", "matmuls", "node_widths"]

GLOADS = ("x", "s", "p", "y", "gy", "da")  # "da": a hybrid segment's d(matmul input) (ghybrid.py)


def matmuls(fwd: Graph) -> list[int]:
    """The forward's live matmul nodes; their position is the matmul's index m."""
    return [n for n in fwd.live() if fwd.nodes[n].op == "mm"]


def node_widths(g: Graph, loads: dict[tuple, int], live: list[int] | None = None) -> dict[int, int]:
    """Width of every live node (1 for a row value). ``loads``: (op, *attr) -> width."""
    w: dict[int, int] = {}
    for n in (g.live() if live is None else live):
        node = g.nodes[n]
        if node.row:
            w[n] = 1
        elif node.op in GLOADS:
            w[n] = loads[(node.op, *node.attr)]
        elif node.op == "mm":
            w[n] = node.attr[2]
        elif node.op == "mmt":
            w[n] = node.attr[3]
        elif node.op == "slice":
            w[n] = node.attr[1]
        elif node.op == "pad":
            w[n] = node.attr[2]
        elif node.op == "cat":
            w[n] = sum(w[a] for a in node.args)
        else:
            w[n] = max(w[a] for a in node.args if not g.nodes[a].row)
    return w


def general_backward(fwd: Graph, loads: dict[tuple, int], n_seqs: int, n_states: int) -> Graph:
    """The backward graph of a general forward graph (see the module docstring)."""
    mms = matmuls(fwd)
    fw = node_widths(fwd, loads)
    g = Graph()
    mapping: dict[int, int] = {}
    width: dict[int, int] = {}
    y_of: dict[int, int] = {}  # backward id of ("y", m) -> m
    for n in fwd.live():
        node = fwd.nodes[n]
        if node.op == "mm":
            m = mms.index(n)
            mapping[n] = g.load("y", m)
            y_of[mapping[n]] = m
        else:
            mapping[n] = g.add(node.op, tuple(mapping[a] for a in node.args), node.attr,
                               None if node.args else node.row)
        width[mapping[n]] = fw[n]
    order = sorted(set(mapping.values()), reverse=True)
    adj: dict[int, list[int]] = {}
    for i in range(n_states):
        adj.setdefault(mapping[fwd.outputs[("s", i)]], []).append(g.load("gy", i))
    stores: dict[tuple, int] = {}
    zero = g.const(0.0)
    for n, node, a in adjoints(g, order, adj):
        contribs: list[tuple[int, int]] = []
        if node.op in ("x", "s", "p"):
            stores[("d" + node.op, node.attr[0])] = a
        elif n in y_of:
            m = y_of[n]
            stores[("dy", m)] = a
            mm = fwd.nodes[mms[m]]
            contribs = [(mapping[mm.args[0]], g.add("mmt", (a,), mm.attr, row=False))]
        elif node.op == "slice":
            x = node.args[0]
            contribs = [(x, g.add("pad", (a,), (node.attr[0], node.attr[1], width[x]), row=False))]
        elif node.op == "cat":
            at = 0
            for x in node.args:
                piece = a if g.nodes[a].row else g.add("slice", (a,), (at, width[x]), row=False)
                contribs.append((x, piece))
                at += width[x]
        else:
            contribs = grad(g, n, a)
        for arg, c in contribs:
            if c != zero:
                adj.setdefault(arg, []).append(c)
    for key in [("dx", i) for i in range(n_seqs)] + [("ds", i) for i in range(n_states)] + \
            [("dy", m) for m in range(len(mms))]:
        stores.setdefault(key, zero)
    g.outputs = stores
    return g
