/* attention.cu — causal attention over the paged KV cache, GQA-aware.
 *
 * Decode (flash-decoding): a step reads every key and value of the context
 * once per KV head, so the keys are split in n_split pieces (blocks of
 * split x KV head x token) to fill the GPU at long contexts, and the G query
 * heads that share a KV head (5 for Qwen2.5-32B) are processed by the same
 * block, so the cache is read once, not G times. A block walks its piece
 * 256 keys at a time with an online softmax; a second kernel merges the
 * pieces' (max, sum, output) triples and can quantize the result for the
 * output projection.
 *
 * Prefill (FlashAttention-2's loop): a block takes 64 queries of one head,
 * walks the keys 64 at a time with mma.sync for Q.K^T and P.V, and keeps
 * the softmax online in registers; K and V tiles are double-buffered
 * through cp.async.
 *
 * Keys live in blocks of 2^block_shift slots listed by each sequence's
 * block table (rope.cuh), so every row address goes through the table.
 *
 * Every kernel is a template over the cache's element type (KT,
 * kvcache.cuh); the f16 instantiations are the code as it was tuned
 * (docs/cuda.md), and the quantized ones differ only where rows are read:
 *  - decode reads a key's Q8_0 / Q4_0 blocks straight into registers (a
 *    quarter of the row per lane, as aligned words shifted into place),
 *    multiplies the f32 q by the integer codes and scales each block's sum
 *    once; four groups of 8 keys per warp are in flight instead of two
 *    (each key is 2-4x fewer bytes); values are read 2 or 4 codes per
 *    lane with the block's scale folded into the softmax weight;
 *  - prefill copies whole cache blocks (16-byte aligned) into shared
 *    memory with cp.async, double-buffered, and widens them there into the
 *    f16 tiles that the tensor cores read, zeroing keys past the causal end. */
#include "attention.cuh"
#include "common.cuh"
#include "kvcache.cuh"
#include "mma.cuh"

enum { DEC_THREADS = 128, CHUNK = 256, TB_MAX = 64 };

/* Row of position p of a sequence, KV head h; table holds the sequence's
 * block ids from its block tb0 on. */
static __device__ __forceinline__ size_t kv_row(const apr_cuda_kv &kv, const int32_t *table, int p, int h, int tb0 = 0)
{
    int bt = 1 << kv.block_shift;
    return ((size_t)table[(p >> kv.block_shift) - tb0] * kv.n_kv + h) * bt + (p & (bt - 1));
}

/* ------------------------------------------------------------------ decode */

/* The keys of a split: pieces of `per` positions, a multiple of 32. */
static __device__ __forceinline__ int split_len(int len, int n_split) { return (APR_DIV_UP(len, n_split) + 31) & ~31; }

struct dec_args {
    const float *qkv;
    apr_cuda_tokens tk;
    apr_cuda_kv kv;
    int n_head, n_split;
    float scale;
    float *part_o;    /* [n_tok][n_head][n_split][hd] */
    float2 *part_ml;  /* [n_tok][n_head][n_split]: running max and sum */
};

/* Padded index of dimension d in shared q: each quarter of a head starts
 * 4 floats further, so the four lanes of a key read different banks. */
template <int HD> static __device__ __forceinline__ int qpad(int d) { return d + 4 * (d / (HD / 4)); }

