/* gguf_write_test.c — the GGUF writer: every value type, nested arrays,
 * streamed tensor data, and byte-identical copies of every fixture. */
#include "test.h"
#include "apr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>


static int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    char *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "/tmp/apr-gguf-write-%d-%s", (int)getpid(), name);
}

/* A value's encoding, built by hand for add_raw: [["a","bc"],[],["d"]]. */
static size_t nested_strings(uint8_t *b)
{
    size_t n = 0;
#define U32(v) do { uint32_t v_ = (v); memcpy(b + n, &v_, 4); n += 4; } while (0)
#define U64(v) do { uint64_t v_ = (v); memcpy(b + n, &v_, 8); n += 8; } while (0)
#define STR(s) do { U64(strlen(s)); memcpy(b + n, s, strlen(s)); n += strlen(s); } while (0)
    U32(APR_GGUF_ARRAY); U64(3);
    U32(APR_GGUF_STRING); U64(2); STR("a"); STR("bc");
    U32(APR_GGUF_STRING); U64(0);
    U32(APR_GGUF_STRING); U64(1); STR("d");
    return n;
}

/* [[[1,2],[3]],[[4]]] of int32. */
static size_t nested_ints(uint8_t *b)
{
    size_t n = 0;
    U32(APR_GGUF_ARRAY); U64(2);
    U32(APR_GGUF_ARRAY); U64(2);
    U32(APR_GGUF_INT32); U64(2); U32(1); U32(2);
    U32(APR_GGUF_INT32); U64(1); U32(3);
    U32(APR_GGUF_ARRAY); U64(1);
    U32(APR_GGUF_INT32); U64(1); U32(4);
    return n;
#undef U32
#undef U64
#undef STR
}

static void add_all_types(apr_gguf_writer *w)
{
    CHECK(apr_gguf_writer_add_str(w, "general.architecture", "llama", 5) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "general.alignment", APR_GGUF_UINT32, 64) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.u8", APR_GGUF_UINT8, 200) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.i8", APR_GGUF_INT8, -100) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.u16", APR_GGUF_UINT16, 60000) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.i16", APR_GGUF_INT16, -30000) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.u32", APR_GGUF_UINT32, 4000000000) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.i32", APR_GGUF_INT32, -2000000000) == APR_OK);
    CHECK(apr_gguf_writer_add_float(w, "t.f32", APR_GGUF_FLOAT32, 0.5) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.bool", APR_GGUF_BOOL, 1) == APR_OK);
    CHECK(apr_gguf_writer_add_str(w, "t.str", "nul\0inside", 10) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.u64", APR_GGUF_UINT64, INT64_MAX) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "t.i64", APR_GGUF_INT64, INT64_MIN) == APR_OK);
    CHECK(apr_gguf_writer_add_float(w, "t.f64", APR_GGUF_FLOAT64, 3.141592653589793) == APR_OK);
    uint8_t u8s[] = { 1, 2, 255 };
    int16_t i16s[] = { -1, 7 };
    float f32s[] = { 1.5f, -2.25f, 0.0f, 1e30f };
    double f64s[] = { 1e-300 };
    uint8_t bools[] = { 0, 1, 1 };
    int64_t i64s[] = { INT64_MIN, -1, INT64_MAX };
    CHECK(apr_gguf_writer_add_array(w, "a.u8", APR_GGUF_UINT8, u8s, 3) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.i16", APR_GGUF_INT16, i16s, 2) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.f32", APR_GGUF_FLOAT32, f32s, 4) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.f64", APR_GGUF_FLOAT64, f64s, 1) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.bool", APR_GGUF_BOOL, bools, 3) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.i64", APR_GGUF_INT64, i64s, 3) == APR_OK);
    CHECK(apr_gguf_writer_add_array(w, "a.empty", APR_GGUF_UINT32, NULL, 0) == APR_OK);
    const char *strs[] = { "x", "", "zz\nz" };
    CHECK(apr_gguf_writer_add_str_array(w, "a.str", strs, NULL, 3) == APR_OK);
    CHECK(apr_gguf_writer_add_str_array(w, "a.nostr", NULL, NULL, 0) == APR_OK);
    uint8_t raw[256];
    CHECK(apr_gguf_writer_add_raw(w, "a.nested_str", APR_GGUF_ARRAY, raw, nested_strings(raw)) == APR_OK);
    CHECK(apr_gguf_writer_add_raw(w, "a.nested_int", APR_GGUF_ARRAY, raw, nested_ints(raw)) == APR_OK);
}

