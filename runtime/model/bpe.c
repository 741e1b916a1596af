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
 */
#include "model/tokenizer.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* Text between two checks of Ctrl+C (apr_interrupted). */
#define POLL_BYTES (1u << 20)
#define DEAD INT32_MIN

/* One symbol of the piece being merged: a token and its neighbours, as a
 * doubly-linked list over the piece's byte positions. A merged-away symbol
 * has id DEAD; a byte the vocabulary has no token for has id -1, merges
 * with nothing and is dropped from the output. */
typedef struct symbol {
    int32_t id, prev, next;
} symbol;

typedef struct encoder {
    const apr_tokenizer *t;
    int32_t *ids;            /* output: the first cap ids */
    size_t cap, n;           /* n counts every id, written or not */
    symbol *sym;             /* [room] */
    uint64_t *heap;          /* [3 * room] (rank << 32 | position) */
    size_t room;             /* longest piece the scratch holds */
    char *spelled;           /* [2 * room] a piece in vocabulary spelling (ignore_merges) */
    size_t since_poll;
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

static apr_status encode_piece(encoder *e, const uint8_t *s, size_t n)
{
    const apr_tokenizer *t = e->t;
    if (n == 1) {
        emit(e, t->byte_token[s[0]]);
        return APR_OK;
    }
    APR_TRY(reserve(e, n));
    if (t->ignore_merges) {
        size_t len = 0, i;
        for (i = 0; i < n && t->byte_token[s[i]] >= 0; i++) {
            const char *c = t->text + t->text_at[t->byte_token[s[i]]];
            for (size_t k = 0; c[k]; k++) e->spelled[len++] = c[k];
        }
        int32_t whole = i == n ? apr_tokenizer_find(t, e->spelled, len) : -1;
        if (whole >= 0) {
            emit(e, whole);
            return APR_OK;
        }
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
    for (int32_t i = 0; i >= 0; i = sym[i].next) emit(e, sym[i].id);
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

    encoder e = { .t = t, .ids = ids, .cap = cap };
    if (flags & APR_TOKENIZE_ADD_BOS) emit(&e, t->bos);
    const uint8_t *s = (const uint8_t *)text;
    apr_status st = flags & APR_TOKENIZE_SPECIAL ? encode_with_specials(&e, s, len) : encode_text(&e, s, len);
    free(e.sym);
    free(e.heap);
    free(e.spelled);
    if (st == APR_OK) *n_out = e.n;
    return st;
}
