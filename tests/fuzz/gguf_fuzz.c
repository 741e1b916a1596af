/* gguf_fuzz.c — libFuzzer target for the GGUF reader (and the writer's
 * re-encoding of what it read).
 *
 * Besides "no crash, no leak, no out-of-bounds read" (ASan/UBSan), every
 * image the reader accepts is walked completely: each key through every
 * typed getter, each array element at every nesting level, each tensor's
 * first and last data byte, and each name looked up again. Then the writer
 * re-encodes the header from what was read, and the bytes must equal the
 * input's: any difference means the reader and the writer disagree about
 * the format, which would break byte-identical copies.
 *
 * make fuzz FUZZ_SECONDS=600; seeds in tests/fuzz/seeds/gguf (tiny valid
 * files and the malformed corpus), the corpus it grows in tests/fuzz/corpus. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apr.h"

static volatile uint64_t sink;  /* keeps reads from being optimised away */

static void walk_value(const apr_gguf *f, const apr_gguf_value *v, int depth)
{
    if (depth > 64) __builtin_trap();  /* the reader bounds nesting at 16 */
    if (v->type == APR_GGUF_STRING) {
        if (v->len) sink += ((const uint8_t *)v->data)[0] + ((const uint8_t *)v->data)[v->len - 1];
        return;
    }
    if (v->type != APR_GGUF_ARRAY) {
        sink += ((const uint8_t *)v->data)[v->size - 1];
        return;
    }
    /* Packed scalars: the ends suffice (the reader bounded the whole). */
    int packed = v->elem_type != APR_GGUF_STRING && v->elem_type != APR_GGUF_ARRAY;
    for (uint64_t i = 0; i < v->len; i = (packed && i == 0 && v->len > 2) ? v->len - 1 : i + 1) {
        apr_gguf_value e;
        if (apr_gguf_array_get(f, v, i, &e) != APR_OK) __builtin_trap();
        walk_value(f, &e, depth + 1);
    }
    apr_gguf_value e;
    if (apr_gguf_array_get(f, v, v->len, &e) != APR_ERR_RANGE) __builtin_trap();
}

static void walk(const apr_gguf *f)
{
    for (int64_t i = 0; i < apr_gguf_n_kv(f); i++) {
        const char *key;
        apr_gguf_value v;
        if (apr_gguf_kv(f, i, &key, &v) != APR_OK) __builtin_trap();
        if (apr_gguf_find_kv(f, key) != i) __builtin_trap();
        walk_value(f, &v, 0);
        int64_t n;
        double x;
        int b;
        const char *s;
        apr_gguf_get_int(f, key, &n);
        apr_gguf_get_float(f, key, &x);
        apr_gguf_get_bool(f, key, &b);
        if (apr_gguf_get_str(f, key, &s) == APR_OK) sink += strlen(s);
    }
    for (int64_t i = 0; i < apr_gguf_n_tensors(f); i++) {
        apr_gguf_tensor_info t;
        if (apr_gguf_tensor(f, i, &t) != APR_OK) __builtin_trap();
        if (apr_gguf_find_tensor(f, t.name) != i) __builtin_trap();
        if (t.nbytes) sink += ((const uint8_t *)t.data)[0] + ((const uint8_t *)t.data)[t.nbytes - 1];
    }
}

/* The writer's header for what was read equals the input's header bytes. */
static void reencode(const apr_gguf *f, const uint8_t *data)
{
    apr_gguf_writer *w;
    if (apr_gguf_writer_from_file(f, &w) != APR_OK) __builtin_trap();
    void *hdr;
    uint64_t n;
    if (apr_gguf_writer_header(w, &hdr, &n) != APR_OK) __builtin_trap();
    uint64_t h = apr_gguf_header_size(f);
    if (n < h || memcmp(hdr, data, h) != 0) __builtin_trap();
    apr_free(hdr);
    apr_gguf_writer_free(w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    apr_gguf *f;
    if (apr_gguf_open_memory(data, size, &f) != APR_OK) {
        if (f != NULL || apr_last_error()[0] == '\0') __builtin_trap();
        return 0;
    }
    walk(f);
    reencode(f, data);
    apr_gguf_close(f);
    return 0;
}
