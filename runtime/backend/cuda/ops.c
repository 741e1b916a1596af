/* ops.c — the forward pass's ops (backend.h) on the GPU.
 *
 * Each op is one or two kernels from kernels/, chosen by the pass's size
 * (cuda.h). Up to CUDA_MMA_MAX tokens a pass reads every weight once: int8
 * activations and dp4a matrix-vector kernels up to q8_max tokens (gemv.cu),
 * f16 activations and the weight-streaming tensor-core kernels above
 * (gemv_mma.cu: a server's step of 16 sequences costs little more than one
 * token's). Longer passes are prefill: f16 activations on tiled tensor-core
 * kernels (gemm.cu), and from CUDA_BLAS_MIN tokens each weight matrix
 * dequantized to f16 once, a chunk of rows at a time, times all the tokens
 * by cuBLAS (blas.c). Attention is split flash-decoding up to
 * CUDA_ATTN_DECODE_MAX tokens, FlashAttention-2 above (attention.cu).
 *
 * Activations cross the interface as f32, but the products want them int8
 * or f16. The op that produces a product's input writes that form too, into
 * the stream's scratch, and notes it in the memo: the RMSNorm before q|k|v
 * and gate|up, and attention before the output projection in decode. The
 * next op uses it instead of converting again. A memo lives exactly one op:
 * every op clears it on entry, so a stale form can never be read.
 *
 * f16 activations of quantized products are rounded to the int8 values
 * the dp4a kernels would use (quantize.cu, q8round), so that every path, and
 * llama.cpp, build the same KV cache; float weights get plain f16. */
#include "backend/cuda/cuda.h"

#include "core/error.h"

#ifdef APR_CUDA

#include "kernels/attention.cuh"
#include "kernels/embed.cuh"
#include "kernels/gemm.cuh"
#include "kernels/gemv.cuh"
#include "kernels/quantize.cuh"
#include "kernels/rope.cuh"
#include "kernels/sampling.cuh"

/* ===================================================================== */
/* Helpers                                                               */
/* ===================================================================== */

/* The memo left by the previous op, cleared for this one. */
static cuda_memo take_memo(apr_stream *s)
{
    cuda_memo m = s->memo;
    s->memo = (cuda_memo){ 0 };
    return m;
}

/* The int8 activations' scale blocks, as llama.cpp chooses them for a
 * weight type: 256 columns (q8_K) for the K formats, 32 (q8_1) otherwise.
 * Only rounding differs, but agreeing with llama.cpp's golden logits on the
 * close calls depends on it. */
static int q8_block_for(int type, int64_t cols)
{
    int k = type == APR_Q4_K || type == APR_Q5_K || type == APR_Q6_K;
    return k && cols % 256 == 0 ? 256 : 32;
}

static int linear_block(const apr_linear *W)
{
    int b = 256;
    for (int i = 0; i < W->n_parts; i++)
        if (q8_block_for(W->part[i].type, W->cols) == 32) b = 32;
    return b;
}

static apr_cuda_q8 q8_for(apr_stream *s, int64_t cols, int block)
{
    apr_cuda_q8 q = s->q8;
    q.cols = (int)cols;
    q.block = cols % block ? 32 : block;
    return q;
}

/* x as int8 for a decode product (converted unless the memo has it). */
static apr_cuda_q8 input_q8(apr_stream *s, const cuda_memo *m, const float *x, int n, int64_t cols, int block)
{
    apr_cuda_q8 q = q8_for(s, cols, block);
    if (m->q8_of == x && m->q8_block == q.block) return m->q8_buf.q ? m->q8_buf : q;
    apr_cuda_record(s, apr_cuda_quantize_rmsnorm_q8(x, (int)cols, NULL, 0, n, (int)cols, q, NULL, s->cs));
    return q;
}

/* x as f16 for a prefill product (q8round: int8-rounded per 32 or 256
 * columns for quantized weights; 0 for float weights), in rows or (frag)
 * in the fragment order of the tensor-core decode kernels. */
