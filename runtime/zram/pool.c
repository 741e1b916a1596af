/* pool.c — the compressed page pool: entries and handles, the LRU list, the
 * cap, and put/get/drop.
 *
 * A handle is an entry's index (plus one, so 0 is never a handle) and the
 * entry's generation, which is bumped whenever the entry lets go of its
 * page: a handle whose page was dropped or evicted names nothing even after
 * the entry holds another page (until the 21-bit generation wraps, after
 * two million reuses of one entry). Handles stay below 2^53, so Lua keeps
 * them as plain numbers.
 *
 * One mutex covers the entries, the LRU list and the slabs. The costly
 * parts run outside it: a put checks and compresses the page before taking
 * the lock and only copies the result into a slot under it; a get copies
 * the stored bytes out under the lock and decompresses after letting go.
 *
 * The cap counts the slabs' memory and one entry per page held (host_bytes
 * in apr_zram_stats). A put that needs a new slab, or would pass the cap
 * with its entry, first evicts pages from the cold end of the LRU list
 * until it fits; a slab is given back when its last page goes, so evicting
 * makes room even when the pages evicted are of another size class. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "zram/codec.h"
#include "zram/same.h"
#include "zram/slab.h"

typedef struct entry {
    union {
        uint64_t word;      /* ZRAM_SAME: the repeated word */
        zram_slab *slab;    /* otherwise: the slab holding the stored bytes */
    } u;
    uint64_t hash;          /* XXH3 of the page, checked when it comes back */
    uint32_t size;          /* stored bytes (0 for ZRAM_SAME) */
    uint32_t gen;           /* generation, in handles' upper bits */
    int32_t prev, next;     /* the LRU list (most recent at lru_head); next also chains free entries */
    uint8_t kind;           /* 0: free, else ZRAM_SAME .. ZRAM_ZSTD */
    uint8_t slot;           /* the slot in the slab */
} entry;

_Static_assert(sizeof(entry) == 40, "apr.h documents a 40-byte entry per page");

#define GEN_BITS 21
#define GEN_MASK ((1u << GEN_BITS) - 1)
#define MAX_ENTRIES INT32_MAX
#define MAX_PAGE_BYTES (64ull << 20)

struct apr_zram {
    apr_zram_params p;
    int codec;              /* ZRAM_LZ4 or ZRAM_ZSTD */
    pthread_mutex_t mu;
    entry *e;
    int32_t n_e, cap_e;     /* entries made, and room for */
    int32_t free_head;      /* entries holding nothing (-1: none) */
    int32_t lru_head, lru_tail;
    zram_slabs slabs;

    /* counters (under mu) */
    uint64_t pages, same_pages, raw_pages, stored_bytes;
    uint64_t puts, gets, drops, same_hits, evictions, misses;
    /* counters updated outside mu */
    _Atomic uint64_t corrupt, compressed_in, compress_ns, decompressed_out, decompress_ns;
};

/* ===================================================================== */
/* Helpers (called with mu held)                                         */
/* ===================================================================== */

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t host_bytes(const apr_zram *z) { return z->slabs.bytes + z->pages * sizeof(entry); }

static uint64_t make_handle(int32_t i, uint32_t gen) { return (uint64_t)(gen & GEN_MASK) << 32 | (uint64_t)(i + 1); }

/* The entry a handle names, or NULL when it names no page. */
static entry *lookup(apr_zram *z, uint64_t handle)
{
    uint64_t i = (handle & 0xffffffffu) - 1;
    if ((handle & 0xffffffffu) == 0 || i >= (uint64_t)z->n_e || handle >> (32 + GEN_BITS)) return NULL;
    entry *e = &z->e[i];
    if (!e->kind || (e->gen & GEN_MASK) != (uint32_t)(handle >> 32)) return NULL;
    return e;
}

static void lru_unlink(apr_zram *z, entry *e)
{
    if (e->prev >= 0) z->e[e->prev].next = e->next;
    else z->lru_head = e->next;
    if (e->next >= 0) z->e[e->next].prev = e->prev;
    else z->lru_tail = e->prev;
    e->prev = e->next = -1;
}

static void lru_push_head(apr_zram *z, int32_t i)
{
    entry *e = &z->e[i];
    e->prev = -1;
    e->next = z->lru_head;
    if (z->lru_head >= 0) z->e[z->lru_head].prev = i;
    z->lru_head = i;
    if (z->lru_tail < 0) z->lru_tail = i;
}

