"""The C printer's regularised loops: zoneout and recurrent dropout inside the compiled step.

Zoneout (``rnnkit.engine.regularise``) mixes every state after every step,
``s_t = lerp(s_{t-1}, s_new, a)``, with a the weight of the new value (0/1 per unit in
training, 1 - p in eval). Done as torch ops between the steps, that mix is one more pass over
every state per step, and its backward a few more. Here the row functions do it in the pass
that computes the step (``row_functions(..., zoned=True)``): the forward stores the mix, the
backward hands ``a * g`` to the cell's own derivative and adds ``(1 - a) * g`` to the gradient
of the state before the step. The per-step and whole-sequence loops around them take:

* ``Z``, ``Zs``: per state, a pointer to its weights and their strides over time and batch
  rows (in elements; the H columns are contiguous), so a (T, B, H) training mask and the
  single (H,) row of an eval-mode ``1 - p`` (strides 0, 0) both serve;
* ``M``: the (T, B) 1/0 padding mask, or NULL (a padded step keeps the state, zoned or not);
* ``HM`` (whole-sequence loops): the (B, H) recurrent-dropout mask, or NULL. The matvec reads
  ``h * HM`` and its backward multiplies ``d(hw) W`` by ``HM``. (The per-step loops leave the
  matmuls, and so this mask, to the Python driver.)

These functions live in a unit of their own (``<unit>z``), built the first time a call needs
them: a model without zoneout never compiles them.
"""
from __future__ import annotations

from rnnkit.engine.compiler.cprint import TYPES, row_functions
from rnnkit.engine.compiler.ir import Graph

__all__ = ["zoned_source"]


