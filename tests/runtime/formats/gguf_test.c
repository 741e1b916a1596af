/* gguf_test.c — the GGUF reader on the fixture models, the Qwen2 vocabulary
 * and hand-built broken images. The malformed-file corpus goes through the
 * `apr` binary in tests/malformed/run.sh and tests/lua/malformed_spec.lua. */
#include "test.h"
#include "apr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

static const char *MODELS[] = {
    "tests/fixtures/models/tiny-q4_k_m.gguf",
    "tests/fixtures/models/tiny-q8_0.gguf",
    "tests/fixtures/models/tiny-f16.gguf",
    "tests/fixtures/models/gqa5-q4_k_m.gguf",
};

/* The vocabulary file, decompressed into memory (caller frees). */
static void *load_vocab(size_t *size)
{
    FILE *fp = fopen("tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst", "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    void *z = malloc((size_t)n);
    size_t got = fread(z, 1, (size_t)n, fp);
    fclose(fp);
    unsigned long long full = ZSTD_getFrameContentSize(z, got);
    void *out = NULL;
    if (full != ZSTD_CONTENTSIZE_ERROR && full != ZSTD_CONTENTSIZE_UNKNOWN) {
        out = malloc(full);
        *size = ZSTD_decompress(out, full, z, got);
        if (ZSTD_isError(*size)) { free(out); out = NULL; }
    }
    free(z);
    return out;
}

TEST(gguf_reads_the_fixture_models)
{
    for (size_t m = 0; m < sizeof MODELS / sizeof *MODELS; m++) {
        apr_gguf *f;
        REQUIRE(apr_gguf_open(MODELS[m], &f) == APR_OK);
        CHECK_EQ_INT(apr_gguf_version(f), 3);
        CHECK_EQ_INT(apr_gguf_alignment(f), 32);
        CHECK(apr_gguf_data_offset(f) % 32 == 0);
        CHECK(apr_gguf_header_size(f) <= apr_gguf_data_offset(f));
        const char *arch;
        CHECK(apr_gguf_get_str(f, "general.architecture", &arch) == APR_OK);
        CHECK_EQ_STR(arch, "qwen2");
        int64_t layers;
        CHECK(apr_gguf_get_int(f, "qwen2.block_count", &layers) == APR_OK);
        CHECK_EQ_INT(layers, 2);
        double base;
        CHECK(apr_gguf_get_float(f, "qwen2.rope.freq_base", &base) == APR_OK);
        CHECK_NEAR(base, 1e6, 0);
        int add_bos = -1;
        CHECK(apr_gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &add_bos) == APR_OK);
        CHECK(add_bos == 0 || add_bos == 1);
        /* 2 layers x 12 tensors + token_embd, output_norm, output */
        CHECK_EQ_INT(apr_gguf_n_tensors(f), 27);
        int64_t i = apr_gguf_find_tensor(f, "blk.1.ffn_down.weight");
        REQUIRE(i >= 0);
        apr_gguf_tensor_info t;
        REQUIRE(apr_gguf_tensor(f, i, &t) == APR_OK);
        CHECK_EQ_STR(t.name, "blk.1.ffn_down.weight");
        CHECK_EQ_INT(t.n_dims, 2);
        CHECK_EQ_INT(t.ne[2], 1);
        CHECK(t.ne[0] > t.ne[1]);  /* [n_ff, n_embd] */
        CHECK((const char *)t.data == (const char *)apr_gguf_base(f) + apr_gguf_data_offset(f) + t.offset);
        CHECK(t.offset + t.nbytes + apr_gguf_data_offset(f) <= apr_gguf_file_size(f));
        CHECK_EQ_INT(apr_gguf_find_tensor(f, "blk.2.ffn_down.weight"), -1);
        apr_gguf_close(f);
    }
}

