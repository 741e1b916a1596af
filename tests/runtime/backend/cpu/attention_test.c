/* attention_test.c — RoPE, the cache store and causal GQA attention of the
 * CPU backend against a float64 reference written from the definitions,
 * with several sequences in one pass, scattered blocks and both ISAs. */
#include "test.h"

#include <math.h>
#include <stdlib.h>

#include "backend/backend.h"
#include "backend/cpu/cpu.h"
#include "core/quant.h"

static uint64_t rng_state;
static float rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((rng_state >> 40) / (double)(1 << 24)) * 2 - 1;
}

enum { BT = 4, NBLK = 16 };  /* a small block size exercises block boundaries */

/* rotates x (head_dim values) in double, as the definition says */
static void rope_ref(double *x, int pos, const apr_attn_params *p)
{
    for (int k = 0; k < p->n_rot / 2; k++) {
        const double theta = pos * pow(p->rope_base, -2.0 * k / p->n_rot);
        const int i = p->rope_style == APR_ROPE_NEOX ? k : 2 * k;
        const int j = p->rope_style == APR_ROPE_NEOX ? k + p->n_rot / 2 : 2 * k + 1;
        const double a = x[i], b = x[j];
        x[i] = a * cos(theta) - b * sin(theta);
        x[j] = a * sin(theta) + b * cos(theta);
    }
}

/* with_offset: the keys are stored minus a constant per head (backend.h's
 * k_offset); attention must come out as for the keys themselves. */
static void check_attention(int style, int n_rot, int kv_type, int isa, int with_offset)
{
    const apr_attn_params p = { .n_head = 6, .n_head_kv = 2, .head_dim = 64, .n_rot = n_rot, .rope_style = style,
                                .rope_base = 10000, .rope_scale = 1, .scale = 0.125f };
    const int hd = 64, q_dim = 6 * hd, kv_dim = 2 * hd, row = q_dim + 2 * kv_dim;
    apr_backend *b = apr_backend_cpu_new(2);
    REQUIRE(b);
    apr_stream_sizes z = { .n_batch = 32, .max_cols = 64, .n_ctx = 64, .n_head = 6, .n_head_kv = 2, .head_dim = hd };
    apr_stream *s = b->stream_new(b, &z);
    REQUIRE(s);
    apr_kv_cache kv = { .type = kv_type, .n_layer = 2, .n_head_kv = 2, .head_dim = hd, .block_tokens = BT,
                        .n_blocks = NBLK };
    kv.row_bytes = (size_t)(hd / apr_dtype_block_size(kv_type)) * (size_t)apr_dtype_block_bytes(kv_type);
    kv.layer_bytes = (size_t)NBLK * 2 * BT * kv.row_bytes;
    kv.k = calloc(2, kv.layer_bytes);
    kv.v = calloc(2, kv.layer_bytes);
    float offsets[2][2 * 64];  /* [layer][kv head * head_dim]: large, as a bias makes them */
    for (int i = 0; i < 2 * 2 * 64; i++) offsets[i / 128][i % 128] = 20.0f * rnd();
    kv.k_offset = with_offset ? &offsets[0][0] : NULL;
    /* two sequences: A of 11 tokens, B of 6, interleaved in one pass of
     * layer 1; their blocks scattered over the cache */
    const int32_t table[2][NBLK] = { { 7, 2, 12 }, { 5, 0 } };
    enum { NA = 11, NB = 6, N = NA + NB };
    int32_t pos[N], seq[N], slot[N];
    for (int i = 0, a = 0, c = 0; i < N; i++) {
        const int is_a = (i % 3 != 2 && a < NA) || c >= NB;
        seq[i] = is_a ? 0 : 1;
        pos[i] = is_a ? a++ : c++;
        slot[i] = table[seq[i]][pos[i] / BT] * BT + pos[i] % BT;
    }
    apr_step st = { .n = N, .max_blocks = NBLK, .pos = pos, .seq = seq, .slot = slot, .block_table = &table[0][0] };
    float *qkv = malloc(sizeof(float) * N * row), *out = malloc(sizeof(float) * N * q_dim);
    double *ref_q = malloc(sizeof(double) * N * row);
    rng_state = 99 + (uint64_t)style * 7 + (uint64_t)n_rot;
    for (int i = 0; i < N * row; i++) ref_q[i] = qkv[i] = rnd();

    int old = apr_cpu_set_isa(isa);
    b->rope_store(s, qkv, &kv, 0, &st, &p);  /* layer 0 computes the pass's sin/cos table */
    for (int i = 0; i < N * row; i++) qkv[i] = (float)ref_q[i];
    b->rope_store(s, qkv, &kv, 1, &st, &p);
    b->attention(s, out, qkv, &kv, 1, &st, &p);
    apr_cpu_set_isa(old);

    /* reference: rotate q and k, round k and v as the cache stores them */
    double *k = malloc(sizeof(double) * N * kv_dim), *v = malloc(sizeof(double) * N * kv_dim);
    double rope_err = 0;
    for (int i = 0; i < N; i++) {
        double *x = ref_q + (size_t)i * row;
        for (int h = 0; h < 6 + 2; h++) rope_ref(x + h * hd, pos[i], &p);
        for (int h = 0; h < 6 + 2; h++)
            for (int d = 0; d < hd; d++) rope_err = fmax(rope_err, fabs(qkv[(size_t)i * row + h * hd + d] - x[h * hd + d]));
        for (int j = 0; j < kv_dim; j++) {
            float kk = (float)x[q_dim + j], vv = (float)x[q_dim + kv_dim + j];
            k[i * kv_dim + j] = kk;
            v[i * kv_dim + j] = vv;
        }
        for (int h = 0; h < 2; h++) {
            float tmp[64], back[64];
            const float *c = with_offset ? offsets[1] + h * hd : NULL;  /* layer 1's */
            for (int pass = 0; pass < 2; pass++) {
                double *dst = (pass ? v : k) + i * kv_dim + h * hd;
                for (int d = 0; d < hd; d++) tmp[d] = (float)dst[d] - (c && !pass ? c[d] : 0.0f);
                if (kv_type == APR_F16) {
                    for (int d = 0; d < hd; d++) back[d] = apr_f16_to_f32(apr_f32_to_f16(tmp[d]));
                } else if (kv_type == APR_Q8_0) {
                    block_q8_0 qb[2];
                    apr_quantize_row_q8_0(tmp, qb, hd);
                    apr_dequantize_row_q8_0(qb, back, hd);
                } else {
                    block_q4_0 qb[2];
                    apr_quantize_row_q4_0(tmp, qb, hd);
                    apr_dequantize_row_q4_0(qb, back, hd);
                }
                for (int d = 0; d < hd; d++) dst[d] = back[d] + (c && !pass ? c[d] : 0.0f);
            }
        }
    }
    CHECK(rope_err < 1e-5);
    double att_err = 0;
    for (int i = 0; i < N; i++) {
        for (int hq = 0; hq < 6; hq++) {
            const int hk = hq / 3;
            double sc[N], mx = -INFINITY, sum = 0;
            int idx[N], m = 0;
            for (int j = 0; j < N; j++)
                if (seq[j] == seq[i] && pos[j] <= pos[i]) idx[m++] = j;
            for (int t = 0; t < m; t++) {
                double dot = 0;
                for (int d = 0; d < hd; d++)
                    dot += (double)qkv[(size_t)i * row + hq * hd + d] * k[idx[t] * kv_dim + hk * hd + d];
                sc[t] = dot * p.scale;
                mx = fmax(mx, sc[t]);
            }
            for (int t = 0; t < m; t++) sum += (sc[t] = exp(sc[t] - mx));
            for (int d = 0; d < hd; d++) {
                double o = 0;
                for (int t = 0; t < m; t++) o += sc[t] / sum * v[idx[t] * kv_dim + hk * hd + d];
                att_err = fmax(att_err, fabs(o - out[(size_t)i * q_dim + hq * hd + d]));
            }
        }
    }
    /* with offsets the scores are computed from keys 20x smaller than the
     * ones the reference adds the offsets back to: f32 rounding of those */
    if (!(att_err < (with_offset ? 1e-4 : 1e-5)))
        test_fail(__FILE__, __LINE__, "style %d n_rot %d kv %s isa %d offset %d: attention differs by %g", style, n_rot,
                  apr_dtype_name(kv_type), isa, with_offset, att_err);
    free(qkv); free(out); free(ref_q); free(k); free(v); free(kv.k); free(kv.v);
    b->stream_free(s);
    b->destroy(b);
}

