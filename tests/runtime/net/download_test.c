/* download_test.c — the downloader's parameter checks, and what it takes
 * from a file and journal already on disk (runtime/net/download.c). The
 * network side runs against the test hub in tests/lua/apr/download_spec.lua;
 * here the URL is a closed port, so each download prepares its file, then
 * fails after one connection attempt. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr.h"
#include "test.h"

static const char *URL = "http://127.0.0.1:9/nothing";

/* Runs a download to its end; returns the final event and the resumed
 * count seen by the first event. */
static apr_download_event run(apr_download_params *p, int64_t *resumed)
{
    apr_download *d = NULL;
    apr_download_event ev, last;
    memset(&last, 0, sizeof last);
    *resumed = -1;
    if (apr_download_start(p, &d) != APR_OK) return last;
    for (int spins = 0; spins < 600; spins++) {
        struct pollfd pfd = { .fd = apr_download_fd(d), .events = POLLIN };
        poll(&pfd, 1, 50);
        int done = 0;
        while (apr_download_poll(d, &ev, 1) == 1) {
            if (*resumed < 0) *resumed = ev.resumed;
            last = ev;
            done |= ev.kind == APR_DOWNLOAD_DONE || ev.kind == APR_DOWNLOAD_FAILED;
        }
        if (done) break;
    }
    apr_download_free(d);
    return last;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static void params(apr_download_params *p, const char *path)
{
    apr_download_params_default(p);
    p->url = URL;
    p->path = path;
    p->size = 4 << 20;
    p->chunk_bytes = 1 << 20;
    p->connections = 2;
    p->max_retries = 0;
    p->connect_seconds = 2;
}

TEST(download_rejects_bad_parameters)
{
    apr_download_params p;
    apr_download *d = (apr_download *)1;
    params(&p, "/tmp/x");
    p.size = -1;
    CHECK_EQ_INT(apr_download_start(&p, &d), APR_ERR_INVALID);
    CHECK(d == NULL);
    params(&p, "/tmp/x");
    p.connections = 65;
    CHECK_EQ_INT(apr_download_start(&p, &d), APR_ERR_INVALID);
    CHECK(strstr(apr_last_error(), "connections") != NULL);
    params(&p, "/tmp/x");
    p.sha256 = "ABC";
    CHECK_EQ_INT(apr_download_start(&p, &d), APR_ERR_INVALID);
    params(&p, "/tmp/x");
    p.url = "";
    CHECK_EQ_INT(apr_download_start(&p, &d), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_download_start(NULL, &d), APR_ERR_INVALID);
    apr_download_free(NULL);
}

TEST(download_resumes_from_a_journal_and_ignores_a_broken_one)
{
    char dir[] = "/tmp/apr-dl-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[256], journal[300];
    snprintf(path, sizeof path, "%s/f.incomplete", dir);
    snprintf(journal, sizeof journal, "%s.resume", path);
    apr_download_params p;
    int64_t resumed;

    /* A whole journal: its chunks' progress is taken (and kept after the
     * network failure, for the next run). */
    params(&p, path);
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    fclose(f);
    REQUIRE(truncate(path, 4 << 20) == 0);
    write_text(journal, "apr download journal 1\nsize 4194304\nchunk 1048576\nsingle 0\nvalidator \"e1\"\n"
                        "got 1048576 5 0 1048576\n");
    apr_download_event ev = run(&p, &resumed);
    CHECK_EQ_INT(ev.kind, APR_DOWNLOAD_FAILED);
    CHECK_EQ_INT(ev.reason, APR_DOWNLOAD_NETWORK);
    CHECK_EQ_INT(resumed, 2 * 1048576 + 5);
    CHECK_EQ_INT(ev.done, 2 * 1048576 + 5);
    size_t n = 0;
    char *kept = test_read_file(journal, &n);
    CHECK(kept && strstr(kept, "got 1048576 5 0 1048576\n") && strstr(kept, "validator \"e1\""));
    free(kept);

    /* Journals that do not describe this file are ignored: the download
     * starts from nothing. */
    const char *bad[] = {
        "apr download journal 1\nsize 999\nchunk 1048576\nsingle 0\nvalidator x\ngot 1\n",      /* other size */
        "apr download journal 1\nsize 4194304\nchunk 1048576\nsingle 0\nvalidator x\ngot 2000000 0 0 0\n", /* > chunk */
        "apr download journal 1\nsize 4194304\nchunk 1048576\nsingle 0\nvalidator x\ngot 1 2\n", /* too few */
        "apr download journal 1\nsize 4194304\nchunk 0\nsingle 0\nvalidator x\ngot\n",           /* chunk 0 */
        "apr download journal 2\n",                                                            /* version */
        "\xff\xfe garbage",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        f = fopen(path, "wb");
        REQUIRE(f);
        fclose(f);
        REQUIRE(truncate(path, 4 << 20) == 0);
        write_text(journal, bad[i]);
        ev = run(&p, &resumed);
        CHECK_EQ_INT(ev.kind, APR_DOWNLOAD_FAILED);
        if (resumed != 0) test_fail(__FILE__, __LINE__, "journal %zu: resumed %lld", i, (long long)resumed);
    }

    /* No journal, a digest to check: a sequential writer's prefix is kept.
     * Without a digest it is not trusted. */
    unlink(journal);
    f = fopen(path, "wb");
    REQUIRE(f);
    fwrite("0123456789", 1, 10, f);
    fclose(f);
    p.sha256 = "0000000000000000000000000000000000000000000000000000000000000000";
    run(&p, &resumed);
    CHECK_EQ_INT(resumed, 10);
    unlink(journal);
    f = fopen(path, "wb");
    REQUIRE(f);
    fwrite("0123456789", 1, 10, f);
    fclose(f);
    p.sha256 = NULL;
    run(&p, &resumed);
    CHECK_EQ_INT(resumed, 0);

    unlink(journal);
    unlink(path);
    rmdir(dir);
}

TEST(download_of_an_empty_file_needs_no_network)
{
    char dir[] = "/tmp/apr-dl-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/empty", dir);
    apr_download_params p;
    params(&p, path);
    p.size = 0;
    p.sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
    int64_t resumed;
    apr_download_event ev = run(&p, &resumed);
    CHECK_EQ_INT(ev.kind, APR_DOWNLOAD_DONE);
    CHECK_EQ_STR(ev.sha256, p.sha256);
    unlink(path);
    rmdir(dir);
}
