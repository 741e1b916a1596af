/* kvcache.c — the paged KV cache: memory on the backend, block tables,
 * reference counts and the prefix index here.
 *
 * kvcache.h describes the paging and the sharing. A block is in exactly one
 * of three states: held (ref > 0, in one or more rows of the table), free
 * (ref 0, on the free stack, nothing worth keeping), or cached (ref 0,
 * indexed, on the LRU list: its keys and values wait for a sequence that
 * starts the same way). Taking a block pops the free stack first and
 * evicts the least recently released cached block only when the stack is
 * empty.
 *
 * Keys are XXH3-64 (Debian's libxxhash, header-only mode) of a block's 32
 * token ids seeded with the key of the block before it: a few nanoseconds
 * a block, where the runtime's only other hash, SHA-256, is made for files.
 * A lookup also compares the parent key and the ids themselves, so a match
 * is exact unless two different prefixes share a 64-bit chain key. */
#include "model/kvcache.h"

#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/error.h"
#include "model/kvswap.h"

static int div_up(int a, int b) { return (a + b - 1) / b; }

enum { INDEXED_FULL = APR_KV_INDEXED_FULL, INDEXED_PARTIAL = APR_KV_INDEXED_PARTIAL };  /* apr_kvcache.indexed */

size_t apr_kvcache_row_bytes(int type, int head_dim)
{
    if (type != APR_F16 && type != APR_Q8_0 && type != APR_Q4_0) return 0;
    const int64_t block = apr_dtype_block_size(type);
    if (head_dim <= 0 || head_dim % block) return 0;
    return (size_t)(head_dim / block) * (size_t)apr_dtype_block_bytes(type);
}

size_t apr_kvcache_token_bytes(int type, int n_layer, int n_head_kv, int head_dim)
{
    return 2 * (size_t)n_layer * n_head_kv * apr_kvcache_row_bytes(type, head_dim);
}

/* ------------------------------------------------------------------ */
/* The prefix index and the LRU list                                  */
/* ------------------------------------------------------------------ */

/* The key has no KV element type in it: the index belongs to one cache,
 * whose blocks all have the type it was made with (a context's kv_type
 * does not change), so a cache of another type is another context with an
 * index of its own, and no lookup can cross from one type to another. */
static uint64_t block_key(const int32_t *ids, uint64_t parent)
{
    return XXH3_64bits_withSeed(ids, sizeof(int32_t) * APR_KV_BLOCK, parent);
}

static int32_t *bucket_of(apr_kvcache *c, uint64_t key) { return &c->bucket[key & (uint64_t)(c->n_buckets - 1)]; }

/* A cached partial block is found by the key of the block before it. */
static int32_t *partial_bucket_of(apr_kvcache *c, uint64_t parent)
{
    return &c->partial[parent & (uint64_t)(c->n_buckets - 1)];
}

/* The indexed block for (key, parent, ids), or -1. */
static int32_t find(apr_kvcache *c, uint64_t key, uint64_t parent, const int32_t *ids)
{
    for (int32_t b = *bucket_of(c, key); b >= 0; b = c->chain[b])
        if (c->hash[b] == key && c->parent[b] == parent &&
            memcmp(c->ids + (size_t)b * APR_KV_BLOCK, ids, sizeof(int32_t) * APR_KV_BLOCK) == 0)
            return b;
    return -1;
}

static void index_add(apr_kvcache *c, int32_t b)
{
    int32_t *head = bucket_of(c, c->hash[b]);
    c->chain[b] = *head;
    *head = b;
    c->indexed[b] = INDEXED_FULL;
}

/* Enters a partly filled block of a sequence that lets go of it, holding
 * `filled` tokens after the block keyed `parent`. */
static void index_add_partial(apr_kvcache *c, int32_t b, uint64_t parent, int filled)
{
    int32_t *head = partial_bucket_of(c, parent);
    c->parent[b] = parent;
    c->filled[b] = (int16_t)filled;
    c->chain[b] = *head;
    *head = b;
    c->indexed[b] = INDEXED_PARTIAL;
}

static void index_remove(apr_kvcache *c, int32_t b)
{
    int32_t *p = c->indexed[b] == INDEXED_FULL ? bucket_of(c, c->hash[b]) : partial_bucket_of(c, c->parent[b]);
    for (; *p >= 0; p = &c->chain[*p]) {
        if (*p != b) continue;
        *p = c->chain[b];
        break;
    }
    c->indexed[b] = 0;
}

static void lru_push(apr_kvcache *c, int32_t b)
{
    c->lru_prev[b] = c->lru_tail;
    c->lru_next[b] = -1;
    if (c->lru_tail >= 0) c->lru_next[c->lru_tail] = b;
    else c->lru_head = b;
    c->lru_tail = b;
    c->n_lru++;
}

