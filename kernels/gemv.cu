/* gemv.cu — decode's matrix-vector products on quantized weights.
 *
 * Decode reads every weight once per step, so these kernels are bound by
 * memory bandwidth: each warp owns R rows, each lane one unit (32 weights,
 * one 16-byte load of quants plus a shared header or scale word) at a time,
 * U units deep so that several loads are in flight before the first use.
 * The activations are int8 (quantize.cu), so a unit's dot product is eight
 * dp4a instructions plus the block scales: w.x = s*dx*sum(q*qx) - m*sum(x)
 * for each run of 16 (qunit.cuh).
 *
 * Several matrices sharing an input (q, k, v) go in one launch so that the
 * small ones (k and v have 1024 rows for Qwen2.5-32B) still fill the GPU;
 * the gate and up products of a row meet in the same warp, which applies
 * SwiGLU before anything is written. */
#include "common.cuh"
#include "gemv.cuh"
#include "qunit.cuh"

enum { WARPS = 8 };

struct xin {
    const int8_t *q;
    const float4 *meta;
    const float *f;
    int cols;
};

struct seg_dev {
    apr_cuda_gemv_seg s[APR_CUDA_GEMV_MAX_SEG];
    int block_end[APR_CUDA_GEMV_MAX_SEG]; /* cumulative blocks */
    int n_seg;
};

/* ------------------------------------------------------------------ row bodies */

/* acc[r][t] += W[rows[r]] . x_t over the whole row, quantized weights.
 * Lane l takes units l, l+32, ... ("groups" of 32 units). The loads run D
 * groups ahead of the arithmetic in a rolling buffer: a slot is refilled
 * the moment it has been used, so D loads per row are always in flight
 * (loading D groups, using them, then loading the next D left the memory
 * idle between bursts: 63% of peak on the gate/up product, ncu). */
template <int DT, int NT, int R>
static __device__ __forceinline__ void dot_q(const apr_cuda_qmat *const *w, const int *rows, const xin &x,
                                             float (&acc)[R][NT])
{
    constexpr int D = NT * R <= 1 ? 4 : NT * R <= 2 ? 2 : 1;
    const int lane = threadIdx.x & 31, upr = w[0]->cols / 32;
    cursor<DT> cur[R];
#pragma unroll
    for (int r = 0; r < R; r++) cur[r] = cursor<DT>(*w[r], rows[r], lane);
    const int8_t *xq = x.q + 32 * lane;
    const float4 *xm = x.meta + lane;
    qraw buf[D][R];
#pragma unroll
    for (int k = 0; k < D; k++) {
        if (k * 32 + lane < upr) {
#pragma unroll
            for (int r = 0; r < R; r++) buf[k][r] = cur[r].load(k);
        }
    }
    /* the first weights are on their way: now wait for the input */
    pdl_wait();
    for (int g = 0; g * 32 < upr; g += D) {
#pragma unroll
        for (int k = 0; k < D; k++) {
            const int gi = g + k;
            if (gi * 32 + lane < upr) {
                qunit qu[R];
#pragma unroll
                for (int r = 0; r < R; r++) qu[r] = decode_unit<DT>(buf[k][r], lane);
                if ((gi + D) * 32 + lane < upr) {
#pragma unroll
                    for (int r = 0; r < R; r++) buf[k][r] = cur[r].load(gi + D);
                }
#pragma unroll
                for (int t = 0; t < NT; t++) {
                    const int4 *xp = (const int4 *)(xq + (size_t)t * x.cols + (size_t)gi * 1024);
                    int4 xa = __ldg(xp), xb = __ldg(xp + 1);
                    float4 m = __ldg(xm + (size_t)t * (x.cols / 32) + gi * 32);
#pragma unroll
                    for (int r = 0; r < R; r++) {
                        int ia = __dp4a((int)qu[r].a[0], xa.x, 0);
                        ia = __dp4a((int)qu[r].a[1], xa.y, ia);
                        ia = __dp4a((int)qu[r].a[2], xa.z, ia);
                        ia = __dp4a((int)qu[r].a[3], xa.w, ia);
                        int ib = __dp4a((int)qu[r].b[0], xb.x, 0);
                        ib = __dp4a((int)qu[r].b[1], xb.y, ib);
                        ib = __dp4a((int)qu[r].b[2], xb.z, ib);
                        ib = __dp4a((int)qu[r].b[3], xb.w, ib);
                        float v = qu[r].sa * m.x * (float)ia + qu[r].sb * m.z * (float)ib;
                        if (!qsigned<DT>::value) v -= qu[r].ma * m.y + qu[r].mb * m.w;
                        acc[r][t] += v;
                    }
                }
            }
        }
    }
}

