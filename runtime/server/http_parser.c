/* http_parser.c — HTTP/1.1 requests out of a byte stream, strictly (RFC 9112).
 *
 * The parser owns the connection's input buffer. Bytes go in with
 * apr_http_parser_feed as they arrive; apr_http_parser_next takes at most one
 * request out of them and says how many bytes it spanned, so pipelined
 * requests wait their turn in the buffer. Work already done is never redone:
 * the head is scanned line by line from where the last call stopped, and a
 * chunked body is de-chunked in place as its chunks arrive (each chunk's data
 * moves down over the framing already read, so the body ends up contiguous).
 *
 * Anything ambiguous is refused rather than guessed, because a server that
 * reads a message differently from a proxy in front of it can be made to see
 * a request the proxy never saw (request smuggling): bare CR or LF, NUL and
 * other control bytes, whitespace before a header's colon, obs-fold, several
 * Content-Length headers, Content-Length together with Transfer-Encoding, and
 * any transfer coding but a lone `chunked`. RFC 9112 sections are cited
 * where a rule comes from. */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

/* ------------------------------------------------------------------ */
/* State                                                              */
/* ------------------------------------------------------------------ */

enum phase {
    PH_HEAD,        /* scanning request line and header lines */
    PH_BODY,        /* Content-Length body arriving */
    PH_CHUNK_SIZE,  /* waiting for a chunk-size line */
    PH_CHUNK_DATA,  /* copying a chunk's data down into the body */
    PH_CHUNK_END,   /* the CRLF after a chunk's data */
    PH_TRAILER,     /* trailer lines after the last chunk */
    PH_DONE,        /* a request was returned; dropped at the next call */
    PH_ERROR        /* sticky: the connection must be closed */
};

/* Offsets rather than pointers: the buffer moves when it grows. */
typedef struct field {
    size_t name, name_len, value, value_len;
} field;

/* Longest chunk-size line (size, extensions, CRLF) and most blank lines
 * accepted before a request line (RFC 9112 2.2 says to ignore at least one). */
enum { MAX_CHUNK_LINE = 1024, MAX_LEADING_BLANK = 8 };

struct apr_http_parser {
    apr_http_limits lim;
    char *buf;               /* [cap] bytes, the first len of them fed */
    size_t len, cap;

    int phase;
    size_t scan;             /* head: next byte to look at */
    size_t line;             /* head/trailer: start of the current line */
    size_t start;            /* first byte of the request line (after blank lines) */
    size_t head_end;         /* one past the head's final CRLF */
    int n_lines;             /* lines of the head so far, request line included */
    int n_blank;             /* blank lines skipped before the request line */
    int head_reported;       /* APR_HTTP_HEAD was returned for this request */

    field *fields;           /* [lim.max_headers] header fields of the request */
    int n_fields;
    apr_http_header *out_headers;  /* [lim.max_headers] what next() hands out */

    /* What the head says about the body and the connection. */
    int version, keep_alive, expect_continue, chunked;
    uint64_t content_length;
    size_t method_len, target, target_len;

    /* Body: decoded bytes live at [head_end, head_end + body_len); raw is
     * the next framing byte not yet read (raw >= head_end + body_len). */
    size_t raw;
    uint64_t body_len, chunk_left;
    uint64_t dropped;        /* framing bytes given back by drop_framing: still part of the request */
    int n_trailers;

    int status;              /* HTTP status of the failure (PH_ERROR) */
    char message[160];
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                      */
/* ------------------------------------------------------------------ */

/* tchar of RFC 9110 5.6.2: the characters of tokens (methods, field names). */
static int is_tchar(unsigned char c)
{
    if (isalnum(c)) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* field-vchar, SP and HTAB (RFC 9110 5.5); obs-text (>= 0x80) is allowed as
 * opaque bytes, anything else below 0x20 and DEL is not. */
static int is_value_char(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static int fail(apr_http_parser *p, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(apr_http_parser *p, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->message, sizeof p->message, fmt, ap);
    va_end(ap);
    p->status = status;
    p->phase = PH_ERROR;
    return APR_HTTP_ERROR;
}

static int ieq(const char *a, size_t alen, const char *b)
{
    size_t blen = strlen(b);
    if (alen != blen) return 0;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != b[i]) return 0;
    return 1;
}

/* Calls fn for each element of a comma-separated list (RFC 9110 5.6.1),
 * trimmed of whitespace; empty elements are skipped. Stops at a nonzero
 * return and passes it on. */
static int each_element(const char *s, size_t n, int (*fn)(void *, const char *, size_t), void *ctx)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && s[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && (s[a] == ' ' || s[a] == '\t')) a++;
        while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t')) b--;
        if (b > a) {
            int r = fn(ctx, s + a, b - a);
            if (r) return r;
        }
        i = j + 1;
    }
    return 0;
}

