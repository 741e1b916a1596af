/* detok_test.c — detokenizing: streaming equals whole, incomplete UTF-8 is
 * held back, invalid bytes become U+FFFD (maximal subparts), ids out of
 * range are refused. */
#include "test.h"
#include "tokenizer_fixture.h"
#include "model/unicode.h"

#include <stdlib.h>

#define FFFD "\xef\xbf\xbd"

/* The token of one byte in the Qwen2 vocabulary. */
static int32_t byte_id(const apr_tokenizer *t, uint8_t b)
{
    char one = (char)b;
    const char *spelled = fixture_spell_n(&one, 1);
    return apr_tokenizer_find(t, spelled, strlen(spelled));
}

/* Streams the bytes through byte tokens, one push each; returns the text
 * of every push, '|'-separated, then the flush's. */
static const char *stream_bytes(const apr_tokenizer *t, const char *bytes, size_t n)
{
    static char out[1024];
    apr_detok *d;
    if (apr_detok_new(t, 0, &d) != APR_OK) return "(new failed)";
    size_t o = 0;
    for (size_t i = 0; i <= n; i++) {
        const char *text;
        size_t len;
        apr_status s = i < n ? apr_detok_push(d, byte_id(t, (uint8_t)bytes[i]), &text, &len)
                             : apr_detok_flush(d, &text, &len);
        if (s != APR_OK || o + len + 2 > sizeof out) {
            apr_detok_free(d);
            return "(push failed)";
        }
        if (i) out[o++] = '|';
        memcpy(out + o, text, len);
        o += len;
    }
    out[o] = '\0';
    apr_detok_free(d);
    return out;
}

#define REQUIRE_QWEN2(t)                                                          \
    const apr_tokenizer *t = fixture_qwen2();                                     \
    if (!t) SKIP("tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst is missing")

TEST(detok_holds_back_an_incomplete_sequence)
{
    REQUIRE_QWEN2(t);
    CHECK_EQ_STR(stream_bytes(t, "\xf0\x9f\x99\x82", 4), "|||\xf0\x9f\x99\x82|");   /* 🙂 */
    CHECK_EQ_STR(stream_bytes(t, "a\xc3\xa9z", 4), "a||\xc3\xa9|z|");
    CHECK_EQ_STR(stream_bytes(t, "\xe6\x97", 2), "||" FFFD);                          /* cut short */
}

TEST(detok_replaces_maximal_invalid_subparts)
{
    REQUIRE_QWEN2(t);
    CHECK_EQ_STR(stream_bytes(t, "\x80", 1), FFFD "|");
    CHECK_EQ_STR(stream_bytes(t, "\xc0\xaf", 2), FFFD "|" FFFD "|");                 /* overlong '/' */
    CHECK_EQ_STR(stream_bytes(t, "\xe0\x80", 2), "|" FFFD FFFD "|");                 /* E0 needs A0..BF */
    CHECK_EQ_STR(stream_bytes(t, "\xed\xa0\x80", 3), "|" FFFD FFFD "|" FFFD "|");    /* a surrogate */
    CHECK_EQ_STR(stream_bytes(t, "\xf4\x90", 2), "|" FFFD FFFD "|");                 /* past U+10FFFF */
    CHECK_EQ_STR(stream_bytes(t, "\xf0\x9f\x99" "A", 4), "||" "|" FFFD "A|");        /* one U+FFFD for 3 bytes */
    CHECK_EQ_STR(stream_bytes(t, "\xff" "b", 2), FFFD "|b|");
}

