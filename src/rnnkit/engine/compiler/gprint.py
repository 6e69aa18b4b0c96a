"""The C printer of general cells (``gtrace.py``): a whole step for all batch rows, matmuls included.

Every column node is, per batch row, a vector of a width fixed at trace time (printed as a
constant); a row value is one scalar per row. The step functions walk the live nodes in
topological order, each node for all B rows before the next: loads are pointers into the
engine's buffers (row stride: the width; a parameter's is 0, it is shared by every row), a slice
is a pointer into its argument, and every other node fills its own (B, width) stretch of a
scratch array, one ``omp simd`` loop per row. A matmul loops over the weight's rows outside the
batch rows, so each row of W is read from memory once per step and reused from L1 by every
batch row (``lin``: y[o] = sum_k x[k] W[o, k], dot products; else y[o] = sum_k x[k] W[k, o],
rows of W scaled and added). The forward writes a matmul's output straight into the
saved-outputs buffer Y_m and copies its input to A_m, which the engine's weight-gradient GEMM
reads; ``mmt`` is the transposed matvec of the backward.

Entry points per unit and C type (``<unit>_<name>_<f32|f64>``); buffers are time-major,
X_i (T, B, I_i), states (T+1, B, H_i), A_m (T, B, K_m), Y_m / DY_m (T, B, O_m), M (T, B) 1/0:

* ``fwd_seq``: the whole forward recurrence (a padded row keeps its state; its A rows are zeroed);
* ``bwd_seq``: the whole backward (d(states) in dS (B, H_i) carry across steps);
* ``step_bwd``: the backward of one step k for all rows (d(states after) in Din, d(states
  before) to Dout), for a Python driver that taps, clips or truncates between steps.
"""
from __future__ import annotations

from rnnkit.engine.compiler.cprint import TYPES
from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.ops import c_expr

__all__ = ["general_source"]

_ALIAS = ("x", "s", "p", "y", "gy", "da")


