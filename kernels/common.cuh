/* common.cuh — what every CUDA kernel family shares (internal).
 *
 * Included by the .cu files only. The per-family .cuh headers, which C code
 * includes, hold nothing but host entry points and plain C types. */
#ifndef APR_KERNELS_COMMON_CUH
#define APR_KERNELS_COMMON_CUH

#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <stdint.h>

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

/* Quantizes one chunk of 64 columns (chunk c of a row) to the int8 unit
 * layout of qmat.cuh, a warp at a time: lane l brings column l (va, block
 * A) and column 32+l (vb, block B). llama.cpp's q8_1 rule: scale =
 * max|x| / 127, round to nearest. */
static __device__ __forceinline__ void q8_chunk(float va, float vb, int c, int8_t *q, float4 *meta)
{
    int lane = threadIdx.x & 31, h = lane >> 4, i = lane & 15;
    float da = warp_max(fabsf(va)) / 127.0f, db = warp_max(fabsf(vb)) / 127.0f;
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

static __device__ __forceinline__ float silu(float x) { return x / (1.0f + __expf(-x)); }

#endif
