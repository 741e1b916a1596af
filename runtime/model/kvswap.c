/* kvswap.c — evicted KV blocks into a zram pool and back (kvswap.h).
 *
 * A record stands for one block in the pool: the key the prefix index
 * knows it by (a full block's chain key, or a partial block's parent key
 * and its filled count), its token ids (compared on every lookup, as the
 * device index does), and the pool handles of its 2 n_layer pages. Records
 * sit in two hash tables (full blocks by key, partial ones by parent key)
 * and on one LRU list: when the pool passes 90% of its cap after a block
 * goes in, whole blocks leave from the cold end, so the pool's own
 * page-by-page eviction (its backstop) rarely has to break a block up. A
 * restored block keeps its record: evicting it again costs no copy.
 *
 * Staging is host memory the device reaches (backend host_alloc): slots of
 * one block each (its pages, their same-filled flags and words, the block
 * id), used in order by copies out and restores alike, and recycled when
 * the stream has synchronised. Copies out wait in slots until
 * apr_kvswap_before_write issues them together (one kv_stage); a full
 * staging area is flushed (issue, sync, compress) before a slot is taken. */
#include "model/kvswap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/parallel.h"
#include "model/kvcache.h"
#include "model/model.h"

#define STAGING_BYTES ((size_t)64 << 20)
#define NO_REC (-1)

typedef struct rec {
    uint64_t key;            /* a full block's chain key (0 for a partial one) */
    uint64_t parent;         /* the key of the block before it */
    int32_t ids[APR_KV_BLOCK];
    int32_t filled;          /* tokens it holds (APR_KV_BLOCK when full) */
    int32_t hnext;           /* next record in its hash bucket */
    int32_t prev, next;      /* LRU (most recent at lru_head); next also chains free records */
    int in_use;
} rec;

/* A staging slot: what occupies it. */
typedef struct slot {
    int out;                 /* 1: a block copied out, waiting for the pool; 0: a restore */
    rec meta;                /* out: the evicted block's key, parent, ids, filled */
} slot;

struct apr_kvswap {
    apr_kvcache *c;
    apr_backend *B;
    apr_stream *s;
    apr_zram *pool;
    size_t page_bytes;
    int n_pages;             /* per block: 2 n_layer */

    /* staging (host_alloc) */
    int cap_slots, n_slots;  /* slots, and slots used since the last flush */
    int issued;              /* slots [0, issued) have had their copy out issued (or are restores) */
    uint8_t *staging;        /* [cap_slots][n_pages][page_bytes] */
    uint8_t *same;           /* [cap_slots][n_pages] */
    uint64_t *words;         /* [cap_slots][n_pages] */
    int32_t *blocks;         /* [cap_slots] */
    slot *slots;             /* [cap_slots] (plain memory) */
    int32_t *slot_rec;       /* [cap_slots] the record a drained slot fills (-1: none) */
    apr_status *status;      /* [cap_slots][n_pages] each page's put or get */

    /* records */
    rec *recs;
    uint64_t *handles;       /* [cap_recs][n_pages] */
    int32_t n_recs, cap_recs, free_rec;
    int32_t *by_key, *by_parent;  /* [n_buckets] heads */
    int32_t n_buckets;
    int32_t lru_head, lru_tail;
    int32_t pinned;          /* the record being restored: trim leaves it */

    apr_kv_swap_stats st;
};

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* ===================================================================== */
/* Records                                                               */
/* ===================================================================== */

static int32_t *bucket(apr_kvswap *w, const rec *r)
{
    return r->filled == APR_KV_BLOCK ? &w->by_key[r->key & (uint64_t)(w->n_buckets - 1)]
                                     : &w->by_parent[r->parent & (uint64_t)(w->n_buckets - 1)];
}

static uint64_t *handles_of(apr_kvswap *w, int32_t i) { return w->handles + (size_t)i * w->n_pages; }

static void lru_unlink(apr_kvswap *w, int32_t i)
{
    rec *r = &w->recs[i];
    if (r->prev >= 0) w->recs[r->prev].next = r->next;
    else w->lru_head = r->next;
    if (r->next >= 0) w->recs[r->next].prev = r->prev;
    else w->lru_tail = r->prev;
    r->prev = r->next = NO_REC;
}

static void lru_push_head(apr_kvswap *w, int32_t i)
{
    rec *r = &w->recs[i];
    r->prev = NO_REC;
    r->next = w->lru_head;
    if (w->lru_head >= 0) w->recs[w->lru_head].prev = i;
    w->lru_head = i;
    if (w->lru_tail < 0) w->lru_tail = i;
}

