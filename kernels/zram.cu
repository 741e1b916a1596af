/* zram.cu — same-filled KV pages found on the device, and pages moved
 * between the KV cache and pinned host memory by the kernels themselves.
 *
 * One warp a page. Every lane reads the page's first word (one broadcast
 * load), then the warp sweeps the page 2 KiB at a time (four 16-byte loads
 * a lane in flight) and leaves as soon as any lane has seen another word:
 * a page of real keys differs within its first 2 KiB, a same-filled page is
 * read once, at the memory's pace (bench/zram_gpu.sh puts the figure
 * beside the copy bandwidth). Staging writes a page that is not
 * same-filled to mapped host memory with coalesced 16-byte stores, so only
 * those pages cross PCIe, with no round trip to the host in between. */
#include "common.cuh"
#include "zram.cuh"

#define ZRAM_WARPS 8   /* pages (warps) per thread block */
#define ZRAM_UNROLL 4  /* 16-byte loads a lane has in flight */

/* ------------------------------------------------------------------ kernels */

enum { PAGES_FLAT = 0, PAGES_KV = 1 };

template <int MODE>
static __device__ __forceinline__ const uint4 *page_at(const apr_cuda_kv_pages &kv, const void *flat,
                                                       const int32_t *blocks, int64_t i)
{
    if (MODE == PAGES_FLAT) return (const uint4 *)((const uint8_t *)flat + (size_t)i * kv.page_bytes);
    const int64_t per_block = 2 * (int64_t)kv.n_layer;
    const int32_t b = blocks[i / per_block];
    const int layer = (int)((i / 2) % kv.n_layer);
    const uint8_t *base = (const uint8_t *)(i % 2 ? kv.v : kv.k);
    return (const uint4 *)(base + (size_t)layer * kv.layer_bytes + (size_t)b * kv.page_bytes);
}

static __device__ __forceinline__ bool differs(uint4 x, unsigned long long w)
{
    const unsigned long long a = (unsigned long long)x.x | (unsigned long long)x.y << 32;
    const unsigned long long b = (unsigned long long)x.z | (unsigned long long)x.w << 32;
    return (a != w) | (b != w);
}

template <int MODE, bool STAGE>
static __global__ void __launch_bounds__(32 * ZRAM_WARPS)
    stage_pages(apr_cuda_kv_pages kv, const void *flat, const int32_t *blocks, int64_t n_pages, uint8_t *same,
                unsigned long long *words, uint4 *staging)
{
    const int lane = threadIdx.x & 31;
    const int64_t i = (int64_t)blockIdx.x * ZRAM_WARPS + (threadIdx.x >> 5);
    if (i >= n_pages) return;  /* whole warps leave together */
    const uint4 *p = page_at<MODE>(kv, flat, blocks, i);
    const size_t n16 = kv.page_bytes / 16;
    const unsigned long long w = *(const unsigned long long *)p;
    bool diff = false;
    for (size_t base = 0; base < n16; base += 32 * ZRAM_UNROLL) {
        uint4 x[ZRAM_UNROLL];
#pragma unroll
        for (int k = 0; k < ZRAM_UNROLL; k++) {
            const size_t j = base + lane + 32 * k;
            x[k] = j < n16 ? __ldcs(p + j) : make_uint4((unsigned)w, (unsigned)(w >> 32), (unsigned)w, (unsigned)(w >> 32));
        }
#pragma unroll
        for (int k = 0; k < ZRAM_UNROLL; k++) diff |= differs(x[k], w);
        if (__any_sync(0xffffffffu, diff)) {
            diff = true;
            break;
        }
    }
    if (lane == 0) {
        same[i] = !diff;
        words[i] = diff ? 0 : w;
    }
    if (STAGE && diff) {
        uint4 *dst = staging + (size_t)i * n16;
        for (size_t j = lane; j < n16; j += 32) dst[j] = p[j];
    }
}

static __global__ void __launch_bounds__(32 * ZRAM_WARPS)
    load_pages(apr_cuda_kv_pages kv, const int32_t *blocks, int64_t n_pages, const uint8_t *same,
               const unsigned long long *words, const uint4 *staging)
{
    const int lane = threadIdx.x & 31;
    const int64_t i = (int64_t)blockIdx.x * ZRAM_WARPS + (threadIdx.x >> 5);
    if (i >= n_pages) return;
    uint4 *p = (uint4 *)page_at<PAGES_KV>(kv, NULL, blocks, i);
    const size_t n16 = kv.page_bytes / 16;
    if (same[i]) {
        const unsigned long long w = words[i];
        const uint4 v = make_uint4((unsigned)w, (unsigned)(w >> 32), (unsigned)w, (unsigned)(w >> 32));
        for (size_t j = lane; j < n16; j += 32) p[j] = v;
    } else {
        const uint4 *src = staging + (size_t)i * n16;
        for (size_t j = lane; j < n16; j += 32) p[j] = src[j];
    }
}

/* ---------------------------------------------------------------- launchers */

static int64_t grid_for(int64_t n_pages) { return APR_DIV_UP(n_pages, ZRAM_WARPS); }

static apr_status check_pages(size_t page_bytes)
{
    APR_CHECK(page_bytes >= 16 && page_bytes % 16 == 0, APR_ERR_INVALID,
              "zram kernels: pages of %zu bytes (a multiple of 16 is needed)", page_bytes);
    return APR_OK;
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_zram_stage_kv(const apr_cuda_kv_pages *kv, const int32_t *blocks, int n, uint8_t *same,
                                             uint64_t *words, void *staging, cudaStream_t stream)
{
    APR_TRY(check_pages(kv->page_bytes));
    const int64_t n_pages = (int64_t)n * 2 * kv->n_layer;
    if (n_pages <= 0) return APR_OK;
    if (staging)
        stage_pages<PAGES_KV, true><<<grid_for(n_pages), 32 * ZRAM_WARPS, 0, stream>>>(
            *kv, NULL, blocks, n_pages, same, (unsigned long long *)words, (uint4 *)staging);
    else
        stage_pages<PAGES_KV, false><<<grid_for(n_pages), 32 * ZRAM_WARPS, 0, stream>>>(
            *kv, NULL, blocks, n_pages, same, (unsigned long long *)words, NULL);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_zram_load_kv(const apr_cuda_kv_pages *kv, const int32_t *blocks, int n,
                                            const uint8_t *same, const uint64_t *words, const void *staging,
                                            cudaStream_t stream)
{
    APR_TRY(check_pages(kv->page_bytes));
    const int64_t n_pages = (int64_t)n * 2 * kv->n_layer;
    if (n_pages <= 0) return APR_OK;
    load_pages<<<grid_for(n_pages), 32 * ZRAM_WARPS, 0, stream>>>(*kv, blocks, n_pages, same,
                                                                   (const unsigned long long *)words,
                                                                   (const uint4 *)staging);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_zram_classify(const void *pages, size_t page_bytes, int64_t n_pages, uint8_t *same,
                                             uint64_t *words, cudaStream_t stream)
{
    APR_TRY(check_pages(page_bytes));
    if (n_pages <= 0) return APR_OK;
    apr_cuda_kv_pages kv = {};
    kv.page_bytes = page_bytes;
    stage_pages<PAGES_FLAT, false><<<grid_for(n_pages), 32 * ZRAM_WARPS, 0, stream>>>(
        kv, pages, NULL, n_pages, same, (unsigned long long *)words, NULL);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
