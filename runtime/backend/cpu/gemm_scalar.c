/* gemm_scalar.c — the matrix-product kernels in portable C: the reference.
 *
 * One dot product per (row, token), block by block, in the plainest form of
 * each format's arithmetic (docs/quant-formats.md gives the layouts). The
 * AVX2 kernels compute the same integer sums and apply the same float
 * scales, in another order; tests/runtime/backend/cpu/gemm_test.c holds the
 * two to agreement and both to a float64 product of the dequantized weights.
 *
 * Integer formats store weights as unsigned quants q with an offset, so a
 * block's contribution is
 *     dw * da * sum(q * a)  +  mw * da * sum(a)
 * where a are the input's 8-bit quants, da their scale, dw the weight
 * scale and mw the weight offset (-8 dw for Q4_0, the stored min for Q4_1,
 * ...): the second term uses the input's block sums, computed once when the
 * input was quantized, instead of subtracting the offset from every quant. */
#include "cpu.h"

#include <math.h>

/* ===================================================================== */
/* Quantizing the input                                                  */
/* ===================================================================== */

/* Scale and quants of one block of k values: d = max|x| / 127 and
 * q = round-to-nearest-even(x * 127 / max|x|), so the largest value maps to
 * +-127. The AVX2 version performs the same float operations, so the two
 * produce identical quants. A NaN or Inf input gives a NaN scale (all
 * quants 0), so it shows in the product instead of vanishing. */
static float quantize_block(const float *x, int8_t *q, int k)
{
    float amax = 0;
    for (int i = 0; i < k; i++) amax = fmaxf(amax, fabsf(x[i]));
    for (int i = 0; i < k; i++) if (isnan(x[i])) amax = NAN;  /* a NaN must reach the output */
    const float id = amax > 0 ? 127.f / amax : 0.f;
    for (int i = 0; i < k; i++) q[i] = (int8_t)lrintf(x[i] * id);
    return amax / 127.f;
}

void apr_cpu_quantize_scalar(cpu_act *a, int t0, int t1)
{
    const int64_t K = a->cols;
    for (int t = t0; t < t1; t++) {
        const float *x = a->x + t * K;
        int8_t *q = a->q + t * K;
        if (a->kind == ACT_32) {
            for (int64_t b = 0; b < K / 32; b++) {
                float d = quantize_block(x + 32 * b, q + 32 * b, 32);
                int sum = 0;
                for (int i = 0; i < 32; i++) sum += q[32 * b + i];
                a->d[t * (K / 32) + b] = d;
                a->ds[t * (K / 32) + b] = d * (float)sum;
            }
        } else {
            for (int64_t b = 0; b < K / 256; b++) {
                a->d[t * (K / 256) + b] = quantize_block(x + 256 * b, q + 256 * b, 256);
            }
            for (int64_t g = 0; g < K / 16; g++) {
                int sum = 0;
                for (int i = 0; i < 16; i++) sum += q[16 * g + i];
                a->bsums[t * (K / 16) + g] = (int16_t)sum;
            }
        }
    }
}

/* ===================================================================== */
/* Dot products of one weight row with one input row                     */
/* ===================================================================== */

static float dot_f32(const void *w, const cpu_act *a, int t)
{
    const float *x = a->x + t * a->cols, *v = w;
    float sum = 0;
    for (int64_t i = 0; i < a->cols; i++) sum += v[i] * x[i];
    return sum;
}

static float dot_f16(const void *w, const cpu_act *a, int t)
{
    const float *x = a->x + t * a->cols;
    const apr_f16 *v = w;
    float sum = 0;
    for (int64_t i = 0; i < a->cols; i++) sum += apr_f16_to_f32(v[i]) * x[i];
    return sum;
}

static float dot_bf16(const void *w, const cpu_act *a, int t)
{
    const float *x = a->x + t * a->cols;
    const apr_bf16 *v = w;
    float sum = 0;
    for (int64_t i = 0; i < a->cols; i++) sum += apr_bf16_to_f32(v[i]) * x[i];
    return sum;
}

/* The 32-element formats: element j of a block is in the low nibble of
 * qs[j] (j < 16) or the high nibble of qs[j - 16]; Q5's fifth bit of
 * element j is bit j of qh. */
static inline int nibble(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 15 : qs[j - 16] >> 4; }

static inline int fifth_bit(const uint8_t qh[4], int j)
{
    uint32_t h;
    memcpy(&h, qh, 4);
    return (int)((h >> j) & 1) << 4;
}

/* sum over a row's blocks of dw * da * sum(q * a) + mw * ds */
#define DOT32(block_t, unpack, dw_expr, mw_expr)                                       \
    {                                                                                  \
        const block_t *blk = w;                                                        \
        const int64_t nb = a->cols / 32;                                               \
        const int8_t *q = a->q + t * a->cols;                                          \
        const float *d = a->d + t * nb, *ds = a->ds + t * nb;                          \
        float sum = 0;                                                                 \
        for (int64_t b = 0; b < nb; b++, blk++, q += 32) {                             \
            int isum = 0;                                                              \
            for (int j = 0; j < 32; j++) isum += (unpack) * q[j];                      \
            const float dw = (dw_expr), mw = (mw_expr);                                \
            sum += dw * d[b] * (float)isum + mw * ds[b];                               \
        }                                                                              \
        return sum;                                                                    \
    }

static float dot_q4_0(const void *w, const cpu_act *a, int t)
    DOT32(block_q4_0, nibble(blk->qs, j), apr_f16_to_f32(blk->d), -8 * dw)

static float dot_q4_1(const void *w, const cpu_act *a, int t)
    DOT32(block_q4_1, nibble(blk->qs, j), apr_f16_to_f32(blk->d), apr_f16_to_f32(blk->m))

