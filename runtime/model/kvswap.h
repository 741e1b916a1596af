/* kvswap.h — KV blocks evicted from the device kept in a zram pool, and
 * brought back instead of recomputed (internal; docs/zram.md).
 *
 * The prefix cache (kvcache.h) keeps blocks of released and preempted
 * sequences on the device until a block is needed and the least recently
 * released one is evicted. With a swap attached, an evicted block's pages
 * (2 n_layer of them, one layer's keys or values each) go to the pool
 * first: same-filled pages as their word (on a GPU they never cross PCIe),
 * the others compressed. When a sequence later starts the same way,
 * apr_kvcache_match finds the block here where the device has it no more,
 * takes a free block and loads the pages back into it: the sequence gets
 * the same bytes it would have computed, without the pass.
 *
 * The copying is ordered like the rest of the cache's use: an eviction
 * only queues the block; the copy out (backend kv_stage, into pinned host
 * staging) is issued on the context's stream before the next op that
 * writes into the cache (apr_kvswap_before_write), so it reads the block
 * before anything overwrites it; the pages are compressed into the pool
 * while the device computes the next pass (apr_kvswap_while_pass). A
 * restore decompresses into staging and issues kv_load on the same stream,
 * before the pass that reads the block. */
#ifndef APR_MODEL_KVSWAP_H
#define APR_MODEL_KVSWAP_H

#include "apr.h"
#include "backend/backend.h"

struct apr_kvcache;
typedef struct apr_kvswap apr_kvswap;

/* A swap for cache c (on backend B, stream s) into pool, whose pages must
 * be the cache's pages (apr_kvswap_page_bytes). Allocates the staging
 * (host_alloc): 64 MiB of blocks, or twice min_blocks (the most blocks one
 * pass may evict) when that is more, up to 512 MiB, at least two blocks.
 * Attaches itself to c (c->swap). */
apr_status apr_kvswap_new(struct apr_kvcache *c, apr_backend *B, apr_stream *s, apr_zram *pool, int min_blocks,
                          apr_kvswap **out);
/* Detaches from the cache, drops its pages from the pool, frees it. NULL:
 * nothing. */
void apr_kvswap_free(apr_kvswap *w);
/* Bytes of one page of cache c: n_head_kv * block_tokens * row_bytes. */
size_t apr_kvswap_page_bytes(const struct apr_kvcache *c);

/* kvcache.c: indexed block b (full or partial) is being evicted; its
 * contents and metadata are intact until the next write. */
void apr_kvswap_evict(apr_kvswap *w, int32_t b);
/* kvcache.c: a full block keyed (key, parent, ids) that the device no
 * longer has. Returns a block taken from the cache (ref 1) holding its
 * keys and values, or -1 (not in the pool, no block free, or a page lost
 * or corrupt: the caller recomputes from there). */
int32_t apr_kvswap_restore_full(apr_kvswap *w, uint64_t key, uint64_t parent, const int32_t *ids);
/* kvcache.c: a partly filled block after the block keyed parent whose ids
 * agree with next[0 .. room) for more than `better` tokens. Returns a block
 * taken from the cache (ref 1) holding it, its ids in c->ids, with *agree
 * the tokens that agree; or -1. */
int32_t apr_kvswap_restore_partial(apr_kvswap *w, uint64_t parent, const int32_t *next, int room, int better,
                                   int *agree);

/* context.c: the cache is about to be written (a pass, a block copy):
 * issues the copies out of blocks evicted since the last call. */
void apr_kvswap_before_write(apr_kvswap *w);
/* qwen2.c: a pass has been issued and the device is computing it: the
 * blocks copied out before earlier passes are compressed into the pool
 * now, beside it. */
void apr_kvswap_while_pass(apr_kvswap *w);
/* context.c: the stream has synchronised after a pass; ok = 0 when the
 * pass failed (its copies out are not trusted and are dropped). */
void apr_kvswap_after_pass(apr_kvswap *w, int ok);

void apr_kvswap_get_stats(const apr_kvswap *w, apr_kv_swap_stats *out);

#endif
