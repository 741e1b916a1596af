/* trace_test.c — spans into per-thread rings and out as Chrome trace JSON. */
#include "test.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr.h"
#include "trace/trace.h"

static char *read_json(apr_status *st)
{
    char path[] = "/tmp/apr_trace_test_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    close(fd);
    *st = apr_trace_write_json(path, "\"command\":\"test\"");
    size_t n;
    char *text = test_read_file(path, &n);
    remove(path);
    return text;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

TEST(trace_names_are_interned_once_and_c_spans_keep_their_ids)
{
    uint32_t a = apr_trace_name("trace test span");
    CHECK(a != 0);
    CHECK_EQ_INT(apr_trace_name("trace test span"), a);
    CHECK(apr_trace_name("trace test other") != a);
    CHECK_EQ_INT(apr_trace_name(""), 0);
    CHECK_EQ_INT(apr_trace_name(NULL), 0);
    CHECK_EQ_INT(apr_trace_name("decode step"), APR_SPAN_DECODE);
    CHECK_EQ_INT(apr_trace_name("model load"), APR_SPAN_MODEL_LOAD);
    CHECK_EQ_INT(apr_trace_name("zram decompress"), APR_SPAN_ZRAM_DECOMPRESS);
    CHECK_EQ_INT(apr_trace_name("tensor allocation"), APR_SPAN_TENSOR_ALLOC);
}

TEST(trace_records_nothing_while_off)
{
    apr_trace_begin(APR_SPAN_TOKENIZE);
    apr_trace_end(APR_SPAN_TOKENIZE);
    APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
    APR_TRACE_END(APR_SPAN_SAMPLE);
    CHECK_EQ_INT(apr_trace_enabled(), 0);
    REQUIRE(apr_trace_start(NULL) == APR_OK);
    apr_trace_stop();
    apr_trace_info info;
    apr_trace_get_info(&info);
    CHECK_EQ_INT(info.records, 0);
    CHECK_EQ_INT(info.active, 0);
    CHECK(info.stop_ns >= info.start_ns);
}

TEST(trace_nested_spans_become_nested_x_events)
{
    REQUIRE(apr_trace_start(NULL) == APR_OK);
    CHECK_EQ_INT(apr_trace_start(NULL), APR_ERR_INVALID);  /* one at a time */
    apr_trace_thread_name("tester");
    uint32_t outer = apr_trace_name("outer \"quoted\" span");
    APR_TRACE_BEGIN(outer);
    APR_TRACE_BEGIN(APR_SPAN_TOKENIZE);
    usleep(1000);
    APR_TRACE_END(APR_SPAN_TOKENIZE);
    APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
    APR_TRACE_BEGIN(APR_SPAN_DETOKENIZE);  /* closed by its parent's end */
    APR_TRACE_END(APR_SPAN_SAMPLE);
    APR_TRACE_END(APR_SPAN_FORWARD);       /* never opened: ignored */
    APR_TRACE_END(outer);
    APR_TRACE_BEGIN(APR_SPAN_PREFILL);     /* open at the end: closed at stop, marked */
    uint64_t t = apr_trace_now();
    apr_trace_complete(apr_trace_name("request"), 2, t - 5000, 4000);
    apr_trace_stop();
    apr_trace_info info;
    apr_trace_get_info(&info);
    CHECK_EQ_INT(info.records, 10);
    CHECK_EQ_INT(info.overwritten, 0);
    CHECK(info.n_threads >= 1);
    apr_status st = APR_ERR_IO;
    char *json = read_json(&st);
    REQUIRE(json);
    CHECK_EQ_INT(st, APR_OK);
    CHECK(strncmp(json, "{\"traceEvents\":[", 16) == 0);
    CHECK_EQ_INT(count(json, "\"ph\":\"X\""), 6);
    CHECK_EQ_INT(count(json, "\"name\":\"outer \\\"quoted\\\" span\""), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"tokenize\""), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"detokenize\""), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"forward\""), 0);
    CHECK_EQ_INT(count(json, "\"unfinished\":true"), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"tester\""), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"tester lane 2\""), 1);
    CHECK_EQ_INT(count(json, ",\"dur\":4.000"), 1);
    CHECK_EQ_INT(count(json, "\"command\":\"test\""), 1);
    /* the tokenize span slept 1 ms: its duration says so */
    const char *tok = strstr(json, "\"name\":\"tokenize\"");
    REQUIRE(tok);
    const char *dur = strstr(tok, "\"dur\":");
    REQUIRE(dur);
    double us = atof(dur + 6);
    CHECK(us >= 1000 && us < 1e6);
    free(json);
}

TEST(trace_start_rejects_bad_ring_sizes)
{
    CHECK_EQ_INT(apr_trace_start(&(apr_trace_params){ .ring_records = 3 }), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_trace_start(&(apr_trace_params){ .ring_records = (int64_t)1 << 40 }), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_trace_enabled(), 0);
}