/* Drops record i: its pages leave the pool, it leaves its bucket. */
static void drop_rec(apr_kvswap *w, int32_t i)
{
    rec *r = &w->recs[i];
    for (int32_t *p = bucket(w, r); *p >= 0; p = &w->recs[*p].hnext)
        if (*p == i) {
            *p = r->hnext;
            break;
        }
    lru_unlink(w, i);
    uint64_t *h = handles_of(w, i);
    for (int k = 0; k < w->n_pages; k++)
        if (h[k]) apr_zram_drop(w->pool, h[k]);  /* NOT_FOUND: the pool evicted it already */
    r->in_use = 0;
    r->next = w->free_rec;
    w->free_rec = i;
    w->st.blocks_held--;
}

static int grow_buckets(apr_kvswap *w)
{
    int32_t n = w->n_buckets ? w->n_buckets * 2 : 256;
    int32_t *k = malloc(sizeof(int32_t) * (size_t)n), *p = malloc(sizeof(int32_t) * (size_t)n);
    if (!k || !p) {
        free(k);
        free(p);
        return 0;
    }
    free(w->by_key);
    free(w->by_parent);
    w->by_key = k;
    w->by_parent = p;
    w->n_buckets = n;
    for (int32_t i = 0; i < n; i++) k[i] = p[i] = NO_REC;
    for (int32_t i = 0; i < w->n_recs; i++) {
        rec *r = &w->recs[i];
        if (!r->in_use) continue;
        int32_t *b = bucket(w, r);
        r->hnext = *b;
        *b = i;
    }
    return 1;
}

/* A free record (its handles zeroed), or -1 when memory runs out. */
static int32_t new_rec(apr_kvswap *w)
{
    if (w->free_rec < 0) {
        if (w->n_recs == w->cap_recs) {
            int32_t cap = w->cap_recs ? w->cap_recs * 2 : 64;
            rec *r = realloc(w->recs, sizeof *r * (size_t)cap);
            if (!r) return -1;
            w->recs = r;
            uint64_t *h = realloc(w->handles, sizeof *h * (size_t)cap * w->n_pages);
            if (!h) return -1;
            w->handles = h;
            w->cap_recs = cap;
        }
        if (w->n_recs + 1 > w->n_buckets && !grow_buckets(w)) return -1;
        w->recs[w->n_recs].in_use = 0;
        w->free_rec = w->n_recs++;
        w->recs[w->free_rec].next = NO_REC;
    }
    int32_t i = w->free_rec;
    w->free_rec = w->recs[i].next;
    memset(handles_of(w, i), 0, sizeof(uint64_t) * w->n_pages);
    return i;
}

/* Enters record i (key, parent, ids, filled set) in its bucket and at the
 * hot end of the LRU list. */
static void index_rec(apr_kvswap *w, int32_t i)
{
    rec *r = &w->recs[i];
    r->in_use = 1;
    int32_t *b = bucket(w, r);
    r->hnext = *b;
    *b = i;
    lru_push_head(w, i);
    w->st.blocks_held++;
}

static int same_tokens(const rec *r, const rec *m)
{
    return r->filled == m->filled && r->parent == m->parent && r->key == m->key &&
           memcmp(r->ids, m->ids, sizeof(int32_t) * (size_t)r->filled) == 0;
}

/* The record holding the block m describes, or -1. */
static int32_t find_rec(apr_kvswap *w, const rec *m)
{
    if (!w->n_buckets) return NO_REC;
    for (int32_t i = *bucket(w, m); i >= 0; i = w->recs[i].hnext)
        if (same_tokens(&w->recs[i], m)) return i;
    return NO_REC;
}

/* ===================================================================== */
/* Staging                                                               */
/* ===================================================================== */

static uint8_t *slot_pages(apr_kvswap *w, int k) { return w->staging + (size_t)k * w->n_pages * w->page_bytes; }

void apr_kvswap_before_write(apr_kvswap *w)
{
    if (!w || w->issued == w->n_slots) return;
    const int k = w->issued, n = w->n_slots - k;
    w->B->kv_stage(w->s, &w->c->dev, w->blocks + k, n, w->same + (size_t)k * w->n_pages,
                   w->words + (size_t)k * w->n_pages, slot_pages(w, k));
    w->issued = w->n_slots;
}

/* Pages of slots into the pool, or out of it, on all cores (the pool
 * compresses and decompresses outside its lock). */
