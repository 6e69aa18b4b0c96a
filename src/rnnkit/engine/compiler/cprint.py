"""The C printer: row functions for a forward and a backward graph, and the loops around them.

For each compiled cell (a *unit*, named ``c<digest>``) and each of float32 and float64 it prints:

* ``<unit>_row_fwd_<T>`` / ``<unit>_row_bwd_<T>``: one batch row of one step (static inline).
  A graph with per-row reductions is printed as several loops over the H columns: loop m
  computes the column values the reductions of level m+1 need (and accumulates them), the row
  values of level m+1 are computed between loops, the last loop stores the outputs. Column
  values are recomputed in each loop rather than kept (no scratch memory per row). All loads of
  column j happen before any store to column j, so outputs may overwrite inputs in place.
* around them, the whole-sequence and per-step loops (``cloops.py``, one printer for the plain
  loops and the regularised ones of ``czone.py``).

Buffers are the engine's (``rnnkit.engine.structured``): X (T, B, G), HW (T, B, G) (cells that
do not only add x and hw), states (T+1, B, H), D/DHW the gradients, M (T, B) 1/0 masks. X, HW,
D and DHW are time-major in memory, or batch-major (flags bit 1): a batch-first projection that
the engine reads in place instead of transposing it.
"""
from __future__ import annotations

from typing import Any

from rnnkit.engine.compiler.cloops import loop_functions
from rnnkit.engine.compiler.ir import Graph, Node
from rnnkit.engine.compiler.ops import c_expr

__all__ = ["PRELUDE", "row_functions", "unit_source"]

PRELUDE = r"""
#include <math.h>
#include <stddef.h>
#include <string.h>
/* flags: bit 0 runs backwards in time; bit 1 says X, HW, D and DHW are batch-major (B, T, G) in
 * memory (the engine's time-major (T, B, G) view of a batch-first projection), else time-major. */
#define LAYOUT const int rev = flags & 1; const long sT = flags & 2 ? G : B * G, sB = flags & 2 ? T * G : G;
#define STEP(k) const long t = rev ? T - 1 - (k) : (k); const long sb = rev ? t + 1 : t; \
    const long sa = rev ? t : t + 1; (void)sb; (void)sa;
#define REAL(t, b) (M ? M[(t) * B + (b)] != 0 : 1)
"""

_TYPED = r"""
/* The argument is clamped where the result is already exact in this type, so exp never overflows:
 * under -ffast-math (finite math only) 1 / (1 + inf) may come out NaN, not 0. */
static inline {T} sg_{S}({T} x) {{
    x = x < -({T}){L} ? -({T}){L} : x > ({T}){L} ? ({T}){L} : x;
    return ({T})1 / (({T})1 + exp{F}(-x));
}}
static inline {T} th_{S}({T} x) {{
    x = x < -({T}){L2} ? -({T}){L2} : x > ({T}){L2} ? ({T}){L2} : x;
    return ({T})2 / (({T})1 + exp{F}(({T})-2 * x)) - ({T})1;
}}
/* y[b, j] += sum_k h[b, k] W[j, k]; row b of y starts at y + b * ys */
static void mv_{S}(long B, long G, long H, const {T} *h, const {T} *W, {T} *y, long ys) {{
    for (long b = 0; b < B; ++b) {{
        const {T} *hb = h + b * H; {T} *yb = y + b * ys;
        for (long j = 0; j < G; ++j) {{
            const {T} *w = W + j * H; {T} s = 0;
#pragma omp simd reduction(+ : s)
            for (long k = 0; k < H; ++k) s += w[k] * hb[k];
            yb[j] += s;
        }}
    }}
}}
/* dh[b, k] += sum_j d[b, j] W[j, k]; row b of d starts at d + b * ds */
static void mvt_{S}(long B, long G, long H, const {T} *d, const {T} *W, {T} *dh, long ds) {{
    for (long b = 0; b < B; ++b) {{
        const {T} *db = d + b * ds; {T} *o = dh + b * H;
        for (long j = 0; j < G; ++j) {{
            const {T} a = db[j];
            if (a == 0) continue;
            const {T} *w = W + j * H;
#pragma omp simd
            for (long k = 0; k < H; ++k) o[k] += a * w[k];
        }}
    }}
}}
"""