static void reset_request(apr_http_parser *p)
{
    p->phase = PH_HEAD;
    p->scan = p->line = p->start = p->head_end = 0;
    p->n_lines = p->n_blank = p->head_reported = 0;
    p->n_fields = 0;
    p->version = p->keep_alive = p->expect_continue = p->chunked = 0;
    p->content_length = 0;
    p->method_len = p->target = p->target_len = 0;
    p->raw = 0;
    p->body_len = p->chunk_left = 0;
    p->dropped = 0;
    p->n_trailers = 0;
}

/* ------------------------------------------------------------------ */
/* The head: request line and header fields                          */
/* ------------------------------------------------------------------ */

/* request-line = method SP request-target SP HTTP-version (RFC 9112 3),
 * exactly one space between the parts. */
static int parse_request_line(apr_http_parser *p, size_t a, size_t b)
{
    const char *s = p->buf;
    size_t i = a;
    while (i < b && is_tchar((unsigned char)s[i])) i++;
    if (i == a || i >= b || s[i] != ' ')
        return fail(p, 400, "malformed request line: bad method");
    if (i - a > 32) return fail(p, 400, "malformed request line: method longer than 32 bytes");
    p->method_len = i - a;

    size_t t = ++i;
    while (i < b && s[i] > 0x20 && s[i] < 0x7f) i++;
    if (i == t || i >= b || s[i] != ' ')
        return fail(p, 400, "malformed request line: bad request target");
    p->target = t;
    p->target_len = i - t;
    /* origin-form "/path?query", asterisk-form "*", or absolute-form
     * "scheme://..." (RFC 9112 3.2); authority-form is for CONNECT only. */
    if (s[t] != '/' && !(p->target_len == 1 && s[t] == '*')) {
        size_t k = t;
        while (k < i && (isalnum((unsigned char)s[k]) || s[k] == '+' || s[k] == '-' || s[k] == '.')) k++;
        if (k == t || !isalpha((unsigned char)s[t]) || k + 3 > i || memcmp(s + k, "://", 3) != 0)
            return fail(p, 400, "malformed request target");
    }

    i++;
    if (b - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || !isdigit((unsigned char)s[i + 5]) ||
        s[i + 6] != '.' || !isdigit((unsigned char)s[i + 7]))
        return fail(p, 400, "malformed request line: bad HTTP version");
    int major = s[i + 5] - '0', minor = s[i + 7] - '0';
    if (major != 1 || minor > 1)
        return fail(p, 505, "HTTP version %d.%d is not supported", major, minor);
    p->version = 10 + minor;
    p->keep_alive = minor == 1;  /* RFC 9112 9.3: persistent by default in 1.1 */
    return 0;
}

/* field-line = field-name ":" OWS field-value OWS (RFC 9112 5). No
 * whitespace may precede the colon (5.1), and a line that starts with
 * whitespace is obs-fold, which we reject (5.2). */
static int parse_field(apr_http_parser *p, size_t a, size_t b, field *f)
{
    const char *s = p->buf;
    if (s[a] == ' ' || s[a] == '\t')
        return fail(p, 400, "obsolete line folding in a header field");
    size_t i = a;
    while (i < b && is_tchar((unsigned char)s[i])) i++;
    if (i == a || i >= b || s[i] != ':')
        return fail(p, 400, "malformed header field name");
    f->name = a;
    f->name_len = i - a;
    i++;
    while (i < b && (s[i] == ' ' || s[i] == '\t')) i++;
    size_t e = b;
    while (e > i && (s[e - 1] == ' ' || s[e - 1] == '\t')) e--;
    for (size_t k = i; k < e; k++)
        if (!is_value_char((unsigned char)s[k]))
            return fail(p, 400, "control character in header field '%.*s'", (int)f->name_len, s + a);
    f->value = i;
    f->value_len = e - i;
    return 0;
}

