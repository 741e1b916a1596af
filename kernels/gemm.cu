/* gemm.cu — prefill's matrix products on quantized weights, on tensor cores.
 *
 * A block computes a 128-token x 128-row tile of the output, 64 columns at
 * a time. Each k-step, every thread decodes one unit (qunit.cuh) of the
 * weight tile to f16 in shared memory while the next step's weight bytes
 * (to registers) and activation tile (cp.async) are in flight; eight warps
 * then run mma.sync m16n8k16 (f16 in, f32 accumulate) on 64x32 warp tiles,
 * fed by ldmatrix. The weights are dequantized once per 128 tokens, in
 * shared memory only: nothing is expanded in device memory.
 *
 * Blocks are ordered token-tile first, so the blocks that share a weight
 * tile run together and read it from DRAM once. */
#include "common.cuh"
#include "gemm.cuh"
#include "mma.cuh"
#include "qunit.cuh"

enum { BN = 128, BK = 64, LDS = BK + 8, THREADS = 256 };
enum { EPI_F32 = 0, EPI_SWIGLU = 1 };

/* A block takes 32*MT tokens: MT = 4 for prompts, 1 or 2 for short passes
 * (a 32-token prompt would waste three quarters of a 128-token tile, and a
 * 33-token one split over two 32-token tiles decodes every weight twice). */
template <int MT> struct tile { enum { BM = 32 * MT, SMEM = 2 * (BM + BN) * LDS * 2 }; };

struct gemm_args {
    apr_cuda_qmat w;
    apr_cuda_qmat up;      /* EPI_SWIGLU: the up matrix (w is gate) */
    const __half *x;
    int n_tok;
    void *out;
    int ld_out;
    const float *bias;
    const float *resid;
    int ld_resid;
    __half *out16;         /* EPI_SWIGLU: an f16 copy of out, or NULL */
    float *part;           /* splits > 1: [splits][n_tok][ld_part] partial sums */
    int splits, ld_part;
};

/* ------------------------------------------------------------------ helpers */

/* Four unsigned bytes to w = s*q - m as two half2. The bytes become floats
 * exactly through the exponent trick (2^23 + q), then one FFMA each. */
static __device__ __forceinline__ void bytes_to_half(uint32_t word, float s, float m, uint2 *out)
{
    float f[4];
#pragma unroll
    for (int k = 0; k < 4; k++)
        f[k] = __int_as_float(__byte_perm(word, 0x4B000000u, 0x7440 | k)) - 8388608.0f;
    __half2 lo = __floats2half2_rn(f[0] * s - m, f[1] * s - m);
    __half2 hi = __floats2half2_rn(f[2] * s - m, f[3] * s - m);
    out->x = *(uint32_t *)&lo;
    out->y = *(uint32_t *)&hi;
}

/* Decodes this thread's unit of the weight tile into ws (row n of the tile). */
template <int DT>
static __device__ __forceinline__ void store_unit(const qraw &raw, int u, __half *wrow, int h)
{
    qunit q = decode_unit<DT>(raw, u);
    if (qsigned<DT>::value) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
            q.a[k] ^= 0x80808080u;
            q.b[k] ^= 0x80808080u;
        }
        q.ma += 128.0f * q.sa;
        q.mb += 128.0f * q.sb;
    }
    uint2 va[4], vb[4];
#pragma unroll
    for (int k = 0; k < 4; k++) {
        bytes_to_half(q.a[k], q.sa, q.ma, &va[k]);
        bytes_to_half(q.b[k], q.sb, q.mb, &vb[k]);
    }
    uint4 *pa = (uint4 *)(wrow + 16 * h), *pb = (uint4 *)(wrow + 32 + 16 * h);
    pa[0] = make_uint4(va[0].x, va[0].y, va[1].x, va[1].y);
    pa[1] = make_uint4(va[2].x, va[2].y, va[3].x, va[3].y);
    pb[0] = make_uint4(vb[0].x, vb[0].y, vb[1].x, vb[1].y);
    pb[1] = make_uint4(vb[2].x, vb[2].y, vb[3].x, vb[3].y);
}

