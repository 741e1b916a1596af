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
#include "model/kvswap.h"
#include "trace/trace.h"

/* ===================================================================== */
/* Hyperparameters                                                       */
/* ===================================================================== */

static apr_status get_int(const apr_source *f, const char *path, const char *arch, const char *key, int required,
                          int64_t lo, int64_t hi, int *out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    int64_t v;
    apr_status s = apr_source_get_int(f, name, &v);
    if (s == APR_ERR_NOT_FOUND && !required) return APR_OK;
    APR_CHECK(s != APR_ERR_NOT_FOUND, APR_ERR_FORMAT, "%s: metadata key %s is missing", path, name);
    APR_CHECK(s == APR_OK, s, "%s: metadata key %s: %s", path, name, apr_last_error_after(path));
    APR_CHECK(v >= lo && v <= hi, APR_ERR_FORMAT, "%s: metadata key %s = %lld is outside [%lld, %lld]", path, name,
              (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return APR_OK;
}

static apr_status get_float(const apr_source *f, const char *path, const char *arch, const char *key, int required,
                            float *out)
{
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    double v;
    apr_status s = apr_source_get_float(f, name, &v);
    if (s == APR_ERR_NOT_FOUND && !required) return APR_OK;
    APR_CHECK(s != APR_ERR_NOT_FOUND, APR_ERR_FORMAT, "%s: metadata key %s is missing", path, name);
    APR_CHECK(s == APR_OK, s, "%s: metadata key %s: %s", path, name, apr_last_error_after(path));
    APR_CHECK(isfinite(v) && v > 0, APR_ERR_FORMAT, "%s: metadata key %s = %g must be a finite positive number", path,
              name, v);
    *out = (float)v;
    return APR_OK;
}

apr_status apr_qwen2_hparams(const apr_source *f, const char *path, apr_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    const char *arch;
    APR_CHECK(apr_source_get_str(f, "general.architecture", &arch) == APR_OK, APR_ERR_FORMAT,
              "%s: metadata key general.architecture is missing", path);
    APR_CHECK(apr_arch_supported(arch), APR_ERR_UNSUPPORTED,
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
    if (apr_source_get_str(f, key, &scaling) == APR_OK && strcmp(scaling, "none") != 0) {
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

/* Where the table's tensor t goes in the model (NULL: nowhere apr uses). */
static apr_weight *slot(apr_model *m, const apr_expected_tensor *t)
{
    const int bias = t->role == APR_ROLE_BIAS;
    if (t->layer < 0) {
        if (strcmp(t->kind, "token_embd") == 0) return &m->token_embd;
        if (strcmp(t->kind, "output_norm") == 0) return &m->output_norm;
        if (strcmp(t->kind, "output") == 0) return &m->output.part[0];
        return NULL;
    }
    apr_layer *L = &m->layers[t->layer];
    static const char *const qkv[] = { "attn_q", "attn_k", "attn_v" };
    for (int i = 0; i < 3; i++)
        if (strcmp(t->kind, qkv[i]) == 0) return bias ? &L->attn_qkv.bias[i] : &L->attn_qkv.part[i];
    if (strcmp(t->kind, "attn_norm") == 0) return &L->attn_norm;
    if (strcmp(t->kind, "attn_output") == 0) return &L->attn_output.part[0];
    if (strcmp(t->kind, "ffn_norm") == 0) return &L->ffn_norm;
    if (strcmp(t->kind, "ffn_gate") == 0) return &L->ffn_gate_up.part[0];
    if (strcmp(t->kind, "ffn_up") == 0) return &L->ffn_gate_up.part[1];
    if (strcmp(t->kind, "ffn_down") == 0) return &L->ffn_down.part[0];
    return NULL;
}

/* Finds the table's tensor e in the file (absent and optional: w stays
 * empty), checks its shape and element type (apr_arch_type_allowed), that
 * a vector is finite, and uploads it; with no backend (apr_model_validate)
 * it stops after the checks. */
/* A source's tensor as a backend's weight reader (backend.h). */
typedef struct tensor_reader {
    apr_source *src;
    int64_t i;
} tensor_reader;

static apr_status read_range(void *ctx, uint64_t offset, void *dst, uint64_t n)
{
    const tensor_reader *r = ctx;
    return apr_source_tensor_read(r->src, r->i, offset, dst, n);
}

static apr_status bind_tensor(apr_model *m, apr_weight *w, const apr_expected_tensor *e)
{
    const int gather_only = w->gather_only;  /* the caller's hint survives the reset */
    memset(w, 0, sizeof *w);
    const char *name = e->name;
    const int64_t i = apr_source_find_tensor(m->src, name);
    if (i < 0 && !e->required) return APR_OK;
    APR_CHECK(i >= 0, APR_ERR_FORMAT, "%s: tensor %s is missing", m->path, name);
    apr_tensor_info t;
    APR_TRY(apr_source_tensor(m->src, i, &t));
    const int is_vector = e->n_dims == 1;
    const int64_t cols = e->ne[0], rows = e->ne[1];
    if (!(t.ne[0] == cols && t.ne[1] == rows && t.ne[2] == 1 && t.ne[3] == 1)) {
        char want[64];
        if (is_vector) snprintf(want, sizeof want, "[%lld]", (long long)cols);
        else snprintf(want, sizeof want, "[%lld, %lld]", (long long)cols, (long long)rows);
        return apr_error(APR_ERR_FORMAT, "%s: tensor %s has shape [%lld, %lld, %lld, %lld], expected %s", m->path,
                         name, (long long)t.ne[0], (long long)t.ne[1], (long long)t.ne[2], (long long)t.ne[3], want);
    }
    const char *type = apr_dtype_name(t.type) ? apr_dtype_name(t.type) : "unknown";
    if (is_vector) {
        APR_CHECK(apr_arch_type_allowed(e->role, t.type), APR_ERR_UNSUPPORTED, "%s: tensor %s is %s; vectors must be %s",
                  m->path, name, type, apr_arch_types(e->role));
    } else {
        APR_CHECK(apr_arch_type_allowed(e->role, t.type), APR_ERR_UNSUPPORTED,
                  "%s: tensor %s is %s, which apr cannot multiply by (%s)", m->path, name, type, apr_arch_types(e->role));
    }
    const int64_t block = apr_dtype_block_size(t.type);
    APR_CHECK(block > 0 && cols % block == 0, APR_ERR_FORMAT, "%s: tensor %s: %lld columns are not whole %s blocks",
              m->path, name, (long long)cols, type);
    *w = (apr_weight){ .name = t.name, .type = t.type, .rows = rows, .cols = cols,
                       .row_bytes = (size_t)(t.nbytes / (uint64_t)rows), .gather_only = gather_only };
    /* validating: a matrix's bytes are not needed (nor decoded) */
    if (!m->backend && !is_vector) return APR_OK;  /* checked, not uploaded: w->data stays NULL */
    if (m->backend && m->backend->weight_upload_read && !is_vector) {
        /* A device keeping its own copy reads the tensor range by range
         * into its staging buffers (compressed chunks decode in parallel
         * there): nothing is decoded whole, and no mapped page stays
         * resident in host memory. */
        tensor_reader ctx = { m->src, i };
        apr_weight_reader r = { .read = read_range, .ctx = &ctx, .piece = t.chunk_bytes };
        apr_status s = m->backend->weight_upload_read(m->backend, w, &r);
        APR_CHECK(s == APR_OK, s, "%s: %s", m->path, apr_last_error());
        m->weight_bytes += t.nbytes;
        return APR_OK;
    }
    const void *data;
    APR_TRY(apr_source_tensor_data(m->src, i, &data));
    if (is_vector) {
        int64_t bad;
        if (apr_dtype_check_finite(APR_F32, data, cols, &bad) != APR_OK) {
            apr_source_tensor_release(m->src, i);
            return apr_error(APR_ERR_FORMAT, "%s: tensor %s: element %lld is NaN or infinite; the file is corrupt "
                             "(apr verify --deep)", m->path, name, (long long)bad);
        }
    }
    if (!m->backend) {
        apr_source_tensor_release(m->src, i);
        return APR_OK;
    }
    apr_status s = m->backend->weight_upload(m->backend, w, data);
    /* A backend that copied the bytes (a GPU) no longer needs what the
     * source decoded; one that reads them in place (the CPU) keeps them,
     * and the model keeps the source open. */
    if (s != APR_OK || w->data != data) apr_source_tensor_release(m->src, i);
    APR_CHECK(s == APR_OK, s, "%s: %s", m->path, apr_last_error_after(m->path));
    m->weight_bytes += t.nbytes;
    return APR_OK;
}

apr_status apr_qwen2_bind(apr_model *m)
{
    apr_hparams *hp = &m->hp;
    const int64_t e = apr_source_find_tensor(m->src, "token_embd.weight");
    APR_CHECK(e >= 0, APR_ERR_FORMAT, "%s: tensor token_embd.weight is missing", m->path);
    apr_tensor_info t;
    APR_TRY(apr_source_tensor(m->src, e, &t));
    APR_CHECK(t.ne[1] > 0 && t.ne[1] <= INT32_MAX, APR_ERR_FORMAT, "%s: token_embd.weight has %lld rows", m->path,
              (long long)t.ne[1]);
    hp->n_vocab = (int)t.ne[1];
    APR_CHECK(apr_source_find_tensor(m->src, "rope_freqs.weight") < 0, APR_ERR_UNSUPPORTED,
              "%s: per-dimension RoPE frequencies (rope_freqs.weight, Llama 3.1 scaling) are not supported", m->path);

    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    APR_CHECK(m->layers, APR_ERR_NOMEM, "%s: cannot allocate %d layers", m->path, hp->n_layer);
    /* beside its own output matrix, token_embd is only looked up */
    m->token_embd.gather_only = apr_source_find_tensor(m->src, "output.weight") >= 0;

    /* every tensor of the architecture's table (model/arch.c), in its order */
    const apr_arch_dims d = { .n_layer = hp->n_layer, .n_embd = hp->n_embd, .n_ff = hp->n_ff, .n_head = hp->n_head,
                              .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .n_vocab = hp->n_vocab };
    const int64_t n = apr_arch_n_tensors(hp->arch, hp->n_layer);
    APR_CHECK(n >= 0, APR_ERR_UNSUPPORTED, "%s: architecture \"%s\" has no tensor table", m->path, hp->arch);
    for (int64_t i = 0; i < n; i++) {
        apr_expected_tensor te;
        APR_TRY(apr_arch_tensor(hp->arch, &d, i, &te));
        apr_weight *w = slot(m, &te);
        APR_CHECK(w, APR_ERR_UNSUPPORTED, "%s: tensor %s has no place in apr's %s model", m->path, te.name, hp->arch);
        APR_TRY(bind_tensor(m, w, &te));
    }

    /* the products: q | k | v and gate | up fused, each [rows][cols] */
    const int64_t n_embd = hp->n_embd, q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    m->output.n_parts = 1, m->output.rows = hp->n_vocab, m->output.cols = n_embd;
    if (!m->output.part[0].name) m->output.part[0] = m->token_embd;  /* tied embeddings: no output.weight */
    for (int l = 0; l < hp->n_layer; l++) {
        apr_layer *L = &m->layers[l];
        L->attn_qkv.n_parts = 3, L->attn_qkv.rows = q_dim + 2 * kv_dim, L->attn_qkv.cols = n_embd;
        L->attn_output.n_parts = 1, L->attn_output.rows = n_embd, L->attn_output.cols = q_dim;
        L->ffn_gate_up.n_parts = 2, L->ffn_gate_up.rows = 2 * (int64_t)hp->n_ff, L->ffn_gate_up.cols = n_embd;
        L->ffn_down.n_parts = 1, L->ffn_down.rows = n_embd, L->ffn_down.cols = hp->n_ff;
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
        if (!whole) {
            APR_TRACE_BEGIN(APR_SPAN_D2H);
            copy_results(c, logits_out, ids_out, o, k);
            APR_TRACE_END(APR_SPAN_D2H);
        }
    }
    if (record) B->pass_end(s);
copy_out:
    APR_TRACE_BEGIN(APR_SPAN_D2H);
    if (whole) copy_results(c, logits_out, ids_out, 0, st->n_out);
    APR_TRACE_END(APR_SPAN_D2H);
    apr_kvswap_while_pass(c->cache.swap);  /* KV blocks evicted earlier into the zram pool, beside the pass */
    APR_TRACE_BEGIN(APR_SPAN_DEVICE_WAIT);
    apr_status done = B->sync(s);
    APR_TRACE_END(APR_SPAN_DEVICE_WAIT);
    return done;
}
