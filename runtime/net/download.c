/* download.c — one file over HTTP(S): parallel ranged connections into one
 * preallocated file, resumable, retried, hashed while it arrives.
 *
 * libcurl does the HTTP (TLS, redirects, proxies, keep-alive); this file
 * decides which bytes to ask for and what to do when an answer is wrong.
 * A thread of its own drives libcurl's multi interface:
 *
 *   - The file is cut into chunks; each of N connections takes the lowest
 *     chunk nobody holds and asks for it with `Range: bytes=a-b`, writing
 *     what arrives with pwrite() at its offset. Connections are HTTP/1.1 and
 *     never multiplexed: a CDN caps each TCP connection, so N requests
 *     sharing one HTTP/2 connection would be no faster than one.
 *   - Every chunk's progress (bytes from its start) is kept in a journal
 *     beside the file (journal.c), rewritten a few times a second. A process
 *     killed at any point resumes from it and loses only what arrived since
 *     its last rewrite. A file without a journal resumes from its length,
 *     as a sequential writer (curl -C, older huggingface_hub) leaves it, but
 *     only where a digest will check the result.
 *   - The first response's ETag is the validator: a later response with
 *     another ETag, Content-Range total or size means the file changed on
 *     the server, and the download fails as "changed" (its bytes are thrown
 *     away; the caller asks the hub again). A 200 to a ranged request means
 *     the server ignores ranges: it starts over from byte 0 on one
 *     connection.
 *   - 408/425/429/5xx, dropped connections, stalls (no byte for
 *     stall_seconds) and connect failures are retried with exponential
 *     backoff, or after Retry-After; a connection fails the download after
 *     max_retries failures in a row without a byte. 401/403/404 and other
 *     4xx fail at once.
 *   - A second thread hashes (SHA-256) the contiguous prefix written so far
 *     (prefix_hash.c), so the digest is ready moments after the last byte.
 *     A mismatch removes the file and the journal.
 *
 * Progress reaches the caller as events in a queue, with an eventfd that is
 * readable while some wait (as the engine's tokens do), so a Lua event loop
 * watches it and nothing calls back into Lua from this thread. */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <linux/magic.h>

#include "core/error.h"
#include "net/ca.h"
#include "net/journal.h"
#include "net/prefix_hash.h"

enum {
    MAX_CONNECTIONS = 64,
    RECV_BUFFER = 512 << 10,       /* libcurl's receive buffer: fewer callbacks at GB/s */
    HASH_STEP = 4 << 20,           /* the hasher is woken for this much more written prefix */
    ETAG_MAX = APR_JOURNAL_ETAG_MAX,
};
static const double JOURNAL_SECONDS = 0.25;  /* between journal rewrites */
static const int64_t MIN_CHUNK = 1 << 20;
static const int64_t MAX_CHUNK = 64 << 20;

/* ------------------------------------------------------------------ */
/* State                                                              */
/* ------------------------------------------------------------------ */

/* Why a write callback stopped its transfer. */
enum { ABORT_NONE, ABORT_STATUS, ABORT_RANGES, ABORT_CHANGED, ABORT_DISK, ABORT_STOP };

typedef struct conn {
    CURL *easy;
    struct apr_download *d;
    struct curl_slist *req_headers;  /* the shared ones plus If-Range */
    int active;               /* added to the multi handle */
    int chunk;                /* the chunk it holds, -1 when idle */
    int64_t pos, end;         /* next byte to write; end of its request (exclusive) */
    int64_t got_now;          /* bytes written by the current attempt */
    int attempts;             /* failures in a row without a byte */
    double retry_at;          /* waits until then (monotonic seconds) */
    int checked;              /* the response's status and headers were checked */
    int abort;                /* ABORT_*: why the write callback stopped it */
    long code;                /* HTTP status of the response */
    char etag[ETAG_MAX];      /* of the response being received */
    int64_t cr_start, cr_end, cr_total;  /* its Content-Range (-1 where absent) */
    double retry_after;       /* its Retry-After in seconds, -1 if none */
    char range[64];
    char errbuf[CURL_ERROR_SIZE];
} conn;

struct apr_download {
    /* What to fetch (copied from the parameters). */
    char *url, *path, *journal, *journal_tmp;
    struct curl_slist *headers;
    int64_t size;
    char want[65];            /* expected digest, "" if none */
    int n_conn, max_retries;
    double stall_seconds, connect_seconds, progress_seconds, max_wait;

    /* Download thread only. */
    int fd;
    CURLM *multi;
    conn conns[MAX_CONNECTIONS];
    apr_journal j;            /* chunks and their progress; j.single: the server ignores ranges,
                                 one plain GET; j.validator: the ETag every response must carry */
    uint8_t *held;            /* [j.n_chunks] 1 while a connection holds it */
    int front;                /* first chunk not complete */
    apr_prefix_hash *hash;
    int64_t published;        /* the written prefix the hasher was last told of */
    char digest[65];
    int64_t done, resumed, received;
    int fail_reason, fail_status, fail_http;
    char fail_msg[256];
    int disk_errno;
    unsigned rng;

