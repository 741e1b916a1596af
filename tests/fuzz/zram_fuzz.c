/* zram_fuzz.c — libFuzzer target for the page pool's decoder
 * (runtime/zram/codec.c), the code that turns stored bytes back into a
 * page.
 *
 * Input: byte 0 picks the kind (same, raw, LZ4, ZSTD or unknown), byte 1
 * the page size (8 .. 2048 bytes in steps of 8), bytes 2-9 the hash the
 * page must match; the rest are the stored bytes. Besides "no crash, no
 * out-of-bounds access" (ASan/UBSan): a decode that succeeds gives a page
 * whose hash is the one asked for. Then the rest of the input, as a page,
 * goes through the pool (put, get, drop) and must come back unchanged.
 * Seeds in tests/fuzz/seeds/zram. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apr.h"
#include "zram/codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 10) return 0;
    const int kind = data[0] % 6;
    const size_t page_bytes = 8 * ((size_t)data[1] % 256 + 1);
    uint64_t hash;
    memcpy(&hash, data + 2, 8);
    const uint8_t *stored = data + 10;
    const size_t n = size - 10;

    uint8_t *page = malloc(page_bytes);
    if (!page) return 0;
    if (apr_zram_decode(kind, stored, n, hash, page, page_bytes, hash) == APR_OK && kind != 1 /* ZRAM_SAME */ &&
        apr_zram_page_hash(page, page_bytes) != hash)
        __builtin_trap();

    /* the stored bytes as a page of the pool: whatever they are, they come
     * back as they went in */
    if (n >= 8) {
        apr_zram_params p;
        apr_zram_params_default(&p);
        p.algo = data[0] & 0x80 ? APR_ZRAM_ZSTD : APR_ZRAM_LZ4;
        p.page_bytes = n & ~(size_t)7;
        apr_zram *z = NULL;
        if (apr_zram_new(&p, &z) == APR_OK) {
            uint64_t h;
            uint8_t *out = malloc(p.page_bytes);
            if (apr_zram_put(z, stored, &h) != APR_OK) __builtin_trap();
            if (!out || apr_zram_get(z, h, out) != APR_OK || memcmp(out, stored, p.page_bytes) != 0) __builtin_trap();
            if (apr_zram_drop(z, h) != APR_OK) __builtin_trap();
            free(out);
            apr_zram_free(z);
        }
    }
    free(page);
    return 0;
}
