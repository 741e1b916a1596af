/* kvcache_test.c — block tables: reservations become lengths on commit and
 * vanish on rollback, truncation frees whole blocks, sequences share one
 * pool, a full cache says so; the prefix index: full blocks are keyed by
 * their tokens and every token before them, shared by reference count,
 * kept after their sequence lets go and evicted least recently used first;
 * a truncation into a shared block asks for a copy. */
#include "test.h"

#include "backend/backend.h"
#include "model/kvcache.h"

/* Appends n ids (ids[len .. len + n)) to seq and commits. */
static apr_status feed(apr_kvcache *c, int seq, const int32_t *ids, int n)
{
    const int len = apr_kvcache_len(c, seq);
    for (int i = 0; i < n; i++) {
        apr_status s = apr_kvcache_append(c, seq, ids[len + i]);
        if (s != APR_OK) {
            apr_kvcache_rollback(c);
            return s;
        }
    }
    apr_kvcache_commit(c);
    return APR_OK;
}

static void truncate_to(apr_kvcache *c, int seq, int from)
{
    int32_t a, b;
    CHECK_EQ_INT(apr_kvcache_truncate(c, seq, from, &a, &b), APR_OK);
    CHECK_EQ_INT(a, -1);
}

TEST(kvcache_reserve_commit_rollback_truncate)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_kvcache c;
    /* 3 sequences sharing 100 slots: 4 blocks for the tokens + 2 of slack */
    REQUIRE(apr_kvcache_init(&c, b, APR_F16, 2, 2, 64, 100, 3) == APR_OK);
    c.prefix = 0;
    CHECK_EQ_INT(c.max_blocks, 4);
    CHECK_EQ_INT(c.dev.n_blocks, 6);
    CHECK_EQ_INT(c.dev.row_bytes, 128);
    CHECK_EQ_INT(apr_kvcache_token_bytes(APR_F16, 2, 2, 64), 2 * 2 * 2 * 128);
    CHECK(b->bytes >= 2 * (size_t)2 * 6 * 2 * APR_KV_BLOCK * 128);
    int32_t ids[128];
    for (int i = 0; i < 128; i++) ids[i] = i;

    /* 40 tokens of sequence 0 take two blocks; rollback returns them */
    for (int i = 0; i < 40; i++) CHECK_EQ_INT(apr_kvcache_append(&c, 0, ids[i]), APR_OK);
    CHECK_EQ_INT(c.n_owned[0], 2);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 0);
    CHECK_EQ_INT(apr_kvcache_blocks_needed(&c, 0, 24), 0);
    CHECK_EQ_INT(apr_kvcache_blocks_needed(&c, 0, 25), 1);
    const int free_before = c.n_free;
    apr_kvcache_rollback(&c);
    CHECK_EQ_INT(c.n_free, free_before + 2);
    CHECK_EQ_INT(c.n_owned[0], 0);

    /* again, committed: positions map into the blocks in order */
    CHECK_EQ_INT(feed(&c, 0, ids, 40), APR_OK);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 40);
    const int32_t b0 = c.table[0], b1 = c.table[1];
    CHECK(b0 != b1);
    CHECK_EQ_INT(apr_kvcache_slot(&c, 0, 0), b0 * APR_KV_BLOCK);
    CHECK_EQ_INT(apr_kvcache_slot(&c, 0, 33), b1 * APR_KV_BLOCK + 1);
    CHECK(apr_kvcache_holds(&c, 0, ids, 40));
    CHECK(!apr_kvcache_holds(&c, 0, ids + 1, 40));

    /* a second sequence gets other blocks; a failed pass of both keeps neither's new blocks */
    CHECK_EQ_INT(apr_kvcache_append(&c, 1, 7), APR_OK);
    CHECK(c.table[c.max_blocks] != b0 && c.table[c.max_blocks] != b1);
    for (int i = 0; i < 30; i++) CHECK_EQ_INT(apr_kvcache_append(&c, 0, 5), APR_OK);  /* a third block */
    CHECK_EQ_INT(c.n_owned[0], 3);
    apr_kvcache_rollback(&c);
    CHECK_EQ_INT(c.n_owned[0], 2);
    CHECK_EQ_INT(c.n_owned[1], 0);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 40);

    /* one sequence may hold all n_ctx tokens, but not pass them */
    CHECK_EQ_INT(feed(&c, 0, ids, 60), APR_OK);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 100);
    CHECK_EQ_INT(apr_kvcache_append(&c, 0, 1), APR_ERR_RANGE);
    apr_kvcache_rollback(&c);
    /* the slack is the others' partial blocks; then they find no block */
    CHECK_EQ_INT(feed(&c, 1, ids, 33), APR_OK);
    CHECK_EQ_INT(apr_kvcache_available(&c), 0);
    CHECK_EQ_INT(apr_kvcache_append(&c, 2, 1), APR_ERR_RANGE);
    CHECK(strstr(apr_last_error(), "context of 100 tokens is full") != NULL);
    apr_kvcache_rollback(&c);
    truncate_to(&c, 1, 0);

    /* truncation inside the second block frees the later ones */
    truncate_to(&c, 0, 40);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 40);
    CHECK_EQ_INT(c.n_owned[0], 2);
    CHECK_EQ_INT(c.n_free, 4);
    truncate_to(&c, 0, 0);
    CHECK_EQ_INT(c.n_free, 6);
    truncate_to(&c, 0, 50);  /* past the end: nothing to do */
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 0);

    apr_kvcache_release(&c);
    CHECK_EQ_INT(b->bytes, 0);
    b->destroy(b);
}

