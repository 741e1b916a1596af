/* prefix_hash_test.c — the SHA-256 of a file written out of order
 * (runtime/net/prefix_hash.c) equals the hash of its bytes, restarts
 * included. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>

#include "apr.h"
#include "net/prefix_hash.h"
#include "test.h"

TEST(prefix_hash_follows_out_of_order_writes)
{
    enum { N = (9 << 20) + 123 };   /* more than two of its 4 MiB blocks */
    uint8_t *data = malloc(N);
    REQUIRE(data);
    uint32_t x = 12345;
    for (int i = 0; i < N; i++) { x = x * 1103515245u + 12345u; data[i] = (uint8_t)(x >> 24); }
    char want[65];
    apr_sha256 *h = apr_sha256_new();
    apr_sha256_update(h, data, N);
    apr_sha256_final(h, NULL, want);
    apr_sha256_free(h);

    char path[] = "/tmp/apr-phash-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    REQUIRE(ftruncate(fd, N) == 0);
    apr_prefix_hash *p = apr_prefix_hash_start(fd, N);
    REQUIRE(p);
    /* Garbage first, then a restart: what was hashed of it must not count. */
    REQUIRE(pwrite(fd, "garbage!", 8, 0) == 8);
    apr_prefix_hash_advance(p, 8);
    apr_prefix_hash_restart(p);
    /* The second half, then the first: the prefix jumps to the end. */
    REQUIRE(pwrite(fd, data + N / 2, N - N / 2, N / 2) == N - N / 2);
    REQUIRE(pwrite(fd, data, N / 2, 0) == N / 2);
    apr_prefix_hash_advance(p, N / 2);
    apr_prefix_hash_advance(p, N);
    char got[65];
    CHECK_EQ_INT(apr_prefix_hash_finish(p, got), 0);
    CHECK_EQ_STR(got, want);
    CHECK_EQ_INT(apr_prefix_hash_hashed(p), N);
    apr_prefix_hash_free(p);
    apr_prefix_hash_free(NULL);

    /* Stopped before the end: free returns without a digest. */
    p = apr_prefix_hash_start(fd, N);
    REQUIRE(p);
    apr_prefix_hash_advance(p, N / 3);
    apr_prefix_hash_free(p);
    close(fd);
    unlink(path);
    free(data);
}