    /* Events (lock). */
    pthread_mutex_t lock;
    apr_download_event *events;
    int ev_head, n_events, cap_events;
    int event_fd;

    atomic_int cancel;
    pthread_t thread;
    int thread_started;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int64_t chunk_start(const apr_download *d, int c) { return apr_journal_chunk_start(&d->j, c); }
static int64_t chunk_len(const apr_download *d, int c) { return apr_journal_chunk_len(&d->j, c); }

/* ------------------------------------------------------------------ */
/* Events                                                             */
/* ------------------------------------------------------------------ */

static void post(apr_download *d, apr_download_event *ev)
{
    ev->done = d->done;
    ev->total = d->size;
    ev->resumed = d->resumed;
    ev->received = d->received;
    int active = 0;
    for (int i = 0; i < d->n_conn; i++) active += d->conns[i].active;
    ev->active = active;
    ev->hashed = d->hash ? apr_prefix_hash_hashed(d->hash) : 0;
    pthread_mutex_lock(&d->lock);
    if (d->n_events == d->cap_events) {
        /* Grows instead of dropping: a reader that falls behind costs memory. */
        int cap = d->cap_events ? d->cap_events * 2 : 64;
        apr_download_event *ring = malloc((size_t)cap * sizeof *ring);
        if (!ring) { pthread_mutex_unlock(&d->lock); return; }
        for (int i = 0; i < d->n_events; i++) ring[i] = d->events[(d->ev_head + i) % d->cap_events];
        free(d->events);
        d->events = ring;
        d->cap_events = cap;
        d->ev_head = 0;
    }
    d->events[(d->ev_head + d->n_events) % d->cap_events] = *ev;
    d->n_events++;
    pthread_mutex_unlock(&d->lock);
    uint64_t one = 1;
    ssize_t w = write(d->event_fd, &one, sizeof one);
    (void)w;  /* EAGAIN: the counter is already nonzero, the reader will wake */
}

static void post_kind(apr_download *d, int kind)
{
    apr_download_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = kind;
    post(d, &ev);
}

/* Records the failure that ends the download (the first one wins). */
static void fail(apr_download *d, int reason, apr_status status, int http, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void fail(apr_download *d, int reason, apr_status status, int http, const char *fmt, ...)
{
    if (d->fail_reason) return;
    d->fail_reason = reason;
    d->fail_status = status;
    d->fail_http = http;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->fail_msg, sizeof d->fail_msg, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ */
/* Chunks, the journal, the hash                                      */
/* ------------------------------------------------------------------ */

static int journal_save(apr_download *d) { return apr_journal_save(&d->j, d->journal, d->journal_tmp); }

/* Chunks of `chunk` bytes, none written or held. */
static int set_chunks(apr_download *d, int64_t chunk)
{
    free(d->held);
    d->held = NULL;
    if (apr_journal_chunks(&d->j, chunk) != 0) return -1;
    d->held = calloc((size_t)d->j.n_chunks + 1, 1);
    return d->held ? 0 : -1;
}

/* Takes the journal on disk if it describes this file. Its chunk size wins
 * over the parameters' (a resumed download may have other options). */
static int journal_load(apr_download *d)
{
    if (apr_journal_load(&d->j, d->journal) != 0) return -1;
    free(d->held);
    d->held = calloc((size_t)d->j.n_chunks + 1, 1);
    return d->held ? 0 : -1;
}

/* Moves the written prefix forward past complete chunks and tells the
 * hasher, in steps of HASH_STEP bytes (and at the end): waking it for each
 * 16-64 KiB a socket read gives would cost two context switches per read. */
static void advance_front(apr_download *d)
{
    while (d->front < d->j.n_chunks && d->j.got[d->front] == chunk_len(d, d->front)) d->front++;
    int64_t f = d->front < d->j.n_chunks ? chunk_start(d, d->front) + d->j.got[d->front] : d->size;
    if (d->hash && (f - d->published >= HASH_STEP || f == d->size)) {
        apr_prefix_hash_advance(d->hash, f);
        d->published = f;
    }
}

/* The file starts over from byte 0 (the server ignored ranges, or a 200
 * replaced a resumed single stream). */
static void start_over(apr_download *d, int single)
{
    d->j.single = single;
    set_chunks(d, single ? (d->size > 0 ? d->size : 1) : d->j.chunk);
    d->front = 0;
    d->done = 0;
    d->resumed = 0;
    d->published = 0;
    if (d->hash) apr_prefix_hash_restart(d->hash);
}

/* ------------------------------------------------------------------ */
/* One response                                                       */
/* ------------------------------------------------------------------ */

static int header_is(const char *line, size_t n, const char *name, const char **value)
{
    size_t k = strlen(name);
    if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return 0;
    const char *v = line + k + 1;
    while (*v == ' ' || *v == '\t') v++;
    *value = v;
    return 1;
}

/* Copies a header value without its line end. */
static void copy_value(char *dst, size_t cap, const char *v, const char *end)
{
    size_t n = (size_t)(end - v);
    while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ')) n--;
    if (n >= cap) n = cap - 1;
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static size_t on_header(char *buf, size_t size, size_t nmemb, void *ud)
{
    conn *c = ud;
    size_t n = size * nmemb;
    const char *v, *end = buf + n;
    char tmp[128];
    if (n >= 5 && strncmp(buf, "HTTP/", 5) == 0) {
        /* A new response (after a redirect, or the first): forget the last one's. */
        c->etag[0] = '\0';
        c->cr_start = c->cr_end = c->cr_total = -1;
        c->retry_after = -1;
    } else if (header_is(buf, n, "ETag", &v)) {
        copy_value(c->etag, sizeof c->etag, v, end);
    } else if (header_is(buf, n, "Content-Range", &v)) {
        copy_value(tmp, sizeof tmp, v, end);
        long long a, b, t;
        char star;
        if (sscanf(tmp, "bytes %lld-%lld/%lld", &a, &b, &t) == 3) {
            c->cr_start = a; c->cr_end = b; c->cr_total = t;
        } else if (sscanf(tmp, "bytes %lld-%lld/%c", &a, &b, &star) == 3 && star == '*') {
            c->cr_start = a; c->cr_end = b;
        }
    } else if (header_is(buf, n, "Retry-After", &v)) {
        copy_value(tmp, sizeof tmp, v, end);
        char *e;
        double s = strtod(tmp, &e);
        if (e != tmp && *e == '\0' && s >= 0) {
            c->retry_after = s;
        } else {
            time_t t = curl_getdate(tmp, NULL);
            if (t > 0) c->retry_after = difftime(t, time(NULL)) > 0 ? difftime(t, time(NULL)) : 0;
        }
    }
    return n;
}

/* Checks a response before its first byte is written; 0 stops it (abort
 * says why). */
static int check_response(conn *c)
{
    apr_download *d = c->d;
    curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->code);
    if (c->code != 200 && c->code != 206) {
        c->abort = ABORT_STATUS;
        return 0;
    }
    const char *etag = c->etag;
    if (strncmp(etag, "W/", 2) == 0) etag += 2;
    if (d->j.validator[0] && etag[0] && strcmp(d->j.validator, etag) != 0) {
        fail(d, APR_DOWNLOAD_CHANGED, APR_ERR_FORMAT, (int)c->code,
             "the file changed on the server during the download (ETag %s, then %s)", d->j.validator, etag);
        c->abort = ABORT_CHANGED;
        return 0;
    }
    if (!d->j.validator[0] && etag[0]) snprintf(d->j.validator, sizeof d->j.validator, "%s", etag);
    if (c->code == 206) {
        if (c->cr_total >= 0 && c->cr_total != d->size) {
            fail(d, APR_DOWNLOAD_CHANGED, APR_ERR_FORMAT, 206,
                 "the file changed on the server during the download (%lld bytes, then %lld)",
                 (long long)d->size, (long long)c->cr_total);
            c->abort = ABORT_CHANGED;
            return 0;
        }
        if (c->cr_start != c->pos || c->cr_end < c->cr_start) {
            c->abort = ABORT_RANGES;  /* not the range asked for: treat as no ranges */
            return 0;
        }
        if (c->cr_end + 1 < c->end) c->end = c->cr_end + 1;  /* less than asked: the rest later */
        return 1;
    }
    /* 200: the whole file, whatever range was asked for. */
    curl_off_t len = -1;
    curl_easy_getinfo(c->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &len);
    if (len >= 0 && len != d->size) {
        fail(d, APR_DOWNLOAD_CHANGED, APR_ERR_FORMAT, 200,
             "the file changed on the server during the download (%lld bytes, then %lld)",
             (long long)d->size, (long long)len);
        c->abort = ABORT_CHANGED;
        return 0;
    }
    if (c->pos == 0 && c->end == d->size) return 1;  /* asked for all of it */
    if (!d->j.single) {
        c->abort = ABORT_RANGES;
        return 0;
    }
    /* One stream whose resume the server ignored: it starts again at 0. */
    start_over(d, 1);
    d->held[0] = 1;
    c->chunk = 0;
    c->pos = 0;
    c->end = d->size;
    return 1;
}

static int pwrite_all(int fd, const char *buf, size_t n, int64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, buf, n, off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        buf += w; n -= (size_t)w; off += w;
    }
    return 0;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    conn *c = ud;
    apr_download *d = c->d;
    size_t n = size * nmemb;
    if (atomic_load(&d->cancel)) { c->abort = ABORT_STOP; return 0; }
    if (!c->checked) {
        if (!check_response(c)) return 0;
        c->checked = 1;
    }
    d->received += (int64_t)n;
    int64_t room = c->end - c->pos;
    size_t take = (int64_t)n > room ? (size_t)room : n;
    if (take > 0 && pwrite_all(d->fd, data, take, c->pos) != 0) {
        d->disk_errno = errno;
        c->abort = ABORT_DISK;
        return 0;
    }
    c->pos += (int64_t)take;
    c->got_now += (int64_t)take;
    d->j.got[c->chunk] += (int64_t)take;
    d->done += (int64_t)take;
    if (c->chunk == d->front) advance_front(d);
    if (take < n) {
        /* More than the range or the size: not the file we were told of. */
        fail(d, APR_DOWNLOAD_CHANGED, APR_ERR_FORMAT, (int)c->code,
             "the server sent more than the %lld bytes the file has", (long long)d->size);
        c->abort = ABORT_CHANGED;
        return 0;
    }
    return n;
}

/* ------------------------------------------------------------------ */
/* Requests                                                           */
/* ------------------------------------------------------------------ */

/* The lowest chunk with bytes missing that no connection holds, or -1. */
static int next_chunk(apr_download *d)
{
    for (int c = d->front; c < d->j.n_chunks; c++) {
        if (!d->held[c] && d->j.got[c] < chunk_len(d, c)) return c;
    }
    return -1;
}

static int start_request(apr_download *d, conn *c)
{
    c->pos = chunk_start(d, c->chunk) + d->j.got[c->chunk];
    c->end = chunk_start(d, c->chunk) + chunk_len(d, c->chunk);
    c->got_now = 0;
    c->checked = 0;
    c->abort = ABORT_NONE;
    c->code = 0;
    c->errbuf[0] = '\0';
    curl_slist_free_all(c->req_headers);
    c->req_headers = NULL;
    for (struct curl_slist *h = d->headers; h; h = h->next) c->req_headers = curl_slist_append(c->req_headers, h->data);
    if (d->j.validator[0]) {
        /* The server sends the whole (new) file instead of a range when the
         * ETag differs: caught as a change by check_response. */
        char hdr[ETAG_MAX + 16];
        snprintf(hdr, sizeof hdr, "If-Range: %s", d->j.validator);
        c->req_headers = curl_slist_append(c->req_headers, hdr);
    }
    curl_easy_setopt(c->easy, CURLOPT_URL, d->url);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, c->req_headers);
    if (d->j.single && c->pos == 0) {
        curl_easy_setopt(c->easy, CURLOPT_RANGE, NULL);
    } else if (d->j.single) {
        snprintf(c->range, sizeof c->range, "%lld-", (long long)c->pos);
        curl_easy_setopt(c->easy, CURLOPT_RANGE, c->range);
    } else {
        snprintf(c->range, sizeof c->range, "%lld-%lld", (long long)c->pos, (long long)c->end - 1);
        curl_easy_setopt(c->easy, CURLOPT_RANGE, c->range);
    }
    if (curl_multi_add_handle(d->multi, c->easy) != CURLM_OK) return -1;
    c->active = 1;
    return 0;
}

static int transient_status(long code)
{
    return code == 408 || code == 425 || code == 429 || code >= 500;
}

static int transient_curl(CURLcode r)
{
    switch (r) {
    case CURLE_UNSUPPORTED_PROTOCOL: case CURLE_URL_MALFORMAT: case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE: case CURLE_TOO_MANY_REDIRECTS: case CURLE_SSL_CERTPROBLEM:
    case CURLE_LOGIN_DENIED: case CURLE_FILESIZE_EXCEEDED:
        return 0;
    default:
        return 1;
    }
}

/* Seconds before a retry: Retry-After when the server gave one (capped),
 * else 0.5 s doubling up to 30 s, with +-25% jitter so that N connections
 * do not knock again all at once. */
static double backoff(apr_download *d, conn *c)
{
    if (c->retry_after >= 0) return c->retry_after < d->max_wait ? c->retry_after : d->max_wait;
    double s = 0.5;
    for (int i = 1; i < c->attempts && s < 30; i++) s *= 2;
    if (s > 30) s = 30;
    double jitter = 0.75 + 0.5 * (double)(rand_r(&d->rng) % 1000) / 1000.0;
    return s * jitter;
}

/* A transfer ended: the chunk is complete, or the attempt is retried, or
 * the download fails. */
static void finish_request(apr_download *d, conn *c, CURLcode result)
{
    curl_multi_remove_handle(d->multi, c->easy);
    c->active = 0;
    if (c->abort == ABORT_STOP) return;
    if (c->abort == ABORT_DISK) {
        fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "writing %s: %s", d->path, strerror(d->disk_errno));
        return;
    }
    if (c->abort == ABORT_CHANGED) return;  /* fail() was called */
    if (c->abort == ABORT_RANGES) {
        if (!d->j.single) {
            post_kind(d, APR_DOWNLOAD_RESTART);
            for (int i = 0; i < d->n_conn; i++) {
                conn *o = &d->conns[i];
                if (o->active) curl_multi_remove_handle(d->multi, o->easy);
                o->active = 0;
                o->chunk = -1;
                o->attempts = 0;
                o->retry_at = 0;
            }
            start_over(d, 1);
            return;
        }
        fail(d, APR_DOWNLOAD_HTTP, APR_ERR_FORMAT, (int)c->code,
             "the server answered a range request with the wrong range");
        return;
    }
    if (!c->checked && c->code == 0) curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->code);
    if (result == CURLE_OK && (c->code == 200 || c->code == 206) && c->pos >= c->end && c->checked) {
        if (d->j.got[c->chunk] == chunk_len(d, c->chunk)) d->held[c->chunk] = 0, c->chunk = -1;
        /* else: a shorter range than asked; the connection asks for the rest */
        c->attempts = 0;
        c->retry_at = 0;
        return;
    }

    char why[256];
    int http = 0;
    if (c->abort == ABORT_STATUS || (result == CURLE_OK && c->code >= 300)) {
        http = (int)c->code;
        if (!transient_status(c->code)) {
            const char *hint = c->code == 401 ? " (a token is needed: set HF_TOKEN)" :
                               c->code == 403 ? " (access denied: a gated model needs its terms accepted and a token)" :
                               c->code == 404 ? " (not found)" : c->code == 416 ? " (the file is shorter than expected)" : "";
            fail(d, c->code == 416 ? APR_DOWNLOAD_CHANGED : APR_DOWNLOAD_HTTP,
                 c->code == 404 ? APR_ERR_NOT_FOUND : APR_ERR_IO, http, "HTTP %ld%s", c->code, hint);
            return;
        }
        snprintf(why, sizeof why, "HTTP %ld", c->code);
    } else if (result == CURLE_OK) {
        snprintf(why, sizeof why, "the connection closed after %lld of %lld bytes",
                 (long long)(c->pos - chunk_start(d, c->chunk)), (long long)chunk_len(d, c->chunk));
    } else {
        snprintf(why, sizeof why, "%s", c->errbuf[0] ? c->errbuf : curl_easy_strerror(result));
        if (!transient_curl(result)) {
            fail(d, APR_DOWNLOAD_NETWORK, APR_ERR_IO, 0, "%s", why);
            return;
        }
    }
    c->attempts = c->got_now > 0 ? 1 : c->attempts + 1;
    if (c->attempts > d->max_retries) {
        fail(d, http ? APR_DOWNLOAD_HTTP : APR_DOWNLOAD_NETWORK, APR_ERR_IO, http,
             "%s (gave up after %d attempts)", why, c->attempts);
        return;
    }
    /* A connection that was making progress resumes at once. */
    double wait = c->got_now > 0 && c->retry_after < 0 ? 0 : backoff(d, c);
    c->retry_at = now_s() + wait;
    apr_download_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = APR_DOWNLOAD_RETRY;
    ev.http_status = http;
    ev.wait = wait;
    snprintf(ev.message, sizeof ev.message, "%s", why);
    post(d, &ev);
}

