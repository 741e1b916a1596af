/* quantize.c — float32 to the block formats: choosing scales.
 *
 * Weights are quantized with the algorithms of llama.cpp's reference
 * quantizers (quantize_row_*_ref in ggml-quants.c, MIT license): a file
 * quantized here holds the bytes llama-quantize writes without an importance
 * matrix. The float operations follow the reference's order, because the
 * scale searches compare errors that differ in the last bits. Activations
 * are quantized with the q8 variants the integer dot products expect.
 *
 * Everything here trusts its caller (apr_quantize checks the arguments):
 * k is a whole number of blocks and the input is finite. */
#include "core/quant.h"

#include <float.h>
#include <math.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF   /* see quant.c */
#endif

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Below this magnitude a group counts as all zeros (ggml's GROUP_MAX_EPS). */
#define GROUP_MAX_EPS 1e-15f

/* ===================================================================== */
/* Plain floats                                                          */
/* ===================================================================== */

void apr_quantize_row_f16(const float *x, apr_f16 *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++) y[i] = apr_f32_to_f16(x[i]);
}

void apr_quantize_row_bf16(const float *x, apr_bf16 *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++) y[i] = apr_f32_to_bf16(x[i]);
}

/* ===================================================================== */
/* 32-element blocks: one scale (and offset) from the extremes           */
/* ===================================================================== */

/* The element of largest magnitude, with its sign (the first on ties). */
static float signed_absmax(const float *x, int n)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < n; j++) {
        if (fabsf(x[j]) > amax) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void min_max(const float *x, int n, float *lo, float *hi)
{
    *lo = FLT_MAX;
    *hi = -FLT_MAX;
    for (int j = 0; j < n; j++) {
        if (x[j] < *lo) *lo = x[j];
        if (x[j] > *hi) *hi = x[j];
    }
}

/* Q4_0/Q5_0: the largest-magnitude element maps to the most negative code
 * (-8 or -16), so d carries its sign and the range is used in full. Codes
 * are truncations of x/d + offset + 0.5, i.e. rounding halves upward. */
void apr_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK4_0; b++, x += QK4_0) {
        const float d = signed_absmax(x, QK4_0) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = apr_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const int lo = imin(15, (int8_t)(x[j] * id + 8.5f));
            const int hi = imin(15, (int8_t)(x[j + 16] * id + 8.5f));
            y[b].qs[j] = (uint8_t)(lo | hi << 4);
        }
    }
}

void apr_quantize_row_q5_0(const float *x, block_q5_0 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK5_0; b++, x += QK5_0) {
        const float d = signed_absmax(x, QK5_0) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = apr_f32_to_f16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int lo = imin(31, (int8_t)(x[j] * id + 16.5f));
            const int hi = imin(31, (int8_t)(x[j + 16] * id + 16.5f));
            y[b].qs[j] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
            qh |= (uint32_t)(lo >> 4) << j | (uint32_t)(hi >> 4) << (j + 16);
        }
        memcpy(y[b].qh, &qh, 4);
    }
}

/* Q4_1/Q5_1: codes 0..15 (0..31) span [min, max] exactly. */
void apr_quantize_row_q4_1(const float *x, block_q4_1 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK4_1; b++, x += QK4_1) {
        float lo, hi;
        min_max(x, QK4_1, &lo, &hi);
        const float d = (hi - lo) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = apr_f32_to_f16(d);
        y[b].m = apr_f32_to_f16(lo);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const int q0 = imin(15, (int8_t)((x[j] - lo) * id + 0.5f));
            const int q1 = imin(15, (int8_t)((x[j + 16] - lo) * id + 0.5f));
            y[b].qs[j] = (uint8_t)(q0 | q1 << 4);
        }
    }
}

void apr_quantize_row_q5_1(const float *x, block_q5_1 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK5_1; b++, x += QK5_1) {
        float lo, hi;
        min_max(x, QK5_1, &lo, &hi);
        const float d = (hi - lo) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = apr_f32_to_f16(d);
        y[b].m = apr_f32_to_f16(lo);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int q0 = (uint8_t)((x[j] - lo) * id + 0.5f);
            const int q1 = (uint8_t)((x[j + 16] - lo) * id + 0.5f);
            y[b].qs[j] = (uint8_t)((q0 & 0xF) | (q1 & 0xF) << 4);
            qh |= (uint32_t)((q0 >> 4) & 1) << j | (uint32_t)((q1 >> 4) & 1) << (j + 16);
        }
        memcpy(y[b].qh, &qh, 4);
    }
}

