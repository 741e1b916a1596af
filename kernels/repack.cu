/* repack.cu — GGUF blocks to the GPU layout of qmat.cuh.
 *
 * Runs once per matrix at load, from a staging copy of the file's bytes on
 * the device. One thread writes one unit. The result has the same number of
 * bytes as the GGUF tensor: only the order changes, so that each unit's
 * quants, high bits and scales sit in 16-, 8- and 4-byte aligned words. */
#include "common.cuh"
#include "qmat.cuh"
#include "repack.cuh"

/* ------------------------------------------------------------------ kernels */

static __device__ __forceinline__ uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

/* GGUF Q6_K: 6-bit quant of element e (0..255) of the block at b. */
static __device__ __forceinline__ uint32_t q6_at(const uint8_t *b, int e)
{
    int n = e >> 7, r = e & 127, g = r >> 5, l = r & 31;
    uint32_t lo = b[64 * n + l + 32 * (g & 1)];
    lo = (g >> 1) ? lo >> 4 : lo & 0xF;
    uint32_t hi = (b[128 + 32 * n + l] >> (2 * g)) & 3;
    return lo | hi << 4;
}

static __global__ void repack_q6_k(apr_cuda_qmat w, const uint8_t *src, int64_t n_units)
{
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_units) return;
    int upr = w.cols / 32;
    int row = (int)(t / upr), u = (int)(t % upr);
    const uint8_t *b = src + ((size_t)row * (w.cols / 256) + u / 8) * 210;
    int c = (u >> 1) & 3, h = u & 1;
    uint32_t qa[16], qb[16];
    for (int i = 0; i < 16; i++) {
        qa[i] = q6_at(b, 64 * c + 16 * h + i);
        qb[i] = q6_at(b, 64 * c + 32 + 16 * h + i);
    }
    uint8_t *ql = (uint8_t *)w.q + (size_t)row * (w.cols / 2) + 16 * u;
    for (int i = 0; i < 16; i++) ql[i] = (uint8_t)((qa[i] & 0xF) | (qb[i] & 0xF) << 4);
    uint8_t *qh = (uint8_t *)w.qh + (size_t)row * (w.cols / 4) + 8 * u;
    for (int v = 0; v < 2; v++)
        for (int k = 0; k < 4; k++)
            qh[4 * v + k] = (uint8_t)((qa[8 * v + k] >> 4) | (qa[8 * v + 4 + k] >> 4) << 2 |
                                      (qb[8 * v + k] >> 4) << 4 | (qb[8 * v + 4 + k] >> 4) << 6);
    if ((u & 7) == 0) {
        int8_t *sc = (int8_t *)w.sc + (size_t)row * (w.cols / 16) + 2 * u;
        for (int i = 0; i < 16; i++) sc[i] = (int8_t)b[192 + i];
        ((uint16_t *)w.d)[(size_t)row * (w.cols / 256) + u / 8] = rd16(b + 208);
    }
}

/* The 32-element formats: block size in bytes, and where d, m, qh, qs sit. */
template <int DT> struct blk32;
template <> struct blk32<APR_Q8_0> { enum { size = 34, m = -1, qh = -1, qs = 2 }; };
template <> struct blk32<APR_Q4_0> { enum { size = 18, m = -1, qh = -1, qs = 2 }; };
template <> struct blk32<APR_Q4_1> { enum { size = 20, m = 2, qh = -1, qs = 4 }; };
template <> struct blk32<APR_Q5_0> { enum { size = 22, m = -1, qh = 2, qs = 6 }; };
template <> struct blk32<APR_Q5_1> { enum { size = 24, m = 2, qh = 4, qs = 8 }; };

/* Quant of element e (0..31) of a 32-element block: Q8_0's signed byte, or
 * the 4-bit value with its fifth bit for Q5_x. */
template <int DT>
static __device__ __forceinline__ uint32_t q32_at(const uint8_t *b, int e)
{
    typedef blk32<DT> L;
    if (DT == APR_Q8_0) return b[L::qs + e];
    uint32_t v = b[L::qs + (e & 15)];
    v = e < 16 ? v & 0xF : v >> 4;
    if (L::qh >= 0) {
        uint32_t hb = b[L::qh] | b[L::qh + 1] << 8 | b[L::qh + 2] << 16 | (uint32_t)b[L::qh + 3] << 24;
        v |= ((hb >> e) & 1) << 4;
    }
    return v;
}