/* ------------------------------------------------------------------ */
/* The download thread                                                */
/* ------------------------------------------------------------------ */

/* Reserves the file's size on its file system; 0 or an errno. On disks
 * fallocate takes the blocks at once (no zeroing), so a full disk fails
 * before a byte is fetched. On tmpfs it would zero the whole file in RAM
 * before the first byte arrives: there the free space is checked instead
 * and the pages come as the bytes do. */
static int reserve(apr_download *d, int64_t allocated)
{
    struct statfs fs;
    if (fstatfs(d->fd, &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
        struct statvfs vfs;
        if (fstatvfs(d->fd, &vfs) == 0 && (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize < d->size - allocated)
            return ENOSPC;
        return ftruncate(d->fd, d->size) != 0 ? errno : 0;
    }
    if (fallocate(d->fd, 0, 0, d->size) == 0) return 0;
    int err = errno;
    if (err == EOPNOTSUPP || err == ENOSYS) err = ftruncate(d->fd, d->size) != 0 ? errno : 0;
    return err;
}

/* Opens the file, loads the journal (or takes a sequential prefix) and
 * reserves the whole size on disk, so a full disk fails here, at once. */
static int prepare(apr_download *d)
{
    d->fd = open(d->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (d->fd < 0) {
        fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "cannot open %s: %s", d->path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(d->fd, &st) != 0) st.st_size = 0;
    int64_t len = st.st_size;
    int64_t chunk = d->j.chunk;
    int journaled = journal_load(d) == 0;
    if (journaled && len >= d->size) {
        for (int c = 0; c < d->j.n_chunks; c++) d->resumed += d->j.got[c];
    } else {
        d->j.single = 0;
        d->j.validator[0] = '\0';
        if (set_chunks(d, chunk) != 0) {
            fail(d, APR_DOWNLOAD_DISK, APR_ERR_NOMEM, 0, "out of memory");
            return -1;
        }
        if (!journaled && d->want[0] && len > 0 && len <= d->size) {
            /* A sequential writer's partial file: its length is what it has. */
            for (int c = 0; c < d->j.n_chunks; c++) {
                int64_t g = len - chunk_start(d, c);
                d->j.got[c] = g < 0 ? 0 : g > chunk_len(d, c) ? chunk_len(d, c) : g;
            }
            d->resumed = len;
        } else if (len > 0 && ftruncate(d->fd, 0) != 0) {
            fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "truncating %s: %s", d->path, strerror(errno));
            return -1;
        }
    }
    d->done = d->resumed;
    if (journal_save(d) != 0) {
        fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "cannot write %s: %s", d->journal, strerror(errno));
        return -1;
    }
    if (d->size > 0) {
        int err = reserve(d, st.st_blocks * 512);
        if (err) {
            if (ftruncate(d->fd, len > d->size ? d->size : len) != 0) { /* best effort */ }
            if (d->resumed == 0) {
                /* Nothing of value: nothing left behind. */
                unlink(d->path);
                unlink(d->journal);
                close(d->fd);
                d->fd = -1;
            }
            fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "cannot reserve %lld bytes for %s: %s",
                 (long long)d->size, d->path, strerror(err));
            return -1;
        }
    }
    advance_front(d);
    return 0;
}

