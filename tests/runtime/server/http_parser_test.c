/* http_parser_test.c — the strict incremental HTTP/1.1 request parser. */
#include "test.h"
#include "apr.h"

#include <stdlib.h>

/* Feeds all of s at once and returns the first result. */
static int parse_all(apr_http_parser *p, const char *s, size_t n, apr_http_request *r)
{
    if (apr_http_parser_feed(p, s, n) != APR_OK) return -1;
    int res = apr_http_parser_next(p, r);
    while (res == APR_HTTP_HEAD) res = apr_http_parser_next(p, r);
    return res;
}

/* The status an input gets, fed at once. 200 means a whole request. */
static int status_of(const char *s)
{
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    int res = parse_all(p, s, strlen(s), &r);
    int status = res == APR_HTTP_REQUEST ? 200 : res == APR_HTTP_ERROR ? r.status : 0;
    apr_http_parser_free(p);
    return status;
}

static const char *header(const apr_http_request *r, const char *name)
{
    static char value[256];
    for (int i = 0; i < r->n_headers; i++) {
        if ((size_t)r->headers[i].name_len == strlen(name) &&
            strncasecmp(r->headers[i].name, name, strlen(name)) == 0) {
            snprintf(value, sizeof value, "%.*s", r->headers[i].value_len, r->headers[i].value);
            return value;
        }
    }
    return NULL;
}

TEST(http_parses_a_simple_get)
{
    const char *s = "GET /v1/models?x=1 HTTP/1.1\r\nHost: a\r\nUser-Agent:  curl/8 \r\n\r\n";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    REQUIRE(parse_all(p, s, strlen(s), &r) == APR_HTTP_REQUEST);
    CHECK(r.method_len == 3 && memcmp(r.method, "GET", 3) == 0);
    CHECK(r.target_len == 14 && memcmp(r.target, "/v1/models?x=1", 14) == 0);
    CHECK_EQ_INT(r.version, 11);
    CHECK_EQ_INT(r.n_headers, 2);
    CHECK_EQ_STR(header(&r, "user-agent"), "curl/8");
    CHECK_EQ_INT(r.keep_alive, 1);
    CHECK_EQ_INT(r.body_len, 0);
    CHECK_EQ_INT(r.consumed, strlen(s));
    CHECK(r.error == NULL);
    CHECK_EQ_INT(apr_http_parser_buffered(p), 0);
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_NEED_MORE);
    apr_http_parser_free(p);
}

TEST(http_content_length_body_and_keep_alive_rules)
{
    const char *s = "POST /x HTTP/1.0\r\nContent-Length: 5\r\nConnection: keep-alive\r\n\r\nhello";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    REQUIRE(parse_all(p, s, strlen(s), &r) == APR_HTTP_REQUEST);
    CHECK_EQ_INT(r.version, 10);
    CHECK_EQ_INT(r.keep_alive, 1);
    CHECK(r.body_len == 5 && memcmp(r.body, "hello", 5) == 0);
    apr_http_parser_free(p);

    p = apr_http_parser_new(NULL);
    const char *close = "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n";
    REQUIRE(parse_all(p, close, strlen(close), &r) == APR_HTTP_REQUEST);
    CHECK_EQ_INT(r.keep_alive, 0);
    apr_http_parser_free(p);

    p = apr_http_parser_new(NULL);
    const char *old = "GET / HTTP/1.0\r\n\r\n";
    REQUIRE(parse_all(p, old, strlen(old), &r) == APR_HTTP_REQUEST);
    CHECK_EQ_INT(r.keep_alive, 0);
    apr_http_parser_free(p);
}