/* Full blocks outlive their sequence in the index; a sequence with the same
 * first tokens takes them (counted), one with different ones does not; a
 * block is shared while both hold it; a released sequence's partial last
 * block goes to the next that continues the same way; cached blocks are
 * evicted least recently released first when the free blocks run out. */
TEST(kvcache_prefix_index_shares_and_evicts)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_kvcache c;
    REQUIRE(apr_kvcache_init(&c, b, APR_F16, 1, 1, 64, 8 * APR_KV_BLOCK, 4) == APR_OK);
    enum { N = 3 * APR_KV_BLOCK + 5 };
    int32_t a[N], other[N];
    for (int i = 0; i < N; i++) {
        a[i] = 1000 + i;
        other[i] = i == 40 ? 7 : a[i];  /* the same first block, a different second */
    }

    /* nothing indexed yet */
    CHECK_EQ_INT(apr_kvcache_match(&c, 0, a, N), 0);
    CHECK_EQ_INT(feed(&c, 0, a, N), APR_OK);  /* 3 full blocks and a partial one */
    CHECK_EQ_INT(c.n_owned[0], 4);
    int indexed = 0;
    for (int i = 0; i < c.dev.n_blocks; i++) indexed += c.indexed[i];
    CHECK_EQ_INT(indexed, 3);

    /* sharing while sequence 0 still holds them: up to whole blocks of n */
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, a, 2 * APR_KV_BLOCK + 31), APR_KV_BLOCK * 2);
    CHECK_EQ_INT(c.table[c.max_blocks], c.table[0]);
    CHECK_EQ_INT(c.ref[c.table[0]], 2);
    CHECK_EQ_INT(apr_kvcache_len(&c, 1), 2 * APR_KV_BLOCK);
    /* and it can continue the match later, from its block boundary */
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, a, N), APR_KV_BLOCK);
    CHECK_EQ_INT(apr_kvcache_len(&c, 1), 3 * APR_KV_BLOCK);
    CHECK(apr_kvcache_holds(&c, 1, a, N));
    /* a different second block: only the first matches */
    CHECK_EQ_INT(apr_kvcache_match(&c, 2, other, N), APR_KV_BLOCK);
    /* matching needs a sequence at a block boundary with nothing reserved */
    CHECK_EQ_INT(apr_kvcache_append(&c, 3, 1), APR_OK);
    CHECK_EQ_INT(apr_kvcache_match(&c, 3, a, N), 0);
    apr_kvcache_rollback(&c);

    /* letting go: shared blocks stay held by the others; once nobody holds
     * them the indexed ones are cached (reusable), and so is sequence 0's
     * partly filled last block (5 tokens) */
    truncate_to(&c, 0, 0);
    truncate_to(&c, 2, 0);
    CHECK_EQ_INT(c.ref[c.table[c.max_blocks]], 1);
    CHECK_EQ_INT(c.n_lru, 1);
    truncate_to(&c, 1, 0);
    CHECK_EQ_INT(c.n_lru, 4);
    CHECK_EQ_INT(c.n_free, 7);
    CHECK_EQ_INT(apr_kvcache_available(&c), 11);  /* 8 for n_ctx, 3 of slack */

    /* a later sequence takes them back from the LRU list: the 3 whole
     * blocks, then as much of the partial one as agrees with what follows */
    CHECK_EQ_INT(apr_kvcache_match(&c, 0, a, 3 * APR_KV_BLOCK + 3), 3 * APR_KV_BLOCK + 3);
    CHECK_EQ_INT(c.n_lru, 0);
    CHECK_EQ_INT(c.n_owned[0], 4);
    CHECK(apr_kvcache_holds(&c, 0, a, 3 * APR_KV_BLOCK + 3));
    /* it is seq 0's own now: it writes on from there */
    CHECK_EQ_INT(feed(&c, 0, other, 2), APR_OK);
    CHECK_EQ_INT(apr_kvcache_len(&c, 0), 3 * APR_KV_BLOCK + 5);
    truncate_to(&c, 0, 0);
    /* a continuation that differs inside the partial block takes its
     * agreeing part only; one that differs at once takes none of it */
    int32_t late[N];
    memcpy(late, a, sizeof late);
    late[3 * APR_KV_BLOCK + 1] = 9;
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, late, N), 3 * APR_KV_BLOCK + 1);
    truncate_to(&c, 1, 0);
    late[3 * APR_KV_BLOCK] = 9;
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, late, N), 3 * APR_KV_BLOCK);
    truncate_to(&c, 1, 0);
    CHECK_EQ_INT(c.n_lru, 4);  /* the partial one (one token) is back */

    /* eviction: the 7 free blocks first, then the LRU's, least recently
     * released first; the deepest block of a released sequence goes before
     * its first ones */
    int32_t fill[8 * APR_KV_BLOCK];
    for (int i = 0; i < 8 * APR_KV_BLOCK; i++) fill[i] = 50000 + i;
    CHECK_EQ_INT(feed(&c, 2, fill, 8 * APR_KV_BLOCK), APR_OK);  /* 7 free + the partial one */
    CHECK_EQ_INT(c.n_lru, 3);
    CHECK_EQ_INT(feed(&c, 3, fill, APR_KV_BLOCK), APR_OK);
    CHECK_EQ_INT(c.n_lru, 2);
    CHECK_EQ_INT(apr_kvcache_match(&c, 0, a, N), 2 * APR_KV_BLOCK);
    truncate_to(&c, 0, 0);
    CHECK_EQ_INT(feed(&c, 3, fill, 2 * APR_KV_BLOCK), APR_OK);
    CHECK_EQ_INT(apr_kvcache_available(&c), 0);
    CHECK_EQ_INT(apr_kvcache_match(&c, 0, a, N), 0);

    /* with prefix reuse off nothing is indexed or matched */
    truncate_to(&c, 2, 0);
    truncate_to(&c, 3, 0);
    c.prefix = 0;
    CHECK_EQ_INT(feed(&c, 0, fill, 2 * APR_KV_BLOCK), APR_OK);
    truncate_to(&c, 0, 0);
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, fill, 2 * APR_KV_BLOCK), 0);
    apr_kvcache_release(&c);
    b->destroy(b);
}

