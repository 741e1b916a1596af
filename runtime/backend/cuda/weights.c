/* weights.c — uploading weights to the GPU, once, in their block formats.
 *
 * A weight becomes one allocation holding the arrays of its layout
 * (kernels/qmat.cuh), each 256-byte aligned. Formats the kernels read as
 * stored (Q4_K, Q5_K, F16, BF16, F32) are copied straight in; the others
 * pass through a device staging buffer and kernels/repack.cu, which only
 * reorders bytes: nothing is expanded.
 *
 * The bytes come from a reader (backend.h apr_weight_reader: a model
 * source's tensor, range by range) or a host pointer (the mapping, wrapped
 * as a reader). They are read into two pinned staging buffers in turn by
 * the worker pool, each piece on its own thread (an APR file's compressed
 * chunks are decoded there, in parallel, straight into pinned memory), and
 * each buffer is uploaded while the next fills, so loading runs near the
 * page cache's (or the decoders') speed rather than the driver's
 * pageable-copy path, and the host holds two buffers of the model at once,
 * never the model.
 *
 * A table that only get_rows reads (token_embd when the model has its own
 * output matrix: apr_weight.gather_only) stays in pinned host memory that
 * the device reads over PCIe, one row per token: 0.4 GB of VRAM saved on
 * Qwen2.5-32B for a few microseconds per step. */
#include "backend/cuda/cuda.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/parallel.h"

#ifdef APR_CUDA

#include "kernels/repack.cuh"

#define STAGE_BYTES ((size_t)64 << 20)
#define ALIGN(x) (((x) + 255) & ~(size_t)255)

/* ===================================================================== */
/* Layout                                                                */
/* ===================================================================== */

/* The layout's array sizes, or the raw bytes for tensors the matrix kernels
 * do not take (vectors of any width: norms and biases). */
static int layout_of(const apr_weight *w, apr_cuda_qmat_sizes *z)
{
    if (apr_cuda_qmat_layout(w->type, w->rows, w->cols, z)) return 1;
    memset(z, 0, sizeof *z);
    z->q = w->row_bytes * (size_t)w->rows;
    return 0;
}

static size_t layout_bytes(const apr_cuda_qmat_sizes *z)
{
    return ALIGN(z->q) + ALIGN(z->qh) + ALIGN(z->sc) + ALIGN(z->d) + ALIGN(z->m);
}

static apr_cuda_qmat qmat_at(const apr_weight *w, const void *base)
{
    apr_cuda_qmat_sizes z;
    layout_of(w, &z);
    const uint8_t *p = base;
    apr_cuda_qmat m = { .dtype = w->type, .rows = (int)w->rows, .cols = (int)w->cols, .q = p };
    p += ALIGN(z.q);
    if (z.qh) m.qh = p;
    p += ALIGN(z.qh);
    if (z.sc) m.sc = (const int8_t *)p;
    p += ALIGN(z.sc);
    if (z.d) m.d = (const uint16_t *)p;
    p += ALIGN(z.d);
    if (z.m) m.m = (const uint16_t *)p;
    return m;
}

apr_cuda_qmat apr_cuda_weight_qmat(const apr_weight *w) { return qmat_at(w, w->data); }

/* ===================================================================== */
/* Reading into staging                                                  */
/* ===================================================================== */

/* A host pointer as a reader. */
static apr_status host_read(void *ctx, uint64_t offset, void *dst, uint64_t n)
{
    memcpy(dst, (const uint8_t *)ctx + offset, n);
    return APR_OK;
}

typedef struct read_job {
    const apr_weight_reader *r;
    uint8_t *dst;
    uint64_t at;               /* reader offset of dst[0] */
    uint64_t n, piece;
    pthread_mutex_t lock;
    apr_status failed;
    char message[512];
} read_job;

static void read_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    read_job *j = ctx;
    for (int64_t k = begin; k < end; k++) {
        uint64_t off = (uint64_t)k * j->piece, len = j->n - off < j->piece ? j->n - off : j->piece;
        apr_status s = j->r->read(j->r->ctx, j->at + off, j->dst + off, len);
        if (s != APR_OK) {
            pthread_mutex_lock(&j->lock);
            if (j->failed == APR_OK) {
                j->failed = s;
                snprintf(j->message, sizeof j->message, "%s", apr_last_error());
            }
            pthread_mutex_unlock(&j->lock);
        }
    }
}

