/* quant.c — element types: their names and sizes, dequantization, and the
 * public entry points that convert whole arrays.
 *
 * Block layouts are ggml's (quant.h has the structs, docs/quant-formats.md
 * the prose). Every dequantizer performs the same float operations, in the
 * same order, as ggml's reference (dequantize_row_* in ggml-quants.c, MIT),
 * so the results are bit for bit those of llama.cpp and of the gguf Python
 * package; tests/runtime/core/quant_oracle_test.c checks that against gguf.
 * That is also why no multiply-add may be fused here: `d * q - m` rounds
 * twice in the reference. GCC does not contract under -std=c11; clang is told
 * so below. */
#include "core/quant.h"

#include <math.h>
#include <stdatomic.h>
#include <stddef.h>

#include "core/error.h"
#include "core/parallel.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ===================================================================== */
/* The type table                                                        */
/* ===================================================================== */

typedef void (*dequantize_fn)(const void *src, float *dst, int64_t k);
typedef void (*quantize_fn)(const float *src, void *dst, int64_t k);

typedef struct {
    const char *name;
    int64_t block_size;   /* elements per block */
    int64_t block_bytes;
    dequantize_fn dequantize;
    quantize_fn quantize;
} type_traits;

static void dequantize_row_f32(const float *x, float *y, int64_t k) { memcpy(y, x, (size_t)k * 4); }
static void quantize_row_f32(const float *x, float *y, int64_t k) { memcpy(y, x, (size_t)k * 4); }

/* Plain integer and double tensors: converted to the nearest float. */
static void dequantize_row_i8(const int8_t *x, float *y, int64_t k) { for (int64_t i = 0; i < k; i++) y[i] = (float)x[i]; }
static void dequantize_row_i16(const int16_t *x, float *y, int64_t k) { for (int64_t i = 0; i < k; i++) y[i] = (float)x[i]; }
static void dequantize_row_i32(const int32_t *x, float *y, int64_t k) { for (int64_t i = 0; i < k; i++) y[i] = (float)x[i]; }
static void dequantize_row_i64(const int64_t *x, float *y, int64_t k) { for (int64_t i = 0; i < k; i++) y[i] = (float)x[i]; }
static void dequantize_row_f64(const double *x, float *y, int64_t k) { for (int64_t i = 0; i < k; i++) y[i] = (float)x[i]; }

#define DQ(f) ((dequantize_fn)(void (*)(void))(f))
#define QU(f) ((quantize_fn)(void (*)(void))(f))

/* Indexed by ggml_type. The IQ/TQ/MXFP4 formats are named and sized (so
 * files holding them can be listed and bounds-checked) but not converted.
 * Q8_1 is 36 bytes as in ggml (two halves and 32 quants); the gguf package's
 * table still says 40, from an older layout, but no file stores Q8_1. */
