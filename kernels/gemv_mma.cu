/* gemv_mma.cu — decode's products for 9..32 tokens, on tensor cores.
 *
 * A decode step of the server carries one token per running sequence. The
 * dp4a kernels (gemv.cu) spend ~16 integer and float instructions per unit
 * and token, so past ~8 tokens they are bound by arithmetic, not by the
 * weight stream; prefill's tiled kernels (gemm.cu) waste most of a 128-row
 * tile and stage every weight through shared memory. These kernels keep
 * the decode shape (every weight read once per step, straight into
 * registers) and hand the arithmetic to mma.sync m16n8k16:
 *
 *   - a warp owns 16 weight rows (rows g and g+8 of the A fragment, g =
 *     lane/4; SwiGLU: 8 gate rows over the 8 up rows of the same outputs)
 *     and walks the columns 128 at a time: lane 4g+i reads unit 4c+i of its
 *     two rows (qunit.cuh, one 16-byte load each), so a group of four lanes
 *     reads a row's 64 contiguous quant bytes;
 *   - each lane turns its units into f16 itself (s*q - m, two weights per
 *     HFMA2) and uses them as the A fragments of eight mma's: the mma's k
 *     index may stand for any column as long as the activations (the B
 *     fragments, token g of each group of 8) name the same ones, and lane
 *     4g+i loads exactly its own unit's columns of token g;
 *   - the activations are f16 rounded to the int8 levels decode would use
 *     (quantize.cu, q8round), the same values prefill multiplies;
 *   - the warps of a block split the columns of one 16-row tile (enough
 *     warps in flight even for 5120-row products), and add their f32
 *     partial sums in shared memory in a fixed order: results do not depend
 *     on the batch's size or contents, nor on timing.
 *
 * Tokens come in groups of 8 (NB groups, up to 4): the weights are decoded
 * once for all of them. */
#include "common.cuh"
#include "gemv.cuh"
#include "mma.cuh"
#include "qunit.cuh"

enum { KS_MAX = 8 };

struct mma_args {
    apr_cuda_gemv_seg s[APR_CUDA_GEMV_MAX_SEG]; /* SwiGLU: s[0].w is gate, s[0].out the output */
    int tile_end[APR_CUDA_GEMV_MAX_SEG];         /* cumulative tiles (blocks) */
    int n_seg;
    apr_cuda_qmat up;                            /* SwiGLU */
    const __half *x;                             /* f16, fragment order (qmat.cuh) */
    int n_tok;
    int pf;                                      /* steps (of this warp) to prefetch ahead into L2, 0: none */
};

/* ------------------------------------------------------------------ one step */

/* Lane 4g+i's units in step c are 8c+i (half 0) and 8c+4+i (half 1) of its
 * two rows: a Q4_K block per step, whose header both halves share. */

/* One row's walk, through the unit cursor of qunit.cuh moved a whole step
 * (8 units) at a time: every load is a pointer plus an immediate. */