TEST(gguf_writer_refuses_mistakes_and_keeps_its_state)
{
    apr_gguf_writer *w;
    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "k", APR_GGUF_UINT8, 1) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "k", APR_GGUF_UINT8, 2) == APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "duplicate key 'k'") != NULL);
    CHECK(apr_gguf_writer_add_int(w, "u", APR_GGUF_UINT8, 256) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_int(w, "u", APR_GGUF_FLOAT32, 1) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_int(w, "general.alignment", APR_GGUF_UINT32, 48) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_int(w, "", APR_GGUF_UINT8, 1) == APR_ERR_INVALID);
    uint8_t two = 2;
    CHECK(apr_gguf_writer_add_array(w, "b", APR_GGUF_BOOL, &two, 1) == APR_ERR_INVALID);
    uint8_t bad[12] = { APR_GGUF_STRING, 0, 0, 0, 5 };  /* 5 strings in 0 bytes */
    CHECK(apr_gguf_writer_add_raw(w, "r", APR_GGUF_ARRAY, bad, sizeof bad) == APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "runs past the end of the value") != NULL);
    int64_t ne[2] = { 32, 2 };
    CHECK(apr_gguf_writer_add_tensor(w, "t", APR_Q8_0, 2, ne) == APR_OK);
    CHECK(apr_gguf_writer_add_tensor(w, "t", APR_Q8_0, 2, ne) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_tensor(w, "q", APR_Q4_K, 2, ne) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_tensor(w, "q", 4, 2, ne) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_tensor(w, "q", APR_F32, 0, ne) == APR_ERR_INVALID);
    CHECK(apr_gguf_writer_add_tensor_at(w, "o", APR_F32, 1, ne, 32) == APR_OK);  /* overlaps t */
    CHECK(apr_gguf_writer_layout(w) == APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "overlap") != NULL);
    apr_gguf_writer_free(w);

    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    CHECK(apr_gguf_writer_add_tensor_at(w, "o", APR_F32, 1, ne, 16) == APR_OK);
    CHECK(apr_gguf_writer_layout(w) == APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "not aligned") != NULL);
    apr_gguf_writer_free(w);
}