static __device__ __forceinline__ float plain_at(int dt, const uint4 &v, int k)
{
    /* element k (0..7) of a 16-byte load of f16 or bf16 */
    uint32_t word = k < 2 ? v.x : k < 4 ? v.y : k < 6 ? v.z : v.w;
    uint16_t h = (uint16_t)(word >> (16 * (k & 1)));
    return dt == APR_F16 ? h2f(h) : __uint_as_float((uint32_t)h << 16);
}

/* acc[r][t] += W[rows[r]] . x_t for F16, BF16 and F32 weights (f32 x). */
template <int DT, int NT, int R>
static __device__ __forceinline__ void dot_plain(const apr_cuda_qmat *const *w, const int *rows, const xin &x,
                                                 float (&acc)[R][NT])
{
    constexpr int EB = DT == APR_F32 ? 4 : 2, PER = 16 / EB; /* elements per 16-byte load */
    const int lane = threadIdx.x & 31, cols = w[0]->cols;
    pdl_wait();
    for (int c = lane * PER; c < cols; c += 32 * PER) {
        float wv[R][PER];
#pragma unroll
        for (int r = 0; r < R; r++) {
            uint4 v = ldg16(w[r]->q + ((size_t)rows[r] * cols + c) * EB);
#pragma unroll
            for (int k = 0; k < PER; k++) {
                if (DT == APR_F32) wv[r][k] = __uint_as_float(k == 0 ? v.x : k == 1 ? v.y : k == 2 ? v.z : v.w);
                else wv[r][k] = plain_at(DT, v, k);
            }
        }
#pragma unroll
        for (int t = 0; t < NT; t++) {
#pragma unroll
            for (int k = 0; k < PER; k += 4) {
                float4 xv = __ldg((const float4 *)(x.f + (size_t)t * x.cols + c + k));
#pragma unroll
                for (int r = 0; r < R; r++)
                    acc[r][t] += wv[r][k] * xv.x + wv[r][k + 1] * xv.y + wv[r][k + 2] * xv.z + wv[r][k + 3] * xv.w;
            }
        }
    }
}

/* Row r of the dot products is row rows[r] of *w[r]; all of one dtype. */
/* Row r of the dot products is row rows[r] of *w[r] (all of format DT). */
template <int DT, int NT, int R>
static __device__ __forceinline__ void dot(const apr_cuda_qmat *const *w, const int *rows, const xin &x,
                                           float (&acc)[R][NT])
{
    if (DT == APR_F16 || DT == APR_BF16 || DT == APR_F32) dot_plain<DT, NT, R>(w, rows, x, acc);
    else dot_q<DT, NT, R>(w, rows, x, acc);
}

/* ------------------------------------------------------------------ kernels */

/* Grids are capped at BLOCKS_PER_SM blocks per SM, each looping over
 * the row blocks left (b, b + gridDim.x, ...): two rounds of the three
 * blocks that fit, where gate|up alone had 3,456 short-lived blocks (nine
 * rounds). Measured on the H100 (decode at context 0, ms per step): no
 * cap 10.81, caps of 3 / 4 / 5 / 6 / 8 / 12 blocks per SM 10.70 / 11.61 /
 * 10.96 / 10.62 / 10.80 / 10.69 (the uneven ones leave a partial last
 * loop on the q|k|v and gate|up products). */