static int connection_token(void *ctx, const char *s, size_t n)
{
    apr_http_parser *p = ctx;
    if (ieq(s, n, "close")) p->keep_alive = 0;
    else if (ieq(s, n, "keep-alive") && p->version == 10) p->keep_alive = 1;
    return 0;
}

/* Counts transfer codings and remembers whether the last one is chunked. */
typedef struct codings { int n, last_chunked; } codings;

static int coding_token(void *ctx, const char *s, size_t n)
{
    codings *c = ctx;
    c->n++;
    c->last_chunked = ieq(s, n, "chunked");
    return 0;
}

/* What the header fields mean for framing and the connection (RFC 9112 6). */
static int interpret_fields(apr_http_parser *p)
{
    const char *s = p->buf;
    int n_length = 0, n_te = 0, n_host = 0;
    for (int i = 0; i < p->n_fields; i++) {
        const field *f = &p->fields[i];
        const char *name = s + f->name, *value = s + f->value;
        if (ieq(name, f->name_len, "content-length")) {
            if (++n_length > 1) return fail(p, 400, "more than one Content-Length header");
            if (f->value_len == 0 || f->value_len > 19)
                return fail(p, 400, "malformed Content-Length");
            uint64_t v = 0;
            for (size_t k = 0; k < f->value_len; k++) {
                if (!isdigit((unsigned char)value[k])) return fail(p, 400, "malformed Content-Length");
                v = v * 10 + (uint64_t)(value[k] - '0');
            }
            p->content_length = v;
        } else if (ieq(name, f->name_len, "transfer-encoding")) {
            if (++n_te > 1) return fail(p, 400, "more than one Transfer-Encoding header");
            codings c = { 0, 0 };
            each_element(value, f->value_len, coding_token, &c);
            /* 6.3: without chunked last, the length cannot be known: 400.
             * Codings under chunked (gzip, ...) are well-formed but not
             * handled: 501 (6.1). */
            if (!c.last_chunked) return fail(p, 400, "Transfer-Encoding must end with chunked");
            if (c.n > 1) return fail(p, 501, "transfer codings other than chunked are not supported");
            p->chunked = 1;
        } else if (ieq(name, f->name_len, "connection")) {
            each_element(value, f->value_len, connection_token, p);
        } else if (ieq(name, f->name_len, "expect")) {
            if (!ieq(value, f->value_len, "100-continue"))
                return fail(p, 417, "unsupported expectation '%.*s'", (int)f->value_len, value);
            p->expect_continue = 1;
        } else if (ieq(name, f->name_len, "host")) {
            n_host++;
        }
    }
    /* 6.1: a 1.0 recipient cannot be trusted with chunked; 6.3: both
     * framings at once is the classic smuggling vector. */
    if (p->chunked && p->version == 10)
        return fail(p, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (p->chunked && n_length)
        return fail(p, 400, "both Content-Length and Transfer-Encoding");
    /* RFC 9112 3.2: exactly one Host in 1.1, at most one in 1.0. */
    if (n_host > 1 || (n_host == 0 && p->version == 11))
        return fail(p, 400, n_host ? "more than one Host header" : "missing Host header");
    if (!p->chunked && p->content_length > p->lim.max_body)
        return fail(p, 413, "body of %llu bytes is over the limit of %llu",
                    (unsigned long long)p->content_length, (unsigned long long)p->lim.max_body);
    /* 100-continue means nothing without a body, or from a 1.0 client
     * (RFC 9110 10.1.1). */
    if ((!p->chunked && p->content_length == 0) || p->version == 10) p->expect_continue = 0;
    return 0;
}

/* Scans lines of the head from where the last call stopped; on the blank
 * line that ends it, parses the fields. Returns APR_HTTP_NEED_MORE until then. */
static int scan_head(apr_http_parser *p)
{
    const char *s = p->buf;
    for (; p->scan < p->len; p->scan++) {
        unsigned char c = (unsigned char)s[p->scan];
        size_t i = p->scan;
        if (i > p->line && s[i - 1] == '\r' && c != '\n')
            return fail(p, 400, "bare CR in the request head");
        if (c == 0) return fail(p, 400, "NUL byte in the request head");
        if (i + 1 - p->start > (size_t)p->lim.max_head)
            return p->n_lines == 0 ? fail(p, 414, "request line longer than %d bytes", p->lim.max_head)
                                   : fail(p, 431, "request head longer than %d bytes", p->lim.max_head);
        if (c != '\n') continue;
        if (i == p->line || s[i - 1] != '\r') return fail(p, 400, "bare LF in the request head");

        size_t a = p->line, b = i - 1;  /* the line, without CRLF */
        p->line = i + 1;
        if (a == b) {
            if (p->n_lines == 0) {  /* blank lines before the request line */
                if (++p->n_blank > MAX_LEADING_BLANK) return fail(p, 400, "too many blank lines before the request");
                p->start = p->line;
                continue;
            }
            p->head_end = i + 1;
            p->scan = i + 1;
            if (interpret_fields(p)) return APR_HTTP_ERROR;
            return APR_HTTP_HEAD;
        }
        if (p->n_lines == 0) {
            if (parse_request_line(p, a, b)) return APR_HTTP_ERROR;
        } else {
            if (p->n_fields >= p->lim.max_headers)
                return fail(p, 431, "more than %d header fields", p->lim.max_headers);
            if (parse_field(p, a, b, &p->fields[p->n_fields])) return APR_HTTP_ERROR;
            p->n_fields++;
        }
        p->n_lines++;
    }
    return APR_HTTP_NEED_MORE;
}

/* ------------------------------------------------------------------ */
/* Chunked bodies (RFC 9112 7.1)                                      */
/* ------------------------------------------------------------------ */

/* Finds the end (LF) of the line starting at raw: 1 and *lf when it has
 * arrived, 0 when not yet, -1 after failing on bare CR/LF, control bytes
 * or a line over limit. */
static int find_line(apr_http_parser *p, size_t *lf, size_t limit, const char *what)
{
    const char *s = p->buf;
    size_t end = p->len < p->raw + limit ? p->len : p->raw + limit;
    for (size_t i = p->raw; i < end; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            if (i == p->raw || s[i - 1] != '\r') { fail(p, 400, "bare LF in %s", what); return -1; }
            *lf = i;
            return 1;
        }
        if (i > p->raw && s[i - 1] == '\r') { fail(p, 400, "bare CR in %s", what); return -1; }
        if (c != '\r' && !is_value_char(c)) { fail(p, 400, "control character in %s", what); return -1; }
    }
    if (p->len >= p->raw + limit) { fail(p, 400, "%s longer than %zu bytes", what, limit); return -1; }
    return 0;
}

