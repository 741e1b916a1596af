/* tokenizer_test.c — building tokenizers from GGUF metadata: llama.cpp's
 * reference vectors on the real Qwen2 vocabulary, the queries, and every
 * way the metadata can be wrong. */
#include "test.h"
#include "tokenizer_fixture.h"

#include <stdlib.h>

#define REQUIRE_QWEN2(t)                                                          \
    const apr_tokenizer *t = fixture_qwen2();                                     \
    if (!t) SKIP("tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst is missing")

TEST(tokenizer_matches_llama_cpp_on_the_46_qwen2_vectors)
{
    REQUIRE_QWEN2(t);
    const fixture_vector *v;
    size_t n = fixture_qwen2_vectors(&v);
    CHECK_EQ_INT(n, 46);
    int32_t ids[512];
    for (size_t i = 0; i < n; i++) {
        size_t got;
        /* As llama.cpp's test-tokenizer-0: no BOS, special tokens not parsed. */
        REQUIRE(apr_tokenize(t, v[i].text, v[i].len, 0, ids, 512, &got) == APR_OK);
        int same = got == v[i].n_ids;
        for (size_t k = 0; same && k < got; k++) same = ids[k] == v[i].ids[k];
        if (!same) test_fail(__FILE__, __LINE__, "vector %zu (\"%.*s\"): %zu ids, expected %zu", i,
                             (int)(v[i].len < 40 ? v[i].len : 40), v[i].text, got, v[i].n_ids);
    }
}

TEST(tokenizer_reads_the_special_ids_of_qwen2)
{
    REQUIRE_QWEN2(t);
    CHECK_EQ_INT(apr_tokenizer_n_vocab(t), 151936);
    CHECK_EQ_INT(apr_tokenizer_bos(t), 151643);
    CHECK_EQ_INT(apr_tokenizer_eos(t), 151643);
    CHECK_EQ_INT(apr_tokenizer_eot(t), 151645);   /* <|im_end|>, found by its text */
    CHECK_EQ_INT(apr_tokenizer_add_bos(t), 0);
    CHECK_EQ_STR(apr_tokenizer_pre(t), "qwen2");
    CHECK_EQ_INT(apr_tokenizer_find(t, "<|im_start|>", 12), 151644);
    CHECK_EQ_INT(apr_tokenizer_find(t, "\xc4\xa0the", 5), 279);   /* "Ġthe" */
    CHECK_EQ_INT(apr_tokenizer_find(t, "no such token here", 18), -1);
}

TEST(tokenizer_token_types_specials_and_ends)
{
    REQUIRE_QWEN2(t);
    CHECK_EQ_INT(apr_token_get_type(t, 151644), APR_TOKEN_CONTROL);
    CHECK_EQ_INT(apr_token_get_type(t, 151646), APR_TOKEN_USER_DEFINED);
    CHECK_EQ_INT(apr_token_get_type(t, 279), APR_TOKEN_NORMAL);
    CHECK_EQ_INT(apr_token_get_type(t, -1), -1);
    CHECK_EQ_INT(apr_token_get_type(t, 151936), -1);
    CHECK(apr_token_is_special(t, 151644));
    CHECK(apr_token_is_special(t, 151646));
    CHECK(!apr_token_is_special(t, 279));
    CHECK(!apr_token_is_special(t, 1 << 30));
    CHECK(apr_token_is_eog(t, 151643));   /* <|endoftext|> */
    CHECK(apr_token_is_eog(t, 151645));   /* <|im_end|> */
    CHECK(!apr_token_is_eog(t, 151644));  /* <|im_start|> */
    CHECK(!apr_token_is_eog(t, 279));
    CHECK(!apr_token_is_eog(t, -5));
}

TEST(tokenizer_text_and_piece_of_a_token)
{
    REQUIRE_QWEN2(t);
    const char *text, *bytes;
    size_t len;
    REQUIRE(apr_token_text(t, 279, &text) == APR_OK);
    CHECK_EQ_STR(text, "\xc4\xa0the");
    REQUIRE(apr_token_piece(t, 279, &bytes, &len) == APR_OK);
    CHECK(len == 4 && memcmp(bytes, " the", 4) == 0);
    REQUIRE(apr_token_piece(t, 198, &bytes, &len) == APR_OK);   /* "Ċ" */
    CHECK(len == 1 && bytes[0] == '\n');
    REQUIRE(apr_token_piece(t, 151645, &bytes, &len) == APR_OK); /* control: its text as is */
    CHECK(len == 10 && memcmp(bytes, "<|im_end|>", 10) == 0);
    CHECK_EQ_INT(apr_token_text(t, 151936, &text), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "151936") != NULL);
    CHECK_EQ_INT(apr_token_piece(t, -1, &bytes, &len), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "-1") != NULL);
}

/* ------------------------------------------------------------------ */
/* Small vocabularies: what the metadata decides                        */