/* Bytes [at, at + n) of the reader into dst, in pieces on the worker pool:
 * the file's pages fault in, or its chunks decode, on all cores. `at` is a
 * multiple of the reader's piece, so pieces are its chunks. */
static apr_status parallel_read(void *dst, const apr_weight_reader *r, uint64_t at, size_t n)
{
    read_job j = { .r = r, .dst = dst, .at = at, .n = n, .piece = r->piece ? r->piece : (uint64_t)1 << 20 };
    pthread_mutex_init(&j.lock, NULL);
    apr_parallel_for((int64_t)((n + j.piece - 1) / j.piece), 1, read_body, &j);
    pthread_mutex_destroy(&j.lock);
    return j.failed == APR_OK ? APR_OK : apr_error(j.failed, "%s", j.message);
}

/* The staging buffers' fill: a whole number of the reader's pieces, so no
 * chunk is cut between two buffers (and decoded twice). */
static size_t stage_fill(const apr_weight_reader *r)
{
    if (!r->piece || r->piece > STAGE_BYTES) return STAGE_BYTES;
    return STAGE_BYTES / r->piece * r->piece;
}

/* The reader's bytes to device memory through two pinned buffers in turn:
 * while one uploads, the pool fills the other. */
static apr_status upload_bytes(void *dst, const apr_weight_reader *r, size_t bytes)
{
    static uint8_t *stage[2];
    static cudaEvent_t done[2];
    static cudaStream_t cs;
    cudaError_t e = cudaSuccess;
    if (!stage[0]) {
        for (int i = 0; i < 2 && e == cudaSuccess; i++) {
            e = cudaHostAlloc((void **)&stage[i], STAGE_BYTES, cudaHostAllocPortable);
            if (e == cudaSuccess) e = cudaEventCreateWithFlags(&done[i], cudaEventDisableTiming);
        }
        if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&cs, cudaStreamNonBlocking);
        if (e != cudaSuccess) {
            cudaGetLastError();
            stage[0] = stage[1] = NULL;
            /* no pinned memory to spare: the driver's own path, a piece at a time */
            uint8_t *tmp = malloc(STAGE_BYTES);
            if (!tmp) return apr_error(APR_ERR_NOMEM, "CUDA: no staging memory for uploading");
            apr_status s = APR_OK;
            size_t fill = stage_fill(r);
            for (size_t off = 0; off < bytes && s == APR_OK; off += fill) {
                size_t n = bytes - off < fill ? bytes - off : fill;
                s = parallel_read(tmp, r, off, n);
                if (s == APR_OK) e = cudaMemcpy((uint8_t *)dst + off, tmp, n, cudaMemcpyHostToDevice);
                if (s == APR_OK && e != cudaSuccess)
                    s = apr_error(APR_ERR_DEVICE, "CUDA: uploading: %s", cudaGetErrorString(e));
            }
            free(tmp);
            return s;
        }
    }
    apr_status s = APR_OK;
    const size_t fill = stage_fill(r);
    int i = 0;
    for (size_t off = 0; off < bytes && e == cudaSuccess && s == APR_OK; off += fill, i ^= 1) {
        size_t n = bytes - off < fill ? bytes - off : fill;
        e = cudaEventSynchronize(done[i]);
        if (e != cudaSuccess) break;
        s = parallel_read(stage[i], r, off, n);
        if (s != APR_OK) break;
        e = cudaMemcpyAsync((uint8_t *)dst + off, stage[i], n, cudaMemcpyHostToDevice, cs);
        if (e == cudaSuccess) e = cudaEventRecord(done[i], cs);
    }
    /* finish what was queued whatever failed, so the buffers are free again */
    cudaError_t e2 = cudaStreamSynchronize(cs);
    if (e == cudaSuccess) e = e2;
    if (s != APR_OK) return s;
    return e == cudaSuccess ? APR_OK : apr_error(APR_ERR_DEVICE, "CUDA: uploading: %s", cudaGetErrorString(e));
}

