/* context.c — inference contexts: buffers, the KV cache, and apr_decode.
 *
 * Everything a pass touches is allocated here, once: the activations, the
 * cache, the per-token metadata (on the device, at fixed addresses, so a
 * GPU backend can capture a pass as a graph), and the backend's stream.
 * apr_decode validates a batch, reserves its KV slots, uploads its metadata,
 * runs the forward pass, checks the logits, and commits the slots; any
 * failure rolls the reservation back, leaving the cache as it was. */
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/kvswap.h"
#include "trace/trace.h"

/* Output rows per product: enough for a decode step of many sequences, and
 * prompt logits go through in pieces instead of a [n_batch][n_vocab] buffer
 * (311 MB at 512 tokens of a 152K vocabulary). */
#define LOGIT_ROWS 16

void apr_context_params_default(apr_context_params *p)
{
    *p = (apr_context_params){ .n_ctx = 0, .n_seq = 1, .n_batch = 512, .kv_type = APR_F16, .prefix_cache = 1 };
}

/* The key offsets of a quantized cache (backend.h's k_offset) for a
 * context of n_ctx positions, or NULL (*host is NULL) when there are none.
 * Keys with a bias b (Qwen2's attn_k.bias) carry it, rotated by RoPE, in
 * every token's key, and it is often their largest part: Qwen2.5-Coder-
 * 0.5B's first layer holds +-145 there beside values of a few units, which
 * sets its blocks' scales and leaves those few units a handful of
 * quantization steps. Subtracting any constant c from every key changes
 * no attention output (it adds q.c to all of a query's scores, which the
 * softmax cancels), so c is chosen to narrow what the blocks must cover:
 * per rotated pair, the centre of the smallest circle around the arc
 * R(p)b traces over positions 0..n_ctx-1 (the midpoint of its ends while
 * the arc spans less than half a turn, else the origin), so no position's
 * bias part grows; b itself on unrotated dimensions. Measured on the
 * default model (tests/kv_quality.lua; APR_KV_OFFSET=0 turns it off for
 * such measurements): docs/model.md. */
static apr_status key_offsets(const apr_model *m, int n_ctx, float **host)
{
    *host = NULL;
    const char *env = getenv("APR_KV_OFFSET");
    if (env && strcmp(env, "0") == 0) return APR_OK;
    const apr_hparams *hp = &m->hp;
    const int hd = hp->head_dim, kv_dim = hp->n_head_kv * hd, half = hp->n_rot / 2;
    float *c = NULL, *bias = NULL;
    for (int l = 0; l < hp->n_layer; l++) {
        char name[64];
        snprintf(name, sizeof name, "blk.%d.attn_k.bias", l);
        const int64_t i = apr_source_find_tensor(m->src, name);
        if (i < 0) continue;
        apr_tensor_info t;
        APR_TRY(apr_source_tensor(m->src, i, &t));
        if (t.type != APR_F32 || t.ne[0] != kv_dim) continue; /* the load checked it; a guard */
        if (!c) {
            c = calloc((size_t)hp->n_layer * kv_dim, sizeof(float));
            bias = malloc(sizeof(float) * (size_t)kv_dim);
            if (!c || !bias) {
                free(c);
                free(bias);
                return apr_error(APR_ERR_NOMEM, "cannot allocate the KV cache's key offsets");
            }
        }
        apr_status st = apr_source_tensor_read(m->src, i, 0, bias, sizeof(float) * (size_t)kv_dim);
        if (st != APR_OK) {
            free(c);
            free(bias);
            return st;
        }
        for (int h = 0; h < hp->n_head_kv; h++) {
            float *dst = c + (size_t)l * kv_dim + (size_t)h * hd;
            const float *b = bias + (size_t)h * hd;
            for (int d = hp->n_rot; d < hd; d++) dst[d] = b[d];
            for (int k = 0; k < half; k++) {
                /* the angle the pair turns through over the context */
                const double arc = (double)hp->rope_scale * pow(hp->rope_base, -2.0 * k / hp->n_rot) * (n_ctx - 1);
                if (arc >= M_PI) continue;
                const int ia = hp->rope_style == APR_ROPE_NEOX ? k : 2 * k;
                const int iz = hp->rope_style == APR_ROPE_NEOX ? k + half : 2 * k + 1;
                const double x = b[ia], y = b[iz], co = cos(arc), si = sin(arc);
                dst[ia] = (float)((x + (x * co - y * si)) / 2);
                dst[iz] = (float)((y + (x * si + y * co)) / 2);
            }
        }
    }
    free(bias);
    *host = c;
    return APR_OK;
}