typedef struct pages_job {
    apr_kvswap *w;
    int first;               /* the slot of page 0 */
    const uint64_t *handles; /* get: the record's handles */
} pages_job;

static void put_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    pages_job *j = ctx;
    apr_kvswap *w = j->w;
    for (int64_t x = begin; x < end; x++) {
        const int k = (int)(x / w->n_pages), p = (int)(x % w->n_pages);
        const int32_t i = w->slot_rec[k];
        if (i < 0) continue;
        uint64_t *h = &handles_of(w, i)[p];
        const size_t at = (size_t)k * w->n_pages + p;
        w->status[at] = w->same[at] ? apr_zram_put_word(w->pool, w->words[at], h)
                                    : apr_zram_put(w->pool, w->staging + at * w->page_bytes, h);
        if (w->status[at] != APR_OK) *h = 0;
    }
}

static void get_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    pages_job *j = ctx;
    apr_kvswap *w = j->w;
    for (int64_t p = begin; p < end; p++) {
        const size_t at = (size_t)j->first * w->n_pages + (size_t)p;
        uint64_t word = 0;
        w->same[at] = (uint8_t)apr_zram_same_word(w->pool, j->handles[p], &word);
        w->words[at] = word;
        w->status[at] = w->same[at] ? APR_OK : apr_zram_get(w->pool, j->handles[p], w->staging + at * w->page_bytes);
    }
}

/* Compresses the blocks copied out into slots [0, n) into the pool, a
 * record each; a block the pool cannot take is lost (recomputed later). */
static void store_slots(apr_kvswap *w, int n)
{
    int any = 0;
    for (int k = 0; k < n; k++) {
        w->slot_rec[k] = NO_REC;
        if (!w->slots[k].out) continue;
        const rec *m = &w->slots[k].meta;
        /* evicted twice before reaching the pool: once is enough */
        int dup = find_rec(w, m) >= 0;
        for (int q = 0; q < k && !dup; q++) dup = w->slot_rec[q] >= 0 && same_tokens(&w->slots[q].meta, m);
        if (dup) continue;
        const int32_t i = new_rec(w);
        if (i < 0) {
            w->st.blocks_lost++;
            continue;
        }
        w->recs[i] = *m;
        w->slot_rec[k] = i;
        any = 1;
    }
    if (!any) return;
    pages_job j = { .w = w };
    apr_parallel_for((int64_t)n * w->n_pages, 4, put_body, &j);
    for (int k = 0; k < n; k++) {
        const int32_t i = w->slot_rec[k];
        if (i < 0) continue;
        const apr_status *st = w->status + (size_t)k * w->n_pages;
        const uint8_t *same = w->same + (size_t)k * w->n_pages;
        int ok = 1;
        for (int p = 0; p < w->n_pages; p++) ok &= st[p] == APR_OK;
        if (!ok) {
            uint64_t *h = handles_of(w, i);
            for (int p = 0; p < w->n_pages; p++)
                if (h[p]) apr_zram_drop(w->pool, h[p]);
            w->recs[i].in_use = 0;
            w->recs[i].next = w->free_rec;
            w->free_rec = i;
            w->st.blocks_lost++;
            continue;
        }
        for (int p = 0; p < w->n_pages; p++) {
            if (same[p]) w->st.pages_same++;
            else w->st.bytes_out += w->page_bytes;
        }
        index_rec(w, i);
        w->st.blocks_out++;
    }
}

/* Keeps the pool under 90% of its cap by dropping whole cold blocks. */
static void trim(apr_kvswap *w)
{
    apr_zram_stats ps;
    apr_zram_get_stats(w->pool, &ps);
    if (!ps.max_bytes) return;
    while (w->lru_tail >= 0 && w->lru_tail != w->pinned && ps.host_bytes > ps.max_bytes / 10 * 9) {
        drop_rec(w, w->lru_tail);
        w->st.blocks_dropped++;
        apr_zram_get_stats(w->pool, &ps);
    }
}

/* Compresses what the stream has copied out and recycles the staging. The
 * stream must have synchronised since the last issue. */
static void drain(apr_kvswap *w, int ok)
{
    const uint64_t t0 = now_ns();
    if (ok) {
        store_slots(w, w->issued);
    } else {
        for (int k = 0; k < w->issued; k++) w->st.blocks_lost += w->slots[k].out;
    }
    if (w->issued) trim(w);
    /* slots not issued yet (evicted, not yet copied) move to the front */
    const int rest = w->n_slots - w->issued;
    for (int k = 0; k < rest; k++) {
        w->slots[k] = w->slots[w->issued + k];
        w->blocks[k] = w->blocks[w->issued + k];
    }
    w->n_slots = rest;
    w->issued = 0;
    w->st.out_ns += now_ns() - t0;
}

