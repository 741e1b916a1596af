/* slab_test.c — size classes and slabs: a page's class, slabs made and
 * given back as slots fill and empty, memory back to zero. */
#include "test.h"

#include <stdlib.h>

#include "core/rng.h"
#include "zram/slab.h"

TEST(zram_slab_classes_cover_a_page)
{
    zram_slabs s;
    zram_slabs_init(&s, 4096);
    CHECK_EQ_INT(s.granule, 64);
    CHECK_EQ_INT(s.n_classes, 64);
    CHECK_EQ_INT(zram_slabs_class(&s, 1), 0);
    CHECK_EQ_INT(zram_slabs_class(&s, 64), 0);
    CHECK_EQ_INT(zram_slabs_class(&s, 65), 1);
    CHECK_EQ_INT(zram_slabs_class(&s, 4096), 63);
    CHECK_EQ_INT(zram_slabs_max_compressed(&s), 4032);
    CHECK_EQ_INT(s.cls[63].slot_bytes, 4096);
    /* a KV block page of a q8_0 cache (2 heads x 32 tokens x 68 bytes) */
    zram_slabs_init(&s, 4352);
    CHECK_EQ_INT(s.cls[s.n_classes - 1].slot_bytes, 4352);
    CHECK(zram_slabs_max_compressed(&s) < 4352);
    for (size_t n = 1; n <= 4352; n++) {
        int c = zram_slabs_class(&s, n);
        if (s.cls[c].slot_bytes < n || (c > 0 && s.cls[c - 1].slot_bytes >= n))
            test_fail(__FILE__, __LINE__, "%zu bytes in class %d", n, c);
    }
    /* tiny pages: one class, nothing is worth compressing */
    zram_slabs_init(&s, 8);
    CHECK_EQ_INT(s.n_classes, 1);
    CHECK_EQ_INT(zram_slabs_max_compressed(&s), 0);
}

TEST(zram_slabs_are_made_and_given_back)
{
    zram_slabs s;
    zram_slabs_init(&s, 4096);
    enum { N = 3000 };
    zram_slab **slab = calloc(N, sizeof *slab);
    uint8_t *slot = calloc(N, 1);
    uint8_t **mem = calloc(N, sizeof *mem);
    apr_rng r;
    apr_rng_seed(&r, 7);
    for (int i = 0; i < N; i++) {
        int c = (int)(apr_rng_next(&r) % 64);
        CHECK((zram_slabs_growth(&s, c) == 0) == (s.cls[c].partial != NULL));
        mem[i] = zram_slabs_alloc(&s, c, &slab[i], &slot[i]);
        REQUIRE(mem[i]);
        CHECK(zram_slabs_at(slab[i], slot[i]) == mem[i]);
        memset(mem[i], i & 0xff, s.cls[c].slot_bytes);  /* ASan: the slot is all ours */
    }
    CHECK(s.bytes > 0 && s.n_slabs > 0);
    /* free in a shuffled order; contents of others stay */
    for (int i = N - 1; i > 0; i--) {
        int j = (int)(apr_rng_next(&r) % (uint64_t)(i + 1));
        zram_slab *ts = slab[i]; slab[i] = slab[j]; slab[j] = ts;
        uint8_t tl = slot[i]; slot[i] = slot[j]; slot[j] = tl;
    }
    for (int i = 0; i < N; i++) zram_slabs_free(&s, slab[i], slot[i]);
    CHECK_EQ_INT(s.bytes, 0);
    CHECK_EQ_INT(s.n_slabs, 0);
    for (int c = 0; c < s.n_classes; c++) CHECK(s.cls[c].partial == NULL);
    zram_slabs_release(&s);
    free(slab);
    free(slot);
    free(mem);
}