static void *spin_spans(void *arg)
{
    apr_trace_thread_name((const char *)arg);
    for (int i = 0; i < 100; i++) {
        APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
        APR_TRACE_END(APR_SPAN_SAMPLE);
    }
    return NULL;
}

/* New threads get rings of the size asked for; full rings keep their
 * newest records. */
TEST(trace_threads_have_rings_of_their_own)
{
    apr_trace_params p;
    apr_trace_params_default(&p);
    p.ring_records = 64;
    REQUIRE(apr_trace_start(&p) == APR_OK);
    pthread_t a, b;
    REQUIRE(pthread_create(&a, NULL, spin_spans, "alpha") == 0);
    REQUIRE(pthread_create(&b, NULL, spin_spans, "beta") == 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    apr_trace_stop();
    apr_trace_info info;
    apr_trace_get_info(&info);
    CHECK_EQ_INT(info.n_threads, 2);
    CHECK_EQ_INT(info.records, 128);          /* 64 kept on each */
    CHECK_EQ_INT(info.overwritten, 2 * 136);  /* of 200 each */
    apr_status st;
    char *json = read_json(&st);
    REQUIRE(json);
    CHECK_EQ_INT(count(json, "\"name\":\"sample\""), 64);
    CHECK_EQ_INT(count(json, "\"name\":\"alpha\""), 1);
    CHECK_EQ_INT(count(json, "\"name\":\"beta\""), 1);
    CHECK_EQ_INT(count(json, "\"span_records_overwritten\":272"), 1);
    free(json);
}

TEST(trace_kernels_without_cupti_still_trace_and_say_why)
{
    apr_trace_params p;
    apr_trace_params_default(&p);
    p.kernels = 1;
    if (apr_device_count() > 0) SKIP("a GPU is present: CUPTI may record (the GPU script checks that)");
    REQUIRE(apr_trace_start(&p) == APR_OK);
    APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
    APR_TRACE_END(APR_SPAN_SAMPLE);
    apr_trace_stop();
    apr_trace_info info;
    apr_trace_get_info(&info);
    CHECK_EQ_INT(info.records, 2);
    CHECK_EQ_INT(info.gpu_records, 0);
    /* no CUDA build, no CUPTI library or no driver: kernels are off, and a reason is given */
    if (!info.kernels) CHECK(strlen(info.kernels_note) > 10);
}

TEST(trace_write_json_reports_unwritable_paths)
{
    CHECK_EQ_INT(apr_trace_write_json("/nonexistent-dir/trace.json", NULL), APR_ERR_IO);
    CHECK(strstr(apr_last_error(), "/nonexistent-dir/trace.json") != NULL);
    CHECK_EQ_INT(apr_trace_write_json(NULL, NULL), APR_ERR_INVALID);
}

TEST(trace_json_strings_are_utf8_whatever_the_names)
{
    REQUIRE(apr_trace_start(NULL) == APR_OK);
    uint32_t id = apr_trace_name("caf\xc3\xa9 \xff\xfe bad \xe2\x82");
    APR_TRACE_BEGIN(id);
    APR_TRACE_END(id);
    apr_trace_stop();
    apr_status st;
    char *json = read_json(&st);
    REQUIRE(json);
    CHECK_EQ_INT(count(json, "\"name\":\"caf\xc3\xa9 ?? bad ??\""), 1);
    free(json);
}

static void *one_span(void *arg)
{
    (void)arg;
    APR_TRACE_BEGIN(APR_SPAN_SCHEDULE);
    APR_TRACE_END(APR_SPAN_SCHEDULE);
    return NULL;
}

/* A thread that exited leaves its records to its trace; a thread of the
 * next trace takes over its ring. */
TEST(trace_rings_of_exited_threads_serve_later_threads)
{
    apr_trace_params p;
    apr_trace_params_default(&p);
    p.ring_records = 32;  /* a size no other test's threads have */
    REQUIRE(apr_trace_start(&p) == APR_OK);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, one_span, NULL) == 0);
    pthread_join(t, NULL);
    apr_trace_stop();
    apr_trace_info info;
    apr_trace_get_info(&info);
    CHECK_EQ_INT(info.n_threads, 1);
    CHECK_EQ_INT(info.records, 2);  /* the exited thread's records stay */
    REQUIRE(apr_trace_start(&p) == APR_OK);
    REQUIRE(pthread_create(&t, NULL, one_span, NULL) == 0);
    pthread_join(t, NULL);
    REQUIRE(pthread_create(&t, NULL, one_span, NULL) == 0);
    pthread_join(t, NULL);
    apr_trace_stop();
    apr_trace_get_info(&info);
    /* the first took over the last trace's ring (which starts empty for
     * it); the second gets its own, the first's records being this trace's */
    CHECK_EQ_INT(info.n_threads, 2);
    CHECK_EQ_INT(info.records, 4);
}