static int setup_conn(apr_download *d, conn *c)
{
    c->d = d;
    c->chunk = -1;
    c->easy = curl_easy_init();
    if (!c->easy) return -1;
    CURL *e = c->easy;
    curl_easy_setopt(e, CURLOPT_PRIVATE, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, (long)RECV_BUFFER);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)(d->connect_seconds * 1000));
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(d->stall_seconds < 1 ? 1 : d->stall_seconds));
    curl_easy_setopt(e, CURLOPT_USERAGENT, "apr/" APR_VERSION);
    const char *ca = apr_net_ca_bundle();
    if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);
    return 0;
}

static void *download_main(void *arg)
{
    apr_download *d = arg;
    apr_download_event ev;
    int ok = prepare(d) == 0;
    if (ok) {
        d->hash = apr_prefix_hash_start(d->fd, d->size);
        if (!d->hash) {
            fail(d, APR_DOWNLOAD_DISK, APR_ERR_NOMEM, 0, "cannot start the hashing thread");
            ok = 0;
        } else {
            advance_front(d);  /* what a resume found is hashed first */
        }
    }
    if (ok) {
        CURLM *m = curl_multi_init();
        pthread_mutex_lock(&d->lock);  /* apr_download_cancel wakes it */
        d->multi = m;
        pthread_mutex_unlock(&d->lock);
        curl_multi_setopt(d->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_NOTHING);
        for (int i = 0; ok && i < d->n_conn; i++) {
            if (setup_conn(d, &d->conns[i]) != 0) {
                fail(d, APR_DOWNLOAD_NETWORK, APR_ERR_NOMEM, 0, "cannot set up libcurl");
                ok = 0;
            }
        }
    }
    double next_progress = 0, next_journal = now_s() + JOURNAL_SECONDS;
    while (ok && !d->fail_reason) {
        if (atomic_load(&d->cancel)) {
            fail(d, APR_DOWNLOAD_CANCELLED, APR_ERR_CANCELLED, 0, "interrupted");
            break;
        }
        double t = now_s(), wake = t + 0.1;
        int active = 0, n_conn = d->j.single ? 1 : d->n_conn;
        for (int i = 0; i < n_conn; i++) {
            conn *c = &d->conns[i];
            if (c->active) { active++; continue; }
            if (c->chunk >= 0 && t < c->retry_at) {
                if (c->retry_at < wake) wake = c->retry_at;
                continue;
            }
            if (c->chunk < 0) {
                c->chunk = next_chunk(d);
                if (c->chunk < 0) continue;
                d->held[c->chunk] = 1;
            }
            if (start_request(d, c) != 0) {
                fail(d, APR_DOWNLOAD_NETWORK, APR_ERR_IO, 0, "libcurl refused a request");
                break;
            }
            active++;
        }
        if (d->fail_reason) break;
        if (active == 0 && d->front == d->j.n_chunks) {
            int waiting = 0;
            for (int i = 0; i < d->n_conn; i++) waiting |= d->conns[i].chunk >= 0;
            if (!waiting) break;
        }
        int running = 0;
        curl_multi_perform(d->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(d->multi, &left))) {
            if (msg->msg != CURLMSG_DONE) continue;
            conn *c = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            if (c && c->active) finish_request(d, c, msg->data.result);
        }
        t = now_s();
        if (t >= next_progress) {
            post_kind(d, APR_DOWNLOAD_PROGRESS);
            next_progress = t + d->progress_seconds;
        }
        if (t >= next_journal) {
            journal_save(d);  /* a failure here only costs resume precision */
            next_journal = t + JOURNAL_SECONDS;
        }
        int ms = (int)((wake - t) * 1000);
        if (ms < 1) ms = 1;
        if (ms > 100) ms = 100;
        if (!d->fail_reason) curl_multi_poll(d->multi, NULL, 0, ms, NULL);
    }
    for (int i = 0; i < d->n_conn; i++) {
        conn *c = &d->conns[i];
        if (c->active) curl_multi_remove_handle(d->multi, c->easy);
        c->active = 0;
        curl_easy_cleanup(c->easy);
        c->easy = NULL;
        curl_slist_free_all(c->req_headers);
        c->req_headers = NULL;
    }
    pthread_mutex_lock(&d->lock);
    CURLM *m = d->multi;
    d->multi = NULL;
    pthread_mutex_unlock(&d->lock);
    if (m) curl_multi_cleanup(m);

    /* On success the hasher finishes the file; otherwise it just stops. */
    if (d->hash && !d->fail_reason) {
        int err = apr_prefix_hash_finish(d->hash, d->digest);
        if (err) fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "reading %s back: %s", d->path, strerror(err));
    }
    apr_prefix_hash_free(d->hash);
    d->hash = NULL;

    memset(&ev, 0, sizeof ev);
    if (!d->fail_reason) {
        snprintf(ev.sha256, sizeof ev.sha256, "%s", d->digest);
        if (d->want[0] && strcmp(d->want, d->digest) != 0) {
            /* Bytes that are not the file: nothing of them is kept. */
            close(d->fd);
            d->fd = -1;
            unlink(d->path);
            unlink(d->journal);
            fail(d, APR_DOWNLOAD_DIGEST, APR_ERR_FORMAT, 0, "SHA-256 mismatch: expected %s, got %s",
                 d->want, d->digest);
        } else if (fdatasync(d->fd) != 0 && errno != EINVAL) {
            fail(d, APR_DOWNLOAD_DISK, APR_ERR_IO, 0, "writing %s: %s", d->path, strerror(errno));
        } else {
            unlink(d->journal);
            ev.kind = APR_DOWNLOAD_DONE;
        }
    }
    if (d->fail_reason) {
        if (d->fail_reason == APR_DOWNLOAD_CHANGED) {
            /* The bytes so far belong to another version of the file. */
            unlink(d->path);
            unlink(d->journal);
        } else if (d->fd >= 0 && d->fail_reason != APR_DOWNLOAD_DIGEST && d->j.got) {
            journal_save(d);
        }
        ev.kind = APR_DOWNLOAD_FAILED;
        ev.reason = d->fail_reason;
        ev.status = d->fail_status;
        ev.http_status = d->fail_http;
        snprintf(ev.message, sizeof ev.message, "%s", d->fail_msg);
    }
    if (d->fd >= 0) close(d->fd);
    d->fd = -1;
    post(d, &ev);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void curl_init(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

void apr_download_params_default(apr_download_params *p)
{
    memset(p, 0, sizeof *p);
    p->size = -1;
    p->connections = 8;
    p->max_retries = 8;
    p->stall_seconds = 30;
    p->connect_seconds = 30;
    p->progress_seconds = 0.1;
    p->max_retry_wait = 300;
}

/* The chunk size: about 8 rounds per connection so the slowest last chunk
 * costs little, within [1 MiB, 64 MiB] (a 20 GB file: 64 MiB, ~300
 * requests). */
static int64_t pick_chunk(int64_t size, int n_conn)
{
    int64_t c = size / ((int64_t)n_conn * 8);
    if (c < MIN_CHUNK) c = MIN_CHUNK;
    if (c > MAX_CHUNK) c = MAX_CHUNK;
    return c;
}

apr_status apr_download_start(const apr_download_params *p, apr_download **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "download: out is NULL");
    *out = NULL;
    APR_CHECK(p && p->url && p->url[0], APR_ERR_INVALID, "download: no URL");
    APR_CHECK(p->path && p->path[0], APR_ERR_INVALID, "download: no file to write");
    APR_CHECK(p->size >= 0, APR_ERR_INVALID, "download: the size must be known (got %lld)", (long long)p->size);
    APR_CHECK(p->connections >= 1 && p->connections <= MAX_CONNECTIONS, APR_ERR_INVALID,
              "download: connections must be 1..%d, got %d", MAX_CONNECTIONS, p->connections);
    APR_CHECK(p->chunk_bytes >= 0, APR_ERR_INVALID, "download: negative chunk size");
    APR_CHECK(p->max_retries >= 0, APR_ERR_INVALID, "download: negative max_retries");
    APR_CHECK(p->stall_seconds > 0 && p->connect_seconds > 0 && p->progress_seconds > 0, APR_ERR_INVALID,
              "download: timeouts must be positive");
    if (p->sha256 && p->sha256[0]) {
        size_t n = strlen(p->sha256);
        APR_CHECK(n == 64 && strspn(p->sha256, "0123456789abcdef") == 64, APR_ERR_INVALID,
                  "download: sha256 must be 64 lower-case hex digits, got '%s'", p->sha256);
    }
    pthread_once(&curl_once, curl_init);
    APR_CHECK(curl_init_result == CURLE_OK, APR_ERR_IO, "download: libcurl: %s", curl_easy_strerror(curl_init_result));

    apr_download *d = calloc(1, sizeof *d);
    APR_CHECK(d, APR_ERR_NOMEM, "download: out of memory");
    d->fd = -1;
    d->event_fd = -1;
    pthread_mutex_init(&d->lock, NULL);
    d->size = p->size;
    d->n_conn = p->connections;
    d->j.size = p->size;
    d->j.chunk = p->chunk_bytes > 0 ? p->chunk_bytes : pick_chunk(p->size, p->connections);
    if (d->j.chunk > d->size && d->size > 0) d->j.chunk = d->size;
    if (d->j.chunk < 1) d->j.chunk = 1;
    d->max_retries = p->max_retries;
    d->stall_seconds = p->stall_seconds;
    d->connect_seconds = p->connect_seconds;
    d->progress_seconds = p->progress_seconds;
    d->max_wait = p->max_retry_wait > 0 ? p->max_retry_wait : 300;
    d->rng = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)d;
    if (p->sha256) snprintf(d->want, sizeof d->want, "%s", p->sha256);
    d->url = strdup(p->url);
    d->path = strdup(p->path);
    size_t n = strlen(p->path) + 16;
    d->journal = malloc(n);
    d->journal_tmp = malloc(n);
    int bad = !d->url || !d->path || !d->journal || !d->journal_tmp;
    if (!bad) {
        snprintf(d->journal, n, "%s.resume", p->path);
        snprintf(d->journal_tmp, n, "%s.resume.tmp", p->path);
        d->headers = curl_slist_append(NULL, "Accept-Encoding: identity");
        const char *h = p->headers ? p->headers : "";
        while (*h) {
            size_t k = strcspn(h, "\n");
            char line[4096];
            if (k > 0 && k < sizeof line) {
                memcpy(line, h, k);
                line[k] = '\0';
                if (line[k - 1] == '\r') line[k - 1] = '\0';
                d->headers = curl_slist_append(d->headers, line);
            }
            h += k + (h[k] == '\n');
        }
        d->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        bad = d->event_fd < 0 || !d->headers;
    }
    if (bad) {
        apr_download_free(d);
        return apr_error(APR_ERR_IO, "download: cannot set up (%s)", strerror(errno ? errno : ENOMEM));
    }
    if (pthread_create(&d->thread, NULL, download_main, d) != 0) {
        apr_download_free(d);
        return apr_error(APR_ERR_IO, "download: cannot start its thread");
    }
    d->thread_started = 1;
    *out = d;
    return APR_OK;
}