TYPES = (("float", "f32", "f"), ("double", "f64", ""))
CLAMP = {"f32": (80, 40), "f64": (700, 350)}  # |x| beyond which sigmoid / tanh are exactly 0, 1 or +-1


def prelude() -> str:
    return PRELUDE + "".join(_TYPED.format(T=T, S=S, F=F, L=CLAMP[S][0], L2=CLAMP[S][1]) for T, S, F in TYPES)


def _levels(g: Graph, live: list[int]) -> dict[int, int]:
    level: dict[int, int] = {}
    for n in live:
        node = g.nodes[n]
        base = max((level[a] for a in node.args), default=0)
        level[n] = base + 1 if node.op == "rsum" else base
    return level


def _closure(g: Graph, roots: list[int], stop: set[int] = frozenset()) -> tuple[list[int], set[int]]:  # type: ignore[assignment]
    """Column nodes the roots need inside a loop (stopping at row nodes and at ``stop``), in
    topological order, and the ``stop`` nodes reached."""
    seen: set[int] = set()
    hit: set[int] = set()
    stack = [r for r in roots if not g.nodes[r].row]
    while stack:
        n = stack.pop()
        if n in seen or n in hit:
            continue
        if n in stop:
            hit.add(n)
            continue
        seen.add(n)
        stack.extend(a for a in g.nodes[n].args if not g.nodes[a].row)
    return sorted(seen), hit


def _body(g: Graph, T: str, load: dict[str, object], store: object, extra: dict | None = None,
          pre: list[str] | None = None) -> list[str]:
    """Statements of a row function: staged loops (see the module docstring). ``extra``: more
    stores (key -> node) besides the graph's outputs.

    A column value that a later loop needs again is kept in a per-row scratch array (``k<n>``,
    H values on the stack) by the loop that first computes it, instead of being recomputed: a
    LayerNorm cell's gate activations are computed once, not once per reduction stage. Only the
    frontier is kept (the values the later loops reach first); loads are re-read."""
    outputs = {**g.outputs, **(extra or {})}
    live = g.live(list(outputs.values()))
    level = _levels(g, live)
    final = max((level[n] for n in outputs.values()), default=0)
    name = lambda n: c_expr(g, n, name, T) if g.nodes[n].op in ("const", "count") else f"v{n}"  # noqa: E731
    lines: list[str] = []
    rows = [n for n in live if g.nodes[n].row and g.nodes[n].op not in ("const", "count")]
    sums = [n for n in rows if g.nodes[n].op == "rsum"]
    roots = []
    for m in range(final + 1):
        r = [a for n in sums if level[n] == m + 1 for a in g.nodes[n].args]
        roots.append(r + list(outputs.values()) if m == final else r)
    kept: set[int] = set()
    for m in range(final + 1):
        for n in rows:  # row values of this level (rsums of this level were accumulated by loop m-1)
            if level[n] == m and g.nodes[n].op != "rsum":
                lines.append(f"const {T} v{n} = {c_expr(g, n, name, T)};")
        acc = [n for n in sums if level[n] == m + 1]
        cols, reused = _closure(g, roots[m], kept)
        later = [r for mm in range(m + 1, final + 1) for r in roots[mm]]
        keep = sorted(n for n in _closure(g, later, kept | set(cols))[1]
                      if n in cols and g.nodes[n].op not in load)
        for n in keep:
            lines.insert(0, f"{T} k{n}[H];")
        kept |= set(keep)
        for n in acc:
            lines.append(f"{T} v{n} = 0;")
        red = f" reduction(+ : {', '.join(f'v{n}' for n in acc)})" if acc else ""
        lines.append(f"#pragma omp simd{red}")
        lines.append("for (long j = 0; j < H; ++j) {")
        body = [f"    {ln}" for ln in pre or []] + [f"    const {T} v{n} = k{n}[j];" for n in sorted(reused)]
        for n in cols:
            node = g.nodes[n]
            if node.op in load:
                body.insert(len(pre or []), f"    const {T} v{n} = {load[node.op](*node.attr)};")  # type: ignore[operator]
            else:
                body.append(f"    const {T} v{n} = {c_expr(g, n, name, T)};")
        body += [f"    k{n}[j] = v{n};" for n in keep]
        lines += body
        for n in acc:
            lines.append(f"    v{n} += {' + '.join(name(a) for a in g.nodes[n].args)};")
        if m == final:
            for key, n in outputs.items():
                lines.append("    " + store(key, name(n)))  # type: ignore[operator]
        lines.append("}")
    return lines


