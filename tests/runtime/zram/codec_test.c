/* codec_test.c — compressing and decoding pages, and the decoder's checks:
 * truncated, altered or mislabelled stored bytes are an error, never a
 * wrong page. */
#include "test.h"

#include <stdlib.h>

#include "apr.h"
#include "core/rng.h"
#include "zram/codec.h"

/* A page like a KV block's: small values in a narrow range, some runs. */
static void text_like(uint8_t *p, size_t n, uint64_t seed)
{
    apr_rng r;
    apr_rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(i % 7 == 0 ? 0 : 'a' + apr_rng_next(&r) % 6);
}

TEST(zram_codec_round_trips_lz4_and_zstd)
{
    const size_t n = 4096;
    uint8_t page[4096], out[4096], buf[4096];
    text_like(page, n, 1);
    const uint64_t h = apr_zram_page_hash(page, n);
    const int algos[] = { ZRAM_LZ4, ZRAM_ZSTD };
    for (int a = 0; a < 2; a++) {
        size_t c = apr_zram_compress(algos[a], 0, page, n, buf, sizeof buf);
        REQUIRE(c > 0 && c < n);
        CHECK(apr_zram_decode(algos[a], buf, c, 0, out, n, h) == APR_OK);
        CHECK(memcmp(out, page, n) == 0);
        /* too small an output buffer: 0, the page is then stored raw */
        CHECK(apr_zram_compress(algos[a], 0, page, n, buf, 16) == 0);
    }
    CHECK(apr_zram_decode(ZRAM_RAW, page, n, 0, out, n, h) == APR_OK);
    CHECK(memcmp(out, page, n) == 0);
    CHECK(apr_zram_decode(ZRAM_SAME, NULL, 0, 0x0101010101010101ull, out, n, 0) == APR_OK);
    CHECK(out[0] == 1 && out[n - 1] == 1);
}

TEST(zram_codec_rejects_bad_stored_bytes)
{
    const size_t n = 4096;
    uint8_t page[4096], out[4096], buf[4096];
    text_like(page, n, 2);
    const uint64_t h = apr_zram_page_hash(page, n);
    const int algos[] = { ZRAM_LZ4, ZRAM_ZSTD };
    for (int a = 0; a < 2; a++) {
        size_t c = apr_zram_compress(algos[a], 0, page, n, buf, sizeof buf);
        REQUIRE(c > 8);
        /* truncated */
        CHECK(apr_zram_decode(algos[a], buf, c - 1, 0, out, n, h) == APR_ERR_FORMAT);
        CHECK(apr_zram_decode(algos[a], buf, 0, 0, out, n, h) == APR_ERR_FORMAT);
        /* every single-bit flip of the stored bytes is caught (by the codec,
         * the decoded size or the hash) or harmless: a flipped match offset
         * may point at equal bytes, and then the page is right */
        for (size_t i = 0; i < c; i++)
            for (int bit = 0; bit < 8; bit += 3) {
                buf[i] ^= (uint8_t)(1u << bit);
                apr_status s = apr_zram_decode(algos[a], buf, c, 0, out, n, h);
                if (s != APR_ERR_FORMAT && !(s == APR_OK && memcmp(out, page, n) == 0))
                    test_fail(__FILE__, __LINE__, "algo %d byte %zu bit %d: a wrong page accepted", algos[a], i, bit);
                buf[i] ^= (uint8_t)(1u << bit);
            }
        /* the right bytes under another codec's label */
        CHECK(apr_zram_decode(algos[1 - a], buf, c, 0, out, n, h) == APR_ERR_FORMAT);
        /* a wrong page size */
        CHECK(apr_zram_decode(algos[a], buf, c, 0, out, n - 8, h) == APR_ERR_FORMAT);
    }
    CHECK(apr_zram_decode(ZRAM_RAW, page, n - 8, 0, out, n, h) == APR_ERR_FORMAT);
    page[100] ^= 1;
    CHECK(apr_zram_decode(ZRAM_RAW, page, n, 0, out, n, h) == APR_ERR_FORMAT);
    CHECK(apr_zram_decode(0, page, n, 0, out, n, h) == APR_ERR_FORMAT);
    CHECK(apr_zram_decode(99, page, n, 0, out, n, h) == APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "kind 99") != NULL);
}