static float dot_q5_0(const void *w, const cpu_act *a, int t)
    DOT32(block_q5_0, nibble(blk->qs, j) | fifth_bit(blk->qh, j), apr_f16_to_f32(blk->d), -16 * dw)

static float dot_q5_1(const void *w, const cpu_act *a, int t)
    DOT32(block_q5_1, nibble(blk->qs, j) | fifth_bit(blk->qh, j), apr_f16_to_f32(blk->d),
          apr_f16_to_f32(blk->m))

static float dot_q8_0(const void *w, const cpu_act *a, int t)
    DOT32(block_q8_0, blk->qs[j], apr_f16_to_f32(blk->d), 0)

/* Q4_K and Q5_K: eight sub-blocks of 32 with a 6-bit scale and min each;
 * sub-block j's quants are the low (j even) or high (j odd) nibbles of
 * qs[32 * (j / 2) ..], Q5_K's fifth bits bit j of qh[0..31]. The min term
 * uses the input's sums per 16. */
static float dot_q45_K(const uint8_t *qs, const uint8_t *qh, const uint8_t *scales, float d, float dmin,
                       const int8_t *q, const int16_t *bsums, float da)
{
    int isum = 0, imin = 0;
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        apr_q4_K_scale_min(scales, j, &sc, &m);
        const uint8_t *p = qs + 32 * (j / 2);
        int dot = 0;
        for (int i = 0; i < 32; i++) {
            int u = (j & 1) ? p[i] >> 4 : p[i] & 15;
            if (qh) u |= ((qh[i] >> j) & 1) << 4;
            dot += u * q[32 * j + i];
        }
        isum += sc * dot;
        imin += m * (bsums[2 * j] + bsums[2 * j + 1]);
    }
    return d * da * (float)isum - dmin * da * (float)imin;
}

static float dot_q4_K(const void *w, const cpu_act *a, int t)
{
    const block_q4_K *blk = w;
    const int64_t nb = a->cols / 256;
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, blk++) {
        const int64_t i = t * nb + b;
        sum += dot_q45_K(blk->qs, NULL, blk->scales, apr_f16_to_f32(blk->d), apr_f16_to_f32(blk->dmin),
                         a->q + i * 256, a->bsums + i * 16, a->d[i]);
    }
    return sum;
}

static float dot_q5_K(const void *w, const cpu_act *a, int t)
{
    const block_q5_K *blk = w;
    const int64_t nb = a->cols / 256;
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, blk++) {
        const int64_t i = t * nb + b;
        sum += dot_q45_K(blk->qs, blk->qh, blk->scales, apr_f16_to_f32(blk->d), apr_f16_to_f32(blk->dmin),
                         a->q + i * 256, a->bsums + i * 16, a->d[i]);
    }
    return sum;
}

/* Q6_K: quants u in 0..63 (value u - 32), an 8-bit signed scale per 16.
 * Element e of half h (128 elements) has its low 4 bits in ql[64h + e % 64]
 * (low nibble for e < 64, high nibble otherwise) and its top 2 bits in
 * qh[32h + e % 32] at bit 2 * (e / 32). */
static float dot_q6_K(const void *w, const cpu_act *a, int t)
{
    const block_q6_K *blk = w;
    const int64_t nb = a->cols / 256;
    float sum = 0;
    for (int64_t b = 0; b < nb; b++, blk++) {
        const int64_t i = t * nb + b;
        const int8_t *q = a->q + i * 256;
        const int16_t *bsums = a->bsums + i * 16;
        int isum = 0;
        for (int g = 0; g < 16; g++) {
            int dot = 0;
            for (int k = 0; k < 16; k++) {
                const int e = 16 * g + k, h = e / 128, el = e % 128;
                const uint8_t lo = blk->ql[64 * h + el % 64];
                const int u = (el < 64 ? lo & 15 : lo >> 4) | ((blk->qh[32 * h + el % 32] >> (2 * (el / 32))) & 3) << 4;
                dot += u * q[e];
            }
            isum += blk->scales[g] * (dot - 32 * bsums[g]);
        }
        sum += apr_f16_to_f32(blk->d) * a->d[i] * (float)isum;
    }
    return sum;
}

/* ===================================================================== */
/* The kernels                                                           */
/* ===================================================================== */

#define GEMM(name)                                                               \
    static void gemm_##name(const cpu_gemm *g, int64_t r0, int64_t r1, void *scratch) \
    {                                                                            \
        for (int64_t r = r0; r < r1; r++)                                        \
            for (int t = 0; t < g->n; t++)                                       \
                cpu_store(g, t, r, dot_##name(g->w + r * g->row_bytes, g->a, t)); \
    }

GEMM(f32) GEMM(f16) GEMM(bf16)
GEMM(q4_0) GEMM(q4_1) GEMM(q5_0) GEMM(q5_1) GEMM(q8_0)
GEMM(q4_K) GEMM(q5_K) GEMM(q6_K)

cpu_gemm_fn apr_cpu_gemm_scalar(int dtype)
{
    switch (dtype) {
    case APR_F32: return gemm_f32;
    case APR_F16: return gemm_f16;
    case APR_BF16: return gemm_bf16;
    case APR_Q4_0: return gemm_q4_0;
    case APR_Q4_1: return gemm_q4_1;
    case APR_Q5_0: return gemm_q5_0;
    case APR_Q5_1: return gemm_q5_1;
    case APR_Q8_0: return gemm_q8_0;
    case APR_Q4_K: return gemm_q4_K;
    case APR_Q5_K: return gemm_q5_K;
    case APR_Q6_K: return gemm_q6_K;
    default: return NULL;
    }
}