template <int DT> struct rowwalk {
    cursor<DT> c;
    __device__ __forceinline__ rowwalk() {}
    __device__ __forceinline__ rowwalk(const apr_cuda_qmat &w, int row, int u0) : c(w, row, u0) {}

    /* bytes per 8 units: a quarter of the cursor's strides per 32 */
    __device__ __forceinline__ void advance(int steps)
    {
        typedef cursor<DT> C;
        c.q += (size_t)steps * (C::QS / 4);
        if (DT == APR_Q4_K || DT == APR_Q5_K) {
            c.s += (size_t)steps * (C::QS / 4);
            c.h += (size_t)steps * (C::QS / 4);
        } else {
            c.d += (size_t)steps * (C::DS / 4);
            if (DT == APR_Q6_K) c.s += (size_t)steps * (C::SS / 4);
            if (DT == APR_Q6_K || DT == APR_Q5_0 || DT == APR_Q5_1) c.h += (size_t)steps * (C::HS / 4);
            if (DT == APR_Q4_1 || DT == APR_Q5_1) c.m += (size_t)steps * (C::DS / 4);
        }
    }

    /* Asks L2 for the weights `steps` steps ahead (no registers held: the
     * loads that follow find them closer than DRAM). */
    __device__ __forceinline__ void prefetch(int steps) const
    {
        typedef cursor<DT> C;
        const size_t d = (size_t)steps * (C::QS / 4);
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c.q + d));
        asm volatile("prefetch.global.L2 [%0];" ::"l"(c.q + d + (DT == APR_Q8_0 ? 128 : 64)));
        if (DT == APR_Q6_K) asm volatile("prefetch.global.L2 [%0];" ::"l"(c.h + (size_t)steps * (C::HS / 4)));
    }

    /* The raw bytes of this step's unit in half H (zeros when past the
     * row). The K formats' header is the one of half 0, passed in hdr for
     * half 1 (both halves lie in one block). */
    template <int H>
    __device__ __forceinline__ qraw load(bool valid, const uint4 &hdr) const
    {
        qraw r;
        if (DT == APR_Q4_K || DT == APR_Q5_K) { /* cols % 256 == 0: always valid */
            r.x = H ? hdr : ldg16(c.s);
            r.q = ldg16(c.q + 64 * H);
            if (DT == APR_Q5_K) r.h = ldg16(c.h);
        } else if (valid) {
            if (DT == APR_Q6_K) {
                r.q = ldg16(c.q + 64 * H);
                uint2 hh = ldg8(c.h + 32 * H);
                r.w0 = hh.x;
                r.w1 = hh.y;
                r.w2 = ldg4(c.s + 8 * H);
                r.h.x = __ldg((const uint16_t *)c.d);
            } else if (DT == APR_Q8_0) {
                r.q = ldg16(c.q + 128 * H);
                r.x = ldg16(c.q + 128 * H + 16);
                r.w0 = ldg4(c.d + 8 * H);
            } else {
                r.q = ldg16(c.q + 64 * H);
                r.w0 = ldg4(c.d + 8 * H);
                if (DT == APR_Q4_1 || DT == APR_Q5_1) r.w2 = ldg4(c.m + 8 * H);
                if (DT == APR_Q5_0 || DT == APR_Q5_1) r.w1 = ldg4(c.h + 16 * H);
            }
        } else {
            r = qraw{}; /* zero scales: zero weights */
        }
        return r;
    }
};

/* A unit ready for the tensor cores: quant bytes (unsigned) and, as half2,
 * the scales {run A, run B} and the negated mins {-m A, -m B}. */
struct hunit {
    uint32_t a[4], b[4];
    __half2 s, nm;
};

static __device__ __forceinline__ __half2 u32_h2(uint32_t v) { return *(__half2 *)&v; }

/* Two bytes (bits 0-7 and 8-15 of v) as the half2 of their values. */
static __device__ __forceinline__ __half2 bytes2_h2(uint32_t v)
{
    const __half2 k1024 = __half2half2(__ushort_as_half((unsigned short)0x6400));
    return __hsub2(u32_h2(__byte_perm(v, 0x64646464u, 0x5140)), k1024);
}

/* Q4_K/Q5_K: the scales straight from the header in f16 (d * sc rounds
 * once, as in f32 then f16). Lane tig's unit of half HALF covers sub-blocks
 * 2j (run A) and 2j+1 (run B), j = 2 HALF + tig/2: the two 6-bit scales
 * and mins sit in one 16-bit slice of the packed bytes. */
template <int DT, int HALF>
static __device__ __forceinline__ hunit decode_k(const qraw &r, int tig)
{
    hunit o;
    const int sh = 16 * (tig >> 1), j = 2 * HALF + (tig >> 1);
    const uint4 &hdr = r.x;
    uint32_t sc, mn;
    if (HALF == 0) {
        sc = (hdr.y >> sh) & 0x3F3Fu;
        mn = (hdr.z >> sh) & 0x3F3Fu;
    } else {
        sc = ((hdr.w >> sh) & 0x0F0Fu) | (((hdr.y >> sh) >> 2) & 0x3030u);
        mn = (((hdr.w >> sh) >> 4) & 0x0F0Fu) | (((hdr.z >> sh) >> 2) & 0x3030u);
    }
    const __half2 dd = u32_h2(hdr.x); /* {d, dmin} */
    o.s = __hmul2(bytes2_h2(sc), __low2half2(dd));
    o.nm = __hneg2(__hmul2(bytes2_h2(mn), __high2half2(dd)));
    kquant_runs<DT>(r, j, o.a, o.b);
    return o;
}