enum { BLOCKS_PER_SM = 6 };

static int grid_for(int blocks) { return min(blocks, BLOCKS_PER_SM * sm_count()); }

/* Block b's rows of the products in sd: a warp's R rows, each lane one
 * unit at a time. */
template <int DT, int DT2, int NT, int R>
static __device__ __forceinline__ void segs_block(const seg_dev &sd, const xin &x, int n_tok, int b)
{
    int si = 0;
    while (si + 1 < sd.n_seg && b >= sd.block_end[si]) si++;
    const apr_cuda_gemv_seg &s = sd.s[si];
    int first = (b - (si ? sd.block_end[si - 1] : 0)) * WARPS * R;
    int r0 = first + (threadIdx.x >> 5) * R;
    if (r0 >= s.w.rows) {
        pdl_wait();
        return;
    }
    int rows[R];
    const apr_cuda_qmat *ws[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
        rows[r] = min(r0 + r, s.w.rows - 1);
        ws[r] = &s.w;
    }
    float acc[R][NT] = {};
    /* a second format (Q6_K attn_v beside Q4_K q and k) shares the launch */
    if (DT2 == DT || s.w.dtype == DT) dot<DT, NT, R>(ws, rows, x, acc);
    else dot<DT2, NT, R>(ws, rows, x, acc);
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int r = 0; r < R; r++) {
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float v = warp_sum(acc[r][t]);
            if (lane == (r * NT + t) % 32 && t < n_tok && r0 + r < s.w.rows) {
                int row = r0 + r;
                if (s.bias) v += s.bias[row];
                if (s.resid) v += s.resid[(size_t)t * s.ld_resid + row];
                s.out[(size_t)t * s.ld_out + row] = v;
            }
        }
    }
}

/* Few registers per lane buy more warps, and so more loads in flight:
 * three blocks (24 warps) per SM where one or two products are summed.
 * One format per kernel: a switch over all of them would cost every
 * format the registers of the greediest. */
template <int DT, int DT2, int NT, int R>
static __global__ void __launch_bounds__(WARPS * 32, NT * R <= 2 ? 3 : 2) gemv_segs(seg_dev sd, xin x, int n_tok)
{
    pdl_trigger();
    for (int b = blockIdx.x; b < sd.block_end[sd.n_seg - 1]; b += gridDim.x) segs_block<DT, DT2, NT, R>(sd, x, n_tok, b);
}

/* gate and up rows of one output in the same warp, their loads in flight
 * together, joined by SwiGLU before anything is written. When q8.q is set
 * the outputs are also quantized for the down projection, by the block
 * that finishes a quantization block last (a counter per block of q8.block
 * outputs, reset by that block for the next launch): one kernel less per
 * layer than a separate pass. */
