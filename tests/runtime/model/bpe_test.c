/* bpe_test.c — apr_tokenize: merge order on small vocabularies, special
 * tokens only when allowed, the output buffer contract, round trips on the
 * Qwen2 vocabulary, and pathological input. */
#include "test.h"
#include "tokenizer_fixture.h"

#include <stdlib.h>
#include <time.h>

/* The ids of text joined with ' ', or an error string. */
static const char *ids_of(const apr_tokenizer *t, const char *text, int flags)
{
    static char out[1024];
    int32_t ids[128];
    size_t n;
    if (apr_tokenize(t, text, strlen(text), flags, ids, 128, &n) != APR_OK) return apr_last_error();
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n && i < 128; i++)
        o += (size_t)snprintf(out + o, sizeof out - o, "%s%d", i ? " " : "", ids[i]);
    return out;
}

static apr_tokenizer *small(const char *pre, const char *const *extra, const int *types, int n_extra,
                            const char *const *merges, int n_merges)
{
    fixture_vocab v = fixture_vocab_default();
    v.pre = pre;
    v.extra = extra;
    v.extra_types = types;
    v.n_extra = n_extra;
    v.merges = merges;
    v.n_merges = n_merges;
    apr_tokenizer *t = NULL;
    if (fixture_tokenizer(&v, &t) != APR_OK) test_fail(__FILE__, __LINE__, "%s", apr_last_error());
    return t;
}

TEST(bpe_applies_the_lowest_rank_first)
{
    /* ids: a=97 b=98 c=99 d=100; extra tokens from 256 on. */
    static const char *const extra[] = { "bc", "ab", "cd", "abc" };
    static const char *const bc_first[] = { "b c", "a b", "c d", "a bc" };
    apr_tokenizer *t = small(NULL, extra, NULL, 4, bc_first, 2);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "abc", 0), "97 256");
    apr_tokenizer_free(t);
    t = small(NULL, extra, NULL, 4, bc_first, 4);
    REQUIRE(t);
    /* "abcd": b+c first; then the queued a+b and c+d are stale, a+bc fires. */
    CHECK_EQ_STR(ids_of(t, "abcd", 0), "259 100");
    apr_tokenizer_free(t);

    static const char *const ab_first[] = { "a b", "b c" };
    t = small(NULL, extra, NULL, 4, ab_first, 2);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "abc", 0), "257 99");
    apr_tokenizer_free(t);
}

TEST(bpe_breaks_ties_to_the_left)
{
    static const char *const extra[] = { "aa", "aaaa" };
    static const char *const merges[] = { "a a", "aa aa" };
    apr_tokenizer *t = small(NULL, extra, NULL, 2, merges, 2);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "aaa", 0), "256 97");
    CHECK_EQ_STR(ids_of(t, "aaaa", 0), "257");
    CHECK_EQ_STR(ids_of(t, "aaaaaaa", 0), "257 256 97");
    apr_tokenizer_free(t);
}

TEST(bpe_never_merges_across_pieces)
{
    static const char *extra[1], *merges[1];
    char tok[16], merge[16];
    snprintf(tok, sizeof tok, "a%s", fixture_spell(" "));    /* "aĠ" */
    snprintf(merge, sizeof merge, "a %s", fixture_spell(" "));
    extra[0] = tok;
    merges[0] = merge;
    apr_tokenizer *t = small(NULL, extra, NULL, 1, merges, 1);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "a b", 0), "97 32 98");   /* pieces "a", " b" */
    apr_tokenizer_free(t);
}

TEST(bpe_llama3_takes_a_whole_piece_that_is_a_token)
{
    /* "abc" is in the vocabulary, but no merge builds it. */
    static const char *const extra[] = { "abc", "ab" };
    static const char *const merges[] = { "a b" };
    apr_tokenizer *t = small("llama-bpe", extra, NULL, 2, merges, 1);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "abc", 0), "256");
    apr_tokenizer_free(t);
    t = small("qwen2", extra, NULL, 2, merges, 1);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "abc", 0), "257 99");
    apr_tokenizer_free(t);
}