static const type_traits traits[APR_DTYPE_COUNT] = {
    [APR_F32]  = { "F32",  1, 4, DQ(dequantize_row_f32), QU(quantize_row_f32) },
    [APR_F16]  = { "F16",  1, 2, DQ(apr_dequantize_row_f16), QU(apr_quantize_row_f16) },
    [APR_Q4_0] = { "Q4_0", QK4_0, sizeof(block_q4_0), DQ(apr_dequantize_row_q4_0), QU(apr_quantize_row_q4_0) },
    [APR_Q4_1] = { "Q4_1", QK4_1, sizeof(block_q4_1), DQ(apr_dequantize_row_q4_1), QU(apr_quantize_row_q4_1) },
    [APR_Q5_0] = { "Q5_0", QK5_0, sizeof(block_q5_0), DQ(apr_dequantize_row_q5_0), QU(apr_quantize_row_q5_0) },
    [APR_Q5_1] = { "Q5_1", QK5_1, sizeof(block_q5_1), DQ(apr_dequantize_row_q5_1), QU(apr_quantize_row_q5_1) },
    [APR_Q8_0] = { "Q8_0", QK8_0, sizeof(block_q8_0), DQ(apr_dequantize_row_q8_0), QU(apr_quantize_row_q8_0) },
    [APR_Q8_1] = { "Q8_1", QK8_1, sizeof(block_q8_1), DQ(apr_dequantize_row_q8_1), QU(apr_quantize_row_q8_1) },
    [APR_Q2_K] = { "Q2_K", QK_K, sizeof(block_q2_K), DQ(apr_dequantize_row_q2_K), NULL },
    [APR_Q3_K] = { "Q3_K", QK_K, sizeof(block_q3_K), DQ(apr_dequantize_row_q3_K), NULL },
    [APR_Q4_K] = { "Q4_K", QK_K, sizeof(block_q4_K), DQ(apr_dequantize_row_q4_K), QU(apr_quantize_row_q4_K) },
    [APR_Q5_K] = { "Q5_K", QK_K, sizeof(block_q5_K), DQ(apr_dequantize_row_q5_K), QU(apr_quantize_row_q5_K) },
    [APR_Q6_K] = { "Q6_K", QK_K, sizeof(block_q6_K), DQ(apr_dequantize_row_q6_K), QU(apr_quantize_row_q6_K) },
    [APR_Q8_K] = { "Q8_K", QK_K, sizeof(block_q8_K), DQ(apr_dequantize_row_q8_K), QU(apr_quantize_row_q8_K) },
    [16]       = { "IQ2_XXS", 256, 66, NULL, NULL },
    [17]       = { "IQ2_XS", 256, 74, NULL, NULL },
    [18]       = { "IQ3_XXS", 256, 98, NULL, NULL },
    [19]       = { "IQ1_S", 256, 50, NULL, NULL },
    [20]       = { "IQ4_NL", 32, 18, NULL, NULL },
    [21]       = { "IQ3_S", 256, 110, NULL, NULL },
    [22]       = { "IQ2_S", 256, 82, NULL, NULL },
    [23]       = { "IQ4_XS", 256, 136, NULL, NULL },
    [APR_I8]   = { "I8",  1, 1, DQ(dequantize_row_i8), NULL },
    [APR_I16]  = { "I16", 1, 2, DQ(dequantize_row_i16), NULL },
    [APR_I32]  = { "I32", 1, 4, DQ(dequantize_row_i32), NULL },
    [APR_I64]  = { "I64", 1, 8, DQ(dequantize_row_i64), NULL },
    [APR_F64]  = { "F64", 1, 8, DQ(dequantize_row_f64), NULL },
    [29]       = { "IQ1_M", 256, 56, NULL, NULL },
    [APR_BF16] = { "BF16", 1, 2, DQ(apr_dequantize_row_bf16), QU(apr_quantize_row_bf16) },
    [34]       = { "TQ1_0", 256, 54, NULL, NULL },
    [35]       = { "TQ2_0", 256, 66, NULL, NULL },
    [39]       = { "MXFP4", 32, 17, NULL, NULL },
};

static const type_traits *lookup(int dtype)
{
    if (dtype < 0 || dtype >= APR_DTYPE_COUNT || !traits[dtype].name) return NULL;
    return &traits[dtype];
}

/* ===================================================================== */
/* Dequantization of rows                                                */
/* ===================================================================== */

void apr_dequantize_row_f16(const apr_f16 *x, float *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++) y[i] = apr_f16_to_f32(x[i]);
}

void apr_dequantize_row_bf16(const apr_bf16 *x, float *y, int64_t k)
{
    for (int64_t i = 0; i < k; i++) y[i] = apr_bf16_to_f32(x[i]);
}

/* The 32-element formats keep element j in the low nibble of qs[j] and
 * element j+16 in the high nibble; Q5's fifth bits are bit j of qh. */
void apr_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK4_0; b++, y += QK4_0) {
        const float d = apr_f16_to_f32(x[b].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[j] = (float)((x[b].qs[j] & 0xF) - 8) * d;
            y[j + 16] = (float)((x[b].qs[j] >> 4) - 8) * d;
        }
    }
}

void apr_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK4_1; b++, y += QK4_1) {
        const float d = apr_f16_to_f32(x[b].d), m = apr_f16_to_f32(x[b].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const float lo = (float)(x[b].qs[j] & 0xF) * d, hi = (float)(x[b].qs[j] >> 4) * d;
            y[j] = lo + m;
            y[j + 16] = hi + m;
        }
    }
}