void apr_kvswap_after_pass(apr_kvswap *w, int ok)
{
    if (w) drain(w, ok);
}

/* Issues, synchronises and drains: frees every slot. */
static apr_status flush(apr_kvswap *w)
{
    apr_kvswap_before_write(w);
    apr_status s = w->B->sync(w->s);
    drain(w, s == APR_OK);
    return s;
}

/* A free slot; flushes first when all are used. -1 when the flush failed. */
static int take_slot(apr_kvswap *w)
{
    if (w->n_slots == w->cap_slots && flush(w) != APR_OK) return -1;
    return w->n_slots++;
}

/* ===================================================================== */
/* Out and in                                                            */
/* ===================================================================== */

void apr_kvswap_evict(apr_kvswap *w, int32_t b)
{
    apr_kvcache *c = w->c;
    rec m = { .parent = c->parent[b], .filled = c->indexed[b] == APR_KV_INDEXED_FULL ? APR_KV_BLOCK : c->filled[b] };
    if (m.filled == APR_KV_BLOCK) m.key = c->hash[b];
    if (m.filled <= 0) return;
    memcpy(m.ids, c->ids + (size_t)b * APR_KV_BLOCK, sizeof(int32_t) * (size_t)m.filled);
    int32_t i = find_rec(w, &m);
    if (i >= 0) {
        /* the pool has it already (it was restored from there): no copy */
        lru_unlink(w, i);
        lru_push_head(w, i);
        w->st.blocks_clean++;
        return;
    }
    /* an eviction in a full staging area flushes it: the stream is idle
     * between passes, so that is one short wait */
    if (w->n_slots == w->cap_slots && flush(w) != APR_OK) {
        w->st.blocks_lost++;
        return;
    }
    const int k = w->n_slots++;
    w->slots[k].out = 1;
    w->slots[k].meta = m;
    w->blocks[k] = b;
}

/* Loads record i into a block taken from the cache; -1 on failure (the
 * block returned to the cache; a record with a page gone is dropped). */
static int32_t restore(apr_kvswap *w, int32_t i)
{
    apr_kvcache *c = w->c;
    const uint64_t t0 = now_ns();
    /* hot while it is read: a flush below may trim the pool */
    lru_unlink(w, i);
    lru_push_head(w, i);
    w->pinned = i;
    const int32_t b = apr_kvcache_take_block(c);
    if (b < 0) {
        w->pinned = NO_REC;
        return -1;
    }
    /* copies out first: b may be a block just evicted, not yet copied;
     * then the restore's slot comes after every copy out issued */
    apr_kvswap_before_write(w);
    const int k = take_slot(w);
    if (k < 0) {
        apr_kvcache_give_block(c, b);
        w->pinned = NO_REC;
        return -1;
    }
    w->slots[k].out = 0;
    w->blocks[k] = b;
    w->issued = w->n_slots;
    uint8_t *same = w->same + (size_t)k * w->n_pages;
    uint64_t *words = w->words + (size_t)k * w->n_pages;
    uint8_t *pages = slot_pages(w, k);
    pages_job j = { .w = w, .first = k, .handles = handles_of(w, i) };
    apr_parallel_for(w->n_pages, 2, get_body, &j);
    uint64_t bytes = 0;
    for (int p = 0; p < w->n_pages; p++) {
        if (w->status[(size_t)k * w->n_pages + p] != APR_OK) {
            /* evicted by the pool or corrupt: this block is recomputed */
            w->n_slots = w->issued = k;
            apr_kvcache_give_block(c, b);
            w->pinned = NO_REC;
            drop_rec(w, i);
            w->st.restore_failed++;
            w->st.in_ns += now_ns() - t0;
            return -1;
        }
        if (!same[p]) bytes += w->page_bytes;
    }
    w->B->kv_load(w->s, &c->dev, w->blocks + k, 1, same, words, pages);
    w->pinned = NO_REC;
    w->st.blocks_in++;
    w->st.bytes_in += bytes;
    w->st.in_ns += now_ns() - t0;
    return b;
}

