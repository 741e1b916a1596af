/* same.h — same-filled page detection (internal).
 *
 * A page is same-filled when its bytes are one 8-byte machine word repeated
 * (all zeros is the common case): the pool stores the word instead of the
 * page, as Linux zram does. The check runs with AVX2 when the CPU has it and
 * a scalar loop otherwise, chosen at run time (apr_zram_simd forces the
 * scalar loop for tests and benchmarks). */
#ifndef APR_ZRAM_SAME_H
#define APR_ZRAM_SAME_H

#include <stddef.h>
#include <stdint.h>

/* 1 if the n bytes at p (n a positive multiple of 8) are one repeated
 * 8-byte word, which then goes to *word; 0 otherwise (*word untouched). Reads
 * only as far as the first differing 64 or 128 bytes. */
int apr_zram_same_filled(const void *p, size_t n, uint64_t *word);

/* Fills n bytes at p (a multiple of 8) with word: a same-filled page's
 * contents. */
void apr_zram_fill(void *p, size_t n, uint64_t word);

#endif
