/* file_test.c — apr_file_read: plain and zstd files, and what goes wrong. */
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "apr.h"

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
}

TEST(file_read_plain_and_zstd)
{
    char dir[] = "/tmp/apr-file-XXXXXX", plain[64], packed[64], cut[64], bad[64];
    REQUIRE(mkdtemp(dir));
    snprintf(plain, sizeof plain, "%s/a.json", dir);
    snprintf(packed, sizeof packed, "%s/a.json.zst", dir);
    snprintf(cut, sizeof cut, "%s/cut.zst", dir);
    snprintf(bad, sizeof bad, "%s/bad.zst", dir);

    enum { N = 300000 };   /* larger than the first output buffer guess */
    char *text = malloc(N);
    REQUIRE(text);
    for (int i = 0; i < N; i++) text[i] = (char)('a' + (i * 7 + i / 13) % 26);
    write_bytes(plain, text, N);
    size_t cap = ZSTD_compressBound(N);
    char *z = malloc(cap);
    REQUIRE(z);
    size_t zn = ZSTD_compress(z, cap, text, N, 3);
    REQUIRE(!ZSTD_isError(zn));
    write_bytes(packed, z, zn);
    write_bytes(cut, z, zn / 2);
    write_bytes(bad, "not zstd at all", 15);

    char *got = NULL;
    uint64_t len = 0;
    CHECK_EQ_INT(apr_file_read(plain, &got, &len), APR_OK);
    CHECK(len == N && got && memcmp(got, text, N) == 0 && got[N] == '\0');
    apr_free(got);
    CHECK_EQ_INT(apr_file_read(packed, &got, &len), APR_OK);
    CHECK(len == N && got && memcmp(got, text, N) == 0 && got[N] == '\0');
    apr_free(got);

    CHECK_EQ_INT(apr_file_read(cut, &got, &len), APR_ERR_FORMAT);
    CHECK(got == NULL && strstr(apr_last_error(), "truncated"));
    CHECK_EQ_INT(apr_file_read(bad, &got, &len), APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "bad.zst") != NULL);
    char missing[80];
    snprintf(missing, sizeof missing, "%s/missing.json", dir);
    CHECK_EQ_INT(apr_file_read(missing, &got, &len), APR_ERR_NOT_FOUND);
    CHECK(strstr(apr_last_error(), "missing.json") != NULL);
    /* a folder is refused before anything reads it */
    CHECK_EQ_INT(apr_file_read(dir, &got, &len), APR_ERR_IO);
    CHECK(strstr(apr_last_error(), "not a regular file (a directory)") != NULL);

    free(text);
    free(z);
    unlink(plain);
    unlink(packed);
    unlink(cut);
    unlink(bad);
    rmdir(dir);
}

static int read_fails_as_fifo(const void *path)
{
    char *got = NULL;
    uint64_t len = 0;
    apr_status s = apr_file_read(path, &got, &len);
    apr_free(got);
    return !(s == APR_ERR_IO && strstr(apr_last_error(), "not a regular file (a FIFO)") != NULL);
}

/* A FIFO with no writer (a sidecar, a tokenizer.json someone replaced):
 * fopen would wait for a writer forever (issue 16). */
TEST(file_read_refuses_a_fifo_without_blocking)
{
    char dir[] = "/tmp/apr-file-XXXXXX", fifo[64];
    REQUIRE(mkdtemp(dir));
    snprintf(fifo, sizeof fifo, "%s/a.json", dir);
    REQUIRE(mkfifo(fifo, 0600) == 0);
    CHECK_EQ_INT(test_in_child(read_fails_as_fifo, fifo, 5), 0);
    unlink(fifo);
    rmdir(dir);
}
