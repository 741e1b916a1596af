/* cpu.h — what the files of the CPU backend share (internal).
 *
 * The matrix products quantize their input the way llama.cpp does, because
 * integer dot products are several times faster than float ones on x86:
 *  - weights of 32-element formats (Q4_0 Q4_1 Q5_0 Q5_1 Q8_0) meet the input
 *    quantized to 8 bits per 32 elements ("act32": a float scale and the
 *    block's sum per 32);
 *  - K formats (Q4_K Q5_K Q6_K) meet it quantized per 256 elements ("act256":
 *    one float scale and sums per 16, llama.cpp's q8_K);
 *  - float weights (F32 F16 BF16) meet the input as it is, in f32.
 * The scales are kept as float (llama.cpp rounds q8_0's to f16), so apr's
 * products are at least as close to the exact ones as llama.cpp's.
 *
 * Every kernel exists in portable C (gemm_scalar.c, the reference) and in
 * x86 SIMD (gemm_x86.inc, compiled for AVX2 in gemm_avx2.c and for AVX-512
 * VNNI in gemm_vnni.c), chosen when the process starts by what the CPU
 * supports; APR_CPU_ISA=scalar|avx2 forces a lower level, and tests call
 * apr_cpu_set_isa to compare them. */
#ifndef APR_BACKEND_CPU_CPU_H
#define APR_BACKEND_CPU_CPU_H

#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "core/quant.h"

enum cpu_isa { CPU_SCALAR = 0, CPU_AVX2 = 1, CPU_VNNI = 2 };

/* The instruction set the kernels use now: the best this CPU has, unless
 * $APR_CPU_ISA (scalar, avx2, vnni) asks for less. */
int apr_cpu_isa(void);
/* Chooses it (tests); returns the previous one. A level the CPU lacks falls
 * back to the best it has below. */
int apr_cpu_set_isa(int isa);
/* The best level this CPU supports. */
int apr_cpu_best_isa(void);
/* 1 if this CPU has AVX2, FMA and F16C. */
int apr_cpu_has_avx2(void);

/* How a weight type wants its input. */
enum cpu_act_kind { ACT_F32 = 0, ACT_32 = 1, ACT_256 = 2 };
int apr_cpu_act_kind(int dtype);

/* The input of a product, quantized for one act kind. Row t of the input
 * (a token) has `cols` quants at q + t * cols, and per block (32 or 256
 * elements) a scale d. act32 adds ds = d * sum(q of the block); act256 adds
 * the integer sums of each 16 quants (the K formats' min and offset terms
 * need them). */
typedef struct cpu_act {
    int kind;
    int n;
    int64_t cols;
    const float *x;        /* [n][cols] the f32 input itself */
    int8_t *q;             /* [n][cols] */
    float *d;              /* [n][cols / 32] or [n][cols / 256] */
    float *ds;             /* act32: [n][cols / 32] */
    /* act32, for the SIMD kernels' tiles of 4 tokens only: */
    int8_t *qt;            /* [n / 4][cols / 32][4][32] q of each group of 4 tokens, interleaved by block */
    float *dt;             /* [n / 4][cols / 32][4] d, the same way */
    float *dst;            /* [n / 4][cols / 32][4] ds, the same way */
    int16_t *bsums;        /* act256: [n][cols / 16] */
} cpu_act;

/* One part of a product: rows [r0, r1) of weight w times all n tokens. */
typedef struct cpu_gemm {
    const uint8_t *w;      /* row 0 of the part */
    size_t row_bytes;
    int64_t cols;
    const cpu_act *a;
    int n;
    float *out;            /* row r of token t goes to out[t * ldo + r] */
    int64_t ldo;
    const float *bias;     /* [rows] or NULL */
    int accumulate;        /* add to out instead of storing */
} cpu_gemm;

/* scratch: per-thread memory of apr_cpu_gemm_scratch_bytes(cols) bytes,
 * 64-byte aligned (the AVX2 kernels unpack weight rows into it). */
