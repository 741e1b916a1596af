/* attention.c — RoPE, the KV-cache store, and causal attention on the CPU.
 *
 * Attention is computed per (token, KV head): the `group` query heads that
 * share a KV head (GQA) go together, so each cached key and value is read
 * and widened to f32 once for all of them. Scores are kept for the whole
 * context (two passes: scores and their max, then the weighted values), in
 * f32, as llama.cpp's non-flash CPU path does.
 *
 * The cache holds F16, or Q8_0 / Q4_0 blocks (core/quant.h): keys and values
 * are quantized as they are stored, with the weight quantizers (llama.cpp's
 * reference rounding), and a quantized row is widened straight from its
 * blocks into the one row of f32 that the dot products and the weighted sum
 * read (exactly q * d, as the dequantizers compute it, on every ISA). */
#include "cpu.h"

#include <math.h>

#include "core/error.h"
#include "core/parallel.h"
#if defined(__x86_64__) || defined(__i386__)
#include "simd.h"
#endif

/* ===================================================================== */
/* RoPE and the cache store                                              */
/* ===================================================================== */

/* cos and sin of each rotated pair at a token's position, in double
 * (theta reaches 10^4.5 radians at 32K positions, where float loses the
 * fraction), written once per pass: at layer 0. */
static void rope_table(float *cs, int pos, const apr_attn_params *p)
{
    const double position = (double)pos * p->rope_scale;
    for (int k = 0; k < p->n_rot / 2; k++) {
        const double theta = position * pow(p->rope_base, -2.0 * k / p->n_rot);
        cs[2 * k] = (float)cos(theta);
        cs[2 * k + 1] = (float)sin(theta);
    }
}

static void rotate(float *x, const float *cs, const apr_attn_params *p)
{
    const int half = p->n_rot / 2;
    for (int k = 0; k < half; k++) {
        /* NEOX pairs element k with k + n_rot/2; NORM pairs 2k with 2k+1 */
        float *a = p->rope_style == APR_ROPE_NEOX ? x + k : x + 2 * k;
        float *b = p->rope_style == APR_ROPE_NEOX ? x + k + half : x + 2 * k + 1;
        const float c = cs[2 * k], s = cs[2 * k + 1], x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
    }
}

static inline void *kv_row(const apr_kv_cache *kv, void *base, int layer, int slot, int head)
{
    const int block = slot / kv->block_tokens, off = slot % kv->block_tokens;
    return (uint8_t *)base + (size_t)layer * kv->layer_bytes +
           (((size_t)block * kv->n_head_kv + head) * kv->block_tokens + off) * kv->row_bytes;
}

/* Stores one head's row; quantized keys minus their offset (backend.h). */
static void store_row(const apr_kv_cache *kv, void *dst, const float *x, const float *offset)
{
    float shifted[CPU_MAX_KV_HEAD_DIM];
    if (offset && kv->type != APR_F16) {
        for (int i = 0; i < kv->head_dim; i++) shifted[i] = x[i] - offset[i];
        x = shifted;
    }
    if (kv->type == APR_Q8_0) {
        apr_quantize_row_q8_0(x, dst, kv->head_dim);
        return;
    }
    if (kv->type == APR_Q4_0) {
        apr_quantize_row_q4_0(x, dst, kv->head_dim);
        return;
    }
    apr_f16 *h = dst;
    for (int i = 0; i < kv->head_dim; i++) h[i] = apr_f32_to_f16(x[i]);
}

typedef struct {
    apr_stream *s;
    float *qkv;
    const float *cqkv;
    float *out;
    const apr_kv_cache *kv;
    int layer;
    const apr_step *st;
    const apr_attn_params *p;
} att_job;

static void rope_store_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    att_job *j = ctx;
    const apr_attn_params *p = j->p;
    const int hd = p->head_dim, q_dim = p->n_head * hd, kv_dim = p->n_head_kv * hd;
    const float *offset = j->kv->k_offset ? j->kv->k_offset + (size_t)j->layer * kv_dim : NULL;
    for (int64_t i = begin; i < end; i++) {
        float *cs = j->s->rope_cache + i * hd;
        if (j->layer == 0) rope_table(cs, j->st->pos[i], p);
        float *q = j->qkv + i * (q_dim + 2 * kv_dim), *k = q + q_dim, *v = k + kv_dim;
        for (int h = 0; h < p->n_head; h++) rotate(q + h * hd, cs, p);
        for (int h = 0; h < p->n_head_kv; h++) {
            rotate(k + h * hd, cs, p);
            store_row(j->kv, kv_row(j->kv, j->kv->k, j->layer, j->st->slot[i], h), k + h * hd,
                      offset ? offset + h * hd : NULL);
            store_row(j->kv, kv_row(j->kv, j->kv->v, j->layer, j->st->slot[i], h), v + h * hd, NULL);
        }
    }
}

