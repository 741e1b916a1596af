/* pool_test.c — the page pool: round trips of every kind of page, handles
 * that name nothing, the cap and its LRU eviction, corrupt pages, and
 * threads putting, getting and dropping at once. Includes pool.c to reach
 * a page's stored bytes for the corruption test. */
#include "test.h"
#include "../../../runtime/zram/pool.c"

#include "core/rng.h"

enum { PB = 4096 };

/* Fills a page of one of four kinds by `kind`: 0 zeros, 1 one repeated
 * word, 2 compressible (each word one of four), 3 random bytes (does not
 * shrink). */
static void make_page(uint8_t *p, int kind, uint64_t seed)
{
    apr_rng r;
    apr_rng_seed(&r, seed);
    uint64_t w[4];
    for (int i = 0; i < 4; i++) w[i] = apr_rng_next(&r);
    for (size_t i = 0; i < PB; i += 8) {
        uint64_t x = kind == 0 ? 0 : kind == 1 ? w[0] : kind == 2 ? w[apr_rng_next(&r) % 4] : apr_rng_next(&r);
        memcpy(p + i, &x, 8);
    }
}

static apr_zram *pool(int algo, uint64_t max_bytes)
{
    apr_zram_params p;
    apr_zram_params_default(&p);
    p.algo = algo;
    p.max_bytes = max_bytes;
    apr_zram *z = NULL;
    if (apr_zram_new(&p, &z) != APR_OK) return NULL;
    return z;
}

TEST(zram_pool_round_trips_every_kind_of_page)
{
    for (int algo = 0; algo <= 1; algo++) {
        apr_zram *z = pool(algo, 0);
        REQUIRE(z);
        uint8_t page[PB], out[PB];
        uint64_t h[40];
        for (int i = 0; i < 40; i++) {
            make_page(page, i % 4, (uint64_t)i);
            REQUIRE(apr_zram_put(z, page, &h[i]) == APR_OK);
            CHECK(h[i] != 0 && h[i] < (1ull << 53));
        }
        for (int i = 39; i >= 0; i--) {
            make_page(page, i % 4, (uint64_t)i);
            memset(out, 0xaa, PB);
            REQUIRE(apr_zram_get(z, h[i], out) == APR_OK);
            if (memcmp(out, page, PB) != 0) test_fail(__FILE__, __LINE__, "algo %d page %d differs", algo, i);
        }
        apr_zram_stats st;
        apr_zram_get_stats(z, &st);
        CHECK_EQ_INT(st.pages, 40);
        CHECK_EQ_INT(st.same_pages, 20);
        CHECK_EQ_INT(st.same_hits, 20);
        CHECK_EQ_INT(st.raw_pages, 10);
        CHECK_EQ_INT(st.puts, 40);
        CHECK_EQ_INT(st.gets, 40);
        /* compressible pages take under half a page */
        CHECK(st.stored_bytes > 10 * PB && st.stored_bytes < 10 * PB + 10 * PB / 2);
        CHECK(st.host_bytes == st.slab_bytes + 40 * sizeof(entry));
        CHECK_NEAR(st.ratio, 40.0 * PB / (double)st.host_bytes, 1e-12);
        CHECK(st.compressed_in == 20 * PB && st.decompressed_out == 10 * PB);
        CHECK(st.compress_gbs > 0 && st.decompress_gbs > 0);
        for (int i = 0; i < 40; i++) CHECK(apr_zram_drop(z, h[i]) == APR_OK);
        apr_zram_get_stats(z, &st);
        CHECK_EQ_INT(st.pages, 0);
        CHECK_EQ_INT(st.host_bytes, 0);
        CHECK_EQ_INT(st.stored_bytes, 0);
        apr_zram_free(z);
    }
}