template <int HD, int G, int KT>
static __global__ void __launch_bounds__(DEC_THREADS) attn_decode(dec_args a)
{
    constexpr int QS = HD + 16, DQ = HD / 4, DPL = HD / 32;
    __shared__ __align__(16) float qs[G][QS];
    __shared__ float sc[G][CHUNK];
    __shared__ float red[4][G][HD];
    __shared__ float corr_s[G];
    __shared__ float2 ml_s[G];
    __shared__ int32_t tb_s[TB_MAX];

    pdl_trigger();
    /* The step's positions and block tables are copied in before the pass
     * and written by none of its kernels: they, and the table entries they
     * point to, load while the kernel before finishes (pdl_wait comes
     * before q, which that kernel wrote, and before any write). */
    const int split_i = blockIdx.x, kvh = blockIdx.y, t = blockIdx.z;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int len = a.tk.pos[t] + 1;
    const int per = split_len(len, a.n_split);
    const int p0 = split_i * per, p_end = min(p0 + per, len);
    const size_t part = ((size_t)t * a.n_head + kvh * G) * a.n_split + split_i;
    if (p0 >= len) {
        pdl_wait();
        if (tid < G) a.part_ml[part + (size_t)tid * a.n_split] = make_float2(-INFINITY, 0.0f);
        return;
    }
    const int32_t *table = a.tk.block_table + (size_t)a.tk.seq[t] * a.tk.max_blocks;
    const __half *kc = (const __half *)a.kv.k, *vc = (const __half *)a.kv.v;
    const int row_len = (a.n_head + 2 * a.kv.n_kv) * HD;
    /* this split's entries of the block table, in shared memory: a row
     * address then costs no dependent global load before the row itself */
    const int tb0 = p0 >> a.kv.block_shift, n_tb = ((p_end - 1) >> a.kv.block_shift) - tb0 + 1;
    const bool table_in_smem = n_tb <= TB_MAX;
    for (int i = tid; i < n_tb && table_in_smem; i += DEC_THREADS) tb_s[i] = table[tb0 + i];
    const int tbo = table_in_smem ? tb0 : 0;
    if (table_in_smem) table = tb_s;
    pdl_wait();

    for (int e = tid; e < G * HD; e += DEC_THREADS) {
        int g = e / HD, d = e % HD;
        qs[g][qpad<HD>(d)] = a.qkv[(size_t)t * row_len + (kvh * G + g) * HD + d] * a.scale;
    }

    if (tid < G) ml_s[tid] = make_float2(-INFINITY, 0.0f);
    float acc[G][DPL];
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int i = 0; i < DPL; i++) acc[g][i] = 0.0f;
    const int sub = lane & 3;
    for (int c0 = p0; c0 < p_end; c0 += CHUNK) {
        const int n = min(CHUNK, p_end - c0);
        __syncthreads(); /* q is in place; the previous chunk's weights are used */

        if constexpr (KT != KV_F16) {
            /* scores from the blocks: four groups of 8 keys per warp in
             * flight; per key and lane NW aligned words (plus one when the
             * quants start 2 bytes into a word) and the block's scale */
            constexpr int U = 4, NW = KT == KV_Q8_0 ? DQ / 4 : 4, RB = kv_row_bytes<KT, HD>();
            const uint8_t *kq = (const uint8_t *)a.kv.k;
            const kv_span ks = kv_span_of<KT>(sub * DQ); /* this lane's quarter of a key */
            for (int pb = warp * 8; pb < n; pb += 32 * U) {
                uint32_t w[U][NW + 1];
                float dk[U];
#pragma unroll
                for (int u = 0; u < U; u++) {
                    int p = pb + 32 * u + (lane >> 2);
                    if (p < n) {
                        const uint8_t *kr = kq + kv_row(a.kv, table, c0 + p, kvh, tbo) * RB;
                        const uint32_t *wr = (const uint32_t *)(kr + ks.w_off);
#pragma unroll
                        for (int i = 0; i < NW; i++) w[u][i] = __ldg(wr + i);
                        w[u][NW] = ks.sh ? __ldg(wr + NW) : 0u;
                        dk[u] = kv_scale(kr + ks.d_off);
                    }
                }
#pragma unroll
                for (int u = 0; u < U; u++) {
                    int p = pb + 32 * u + (lane >> 2);
                    float s[G];
#pragma unroll
                    for (int g = 0; g < G; g++) s[g] = 0.0f;
                    if (p < n) {
#pragma unroll
                        for (int i = 0; i < NW; i++) {
                            const uint32_t word = __funnelshift_r(w[u][i], w[u][i + 1], ks.sh);
                            /* the word's 4 codes are dimensions d0.. (and, for a
                             * whole Q4_0 block, its high nibbles d0 + 16..) */
                            float f[4], fh[4];
                            int d0 = 4 * i;
                            if (KT == KV_Q8_0) {
                                const uint32_t b = word ^ 0x80808080u;
#pragma unroll
                                for (int k = 0; k < 4; k++) f[k] = kv_s8(b, k);
                            } else {
                                const uint32_t lo = (word >> ks.nib) & 0x0f0f0f0fu, hi = (word >> 4) & 0x0f0f0f0fu;
#pragma unroll
                                for (int k = 0; k < 4; k++) {
                                    f[k] = kv_u4(lo, k);
                                    fh[k] = kv_u4(hi, k);
                                }
                            }
#pragma unroll
                            for (int g = 0; g < G; g++) {
                                const float4 q0 = *(const float4 *)&qs[g][qpad<HD>(sub * DQ) + d0];
                                s[g] += q0.x * f[0] + q0.y * f[1] + q0.z * f[2] + q0.w * f[3];
                                if (KT == KV_Q4_0 && DQ == 32) {
                                    const float4 q1 = *(const float4 *)&qs[g][qpad<HD>(sub * DQ) + d0 + 16];
                                    s[g] += q1.x * fh[0] + q1.y * fh[1] + q1.z * fh[2] + q1.w * fh[3];
                                }
                            }
                        }
#pragma unroll
                        for (int g = 0; g < G; g++) s[g] *= dk[u];
                    }
#pragma unroll
                    for (int g = 0; g < G; g++) {
                        s[g] += __shfl_xor_sync(0xffffffffu, s[g], 1);
                        s[g] += __shfl_xor_sync(0xffffffffu, s[g], 2);
                    }
                    if (sub == 0 && p < n) {
#pragma unroll
                        for (int g = 0; g < G; g++) sc[g][p] = s[g];
                    }
                }
            }
        } else {
        /* scores: four lanes per key, each a quarter of the dimensions; a
         * warp takes 8 keys at a time, two such groups per pass so that 8
         * loads of 16 bytes per lane are in flight together */
        for (int pb = warp * 8; pb < n; pb += 64) {
            float s[2][G];
            uint4 raw[2][DQ / 8];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int p = pb + 32 * u + (lane >> 2);
#pragma unroll
                for (int g = 0; g < G; g++) s[u][g] = 0.0f;
                if (p < n) {
                    const uint4 *kr = (const uint4 *)(kc + kv_row(a.kv, table, c0 + p, kvh, tbo) * HD + sub * DQ);
#pragma unroll
                    for (int c = 0; c < DQ / 8; c++) raw[u][c] = __ldg(kr + c);
                }
            }
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int p = pb + 32 * u + (lane >> 2);
                if (p < n) {
#pragma unroll
                    for (int c = 0; c < DQ / 8; c++) {
                        const __half2 *h2 = (const __half2 *)&raw[u][c];
                        float kf[8];
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            float2 f = __half22float2(h2[i]);
                            kf[2 * i] = f.x;
                            kf[2 * i + 1] = f.y;
                        }
#pragma unroll
                        for (int g = 0; g < G; g++) {
                            const float4 *qv = (const float4 *)&qs[g][qpad<HD>(sub * DQ) + 8 * c];
                            float4 q0 = qv[0], q1 = qv[1];
                            s[u][g] += q0.x * kf[0] + q0.y * kf[1] + q0.z * kf[2] + q0.w * kf[3] + q1.x * kf[4] +
                                       q1.y * kf[5] + q1.z * kf[6] + q1.w * kf[7];
                        }
                    }
                }
#pragma unroll
                for (int g = 0; g < G; g++) {
                    s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], 1);
                    s[u][g] += __shfl_xor_sync(0xffffffffu, s[u][g], 2);
                }
                if (sub == 0 && p < n) {
#pragma unroll
                    for (int g = 0; g < G; g++) sc[g][p] = s[u][g];
                }
            }
        }
        }
        __syncthreads();

        /* online softmax: a warp per head turns scores into weights */
        for (int g = warp; g < G; g += 4) {
            float m = -INFINITY;
            for (int p = lane; p < n; p += 32) m = fmaxf(m, sc[g][p]);
            m = warp_max(m);
            float2 ml = ml_s[g];
            float m_new = fmaxf(m, ml.x);
            float l = 0.0f;
            for (int p = lane; p < n; p += 32) {
                float e = __expf(sc[g][p] - m_new);
                sc[g][p] = e;
                l += e;
            }
            l = warp_sum(l);
            __syncwarp(); /* every lane has read ml_s[g] before lane 0 rewrites it */
            if (lane == 0) {
                float c = __expf(ml.x - m_new);
                corr_s[g] = c;
                ml_s[g] = make_float2(m_new, ml.y * c + l);
            }
        }
        __syncthreads();
        /* every thread rescales its accumulators and its heads' sums */
