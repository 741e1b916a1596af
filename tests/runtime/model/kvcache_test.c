/* kvcache_test.c — block tables: reservations become lengths on commit and
 * vanish on rollback, truncation frees whole blocks, sequences share the
 * free list, and a full cache says so. */
#include "test.h"

#include "backend/backend.h"
#include "model/kvcache.h"

TEST(kvcache_reserve_commit_rollback_truncate)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_kvcache c;
    /* 3 sequences sharing 100 slots: 4 blocks for the tokens + 2 of slack */
    REQUIRE(apr_kvcache_init(&c, b, APR_F16, 2, 2, 64, 100, 3) == APR_OK);
    CHECK_EQ_INT(c.max_blocks, 4);
    CHECK_EQ_INT(c.dev.n_blocks, 6);
    CHECK_EQ_INT(c.dev.row_bytes, 128);
    CHECK(b->bytes >= 2 * (size_t)2 * 6 * 2 * APR_KV_BLOCK * 128);

    /* 40 tokens of sequence 0 take two blocks; rollback returns them */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 0, 40), APR_OK);
    CHECK_EQ_INT(c.n_owned[0], 2);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 0);
    const int free_before = c.n_free;
    apr_kvcache_rollback(&c);
    CHECK_EQ_INT(c.n_free, free_before + 2);
    CHECK_EQ_INT(c.n_owned[0], 0);

    /* again, committed: positions map into the blocks in order */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 0, 40), APR_OK);
    apr_kvcache_commit(&c);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 40);
    const int32_t b0 = c.table[0], b1 = c.table[1];
    CHECK(b0 != b1);
    CHECK_EQ_INT(apr_kvcache_slot(&c, 0, 0), b0 * APR_KV_BLOCK);
    CHECK_EQ_INT(apr_kvcache_slot(&c, 0, 33), b1 * APR_KV_BLOCK + 1);

    /* a second sequence gets other blocks; a failed pass of both keeps neither's new blocks */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 1, 10), APR_OK);
    CHECK(c.table[c.max_blocks] != b0 && c.table[c.max_blocks] != b1);
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 0, 30), APR_OK);  /* grows sequence 0 to a third block */
    CHECK_EQ_INT(c.n_owned[0], 3);
    apr_kvcache_rollback(&c);
    CHECK_EQ_INT(c.n_owned[0], 2);
    CHECK_EQ_INT(c.n_owned[1], 0);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 40);

    /* a sequence cannot pass n_ctx */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 0, 61), APR_ERR_RANGE);
    apr_kvcache_rollback(&c);
    /* the sequences together cannot take more blocks than exist */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 1, 100), APR_OK);  /* 4 blocks: 6 - 2 = all that are free */
    CHECK_EQ_INT(apr_kvcache_reserve(&c, 2, 1), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "context of 100 tokens is full") != NULL);
    apr_kvcache_rollback(&c);
    CHECK_EQ_INT(c.n_free, 4);

    /* truncation inside the first block frees the second */
    apr_kvcache_truncate(&c, 0, 20);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 20);
    CHECK_EQ_INT(c.n_owned[0], 1);
    CHECK_EQ_INT(c.n_free, 5);
    apr_kvcache_truncate(&c, 0, 0);
    CHECK_EQ_INT(c.n_free, 6);
    apr_kvcache_truncate(&c, 0, 50);  /* past the end: nothing to do */
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 0);

    apr_kvcache_release(&c);
    CHECK_EQ_INT(b->bytes, 0);
    b->destroy(b);
}

TEST(kvcache_rejects_types_it_cannot_store)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_kvcache c;
    CHECK_EQ_INT(apr_kvcache_init(&c, b, APR_Q4_K, 1, 1, 64, 64, 1), APR_ERR_UNSUPPORTED);
    CHECK_EQ_INT(apr_kvcache_init(&c, b, APR_Q8_0, 1, 1, 48, 64, 1), APR_ERR_UNSUPPORTED);  /* head_dim % 32 */
    CHECK_EQ_INT(apr_kvcache_init(&c, b, APR_Q8_0, 1, 1, 64, 64, 1), APR_OK);
    CHECK_EQ_INT(c.dev.row_bytes, 68);
    apr_kvcache_release(&c);
    b->destroy(b);
}
