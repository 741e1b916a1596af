/* sampling.cu — greedy choice of the next token on the device, so that a
 * decode step copies back 4 bytes instead of the 0.6 MB of logits. */
#include "common.cuh"
#include "sampling.cuh"

/* ------------------------------------------------------------------ kernels */

/* Keeps (value, index) with the larger value, the lower index on ties. */
static __device__ __forceinline__ void better(float &v, int &i, float v2, int i2)
{
    if (v2 > v || (v2 == v && i2 < i)) {
        v = v2;
        i = i2;
    }
}

static __global__ void __launch_bounds__(1024) argmax_rows(const float *logits, int n_vocab, int32_t *ids)
{
    pdl_trigger();
    pdl_wait();
    __shared__ float sv[32];
    __shared__ int si[32];
    const float *row = logits + (size_t)blockIdx.x * n_vocab;
    float v = -INFINITY;
    int idx = INT32_MAX;
    /* the logits were just written (L2): LD float4 loads per thread in
     * flight at a time, not one float per round trip (152K logits) */
    enum { LD = 8 };
    const int n4 = n_vocab % 4 ? 0 : n_vocab / 4, step = blockDim.x;
    for (int i0 = threadIdx.x; i0 < n4; i0 += LD * step) {
        float4 x[LD];
#pragma unroll
        for (int k = 0; k < LD; k++)
            if (i0 + k * step < n4) x[k] = ((const float4 *)row)[i0 + k * step];
#pragma unroll
        for (int k = 0; k < LD; k++) {
            if (i0 + k * step >= n4) break;
            const int i = 4 * (i0 + k * step);
            if (x[k].x == x[k].x) better(v, idx, x[k].x, i);
            if (x[k].y == x[k].y) better(v, idx, x[k].y, i + 1);
            if (x[k].z == x[k].z) better(v, idx, x[k].z, i + 2);
            if (x[k].w == x[k].w) better(v, idx, x[k].w, i + 3);
        }
    }
    for (int i = 4 * n4 + threadIdx.x; i < n_vocab; i += blockDim.x) { /* vocabularies not a multiple of 4 */
        float x = row[i];
        if (x == x) better(v, idx, x, i);
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float v2 = __shfl_xor_sync(0xffffffffu, v, o);
        int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
        better(v, idx, v2, i2);
    }
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) {
        sv[warp] = v;
        si[warp] = idx;
    }
    __syncthreads();
    if (warp == 0) {
        v = lane < (int)(blockDim.x >> 5) ? sv[lane] : -INFINITY;
        idx = lane < (int)(blockDim.x >> 5) ? si[lane] : INT32_MAX;
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            float v2 = __shfl_xor_sync(0xffffffffu, v, o);
            int i2 = __shfl_xor_sync(0xffffffffu, idx, o);
            better(v, idx, v2, i2);
        }
        if (lane == 0) ids[blockIdx.x] = idx == INT32_MAX ? 0 : idx;
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_sampling_argmax(const float *logits, int n_vocab, int n, int32_t *ids, cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    APR_CUDA_CHECK(launch_pdl(argmax_rows, n, 1024, 0, stream, logits, n_vocab, ids));
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