/* Plain weights: the unit's 32 values as f16 straight from the row. */
template <int DT>
struct plain_raw {
    uint4 v[DT == APR_F32 ? 8 : 4];
};

template <int DT>
static __device__ __forceinline__ plain_raw<DT> load_plain(const apr_cuda_qmat &w, int row, int u)
{
    plain_raw<DT> r;
    int c = u >> 1, h = u & 1;
    constexpr int EB = DT == APR_F32 ? 4 : 2, L = 16 * EB / 16; /* loads per run */
    const uint8_t *base = w.q + (size_t)row * w.cols * EB;
#pragma unroll
    for (int i = 0; i < L; i++) {
        r.v[i] = ldg16(base + (size_t)(64 * c + 16 * h) * EB + 16 * i);
        r.v[L + i] = ldg16(base + (size_t)(64 * c + 32 + 16 * h) * EB + 16 * i);
    }
    return r;
}

template <int DT>
static __device__ __forceinline__ void store_plain(const plain_raw<DT> &r, __half *wrow, int h)
{
    uint4 *pa = (uint4 *)(wrow + 16 * h), *pb = (uint4 *)(wrow + 32 + 16 * h);
    if (DT == APR_F16) {
        pa[0] = r.v[0]; pa[1] = r.v[1]; pb[0] = r.v[2]; pb[1] = r.v[3];
    } else if (DT == APR_BF16) {
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const uint32_t w4[4] = {r.v[i].x, r.v[i].y, r.v[i].z, r.v[i].w};
            uint32_t o[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                __half2 hh = __floats2half2_rn(__uint_as_float(w4[k] << 16), __uint_as_float(w4[k] & 0xffff0000u));
                o[k] = *(uint32_t *)&hh;
            }
            (i < 2 ? pa : pb)[i & 1] = make_uint4(o[0], o[1], o[2], o[3]);
        }
    } else {
#pragma unroll
        for (int i = 0; i < 8; i += 2) {
            __half2 a = __floats2half2_rn(__uint_as_float(r.v[i].x), __uint_as_float(r.v[i].y));
            __half2 b = __floats2half2_rn(__uint_as_float(r.v[i].z), __uint_as_float(r.v[i].w));
            __half2 c = __floats2half2_rn(__uint_as_float(r.v[i + 1].x), __uint_as_float(r.v[i + 1].y));
            __half2 d = __floats2half2_rn(__uint_as_float(r.v[i + 1].z), __uint_as_float(r.v[i + 1].w));
            (i < 4 ? pa : pb)[(i >> 1) & 1] =
                make_uint4(*(uint32_t *)&a, *(uint32_t *)&b, *(uint32_t *)&c, *(uint32_t *)&d);
        }
    }
}

/* Selects the loader by format: quantized units or plain rows. */
template <int DT, bool PLAIN = (DT == APR_F16 || DT == APR_BF16 || DT == APR_F32)> struct wtile;
template <int DT> struct wtile<DT, false> {
    qraw r;
    __device__ __forceinline__ void load(const apr_cuda_qmat &w, int row, int u) { r = load_unit<DT>(w, row, u); }
    __device__ __forceinline__ void store(int u, __half *wrow, int h) const { store_unit<DT>(r, u, wrow, h); }
};
template <int DT> struct wtile<DT, true> {
    plain_raw<DT> r;
    __device__ __forceinline__ void load(const apr_cuda_qmat &w, int row, int u) { r = load_plain<DT>(w, row, u); }
    __device__ __forceinline__ void store(int u, __half *wrow, int h) const { store_plain<DT>(r, wrow, h); }
};

/* ------------------------------------------------------------------ kernel */