static void lru_remove(apr_kvcache *c, int32_t b)
{
    if (c->lru_prev[b] >= 0) c->lru_next[c->lru_prev[b]] = c->lru_next[b];
    else c->lru_head = c->lru_next[b];
    if (c->lru_next[b] >= 0) c->lru_prev[c->lru_next[b]] = c->lru_prev[b];
    else c->lru_tail = c->lru_prev[b];
    c->n_lru--;
}

/* ------------------------------------------------------------------ */
/* Taking and letting go of blocks                                    */
/* ------------------------------------------------------------------ */

/* A block with nothing in it for anyone (ref 1 on return), or -1. */
static int32_t take(apr_kvcache *c)
{
    int32_t b;
    if (c->n_free > 0) {
        b = c->free_blocks[--c->n_free];
    } else if (c->lru_head >= 0) {
        b = c->lru_head;  /* evict the least recently released cached block */
        if (c->swap) apr_kvswap_evict(c->swap, b);  /* to the zram pool: it may come back */
        lru_remove(c, b);
        index_remove(c, b);
    } else {
        return -1;
    }
    c->ref[b] = 1;
    return b;
}

int32_t apr_kvcache_take_block(apr_kvcache *c) { return take(c); }

void apr_kvcache_give_block(apr_kvcache *c, int32_t b)
{
    c->ref[b] = 0;
    c->indexed[b] = 0;
    c->free_blocks[c->n_free++] = b;
}

static void unref(apr_kvcache *c, int32_t b)
{
    if (--c->ref[b] > 0) return;
    if (c->indexed[b]) lru_push(c, b);
    else c->free_blocks[c->n_free++] = b;
}

/* Lets go of seq's blocks [keep, n_owned), the last first: of a released
 * sequence the deepest blocks are then evicted first, and its first ones,
 * which other requests are likeliest to share, stay longest. */
static void free_tail(apr_kvcache *c, int seq, int keep)
{
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    for (int i = c->n_owned[seq] - 1; i >= keep; i--) {
        unref(c, row[i]);
        row[i] = -1;
    }
    if (c->n_owned[seq] > keep) c->n_owned[seq] = keep;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

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
    c->n_seq = n_seq;
    c->prefix = 1;
    /* n_seq - 1 blocks beyond n_ctx / APR_KV_BLOCK let every sequence have
     * a partly used last block while the sequences together still hold
     * n_ctx tokens */
    c->max_blocks = div_up(n_ctx, APR_KV_BLOCK);
    const int n_blocks = c->max_blocks + n_seq - 1;
    c->n_ctx = n_ctx;

    apr_kv_cache *d = &c->dev;
    d->type = type;
    d->n_layer = n_layer;
    d->n_head_kv = n_head_kv;
    d->head_dim = head_dim;
    d->block_tokens = APR_KV_BLOCK;
    d->n_blocks = n_blocks;
    d->row_bytes = row_bytes;
    d->layer_bytes = (size_t)n_blocks * n_head_kv * APR_KV_BLOCK * d->row_bytes;

    c->n_buckets = 1;
    while (c->n_buckets < n_blocks) c->n_buckets *= 2;
    const size_t nb = (size_t)n_blocks;
    c->table = malloc(sizeof(int32_t) * (size_t)n_seq * (size_t)c->max_blocks);
    c->len = calloc((size_t)n_seq, sizeof(int));
    c->n_owned = calloc((size_t)n_seq, sizeof(int));
    c->pending = calloc((size_t)n_seq, sizeof(int));
    c->owned_before = calloc((size_t)n_seq, sizeof(int));
    c->ref = calloc(nb, sizeof(int32_t));
    c->ids = malloc(sizeof(int32_t) * nb * APR_KV_BLOCK);
    c->hash = calloc(nb, sizeof(uint64_t));
    c->parent = calloc(nb, sizeof(uint64_t));
    c->indexed = calloc(nb, 1);
    c->filled = calloc(nb, sizeof(int16_t));
    c->partial = malloc(sizeof(int32_t) * (size_t)c->n_buckets);
    c->free_blocks = malloc(sizeof(int32_t) * nb);
    c->lru_prev = malloc(sizeof(int32_t) * nb);
    c->lru_next = malloc(sizeof(int32_t) * nb);
    c->chain = malloc(sizeof(int32_t) * nb);
    c->bucket = malloc(sizeof(int32_t) * (size_t)c->n_buckets);
    if (!c->table || !c->len || !c->n_owned || !c->pending || !c->owned_before || !c->ref || !c->ids || !c->hash ||
        !c->parent || !c->indexed || !c->filled || !c->partial || !c->free_blocks || !c->lru_prev || !c->lru_next || !c->chain || !c->bucket) {
        apr_kvcache_release(c);
        return apr_error(APR_ERR_NOMEM, "cannot allocate the KV cache's block tables");
    }
    for (size_t i = 0; i < (size_t)n_seq * (size_t)c->max_blocks; i++) c->table[i] = -1;
    for (int i = 0; i < c->n_buckets; i++) c->bucket[i] = c->partial[i] = -1;
    c->lru_head = c->lru_tail = -1;
    for (int i = n_blocks - 1; i >= 0; i--) c->free_blocks[c->n_free++] = i;  /* block 0 on top */

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
    free(c->ref);
    free(c->ids);
    free(c->hash);
    free(c->parent);
    free(c->indexed);
    free(c->filled);
    free(c->partial);
    free(c->free_blocks);
    free(c->lru_prev);
    free(c->lru_next);
    free(c->chain);
    free(c->bucket);
    memset(c, 0, sizeof *c);
}