TEST(gguf_tensor_table_matches_the_layout_of_the_q4_k_m_rule)
{
    apr_gguf *f;
    REQUIRE(apr_gguf_open(MODELS[0], &f) == APR_OK);
    apr_gguf_tensor_info t;
    REQUIRE(apr_gguf_tensor(f, apr_gguf_find_tensor(f, "token_embd.weight"), &t) == APR_OK);
    CHECK_EQ_INT(t.type, APR_Q4_K);
    CHECK_EQ_INT(t.ne[0], 256);
    CHECK_EQ_INT(t.ne[1], 2048);
    CHECK_EQ_INT(t.nbytes, 256 / 256 * 144 * 2048);
    REQUIRE(apr_gguf_tensor(f, apr_gguf_find_tensor(f, "output.weight"), &t) == APR_OK);
    CHECK_EQ_INT(t.type, APR_Q6_K);
    REQUIRE(apr_gguf_tensor(f, apr_gguf_find_tensor(f, "blk.0.attn_q.bias"), &t) == APR_OK);
    CHECK_EQ_INT(t.type, APR_F32);
    CHECK_EQ_INT(t.n_dims, 1);
    CHECK_EQ_INT(t.nbytes, 1024);
    CHECK(apr_gguf_tensor(f, 27, &t) == APR_ERR_RANGE);
    CHECK(apr_gguf_tensor(f, -1, &t) == APR_ERR_RANGE);
    apr_gguf_close(f);
}

TEST(gguf_typed_lookups_convert_or_say_why_not)
{
    apr_gguf *f;
    REQUIRE(apr_gguf_open(MODELS[1], &f) == APR_OK);
    int64_t n;
    double x;
    const char *s;
    CHECK(apr_gguf_get_int(f, "no.such.key", &n) == APR_ERR_NOT_FOUND);
    CHECK(strstr(apr_last_error(), "no key 'no.such.key'") != NULL);
    CHECK(apr_gguf_get_int(f, "general.name", &n) == APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "is a string, not an integer") != NULL);
    CHECK(apr_gguf_get_float(f, "qwen2.block_count", &x) == APR_ERR_FORMAT);
    CHECK(apr_gguf_get_str(f, "qwen2.block_count", &s) == APR_ERR_FORMAT);
    CHECK(apr_gguf_get_int(f, "general.file_type", &n) == APR_OK);
    CHECK_EQ_INT(n, 7);  /* llama.cpp's LLAMA_FTYPE_MOSTLY_Q8_0 */
    int64_t k = apr_gguf_find_kv(f, "tokenizer.ggml.token_type");
    REQUIRE(k >= 0);
    const char *key;
    apr_gguf_value v;
    REQUIRE(apr_gguf_kv(f, k, &key, &v) == APR_OK);
    CHECK_EQ_STR(key, "tokenizer.ggml.token_type");
    CHECK_EQ_INT(v.type, APR_GGUF_ARRAY);
    CHECK_EQ_INT(v.elem_type, APR_GGUF_INT32);
    CHECK_EQ_INT(v.len, 2048);
    CHECK_EQ_INT(v.size, 12 + 4 * 2048);
    CHECK(apr_gguf_kv(f, apr_gguf_n_kv(f), &key, &v) == APR_ERR_RANGE);
    apr_gguf_close(f);
}