TEST(bpe_drops_bytes_the_vocabulary_lacks)
{
    fixture_vocab v = fixture_vocab_default();
    v.drop_byte = 'x';
    apr_tokenizer *t;
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_STR(ids_of(t, "axb", 0), "97 98");
    CHECK_EQ_STR(ids_of(t, "x", 0), "");
    apr_tokenizer_free(t);
}

TEST(bpe_special_tokens_only_when_allowed)
{
    static const char *const extra[] = { "<|x|>", "<tool>", "<|x|>y", "plain" };
    static const int types[] = { APR_TOKEN_CONTROL, APR_TOKEN_USER_DEFINED, APR_TOKEN_CONTROL, APR_TOKEN_NORMAL };
    apr_tokenizer *t = small(NULL, extra, types, 4, NULL, 0);
    REQUIRE(t);
    CHECK_EQ_STR(ids_of(t, "<|x|>", APR_TOKENIZE_SPECIAL), "256");
    CHECK_EQ_STR(ids_of(t, "<|x|>", 0), "60 124 120 124 62");
    CHECK_EQ_STR(ids_of(t, "<tool>", APR_TOKENIZE_SPECIAL), "257");
    CHECK_EQ_STR(ids_of(t, "<tool>", 0), "60 116 111 111 108 62");
    CHECK_EQ_STR(ids_of(t, "a<|x|>yb<tool><|x|>", APR_TOKENIZE_SPECIAL), "97 258 98 257 256");   /* longest */
    CHECK_EQ_STR(ids_of(t, "<|x|<|x|>", APR_TOKENIZE_SPECIAL), "60 124 120 124 256");
    CHECK_EQ_STR(ids_of(t, "plain", APR_TOKENIZE_SPECIAL), "112 108 97 105 110");  /* a normal token is text */
    CHECK_EQ_STR(ids_of(t, "", APR_TOKENIZE_SPECIAL), "");
    apr_tokenizer_free(t);
}

TEST(bpe_special_tokens_on_qwen2)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    CHECK_EQ_STR(ids_of(t, chat, APR_TOKENIZE_SPECIAL), "151644 872 198 6023 151645");
    int32_t ids[64];
    size_t n;
    REQUIRE(apr_tokenize(t, chat, strlen(chat), 0, ids, 64, &n) == APR_OK);
    CHECK(n > 5);
    for (size_t i = 0; i < n; i++) CHECK(!apr_token_is_special(t, ids[i]));
}

TEST(bpe_reports_the_count_when_the_buffer_is_short)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    const char *text = "Hello world, this is a test of the buffer contract.";
    int32_t full[64], part[5 + 1];
    size_t n_full, n;
    REQUIRE(apr_tokenize(t, text, strlen(text), 0, full, 64, &n_full) == APR_OK);
    part[5] = -12345;
    REQUIRE(apr_tokenize(t, text, strlen(text), 0, part, 5, &n) == APR_OK);
    CHECK_EQ_INT(n, n_full);
    CHECK_EQ_INT(part[5], -12345);
    for (int i = 0; i < 5; i++) CHECK_EQ_INT(part[i], full[i]);
    REQUIRE(apr_tokenize(t, text, strlen(text), 0, NULL, 0, &n) == APR_OK);
    CHECK_EQ_INT(n, n_full);
}

TEST(bpe_add_bos)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    CHECK_EQ_STR(ids_of(t, "hi", APR_TOKENIZE_ADD_BOS), "151643 6023");
    CHECK_EQ_STR(ids_of(t, "", APR_TOKENIZE_ADD_BOS), "151643");
    apr_tokenizer *no_bos = small(NULL, NULL, NULL, 0, NULL, 0);
    REQUIRE(no_bos);
    size_t n;
    int32_t id;
    CHECK_EQ_INT(apr_tokenize(no_bos, "x", 1, APR_TOKENIZE_ADD_BOS, &id, 1, &n), APR_ERR_UNSUPPORTED);
    apr_tokenizer_free(no_bos);
}

