/* bpe.c — encoding text into token ids (apr_tokenize).
 *
 * The text is cut at special tokens (when allowed), split into pieces by the
 * pre-tokenizer, and each piece is encoded by byte-pair merging: it starts
 * as one token per byte, and the adjacent pair whose merge has the lowest
 * rank is merged, again and again, until no adjacent pair has a merge. Ties
 * (the same pair twice) go to the leftmost, as in Hugging Face tokenizers
 * and llama.cpp. A min-heap of (rank, position) finds the next merge, so a
 * piece of n bytes costs O(n log n) even when it is a megabyte of one
 * letter; stale heap entries are recognised and skipped when popped.
 *
 * Text repeats its words (source code above all), so each call keeps a cache
 * from short pieces to their ids: on 1 MB of C, Lua and headers, 93% of the
 * pieces longer than a byte are found there, which halves the time. The cache belongs
 * to the call, so a tokenizer stays immutable and shareable by threads.
 */
#include "model/tokenizer.h"

#include "core/error.h"
#include "trace/trace.h"

#include <stdlib.h>
#include <string.h>

/* Text between two checks of Ctrl+C (apr_interrupted). */
#define POLL_BYTES (1u << 20)
#define DEAD INT32_MIN
/* Pieces up to this many bytes are cached; longer ones rarely repeat. */
#define CACHE_MAX_PIECE 48
#define CACHE_MIN_SLOTS 1024
#define CACHE_MAX_SLOTS (1u << 17)

/* One symbol of the piece being merged: a token and its neighbours, as a
 * doubly-linked list over the piece's byte positions. A merged-away symbol
 * has id DEAD; a byte the vocabulary has no token for has id -1, merges
 * with nothing and is dropped from the output. */
typedef struct symbol {
    int32_t id, prev, next;
} symbol;

/* A cached piece: its bytes (in the caller's text, alive for the call) and
 * its ids (in the encoder's pool). piece == NULL marks an empty slot. */
typedef struct cache_entry {
    const uint8_t *piece;
    uint32_t len, hash;
    uint32_t ids_at, n_ids;
} cache_entry;

typedef struct encoder {
    const apr_tokenizer *t;
    int32_t *ids;            /* output: the first cap ids */
    size_t cap, n;           /* n counts every id, written or not */
    symbol *sym;             /* [room] */
    uint64_t *heap;          /* [3 * room] (rank << 32 | position) */
    size_t room;             /* longest piece the scratch holds */
    char *spelled;           /* [2 * room] a piece in vocabulary spelling (ignore_merges) */
    size_t since_poll;
    cache_entry *cache;      /* open addressing, cache_mask + 1 slots */
    size_t cache_mask, cache_used;
    int32_t *pool;           /* ids of the pieces just merged and of the cached ones */
    size_t pool_len, pool_cap;
} encoder;

static void emit(encoder *e, int32_t id)
{
    if (id < 0) return;
    if (e->n < e->cap) e->ids[e->n] = id;
    e->n++;
}

static apr_status reserve(encoder *e, size_t n)
{
    if (n <= e->room) return APR_OK;
    size_t room = e->room ? e->room : 64;
    while (room < n) room *= 2;
    symbol *sym = realloc(e->sym, room * sizeof *sym);
    if (sym) e->sym = sym;
    uint64_t *heap = realloc(e->heap, 3 * room * sizeof *heap);
    if (heap) e->heap = heap;
    char *spelled = realloc(e->spelled, 2 * room);
    if (spelled) e->spelled = spelled;
    APR_CHECK(sym && heap && spelled, APR_ERR_NOMEM, "tokenize: out of memory for a piece of %zu bytes", n);
    e->room = room;
    return APR_OK;
}

/* ===================================================================== */
/* The merge loop                                                        */
/* ===================================================================== */

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h[parent] <= v) break;
        h[i] = h[parent];
        i = parent;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], last = h[--*n];
    size_t i = 0, len = *n;
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) break;
        if (child + 1 < len && h[child + 1] < h[child]) child++;
        if (last <= h[child]) break;
        h[i] = h[child];
        i = child;
    }
    if (len) h[i] = last;
    return top;
}

/* Queues the merge of symbol i with its right neighbour, if there is one. */
static void queue_pair(encoder *e, size_t *heap_len, int32_t i)
{
    int32_t j = e->sym[i].next;
    if (j < 0) return;
    const apr_merge_slot *m = apr_merge_find(e->t, e->sym[i].id, e->sym[j].id);
    if (m) heap_push(e->heap, heap_len, (uint64_t)m->rank << 32 | (uint32_t)i);
}