template <int DT>
static __global__ void repack_32(apr_cuda_qmat w, const uint8_t *src, int64_t n_units)
{
    typedef blk32<DT> L;
    int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= n_units) return;
    int upr = w.cols / 32, bpr = w.cols / 32;
    int row = (int)(t / upr), u = (int)(t % upr);
    int h = u & 1, c = u >> 1;
    const uint8_t *ba = src + ((size_t)row * bpr + 2 * c) * L::size;
    const uint8_t *bb = ba + L::size;
    if (DT == APR_Q8_0) {
        uint8_t *q = (uint8_t *)w.q + (size_t)row * w.cols + 32 * u;
        for (int i = 0; i < 16; i++) {
            q[i] = (uint8_t)q32_at<DT>(ba, 16 * h + i);
            q[16 + i] = (uint8_t)q32_at<DT>(bb, 16 * h + i);
        }
    } else {
        uint8_t *q = (uint8_t *)w.q + (size_t)row * (w.cols / 2) + 16 * u;
        uint32_t hbits = 0;
        for (int i = 0; i < 16; i++) {
            uint32_t a = q32_at<DT>(ba, 16 * h + i), b = q32_at<DT>(bb, 16 * h + i);
            q[i] = (uint8_t)((a & 0xF) | (b & 0xF) << 4);
            hbits |= (a >> 4) << i | (b >> 4) << (16 + i);
        }
        if (L::qh >= 0) ((uint32_t *)w.qh)[(size_t)row * (w.cols / 32) + u] = hbits;
    }
    if (h == 0) {
        uint16_t *d = (uint16_t *)w.d + (size_t)row * bpr + 2 * c;
        d[0] = rd16(ba);
        d[1] = rd16(bb);
        if (L::m >= 0) {
            uint16_t *m = (uint16_t *)w.m + (size_t)row * bpr + 2 * c;
            m[0] = rd16(ba + L::m);
            m[1] = rd16(bb + L::m);
        }
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" int apr_cuda_qmat_layout(int dtype, int64_t rows, int64_t cols, apr_cuda_qmat_sizes *out)
{
    apr_cuda_qmat_sizes z = {0, 0, 0, 0, 0};
    if (rows <= 0 || cols <= 0 || cols % 64 || rows > INT32_MAX || cols > INT32_MAX) return 0;
    uint64_t n = (uint64_t)rows * (uint64_t)cols;
    switch (dtype) {
    case APR_F32: z.q = n * 4; break;
    case APR_F16: case APR_BF16: z.q = n * 2; break;
    case APR_Q4_K: if (cols % 256) return 0; z.q = n / 256 * 144; break;
    case APR_Q5_K: if (cols % 256) return 0; z.q = n / 256 * 176; break;
    case APR_Q6_K:
        if (cols % 256) return 0;
        z.q = n / 2; z.qh = n / 4; z.sc = n / 16; z.d = n / 256 * 2;
        break;
    case APR_Q8_0: z.q = n; z.d = n / 32 * 2; break;
    case APR_Q4_0: z.q = n / 2; z.d = n / 32 * 2; break;
    case APR_Q4_1: z.q = n / 2; z.d = z.m = n / 32 * 2; break;
    case APR_Q5_0: z.q = n / 2; z.qh = n / 8; z.d = n / 32 * 2; break;
    case APR_Q5_1: z.q = n / 2; z.qh = n / 8; z.d = z.m = n / 32 * 2; break;
    default: return 0;
    }
    if (out) *out = z;
    return 1;
}

extern "C" apr_status apr_cuda_repack(const apr_cuda_qmat *w, const void *src, cudaStream_t stream)
{
    apr_cuda_qmat_sizes z;
    if (!apr_cuda_qmat_layout(w->dtype, w->rows, w->cols, &z))
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA: no kernels for %s weights of %d x %d",
                         apr_dtype_name(w->dtype) ? apr_dtype_name(w->dtype) : "?", w->rows, w->cols);
    int64_t n_units = (int64_t)w->rows * (w->cols / 32);
    int grid = (int)APR_DIV_UP(n_units, 256);
    const uint8_t *s = (const uint8_t *)src;
    switch (w->dtype) {
    case APR_Q6_K: repack_q6_k<<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    case APR_Q8_0: repack_32<APR_Q8_0><<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    case APR_Q4_0: repack_32<APR_Q4_0><<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    case APR_Q4_1: repack_32<APR_Q4_1><<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    case APR_Q5_0: repack_32<APR_Q5_0><<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    case APR_Q5_1: repack_32<APR_Q5_1><<<grid, 256, 0, stream>>>(*w, s, n_units); break;
    default:
        APR_CUDA_CHECK(cudaMemcpyAsync((void *)w->q, src, z.q, cudaMemcpyDeviceToDevice, stream));
        return APR_OK;
    }
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