TEST(http_pipelined_requests_come_out_one_at_a_time)
{
    const char *s = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                    "GET /b HTTP/1.1\r\nHost: h\r\n\r\n"
                    "GET /c HTTP/1.1\r\nHost: h\r\n\r\nGET /d";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    REQUIRE(apr_http_parser_feed(p, s, strlen(s)) == APR_OK);
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_REQUEST);
    CHECK(r.target_len == 2 && memcmp(r.target, "/a", 2) == 0);
    CHECK(r.body_len == 3 && memcmp(r.body, "abc", 3) == 0);
    CHECK_EQ_INT(apr_http_parser_buffered(p), strlen(s) - r.consumed);
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_REQUEST);
    CHECK(memcmp(r.target, "/b", 2) == 0);
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_REQUEST);
    CHECK(memcmp(r.target, "/c", 2) == 0);
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_NEED_MORE);
    CHECK_EQ_INT(apr_http_parser_started(p), 1);
    CHECK_EQ_INT(apr_http_parser_buffered(p), 6);
    apr_http_parser_free(p);
}

TEST(http_chunked_body_is_decoded_with_extensions_and_trailers)
{
    const char *s = "POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5;name=value\r\nhello\r\n"
                    "1 \r\n \r\n"
                    "A\r\n0123456789\r\n"
                    "0\r\nX-Trailer: yes\r\n\r\n"
                    "GET /next HTTP/1.1\r\nHost: h\r\n\r\n";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    REQUIRE(parse_all(p, s, strlen(s), &r) == APR_HTTP_REQUEST);
    CHECK_EQ_INT(r.chunked, 1);
    CHECK_EQ_INT(r.body_len, 16);
    CHECK(memcmp(r.body, "hello 0123456789", 16) == 0);
    CHECK_EQ_INT(r.consumed, strlen(s) - strlen("GET /next HTTP/1.1\r\nHost: h\r\n\r\n"));
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_REQUEST);
    CHECK(r.target_len == 5 && memcmp(r.target, "/next", 5) == 0);
    apr_http_parser_free(p);
}

/* Whatever way the bytes are split, the parser sees the same requests. */
TEST(http_byte_by_byte_equals_all_at_once)
{
    const char *s = "\r\nPOST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
                    "3\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n"
                    "PUT /d HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nwxyz";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    int got = 0, heads = 0;
    char bodies[2][64] = { "", "" };
    for (size_t i = 0; i < strlen(s); i++) {
        REQUIRE(apr_http_parser_feed(p, s + i, 1) == APR_OK);
        int res;
        while ((res = apr_http_parser_next(p, &r)) != APR_HTTP_NEED_MORE) {
            REQUIRE(res != APR_HTTP_ERROR);
            if (res == APR_HTTP_HEAD) {
                heads++;
                CHECK_EQ_INT(r.expect_continue, got == 0);
                continue;
            }
            REQUIRE(got < 2);
            snprintf(bodies[got++], 64, "%.*s", (int)r.body_len, r.body);
        }
    }
    CHECK_EQ_INT(got, 2);
    CHECK_EQ_INT(heads, 2);
    CHECK_EQ_STR(bodies[0], "abc0123456789abcdef");
    CHECK_EQ_STR(bodies[1], "wxyz");
    apr_http_parser_free(p);
}

