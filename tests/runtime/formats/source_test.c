/* source_test.c — the model-source interface over GGUF: it answers what the
 * GGUF reader answers, tensor bytes with their lifetimes, bad arguments,
 * and split models (tests/fixtures/split: tests/fixtures/malformed/
 * ok-model.gguf cut in three by tests/lua/gguf_split.lua) read as one. */
#include "test.h"
#include "apr.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define Q8 "tests/fixtures/models/tiny-q8_0.gguf"
#define WHOLE "tests/fixtures/malformed/ok-model.gguf"
#define SPLIT "tests/fixtures/split/ok-model-00001-of-00003.gguf"
#define PART2 "tests/fixtures/split/ok-model-00002-of-00003.gguf"
#define PART3 "tests/fixtures/split/ok-model-00003-of-00003.gguf"

TEST(source_answers_what_the_gguf_reader_answers)
{
    apr_gguf *g = NULL;
    apr_source *s = NULL;
    REQUIRE(apr_gguf_open(Q8, &g) == APR_OK);
    REQUIRE(apr_source_open(Q8, &s) == APR_OK);
    apr_source_info info;
    apr_source_get_info(s, &info);
    CHECK_EQ_STR(info.format, "GGUF");
    CHECK_EQ_INT(info.version, 3);
    CHECK_EQ_INT(info.n_files, 1);
    CHECK(info.size == apr_gguf_file_size(g));
    CHECK_EQ_INT(info.n_kv, apr_gguf_n_kv(g));
    CHECK_EQ_INT(info.n_tensors, apr_gguf_n_tensors(g));
    CHECK(info.alignment == apr_gguf_alignment(g) && info.data_offset == apr_gguf_data_offset(g));
    CHECK_EQ_STR(apr_source_path(s), Q8);
    CHECK(apr_source_gguf(s, 0) != NULL && apr_source_gguf(s, 1) == NULL);

    /* metadata: keys, values and the typed lookups */
    for (int64_t i = 0; i < info.n_kv; i++) {
        const char *k1, *k2;
        apr_gguf_value v1, v2;
        REQUIRE(apr_gguf_kv(g, i, &k1, &v1) == APR_OK && apr_source_kv(s, i, &k2, &v2) == APR_OK);
        CHECK_EQ_STR(k1, k2);
        CHECK(v1.type == v2.type && v1.len == v2.len && v1.size == v2.size && memcmp(v1.data, v2.data, v1.size) == 0);
        CHECK_EQ_INT(apr_source_find_kv(s, k1), i);
    }
    int64_t n;
    double x;
    const char *str;
    int b;
    CHECK(apr_source_get_int(s, "qwen2.block_count", &n) == APR_OK && n == 2);
    CHECK(apr_source_get_float(s, "qwen2.rope.freq_base", &x) == APR_OK && x == 1e6);
    CHECK(apr_source_get_str(s, "general.architecture", &str) == APR_OK && strcmp(str, "qwen2") == 0);
    CHECK(apr_source_get_bool(s, "tokenizer.ggml.add_bos_token", &b) == APR_OK && b == 0);
    CHECK_EQ_INT(apr_source_get_int(s, "no.such.key", &n), APR_ERR_NOT_FOUND);
    CHECK(strstr(apr_last_error(), Q8 ": no key 'no.such.key'") != NULL);
    CHECK_EQ_INT(apr_source_get_int(s, "general.architecture", &n), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "is a string, not an integer") != NULL);
    apr_gguf_value tokens, e;
    REQUIRE(apr_source_get_array(s, "tokenizer.ggml.tokens", APR_GGUF_STRING, &tokens) == APR_OK);
    CHECK(tokens.len == 2048);
    REQUIRE(apr_source_array_get(s, &tokens, 2047, &e) == APR_OK);
    CHECK(e.len == 10 && memcmp(e.data, "<|im_end|>", 10) == 0);
    CHECK_EQ_INT(apr_source_array_get(s, &tokens, 2048, &e), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_source_get_array(s, "tokenizer.ggml.tokens", APR_GGUF_INT32, &tokens), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "an array of string, not of int32") != NULL);

    /* the tensor table and the bytes: borrowed from the mapping, any range copied */
    for (int64_t i = 0; i < info.n_tensors; i++) {
        apr_gguf_tensor_info gt;
        apr_tensor_info st;
        REQUIRE(apr_gguf_tensor(g, i, &gt) == APR_OK && apr_source_tensor(s, i, &st) == APR_OK);
        CHECK_EQ_STR(gt.name, st.name);
        CHECK(gt.type == st.type && gt.n_dims == st.n_dims && memcmp(gt.ne, st.ne, sizeof gt.ne) == 0);
        CHECK(gt.nbytes == st.nbytes && st.stored_bytes == st.nbytes && st.chunk_bytes == 0 && st.mapped == 1);
        CHECK(gt.offset == st.offset && st.file_offset == info.data_offset + gt.offset && st.file == 0);
        CHECK_EQ_STR(st.codec, "none");
        CHECK_EQ_INT(apr_source_find_tensor(s, gt.name), i);
        const void *data = NULL, *base;
        const char *path;
        uint64_t size;
        REQUIRE(apr_source_tensor_data(s, i, &data) == APR_OK);
        REQUIRE(apr_source_file(s, 0, &path, &base, &size) == APR_OK);
        CHECK(data == (const uint8_t *)base + st.file_offset);  /* in the mapping: no copy */
        CHECK(memcmp(data, gt.data, (size_t)gt.nbytes) == 0);
        uint8_t buf[100];
        const uint64_t at = st.nbytes / 3, len = st.nbytes - at < sizeof buf ? st.nbytes - at : sizeof buf;
        REQUIRE(apr_source_tensor_read(s, i, at, buf, len) == APR_OK);
        CHECK(memcmp(buf, (const uint8_t *)gt.data + at, len) == 0);
        apr_source_tensor_release(s, i);  /* a mapped tensor: nothing to free, still readable */
        CHECK(memcmp(data, gt.data, (size_t)gt.nbytes) == 0);
    }
    apr_tensor_info st;
    CHECK_EQ_INT(apr_source_tensor(s, info.n_tensors, &st), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_source_find_tensor(s, "blk.9.attn_q.weight"), -1);
    REQUIRE(apr_source_tensor(s, 0, &st) == APR_OK);
    uint8_t one;
    CHECK_EQ_INT(apr_source_tensor_read(s, 0, st.nbytes, &one, 1), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "token_embd.weight") != NULL);
    CHECK_EQ_INT(apr_source_tensor_read(s, 0, UINT64_MAX, &one, 2), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_source_tensor_read(s, 0, st.nbytes, NULL, 0), APR_OK);

    /* the file's bytes, for checksums */
    const char *path;
    const void *bytes;
    uint64_t size;
    REQUIRE(apr_source_file(s, 0, &path, &bytes, &size) == APR_OK);
    CHECK(memcmp(bytes, apr_gguf_base(g), (size_t)size) == 0);
    CHECK(size == info.size);
    CHECK_EQ_INT(apr_source_file(s, 1, &path, &bytes, &size), APR_ERR_RANGE);
    apr_source_close(s);
    apr_gguf_close(g);
}

