/* fetch_test.c — one request's argument checks and transport failures
 * (runtime/net/fetch.c); answers from a real server are checked by the hub
 * specs (tests/lua/apr/cmd/pull_spec.lua). */
#include <string.h>

#include "apr.h"
#include "test.h"

TEST(fetch_rejects_bad_arguments)
{
    apr_fetch_result r;
    CHECK_EQ_INT(apr_fetch_request("POST", "http://127.0.0.1:9/", NULL, 0, 1024, 5, &r), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_fetch_request("GET", "", NULL, 0, 1024, 5, &r), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_fetch_request("GET", "http://127.0.0.1:9/", NULL, 0, 1024, 0, &r), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_fetch_request("GET", "http://127.0.0.1:9/", NULL, 0, 1024, 5, NULL), APR_ERR_INVALID);
    apr_fetch_result_free(NULL);
}

TEST(fetch_reports_a_refused_connection_with_the_url)
{
    apr_fetch_result r;
    CHECK_EQ_INT(apr_fetch_request("GET", "http://127.0.0.1:9/x", "X-A: 1\nX-B: 2", 1, 1024, 5, &r), APR_ERR_IO);
    CHECK(strstr(apr_last_error(), "http://127.0.0.1:9/x") != NULL);
    CHECK(r.body == NULL && r.headers == NULL && r.http_status == 0);
    CHECK_EQ_INT(apr_fetch_request("GET", "ftp://127.0.0.1/x", NULL, 1, 1024, 5, &r), APR_ERR_IO);
}
