/* outfile.c — writing a file under a temporary name, renamed when whole
 * (outfile.h says why). */
#include "core/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"

apr_status apr_outfile_open(apr_outfile *o, const char *path)
{
    APR_CHECK(o && path && *path, APR_ERR_INVALID, "apr_outfile_open: NULL argument");
    memset(o, 0, sizeof *o);
    o->fd = -1;
    size_t n = strlen(path) + 32;
    o->path = strdup(path);
    o->tmp = malloc(n);
    o->sha = apr_sha256_new();
    if (!o->path || !o->tmp || !o->sha) {
        apr_outfile_discard(o);
        return apr_error(APR_ERR_NOMEM, "%s: out of memory", path);
    }
    snprintf(o->tmp, n, "%s.tmp.%ld", path, (long)getpid());
    o->fd = open(o->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (o->fd < 0) {
        int e = errno;
        free(o->tmp);
        o->tmp = NULL;  /* not ours to remove */
        apr_outfile_discard(o);
        return apr_error(APR_ERR_IO, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
    }
    return APR_OK;
}

static const uint8_t zeros[65536];

static apr_status put(apr_outfile *o, const void *data, uint64_t n, int hash)
{
    while (n > 0) {
        const uint8_t *p = data ? data : zeros;
        size_t want = data ? (n > ((size_t)1 << 30) ? (size_t)1 << 30 : (size_t)n)
                           : (n > sizeof zeros ? sizeof zeros : (size_t)n);
        ssize_t got = pwrite(o->fd, p, want, (off_t)o->pos);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0)
            return apr_error(APR_ERR_IO, "%s: writing at byte %" PRIu64 ": %s", o->path, o->pos,
                             got < 0 ? strerror(errno) : "no progress");
        if (hash) apr_sha256_update(o->sha, p, (size_t)got);
        o->pos += (uint64_t)got;
        n -= (uint64_t)got;
        if (data) data = p + got;
    }
    return APR_OK;
}

apr_status apr_outfile_write(apr_outfile *o, const void *data, uint64_t n) { return put(o, data, n, 1); }

apr_status apr_outfile_append(apr_outfile *o, const void *data, uint64_t n) { return put(o, data, n, 0); }

void apr_outfile_hash(apr_outfile *o, const void *data, uint64_t n)
{
    if (data) {
        apr_sha256_update(o->sha, data, (size_t)n);
        return;
    }
    for (; n > 0; n -= n < sizeof zeros ? n : sizeof zeros) apr_sha256_update(o->sha, zeros, n < sizeof zeros ? n : sizeof zeros);
}

apr_status apr_outfile_pad(apr_outfile *o, uint64_t align)
{
    uint64_t rem = o->pos & (align - 1);
    return rem ? apr_outfile_write(o, NULL, align - rem) : APR_OK;
}

void apr_outfile_digest(apr_outfile *o, uint8_t *digest) { apr_sha256_final(o->sha, digest, NULL); }

apr_status apr_outfile_commit(apr_outfile *o)
{
    int fd = o->fd;
    o->fd = -1;
    if (close(fd) != 0) return apr_error(APR_ERR_IO, "%s: closing: %s", o->path, strerror(errno));
    if (rename(o->tmp, o->path) != 0) return apr_error(APR_ERR_IO, "%s: renaming into place: %s", o->path, strerror(errno));
    o->committed = 1;
    return APR_OK;
}

void apr_outfile_discard(apr_outfile *o)
{
    if (!o) return;
    if (o->fd >= 0) close(o->fd);
    if (o->tmp && !o->committed) unlink(o->tmp);
    apr_sha256_free(o->sha);
    free(o->path);
    free(o->tmp);
    memset(o, 0, sizeof *o);
    o->fd = -1;
}