static int needs_repack(int type)
{
    return type == APR_Q6_K || type == APR_Q8_0 || type == APR_Q4_0 || type == APR_Q4_1 || type == APR_Q5_0 ||
           type == APR_Q5_1;
}

/* ===================================================================== */
/* Upload                                                                */
/* ===================================================================== */

apr_status apr_cuda_weight_upload(apr_backend *base, apr_weight *w, const void *host)
{
    apr_weight_reader r = { .read = host_read, .ctx = (void *)host, .piece = 0 };
    return apr_cuda_weight_upload_read(base, w, &r);
}

apr_status apr_cuda_weight_upload_read(apr_backend *base, apr_weight *w, const apr_weight_reader *r)
{
    cuda_backend *b = (cuda_backend *)base;
    apr_cuda_qmat_sizes z;
    const int has_layout = layout_of(w, &z);
    const char *tn = apr_dtype_name(w->type) ? apr_dtype_name(w->type) : "?";
    APR_CHECK(has_layout || w->type == APR_F32 || w->type == APR_F16 || w->type == APR_BF16, APR_ERR_UNSUPPORTED,
              "tensor %s: the CUDA backend has no kernels for %s matrices of %lld x %lld", w->name, tn,
              (long long)w->rows, (long long)w->cols);
    const size_t raw = w->row_bytes * (size_t)w->rows, total = layout_bytes(&z);
    const int on_host = w->gather_only != 0;
    uint8_t *dst = on_host || !b->weights.reserved ? apr_cuda_alloc(b, total, on_host)
                                                    : apr_cuda_arena_alloc(b, &b->weights, total);
    APR_CHECK(dst, APR_ERR_NOMEM, "tensor %s (%.1f MiB): %s", w->name, (double)total / (1 << 20), apr_last_error());

    apr_status s = APR_OK;
    if (!has_layout || !needs_repack(w->type)) {
        if (on_host) s = parallel_read(dst, r, 0, raw);
        else s = upload_bytes(dst, r, raw);
    } else {
        /* raw blocks to a staging buffer, repacked into place (for a table
         * kept on the host: repacked on the device, then copied back). The
         * staging lives only during this call and is not counted against
         * the budget, which is about what apr holds while it runs. */
        uint8_t *tmp = NULL, *out = on_host ? NULL : dst;
        cudaError_t e = cudaMalloc((void **)&tmp, raw);
        if (e == cudaSuccess && on_host) e = cudaMalloc((void **)&out, total);
        s = e == cudaSuccess ? APR_OK : apr_error(APR_ERR_NOMEM, "CUDA: staging %.1f MiB: %s",
                                                  (double)(raw + total) / (1 << 20), cudaGetErrorString(e));
        if (s == APR_OK) s = upload_bytes(tmp, r, raw);
        if (s == APR_OK) {
            apr_cuda_qmat m = qmat_at(w, out);
            s = apr_cuda_repack(&m, tmp, 0);
        }
        if (s == APR_OK) {
            e = cudaDeviceSynchronize();
            if (e == cudaSuccess && on_host) e = cudaMemcpy(dst, out, total, cudaMemcpyDeviceToHost);
            if (e != cudaSuccess) s = apr_error(APR_ERR_DEVICE, "CUDA: repacking: %s", cudaGetErrorString(e));
        }
        cudaFree(tmp);
        if (on_host) cudaFree(out);
        cudaGetLastError();
    }
    if (s != APR_OK) {
        apr_cuda_release(b, dst);
        return apr_error(s, "tensor %s: %s", w->name, apr_last_error());
    }
    w->data = dst;
    /* what the activations' int8 blocks should be (ops.c q8_block_for) */
    if (w->type == APR_Q4_K || w->type == APR_Q5_K || w->type == APR_Q6_K) b->kq_bytes += raw;
    else if (has_layout && w->type != APR_F32 && w->type != APR_F16 && w->type != APR_BF16) b->q32_bytes += raw;
    b->q8_block = b->kq_bytes > b->q32_bytes ? 256 : 32;
    return APR_OK;
}

void apr_cuda_weight_release(apr_backend *base, apr_weight *w)
{
    apr_cuda_release((cuda_backend *)base, (void *)w->data);
    w->data = NULL;
}

#endif /* APR_CUDA */
