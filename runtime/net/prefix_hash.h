/* prefix_hash.h — the SHA-256 of a file while it is being written, on a
 * thread of its own (internal; runtime/net/prefix_hash.c). */
#ifndef APR_NET_PREFIX_HASH_H
#define APR_NET_PREFIX_HASH_H

#include <stdint.h>

typedef struct apr_prefix_hash apr_prefix_hash;

/* Starts hashing the file behind fd (size bytes) as its prefix gets
 * written; NULL when out of memory or no thread can start. */
apr_prefix_hash *apr_prefix_hash_start(int fd, int64_t size);
/* Bytes from offset 0 that are now written (only grows, but for restart). */
void apr_prefix_hash_advance(apr_prefix_hash *p, int64_t written);
/* The file starts over from byte 0: what was hashed is dropped. */
void apr_prefix_hash_restart(apr_prefix_hash *p);
/* Bytes hashed so far. */
int64_t apr_prefix_hash_hashed(apr_prefix_hash *p);
/* Waits until the whole file (advanced to its size) is hashed and writes
 * the 64 hex digits and a NUL to hex. 0, or the errno of a failed read. */
int apr_prefix_hash_finish(apr_prefix_hash *p, char *hex);
/* Stops the thread (without waiting for the digest) and frees p; NULL ok. */
void apr_prefix_hash_free(apr_prefix_hash *p);

#endif