static const void *input_f16(apr_stream *s, const cuda_memo *m, const float *x, int n, int64_t cols, int q8round,
                             int frag)
{
    if (m->f16_of == x && m->f16_rounded == q8round && m->f16_frag == frag) return m->f16_buf;
    void *buf = frag ? s->x16f : s->x16;
    apr_cuda_record(s, apr_cuda_quantize_rmsnorm_f16(x, (int)cols, NULL, 0, n, (int)cols, buf, NULL, q8round, frag, s->cs));
    return buf;
}

static int is_quantized(int type) { return type != APR_F32 && type != APR_F16 && type != APR_BF16; }

/* Whether a product of n tokens takes int8 activations (the dp4a kernels). */
static int takes_q8(const apr_stream *s, int n) { return n <= s->b->q8_max; }

static int all_quantized(const apr_linear *W)
{
    int q = 1;
    for (int i = 0; i < W->n_parts; i++) q = q && is_quantized(W->part[i].type);
    return q;
}

/* Which decode kernels take a product of n tokens: the dp4a ones (1), the
 * tensor-core ones (2; quantized weights only), or none (0: gemm). Float
 * weights stay on the dp4a kernels' f32 path as far as it goes. */
static int decode_kernels(const apr_stream *s, const apr_linear *W, int n)
{
    const int q = all_quantized(W);
    if (takes_q8(s, n) || (!q && n <= CUDA_GEMV_MAX)) return 1;
    return q && n <= s->b->mma_max && W->cols % 128 == 0 ? 2 : 0;
}

/* A layer of the cache as the kernels take it. apr_cuda_supports has
 * vetted the type and block size when the context was made. */
static apr_cuda_kv layer_kv(const apr_kv_cache *kv, int layer)
{
    int shift = 0;
    while ((1 << shift) < kv->block_tokens) shift++;
    return (apr_cuda_kv){
        .k = (uint8_t *)kv->k + (size_t)layer * kv->layer_bytes,
        .v = (uint8_t *)kv->v + (size_t)layer * kv->layer_bytes,
        .n_kv = kv->n_head_kv, .hd = kv->head_dim, .block_shift = shift,
        .type = kv->type, .row_bytes = (int)kv->row_bytes,
        .k_offset = kv->k_offset ? kv->k_offset + (size_t)layer * kv->n_head_kv * kv->head_dim : NULL,
    };
}

static apr_cuda_tokens step_tokens(const apr_step *st)
{
    return (apr_cuda_tokens){ .pos = st->pos, .seq = st->seq, .slot = st->slot, .block_table = st->block_table,
                              .max_blocks = st->max_blocks };
}

/* ----------------------------------------------------------- long passes */

/* Whether a product of n tokens takes f16 weight chunks and cuBLAS. */
static int takes_blas(const apr_stream *s, int n) { return s->blas && n >= s->b->blas_min; }

/* Rows of a chunk: as many as blas_chunk holds (per = 2: gate and up), and
 * for SwiGLU as many as blas_tmp holds for n tokens; a multiple of 64. */
static int blas_rows(const apr_stream *s, int64_t cols, int n, int per, int64_t rows)
{
    int64_t r = (int64_t)(s->b->blas_chunk / ((size_t)cols * 2 * per));
    if (per == 2) {
        int64_t t = (int64_t)(s->blas_tmp_bytes / ((size_t)n * 2 * sizeof(float)));
        if (t < r) r = t;
    }
    r = r / 64 * 64;
    if (r < 64) r = 64;
    return (int)(r < rows ? r : rows);
}

/* out[t*ld_out + r] (+)= w_r . x_t (+ bias[r]) through f16 chunks of w. */
static void blas_product(apr_stream *s, float *out, int ld_out, const void *x16, const apr_weight *W, int n,
                         const float *bias, int accumulate)
{
    apr_cuda_qmat w = apr_cuda_weight_qmat(W);
    const int R = blas_rows(s, w.cols, n, 1, w.rows);
    for (int r0 = 0; r0 < w.rows; r0 += R) {
        const int rows = w.rows - r0 < R ? w.rows - r0 : R;
        apr_cuda_record(s, apr_cuda_dequant_f16(&w, r0, rows, s->blas_w, s->cs));
        apr_cuda_record(s, apr_cuda_blas_gemm(s->blas, rows, n, w.cols, s->blas_w, x16, out + r0, ld_out,
                                              accumulate ? 1.0f : 0.0f));
    }
    if (bias) apr_cuda_record(s, apr_cuda_bias_rows(out, ld_out, bias, w.rows, n, s->cs));
}

