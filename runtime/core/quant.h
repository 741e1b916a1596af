/* quant.h — block layouts of the quantized formats (internal).
 *
 * The layouts are GGUF's (the ggml block formats), stated here as C structs
 * so the CPU kernels, the CUDA kernels and the converters share one
 * definition. Sizes are checked at compile time. docs/quant-formats.md
 * explains how each block decodes. */
#ifndef APR_CORE_QUANT_H
#define APR_CORE_QUANT_H

#include <stdint.h>
#include <string.h>

#include "apr.h"

typedef uint16_t apr_f16;   /* IEEE half, stored as bits */
typedef uint16_t apr_bf16;  /* bfloat16, stored as bits */

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK8_1 32
#define QK_K 256          /* super-block size of the K formats */
#define K_SCALE_SIZE 12   /* packed 6-bit scales and mins of Q4_K/Q5_K */

typedef struct { apr_f16 d; uint8_t qs[QK4_0 / 2]; } block_q4_0;                    /* 18 bytes */
typedef struct { apr_f16 d, m; uint8_t qs[QK4_1 / 2]; } block_q4_1;                 /* 20 bytes */
typedef struct { apr_f16 d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } block_q5_0;     /* 22 bytes */
typedef struct { apr_f16 d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } block_q5_1;  /* 24 bytes */
typedef struct { apr_f16 d; int8_t qs[QK8_0]; } block_q8_0;                         /* 34 bytes */
typedef struct { apr_f16 d, s; int8_t qs[QK8_1]; } block_q8_1;                      /* 36 bytes: s = d * sum(qs) */

typedef struct {
    uint8_t scales[QK_K / 16];  /* 4-bit scale | 4-bit min, per 16 elements */
    uint8_t qs[QK_K / 4];       /* 2-bit quants */
    apr_f16 d, dmin;
} block_q2_K;                   /* 84 bytes */

typedef struct {
    uint8_t hmask[QK_K / 8];    /* high bit of each quant */
    uint8_t qs[QK_K / 4];       /* low 2 bits */
    uint8_t scales[12];         /* 16 6-bit scales */
    apr_f16 d;
} block_q3_K;                   /* 110 bytes */

typedef struct {
    apr_f16 d, dmin;            /* super-block scale for scales and for mins */
    uint8_t scales[K_SCALE_SIZE]; /* 8 sub-blocks of 32: 6-bit scale and 6-bit min each */
    uint8_t qs[QK_K / 2];       /* 4-bit quants */
} block_q4_K;                   /* 144 bytes */

typedef struct {
    apr_f16 d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];       /* fifth bit of each quant */
    uint8_t qs[QK_K / 2];       /* low 4 bits */
} block_q5_K;                   /* 176 bytes */

typedef struct {
    uint8_t ql[QK_K / 2];       /* low 4 bits */
    uint8_t qh[QK_K / 4];       /* high 2 bits */
    int8_t scales[QK_K / 16];   /* 8-bit scale per 16 elements */
    apr_f16 d;
} block_q6_K;                   /* 210 bytes */

typedef struct {
    float d;
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];   /* sums of groups of 16 quants */
} block_q8_K;                   /* 292 bytes: activations for K-format dot products */

_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0");
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1");
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0");
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1");
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0");
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1");
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K");
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K");
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K");
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K");

/* Half and bfloat16 conversions, exact in both directions (round to nearest
 * even when narrowing; NaN stays NaN). */
static inline float apr_f16_to_f32(apr_f16 h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | (uint32_t)(112 - e) << 23 | (man & 0x3ff) << 13;
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | man << 13;
    } else {
        bits = sign | (exp + 112) << 23 | man << 13;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline apr_f16 apr_f32_to_f16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t absx = x & 0x7fffffff;
    if (absx > 0x7f800000u) return (apr_f16)(sign | 0x7e00);    /* NaN */
    if (absx >= 0x477ff000u) return (apr_f16)(sign | 0x7c00);   /* overflow -> inf */
    if (absx < 0x38800000u) {                                   /* subnormal or zero */
        if (absx < 0x33000000u) return (apr_f16)sign;
        uint32_t man = (absx & 0x7fffff) | 0x800000;
        int shift = 113 - (int)(absx >> 23) + 13;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1), mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (apr_f16)(sign | half);
    }
    uint32_t h = ((absx >> 13) - (112 << 10));
    uint32_t rem = absx & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
    return (apr_f16)(sign | h);
}

static inline float apr_bf16_to_f32(apr_bf16 h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline apr_bf16 apr_f32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000u) return (apr_bf16)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (apr_bf16)(x >> 16);
}

