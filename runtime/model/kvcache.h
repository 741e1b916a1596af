/* kvcache.h — the paged KV cache of a context (internal).
 *
 * The keys and values live on the backend (apr_kv_cache, laid out as
 * backend.h says) in blocks of APR_KV_BLOCK token slots. Which blocks a
 * sequence owns is its row of the block table; position p of sequence s is
 * slot table[s][p / APR_KV_BLOCK] * APR_KV_BLOCK + p % APR_KV_BLOCK. Blocks
 * come from one free list, so a finished sequence returns all of its blocks
 * at once and sequences of any lengths share the memory.
 *
 * A pass first reserves the slots of its tokens (reserve), and then either
 * commits them (the sequences' lengths advance) or rolls them back (the
 * blocks it took return to the free list): a failed or cancelled pass
 * leaves the cache as it was. */
#ifndef APR_MODEL_KVCACHE_H
#define APR_MODEL_KVCACHE_H

#include "apr.h"
#include "backend/backend.h"

/* Token slots per block: small enough that a sequence wastes little of its
 * last block, large enough that attention reads long contiguous runs. */
#define APR_KV_BLOCK 32

typedef struct apr_kvcache {
    apr_kv_cache dev;      /* keys and values on the backend */
    apr_backend *b;
    int n_ctx;             /* the most tokens a sequence may hold */
    int n_seq;
    int max_blocks;        /* columns of table */
    int32_t *table;        /* [n_seq][max_blocks] block ids (-1: none) */
    int *len;              /* [n_seq] tokens held */
    int *n_owned;          /* [n_seq] blocks owned */
    int32_t *free_blocks;  /* stack of free block ids */
    int n_free;
    /* the pass in progress */
    int *pending;          /* [n_seq] tokens reserved but not committed */
    int *owned_before;     /* [n_seq] blocks owned when the pass began */
} apr_kvcache;

/* Bytes of one cached head_dim vector in element type `type`: F16, or Q8_0
 * and Q4_0 (llama.cpp's blocks of 32 elements with an f16 scale, as
 * core/quant.h lays them out) when head_dim is a whole number of blocks;
 * 0 for anything else. */
size_t apr_kvcache_row_bytes(int type, int head_dim);
/* Allocates the cache for n_seq sequences sharing n_ctx token slots (of
 * n_layer layers, n_head_kv heads of head_dim, in type F16, Q8_0 or Q4_0;
 * which of them a backend reads is its `supports` answer, asked first). */
apr_status apr_kvcache_init(apr_kvcache *c, apr_backend *b, int type, int n_layer, int n_head_kv, int head_dim,
                            int n_ctx, int n_seq);
void apr_kvcache_release(apr_kvcache *c);

static inline int apr_kvcache_len(const apr_kvcache *c, int seq) { return c->len[seq]; }

/* Reserves slots for n more tokens of seq (after those already reserved in
 * this pass); APR_ERR_RANGE when the sequence would pass n_ctx or no block
 * is free. */
apr_status apr_kvcache_reserve(apr_kvcache *c, int seq, int n);
/* The slot of position pos of seq (reserved or held). */
static inline int32_t apr_kvcache_slot(const apr_kvcache *c, int seq, int pos)
{
    return c->table[(size_t)seq * c->max_blocks + pos / APR_KV_BLOCK] * APR_KV_BLOCK + pos % APR_KV_BLOCK;
}
/* Ends the pass: the reserved tokens become part of their sequences. */
void apr_kvcache_commit(apr_kvcache *c);
/* Ends the pass: the reservations are undone, their new blocks freed. */
void apr_kvcache_rollback(apr_kvcache *c);
/* Keeps the first `from` tokens of seq, freeing the blocks past them. */
void apr_kvcache_truncate(apr_kvcache *c, int seq, int from);

#endif
