/* loader.c — apr_model_load on a detached thread of its own.
 *
 * `apr serve` loads models (at start, on reload) without its event loop
 * waiting: the result waits in the loader, and an eventfd the loop watches
 * becomes readable when it is there (as the engine reports its events).
 *
 * The thread is detached and nothing ever joins it, because a load can be
 * stuck in the kernel for good (a file on a hung network filesystem): a
 * server that is told to stop gives the loader up (apr_loader_free) and
 * exits on time. The thread that ends after its loader was given up frees
 * the model it loaded and the loader itself. libuv's thread pool is no place
 * for this: the process joins those threads when it exits, so one stuck load
 * kept the server from ever exiting. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/error.h"

struct apr_loader {
    pthread_mutex_t mu;
    int fd;                   /* eventfd, written once when the load ends */
    char *path;
    apr_model_params params;
    int done;                 /* the load has ended (status, model, message set) */
    int abandoned;            /* apr_loader_free came first: the thread frees all */
    int taken;                /* the result went to apr_loader_take */
    apr_status status;
    apr_model *model;
    char message[512];        /* the load's failure, copied out of the thread's apr_last_error */
};

/* ------------------------------------------------------------------ */
/* The thread                                                         */
/* ------------------------------------------------------------------ */

static void destroy(apr_loader *l)
{
    apr_model_free(l->model);
    if (l->fd >= 0) close(l->fd);
    pthread_mutex_destroy(&l->mu);
    free(l->path);
    free(l);
}

static void *load_main(void *arg)
{
    apr_loader *l = arg;
    apr_model *m = NULL;
    apr_status st = apr_model_load(l->path, &l->params, &m);
    pthread_mutex_lock(&l->mu);
    l->status = st;
    l->model = m;
    if (st != APR_OK) snprintf(l->message, sizeof l->message, "%s", apr_last_error());
    l->done = 1;
    int abandoned = l->abandoned;
    if (!abandoned) {
        uint64_t one = 1;
        ssize_t w = write(l->fd, &one, sizeof one);
        (void)w;  /* an eventfd write of 1 cannot fail short of overflow */
    }
    pthread_mutex_unlock(&l->mu);
    if (abandoned) destroy(l);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

apr_status apr_loader_start(const char *path, const apr_model_params *p, apr_loader **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_loader_start: out is NULL");
    *out = NULL;
    APR_CHECK(path && p, APR_ERR_INVALID, "apr_loader_start: NULL path or params");
    apr_loader *l = calloc(1, sizeof *l);
    APR_CHECK(l, APR_ERR_NOMEM, "%s: out of memory starting the load", path);
    l->fd = -1;
    l->params = *p;
    pthread_mutex_init(&l->mu, NULL);
    l->path = strdup(path);
    if (!l->path) {
        destroy(l);
        return apr_error(APR_ERR_NOMEM, "%s: out of memory starting the load", path);
    }
    l->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->fd < 0) {
        int err = errno;
        destroy(l);
        return apr_error(APR_ERR_IO, "%s: eventfd: %s", path, strerror(err));
    }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t t;
    int rc = pthread_create(&t, &attr, load_main, l);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        destroy(l);
        return apr_error(APR_ERR_IO, "%s: cannot start a loading thread: %s", path, strerror(rc));
    }
    *out = l;
    return APR_OK;
}

int apr_loader_fd(const apr_loader *l)
{
    return l ? l->fd : -1;
}

apr_status apr_loader_take(apr_loader *l, apr_model **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_loader_take: out is NULL");
    *out = NULL;
    APR_CHECK(l, APR_ERR_INVALID, "apr_loader_take: loader is NULL");
    pthread_mutex_lock(&l->mu);
    int done = l->done, taken = l->taken;
    apr_status st = l->status;
    if (done && !taken) {
        l->taken = 1;
        *out = l->model;
        l->model = NULL;
    }
    pthread_mutex_unlock(&l->mu);
    APR_CHECK(done, APR_ERR_BUSY, "%s: still loading", l->path);
    APR_CHECK(!taken, APR_ERR_INVALID, "%s: the load's result was already taken", l->path);
    if (st != APR_OK) return apr_error(st, "%s", l->message);
    return APR_OK;
}

void apr_loader_free(apr_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    int done = l->done;
    if (!done) l->abandoned = 1;
    pthread_mutex_unlock(&l->mu);
    if (done) destroy(l);  /* else the thread does, when the load ends */
}
