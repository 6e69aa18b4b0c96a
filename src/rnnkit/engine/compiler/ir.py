"""The cell compiler's IR: a DAG of per-column scalar expressions over blocks of H features.

Every tensor inside a Structured cell's ``pointwise`` is (B, k*H): k *blocks* of H columns. The
IR names one block by one node, and a node means "this value at column j of one batch row", so
chunk/split/slice/cat along the features only re-index blocks and never reach the IR. Nodes are
of two kinds:

* **column** nodes vary with the column j (loads of inputs, states and parameters, and any
  elementwise op with a column argument);
* **row** nodes are the same for every column of a batch row: constants, counts such as k*H,
  per-row reductions (``rsum``: the sum over j of one or more column nodes) and elementwise ops
  of row nodes only (LayerNorm's mean and 1/sqrt(var + eps)).

A :class:`Graph` hash-conses its nodes (common subexpressions are shared) and folds constants as
they are added; node ids are in topological order. The op table (arity, derivative, C and torch
spelling) lives in ``ops.py``.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from rnnkit.engine.compiler.ops import fold

__all__ = ["Graph", "Node", "LOADS"]

# Loads: ("x", g) projected input block g, ("hw", g) block g of h W^T + b, ("z", g) their sum
# (a cell that only adds them), ("s", i) state i before the step, ("p", i, g) block g of extra
# parameter i, ("gy", i) the gradient of state i after the step, ("a", g) the activation the
# forward stored over input block g (backward graphs only; see grad.save_activations).
LOADS = ("x", "hw", "z", "s", "p", "gy", "a")


@dataclass(frozen=True)
class Node:
    op: str  # a load name, "const", "count", "rsum" or an op of ops.OPS
    args: tuple[int, ...] = ()
    attr: tuple = ()  # loads: their index; const: (value,); count: (blocks, correction); clamp: (lo, hi)
    row: bool = False  # True: one value per batch row (constant over the columns)


@dataclass
class Graph:
    """Nodes plus named outputs. ``outputs`` maps a store key to a node id:
    forward graphs store ("s", i) (state i after the step); backward graphs store ("dx", g),
    ("dhw", g), ("dz", g), ("ds", i) and ("dp", i, g) (accumulated over rows and steps)."""

    nodes: list[Node] = field(default_factory=list)
    index: dict[Node, int] = field(default_factory=dict)
    outputs: dict[tuple, int] = field(default_factory=dict)

    def add(self, op: str, args: tuple[int, ...] = (), attr: tuple = (), row: bool | None = None) -> int:
        if op == "rsum":
            row = True
        elif row is None:
            row = all(self.nodes[a].row for a in args) if args else op not in LOADS
        folded = fold(self, op, args, attr)
        if folded is not None:
            return folded
        node = Node(op, tuple(args), tuple(attr), row)
        found = self.index.get(node)
        if found is not None:
            return found
        self.nodes.append(node)
        self.index[node] = len(self.nodes) - 1
        return len(self.nodes) - 1

    # -------------------------------------------------------------- small builders
    def const(self, value: float) -> int:
        return self.add("const", (), (float(value),), row=True)

    def value(self, n: int) -> float | None:
        """The constant a node holds, or None."""
        node = self.nodes[n]
        return node.attr[0] if node.op == "const" else None

    def load(self, *key: object) -> int:
        return self.add(str(key[0]), (), tuple(key[1:]), row=False)

    def sum_of(self, terms: list[int]) -> int | None:
        """add(...) of the terms, None for no terms."""
        total = None
        for t in terms:
            total = t if total is None else self.add("add", (total, t))
        return total

    # -------------------------------------------------------------- analysis
    def users(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {i: [] for i in range(len(self.nodes))}
        for i, node in enumerate(self.nodes):
            for a in node.args:
                out[a].append(i)
        return out

    def live(self, roots: list[int] | None = None) -> list[int]:
        """Ids of the nodes the outputs (or ``roots``) depend on, in topological order."""
        seen: set[int] = set()
        stack = list(self.outputs.values()) if roots is None else list(roots)
        while stack:
            n = stack.pop()
            if n in seen:
                continue
            seen.add(n)
            stack.extend(self.nodes[n].args)
        return sorted(seen)

    def signature(self) -> str:
        """A text form of the live graph (stable across processes): what the cache keys hash."""
        keep = self.live()
        pos = {n: i for i, n in enumerate(keep)}
        lines = []
        for n in keep:
            node = self.nodes[n]
            lines.append(f"{node.op}{tuple(pos[a] for a in node.args)}{node.attr!r}{int(node.row)}")
        lines += [f"{k!r}={pos[v]}" for k, v in sorted(self.outputs.items(), key=lambda kv: repr(kv[0]))]
        return "\n".join(lines)

    def digest(self) -> str:
        return hashlib.sha256(self.signature().encode()).hexdigest()[:16]

    def replay(self, mapping: dict[int, int], target: "Graph") -> dict[int, int]:
        """Copy the live nodes into ``target``; ``mapping`` pre-binds some ids (rewrites)."""
        for n in self.live():
            if n in mapping:
                continue
            node = self.nodes[n]
            mapping[n] = target.add(node.op, tuple(mapping[a] for a in node.args), node.attr,
                                    None if node.args else node.row)
        return mapping