/* Cutting a sequence inside a block another sequence holds gives it a
 * private copy (the caller copies the contents); inside an indexed block
 * only it holds, the block leaves the index (it will be overwritten). */
TEST(kvcache_truncate_into_shared_block_copies)
{
    apr_backend *b = apr_backend_cpu_new(1);
    REQUIRE(b);
    apr_kvcache c;
    REQUIRE(apr_kvcache_init(&c, b, APR_F16, 1, 1, 64, 4 * APR_KV_BLOCK, 3) == APR_OK);
    int32_t ids[2 * APR_KV_BLOCK];
    for (int i = 0; i < 2 * APR_KV_BLOCK; i++) ids[i] = 3 * i;
    CHECK_EQ_INT(feed(&c, 0, ids, 2 * APR_KV_BLOCK), APR_OK);
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, ids, 2 * APR_KV_BLOCK), 2 * APR_KV_BLOCK);
    const int32_t shared = c.table[1];
    int32_t from, to;
    CHECK_EQ_INT(apr_kvcache_truncate(&c, 1, APR_KV_BLOCK + 10, &from, &to), APR_OK);
    CHECK_EQ_INT(from, shared);
    CHECK(to >= 0 && to != shared);
    CHECK_EQ_INT(c.table[c.max_blocks + 1], to);
    CHECK_EQ_INT(c.ref[shared], 1);
    CHECK(c.indexed[shared]);
    CHECK(!c.indexed[to]);
    CHECK(apr_kvcache_holds(&c, 1, ids, APR_KV_BLOCK + 10));
    /* sequence 0 alone now: cutting inside its indexed block unindexes it */
    CHECK_EQ_INT(apr_kvcache_truncate(&c, 0, APR_KV_BLOCK + 3, &from, &to), APR_OK);
    CHECK_EQ_INT(from, -1);
    CHECK(!c.indexed[shared]);
    /* with no block left for the copy, the truncation fails and changes nothing */
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, ids, APR_KV_BLOCK), 0);  /* not at a boundary: nothing */
    truncate_to(&c, 1, 0);
    truncate_to(&c, 0, APR_KV_BLOCK);
    CHECK_EQ_INT(apr_kvcache_match(&c, 1, ids, APR_KV_BLOCK), APR_KV_BLOCK);
    int32_t fill[4 * APR_KV_BLOCK] = { 0 };
    CHECK_EQ_INT(feed(&c, 0, fill, 3 * APR_KV_BLOCK), APR_OK);
    CHECK_EQ_INT(feed(&c, 2, fill, 2 * APR_KV_BLOCK), APR_OK);
    CHECK_EQ_INT(apr_kvcache_available(&c), 0);
    CHECK_EQ_INT(apr_kvcache_truncate(&c, 1, 5, &from, &to), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_kvcache_len(&c, 1), APR_KV_BLOCK);
    apr_kvcache_release(&c);
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
