/* cuda.h — what the files of the CUDA backend share (internal).
 *
 *   backend.c  the table: device memory under a budget, streams, graphs
 *   weights.c  weight upload: staging, repacking (kernels/repack.cu), host-resident tables
 *   ops.c      the forward pass's ops, mapped onto kernels/ entry points
 *   device.c   finding and describing devices (apr_device_* in apr.h)
 *   blas.c     cuBLAS, opened at run time, for the products of long prompts
 *   zram.c     KV pages to and from pinned host memory (kernels/zram.cu)
 *
 * Every op runs on the stream's CUDA stream and returns nothing: the first
 * failure of a pass is kept in the stream and returned by sync (backend.h). */
#ifndef APR_BACKEND_CUDA_CUDA_H
#define APR_BACKEND_CUDA_CUDA_H

#include "backend/backend.h"

/* The CUDA backend on device gpu_index; vram_budget caps the bytes it
 * allocates (0: no cap). NULL with APR_ERR_DEVICE when there is no such
 * device or the build has no CUDA. */
apr_backend *apr_backend_cuda_new(int gpu_index, uint64_t vram_budget);

/* 1 if this build has the CUDA backend and a CUDA device is present. */
int apr_cuda_available(void);

#ifdef APR_CUDA

#include <cuda_runtime_api.h>

#include "kernels/qmat.cuh"
#include "kernels/rope.cuh"

/* Graphs recorded per pass shape. */
#define CUDA_MAX_GRAPHS 24

typedef struct cuda_alloc {
    void *p;
    size_t bytes;
    int host;              /* pinned, mapped host memory (counts for nothing against the budget) */
} cuda_alloc;

/* Weights end to end in one growing virtual range (arena.c). */
typedef struct cuda_arena {
    unsigned long long base;   /* CUdeviceptr of the reserved range */
    size_t reserved, mapped, used, gran;
    unsigned long long *h;     /* CUmemGenericAllocationHandle of each mapped chunk */
    size_t *h_size;
    int n_h, cap_h, dev;
} cuda_arena;

typedef struct cuda_backend {
    apr_backend base;
    cuda_arena weights;    /* reserved == 0: per-tensor cudaMalloc instead */
    int dev;
    uint64_t budget;       /* 0: none */
    uint64_t host_bytes;   /* pinned host memory held for weights */
    cuda_alloc *allocs;    /* every live allocation, for its size at release */
    int n_allocs, cap_allocs;
    int n_sm;
    int q8_block;          /* activation scale blocks most weights want (ops.c): 256 when K formats hold
                              most of the quantized bytes, else 32 */
    uint64_t kq_bytes, q32_bytes; /* those bytes, counted at upload */
    int glu_q8;            /* APR_CUDA_GLU_Q8=1: SwiGLU's kernel quantizes its output (ops.c: measured slower) */
    int q8_max;            /* products of up to this many tokens take int8 activations (CUDA_Q8_DEFAULT;
                              APR_CUDA_Q8_MAX=0..CUDA_GEMV_MAX for measurements) */
    int mma_max;           /* products of up to this many tokens take the tensor-core decode kernels
                              (CUDA_MMA_MAX; APR_CUDA_MMA_MAX=0..CUDA_MMA_MAX for measurements) */
    int blas_min;          /* products of at least this many tokens take f16 weights and cuBLAS when it is
                              present (CUDA_BLAS_MIN; APR_CUDA_BLAS_MIN for measurements) */
    size_t blas_chunk;     /* bytes of f16 weights dequantized at a time (CUDA_BLAS_CHUNK) */
} cuda_backend;

/* Which intermediate form of an activation buffer a kernel has already left
 * in the stream's scratch: the next product can skip converting it. Valid
 * only until the next op (see ops.c). */
typedef struct cuda_memo {
    const float *q8_of;    /* the int8 form of this buffer is in q8 (or in q8_buf when its q is set), */
    int q8_block;          /* in blocks of 32 or 256 columns */
    apr_cuda_q8 q8_buf;
    const float *f16_of;   /* f16_buf holds its f16 form, */
    const void *f16_buf;
    int f16_rounded;       /* int8-rounded per 32 or 256 columns (quantized weights), or 0, */
    int f16_frag;          /* in fragment order (qmat.cuh) or in rows */
} cuda_memo;

struct apr_stream {
    cuda_backend *b;
    cudaStream_t cs;
    apr_stream_sizes sizes;
    apr_cuda_q8 q8;        /* [n_batch][max_cols] int8 + meta */
    void *x16;             /* [n_batch][max_cols] f16: inputs of prefill products */
    void *x16f;            /* [CUDA_MMA_MAX][max_cols] f16 in fragment order: inputs of gemv_mma */
    void *q16;             /* [n_batch][n_head * head_dim] f16: rotated queries for prefill attention */
    void *att_scratch;     /* flash-decoding partial results */
    void *rope;            /* [n_batch][head_dim/2] float2: this pass's cos, sin (written at layer 0) */
    void *splitk;          /* partial sums of prefill products split over K (NULL: decode-only stream) */
    void *glu_q8;          /* [CUDA_GEMV_MAX][max_cols] int8 + meta: SwiGLU's output quantized by its own kernel */
    float *glu_meta;
    unsigned *glu_counters; /* [max_cols / 64] zero between launches */
    size_t splitk_bytes;
    void *blas;            /* cuBLAS handle (blas.c) of streams that take long passes, else NULL; its
                              workspace is splitk, which no kernel uses while cuBLAS runs */
    void *blas_w;          /* [blas_chunk] f16 weights, a chunk of rows at a time */
    float *blas_tmp;       /* SwiGLU's gate | up products of a chunk: [n_batch][2 R] */
    size_t blas_tmp_bytes;
    int n_split;           /* pieces a decode step's keys are cut into */
    cuda_memo memo;
    /* the first failure since the last sync */
    apr_status status;
    char message[512];
    /* graphs */
    int capturing;         /* index of the graph being recorded, or -1 */
    struct {
        uint64_t key;
        cudaGraphExec_t exec;
    } graphs[CUDA_MAX_GRAPHS];
    int n_graphs;
};