void apr_cpu_rope_store(apr_stream *s, float *qkv, const apr_kv_cache *kv, int layer,
                        const apr_step *st, const apr_attn_params *p)
{
    att_job j = { .s = s, .qkv = qkv, .kv = kv, .layer = layer, .st = st, .p = p };
    apr_parallel_for_n(s->n_threads, st->n, 4, rope_store_body, &j);
}

/* ===================================================================== */
/* Attention                                                             */
/* ===================================================================== */

/* A cached row as f32. */
static void load_row(const apr_kv_cache *kv, const void *src, float *dst)
{
    if (kv->type == APR_Q8_0) apr_dequantize_row_q8_0(src, dst, kv->head_dim);
    else if (kv->type == APR_Q4_0) apr_dequantize_row_q4_0(src, dst, kv->head_dim);
    else apr_dequantize_row_f16(src, dst, kv->head_dim);
}

static float dot(const float *a, const float *b, int n)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

#if defined(__x86_64__) || defined(__i386__)
/* 8 signed bytes times d, as floats: (float)q * d, the dequantizers' product. */
AVX2_INLINE __m256 widen8(__m128i q, __m256 d)
{
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d);
}

AVX2 static void load_row_avx2(const apr_kv_cache *kv, const void *src, float *dst)
{
    if (kv->type == APR_Q8_0) {
        const block_q8_0 *b = src;
        for (int k = 0; k < kv->head_dim / QK8_0; k++, dst += QK8_0) {
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[k].d));
            for (int i = 0; i < QK8_0; i += 8)
                _mm256_storeu_ps(dst + i, widen8(_mm_loadl_epi64((const __m128i *)(b[k].qs + i)), d));
        }
        return;
    }
    if (kv->type == APR_Q4_0) {
        /* element j in the low nibble of qs[j], j + 16 in the high one; codes are q + 8 */
        const block_q4_0 *b = src;
        const __m128i m4 = _mm_set1_epi8(0xF), eight = _mm_set1_epi8(8);
        for (int k = 0; k < kv->head_dim / QK4_0; k++, dst += QK4_0) {
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(b[k].d));
            const __m128i q = _mm_loadu_si128((const __m128i *)b[k].qs);
            const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, m4), eight);
            const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), m4), eight);
            _mm256_storeu_ps(dst, widen8(lo, d));
            _mm256_storeu_ps(dst + 8, widen8(_mm_srli_si128(lo, 8), d));
            _mm256_storeu_ps(dst + 16, widen8(hi, d));
            _mm256_storeu_ps(dst + 24, widen8(_mm_srli_si128(hi, 8), d));
        }
        return;
    }
    if (kv->head_dim % 8) { load_row(kv, src, dst); return; }
    for (int i = 0; i < kv->head_dim; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const apr_f16 *)src + i))));
}