/* SwiGLU through f16 chunks: R gate rows and the same R up rows side by
 * side in blas_w, one product into blas_tmp, joined into out. */
static void blas_glu(apr_stream *s, float *out, const void *x16, const apr_linear *W, int n)
{
    apr_cuda_qmat gate = apr_cuda_weight_qmat(&W->part[0]), up = apr_cuda_weight_qmat(&W->part[1]);
    const int R = blas_rows(s, gate.cols, n, 2, gate.rows);
    for (int r0 = 0; r0 < gate.rows; r0 += R) {
        const int rows = gate.rows - r0 < R ? gate.rows - r0 : R;
        apr_cuda_record(s, apr_cuda_dequant_f16(&gate, r0, rows, s->blas_w, s->cs));
        apr_cuda_record(s, apr_cuda_dequant_f16(&up, r0, rows, (char *)s->blas_w + (size_t)rows * gate.cols * 2,
                                                s->cs));
        apr_cuda_record(s, apr_cuda_blas_gemm(s->blas, 2 * rows, n, gate.cols, s->blas_w, x16, s->blas_tmp, 2 * rows,
                                              0.0f));
        apr_cuda_record(s, apr_cuda_glu_join(s->blas_tmp, rows, n, out + r0, gate.rows, s->cs));
    }
}

/* ===================================================================== */
/* What the kernels handle                                               */
/* ===================================================================== */

apr_status apr_cuda_op_supports(apr_backend *b, int kv_type, int block_tokens, const apr_attn_params *p)
{
    APR_CHECK(kv_type == APR_F16 || kv_type == APR_Q8_0 || kv_type == APR_Q4_0, APR_ERR_UNSUPPORTED,
              "the CUDA backend has no %s KV cache (it has F16, Q8_0 and Q4_0)",
              apr_dtype_name(kv_type) ? apr_dtype_name(kv_type) : "unknown");
    APR_CHECK(p->head_dim == 64 || p->head_dim == 128, APR_ERR_UNSUPPORTED,
              "the CUDA backend handles heads of 64 or 128 dimensions, not %d", p->head_dim);
    APR_CHECK(p->n_head_kv > 0 && p->n_head % p->n_head_kv == 0 && p->n_head / p->n_head_kv <= 8,
              APR_ERR_UNSUPPORTED, "the CUDA backend needs n_head (%d) a multiple of n_head_kv (%d), at most 8 times it",
              p->n_head, p->n_head_kv);
    APR_CHECK(p->n_rot > 0 && p->n_rot <= p->head_dim && p->n_rot % 2 == 0, APR_ERR_UNSUPPORTED,
              "CUDA RoPE: %d rotated dimensions of %d", p->n_rot, p->head_dim);
    /* paged rows are found by shifts; prefill copies quantized cache blocks
     * in 16-byte pieces, which needs blocks of at least 4 rows (a row is a
     * multiple of 4 bytes) */
    APR_CHECK(block_tokens >= 4 && (block_tokens & (block_tokens - 1)) == 0, APR_ERR_UNSUPPORTED,
              "the CUDA backend needs KV cache blocks of a power of two tokens, at least 4 (not %d)", block_tokens);
    return APR_OK;
}

/* ===================================================================== */
/* The ops                                                               */
/* ===================================================================== */

void apr_cuda_op_get_rows(apr_stream *s, float *out, const apr_weight *table, const int32_t *ids, int n)
{
    take_memo(s);
    apr_cuda_qmat w = apr_cuda_weight_qmat(table);
    apr_cuda_record(s, apr_cuda_embed(&w, ids, n, out, s->cs));
}

void apr_cuda_op_gather(apr_stream *s, float *out, const float *x, const int32_t *rows, int n, int64_t dim)
{
    take_memo(s);
    apr_cuda_record(s, apr_cuda_embed_gather(out, x, rows, n, dim, s->cs));
}