/* ------------------------------------------------------------------------
 * Row converters (runtime/core/quant.c, runtime/core/quantize.c).
 *
 * Each converts k elements, a whole number of blocks, between float32 and one
 * format. They trust their caller: k is a multiple of the block size, the
 * buffers are large enough, and the quantizers' input is finite. The public
 * apr_dequantize/apr_quantize check all that and split big arrays over the
 * worker pool; kernels call these directly on rows they own.
 * ------------------------------------------------------------------------ */

/* Dequantizers: exact, with the same float operations in the same order as
 * ggml's reference, so results match it (and the gguf package) bit for bit. */
void apr_dequantize_row_f16(const apr_f16 *x, float *y, int64_t k);
void apr_dequantize_row_bf16(const apr_bf16 *x, float *y, int64_t k);
void apr_dequantize_row_q4_0(const block_q4_0 *x, float *y, int64_t k);
void apr_dequantize_row_q4_1(const block_q4_1 *x, float *y, int64_t k);
void apr_dequantize_row_q5_0(const block_q5_0 *x, float *y, int64_t k);
void apr_dequantize_row_q5_1(const block_q5_1 *x, float *y, int64_t k);
void apr_dequantize_row_q8_0(const block_q8_0 *x, float *y, int64_t k);
void apr_dequantize_row_q8_1(const block_q8_1 *x, float *y, int64_t k);
void apr_dequantize_row_q2_K(const block_q2_K *x, float *y, int64_t k);
void apr_dequantize_row_q3_K(const block_q3_K *x, float *y, int64_t k);
void apr_dequantize_row_q4_K(const block_q4_K *x, float *y, int64_t k);
void apr_dequantize_row_q5_K(const block_q5_K *x, float *y, int64_t k);
void apr_dequantize_row_q6_K(const block_q6_K *x, float *y, int64_t k);
void apr_dequantize_row_q8_K(const block_q8_K *x, float *y, int64_t k);

/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K/Q5_K block. */
static inline void apr_q4_K_scale_min(const uint8_t *scales, int j, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = scales[j] & 63;
        *m = scales[j + 4] & 63;
    } else {
        *sc = (uint8_t)((scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4));
        *m = (uint8_t)((scales[j + 4] >> 4) | ((scales[j] >> 6) << 4));
    }
}

/* Rounds to the nearest integer, ties to even, as ggml's nearest_int does
 * for |v| < 2^22 (adding 1.5 * 2^23 leaves the integer in the mantissa).
 * Larger magnitudes and NaN saturate instead of returning garbage. */
static inline int apr_nearest_int(float v)
{
    if (!(v < 4194303.f)) v = v == v ? 4194303.f : 0.f;
    if (v < -4194303.f) v = -4194303.f;
    float t = v + 12582912.f;
    int32_t i;
    memcpy(&i, &t, 4);
    return (i & 0x007fffff) - 0x00400000;
}

/* Quantizers of weights: llama.cpp's reference algorithms (quantize_row_*_ref
 * in ggml-quants.c), so files quantized here match llama-quantize run
 * without an importance matrix. */
void apr_quantize_row_f16(const float *x, apr_f16 *y, int64_t k);
void apr_quantize_row_bf16(const float *x, apr_bf16 *y, int64_t k);
void apr_quantize_row_q4_0(const float *x, block_q4_0 *y, int64_t k);
void apr_quantize_row_q4_1(const float *x, block_q4_1 *y, int64_t k);
void apr_quantize_row_q5_0(const float *x, block_q5_0 *y, int64_t k);
void apr_quantize_row_q5_1(const float *x, block_q5_1 *y, int64_t k);
void apr_quantize_row_q4_K(const float *x, block_q4_K *y, int64_t k);
void apr_quantize_row_q5_K(const float *x, block_q5_K *y, int64_t k);
void apr_quantize_row_q6_K(const float *x, block_q6_K *y, int64_t k);

/* Quantizers of activations, for the integer dot products of the kernels.
 *  q8_0: d = amax/127 (stored as f16), q = roundf(x/d): halves round away
 *        from zero; the multiplication uses 1/d, as ggml does.
 *  q8_1: as q8_0, plus s = f16(d * sum(q)).
 *  q8_K: d = max/-127 kept as float32 (max: the element of largest
 *        magnitude), q = nearest_int(x * -127/max) (ties to even), capped at
 *        127; bsums[g] = sum of q over elements 16g..16g+15. */
void apr_quantize_row_q8_0(const float *x, block_q8_0 *y, int64_t k);
void apr_quantize_row_q8_1(const float *x, block_q8_1 *y, int64_t k);
void apr_quantize_row_q8_K(const float *x, block_q8_K *y, int64_t k);

#endif
