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
 * Staging is host memory the device reaches (backend host_alloc): a ring
 * of slots of one block each (its pages, their same-filled flags and words,
 * the block id), taken in order by copies out and restores alike. A copy
 * out moves through the states of its slot: PENDING (evicted, not yet
 * copied: the newest slots), ISSUED (apr_kvswap_before_write issued one
 * kv_stage for all pending ones), READY (the stream synchronised: the
 * pages are in staging) and back to FREE once compressed into the pool. The
 * compression of READY slots waits for the next pass and runs while the
 * device computes it (apr_kvswap_while_pass), so on a GPU it costs the
 * decoding nothing; anything that needs a block not yet in the pool, or a
 * full ring, flushes (issue, sync, compress) first. A restore's slot (IN)
 * is free once the stream has synchronised after its kv_load. */
#include "model/kvswap.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "core/parallel.h"
#include "model/kvcache.h"
#include "model/model.h"

#define STAGING_BYTES ((size_t)64 << 20)
#define STAGING_MAX ((size_t)512 << 20)
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

enum { SLOT_FREE = 0, SLOT_PENDING, SLOT_ISSUED, SLOT_READY, SLOT_IN };

/* A staging slot: what occupies it. */
typedef struct slot {
    int state;               /* SLOT_* */
    rec meta;                /* a copy out: the evicted block's key, parent, ids, filled */
} slot;

struct apr_kvswap {
    apr_kvcache *c;
    apr_backend *B;
    apr_stream *s;
    apr_zram *pool;
    size_t page_bytes;
    int n_pages;             /* per block: 2 n_layer */