TEST(source_open_refuses_bad_arguments_and_files)
{
    apr_source *s = (apr_source *)1;
    CHECK_EQ_INT(apr_source_open(NULL, &s), APR_ERR_INVALID);
    CHECK(s == NULL);
    CHECK_EQ_INT(apr_source_open(Q8, NULL), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_source_open("tests/fixtures/no-such.gguf", &s), APR_ERR_NOT_FOUND);
    CHECK_EQ_INT(apr_source_open("tests/fixtures", &s), APR_ERR_IO);
    CHECK(strstr(apr_last_error(), "not a regular file (a directory)") != NULL);
    /* a file no format claims is GGUF's to explain */
    CHECK_EQ_INT(apr_source_open("tests/fixtures/malformed/bad-magic.gguf", &s), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "not a GGUF file (magic 'GGML'") != NULL);
    CHECK_EQ_INT(apr_source_open("tests/fixtures/malformed/empty.gguf", &s), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "empty file") != NULL);
    CHECK_EQ_INT(apr_source_open_memory("GGUF", 4, &s), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "<memory>") != NULL);
    apr_source_close(NULL);
    CHECK_EQ_INT(apr_source_n_kv(NULL), 0);
    CHECK_EQ_INT(apr_source_find_kv(NULL, "x"), -1);
}

TEST(source_opens_a_memory_image)
{
    size_t size;
    void *bytes = test_read_file(WHOLE, &size);
    REQUIRE(bytes);
    apr_source *s = NULL;
    REQUIRE(apr_source_open_memory(bytes, size, &s) == APR_OK);
    CHECK_EQ_STR(apr_source_path(s), "<memory>");
    CHECK_EQ_INT(apr_source_n_tensors(s), 15);
    apr_tokenizer *t = NULL;
    CHECK_EQ_INT(apr_tokenizer_from_source(s, &t), APR_OK);
    CHECK_EQ_INT(apr_tokenizer_n_vocab(t), 8);
    apr_tokenizer_free(t);
    apr_source_close(s);
    free(bytes);
}

/* ===================================================================== */
/* Split models                                                          */
/* ===================================================================== */