static int chunk_size_line(apr_http_parser *p)
{
    size_t lf;
    int r = find_line(p, &lf, MAX_CHUNK_LINE, "a chunk-size line");
    if (r <= 0) return r < 0 ? APR_HTTP_ERROR : APR_HTTP_NEED_MORE;
    const char *s = p->buf;
    size_t i = p->raw, e = lf - 1;
    uint64_t size = 0;
    while (i < e && isxdigit((unsigned char)s[i])) {
        if (i - p->raw >= 15) return fail(p, 400, "chunk size too large");
        int c = tolower((unsigned char)s[i]);
        size = size * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
        i++;
    }
    if (i == p->raw) return fail(p, 400, "malformed chunk size");
    /* chunk-ext: BWS ";" ... — extensions carry nothing we use. */
    while (i < e && (s[i] == ' ' || s[i] == '\t')) i++;
    if (i < e && s[i] != ';') return fail(p, 400, "malformed chunk size");
    if (size > p->lim.max_body - p->body_len)
        return fail(p, 413, "body is over the limit of %llu bytes", (unsigned long long)p->lim.max_body);
    p->raw = lf + 1;
    p->chunk_left = size;
    p->phase = size ? PH_CHUNK_DATA : PH_TRAILER;
    if (size == 0) p->line = p->raw;
    return APR_HTTP_NEED_MORE;
}