    /* staging (host_alloc), a ring of cap_slots */
    int cap_slots;
    int head, used;          /* slots head .. head + used - 1 (mod cap_slots) are taken, oldest first */
    int n_pending;           /* of them, the newest n_pending are PENDING */
    uint8_t *staging;        /* [cap_slots][n_pages][page_bytes] */
    uint8_t *same;           /* [cap_slots][n_pages] */
    uint64_t *words;         /* [cap_slots][n_pages] */
    int32_t *blocks;         /* [cap_slots] */
    slot *slots;             /* [cap_slots] (plain memory) */
    int32_t *slot_rec;       /* [cap_slots] the record a compressed slot fills (-1: none) */
    int *ready;              /* [cap_slots] the READY slots being compressed */
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

static int ring(const apr_kvswap *w, int i) { return (w->head + i) % w->cap_slots; }

/* Issues one kv_stage over slots [k, k + n) (not wrapping). */
static void stage_range(apr_kvswap *w, int k, int n)
{
    w->B->kv_stage(w->s, &w->c->dev, w->blocks + k, n, w->same + (size_t)k * w->n_pages,
                   w->words + (size_t)k * w->n_pages, slot_pages(w, k));
    for (int i = 0; i < n; i++) w->slots[k + i].state = SLOT_ISSUED;
}

void apr_kvswap_before_write(apr_kvswap *w)
{
    if (!w || !w->n_pending) return;
    const int first = ring(w, w->used - w->n_pending);
    const int run = first + w->n_pending <= w->cap_slots ? w->n_pending : w->cap_slots - first;
    stage_range(w, first, run);
    if (run < w->n_pending) stage_range(w, 0, w->n_pending - run);  /* the ring wrapped */
    w->n_pending = 0;
}

/* Pages of slots into the pool, or out of it, on all cores (the pool
 * compresses and decompresses outside its lock). */
typedef struct pages_job {
    apr_kvswap *w;
    int first;               /* get: the slot */
    int n_ready;             /* put: w->ready[0 .. n_ready) */
    const uint64_t *handles; /* get: the record's handles */
} pages_job;

static void put_body(void *ctx, int64_t begin, int64_t end, int thread)
{
    pages_job *j = ctx;
    apr_kvswap *w = j->w;
    for (int64_t x = begin; x < end; x++) {
        const int k = w->ready[x / w->n_pages], p = (int)(x % w->n_pages);
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

/* Frees the slots at the ring's head that hold nothing any more. */
static void pop_free(apr_kvswap *w)
{
    while (w->used > w->n_pending && w->slots[w->head].state == SLOT_FREE) {
        w->head = (w->head + 1) % w->cap_slots;
        w->used--;
    }
}

/* Compresses every READY slot's block into the pool under a new record (a
 * block the pool cannot take is lost: recomputed later), and frees the
 * slots. */
static void store_ready(apr_kvswap *w)
{
    const uint64_t t0 = now_ns();
    int n = 0;
    for (int x = 0; x < w->used; x++) {
        const int k = ring(w, x);
        if (w->slots[k].state != SLOT_READY) continue;
        w->slots[k].state = SLOT_FREE;
        const rec *m = &w->slots[k].meta;
        /* evicted twice before reaching the pool: once is enough */
        int dup = find_rec(w, m) >= 0;
        for (int q = 0; q < n && !dup; q++) dup = same_tokens(&w->slots[w->ready[q]].meta, m);
        if (dup) continue;
        const int32_t i = new_rec(w);
        if (i < 0) {
            w->st.blocks_lost++;
            continue;
        }
        w->recs[i] = *m;
        w->slot_rec[k] = i;
        w->ready[n++] = k;
    }
    if (n) {
        pages_job j = { .w = w, .n_ready = n };
        apr_parallel_for((int64_t)n * w->n_pages, 4, put_body, &j);
    }
    for (int q = 0; q < n; q++) {
        const int k = w->ready[q];
        const int32_t i = w->slot_rec[k];
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
    if (n) trim(w);
    pop_free(w);
    w->st.out_ns += now_ns() - t0;
}

/* The stream has synchronised (ok: without a failure): what it copied out
 * is READY, restores' slots are free. */
static void synced(apr_kvswap *w, int ok)
{
    for (int x = 0; x < w->used - w->n_pending; x++) {
        slot *sl = &w->slots[ring(w, x)];
        if (sl->state == SLOT_IN) {
            sl->state = SLOT_FREE;
        } else if (sl->state == SLOT_ISSUED) {
            if (ok) {
                sl->state = SLOT_READY;
            } else {
                sl->state = SLOT_FREE;  /* a failed stream's copies are not trusted */
                w->st.blocks_lost++;
            }
        }
    }
    pop_free(w);
}

void apr_kvswap_while_pass(apr_kvswap *w)
{
    if (w) store_ready(w);
}

void apr_kvswap_after_pass(apr_kvswap *w, int ok)
{
    if (w) synced(w, ok);
}

/* Issues, synchronises and compresses: afterwards every block evicted so
 * far is in the pool (or lost) and the ring is empty. */
static apr_status flush(apr_kvswap *w)
{
    apr_kvswap_before_write(w);
    apr_status s = w->B->sync(w->s);
    synced(w, s == APR_OK);
    store_ready(w);
    return s;
}

/* Takes the next slot of the ring in state `state`; makes room first (the
 * slots already READY compressed, else a flush). -1 when a flush failed. */
static int take_slot(apr_kvswap *w, int state)
{
    if (w->used == w->cap_slots) store_ready(w);
    if (w->used == w->cap_slots && flush(w) != APR_OK) return -1;
    if (w->used == w->cap_slots) return -1;  /* pending slots fill it (cap_slots >= 2 prevents this) */
    const int k = ring(w, w->used++);
    w->slots[k].state = state;
    w->slot_rec[k] = NO_REC;
    return k;
}

/* 1 if a block copied out but not yet in the pool is the one m describes. */
static int in_staging(apr_kvswap *w, const rec *m)
{
    for (int x = 0; x < w->used; x++) {
        const slot *sl = &w->slots[ring(w, x)];
        if (sl->state != SLOT_IN && sl->state != SLOT_FREE && same_tokens(&sl->meta, m)) return 1;
    }
    return 0;
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
    /* a full ring is flushed first: the stream is idle between passes, so
     * that is one short wait */
    if (in_staging(w, &m)) return;  /* copied out already, not in the pool yet */
    const int k = take_slot(w, SLOT_PENDING);
    if (k < 0) {
        w->st.blocks_lost++;
        return;
    }
    w->n_pending++;
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
    const int k = take_slot(w, SLOT_IN);
    if (k < 0) {
        apr_kvcache_give_block(c, b);
        w->pinned = NO_REC;
        return -1;
    }
    w->blocks[k] = b;
    uint8_t *same = w->same + (size_t)k * w->n_pages;
    uint64_t *words = w->words + (size_t)k * w->n_pages;
    uint8_t *pages = slot_pages(w, k);
    pages_job j = { .w = w, .first = k, .handles = handles_of(w, i) };
    apr_parallel_for(w->n_pages, 2, get_body, &j);
    uint64_t bytes = 0;
    for (int p = 0; p < w->n_pages; p++) {
        if (w->status[(size_t)k * w->n_pages + p] != APR_OK) {
            /* evicted by the pool or corrupt: this block is recomputed */
            w->slots[k].state = SLOT_FREE;  /* the newest slot: given back */
            w->used--;
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
    if (in_staging(w, m) && flush(w) == APR_OK) return find_rec(w, m);
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
    for (int x = 0; x < w->used; x++) {
        const slot *sl = &w->slots[ring(w, x)];
        const rec *m = &sl->meta;
        if (sl->state == SLOT_IN || sl->state == SLOT_FREE || m->filled == APR_KV_BLOCK || m->parent != parent)
            continue;
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

apr_status apr_kvswap_new(apr_kvcache *c, apr_backend *B, apr_stream *s, apr_zram *pool, int min_blocks,
                          apr_kvswap **out)
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
    /* 64 MiB, or two passes' evictions (one being compressed while the
     * next is copied out) when that is more, up to 512 MiB */
    w->cap_slots = (int)(STAGING_BYTES / block_bytes);
    if (w->cap_slots < 2 * min_blocks) w->cap_slots = 2 * min_blocks;
    if ((size_t)w->cap_slots * block_bytes > STAGING_MAX) w->cap_slots = (int)(STAGING_MAX / block_bytes);
    if (w->cap_slots < 2) w->cap_slots = 2;
    if (w->cap_slots > 1024) w->cap_slots = 1024;
    w->staging = B->host_alloc(B, (size_t)w->cap_slots * block_bytes);
    w->same = B->host_alloc(B, (size_t)w->cap_slots * w->n_pages);
    w->words = B->host_alloc(B, (size_t)w->cap_slots * w->n_pages * sizeof(uint64_t));
    w->blocks = B->host_alloc(B, (size_t)w->cap_slots * sizeof(int32_t));
    w->slots = calloc((size_t)w->cap_slots, sizeof *w->slots);
    w->slot_rec = calloc((size_t)w->cap_slots, sizeof *w->slot_rec);
    w->ready = calloc((size_t)w->cap_slots, sizeof *w->ready);
    w->status = calloc((size_t)w->cap_slots * w->n_pages, sizeof *w->status);
    if (!w->staging || !w->same || !w->words || !w->blocks || !w->slots || !w->slot_rec || !w->ready || !w->status ||
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
    free(w->ready);
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
    /* a pass takes up to n_batch / 32 new blocks, and one more per sequence */
    return apr_kvswap_new(&c->cache, c->B, c->stream, pool, c->p.n_batch / APR_KV_BLOCK + c->cache.n_seq + 1, &w);
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