template <int DT, int EPI, int MT>
static __global__ void __launch_bounds__(THREADS, 2) gemm_q(gemm_args a)
{
    constexpr int BM = tile<MT>::BM;
    extern __shared__ uint4 smem_u4[];
    __half *xs = (__half *)smem_u4;            /* [2][BM][LDS] */
    __half *ws = xs + 2 * BM * LDS;            /* [2][BN][LDS] */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int m0 = blockIdx.x * BM, n0 = blockIdx.y * BN;    /* SwiGLU: n0/2 is the first output */
    /* split-K: block z sums k-steps [kb, ke) */
    const int nk_all = a.w.cols / BK, kb = blockIdx.z * nk_all / a.splits, ke = (blockIdx.z + 1) * nk_all / a.splits;

    /* this thread's weight unit: tile row tid/2, half tid&1; for SwiGLU
     * tile rows 0..63 are gate rows n0/2.., 64..127 the same up rows */
    const int wn = tid >> 1, wh = tid & 1;
    const apr_cuda_qmat &wm = EPI == EPI_SWIGLU && wn >= 64 ? a.up : a.w;
    const int wrow = EPI == EPI_SWIGLU ? n0 / 2 + (wn & 63) : min(n0 + wn, a.w.rows - 1);
    wtile<DT> wt;

    auto issue_x = [&](int ks, int st) {
#pragma unroll
        for (int i = 0; i < MT; i++) {
            int chunk = tid + i * THREADS, r = chunk >> 3, c = (chunk & 7) * 8;
            bool valid = m0 + r < a.n_tok;
            const __half *src = a.x + (size_t)(valid ? m0 + r : 0) * a.w.cols + ks * BK + c;
            cp_async16(xs + (st * BM + r) * LDS + c, src, valid);
        }
        cp_async_commit();
    };

    /* warp tile: 16*MT tokens x 32 rows */
    const int wm0 = (warp & 1) * 16 * MT, wn0 = (warp >> 1) * 32;
    float acc[MT][4][4];
#pragma unroll
    for (int i = 0; i < MT; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

    wt.load(wm, wrow, 2 * kb + wh);
    issue_x(kb, 0);
    for (int ks = kb; ks < ke; ks++) {
        const int st = (ks - kb) & 1;
        wt.store(2 * ks + wh, ws + (st * BN + wn) * LDS, wh);
        cp_async_wait_all();
        __syncthreads();
        if (ks + 1 < ke) {
            wt.load(wm, wrow, 2 * (ks + 1) + wh);
            issue_x(ks + 1, st ^ 1);
        }
        const __half *xt = xs + st * BM * LDS, *wtl = ws + st * BN * LDS;
#pragma unroll
        for (int kk = 0; kk < BK; kk += 16) {
            uint32_t af[MT][4], bf[2][4];
#pragma unroll
            for (int i = 0; i < MT; i++)
                ldmatrix_x4(af[i], xt + (wm0 + 16 * i + (lane & 15)) * LDS + kk + (lane >> 4) * 8);
#pragma unroll
            for (int j = 0; j < 2; j++)
                ldmatrix_x4(bf[j], wtl + (wn0 + 16 * j + (lane & 7) + ((lane >> 4) << 3)) * LDS + kk +
                                       ((lane >> 3) & 1) * 8);
#pragma unroll
            for (int i = 0; i < MT; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) mma16816(acc[i][j], af[i], bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
        }
    }

    if (a.splits > 1) {
        /* partial sums, joined by splitk_reduce; SwiGLU's gate rows go to
         * columns f, its up rows to F + f (F = gate rows) */
        float *part = a.part + (size_t)blockIdx.z * a.n_tok * a.ld_part;
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int m = m0 + wm0 + 16 * i + (lane >> 2) + 8 * hh, c = wn0 + 8 * j + (lane & 3) * 2;
                    int n = EPI == EPI_SWIGLU ? (c < 64 ? n0 / 2 + c : a.w.rows + n0 / 2 + c - 64) : n0 + c;
                    if (m >= a.n_tok || (EPI == EPI_F32 && n >= a.w.rows)) continue;
                    *(float2 *)(part + (size_t)m * a.ld_part + n) = make_float2(acc[i][j][2 * hh], acc[i][j][2 * hh + 1]);
                }
    } else if (EPI == EPI_F32) {
        float *out = (float *)a.out;
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int m = m0 + wm0 + 16 * i + (lane >> 2) + 8 * hh;
                    int n = n0 + wn0 + 8 * j + (lane & 3) * 2;
                    if (m >= a.n_tok || n >= a.w.rows) continue;
                    float v0 = acc[i][j][2 * hh], v1 = acc[i][j][2 * hh + 1];
                    if (a.bias) {
                        v0 += a.bias[n];
                        v1 += a.bias[n + 1];
                    }
                    if (a.resid) {
                        v0 += a.resid[(size_t)m * a.ld_resid + n];
                        v1 += a.resid[(size_t)m * a.ld_resid + n + 1];
                    }
                    *(float2 *)(out + (size_t)m * a.ld_out + n) = make_float2(v0, v1);
                }
    } else {
        /* gate rows are tile columns 0..63, up rows 64..127: meet in shared memory */
        __syncthreads();
        float *t = (float *)smem_u4; /* [BM][BN + 4] */
        const int LDT = BN + 4;
#pragma unroll
        for (int i = 0; i < MT; i++)
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int hh = 0; hh < 2; hh++) {
                    int m = wm0 + 16 * i + (lane >> 2) + 8 * hh, n = wn0 + 8 * j + (lane & 3) * 2;
                    t[m * LDT + n] = acc[i][j][2 * hh];
                    t[m * LDT + n + 1] = acc[i][j][2 * hh + 1];
                }
        __syncthreads();
        float *out = (float *)a.out;
        const int f0 = n0 / 2;
        for (int e = tid; e < BM * 32; e += THREADS) {
            int m = e >> 5, f = (e & 31) * 2;
            if (m0 + m >= a.n_tok) continue;
            float h0 = silu(t[m * LDT + f]) * t[m * LDT + 64 + f];
            float h1 = silu(t[m * LDT + f + 1]) * t[m * LDT + 64 + f + 1];
            size_t o = (size_t)(m0 + m) * a.ld_out + f0 + f;
            *(float2 *)(out + o) = make_float2(h0, h1);
            if (a.out16) *(__half2 *)(a.out16 + o) = __floats2half2_rn(h0, h1);
        }
    }
}

