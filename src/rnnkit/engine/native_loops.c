/* rnnkit's native time loops for the built-in cells at small batch sizes (float32).
 *
 * At B = 1 a step of an LSTM is ~65k multiply-adds; eager PyTorch spends far longer dispatching
 * the ~20 ops of a forward+backward step than computing them. These loops run the whole
 * recurrence (matvec + pointwise) in C, with the same buffers and layout as the eager kernels in
 * kernels.py:
 *   X  (T, B, G)   inputs with the recurrent bias folded in; overwritten with activations
 *   S  (T+1, B, H) states at the boundaries: forwards (rev = 0) the initial state is S[0] and the
 *                  state after time t is S[t+1]; backwards in time (rev = 1) the initial state
 *                  is S[T] and the state after time t is S[t]. All other buffers are in time order.
 *   D  (T, B, G)   d(pre-activations) (= d(xp)); DHW (T, B, G) d(hw) where it differs (GRU)
 *   M  (T, B)      1.0 for a real step, 0.0 for padding, or NULL
 *   GY (T, B, H)   gradient of the state sequence output, or NULL; read at real steps only (the
 *                  output is zero at padded steps, so its gradient there is ignored)
 * The step-wise state gradient dh (and dc) come in holding d(final state) and leave holding
 * d(initial state). LSTM gate order is torch's (i, f, g, o). Weights W are (G, H), row-major.
 * Built by rnnkit/engine/native.py with -O3 -march=native -ffast-math; no Python headers.
 */
#include <math.h>
#include <stddef.h>
#include <string.h>

/* Processing step k runs time t; the state before it is S[sb], after it S[sa]. */
#define STEP(k)                                   \
    const long t = rev ? T - 1 - (k) : (k);       \
    const long sb = rev ? t + 1 : t;              \
    const long sa = rev ? t : t + 1;              \
    (void)sb; (void)sa;

/* Arguments are clamped where the float result is already exact, so expf never overflows: under
 * -ffast-math (finite math only) 1 / (1 + inf) may come out NaN instead of 0, which made text
 * training on the hybrid kernels diverge once a pre-activation passed about -88. */
static inline float sigm(float x) {
    x = x < -80.0f ? -80.0f : x > 80.0f ? 80.0f : x;
    return 1.0f / (1.0f + expf(-x));
}
static inline float tnh(float x) {
    x = x < -40.0f ? -40.0f : x > 40.0f ? 40.0f : x;
    return 2.0f / (1.0f + expf(-2.0f * x)) - 1.0f;
}

/* y[b, j] += sum_k h[b, k] W[j, k] */
static void matvec_acc(long B, long G, long H, const float *h, const float *W, float *y) {
    for (long b = 0; b < B; ++b) {
        const float *hb = h + b * H;
        float *yb = y + b * G;
        for (long j = 0; j < G; ++j) {
            const float *w = W + j * H;
            float s = 0.0f;
#pragma omp simd reduction(+ : s)
            for (long k = 0; k < H; ++k) s += w[k] * hb[k];
            yb[j] += s;
        }
    }
}

/* dh[b, k] += sum_j d[b, j] W[j, k] */
static void matvec_t_acc(long B, long G, long H, const float *d, const float *W, float *dh) {
    for (long b = 0; b < B; ++b) {
        const float *db = d + b * G;
        float *o = dh + b * H;
        for (long j = 0; j < G; ++j) {
            const float a = db[j];
            if (a == 0.0f) continue;
            const float *w = W + j * H;
#pragma omp simd
            for (long k = 0; k < H; ++k) o[k] += a * w[k];
        }
    }
}

/* ------------------------------------------------------------------ Elman */
void elman_fwd(long T, long B, long H, int rev, int act, float *X, const float *W, float *S, const float *M) {
    for (long k = 0; k < T; ++k) {
        STEP(k)
        float *x = X + t * B * H;
        const float *hp = S + sb * B * H;
        float *hn = S + sa * B * H;
        matvec_acc(B, H, H, hp, W, x);
        for (long b = 0; b < B; ++b) {
            const int real = M ? M[t * B + b] != 0.0f : 1;
            for (long j = 0; j < H; ++j) {
                const long i = b * H + j;
                float v = x[i];
                v = act == 0 ? tnh(v) : act == 1 ? (v > 0.0f ? v : 0.0f) : v;
                hn[i] = real ? v : hp[i];
            }
        }
    }
}