/* Device memory (or, when host is set, pinned host memory mapped into the
 * device's address space), counted in b->base.bytes / b->host_bytes. */
void *apr_cuda_alloc(cuda_backend *b, size_t bytes, int host);
void apr_cuda_release(cuda_backend *b, void *p);

/* The arena (arena.c): init returns 0 where the driver lacks the virtual
 * memory API; alloc returns NULL (message set) when over the budget or out
 * of memory; release unmaps everything. */
int apr_cuda_arena_init(cuda_arena *a, int dev, size_t reserve);
void *apr_cuda_arena_alloc(cuda_backend *b, cuda_arena *a, size_t bytes);
void apr_cuda_arena_release(cuda_backend *b, cuda_arena *a);

/* cuBLAS (blas.c): available says whether the library could be opened
 * (once per process); new makes a handle bound to a stream and a workspace,
 * or NULL; gemm computes c[t*ldc + r] = a_r . b_t + beta c[t*ldc + r] for m
 * f16 rows a of k_dim values and n f16 rows b, in f32. */
int apr_cuda_blas_available(void);
void *apr_cuda_blas_new(cudaStream_t cs, void *workspace, size_t workspace_bytes);
void apr_cuda_blas_free(void *handle);
apr_status apr_cuda_blas_gemm(void *handle, int m, int n, int k_dim, const void *a_f16, const void *b_f16, float *c,
                              int ldc, float beta);

/* Keeps the first failure of a pass (status and message) for sync. */
void apr_cuda_record(apr_stream *s, apr_status st);

/* The kernels' view of an uploaded weight. */
apr_cuda_qmat apr_cuda_weight_qmat(const apr_weight *w);

apr_status apr_cuda_weight_upload(apr_backend *b, apr_weight *w, const void *host);
apr_status apr_cuda_weight_upload_read(apr_backend *b, apr_weight *w, const apr_weight_reader *r);
void apr_cuda_weight_release(apr_backend *b, apr_weight *w);

/* The ops (ops.c). */
void apr_cuda_op_get_rows(apr_stream *s, float *out, const apr_weight *table, const int32_t *ids, int n);
apr_status apr_cuda_op_supports(apr_backend *b, int kv_type, int block_tokens, const apr_attn_params *p);
void apr_cuda_op_gather(apr_stream *s, float *out, const float *x, const int32_t *rows, int n, int64_t dim);
void apr_cuda_op_rmsnorm(apr_stream *s, float *out, const float *x, const apr_weight *w, int n, float eps);
void apr_cuda_op_matmul(apr_stream *s, float *out, const float *x, const apr_linear *W, int n, int accumulate);
void apr_cuda_op_rope_store(apr_stream *s, float *qkv, const apr_kv_cache *kv, int layer, const apr_step *st,
                            const apr_attn_params *p);
void apr_cuda_op_attention(apr_stream *s, float *out, const float *qkv, const apr_kv_cache *kv, int layer,
                           const apr_step *st, const apr_attn_params *p);
void apr_cuda_op_matmul_glu(apr_stream *s, float *out, const float *x, const apr_linear *W, int n);
void apr_cuda_op_argmax(apr_stream *s, int32_t *ids, const float *logits, int n, int64_t n_vocab);

/* KV pages to and from host memory (zram.c). */
void apr_cuda_op_kv_stage(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, uint8_t *same,
                          uint64_t *words, void *staging);
void apr_cuda_op_kv_load(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, const uint8_t *same,
                         const uint64_t *words, const void *staging);
void *apr_cuda_host_alloc_op(apr_backend *b, size_t bytes);

/* How a pass of n tokens runs (ops.c). Products: up to q8_max tokens
 * (CUDA_Q8_DEFAULT) int8 activations and dp4a matrix-vector kernels
 * (gemv.cu, which take up to CUDA_GEMV_MAX tokens: float weights go there up
 * to that many); up to CUDA_MMA_MAX the weight-streaming tensor-core kernels
 * on f16 activations (gemv_mma.cu); more, prefill's tiled kernels
 * (gemm.cu). Attention: split decode kernels up to CUDA_ATTN_DECODE_MAX
 * tokens, FlashAttention above (a prompt's tokens share their keys there
 * instead of each reading them). */
#define CUDA_GEMV_MAX 8
#define CUDA_Q8_DEFAULT 2
#define CUDA_MMA_MAX 32
#define CUDA_ATTN_DECODE_MAX 16
/* Passes of at least CUDA_BLAS_MIN tokens dequantize each weight matrix to
 * f16 once, CUDA_BLAS_CHUNK bytes of it at a time, and multiply it with
 * cuBLAS (blas.c), where the tiles would decode it once per 128 tokens.
 * Measured on the 32B (docs/cuda.md version 23): the f16 path costs ~80 ms
 * at any length (dequantizing and reading 65 GB of f16), the tiles ~26 ms
 * per 128 tokens, so the tiles win up to two tiles (256 tokens). Chunks of
 * 160 MiB were 12% faster than 32 MiB at 512 tokens (fewer, larger
 * products). */
#define CUDA_BLAS_MIN 257
#define CUDA_BLAS_CHUNK ((size_t)128 << 20)

#endif /* APR_CUDA */

#endif