/* Gives back the framing already read: the bytes still to parse move
 * down to the end of the decoded body, so a chunked body takes no more
 * buffer than its data (1-byte chunks would otherwise take six times as
 * much, and be refused as "too much buffered" long before max_body). */
static void drop_framing(apr_http_parser *p)
{
    size_t dst = p->head_end + (size_t)p->body_len;
    if (p->raw <= dst) return;
    size_t delta = p->raw - dst;
    memmove(p->buf + dst, p->buf + p->raw, p->len - p->raw);
    p->len -= delta;
    p->dropped += delta;
    p->raw = dst;
    if (p->line > dst) p->line = p->line - delta > dst ? p->line - delta : dst;
}

static int scan_chunked_steps(apr_http_parser *p);

/* Advances through the chunked body as far as the buffer allows. Returns
 * APR_HTTP_REQUEST at its end, APR_HTTP_NEED_MORE or APR_HTTP_ERROR. */
static int scan_chunked(apr_http_parser *p)
{
    int r = scan_chunked_steps(p);
    if (r == APR_HTTP_NEED_MORE) drop_framing(p);
    return r;
}

static int scan_chunked_steps(apr_http_parser *p)
{
    for (;;) {
        switch (p->phase) {
        case PH_CHUNK_SIZE: {
            int r = chunk_size_line(p);
            if (r == APR_HTTP_ERROR) return r;
            if (p->phase == PH_CHUNK_SIZE) return APR_HTTP_NEED_MORE;
            break;
        }
        case PH_CHUNK_DATA: {
            size_t avail = p->len - p->raw;
            size_t n = avail < p->chunk_left ? avail : (size_t)p->chunk_left;
            if (n == 0) return APR_HTTP_NEED_MORE;
            memmove(p->buf + p->head_end + p->body_len, p->buf + p->raw, n);
            p->body_len += n;
            p->raw += n;
            p->chunk_left -= n;
            if (p->chunk_left == 0) p->phase = PH_CHUNK_END;
            break;
        }
        case PH_CHUNK_END:
            if (p->len - p->raw < 2) {
                if (p->len > p->raw && p->buf[p->raw] != '\r') return fail(p, 400, "chunk data not followed by CRLF");
                return APR_HTTP_NEED_MORE;
            }
            if (p->buf[p->raw] != '\r' || p->buf[p->raw + 1] != '\n')
                return fail(p, 400, "chunk data not followed by CRLF");
            p->raw += 2;
            p->phase = PH_CHUNK_SIZE;
            break;
        case PH_TRAILER: {
            /* Trailer fields are checked like header fields, then dropped:
             * nothing here may change how the request is handled. */
            size_t lf;
            int r = find_line(p, &lf, (size_t)p->lim.max_head, "a trailer field");
            if (r < 0) return APR_HTTP_ERROR;
            if (r == 0) return APR_HTTP_NEED_MORE;
            size_t a = p->raw, b = lf - 1;
            p->raw = lf + 1;
            if (a == b) return APR_HTTP_REQUEST;
            if (++p->n_trailers > p->lim.max_headers)
                return fail(p, 431, "more than %d trailer fields", p->lim.max_headers);
            field f;
            if (parse_field(p, a, b, &f)) return APR_HTTP_ERROR;
            break;
        }
        default:
            return APR_HTTP_ERROR;
        }
    }
}

/* ------------------------------------------------------------------ */
/* The buffer's memory                                                */
/* ------------------------------------------------------------------ */

/* A buffer over BIG_BUFFER bytes is pages of its own (mmap, mremap to grow,
 * munmap when done), so what a large request took goes back to the system
 * the moment the buffer is freed or shrunk. From malloc it would not: glibc
 * raises its mmap threshold to the size of the last mapped block it frees
 * (up to 32 MiB), then serves the next such buffers from its heap, where
 * freed blocks stay with the process. A flood of rejected 9 MB requests
 * left the server 100-150 MB larger that way (bench/serve_flood.lua). */
enum { BIG_BUFFER = 1 << 18 };

static size_t mapped_size(size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (n + page - 1) / page * page;
}

static void buffer_release(char *buf, size_t cap)
{
    if (!buf) return;
    if (cap > BIG_BUFFER) munmap(buf, mapped_size(cap));
    else free(buf);
}