void elman_bwd(long T, long B, long H, int rev, int act, const float *W, const float *S, const float *GY,
               float *dh, float *D, const float *M) {
    for (long k = T - 1; k >= 0; --k) {
        STEP(k)
        const float *hn = S + sa * B * H;
        float *d = D + t * B * H;
        for (long b = 0; b < B; ++b) {
            const int real = M ? M[t * B + b] != 0.0f : 1;
            for (long j = 0; j < H; ++j) {
                const long i = b * H + j;
                const float g = dh[i] + (GY ? GY[t * B * H + i] : 0.0f);
                if (!real) { d[i] = 0.0f; continue; }  /* padding: dh passes through, GY is ignored */
                const float h = hn[i];
                d[i] = act == 0 ? g * (1.0f - h * h) : act == 1 ? (h > 0.0f ? g : 0.0f) : g;
                dh[i] = 0.0f;
            }
        }
        matvec_t_acc(B, H, H, d, W, dh);
    }
}

/* ------------------------------------------------------------------ one batch row of one step
 * The pointwise math of each cell, shared by the whole-sequence loops (B <= MAX_BATCH, masks
 * handled here) and the per-step entry points of the hybrid kernels (masks handled by the
 * Python driver, so real == 1 and the gradients of the outputs are already added: gy == NULL).
 * Calls with constant arguments are inlined and folded. */

/* LSTM, gates (i, f, g, o). x + q: the pre-activations (x the projected input with the bias
 * folded in, q = h W^T); r: the activations, may be x itself. A padded row carries c and h. */
static inline void lstm_row_fwd(long H, const float *x, const float *q, float *r, const float *cp, float *cn,
                                const float *hp, float *hn, int real) {
    const long G = 4 * H;
#pragma omp simd
    for (long j = 0; j < 2 * H; ++j) r[j] = sigm(x[j] + q[j]);
#pragma omp simd
    for (long j = 2 * H; j < 3 * H; ++j) r[j] = tnh(x[j] + q[j]);
#pragma omp simd
    for (long j = 3 * H; j < G; ++j) r[j] = sigm(x[j] + q[j]);
#pragma omp simd
    for (long j = 0; j < H; ++j) {
        const float c = r[H + j] * cp[j] + r[j] * r[2 * H + j];
        cn[j] = real ? c : cp[j];
        hn[j] = real ? r[3 * H + j] * tnh(c) : hp[j];
    }
}

/* d(h_t) = dh + gyh, d(c_t) = dc + gyc (gy may be NULL) -> d(pre-activations) in q (which may be
 * r itself); dc leaves holding d(c_{t-1})'s direct part. tanh(c_t) is recomputed from the stored
 * cell state rather than kept: one buffer less. */
static inline void lstm_row_bwd(long H, const float *r, const float *cp, const float *cn, const float *gyh,
                                const float *gyc, const float *dh, float *dc, float *q) {
#pragma omp simd
    for (long j = 0; j < H; ++j) {
        const float gh = dh[j] + (gyh ? gyh[j] : 0.0f);
        const float ig = r[j], fg = r[H + j], gg = r[2 * H + j], og = r[3 * H + j], th = tnh(cn[j]);
        const float gc = dc[j] + (gyc ? gyc[j] : 0.0f) + gh * og * (1.0f - th * th);
        q[j] = gc * gg * ig * (1.0f - ig);
        q[H + j] = gc * cp[j] * fg * (1.0f - fg);
        q[2 * H + j] = gc * ig * (1.0f - gg * gg);
        q[3 * H + j] = gh * th * og * (1.0f - og);
        dc[j] = gc * fg;
    }
}

/* GRU, reset-after, gates (r, z, n). r: the projected input row, overwritten with the
 * activations; q = h W^T + b_hh. A padded row carries h. */