static float absmax(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++) amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

void apr_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_0; b++, x += QK8_0) {
        const float d = absmax(x, QK8_0) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[b].d = apr_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++) y[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void apr_quantize_row_q8_1(const float *x, block_q8_1 *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_1; b++, x += QK8_1) {
        const float d = absmax(x, QK8_1) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        int sum = 0;
        y[b].d = apr_f32_to_f16(d);
        for (int j = 0; j < QK8_1; j++) {
            y[b].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[b].qs[j];
        }
        y[b].s = apr_f32_to_f16((float)sum * d);
    }
}

void apr_quantize_row_q8_K(const float *x, block_q8_K *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        const float max = signed_absmax(x, QK_K);
        if (max == 0.0f) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) y[b].qs[j] = (int8_t)imin(127, apr_nearest_int(iscale * x[j]));
        for (int g = 0; g < QK_K / 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[b].qs[16 * g + j];
            y[b].bsums[g] = (int16_t)sum;
        }
        y[b].d = 1 / iscale;
    }
}

/* ===================================================================== */
/* K formats: searching for the scale                                    */
/* ===================================================================== */

/* Fits x[i] ~ scale * L[i] - offset with codes L in 0..nmax, minimising the
 * weighted squared error. Starts from the scale that spans [min(0, lo), hi]
 * and tries nstep+1 slightly different spans (nmax + rmin + rdelta*s
 * steps over the range), solving for the best scale and offset of each
 * candidate code assignment by least squares. Returns the scale and sets
 * *offset (>= 0, subtracted when decoding). */
static float fit_scale_offset(int n, int nmax, const float *x, const float *w, uint8_t *L, float *offset,
                              float rmin, float rdelta, int nstep)
{
    float lo = x[0], hi = x[0];
    float sum_w = w[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (lo > 0) lo = 0;
    if (hi == lo) {
        memset(L, 0, (size_t)n);
        *offset = -lo;
        return 0.0f;
    }
    float iscale = nmax / (hi - lo);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(apr_nearest_int(iscale * (x[i] - lo)), 0, nmax);
        const float diff = scale * L[i] + lo - x[i];
        best_error += w[i] * (diff * diff);
    }
    uint8_t trial[QK_K];
    for (int s = 0; s <= nstep; s++) {
        iscale = (rmin + rdelta * s + nmax) / (hi - lo);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(apr_nearest_int(iscale * (x[i] - lo)), 0, nmax);
            trial[i] = (uint8_t)l;
            sum_l += w[i] * l;
            sum_l2 += w[i] * l * l;
            sum_xl += w[i] * l * x[i];
        }
        const float det = sum_w * sum_l2 - sum_l * sum_l;
        if (!(det > 0)) continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
        if (this_min > 0) {   /* an offset above zero is not representable */
            this_min = 0;
            this_scale = sum_xl / sum_l2;
        }
        float error = 0;
        for (int i = 0; i < n; i++) {
            const float diff = this_scale * trial[i] + this_min - x[i];
            error += w[i] * (diff * diff);
        }
        if (error < best_error) {
            memcpy(L, trial, (size_t)n);
            best_error = error;
            scale = this_scale;
            lo = this_min;
        }
    }
    *offset = -lo;
    return scale;
}

/* Fits x[i] ~ scale * (L[i] - nmax) with codes L in 0..2*nmax-1, weighting
 * each element by x[i]^2 (large weights matter most). The element of largest
 * magnitude sets the first guess; 18 nearby scales are tried and the one
 * with the best weighted least-squares fit kept. */