template <int DT, int NT>
static __global__ void __launch_bounds__(WARPS * 32, NT <= 1 ? 3 : 2)
    gemv_swiglu(apr_cuda_qmat gate, apr_cuda_qmat up, float *out, int ld_out, xin x, int n_tok, apr_cuda_q8 q8,
                unsigned *counters)
{
    pdl_trigger();
    __shared__ int last;
    const int lane = threadIdx.x & 31;
    /* (a grid quantizing its outputs is not capped: one round of rows) */
    for (int f0 = blockIdx.x * WARPS; f0 < gate.rows; f0 += gridDim.x * WARPS) {
        const int f = f0 + (threadIdx.x >> 5);
        if (f >= gate.rows) {
            pdl_wait();
            break;
        }
        float acc[2][NT] = {};
        const int rows[2] = {f, f};
        const apr_cuda_qmat *ws[2] = {&gate, &up};
        dot<DT, NT, 2>(ws, rows, x, acc);
#pragma unroll
        for (int t = 0; t < NT; t++) {
            float gv = warp_sum(acc[0][t]), uv = warp_sum(acc[1][t]);
            if (lane == t && t < n_tok) out[(size_t)t * ld_out + f] = silu(gv) * uv;
        }
    }
    if (!q8.q) return;
    __syncthreads();
    /* quantization groups: 256 outputs (one scale) or a chunk of 64 (two) */
    const int gsize = q8.block == 256 ? 256 : 64, grp = blockIdx.x * WARPS / gsize;
    if (threadIdx.x == 0) {
        __threadfence();
        last = atomicAdd(&counters[grp], 1u) == (unsigned)(gsize / WARPS) - 1;
    }
    __syncthreads();
    if (!last || threadIdx.x >= 32) return;
    __threadfence();
    for (int t = 0; t < n_tok; t++) {
        const float *o = out + (size_t)t * ld_out + (size_t)grp * gsize;
        int8_t *qt = q8.q + (size_t)t * q8.cols;
        float4 *mt = (float4 *)q8.meta + (size_t)t * (q8.cols / 32);
        if (gsize == 256) {
            float va[4], vb[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                va[k] = __ldcg(o + 64 * k + lane);
                vb[k] = __ldcg(o + 64 * k + 32 + lane);
            }
            q8_chunks256(va, vb, grp * 4, qt, mt);
        } else {
            q8_chunk(__ldcg(o + lane), __ldcg(o + 32 + lane), grp, qt, mt);
        }
    }
    if (lane == 0) counters[grp] = 0;
}

/* ---------------------------------------------------------------- launchers */

#define APR_CUDA_FOR_EACH_TYPE(X) APR_CUDA_FOR_EACH_QTYPE(X) X(APR_F16) X(APR_BF16) X(APR_F32)

template <int NT, int R>
static apr_status launch_segs(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, const xin &x, cudaStream_t stream)
{
    seg_dev sd;
    int blocks = 0;
    sd.n_seg = n_seg;
    for (int i = 0; i < n_seg; i++) {
        sd.s[i] = segs[i];
        blocks += APR_DIV_UP(segs[i].w.rows, WARPS * R);
        sd.block_end[i] = blocks;
    }
    int dt = segs[0].w.dtype, dt2 = dt;
    for (int i = 1; i < n_seg; i++)
        if (segs[i].w.dtype != dt) dt2 = segs[i].w.dtype;
    if (dt != dt2) {
        /* Q4_K_M's q|k|v: Q4_K and Q6_K in one launch */
        if (!((dt == APR_Q4_K && dt2 == APR_Q6_K) || (dt == APR_Q6_K && dt2 == APR_Q4_K)))
            return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv: %s and %s in one launch", apr_dtype_name(dt),
                             apr_dtype_name(dt2));
        APR_CUDA_CHECK(launch_pdl(gemv_segs<APR_Q4_K, APR_Q6_K, NT, R>, grid_for(blocks), WARPS * 32, 0, stream, sd, x, n_tok));
        return APR_OK;
    }
    switch (dt) {
#define CASE(DT) case DT: APR_CUDA_CHECK(launch_pdl(gemv_segs<DT, DT, NT, R>, grid_for(blocks), WARPS * 32, 0, stream, sd, x, n_tok)); break;
        APR_CUDA_FOR_EACH_TYPE(CASE)
#undef CASE
    default:
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv: no kernel for %s weights",
                         apr_dtype_name(dt) ? apr_dtype_name(dt) : "?");
    }
    return APR_OK;
}

static int tokens_bucket(int n) { return n <= 1 ? 1 : n <= 2 ? 2 : n <= 4 ? 4 : 8; }

static xin make_x(apr_cuda_q8 xq, const float *xf, int cols)
{
    xin x = {xq.q, (const float4 *)xq.meta, xf, cols};
    return x;
}

