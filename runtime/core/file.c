/* file.c — opening input files safely, and reading a whole file into
 * memory, zstd-compressed or not.
 *
 * Inputs such as tokenizer.json are shipped compressed (.zst) as often as
 * not; decompressing here saves every caller a temporary file, and the
 * bundle on the GPU machine has no zstd program to shell out to. */
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "core/error.h"

/* What a non-regular file is, for the message. */
static const char *kind_of(mode_t mode)
{
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a file";
}

apr_status apr_file_open_regular(const char *path, int *fd, uint64_t *size)
{
    APR_CHECK(path && fd && size, APR_ERR_INVALID, "apr_file_open_regular: NULL argument");
    *fd = -1;
    *size = 0;
    /* O_NONBLOCK: a FIFO opens at once instead of waiting for a writer;
     * the type is checked on what was opened, so nothing can swap the
     * path between a check and the open. */
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) return apr_error(errno == ENOENT ? APR_ERR_NOT_FOUND : APR_ERR_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(f, &st) != 0) {
        int e = errno;
        close(f);
        return apr_error(APR_ERR_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(f);
        return apr_error(APR_ERR_IO, "%s: not a regular file (%s)", path, kind_of(st.st_mode));
    }
    int flags = fcntl(f, F_GETFL);
    if (flags < 0 || fcntl(f, F_SETFL, flags & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(f);
        return apr_error(APR_ERR_IO, "%s: %s", path, strerror(e));
    }
    *fd = f;
    *size = (uint64_t)st.st_size;
    return APR_OK;
}

#define MAX_FILE_BYTES (UINT64_C(1) << 34)   /* 16 GiB: far beyond any text input */

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Reads all of f; the buffer gets one NUL byte past the end. */
static apr_status slurp(FILE *f, const char *path, char **out, uint64_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    APR_CHECK(buf, APR_ERR_NOMEM, "%s: out of memory", path);
    errno = 0;
    for (;;) {
        if (n + 1 == cap) {
            char *bigger = cap < MAX_FILE_BYTES ? realloc(buf, cap * 2) : NULL;
            if (!bigger) { free(buf); return apr_error(APR_ERR_NOMEM, "%s: too large to read into memory", path); }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - 1 - n, f);
        n += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        const int err = errno;
        free(buf);
        return apr_error(APR_ERR_IO, "%s: %s", path, err ? strerror(err) : "read failed");
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return APR_OK;
}

/* Decompresses all frames of src into a new NUL-terminated buffer. */
static apr_status unzstd(const char *src, uint64_t n, const char *path, char **out, uint64_t *len)
{
    ZSTD_DStream *ds = ZSTD_createDStream();
    APR_CHECK(ds, APR_ERR_NOMEM, "%s: out of memory", path);
    size_t cap = n * 4 + 1024, used = 0;
    char *buf = malloc(cap);
    ZSTD_inBuffer in = { src, n, 0 };
    apr_status st = buf ? APR_OK : apr_error(APR_ERR_NOMEM, "%s: out of memory", path);
    size_t ret = 1;
    while (st == APR_OK && (in.pos < in.size || ret != 0)) {
        if (used + 1 >= cap) {
            char *bigger = cap < MAX_FILE_BYTES ? realloc(buf, cap * 2) : NULL;
            if (!bigger) { st = apr_error(APR_ERR_NOMEM, "%s: decompressed data too large", path); break; }
            buf = bigger;
            cap *= 2;
        }
        ZSTD_outBuffer o = { buf, cap - 1, used };
        size_t before = in.pos;
        ret = ZSTD_decompressStream(ds, &o, &in);
        used = o.pos;
        if (ZSTD_isError(ret)) st = apr_error(APR_ERR_FORMAT, "%s: not valid zstd data (%s)", path, ZSTD_getErrorName(ret));
        else if (in.pos == in.size && ret != 0 && o.pos < o.size && in.pos == before)
            st = apr_error(APR_ERR_FORMAT, "%s: zstd data is truncated", path);
    }
    ZSTD_freeDStream(ds);
    if (st != APR_OK) { free(buf); return st; }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    return APR_OK;
}

apr_status apr_file_read(const char *path, char **bytes, uint64_t *len)
{
    APR_CHECK(path && bytes && len, APR_ERR_INVALID, "apr_file_read: NULL argument");
    *bytes = NULL;
    *len = 0;
    int fd;
    uint64_t size;
    APR_TRY(apr_file_open_regular(path, &fd, &size));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        int e = errno;
        close(fd);
        return apr_error(APR_ERR_IO, "%s: %s", path, strerror(e));
    }
    char *raw = NULL;
    uint64_t n = 0;
    apr_status st = slurp(f, path, &raw, &n);
    fclose(f);
    if (st != APR_OK || !ends_with(path, ".zst")) {
        if (st == APR_OK) { *bytes = raw; *len = n; }
        return st;
    }
    st = unzstd(raw, n, path, bytes, len);
    free(raw);
    return st;
}
