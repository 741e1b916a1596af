/* fetch.c — one small HTTP(S) request through libcurl's easy interface.
 *
 * For the requests whose answer fits in memory: a hub's JSON listing, the
 * headers of a HEAD. The body is collected up to a cap (a misbehaving
 * server cannot make apr buffer gigabytes), the headers of the last
 * response are kept whole for the caller to read, and Ctrl+C stops the
 * request through libcurl's progress callback. Large files go through
 * download.c instead. */
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "net/ca.h"

typedef struct buffer {
    char *data;
    size_t len, cap, max;
    int over;                 /* more than max arrived */
} buffer;

static int append(buffer *b, const char *p, size_t n)
{
    if (b->len + n > b->max) {
        b->over = 1;
        return -1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return -1;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static size_t on_body(char *p, size_t size, size_t nmemb, void *ud)
{
    size_t n = size * nmemb;
    return append(ud, p, n) == 0 ? n : 0;
}

/* Keeps only the last response's headers: a redirect's are dropped when
 * the next status line arrives. */
static size_t on_header(char *p, size_t size, size_t nmemb, void *ud)
{
    buffer *b = ud;
    size_t n = size * nmemb;
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) b->len = 0;
    return append(b, p, n) == 0 ? n : 0;
}

static int on_progress(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    return apr_interrupted() ? 1 : 0;
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;
static void curl_init(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

apr_status apr_fetch_request(const char *method, const char *url, const char *headers, int follow,
                             size_t max_body, double timeout_s, apr_fetch_result *out)
{
    APR_CHECK(out, APR_ERR_INVALID, "fetch: out is NULL");
    memset(out, 0, sizeof *out);
    APR_CHECK(method && (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0), APR_ERR_INVALID,
              "fetch: method must be GET or HEAD");
    APR_CHECK(url && url[0], APR_ERR_INVALID, "fetch: no URL");
    APR_CHECK(timeout_s > 0, APR_ERR_INVALID, "fetch: the timeout must be positive");
    pthread_once(&curl_once, curl_init);
    APR_CHECK(curl_init_result == CURLE_OK, APR_ERR_IO, "fetch: libcurl: %s", curl_easy_strerror(curl_init_result));

    CURL *e = curl_easy_init();
    APR_CHECK(e, APR_ERR_NOMEM, "fetch: cannot set up libcurl");
    buffer body = { .max = max_body }, head = { .max = 1 << 20 };
    struct curl_slist *list = curl_slist_append(NULL, "Accept-Encoding: identity");
    const char *h = headers ? headers : "";
    while (*h) {
        size_t k = strcspn(h, "\n");
        char line[4096];
        if (k > 0 && k < sizeof line) {
            memcpy(line, h, k);
            line[k] = '\0';
            if (line[k - 1] == '\r') line[k - 1] = '\0';
            list = curl_slist_append(list, line);
        }
        h += k + (h[k] == '\n');
    }
    char err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (strcmp(method, "HEAD") == 0) curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, &head);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, err);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    curl_easy_setopt(e, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(e, CURLOPT_USERAGENT, "apr/" APR_VERSION);
    const char *ca = apr_net_ca_bundle();
    if (ca) curl_easy_setopt(e, CURLOPT_CAINFO, ca);

    CURLcode r = curl_easy_perform(e);
    long code = 0;
    char *last_url = NULL;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &last_url);
    apr_status status = APR_OK;
    if (r == CURLE_ABORTED_BY_CALLBACK) {
        status = apr_error(APR_ERR_CANCELLED, "%s: interrupted", url);
    } else if (body.over) {
        status = apr_error(APR_ERR_RANGE, "%s: the answer is larger than %zu bytes", url, max_body);
    } else if (r != CURLE_OK) {
        status = apr_error(APR_ERR_IO, "%s: %s", url, err[0] ? err : curl_easy_strerror(r));
    } else {
        out->http_status = (int)code;
        out->headers = head.data ? head.data : strdup("");
        out->body = body.data ? body.data : strdup("");
        out->body_len = body.len;
        out->url = strdup(last_url ? last_url : url);
        head.data = body.data = NULL;
        if (!out->headers || !out->body || !out->url) {
            apr_fetch_result_free(out);
            status = apr_error(APR_ERR_NOMEM, "fetch: out of memory");
        }
    }
    free(head.data);
    free(body.data);
    curl_slist_free_all(list);
    curl_easy_cleanup(e);
    return status;
}

void apr_fetch_result_free(apr_fetch_result *r)
{
    if (!r) return;
    free(r->headers);
    free(r->body);
    free(r->url);
    memset(r, 0, sizeof *r);
}