static apr_status pool_push(encoder *e, int32_t id)
{
    if (e->pool_len == e->pool_cap) {
        size_t cap = e->pool_cap ? 2 * e->pool_cap : 4096;
        int32_t *p = realloc(e->pool, cap * sizeof *p);
        APR_CHECK(p, APR_ERR_NOMEM, "tokenize: out of memory");
        e->pool = p;
        e->pool_cap = cap;
    }
    e->pool[e->pool_len++] = id;
    return APR_OK;
}

/* Appends the ids of piece s[0..n) (n >= 2) to the pool. */
static apr_status merge_piece(encoder *e, const uint8_t *s, size_t n)
{
    const apr_tokenizer *t = e->t;
    APR_TRY(reserve(e, n));
    if (t->ignore_merges) {
        size_t len = 0, i;
        for (i = 0; i < n && t->byte_token[s[i]] >= 0; i++) {
            const char *c = t->text + t->text_at[t->byte_token[s[i]]];
            for (size_t k = 0; c[k]; k++) e->spelled[len++] = c[k];
        }
        int32_t whole = i == n ? apr_tokenizer_find(t, e->spelled, len) : -1;
        if (whole >= 0) return pool_push(e, whole);
    }

    symbol *sym = e->sym;
    for (size_t i = 0; i < n; i++)
        sym[i] = (symbol){ t->byte_token[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1 };
    size_t heap_len = 0;
    for (size_t i = 0; i + 1 < n; i++) queue_pair(e, &heap_len, (int32_t)i);

    while (heap_len) {
        uint64_t top = heap_pop(e->heap, &heap_len);
        int32_t i = (int32_t)(uint32_t)top, j = sym[i].next;
        if (sym[i].id == DEAD || j < 0) continue;
        /* Stale if either symbol changed since the entry was queued: the
         * pair it names now has another rank, or none. */
        const apr_merge_slot *m = apr_merge_find(t, sym[i].id, sym[j].id);
        if (!m || m->rank != (uint32_t)(top >> 32)) continue;
        sym[i].id = m->id;
        sym[i].next = sym[j].next;
        if (sym[j].next >= 0) sym[sym[j].next].prev = i;
        sym[j].id = DEAD;
        if (sym[i].prev >= 0) queue_pair(e, &heap_len, sym[i].prev);
        queue_pair(e, &heap_len, i);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next)
        if (sym[i].id >= 0) APR_TRY(pool_push(e, sym[i].id));
    return APR_OK;
}

/* ===================================================================== */
/* The piece cache                                                       */
/* ===================================================================== */

static uint32_t hash_piece(const uint8_t *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 16777619u;
    return h;
}

/* The slot holding the piece, or the empty slot where it belongs; NULL if
 * the cache could not be allocated (encoding goes on without it). */
static cache_entry *cache_slot(encoder *e, const uint8_t *s, size_t n, uint32_t h)
{
    if (!e->cache) {
        e->cache = calloc(CACHE_MIN_SLOTS, sizeof *e->cache);
        if (!e->cache) return NULL;
        e->cache_mask = CACHE_MIN_SLOTS - 1;
    }
    for (size_t i = h & e->cache_mask;; i = (i + 1) & e->cache_mask) {
        cache_entry *c = &e->cache[i];
        if (!c->piece || (c->hash == h && c->len == n && memcmp(c->piece, s, n) == 0)) return c;
    }
}

/* Doubles the table when half full, up to CACHE_MAX_SLOTS; past that no
 * more pieces are added (cache_insert checks). */
static void cache_grow(encoder *e)
{
    size_t slots = e->cache_mask + 1;
    if (2 * e->cache_used < slots || slots >= CACHE_MAX_SLOTS) return;
    cache_entry *bigger = calloc(2 * slots, sizeof *bigger);
    if (!bigger) return;
    size_t mask = 2 * slots - 1;
    for (size_t i = 0; i < slots; i++) {
        cache_entry *c = &e->cache[i];
        if (!c->piece) continue;
        size_t k = c->hash & mask;
        while (bigger[k].piece) k = (k + 1) & mask;
        bigger[k] = *c;
    }
    free(e->cache);
    e->cache = bigger;
    e->cache_mask = mask;
}

static apr_status encode_piece(encoder *e, const uint8_t *s, size_t n)
{
    if (n == 1) {
        emit(e, e->t->byte_token[s[0]]);
        return APR_OK;
    }
    cache_entry *slot = NULL;
    uint32_t h = 0;
    if (n <= CACHE_MAX_PIECE) {
        h = hash_piece(s, n);
        slot = cache_slot(e, s, n, h);
        if (slot && slot->piece) {
            for (uint32_t k = 0; k < slot->n_ids; k++) emit(e, e->pool[slot->ids_at + k]);
            return APR_OK;
        }
    }
    size_t first = e->pool_len;
    APR_TRY(merge_piece(e, s, n));
    for (size_t k = first; k < e->pool_len; k++) emit(e, e->pool[k]);
    /* Keep the ids if the piece has a slot and the table may still fill. */
    if (slot && 2 * e->cache_used < e->cache_mask + 1) {
        *slot = (cache_entry){ s, (uint32_t)n, h, (uint32_t)first, (uint32_t)(e->pool_len - first) };
        e->cache_used++;
        cache_grow(e);
    } else {
        e->pool_len = first;
    }
    return APR_OK;
}

/* ===================================================================== */
/* Text                                                                  */
/* ===================================================================== */

/* Plain text: pieces from the pre-tokenizer, each merged on its own. */
static apr_status encode_text(encoder *e, const uint8_t *s, size_t n)
{
    for (size_t pos = 0; pos < n;) {
        size_t end = apr_pretok_next(e->t->pre, s, n, pos);
        APR_TRY(encode_piece(e, s + pos, end - pos));
        e->since_poll += end - pos;
        if (e->since_poll >= POLL_BYTES) {
            e->since_poll = 0;
            APR_CHECK(!apr_interrupted(), APR_ERR_CANCELLED, "tokenize: interrupted");
        }
        pos = end;
    }
    return APR_OK;
}

/* The longest special token whose text starts at s[0], or -1. */
static int32_t special_at(const apr_tokenizer *t, const uint8_t *s, size_t n, size_t *len)
{
    for (uint32_t k = t->special_from[s[0]]; k < t->special_from[s[0] + 1]; k++) {
        int32_t id = t->specials[k];
        size_t l = t->text_at[id + 1] - t->text_at[id] - 1;
        if (l <= n && memcmp(t->text + t->text_at[id], s, l) == 0) {
            *len = l;
            return id;
        }
    }
    return -1;
}

/* Text that may hold special tokens: each is emitted as itself and the
 * stretches between them are plain text. Matching is leftmost-longest. */
static apr_status encode_with_specials(encoder *e, const uint8_t *s, size_t n)
{
    const apr_tokenizer *t = e->t;
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->special_from[s[i]] == t->special_from[s[i] + 1]) continue;
        size_t len;
        int32_t id = special_at(t, s + i, n - i, &len);
        if (id < 0) continue;
        APR_TRY(encode_text(e, s + start, i - start));
        emit(e, id);
        i += len - 1;
        start = i + 1;
    }
    return encode_text(e, s + start, n - start);
}