AVX2 static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum_ps(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

AVX2 static void axpy_avx2(float *y, float a, const float *x, int n)
{
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* e^(x - max) in place; returns the sum. */
AVX2 static float softmax_exp_avx2(float *x, int n, float max)
{
    const __m256 m = _mm256_set1_ps(max);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    float s = hsum_ps(acc);
    for (; i < n; i++) s += (x[i] = expf(x[i] - max));
    return s;
}
#endif

static float softmax_exp(float *x, int n, float max)
{
    float s = 0;
    for (int i = 0; i < n; i++) s += (x[i] = expf(x[i] - max));
    return s;
}

static void axpy(float *y, float a, const float *x, int n)
{
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void attention_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    att_job *j = ctx;
    const apr_attn_params *p = j->p;
    const apr_kv_cache *kv = j->kv;
    const int hd = p->head_dim, group = p->n_head / p->n_head_kv;
    const int q_dim = p->n_head * hd, row = q_dim + 2 * p->n_head_kv * hd;
    const int n_ctx = j->s->sizes.n_ctx;
    float *scores = j->s->att_scratch + (size_t)thread * j->s->att_stride;  /* [group][n_ctx] */
    float *krow = scores + (size_t)group * n_ctx;                            /* [head_dim] */
    int avx2 = 0;
#if defined(__x86_64__) || defined(__i386__)
    avx2 = apr_cpu_isa() >= CPU_AVX2;
#define DOT(a, b, n) (avx2 ? dot_avx2(a, b, n) : dot(a, b, n))
#define LOAD_ROW(src, dst) (avx2 ? load_row_avx2(kv, src, dst) : load_row(kv, src, dst))
#define AXPY(y, a, x, n) (avx2 ? axpy_avx2(y, a, x, n) : axpy(y, a, x, n))
#define SOFTMAX_EXP(x, n, m) (avx2 ? softmax_exp_avx2(x, n, m) : softmax_exp(x, n, m))
#else
#define DOT(a, b, n) dot(a, b, n)
#define LOAD_ROW(src, dst) load_row(kv, src, dst)
#define AXPY(y, a, x, n) axpy(y, a, x, n)
#define SOFTMAX_EXP(x, n, m) softmax_exp(x, n, m)
#endif
    for (int64_t task = begin; task < end; task++) {
        const int i = (int)(task / p->n_head_kv), h = (int)(task % p->n_head_kv);
        const int len = j->st->pos[i] + 1;
        const int32_t *table = j->st->block_table + (size_t)j->st->seq[i] * j->st->max_blocks;
        const float *q = j->cqkv + (size_t)i * row + (size_t)h * group * hd;
        float *out = j->out + (size_t)i * q_dim + (size_t)h * group * hd;

        /* scores = scale * q . k for every cached position */
        float max[CPU_MAX_GROUP];
        for (int g = 0; g < group; g++) max[g] = -INFINITY;
        for (int t = 0; t < len; t++) {
            const int slot = table[t / kv->block_tokens] * kv->block_tokens + t % kv->block_tokens;
            LOAD_ROW(kv_row(kv, kv->k, j->layer, slot, h), krow);
            for (int g = 0; g < group; g++) {
                const float sc = DOT(q + g * hd, krow, hd) * p->scale;
                scores[(size_t)g * n_ctx + t] = sc;
                if (sc > max[g]) max[g] = sc;
            }
        }
        /* softmax weights, then out = sum of weight * v */
        float inv[CPU_MAX_GROUP];
        for (int g = 0; g < group; g++) {
            inv[g] = 1.0f / SOFTMAX_EXP(scores + (size_t)g * n_ctx, len, max[g]);
            memset(out + g * hd, 0, sizeof(float) * (size_t)hd);
        }
        for (int t = 0; t < len; t++) {
            const int slot = table[t / kv->block_tokens] * kv->block_tokens + t % kv->block_tokens;
            LOAD_ROW(kv_row(kv, kv->v, j->layer, slot, h), krow);
            for (int g = 0; g < group; g++) AXPY(out + g * hd, scores[(size_t)g * n_ctx + t], krow, hd);
        }
        for (int g = 0; g < group; g++)
            for (int d = 0; d < hd; d++) out[g * hd + d] *= inv[g];
    }
#undef DOT
#undef LOAD_ROW
#undef AXPY
#undef SOFTMAX_EXP
}

void apr_cpu_attention(apr_stream *s, float *out, const float *qkv, const apr_kv_cache *kv, int layer,
                       const apr_step *st, const apr_attn_params *p)
{
    att_job j = { .s = s, .cqkv = qkv, .out = out, .kv = kv, .layer = layer, .st = st, .p = p };
    apr_parallel_for_n(s->n_threads, (int64_t)st->n * p->n_head_kv, 1, attention_body, &j);
}

apr_status apr_cpu_supports(apr_backend *b, int kv_type, int block_tokens, const apr_attn_params *p)
{
    APR_CHECK(kv_type == APR_F16 || kv_type == APR_Q8_0 || kv_type == APR_Q4_0, APR_ERR_UNSUPPORTED,
              "the CPU backend has no %s KV cache (it has F16, Q8_0 and Q4_0)",
              apr_dtype_name(kv_type) ? apr_dtype_name(kv_type) : "unknown");
    APR_CHECK(kv_type == APR_F16 || (p->head_dim % 32 == 0 && p->head_dim <= CPU_MAX_KV_HEAD_DIM),
              APR_ERR_UNSUPPORTED, "a %s KV cache needs heads of a multiple of 32 dimensions, at most %d, not %d",
              apr_dtype_name(kv_type), CPU_MAX_KV_HEAD_DIM, p->head_dim);
    APR_CHECK(block_tokens > 0, APR_ERR_UNSUPPORTED, "KV cache blocks of %d tokens", block_tokens);
    APR_CHECK(p->n_head_kv > 0 && p->n_head % p->n_head_kv == 0 && p->n_head / p->n_head_kv <= CPU_MAX_GROUP,
              APR_ERR_UNSUPPORTED, "the CPU backend needs n_head (%d) a multiple of n_head_kv (%d), at most %d times it",
              p->n_head, p->n_head_kv, CPU_MAX_GROUP);
    return APR_OK;
}
