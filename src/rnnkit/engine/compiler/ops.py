"""The op table of the cell compiler: folding, derivative, C and torch spelling of every op.

To add an op (see docs/compiler.md): give it a row in ``OPS`` (its C and torch spelling), a
derivative in ``_grad`` (or none, for ops whose gradient is zero), and teach the tracer
(``trace.py``) which torch call produces it. Every printer and the property test pick it up.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from rnnkit.engine.compiler.ir import Graph

__all__ = ["OPS", "fold", "grad", "c_expr", "torch_expr"]

# name -> (arity, C template, torch template). {0}, {1}, {2}: arguments; {F}: the C math suffix
# ("f" for float, "" for double); {T}: the C type. Templates are expressions.
OPS: dict[str, tuple[int, str, str]] = {
    "add": (2, "({0} + {1})", "({0} + {1})"),
    "sub": (2, "({0} - {1})", "({0} - {1})"),
    "mul": (2, "({0} * {1})", "({0} * {1})"),
    "div": (2, "({0} / {1})", "({0} / {1})"),
    "neg": (1, "(-{0})", "(-{0})"),
    "sigmoid": (1, "sg_{T}({0})", "torch.sigmoid({0})"),
    "tanh": (1, "th_{T}({0})", "torch.tanh({0})"),
    "relu": (1, "({0} > 0 ? {0} : ({T})0)", "torch.relu({0})"),
    "exp": (1, "exp{F}({0})", "torch.exp({0})"),
    "log": (1, "log{F}({0})", "torch.log({0})"),
    "abs": (1, "fabs{F}({0})", "torch.abs({0})"),
    "sqrt": (1, "sqrt{F}({0})", "torch.sqrt({0})"),
    "rsqrt": (1, "(({T})1 / sqrt{F}({0}))", "torch.rsqrt({0})"),
    "sign": (1, "(({T})({0} > 0) - ({T})({0} < 0))", "torch.sign({0})"),
    "detach": (1, "{0}", "{0}"),
    "max": (2, "({0} > {1} ? {0} : {1})", "torch.maximum({0}, {1})"),
    "min": (2, "({0} < {1} ? {0} : {1})", "torch.minimum({0}, {1})"),
    "gt": (2, "(({T})({0} > {1}))", "({0} > {1}).to(dt)"),
    "lt": (2, "(({T})({0} < {1}))", "({0} < {1}).to(dt)"),
    "ge": (2, "(({T})({0} >= {1}))", "({0} >= {1}).to(dt)"),
    "le": (2, "(({T})({0} <= {1}))", "({0} <= {1}).to(dt)"),
    "eq": (2, "(({T})({0} == {1}))", "({0} == {1}).to(dt)"),
    "where": (3, "({0} != 0 ? {1} : {2})", "torch.where({0} != 0, {1}, {2})"),
    # attributes: pow (exponent,), clamp (lo or None, hi or None)
    "pow": (1, "", ""),
    "clamp": (1, "", ""),
}
COMPARE = ("gt", "lt", "ge", "le", "eq")
# Unary ops whose derivative reads only their result: the forward may store the result in place of
# the input (grad.save_activations), so the backward does not recompute them.
RESULT_ONLY = ("sigmoid", "tanh", "exp", "relu", "sqrt", "rsqrt")
_EVAL: dict[str, Callable[..., float]] = {
    "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
    "neg": lambda a: -a, "max": max, "min": min,
}


def fold(g: Graph, op: str, args: tuple[int, ...], attr: tuple) -> int | None:
    """Constant folding and algebraic identities, applied as nodes are added (None: no rewrite)."""
    vals = [g.value(a) for a in args]
    if args and all(v is not None for v in vals) and op in _EVAL:
        return g.const(_EVAL[op](*vals))
    if op == "add":
        if vals[0] == 0.0:
            return args[1]
        if vals[1] == 0.0:
            return args[0]
    elif op == "sub":
        if vals[1] == 0.0:
            return args[0]
        if vals[0] == 0.0:
            return g.add("neg", (args[1],))
    elif op == "mul":
        if vals[0] == 0.0 or vals[1] == 0.0:
            return g.const(0.0)
        if vals[0] == 1.0:
            return args[1]
        if vals[1] == 1.0:
            return args[0]
        if vals[0] == -1.0:
            return g.add("neg", (args[1],))
        if vals[1] == -1.0:
            return g.add("neg", (args[0],))
    elif op == "div":
        if vals[0] == 0.0:
            return g.const(0.0)
        if vals[1] == 1.0:
            return args[0]
        if vals[0] is not None and vals[1] is not None and vals[1] != 0.0:
            return g.const(vals[0] / vals[1])
    elif op == "neg":
        if g.nodes[args[0]].op == "neg":
            return g.nodes[args[0]].args[0]
    elif op == "where":
        if vals[0] is not None:
            return args[1] if vals[0] != 0.0 else args[2]
        if args[1] == args[2]:
            return args[1]
    elif op == "pow" and attr[0] == 1.0:
        return args[0]
    return None


def grad(g: Graph, n: int, a: int) -> list[tuple[int, int]]:
    """Reverse mode: (argument, contribution) pairs for node n whose adjoint is node a."""
    node = g.nodes[n]
    x = node.args[0] if node.args else -1
    y = node.args[1] if len(node.args) > 1 else -1
    add, mul, c = g.add, (lambda p, q: g.add("mul", (p, q))), g.const
    op = node.op
    if op == "add":
        return [(x, a), (y, a)]
    if op == "sub":
        return [(x, a), (y, add("neg", (a,)))]
    if op == "mul":
        return [(x, mul(a, y)), (y, mul(a, x))]
    if op == "div":
        q = add("div", (a, y))
        return [(x, q), (y, add("neg", (mul(q, n),)))]
    if op == "neg":
        return [(x, add("neg", (a,)))]
    if op == "sigmoid":
        return [(x, mul(a, mul(n, add("sub", (c(1.0), n)))))]
    if op == "tanh":
        return [(x, mul(a, add("sub", (c(1.0), mul(n, n)))))]
    if op == "relu":  # relu(x) > 0 exactly where x > 0: the result alone decides (see grad.save_activations)
        return [(x, add("where", (add("gt", (n, c(0.0))), a, c(0.0))))]
    if op == "exp":
        return [(x, mul(a, n))]
    if op == "log":
        return [(x, add("div", (a, x)))]
    if op == "abs":
        return [(x, mul(a, add("sign", (x,))))]
    if op == "sqrt":
        return [(x, add("div", (mul(a, c(0.5)), n)))]
    if op == "rsqrt":
        return [(x, mul(a, mul(c(-0.5), mul(n, mul(n, n)))))]
    if op == "pow":
        e = node.attr[0]
        return [(x, mul(a, mul(c(e), add("pow", (x,), (e - 1.0,)))))]
    if op == "clamp":  # torch: the gradient passes where lo <= x <= hi
        lo, hi = node.attr
        keep = c(1.0)
        if lo is not None:
            keep = mul(keep, add("ge", (x, c(lo))))
        if hi is not None:
            keep = mul(keep, add("le", (x, c(hi))))
        return [(x, mul(a, keep))]
    if op in ("max", "min"):  # torch.maximum/minimum: ties split the gradient in halves
        win = add("gt" if op == "max" else "lt", (x, y))
        lose = add("lt" if op == "max" else "gt", (x, y))
        tie = add("eq", (x, y))
        half = mul(a, c(0.5))
        gx = add("where", (win, a, add("where", (tie, half, c(0.0)))))
        gy = add("where", (lose, a, add("where", (tie, half, c(0.0)))))
        return [(x, gx), (y, gy)]
    if op == "where":
        cond = node.args[0]
        return [(node.args[1], add("where", (cond, a, c(0.0)))), (node.args[2], add("where", (cond, c(0.0), a)))]
    if op == "rsum":
        return [(arg, a) for arg in node.args]
    return []  # loads, constants, counts, comparisons, sign, detach: no gradient


def _lit(v: float, ctype: str) -> str:
    if math.isinf(v):
        return ("-" if v < 0 else "") + ("HUGE_VALF" if ctype == "float" else "HUGE_VAL")
    text = repr(float(v))
    return f"(({ctype}){text}{'f' if ctype == 'float' else ''})"


def c_expr(g: Graph, n: int, name: Callable[[int], str], ctype: str) -> str:
    """The C expression of node n (its arguments spelled by ``name``)."""
    node = g.nodes[n]
    F = "f" if ctype == "float" else ""
    T = "f32" if ctype == "float" else "f64"
    if node.op == "const":
        return _lit(node.attr[0], ctype)
    if node.op == "count":
        k, corr = node.attr
        return f"(({ctype})({k} * H - {corr}))"
    args = [name(a) for a in node.args]
    if node.op == "rsum":
        return "(" + " + ".join(args) + ")"
    if node.op == "pow":
        e = node.attr[0]
        if e == 2.0:
            return f"({args[0]} * {args[0]})"
        if e == 0.5:
            return f"sqrt{F}({args[0]})"
        if e == -1.0:
            return f"(({ctype})1 / {args[0]})"
        return f"pow{F}({args[0]}, {_lit(e, ctype)})"
    if node.op == "clamp":
        lo, hi = node.attr
        v = args[0]
        if lo is not None:
            v = f"({v} < {_lit(lo, ctype)} ? {_lit(lo, ctype)} : {v})"
        if hi is not None:
            v = f"({v} > {_lit(hi, ctype)} ? {_lit(hi, ctype)} : {v})"
        return v
    return OPS[node.op][1].format(*args, F=F, T=T if node.op in ("sigmoid", "tanh") else ctype)


def torch_expr(g: Graph, n: int, name: Callable[[int], str]) -> str:
    """The torch expression of node n; ``dt`` is the compute dtype, ``H`` the hidden size."""
    node = g.nodes[n]
    if node.op == "const":
        return repr(float(node.attr[0]))
    if node.op == "count":
        k, corr = node.attr
        return f"float({k} * H - {corr})"
    args = [name(a) for a in node.args]
    if node.op == "rsum":
        return "(" + " + ".join(f"{a}.sum(1, keepdim=True)" for a in args) + ")"
    if node.op == "pow":
        return f"torch.pow({args[0]}, {float(node.attr[0])!r})"
    if node.op == "clamp":
        lo, hi = node.attr
        return f"torch.clamp({args[0]}, min={lo!r}, max={hi!r})"
    if node.op in ("max", "min", "where"):  # python floats become tensors of the other operand's kind
        args = [f"_t({a}, ref)" for a in args]
    return OPS[node.op][2].format(*args)