#pragma unroll
        for (int g = 0; g < G; g++) {
            float c = corr_s[g];
#pragma unroll
            for (int i = 0; i < DPL; i++) acc[g][i] *= c;
        }

        /* P.V: warp w takes keys w, w+4, ...; a lane owns DPL dimensions */
        if constexpr (KT != KV_F16) {
            /* DPL codes of the lane's block and its scale, which goes into
             * the softmax weight (one multiply per head, not per value) */
            constexpr int RB = kv_row_bytes<KT, HD>();
            const uint8_t *vq = (const uint8_t *)a.kv.v;
            const kv_span vs = kv_span_of<KT>(lane * DPL);
#pragma unroll 8
            for (int p = warp; p < n; p += 4) {
                const uint8_t *vr = vq + kv_row(a.kv, table, c0 + p, kvh, tbo) * RB;
                const float dv = kv_scale(vr + vs.d_off);
                const uint32_t word = DPL == 4 ? kv_ld_2x16(vr + vs.q_off)
                                               : (uint32_t)__ldg((const unsigned short *)(vr + vs.q_off));
                float vf[DPL];
                if (KT == KV_Q8_0) {
                    const uint32_t b = word ^ 0x80808080u;
#pragma unroll
                    for (int i = 0; i < DPL; i++) vf[i] = kv_s8(b, i);
                } else {
                    const uint32_t nb = (word >> vs.nib) & 0x0f0f0f0fu;
#pragma unroll
                    for (int i = 0; i < DPL; i++) vf[i] = kv_u4(nb, i);
                }
#pragma unroll
                for (int g = 0; g < G; g++) {
                    float w = sc[g][p] * dv;
#pragma unroll
                    for (int i = 0; i < DPL; i++) acc[g][i] += w * vf[i];
                }
            }
        } else {
#pragma unroll 8
        for (int p = warp; p < n; p += 4) {
            const __half *vr = vc + kv_row(a.kv, table, c0 + p, kvh, tbo) * HD + lane * DPL;
            float vf[DPL];
            if (DPL == 4) {
                uint2 raw = __ldg((const uint2 *)vr);
                float2 f0 = __half22float2(*(const __half2 *)&raw.x), f1 = __half22float2(*(const __half2 *)&raw.y);
                vf[0] = f0.x;
                vf[1] = f0.y;
                vf[DPL > 2 ? 2 : 0] = f1.x;
                vf[DPL > 3 ? 3 : 0] = f1.y;
            } else {
                uint32_t raw = __ldg((const unsigned int *)vr);
                float2 f0 = __half22float2(*(const __half2 *)&raw);
                vf[0] = f0.x;
                vf[DPL > 1 ? 1 : 0] = f0.y;
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                float w = sc[g][p];
#pragma unroll
                for (int i = 0; i < DPL; i++) acc[g][i] += w * vf[i];
            }
        }
        }
    }
    __syncthreads();