TEST(http_rejects_malformed_framing_and_characters)
{
    /* Line endings. */
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\nHost: a\n\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\rX: y\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\n\n"), 400);
    /* NUL and control bytes. */
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01" "b\r\n\r\n"), 400);
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    const char nul[] = "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n";
    CHECK_EQ_INT(parse_all(p, nul, sizeof nul - 1, &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 400);
    CHECK(r.error && strstr(r.error, "NUL"));
    /* Sticky: nothing more comes out of a failed parser. */
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_ERROR);
    apr_http_parser_free(p);
    /* Request line. */
    CHECK_EQ_INT(status_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET x HTTP/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.x\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / http/1.1\r\nHost: a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    CHECK_EQ_INT(status_of("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    CHECK_EQ_INT(status_of("GET http://h/x HTTP/1.1\r\nHost: h\r\n\r\n"), 200);
    CHECK_EQ_INT(status_of("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n"), 200);
    /* Header fields. */
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\n: empty\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nX: a\r\n\r\n"), 400);              /* no Host */
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n"), 417);
    CHECK_EQ_INT(status_of("GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n"), 200);
}

TEST(http_rejects_smuggling_shapes)
{
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n"), 200);
    /* Chunk framing. */
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "fffffffffffffffff\r\n"), 400);
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "0\r\nBad Trailer: x\r\n\r\n"), 400);
    /* Found by the fuzzer: a bare CR inside a trailer line. */
    CHECK_EQ_INT(status_of("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "0\r\nT: t\rx\r\n\r\n"), 400);
}

TEST(http_limits_give_413_414_431)
{
    apr_http_limits lim;
    apr_http_limits_default(&lim);
    lim.max_head = 128;
    lim.max_headers = 3;
    lim.max_body = 10;
    apr_http_request r;

    const char *big = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n";
    apr_http_parser *p = apr_http_parser_new(&lim);
    CHECK_EQ_INT(parse_all(p, big, strlen(big), &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 413);  /* refused from the header, before any body */
    apr_http_parser_free(p);

    const char *chunks = "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n";
    p = apr_http_parser_new(&lim);
    CHECK_EQ_INT(parse_all(p, chunks, strlen(chunks), &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 413);
    apr_http_parser_free(p);

    const char *many = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    p = apr_http_parser_new(&lim);
    CHECK_EQ_INT(parse_all(p, many, strlen(many), &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 431);
    apr_http_parser_free(p);

    /* A head over the limit fails as soon as the limit is crossed, without
     * waiting for its end. */
    char line[300];
    memset(line, 'a', sizeof line);
    memcpy(line, "GET /", 5);
    p = apr_http_parser_new(&lim);
    CHECK_EQ_INT(parse_all(p, line, sizeof line, &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 414);
    apr_http_parser_free(p);

    char head[300];
    snprintf(head, sizeof head, "GET / HTTP/1.1\r\nHost: a\r\nX: %0200d", 7);
    p = apr_http_parser_new(&lim);
    CHECK_EQ_INT(parse_all(p, head, strlen(head), &r), APR_HTTP_ERROR);
    CHECK_EQ_INT(r.status, 431);
    apr_http_parser_free(p);

    lim.max_head = 10;
    CHECK(apr_http_parser_new(&lim) == NULL);
    CHECK(strstr(apr_last_error(), "max_head") != NULL);
}

TEST(http_head_is_reported_before_a_late_body)
{
    const char *head = "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    apr_http_parser *p = apr_http_parser_new(NULL);
    apr_http_request r;
    REQUIRE(apr_http_parser_feed(p, head, strlen(head)) == APR_OK);
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_HEAD);
    CHECK_EQ_INT(r.expect_continue, 1);
    CHECK_EQ_INT(r.content_length, 4);
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_NEED_MORE);
    REQUIRE(apr_http_parser_feed(p, "ab", 2) == APR_OK);
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_NEED_MORE);
    REQUIRE(apr_http_parser_feed(p, "cd", 2) == APR_OK);
    REQUIRE(apr_http_parser_next(p, &r) == APR_HTTP_REQUEST);
    CHECK(r.body_len == 4 && memcmp(r.body, "abcd", 4) == 0);
    apr_http_parser_free(p);
}

TEST(http_feed_refuses_unbounded_buffering)
{
    apr_http_limits lim;
    apr_http_limits_default(&lim);
    lim.max_head = 64;
    lim.max_body = 100;
    apr_http_parser *p = apr_http_parser_new(&lim);
    char junk[512];
    memset(junk, 'x', sizeof junk);
    int refused = 0;
    for (int i = 0; i < 100 && !refused; i++) refused = apr_http_parser_feed(p, junk, 100) == APR_ERR_BUSY;
    CHECK(refused);
    CHECK(apr_http_parser_buffered(p) <= 64 * 2 + 100 + 4096);
    apr_http_parser_free(p);
    apr_http_parser_free(NULL);
}

/* A large body grows the buffer; once its request is done the parser
 * gives the memory back, so an idle keep-alive connection holds little. */
TEST(http_gives_back_a_large_buffer_after_its_request)
{
    apr_http_parser *p = apr_http_parser_new(NULL);
    REQUIRE(p != NULL);
    size_t n = 1u << 20;
    char head[128];
    int hl = snprintf(head, sizeof head, "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: %zu\r\n\r\n", n);
    char *body = malloc(n);
    REQUIRE(body != NULL);
    memset(body, 'b', n);
    apr_http_request r;
    REQUIRE(apr_http_parser_feed(p, head, (size_t)hl) == APR_OK);
    REQUIRE(apr_http_parser_feed(p, body, n) == APR_OK);
    int res = apr_http_parser_next(p, &r);
    while (res == APR_HTTP_HEAD) res = apr_http_parser_next(p, &r);
    CHECK_EQ_INT(res, APR_HTTP_REQUEST);
    CHECK(apr_http_parser_capacity(p) >= n);
    /* The next call (nothing more fed) drops the request and the buffer. */
    CHECK_EQ_INT(apr_http_parser_next(p, &r), APR_HTTP_NEED_MORE);
    CHECK(apr_http_parser_capacity(p) <= 65536);
    /* A pipelined request behind the large one survives the shrink. */
    REQUIRE(apr_http_parser_feed(p, head, (size_t)hl) == APR_OK);
    REQUIRE(apr_http_parser_feed(p, body, n) == APR_OK);
    REQUIRE(apr_http_parser_feed(p, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n", 31) == APR_OK);
    res = apr_http_parser_next(p, &r);
    while (res == APR_HTTP_HEAD) res = apr_http_parser_next(p, &r);
    CHECK_EQ_INT(res, APR_HTTP_REQUEST);
    res = apr_http_parser_next(p, &r);
    CHECK_EQ_INT(res, APR_HTTP_REQUEST);
    CHECK(r.target_len == 5 && memcmp(r.target, "/next", 5) == 0);
    CHECK(apr_http_parser_capacity(p) <= 65536);
    free(body);
    apr_http_parser_free(p);
}

/* A body of 1-byte chunks is six times its size on the wire: the framing
 * read is given back as the body is decoded, so the whole of max_body
 * fits (it used to be refused as "too much buffered" at a sixth of it). */
TEST(http_tiny_chunks_take_no_more_buffer_than_their_data)
{
    apr_http_limits lim = { 16384, 64, 65536 };
    apr_http_parser *p = apr_http_parser_new(&lim);
    REQUIRE(p != NULL);
    const char *head = "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
    size_t n_body = 65536, wire_len = strlen(head) + n_body * 6 + 5;
    char *wire = malloc(wire_len + 1);
    REQUIRE(wire != NULL);
    size_t w = (size_t)sprintf(wire, "%s", head);
    for (size_t i = 0; i < n_body; i++) w += (size_t)sprintf(wire + w, "1\r\n%c\r\n", 'a' + (int)(i % 26));
    w += (size_t)sprintf(wire + w, "0\r\n\r\n");
    REQUIRE(w == wire_len);
    apr_http_request r;
    int res = APR_HTTP_NEED_MORE;
    size_t off = 0;
    while (off < w && res != APR_HTTP_REQUEST && res != APR_HTTP_ERROR) {
        size_t room = apr_http_parser_room(p), k = w - off < 4096 ? w - off : 4096;
        REQUIRE(room > 0);
        if (k > room) k = room;
        REQUIRE(apr_http_parser_feed(p, wire + off, k) == APR_OK);
        off += k;
        do res = apr_http_parser_next(p, &r); while (res == APR_HTTP_HEAD);
    }
    CHECK_EQ_INT(res, APR_HTTP_REQUEST);
    CHECK_EQ_INT(r.body_len, n_body);
    CHECK_EQ_INT(r.consumed, w);  /* the wire's bytes, framing given back or not */
    CHECK_EQ_INT(apr_http_parser_buffered(p), 0);
    CHECK(r.body_len == n_body && r.body[0] == 'a' && r.body[26] == 'a' && r.body[n_body - 1] == 'a' + (int)((n_body - 1) % 26));
    CHECK(apr_http_parser_capacity(p) < 2 * n_body);
    free(wire);
    apr_http_parser_free(p);
}