void apr_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK5_0; b++, y += QK5_0) {
        const float d = apr_f16_to_f32(x[b].d);
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int lo = (x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = (float)(lo - 16) * d;
            y[j + 16] = (float)(hi - 16) * d;
        }
    }
}

void apr_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK5_1; b++, y += QK5_1) {
        const float d = apr_f16_to_f32(x[b].d), m = apr_f16_to_f32(x[b].m);
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            const int lo = (x[b].qs[j] & 0xF) | (int)((qh >> j) & 1) << 4;
            const int hi = (x[b].qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            const float vlo = (float)lo * d, vhi = (float)hi * d;
            y[j] = vlo + m;
            y[j + 16] = vhi + m;
        }
    }
}

void apr_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_0; b++, y += QK8_0) {
        const float d = apr_f16_to_f32(x[b].d);
        for (int j = 0; j < QK8_0; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

void apr_dequantize_row_q8_1(const block_q8_1 *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK8_1; b++, y += QK8_1) {
        const float d = apr_f16_to_f32(x[b].d);
        for (int j = 0; j < QK8_1; j++) y[j] = (float)x[b].qs[j] * d;
    }
}

/* Q2_K and Q3_K: each half of 128 elements owns 32 bytes of qs holding four
 * 2-bit planes; plane p covers elements 32p..32p+31 of the half, in two
 * sub-blocks of 16 with a scale each. */
void apr_dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++) {
        const float d = apr_f16_to_f32(x[b].d), dmin = apr_f16_to_f32(x[b].dmin);
        const uint8_t *sc = x[b].scales;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = x[b].qs + 32 * half;
            for (int plane = 0; plane < 4; plane++) {
                for (int sub = 0; sub < 2; sub++, sc++) {
                    const float dl = d * (float)(*sc & 0xF), ml = dmin * (float)(*sc >> 4);
                    for (int l = 0; l < 16; l++) {
                        const float v = dl * (float)((q[16 * sub + l] >> (2 * plane)) & 3);
                        *y++ = v - ml;
                    }
                }
            }
        }
    }
}

/* The 16 signed 6-bit scales of a Q3_K block: low nibbles in bytes 0..7
 * (scales 0..7 low halves, 8..15 high halves), top two bits in bytes 8..11. */