apr_status apr_tokenize(const apr_tokenizer *t, const char *text, size_t len, int flags, int32_t *ids, size_t cap,
                        size_t *n_out)
{
    APR_CHECK(t && n_out, APR_ERR_INVALID, "apr_tokenize: NULL tokenizer or n_out");
    APR_CHECK(text || len == 0, APR_ERR_INVALID, "apr_tokenize: NULL text");
    APR_CHECK(ids || cap == 0, APR_ERR_INVALID, "apr_tokenize: NULL ids with cap %zu", cap);
    *n_out = 0;
    APR_CHECK(len <= INT32_MAX, APR_ERR_RANGE, "tokenize: a text of %zu bytes is over the 2 GiB limit", len);
    APR_CHECK(!(flags & APR_TOKENIZE_ADD_BOS) || t->bos >= 0, APR_ERR_UNSUPPORTED,
              "tokenize: BOS requested, but the vocabulary has no BOS token");

    APR_TRACE_BEGIN(APR_SPAN_TOKENIZE);
    encoder e = { .t = t, .ids = ids, .cap = cap };
    if (flags & APR_TOKENIZE_ADD_BOS) emit(&e, t->bos);
    const uint8_t *s = (const uint8_t *)text;
    apr_status st = flags & APR_TOKENIZE_SPECIAL ? encode_with_specials(&e, s, len) : encode_text(&e, s, len);
    free(e.sym);
    free(e.heap);
    free(e.spelled);
    free(e.cache);
    free(e.pool);
    APR_TRACE_END(APR_SPAN_TOKENIZE);
    if (st == APR_OK) *n_out = e.n;
    return st;
}
