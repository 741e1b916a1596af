/* detok.c — turning token ids back into text, whole or streamed.
 *
 * A token stands for bytes, not characters: an emoji of four bytes may be
 * spread over two tokens, and a model can emit byte tokens that never form
 * valid UTF-8. Both paths here run the bytes through one UTF-8 validator
 * that keeps an incomplete sequence back until it is complete (or proves
 * invalid), and writes U+FFFD for each maximal invalid subpart, the practice
 * the Unicode Standard recommends (section 3.9, "U+FFFD Substitution of
 * Maximal Subparts"), which is also what Python's "replace" and WHATWG
 * decoders do. So the streamed text and the whole text are the same bytes,
 * and both are always valid UTF-8.
 */
#include "model/tokenizer.h"

#include "core/error.h"
#include "model/unicode.h"
#include "trace/trace.h"

#include <stdlib.h>
#include <string.h>

static const char REPLACEMENT[3] = { (char)0xEF, (char)0xBF, (char)0xBD };   /* U+FFFD */

/* ===================================================================== */
/* Output and the UTF-8 validator                                        */
/* ===================================================================== */

/* Where text goes: a fixed buffer that counts what does not fit, or (grow)
 * one that is enlarged as needed. */
typedef struct sink {
    char *buf;
    size_t cap, len;
    int grow;
    int failed;        /* growing ran out of memory */
} sink;

static void put(sink *o, const char *s, size_t n)
{
    if (o->grow && o->len + n + 1 > o->cap && !o->failed) {
        size_t cap = o->cap ? o->cap : 64;
        while (cap < o->len + n + 1) cap *= 2;
        char *p = realloc(o->buf, cap);
        if (p) {
            o->buf = p;
            o->cap = cap;
        } else {
            o->failed = 1;
        }
    }
    if (o->len < o->cap) memcpy(o->buf + o->len, s, o->len + n <= o->cap ? n : o->cap - o->len);
    o->len += n;
}

/* The bytes of a sequence begun but not finished. */
typedef struct utf8_state {
    uint8_t held[4];
    unsigned n_held, need;   /* bytes held, and how many more the sequence needs */
    uint8_t lo, hi;          /* the range the second byte must fall in */
} utf8_state;

static void feed_byte(utf8_state *u, sink *o, uint8_t b)
{
    if (u->need) {
        uint8_t lo = u->n_held == 1 ? u->lo : 0x80, hi = u->n_held == 1 ? u->hi : 0xBF;
        if (b >= lo && b <= hi) {
            u->held[u->n_held++] = b;
            if (--u->need == 0) {
                put(o, (const char *)u->held, u->n_held);
                u->n_held = 0;
            }
            return;
        }
        /* The held bytes are a maximal subpart: one U+FFFD, and b starts over. */
        put(o, REPLACEMENT, 3);
        u->n_held = u->need = 0;
    }
    unsigned len = apr_utf8_sequence(b, &u->lo, &u->hi);
    if (len == 1) {
        put(o, (const char *)&b, 1);
    } else if (len == 0) {
        put(o, REPLACEMENT, 3);
    } else {
        u->held[0] = b;
        u->n_held = 1;
        u->need = len - 1;
    }
}

static void feed(utf8_state *u, sink *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        /* ASCII outside a sequence is most of any text: copy runs of it. */
        if (b < 0x80 && !u->need) {
            size_t j = i + 1;
            while (j < n && (uint8_t)s[j] < 0x80) j++;
            put(o, s + i, j - i);
            i = j - 1;
            continue;
        }
        feed_byte(u, o, b);
    }
}

static void finish(utf8_state *u, sink *o)
{
    if (u->need) put(o, REPLACEMENT, 3);
    u->n_held = u->need = 0;
}