/* Lets go of entry e's page and returns the entry to the free list. */
static void release(apr_zram *z, entry *e)
{
    lru_unlink(z, e);
    if (e->kind == ZRAM_SAME) z->same_pages--;
    else {
        if (e->kind == ZRAM_RAW) z->raw_pages--;
        z->stored_bytes -= e->size;
        zram_slabs_free(&z->slabs, e->u.slab, e->slot);
    }
    z->pages--;
    e->kind = 0;
    e->gen = (e->gen + 1) & GEN_MASK;
    e->next = z->free_head;
    z->free_head = (int32_t)(e - z->e);
}

/* A free entry's index, or -1 when the table cannot grow. */
static int32_t take_entry(apr_zram *z)
{
    if (z->free_head >= 0) {
        int32_t i = z->free_head;
        z->free_head = z->e[i].next;
        return i;
    }
    if (z->n_e == z->cap_e) {
        if (z->cap_e >= MAX_ENTRIES / 2) return -1;
        int32_t cap = z->cap_e ? z->cap_e * 2 : 1024;
        entry *e = realloc(z->e, (size_t)cap * sizeof *e);
        if (!e) return -1;
        z->e = e;
        z->cap_e = cap;
    }
    z->e[z->n_e] = (entry){ .prev = -1, .next = -1 };
    return z->n_e++;
}

/* ===================================================================== */
/* Lifecycle                                                             */
/* ===================================================================== */

void apr_zram_params_default(apr_zram_params *p)
{
    *p = (apr_zram_params){ .algo = APR_ZRAM_LZ4, .level = 0, .page_bytes = 4096, .max_bytes = 0 };
}

const char *apr_zram_algo_name(int algo)
{
    return algo == APR_ZRAM_LZ4 ? "lz4" : algo == APR_ZRAM_ZSTD ? "zstd" : NULL;
}

apr_status apr_zram_new(const apr_zram_params *p, apr_zram **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "zram: out is NULL");
    *out = NULL;
    apr_zram_params d;
    apr_zram_params_default(&d);
    if (!p) p = &d;
    APR_CHECK(p->algo == APR_ZRAM_LZ4 || p->algo == APR_ZRAM_ZSTD, APR_ERR_INVALID,
              "zram: unknown algorithm %d (lz4 or zstd)", p->algo);
    APR_CHECK(p->page_bytes >= 8 && p->page_bytes % 8 == 0 && p->page_bytes <= MAX_PAGE_BYTES, APR_ERR_INVALID,
              "zram: page size %llu must be a multiple of 8 from 8 to 64 MiB", (unsigned long long)p->page_bytes);
    APR_CHECK(p->level >= 0 && p->level <= (p->algo == APR_ZRAM_ZSTD ? 22 : 65537), APR_ERR_INVALID,
              "zram: level %d out of range for %s", p->level, apr_zram_algo_name(p->algo));
    apr_zram *z = calloc(1, sizeof *z);
    APR_CHECK(z, APR_ERR_NOMEM, "zram: out of memory");
    z->p = *p;
    z->codec = p->algo == APR_ZRAM_ZSTD ? ZRAM_ZSTD : ZRAM_LZ4;
    z->free_head = z->lru_head = z->lru_tail = -1;
    zram_slabs_init(&z->slabs, (uint32_t)p->page_bytes);
    pthread_mutex_init(&z->mu, NULL);
    *out = z;
    return APR_OK;
}

void apr_zram_free(apr_zram *z)
{
    if (!z) return;
    for (int32_t i = 0; i < z->n_e; i++)
        if (z->e[i].kind) release(z, &z->e[i]);
    zram_slabs_release(&z->slabs);
    pthread_mutex_destroy(&z->mu);
    free(z->e);
    free(z);
}

/* ===================================================================== */
/* Put, get, drop                                                        */
/* ===================================================================== */

/* A per-thread buffer for compressed bytes, grown as pages need. */
static _Thread_local struct { void *p; size_t n; } scratch;
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_key_make(void) { pthread_key_create(&scratch_key, free); }

static void *scratch_get(size_t n)
{
    if (scratch.n >= n) return scratch.p;
    pthread_once(&scratch_once, scratch_key_make);
    void *p = realloc(scratch.p, n);
    if (!p) return NULL;
    scratch.p = p;
    scratch.n = n;
    pthread_setspecific(scratch_key, p);  /* freed when the thread ends */
    return p;
}

/* Enters a page whose stored form `fresh` (kind, size, hash or word) and
 * bytes (`stored`, size bytes; NULL for ZRAM_SAME) are ready: makes room
 * under the cap, takes an entry and a slot, copies the bytes in. */