void apr_cuda_op_rmsnorm(apr_stream *s, float *out, const float *x, const apr_weight *w, int n, float eps)
{
    take_memo(s);
    const int cols = (int)w->cols;
    /* the next product's blocks are guessed from the model's weights */
    const int block = s->b->q8_block;
    if (takes_q8(s, n)) {
        apr_cuda_q8 q = q8_for(s, cols, block);
        apr_cuda_record(s, apr_cuda_quantize_rmsnorm_q8(x, cols, w->data, eps, n, cols, q, out, s->cs));
        s->memo.q8_of = out;
        s->memo.q8_block = q.block;
    } else {
        /* the tensor-core decode kernels' order when they will likely read it */
        const int rb = cols % block ? 32 : block, frag = n <= s->b->mma_max && cols % 128 == 0;
        void *buf = frag ? s->x16f : s->x16;
        apr_cuda_record(s, apr_cuda_quantize_rmsnorm_f16(x, cols, w->data, eps, n, cols, buf, out, rb, frag, s->cs));
        s->memo.f16_of = out;
        s->memo.f16_buf = buf;
        s->memo.f16_rounded = rb;
        s->memo.f16_frag = frag;
    }
}

void apr_cuda_op_matmul(apr_stream *s, float *out, const float *x, const apr_linear *W, int n, int accumulate)
{
    cuda_memo m = take_memo(s);
    if (n <= 0) return;
    const int kernels = decode_kernels(s, W, n), mma = kernels == 2;
    if (kernels) {
        apr_cuda_gemv_seg seg[APR_LINEAR_MAX_PARTS];
        int need_q8 = 0;
        int64_t row = 0;
        for (int i = 0; i < W->n_parts; i++) {
            float *o = out + row;
            seg[i] = (apr_cuda_gemv_seg){
                .w = apr_cuda_weight_qmat(&W->part[i]), .out = o, .ld_out = (int)W->rows,
                .bias = W->bias[i].data, .resid = accumulate ? o : NULL, .ld_resid = (int)W->rows,
            };
            need_q8 |= is_quantized(W->part[i].type);
            row += W->part[i].rows;
        }
        if (mma) {
            const void *x16 = input_f16(s, &m, x, n, W->cols, W->cols % linear_block(W) ? 32 : linear_block(W), 1);
            apr_cuda_record(s, apr_cuda_gemv_mma(seg, W->n_parts, n, x16, s->cs));
            return;
        }
        apr_cuda_q8 q = need_q8 ? input_q8(s, &m, x, n, W->cols, linear_block(W)) : q8_for(s, W->cols, 32);
        apr_cuda_record(s, apr_cuda_gemv(seg, W->n_parts, n, q, x, s->cs));
        return;
    }
    int quantized = 0;
    for (int i = 0; i < W->n_parts; i++) quantized |= is_quantized(W->part[i].type);
    const int block = linear_block(W);
    const void *x16 = input_f16(s, &m, x, n, W->cols, quantized ? (W->cols % block ? 32 : block) : 0, 0);
    int64_t row = 0;
    if (takes_blas(s, n)) {
        for (int i = 0; i < W->n_parts; i++) {
            blas_product(s, out + row, (int)W->rows, x16, &W->part[i], n, W->bias[i].data, accumulate);
            row += W->part[i].rows;
        }
        return;
    }
    for (int i = 0; i < W->n_parts; i++) {
        apr_cuda_qmat w = apr_cuda_weight_qmat(&W->part[i]);
        float *o = out + row;
        apr_cuda_record(s, apr_cuda_gemm(&w, x16, n, o, (int)W->rows, W->bias[i].data, accumulate ? o : NULL,
                                         (int)W->rows, s->splitk, s->splitk_bytes, s->cs));
        row += W->part[i].rows;
    }
}