int apr_kvcache_blocks_needed(const apr_kvcache *c, int seq, int n)
{
    const int need = div_up(c->len[seq] + c->pending[seq] + n, APR_KV_BLOCK) - c->n_owned[seq];
    return need > 0 ? need : 0;
}

apr_status apr_kvcache_append(apr_kvcache *c, int seq, int32_t id)
{
    const int pos = c->len[seq] + c->pending[seq];
    APR_CHECK(pos < c->n_ctx, APR_ERR_RANGE, "context of %d tokens is full (sequence %d holds %d, the batch adds more)",
              c->n_ctx, seq, pos);
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    if (pos / APR_KV_BLOCK >= c->n_owned[seq]) {
        const int32_t b = take(c);
        APR_CHECK(b >= 0, APR_ERR_RANGE, "context of %d tokens is full (its blocks are held by other sequences)",
                  c->n_ctx);
        row[c->n_owned[seq]++] = b;
    }
    c->ids[(size_t)row[pos / APR_KV_BLOCK] * APR_KV_BLOCK + pos % APR_KV_BLOCK] = id;
    c->pending[seq]++;
    return APR_OK;
}

void apr_kvcache_commit(apr_kvcache *c)
{
    for (int s = 0; s < c->n_seq; s++) {
        const int old_len = c->len[s];
        c->len[s] += c->pending[s];
        c->pending[s] = 0;
        c->owned_before[s] = c->n_owned[s];
        /* key the blocks this pass filled, and index those no other
         * sequence has already put there (such a twin stays private) */
        const int32_t *row = c->table + (size_t)s * c->max_blocks;
        for (int i = old_len / APR_KV_BLOCK; i < c->len[s] / APR_KV_BLOCK; i++) {
            const int32_t b = row[i];
            const uint64_t parent = i ? c->hash[row[i - 1]] : 0;
            c->parent[b] = parent;
            c->hash[b] = block_key(c->ids + (size_t)b * APR_KV_BLOCK, parent);
            if (c->prefix && find(c, c->hash[b], parent, c->ids + (size_t)b * APR_KV_BLOCK) < 0) index_add(c, b);
        }
    }
}

void apr_kvcache_rollback(apr_kvcache *c)
{
    for (int s = 0; s < c->n_seq; s++) {
        free_tail(c, s, c->owned_before[s]);
        c->pending[s] = 0;
    }
}