def unit_source(unit: str, fwd: Graph, bwd: Graph, G: int, S: int, P: int, rec: int, summed: bool,
                ctype: str, zoned: bool = False) -> str:
    """C source of one compiled cell for one C type ("float" or "double"): its row functions and
    the loops around them, plain or (``zoned``) the regularised ones (``czone.py``)."""
    sfx = dict((T, S_) for T, S_, _ in TYPES)[ctype]
    return (row_functions(unit, fwd, bwd, G, S, P, summed, ctype, sfx, zoned=zoned)
            + loop_functions(unit, G, S, rec, summed, ctype, sfx, zoned=zoned))


def row_functions(unit: str, fwd: Graph, bwd: Graph, G: int, S: int, P: int, summed: bool, T: str, sfx: str,
                  zoned: bool = False) -> str:
    """The static row functions: ``row_fwd`` (and ``row_fwdh``, the per-step form of a summed
    cell) and ``row_bwd``. ``zoned=True`` prints the zoneout forms (``row_fwdz``, ``row_fwdhz``,
    ``row_bwdz``, see ``czone.py``): they take one more argument, ``zr``, per state a pointer to
    this row's H weights a of the new value; the forward stores ``lerp(s, s_new, a)`` (torch's
    formula) and the backward passes ``a * g`` to the cell and ``(1 - a) * g`` straight on."""
    z = "z" if zoned else ""
    zarg = f", const {T} *const *zr" if zoned else ""
    zptrs = [f"const {T} *const zr{i} = zr[{i}];" for i in range(S)] if zoned else []
    ptrs = [f"{T} *const sp{i} = sp[{i}]; {T} *const sn{i} = sn[{i}];" for i in range(S)] + zptrs
    ptrs += [f"const {T} *const p{i} = P[{i}];" for i in range(P)]
    f_load = {
        "x": lambda b: f"x[{b} * H + j]", "z": lambda b: f"x[{b} * H + j]", "a": lambda b: f"x[{b} * H + j]",
        "hw": lambda b: f"hw[{b} * H + j]",
        "s": lambda i: f"sp{i}[j]", "p": lambda i, b: f"p{i}[{b} * H + j]",
    }

    def f_store(key: tuple, v: str) -> str:
        if key[0] != "s":
            return f"x[{key[1]} * H + j] = {v};"
        i = key[1]
        if not zoned:
            return f"sn{i}[j] = real ? {v} : sp{i}[j];"
        # (a_ = 0 at a padded step; this form is the one gcc vectorizes: a select around the
        # whole mix was left scalar)
        return (f"{{ const {T} a_ = real ? zr{i}[j] : ({T})0, s_ = sp{i}[j]; "
                f"sn{i}[j] = a_ < ({T})0.5 ? s_ + a_ * ({v} - s_) : {v} - ({v} - s_) * (({T})1 - a_); }}")

    def row_fwd(name: str, load: dict, extra: dict | None) -> str:
        return (f"static __attribute__((noinline)) void {unit}_{name}{z}_{sfx}(long H, {T} *x, const {T} *hw, "
                f"{T} *const *sp, {T} *const *sn, const {T} *const *P, int real{zarg}) {{\n"
                f"    (void)hw; (void)P;\n" + "".join(f"    {p}\n" for p in ptrs)
                + "".join(f"    {ln}\n" for ln in _body(fwd, T, load, f_store, extra)) + "}\n")

    fwd_fn = row_fwd("row_fwd", f_load, None)
    if summed:
        # The per-step (hybrid) form of a summed cell reads z = x + hw in its loop and stores z
        # over the input blocks the forward does not overwrite with an activation, where the
        # backward reads it: no separate x += hw pass.
        h_load = {**f_load, "z": lambda b: f"(x[{b} * H + j] + hw[{b} * H + j])"}
        keep = {}
        for b in range(G):
            zn = fwd.index.get(Node("z", (), (b,), False))
            if zn is not None and ("a", b) not in fwd.outputs:
                keep[("a", b)] = zn
        fwd_fn += row_fwd("row_fwdh", h_load, keep)
    bptrs = [f"{T} *const sp{i} = sp[{i}]; {T} *const ds{i} = ds[{i}]; const {T} *const gy{i} = gy ? gy[{i}] : NULL;"
             for i in range(S)] + zptrs
    bptrs += [f"const {T} *const p{i} = P[{i}]; {T} *const dp{i} = dP[{i}];" for i in range(P)]
    b_load = dict(f_load)
    def b_store(key: tuple, v: str) -> str:
        kind = key[0]
        if kind in ("dz", "dx"):
            return f"dx[{key[1]} * H + j] = {v};"
        if kind == "dhw":
            return f"dhw[{key[1]} * H + j] = {v};"
        if kind == "ds":  # zoned: the kept share (1 - a) g passes straight to the state before
            return f"ds{key[1]}[j] = {v} + (({T})1 - za{key[1]}_) * zg{key[1]}_;" if zoned \
                else f"ds{key[1]}[j] = {v};"
        return f"dp{key[1]}[{key[2]} * H + j] += {v};"

    def row_bwd(name: str, g: Any) -> str:
        """g(i): d(state i after the step), as C. Zoned: every loop reads g and the weight a once,
        at its top (a select on ``gy ? gy[j] : 0`` there made gcc's -fPIC code 8x slower, so the
        zoned forms take no such select: ``row_bwdz`` has no gy, ``row_bwdzg`` a gy for every state)."""
        load = {**f_load, "gy": (lambda i: f"za{i}_ * zg{i}_") if zoned else g}
        pre = [f"const {T} zg{i}_ = {g(i)}, za{i}_ = zr{i}[j];" for i in range(S)] if zoned else None
        return (f"static __attribute__((noinline)) void {unit}_{name}_{sfx}(long H, const {T} *x, const {T} *hw, "
                f"{T} *const *sp, const {T} *const *gy, {T} *const *ds, {T} *dx, {T} *dhw, {T} *const *dP, "
                f"const {T} *const *P{zarg}) {{\n"
                f"    (void)hw; (void)dhw; (void)P; (void)dP; (void)gy;\n" + "".join(f"    {p}\n" for p in bptrs)
                + "".join(f"    {ln}\n" for ln in _body(bwd, T, load, b_store, pre=pre)) + "}\n")

    if not zoned:
        return fwd_fn + row_bwd("row_bwd", lambda i: f"(ds{i}[j] + (gy{i} ? gy{i}[j] : ({T})0))")
    return fwd_fn + row_bwd("row_bwdz", lambda i: f"ds{i}[j]") + row_bwd("row_bwdzg", lambda i: f"(ds{i}[j] + gy{i}[j])")
