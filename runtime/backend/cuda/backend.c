/* backend.c — the CUDA backend: its table, device memory under a budget,
 * streams with their scratch, and decode steps replayed as CUDA graphs.
 *
 * All device memory goes through apr_cuda_alloc, which counts it and
 * refuses what would pass the budget (--vram-budget): weights, KV cache,
 * activations and scratch alike, so a 24 GB card can be emulated on an
 * 80 GB one. What the driver itself takes (the context, ~0.5 GB) is not
 * apr's to count; `apr devices` shows the card's own figures. */
#include "backend/cuda/cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

#ifdef APR_CUDA

#include "kernels/attention.cuh"
#include "kernels/gemm.cuh"

#define MiB(x) ((double)(x) / (1 << 20))

/* ===================================================================== */
/* Memory                                                                */
/* ===================================================================== */

static apr_status cuda_fail(cudaError_t e, const char *what)
{
    return apr_error(APR_ERR_DEVICE, "CUDA: %s: %s", what, cudaGetErrorString(e));
}

void *apr_cuda_alloc(cuda_backend *b, size_t bytes, int host)
{
    if (bytes == 0) bytes = 1;
    bytes = (bytes + 255) & ~(size_t)255;
    if (!host && b->budget && b->base.bytes + bytes > b->budget) {
        apr_error(APR_ERR_NOMEM,
                  "the VRAM budget of %.0f MiB is exceeded: %.0f MiB are in use and %.1f MiB more are needed",
                  MiB(b->budget), MiB(b->base.bytes), MiB(bytes));
        return NULL;
    }
    if (b->n_allocs == b->cap_allocs) {
        int cap = b->cap_allocs ? 2 * b->cap_allocs : 256;
        cuda_alloc *a = realloc(b->allocs, sizeof *a * (size_t)cap);
        if (!a) {
            apr_error(APR_ERR_NOMEM, "cannot grow the CUDA allocation table");
            return NULL;
        }
        b->allocs = a;
        b->cap_allocs = cap;
    }
    void *p = NULL;
    cudaError_t e = cudaSetDevice(b->dev);
    if (e == cudaSuccess) e = host ? cudaHostAlloc(&p, bytes, cudaHostAllocMapped | cudaHostAllocPortable)
                                   : cudaMalloc(&p, bytes);
    if (e == cudaSuccess && !host) e = cudaMemset(p, 0, bytes);
    if (e != cudaSuccess) {
        if (p) host ? cudaFreeHost(p) : cudaFree(p);
        cudaGetLastError();
        apr_error(APR_ERR_NOMEM, "CUDA: cannot allocate %.1f MiB of %s memory (%.0f MiB in use): %s", MiB(bytes),
                  host ? "pinned host" : "device", MiB(host ? b->host_bytes : b->base.bytes), cudaGetErrorString(e));
        return NULL;
    }
    b->allocs[b->n_allocs++] = (cuda_alloc){ p, bytes, host };
    if (host) b->host_bytes += bytes;
    else b->base.bytes += bytes;
    return p;
}

void apr_cuda_release(cuda_backend *b, void *p)
{
    if (!p) return;
    for (int i = b->n_allocs - 1; i >= 0; i--) {
        if (b->allocs[i].p != p) continue;
        if (b->allocs[i].host) {
            cudaFreeHost(p);
            b->host_bytes -= b->allocs[i].bytes;
        } else {
            cudaFree(p);
            b->base.bytes -= b->allocs[i].bytes;
        }
        b->allocs[i] = b->allocs[--b->n_allocs];
        return;
    }
}

static void *cuda_alloc_op(apr_backend *b, size_t bytes) { return apr_cuda_alloc((cuda_backend *)b, bytes, 0); }
static void cuda_release_op(apr_backend *b, void *p) { apr_cuda_release((cuda_backend *)b, p); }

/* ===================================================================== */
/* Streams                                                               */
/* ===================================================================== */

void apr_cuda_record(apr_stream *s, apr_status st)
{
    if (st == APR_OK || s->status != APR_OK) return;
    s->status = st;
    snprintf(s->message, sizeof s->message, "%s", apr_last_error());
}

static void cuda_stream_free(apr_stream *s)
{
    if (!s) return;
    cuda_backend *b = s->b;
    for (int i = 0; i < s->n_graphs; i++) cudaGraphExecDestroy(s->graphs[i].exec);
    apr_cuda_release(b, s->q8.q);
    apr_cuda_release(b, s->q8.meta);
    apr_cuda_release(b, s->x16);
    apr_cuda_release(b, s->x16f);
    apr_cuda_release(b, s->q16);
    apr_cuda_release(b, s->att_scratch);
    apr_cuda_release(b, s->rope);
    apr_cuda_release(b, s->splitk);
    apr_cuda_release(b, s->glu_q8);
    apr_cuda_release(b, s->glu_meta);
    apr_cuda_release(b, s->glu_counters);
    apr_cuda_blas_free(s->blas);
    apr_cuda_release(b, s->blas_w);
    apr_cuda_release(b, s->blas_tmp);
    if (s->cs) cudaStreamDestroy(s->cs);
    free(s);
}