static apr_status insert(apr_zram *z, entry fresh, const void *stored, uint64_t *handle)
{
    pthread_mutex_lock(&z->mu);
    const int c = fresh.kind == ZRAM_SAME ? -1 : zram_slabs_class(&z->slabs, fresh.size);
    /* Make room under the cap, coldest pages first. */
    for (;;) {
        uint64_t need = sizeof(entry) + (c >= 0 ? zram_slabs_growth(&z->slabs, c) : 0);
        if (!z->p.max_bytes || host_bytes(z) + need <= z->p.max_bytes) break;
        if (z->lru_tail < 0) {
            pthread_mutex_unlock(&z->mu);
            return apr_error(APR_ERR_NOMEM, "zram put: a page needing %llu bytes does not fit under the cap of %llu",
                             (unsigned long long)need, (unsigned long long)z->p.max_bytes);
        }
        release(z, &z->e[z->lru_tail]);
        z->evictions++;
    }
    int32_t i = take_entry(z);
    if (i < 0) {
        pthread_mutex_unlock(&z->mu);
        return apr_error(APR_ERR_NOMEM, "zram put: out of memory for the page table");
    }
    entry *e = &z->e[i];
    uint32_t gen = e->gen;
    if (c >= 0) {
        void *mem = zram_slabs_alloc(&z->slabs, c, &fresh.u.slab, &fresh.slot);
        if (!mem) {
            e->next = z->free_head;
            z->free_head = i;
            pthread_mutex_unlock(&z->mu);
            return apr_error(APR_ERR_NOMEM, "zram put: out of memory for a slab");
        }
        memcpy(mem, stored, fresh.size);
        z->stored_bytes += fresh.size;
        if (fresh.kind == ZRAM_RAW) z->raw_pages++;
    } else {
        z->same_pages++;
        z->same_hits++;
    }
    fresh.gen = gen;
    *e = fresh;
    lru_push_head(z, i);
    z->pages++;
    z->puts++;
    *handle = make_handle(i, gen);
    pthread_mutex_unlock(&z->mu);
    return APR_OK;
}

apr_status apr_zram_put(apr_zram *z, const void *page, uint64_t *handle)
{
    APR_CHECK(handle, APR_ERR_INVALID, "zram put: handle is NULL");
    *handle = 0;
    APR_CHECK(z && page, APR_ERR_INVALID, "zram put: NULL pool or page");
    const size_t pb = z->p.page_bytes;

    /* Outside the lock: the same-filled check, or the hash and compression. */
    entry fresh = { .prev = -1, .next = -1 };
    const void *stored = NULL;
    if (apr_zram_same_filled(page, pb, &fresh.u.word)) {
        fresh.kind = ZRAM_SAME;
    } else {
        fresh.hash = apr_zram_page_hash(page, pb);
        size_t cap = zram_slabs_max_compressed(&z->slabs);
        size_t n = 0;
        void *buf = cap ? scratch_get(cap) : NULL;
        if (buf) {
            apr_zram_codec_prepare(z->codec);
            uint64_t t0 = now_ns();
            n = apr_zram_compress(z->codec, z->p.level, page, pb, buf, cap);
            atomic_fetch_add_explicit(&z->compressed_in, pb, memory_order_relaxed);
            atomic_fetch_add_explicit(&z->compress_ns, now_ns() - t0, memory_order_relaxed);
        }
        fresh.kind = n ? (uint8_t)z->codec : ZRAM_RAW;
        fresh.size = n ? (uint32_t)n : (uint32_t)pb;
        stored = n ? buf : page;
    }
    return insert(z, fresh, stored, handle);
}

apr_status apr_zram_put_word(apr_zram *z, uint64_t word, uint64_t *handle)
{
    APR_CHECK(handle, APR_ERR_INVALID, "zram put: handle is NULL");
    *handle = 0;
    APR_CHECK(z, APR_ERR_INVALID, "zram put: NULL pool");
    entry fresh = { .prev = -1, .next = -1, .kind = ZRAM_SAME };
    fresh.u.word = word;
    return insert(z, fresh, NULL, handle);
}

int apr_zram_same_word(apr_zram *z, uint64_t handle, uint64_t *word)
{
    if (!z || !word) return 0;
    pthread_mutex_lock(&z->mu);
    entry *e = lookup(z, handle);
    int same = e && e->kind == ZRAM_SAME;
    if (same) {
        *word = e->u.word;
        lru_unlink(z, e);
        lru_push_head(z, (int32_t)(e - z->e));
        z->gets++;
    }
    pthread_mutex_unlock(&z->mu);
    return same;
}