TEST(bpe_rejects_bad_arguments)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    size_t n = 99;
    int32_t id;
    CHECK_EQ_INT(apr_tokenize(NULL, "x", 1, 0, &id, 1, &n), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_tokenize(t, NULL, 1, 0, &id, 1, &n), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_tokenize(t, "x", 1, 0, NULL, 1, &n), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_tokenize(t, "x", 1, 0, &id, 1, NULL), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_tokenize(t, "x", (size_t)INT32_MAX + 1, 0, &id, 1, &n), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_tokenize(t, NULL, 0, 0, NULL, 0, &n), APR_OK);
    CHECK_EQ_INT(n, 0);
}

/* The bytes the ids stand for, concatenated: what byte-level BPE preserves
 * exactly, valid UTF-8 or not. */
static size_t join_pieces(const apr_tokenizer *t, const int32_t *ids, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *p;
        size_t len;
        if (apr_token_piece(t, ids[i], &p, &len) != APR_OK || o + len > cap) return (size_t)-1;
        memcpy(out + o, p, len);
        o += len;
    }
    return o;
}

TEST(bpe_round_trips_random_text_on_qwen2)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    uint64_t rng = 20240607;
    static char text[4096], back[8192];
    static int32_t ids[4096];
    int bad = 0;
    for (int round = 0; round < 600 && bad < 5; round++) {
        size_t len = fixture_random_text(&rng, text, sizeof text, 1 + fixture_rand(&rng) % 400);
        for (int flags = 0; flags <= APR_TOKENIZE_SPECIAL; flags += APR_TOKENIZE_SPECIAL) {
            size_t n, m;
            REQUIRE(apr_tokenize(t, text, len, flags, ids, 4096, &n) == APR_OK);
            REQUIRE(n <= len);
            REQUIRE(apr_detokenize(t, ids, n, 0, back, sizeof back, &m) == APR_OK);
            if (m != len || memcmp(back, text, len) != 0) {
                bad++;
                test_fail(__FILE__, __LINE__, "round %d (flags %d): \"%s\" came back as \"%.*s\"", round, flags,
                          text, (int)m, back);
            }
        }
    }
}

TEST(bpe_keeps_invalid_utf8_bytes)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    uint64_t rng = 7;
    char text[256], back[1024];
    int32_t ids[256];
    for (int round = 0; round < 500; round++) {
        size_t len = 1 + fixture_rand(&rng) % 200;
        for (size_t i = 0; i < len; i++) text[i] = (char)fixture_rand(&rng);
        size_t n;
        REQUIRE(apr_tokenize(t, text, len, round & 1 ? APR_TOKENIZE_SPECIAL : 0, ids, 256, &n) == APR_OK);
        size_t m = join_pieces(t, ids, n, back, sizeof back);
        CHECK(m == len && memcmp(back, text, len) == 0);
    }
}

TEST(bpe_handles_a_megabyte_in_one_piece)
{
    const apr_tokenizer *t = fixture_qwen2();
    if (!t) SKIP("the Qwen2 vocabulary fixture is missing");
    /* One piece (a letter run): the heap keeps this O(n log n). */
    size_t len = 1 << 20;
    char *text = malloc(len);
    int32_t *ids = malloc(len * sizeof *ids);
    REQUIRE(text && ids);
    memset(text, 'a', len);
    clock_t c0 = clock();
    size_t n;
    REQUIRE(apr_tokenize(t, text, len, 0, ids, len, &n) == APR_OK);
    double seconds = (double)(clock() - c0) / CLOCKS_PER_SEC;
    CHECK(n > 0 && n < len / 4);
    CHECK(seconds < 5);
    char *back = malloc(len);
    REQUIRE(back);
    CHECK(join_pieces(t, ids, n, back, len) == len && memcmp(back, text, len) == 0);
    free(back);
    free(text);
    free(ids);
}