TEST(gguf_indexes_the_qwen2_vocabulary)
{
    size_t size = 0;
    void *image = load_vocab(&size);
    REQUIRE(image != NULL);
    apr_gguf *f;
    REQUIRE(apr_gguf_open_memory(image, size, &f) == APR_OK);
    CHECK_EQ_INT(apr_gguf_n_tensors(f), 0);
    /* The file ends with the header: no data section, no padding. */
    CHECK_EQ_INT(apr_gguf_header_size(f), size);
    apr_gguf_value tokens, tok, merges, m;
    const char *key;
    REQUIRE(apr_gguf_kv(f, apr_gguf_find_kv(f, "tokenizer.ggml.tokens"), &key, &tokens) == APR_OK);
    CHECK_EQ_INT(tokens.elem_type, APR_GGUF_STRING);
    CHECK_EQ_INT(tokens.len, 151936);
    REQUIRE(apr_gguf_array_get(f, &tokens, 0, &tok) == APR_OK);
    CHECK_EQ_INT(tok.type, APR_GGUF_STRING);
    CHECK(tok.len == 1 && memcmp(tok.data, "!", 1) == 0);
    REQUIRE(apr_gguf_array_get(f, &tokens, 151643, &tok) == APR_OK);
    CHECK(tok.len == 13 && memcmp(tok.data, "<|endoftext|>", 13) == 0);
    CHECK_EQ_INT(tok.size, 8 + 13);
    CHECK(apr_gguf_array_get(f, &tokens, 151936, &tok) == APR_ERR_RANGE);
    /* Consecutive elements are adjacent in the file: the index is exact. */
    apr_gguf_value a, b;
    for (uint64_t i = 0; i + 1 < tokens.len; i += 997) {
        REQUIRE(apr_gguf_array_get(f, &tokens, i, &a) == APR_OK);
        REQUIRE(apr_gguf_array_get(f, &tokens, i + 1, &b) == APR_OK);
        CHECK((const char *)a.data + a.len + 8 == (const char *)b.data);
    }
    REQUIRE(apr_gguf_kv(f, apr_gguf_find_kv(f, "tokenizer.ggml.merges"), &key, &merges) == APR_OK);
    CHECK_EQ_INT(merges.len, 151387);
    REQUIRE(apr_gguf_array_get(f, &merges, 0, &m) == APR_OK);
    CHECK(m.len == 5 && memcmp(m.data, "\xc4\xa0 \xc4\xa0", 5) == 0);  /* "Ġ Ġ" */
    /* A forged value is refused, not followed. */
    apr_gguf_value forged = tokens;
    forged.index = (int64_t)1 << 40;
    CHECK(apr_gguf_array_get(f, &forged, 0, &tok) == APR_ERR_INVALID);
    apr_gguf_close(f);
    free(image);
}

/* ===================================================================== */
/* Broken images                                                         */
/* ===================================================================== */

/* A small valid image written by hand: 2 keys, 1 F32 tensor of 8 elements. */
typedef struct { uint8_t b[512]; size_t n; } img;
static void u32(img *m, uint32_t v) { memcpy(m->b + m->n, &v, 4); m->n += 4; }
static void u64(img *m, uint64_t v) { memcpy(m->b + m->n, &v, 8); m->n += 8; }
static void str(img *m, const char *s) { u64(m, strlen(s)); memcpy(m->b + m->n, s, strlen(s)); m->n += strlen(s); }

static img small_image(void)
{
    img m = { .n = 0 };
    memcpy(m.b, "GGUF", 4); m.n = 4;
    u32(&m, 3); u64(&m, 1); u64(&m, 2);
    str(&m, "general.architecture"); u32(&m, APR_GGUF_STRING); str(&m, "llama");
    str(&m, "general.alignment"); u32(&m, APR_GGUF_UINT32); u32(&m, 16);
    str(&m, "w"); u32(&m, 1); u64(&m, 8); u32(&m, APR_F32); u64(&m, 0);
    while (m.n % 16) m.b[m.n++] = 0;
    for (int i = 0; i < 32; i++) m.b[m.n++] = (uint8_t)i;
    return m;
}

static apr_status open_image(const img *m, size_t n)
{
    apr_gguf *f = NULL;
    apr_status s = apr_gguf_open_memory(m->b, n, &f);
    CHECK((s == APR_OK) == (f != NULL));
    apr_gguf_close(f);
    return s;
}

TEST(gguf_hand_built_image_opens)
{
    img m = small_image();
    apr_gguf *f;
    REQUIRE(apr_gguf_open_memory(m.b, m.n, &f) == APR_OK);
    CHECK_EQ_INT(apr_gguf_alignment(f), 16);
    apr_gguf_tensor_info t;
    REQUIRE(apr_gguf_tensor(f, 0, &t) == APR_OK);
    CHECK_EQ_INT(t.nbytes, 32);
    CHECK_EQ_INT(((const uint8_t *)t.data)[31], 31);
    CHECK_EQ_STR(apr_gguf_path(f), "<memory>");
    apr_gguf_close(f);
}

