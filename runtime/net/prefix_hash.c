/* prefix_hash.c — the SHA-256 of a file while it is being written.
 *
 * Parallel ranged downloads write a file out of order, but SHA-256 takes
 * its bytes in order: a thread follows the contiguous prefix written so
 * far, reading it back (from the page cache, moments after it was written)
 * in 4 MiB blocks, so the digest is ready as soon as the last byte lands
 * and the downloading thread never waits for it. A restart (the server
 * ignored ranges) drops what was hashed. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "apr.h"
#include "net/prefix_hash.h"

enum { BLOCK = 4 << 20 };

struct apr_prefix_hash {
    int fd;
    int64_t size;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;      /* the thread waits for more; finish waits for the end */
    int64_t written;          /* the prefix written */
    int64_t hashed;
    int gen;                  /* bumped by restart */
    int stop, done, err;
    char hex[65];
};

static int pread_all(int fd, uint8_t *buf, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t r = pread(fd, buf, n, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { if (r == 0) errno = EIO; return -1; }
        buf += r; n -= (size_t)r; off += r;
    }
    return 0;
}

static void *run(void *arg)
{
    apr_prefix_hash *p = arg;
    apr_sha256 *h = apr_sha256_new();
    uint8_t *buf = malloc(BLOCK);
    int64_t hashed = 0;
    pthread_mutex_lock(&p->lock);
    int gen = p->gen;
    if (!h || !buf) {
        p->err = ENOMEM;
        p->done = 1;
    }
    while (!p->done && !p->stop) {
        if (p->gen != gen) {
            gen = p->gen;
            hashed = 0;
            apr_sha256_reset(h);
            p->hashed = 0;
            continue;
        }
        if (hashed == p->size && p->written == p->size) {
            apr_sha256_final(h, NULL, p->hex);
            p->done = 1;
            break;
        }
        if (hashed >= p->written) {
            pthread_cond_wait(&p->cond, &p->lock);
            continue;
        }
        int64_t n = p->written - hashed;
        if (n > BLOCK) n = BLOCK;
        pthread_mutex_unlock(&p->lock);
        int err = pread_all(p->fd, buf, (size_t)n, hashed) != 0 ? errno : 0;
        if (!err) apr_sha256_update(h, buf, (size_t)n);
        pthread_mutex_lock(&p->lock);
        if (err) {
            p->err = err;
            p->done = 1;
        } else if (p->gen == gen) {
            hashed += n;
            p->hashed = hashed;
        }
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    apr_sha256_free(h);
    free(buf);
    return NULL;
}

apr_prefix_hash *apr_prefix_hash_start(int fd, int64_t size)
{
    apr_prefix_hash *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->fd = fd;
    p->size = size;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    if (pthread_create(&p->thread, NULL, run, p) != 0) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->cond);
        free(p);
        return NULL;
    }
    return p;
}

void apr_prefix_hash_advance(apr_prefix_hash *p, int64_t written)
{
    pthread_mutex_lock(&p->lock);
    if (written != p->written) {
        p->written = written;
        pthread_cond_broadcast(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
}

void apr_prefix_hash_restart(apr_prefix_hash *p)
{
    pthread_mutex_lock(&p->lock);
    p->gen++;
    p->written = 0;
    p->hashed = 0;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

int64_t apr_prefix_hash_hashed(apr_prefix_hash *p)
{
    pthread_mutex_lock(&p->lock);
    int64_t n = p->hashed;
    pthread_mutex_unlock(&p->lock);
    return n;
}

int apr_prefix_hash_finish(apr_prefix_hash *p, char *hex)
{
    pthread_mutex_lock(&p->lock);
    while (!p->done) pthread_cond_wait(&p->cond, &p->lock);
    int err = p->err;
    if (!err) for (int i = 0; i < 65; i++) hex[i] = p->hex[i];
    pthread_mutex_unlock(&p->lock);
    return err;
}

void apr_prefix_hash_free(apr_prefix_hash *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = 1;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cond);
    free(p);
}