int apr_download_fd(const apr_download *d) { return d ? d->event_fd : -1; }

int apr_download_poll(apr_download *d, apr_download_event *out, int max)
{
    if (!d || !out || max <= 0) return 0;
    uint64_t count;
    ssize_t r = read(d->event_fd, &count, sizeof count);
    (void)r;  /* EAGAIN: nothing was signalled; the queue is read anyway */
    pthread_mutex_lock(&d->lock);
    int n = 0;
    while (n < max && d->n_events > 0) {
        out[n++] = d->events[d->ev_head];
        d->ev_head = (d->ev_head + 1) % d->cap_events;
        d->n_events--;
    }
    int more = d->n_events > 0;
    pthread_mutex_unlock(&d->lock);
    if (more) {
        uint64_t one = 1;
        ssize_t w = write(d->event_fd, &one, sizeof one);
        (void)w;
    }
    return n;
}

void apr_download_cancel(apr_download *d)
{
    if (!d) return;
    atomic_store(&d->cancel, 1);
    pthread_mutex_lock(&d->lock);
    CURLM *m = d->multi;
    if (m) curl_multi_wakeup(m);
    pthread_mutex_unlock(&d->lock);
}

void apr_download_free(apr_download *d)
{
    if (!d) return;
    if (d->thread_started) {
        apr_download_cancel(d);
        pthread_join(d->thread, NULL);
    }
    free(d->url);
    free(d->path);
    free(d->journal);
    free(d->journal_tmp);
    curl_slist_free_all(d->headers);
    apr_journal_clear(&d->j);
    free(d->held);
    free(d->events);
    if (d->event_fd >= 0) close(d->event_fd);
    pthread_mutex_destroy(&d->lock);
    free(d);
}