static float *alloc_floats(apr_backend *B, size_t n, int *ok)
{
    float *p = *ok ? B->alloc(B, n * sizeof(float)) : NULL;
    if (!p) *ok = 0;
    return p;
}

/* The pool's size when n_ctx is 0 under a memory budget: what the budget
 * leaves after the weights, the activations and the scratch (allocated
 * first), in whole blocks, at most the training context. */
static apr_status size_from_budget(apr_context *c, const apr_hparams *hp, int *n_ctx)
{
    const apr_backend *B = c->B;
    const size_t per_token = apr_kvcache_token_bytes(c->p.kv_type, hp->n_layer, hp->n_head_kv, hp->head_dim);
    /* the block table's share of the per-pass metadata, and the
     * allocator's rounding of the two cache allocations */
    const size_t table = sizeof(int32_t) * (size_t)c->p.n_seq * ((size_t)hp->n_ctx_train / APR_KV_BLOCK + 1);
    const uint64_t used = B->bytes + table + sizeof(int32_t) * 5 * (size_t)c->p.n_batch + 2 * 256;
    const uint64_t room = B->budget > used ? B->budget - used : 0;
    /* whole blocks, less the one each sequence but the first adds */
    uint64_t tokens = room / per_token;
    tokens -= tokens % APR_KV_BLOCK;
    const uint64_t slack = (uint64_t)(c->p.n_seq - 1) * APR_KV_BLOCK;
    tokens = tokens > slack ? tokens - slack : 0;
    if (tokens > (uint64_t)hp->n_ctx_train) tokens = (uint64_t)hp->n_ctx_train;
    APR_CHECK(tokens >= (uint64_t)APR_KV_BLOCK && tokens >= (uint64_t)c->p.n_seq, APR_ERR_NOMEM,
              "the VRAM budget of %.0f MiB leaves room for %llu tokens of KV cache after %.0f MiB of weights, "
              "activations and scratch (%.2f MiB a token)", (double)B->budget / (1 << 20), (unsigned long long)tokens,
              (double)B->bytes / (1 << 20), (double)per_token / (1 << 20));
    *n_ctx = (int)tokens;
    return APR_OK;
}