/* Any quantized format: the unit decoder of qunit.cuh, scales packed. */
template <int DT, int HALF>
static __device__ __forceinline__ hunit decode_h(const qraw &r, int tig)
{
    if (DT == APR_Q4_K || DT == APR_Q5_K) return decode_k<DT, HALF>(r, tig);
    qunit q = decode_unit<DT>(r, 4 * HALF + tig);
    hunit o;
    if (qsigned<DT>::value) { /* Q8_0: bytes + 128 are unsigned; m absorbs the offset */
        q.ma = 128.0f * q.sa;
        q.mb = 128.0f * q.sb;
    }
#pragma unroll
    for (int k = 0; k < 4; k++) {
        o.a[k] = qsigned<DT>::value ? q.a[k] ^ 0x80808080u : q.a[k];
        o.b[k] = qsigned<DT>::value ? q.b[k] ^ 0x80808080u : q.b[k];
    }
    o.s = __floats2half2_rn(q.sa, q.sb);
    o.nm = __floats2half2_rn(-q.ma, -q.mb);
    return o;
}

/* Four unsigned bytes of a run (elements 4k..4k+3) as w = s*q - m, two
 * half2: (4k, 4k+1) and (4k+2, 4k+3). The byte goes under the exponent of
 * 1024 (0x64XX is 1024 + XX), and 1024 comes off exactly. */
static __device__ __forceinline__ void deq4(uint32_t word, __half2 s, __half2 nm, uint32_t &lo, uint32_t &hi)
{
    const __half2 k1024 = __half2half2(__ushort_as_half((unsigned short)0x6400));
    uint32_t l = __byte_perm(word, 0x64646464u, 0x5140), h = __byte_perm(word, 0x64646464u, 0x7362);
    __half2 wl = __hfma2(__hsub2(u32_h2(l), k1024), s, nm);
    __half2 wh = __hfma2(__hsub2(u32_h2(h), k1024), s, nm);
    lo = *(uint32_t *)&wl;
    hi = *(uint32_t *)&wh;
}

/* acc[m][nb] += W . x over one unit per lane and row: ua[m] is row g's unit
 * of row block m, ub[m] row g+8's; xv[nb] holds token 8nb+g's values at
 * the unit's columns (run A: 0..1, run B: 2..3), shared by the MB blocks. */
template <int MB, int NB>
static __device__ __forceinline__ void unit_mma(const hunit (&ua)[MB], const hunit (&ub)[MB],
                                                const uint4 (&xv)[NB][4], float (&acc)[MB][NB][4])
{
#pragma unroll
    for (int run = 0; run < 2; run++) {
#pragma unroll
        for (int k = 0; k < 4; k++) {
#pragma unroll
            for (int m = 0; m < MB; m++) {
                const __half2 sa = run ? __high2half2(ua[m].s) : __low2half2(ua[m].s);
                const __half2 na = run ? __high2half2(ua[m].nm) : __low2half2(ua[m].nm);
                const __half2 sb = run ? __high2half2(ub[m].s) : __low2half2(ub[m].s);
                const __half2 nb_ = run ? __high2half2(ub[m].nm) : __low2half2(ub[m].nm);
                uint32_t A[4];
                deq4(run ? ua[m].b[k] : ua[m].a[k], sa, na, A[0], A[2]);
                deq4(run ? ub[m].b[k] : ub[m].a[k], sb, nb_, A[1], A[3]);
#pragma unroll
                for (int nb = 0; nb < NB; nb++) {
                    const uint4 &x = xv[nb][2 * run + (k >> 1)];
                    mma16816(acc[m][nb], A, (k & 1) ? x.z : x.x, (k & 1) ? x.w : x.y);
                }
            }
        }
    }
}