TEST(zram_pool_of_compressible_pages_saves_memory)
{
    /* 1,000 pages, a quarter zeros, the rest compressible: the slabs' slack
     * is small beside them and the ratio is what compression gives */
    for (int algo = 0; algo <= 1; algo++) {
        apr_zram *z = pool(algo, 0);
        REQUIRE(z);
        uint8_t page[PB];
        uint64_t h;
        for (int i = 0; i < 1000; i++) {
            make_page(page, i % 4 == 0 ? 0 : 2, (uint64_t)i);
            REQUIRE(apr_zram_put(z, page, &h) == APR_OK);
        }
        apr_zram_stats st;
        apr_zram_get_stats(z, &st);
        CHECK(st.ratio > 2.0);
        CHECK(st.slab_bytes < st.stored_bytes + st.stored_bytes / 10 + 64 * 4 * PB);
        apr_zram_free(z);
    }
}

TEST(zram_pool_handles_that_name_nothing_are_errors)
{
    apr_zram *z = pool(APR_ZRAM_LZ4, 0);
    REQUIRE(z);
    uint8_t page[PB], out[PB];
    make_page(page, 2, 1);
    uint64_t h, h2;
    REQUIRE(apr_zram_put(z, page, &h) == APR_OK);
    CHECK(apr_zram_has(z, h));
    CHECK(apr_zram_drop(z, h) == APR_OK);
    CHECK(!apr_zram_has(z, h));
    CHECK(apr_zram_get(z, h, out) == APR_ERR_NOT_FOUND);
    CHECK(strstr(apr_last_error(), "names no page") != NULL);
    CHECK(apr_zram_drop(z, h) == APR_ERR_NOT_FOUND);
    /* the entry is reused by the next page; the old handle still names nothing */
    REQUIRE(apr_zram_put(z, page, &h2) == APR_OK);
    CHECK(h2 != h && (h2 & 0xffffffffu) == (h & 0xffffffffu));
    CHECK(apr_zram_get(z, h, out) == APR_ERR_NOT_FOUND);
    CHECK(apr_zram_get(z, h2, out) == APR_OK && memcmp(out, page, PB) == 0);
    const uint64_t junk[] = { 0, 1ull << 60, 0xffffffffu, h2 + 1, h2 ^ (1ull << 40) };
    for (size_t i = 0; i < sizeof junk / sizeof *junk; i++) {
        CHECK(apr_zram_get(z, junk[i], out) == APR_ERR_NOT_FOUND);
        CHECK(apr_zram_drop(z, junk[i]) == APR_ERR_NOT_FOUND);
    }
    apr_zram_stats st;
    apr_zram_get_stats(z, &st);
    CHECK_EQ_INT(st.misses, 3 + 2 * 5);
    CHECK_EQ_INT(st.pages, 1);
    /* bad calls are the caller's mistake */
    CHECK(apr_zram_put(z, NULL, &h) == APR_ERR_INVALID && h == 0);
    CHECK(apr_zram_get(z, h2, NULL) == APR_ERR_INVALID);
    apr_zram_free(z);
}

TEST(zram_pool_takes_same_filled_pages_by_their_word)
{
    apr_zram *z = pool(APR_ZRAM_LZ4, 0);
    REQUIRE(z);
    uint8_t page[PB], out[PB];
    uint64_t h, h2, w = 0;
    REQUIRE(apr_zram_put_word(z, 0xabcdef0123456789ull, &h) == APR_OK);
    CHECK(apr_zram_same_word(z, h, &w) == 1 && w == 0xabcdef0123456789ull);
    CHECK(apr_zram_get(z, h, out) == APR_OK);
    for (int i = 0; i < PB; i += 8) {
        uint64_t x;
        memcpy(&x, out + i, 8);
        if (x != w) test_fail(__FILE__, __LINE__, "word %d", i / 8);
    }
    make_page(page, 2, 4);
    REQUIRE(apr_zram_put(z, page, &h2) == APR_OK);
    w = 5;
    CHECK(apr_zram_same_word(z, h2, &w) == 0 && w == 5);  /* not same-filled */
    CHECK(apr_zram_drop(z, h) == APR_OK);
    CHECK(apr_zram_same_word(z, h, &w) == 0);             /* gone */
    apr_zram_stats st;
    apr_zram_get_stats(z, &st);
    CHECK_EQ_INT(st.same_hits, 1);
    CHECK_EQ_INT(st.pages, 1);
    apr_zram_free(z);
}