apr_status apr_context_new(apr_model *m, const apr_context_params *params, apr_context **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_context_new: out is NULL");
    *out = NULL;
    APR_CHECK(m, APR_ERR_INVALID, "apr_context_new: model is NULL");
    APR_CHECK(!m->vocab_only, APR_ERR_INVALID, "%s was loaded with vocab_only: it has no weights to run", m->path);
    apr_context_params p;
    apr_context_params_default(&p);
    if (params) p = *params;
    const apr_hparams *hp = &m->hp;
    /* n_ctx 0 under a budget: as much of the training context as fits */
    const int budgeted = p.n_ctx == 0 && m->backend->budget > 0;
    if (p.n_ctx == 0) p.n_ctx = hp->n_ctx_train;
    APR_CHECK(p.n_ctx > 0 && p.n_ctx <= hp->n_ctx_train, APR_ERR_RANGE,
              "n_ctx %d is outside [1, %d] (the model's training context)", p.n_ctx, hp->n_ctx_train);
    APR_CHECK(p.n_seq >= 1 && p.n_seq <= p.n_ctx, APR_ERR_INVALID, "n_seq %d is outside [1, n_ctx %d]", p.n_seq, p.n_ctx);
    APR_CHECK(p.n_batch >= 1 && p.n_batch <= 1 << 16, APR_ERR_INVALID, "n_batch %d is outside [1, 65536]", p.n_batch);
    if (p.kv_type == 0) p.kv_type = APR_F16;  /* 0 is F32, which the cache does not offer */

    apr_context *c = calloc(1, sizeof *c);
    APR_CHECK(c, APR_ERR_NOMEM, "cannot allocate a context");
    c->model = apr_model_retain(m);  /* released last, in apr_context_free */
    c->p = p;
    c->B = m->backend;
    c->attn = (apr_attn_params){
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim, .n_rot = hp->n_rot,
        .rope_style = hp->rope_style, .rope_base = hp->rope_base, .rope_scale = hp->rope_scale,
        .scale = 1.0f / sqrtf((float)hp->head_dim),
    };
    c->logit_rows = p.n_batch < LOGIT_ROWS ? p.n_batch : LOGIT_ROWS;

    const size_t nb = (size_t)p.n_batch, q_dim = (size_t)hp->n_head * hp->head_dim;
    const size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    int64_t max_cols = hp->n_embd > hp->n_ff ? hp->n_embd : hp->n_ff;  /* the widest input of a product */
    if ((int64_t)q_dim > max_cols) max_cols = (int64_t)q_dim;
    /* the stream and activations first, so that a budget's remainder can
     * size the cache (scratch is sized for the longest sequence allowed) */
    apr_stream_sizes sizes = {
        .n_batch = p.n_batch,
        .max_cols = max_cols,
        .n_ctx = p.n_ctx, .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
    };
    /* what the backend cannot run fails here, before anything is allocated */
    apr_status s = c->B->supports(c->B, p.kv_type, APR_KV_BLOCK, &c->attn);
    if (s != APR_OK) {
        apr_context_free(c);
        return s;
    }
    c->stream = c->B->stream_new(c->B, &sizes);
    int ok = c->stream != NULL;
    c->x = alloc_floats(c->B, nb * hp->n_embd, &ok);
    c->h = alloc_floats(c->B, nb * hp->n_embd, &ok);
    c->qkv = alloc_floats(c->B, nb * (q_dim + 2 * kv_dim), &ok);
    c->att = alloc_floats(c->B, nb * q_dim, &ok);
    c->ff = alloc_floats(c->B, nb * hp->n_ff, &ok);
    c->logits = alloc_floats(c->B, (size_t)c->logit_rows * hp->n_vocab, &ok);
    c->ids = ok ? c->B->alloc(c->B, sizeof(int32_t) * (size_t)c->logit_rows) : NULL;
    ok = ok && c->ids;
    if (ok && !c->B->argmax) ok = (c->host_logits = malloc(sizeof(float) * (size_t)c->logit_rows * hp->n_vocab)) != NULL;
    if (!ok) {
        apr_status st = apr_error(APR_ERR_NOMEM, "cannot allocate a context of %d tokens (batch %d): %s", p.n_ctx,
                                  p.n_batch, apr_last_error());
        apr_context_free(c);
        return st;
    }
    /* a quantized cache's key offsets, allocated before a budget sizes the
     * pool (so they count against it) and filled once the pool's length is
     * known: the arcs they centre on span the positions a sequence can reach */
    float *offsets = NULL;
    if (p.kv_type != APR_F16) s = key_offsets(m, p.n_ctx, &offsets);
    const size_t offset_bytes = sizeof(float) * (size_t)hp->n_layer * kv_dim;
    if (s == APR_OK && offsets && !(c->k_offset = c->B->alloc(c->B, offset_bytes)))
        s = apr_error(APR_ERR_NOMEM, "cannot allocate the KV cache's key offsets: %s", apr_last_error());
    if (s == APR_OK && budgeted) s = size_from_budget(c, hp, &c->p.n_ctx);
    if (s == APR_OK && offsets && c->p.n_ctx != p.n_ctx) {
        free(offsets);
        s = key_offsets(m, c->p.n_ctx, &offsets);
    }
    if (s == APR_OK && offsets) {
        c->B->upload(c->stream, c->k_offset, offsets, offset_bytes);
        s = c->B->sync(c->stream);
    }
    free(offsets);
    if (s == APR_OK)
        s = apr_kvcache_init(&c->cache, c->B, p.kv_type, hp->n_layer, hp->n_head_kv, hp->head_dim, c->p.n_ctx,
                             p.n_seq);
    if (s != APR_OK) {
        apr_context_free(c);
        return s;
    }
    c->cache.dev.k_offset = c->k_offset;
    c->cache.prefix = p.prefix_cache != 0;
    c->meta_bytes = sizeof(int32_t) * (5 * nb + (size_t)p.n_seq * c->cache.max_blocks);
    c->dev_meta = c->B->alloc(c->B, c->meta_bytes);
    c->host_meta = calloc(1, c->meta_bytes);
    c->block_copy = malloc(c->cache.dev.layer_bytes / c->cache.dev.n_blocks);
    if (!c->dev_meta || !c->host_meta || !c->block_copy) {
        apr_status st = apr_error(APR_ERR_NOMEM, "cannot allocate a context of %d tokens (batch %d): %s", c->p.n_ctx,
                                  p.n_batch, apr_last_error());
        apr_context_free(c);
        return st;
    }
    c->step = (apr_step){
        .max_blocks = c->cache.max_blocks,
        .ids = c->dev_meta, .pos = c->dev_meta + nb, .seq = c->dev_meta + 2 * nb, .slot = c->dev_meta + 3 * nb,
        .out = c->dev_meta + 4 * nb, .block_table = c->dev_meta + 5 * nb,
    };
    *out = c;
    return APR_OK;
}

