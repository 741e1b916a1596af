/* codec.h — a page's stored form: compressing it with LZ4 or ZSTD, and
 * turning stored bytes back into the page (internal).
 *
 * The stored bytes of a page are checked when they come back: the decoder
 * must produce exactly page_bytes bytes and their XXH3 hash must be the one
 * taken when the page went in, so a corrupt page is reported, never
 * returned (tests/fuzz/zram_fuzz.c feeds the decoder arbitrary bytes). */
#ifndef APR_ZRAM_CODEC_H
#define APR_ZRAM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "apr.h"

/* How a page is stored. */
enum {
    ZRAM_SAME = 1,   /* one repeated word, kept in the page's entry */
    ZRAM_RAW = 2,    /* the page's bytes as they are (it did not shrink) */
    ZRAM_LZ4 = 3,    /* an LZ4 block */
    ZRAM_ZSTD = 4    /* a ZSTD frame */
};

/* The XXH3 hash a page is checked against. */
uint64_t apr_zram_page_hash(const void *page, size_t n);

/* Makes this thread's codec state for algo ahead of use (a ZSTD context
 * each way), so the first page's timing is the codec's alone. */
void apr_zram_codec_prepare(int algo);

/* Compresses the n bytes at src with `algo` (ZRAM_LZ4 or ZRAM_ZSTD) at
 * `level` into dst, which holds cap bytes; returns the compressed size, or 0
 * when it does not fit in cap (the page is then stored raw) or the codec
 * failed. Uses a per-thread ZSTD context, made on first use. */
size_t apr_zram_compress(int algo, int level, const void *src, size_t n, void *dst, size_t cap);

/* Turns a stored page of kind `kind` (n bytes at stored; for ZRAM_SAME the
 * word in `word`) back into its page_bytes bytes at page and checks them
 * against hash. APR_ERR_FORMAT, naming what failed, for an unknown kind,
 * stored bytes the codec rejects, a wrong decoded size or a wrong hash;
 * page's bytes are then unspecified. */
apr_status apr_zram_decode(int kind, const void *stored, size_t n, uint64_t word, void *page, size_t page_bytes,
                           uint64_t hash);

#endif