TEST(tokenizer_special_ids_and_eot_from_metadata)
{
    static const char *const extra[] = { "<s>", "</s>", "<|eot_id|>", "<|im_end|>" };
    static const int types[] = { APR_TOKEN_CONTROL, APR_TOKEN_CONTROL, APR_TOKEN_CONTROL, APR_TOKEN_CONTROL };
    fixture_vocab v = fixture_vocab_default();
    v.extra = extra;
    v.extra_types = types;
    v.n_extra = 4;
    v.bos = 256;
    v.eos = 257;
    apr_tokenizer *t;
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_INT(apr_tokenizer_bos(t), 256);
    CHECK_EQ_INT(apr_tokenizer_eos(t), 257);
    CHECK_EQ_INT(apr_tokenizer_eot(t), 258);   /* <|eot_id|> comes before <|im_end|> */
    CHECK(apr_token_is_eog(t, 257) && apr_token_is_eog(t, 258) && apr_token_is_eog(t, 259));
    CHECK(!apr_token_is_eog(t, 256));
    apr_tokenizer_free(t);

    v.eot = 259;   /* the key wins over the text search */
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_INT(apr_tokenizer_eot(t), 259);
    apr_tokenizer_free(t);
}

TEST(tokenizer_add_bos_defaults_by_pre_tokenizer)
{
    static const char *const extra[] = { "<|begin_of_text|>" };
    static const int types[] = { APR_TOKEN_CONTROL };
    fixture_vocab v = fixture_vocab_default();
    v.extra = extra;
    v.extra_types = types;
    v.n_extra = 1;
    v.bos = 256;
    apr_tokenizer *t;
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_INT(apr_tokenizer_add_bos(t), 0);
    apr_tokenizer_free(t);
    v.pre = "llama-bpe";
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_INT(apr_tokenizer_add_bos(t), 1);
    apr_tokenizer_free(t);
    v.add_bos = 0;
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    CHECK_EQ_INT(apr_tokenizer_add_bos(t), 0);
    apr_tokenizer_free(t);
}

TEST(tokenizer_knows_the_pre_tokenizer_aliases)
{
    static const char *const names[] = { "qwen2", "llama-bpe", "llama3", "smollm", "starcoder", "gpt-2", "olmo" };
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        fixture_vocab v = fixture_vocab_default();
        v.pre = names[i];
        apr_tokenizer *t;
        REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
        CHECK_EQ_STR(apr_tokenizer_pre(t), names[i]);
        apr_tokenizer_free(t);
    }
}

static void expect_failure(fixture_vocab v, apr_status code, const char *words)
{
    apr_tokenizer *t = (apr_tokenizer *)1;
    apr_status s = fixture_tokenizer(&v, &t);
    CHECK_EQ_INT(s, code);
    CHECK(t == NULL);
    if (!strstr(apr_last_error(), words))
        test_fail(__FILE__, __LINE__, "message \"%s\" lacks \"%s\"", apr_last_error(), words);
}

TEST(tokenizer_rejects_what_it_cannot_build)
{
    fixture_vocab v = fixture_vocab_default();
    v.pre = "deepseek-coder";
    expect_failure(v, APR_ERR_UNSUPPORTED, "\"deepseek-coder\"");
    v = fixture_vocab_default();
    v.model = "llama";   /* SentencePiece */
    expect_failure(v, APR_ERR_UNSUPPORTED, "\"llama\"");
    v = fixture_vocab_default();
    v.pre = "-";
    expect_failure(v, APR_ERR_NOT_FOUND, "tokenizer.ggml.pre");
    v = fixture_vocab_default();
    v.model = "-";
    expect_failure(v, APR_ERR_NOT_FOUND, "tokenizer.ggml.model");
    v = fixture_vocab_default();
    v.no_merges_key = 1;
    expect_failure(v, APR_ERR_NOT_FOUND, "tokenizer.ggml.merges");
    v = fixture_vocab_default();
    v.eos = 256;   /* one past the last id */
    expect_failure(v, APR_ERR_FORMAT, "eos_token_id = 256");
    static const char *const bad_merge[] = { "nospace" };
    v = fixture_vocab_default();
    v.merges = bad_merge;
    v.n_merges = 1;
    expect_failure(v, APR_ERR_FORMAT, "merges[0]");
}

TEST(tokenizer_rejects_bad_arguments)
{
    apr_tokenizer *t = (apr_tokenizer *)1;
    CHECK_EQ_INT(apr_tokenizer_from_source(NULL, &t), APR_ERR_INVALID);
    CHECK(t == NULL);
    CHECK_EQ_INT(apr_tokenizer_from_source(NULL, NULL), APR_ERR_INVALID);
    apr_tokenizer_free(NULL);
    CHECK_EQ_INT(apr_tokenizer_n_vocab(NULL), 0);
    CHECK_EQ_INT(apr_tokenizer_find(NULL, "a", 1), -1);
}

TEST(tokenizer_merges_of_unknown_tokens_are_ignored)
{
    /* "x yz" names a token the vocabulary lacks: it can never fire. */
    static const char *const extra[] = { "ab" };
    static const char *const merges[] = { "x yz", "a b" };
    fixture_vocab v = fixture_vocab_default();
    v.extra = extra;
    v.n_extra = 1;
    v.merges = merges;
    v.n_merges = 2;
    apr_tokenizer *t;
    REQUIRE(fixture_tokenizer(&v, &t) == APR_OK);
    int32_t ids[8];
    size_t n;
    REQUIRE(apr_tokenize(t, "ab", 2, 0, ids, 8, &n) == APR_OK);
    CHECK_EQ_INT(n, 1);
    CHECK_EQ_INT(ids[0], 256);
    apr_tokenizer_free(t);
}
