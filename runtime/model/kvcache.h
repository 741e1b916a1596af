/* kvcache.h — the paged KV cache of a context: one pool of blocks, tables,
 * and the prefix index (internal).
 *
 * The keys and values live on the backend (apr_kv_cache, laid out as
 * backend.h says) in blocks of APR_KV_BLOCK token slots. Which blocks a
 * sequence holds is its row of the block table; position p of sequence s is
 * slot table[s][p / APR_KV_BLOCK] * APR_KV_BLOCK + p % APR_KV_BLOCK. All
 * sequences draw blocks from one pool as they grow, so one sequence may
 * fill the whole cache while the others hold nothing.
 *
 * Prefix reuse. A block whose APR_KV_BLOCK slots are all written is keyed
 * by a hash of its token ids chained with the hash of the block before it
 * (so the key stands for every token from position 0 to its end) and
 * entered in the prefix index. A block is shared by reference count: a new
 * sequence whose first tokens are those of indexed blocks attaches them
 * (apr_kvcache_match) instead of computing them again. When the last
 * sequence holding an indexed block lets it go, the block keeps its keys
 * and values on an LRU list; it is taken back (evicted) only when no free
 * block is left. A sequence's last block, partly filled, is kept too when
 * the sequence lets it go, found by the key of the block before it: the
 * next sequence that continues the same way takes it over (a chat's next
 * turn then computes only its new tokens). The block a sequence writes
 * into is never shared: full blocks only are shared, a partial one changes
 * hands, and a truncation into a shared block copies it first
 * (apr_kvcache_truncate says how).
 *
 * A pass first reserves the slots of its tokens (append), and then either
 * commits them (the sequences' lengths advance, newly full blocks enter the
 * index) or rolls them back (the blocks it took return to the pool): a
 * failed or cancelled pass leaves the cache as it was. */
#ifndef APR_MODEL_KVCACHE_H
#define APR_MODEL_KVCACHE_H

#include "apr.h"
#include "backend/backend.h"

/* Token slots per block: small enough that a sequence wastes little of its
 * last block and a shared prefix is cut finely, large enough that attention
 * reads long contiguous runs. */
#define APR_KV_BLOCK 32

/* apr_kvcache.indexed: a full block in the prefix index, or a partly
 * filled one in the partial index. */
enum { APR_KV_INDEXED_FULL = 1, APR_KV_INDEXED_PARTIAL = 2 };

struct apr_kvswap;

typedef struct apr_kvcache {
    apr_kv_cache dev;      /* keys and values on the backend */
    apr_backend *b;
    int n_ctx;             /* the most tokens one sequence, or all of them together, may hold */
    int n_seq;
    int max_blocks;        /* columns of table: n_ctx / APR_KV_BLOCK rounded up (the pool has n_seq - 1 more) */
    int prefix;            /* 1: full blocks enter the prefix index and outlive their sequences */
    int32_t *table;        /* [n_seq][max_blocks] block ids (-1: none) */
    int *len;              /* [n_seq] tokens held */
    int *n_owned;          /* [n_seq] blocks in its row */

    /* the blocks, [dev.n_blocks] each */
    int32_t *ref;          /* rows holding the block */
    int32_t *ids;          /* [n_blocks][APR_KV_BLOCK] the token id of each slot */
    uint64_t *hash;        /* a full block's key: its ids chained with parent */
    uint64_t *parent;      /* the key of the block before it (0 before the first) */
    int8_t *indexed;       /* 1: a full block in the prefix index; 2: a partial one in the partial index */
    int16_t *filled;       /* a partial indexed block's slots holding tokens */
    int32_t *free_blocks;  /* stack of blocks holding nothing to keep */
    int n_free;
    int32_t *lru_prev, *lru_next;  /* indexed blocks with ref 0, least recently released at lru_head */
    int32_t lru_head, lru_tail;
    int n_lru;
    int32_t *bucket;       /* [n_buckets] the first indexed block of each hash bucket (-1: none) */
    int32_t *partial;      /* [n_buckets] the first partial indexed block of each bucket of parent keys */
    int32_t *chain;        /* the next indexed block of the same bucket */
    int n_buckets;         /* a power of two */

    struct apr_kvswap *swap; /* evicted blocks go to a zram pool and come back from it (kvswap.h), or NULL */

    /* the pass in progress */
    int *pending;          /* [n_seq] tokens reserved but not committed */
    int *owned_before;     /* [n_seq] blocks owned when the pass began */
} apr_kvcache;