/* The record of m's block, finished or still in staging (then flushed). */
static int32_t lookup(apr_kvswap *w, const rec *m)
{
    int32_t i = find_rec(w, m);
    if (i >= 0) return i;
    for (int k = 0; k < w->n_slots; k++)
        if (w->slots[k].out && same_tokens(&w->slots[k].meta, m)) {
            if (flush(w) != APR_OK) return NO_REC;
            return find_rec(w, m);
        }
    return NO_REC;
}

int32_t apr_kvswap_restore_full(apr_kvswap *w, uint64_t key, uint64_t parent, const int32_t *ids)
{
    rec m = { .key = key, .parent = parent, .filled = APR_KV_BLOCK };
    memcpy(m.ids, ids, sizeof m.ids);
    const int32_t i = lookup(w, &m);
    return i >= 0 ? restore(w, i) : -1;
}

int32_t apr_kvswap_restore_partial(apr_kvswap *w, uint64_t parent, const int32_t *next, int room, int better,
                                   int *agree)
{
    *agree = 0;
    if (!w->n_buckets) return -1;
    /* blocks still in staging count too: flush when one would win */
    for (int k = 0; k < w->n_slots; k++) {
        const rec *m = &w->slots[k].meta;
        if (!w->slots[k].out || m->filled == APR_KV_BLOCK || m->parent != parent) continue;
        int n = 0;
        const int limit = m->filled < room ? m->filled : room;
        while (n < limit && m->ids[n] == next[n]) n++;
        if (n > better) {
            flush(w);
            break;
        }
    }
    int32_t best = NO_REC;
    int best_len = better;
    for (int32_t i = w->by_parent[parent & (uint64_t)(w->n_buckets - 1)]; i >= 0; i = w->recs[i].hnext) {
        const rec *r = &w->recs[i];
        if (r->parent != parent) continue;
        const int limit = r->filled < room ? r->filled : room;
        int n = 0;
        while (n < limit && r->ids[n] == next[n]) n++;
        if (n > best_len) best = i, best_len = n;
    }
    if (best < 0) return -1;
    const int32_t filled = w->recs[best].filled;
    int32_t ids[APR_KV_BLOCK];
    memcpy(ids, w->recs[best].ids, sizeof(int32_t) * (size_t)filled);
    const int32_t b = restore(w, best);
    if (b < 0) return -1;
    memcpy(w->c->ids + (size_t)b * APR_KV_BLOCK, ids, sizeof(int32_t) * (size_t)filled);
    *agree = best_len;
    return b;
}

/* ===================================================================== */
/* Lifecycle                                                             */
/* ===================================================================== */

size_t apr_kvswap_page_bytes(const apr_kvcache *c)
{
    return (size_t)c->dev.n_head_kv * (size_t)c->dev.block_tokens * c->dev.row_bytes;
}

apr_status apr_kvswap_new(apr_kvcache *c, apr_backend *B, apr_stream *s, apr_zram *pool, apr_kvswap **out)
{
    *out = NULL;
    APR_CHECK(B->kv_stage && B->kv_load && B->host_alloc, APR_ERR_UNSUPPORTED,
              "the %s backend cannot copy KV blocks to host memory", B->name);
    apr_zram_stats ps;
    apr_zram_get_stats(pool, &ps);
    const size_t pb = apr_kvswap_page_bytes(c);
    APR_CHECK(ps.page_bytes == pb, APR_ERR_INVALID,
              "a zram pool of %llu-byte pages cannot hold this KV cache's pages of %zu bytes",
              (unsigned long long)ps.page_bytes, pb);
    apr_kvswap *w = calloc(1, sizeof *w);
    APR_CHECK(w, APR_ERR_NOMEM, "out of memory for the KV swap");
    w->c = c;
    w->B = B;
    w->s = s;
    w->pool = pool;
    w->page_bytes = pb;
    w->n_pages = 2 * c->dev.n_layer;
    w->free_rec = w->lru_head = w->lru_tail = w->pinned = NO_REC;
    const size_t block_bytes = (size_t)w->n_pages * pb;
    w->cap_slots = (int)(STAGING_BYTES / block_bytes);
    if (w->cap_slots < 2) w->cap_slots = 2;
    if (w->cap_slots > 1024) w->cap_slots = 1024;
    w->staging = B->host_alloc(B, (size_t)w->cap_slots * block_bytes);
    w->same = B->host_alloc(B, (size_t)w->cap_slots * w->n_pages);
    w->words = B->host_alloc(B, (size_t)w->cap_slots * w->n_pages * sizeof(uint64_t));
    w->blocks = B->host_alloc(B, (size_t)w->cap_slots * sizeof(int32_t));
    w->slots = calloc((size_t)w->cap_slots, sizeof *w->slots);
    w->slot_rec = calloc((size_t)w->cap_slots, sizeof *w->slot_rec);
    w->status = calloc((size_t)w->cap_slots * w->n_pages, sizeof *w->status);
    if (!w->staging || !w->same || !w->words || !w->blocks || !w->slots || !w->slot_rec || !w->status ||
        !grow_buckets(w)) {
        apr_status st = apr_error(APR_ERR_NOMEM, "cannot allocate %.1f MiB of staging for the KV swap: %s",
                                  (double)w->cap_slots * (double)block_bytes / (1 << 20), apr_last_error());
        apr_kvswap_free(w);
        return st;
    }
    c->swap = w;
    *out = w;
    return APR_OK;
}