TEST(gguf_writer_round_trips_every_value_type)
{
    char path[256], copy[256];
    tmp_path(path, sizeof path, "types.gguf");
    tmp_path(copy, sizeof copy, "types-copy.gguf");
    apr_gguf_writer *w;
    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    add_all_types(w);
    int64_t ne_a[2] = { 8, 2 }, ne_b[2] = { 64, 3 }, ne_c[1] = { 4 }, ne_d[2] = { 256, 1 };
    CHECK(apr_gguf_writer_add_tensor(w, "a", APR_F32, 2, ne_a) == APR_OK);
    CHECK(apr_gguf_writer_add_tensor(w, "b", APR_Q8_0, 2, ne_b) == APR_OK);
    CHECK(apr_gguf_writer_add_tensor(w, "c", APR_F16, 1, ne_c) == APR_OK);
    CHECK(apr_gguf_writer_add_tensor(w, "d", APR_Q4_K, 2, ne_d) == APR_OK);
    REQUIRE(apr_gguf_writer_begin(w, path) == APR_OK);
    CHECK(apr_gguf_writer_add_int(w, "late", APR_GGUF_UINT8, 1) == APR_ERR_INVALID);
    CHECK_EQ_INT(apr_gguf_writer_tensor_nbytes(w, 1), 3 * 2 * 34);
    /* Fill the tensors from the last to the first, in two pieces each, as
     * parallel writers would. */
    for (int64_t i = apr_gguf_writer_n_tensors(w) - 1; i >= 0; i--) {
        uint64_t n = apr_gguf_writer_tensor_nbytes(w, i);
        CHECK(apr_gguf_writer_tensor_offset(w, i) % 64 == 0);
        uint8_t *data = malloc(n);
        for (uint64_t k = 0; k < n; k++) data[k] = (uint8_t)(k * 7 + (uint64_t)i);
        CHECK(apr_gguf_writer_write(w, i, n / 2, data + n / 2, n - n / 2) == APR_OK);
        CHECK(apr_gguf_writer_write(w, i, 0, data, n / 2) == APR_OK);
        CHECK(apr_gguf_writer_write(w, i, 1, data, n) == APR_ERR_INVALID);
        free(data);
    }
    uint64_t size = apr_gguf_writer_file_size(w);
    CHECK(apr_gguf_writer_finish(w) == APR_OK);
    apr_gguf_writer_free(w);

    apr_gguf *f;
    REQUIRE(apr_gguf_open(path, &f) == APR_OK);
    CHECK_EQ_INT(apr_gguf_file_size(f), size);
    CHECK_EQ_INT(apr_gguf_alignment(f), 64);
    CHECK_EQ_INT(apr_gguf_n_kv(f), 25);
    int64_t x;
    double d;
    int b;
    const char *s;
    CHECK(apr_gguf_get_int(f, "t.u8", &x) == APR_OK && x == 200);
    CHECK(apr_gguf_get_int(f, "t.i8", &x) == APR_OK && x == -100);
    CHECK(apr_gguf_get_int(f, "t.u16", &x) == APR_OK && x == 60000);
    CHECK(apr_gguf_get_int(f, "t.i16", &x) == APR_OK && x == -30000);
    CHECK(apr_gguf_get_int(f, "t.u32", &x) == APR_OK && x == 4000000000);
    CHECK(apr_gguf_get_int(f, "t.i32", &x) == APR_OK && x == -2000000000);
    CHECK(apr_gguf_get_int(f, "t.u64", &x) == APR_OK && x == INT64_MAX);
    CHECK(apr_gguf_get_int(f, "t.i64", &x) == APR_OK && x == INT64_MIN);
    CHECK(apr_gguf_get_float(f, "t.f32", &d) == APR_OK && d == 0.5);
    CHECK(apr_gguf_get_float(f, "t.f64", &d) == APR_OK && d == 3.141592653589793);
    CHECK(apr_gguf_get_bool(f, "t.bool", &b) == APR_OK && b == 1);
    CHECK(apr_gguf_get_str(f, "general.architecture", &s) == APR_OK);
    CHECK_EQ_STR(s, "llama");
    CHECK(apr_gguf_get_str(f, "t.str", &s) == APR_ERR_FORMAT);  /* holds a NUL */

    const char *key;
    apr_gguf_value v, e, ee;
    REQUIRE(apr_gguf_kv(f, apr_gguf_find_kv(f, "a.str"), &key, &v) == APR_OK);
    REQUIRE(apr_gguf_array_get(f, &v, 2, &e) == APR_OK);
    CHECK(e.len == 4 && memcmp(e.data, "zz\nz", 4) == 0);
    REQUIRE(apr_gguf_kv(f, apr_gguf_find_kv(f, "a.nested_str"), &key, &v) == APR_OK);
    CHECK_EQ_INT(v.len, 3);
    CHECK_EQ_INT(v.elem_type, APR_GGUF_ARRAY);
    REQUIRE(apr_gguf_array_get(f, &v, 0, &e) == APR_OK);
    CHECK_EQ_INT(e.elem_type, APR_GGUF_STRING);
    CHECK_EQ_INT(e.size, 12 + 9 + 10);
    REQUIRE(apr_gguf_array_get(f, &e, 1, &ee) == APR_OK);
    CHECK(ee.len == 2 && memcmp(ee.data, "bc", 2) == 0);
    REQUIRE(apr_gguf_array_get(f, &v, 1, &e) == APR_OK);
    CHECK_EQ_INT(e.len, 0);
    CHECK_EQ_INT(e.size, 12);
    REQUIRE(apr_gguf_array_get(f, &v, 2, &e) == APR_OK);
    REQUIRE(apr_gguf_array_get(f, &e, 0, &ee) == APR_OK);
    CHECK(ee.len == 1 && memcmp(ee.data, "d", 1) == 0);
    REQUIRE(apr_gguf_kv(f, apr_gguf_find_kv(f, "a.nested_int"), &key, &v) == APR_OK);
    REQUIRE(apr_gguf_array_get(f, &v, 0, &e) == APR_OK);
    CHECK_EQ_INT(e.size, 12 + (12 + 8) + (12 + 4));
    REQUIRE(apr_gguf_array_get(f, &e, 1, &ee) == APR_OK);
    CHECK_EQ_INT(ee.elem_type, APR_GGUF_INT32);
    int32_t iv;
    memcpy(&iv, ee.data, 4);
    CHECK(ee.len == 1 && iv == 3);
    REQUIRE(apr_gguf_array_get(f, &v, 1, &e) == APR_OK);
    REQUIRE(apr_gguf_array_get(f, &e, 0, &ee) == APR_OK);
    apr_gguf_value leaf;
    REQUIRE(apr_gguf_array_get(f, &ee, 0, &leaf) == APR_OK);
    memcpy(&iv, leaf.data, 4);
    CHECK(leaf.type == APR_GGUF_INT32 && iv == 4);

    apr_gguf_tensor_info t;
    REQUIRE(apr_gguf_tensor(f, apr_gguf_find_tensor(f, "b"), &t) == APR_OK);
    CHECK_EQ_INT(t.type, APR_Q8_0);
    CHECK_EQ_INT(((const uint8_t *)t.data)[100], (uint8_t)(100 * 7 + 1));

    CHECK(apr_gguf_copy(f, path) == APR_ERR_INVALID);  /* onto itself */
    CHECK(apr_gguf_copy(f, copy) == APR_OK);
    CHECK(same_bytes(path, copy));
    apr_gguf_close(f);
    unlink(path);
    unlink(copy);
}