TEST(zram_pool_rejects_bad_params)
{
    apr_zram_params p;
    apr_zram *z = (apr_zram *)1;
    apr_zram_params_default(&p);
    p.page_bytes = 4100;
    CHECK(apr_zram_new(&p, &z) == APR_ERR_INVALID && z == NULL);
    p.page_bytes = 0;
    CHECK(apr_zram_new(&p, &z) == APR_ERR_INVALID);
    p.page_bytes = 1ull << 40;
    CHECK(apr_zram_new(&p, &z) == APR_ERR_INVALID);
    apr_zram_params_default(&p);
    p.algo = 7;
    CHECK(apr_zram_new(&p, &z) == APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "algorithm 7") != NULL);
    apr_zram_params_default(&p);
    p.algo = APR_ZRAM_ZSTD;
    p.level = 23;
    CHECK(apr_zram_new(&p, &z) == APR_ERR_INVALID);
    CHECK(apr_zram_new(NULL, &z) == APR_OK && z != NULL);
    apr_zram_free(z);
    apr_zram_free(NULL);
}

TEST(zram_pool_cap_evicts_least_recently_used_first)
{
    /* room for a raw slab (4 pages), a few slabs of compressed pages */
    const uint64_t cap = 96 << 10;
    apr_zram *z = pool(APR_ZRAM_LZ4, cap);
    REQUIRE(z);
    uint8_t page[PB], out[PB];
    enum { N = 200 };
    uint64_t h[N];
    apr_zram_stats st;
    for (int i = 0; i < N; i++) {
        make_page(page, i % 8 == 0 ? 3 : 2, (uint64_t)i);
        REQUIRE(apr_zram_put(z, page, &h[i]) == APR_OK);
        /* page 5 is kept warm: got after every put */
        if (i >= 5) CHECK(apr_zram_get(z, h[5], out) == APR_OK);
        apr_zram_get_stats(z, &st);
        if (st.host_bytes > cap) test_fail(__FILE__, __LINE__, "host bytes %llu over the cap after put %d",
                                           (unsigned long long)st.host_bytes, i);
    }
    CHECK(st.evictions > 0);
    CHECK_EQ_INT(st.pages + st.evictions, N);
    /* the survivors are the newest pages, and page 5; each still reads right */
    int held = 0, first_held = -1;
    for (int i = 0; i < N; i++) {
        int has = apr_zram_has(z, h[i]);
        held += has;
        if (has && i != 5 && first_held < 0) first_held = i;
        if (has) {
            make_page(page, i % 8 == 0 ? 3 : 2, (uint64_t)i);
            CHECK(apr_zram_get(z, h[i], out) == APR_OK && memcmp(out, page, PB) == 0);
        } else {
            CHECK(apr_zram_get(z, h[i], out) == APR_ERR_NOT_FOUND);
        }
    }
    CHECK(apr_zram_has(z, h[5]));
    CHECK_EQ_INT(held, st.pages);
    REQUIRE(first_held > 5);
    for (int i = first_held; i < N; i++) CHECK(apr_zram_has(z, h[i]));
    /* a page that cannot fit even alone: NOMEM, nothing else changes but
     * the pages evicted trying */
    apr_zram_free(z);
    z = pool(APR_ZRAM_LZ4, 100);
    REQUIRE(z);
    uint64_t hh = 77;
    make_page(page, 2, 1);
    CHECK(apr_zram_put(z, page, &hh) == APR_ERR_NOMEM && hh == 0);
    CHECK(strstr(apr_last_error(), "cap") != NULL);
    /* a same-filled page needs only its entry */
    make_page(page, 0, 1);
    CHECK(apr_zram_put(z, page, &hh) == APR_OK);
    apr_zram_free(z);
}