static int q3_K_scale(const uint8_t *s, int i)
{
    const int low = i < 8 ? s[i] & 0xF : s[i - 8] >> 4;
    const int high = (s[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (low | high << 4) - 32;
}

void apr_dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++) {
        const float d = apr_f16_to_f32(x[b].d);
        const uint8_t *hm = x[b].hmask;
        int is = 0;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = x[b].qs + 32 * half;
            for (int plane = 0; plane < 4; plane++) {
                const uint8_t hbit = (uint8_t)(1u << (4 * half + plane));
                for (int sub = 0; sub < 2; sub++) {
                    const float dl = d * (float)q3_K_scale(x[b].scales, is++);
                    for (int l = 16 * sub; l < 16 * sub + 16; l++) {
                        /* a clear high bit means "subtract 4" */
                        const int v = ((q[l] >> (2 * plane)) & 3) - ((hm[l] & hbit) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K and Q5_K: four groups of 64 elements; group g's 32 bytes of qs hold
 * sub-block 2g in their low nibbles and sub-block 2g+1 in their high ones.
 * Q5_K's fifth bits for group g are bits 2g and 2g+1 of qh[0..31]. */
void apr_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++) {
        const float d = apr_f16_to_f32(x[b].d), dmin = apr_f16_to_f32(x[b].dmin);
        const uint8_t *q = x[b].qs;
        for (int g = 0; g < 4; g++, q += 32) {
            uint8_t sc, m;
            apr_q4_K_scale_min(x[b].scales, 2 * g, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            apr_q4_K_scale_min(x[b].scales, 2 * g + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) {
                const float v = d1 * (float)(q[l] & 0xF);
                *y++ = v - m1;
            }
            for (int l = 0; l < 32; l++) {
                const float v = d2 * (float)(q[l] >> 4);
                *y++ = v - m2;
            }
        }
    }
}

void apr_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++) {
        const float d = apr_f16_to_f32(x[b].d), dmin = apr_f16_to_f32(x[b].dmin);
        const uint8_t *q = x[b].qs, *qh = x[b].qh;
        for (int g = 0; g < 4; g++, q += 32) {
            uint8_t sc, m;
            apr_q4_K_scale_min(x[b].scales, 2 * g, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            apr_q4_K_scale_min(x[b].scales, 2 * g + 1, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t u1 = (uint8_t)(1u << (2 * g)), u2 = (uint8_t)(2u << (2 * g));
            for (int l = 0; l < 32; l++) {
                const float v = d1 * (float)((q[l] & 0xF) + (qh[l] & u1 ? 16 : 0));
                *y++ = v - m1;
            }
            for (int l = 0; l < 32; l++) {
                const float v = d2 * (float)((q[l] >> 4) + (qh[l] & u2 ? 16 : 0));
                *y++ = v - m2;
            }
        }
    }
}

/* Q6_K: two halves of 128. In half h, byte l of ql (l < 64) and byte l%32 of
 * qh give elements l, l+64 (low 32 bytes: l and l+64; high 32: l+32 and
 * l+96): low nibble and high nibble of ql, bit pairs 0-1..6-7 of qh. Scales
 * are per 16 elements. */
void apr_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++) {
        const float d = apr_f16_to_f32(x[b].d);
        for (int half = 0; half < 2; half++, y += 128) {
            const uint8_t *ql = x[b].ql + 64 * half, *qh = x[b].qh + 32 * half;
            const int8_t *sc = x[b].scales + 8 * half;
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = ((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32;
                const int q2 = ((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32;
                const int q3 = ((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32;
                const int q4 = ((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

void apr_dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k)
{
    for (int64_t b = 0; b < k / QK_K; b++, y += QK_K) {
        for (int j = 0; j < QK_K; j++) y[j] = x[b].d * (float)x[b].qs[j];
    }
}

/* ===================================================================== */
/* Public: names and sizes                                               */
/* ===================================================================== */

const char *apr_dtype_name(int dtype)
{
    const type_traits *t = lookup(dtype);
    return t ? t->name : NULL;
}

int64_t apr_dtype_block_size(int dtype)
{
    const type_traits *t = lookup(dtype);
    return t ? t->block_size : 0;
}

int64_t apr_dtype_block_bytes(int dtype)
{
    const type_traits *t = lookup(dtype);
    return t ? t->block_bytes : 0;
}

apr_status apr_dtype_nbytes(int dtype, int64_t n, uint64_t *out)
{
    const type_traits *t = lookup(dtype);
    APR_CHECK(out, APR_ERR_INVALID, "apr_dtype_nbytes: out is NULL");
    *out = 0;
    APR_CHECK(t, APR_ERR_UNSUPPORTED, "unknown element type %d", dtype);
    APR_CHECK(n >= 0, APR_ERR_FORMAT, "negative element count %lld", (long long)n);
    APR_CHECK(n % t->block_size == 0, APR_ERR_FORMAT,
              "%lld elements are not a whole number of %s blocks of %lld",
              (long long)n, t->name, (long long)t->block_size);
    uint64_t blocks = (uint64_t)(n / t->block_size);
    APR_CHECK(blocks <= UINT64_MAX / (uint64_t)t->block_bytes, APR_ERR_FORMAT,
              "%lld %s elements overflow a 64-bit byte count", (long long)n, t->name);
    *out = blocks * (uint64_t)t->block_bytes;
    return APR_OK;
}

int apr_dtype_can_dequantize(int dtype)
{
    const type_traits *t = lookup(dtype);
    return t && t->dequantize;
}

int apr_dtype_can_quantize(int dtype)
{
    const type_traits *t = lookup(dtype);
    return t && t->quantize;
}

/* ===================================================================== */
/* Public: whole-array conversion, spread over the worker pool           */
/* ===================================================================== */

/* Blocks per task: large enough that a task is worth a thread wake-up. */
#define GRAIN_ELEMENTS 16384

/* Blocks [begin, end) of one conversion, in either direction. */
typedef struct {
    const type_traits *t;
    const void *src;
    void *dst;
    int to_blocks;   /* 1: floats to blocks (quantize); 0: blocks to floats */
} convert_job;

static void convert_blocks(void *p, int64_t begin, int64_t end, int thread)
{
    const convert_job *job = p;
    const int64_t bs = job->t->block_size, bb = job->t->block_bytes, n = (end - begin) * bs;
    if (job->to_blocks)
        job->t->quantize((const float *)job->src + begin * bs, (uint8_t *)job->dst + begin * bb, n);
    else
        job->t->dequantize((const uint8_t *)job->src + begin * bb, (float *)job->dst + begin * bs, n);
}

static apr_status check_conversion(const type_traits *t, int dtype, int64_t n, const void *src, const void *dst,
                                   const char *what)
{
    APR_CHECK(t, APR_ERR_UNSUPPORTED, "%s: unknown element type %d", what, dtype);
    APR_CHECK(src && dst, APR_ERR_INVALID, "%s: NULL buffer", what);
    APR_CHECK(n >= 0 && n % t->block_size == 0, APR_ERR_INVALID,
              "%s: %lld elements are not a whole number of %s blocks of %lld",
              what, (long long)n, t->name, (long long)t->block_size);
    return APR_OK;
}

apr_status apr_dequantize(int dtype, const void *src, float *dst, int64_t n)
{
    const type_traits *t = lookup(dtype);
    APR_TRY(check_conversion(t, dtype, n, src, dst, "dequantize"));
    APR_CHECK(t->dequantize, APR_ERR_UNSUPPORTED, "dequantizing %s is not supported", t->name);
    convert_job job = { t, src, dst, 0 };
    apr_parallel_for(n / t->block_size, GRAIN_ELEMENTS / t->block_size, convert_blocks, &job);
    return APR_OK;
}

apr_status apr_quantize(int dtype, const float *src, void *dst, int64_t n)
{
    const type_traits *t = lookup(dtype);
    APR_TRY(check_conversion(t, dtype, n, src, dst, "quantize"));
    APR_CHECK(t->quantize, APR_ERR_UNSUPPORTED, "quantizing to %s is not supported", t->name);
    /* Scales computed from NaN or Inf would poison a whole block; plain
     * float formats can hold them, block formats cannot. */
    if (t->block_size > 1) {
        for (int64_t i = 0; i < n; i++) {
            APR_CHECK(isfinite(src[i]), APR_ERR_RANGE, "quantize to %s: element %lld is %s",
                      t->name, (long long)i, isnan(src[i]) ? "NaN" : "infinite");
        }
    }
    const int64_t grain = (t->block_size >= QK_K ? 4096 : GRAIN_ELEMENTS) / t->block_size;
    convert_job job = { t, src, dst, 1 };
    apr_parallel_for(n / t->block_size, grain, convert_blocks, &job);
    return APR_OK;
}

/* ===================================================================== */
/* Public: finding NaN and Inf                                           */
/* ===================================================================== */

/* Where a block keeps its float fields: a NaN or Inf there spreads to every
 * element of the block, which is what `apr verify --deep` looks for. */
typedef struct {
    int n;                 /* fields to check (0: the type has none) */
    uint16_t offset[2];
    const char *name[2];
    int is_f32;            /* the fields are float32, not halves */
} scale_fields;

static scale_fields fields_of(int dtype)
{
    switch (dtype) {
    case APR_Q4_0: case APR_Q5_0: case APR_Q8_0:
        return (scale_fields){ 1, { 0 }, { "d" }, 0 };
    case APR_Q4_1: case APR_Q5_1:
        return (scale_fields){ 2, { 0, 2 }, { "d", "m" }, 0 };
    case APR_Q8_1:
        return (scale_fields){ 2, { 0, 2 }, { "d", "s" }, 0 };
    case APR_Q2_K:
        return (scale_fields){ 2, { offsetof(block_q2_K, d), offsetof(block_q2_K, dmin) }, { "d", "dmin" }, 0 };
    case APR_Q3_K:
        return (scale_fields){ 1, { offsetof(block_q3_K, d) }, { "d" }, 0 };
    case APR_Q4_K:
        return (scale_fields){ 2, { offsetof(block_q4_K, d), offsetof(block_q4_K, dmin) }, { "d", "dmin" }, 0 };
    case APR_Q5_K:
        return (scale_fields){ 2, { offsetof(block_q5_K, d), offsetof(block_q5_K, dmin) }, { "d", "dmin" }, 0 };
    case APR_Q6_K:
        return (scale_fields){ 1, { offsetof(block_q6_K, d) }, { "d" }, 0 };
    case APR_Q8_K:
        return (scale_fields){ 1, { offsetof(block_q8_K, d) }, { "d" }, 1 };
    default:
        return (scale_fields){ 0, { 0 }, { NULL }, 0 };
    }
}

/* 1 if the value at p (of plain type dtype, or a scale field) is NaN/Inf. */
static int bad_value(int dtype, const uint8_t *p)
{
    switch (dtype) {
    case APR_F32: { float v; memcpy(&v, p, 4); return !isfinite(v); }
    case APR_F64: { double v; memcpy(&v, p, 8); return !isfinite(v); }
    case APR_F16: { apr_f16 h; memcpy(&h, p, 2); return (h & 0x7c00) == 0x7c00; }
    case APR_BF16: { apr_bf16 h; memcpy(&h, p, 2); return (h & 0x7f80) == 0x7f80; }
    default: return 0;
    }
}

typedef struct {
    int dtype;
    const type_traits *t;
    scale_fields f;
    const uint8_t *data;
    atomic_int_fast64_t first_bad;   /* block index, INT64_MAX while none */
    atomic_int cancelled;
} finite_job;

static void scan_blocks(void *p, int64_t begin, int64_t end, int thread)
{
    finite_job *job = p;
    if (apr_interrupted()) { job->cancelled = 1; return; }
    const int64_t bb = job->t->block_bytes;
    for (int64_t b = begin; b < end && b < job->first_bad; b++) {
        const uint8_t *block = job->data + b * bb;
        int bad = 0;
        if (job->t->block_size == 1) {
            bad = bad_value(job->dtype, block);
        } else {
            for (int i = 0; i < job->f.n && !bad; i++)
                bad = bad_value(job->f.is_f32 ? APR_F32 : APR_F16, block + job->f.offset[i]);
        }
        if (bad) {
            int_fast64_t seen = atomic_load(&job->first_bad);
            while (b < seen && !atomic_compare_exchange_weak(&job->first_bad, &seen, b)) {}
            return;
        }
    }
}

apr_status apr_dtype_check_finite(int dtype, const void *data, int64_t n, int64_t *first_bad_element)
{
    const type_traits *t = lookup(dtype);
    APR_CHECK(first_bad_element, APR_ERR_INVALID, "check_finite: first_bad_element is NULL");
    *first_bad_element = -1;
    APR_TRY(check_conversion(t, dtype, n, data, data, "check_finite"));
    finite_job job = { .dtype = dtype, .t = t, .f = fields_of(dtype), .data = data };
    atomic_init(&job.first_bad, INT64_MAX);
    atomic_init(&job.cancelled, 0);
    int plain_float = dtype == APR_F32 || dtype == APR_F16 || dtype == APR_BF16 || dtype == APR_F64;
    if (t->block_size == 1 && !plain_float) return APR_OK;   /* integers are always finite */
    APR_CHECK(t->block_size == 1 || job.f.n > 0, APR_ERR_UNSUPPORTED,
              "check_finite: the scales of %s blocks are not known", t->name);
    int64_t blocks = n / t->block_size;
    apr_parallel_for(blocks, 1 << 14, scan_blocks, &job);
    if (atomic_load(&job.cancelled)) return apr_error(APR_ERR_CANCELLED, "check_finite: interrupted");
    if (job.first_bad == INT64_MAX) return APR_OK;

    int64_t b = job.first_bad;
    *first_bad_element = b * t->block_size;
    if (t->block_size == 1)
        return apr_error(APR_ERR_FORMAT, "element %lld is NaN or infinite", (long long)b);
    const uint8_t *block = job.data + b * t->block_bytes;
    for (int i = 0; i < job.f.n; i++) {
        if (bad_value(job.f.is_f32 ? APR_F32 : APR_F16, block + job.f.offset[i]))
            return apr_error(APR_ERR_FORMAT, "%s block %lld (element %lld): scale %s is NaN or infinite",
                             t->name, (long long)b, (long long)*first_bad_element, job.f.name[i]);
    }
    return apr_error(APR_ERR_FORMAT, "%s block %lld is not finite", t->name, (long long)b);
}