TEST(detok_streaming_equals_whole)
{
    REQUIRE_QWEN2(t);
    uint64_t rng = 99;
    int32_t ids[300];
    static char whole[16384], streamed[16384];
    for (int round = 0; round < 300; round++) {
        size_t n = fixture_rand(&rng) % 300;
        for (size_t i = 0; i < n; i++) {
            uint64_t r = fixture_rand(&rng);
            /* Mostly byte tokens (ids 0..255 and 188..; any order), so
             * sequences split and break often; some whole tokens. */
            ids[i] = r % 4 ? byte_id(t, (uint8_t)(r >> 8)) : (int32_t)((r >> 8) % 151936);
        }
        int flags = round % 3 == 0 ? APR_DETOK_SKIP_CONTROL : 0;
        size_t m;
        REQUIRE(apr_detokenize(t, ids, n, flags, whole, sizeof whole, &m) == APR_OK);
        REQUIRE(m <= sizeof whole);
        CHECK(apr_utf8_valid((const uint8_t *)whole, m));
        apr_detok *d;
        REQUIRE(apr_detok_new(t, flags, &d) == APR_OK);
        size_t o = 0;
        for (size_t i = 0; i <= n; i++) {
            const char *text;
            size_t len;
            REQUIRE((i < n ? apr_detok_push(d, ids[i], &text, &len) : apr_detok_flush(d, &text, &len)) == APR_OK);
            CHECK(text[len] == '\0');
            CHECK(apr_utf8_valid((const uint8_t *)text, len));
            REQUIRE(o + len <= sizeof streamed);
            memcpy(streamed + o, text, len);
            o += len;
        }
        apr_detok_free(d);
        CHECK(o == m && memcmp(streamed, whole, m) == 0);
    }
}

TEST(detok_skips_control_tokens_on_request)
{
    REQUIRE_QWEN2(t);
    int32_t ids[] = { 151644, 872, 151645, 151646 };   /* <|im_start|> user <|im_end|> [PAD151646] */
    char buf[64];
    size_t n;
    REQUIRE(apr_detokenize(t, ids, 4, 0, buf, sizeof buf, &n) == APR_OK);
    CHECK(n == 37 && memcmp(buf, "<|im_start|>user<|im_end|>[PAD151646]", 37) == 0);
    REQUIRE(apr_detokenize(t, ids, 4, APR_DETOK_SKIP_CONTROL, buf, sizeof buf, &n) == APR_OK);
    /* user-defined tokens are text the model may mean (<tool_call>): kept */
    CHECK(n == 15 && memcmp(buf, "user[PAD151646]", 15) == 0);
}

TEST(detok_refuses_ids_out_of_range)
{
    REQUIRE_QWEN2(t);
    int32_t ids[] = { 9707, 151936 };
    char buf[16];
    size_t n = 5;
    CHECK_EQ_INT(apr_detokenize(t, ids, 2, 0, buf, sizeof buf, &n), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "151936") != NULL);
    CHECK_EQ_INT(n, 0);

    apr_detok *d;
    REQUIRE(apr_detok_new(t, 0, &d) == APR_OK);
    const char *text;
    size_t len;
    REQUIRE(apr_detok_push(d, byte_id(t, 0xE6), &text, &len) == APR_OK);
    CHECK_EQ_INT(apr_detok_push(d, -3, &text, &len), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "-3") != NULL);
    /* The held byte is still there: the sequence completes. */
    REQUIRE(apr_detok_push(d, byte_id(t, 0x97), &text, &len) == APR_OK);
    REQUIRE(apr_detok_push(d, byte_id(t, 0xA5), &text, &len) == APR_OK);
    CHECK_EQ_STR(text, "\xe6\x97\xa5");
    apr_detok_reset(d);
    REQUIRE(apr_detok_push(d, byte_id(t, 0xE6), &text, &len) == APR_OK);
    apr_detok_reset(d);
    REQUIRE(apr_detok_flush(d, &text, &len) == APR_OK);
    CHECK_EQ_INT(len, 0);
    apr_detok_free(d);
    apr_detok_free(NULL);
}

TEST(detok_reports_the_length_when_the_buffer_is_short)
{
    REQUIRE_QWEN2(t);
    int32_t ids[] = { 9707, 1879, 0 };   /* "Hello", " world", "!" */
    char buf[8] = "xxxxxxxx";
    size_t n;
    REQUIRE(apr_detokenize(t, ids, 3, 0, buf, 5, &n) == APR_OK);
    CHECK_EQ_INT(n, 12);
    CHECK(memcmp(buf, "Hellox", 6) == 0);
    REQUIRE(apr_detokenize(t, ids, 3, 0, NULL, 0, &n) == APR_OK);
    CHECK_EQ_INT(n, 12);
    CHECK_EQ_INT(apr_detokenize(t, NULL, 1, 0, buf, 8, &n), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_detok_new(NULL, 0, NULL), APR_ERR_INVALID);
}