static apr_stream *cuda_stream_new(apr_backend *base, const apr_stream_sizes *z)
{
    cuda_backend *b = (cuda_backend *)base;
    APR_CHECK_NULL(z->n_head_kv > 0 && z->n_head % z->n_head_kv == 0 && z->n_head / z->n_head_kv <= 8,
                   APR_ERR_UNSUPPORTED, "the CUDA backend needs n_head (%d) a multiple of n_head_kv (%d), at most 8 times it",
                   z->n_head, z->n_head_kv);
    APR_CHECK_NULL(z->head_dim == 64 || z->head_dim == 128, APR_ERR_UNSUPPORTED,
                   "the CUDA backend handles heads of 64 or 128 dimensions, not %d", z->head_dim);
    APR_CHECK_NULL(z->max_cols % 64 == 0, APR_ERR_UNSUPPORTED,
                   "the CUDA backend needs widths that are multiples of 64 (%lld)", (long long)z->max_cols);
    apr_stream *s = calloc(1, sizeof *s);
    APR_CHECK_NULL(s, APR_ERR_NOMEM, "cannot allocate a CUDA stream");
    s->b = b;
    s->sizes = *z;
    s->capturing = -1;
    cudaError_t e = cudaSetDevice(b->dev);
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&s->cs, cudaStreamNonBlocking);
    if (e != cudaSuccess) {
        cuda_fail(e, "creating a stream");
        free(s);
        return NULL;
    }
    /* enough pieces per KV head that a decode step fills every SM four
     * times over at long contexts; short contexts leave most of them empty */
    s->n_split = 4 * b->n_sm / z->n_head_kv;
    if (getenv("APR_CUDA_SPLITS")) s->n_split = atoi(getenv("APR_CUDA_SPLITS")); /* for measurements */
    if (s->n_split < 1) s->n_split = 1;
    if (s->n_split > 128) s->n_split = 128;
    const size_t n = (size_t)z->n_batch, K = (size_t)z->max_cols, q_dim = (size_t)z->n_head * z->head_dim;
    s->q8.cols = (int)K;
    int ok = (s->q8.q = apr_cuda_alloc(b, n * K, 0)) != NULL;
    ok = ok && (s->q8.meta = apr_cuda_alloc(b, n * (K / 32) * 4 * sizeof(float), 0)) != NULL;
    ok = ok && (s->x16 = apr_cuda_alloc(b, n * K * 2, 0)) != NULL;
    /* whole groups of 8 tokens: the kernels read a group's unused rows (and ignore their results) */
    const size_t nf = (n < CUDA_MMA_MAX ? n : CUDA_MMA_MAX) + APR_CUDA_XFRAG_TOKENS - 1;
    ok = ok && (s->x16f = apr_cuda_alloc(b, nf / APR_CUDA_XFRAG_TOKENS * APR_CUDA_XFRAG_TOKENS * K * 2, 0)) != NULL;
    ok = ok && (s->q16 = apr_cuda_alloc(b, n * q_dim * 2, 0)) != NULL;
    const int na = z->n_batch < CUDA_ATTN_DECODE_MAX ? z->n_batch : CUDA_ATTN_DECODE_MAX;
    ok = ok && (s->att_scratch = apr_cuda_alloc(b, apr_cuda_attention_scratch_bytes(na, z->n_head, s->n_split,
                                                                                     z->head_dim), 0));
    ok = ok && (s->rope = apr_cuda_alloc(b, n * (size_t)z->head_dim / 2 * 8, 0)) != NULL;
    const size_t nd = n < CUDA_GEMV_MAX ? n : CUDA_GEMV_MAX;
    if (b->glu_q8) {
        ok = ok && (s->glu_q8 = apr_cuda_alloc(b, nd * K, 0)) != NULL;
        ok = ok && (s->glu_meta = apr_cuda_alloc(b, nd * (K / 32) * 4 * sizeof(float), 0)) != NULL;
        ok = ok && (s->glu_counters = apr_cuda_alloc(b, (K / 64 + 1) * sizeof(unsigned), 0)) != NULL;
    }
    if (ok && z->n_batch > CUDA_Q8_DEFAULT) {
        s->splitk_bytes = APR_CUDA_GEMM_SCRATCH;
        ok = (s->splitk = apr_cuda_alloc(b, s->splitk_bytes, 0)) != NULL;
    }
    /* long passes: f16 weight chunks and cuBLAS, where the library opens */
    if (ok && z->n_batch >= b->blas_min && apr_cuda_blas_available()) {
        s->blas_tmp_bytes = n * 2 * 4096 * sizeof(float);
        ok = (s->blas_w = apr_cuda_alloc(b, b->blas_chunk, 0)) != NULL;
        ok = ok && (s->blas_tmp = apr_cuda_alloc(b, s->blas_tmp_bytes, 0)) != NULL;
        if (ok) s->blas = apr_cuda_blas_new(s->cs, s->splitk, s->splitk_bytes);
    }
    if (!ok) {
        cuda_stream_free(s);
        return NULL;
    }
    return s;
}