/* Sums the splits' partial products and finishes as the epilogue would. */
template <int EPI>
static __global__ void splitk_reduce(gemm_args a)
{
    const int cols = a.w.rows; /* outputs per token (SwiGLU: gate rows) */
    const size_t stride = (size_t)a.n_tok * a.ld_part;
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < (size_t)a.n_tok * cols;
         e += (size_t)gridDim.x * blockDim.x) {
        int m = (int)(e / cols), n = (int)(e % cols);
        const float *p = a.part + (size_t)m * a.ld_part + n;
        float v = 0.0f, u = 0.0f;
        for (int z = 0; z < a.splits; z++) {
            v += p[z * stride];
            if (EPI == EPI_SWIGLU) u += p[z * stride + cols];
        }
        size_t o = (size_t)m * a.ld_out + n;
        if (EPI == EPI_SWIGLU) {
            float h = silu(v) * u;
            ((float *)a.out)[o] = h;
            if (a.out16) a.out16[o] = __float2half_rn(h);
        } else {
            if (a.bias) v += a.bias[n];
            if (a.resid) v += a.resid[(size_t)m * a.ld_resid + n];
            ((float *)a.out)[o] = v;
        }
    }
}

/* ------------------------------------------------- long passes: f16 for cuBLAS */

/* Rows [row0, row0 + rows) of w as f16 rows of w.cols values: a thread a
 * unit, decoded as the tiles above decode it, so both paths multiply the
 * same f16 weights. */
template <int DT>
static __global__ void dequant_f16(apr_cuda_qmat w, int row0, int rows, __half *out)
{
    const int upr = w.cols / 32;
    const size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (size_t)rows * upr) return;
    const int r = (int)(i / upr), u = (int)(i % upr);
    wtile<DT> t;
    t.load(w, row0 + r, u);
    t.store(u, out + (size_t)r * w.cols + 64 * (u >> 1), u & 1);
}

/* out[t*ld_out + f] = silu(gu[t*2R + f]) * gu[t*2R + R + f], f < R. */
static __global__ void glu_join(const float *gu, int R, int n_tok, float *out, int ld_out)
{
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < (size_t)n_tok * R;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t t = e / R, f = e % R;
        out[t * ld_out + f] = silu(gu[t * 2 * R + f]) * gu[t * 2 * R + R + f];
    }
}

