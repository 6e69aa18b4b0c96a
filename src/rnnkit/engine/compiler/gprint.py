"""The C printer of general cells (``gtrace.py``): a whole step per batch row, matmuls included.

Every column node is a vector of a width fixed at trace time (printed as a constant). The row
functions walk the live nodes in topological order: loads are pointers into the engine's
buffers, a slice is a pointer into its argument, a row value is a scalar, and every other
column node fills its own stretch of a scratch array, one ``omp simd`` loop per node. A matmul
is a matvec against the parameter's storage (``lin``: y[o] = sum_k x[k] W[o, k], dot products
over rows of W; else y[o] = sum_k x[k] W[k, o], rows of W scaled and added); the forward writes
its output straight into the saved-outputs buffer Y_m and copies its input to A_m, which the
engine's weight-gradient GEMM reads. ``mmt`` is the transposed matvec of the backward.

Entry points per unit and C type (``<unit>_<name>_<f32|f64>``); buffers are time-major,
X_i (T, B, I_i), states (T+1, B, H_i), A_m (T, B, K_m), Y_m / DY_m (T, B, O_m), M (T, B) 1/0:

* ``fwd_seq``: the whole forward recurrence (a padded step keeps the state and zeroes A);
* ``bwd_seq``: the whole backward (d(states) in dS (B, H_i) carry across steps);
* ``step_bwd``: the backward of one step k for all rows (d(states after) in Din, d(states
  before) to Dout), for a Python driver that taps, clips or truncates between steps.
"""
from __future__ import annotations

from rnnkit.engine.compiler.cprint import TYPES
from rnnkit.engine.compiler.ir import Graph
from rnnkit.engine.compiler.ops import c_expr

__all__ = ["general_source"]

_ALIAS = ("x", "s", "p", "y", "gy")