#pragma unroll
    for (int g = 0; g < G; g++)
#pragma unroll
        for (int i = 0; i < DPL; i++) red[warp][g][lane * DPL + i] = acc[g][i];
    __syncthreads();
    for (int e = tid; e < G * HD; e += DEC_THREADS) {
        int g = e / HD, d = e % HD;
        float o = red[0][g][d] + red[1][g][d] + red[2][g][d] + red[3][g][d];
        a.part_o[(part + (size_t)g * a.n_split) * HD + d] = o;
    }
    if (tid < G) a.part_ml[part + (size_t)tid * a.n_split] = ml_s[tid];
}

/* Merges the splits of HPB heads of a token (CG threads per dimension) and
 * quantizes them for the output projection: per block of 32 (HPB = 1: the
 * head's own chunks), or per 256 columns (HPB = 256 / HD heads share one
 * scale). Only the splits that hold keys are read: at a short context one
 * or two of them, not n_split. */
enum { CG = 4 }; /* thread groups of attn_combine */

template <int HD, int HPB>
static __global__ void __launch_bounds__(HD * HPB * CG) attn_combine(const float *part_o, const float2 *part_ml,
                                                                     const int32_t *pos, int n_head, int n_split,
                                                                     float *out, int8_t *q8, float4 *meta)
{
    pdl_trigger();
    __shared__ float o_s[HD * HPB];
    __shared__ float gm_s[CG][HD * HPB], gl_s[CG][HD * HPB], go_s[CG][HD * HPB];
    /* CG groups of threads each merge every CG-th split, then group 0
     * merges the groups: at 16K, 66 splits in 17 dependent steps instead
     * of 66 (a 16K decode step 12.96 -> 12.87 ms on one H100) */
    const int x = threadIdx.x % (HD * HPB), grp = threadIdx.x / (HD * HPB);
    const int t = blockIdx.y, h = blockIdx.x * HPB + x / HD, d = x % HD;
    const int len = pos[t] + 1, active = APR_DIV_UP(len, split_len(len, n_split));
    const size_t part = ((size_t)t * n_head + h) * n_split;
    pdl_wait(); /* (the positions, as in attn_decode, need none) */
    float m = -INFINITY;
    for (int j = grp; j < active; j += CG) m = fmaxf(m, part_ml[part + j].x);
    float l = 0.0f, o = 0.0f;
#pragma unroll 4
    for (int j = grp; j < active; j += CG) {
        float2 v = part_ml[part + j];
        float w = __expf(v.x - m);
        l += w * v.y;
        o += w * part_o[(part + j) * HD + d];
    }
    gm_s[grp][x] = m;
    gl_s[grp][x] = l;
    go_s[grp][x] = o;
    __syncthreads();
    if (grp) return;
    m = gm_s[0][x];
#pragma unroll
    for (int g = 1; g < CG; g++) m = fmaxf(m, gm_s[g][x]);
    l = o = 0.0f;
#pragma unroll
    for (int g = 0; g < CG; g++) {
        if (gm_s[g][x] == -INFINITY) continue; /* a group with no split */
        float w = __expf(gm_s[g][x] - m);
        l += w * gl_s[g][x];
        o += w * go_s[g][x];
    }
    o /= l;
    const int cols = n_head * HD;
    out[(size_t)t * cols + h * HD + d] = o;
    if (!q8) return;
    o_s[threadIdx.x] = o;
    __syncthreads();
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31, c0 = blockIdx.x * HPB * HD / 64;
    int8_t *qt = q8 + (size_t)t * cols;
    float4 *mt = meta + (size_t)t * (cols / 32);
    if (HPB == 1) {
        if (w < HD / 64) q8_chunk(o_s[64 * w + lane], o_s[64 * w + 32 + lane], c0 + w, qt, mt);
    } else if (w == 0) {
        float va[4], vb[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            va[k] = o_s[64 * k + lane];
            vb[k] = o_s[64 * k + 32 + lane];
        }
        q8_chunks256(va, vb, c0, qt, mt);
    }
}