def zoned_source(unit: str, fwd: Graph, bwd: Graph, G: int, S: int, P: int, rec: int, summed: bool,
                 ctype: str) -> str:
    """C source of one compiled cell's regularised loops for one C type ("float" or "double")."""
    sfx = dict((T, s) for T, s, _ in TYPES)[ctype]
    T = ctype
    hw_row = "NULL" if summed else "HW + o"
    zero_hw = "" if summed else f"memset(DHW + o, 0, sizeof({T}) * G);"
    rows = f"""
#include <stdlib.h>
#define ZROW(t, b) for (int i = 0; i < {S}; ++i) zr[i] = Z[i] + (t) * Zs[2 * i] + (b) * Zs[2 * i + 1];
void {unit}_zstep_fwd_{sfx}(long T, long B, long H, int flags, long k, {T} *X, const {T} *hw, {T} *HW,
                        {T} *const *St, const {T} *const *P, const float *M, const {T} *const *Z, const long *Zs) {{
    const long G = {G} * H; {T} *sp[{S}], *sn[{S}]; const {T} *zr[{S}]; LAYOUT
    STEP(k)
    for (long b = 0; b < B; ++b) {{
        const long o = t * sT + b * sB;
        {"" if summed else f"if (HW + o != hw + b * G) memcpy(HW + o, hw + b * G, sizeof({T}) * G);"}
        for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; sn[i] = St[i] + (sa * B + b) * H; }}
        ZROW(t, b)
        {unit}_row_fwd{"h" if summed else ""}z_{sfx}(H, X + o, hw + b * G, sp, sn, P, REAL(t, b), zr);
    }}
}}
void {unit}_zstep_bwd_{sfx}(long T, long B, long H, int flags, long k, {T} *X, {T} *HW, {T} *const *St,
                        const {T} *const *P, {T} *const *dS, {T} *D, {T} *DHW, {T} *const *dP,
                        const float *M, const {T} *const *Z, const long *Zs) {{
    const long G = {G} * H; {T} *sp[{S}], *ds[{S}]; const {T} *zr[{S}]; LAYOUT
    STEP(k)
    for (long b = 0; b < B; ++b) {{
        const long o = t * sT + b * sB;
        if (!REAL(t, b)) {{  /* a padded step kept the state: its gradient passes unchanged */
            memset(D + o, 0, sizeof({T}) * G);
            {zero_hw}
            continue;
        }}
        for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; ds[i] = dS[i] + b * H; }}
        ZROW(t, b)
        {unit}_row_bwdz_{sfx}(H, X + o, {hw_row}, sp, NULL, ds, D + o, {"NULL" if summed else "DHW + o"}, dP, P, zr);
    }}
}}
void {unit}_zfwd_seq_{sfx}(long T, long B, long H, int flags, {T} *X, {T} *HW, const {T} *W, const {T} *bias,
                       {T} *const *St, const {T} *const *P, const float *M, const {T} *const *Z, const long *Zs,
                       const {T} *HM) {{
    const long G = {G} * H; {T} *sp[{S}], *sn[{S}]; const {T} *zr[{S}]; LAYOUT
    {T} *hm = HM ? ({T} *)malloc(sizeof({T}) * B * H) : NULL;
    for (long k = 0; k < T; ++k) {{
        STEP(k)
        {T} *x = X + t * sT;
        {"" if summed else f"{T} *hw = HW + t * sT; for (long b = 0; b < B; ++b) {{ if (bias) memcpy(hw + b * sB, bias, sizeof({T}) * G); else memset(hw + b * sB, 0, sizeof({T}) * G); }}"}
        const {T} *h = St[{rec}] + sb * B * H;
        if (hm) {{ for (long i = 0; i < B * H; ++i) hm[i] = h[i] * HM[i]; h = hm; }}
        mv_{sfx}(B, G, H, h, W, {"x" if summed else "hw"}, sB);
        for (long b = 0; b < B; ++b) {{
            for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; sn[i] = St[i] + (sa * B + b) * H; }}
            ZROW(t, b)
            {unit}_row_fwdz_{sfx}(H, x + b * sB, {"NULL" if summed else "hw + b * sB"}, sp, sn, P, REAL(t, b), zr);
        }}
    }}
    free(hm);
}}
void {unit}_zbwd_seq_{sfx}(long T, long B, long H, int flags, {T} *X, {T} *HW, const {T} *W, {T} *const *St,
                       const {T} *const *P, {T} *const *GY, {T} *const *dS, {T} *D, {T} *DHW, {T} *const *dP,
                       const float *M, const {T} *const *Z, const long *Zs, const {T} *HM) {{
    const long G = {G} * H; {T} *sp[{S}], *ds[{S}]; const {T} *gy[{S}]; const {T} *zr[{S}]; LAYOUT
    {T} *tmp = HM ? ({T} *)malloc(sizeof({T}) * B * H) : NULL;
    {T} *zeros = ({T} *)calloc(H, sizeof({T}));  /* the gy of a state whose sequence got no gradient */
    for (long k = T - 1; k >= 0; --k) {{
        STEP(k)
        for (long b = 0; b < B; ++b) {{
            const long r = t * B + b, o = t * sT + b * sB;
            if (!REAL(t, b)) {{
                memset(D + o, 0, sizeof({T}) * G);
                {zero_hw}
                continue;
            }}
            for (int i = 0; i < {S}; ++i) {{
                sp[i] = St[i] + (sb * B + b) * H; ds[i] = dS[i] + b * H; gy[i] = GY[i] ? GY[i] + r * H : zeros;
            }}
            ZROW(t, b)
            {unit}_row_bwdzg_{sfx}(H, X + o, {hw_row}, sp, gy, ds, D + o, {"NULL" if summed else "DHW + o"}, dP, P, zr);
        }}
        if (tmp) {{  /* recurrent dropout: d(h) += (d(hw) W) * HM */
            memset(tmp, 0, sizeof({T}) * B * H);
            mvt_{sfx}(B, G, H, {"D" if summed else "DHW"} + t * sT, W, tmp, sB);
            for (long i = 0; i < B * H; ++i) dS[{rec}][i] += tmp[i] * HM[i];
        }} else {{
            mvt_{sfx}(B, G, H, {"D" if summed else "DHW"} + t * sT, W, dS[{rec}], sB);
        }}
    }}
    free(tmp);
    free(zeros);
}}
#undef ZROW
"""
    return row_functions(unit, fwd, bwd, G, S, P, summed, T, sfx, zoned=True) + rows
