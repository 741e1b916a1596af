/* error_test.c — status names and the thread-local message. */
#include "test.h"
#include "core/error.h"

#include <pthread.h>

static apr_status fails_with_path(const char *path)
{
    APR_CHECK(path[0] == '/', APR_ERR_INVALID, "%s: not an absolute path", path);
    return APR_OK;
}

TEST(error_check_sets_message_and_code)
{
    apr_error_clear();
    CHECK_EQ_INT(fails_with_path("rel/x"), APR_ERR_INVALID);
    CHECK_EQ_STR(apr_last_error(), "rel/x: not an absolute path");
    CHECK_EQ_INT(fails_with_path("/abs"), APR_OK);
}

TEST(error_status_names_are_distinct)
{
    CHECK_EQ_STR(apr_status_str(APR_OK), "APR_OK");
    CHECK_EQ_STR(apr_status_str(APR_ERR_FORMAT), "APR_ERR_FORMAT");
    CHECK_EQ_STR(apr_status_str((apr_status)-999), "APR_ERR_UNKNOWN");
    for (int a = 0; a >= -10; a--)
        for (int b = a - 1; b >= -10; b--)
            CHECK(strcmp(apr_status_str((apr_status)a), apr_status_str((apr_status)b)) != 0);
}

static void *other_thread(void *arg)
{
    (void)arg;
    apr_error(APR_ERR_IO, "from the other thread");
    return NULL;
}

TEST(error_message_is_per_thread)
{
    apr_error(APR_ERR_RANGE, "mine");
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, other_thread, NULL) == 0);
    pthread_join(t, NULL);
    CHECK_EQ_STR(apr_last_error(), "mine");
}