TEST(gguf_every_truncation_fails_cleanly)
{
    img m = small_image();
    for (size_t n = 0; n < m.n; n++) {
        CHECK_EQ_INT(open_image(&m, n), APR_ERR_FORMAT);
        CHECK(strstr(apr_last_error(), "<memory>: ") == apr_last_error());
        CHECK(strchr(apr_last_error(), '\n') == NULL);
    }
    CHECK_EQ_INT(open_image(&m, m.n), APR_OK);
}

TEST(gguf_every_single_byte_corruption_is_safe)
{
    /* Any value in any byte either opens or fails with a message; under
     * ASan this also proves no read leaves the image. */
    img m = small_image();
    int opened = 0, failed = 0;
    for (size_t i = 0; i < m.n; i++) {
        uint8_t keep = m.b[i];
        for (int v = 0; v < 256; v += 15) {
            m.b[i] = (uint8_t)v;
            apr_status s = open_image(&m, m.n);
            if (s == APR_OK) opened++;
            else { failed++; CHECK_EQ_INT(s, APR_ERR_FORMAT); }
        }
        m.b[i] = keep;
    }
    CHECK(opened > 0 && failed > 0);
}

/* Replaces the 4 or 8 bytes at `at` and expects a failure naming `what`. */
static void expect_bad(size_t at, int width, uint64_t value, const char *what)
{
    img m = small_image();
    memcpy(m.b + at, &value, (size_t)width);
    CHECK_EQ_INT(open_image(&m, m.n), APR_ERR_FORMAT);
    if (!strstr(apr_last_error(), what)) test_fail(__FILE__, __LINE__, "'%s' lacks '%s'", apr_last_error(), what);
}

TEST(gguf_rejects_each_kind_of_bad_header)
{
    size_t kv0 = 24, val0 = kv0 + 8 + 20 + 4;           /* first key's value */
    size_t kv1 = val0 + 8 + 5, align = kv1 + 8 + 17 + 4; /* alignment value */
    size_t ti = align + 4, dims = ti + 8 + 1;            /* tensor info */
    expect_bad(0, 4, 0x46554747 ^ 1, "not a GGUF file");
    expect_bad(4, 4, 1, "GGUF version 1 is not supported (32-bit counts; apr reads versions 2 and 3) at byte 4");
    expect_bad(4, 4, 4, "version 4 is not supported");
    expect_bad(4, 4, 0x03000000, "big-endian");
    expect_bad(8, 8, (uint64_t)1 << 63, "tensor count 9223372036854775808 cannot fit");
    expect_bad(16, 8, (uint64_t)1 << 63, "key/value count 9223372036854775808 cannot fit");
    expect_bad(kv0, 8, 0, "empty key");
    expect_bad(kv0, 8, (uint64_t)-1, "key of 18446744073709551615 bytes runs past the end of the file");
    expect_bad(kv0 + 28, 4, 13, "unknown value type 13");
    expect_bad(val0, 8, 1000, "string of 1000 bytes runs past the end");
    expect_bad(align, 4, 24, "24 is not a power of two");
    expect_bad(align, 4, 0, "0 is not a power of two");
    expect_bad(dims, 4, 0, "has 0 dimensions");
    expect_bad(dims, 4, 5, "has 5 dimensions");
    expect_bad(dims + 4, 8, (uint64_t)1 << 63, "beyond 2^63-1");
    expect_bad(dims + 12, 4, 4, "unknown tensor type 4");
    expect_bad(dims + 12, 4, APR_Q4_K, "not a whole number of Q4_K blocks");
    expect_bad(dims + 16, 8, 8, "not a multiple of the alignment (16)");
    expect_bad(dims + 16, 8, 16, "past end of file");
}

