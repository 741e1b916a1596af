/* common.cuh — what every CUDA kernel family shares (internal).
 *
 * Included by the .cu files only. The per-family .cuh headers, which C code
 * includes, hold nothing but host entry points and plain C types. */
#ifndef APR_KERNELS_COMMON_CUH
#define APR_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>
#include <stdlib.h>

extern "C" {
#include "core/error.h"
}

/* Turns a failed CUDA call into an apr_status whose message says where. */
#define APR_CUDA_CHECK(call)                                                          \
    do {                                                                              \
        cudaError_t apr_cuda_e_ = (call);                                             \
        if (apr_cuda_e_ != cudaSuccess)                                               \
            return apr_error(APR_ERR_DEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call, \
                             cudaGetErrorString(apr_cuda_e_));                        \
    } while (0)

/* After a launch: configuration errors surface here, execution errors at the
 * next synchronisation. */
#define APR_CUDA_LAUNCHED() APR_CUDA_CHECK(cudaGetLastError())

#define APR_DIV_UP(a, b) (((a) + (b) - 1) / (b))

/* The current device's SM count, for sizing grids (132 if it cannot be read). */
static inline int sm_count()
{
    static int n = 0;
    if (!n) {
        int dev = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || n <= 0) n = 132;
    }
    return n;
}

/* Programmatic dependent launch (Hopper): a decode step is ~700 kernels
 * whose launch gaps and ramp-up would idle the memory system between
 * products. A kernel launched with launch_pdl may start while the one
 * before it drains: it calls pdl_trigger() first (letting the kernel
 * after it launch in turn), may read what no earlier kernel writes (the
 * weights) at once, and calls pdl_wait() before it reads anything an
 * earlier kernel wrote or writes anything at all. pdl_wait returns at once
 * in a kernel launched normally. APR_CUDA_NO_PDL=1 turns the overlap off. */
static __device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
static __device__ __forceinline__ void pdl_trigger() { asm volatile("griddepcontrol.launch_dependents;" ::: "memory"); }

template <typename... Params, typename... Args>
static cudaError_t launch_pdl(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                              Args... args)
{
    static int off = -1;
    if (off < 0) off = getenv("APR_CUDA_NO_PDL") != NULL;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = off ? 0 : 1;
    return cudaLaunchKernelEx(&cfg, kernel, ((Params)args)...);
}

static __device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over a block of blockDim.x threads (a multiple of 32, at most 1024);
 * every thread gets the total. `red` is 32 floats of shared memory. */
static __device__ __forceinline__ float block_sum(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    return warp_sum(v);
}

static __device__ __forceinline__ float block_max(float v, float *red)
{
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = warp_max(v);
    __syncthreads();
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    return warp_max(v);
}

/* Writes one chunk of 64 columns (chunk c of a row) in the int8 unit
 * layout of qmat.cuh with the given scales, a warp at a time: lane l brings
 * column l (va, block A) and column 32+l (vb, block B). Round to nearest,
 * as llama.cpp's q8_1 and q8_K do. */
static __device__ __forceinline__ void q8_chunk_scaled(float va, float vb, float da, float db, int c, int8_t *q,
                                                       float4 *meta)
{
    int lane = threadIdx.x & 31, h = lane >> 4, i = lane & 15;
    int qa = da > 0.0f ? __float2int_rn(va / da) : 0;
    int qb = db > 0.0f ? __float2int_rn(vb / db) : 0;
    int8_t *dst = q + 32 * (2 * c + h);
    dst[i] = (int8_t)qa;
    dst[16 + i] = (int8_t)qb;
    float sa = (float)qa, sb = (float)qb; /* sums over each half's 16 lanes */
#pragma unroll
    for (int o = 8; o > 0; o >>= 1) {
        sa += __shfl_xor_sync(0xffffffffu, sa, o);
        sb += __shfl_xor_sync(0xffffffffu, sb, o);
    }
    if (i == 0) meta[2 * c + h] = make_float4(da, da * sa, db, db * sb);
}

/* The same with a scale per block of 32 (max|x| / 127): llama.cpp's q8_1,
 * what its products of 32-element formats (Q8_0, Q4_0, Q5_0...) meet. */
static __device__ __forceinline__ void q8_chunk(float va, float vb, int c, int8_t *q, float4 *meta)
{
    q8_chunk_scaled(va, vb, warp_max(fabsf(va)) / 127.0f, warp_max(fabsf(vb)) / 127.0f, c, q, meta);
}

/* Four chunks (256 columns from chunk c0) with one scale: llama.cpp's q8_K,
 * what its CPU products of K formats meet. */
static __device__ __forceinline__ void q8_chunks256(const float (&va)[4], const float (&vb)[4], int c0, int8_t *q,
                                                    float4 *meta)
{
    float m = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++) m = fmaxf(m, fmaxf(fabsf(va[k]), fabsf(vb[k])));
    const float d = warp_max(m) / 127.0f;
#pragma unroll
    for (int k = 0; k < 4; k++) q8_chunk_scaled(va[k], vb[k], d, d, c0 + k, q, meta);
}

static __device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

/* Where token t's column c goes in the fragment order of qmat.cuh (in
 * halves), for rows of cols columns (cols % 128 == 0). */
static __device__ __forceinline__ size_t xfrag_index(int t, int c, int cols)
{
    const int r = c & 63, u = 2 * (c >> 6) + ((r >> 4) & 1), i = r & 15;
    const int j = 2 * (r >> 5) + (i >> 3);
    return (((((size_t)(t >> 3) * (cols >> 7) + (u >> 2)) * 4 + j) * 8 + (t & 7)) * 4 + (u & 3)) * 8 + (i & 7);
}

#endif