/* ------------------------------------------------------------------ prefill */

enum { FQ = 64, FK = 64, F_THREADS = 128 };

struct pre_args {
    const __half *q;
    apr_cuda_tokens tk;
    apr_cuda_kv kv;
    int n, n_head;
    float scale_log2;
    float *out;
    __half *out16;
};

/* Widens the staged cache rows of keys [key0, key0 + FK) (raw: FK rows of
 * RB bytes) into the f16 tile t ([FK][LD]), 8 elements per step; keys past
 * last_pos become zeros (their slots may hold anything). */
template <int HD, int KT>
static __device__ __forceinline__ void widen_tile(__half *t, const uint8_t *raw, int key0, int last_pos)
{
    constexpr int LD = HD + 8, RB = kv_row_bytes<KT, HD>();
    for (int u = threadIdx.x; u < FK * HD / 8; u += F_THREADS) {
        const int r = u / (HD / 8), e0 = (u % (HD / 8)) * 8;
        uint4 h = make_uint4(0, 0, 0, 0);
        if (key0 + r <= last_pos) {
            const kv_span sp = kv_span_of<KT>(e0);
            const uint8_t *row = raw + r * RB;
            const float d = kv_scale(row + sp.d_off);
            const unsigned short *q = (const unsigned short *)(row + sp.q_off);
            const uint32_t w0 = (uint32_t)q[0] | (uint32_t)q[1] << 16, w1 = (uint32_t)q[2] | (uint32_t)q[3] << 16;
            float f[8];
            if (KT == KV_Q8_0) {
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    f[k] = kv_s8(w0 ^ 0x80808080u, k);
                    f[4 + k] = kv_s8(w1 ^ 0x80808080u, k);
                }
            } else {
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    f[k] = kv_u4((w0 >> sp.nib) & 0x0f0f0f0fu, k);
                    f[4 + k] = kv_u4((w1 >> sp.nib) & 0x0f0f0f0fu, k);
                }
            }
            h = make_uint4(pack_half2(f[0] * d, f[1] * d), pack_half2(f[2] * d, f[3] * d),
                           pack_half2(f[4] * d, f[5] * d), pack_half2(f[6] * d, f[7] * d));
        }
        *(uint4 *)(t + r * LD + e0) = h;
    }
}

/* Rows [q0, q0 + rows) of the pass, one sequence at consecutive positions
 * (at most FQ), for query head h: flash attention over the sequence's keys
 * 0..(its last position), tiles of FK keys through shared memory in two
 * stages, S and P V on tensor cores, the softmax online in base 2. */