/* A half-step's activations: token 8nb+g at the lane's unit, quarters
 * j = 0..3 at xq[nb] + off + 32j (uint4s, fragment order: each load of the
 * warp reads 512 contiguous bytes). */
template <int NB>
static __device__ __forceinline__ void load_x(const uint4 *const (&xq)[NB], int off, uint4 (&xv)[NB][4])
{
#pragma unroll
    for (int nb = 0; nb < NB; nb++) {
        const uint4 *p = xq[nb] + off;
#pragma unroll
        for (int j = 0; j < 4; j++) xv[nb][j] = __ldg(p + 32 * j);
    }
}

/* Warp `warp` of ks: steps c = warp, warp+ks, ... (256 columns each), half
 * a step at a time, the next half's weights loaded before this one's are
 * used. Row block m: rows ra[m] (A fragment rows 0..7) of wa and rb[m]
 * (rows 8..15) of wb. */
template <int DT, int MB, int NB>
static __device__ __forceinline__ void walk(const apr_cuda_qmat &wa, const int (&ra)[MB], const apr_cuda_qmat &wb,
                                            const int (&rb)[MB], const mma_args &a, int warp, int ks,
                                            float (&acc)[MB][NB][4])
{
    const int lane = threadIdx.x & 31, g = lane >> 2, tig = lane & 3;
    const int cols = wa.cols, upr = cols / 32, n_steps = APR_DIV_UP(upr, 8);
    const int u0 = 8 * warp + tig;
    rowwalk<DT> A[MB], B[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) {
        A[m] = rowwalk<DT>(wa, ra[m], u0);
        B[m] = rowwalk<DT>(wb, rb[m], u0);
    }
    /* the activations in fragment order (qmat.cuh): token group nb, half-step
     * h at 128 (nb cols/128 + h) uint4s, then this lane's 16 bytes of each
     * quarter 32 apart. A half past the row (its weights are zeros) reads
     * half-step 0 instead (finite: 0 x NaN would not be 0). Tokens of a
     * group past n_tok are read too: their results are not written. */
    const uint4 *xq[NB];
#pragma unroll
    for (int nb = 0; nb < NB; nb++) xq[nb] = (const uint4 *)a.x + (size_t)nb * (cols / 128) * 128 + 4 * g + tig;
    const uint4 nohdr = make_uint4(0, 0, 0, 0);
    qraw ca[MB], cb[MB], na[MB], nb_[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) {
        ca[m] = A[m].template load<0>(u0 < upr, nohdr);
        cb[m] = B[m].template load<0>(u0 < upr, nohdr);
    }
    /* the first weights are on their way: now wait for the input */
    pdl_wait();
    for (int c = warp; c < n_steps; c += ks) {
        const int u = 8 * c + tig;
        if (a.pf && c + a.pf * ks < n_steps) {
#pragma unroll
            for (int m = 0; m < MB; m++) {
                A[m].prefetch(a.pf * ks);
                B[m].prefetch(a.pf * ks);
            }
        }
#pragma unroll
        for (int m = 0; m < MB; m++) {
            na[m] = A[m].template load<1>(u + 4 < upr, ca[m].x);
            nb_[m] = B[m].template load<1>(u + 4 < upr, cb[m].x);
        }
        uint4 xv[NB][4];
        load_x<NB>(xq, u < upr ? 256 * c : 0, xv);
        {
            hunit ha[MB], hb[MB];
#pragma unroll
            for (int m = 0; m < MB; m++) {
                ha[m] = decode_h<DT, 0>(ca[m], tig);
                hb[m] = decode_h<DT, 0>(cb[m], tig);
                ca[m] = na[m];
                cb[m] = nb_[m];
            }
            unit_mma<MB, NB>(ha, hb, xv, acc);
        }
        if (c + ks < n_steps) {
#pragma unroll
            for (int m = 0; m < MB; m++) {
                A[m].advance(ks);
                B[m].advance(ks);
                na[m] = A[m].template load<0>(u + 8 * ks < upr, nohdr);
                nb_[m] = B[m].template load<0>(u + 8 * ks < upr, nohdr);
            }
        }
        load_x<NB>(xq, u + 4 < upr ? 256 * c + 128 : 0, xv);
        {
            hunit ha[MB], hb[MB];
#pragma unroll
            for (int m = 0; m < MB; m++) {
                ha[m] = decode_h<DT, 1>(ca[m], tig);
                hb[m] = decode_h<DT, 1>(cb[m], tig);
                ca[m] = na[m];
                cb[m] = nb_[m];
            }
            unit_mma<MB, NB>(ha, hb, xv, acc);
        }
    }
}