/* Resizes p's buffer to cap bytes (0: none), keeping its first len bytes
 * (len <= cap). Returns 0, or -1 with the buffer untouched. */
static int buffer_resize(apr_http_parser *p, size_t cap)
{
    char *old = p->buf, *b = NULL;
    size_t old_cap = p->cap, keep = p->len < cap ? p->len : cap;
    if (cap == 0) {
        b = NULL;
    } else if (cap <= BIG_BUFFER && old_cap <= BIG_BUFFER) {
        b = realloc(old, cap);
        if (!b) return -1;
        p->buf = b;
        p->cap = cap;
        return 0;
    } else if (cap > BIG_BUFFER && old_cap > BIG_BUFFER) {
        void *m = mremap(old, mapped_size(old_cap), mapped_size(cap), MREMAP_MAYMOVE);
        if (m == MAP_FAILED) return -1;
        p->buf = m;
        p->cap = cap;
        return 0;
    } else if (cap > BIG_BUFFER) {
        void *m = mmap(NULL, mapped_size(cap), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED) return -1;
        b = m;
    } else {
        b = malloc(cap);
        if (!b) return -1;
    }
    if (b && keep) memcpy(b, old, keep);
    buffer_release(old, old_cap);
    p->buf = b;
    p->cap = cap;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

void apr_http_limits_default(apr_http_limits *l)
{
    l->max_head = 16384;
    l->max_headers = 64;
    l->max_body = 8u << 20;
}

apr_http_parser *apr_http_parser_new(const apr_http_limits *limits)
{
    apr_http_limits lim;
    apr_http_limits_default(&lim);
    if (limits) lim = *limits;
    APR_CHECK_NULL(lim.max_head >= 64 && lim.max_head <= (1 << 24) && lim.max_headers >= 1 &&
                   lim.max_headers <= 100000 && lim.max_body <= ((uint64_t)1 << 40),
                   APR_ERR_INVALID, "http limits: max_head must be in [64, 16 MiB], max_headers in "
                   "[1, 100000] and max_body at most 1 TiB");
    apr_http_parser *p = calloc(1, sizeof *p);
    if (p) {
        p->lim = lim;
        p->fields = calloc((size_t)lim.max_headers, sizeof *p->fields);
        p->out_headers = calloc((size_t)lim.max_headers, sizeof *p->out_headers);
    }
    if (!p || !p->fields || !p->out_headers) {
        apr_http_parser_free(p);
        apr_error(APR_ERR_NOMEM, "http parser: out of memory");
        return NULL;
    }
    reset_request(p);
    return p;
}

void apr_http_parser_free(apr_http_parser *p)
{
    if (!p) return;
    buffer_release(p->buf, p->cap);
    free(p->fields);
    free(p->out_headers);
    free(p);
}

/* Buffers up to this size are kept between requests; a larger one (a big
 * body made it grow) is given back once its request is done, so a
 * keep-alive connection does not hold max_body bytes for its lifetime. */
enum { KEEP_BUFFER = 65536 };

/* Drops the bytes of the request returned last, so the next one (pipelined)
 * starts at the front of the buffer. */
static void drop_done(apr_http_parser *p)
{
    if (p->phase != PH_DONE) return;
    size_t used = p->raw;
    memmove(p->buf, p->buf + used, p->len - used);
    p->len -= used;
    reset_request(p);
    /* Shrinking cannot lose data; a failure keeps the old buffer. */
    if (p->cap > KEEP_BUFFER && p->len <= KEEP_BUFFER / 2) (void)buffer_resize(p, p->len ? KEEP_BUFFER : 0);
}

/* What feed may hold at most: one request's head and body, room for the
 * next one's head, and framing lines being read. */
static size_t cap_max_of(const apr_http_parser *p)
{
    return (size_t)p->lim.max_head * 2 + (size_t)p->lim.max_body + MAX_CHUNK_LINE * 4;
}

apr_status apr_http_parser_feed(apr_http_parser *p, const void *data, size_t n)
{
    APR_CHECK(p && (data || n == 0), APR_ERR_INVALID, "http parser: NULL argument");
    drop_done(p);
    /* What one request may need, plus room for the next one's head: a
     * client that pipelines further ahead than that is told to wait. */
    size_t cap_max = cap_max_of(p);
    APR_CHECK(n <= cap_max - p->len, APR_ERR_BUSY,
              "http parser: %zu bytes already buffered, no room for %zu more", p->len, n);
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 4096;
        while (cap < p->len + n) cap *= 2;
        if (cap > cap_max) cap = cap_max;
        APR_CHECK(buffer_resize(p, cap) == 0, APR_ERR_NOMEM, "http parser: out of memory for %zu bytes", cap);
    }
    memcpy(p->buf + p->len, data, n);
    p->len += n;
    return APR_OK;
}