class _Step:
    """Prints one step function's body (all B rows), node by node, in topological order."""

    def __init__(self, g: Graph, widths: dict[int, int], T: str, load: dict[str, object]) -> None:
        self.g, self.w, self.T, self.load = g, widths, T, load
        self.lines: list[str] = []
        self.size = 0  # scratch elements used per batch row
        self.stride: dict[int, str] = {}  # column node -> its row stride (a C constant)

    def name(self, n: int) -> str:
        """Node n at row b, column j (inside the row and column loops)."""
        node = self.g.nodes[n]
        if node.op in ("const", "count"):
            return c_expr(self.g, n, self.name, self.T)
        return f"v{n}[b]" if node.row else f"v{n}[b * {self.stride[n]} + j]"

    def scratch(self, n: int, width: int) -> None:
        self.lines.append(f"{self.T} *const v{n} = wk + B * {self.size};")
        self.size += width
        self.stride[n] = str(width)

    def rows(self, *body: str) -> None:
        self.lines.append("for (long b = 0; b < B; ++b) {")
        self.lines += [f"    {ln}" for ln in body]
        self.lines.append("}")

    def vec(self, n: int, width: int) -> tuple[str, str]:
        """(pointer, row stride) of node n as a vector of ``width`` (a row value is broadcast)."""
        if not self.g.nodes[n].row:
            return f"v{n}", self.stride[n]
        ptr = f"f{n}_{width}"
        if not any(ln.startswith(f"{self.T} *const {ptr} ") for ln in self.lines):
            self.lines.append(f"{self.T} *const {ptr} = wk + B * {self.size};")
            self.size += width
            self.rows(f"for (long j = 0; j < {width}; ++j) {ptr}[b * {width} + j] = {self.name(n)};")
        return ptr, str(width)

    def emit(self, n: int, saved: dict[int, tuple[str, str]]) -> None:
        g, T = self.g, self.T
        node = g.nodes[n]
        op, w = node.op, self.w[n]
        if op in ("const", "count"):
            return
        if op in _ALIAS:
            ptr, stride = self.load[op](*node.attr)  # type: ignore[operator]
            self.lines.append(f"const {T} *const v{n} = {ptr};")
            self.stride[n] = stride
        elif op == "rsum":
            self.scratch(n, 1)
            body = [f"{T} s = 0;"]
            for a in node.args:
                body += ["#pragma omp simd reduction(+ : s)", f"for (long j = 0; j < {self.w[a]}; ++j) s += {self.name(a)};"]
            self.rows(*body, f"v{n}[b] = s;")
        elif node.row:
            self.scratch(n, 1)
            self.rows(f"v{n}[b] = {c_expr(g, n, self.name, T)};")
        elif op == "slice":
            a = node.args[0]
            self.lines.append(f"const {T} *const v{n} = v{a} + {node.attr[0]};")
            self.stride[n] = self.stride[a]
        elif op == "cat":
            self.scratch(n, w)
            body, at = [], 0
            for a in node.args:
                ptr, stride = self.vec(a, self.w[a])
                body.append(f"memcpy(v{n} + b * {w} + {at}, {ptr} + b * {stride}, sizeof({T}) * {self.w[a]});")
                at += self.w[a]
            self.rows(*body)
        elif op == "pad":  # attr (start, piece width, total width)
            a, (start, piece, total) = node.args[0], node.attr
            ptr, stride = self.vec(a, piece)
            self.scratch(n, total)
            self.lines.append(f"memset(v{n}, 0, sizeof({T}) * B * {total});")
            self.rows(f"memcpy(v{n} + b * {total} + {start}, {ptr} + b * {stride}, sizeof({T}) * {piece});")
        elif op in ("mm", "mmt"):
            self.matvec(n, saved.get(n))
        else:
            self.scratch(n, w)
            self.rows("#pragma omp simd", f"for (long j = 0; j < {w}; ++j) v{n}[b * {w} + j] = {c_expr(g, n, self.name, T)};")

    def matvec(self, n: int, saved: tuple[str, str] | None) -> None:
        """mm: y = x W^T (lin) or x W; mmt: d(x) = d(y) W (lin) or d(y) W^T, for all B rows, each
        row of W read once. ``saved``: the (A, Y) step slabs of a forward matmul (its input is
        copied to A, its output written to Y)."""
        g, T = self.g, self.T
        node = g.nodes[n]
        p, lin, O, K = node.attr
        W = f"((const {T} *)P[{p}])"
        if node.op == "mm":
            rows, cols, dot = O, K, lin  # out[r] for r < O from an input of K
        else:
            rows, cols, dot = K, O, not lin
        x, xs = self.vec(node.args[0], cols)
        if saved is not None:
            self.rows(f"memcpy({saved[0]} + b * {cols}, {x} + b * {xs}, sizeof({T}) * {cols});")
            self.lines.append(f"{T} *const v{n} = {saved[1]};")
            self.stride[n] = str(rows)
        else:
            self.scratch(n, rows)
        if dot:  # out[b, r] = sum_c W[r * cols + c] x[b, c]
            self.lines += [f"for (long r = 0; r < {rows}; ++r) {{", f"    const {T} *wr = {W} + r * {cols};"]
            self.lines += ["    for (long b = 0; b < B; ++b) {", f"        const {T} *xb = {x} + b * {xs}; {T} s = 0;",
                           "#pragma omp simd reduction(+ : s)",
                           f"        for (long j = 0; j < {cols}; ++j) s += wr[j] * xb[j];",
                           f"        v{n}[b * {rows} + r] = s;", "    }", "}"]
        else:  # out[b, r] = sum_c x[b, c] W[c * rows + r]
            self.lines.append(f"memset(v{n}, 0, sizeof({T}) * B * {rows});")
            self.lines += [f"for (long c = 0; c < {cols}; ++c) {{", f"    const {T} *wc = {W} + c * {rows};"]
            self.lines += ["    for (long b = 0; b < B; ++b) {", f"        const {T} xc = {x}[b * {xs} + c]; "
                           f"{T} *ob = v{n} + b * {rows};", "#pragma omp simd",
                           f"        for (long j = 0; j < {rows}; ++j) ob[j] += xc * wc[j];", "    }", "}"]

    def store(self, target: str, n: int, width: int, keep: str | None = None, acc: bool = False) -> None:
        """target[b, j] = node n; ``keep``: a (B, width) slab padded rows keep; ``acc``: += over real rows."""
        value = self.name(n)
        if acc:
            self.rows("if (!rl[b]) continue;", "#pragma omp simd", f"for (long j = 0; j < {width}; ++j) {target}[j] += {value};")
        elif keep is None:
            self.rows("#pragma omp simd", f"for (long j = 0; j < {width}; ++j) {target}[b * {width} + j] = rl[b] ? {value} : 0;")
        else:
            self.rows("#pragma omp simd", f"for (long j = 0; j < {width}; ++j) {target}[b * {width} + j] = "
                      f"rl[b] ? {value} : {keep}[b * {width} + j];")