/* Bytes of one cached head_dim vector in element type `type`: F16, or Q8_0
 * and Q4_0 (llama.cpp's blocks of 32 elements with an f16 scale, as
 * core/quant.h lays them out) when head_dim is a whole number of blocks;
 * 0 for anything else. */
size_t apr_kvcache_row_bytes(int type, int head_dim);
/* Bytes one token's keys and values take in every layer (for sizing a pool
 * from a memory budget). */
size_t apr_kvcache_token_bytes(int type, int n_layer, int n_head_kv, int head_dim);
/* Allocates a pool of n_ctx token slots shared by n_seq sequences (in
 * whole blocks, with one more for each sequence but the first, so that the
 * sequences together hold n_ctx tokens whatever their lengths) of n_layer
 * layers, n_head_kv heads of head_dim, in type F16, Q8_0 or Q4_0 (which of
 * them a backend reads is its `supports` answer, asked first), with prefix
 * reuse on. */
apr_status apr_kvcache_init(apr_kvcache *c, apr_backend *b, int type, int n_layer, int n_head_kv, int head_dim,
                            int n_ctx, int n_seq);
void apr_kvcache_release(apr_kvcache *c);

static inline int apr_kvcache_len(const apr_kvcache *c, int seq) { return c->len[seq]; }
/* Blocks a sequence could still take: free ones and evictable ones. */
static inline int apr_kvcache_available(const apr_kvcache *c) { return c->n_free + c->n_lru; }
/* Blocks seq must take to hold n more tokens (after its reservations). */
int apr_kvcache_blocks_needed(const apr_kvcache *c, int seq, int n);

/* For the swap (kvswap.c): a block holding nothing for anyone, evicting
 * the least recently released cached one if none is free (ref 1 on
 * return), or -1; and giving such a block back unused. */
int32_t apr_kvcache_take_block(apr_kvcache *c);
void apr_kvcache_give_block(apr_kvcache *c, int32_t b);

/* Reserves the slot of seq's next token, id (after those already reserved
 * in this pass); APR_ERR_RANGE when the sequence would pass n_ctx or no
 * block is free or evictable. */
apr_status apr_kvcache_append(apr_kvcache *c, int seq, int32_t id);
/* The slot of position pos of seq (reserved or held). */
static inline int32_t apr_kvcache_slot(const apr_kvcache *c, int seq, int pos)
{
    return c->table[(size_t)seq * c->max_blocks + pos / APR_KV_BLOCK] * APR_KV_BLOCK + pos % APR_KV_BLOCK;
}
/* Ends the pass: the reserved tokens become part of their sequences, and
 * blocks they filled enter the prefix index. */
void apr_kvcache_commit(apr_kvcache *c);
/* Ends the pass: the reservations are undone, their new blocks freed. */
void apr_kvcache_rollback(apr_kvcache *c);

/* Attaches to seq, which holds a whole number of blocks and nothing
 * reserved, the indexed blocks that continue it with ids[len .. n) (ids
 * holds the sequence from position 0): whole blocks as far as they match,
 * then the cached partial block that agrees longest with what follows.
 * Returns the tokens attached (0 when prefix reuse is off). */
int apr_kvcache_match(apr_kvcache *c, int seq, const int32_t *ids, int n);
/* 1 if seq's tokens are ids[0 .. len). */
int apr_kvcache_holds(const apr_kvcache *c, int seq, const int32_t *ids, int n);

/* Keeps the first `from` tokens of seq, letting go of the blocks past them
 * (shared or indexed ones stay for others). When `from` falls inside a
 * block another sequence also holds, seq gets a private copy: *copy_from
 * and *copy_to are then the blocks whose contents the caller must copy
 * before seq writes again (else both -1). APR_ERR_RANGE (nothing changed)
 * when that copy needs a block and none is left. */
apr_status apr_kvcache_truncate(apr_kvcache *c, int seq, int from, int32_t *copy_from, int32_t *copy_to);

#endif