static inline void gru_row_fwd(long H, float *r, const float *q, const float *hp, float *hn, int real) {
#pragma omp simd
    for (long j = 0; j < 2 * H; ++j) r[j] = sigm(r[j] + q[j]);
#pragma omp simd
    for (long j = 0; j < H; ++j) {
        const float n = tnh(r[2 * H + j] + r[j] * q[2 * H + j]);
        r[2 * H + j] = n;
        hn[j] = real ? n + r[H + j] * (hp[j] - n) : hp[j];
    }
}

/* d(h_t) = dh + gy (gy may be NULL) -> d(x-row) in p and d(hw) in pw; dh leaves holding the
 * direct part of d(h_{t-1}). p may be r and pw may be q: each value is read before its slot is
 * written. */
static inline void gru_row_bwd(long H, const float *r, const float *q, const float *hp, const float *gy, float *dh,
                               float *p, float *pw) {
#pragma omp simd
    for (long j = 0; j < H; ++j) {
        const float g = dh[j] + (gy ? gy[j] : 0.0f);
        const float rg = r[j], zg = r[H + j], n = r[2 * H + j];
        const float dn = g * (1.0f - zg) * (1.0f - n * n);
        const float dz = g * (hp[j] - n) * zg * (1.0f - zg);
        const float dr = dn * q[2 * H + j] * rg * (1.0f - rg);
        p[j] = dr; p[H + j] = dz; p[2 * H + j] = dn;
        pw[j] = dr; pw[H + j] = dz; pw[2 * H + j] = dn * rg;
        dh[j] = g * zg;
    }
}

#define REAL(t, b) (M ? M[(t) * B + (b)] != 0.0f : 1)
#define ROW(buf, t, b, width) ((buf) ? (buf) + ((t) * B + (b)) * (width) : NULL)

/* ------------------------------------------------------------------ LSTM, whole sequence */
/* HW: (B, 4H) scratch for h W^T. */
void lstm_fwd(long T, long B, long H, int rev, float *X, float *HW, const float *W, float *Sh, float *Sc,
              const float *M) {
    const long G = 4 * H;
    for (long k = 0; k < T; ++k) {
        STEP(k)
        float *g = X + t * B * G;
        const float *hp = Sh + sb * B * H, *cp = Sc + sb * B * H;
        float *hn = Sh + sa * B * H, *cn = Sc + sa * B * H;
        memset(HW, 0, sizeof(float) * B * G);
        matvec_acc(B, G, H, hp, W, HW);
        for (long b = 0; b < B; ++b)
            lstm_row_fwd(H, g + b * G, HW + b * G, g + b * G, cp + b * H, cn + b * H, hp + b * H, hn + b * H,
                         REAL(t, b));
    }
}

void lstm_bwd(long T, long B, long H, int rev, const float *X, const float *W, const float *Sc,
              const float *GYh, const float *GYc, float *dh, float *dc, float *D, const float *M) {
    const long G = 4 * H;
    for (long k = T - 1; k >= 0; --k) {
        STEP(k)
        const float *a = X + t * B * G;
        const float *cp = Sc + sb * B * H, *cn = Sc + sa * B * H;
        float *d = D + t * B * G;
        for (long b = 0; b < B; ++b) {
            if (!REAL(t, b)) {
                memset(d + b * G, 0, sizeof(float) * G);  /* padding: dh, dc pass through, GY is ignored */
                continue;
            }
            lstm_row_bwd(H, a + b * G, cp + b * H, cn + b * H, ROW(GYh, t, b, H), ROW(GYc, t, b, H), dh + b * H,
                         dc + b * H, d + b * G);
            memset(dh + b * H, 0, sizeof(float) * H);  /* d(h_{t-1}) comes only through the matmul */
        }
        matvec_t_acc(B, G, H, d, W, dh);
    }
}