TEST(gguf_rejects_duplicates_overlap_and_deep_nesting)
{
    /* Duplicate keys. */
    img m = { .n = 0 };
    memcpy(m.b, "GGUF", 4); m.n = 4;
    u32(&m, 3); u64(&m, 0); u64(&m, 2);
    str(&m, "a"); u32(&m, APR_GGUF_UINT8); m.b[m.n++] = 1;
    str(&m, "a"); u32(&m, APR_GGUF_UINT8); m.b[m.n++] = 2;
    CHECK_EQ_INT(open_image(&m, m.n), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "key 'a': duplicate key (first at byte 24) at byte 38") != NULL);

    /* Two tensors sharing bytes, then two with one name. */
    for (int dup_name = 0; dup_name < 2; dup_name++) {
        m.n = 0;
        memcpy(m.b, "GGUF", 4); m.n = 4;
        u32(&m, 2); u64(&m, 2); u64(&m, 0);
        str(&m, "x"); u32(&m, 1); u64(&m, 16); u32(&m, APR_F32); u64(&m, 0);
        str(&m, dup_name ? "x" : "y"); u32(&m, 1); u64(&m, 16); u32(&m, APR_F32); u64(&m, 32);
        while (m.n % 32) m.b[m.n++] = 0;
        memset(m.b + m.n, 0, 128); m.n += 128;
        CHECK_EQ_INT(open_image(&m, m.n), APR_ERR_FORMAT);
        CHECK(strstr(apr_last_error(), dup_name ? "duplicate tensor name" : "overlap") != NULL);
    }

    /* Arrays nested 17 deep. */
    m.n = 0;
    memcpy(m.b, "GGUF", 4); m.n = 4;
    u32(&m, 3); u64(&m, 0); u64(&m, 1);
    str(&m, "deep"); u32(&m, APR_GGUF_ARRAY);
    for (int d = 0; d < 17; d++) { u32(&m, APR_GGUF_ARRAY); u64(&m, 1); }
    CHECK_EQ_INT(open_image(&m, m.n), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "nested more than 16 deep") != NULL);
}

TEST(gguf_open_reports_missing_and_odd_files)
{
    apr_gguf *f = (apr_gguf *)1;
    CHECK_EQ_INT(apr_gguf_open("tests/fixtures/no-such.gguf", &f), APR_ERR_NOT_FOUND);
    CHECK(f == NULL);
    CHECK(strstr(apr_last_error(), "tests/fixtures/no-such.gguf: No such file") != NULL);
    CHECK_EQ_INT(apr_gguf_open("tests/fixtures", &f), APR_ERR_IO);
    CHECK(strstr(apr_last_error(), "not a regular file") != NULL);
    CHECK_EQ_INT(apr_gguf_open("/dev/null", &f), APR_ERR_IO);
    CHECK_EQ_INT(apr_gguf_open(NULL, &f), APR_ERR_INVALID);
    apr_gguf_close(NULL);
}

/* Opens the path in the child: 0 if the open failed with APR_ERR_IO and
 * the message says what the path is, 1 otherwise. */
static int open_fails_naming(const void *arg)
{
    const char *const *what = arg;
    apr_gguf *f = NULL;
    apr_status s = apr_gguf_open(what[0], &f);
    apr_gguf_close(f);
    return !(s == APR_ERR_IO && strstr(apr_last_error(), what[1]) != NULL);
}

/* Issue 16: open() without O_NONBLOCK waited forever for a FIFO's writer
 * before the type check could refuse it. */
TEST(gguf_open_refuses_a_fifo_without_blocking)
{
    char dir[] = "/tmp/apr-fifo-XXXXXX", fifo[64];
    REQUIRE(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/model.gguf", dir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    const char *cases[][2] = {
        { fifo, "model.gguf: not a regular file (a FIFO)" },
        { "tests/fixtures", "tests/fixtures: not a regular file (a directory)" },
        { "/dev/null", "/dev/null: not a regular file (a character device)" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int r = test_in_child(open_fails_naming, cases[i], 5);
        if (r != 0) test_fail(__FILE__, __LINE__, "%s: %s", cases[i][0], r < 0 ? "blocked (or crashed)" : "wrong result");
    }
    unlink(fifo);
    rmdir(dir);
}