static float fit_signed_scale(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++) {
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.0f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        const int l = clampi(apr_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        const float w = x[i] * x[i];
        L[i] = (int8_t)(l + nmax);
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int s = -9; s <= 9; s++) {
        if (s == 0) continue;
        iscale = -(nmax + 0.1f * s) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            const int l = clampi(apr_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            const float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(apr_nearest_int(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Packs the eight 6-bit scales and mins of a Q4_K/Q5_K block (the inverse
 * of apr_q4_K_scale_min). */
static void pack_scale_mins(uint8_t *out, const uint8_t *ls, const uint8_t *lm)
{
    memset(out, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            out[j] = ls[j];
            out[j + 4] = lm[j];
        } else {
            out[j + 4] = (uint8_t)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
            out[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            out[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* Q4_K and Q5_K share everything but the code range: per sub-block of 32 a
 * scale and offset are fitted (weights favour large elements), both are
 * quantized to 6 bits against the block's largest, and then the codes are
 * recomputed against the scales as they will be decoded. */
static void quantize_super_block_k(const float *x, int nmax, float rmin, int nstep,
                                   apr_f16 *d_out, apr_f16 *dmin_out, uint8_t *packed, uint8_t *L)
{
    float scales[8], mins[8], weights[32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += xs[l] * xs[l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(xs[l]);
        scales[j] = fit_scale_offset(32, nmax, xs, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* the reference stores the rounded value in a byte before capping */
        ls[j] = (uint8_t)imin(63, (uint8_t)apr_nearest_int(inv_scale * scales[j]));
        lm[j] = (uint8_t)imin(63, (uint8_t)apr_nearest_int(inv_min * mins[j]));
    }
    pack_scale_mins(packed, ls, lm);
    *d_out = apr_f32_to_f16(max_scale / 63.f);
    *dmin_out = apr_f32_to_f16(max_min / 63.f);

    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        apr_q4_K_scale_min(packed, j, &sc, &m);
        const float d = apr_f16_to_f32(*d_out) * sc;
        if (d == 0.0f) continue;   /* keep the fitted codes */
        const float dm = apr_f16_to_f32(*dmin_out) * m;
        for (int l = 0; l < 32; l++)
            L[32 * j + l] = (uint8_t)clampi(apr_nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
    }
}

void apr_quantize_row_q4_K(const float *x, block_q4_K *y, int64_t k)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        quantize_super_block_k(x, 15, -1.0f, 20, &y[b].d, &y[b].dmin, y[b].scales, L);
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++)
                y[b].qs[32 * g + l] = (uint8_t)(L[64 * g + l] | L[64 * g + 32 + l] << 4);
        }
    }
}

void apr_quantize_row_q5_K(const float *x, block_q5_K *y, int64_t k)
{
    uint8_t L[QK_K];
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        quantize_super_block_k(x, 31, -0.5f, 15, &y[b].d, &y[b].dmin, y[b].scales, L);
        memset(y[b].qh, 0, sizeof y[b].qh);
        for (int g = 0; g < 4; g++) {
            for (int l = 0; l < 32; l++) {
                const int lo = L[64 * g + l], hi = L[64 * g + 32 + l];
                y[b].qs[32 * g + l] = (uint8_t)((lo & 0xF) | (hi & 0xF) << 4);
                y[b].qh[l] |= (uint8_t)((lo >> 4) << (2 * g) | (hi >> 4) << (2 * g + 1));
            }
        }
    }
}

/* Q6_K: a signed scale per 16 elements, quantized to int8 against the
 * block's largest-magnitude scale (which maps to -128), then the codes are
 * recomputed against the decoded scales. */
void apr_quantize_row_q6_K(const float *x, block_q6_K *y, int64_t k)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t b = 0; b < k / QK_K; b++, x += QK_K) {
        float max_scale = 0, max_abs_scale = 0;
        for (int g = 0; g < QK_K / 16; g++) {
            scales[g] = fit_signed_scale(16, 32, x + 16 * g, L + 16 * g);
            if (fabsf(scales[g]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[g]);
                max_scale = scales[g];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[b], 0, sizeof y[b]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[b].d = apr_f32_to_f16(1 / iscale);
        for (int g = 0; g < QK_K / 16; g++) y[b].scales[g] = (int8_t)imin(127, apr_nearest_int(iscale * scales[g]));
        for (int g = 0; g < QK_K / 16; g++) {
            const float d = apr_f16_to_f32(y[b].d) * y[b].scales[g];
            if (d == 0.0f) continue;
            for (int l = 0; l < 16; l++)
                L[16 * g + l] = (int8_t)(clampi(apr_nearest_int(x[16 * g + l] / d), -32, 31) + 32);
        }
        for (int half = 0; half < 2; half++) {
            const int8_t *Lh = L + 128 * half;
            uint8_t *ql = y[b].ql + 64 * half, *qh = y[b].qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((Lh[l] & 0xF) | (Lh[l + 64] & 0xF) << 4);
                ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | (Lh[l + 96] & 0xF) << 4);
                qh[l] = (uint8_t)((Lh[l] >> 4) | (Lh[l + 32] >> 4) << 2 | (Lh[l + 64] >> 4) << 4 | (Lh[l + 96] >> 4) << 6);
            }
        }
    }
}