class _Row:
    """Prints one row function's body: node by node, in topological order."""

    def __init__(self, g: Graph, widths: dict[int, int], T: str, load: dict[str, object]) -> None:
        self.g, self.w, self.T, self.load = g, widths, T, load
        self.lines: list[str] = []
        self.size = 0  # scratch elements used
        self.filled: dict[int, str] = {}  # row node -> a scratch vector holding it

    def name(self, n: int) -> str:
        node = self.g.nodes[n]
        if node.op in ("const", "count"):
            return c_expr(self.g, n, self.name, self.T)
        return f"v{n}" if node.row else f"v{n}[j]"

    def scratch(self, n: int, width: int) -> str:
        self.lines.append(f"{self.T} *const v{n} = wk + {self.size};")
        self.size += width
        return f"v{n}"

    def vec(self, n: int, width: int) -> str:
        """A pointer to node n as a vector of ``width`` (a row value is broadcast once)."""
        if not self.g.nodes[n].row:
            return f"v{n}"
        key = (n, width)
        if key not in self.filled:  # type: ignore[comparison-overlap]
            ptr = f"f{n}_{width}"
            self.lines.append(f"{self.T} *const {ptr} = wk + {self.size};")
            self.lines.append(f"for (long j = 0; j < {width}; ++j) {ptr}[j] = {self.name(n)};")
            self.size += width
            self.filled[key] = ptr  # type: ignore[index]
        return self.filled[key]  # type: ignore[index]

    def loop(self, width: int, body: str, red: str = "") -> None:
        self.lines.append(f"#pragma omp simd{red}")
        self.lines.append(f"for (long j = 0; j < {width}; ++j) {body}")

    def emit(self, n: int, mm_out: dict[int, tuple[str, str]]) -> None:
        g, T = self.g, self.T
        node = g.nodes[n]
        op, w = node.op, self.w[n]
        if op in ("const", "count"):
            return
        if op in _ALIAS:
            self.lines.append(f"const {T} *const v{n} = {self.load[op](*node.attr)};")  # type: ignore[operator]
        elif op == "rsum":
            self.lines.append(f"{T} v{n} = 0;")
            for a in node.args:
                self.loop(self.w[a], f"v{n} += {self.name(a)};", f" reduction(+ : v{n})")
        elif node.row:
            self.lines.append(f"const {T} v{n} = {c_expr(g, n, self.name, T)};")
        elif op == "slice":
            self.lines.append(f"const {T} *const v{n} = v{node.args[0]} + {node.attr[0]};")
        elif op == "cat":
            self.scratch(n, w)
            at = 0
            for a in node.args:
                self.lines.append(f"memcpy(v{n} + {at}, {self.vec(a, self.w[a])}, sizeof({T}) * {self.w[a]});")
                at += self.w[a]
        elif op == "pad":  # attr (start, piece width, total width)
            a, (start, piece, total) = node.args[0], node.attr
            self.scratch(n, total)
            self.lines.append(f"memset(v{n}, 0, sizeof({T}) * {total});")
            self.lines.append(f"memcpy(v{n} + {start}, {self.vec(a, piece)}, sizeof({T}) * {piece});")
        elif op in ("mm", "mmt"):
            self.matvec(n, mm_out.get(n))
        else:
            self.scratch(n, w)
            self.loop(w, f"v{n}[j] = {c_expr(g, n, self.name, T)};")

    def matvec(self, n: int, saved: tuple[str, str] | None) -> None:
        """mm: y = x W^T (lin) or x W; mmt: d(x) = d(y) W (lin) or d(y) W^T. ``saved``: (A row, Y
        row) pointers of a forward matmul (its input is copied to A, its output written to Y)."""
        g, T = self.g, self.T
        node = g.nodes[n]
        p, lin, O, K = node.attr
        a = node.args[0]
        W = f"((const {T} *)P[{p}])"
        if node.op == "mm":
            rows, cols, dot = O, K, lin  # out[r] over r < O from in of K
        else:
            rows, cols, dot = K, O, not lin
        x = self.vec(a, cols)
        if saved is not None:
            self.lines.append(f"memcpy({saved[0]}, {x}, sizeof({T}) * {cols});")
            self.lines.append(f"{T} *const v{n} = {saved[1]};")
        else:
            self.scratch(n, rows)
        if dot:  # out[r] = sum_c W[r * cols + c] in[c]
            self.lines.append(f"for (long r = 0; r < {rows}; ++r) {{ const {T} *wr = {W} + r * {cols}; {T} s = 0;")
            self.loop(cols, f"s += wr[j] * {x}[j];", " reduction(+ : s)")
            self.lines.append(f"v{n}[r] = s; }}")
        else:  # out[r] = sum_c in[c] W[c * rows + r]
            self.lines.append(f"memset(v{n}, 0, sizeof({T}) * {rows});")
            self.lines.append(f"for (long c = 0; c < {cols}; ++c) {{ const {T} *wc = {W} + c * {rows}; "
                              f"const {T} xc = {x}[c];")
            self.loop(rows, f"v{n}[j] += xc * wc[j];")
            self.lines.append("}")

    def store(self, target: str, n: int, width: int, acc: bool = False) -> None:
        value = self.name(n)
        self.loop(width, f"{target}[j] {'+=' if acc else '='} {value};")


def _function(head: str, row: _Row) -> tuple[str, int]:
    return head + " {\n" + "".join(f"    {ln}\n" for ln in row.lines) + "}\n", row.size