/* ------------------------------------------------------------------ GRU, whole sequence */
void gru_fwd(long T, long B, long H, int rev, float *X, float *HW, const float *W, const float *bhh, float *S,
             const float *M) {
    const long G = 3 * H;
    for (long k = 0; k < T; ++k) {
        STEP(k)
        float *x = X + t * B * G, *hw = HW + t * B * G;
        const float *hp = S + sb * B * H;
        float *hn = S + sa * B * H;
        for (long b = 0; b < B; ++b) {
            if (bhh) memcpy(hw + b * G, bhh, sizeof(float) * G);
            else memset(hw + b * G, 0, sizeof(float) * G);
        }
        matvec_acc(B, G, H, hp, W, hw);
        for (long b = 0; b < B; ++b)
            gru_row_fwd(H, x + b * G, hw + b * G, hp + b * H, hn + b * H, REAL(t, b));
    }
}

void gru_bwd(long T, long B, long H, int rev, const float *X, const float *HW, const float *W, const float *S,
             const float *GY, float *dh, float *D, float *DHW, const float *M) {
    const long G = 3 * H;
    for (long k = T - 1; k >= 0; --k) {
        STEP(k)
        const float *a = X + t * B * G, *hw = HW + t * B * G, *hp = S + sb * B * H;
        float *d = D + t * B * G, *dw = DHW + t * B * G;
        for (long b = 0; b < B; ++b) {
            if (!REAL(t, b)) {
                memset(d + b * G, 0, sizeof(float) * G);
                memset(dw + b * G, 0, sizeof(float) * G);  /* padding: dh passes through, GY is ignored */
                continue;
            }
            gru_row_bwd(H, a + b * G, hw + b * G, hp + b * H, ROW(GY, t, b, H), dh + b * H, d + b * G, dw + b * G);
        }
        matvec_t_acc(B, G, H, dw, W, dh);
    }
}

/* ------------------------------------------------------------------ one step, hybrid kernels
 * For batches too large for the C matvec: the caller runs the recurrent matmul on oneDNN and
 * these run everything between the matmuls, one call per step instead of ~10 torch ops. */

/* x: the projected input row (B, 4H), bias folded in; hw = h W^T (B, 4H); a: the activations
 * (B, 4H), may be x itself; cp: c_{t-1}; writes c_t and h_t. */
void lstm_pw_fwd(long B, long H, const float *x, const float *hw, float *a, const float *cp, float *cn, float *hn) {
    const long G = 4 * H;
    for (long b = 0; b < B; ++b)
        lstm_row_fwd(H, x + b * G, hw + b * G, a + b * G, cp + b * H, cn + b * H, cp + b * H, hn + b * H, 1);
}

/* a: the step's activations; dh, dc: d(h_t), d(c_t) (masked, output gradients added). Writes
 * d(pre-activations) to d (which may be a itself) and leaves d(c_{t-1})'s direct part in dc. */
void lstm_pw_bwd(long B, long H, const float *a, const float *cp, const float *cn, const float *dh, float *dc,
                 float *d) {
    const long G = 4 * H;
    for (long b = 0; b < B; ++b)
        lstm_row_bwd(H, a + b * G, cp + b * H, cn + b * H, NULL, NULL, dh + b * H, dc + b * H, d + b * G);
}

/* x: the projected input row (B, 3H), overwritten with the activations; hw = h W^T + b_hh,
 * copied to keep (the backward needs hw_n) unless keep == hw. */
void gru_pw_fwd(long B, long H, float *x, const float *hw, float *keep, const float *hp, float *hn) {
    const long G = 3 * H;
    if (keep != hw) memcpy(keep, hw, sizeof(float) * B * G);
    for (long b = 0; b < B; ++b) gru_row_fwd(H, x + b * G, hw + b * G, hp + b * H, hn + b * H, 1);
}

/* dh: d(h_t) in, the direct part of d(h_{t-1}) out. Writes d(x-row) to d and d(hw) to dhw; d may
 * be a, dhw may be hw. */
void gru_pw_bwd(long B, long H, const float *a, const float *hw, const float *hp, float *dh, float *d, float *dhw) {
    const long G = 3 * H;
    for (long b = 0; b < B; ++b)
        gru_row_bwd(H, a + b * G, hw + b * G, hp + b * H, NULL, dh + b * H, d + b * G, dhw + b * G);
}
