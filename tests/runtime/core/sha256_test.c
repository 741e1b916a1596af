/* sha256_test.c — FIPS 180-4 test vectors, any split of the input, and a
 * state reused after final and after reset. */
#include "test.h"

#include "apr.h"

#include <stdlib.h>
#include <string.h>

static void hex_of(const void *data, size_t n, char hex[65])
{
    apr_sha256 *h = apr_sha256_new();
    apr_sha256_update(h, data, n);
    apr_sha256_final(h, NULL, hex);
    apr_sha256_free(h);
}

TEST(sha256_matches_the_standard_vectors)
{
    char hex[65];
    hex_of("", 0, hex);
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hex_of("abc", 3, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    hex_of(two, strlen(two), hex);
    CHECK_EQ_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    hex_of(million, 1000000, hex);
    CHECK_EQ_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(million);
}

TEST(sha256_any_split_gives_the_same_digest)
{
    uint8_t data[1000];
    uint32_t x = 12345;  /* seeded LCG */
    for (size_t i = 0; i < sizeof data; i++) { x = x * 1664525u + 1013904223u; data[i] = (uint8_t)(x >> 24); }
    char whole[65], parts[65];
    uint8_t digest[32];
    hex_of(data, sizeof data, whole);
    apr_sha256 *h = apr_sha256_new();
    for (size_t step = 1; step < 200; step += 13) {
        for (size_t i = 0; i < sizeof data; i += step)
            apr_sha256_update(h, data + i, i + step <= sizeof data ? step : sizeof data - i);
        apr_sha256_final(h, digest, parts);  /* also resets */
        CHECK_EQ_STR(parts, whole);
    }
    char nib[3];
    snprintf(nib, sizeof nib, "%02x", digest[31]);
    CHECK(memcmp(nib, whole + 62, 2) == 0);
    apr_sha256_free(h);
}

TEST(sha256_reset_discards_what_was_fed)
{
    char hex[65];
    apr_sha256 *h = apr_sha256_new();
    REQUIRE(h);
    apr_sha256_update(h, "not this", 8);
    apr_sha256_reset(h);
    apr_sha256_update(h, "abc", 3);
    apr_sha256_final(h, NULL, hex);
    CHECK_EQ_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    apr_sha256_final(h, NULL, hex);  /* final reset it: nothing fed since */
    CHECK_EQ_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    apr_sha256_free(h);
    apr_sha256_free(NULL);
}