def general_source(unit: str, fwd: Graph, bwd: Graph, fw: dict[int, int], bw: dict[int, int], seqs: tuple[int, ...],
                   states: tuple[int, ...], mms: list[int], ctype: str) -> str:
    """C source of one general cell for one C type ("float" or "double"). ``fw``/``bw``: node
    widths; ``seqs``/``states``: the widths of the sequences and states; ``mms``: the forward's
    matmul nodes, in their index order."""
    sfx = dict((T, s) for T, s, _ in TYPES)[ctype]
    T = ctype
    NX, NS, NM = len(seqs), len(states), len(mms)
    load = {"x": lambda i: f"xs[{i}]", "s": lambda i: f"sp[{i}]", "p": lambda i: f"(const {T} *)P[{i}]",
            "y": lambda m: f"ys[{m}]", "gy": lambda i: f"gin[{i}]"}
    f = _Row(fwd, fw, T, load)
    saved = {n: (f"as[{m}]", f"ys[{m}]") for m, n in enumerate(mms)}
    for n in fwd.live():
        f.emit(n, saved)
    for (_, i), n in fwd.outputs.items():
        f.store(f"sn[{i}]", n, states[i])
    fsrc, fsize = _function(f"static void {unit}_row_fwd_{sfx}({T} *wk, const {T} *const *xs, const {T} *const *sp, "
                            f"{T} *const *sn, const void *const *P, {T} *const *as, {T} *const *ys)", f)
    b = _Row(bwd, bw, T, load)
    for n in bwd.live():
        b.emit(n, {})
    for key, n in bwd.outputs.items():
        kind, i = key
        if kind == "dx":
            b.store(f"dx[{i}]", n, seqs[i])
        elif kind == "ds":
            b.store(f"gout[{i}]", n, states[i])
        elif kind == "dy":
            b.store(f"dy[{i}]", n, fwd.nodes[mms[i]].attr[2])
        else:
            b.store(f"dP[{i}]", n, _pwidth(fwd, fw, i), acc=True)
    bsrc, bsize = _function(f"static void {unit}_row_bwd_{sfx}({T} *wk, const {T} *const *xs, const {T} *const *sp, "
                            f"const {T} *const *gin, {T} *const *gout, const void *const *P, const {T} *const *ys, "
                            f"{T} *const *dx, {T} *const *dP, {T} *const *dy)", b)
    wk = max(fsize, bsize, 1) + sum(states)
    K = [fwd.nodes[n].attr[3] for n in mms]
    O = [fwd.nodes[n].attr[2] for n in mms]
    arr = lambda name, vals: f"static const long {name}[] = {{{', '.join(map(str, vals)) or '0'}}};"  # noqa: E731
    consts = "\n".join([arr(f"{unit}_NXw_{sfx}", seqs), arr(f"{unit}_NSw_{sfx}", states),
                        arr(f"{unit}_NK_{sfx}", K), arr(f"{unit}_NO_{sfx}", O)])
    Xw, Sw, Kw, Ow = (f"{unit}_{x}_{sfx}" for x in ("NXw", "NSw", "NK", "NO"))
    dims = f"enum {{ NX = {NX}, NS = {NS}, NM = {NM} }};"
    ptrs = (f"const {T} *xs[NX + 1]; const {T} *sp[NS + 1]; (void)xs; (void)sp;")
    row_at = (f"for (int i = 0; i < NX; ++i) xs[i] = X[i] + (t * B + b) * {Xw}[i];\n"
              f"            for (int i = 0; i < NS; ++i) sp[i] = St[i] + (sb * B + b) * {Sw}[i];")
    return "#include <stdlib.h>\n" + fsrc + bsrc + f"""
{consts}
#define GSTEP(k) const long t = (flags & 1) ? T - 1 - (k) : (k); const long sb = (flags & 1) ? t + 1 : t; \\
    const long sa = (flags & 1) ? t : t + 1; (void)sa;
void {unit}_fwd_seq_{sfx}(long T, long B, int flags, {T} *const *X, {T} *const *St, const void *const *P,
                     {T} *const *A, {T} *const *Y, const float *M) {{
    {dims} {ptrs} {T} *sn[NS + 1], *as[NM + 1], *ys[NM + 1];
    {T} *wk = ({T} *)malloc(sizeof({T}) * {wk});
    for (long k = 0; k < T; ++k) {{
        GSTEP(k)
        for (long b = 0; b < B; ++b) {{
            {row_at}
            for (int i = 0; i < NS; ++i) sn[i] = St[i] + (sa * B + b) * {Sw}[i];
            for (int m = 0; m < NM; ++m) {{ as[m] = A[m] + (t * B + b) * {Kw}[m]; ys[m] = Y[m] + (t * B + b) * {Ow}[m]; }}
            if (M && M[t * B + b] == 0) {{  /* a padded step keeps the state; A is zeroed for the dW GEMM */
                for (int i = 0; i < NS; ++i) memcpy(sn[i], sp[i], sizeof({T}) * {Sw}[i]);
                for (int m = 0; m < NM; ++m) memset(as[m], 0, sizeof({T}) * {Kw}[m]);
                continue;
            }}
            {unit}_row_fwd_{sfx}(wk, xs, sp, sn, P, as, ys);
        }}
    }}
    free(wk);
}}
static void {unit}_bwd_at_{sfx}({T} *wk, long T, long B, long t, long sb, long b, {T} *const *X, {T} *const *St,
                          const void *const *P, {T} *const *Y, const {T} *const *gin, {T} *const *gout,
                          {T} *const *DX, {T} *const *dP, {T} *const *DY, const float *M) {{
    {dims} {ptrs} const {T} *ys[NM + 1]; {T} *dx[NX + 1], *dy[NM + 1];
    for (int i = 0; i < NX; ++i) dx[i] = DX[i] + (t * B + b) * {Xw}[i];
    for (int m = 0; m < NM; ++m) {{ ys[m] = Y[m] + (t * B + b) * {Ow}[m]; dy[m] = DY[m] + (t * B + b) * {Ow}[m]; }}
    if (M && M[t * B + b] == 0) {{  /* a padded step kept the state: its gradient passes unchanged */
        for (int i = 0; i < NX; ++i) memset(dx[i], 0, sizeof({T}) * {Xw}[i]);
        for (int m = 0; m < NM; ++m) memset(dy[m], 0, sizeof({T}) * {Ow}[m]);
        for (int i = 0; i < NS; ++i) if (gout[i] != gin[i]) memcpy(gout[i], gin[i], sizeof({T}) * {Sw}[i]);
        return;
    }}
    {row_at}
    {unit}_row_bwd_{sfx}(wk, xs, sp, gin, gout, P, ys, dx, dP, dy);
}}
void {unit}_bwd_seq_{sfx}(long T, long B, int flags, {T} *const *X, {T} *const *St, const void *const *P,
                     {T} *const *Y, {T} *const *GY, {T} *const *dS, {T} *const *DX, {T} *const *dP, {T} *const *DY,
                     const float *M) {{
    {dims} const {T} *gin[NS + 1]; {T} *gout[NS + 1];
    {T} *wk = ({T} *)malloc(sizeof({T}) * {wk});
    for (long k = T - 1; k >= 0; --k) {{
        GSTEP(k)
        for (long b = 0; b < B; ++b) {{
            const int real = !M || M[t * B + b] != 0;
            {T} *g = wk + {max(fsize, bsize, 1)};
            for (int i = 0; i < NS; ++i) {{
                gout[i] = dS[i] + b * {Sw}[i];
                if (real) {{  /* d(state after) = what flows back + this step's output gradient */
                    const {T} *gy = GY[i] ? GY[i] + (t * B + b) * {Sw}[i] : NULL;
                    for (long j = 0; j < {Sw}[i]; ++j) g[j] = gout[i][j] + (gy ? gy[j] : 0);
                    gin[i] = g; g += {Sw}[i];
                }} else gin[i] = gout[i];
            }}
            {unit}_bwd_at_{sfx}(wk, T, B, t, sb, b, X, St, P, Y, gin, gout, DX, dP, DY, M);
        }}
    }}
    free(wk);
}}
void {unit}_step_bwd_{sfx}(long T, long B, int flags, long k, {T} *const *X, {T} *const *St, const void *const *P,
                      {T} *const *Y, {T} *const *Din, {T} *const *Dout, {T} *const *DX, {T} *const *dP,
                      {T} *const *DY, const float *M) {{
    {dims} const {T} *gin[NS + 1]; {T} *gout[NS + 1];
    {T} *wk = ({T} *)malloc(sizeof({T}) * {wk});
    GSTEP(k)
    for (long b = 0; b < B; ++b) {{
        for (int i = 0; i < NS; ++i) {{ gin[i] = Din[i] + b * {Sw}[i]; gout[i] = Dout[i] + b * {Sw}[i]; }}
        {unit}_bwd_at_{sfx}(wk, T, B, t, sb, b, X, St, P, Y, gin, gout, DX, dP, DY, M);
    }}
    free(wk);
}}
#undef GSTEP
"""


def _pwidth(fwd: Graph, fw: dict[int, int], i: int) -> int:
    """The width of vector parameter i (its load in the forward)."""
    for n in fwd.live():
        node = fwd.nodes[n]
        if node.op == "p" and node.attr[0] == i:
            return fw[n]
    raise KeyError(i)