static apr_status launch_bucket(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, const xin &x, cudaStream_t stream)
{
    switch (tokens_bucket(n_tok)) {
    case 1: return launch_segs<1, 1>(segs, n_seg, n_tok, x, stream);
    case 2: return launch_segs<2, 1>(segs, n_seg, n_tok, x, stream);
    case 4: return launch_segs<4, 2>(segs, n_seg, n_tok, x, stream);
    default: return launch_segs<8, 2>(segs, n_seg, n_tok, x, stream);
    }
}

/* ---------------------------------------------------------------- entry points */

extern "C" apr_status apr_cuda_gemv(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, apr_cuda_q8 xq,
                                    const float *xf, cudaStream_t stream)
{
    if (n_seg < 1 || n_seg > APR_CUDA_GEMV_MAX_SEG || n_tok < 1 || n_tok > APR_CUDA_GEMV_MAX_TOKENS)
        return apr_error(APR_ERR_INVALID, "apr_cuda_gemv: %d segments, %d tokens", n_seg, n_tok);
    xin x = make_x(xq, xf, segs[0].w.cols);
    /* segments of one format share a launch, and so do Q4_K with Q6_K */
    static int no_pair = -1; /* APR_CUDA_NO_PAIR=1: one launch per format (for measurements) */
    if (no_pair < 0) no_pair = getenv("APR_CUDA_NO_PAIR") != NULL;
    bool pair = !no_pair;
    for (int i = 0; i < n_seg; i++)
        pair = pair && (segs[i].w.dtype == APR_Q4_K || segs[i].w.dtype == APR_Q6_K);
    if (pair) return launch_bucket(segs, n_seg, n_tok, x, stream);
    for (int i = 0; i < n_seg;) {
        int j = i + 1;
        while (j < n_seg && segs[j].w.dtype == segs[i].w.dtype) j++;
        APR_TRY(launch_bucket(segs + i, j - i, n_tok, x, stream));
        i = j;
    }
    return APR_OK;
}

extern "C" apr_status apr_cuda_gemv_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, float *out, int ld_out,
                                           int n_tok, apr_cuda_q8 xq, const float *xf, apr_cuda_q8 q8_out,
                                           unsigned *counters, cudaStream_t stream)
{
    if (n_tok < 1 || n_tok > APR_CUDA_GEMV_MAX_TOKENS || gate->rows != up->rows || gate->cols != up->cols ||
        gate->dtype != up->dtype)
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_swiglu: %d tokens, gate %s %d x %d, up %s %d x %d", n_tok,
                         apr_dtype_name(gate->dtype), gate->rows, gate->cols, apr_dtype_name(up->dtype), up->rows,
                         up->cols);
    if (q8_out.q && (gate->rows % (q8_out.block == 256 ? 256 : 64) || !counters))
        return apr_error(APR_ERR_INVALID, "apr_cuda_gemv_swiglu: %d outputs in blocks of %d", gate->rows, q8_out.block);
    xin x = make_x(xq, xf, gate->cols);
    int grid = APR_DIV_UP(gate->rows, WARPS);
    if (!q8_out.q) grid = grid_for(grid);
    switch (gate->dtype * 16 + tokens_bucket(n_tok)) {
#define CASE1(DT, NT) case DT * 16 + NT: APR_CUDA_CHECK(launch_pdl(gemv_swiglu<DT, NT>, grid, WARPS * 32, 0, stream, *gate, *up, out, ld_out, x, n_tok, q8_out, counters)); break;
#define CASE(DT) CASE1(DT, 1) CASE1(DT, 2) CASE1(DT, 4) CASE1(DT, 8)
        APR_CUDA_FOR_EACH_TYPE(CASE)
#undef CASE
#undef CASE1
    default:
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_swiglu: no kernel for %s weights",
                         apr_dtype_name(gate->dtype) ? apr_dtype_name(gate->dtype) : "?");
    }
    return APR_OK;
}