apr_status apr_zram_get(apr_zram *z, uint64_t handle, void *page)
{
    APR_CHECK(z && page, APR_ERR_INVALID, "zram get: NULL pool or page");
    const size_t pb = z->p.page_bytes;
    pthread_mutex_lock(&z->mu);
    entry *e = lookup(z, handle);
    if (!e) {
        z->misses++;
        pthread_mutex_unlock(&z->mu);
        return apr_error(APR_ERR_NOT_FOUND, "zram get: handle %llu names no page (dropped, or evicted under the cap)",
                         (unsigned long long)handle);
    }
    lru_unlink(z, e);
    lru_push_head(z, (int32_t)(e - z->e));
    z->gets++;
    const int kind = e->kind;
    const uint64_t word = e->u.word, hash = e->hash;
    const size_t n = e->size;
    const void *stored = NULL;
    if (kind == ZRAM_RAW) {
        /* raw pages go straight to the caller: one copy, checked below */
        memcpy(page, zram_slabs_at(e->u.slab, e->slot), n);
    } else if (kind != ZRAM_SAME) {
        void *buf = scratch_get(n);
        if (!buf) {
            pthread_mutex_unlock(&z->mu);
            return apr_error(APR_ERR_NOMEM, "zram get: out of memory");
        }
        memcpy(buf, zram_slabs_at(e->u.slab, e->slot), n);
        stored = buf;
    }
    pthread_mutex_unlock(&z->mu);

    apr_status s;
    if (kind == ZRAM_RAW) {
        s = apr_zram_page_hash(page, pb) == hash
                ? APR_OK
                : apr_error(APR_ERR_FORMAT, "zram: page content does not match its checksum (corrupt in memory)");
    } else {
        if (kind != ZRAM_SAME) apr_zram_codec_prepare(kind);
        uint64_t t0 = kind == ZRAM_SAME ? 0 : now_ns();
        s = apr_zram_decode(kind, stored, n, word, page, pb, hash);
        if (kind != ZRAM_SAME && s == APR_OK) {
            atomic_fetch_add_explicit(&z->decompressed_out, pb, memory_order_relaxed);
            atomic_fetch_add_explicit(&z->decompress_ns, now_ns() - t0, memory_order_relaxed);
        }
    }
    if (s != APR_OK) atomic_fetch_add_explicit(&z->corrupt, 1, memory_order_relaxed);
    return s;
}

apr_status apr_zram_drop(apr_zram *z, uint64_t handle)
{
    APR_CHECK(z, APR_ERR_INVALID, "zram drop: NULL pool");
    pthread_mutex_lock(&z->mu);
    entry *e = lookup(z, handle);
    if (!e) {
        z->misses++;
        pthread_mutex_unlock(&z->mu);
        return apr_error(APR_ERR_NOT_FOUND, "zram drop: handle %llu names no page (dropped, or evicted under the cap)",
                         (unsigned long long)handle);
    }
    release(z, e);
    z->drops++;
    pthread_mutex_unlock(&z->mu);
    return APR_OK;
}

int apr_zram_has(apr_zram *z, uint64_t handle)
{
    if (!z) return 0;
    pthread_mutex_lock(&z->mu);
    int r = lookup(z, handle) != NULL;
    pthread_mutex_unlock(&z->mu);
    return r;
}

/* ===================================================================== */
/* Stats                                                                 */
/* ===================================================================== */

void apr_zram_get_stats(apr_zram *z, apr_zram_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!z) return;
    pthread_mutex_lock(&z->mu);
    out->page_bytes = z->p.page_bytes;
    out->max_bytes = z->p.max_bytes;
    out->pages = z->pages;
    out->same_pages = z->same_pages;
    out->raw_pages = z->raw_pages;
    out->stored_bytes = z->stored_bytes;
    out->slab_bytes = z->slabs.bytes;
    out->host_bytes = host_bytes(z);
    out->puts = z->puts;
    out->gets = z->gets;
    out->drops = z->drops;
    out->same_hits = z->same_hits;
    out->evictions = z->evictions;
    out->misses = z->misses;
    pthread_mutex_unlock(&z->mu);
    out->corrupt = atomic_load(&z->corrupt);
    out->compressed_in = atomic_load(&z->compressed_in);
    out->compress_ns = atomic_load(&z->compress_ns);
    out->decompressed_out = atomic_load(&z->decompressed_out);
    out->decompress_ns = atomic_load(&z->decompress_ns);
    out->ratio = out->host_bytes ? (double)out->pages * (double)out->page_bytes / (double)out->host_bytes : 0;
    out->compress_gbs = out->compress_ns ? (double)out->compressed_in / (double)out->compress_ns : 0;
    out->decompress_gbs = out->decompress_ns ? (double)out->decompressed_out / (double)out->decompress_ns : 0;
}