void apr_kvswap_free(apr_kvswap *w)
{
    if (!w) return;
    if (w->c && w->c->swap == w) w->c->swap = NULL;
    for (int32_t i = 0; i < w->n_recs; i++)
        if (w->recs[i].in_use) drop_rec(w, i);
    if (w->B->host_release) {
        w->B->host_release(w->B, w->staging);
        w->B->host_release(w->B, w->same);
        w->B->host_release(w->B, w->words);
        w->B->host_release(w->B, w->blocks);
    }
    free(w->slots);
    free(w->slot_rec);
    free(w->status);
    free(w->recs);
    free(w->handles);
    free(w->by_key);
    free(w->by_parent);
    free(w);
}

void apr_kvswap_get_stats(const apr_kvswap *w, apr_kv_swap_stats *out)
{
    memset(out, 0, sizeof *out);
    if (w) *out = w->st;
}

/* ===================================================================== */
/* A context's swap (apr.h)                                              */
/* ===================================================================== */

uint64_t apr_context_kv_page_bytes(const apr_context *c) { return c ? apr_kvswap_page_bytes(&c->cache) : 0; }

uint64_t apr_context_kv_bytes(const apr_context *c)
{
    return c ? 2 * (uint64_t)c->cache.dev.n_layer * c->cache.dev.layer_bytes : 0;
}

apr_status apr_context_set_zram(apr_context *c, apr_zram *pool)
{
    APR_CHECK(c, APR_ERR_INVALID, "apr_context_set_zram: context is NULL");
    if (c->cache.swap) {
        /* its copies out in flight land before it goes */
        apr_kvswap_before_write(c->cache.swap);
        c->B->sync(c->stream);
        apr_kvswap_free(c->cache.swap);
    }
    if (!pool) return APR_OK;
    APR_CHECK(c->cache.prefix, APR_ERR_INVALID,
              "a zram pool needs the prefix cache: the blocks it keeps are found by their tokens");
    apr_kvswap *w = NULL;
    return apr_kvswap_new(&c->cache, c->B, c->stream, pool, &w);
}

void apr_context_get_swap_stats(const apr_context *c, apr_kv_swap_stats *out)
{
    apr_kvswap_get_stats(c ? c->cache.swap : NULL, out);
}

apr_status apr_context_seq_kv_pages(apr_context *c, int seq, int first, int n, void *out)
{
    APR_CHECK(c && out, APR_ERR_INVALID, "apr_context_seq_kv_pages: NULL argument");
    APR_CHECK(seq >= 0 && seq < c->cache.n_seq, APR_ERR_RANGE, "sequence %d is outside [0, %d)", seq, c->cache.n_seq);
    const int owned = c->cache.n_owned[seq];
    APR_CHECK(first >= 0 && n >= 0 && first + n <= owned, APR_ERR_RANGE,
              "blocks [%d, %d) of sequence %d, which holds %d", first, first + n, seq, owned);
    const apr_kv_cache *d = &c->cache.dev;
    const size_t pb = apr_kvswap_page_bytes(&c->cache);
    uint8_t *o = out;
    for (int i = first; i < first + n; i++) {
        const int32_t b = c->cache.table[(size_t)seq * c->cache.max_blocks + i];
        for (int l = 0; l < d->n_layer; l++)
            for (int kv = 0; kv < 2; kv++) {
                const uint8_t *base = (const uint8_t *)(kv ? d->v : d->k) + (size_t)l * d->layer_bytes;
                c->B->download(c->stream, o, base + (size_t)b * pb, pb);
                o += pb;
            }
    }
    return c->B->sync(c->stream);
}
