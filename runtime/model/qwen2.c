/* qwen2.c — the Qwen2 / Llama decoder: hyperparameters, weights, forward pass.
 *
 * Both architectures are the same pre-norm transformer (llama.cpp's
 * src/models/qwen2.cpp and llama.cpp; the Qwen2 and Llama papers):
 *
 *   x = token_embd[ids]
 *   for each block:
 *     h   = rmsnorm(x) * attn_norm
 *     q, k, v = h Wq + bq, h Wk + bk, h Wv + bv     (biases: Qwen2 only)
 *     q, k = rope(q, pos), rope(k, pos)              (Qwen2: NEOX halves; Llama: NORM pairs)
 *     x  += softmax(q kᵀ / sqrt(head_dim) + causal) v  Wo   (GQA: n_head / n_head_kv queries per k, v)
 *     h   = rmsnorm(x) * ffn_norm
 *     x  += (silu(h Wgate) * (h Wup)) Wdown
 *   logits = (rmsnorm(x) * output_norm) Woutput      (Woutput = token_embd when tied)
 *
 * Every step runs through the backend interface (backend/backend.h), so
 * this file is the same on the CPU and the GPU. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

/* ===================================================================== */
/* Hyperparameters                                                       */
/* ===================================================================== */

static apr_status get_int(const apr_gguf *f, const char *path, const char *arch, const char *key, int required,
                          int64_t lo, int64_t hi, int *out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    int64_t v;
    apr_status s = apr_gguf_get_int(f, name, &v);
    if (s == APR_ERR_NOT_FOUND && !required) return APR_OK;
    APR_CHECK(s != APR_ERR_NOT_FOUND, APR_ERR_FORMAT, "%s: metadata key %s is missing", path, name);
    APR_CHECK(s == APR_OK, s, "%s: metadata key %s: %s", path, name, apr_last_error_after(path));
    APR_CHECK(v >= lo && v <= hi, APR_ERR_FORMAT, "%s: metadata key %s = %lld is outside [%lld, %lld]", path, name,
              (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return APR_OK;
}

static apr_status get_float(const apr_gguf *f, const char *path, const char *arch, const char *key, int required,
                            float *out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    double v;
    apr_status s = apr_gguf_get_float(f, name, &v);
    if (s == APR_ERR_NOT_FOUND && !required) return APR_OK;
    APR_CHECK(s != APR_ERR_NOT_FOUND, APR_ERR_FORMAT, "%s: metadata key %s is missing", path, name);
    APR_CHECK(s == APR_OK, s, "%s: metadata key %s: %s", path, name, apr_last_error_after(path));
    APR_CHECK(isfinite(v) && v > 0, APR_ERR_FORMAT, "%s: metadata key %s = %g must be positive", path, name, v);
    *out = (float)v;
    return APR_OK;
}

apr_status apr_qwen2_hparams(const apr_gguf *f, const char *path, apr_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    const char *arch;
    APR_CHECK(apr_gguf_get_str(f, "general.architecture", &arch) == APR_OK, APR_ERR_FORMAT,
              "%s: metadata key general.architecture is missing", path);
    APR_CHECK(strcmp(arch, "qwen2") == 0 || strcmp(arch, "llama") == 0, APR_ERR_UNSUPPORTED,
              "%s: architecture \"%.40s\" is not supported (qwen2, llama)", path, arch);
    snprintf(hp->arch, sizeof hp->arch, "%s", arch);
    /* llama.cpp: LLM_ARCH_QWEN2 uses LLAMA_ROPE_TYPE_NEOX, LLM_ARCH_LLAMA LLAMA_ROPE_TYPE_NORM */
    hp->rope_style = strcmp(arch, "qwen2") == 0 ? APR_ROPE_NEOX : APR_ROPE_NORM;

    /* bounds: far beyond any real model, small enough that sizes computed from them fit */
    APR_TRY(get_int(f, path, arch, "block_count", 1, 1, 1024, &hp->n_layer));
    APR_TRY(get_int(f, path, arch, "embedding_length", 1, 1, 1 << 16, &hp->n_embd));
    APR_TRY(get_int(f, path, arch, "feed_forward_length", 1, 1, 1 << 18, &hp->n_ff));
    APR_TRY(get_int(f, path, arch, "attention.head_count", 1, 1, 1024, &hp->n_head));
    hp->n_head_kv = hp->n_head;
    APR_TRY(get_int(f, path, arch, "attention.head_count_kv", 0, 1, 1024, &hp->n_head_kv));
    APR_TRY(get_int(f, path, arch, "context_length", 1, 1, 1 << 24, &hp->n_ctx_train));
    APR_TRY(get_float(f, path, arch, "attention.layer_norm_rms_epsilon", 1, &hp->rms_eps));
    hp->rope_base = 10000.0f;
    APR_TRY(get_float(f, path, arch, "rope.freq_base", 0, &hp->rope_base));

    APR_CHECK(hp->n_head % hp->n_head_kv == 0, APR_ERR_FORMAT,
              "%s: head_count %d is not a multiple of head_count_kv %d", path, hp->n_head, hp->n_head_kv);
    hp->head_dim = hp->n_embd % hp->n_head == 0 ? hp->n_embd / hp->n_head : 0;
    APR_TRY(get_int(f, path, arch, "attention.key_length", 0, 1, 1 << 12, &hp->head_dim));
    APR_CHECK(hp->head_dim > 0 && hp->head_dim % 2 == 0, APR_ERR_FORMAT,
              "%s: head size %d (embedding_length %d / head_count %d) must be a positive even number", path,
              hp->head_dim, hp->n_embd, hp->n_head);
    int value_length = hp->head_dim;
    APR_TRY(get_int(f, path, arch, "attention.value_length", 0, 1, 1 << 12, &value_length));
    APR_CHECK(value_length == hp->head_dim, APR_ERR_UNSUPPORTED,
              "%s: key_length %d differs from value_length %d", path, hp->head_dim, value_length);
    hp->n_rot = hp->head_dim;
    APR_TRY(get_int(f, path, arch, "rope.dimension_count", 0, 2, hp->head_dim, &hp->n_rot));
    APR_CHECK(hp->n_rot % 2 == 0, APR_ERR_FORMAT, "%s: rope.dimension_count %d is odd", path, hp->n_rot);

    hp->rope_scale = 1.0f;
    char key[128];
    const char *scaling;
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    if (apr_gguf_get_str(f, key, &scaling) == APR_OK && strcmp(scaling, "none") != 0) {
        APR_CHECK(strcmp(scaling, "linear") == 0, APR_ERR_UNSUPPORTED,
                  "%s: RoPE scaling \"%.40s\" is not supported (none, linear)", path, scaling);
        float factor = 1.0f;
        APR_TRY(get_float(f, path, arch, "rope.scaling.factor", 0, &factor));
        hp->rope_scale = 1.0f / factor;
    }
    return APR_OK;
}

/* ===================================================================== */
/* Weights                                                               */
/* ===================================================================== */

/* Finds tensor `name` (NULL with APR_OK if absent and optional), checks it
 * is a [cols] vector or a [cols, rows] matrix of a type the backend takes,
 * and uploads it. */
static apr_status bind_tensor(apr_model *m, apr_weight *w, const char *name, int64_t cols, int64_t rows,
                              int required)
{
    const int gather_only = w->gather_only;  /* the caller's hint survives the reset */
    memset(w, 0, sizeof *w);
    const int64_t i = apr_gguf_find_tensor(m->file, name);
    if (i < 0 && !required) return APR_OK;
    APR_CHECK(i >= 0, APR_ERR_FORMAT, "%s: tensor %s is missing", m->path, name);
    apr_gguf_tensor_info t;
    APR_TRY(apr_gguf_tensor(m->file, i, &t));
    const int is_vector = rows == 0;
    const int64_t want1 = is_vector ? 1 : rows;
    APR_CHECK(t.ne[0] == cols && t.ne[1] == want1 && t.ne[2] == 1 && t.ne[3] == 1, APR_ERR_FORMAT,
              "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld%s%lld]", m->path, name,
              (long long)t.ne[0], (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3], (long long)cols,
              is_vector ? "" : ", ", is_vector ? 0LL : (long long)rows);
    const char *type = apr_dtype_name(t.type) ? apr_dtype_name(t.type) : "unknown";
    if (is_vector) {
        /* norms and biases are read as floats by every backend */
        APR_CHECK(t.type == APR_F32, APR_ERR_UNSUPPORTED, "%s: tensor %s is %s; vectors must be F32", m->path, name, type);
        int64_t bad;
        APR_CHECK(apr_dtype_check_finite(APR_F32, t.data, cols, &bad) == APR_OK, APR_ERR_FORMAT,
                  "%s: tensor %s: element %lld is NaN or infinite; the file is corrupt (apr verify --deep)",
                  m->path, name, (long long)bad);
    }
    const int64_t block = apr_dtype_block_size(t.type);
    APR_CHECK(block > 0 && cols % block == 0, APR_ERR_FORMAT, "%s: tensor %s: %lld columns are not whole %s blocks",
              m->path, name, (long long)cols, type);
    *w = (apr_weight){ .name = t.name, .type = t.type, .rows = want1, .cols = cols,
                       .row_bytes = (size_t)(t.nbytes / (uint64_t)want1), .gather_only = gather_only };
    apr_status s = m->backend->weight_upload(m->backend, w, t.data);
    APR_CHECK(s == APR_OK, s, "%s: %s", m->path, apr_last_error_after(m->path));
    m->weight_bytes += t.nbytes;
    return APR_OK;
}

/* A linear layer of up to three parts blk.L.<part>.weight (+ .bias). */
static apr_status bind_linear(apr_model *m, apr_linear *lin, int layer, const char *const *parts, const int64_t *rows,
                              int n_parts, int64_t cols, int bias)
{
    memset(lin, 0, sizeof *lin);
    lin->n_parts = n_parts;
    lin->cols = cols;
    for (int i = 0; i < n_parts; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s.weight", layer, parts[i]);
        APR_TRY(bind_tensor(m, &lin->part[i], name, cols, rows[i], 1));
        if (bias) {
            snprintf(name, sizeof name, "blk.%d.%s.bias", layer, parts[i]);
            APR_TRY(bind_tensor(m, &lin->bias[i], name, rows[i], 0, bias > 1));
        }
        lin->rows += rows[i];
    }
    return APR_OK;
}

apr_status apr_qwen2_bind(apr_model *m)
{
    apr_hparams *hp = &m->hp;
    const int64_t n_embd = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;

    const int64_t e = apr_gguf_find_tensor(m->file, "token_embd.weight");
    APR_CHECK(e >= 0, APR_ERR_FORMAT, "%s: tensor token_embd.weight is missing", m->path);
    apr_gguf_tensor_info t;
    APR_TRY(apr_gguf_tensor(m->file, e, &t));
    APR_CHECK(t.ne[1] > 0 && t.ne[1] <= INT32_MAX, APR_ERR_FORMAT, "%s: token_embd.weight has %lld rows", m->path,
              (long long)t.ne[1]);
    hp->n_vocab = (int)t.ne[1];
    /* beside its own output matrix, token_embd is only looked up */
    m->token_embd.gather_only = apr_gguf_find_tensor(m->file, "output.weight") >= 0;
    APR_TRY(bind_tensor(m, &m->token_embd, "token_embd.weight", n_embd, hp->n_vocab, 1));
    APR_TRY(bind_tensor(m, &m->output_norm, "output_norm.weight", n_embd, 0, 1));
    m->output = (apr_linear){ .n_parts = 1, .rows = hp->n_vocab, .cols = n_embd };
    APR_TRY(bind_tensor(m, &m->output.part[0], "output.weight", n_embd, hp->n_vocab, 0));
    if (!m->output.part[0].data) m->output.part[0] = m->token_embd;  /* tied embeddings */
    APR_CHECK(apr_gguf_find_tensor(m->file, "rope_freqs.weight") < 0, APR_ERR_UNSUPPORTED,
              "%s: per-dimension RoPE frequencies (rope_freqs.weight, Llama 3.1 scaling) are not supported", m->path);

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    APR_CHECK(m->layers, APR_ERR_NOMEM, "%s: cannot allocate %d layers", m->path, hp->n_layer);
    /* Qwen2 always has q/k/v biases (llama.cpp requires them); Llama files may */
    const int qkv_bias = strcmp(hp->arch, "qwen2") == 0 ? 2 : 1;
    for (int l = 0; l < hp->n_layer; l++) {
        apr_layer *L = &m->layers[l];
        char name[96];
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        APR_TRY(bind_tensor(m, &L->attn_norm, name, n_embd, 0, 1));
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        APR_TRY(bind_tensor(m, &L->ffn_norm, name, n_embd, 0, 1));
        static const char *const qkv[] = { "attn_q", "attn_k", "attn_v" }, *const o[] = { "attn_output" };
        static const char *const gate_up[] = { "ffn_gate", "ffn_up" }, *const down[] = { "ffn_down" };
        APR_TRY(bind_linear(m, &L->attn_qkv, l, qkv, (int64_t[]){ q_dim, kv_dim, kv_dim }, 3, n_embd, qkv_bias));
        APR_TRY(bind_linear(m, &L->attn_output, l, o, (int64_t[]){ n_embd }, 1, q_dim, 0));
        APR_TRY(bind_linear(m, &L->ffn_gate_up, l, gate_up, (int64_t[]){ hp->n_ff, hp->n_ff }, 2, n_embd, 0));
        APR_TRY(bind_linear(m, &L->ffn_down, l, down, (int64_t[]){ n_embd }, 1, hp->n_ff, 0));
    }
    return APR_OK;
}

/* ===================================================================== */
/* The forward pass                                                      */
/* ===================================================================== */

/* Copies out the results of wanted tokens o..o+k-1: logits, or the ids of
 * their largest logits (found on the device when the backend can, so only
 * the ids cross; else from the logits here). */
static void copy_results(apr_context *c, float *logits_out, int32_t *ids_out, int o, int k)
{
    const apr_backend *B = c->B;
    const int n_vocab = c->model->hp.n_vocab;
    if (logits_out)
        B->download(c->stream, logits_out + (size_t)o * n_vocab, c->logits, sizeof(float) * (size_t)k * n_vocab);
    if (!ids_out) return;
    if (B->argmax) {
        B->download(c->stream, ids_out + o, c->ids, sizeof(int32_t) * (size_t)k);
        return;
    }
    float *lg = c->host_logits;
    B->download(c->stream, lg, c->logits, sizeof(float) * (size_t)k * n_vocab);
    B->sync(c->stream);
    for (int i = 0; i < k; i++) {
        const float *row = lg + (size_t)i * n_vocab;
        int best = 0;
        for (int j = 1; j < n_vocab; j++)
            if (row[j] > row[best]) best = j;
        ids_out[o + i] = best;
    }
}

apr_status apr_qwen2_forward(apr_context *c, float *logits_out, int32_t *ids_out)
{
    const apr_model *m = c->model;
    const apr_hparams *hp = &m->hp;
    const apr_backend *B = c->B;
    apr_stream *s = c->stream;
    const apr_step *st = &c->step;
    const int n = st->n;
    const float eps = hp->rms_eps;
    float *x = c->x, *h = c->h, *qkv = c->qkv, *att = c->att, *ff = c->ff;

    /* A pass whose logits fit one output product is recorded whole, once
     * per shape, and replayed (backend.h pass_begin: CUDA graphs); its
     * results are copied out after it. Longer outputs go in pieces. */
    const int whole = st->n_out <= c->logit_rows;
    const int record = whole && B->pass_begin != NULL;
    const uint64_t key = (uint64_t)n << 32 | (uint64_t)st->n_out << 1 | (ids_out != NULL);
    const int device_argmax = ids_out && B->argmax;
    if (record && B->pass_begin(s, key)) goto copy_out;

    /* x = token_embd[ids]                                           [n][n_embd] */
    B->get_rows(s, x, &m->token_embd, st->ids, n);

    for (int l = 0; l < hp->n_layer; l++) {
        const apr_layer *L = &m->layers[l];

        /* self-attention: x += attention(rmsnorm(x)) Wo */
        B->rmsnorm(s, h, x, &L->attn_norm, n, eps);                 /* h = x / rms(x) * attn_norm  [n][n_embd] */
        B->matmul(s, qkv, h, &L->attn_qkv, n, 0);                   /* [q | k | v] = h Wqkv + b    [n][q_dim + 2 kv_dim] */
        B->rope_store(s, qkv, &c->cache.dev, l, st, &c->attn);      /* rotate q, k; k, v to the cache */
        B->attention(s, att, qkv, &c->cache.dev, l, st, &c->attn);  /* att = softmax(q kᵀ / √d) v  [n][q_dim] */
        B->matmul(s, x, att, &L->attn_output, n, 1);                /* x += att Wo                 [n][n_embd] */

        /* feed-forward (SwiGLU): x += (silu(h Wgate) * h Wup) Wdown */
        B->rmsnorm(s, h, x, &L->ffn_norm, n, eps);                  /* h = x / rms(x) * ffn_norm   [n][n_embd] */
        B->matmul_glu(s, ff, h, &L->ffn_gate_up, n);                /* ff = silu(h Wg) * (h Wu)    [n][n_ff] */
        B->matmul(s, x, ff, &L->ffn_down, n, 1);                    /* x += ff Wdown               [n][n_embd] */

        /* (a recorded pass cannot stop midway: Ctrl+C waits for its end) */
        if (!record && apr_interrupted()) {
            B->sync(s);
            return apr_error(APR_ERR_CANCELLED, "decode interrupted");
        }
    }

    /* logits of the wanted tokens only, logit_rows at a time:
     * logits = rmsnorm(x[out]) * output_norm Woutput              [k][n_vocab] */
    for (int o = 0; o < st->n_out; o += c->logit_rows) {
        const int k = st->n_out - o < c->logit_rows ? st->n_out - o : c->logit_rows;
        B->gather(s, h, x, st->out + o, k, hp->n_embd);
        B->rmsnorm(s, h, h, &m->output_norm, k, eps);
        B->matmul(s, c->logits, h, &m->output, k, 0);
        if (device_argmax) B->argmax(s, c->ids, c->logits, k, hp->n_vocab);  /* ids [k] */
        if (!whole) copy_results(c, logits_out, ids_out, o, k);
    }
    if (record) B->pass_end(s);
copy_out:
    if (whole) copy_results(c, logits_out, ids_out, 0, st->n_out);
    return B->sync(s);
}