template <int HD, int KT>
static __device__ __forceinline__ void attend_run(const pre_args &a, int q0, int rows, int h, int kvh)
{
    constexpr int LD = HD + 8;
    constexpr bool QUANT = KT != KV_F16;
    constexpr int RB = kv_row_bytes<KT, HD>(), STAGE = FK * RB; /* a stage of raw rows, quantized caches */
    extern __shared__ uint4 smem_u4[];
    __half *qsm = (__half *)smem_u4;            /* [FQ][LD] */
    __half *ksm = qsm + FQ * LD;                /* [2][FK][LD]; quantized: [FK][LD] */
    __half *vsm = ksm + (QUANT ? 1 : 2) * FK * LD;
    uint8_t *raw = (uint8_t *)(vsm + (QUANT ? 1 : 2) * FK * LD); /* quantized: [2 stages][k, v][STAGE] */
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int seq0 = a.tk.seq[q0], pos0 = a.tk.pos[q0];
    __syncthreads(); /* the block's previous run has left shared memory */
    const int last_pos = pos0 + rows - 1;
    const int n_kt = last_pos / FK + 1;
    const int32_t *table = a.tk.block_table + (size_t)seq0 * a.tk.max_blocks;
    const __half *kc = (const __half *)a.kv.k, *vc = (const __half *)a.kv.v;

    for (int c = tid; c < FQ * HD / 8; c += F_THREADS) {
        int r = c / (HD / 8), col = (c % (HD / 8)) * 8;
        bool valid = r < rows;
        const __half *src = a.q + ((size_t)(valid ? q0 + r : q0) * a.n_head + h) * HD + col;
        cp_async16(qsm + r * LD + col, src, valid);
    }
    auto issue_kv = [&](int kt, int st) {
        if constexpr (QUANT) {
            /* whole cache blocks: a block of one head is bt contiguous rows,
             * 16-byte aligned; a 16-byte piece never straddles two blocks */
            const int bt = 1 << a.kv.block_shift, blk_bytes = bt * RB;
            for (int c = tid; c < STAGE / 16; c += F_THREADS) {
                const int o = 16 * c, j = o / blk_bytes;
                const int key = kt * FK + j * bt; /* the first key of the piece's block */
                const bool valid = key <= last_pos;
                const size_t off = valid ? (((size_t)table[key >> a.kv.block_shift] * a.kv.n_kv + kvh) * bt +
                                            (key & (bt - 1))) * RB + (o - j * blk_bytes)
                                         : 0;
                cp_async16(raw + (2 * st) * STAGE + o, (const uint8_t *)a.kv.k + off, valid);
                cp_async16(raw + (2 * st + 1) * STAGE + o, (const uint8_t *)a.kv.v + off, valid);
            }
        } else {
            for (int c = tid; c < FK * HD / 8; c += F_THREADS) {
                int r = c / (HD / 8), col = (c % (HD / 8)) * 8;
                int key = kt * FK + r;
                bool valid = key <= last_pos;
                size_t off = kv_row(a.kv, table, valid ? key : 0, kvh) * HD + col;
                cp_async16(ksm + (st * FK + r) * LD + col, kc + off, valid);
                cp_async16(vsm + (st * FK + r) * LD + col, vc + off, valid);
            }
        }
        cp_async_commit();
    };
    issue_kv(0, 0);

    uint32_t qf[HD / 16][4];
    float o[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float mrow[2] = {-INFINITY, -INFINITY}, lrow[2] = {0.0f, 0.0f};
    const int r_lo = warp * 16 + (lane >> 2); /* this lane's rows: r_lo and r_lo + 8 */
    const int qpos[2] = {pos0 + r_lo, pos0 + r_lo + 8};

    for (int kt = 0; kt < n_kt; kt++) {
        const int st = kt & 1;
        cp_async_wait_all();
        __syncthreads();
        if (kt == 0) {
#pragma unroll
            for (int kc2 = 0; kc2 < HD / 16; kc2++)
                ldmatrix_x4(qf[kc2], qsm + (warp * 16 + (lane & 15)) * LD + kc2 * 16 + (lane >> 4) * 8);
        }
        if (kt + 1 < n_kt) issue_kv(kt + 1, st ^ 1);
        const __half *kb = ksm + st * FK * LD, *vb = vsm + st * FK * LD;
        if constexpr (QUANT) {
            widen_tile<HD, KT>(ksm, raw + (2 * st) * STAGE, kt * FK, last_pos);
            widen_tile<HD, KT>(vsm, raw + (2 * st + 1) * STAGE, kt * FK, last_pos);
            __syncthreads();
            kb = ksm;
            vb = vsm;
        }

        /* S = Q K^T for 16 rows x 64 keys */
        float s[FK / 8][4];
#pragma unroll
        for (int j = 0; j < FK / 8; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int kc2 = 0; kc2 < HD / 16; kc2++) {
#pragma unroll
            for (int np = 0; np < FK / 16; np++) {
                uint32_t b[4];
                ldmatrix_x4(b, kb + (np * 16 + (lane & 7) + ((lane >> 4) << 3)) * LD + kc2 * 16 + ((lane >> 3) & 1) * 8);
                mma16816(s[2 * np], qf[kc2], b[0], b[1]);
                mma16816(s[2 * np + 1], qf[kc2], b[2], b[3]);
            }
        }

        /* causal mask, online softmax in base 2 */
        const bool diag = (kt + 1) * FK - 1 > pos0;
        float mx[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < FK / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = kt * FK + 8 * j + (lane & 3) * 2 + (e & 1);
                float v = s[j][e] * a.scale_log2;
                if (diag && key > qpos[e >> 1]) v = -INFINITY;
                s[j][e] = v;
                mx[e >> 1] = fmaxf(mx[e >> 1], v);
            }
        float corr[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
            mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
            float mnew = fmaxf(mrow[r], mx[r]);
            corr[r] = mnew == -INFINITY ? 1.0f : exp2f(mrow[r] - mnew);
            mrow[r] = mnew;
            lrow[r] *= corr[r];
        }
#pragma unroll
        for (int j = 0; j < FK / 8; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float mm = mrow[e >> 1];
                float p = mm == -INFINITY ? 0.0f : exp2f(s[j][e] - mm);
                s[j][e] = p;
                lrow[e >> 1] += p;
            }
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            o[i][0] *= corr[0];
            o[i][1] *= corr[0];
            o[i][2] *= corr[1];
            o[i][3] *= corr[1];
        }

        /* O += P V */
#pragma unroll
        for (int kc2 = 0; kc2 < FK / 16; kc2++) {
            uint32_t pa[4] = {pack_half2(s[2 * kc2][0], s[2 * kc2][1]), pack_half2(s[2 * kc2][2], s[2 * kc2][3]),
                              pack_half2(s[2 * kc2 + 1][0], s[2 * kc2 + 1][1]),
                              pack_half2(s[2 * kc2 + 1][2], s[2 * kc2 + 1][3])};
#pragma unroll
            for (int dp = 0; dp < HD / 16; dp++) {
                uint32_t b[4];
                ldmatrix_x4_trans(b, vb + (kc2 * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + dp * 16 + (lane >> 4) * 8);
                mma16816(o[2 * dp], pa, b[0], b[1]);
                mma16816(o[2 * dp + 1], pa, b[2], b[3]);
            }
        }
    }

#pragma unroll
    for (int r = 0; r < 2; r++) {
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
        lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
        lrow[r] = lrow[r] > 0.0f ? 1.0f / lrow[r] : 0.0f;
    }
    const int q_dim = a.n_head * HD;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        int row = r_lo + 8 * r;
        if (row >= rows) continue;
        size_t base = (size_t)(q0 + row) * q_dim + h * HD + (lane & 3) * 2;
#pragma unroll
        for (int i = 0; i < HD / 8; i++) {
            float v0 = o[i][2 * r] * lrow[r], v1 = o[i][2 * r + 1] * lrow[r];
            *(float2 *)(a.out + base + 8 * i) = make_float2(v0, v1);
            if (a.out16) *(uint32_t *)(a.out16 + base + 8 * i) = pack_half2(v0, v1);
        }
    }
}