static void cuda_upload(apr_stream *s, void *dst, const void *src, size_t bytes)
{
    s->memo = (cuda_memo){ 0 };
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s->cs);
    if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "copying to the device"));
}

static void cuda_download(apr_stream *s, void *dst, const void *src, size_t bytes)
{
    cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s->cs);
    if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "copying from the device"));
}

static apr_status cuda_sync(apr_stream *s)
{
    cudaError_t e = cudaStreamSynchronize(s->cs);
    if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "running a pass"));
    apr_status st = s->status;
    if (st != APR_OK) apr_error(st, "%s", s->message);
    s->status = APR_OK;
    s->message[0] = 0;
    return st;
}

/* ===================================================================== */
/* Graphs                                                                */
/* ===================================================================== */

/* A decode step is ~10 kernels per layer: 640 launches for Qwen2.5-32B,
 * whose gaps alone cost milliseconds. Recorded once per pass shape and
 * replayed, the step is one launch. The ops' pointer arguments are fixed
 * for a context's life (backend.h), and what changes between steps (ids,
 * positions, block tables) is read from device memory by the kernels. */
static int cuda_pass_begin(apr_stream *s, uint64_t key)
{
    if (getenv("APR_CUDA_NO_GRAPHS")) return 0;
    for (int i = 0; i < s->n_graphs; i++) {
        if (s->graphs[i].key != key) continue;
        cudaError_t e = cudaGraphLaunch(s->graphs[i].exec, s->cs);
        if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "replaying a pass"));
        return 1;
    }
    if (s->n_graphs == CUDA_MAX_GRAPHS || s->status != APR_OK) return 0;
    cudaError_t e = cudaStreamBeginCapture(s->cs, cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        cudaGetLastError();
        return 0; /* run the ops directly */
    }
    s->capturing = s->n_graphs;
    s->graphs[s->capturing].key = key;
    return 0;
}

static void cuda_pass_end(apr_stream *s)
{
    if (s->capturing < 0) return;
    const int i = s->capturing;
    s->capturing = -1;
    cudaGraph_t g = NULL;
    cudaError_t e = cudaStreamEndCapture(s->cs, &g);
    if (e == cudaSuccess && s->status == APR_OK) e = cudaGraphInstantiate(&s->graphs[i].exec, g, 0);
    if (g) cudaGraphDestroy(g);
    if (e != cudaSuccess || s->status != APR_OK) {
        if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "recording a pass"));
        return;
    }
    s->n_graphs++;
    e = cudaGraphLaunch(s->graphs[i].exec, s->cs);
    if (e != cudaSuccess) apr_cuda_record(s, cuda_fail(e, "running a recorded pass"));
}

/* ===================================================================== */
/* The backend                                                           */
/* ===================================================================== */

static void cuda_destroy(apr_backend *base)
{
    cuda_backend *b = (cuda_backend *)base;
    while (b->n_allocs > 0) apr_cuda_release(b, b->allocs[b->n_allocs - 1].p);
    apr_cuda_arena_release(b, &b->weights);
    free(b->allocs);
    free(b);
}

