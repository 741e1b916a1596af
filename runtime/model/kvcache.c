/* kvcache.c — the paged KV cache: memory on the backend, block tables here.
 *
 * kvcache.h describes the paging. Blocks are handed out from a stack, so a
 * sequence that finishes and a new one that starts reuse the same memory;
 * n_seq - 1 blocks beyond n_ctx / APR_KV_BLOCK let every sequence have a
 * partly used last block while the sequences together still hold n_ctx
 * tokens. */
#include "model/kvcache.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

static int div_up(int a, int b) { return (a + b - 1) / b; }

static void push_free(apr_kvcache *c, int32_t block) { c->free_blocks[c->n_free++] = block; }

/* Returns seq's blocks [keep, n_owned) to the free list. */
static void free_tail(apr_kvcache *c, int seq, int keep)
{
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    for (int i = c->n_owned[seq] - 1; i >= keep; i--) {
        push_free(c, row[i]);
        row[i] = -1;
    }
    if (c->n_owned[seq] > keep) c->n_owned[seq] = keep;
}

size_t apr_kvcache_row_bytes(int type, int head_dim)
{
    if (type != APR_F16 && type != APR_Q8_0 && type != APR_Q4_0) return 0;
    const int64_t block = apr_dtype_block_size(type);
    if (head_dim <= 0 || head_dim % block) return 0;
    return (size_t)(head_dim / block) * (size_t)apr_dtype_block_bytes(type);
}

apr_status apr_kvcache_init(apr_kvcache *c, apr_backend *b, int type, int n_layer, int n_head_kv, int head_dim,
                            int n_ctx, int n_seq)
{
    memset(c, 0, sizeof *c);
    const size_t row_bytes = apr_kvcache_row_bytes(type, head_dim);
    APR_CHECK(row_bytes > 0, APR_ERR_UNSUPPORTED,
              "a KV cache of %s with heads of %d is not supported (F16, Q8_0, Q4_0; the quantized types need "
              "head_dim a multiple of 32)", apr_dtype_name(type) ? apr_dtype_name(type) : "?", head_dim);
    APR_CHECK(n_ctx > 0 && n_seq > 0 && n_seq <= n_ctx, APR_ERR_INVALID,
              "KV cache: n_ctx %d and n_seq %d must be positive, n_seq <= n_ctx", n_ctx, n_seq);
    c->b = b;
    c->n_ctx = n_ctx;
    c->n_seq = n_seq;
    c->max_blocks = div_up(n_ctx, APR_KV_BLOCK);
    const int n_blocks = c->max_blocks + n_seq - 1;

    apr_kv_cache *d = &c->dev;
    d->type = type;
    d->n_layer = n_layer;
    d->n_head_kv = n_head_kv;
    d->head_dim = head_dim;
    d->block_tokens = APR_KV_BLOCK;
    d->n_blocks = n_blocks;
    d->row_bytes = row_bytes;
    d->layer_bytes = (size_t)n_blocks * n_head_kv * APR_KV_BLOCK * d->row_bytes;

    c->table = malloc(sizeof(int32_t) * (size_t)n_seq * c->max_blocks);
    c->len = calloc((size_t)n_seq, sizeof(int));
    c->n_owned = calloc((size_t)n_seq, sizeof(int));
    c->pending = calloc((size_t)n_seq, sizeof(int));
    c->owned_before = calloc((size_t)n_seq, sizeof(int));
    c->free_blocks = malloc(sizeof(int32_t) * (size_t)n_blocks);
    if (!c->table || !c->len || !c->n_owned || !c->pending || !c->owned_before || !c->free_blocks) {
        apr_kvcache_release(c);
        return apr_error(APR_ERR_NOMEM, "cannot allocate the KV cache's block tables");
    }
    for (size_t i = 0; i < (size_t)n_seq * c->max_blocks; i++) c->table[i] = -1;
    for (int i = n_blocks - 1; i >= 0; i--) push_free(c, i);  /* block 0 on top */

    d->k = b->alloc(b, (size_t)n_layer * d->layer_bytes);
    d->v = d->k ? b->alloc(b, (size_t)n_layer * d->layer_bytes) : NULL;
    if (!d->v) {
        apr_kvcache_release(c);
        return apr_error(APR_ERR_NOMEM, "cannot allocate a KV cache of %d tokens (%.1f MiB)", n_ctx,
                         2.0 * n_layer * (double)d->layer_bytes / (1 << 20));
    }
    return APR_OK;
}

void apr_kvcache_release(apr_kvcache *c)
{
    if (c->b) {
        c->b->release(c->b, c->dev.k);
        c->b->release(c->b, c->dev.v);
    }
    free(c->table);
    free(c->len);
    free(c->n_owned);
    free(c->pending);
    free(c->owned_before);
    free(c->free_blocks);
    memset(c, 0, sizeof *c);
}

apr_status apr_kvcache_reserve(apr_kvcache *c, int seq, int n)
{
    const int need = c->len[seq] + c->pending[seq] + n;
    APR_CHECK(need <= c->n_ctx, APR_ERR_RANGE, "context of %d tokens is full (sequence %d holds %d, the batch adds %d)",
              c->n_ctx, seq, c->len[seq] + c->pending[seq], n);
    const int blocks = div_up(need, APR_KV_BLOCK);
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    while (c->n_owned[seq] < blocks) {
        APR_CHECK(c->n_free > 0, APR_ERR_RANGE, "context of %d tokens is full (its blocks are held by other sequences)",
                  c->n_ctx);
        row[c->n_owned[seq]++] = c->free_blocks[--c->n_free];
    }
    c->pending[seq] += n;
    return APR_OK;
}

void apr_kvcache_commit(apr_kvcache *c)
{
    for (int s = 0; s < c->n_seq; s++) {
        c->len[s] += c->pending[s];
        c->pending[s] = 0;
        c->owned_before[s] = c->n_owned[s];
    }
}

void apr_kvcache_rollback(apr_kvcache *c)
{
    for (int s = 0; s < c->n_seq; s++) {
        free_tail(c, s, c->owned_before[s]);
        c->pending[s] = 0;
    }
}

void apr_kvcache_truncate(apr_kvcache *c, int seq, int from)
{
    if (from >= c->len[seq]) return;
    c->len[seq] = from;
    free_tail(c, seq, div_up(from, APR_KV_BLOCK));
    c->owned_before[seq] = c->n_owned[seq];
}
