/* lockfile.c — an exclusive lock on a file, as other programs take it.
 *
 * huggingface_hub guards each blob of its cache with flock(2) on
 * HUB/.locks/models--ORG--NAME/<etag>.lock (the filelock package); taking
 * the same lock lets apr and Python tools download into one cache at once
 * without either writing a file the other is writing. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/file.h>

#include "core/error.h"

apr_status apr_lockfile_acquire(const char *path, double timeout_s, int *fd)
{
    APR_CHECK(fd, APR_ERR_INVALID, "lockfile: fd is NULL");
    *fd = -1;
    APR_CHECK(path && path[0], APR_ERR_INVALID, "lockfile: no path");
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    APR_CHECK(f >= 0, APR_ERR_IO, "cannot open the lock %s: %s", path, strerror(errno));
    struct timespec pause = { 0, 100 * 1000 * 1000 };
    double waited = 0;
    while (flock(f, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        if (err != EWOULDBLOCK && err != EINTR) {
            close(f);
            return apr_error(APR_ERR_IO, "cannot lock %s: %s", path, strerror(err));
        }
        if (apr_interrupted()) {
            close(f);
            return apr_error(APR_ERR_CANCELLED, "interrupted while waiting for the lock %s", path);
        }
        if (timeout_s >= 0 && waited >= timeout_s) {
            close(f);
            return apr_error(APR_ERR_BUSY, "%s is locked by another process", path);
        }
        nanosleep(&pause, NULL);
        waited += 0.1;
    }
    *fd = f;
    return APR_OK;
}

void apr_lockfile_release(int fd)
{
    if (fd < 0) return;
    flock(fd, LOCK_UN);
    close(fd);
}