static __global__ void bias_rows(float *out, int ld_out, const float *bias, int rows, int n_tok)
{
    for (size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x; e < (size_t)n_tok * rows;
         e += (size_t)gridDim.x * blockDim.x)
        out[(e / rows) * ld_out + e % rows] += bias[e % rows];
}

static unsigned grid_for(size_t n) { return (unsigned)min((size_t)8 * sm_count(), APR_DIV_UP(n, 256)); }

/* ---------------------------------------------------------------- launchers */

/* A product with fewer tiles than two per SM (the 5120-row products of a
 * short prompt have 40) splits its columns over up to 8 blocks per tile,
 * whose partial sums a second kernel adds; scratch bounds the splits. */
template <int EPI, int MT>
static apr_status launch(gemm_args a, void *scratch, size_t scratch_bytes, cudaStream_t stream)
{
    const int out_cols = EPI == EPI_SWIGLU ? 2 * a.w.rows : a.w.rows;
    dim3 grid(APR_DIV_UP(a.n_tok, tile<MT>::BM), EPI == EPI_SWIGLU ? a.w.rows / 64 : APR_DIV_UP(a.w.rows, BN));
    const int tiles = grid.x * grid.y, nk = a.w.cols / BK, want = 2 * sm_count();
    int splits = 1;
    if (tiles < want && scratch) {
        splits = min(min(APR_DIV_UP(want, tiles), 8), nk / 4);
        while (splits > 1 && (size_t)splits * a.n_tok * out_cols * sizeof(float) > scratch_bytes) splits--;
        if (splits < 1) splits = 1;
    }
    a.splits = splits;
    a.part = splits > 1 ? (float *)scratch : NULL;
    a.ld_part = out_cols;
    grid.z = splits;
    switch (a.w.dtype) {
#define CASE(DT)                                                                  \
    case DT:                                                                      \
        gemm_q<DT, EPI, MT><<<grid, THREADS, tile<MT>::SMEM, stream>>>(a);         \
        break;
        APR_CUDA_FOR_EACH_QTYPE(CASE)
        CASE(APR_F16)
        CASE(APR_BF16)
        CASE(APR_F32)
#undef CASE
    default:
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemm: no kernel for %s weights",
                         apr_dtype_name(a.w.dtype) ? apr_dtype_name(a.w.dtype) : "?");
    }
    APR_CUDA_LAUNCHED();
    if (splits > 1) {
        size_t n = (size_t)a.n_tok * a.w.rows;
        splitk_reduce<EPI><<<(unsigned)min((size_t)4 * sm_count(), APR_DIV_UP(n, 256)), 256, 0, stream>>>(a);
        APR_CUDA_LAUNCHED();
    }
    return APR_OK;
}

/* ---------------------------------------------------------------- entry points */

/* The token tile of a pass of n tokens: the fewest tiles, so every weight
 * is decoded as few times as the shape allows, then the smallest tile that
 * holds them. APR_CUDA_GEMM_MT=1 restores the 32-token tiles for all passes
 * up to 64 tokens (the layout before version 22, for A/B runs). */
static int tile_mt(int n_tok)
{
    static int old = -1;
    if (old < 0) {
        const char *v = getenv("APR_CUDA_GEMM_MT");
        old = v && atoi(v) == 1;
    }
    if (n_tok <= 32) return 1;
    if (n_tok <= 64) return old ? 1 : 2;
    return 4;
}

template <int EPI>
static apr_status launch_mt(const gemm_args &a, void *scratch, size_t scratch_bytes, cudaStream_t stream)
{
    switch (tile_mt(a.n_tok)) {
    case 1: return launch<EPI, 1>(a, scratch, scratch_bytes, stream);
    case 2: return launch<EPI, 2>(a, scratch, scratch_bytes, stream);
    default: return launch<EPI, 4>(a, scratch, scratch_bytes, stream);
    }
}

/* The kernels' shared memory exceeds the 48 KB a launch gets by default;
 * raised once, before any launch (not allowed while a graph records). */