TEST(gguf_writer_removes_an_unfinished_file)
{
    char path[256];
    tmp_path(path, sizeof path, "unfinished.gguf");
    apr_gguf_writer *w;
    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    int64_t ne[1] = { 1 << 20 };
    CHECK(apr_gguf_writer_add_tensor(w, "big", APR_F32, 1, ne) == APR_OK);
    REQUIRE(apr_gguf_writer_begin(w, path) == APR_OK);
    CHECK(access(path, F_OK) == 0);
    CHECK(apr_gguf_writer_fd(w) >= 0);
    apr_gguf_writer_free(w);
    CHECK(access(path, F_OK) != 0);
    CHECK(apr_gguf_writer_begin(NULL, path) == APR_ERR_INVALID);
}

TEST(gguf_writer_header_matches_the_layout)
{
    apr_gguf_writer *w;
    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    add_all_types(w);
    int64_t ne[1] = { 32 };
    CHECK(apr_gguf_writer_add_tensor(w, "x", APR_Q8_0, 1, ne) == APR_OK);
    void *hdr;
    uint64_t n;
    REQUIRE(apr_gguf_writer_header(w, &hdr, &n) == APR_OK);
    CHECK_EQ_INT(n, apr_gguf_writer_data_offset(w));
    CHECK_EQ_INT(apr_gguf_writer_file_size(w), n + 64);  /* 34 bytes padded to 64 */
    /* The header plus zeroed data is a valid file. */
    uint8_t *image = calloc(1, apr_gguf_writer_file_size(w));
    memcpy(image, hdr, n);
    apr_gguf *f;
    CHECK(apr_gguf_open_memory(image, apr_gguf_writer_file_size(w), &f) == APR_OK);
    CHECK_EQ_INT(apr_gguf_header_size(f) <= n, 1);
    apr_gguf_close(f);
    free(image);
    apr_free(hdr);
    apr_gguf_writer_free(w);
}

TEST(gguf_copy_is_byte_identical_for_every_fixture)
{
    static const char *files[] = {
        "tests/fixtures/models/tiny-q4_k_m.gguf", "tests/fixtures/models/tiny-q8_0.gguf",
        "tests/fixtures/models/tiny-f16.gguf", "tests/fixtures/models/gqa5-q4_k_m.gguf",
    };
    char copy[256];
    tmp_path(copy, sizeof copy, "fixture-copy.gguf");
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        apr_gguf *f;
        REQUIRE(apr_gguf_open(files[i], &f) == APR_OK);
        CHECK(apr_gguf_copy(f, copy) == APR_OK);
        if (!same_bytes(files[i], copy)) test_fail(__FILE__, __LINE__, "copy of %s differs", files[i]);
        apr_gguf_close(f);
    }
    /* The vocabulary: 5.9 MB of metadata, no tensors, no final padding. */
    size_t zn, n;
    char *z = test_read_file("tests/fixtures/tokenizer/ggml-vocab-qwen2.gguf.zst", &zn);
    REQUIRE(z != NULL);
    n = (size_t)ZSTD_getFrameContentSize(z, zn);
    char *image = malloc(n);
    REQUIRE(ZSTD_decompress(image, n, z, zn) == n);
    apr_gguf *f;
    REQUIRE(apr_gguf_open_memory(image, n, &f) == APR_OK);
    CHECK(apr_gguf_copy(f, copy) == APR_OK);
    size_t cn;
    char *c = test_read_file(copy, &cn);
    CHECK(c && cn == n && memcmp(c, image, n) == 0);
    free(c);
    apr_gguf_close(f);
    free(image);
    free(z);
    unlink(copy);
}
