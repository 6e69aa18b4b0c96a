"""The C printer's loops around the row functions: one printer, plain or regularised.

Each compiled cell gets, per C type, four loops that call its row functions (``cprint.py``):

* ``<unit>_fwd_seq_<T>`` / ``<unit>_bwd_seq_<T>``: the whole recurrence (matvec + rows, the
  padding mask M), for small batches;
* ``<unit>_step_fwd_<T>`` / ``<unit>_step_bwd_<T>``: one step for all rows, between two matmuls
  the caller runs on oneDNN (the hybrid path; masks and BPTT options stay in Python).

``zoned=True`` prints the same four loops as ``zfwd_seq``, ``zbwd_seq``, ``zstep_fwd`` and
``zstep_bwd`` around the zoneout row functions (``czone.py``), with these extra arguments:

* ``Z``, ``Zs``: per state, a pointer to its zoneout weights and their strides over time and
  batch rows (in elements; the H columns are contiguous), so a (T, B, H) training mask and the
  single (H,) row of an eval-mode ``1 - p`` (strides 0, 0) both serve;
* ``M`` (the per-step loops too): the (T, B) 1/0 padding mask, or NULL (a padded step keeps the
  state, zoned or not);
* ``HM`` (whole-sequence loops): the (B, H) recurrent-dropout mask, or NULL. The matvec reads
  ``h * HM`` and its backward multiplies ``d(hw) W`` by ``HM``. (The per-step loops leave the
  matmuls, and so this mask, to the Python driver.)

The skeleton (layout, step order, padding, matvecs) is printed once here for both forms, so the
regularised and unregularised loops cannot drift apart.
"""
from __future__ import annotations

__all__ = ["loop_functions"]


