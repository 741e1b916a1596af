/* apr_fuzz.c — libFuzzer target for the APR v2 reader (runtime/formats/apr.c).
 *
 * Besides "no crash, no leak, no out-of-bounds read" (ASan/UBSan), every
 * image the reader accepts is walked completely: each metadata key, each
 * tensor's info and its mapped bytes when codec none, and every chunk of
 * every tensor decoded into a buffer of exactly its raw size and checked
 * (the LZ4 and zstd decoders, the byte-plane join and the checksum run on
 * hostile input). A chunk that fails must say so with a message; one that
 * passes must have decoded to its recorded checksum.
 *
 * Every structure is checksummed, so almost any mutation would stop at the
 * first checksum. Each input is therefore also tried "resealed": a copy with
 * the header, metadata, gaps, index and trailer checksums recomputed from
 * wherever its fields point, which lets mutations reach every later rule.
 *
 * make fuzz FUZZ_SECONDS=600; seeds in tests/fuzz/seeds/apr (valid files
 * written by tests/malformed/gen_apr.lua) and the malformed corpus in
 * tests/fixtures/malformed-apr; the corpus it grows goes to
 * tests/fuzz/corpus/apr. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apr.h"

static volatile uint64_t sink;  /* keeps reads from being optimised away */

/* The model-source face of the file: a range inside and across chunks of
 * every tensor, decoded into a buffer of exactly its size. */
static void walk_source(apr_source *src)
{
    for (int64_t i = 0; i < apr_source_n_tensors(src); i++) {
        apr_tensor_info t;
        if (apr_source_tensor(src, i, &t) != APR_OK) __builtin_trap();
        uint64_t off = t.nbytes / 3, n = t.nbytes / 3 + 1 < t.nbytes - off ? t.nbytes / 3 + 1 : t.nbytes - off;
        uint8_t *dst = malloc(n + 1);
        if (!dst) return;
        apr_status s = apr_source_tensor_read(src, i, off, dst, n);
        if (s != APR_OK && apr_last_error()[0] == '\0') __builtin_trap();
        free(dst);
        uint8_t one;
        if (apr_source_tensor_read(src, i, t.nbytes, &one, 1) != APR_ERR_RANGE) __builtin_trap();
    }
}

static void walk(const apr_aprf *f)
{
    const apr_gguf *meta = apr_aprf_metadata(f);
    if (!meta) __builtin_trap();
    for (int64_t i = 0; i < apr_gguf_n_kv(meta); i++) {
        const char *key;
        apr_gguf_value v;
        if (apr_gguf_kv(meta, i, &key, &v) != APR_OK) __builtin_trap();
        sink += strlen(key) + v.size;
    }
    uint64_t scratch_n = apr_aprf_scratch_bytes(f);
    uint8_t *scratch = malloc(scratch_n + 1);
    if (!scratch) return;
    for (int64_t i = 0; i < apr_aprf_n_tensors(f); i++) {
        apr_aprf_tensor_info t;
        if (apr_aprf_tensor(f, i, &t) != APR_OK) __builtin_trap();
        if (apr_aprf_find_tensor(f, t.name) != i) __builtin_trap();
        if (t.data && t.nbytes) sink += ((const uint8_t *)t.data)[0] + ((const uint8_t *)t.data)[t.nbytes - 1];
        for (uint32_t c = 0; c < t.n_chunks; c++) {
            apr_aprf_chunk_info k;
            if (apr_aprf_chunk(f, i, c, &k) != APR_OK) __builtin_trap();
            /* a buffer of exactly the raw size: any overrun is ASan's */
            uint8_t *dst = malloc(k.raw);
            if (!dst) break;
            apr_status s = apr_aprf_read_chunk(f, i, c, dst, scratch);
            if (s == APR_OK && apr_aprf_checksum(dst, k.raw) != k.checksum) __builtin_trap();
            if (s != APR_OK && (s != APR_ERR_FORMAT || apr_last_error()[0] == '\0')) __builtin_trap();
            /* checking without an output agrees */
            if ((apr_aprf_read_chunk(f, i, c, NULL, scratch) == APR_OK) != (s == APR_OK)) __builtin_trap();
            free(dst);
        }
    }
    free(scratch);
    apr_aprf_chunk_info k;
    if (apr_aprf_n_tensors(f) && apr_aprf_chunk(f, 0, UINT32_MAX, &k) != APR_ERR_RANGE) __builtin_trap();
}

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

/* The checksum of [at, at + n) into `field`, when that range is inside. */
static void seal(uint8_t *b, size_t size, size_t field, uint64_t at, uint64_t n)
{
    if (at <= size && n <= size - at) wr64(b + field, apr_aprf_checksum(b + at, (size_t)n));
}

static void reseal(uint8_t *b, size_t size)
{
    if (size < 128 + 144) return;
    const size_t t = size - 144;
    seal(b, size, 56, 128, rd64(b + 24));                  /* metadata */
    seal(b, size, 120, 0, 120);                            /* header */
    seal(b, size, t + 48, rd64(b + t + 24), rd64(b + t + 32));  /* gaps */
    seal(b, size, t + 40, rd64(b + t + 0), rd64(b + t + 8));    /* index */
    seal(b, size, t + 128, t, 128);                        /* trailer */
}

static void try_open(const uint8_t *data, size_t size)
{
    apr_source *src;
    if (apr_source_open_memory(data, size, &src) != APR_OK) {
        if (src != NULL || apr_last_error()[0] == '\0') __builtin_trap();
        return;
    }
    const apr_aprf *f = apr_source_aprf(src);
    if (f) {
        walk(f);
        walk_source(src);
    }
    apr_source_close(src);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    try_open(data, size);
    uint8_t *copy = malloc(size + 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    reseal(copy, size);
    if (size == 0 || memcmp(copy, data, size) != 0) try_open(copy, size);
    free(copy);
    return 0;
}