TEST(zram_pool_corrupt_page_is_an_error_for_its_caller_only)
{
    apr_zram *z = pool(APR_ZRAM_LZ4, 0);
    REQUIRE(z);
    uint8_t a[PB], b[PB], c[PB], out[PB];
    make_page(a, 2, 1);
    make_page(b, 2, 2);
    make_page(c, 3, 3);
    uint64_t ha, hb, hc;
    REQUIRE(apr_zram_put(z, a, &ha) == APR_OK);
    REQUIRE(apr_zram_put(z, b, &hb) == APR_OK);
    REQUIRE(apr_zram_put(z, c, &hc) == APR_OK);
    /* flip bytes of a's compressed form and of c's raw form in the slab */
    entry *ea = lookup(z, ha), *ec = lookup(z, hc);
    REQUIRE(ea && ec && ea->kind == ZRAM_LZ4 && ec->kind == ZRAM_RAW);
    uint8_t *sa = zram_slabs_at(ea->u.slab, ea->slot), *sc = zram_slabs_at(ec->u.slab, ec->slot);
    sa[ea->size / 2] ^= 0x5a;
    sc[17] ^= 0x01;
    CHECK(apr_zram_get(z, ha, out) == APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "zram") != NULL);
    CHECK(apr_zram_get(z, hc, out) == APR_ERR_FORMAT);
    CHECK(apr_zram_get(z, hb, out) == APR_OK && memcmp(out, b, PB) == 0);
    apr_zram_stats st;
    apr_zram_get_stats(z, &st);
    CHECK_EQ_INT(st.corrupt, 2);
    /* a corrupt page can be dropped like any other */
    CHECK(apr_zram_drop(z, ha) == APR_OK);
    CHECK(apr_zram_drop(z, hc) == APR_OK);
    apr_zram_free(z);
}

typedef struct worker {
    apr_zram *z;
    uint64_t seed;
    int failures;
} worker;

static void *churn(void *arg)
{
    worker *w = arg;
    apr_rng r;
    apr_rng_seed(&r, w->seed);
    enum { LIVE = 64 };
    uint64_t h[LIVE] = { 0 }, seeds[LIVE] = { 0 };
    int kinds[LIVE] = { 0 };
    uint8_t page[PB], out[PB];
    for (int step = 0; step < 3000; step++) {
        int i = (int)(apr_rng_next(&r) % LIVE);
        if (!h[i]) {
            kinds[i] = (int)(apr_rng_next(&r) % 4);
            seeds[i] = apr_rng_next(&r);
            make_page(page, kinds[i], seeds[i]);
            if (apr_zram_put(w->z, page, &h[i]) != APR_OK) w->failures++;
        } else if (apr_rng_next(&r) % 3) {
            make_page(page, kinds[i], seeds[i]);
            if (apr_zram_get(w->z, h[i], out) != APR_OK || memcmp(out, page, PB) != 0) w->failures++;
        } else {
            if (apr_zram_drop(w->z, h[i]) != APR_OK) w->failures++;
            h[i] = 0;
        }
    }
    for (int i = 0; i < LIVE; i++)
        if (h[i] && apr_zram_drop(w->z, h[i]) != APR_OK) w->failures++;
    return NULL;
}

TEST(zram_pool_is_thread_safe)
{
    for (int algo = 0; algo <= 1; algo++) {
        apr_zram *z = pool(algo, 0);
        REQUIRE(z);
        enum { T = 4 };
        pthread_t t[T];
        worker w[T];
        for (int i = 0; i < T; i++) {
            w[i] = (worker){ .z = z, .seed = 100 + (uint64_t)i };
            pthread_create(&t[i], NULL, churn, &w[i]);
        }
        for (int i = 0; i < T; i++) {
            pthread_join(t[i], NULL);
            CHECK_EQ_INT(w[i].failures, 0);
        }
        apr_zram_stats st;
        apr_zram_get_stats(z, &st);
        CHECK_EQ_INT(st.pages, 0);
        CHECK_EQ_INT(st.slab_bytes, 0);
        CHECK(st.puts == st.drops && st.puts > 0);
        apr_zram_free(z);
    }
}