void apr_context_free(apr_context *c)
{
    if (!c) return;
    apr_backend *B = c->B;
    B->release(B, c->x);
    B->release(B, c->h);
    B->release(B, c->qkv);
    B->release(B, c->att);
    B->release(B, c->ff);
    B->release(B, c->logits);
    B->release(B, c->ids);
    free(c->host_logits);
    B->release(B, c->dev_meta);
    apr_kvswap_free(c->cache.swap);  /* its staging before the stream it is ordered on */
    B->release(B, c->k_offset);
    if (c->stream) B->stream_free(c->stream);
    if (c->cache.b) apr_kvcache_release(&c->cache);
    free(c->host_meta);
    free(c->block_copy);
    apr_model *m = c->model;
    free(c);
    apr_model_free(m);
}

int apr_context_n_ctx(const apr_context *c) { return c ? c->cache.n_ctx : 0; }

int apr_context_seq_len(const apr_context *c, int seq)
{
    if (!c || seq < 0 || seq >= c->cache.n_seq) return -1;
    return apr_kvcache_len(&c->cache, seq);
}

/* Copies block `from`'s keys and values into block `to`, every layer,
 * through host memory (the backend has no device-to-device copy, and this
 * happens only when a sequence is cut inside a block it shares). */
static apr_status copy_block(apr_context *c, int32_t from, int32_t to)
{
    apr_kvswap_before_write(c->cache.swap);  /* `to` may have been evicted to the pool just now */
    const apr_kv_cache *d = &c->cache.dev;
    const size_t tile = d->layer_bytes / d->n_blocks;  /* one block of every head of one layer */
    for (int l = 0; l < d->n_layer; l++) {
        for (int kv = 0; kv < 2; kv++) {
            uint8_t *base = (uint8_t *)(kv ? d->v : d->k) + (size_t)l * d->layer_bytes;
            c->B->download(c->stream, c->block_copy, base + (size_t)from * tile, tile);
            APR_TRY(c->B->sync(c->stream));
            c->B->upload(c->stream, base + (size_t)to * tile, c->block_copy, tile);
            APR_TRY(c->B->sync(c->stream));
        }
    }
    return APR_OK;
}

