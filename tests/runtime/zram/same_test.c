/* same_test.c — the same-filled check on both paths (AVX2 and scalar), at
 * every position a page may differ, on unaligned pages, and the page
 * classification and copy over threads. */
#include "test.h"

#include <stdlib.h>

#include "apr.h"
#include "core/rng.h"
#include "zram/same.h"

/* Runs body once with the scalar loop and once with AVX2 (where the CPU
 * has it), restoring the default after. */
#define BOTH_PATHS(...)                                    \
    do {                                                   \
        for (int simd_ = 0; simd_ <= 1; simd_++) {         \
            if (apr_zram_simd(simd_) != simd_) continue;   \
            __VA_ARGS__;                                   \
        }                                                  \
        apr_zram_simd(1);                                  \
    } while (0)

static void fill_word(uint8_t *p, size_t n, uint64_t w)
{
    for (size_t i = 0; i < n; i += 8) memcpy(p + i, &w, 8);
}

TEST(zram_same_filled_finds_every_differing_byte)
{
    const size_t sizes[] = { 8, 16, 64, 120, 128, 136, 256, 4096, 4352 };
    const uint64_t words[] = { 0, 0xdeadbeefdeadbeefull, 0x0123456789abcdefull, ~0ull };
    uint8_t *buf = malloc(4352 + 8);
    BOTH_PATHS({
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            for (size_t wi = 0; wi < 4; wi++)
                for (size_t off = 0; off <= 3; off += 3) {  /* aligned, and 3 bytes off */
                    size_t n = sizes[si];
                    uint8_t *p = buf + off;
                    fill_word(p, n, words[wi]);
                    uint64_t got = 12345;
                    CHECK(apr_zram_same_filled(p, n, &got) == 1);
                    CHECK(got == words[wi]);
                    /* every byte position, one at a time, breaks it (a
                     * page of one word is always same-filled) */
                    for (size_t k = 0; n > 8 && k < n; k += (n > 300 ? 37 : 1)) {
                        p[k] ^= 0x40;
                        got = 7;
                        if (apr_zram_same_filled(p, n, &got) != 0 || got != 7)
                            test_fail(__FILE__, __LINE__, "simd %d size %zu byte %zu not seen", simd_, n, k);
                        p[k] ^= 0x40;
                    }
                    /* and the very last byte */
                    p[n - 1] ^= 1;
                    CHECK(apr_zram_same_filled(p, n, &got) == (n == 8));
                    p[n - 1] ^= 1;
                }
    });
    free(buf);
}

TEST(zram_same_filled_word_is_per_word_not_per_byte)
{
    /* 0x01 repeated is a same-filled page, and so is a 2-byte pattern
     * repeated (it is one 8-byte word repeated); a pattern of 12 bytes is
     * not one 8-byte word repeated */
    uint8_t p[96];
    memset(p, 1, sizeof p);
    uint64_t w;
    CHECK(apr_zram_same_filled(p, sizeof p, &w) && w == 0x0101010101010101ull);
    for (size_t i = 0; i < sizeof p; i++) p[i] = (uint8_t)(i % 12);
    CHECK(apr_zram_same_filled(p, sizeof p, &w) == 0);
}

TEST(zram_fill_restores_the_page)
{
    uint8_t a[200], b[200];
    fill_word(a, 200, 0xfeedfacecafef00dull);
    memset(b, 0x55, sizeof b);
    apr_zram_fill(b + 0, 200, 0xfeedfacecafef00dull);
    CHECK(memcmp(a, b, 200) == 0);
    apr_zram_fill(b, 200, 0);
    for (int i = 0; i < 200; i++) CHECK(b[i] == 0);
}

TEST(zram_classify_marks_each_page_on_any_thread_count)
{
    const uint64_t pb = 4096, n = 1000;
    uint8_t *pages = malloc(pb * n);
    apr_rng r;
    apr_rng_seed(&r, 42);
    uint8_t want[1000];
    uint64_t want_words[1000], n_want = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t x = apr_rng_next(&r);
        uint8_t *p = pages + i * pb;
        want[i] = x % 3 != 0;
        want_words[i] = want[i] ? (x % 5 == 0 ? 0 : x) : 0;
        fill_word(p, pb, want[i] ? want_words[i] : x);
        if (!want[i]) p[(x >> 8) % pb] ^= 0x10;  /* one byte off somewhere */
        n_want += want[i];
    }
    uint8_t same[1000];
    uint64_t words[1000], n_same = 0;
    BOTH_PATHS({
        const int threads[] = { 1, 2, 0 };
        for (int t = 0; t < 3; t++) {
            memset(same, 9, sizeof same);
            REQUIRE(apr_zram_classify(pages, n, pb, threads[t], same, words, &n_same) == APR_OK);
            CHECK(n_same == n_want);
            CHECK(memcmp(same, want, n) == 0);
            CHECK(memcmp(words, want_words, sizeof words) == 0);
        }
    });
    /* NULL outputs are allowed; a bad page size is the caller's mistake */
    CHECK(apr_zram_classify(pages, n, pb, 0, NULL, NULL, &n_same) == APR_OK && n_same == n_want);
    CHECK(apr_zram_classify(pages, n, 4095, 0, NULL, NULL, NULL) == APR_ERR_INVALID);
    CHECK(apr_zram_classify(pages, n, 0, 0, NULL, NULL, NULL) == APR_ERR_INVALID);

    uint8_t *copy = malloc(pb * n);
    REQUIRE(apr_zram_copy_pages(copy, pages, n, pb, 0) == APR_OK);
    CHECK(memcmp(copy, pages, pb * n) == 0);
    free(copy);
    free(pages);
}