/* A tile of FQ rows of the pass per block, for one query head. A pass of
 * decode tokens beside prompt chunks (the engine puts the single tokens
 * first), or of two prompts' chunks, has tiles that mix sequences: such a
 * tile is taken as its runs of one sequence at consecutive positions, each
 * through attend_run, so a chunk's rows in a mixed tile cost what they cost
 * in a tile of their own. (Walking each row's keys one at a time instead
 * made a 16K prompt beside 15 streams take minutes on the GPU.) */
template <int HD, int KT>
static __global__ void __launch_bounds__(F_THREADS) attn_prefill(pre_args a)
{
    const int h = blockIdx.y, kvh = h / (a.n_head / a.kv.n_kv);
    const int q0 = blockIdx.x * FQ, rows = min(FQ, a.n - q0);
    const int seq0 = a.tk.seq[q0], pos0 = a.tk.pos[q0];
    /* a prompt's tile is one run: checked by all threads at once */
    bool same = true;
    for (int r = threadIdx.x; r < rows; r += F_THREADS)
        same = same && a.tk.seq[q0 + r] == seq0 && a.tk.pos[q0 + r] == pos0 + r;
    const bool one_run = __syncthreads_and(same);
    /* else every thread walks the same rows: the runs, and the barriers in
     * attend_run, are the same for the whole block */
    for (int r0 = 0; r0 < rows;) {
        const int seq = a.tk.seq[q0 + r0], pos = a.tk.pos[q0 + r0];
        int r1 = one_run ? rows : r0 + 1;
        while (r1 < rows && a.tk.seq[q0 + r1] == seq && a.tk.pos[q0 + r1] == pos + (r1 - r0)) r1++;
        attend_run<HD, KT>(a, q0 + r0, r1 - r0, h, kvh);
        r0 = r1;
    }
}

/* ---------------------------------------------------------------- launchers */

template <int HD, int KT>
static apr_status launch_decode(const dec_args &a, int G, int n_tok, cudaStream_t stream)
{
    dim3 grid(a.n_split, a.kv.n_kv, n_tok);
    switch (G) {
#define CASE(g) case g: APR_CUDA_CHECK(launch_pdl(attn_decode<HD, g, KT>, grid, DEC_THREADS, 0, stream, a)); break;
        CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8)
#undef CASE
    default: return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: %d query heads per KV head (at most 8)", G);
    }
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

/* q, then two stages of f16 k and v tiles; quantized: one f16 stage and
 * two of raw rows */
template <int HD, int KT> static int prefill_smem()
{
    if (KT == KV_F16) return (FQ + 4 * FK) * (HD + 8) * 2;
    return (FQ + 2 * FK) * (HD + 8) * 2 + 4 * FK * kv_row_bytes<KT, HD>();
}

