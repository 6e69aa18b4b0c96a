"""Trace a general cell's ``step`` (several matmuls against its own parameters) into the IR.

A ``Structured`` cell has one recurrent matmul outside its ``pointwise``; a general
``rnnkit.Recurrent`` cell (the README's FeedbackRNN, a two-layer cell) holds its matmuls inside
``step``. Here ``step`` runs once on small real tensors under the same ``TorchFunctionMode`` as
``trace.py``, with one difference in what a node means: a node is a WHOLE per-row vector of some
width (an input of I features, a state of H, a matmul's O outputs), not a block of H columns.
Widths are fixed at trace time (the real tensors' sizes) and printed into the C as constants.

New nodes (``gprint.py`` prints them, ``ggrad.py`` differentiates them):

* ``mm`` (args ``(x,)``, attr ``(param, lin, O, K)``): ``x @ W^T`` (``lin``, W stored (O, K):
  ``F.linear``, ``x @ W.t()``) or ``x @ W`` (W stored (K, O)) against a 2-D parameter of the
  cell; a bias is an ordinary vector parameter added to it;
* ``slice`` (attr ``(start, width)``) and ``cat``: ``chunk``/``split``/``narrow``/``x[:, a:b]``
  and ``torch.cat`` along the features;
* in backward graphs only, ``mmt`` (``d(x) = d(y) W``) and ``pad`` (the gradient of a slice).

Loads: ("x", i) sequence i at this step, ("s", i) state i before the step, ("p", i) vector
parameter i (its index among ``cell.named_parameters()``), and in backward graphs ("y", m) the
output the forward saved for matmul m and ("gy", i) d(state i after the step).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.trace import Sym, Unsupported, _Tracer

__all__ = ["MATMULS", "general_reason", "trace_general"]

MATMULS = ("linear", "matmul", "mm", "__matmul__")
_TRANSPOSE = ("t", "transpose", "T", "mT")


class _GTracer(_Tracer):
    """The block tracer with whole-vector nodes, matmuls against the cell's 2-D parameters,
    slices and cats (see the module docstring)."""

    def __init__(self, graph: Graph, params: dict[int, tuple[int, Tensor]]) -> None:
        super().__init__(graph, 1, params)
        self.mats: dict[int, tuple[Tensor, int, bool]] = {}  # id -> (tensor, param index, is W^T of the storage)
        for pid, (i, p) in params.items():
            if p.dim() == 2 and p.shape[0] != 1:
                self.mats[pid] = (p, i, False)
        self.width: dict[int, int] = {}

    def traced(self, obj: Any) -> bool:
        return super().traced(obj) or (isinstance(obj, Tensor) and id(obj) in self.mats)

    def bind(self, t: Tensor, sym: Sym) -> Tensor:
        if isinstance(t, Tensor) and not (sym.row or sym.flat):
            if t.dim() not in (1, 2) or (t.dim() == 2 and t.shape[0] != 2 and not sym.param):
                raise Unsupported(f"a tensor of shape {tuple(t.shape)} (the compiler takes (B, features) rows)")
            self.width.setdefault(sym.blocks[0], int(t.shape[-1]))
        return super().bind(t, sym)

    def sym(self, obj: Any) -> Sym:
        if isinstance(obj, Tensor) and id(obj) in self.mats:
            raise Unsupported(f"a weight matrix of shape {tuple(obj.shape)} used other than in a matmul "
                              "(F.linear, @, matmul, mm)")
        if isinstance(obj, Tensor) and id(obj) in self.params and id(obj) not in self.syms:
            index, p = self.params[id(obj)]
            if p.dim() == 0 or p.dim() > 2 or (p.dim() == 2 and p.shape[0] != 1):
                raise Unsupported(f"a parameter of shape {tuple(p.shape)} used elementwise")
            node = self.g.load("p", index)
            self.width[node] = int(p.shape[-1])
            sym = Sym([node], param=p.dim() == 1)
            self.syms[id(obj)] = (obj, sym)
            return sym
        return super().sym(obj)

    def col(self, obj: Any, what: str) -> int:
        s = self.sym(obj)
        if s.row or s.flat:
            raise Unsupported(f"{what} of a per-row value")
        return s.blocks[0]

    # -------------------------------------------------------------- the mode
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        name = getattr(func, "__name__", "")
        if name == "__get__" and args and isinstance(args[0], Tensor) and id(args[0]) in self.mats:
            attr = getattr(getattr(func, "__self__", None), "__name__", "")
            result = func(*args, **(kwargs or {}))
            if attr in _TRANSPOSE:
                return self.transposed(args[0], result)
            return result
        return super().__torch_function__(func, types, args, kwargs)

    def transposed(self, mat: Tensor, result: Tensor) -> Tensor:
        t, index, flipped = self.mats[id(mat)]
        self.mats[id(result)] = (result, index, not flipped)
        return result

    def record(self, name: str, args: tuple, kwargs: dict, result: Any) -> Any:
        if name in _TRANSPOSE and isinstance(args[0], Tensor) and id(args[0]) in self.mats:
            if name == "transpose" and sorted(int(d) % 2 for d in args[1:3]) != [0, 1]:
                raise Unsupported("transpose of a weight matrix other than its two dimensions")
            return self.transposed(args[0], result)
        if name in MATMULS:
            return self.matmul(name, args, kwargs, result)
        if any(isinstance(a, Tensor) and id(a) in self.mats for a in args):
            raise Unsupported(f"{name} of a weight matrix (only matmuls take one)")
        if name in ("chunk", "split", "narrow", "tensor_split", "__getitem__"):
            return self.record_slices(name, args, kwargs, result)
        if name in ("cat", "concat", "concatenate"):
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            for p in parts:
                self.blocks_at(p, self.sym(p), dim)
            nodes = [self.col(p, "cat") for p in parts]
            node = nodes[0] if len(nodes) == 1 else self.g.add("cat", tuple(nodes))
            return self.bind(result, Sym([node]))
        if name == "layer_norm":
            raise Unsupported("layer_norm in a general cell (write it as mean/var ops, or use a Structured cell)")
        return super().record(name, args, kwargs, result)

    def matmul(self, name: str, args: tuple, kwargs: dict, result: Any) -> Any:
        x, w = args[0], (args[1] if len(args) > 1 else kwargs.get("weight", kwargs.get("other")))
        if not isinstance(w, Tensor) or id(w) not in self.mats:
            raise Unsupported(f"{name} whose right operand is not a 2-D parameter of the cell")
        if not isinstance(x, Tensor) or x.dim() != 2 or id(x) in self.mats:
            raise Unsupported(f"{name} of a left operand that is not a (B, features) tensor")
        _, index, flipped = self.mats[id(w)]
        lin = not flipped if name == "linear" else flipped  # y[o] = sum_k x[k] W[o, k] on the storage
        K, O = int(x.shape[-1]), int(result.shape[-1])
        node = self.g.add("mm", (self.col(x, name),), (index, lin, O, K), row=False)
        self.width[node] = O
        out = Sym([node])
        bias = kwargs.get("bias", args[2] if name == "linear" and len(args) > 2 else None)
        if bias is not None:
            out = self.elementwise("add", [out, self.sym(bias)])
        return self.bind(result, out)

    def slice_of(self, node: int, start: int, width: int, full: int) -> int:
        g = self.g
        if start == 0 and width == full:
            return node
        src = g.nodes[node]
        if src.op == "slice":  # a slice of a slice
            return self.slice_of(src.args[0], src.attr[0] + start, width, -1)
        if src.op == "cat":  # a slice inside one piece of a cat: that piece's slice
            at = 0
            for a in src.args:
                wa = self.width[a]
                if at <= start and start + width <= at + wa:
                    return self.slice_of(a, start - at, width, wa)
                at += wa
        out = g.add("slice", (node,), (int(start), int(width)))
        self.width[out] = int(width)
        return out

    def record_slices(self, name: str, args: tuple, kwargs: dict, result: Any) -> Any:
        x = args[0]
        s = self.sym(x)
        if s.row or s.flat:
            raise Unsupported("slicing a per-row value")
        node, full = s.blocks[0], int(x.shape[-1])
        if name == "__getitem__":
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if index and index[0] is Ellipsis:
                index = (slice(None),) * (x.dim() - len(index) + 1) + index[1:]
            if len(index) != x.dim() or any(i != slice(None) for i in index[:-1]) or \
                    not isinstance(index[-1], slice) or index[-1].step not in (None, 1):
                raise Unsupported("indexing other than a slice of the features, x[:, a:b]")
            start, stop, _ = index[-1].indices(full)
            return self.bind(result, Sym([self.slice_of(node, start, max(stop - start, 0), full)], param=s.param))
        default = 0 if s.param else -1
        dim = kwargs.get("dim", args[2] if len(args) > 2 else default)
        if name == "narrow":
            dim = args[1]
        self.blocks_at(x, s, dim)
        if name == "narrow":
            return self.bind(result, Sym([self.slice_of(node, int(args[2]), int(args[3]), full)], param=s.param))
        start = 0
        for piece in result:
            width = int(piece.shape[-1])
            self.bind(piece, Sym([self.slice_of(node, start, width, full)], param=s.param))
            start += width
        return result

    def reduce(self, x: Sym, kind: str, keepdim: bool, correction: float = 1.0) -> Sym:
        g = self.g
        if x.row or x.flat:
            raise Unsupported(f"{kind} of a per-row value")
        n, w = x.blocks[0], self.width[x.blocks[0]]
        total = g.add("rsum", (n,))
        if kind == "sum":
            out = total
        else:
            mean = g.add("div", (total, g.const(float(w))))
            if kind == "mean":
                out = mean
            else:
                dev = g.add("sub", (n, mean))
                out = g.add("div", (g.add("rsum", (g.add("mul", (dev, dev)),)), g.const(w - float(correction))))
                if kind == "std":
                    out = g.add("sqrt", (out,))
        return Sym([out], row=keepdim, flat=not keepdim)


def general_reason(cell: Any) -> str | None:
    """Why a cell is not a general cell the compiler takes (before tracing), or None."""
    if getattr(cell, "contexts", ()):
        return "contexts (the compiled general loop takes sequences and states only)"
    if tuple(cell.output_names) != tuple(cell.states):
        return "outputs other than the states"
    for n in cell.states:
        if len(tuple(cell.state_shape(n))) != 1:
            return f"state {n!r} of shape {tuple(cell.state_shape(n))} (the compiler takes (H,) states)"
    return None


def trace_general(cell: Any, widths: tuple[int, ...], dtype: torch.dtype = torch.float64
                  ) -> tuple[Graph, tuple[int, ...]]:
    """The forward IR of ``cell.step`` for sequences of these feature widths: outputs ("s", i).
    Also returns each state's width. Raises Unsupported."""
    why = general_reason(cell)
    if why is not None:
        raise Unsupported(why)
    params = list(cell.named_parameters())
    device = params[0][1].device if params else torch.device("cpu")
    graph = Graph()
    tracer = _GTracer(graph, {id(p): (i, p) for i, (_, p) in enumerate(params)})
    gen = torch.Generator(device=device).manual_seed(0)
    forked = [device] if device.type == "cuda" else []
    pdtype = params[0][1].dtype if params else dtype
    sizes = tuple(int(cell.state_shape(n)[0]) for n in cell.states)
    with torch.no_grad(), torch.random.fork_rng(devices=forked):
        seqs = {n: torch.randn(2, w, dtype=pdtype, device=device, generator=gen)
                for n, w in zip(cell.sequences, widths)}
        states = {n: torch.randn(2, h, dtype=pdtype, device=device, generator=gen) for n, h in zip(cell.states, sizes)}
        for i, t in enumerate(seqs.values()):
            tracer.bind(t, Sym([graph.load("x", i)]))
        for i, t in enumerate(states.values()):
            tracer.bind(t, Sym([graph.load("s", i)]))
        try:
            with tracer:
                out = cell.pack_outputs(cell.step(**seqs, **states))
        except Unsupported:
            raise
        except Exception as err:  # noqa: BLE001 - any failure keeps the cell on the autograd engine
            raise Unsupported(f"tracing raised {type(err).__name__}: {str(err)[:120]}") from err
    for i, t in enumerate(out):
        if not isinstance(t, Tensor) or tuple(t.shape) != (2, sizes[i]):
            raise Unsupported(f"output {cell.states[i]!r} is not a (B, {sizes[i]}) tensor")
        sym = tracer.sym(t)
        if sym.flat:
            raise Unsupported(f"output {cell.states[i]!r} is a per-row value")
        graph.outputs[("s", i)] = sym.blocks[0]
    return graph, sizes