extern "C" apr_status apr_cuda_gemm_setup(void)
{
#define SETUP1(DT, EPI, MT) \
    APR_CUDA_CHECK(cudaFuncSetAttribute(gemm_q<DT, EPI, MT>, cudaFuncAttributeMaxDynamicSharedMemorySize, tile<MT>::SMEM));
#define SETUP(DT) SETUP1(DT, EPI_F32, 1) SETUP1(DT, EPI_F32, 2) SETUP1(DT, EPI_F32, 4) \
    SETUP1(DT, EPI_SWIGLU, 1) SETUP1(DT, EPI_SWIGLU, 2) SETUP1(DT, EPI_SWIGLU, 4)
    APR_CUDA_FOR_EACH_QTYPE(SETUP)
    SETUP(APR_F16)
    SETUP(APR_BF16)
    SETUP(APR_F32)
#undef SETUP
#undef SETUP1
    return APR_OK;
}

extern "C" apr_status apr_cuda_gemm(const apr_cuda_qmat *w, const void *x_f16, int n_tok, float *out, int ld_out,
                                    const float *bias, const float *resid, int ld_resid, void *scratch,
                                    size_t scratch_bytes, cudaStream_t stream)
{
    if (n_tok <= 0) return APR_OK;
    gemm_args a = {*w, *w, (const __half *)x_f16, n_tok, out, ld_out, bias, resid, ld_resid, NULL, NULL, 1, 0};
    return launch_mt<EPI_F32>(a, scratch, scratch_bytes, stream);
}

extern "C" apr_status apr_cuda_gemm_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, const void *x_f16,
                                           int n_tok, float *out, int ld_out, void *out_f16, void *scratch,
                                           size_t scratch_bytes, cudaStream_t stream)
{
    if (n_tok <= 0) return APR_OK;
    if (gate->rows % 64 || gate->rows != up->rows || gate->cols != up->cols || gate->dtype != up->dtype)
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemm_swiglu: gate %s %d x %d, up %s %d x %d",
                         apr_dtype_name(gate->dtype), gate->rows, gate->cols, apr_dtype_name(up->dtype), up->rows,
                         up->cols);
    gemm_args a = {*gate, *up, (const __half *)x_f16, n_tok, out, ld_out, NULL, NULL, 0, (__half *)out_f16, NULL, 1, 0};
    return launch_mt<EPI_SWIGLU>(a, scratch, scratch_bytes, stream);
}

extern "C" apr_status apr_cuda_dequant_f16(const apr_cuda_qmat *w, int row0, int rows, void *out, cudaStream_t stream)
{
    if (rows <= 0) return APR_OK;
    if (w->cols % 64 || row0 < 0 || row0 + rows > w->rows)
        return apr_error(APR_ERR_INVALID, "apr_cuda_dequant_f16: rows %d..%d of %d x %d", row0, row0 + rows, w->rows,
                         w->cols);
    const size_t units = (size_t)rows * (w->cols / 32);
    const unsigned grid = (unsigned)APR_DIV_UP(units, 256);
    switch (w->dtype) {
#define CASE(DT) case DT: dequant_f16<DT><<<grid, 256, 0, stream>>>(*w, row0, rows, (__half *)out); break;
        APR_CUDA_FOR_EACH_QTYPE(CASE)
        CASE(APR_F16)
        CASE(APR_BF16)
        CASE(APR_F32)
#undef CASE
    default:
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_dequant_f16: no kernel for %s weights",
                         apr_dtype_name(w->dtype) ? apr_dtype_name(w->dtype) : "?");
    }
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_glu_join(const float *gu, int R, int n_tok, float *out, int ld_out, cudaStream_t stream)
{
    if (n_tok <= 0 || R <= 0) return APR_OK;
    glu_join<<<grid_for((size_t)n_tok * R), 256, 0, stream>>>(gu, R, n_tok, out, ld_out);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_bias_rows(float *out, int ld_out, const float *bias, int rows, int n_tok,
                                         cudaStream_t stream)
{
    if (n_tok <= 0 || rows <= 0) return APR_OK;
    bias_rows<<<grid_for((size_t)n_tok * rows), 256, 0, stream>>>(out, ld_out, bias, rows, n_tok);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}