template <int HD, int KT>
static apr_status launch_prefill(const pre_args &a, cudaStream_t stream)
{
    int smem = prefill_smem<HD, KT>();
    dim3 grid(APR_DIV_UP(a.n, FQ), a.n_head);
    attn_prefill<HD, KT><<<grid, F_THREADS, smem, stream>>>(a);
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

/* The instantiation for a cache's element type. */
#define APR_KV_DISPATCH(type, call_f16, call_q8, call_q4) \
    ((type) == APR_Q8_0 ? (call_q8) : (type) == APR_Q4_0 ? (call_q4) : (call_f16))

/* ---------------------------------------------------------------- entry points */

template <int HD, int KT> static apr_status prefill_setup()
{
    APR_CUDA_CHECK(cudaFuncSetAttribute(attn_prefill<HD, KT>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        prefill_smem<HD, KT>()));
    return APR_OK;
}

extern "C" apr_status apr_cuda_attention_setup(void)
{
    APR_TRY((prefill_setup<64, KV_F16>()));
    APR_TRY((prefill_setup<128, KV_F16>()));
    APR_TRY((prefill_setup<64, KV_Q8_0>()));
    APR_TRY((prefill_setup<128, KV_Q8_0>()));
    APR_TRY((prefill_setup<64, KV_Q4_0>()));
    APR_TRY((prefill_setup<128, KV_Q4_0>()));
    return APR_OK;
}

extern "C" size_t apr_cuda_attention_scratch_bytes(int n_tok, int n_head, int n_split, int hd)
{
    size_t parts = (size_t)n_tok * n_head * n_split;
    return ((parts * hd * sizeof(float) + 255) & ~(size_t)255) + parts * sizeof(float2);
}

extern "C" apr_status apr_cuda_attention_decode(const float *qkv, apr_cuda_tokens tk, apr_cuda_kv kv, int n_tok,
                                                int n_head, float scale, int n_split, void *scratch, float *out_f32,
                                                apr_cuda_q8 out_q8, cudaStream_t stream)
{
    if (n_tok <= 0) return APR_OK;
    const int hd = kv.hd;
    if (kv.type != APR_F16 && kv.type != APR_Q8_0 && kv.type != APR_Q4_0)
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: a %s KV cache", apr_dtype_name(kv.type));
    if (n_split < 1 || n_head % kv.n_kv || (hd != 64 && hd != 128))
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: %d splits, %d/%d heads of %d", n_split, n_head, kv.n_kv,
                         hd);
    size_t parts = (size_t)n_tok * n_head * n_split;
    dec_args a;
    a.qkv = qkv;
    a.tk = tk;
    a.kv = kv;
    a.n_head = n_head;
    a.n_split = n_split;
    a.scale = scale;
    a.part_o = (float *)scratch;
    a.part_ml = (float2 *)((char *)scratch + ((parts * hd * sizeof(float) + 255) & ~(size_t)255));
    const int G = n_head / kv.n_kv;
    if (hd == 128)
        APR_TRY(APR_KV_DISPATCH(kv.type, (launch_decode<128, KV_F16>(a, G, n_tok, stream)),
                                (launch_decode<128, KV_Q8_0>(a, G, n_tok, stream)),
                                (launch_decode<128, KV_Q4_0>(a, G, n_tok, stream))));
    else
        APR_TRY(APR_KV_DISPATCH(kv.type, (launch_decode<64, KV_F16>(a, G, n_tok, stream)),
                                (launch_decode<64, KV_Q8_0>(a, G, n_tok, stream)),
                                (launch_decode<64, KV_Q4_0>(a, G, n_tok, stream))));
    const int hpb = out_q8.q && out_q8.block == 256 ? 256 / hd : 1;
    if (n_head % hpb)
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: %d heads of %d in blocks of 256", n_head, hd);
    dim3 grid(n_head / hpb, n_tok);
    float4 *meta = (float4 *)out_q8.meta;
    const float2 *ml = a.part_ml;
#define COMBINE(hd, hp) launch_pdl(attn_combine<hd, hp>, grid, hd * hp * CG, 0, stream, a.part_o, ml, tk.pos, n_head, n_split, out_f32, out_q8.q, meta)
    if (hd == 128 && hpb == 1)
        APR_CUDA_CHECK(COMBINE(128, 1));
    else if (hd == 128)
        APR_CUDA_CHECK(COMBINE(128, 2));
    else if (hpb == 1)
        APR_CUDA_CHECK(COMBINE(64, 1));
    else
        APR_CUDA_CHECK(COMBINE(64, 4));
#undef COMBINE
    APR_CUDA_LAUNCHED();
    return APR_OK;
}

extern "C" apr_status apr_cuda_attention_prefill(const void *q_f16, apr_cuda_tokens tk, apr_cuda_kv kv, int n,
                                                 int n_head, float scale, float *out_f32, void *out_f16,
                                                 cudaStream_t stream)
{
    if (n <= 0) return APR_OK;
    if (kv.type != APR_F16 && kv.type != APR_Q8_0 && kv.type != APR_Q4_0)
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: a %s KV cache", apr_dtype_name(kv.type));
    if (n_head % kv.n_kv || (kv.hd != 64 && kv.hd != 128))
        return apr_error(APR_ERR_UNSUPPORTED, "CUDA attention: %d/%d heads of %d", n_head, kv.n_kv, kv.hd);
    pre_args a = {(const __half *)q_f16, tk, kv, n, n_head, scale * 1.4426950408889634f, out_f32, (__half *)out_f16};
    if (kv.hd == 128)
        return APR_KV_DISPATCH(kv.type, (launch_prefill<128, KV_F16>(a, stream)), (launch_prefill<128, KV_Q8_0>(a, stream)),
                               (launch_prefill<128, KV_Q4_0>(a, stream)));
    return APR_KV_DISPATCH(kv.type, (launch_prefill<64, KV_F16>(a, stream)), (launch_prefill<64, KV_Q8_0>(a, stream)),
                           (launch_prefill<64, KV_Q4_0>(a, stream)));
}
