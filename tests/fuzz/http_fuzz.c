/* http_fuzz.c — libFuzzer target for the HTTP/1.1 request parser.
 *
 * Besides "no crash, no leak, no out-of-bounds read" (ASan/UBSan), it checks
 * that the parser's answer does not depend on how the bytes were split
 * across reads: the input is parsed once fed whole and once fed in pieces
 * whose sizes come from the input itself, and both must yield the same
 * requests (target, body, bytes consumed) and the same final error. It also
 * checks that every view points inside what was fed and respects the
 * limits. Small limits make the 413/414/431 paths reachable. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apr.h"

#define MAX_OUT 64

typedef struct outcome {
    int n;                    /* requests */
    uint64_t hash[MAX_OUT];   /* of target, body and consumed */
    int error;                /* final HTTP status, or 0 */
} outcome;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h;
}

static void check_view(const apr_http_request *r, const apr_http_limits *lim)
{
    if (r->body_len > lim->max_body) abort();
    if (r->method_len <= 0 || r->target_len <= 0) abort();
    if (r->n_headers > lim->max_headers) abort();
    /* Touch every byte, so ASan sees any view that is out of bounds. */
    volatile unsigned char sink = 0;
    for (int i = 0; i < r->method_len; i++) sink ^= (unsigned char)r->method[i];
    for (int i = 0; i < r->target_len; i++) sink ^= (unsigned char)r->target[i];
    for (int i = 0; i < r->n_headers; i++) {
        for (int k = 0; k < r->headers[i].name_len; k++) sink ^= (unsigned char)r->headers[i].name[k];
        for (int k = 0; k < r->headers[i].value_len; k++) sink ^= (unsigned char)r->headers[i].value[k];
    }
    for (uint64_t i = 0; i < r->body_len; i++) sink ^= (unsigned char)r->body[i];
    (void)sink;
}

/* Takes everything the parser can give now; returns 0 once it failed. */
static int drain(apr_http_parser *p, const apr_http_limits *lim, outcome *o, uint64_t *consumed, uint64_t fed)
{
    apr_http_request r;
    for (;;) {
        int res = apr_http_parser_next(p, &r);
        if (res == APR_HTTP_NEED_MORE) return 1;
        if (res == APR_HTTP_ERROR) {
            if (r.status < 400 || r.status > 599 || !r.error) abort();
            o->error = r.status;
            return 0;
        }
        check_view(&r, lim);
        if (res == APR_HTTP_HEAD) continue;
        *consumed += r.consumed;
        if (*consumed > fed) abort();
        if (o->n < MAX_OUT) {
            uint64_t h = fnv(1469598103934665603ull, r.target, (size_t)r.target_len);
            h = fnv(h, r.body, (size_t)r.body_len);
            h = fnv(h, &r.consumed, sizeof r.consumed);
            o->hash[o->n] = h;
        }
        o->n++;
    }
}

static void run(const uint8_t *data, size_t size, const apr_http_limits *lim, int split, outcome *o)
{
    memset(o, 0, sizeof *o);
    apr_http_parser *p = apr_http_parser_new(lim);
    if (!p) abort();
    uint64_t consumed = 0, fed = 0;
    size_t i = 0, k = 0;
    while (i < size) {
        /* Piece sizes 1..16 taken from the input's own bytes. */
        size_t n = split ? 1 + (data[k++ % size] & 15) : size;
        if (n > size - i) n = size - i;
        if (apr_http_parser_feed(p, data + i, n) != APR_OK) abort();
        fed += n;
        i += n;
        if (!drain(p, lim, o, &consumed, fed)) break;
    }
    if (apr_http_parser_buffered(p) + consumed != fed && !o->error) abort();
    apr_http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_http_limits lim = { .max_head = 256, .max_headers = 8, .max_body = 512 };
    /* Fed whole, the input must fit the buffer's bound (2 heads + a body). */
    if (size > 1000) return 0;
    outcome whole, pieces;
    run(data, size, &lim, 0, &whole);
    run(data, size, &lim, 1, &pieces);
    if (whole.n != pieces.n || whole.error != pieces.error) abort();
    for (int i = 0; i < whole.n && i < MAX_OUT; i++)
        if (whole.hash[i] != pieces.hash[i]) abort();
    return 0;
}