TEST(source_reads_a_split_model_as_one)
{
    apr_source *whole = NULL, *split = NULL;
    REQUIRE(apr_source_open(WHOLE, &whole) == APR_OK);
    REQUIRE(apr_source_open(SPLIT, &split) == APR_OK);
    apr_source_info wi, si;
    apr_source_get_info(whole, &wi);
    apr_source_get_info(split, &si);
    CHECK_EQ_INT(si.n_files, 3);
    CHECK_EQ_INT(si.n_tensors, wi.n_tensors);
    CHECK_EQ_INT(si.n_kv, wi.n_kv + 3);  /* the split keys */
    int64_t n;
    CHECK(apr_source_get_int(split, "split.count", &n) == APR_OK && n == 3);
    uint64_t total = 0;
    for (int k = 0; k < 3; k++) {
        const char *path;
        const void *bytes;
        uint64_t size;
        REQUIRE(apr_source_file(split, k, &path, &bytes, &size) == APR_OK);
        CHECK_EQ_STR(path, k == 0 ? SPLIT : k == 1 ? PART2 : PART3);
        total += size;
    }
    CHECK(total == si.size);
    /* every tensor, in order, with the same bytes */
    int files_seen[3] = { 0 };
    for (int64_t i = 0; i < wi.n_tensors; i++) {
        apr_tensor_info a, b;
        REQUIRE(apr_source_tensor(whole, i, &a) == APR_OK && apr_source_tensor(split, i, &b) == APR_OK);
        CHECK_EQ_STR(a.name, b.name);
        CHECK(a.type == b.type && a.nbytes == b.nbytes && memcmp(a.ne, b.ne, sizeof a.ne) == 0);
        CHECK_EQ_INT(apr_source_find_tensor(split, a.name), i);
        REQUIRE(b.file >= 0 && b.file < 3);
        files_seen[b.file]++;
        const void *da, *db;
        REQUIRE(apr_source_tensor_data(whole, i, &da) == APR_OK && apr_source_tensor_data(split, i, &db) == APR_OK);
        CHECK(memcmp(da, db, (size_t)a.nbytes) == 0);
    }
    CHECK(files_seen[0] == 5 && files_seen[1] == 5 && files_seen[2] == 5);
    apr_source_close(split);
    apr_source_close(whole);
}

/* The split model loads and computes exactly what the whole file does. */
TEST(model_loads_a_split_model_bit_for_bit)
{
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    p.n_threads = 1;
    float logits[2][3 * 8];
    const char *paths[2] = { WHOLE, SPLIT };
    for (int k = 0; k < 2; k++) {
        apr_model *m = NULL;
        REQUIRE(apr_model_load(paths[k], &p, &m) == APR_OK);
        apr_context *c = NULL;
        apr_context_params cp;
        apr_context_params_default(&cp);
        cp.n_ctx = 16;
        REQUIRE(apr_context_new(m, &cp, &c) == APR_OK);
        int32_t ids[3] = { 0, 1, 2 };
        int8_t all[3] = { 1, 1, 1 };
        apr_batch b = { .n = 3, .ids = ids, .want_logits = all };
        REQUIRE(apr_decode(c, &b, logits[k]) == APR_OK);
        apr_context_free(c);
        apr_model_free(m);
    }
    CHECK(memcmp(logits[0], logits[1], sizeof logits[0]) == 0);
    CHECK_EQ_INT(apr_model_validate(SPLIT), APR_OK);
}

static void copy_file(const char *from, const char *to)
{
    size_t n;
    void *bytes = test_read_file(from, &n);
    FILE *f = fopen(to, "wb");
    if (bytes && f) fwrite(bytes, 1, n, f);
    if (f) fclose(f);
    free(bytes);
}

static apr_status open_split(const char *path)
{
    apr_source *s = NULL;
    apr_status st = apr_source_open(path, &s);
    apr_source_close(s);
    return st;
}

TEST(split_model_failures_name_the_part)
{
    char dir[] = "/tmp/apr-split-XXXXXX", a[96], b[96], c[96], odd[96];
    REQUIRE(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/m-00001-of-00003.gguf", dir);
    snprintf(b, sizeof b, "%s/m-00002-of-00003.gguf", dir);
    snprintf(c, sizeof c, "%s/m-00003-of-00003.gguf", dir);
    snprintf(odd, sizeof odd, "%s/first.gguf", dir);
    copy_file(SPLIT, a);
    copy_file(PART2, b);
    /* a part missing */
    CHECK_EQ_INT(open_split(a), APR_ERR_NOT_FOUND);
    CHECK(strstr(apr_last_error(), "part 3 of 3 of the split model") != NULL);
    CHECK(strstr(apr_last_error(), "m-00003-of-00003.gguf: No such file") != NULL);
    /* a part that is not the one its name says */
    copy_file(PART2, c);
    CHECK_EQ_INT(open_split(a), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "split.no 1 and split.count 3, but it should be part 3 of 3") != NULL);
    copy_file(PART3, c);
    CHECK_EQ_INT(open_split(a), APR_OK);
    /* opened from a later part: names the first */
    CHECK_EQ_INT(open_split(b), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "part 2 of 3 of a split model: open its first part") != NULL);
    CHECK(strstr(apr_last_error(), "m-00001-of-00003.gguf") != NULL);
    /* a first part whose name does not say which parts follow */
    copy_file(SPLIT, odd);
    CHECK_EQ_INT(open_split(odd), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "must be named NAME-00001-of-00003.gguf") != NULL);
    /* from memory there are no other parts to open */
    size_t n;
    void *bytes = test_read_file(SPLIT, &n);
    REQUIRE(bytes);
    apr_source *s = (apr_source *)1;
    CHECK_EQ_INT(apr_source_open_memory(bytes, n, &s), APR_ERR_UNSUPPORTED);
    CHECK(s == NULL);
    free(bytes);
    unlink(a), unlink(b), unlink(c), unlink(odd);
    rmdir(dir);
}
