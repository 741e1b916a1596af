/* loader_test.c — apr_model_load on the loader's own thread: the result
 * through the eventfd, a failure's message, and a loader given up while
 * (or after) its thread loads. */
#include "test.h"
#include "apr.h"

#include <poll.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#define MODEL "tests/fixtures/models/tiny-q8_0.gguf"

static apr_model_params cpu_params(void)
{
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    return p;
}

/* Waits (as an event loop would) for the loader's fd; 0 on timeout. */
static int wait_done(const apr_loader *l, int ms)
{
    struct pollfd pfd = { apr_loader_fd(l), POLLIN, 0 };
    return poll(&pfd, 1, ms) == 1;
}

TEST(loader_loads_on_its_thread_and_signals_the_fd)
{
    apr_model_params p = cpu_params();
    apr_loader *l = NULL;
    REQUIRE(apr_loader_start(MODEL, &p, &l) == APR_OK);
    REQUIRE(apr_loader_fd(l) >= 0);
    REQUIRE(wait_done(l, 20000));
    apr_model *m = NULL;
    CHECK_EQ_INT(apr_loader_take(l, &m), APR_OK);
    REQUIRE(m != NULL);
    apr_model_info info;
    apr_model_get_info(m, &info);
    CHECK(info.n_vocab > 0);
    /* The result goes out once. */
    apr_model *again = NULL;
    CHECK_EQ_INT(apr_loader_take(l, &again), APR_ERR_INVALID);
    CHECK(again == NULL);
    apr_loader_free(l);
    apr_model_free(m);
}

TEST(loader_reports_the_load_failure_with_its_message)
{
    apr_model_params p = cpu_params();
    apr_loader *l = NULL;
    REQUIRE(apr_loader_start("tests/fixtures/no-such-model.gguf", &p, &l) == APR_OK);
    REQUIRE(wait_done(l, 20000));
    apr_model *m = (apr_model *)1;
    apr_status st = apr_loader_take(l, &m);
    CHECK(st != APR_OK);
    CHECK(m == NULL);
    CHECK(strstr(apr_last_error(), "no-such-model.gguf") != NULL);
    apr_loader_free(l);
}

TEST(loader_says_busy_until_the_load_ends)
{
    apr_model_params p = cpu_params();
    apr_loader *l = NULL;
    REQUIRE(apr_loader_start(MODEL, &p, &l) == APR_OK);
    apr_model *m = NULL;
    apr_status st = apr_loader_take(l, &m);  /* usually before the thread is done */
    CHECK(st == APR_ERR_BUSY || st == APR_OK);
    if (st == APR_ERR_BUSY) {
        CHECK(m == NULL);
        REQUIRE(wait_done(l, 20000));
        CHECK_EQ_INT(apr_loader_take(l, &m), APR_OK);
    }
    CHECK(m != NULL);
    apr_model_free(m);
    apr_loader_free(l);
}

/* Given up at once, the thread frees the model and the loader when it
 * ends (the ASan build's leak check sees anything left behind). */
TEST(loader_given_up_frees_itself_when_its_thread_ends)
{
    apr_model_params p = cpu_params();
    for (int i = 0; i < 4; i++) {
        apr_loader *l = NULL;
        REQUIRE(apr_loader_start(MODEL, &p, &l) == APR_OK);
        apr_loader_free(l);
    }
    /* Let the threads finish before the process (and its leak check) ends. */
    struct timespec ts = { 0, 500 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    CHECK(apr_loader_fd(NULL) == -1);
    apr_loader_free(NULL);
}