void apr_cuda_op_matmul_glu(apr_stream *s, float *out, const float *x, const apr_linear *W, int n)
{
    cuda_memo m = take_memo(s);
    if (n <= 0) return;
    apr_cuda_qmat gate = apr_cuda_weight_qmat(&W->part[0]), up = apr_cuda_weight_qmat(&W->part[1]);
    const int kernels = decode_kernels(s, W, n);
    if (kernels == 2) {
        const int block = linear_block(W);
        const void *x16 = input_f16(s, &m, x, n, W->cols, W->cols % block ? 32 : block, 1);
        apr_cuda_record(s, apr_cuda_gemv_mma_swiglu(&gate, &up, out, gate.rows, n, x16, s->cs));
        return;
    }
    if (kernels == 1) {
        apr_cuda_q8 q = input_q8(s, &m, x, n, W->cols, linear_block(W));
        /* the output's int8 form for the down projection can be made by the
         * same kernel (APR_CUDA_GLU_Q8=1), but its last-block pass measured
         * 0.5 ms per step slower than a separate quantization on the H100
         * (89.6 vs 93.7 tok/s, same machine): off by default */
        apr_cuda_q8 qo = { 0 };
        if (s->glu_q8 && gate.rows % 256 == 0 && s->b->glu_q8) {
            qo = q8_for(s, gate.rows, s->b->q8_block);
            qo.q = (int8_t *)s->glu_q8;
            qo.meta = s->glu_meta;
        }
        apr_cuda_record(s, apr_cuda_gemv_swiglu(&gate, &up, out, gate.rows, n, q, x, qo, s->glu_counters, s->cs));
        if (qo.q) {
            s->memo.q8_of = out;
            s->memo.q8_block = qo.block;
            s->memo.q8_buf = qo;
        }
        return;
    }
    const int block = linear_block(W);
    const void *x16 = input_f16(s, &m, x, n, W->cols, is_quantized(gate.dtype) ? (W->cols % block ? 32 : block) : 0, 0);
    if (takes_blas(s, n) && gate.rows == up.rows && gate.cols == up.cols) {
        blas_glu(s, out, x16, W, n);
        return;
    }
    apr_cuda_record(s, apr_cuda_gemm_swiglu(&gate, &up, x16, n, out, gate.rows, NULL, s->splitk, s->splitk_bytes, s->cs));
}

void apr_cuda_op_rope_store(apr_stream *s, float *qkv, const apr_kv_cache *kv, int layer, const apr_step *st,
                            const apr_attn_params *p)
{
    take_memo(s);
    apr_cuda_rope r = {
        .n_head = p->n_head, .n_kv = p->n_head_kv, .hd = p->head_dim, .n_rot = p->n_rot,
        .neox = p->rope_style == APR_ROPE_NEOX, .base = p->rope_base, .scale = p->rope_scale,
    };
    /* the angles depend on the positions only: computed at the first layer */
    if (layer == 0) apr_cuda_record(s, apr_cuda_rope_table(st->n, r, st->pos, s->rope, s->cs));
    apr_cuda_record(s, apr_cuda_rope_store(qkv, st->n, r, step_tokens(st), layer_kv(kv, layer), s->rope,
                                           st->n > CUDA_ATTN_DECODE_MAX ? s->q16 : NULL, s->cs));
}

void apr_cuda_op_attention(apr_stream *s, float *out, const float *qkv, const apr_kv_cache *kv, int layer,
                           const apr_step *st, const apr_attn_params *p)
{
    take_memo(s);
    const int n = st->n, q_dim = p->n_head * p->head_dim;
    if (n <= CUDA_ATTN_DECODE_MAX) {
        /* the output projection's int8 input comes from the merge kernel */
        apr_cuda_q8 q = { 0 };
        if (takes_q8(s, n)) {
            q = q8_for(s, q_dim, s->b->q8_block);
            if (q.block == 256 && p->n_head % (256 / p->head_dim)) q.block = 32;
        }
        apr_cuda_record(s, apr_cuda_attention_decode(qkv, step_tokens(st), layer_kv(kv, layer), n, p->n_head,
                                                     p->scale, s->n_split, s->att_scratch, out, q, s->cs));
        if (q.q) {
            s->memo.q8_of = out;
            s->memo.q8_block = q.block;
        }
    } else {
        apr_cuda_record(s, apr_cuda_attention_prefill(s->q16, step_tokens(st), layer_kv(kv, layer), n, p->n_head,
                                                      p->scale, out, NULL, s->cs));
    }
}

void apr_cuda_op_argmax(apr_stream *s, int32_t *ids, const float *logits, int n, int64_t n_vocab)
{
    take_memo(s);
    apr_cuda_record(s, apr_cuda_sampling_argmax(logits, (int)n_vocab, n, ids, s->cs));
}

#endif /* APR_CUDA */
