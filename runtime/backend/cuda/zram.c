/* zram.c — KV pages to and from pinned host memory on the GPU
 * (backend.h's kv_stage and kv_load, kernels/zram.cu), and the
 * classification kernel's bandwidth for bench/zram_gpu.sh.
 *
 * The host buffers are pinned and mapped (apr_cuda_alloc with host set), so
 * the kernels read the block list and write flags, words and pages over
 * PCIe themselves: a same-filled page costs 9 bytes of traffic, and there
 * is no round trip to the host between finding which pages to move and
 * moving them. */
#include <stdlib.h>
#include <string.h>

#include "apr.h"
#include "backend/cuda/cuda.h"
#include "core/error.h"
#include "core/rng.h"

#ifdef APR_CUDA

#include <cuda_runtime_api.h>

#include "kernels/zram.cuh"

static apr_cuda_kv_pages pages_of(const apr_kv_cache *kv)
{
    return (apr_cuda_kv_pages){
        .k = kv->k,
        .v = kv->v,
        .layer_bytes = kv->layer_bytes,
        .page_bytes = (size_t)kv->n_head_kv * (size_t)kv->block_tokens * kv->row_bytes,
        .n_layer = kv->n_layer,
    };
}

void apr_cuda_op_kv_stage(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, uint8_t *same,
                          uint64_t *words, void *staging)
{
    s->memo = (cuda_memo){ 0 };
    apr_cuda_kv_pages p = pages_of(kv);
    apr_cuda_record(s, apr_cuda_zram_stage_kv(&p, blocks, n, same, words, staging, s->cs));
}

void apr_cuda_op_kv_load(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, const uint8_t *same,
                         const uint64_t *words, const void *staging)
{
    s->memo = (cuda_memo){ 0 };
    apr_cuda_kv_pages p = pages_of(kv);
    apr_cuda_record(s, apr_cuda_zram_load_kv(&p, blocks, n, same, words, staging, s->cs));
}

void *apr_cuda_host_alloc_op(apr_backend *b, size_t bytes) { return apr_cuda_alloc((cuda_backend *)b, bytes, 1); }

#endif

/* ===================================================================== */
/* The classification kernel's bandwidth                                 */
/* ===================================================================== */

/* bytes of pages (each page_bytes) in device memory, all same-filled
 * (a repeated byte) or all random; the kernel timed with events, best of
 * five after a warm-up, and its verdict checked against what was written. */
apr_status apr_device_zram_bandwidth(int index, uint64_t bytes, uint64_t page_bytes, int same_filled, double *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_device_zram_bandwidth: out is NULL");
    *out = 0;
    APR_CHECK(page_bytes >= 16 && page_bytes % 16 == 0 && bytes >= page_bytes && bytes % page_bytes == 0,
              APR_ERR_INVALID, "apr_device_zram_bandwidth: %llu bytes of pages of %llu (a multiple of 16)",
              (unsigned long long)bytes, (unsigned long long)page_bytes);
    const int n = apr_device_count();
    APR_CHECK(index >= 0 && index < n, APR_ERR_RANGE, "no CUDA device %d (%d present)", index, n);
#ifdef APR_CUDA
    const int64_t n_pages = (int64_t)(bytes / page_bytes);
    void *d = NULL, *flags = NULL;
    uint8_t *host = NULL, *chunk = NULL;
    cudaEvent_t t0 = NULL, t1 = NULL;
    const size_t chunk_bytes = (size_t)(bytes < (64u << 20) ? bytes : (64u << 20)) / page_bytes * page_bytes;
    cudaError_t e = cudaSetDevice(index);
    if (e == cudaSuccess) e = cudaMalloc(&d, bytes);
    const size_t same_bytes = ((size_t)n_pages + 7) / 8 * 8;
    if (e == cudaSuccess) e = cudaMalloc(&flags, same_bytes + (size_t)n_pages * 8);
    if (e == cudaSuccess && same_filled) e = cudaMemset(d, 0x5a, bytes);
    if (e == cudaSuccess && !same_filled) {
        chunk = malloc(chunk_bytes);
        if (!chunk) e = cudaErrorMemoryAllocation;
        apr_rng r;
        apr_rng_seed(&r, 1);
        for (size_t i = 0; chunk && i < chunk_bytes; i += 8) {
            uint64_t x = apr_rng_next(&r);
            memcpy(chunk + i, &x, 8);
        }
        for (uint64_t at = 0; e == cudaSuccess && at < bytes; at += chunk_bytes)
            e = cudaMemcpy((uint8_t *)d + at, chunk, bytes - at < chunk_bytes ? bytes - at : chunk_bytes,
                           cudaMemcpyHostToDevice);
    }
    if (e == cudaSuccess) e = cudaEventCreate(&t0);
    if (e == cudaSuccess) e = cudaEventCreate(&t1);
    uint8_t *same = flags;
    uint64_t *words = (uint64_t *)((uint8_t *)flags + same_bytes);
    float best = 0;
    apr_status st = APR_OK;
    for (int i = 0; i < 6 && e == cudaSuccess && st == APR_OK; i++) {
        cudaEventRecord(t0, 0);
        st = apr_cuda_zram_classify(d, page_bytes, n_pages, same, words, 0);
        cudaEventRecord(t1, 0);
        e = cudaEventSynchronize(t1);
        float ms = 0;
        if (e == cudaSuccess) e = cudaEventElapsedTime(&ms, t0, t1);
        if (i > 0 && (best == 0 || ms < best)) best = ms;
    }
    int64_t got = -1;
    if (e == cudaSuccess && st == APR_OK) {
        host = malloc((size_t)n_pages);
        if (!host) e = cudaErrorMemoryAllocation;
        else e = cudaMemcpy(host, same, (size_t)n_pages, cudaMemcpyDeviceToHost);
        got = 0;
        for (int64_t i = 0; host && e == cudaSuccess && i < n_pages; i++) got += host[i];
    }
    if (t0) cudaEventDestroy(t0);
    if (t1) cudaEventDestroy(t1);
    cudaFree(d);
    cudaFree(flags);
    free(host);
    free(chunk);
    if (st != APR_OK) return st;
    if (e != cudaSuccess) {
        cudaGetLastError();
        return apr_error(APR_ERR_DEVICE, "CUDA device %d: measuring the zram kernel: %s", index,
                         cudaGetErrorString(e));
    }
    APR_CHECK(got == (same_filled ? n_pages : 0), APR_ERR_DEVICE,
              "the zram kernel found %lld of %lld pages same-filled, %lld were written so", (long long)got,
              (long long)n_pages, (long long)(same_filled ? n_pages : 0));
    *out = (double)bytes / (best * 1e-3);
    return APR_OK;
#else
    return apr_error(APR_ERR_DEVICE, "this build of apr has no CUDA backend");
#endif
}