TEST(cpu_attention_matches_float64_for_both_rope_styles_caches_and_isas)
{
    for (int isa = CPU_SCALAR; isa <= apr_cpu_best_isa(); isa++) {
        check_attention(APR_ROPE_NEOX, 64, APR_F16, isa, 0);
        check_attention(APR_ROPE_NORM, 64, APR_F16, isa, 0);
        check_attention(APR_ROPE_NEOX, 32, APR_F16, isa, 0);  /* partial rotation */
        check_attention(APR_ROPE_NEOX, 64, APR_Q8_0, isa, 0);
        check_attention(APR_ROPE_NORM, 64, APR_Q4_0, isa, 0);
        check_attention(APR_ROPE_NEOX, 32, APR_Q4_0, isa, 0);
        check_attention(APR_ROPE_NEOX, 64, APR_Q8_0, isa, 1);
        check_attention(APR_ROPE_NORM, 64, APR_Q4_0, isa, 1);
    }
}

/* The backend states its caches: F16, Q8_0 and Q4_0 (whole blocks per
 * head), anything else refused with a message that names it. */
TEST(cpu_supports_names_the_kv_caches_it_reads)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_attn_params p = { .n_head = 14, .n_head_kv = 2, .head_dim = 64, .n_rot = 64, .rope_style = APR_ROPE_NEOX,
                          .rope_base = 1e6f, .rope_scale = 1, .scale = 0.125f };
    CHECK_EQ_INT(b->supports(b, APR_F16, 32, &p), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q8_0, 32, &p), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q4_0, 32, &p), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q4_1, 32, &p), APR_ERR_UNSUPPORTED);
    CHECK(strstr(apr_last_error(), "Q4_1") != NULL);
    CHECK_EQ_INT(b->supports(b, APR_F32, 32, &p), APR_ERR_UNSUPPORTED);
    p.head_dim = 48;
    CHECK_EQ_INT(b->supports(b, APR_F16, 32, &p), APR_OK);
    CHECK_EQ_INT(b->supports(b, APR_Q4_0, 32, &p), APR_ERR_UNSUPPORTED);
    CHECK(strstr(apr_last_error(), "48") != NULL);
    b->destroy(b);
}
