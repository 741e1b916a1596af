/* lockfile_test.c — flock as huggingface_hub takes it (runtime/core/lockfile.c):
 * held, it makes another taker wait and then give up. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apr.h"
#include "test.h"

TEST(lockfile_excludes_a_second_holder)
{
    char dir[] = "/tmp/apr-lock-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/blob.lock", dir);
    int a = -1, b = -1;
    CHECK_EQ_INT(apr_lockfile_acquire(path, 0, &a), APR_OK);
    CHECK(a >= 0);
    /* Another open file description: flock conflicts, even in one process. */
    CHECK_EQ_INT(apr_lockfile_acquire(path, 0.2, &b), APR_ERR_BUSY);
    CHECK_EQ_INT(b, -1);
    CHECK(strstr(apr_last_error(), "locked by another process") != NULL);
    apr_lockfile_release(a);
    CHECK_EQ_INT(apr_lockfile_acquire(path, 0, &b), APR_OK);
    apr_lockfile_release(b);
    apr_lockfile_release(-1);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir/x.lock", dir);
    CHECK_EQ_INT(apr_lockfile_acquire(missing, 0, &a), APR_ERR_IO);
    unlink(path);
    rmdir(dir);
}