int apr_kvcache_match(apr_kvcache *c, int seq, const int32_t *ids, int n)
{
    if (!c->prefix || c->pending[seq] || c->len[seq] != c->n_owned[seq] * APR_KV_BLOCK) return 0;
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    int i = c->n_owned[seq];
    uint64_t parent = i ? c->hash[row[i - 1]] : 0;
    const int first = i;
    for (; (i + 1) * APR_KV_BLOCK <= n && (i + 1) * APR_KV_BLOCK <= c->n_ctx; i++) {
        const int32_t *chunk = ids + (size_t)i * APR_KV_BLOCK;
        const uint64_t key = block_key(chunk, parent);
        int32_t b = find(c, key, parent, chunk);
        if (b >= 0) {
            if (c->ref[b]++ == 0) lru_remove(c, b);
        } else if (c->swap && (b = apr_kvswap_restore_full(c->swap, key, parent, chunk)) >= 0) {
            /* evicted from the device earlier, loaded back from the zram pool */
            memcpy(c->ids + (size_t)b * APR_KV_BLOCK, chunk, sizeof(int32_t) * APR_KV_BLOCK);
            c->parent[b] = parent;
            c->hash[b] = key;
            index_add(c, b);
        } else {
            break;
        }
        row[i] = b;
        parent = key;
    }
    c->n_owned[seq] = c->owned_before[seq] = i;
    c->len[seq] = i * APR_KV_BLOCK;
    int got = (i - first) * APR_KV_BLOCK;
    /* Then the partly filled block a sequence that went the same way left
     * (the last block of a chat's previous turn): the one that agrees
     * longest with what follows is taken over whole (nobody holds it), and
     * its slots past the agreement are written again. */
    const int room = n - i * APR_KV_BLOCK < c->n_ctx - i * APR_KV_BLOCK ? n - i * APR_KV_BLOCK : c->n_ctx - i * APR_KV_BLOCK;
    if (room <= 0) return got;
    const int32_t *next = ids + (size_t)i * APR_KV_BLOCK;
    int32_t best = -1;
    int best_len = 0;
    for (int32_t b = *partial_bucket_of(c, parent); b >= 0; b = c->chain[b]) {
        if (c->parent[b] != parent) continue;
        const int32_t *held = c->ids + (size_t)b * APR_KV_BLOCK;
        const int limit = c->filled[b] < room ? c->filled[b] : room;
        int k = 0;
        while (k < limit && held[k] == next[k]) k++;
        if (k > best_len) best = b, best_len = k;
    }
    /* the zram pool may hold one that agrees longer (restored: ref 1, ids set) */
    int swap_len = 0;
    const int32_t swapped = c->swap ? apr_kvswap_restore_partial(c->swap, parent, next, room, best_len, &swap_len) : -1;
    if (swapped >= 0) {
        row[i] = swapped;
        c->n_owned[seq] = c->owned_before[seq] = i + 1;
        c->len[seq] += swap_len;
        return got + swap_len;
    }
    /* (a failed restore may have evicted the device's best to make room) */
    if (best < 0 || c->indexed[best] != INDEXED_PARTIAL || c->ref[best] != 0) return got;
    lru_remove(c, best);
    index_remove(c, best);
    c->ref[best] = 1;
    row[i] = best;
    c->n_owned[seq] = c->owned_before[seq] = i + 1;
    c->len[seq] += best_len;
    return got + best_len;
}

int apr_kvcache_holds(const apr_kvcache *c, int seq, const int32_t *ids, int n)
{
    if (n < c->len[seq]) return 0;
    const int32_t *row = c->table + (size_t)seq * c->max_blocks;
    for (int p = 0; p < c->len[seq]; p += APR_KV_BLOCK) {
        const int k = c->len[seq] - p < APR_KV_BLOCK ? c->len[seq] - p : APR_KV_BLOCK;
        if (memcmp(c->ids + (size_t)row[p / APR_KV_BLOCK] * APR_KV_BLOCK, ids + p, sizeof(int32_t) * (size_t)k))
            return 0;
    }
    return 1;
}

apr_status apr_kvcache_truncate(apr_kvcache *c, int seq, int from, int32_t *copy_from, int32_t *copy_to)
{
    *copy_from = *copy_to = -1;
    if (from >= c->len[seq]) return APR_OK;
    int32_t *row = c->table + (size_t)seq * c->max_blocks;
    const int keep = div_up(from, APR_KV_BLOCK);
    if (from % APR_KV_BLOCK) {
        /* the block `from` falls in will be written again: make it seq's own */
        const int32_t b = row[keep - 1];
        if (c->ref[b] > 1) {
            const int32_t copy = take(c);
            APR_CHECK(copy >= 0, APR_ERR_RANGE,
                      "context of %d tokens is full: no block is left for a copy of a shared one", c->n_ctx);
            memcpy(c->ids + (size_t)copy * APR_KV_BLOCK, c->ids + (size_t)b * APR_KV_BLOCK,
                   sizeof(int32_t) * APR_KV_BLOCK);
            c->ref[b]--;  /* still held by another sequence */
            row[keep - 1] = copy;
            *copy_from = b;
            *copy_to = copy;
        } else if (c->indexed[b]) {
            index_remove(c, b);
        }
    }
    /* the last block, partly filled and held by seq alone, stays for a
     * sequence that continues the same way (a chat's next turn) */
    const int last = (c->len[seq] - 1) / APR_KV_BLOCK, filled = c->len[seq] - last * APR_KV_BLOCK;
    if (c->prefix && last >= keep && filled < APR_KV_BLOCK && c->ref[row[last]] == 1 && !c->indexed[row[last]])
        index_add_partial(c, row[last], last ? c->hash[row[last - 1]] : 0, filled);
    free_tail(c, seq, keep);
    c->len[seq] = from;
    c->owned_before[seq] = c->n_owned[seq];
    return APR_OK;
}