apr_status apr_context_seq_truncate(apr_context *c, int seq, int from)
{
    APR_CHECK(c, APR_ERR_INVALID, "apr_context_seq_truncate: context is NULL");
    APR_CHECK(seq >= 0 && seq < c->cache.n_seq, APR_ERR_RANGE, "sequence %d is outside [0, %d)", seq, c->cache.n_seq);
    APR_CHECK(from >= 0, APR_ERR_INVALID, "apr_context_seq_truncate: position %d is negative", from);
    int32_t copy_from, copy_to;
    APR_TRY(apr_kvcache_truncate(&c->cache, seq, from, &copy_from, &copy_to));
    if (copy_from >= 0) {
        apr_status s = copy_block(c, copy_from, copy_to);
        if (s != APR_OK) {
            /* the copy is unusable: keep only the whole blocks before it */
            int32_t unused_from, unused_to;
            apr_kvcache_truncate(&c->cache, seq, from - from % APR_KV_BLOCK, &unused_from, &unused_to);
            return s;
        }
    }
    return APR_OK;
}

apr_status apr_context_seq_reuse(apr_context *c, int seq, const int32_t *ids, int n, int *n_reused)
{
    APR_CHECK(n_reused, APR_ERR_INVALID, "apr_context_seq_reuse: n_reused is NULL");
    *n_reused = 0;
    APR_CHECK(c && (ids || n == 0), APR_ERR_INVALID, "apr_context_seq_reuse: NULL argument");
    APR_CHECK(seq >= 0 && seq < c->cache.n_seq, APR_ERR_RANGE, "sequence %d is outside [0, %d)", seq, c->cache.n_seq);
    APR_CHECK(n >= 0, APR_ERR_INVALID, "apr_context_seq_reuse: n %d is negative", n);
    APR_CHECK(apr_kvcache_holds(&c->cache, seq, ids, n), APR_ERR_INVALID,
              "apr_context_seq_reuse: sequence %d holds %d tokens that are not the first of the %d given", seq,
              apr_kvcache_len(&c->cache, seq), n);
    /* keep at least the last id to decode: its logits are what the caller wants next */
    *n_reused = apr_kvcache_match(&c->cache, seq, ids, n - 1);
    return APR_OK;
}

/* 1 if all n floats are finite (tests the exponent bits: vectorises). */
static int all_finite(const float *x, size_t n)
{
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, x + i, 4);
        bad |= (bits & 0x7f800000u) == 0x7f800000u;
    }
    return !bad;
}

/* Fills the host copy of the pass's metadata and reserves the KV slots. */
static apr_status stage(apr_context *c, const apr_batch *b, int *n_out)
{
    const int nb = c->p.n_batch, n_vocab = c->model->hp.n_vocab;
    int32_t *ids = c->host_meta, *pos = ids + nb, *seq = ids + 2 * nb, *slot = ids + 3 * nb, *out = ids + 4 * nb;
    /* ids and sequences first: nothing is reserved yet when they fail */
    for (int i = 0; i < b->n; i++) {
        APR_CHECK(b->ids[i] >= 0 && b->ids[i] < n_vocab, APR_ERR_RANGE,
                  "token id %d (batch index %d) is outside the vocabulary [0, %d)", b->ids[i], i, n_vocab);
        const int s = b->seq ? b->seq[i] : 0;
        APR_CHECK(s >= 0 && s < c->cache.n_seq, APR_ERR_RANGE, "sequence %d (batch index %d) is outside [0, %d)", s, i,
                  c->cache.n_seq);
    }
    *n_out = 0;
    for (int i = 0; i < b->n; i++) {
        const int s = b->seq ? b->seq[i] : 0;
        const int next = c->cache.len[s] + c->cache.pending[s];
        APR_CHECK(!b->pos || b->pos[i] == next, APR_ERR_INVALID,
                  "batch index %d: position %d, but sequence %d's next position is %d", i, b->pos[i], s, next);
        APR_TRY(apr_kvcache_append(&c->cache, s, b->ids[i]));
        ids[i] = b->ids[i];
        pos[i] = next;
        seq[i] = s;
        slot[i] = apr_kvcache_slot(&c->cache, s, next);
        if (b->want_logits ? b->want_logits[i] != 0 : i == b->n - 1) out[(*n_out)++] = i;
    }
    memcpy(ids + 5 * nb, c->cache.table, sizeof(int32_t) * (size_t)c->cache.n_seq * c->cache.max_blocks);
    return APR_OK;
}