def loop_functions(unit: str, G: int, S: int, rec: int, summed: bool, T: str, sfx: str,
                   zoned: bool = False) -> str:
    """C source of the four loops of one unit for one C type ``T`` (suffix ``sfx``), plain or
    (``zoned``) taking the zoneout weights and masks described in the module docstring."""
    z = "z" if zoned else ""
    zargs = f", const {T} *const *Z, const long *Zs" if zoned else ""
    seq_args = f"const float *M{zargs}" + (f", const {T} *HM" if zoned else "")
    step_args = f", const float *M{zargs}" if zoned else ""
    zdecl = f" const {T} *zr[{S}];" if zoned else ""
    zrow = f"for (int i = 0; i < {S}; ++i) zr[i] = Z[i] + t * Zs[2 * i] + b * Zs[2 * i + 1];" if zoned else ""
    zr = ", zr" if zoned else ""
    rw = "x" if summed else "hw"  # the buffer the matvec adds h W to
    hw_row = "NULL" if summed else "HW + o"
    dhw_row = "NULL" if summed else "DHW + o"
    hw_init = "" if summed else (
        f"{T} *hw = HW + t * sT; for (long b = 0; b < B; ++b) {{ if (bias) memcpy(hw + b * sB, bias, "
        f"sizeof({T}) * G); else memset(hw + b * sB, 0, sizeof({T}) * G); }}")
    skip = f"""if (!REAL(t, b)) {{  /* a padded step kept the state: its gradient passes unchanged */
                memset(D + o, 0, sizeof({T}) * G);
                {"" if summed else f"memset(DHW + o, 0, sizeof({T}) * G);"}
                continue;
            }}"""
    # recurrent dropout (zoned loops only): the matvec reads h * HM, its backward d(h) += (d(hw) W) * HM
    hm_alloc = f"{T} *hm = HM ? ({T} *)malloc(sizeof({T}) * B * H) : NULL;" if zoned else ""
    hm_apply = "if (hm) { for (long i = 0; i < B * H; ++i) hm[i] = h[i] * HM[i]; h = hm; }" if zoned else ""
    bwd_alloc = (f"{T} *tmp = HM ? ({T} *)malloc(sizeof({T}) * B * H) : NULL;\n"
                 f"    {T} *zeros = ({T} *)calloc(H, sizeof({T}));  /* the gy of a state that got no gradient */"
                 ) if zoned else ""
    hm_bwd = (f"if (tmp) {{  /* recurrent dropout: d(h) += (d(hw) W) * HM */\n"
              f"            memset(tmp, 0, sizeof({T}) * B * H);\n"
              f"            mvt_{sfx}(B, G, H, {'D' if summed else 'DHW'} + t * sT, W, tmp, sB);\n"
              f"            for (long i = 0; i < B * H; ++i) dS[{rec}][i] += tmp[i] * HM[i];\n"
              f"        }} else ") if zoned else ""
    # the row functions: zoned ones take zr; the whole-sequence zoned backward has a gy for
    # every state (a zero row where none), the per-step one none (see cprint.row_functions)
    bwd_seq_row, no_gy = ("row_bwdzg", "zeros") if zoned else ("row_bwd", "NULL")
    return f"""
{"#include <stdlib.h>" if zoned else ""}
void {unit}_{z}fwd_seq_{sfx}(long T, long B, long H, int flags, {T} *X, {T} *HW, const {T} *W, const {T} *bias,
                      {T} *const *St, const {T} *const *P, {seq_args}) {{
    const long G = {G} * H; {T} *sp[{S}], *sn[{S}];{zdecl} LAYOUT
    {hm_alloc}
    for (long k = 0; k < T; ++k) {{
        STEP(k)
        {T} *x = X + t * sT;
        {hw_init}
        const {T} *h = St[{rec}] + sb * B * H;
        {hm_apply}
        mv_{sfx}(B, G, H, h, W, {rw}, sB);
        for (long b = 0; b < B; ++b) {{
            for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; sn[i] = St[i] + (sa * B + b) * H; }}
            {zrow}
            {unit}_row_fwd{z}_{sfx}(H, x + b * sB, {"NULL" if summed else "hw + b * sB"}, sp, sn, P, REAL(t, b){zr});
        }}
    }}
    {"free(hm);" if zoned else ""}
}}
void {unit}_{z}bwd_seq_{sfx}(long T, long B, long H, int flags, {T} *X, {T} *HW, const {T} *W, {T} *const *St,
                      const {T} *const *P, {T} *const *GY, {T} *const *dS, {T} *D, {T} *DHW, {T} *const *dP,
                      {seq_args}) {{
    const long G = {G} * H; {T} *sp[{S}], *ds[{S}]; const {T} *gy[{S}];{zdecl} LAYOUT
    {bwd_alloc}
    for (long k = T - 1; k >= 0; --k) {{
        STEP(k)
        for (long b = 0; b < B; ++b) {{
            const long r = t * B + b, o = t * sT + b * sB;
            {skip}
            for (int i = 0; i < {S}; ++i) {{
                sp[i] = St[i] + (sb * B + b) * H; ds[i] = dS[i] + b * H; gy[i] = GY[i] ? GY[i] + r * H : {no_gy};
            }}
            {zrow}
            {unit}_{bwd_seq_row}_{sfx}(H, X + o, {hw_row}, sp, gy, ds, D + o, {dhw_row}, dP, P{zr});
        }}
        {hm_bwd}mvt_{sfx}(B, G, H, {"D" if summed else "DHW"} + t * sT, W, dS[{rec}], sB);
    }}
    {"free(tmp); free(zeros);" if zoned else ""}
}}
void {unit}_{z}step_fwd_{sfx}(long T, long B, long H, int flags, long k, {T} *X, const {T} *hw, {T} *HW,
                       {T} *const *St, const {T} *const *P{step_args}) {{
    const long G = {G} * H; {T} *sp[{S}], *sn[{S}];{zdecl} LAYOUT
    STEP(k)
    for (long b = 0; b < B; ++b) {{
        const long o = t * sT + b * sB;
        {"" if summed else f"if (HW + o != hw + b * G) memcpy(HW + o, hw + b * G, sizeof({T}) * G);"}
        for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; sn[i] = St[i] + (sa * B + b) * H; }}
        {zrow}
        {unit}_row_fwd{"h" if summed else ""}{z}_{sfx}(H, X + o, hw + b * G, sp, sn, P, {"REAL(t, b)" if zoned else "1"}{zr});
    }}
}}
void {unit}_{z}step_bwd_{sfx}(long T, long B, long H, int flags, long k, {T} *X, {T} *HW, {T} *const *St,
                       const {T} *const *P, {T} *const *dS, {T} *D, {T} *DHW, {T} *const *dP{step_args}) {{
    const long G = {G} * H; {T} *sp[{S}], *ds[{S}];{zdecl} LAYOUT
    STEP(k)
    for (long b = 0; b < B; ++b) {{
        const long o = t * sT + b * sB;
        {skip if zoned else ""}
        for (int i = 0; i < {S}; ++i) {{ sp[i] = St[i] + (sb * B + b) * H; ds[i] = dS[i] + b * H; }}
        {zrow}
        {unit}_row_bwd{z}_{sfx}(H, X + o, {hw_row}, sp, NULL, ds, D + o, {dhw_row}, dP, P{zr});
    }}
}}
"""