apr_backend *apr_backend_cuda_new(int gpu_index, uint64_t vram_budget)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
        cudaGetLastError();
        apr_error(APR_ERR_DEVICE, "no CUDA device%s%s",
                  e == cudaErrorInsufficientDriver ? " (no NVIDIA driver, or one too old for CUDA 13)"
                  : e != cudaSuccess && e != cudaErrorNoDevice ? ": " : "",
                  e != cudaSuccess && e != cudaErrorNoDevice && e != cudaErrorInsufficientDriver ? cudaGetErrorString(e) : "");
        return NULL;
    }
    APR_CHECK_NULL(gpu_index >= 0 && gpu_index < count, APR_ERR_DEVICE, "no CUDA device %d (%d present)", gpu_index,
                   count);
    struct cudaDeviceProp prop;
    e = cudaGetDeviceProperties(&prop, gpu_index);
    if (e != cudaSuccess) {
        cuda_fail(e, "reading the device's properties");
        return NULL;
    }
    APR_CHECK_NULL(prop.major >= 9, APR_ERR_UNSUPPORTED,
                   "CUDA device %d (%s) has compute capability %d.%d; apr's kernels are built for 9.0 (Hopper)",
                   gpu_index, prop.name, prop.major, prop.minor);
    cudaSetDevice(gpu_index);
    if (apr_cuda_gemm_setup() != APR_OK || apr_cuda_attention_setup() != APR_OK) return NULL;
    cuda_backend *b = calloc(1, sizeof *b);
    APR_CHECK_NULL(b, APR_ERR_NOMEM, "cannot allocate the CUDA backend");
    b->dev = gpu_index;
    b->budget = vram_budget;
    b->n_sm = prop.multiProcessorCount;
    b->q8_block = 32;
    b->glu_q8 = getenv("APR_CUDA_GLU_Q8") != NULL;
    b->q8_max = CUDA_Q8_DEFAULT;
    if (getenv("APR_CUDA_Q8_MAX")) b->q8_max = atoi(getenv("APR_CUDA_Q8_MAX")); /* for measurements */
    if (b->q8_max < 0 || b->q8_max > CUDA_GEMV_MAX) b->q8_max = CUDA_Q8_DEFAULT;
    b->mma_max = CUDA_MMA_MAX;
    if (getenv("APR_CUDA_MMA_MAX")) b->mma_max = atoi(getenv("APR_CUDA_MMA_MAX")); /* for measurements */
    if (b->mma_max < 0 || b->mma_max > CUDA_MMA_MAX) b->mma_max = CUDA_MMA_MAX;
    b->blas_min = CUDA_BLAS_MIN;
    if (getenv("APR_CUDA_BLAS_MIN")) b->blas_min = atoi(getenv("APR_CUDA_BLAS_MIN")); /* for measurements */
    if (b->blas_min <= CUDA_MMA_MAX) b->blas_min = CUDA_MMA_MAX + 1;
    b->blas_chunk = CUDA_BLAS_CHUNK;
    if (getenv("APR_CUDA_BLAS_CHUNK_MIB")) b->blas_chunk = (size_t)atoi(getenv("APR_CUDA_BLAS_CHUNK_MIB")) << 20;
    if (b->blas_chunk < ((size_t)4 << 20)) b->blas_chunk = CUDA_BLAS_CHUNK;
    cudaSetDevice(gpu_index);
    /* the kernels' stack frames are at most 40 bytes (ptxas -v); the
     * default 1 KB per thread reserves local memory for every thread the
     * device can hold */
    cudaDeviceSetLimit(cudaLimitStackSize, 256);
    apr_cuda_arena_init(&b->weights, gpu_index, prop.totalGlobalMem);
    b->base = (apr_backend){
        .name = "cuda",
        .device = APR_DEVICE_CUDA,
        .budget = vram_budget,
        .destroy = cuda_destroy,
        .alloc = cuda_alloc_op,
        .release = cuda_release_op,
        .weight_upload = apr_cuda_weight_upload,
        .weight_upload_read = apr_cuda_weight_upload_read,
        .weight_release = apr_cuda_weight_release,
        .supports = apr_cuda_op_supports,
        .stream_new = cuda_stream_new,
        .stream_free = cuda_stream_free,
        .upload = cuda_upload,
        .download = cuda_download,
        .sync = cuda_sync,
        .get_rows = apr_cuda_op_get_rows,
        .gather = apr_cuda_op_gather,
        .rmsnorm = apr_cuda_op_rmsnorm,
        .matmul = apr_cuda_op_matmul,
        .rope_store = apr_cuda_op_rope_store,
        .attention = apr_cuda_op_attention,
        .matmul_glu = apr_cuda_op_matmul_glu,
        .pass_begin = cuda_pass_begin,
        .pass_end = cuda_pass_end,
        .argmax = apr_cuda_op_argmax,
        .kv_stage = apr_cuda_op_kv_stage,
        .kv_load = apr_cuda_op_kv_load,
        .host_alloc = apr_cuda_host_alloc_op,
        .host_release = cuda_release_op,
    };
    return &b->base;
}

int apr_cuda_available(void)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count > 0;
}

#else /* no CUDA in this build */

apr_backend *apr_backend_cuda_new(int gpu_index, uint64_t vram_budget)
{
    (void)gpu_index;
    (void)vram_budget;
    apr_error(APR_ERR_DEVICE, "this build of apr has no CUDA backend (nvcc was not found when it was built)");
    return NULL;
}

int apr_cuda_available(void) { return 0; }

#endif