typedef void (*cpu_gemm_fn)(const cpu_gemm *g, int64_t r0, int64_t r1, void *scratch);
size_t apr_cpu_gemm_scratch_bytes(int64_t cols);

/* The kernel for a weight type on an instruction set; NULL if none. */
cpu_gemm_fn apr_cpu_gemm_scalar(int dtype);
cpu_gemm_fn apr_cpu_gemm_avx2(int dtype);
cpu_gemm_fn apr_cpu_gemm_vnni(int dtype);
/* The kernel for the current instruction set. */
cpu_gemm_fn apr_cpu_gemm(int dtype);

/* Quantizes rows [t0, t1) of a->x into a (kind, cols and buffers set). */
void apr_cpu_quantize_scalar(cpu_act *a, int t0, int t1);
void apr_cpu_quantize_avx2(cpu_act *a, int t0, int t1);
void apr_cpu_quantize_vnni(cpu_act *a, int t0, int t1);

/* Writes a finished dot product: out = (accumulate ? out : 0) + v + bias. */
static inline void cpu_store(const cpu_gemm *g, int t, int64_t r, float v)
{
    float *o = g->out + (int64_t)t * g->ldo + r;
    if (g->bias) v += g->bias[r];
    *o = g->accumulate ? *o + v : v;
}

/* ---- the stream: scratch for one context's passes ---- */
struct apr_stream {
    apr_backend *b;
    int n_threads;
    apr_stream_sizes sizes;
    cpu_act act[3];        /* by kind; ACT_F32 has no buffers */
    uint8_t *gemm_scratch; /* [n_threads][gemm_stride] */
    size_t gemm_stride;
    float *att_scratch;    /* [n_threads][att_stride] */
    size_t att_stride;     /* floats per thread */
    float *rope_cache;     /* [n_batch][head_dim] cos, sin of each token's rotated pairs */
    float *glu_scratch;    /* [n_threads][glu_stride]: up products of one chunk of rows */
    size_t glu_stride;     /* n_batch * CPU_ROW_GRAIN */
};

/* Rows per chunk of a product's parallel loop: a few KB of weights, enough
 * work (tens of microseconds) that claiming a chunk is noise. */
#define CPU_ROW_GRAIN 16

/* Query heads per KV head the CPU attention handles (Qwen2.5-32B has 5). */
#define CPU_MAX_GROUP 64
/* Widest head a quantized cache stores (a key shifted on the stack). */
#define CPU_MAX_KV_HEAD_DIM 512

/* backend.h's supports: the KV cache types and attention geometries that
 * attention.c handles (attention.c). */
apr_status apr_cpu_supports(apr_backend *b, int kv_type, int block_tokens, const apr_attn_params *p);

/* Ops implemented in matmul.c and attention.c. */
void apr_cpu_matmul(apr_stream *s, float *out, const float *x, const apr_linear *W, int n, int accumulate);
void apr_cpu_matmul_glu(apr_stream *s, float *out, const float *x, const apr_linear *W, int n);
void apr_cpu_rope_store(apr_stream *s, float *qkv, const apr_kv_cache *kv, int layer,
                        const apr_step *st, const apr_attn_params *p);
void apr_cpu_attention(apr_stream *s, float *out, const float *qkv, const apr_kv_cache *kv, int layer,
                       const apr_step *st, const apr_attn_params *p);

/* KV pages to and from host memory (zram.c): on the CPU the cache is host
 * memory already, so these are the same-filled check and memcpy. */
void apr_cpu_kv_stage(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, uint8_t *same,
                      uint64_t *words, void *staging);
void apr_cpu_kv_load(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, const uint8_t *same,
                     const uint64_t *words, const void *staging);
void *apr_cpu_host_alloc(apr_backend *b, size_t bytes);
void apr_cpu_host_release(apr_backend *b, void *p);

#endif