static apr_status check_id(const apr_tokenizer *t, int32_t id)
{
    APR_CHECK(id >= 0 && id < t->n_vocab, APR_ERR_RANGE, "token id %d is outside the vocabulary (0..%d)", id,
              t->n_vocab - 1);
    return APR_OK;
}

static void feed_token(const apr_tokenizer *t, int flags, utf8_state *u, sink *o, int32_t id)
{
    if ((flags & APR_DETOK_SKIP_CONTROL) && t->type[id] == APR_TOKEN_CONTROL) return;
    size_t n;
    const char *piece = apr_tokenizer_piece_of(t, id, &n);
    feed(u, o, piece, n);
}

/* ===================================================================== */
/* Whole                                                                 */
/* ===================================================================== */

apr_status apr_detokenize(const apr_tokenizer *t, const int32_t *ids, size_t n, int flags, char *buf, size_t cap,
                          size_t *n_out)
{
    APR_CHECK(t && n_out, APR_ERR_INVALID, "apr_detokenize: NULL tokenizer or n_out");
    APR_CHECK(ids || n == 0, APR_ERR_INVALID, "apr_detokenize: NULL ids");
    APR_CHECK(buf || cap == 0, APR_ERR_INVALID, "apr_detokenize: NULL buf with cap %zu", cap);
    *n_out = 0;
    for (size_t i = 0; i < n; i++) APR_TRY(check_id(t, ids[i]));
    utf8_state u = { 0 };
    sink o = { .buf = buf, .cap = cap };
    for (size_t i = 0; i < n; i++) feed_token(t, flags, &u, &o, ids[i]);
    finish(&u, &o);
    *n_out = o.len;
    return APR_OK;
}

/* ===================================================================== */
/* Streaming                                                             */
/* ===================================================================== */

struct apr_detok {
    const apr_tokenizer *t;
    int flags;
    utf8_state u;
    sink out;            /* the text of the last push, NUL-terminated */
};

apr_status apr_detok_new(const apr_tokenizer *t, int flags, apr_detok **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_detok_new: out is NULL");
    *out = NULL;
    APR_CHECK(t, APR_ERR_INVALID, "apr_detok_new: no tokenizer");
    apr_detok *d = calloc(1, sizeof *d);
    APR_CHECK(d, APR_ERR_NOMEM, "detokenizer: out of memory");
    d->t = t;
    d->flags = flags;
    d->out.grow = 1;
    *out = d;
    return APR_OK;
}

void apr_detok_free(apr_detok *d)
{
    if (!d) return;
    free(d->out.buf);
    free(d);
}

/* Hands out what the sink holds as a NUL-terminated string. */
static apr_status deliver(apr_detok *d, const char **text, size_t *len)
{
    put(&d->out, "", 1);
    APR_CHECK(!d->out.failed, APR_ERR_NOMEM, "detokenizer: out of memory");
    *text = d->out.buf;
    *len = d->out.len - 1;
    return APR_OK;
}

apr_status apr_detok_push(apr_detok *d, int32_t id, const char **text, size_t *len)
{
    APR_CHECK(d && text && len, APR_ERR_INVALID, "apr_detok_push: NULL argument");
    APR_TRY(check_id(d->t, id));
    d->out.len = 0;
    d->out.failed = 0;
    APR_TRACE_BEGIN(APR_SPAN_DETOKENIZE);
    feed_token(d->t, d->flags, &d->u, &d->out, id);
    apr_status st = deliver(d, text, len);
    APR_TRACE_END(APR_SPAN_DETOKENIZE);
    return st;
}

apr_status apr_detok_flush(apr_detok *d, const char **text, size_t *len)
{
    APR_CHECK(d && text && len, APR_ERR_INVALID, "apr_detok_flush: NULL argument");
    d->out.len = 0;
    d->out.failed = 0;
    finish(&d->u, &d->out);
    return deliver(d, text, len);
}

void apr_detok_reset(apr_detok *d)
{
    if (d) d->u = (utf8_state){ 0 };
}