def general_source(unit: str, fwd: Graph, bwd: Graph, fw: dict[int, int], bw: dict[int, int], seqs: tuple[int, ...],
                   states: tuple[int, ...], mms: list[int], ctype: str) -> str:
    """C source of one general cell for one C type ("float" or "double"). ``fw``/``bw``: node
    widths; ``seqs``/``states``: the widths of the sequences and states; ``mms``: the forward's
    matmul nodes, in their index order."""
    sfx = dict((T, s) for T, s, _ in TYPES)[ctype]
    T = ctype
    K = [fwd.nodes[n].attr[3] for n in mms]
    O = [fwd.nodes[n].attr[2] for n in mms]
    load = {"x": lambda i: (f"X[{i}] + t * B * {seqs[i]}", str(seqs[i])),
            "s": lambda i: (f"St[{i}] + sb * B * {states[i]}", str(states[i])),
            "p": lambda i: (f"(const {T} *)P[{i}]", "0"),
            "y": lambda m: (f"Y[{m}] + t * B * {O[m]}", str(O[m])),
            "gy": lambda i: (f"gin[{i}]", str(states[i]))}
    f = _Step(fwd, fw, T, load)
    saved = {n: (f"(A[{m}] + t * B * {K[m]})", f"(Y[{m}] + t * B * {O[m]})") for m, n in enumerate(mms)}
    for n in fwd.live():
        f.emit(n, saved)
    for (_, i), n in fwd.outputs.items():
        f.store(f"(St[{i}] + sa * B * {states[i]})", n, states[i], keep=f"(St[{i}] + sb * B * {states[i]})")
    f.rows("if (rl[b]) continue;", *[f"memset(A[{m}] + (t * B + b) * {K[m]}, 0, sizeof({T}) * {K[m]});"
                                     for m in range(len(mms))])  # a padded row adds nothing to dW
    b = _Step(bwd, bw, T, load)
    for n in bwd.live():
        b.emit(n, {})
    for key, n in bwd.outputs.items():
        kind, i = key
        if kind == "dx":
            b.store(f"(DX[{i}] + t * B * {seqs[i]})", n, seqs[i])
        elif kind == "ds":
            b.store(f"gout[{i}]", n, states[i], keep=f"gin[{i}]")
        elif kind == "dy":
            b.store(f"(DY[{i}] + t * B * {O[i]})", n, O[i])
        else:
            b.store(f"dP[{i}]", n, _pwidth(fwd, fw, i), acc=True)
    head = (f"static void {unit}_%s_{sfx}({T} *wk, long B, long t, long sb, long sa, const unsigned char *rl, "
            f"{T} *const *X, {T} *const *St, const void *const *P, {T} *const *A, {T} *const *Y, "
            f"const {T} *const *gin, {T} *const *gout, {T} *const *DX, {T} *const *dP, {T} *const *DY)")
    body = lambda s: "".join(f"    {ln}\n" for ln in s.lines)  # noqa: E731
    wk = max(f.size, b.size, 1) + sum(states)
    src = ["#include <stdlib.h>\n",
           head % "step_fwd_at" + " {\n    (void)sa; (void)gin; (void)gout; (void)DX; (void)dP; (void)DY;\n" + body(f) + "}\n",
           head % "step_bwd_at" + " {\n    (void)sa; (void)A;\n" + body(b) + "}\n"]
    S = len(states)
    gin_fill = "".join(
        f"        {{ {T} *g = wk + B * {max(f.size, b.size, 1) + sum(states[:i])}; const {T} *gy = GY[{i}] ? GY[{i}] + t * B * {h} : NULL;\n"
        f"          for (long r = 0; r < B * {h}; ++r) g[r] = dS[{i}][r] + (gy && rl[r / {h}] ? gy[r] : 0);\n"
        f"          gin[{i}] = g; gout[{i}] = dS[{i}]; }}\n" for i, h in enumerate(states))
    real = ("        for (long b = 0; b < B; ++b) rl[b] = !M || M[t * B + b] != 0;\n")
    step = ("const long t = (flags & 1) ? T - 1 - k : k, sb = (flags & 1) ? t + 1 : t, "
            "sa = (flags & 1) ? t : t + 1;")
    src.append(f"""
void {unit}_fwd_seq_{sfx}(long T, long B, int flags, {T} *const *X, {T} *const *St, const void *const *P,
                     {T} *const *A, {T} *const *Y, const float *M) {{
    {T} *wk = ({T} *)malloc(sizeof({T}) * B * {wk}); unsigned char *rl = (unsigned char *)malloc(B);
    for (long k = 0; k < T; ++k) {{
        {step}
{real}        {unit}_step_fwd_at_{sfx}(wk, B, t, sb, sa, rl, X, St, P, A, Y, NULL, NULL, NULL, NULL, NULL);
    }}
    free(wk); free(rl);
}}
void {unit}_bwd_seq_{sfx}(long T, long B, int flags, {T} *const *X, {T} *const *St, const void *const *P,
                     {T} *const *Y, {T} *const *GY, {T} *const *dS, {T} *const *DX, {T} *const *dP, {T} *const *DY,
                     const float *M) {{
    {T} *wk = ({T} *)malloc(sizeof({T}) * B * {wk}); unsigned char *rl = (unsigned char *)malloc(B);
    const {T} *gin[{S}]; {T} *gout[{S}];
    for (long k = T - 1; k >= 0; --k) {{
        {step}
{real}{gin_fill}        {unit}_step_bwd_at_{sfx}(wk, B, t, sb, sa, rl, X, St, P, NULL, Y, gin, gout, DX, dP, DY);
    }}
    free(wk); free(rl);
}}
void {unit}_step_bwd_{sfx}(long T, long B, int flags, long k, {T} *const *X, {T} *const *St, const void *const *P,
                      {T} *const *Y, {T} *const *Din, {T} *const *Dout, {T} *const *DX, {T} *const *dP,
                      {T} *const *DY, const float *M) {{
    {T} *wk = ({T} *)malloc(sizeof({T}) * B * {wk}); unsigned char *rl = (unsigned char *)malloc(B);
    {step}
{real}    {unit}_step_bwd_at_{sfx}(wk, B, t, sb, sa, rl, X, St, P, NULL, Y, (const {T} *const *)Din, Dout, DX, dP, DY);
    free(wk); free(rl);
}}
""")
    return "".join(src)


def _pwidth(fwd: Graph, fw: dict[int, int], i: int) -> int:
    """The width of vector parameter i (its load in the forward)."""
    for n in fwd.live():
        node = fwd.nodes[n]
        if node.op == "p" and node.attr[0] == i:
            return fw[n]
    raise KeyError(i)