/* apr_decode and apr_decode_greedy: results to logits_out or ids_out. */
static apr_status decode(apr_context *c, const apr_batch *b, float *logits_out, int32_t *ids_out)
{
    APR_CHECK(c && b, APR_ERR_INVALID, "apr_decode: %s is NULL", c ? "batch" : "context");
    APR_CHECK(b->n >= 0 && b->n <= c->p.n_batch, APR_ERR_INVALID, "a batch of %d tokens exceeds n_batch %d "
              "(split it into several apr_decode calls)", b->n, c->p.n_batch);
    if (b->n == 0) return APR_OK;
    APR_CHECK(b->ids, APR_ERR_INVALID, "apr_decode: batch ids are NULL");

    int n_out = 0;
    apr_status s = stage(c, b, &n_out);
    /* a batch whose every token wants logits is a decode step; one with
     * prompt tokens (that want none) is prefill */
    const int span = n_out == b->n ? APR_SPAN_DECODE : APR_SPAN_PREFILL;
    APR_TRACE_BEGIN(span);
    if (s == APR_OK && n_out > 0 && !logits_out && !ids_out)
        s = apr_error(APR_ERR_INVALID, "apr_decode: %d tokens want logits but logits_out is NULL", n_out);
    if (s == APR_OK) {
        c->step.n = b->n;
        c->step.n_out = n_out;
        apr_kvswap_before_write(c->cache.swap);  /* blocks this pass evicted, out before it overwrites them */
        APR_TRACE_BEGIN(APR_SPAN_H2D);
        c->B->upload(c->stream, c->dev_meta, c->host_meta, c->meta_bytes);
        APR_TRACE_END(APR_SPAN_H2D);
        APR_TRACE_BEGIN(APR_SPAN_FORWARD);
        s = apr_qwen2_forward(c, logits_out, ids_out);
        APR_TRACE_END(APR_SPAN_FORWARD);
        apr_kvswap_after_pass(c->cache.swap, s == APR_OK);
    }
    if (s == APR_OK && logits_out && !all_finite(logits_out, (size_t)n_out * c->model->hp.n_vocab))
        s = apr_error(APR_ERR_FORMAT, "non-finite logits; the model's weights may be corrupt (apr verify --deep)");
    if (s != APR_OK) {
        apr_kvcache_rollback(&c->cache);
        APR_TRACE_END(span);
        return s;
    }
    apr_kvcache_commit(&c->cache);
    APR_TRACE_END(span);
    return APR_OK;
}

apr_status apr_decode(apr_context *c, const apr_batch *b, float *logits_out)
{
    return decode(c, b, logits_out, NULL);
}

apr_status apr_decode_greedy(apr_context *c, const apr_batch *b, int32_t *ids_out)
{
    APR_CHECK(ids_out, APR_ERR_INVALID, "apr_decode_greedy: ids_out is NULL");
    return decode(c, b, NULL, ids_out);
}
