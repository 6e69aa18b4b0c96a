"""Trace a Structured cell's ``pointwise`` into the block IR, with a TorchFunctionMode.

``pointwise`` runs once on small real tensors (batch 2, the cell's own H) while a
``TorchFunctionMode`` sees every torch-level call: Python control flow (``if self.peepholes``)
simply runs, each call is computed for real (so torch checks shapes), and the mode records the
call as IR nodes over blocks of H columns. Parameters used inside ``pointwise`` are found by
identity among ``cell.named_parameters()`` (weight and bias excluded). The first call the IR
cannot express raises :class:`Unsupported` naming it; the cell then keeps its autograd kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Number
from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from rnnkit.engine.compiler.ir import Graph

__all__ = ["Unsupported", "extra_params", "trace"]


class Unsupported(Exception):
    """A call in ``pointwise`` that the compiler cannot express (the message names it)."""


@dataclass
class Sym:
    """A traced tensor: node ids of its blocks (a row value has one row node)."""

    blocks: list[int]
    row: bool = False  # (B, 1): one value per batch row
    flat: bool = False  # (B,): a reduction without keepdim
    param: bool = False  # a 1-D parameter (k*H,)


def extra_params(cell: Any) -> tuple[tuple[str, Tensor], ...]:
    """The (name, parameter) pairs besides (weight, bias), in the order the kernels take them."""
    return tuple((n, p) for n, p in cell.named_parameters() if n not in ("weight", "bias"))


_PASS = {"__get__", "size", "dim", "__len__", "numel", "ndimension", "is_floating_point", "__format__",
         "__repr__", "type"}
_BINARY = {"add": "add", "__add__": "add", "__radd__": "add", "sub": "sub", "__sub__": "sub", "subtract": "sub",
           "mul": "mul", "__mul__": "mul", "__rmul__": "mul", "multiply": "mul", "div": "div", "divide": "div",
           "__truediv__": "div", "true_divide": "div", "__div__": "div", "maximum": "max", "minimum": "min",
           "gt": "gt", "__gt__": "gt", "greater": "gt", "lt": "lt", "__lt__": "lt", "less": "lt", "ge": "ge",
           "__ge__": "ge", "le": "le", "__le__": "le", "eq": "eq", "__eq__": "eq",
           "__rsub__": "rsub", "rsub": "rsub", "__rtruediv__": "rdiv", "__rdiv__": "rdiv"}
_UNARY = {"sigmoid": "sigmoid", "tanh": "tanh", "relu": "relu", "exp": "exp", "log": "log", "abs": "abs",
          "absolute": "abs", "sqrt": "sqrt", "rsqrt": "rsqrt", "sign": "sign", "neg": "neg", "negative": "neg",
          "__neg__": "neg", "expit": "sigmoid", "detach": "detach"}
_SAME = {"float", "double", "contiguous", "clone", "to", "type_as", "__pos__", "positive", "half", "bfloat16"}


class _Tracer(TorchFunctionMode):
    def __init__(self, graph: Graph, H: int, params: dict[int, tuple[int, Tensor]]) -> None:
        super().__init__()
        self.g, self.H, self.params = graph, H, params
        self.syms: dict[int, tuple[Tensor, Sym]] = {}

    # -------------------------------------------------------------- values
    def bind(self, t: Tensor, sym: Sym) -> Tensor:
        self.syms[id(t)] = (t, sym)
        return t

    def traced(self, obj: Any) -> bool:
        return isinstance(obj, Tensor) and (id(obj) in self.syms or id(obj) in self.params)

    def sym(self, obj: Any) -> Sym:
        g = self.g
        if isinstance(obj, bool) or isinstance(obj, Number):
            return Sym([g.const(float(obj))], row=True)  # type: ignore[arg-type]
        if not isinstance(obj, Tensor):
            raise Unsupported(f"an argument of type {type(obj).__name__}")
        if id(obj) in self.syms:
            return self.syms[id(obj)][1]
        if id(obj) in self.params:
            index, p = self.params[id(obj)]
            width = p.shape[-1] if p.dim() else 1
            if p.dim() == 0 or p.numel() != width or width % self.H or (p.dim() == 2 and p.shape[0] != 1) or p.dim() > 2:
                raise Unsupported(f"a parameter of shape {tuple(p.shape)} (the compiler takes (k*H,) vectors)")
            sym = Sym([g.load("p", index, b) for b in range(width // self.H)], param=p.dim() == 1)
            self.syms[id(obj)] = (obj, sym)
            return sym
        if obj.numel() == 1:
            return Sym([g.const(float(obj.item()))], row=True)
        raise Unsupported(f"a tensor of shape {tuple(obj.shape)} that is neither an input, a state nor a parameter")

    def blocks_at(self, t: Tensor, sym: Sym, dim: Any) -> None:
        last = t.dim() - 1
        if dim not in (last, -1):
            raise Unsupported(f"an operation along dim {dim} (only the feature dimension, -1, is supported)")
        if sym.row or sym.flat:
            raise Unsupported("slicing a per-row value")

    def piece(self, sym: Sym, start: int, width: int) -> Sym:
        if start % self.H or width % self.H:
            raise Unsupported(f"a slice [{start}:{start + width}] not aligned to blocks of H={self.H} features")
        return Sym(sym.blocks[start // self.H:(start + width) // self.H], param=sym.param)

    def elementwise(self, op: str, syms: list[Sym], attr: tuple = ()) -> Sym:
        n = max(len(s.blocks) for s in syms)
        for s in syms:
            if len(s.blocks) not in (1, n):
                raise Unsupported(f"{op} of tensors with {len(s.blocks)} and {n} blocks")
        nodes = [self.g.add(op, tuple(s.blocks[0 if len(s.blocks) == 1 else b] for s in syms), attr) for b in range(n)]
        return Sym(nodes, row=all(s.row for s in syms), flat=any(s.flat for s in syms))

    def reduce(self, x: Sym, kind: str, keepdim: bool, correction: float = 1.0) -> Sym:
        g = self.g
        if x.row or x.flat:
            raise Unsupported(f"{kind} of a per-row value")
        k = len(x.blocks)
        total = g.add("rsum", tuple(x.blocks))
        if kind == "sum":
            out = total
        else:
            mean = g.add("div", (total, g.add("count", (), (k, 0.0), row=True)))
            if kind == "mean":
                out = mean
            else:
                dev = [g.add("sub", (b, mean)) for b in x.blocks]
                sq = g.add("rsum", tuple(g.add("mul", (d, d)) for d in dev))
                out = g.add("div", (sq, g.add("count", (), (k, float(correction)), row=True)))
                if kind == "std":
                    out = g.add("sqrt", (out,))
        return Sym([out], row=keepdim, flat=not keepdim)

    # -------------------------------------------------------------- the mode
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", repr(func))
        if name in _PASS:
            return func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        flat += [a for x in flat if isinstance(x, (list, tuple)) for a in x]
        if not any(self.traced(a) for a in flat):
            return func(*args, **kwargs)  # constants made inside pointwise
        if name.endswith("_") and not name.endswith("__"):
            raise Unsupported(f"the in-place op {name} (write it out of place)")
        if "out" in kwargs:
            raise Unsupported(f"{name}(out=...)")
        result = func(*args, **kwargs)
        return self.record(name, args, kwargs, result)

    def record(self, name: str, args: tuple, kwargs: dict, result: Any) -> Any:
        g, S = self.g, self.sym
        if name in _BINARY:
            op = _BINARY[name]
            a, b = S(args[0]), S(args[1] if len(args) > 1 else kwargs.get("other"))
            alpha = kwargs.get("alpha", 1)
            if alpha != 1:
                b = self.elementwise("mul", [b, S(alpha)])
            if kwargs.get("rounding_mode") is not None:
                raise Unsupported(f"{name}(rounding_mode=...)")
            if op == "rsub":
                op, a, b = "sub", b, a
            elif op == "rdiv":
                op, a, b = "div", b, a
            return self.bind(result, self.elementwise(op, [a, b]))
        if name in ("max", "min") and len(args) == 2 and isinstance(args[1], Tensor):
            return self.bind(result, self.elementwise(name, [S(args[0]), S(args[1])]))
        if name in _UNARY:
            return self.bind(result, self.elementwise(_UNARY[name], [S(args[0])]))
        if name == "silu":
            x = S(args[0])
            return self.bind(result, self.elementwise("mul", [x, self.elementwise("sigmoid", [x])]))
        if name == "reciprocal":
            return self.bind(result, self.elementwise("div", [S(1.0), S(args[0])]))
        if name in ("pow", "__pow__", "square", "float_power"):
            e = 2.0 if name == "square" else (args[1] if len(args) > 1 else kwargs.get("exponent"))
            if isinstance(e, Tensor) and e.numel() == 1 and id(e) not in self.params and id(e) not in self.syms:
                e = float(e.item())
            if not isinstance(e, Number):
                raise Unsupported("pow with a tensor exponent (the compiler takes a constant)")
            return self.bind(result, self.elementwise("pow", [S(args[0])], (float(e),)))  # type: ignore[arg-type]
        if name == "__rpow__":
            base = args[1]
            if not isinstance(base, Number) or base <= 0:  # type: ignore[operator]
                raise Unsupported("a tensor power of a non-positive or tensor base")
            scaled = self.elementwise("mul", [S(args[0]), S(math.log(base))])  # type: ignore[arg-type]
            return self.bind(result, self.elementwise("exp", [scaled]))
        if name in ("clamp", "clip", "clamp_min", "clamp_max"):
            lo = kwargs.get("min", args[1] if len(args) > 1 else None)
            hi = kwargs.get("max", args[2] if len(args) > 2 else None)
            if name == "clamp_max":
                lo, hi = None, lo
            if any(isinstance(v, Tensor) for v in (lo, hi)):
                raise Unsupported(f"{name} with tensor bounds")
            attr = (None if lo is None else float(lo), None if hi is None else float(hi))
            return self.bind(result, self.elementwise("clamp", [S(args[0])], attr))
        if name == "where":
            if len(args) < 3:
                raise Unsupported("where with one argument")
            return self.bind(result, self.elementwise("where", [S(args[0]), S(args[1]), S(args[2])]))
        if name in _SAME:
            if isinstance(result, Tensor) and result.dtype not in (torch.float16, torch.bfloat16, torch.float32,
                                                                   torch.float64, torch.bool):
                raise Unsupported(f"{name} to {result.dtype}")
            return self.bind(result, S(args[0]))
        if name in ("zeros_like", "ones_like", "full_like"):
            value = 0.0 if name == "zeros_like" else 1.0 if name == "ones_like" else float(args[1])
            src = S(args[0])
            return self.bind(result, Sym([g.const(value)] * len(src.blocks), row=src.row, flat=src.flat))
        if name in ("chunk", "split", "narrow", "tensor_split"):
            return self.record_split(name, args, kwargs, result)
        if name == "__getitem__":
            return self.record_getitem(args, result)
        if name == "cat" or name == "concat" or name == "concatenate":
            parts = args[0]
            dim = kwargs.get("dim", args[1] if len(args) > 1 else 0)
            syms = [S(p) for p in parts]
            for p, s in zip(parts, syms):
                self.blocks_at(p, s, dim)
            return self.bind(result, Sym([b for s in syms for b in s.blocks]))
        if name in ("sum", "mean", "var", "std"):
            dim = kwargs.get("dim", args[1] if len(args) > 1 else None)
            if isinstance(dim, (list, tuple)) and len(dim) == 1:
                dim = dim[0]
            if dim not in (-1, 1) or args[0].dim() != 2:
                raise Unsupported(f"{name} over dim {dim} (only over the features of a (B, k*H) tensor)")
            keepdim = bool(kwargs.get("keepdim", args[2] if len(args) > 2 and name in ("sum", "mean") else False))
            corr = kwargs.get("correction")
            if corr is None:
                corr = 1.0 if kwargs.get("unbiased", True) else 0.0
            return self.bind(result, self.reduce(S(args[0]), name, keepdim, float(corr)))
        if name == "layer_norm":
            return self.bind(result, self.layer_norm(args, kwargs, result))
        if name == "unsqueeze":
            s = S(args[0])
            if not s.flat or args[1] not in (-1, 1):
                raise Unsupported("unsqueeze other than a (B,) reduction to (B, 1)")
            return self.bind(result, Sym(s.blocks, row=True))
        raise Unsupported(name)

    def record_split(self, name: str, args: tuple, kwargs: dict, result: Any) -> Any:
        x = args[0]
        s = self.sym(x)
        default = 0 if s.param else -1
        dim = kwargs.get("dim", args[2] if len(args) > 2 else default)
        if name == "narrow":
            dim, start, length = args[1], args[2], args[3]
        self.blocks_at(x, s, dim)
        if name == "narrow":
            return self.bind(result, self.piece(s, int(start), int(length)))
        start = 0
        for piece in result:
            width = piece.shape[-1]
            self.bind(piece, self.piece(s, start, width))
            start += width
        return result

    def record_getitem(self, args: tuple, result: Any) -> Any:
        x, index = args
        s = self.sym(x)
        if not isinstance(index, tuple):
            index = (index,)
        index = tuple(i for i in index if i is not Ellipsis) if index[0] is Ellipsis else index
        feature = index[-1] if len(index) == x.dim() or index[0] is Ellipsis else None
        if len(index) == 1 and x.dim() == 1:
            feature = index[0]
        others = index[:-1] if feature is not None else index
        if feature is None or any(i != slice(None) for i in others) or not isinstance(feature, slice) \
                or feature.step not in (None, 1) or s.row or s.flat:
            raise Unsupported("indexing other than a slice of the features, x[:, a:b]")
        start, stop, _ = feature.indices(x.shape[-1])
        return self.bind(result, self.piece(s, start, stop - start))

    def layer_norm(self, args: tuple, kwargs: dict, result: Tensor) -> Sym:
        x = args[0]
        shape = kwargs.get("normalized_shape", args[1] if len(args) > 1 else None)
        weight = kwargs.get("weight", args[2] if len(args) > 2 else None)
        bias = kwargs.get("bias", args[3] if len(args) > 3 else None)
        eps = kwargs.get("eps", args[4] if len(args) > 4 else 1e-5)
        if len(tuple(shape)) != 1 or x.dim() != 2:
            raise Unsupported("layer_norm over more than the features of a (B, k*H) tensor")
        s = self.sym(x)
        g = self.g
        mean = self.reduce(s, "mean", True)
        dev = self.elementwise("sub", [s, mean])
        var = g.add("div", (g.add("rsum", tuple(g.add("mul", (d, d)) for d in dev.blocks)),
                            g.add("count", (), (len(s.blocks), 0.0), row=True)))
        inv = g.add("rsqrt", (g.add("add", (var, g.const(float(eps)))),))
        out = self.elementwise("mul", [dev, Sym([inv], row=True)])
        if weight is not None:
            out = self.elementwise("mul", [out, self.sym(weight)])
        if bias is not None:
            out = self.elementwise("add", [out, self.sym(bias)])
        return out


def trace(cell: Any) -> tuple[Graph, tuple[str, ...]]:
    """The forward IR of ``cell.pointwise``: outputs ("s", i) for each state. Also returns the
    names of the extra parameters the IR's ("p", i, g) loads index. Raises Unsupported."""
    H, G = cell.hidden_size, cell.gates
    names = tuple(cell.states)
    w = cell.weight
    graph = Graph()
    params = extra_params(cell)
    by_id = {id(p): (i, p) for i, (_, p) in enumerate(params)}
    tracer = _Tracer(graph, H, by_id)
    # Example values from a private generator, and the user's pointwise run inside fork_rng:
    # compiling must not move torch's global RNG (a model's first call would otherwise draw other
    # dropout masks than later calls under the same seed).
    gen = torch.Generator(device=w.device).manual_seed(0)
    forked = [w.device] if w.device.type == "cuda" else []
    with torch.no_grad(), torch.random.fork_rng(devices=forked):
        x = torch.randn(2, G * H, dtype=w.dtype, device=w.device, generator=gen)
        hw = torch.randn(2, G * H, dtype=w.dtype, device=w.device, generator=gen)
        states = {n: torch.randn(2, H, dtype=w.dtype, device=w.device, generator=gen) for n in names}
        tracer.bind(x, Sym([graph.load("x", b) for b in range(G)]))
        tracer.bind(hw, Sym([graph.load("hw", b) for b in range(G)]))
        for i, n in enumerate(names):
            tracer.bind(states[n], Sym([graph.load("s", i)]))
        try:
            with tracer:
                out = cell.pack_outputs(cell.pointwise(inputs=x, hw=hw, **states))
        except Unsupported:
            raise
        except Exception as err:  # noqa: BLE001 - any failure keeps the cell on the autograd kernel
            raise Unsupported(f"tracing raised {type(err).__name__}: {str(err)[:120]}") from err
    if len(out) != len(names):
        raise Unsupported(f"pointwise returns {len(out)} values for {len(names)} states")
    for i, t in enumerate(out):
        if not isinstance(t, Tensor) or tuple(t.shape) != (2, H):
            raise Unsupported(f"output {names[i]!r} is not a (B, H) tensor")
        sym = tracer.sym(t)
        if len(sym.blocks) != 1 or sym.flat:
            raise Unsupported(f"output {names[i]!r} is not one block of H features")
        graph.outputs[("s", i)] = sym.blocks[0]
    return graph, tuple(n for n, _ in params)