/* Fills the caller's view of the request from the offsets. */
static void export(apr_http_parser *p, apr_http_request *out)
{
    memset(out, 0, sizeof *out);
    const char *s = p->buf;
    out->method = s + p->start;
    out->method_len = (int)p->method_len;
    out->target = s + p->target;
    out->target_len = (int)p->target_len;
    out->version = p->version;
    out->n_headers = p->n_fields;
    for (int i = 0; i < p->n_fields; i++) {
        const field *f = &p->fields[i];
        p->out_headers[i] = (apr_http_header){ s + f->name, (int)f->name_len, s + f->value, (int)f->value_len };
    }
    out->headers = p->out_headers;
    out->body = s + p->head_end;
    out->body_len = p->body_len;
    out->content_length = p->chunked ? p->body_len : p->content_length;
    out->chunked = p->chunked;
    out->keep_alive = p->keep_alive;
    out->expect_continue = p->expect_continue;
    out->consumed = p->raw + p->dropped;
}

int apr_http_parser_next(apr_http_parser *p, apr_http_request *out)
{
    if (!p || !out) return APR_HTTP_ERROR;
    drop_done(p);
    int r = APR_HTTP_NEED_MORE;
    switch (p->phase) {
    case PH_ERROR:
        r = APR_HTTP_ERROR;
        break;
    case PH_HEAD:
        r = scan_head(p);
        if (r != APR_HTTP_HEAD) break;
        p->raw = p->head_end;
        p->phase = p->chunked ? PH_CHUNK_SIZE : PH_BODY;
        /* fall through */
    case PH_BODY:
    case PH_CHUNK_SIZE:
    case PH_CHUNK_DATA:
    case PH_CHUNK_END:
    case PH_TRAILER:
        if (p->phase == PH_BODY) {
            r = APR_HTTP_NEED_MORE;
            if (p->len - p->head_end >= p->content_length) {
                p->body_len = p->content_length;
                p->raw = p->head_end + (size_t)p->content_length;
                r = APR_HTTP_REQUEST;
            }
        } else {
            r = scan_chunked(p);
        }
        /* The head is worth reporting once on its own while the body is
         * still on its way: the server answers Expect: 100-continue then. */
        if (r == APR_HTTP_NEED_MORE && !p->head_reported) {
            p->head_reported = 1;
            r = APR_HTTP_HEAD;
        }
        break;
    default:
        r = APR_HTTP_NEED_MORE;
        break;
    }
    if (r == APR_HTTP_REQUEST) p->phase = PH_DONE;
    if (r == APR_HTTP_ERROR) {
        memset(out, 0, sizeof *out);
        out->status = p->status;
        out->error = p->message;
        return r;
    }
    if (r == APR_HTTP_HEAD || r == APR_HTTP_REQUEST) export(p, out);
    return r;
}

size_t apr_http_parser_buffered(const apr_http_parser *p)
{
    if (!p) return 0;
    return p->phase == PH_DONE ? p->len - p->raw : p->len + (size_t)p->dropped;
}

int apr_http_parser_started(const apr_http_parser *p)
{
    if (!p) return 0;
    if (p->phase == PH_DONE) return p->len > p->raw;
    return p->phase != PH_HEAD || p->len > p->start;
}

size_t apr_http_parser_room(const apr_http_parser *p)
{
    if (!p) return 0;
    size_t used = p->phase == PH_DONE ? p->len - p->raw : p->len;
    return cap_max_of(p) - used;
}

size_t apr_http_parser_capacity(const apr_http_parser *p)
{
    return p ? p->cap : 0;
}