/* ------------------------------------------------------------------ kernel */

/* Block b: tile b of the segments (16 MB rows; SwiGLU: 8 MB outputs),
 * blockDim.x / 32 warps over its columns. DT2: a second format sharing the
 * launch. */
template <int DT, int DT2, int MB, int NB, bool GLU>
static __global__ void __launch_bounds__(KS_MAX * 32) gemv_mma(mma_args a)
{
    pdl_trigger();
    extern __shared__ float red[]; /* [ks][MB][NB][4][32] when ks > 1 */
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks = blockDim.x >> 5, g = lane >> 2, tig = lane & 3;
    int si = 0;
    while (si + 1 < a.n_seg && (int)blockIdx.x >= a.tile_end[si]) si++;
    const apr_cuda_gemv_seg &s = a.s[si];
    const int tile = blockIdx.x - (si ? a.tile_end[si - 1] : 0);
    /* row block m: rows r0 + 16m + g and + 8; SwiGLU: outputs r0 + 8m + g
     * (gate rows over the same up rows) */
    const int r0 = (GLU ? 8 : 16) * MB * tile;
    const int last = s.w.rows - 1;
    int ra[MB], rb[MB];
#pragma unroll
    for (int m = 0; m < MB; m++) {
        ra[m] = min(r0 + (GLU ? 8 : 16) * m + g, last);
        rb[m] = GLU ? ra[m] : min(r0 + 16 * m + g + 8, last);
    }
    const apr_cuda_qmat &wb = GLU ? a.up : s.w;

    float acc[MB][NB][4];
#pragma unroll
    for (int m = 0; m < MB; m++)
#pragma unroll
        for (int nb = 0; nb < NB; nb++)
#pragma unroll
            for (int i = 0; i < 4; i++) acc[m][nb][i] = 0.0f;
    if (DT2 == DT || s.w.dtype == DT) walk<DT, MB, NB>(s.w, ra, wb, rb, a, warp, ks, acc);
    else walk<DT2, MB, NB>(s.w, ra, wb, rb, a, warp, ks, acc);

    /* the warps' partial sums, added in warp order by warp 0 */
    constexpr int PER = MB * NB * 4;
    if (ks > 1) {
#pragma unroll
        for (int m = 0; m < MB; m++)
#pragma unroll
            for (int nb = 0; nb < NB; nb++)
#pragma unroll
                for (int i = 0; i < 4; i++) red[(warp * PER + (m * NB + nb) * 4 + i) * 32 + lane] = acc[m][nb][i];
        __syncthreads();
        if (warp) return;
        for (int w = 1; w < ks; w++)
#pragma unroll
            for (int m = 0; m < MB; m++)
#pragma unroll
                for (int nb = 0; nb < NB; nb++)
#pragma unroll
                    for (int i = 0; i < 4; i++) acc[m][nb][i] += red[(w * PER + (m * NB + nb) * 4 + i) * 32 + lane];
    }

    /* accumulator i of block m, group nb: A row g (i < 2) or g+8, token
     * 8nb + 2 tig + (i & 1) */
#pragma unroll
    for (int m = 0; m < MB; m++) {
#pragma unroll
        for (int nb = 0; nb < NB; nb++) {
#pragma unroll
            for (int j = 0; j < 2; j++) {
                const int t = 8 * nb + 2 * tig + j;
                if (t >= a.n_tok) continue;
                if (GLU) {
                    const int f = r0 + 8 * m + g;
                    if (f <= last) s.out[(size_t)t * s.ld_out + f] = silu(acc[m][nb][j]) * acc[m][nb][2 + j];
                } else {
#pragma unroll
                    for (int h = 0; h < 2; h++) {
                        const int row = r0 + 16 * m + g + 8 * h;
                        if (row > last) continue;
                        float v = acc[m][nb][2 * h + j];
                        if (s.bias) v += s.bias[row];
                        if (s.resid) v += s.resid[(size_t)t * s.ld_resid + row];
                        s.out[(size_t)t * s.ld_out + row] = v;
                    }
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- launchers */

/* Knobs for measurements, read once (docs/cuda.md has the A/B figures):
 * APR_CUDA_MMA_MB=1|2 row blocks per warp (2), APR_CUDA_MMA_WARPS=N warps
 * per SM aimed at (16), APR_CUDA_MMA_PF=N steps prefetched into L2 ahead
 * (0: 2 cost 1 ms a step at 3..8 tokens and gained nothing at 16). */
static int env_int(const char *name, int dflt, int lo, int hi)
{
    const char *v = getenv(name);
    int x = v ? atoi(v) : dflt;
    return x < lo || x > hi ? dflt : x;
}

/* Warps per tile: about `aim` (16) warps per SM in all (the 5120-row
 * products have 160 tiles of 32 rows: 8 warps each), each with at least one
 * step of 256 columns. Depends on the shape only, so a token's result never
 * depends on n_tok. */
static int warps_per_tile(int tiles, int cols)
{
    static int aim = -1;
    if (aim < 0) aim = env_int("APR_CUDA_MMA_WARPS", 16, 1, 64);
    int ks = APR_DIV_UP(aim * sm_count(), tiles), steps = APR_DIV_UP(cols / 32, 8);
    if (ks > KS_MAX) ks = KS_MAX;
    if (ks > steps) ks = steps;
    return ks < 1 ? 1 : ks;
}

template <int MB, int NB, bool GLU>
static apr_status launch_mb(mma_args a, int dt, int dt2, cudaStream_t stream)
{
    int tiles = 0;
    for (int i = 0; i < a.n_seg; i++) {
        tiles += APR_DIV_UP(a.s[i].w.rows, (GLU ? 8 : 16) * MB);
        a.tile_end[i] = tiles;
    }
    const int ks = warps_per_tile(tiles, a.s[0].w.cols);
    const size_t smem = ks > 1 ? (size_t)ks * MB * NB * 4 * 32 * sizeof(float) : 0;
    if (dt != dt2) {
        if (!((dt == APR_Q4_K && dt2 == APR_Q6_K) || (dt == APR_Q6_K && dt2 == APR_Q4_K)))
            return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_mma: %s and %s in one launch", apr_dtype_name(dt),
                             apr_dtype_name(dt2));
        APR_CUDA_CHECK(launch_pdl(gemv_mma<APR_Q4_K, APR_Q6_K, MB, NB, GLU>, tiles, ks * 32, smem, stream, a));
        return APR_OK;
    }
    switch (dt) {
#define CASE(DT) case DT: APR_CUDA_CHECK(launch_pdl(gemv_mma<DT, DT, MB, NB, GLU>, tiles, ks * 32, smem, stream, a)); break;
        APR_CUDA_FOR_EACH_QTYPE(CASE)
#undef CASE
    default:
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_mma: no kernel for %s weights",
                         apr_dtype_name(dt) ? apr_dtype_name(dt) : "?");
    }
    return APR_OK;
}

template <int NB, bool GLU>
static apr_status launch_nb(const mma_args &a, int dt, int dt2, cudaStream_t stream)
{
    static int mb = -1;
    if (mb < 0) mb = env_int("APR_CUDA_MMA_MB", 2, 1, 2);
    return mb == 2 ? launch_mb<2, NB, GLU>(a, dt, dt2, stream) : launch_mb<1, NB, GLU>(a, dt, dt2, stream);
}

template <bool GLU>
static apr_status launch(mma_args a, int dt, int dt2, cudaStream_t stream)
{
    static int pf = -1;
    if (pf < 0) pf = env_int("APR_CUDA_MMA_PF", 0, 0, 16);
    a.pf = pf;
    switch (APR_DIV_UP(a.n_tok, 8)) {
    case 1: return launch_nb<1, GLU>(a, dt, dt2, stream);
    case 2: return launch_nb<2, GLU>(a, dt, dt2, stream);
    case 3: return launch_nb<3, GLU>(a, dt, dt2, stream);
    default: return launch_nb<4, GLU>(a, dt, dt2, stream);
    }
}

static int quantized(int dt) { return dt != APR_F16 && dt != APR_BF16 && dt != APR_F32; }

/* ---------------------------------------------------------------- entry points */

/* One launch over n_seg segments. */
static apr_status launch_segs(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, const void *x_f16,
                              cudaStream_t stream)
{
    mma_args a = {};
    a.n_seg = n_seg;
    a.x = (const __half *)x_f16;
    a.n_tok = n_tok;
    int dt = segs[0].w.dtype, dt2 = dt;
    for (int i = 0; i < n_seg; i++) {
        if (segs[i].w.dtype != dt) dt2 = segs[i].w.dtype;
        a.s[i] = segs[i];
    }
    return launch<false>(a, dt, dt2, stream);
}

extern "C" apr_status apr_cuda_gemv_mma(const apr_cuda_gemv_seg *segs, int n_seg, int n_tok, const void *x_f16,
                                        cudaStream_t stream)
{
    if (n_seg < 1 || n_seg > APR_CUDA_GEMV_MAX_SEG || n_tok < 1 || n_tok > APR_CUDA_GEMV_MMA_MAX_TOKENS)
        return apr_error(APR_ERR_INVALID, "apr_cuda_gemv_mma: %d segments, %d tokens", n_seg, n_tok);
    bool pair = true; /* Q4_K_M's q|k|v: Q4_K and Q6_K in one launch */
    for (int i = 0; i < n_seg; i++) {
        if (!quantized(segs[i].w.dtype) || segs[i].w.cols != segs[0].w.cols || segs[i].w.cols % 128)
            return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_mma: %s weights of %d columns",
                             apr_dtype_name(segs[i].w.dtype), segs[i].w.cols);
        pair = pair && (segs[i].w.dtype == APR_Q4_K || segs[i].w.dtype == APR_Q6_K);
    }
    if (pair) return launch_segs(segs, n_seg, n_tok, x_f16, stream);
    /* otherwise a launch per run of one format */
    for (int i = 0; i < n_seg;) {
        int j = i + 1;
        while (j < n_seg && segs[j].w.dtype == segs[i].w.dtype) j++;
        APR_TRY(launch_segs(segs + i, j - i, n_tok, x_f16, stream));
        i = j;
    }
    return APR_OK;
}

extern "C" apr_status apr_cuda_gemv_mma_swiglu(const apr_cuda_qmat *gate, const apr_cuda_qmat *up, float *out,
                                               int ld_out, int n_tok, const void *x_f16, cudaStream_t stream)
{
    if (n_tok < 1 || n_tok > APR_CUDA_GEMV_MMA_MAX_TOKENS || gate->rows != up->rows || gate->cols != up->cols ||
        gate->dtype != up->dtype || !quantized(gate->dtype) || gate->cols % 128)
        return apr_error(APR_ERR_UNSUPPORTED, "apr_cuda_gemv_mma_swiglu: %d tokens, gate %s %d x %d, up %s %d x %d",
                         n_tok, apr_dtype_name(gate->dtype), gate->rows, gate->cols, apr_dtype_name(up->dtype),
                         up->rows, up->cols);
    mma_args a = {};
    a.n_seg = 1;
    a.s[0].w = *gate;
    a.s[0].out = out;
    a.s[0].ld_out = ld_out;
    a.up = *up;
    a.x = (const __half *)x_f16;
    a.n_tok = n_tok;
    return launch<true>(a, gate->dtype, gate->dtype, stream);
}
