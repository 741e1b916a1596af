/* journal_test.c — a download's progress on disk (runtime/net/journal.c):
 * it round-trips, and anything that does not describe the file is refused
 * without touching what the caller has. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/journal.h"
#include "test.h"

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

TEST(journal_round_trips_and_refuses_what_is_not_this_file)
{
    char dir[] = "/tmp/apr-journal-XXXXXX";
    REQUIRE(mkdtemp(dir));
    char path[256], tmp[256];
    snprintf(path, sizeof path, "%s/j", dir);
    snprintf(tmp, sizeof tmp, "%s/j.tmp", dir);

    apr_journal a = { .size = 2500 };
    REQUIRE(apr_journal_chunks(&a, 1000) == 0);
    CHECK_EQ_INT(a.n_chunks, 3);
    CHECK_EQ_INT(apr_journal_chunk_len(&a, 2), 500);
    a.got[0] = 1000;
    a.got[2] = 17;
    snprintf(a.validator, sizeof a.validator, "\"cdn-abc\"");
    REQUIRE(apr_journal_save(&a, path, tmp) == 0);
    CHECK(access(tmp, F_OK) != 0);

    apr_journal b = { .size = 2500 };
    REQUIRE(apr_journal_load(&b, path) == 0);
    CHECK_EQ_INT(b.chunk, 1000);
    CHECK_EQ_INT(b.n_chunks, 3);
    CHECK_EQ_INT(b.got[0], 1000);
    CHECK_EQ_INT(b.got[1], 0);
    CHECK_EQ_INT(b.got[2], 17);
    CHECK_EQ_INT(apr_journal_written(&b), 1017);
    CHECK_EQ_STR(b.validator, "\"cdn-abc\"");

    apr_journal c = { .size = 2501 };  /* another file's size */
    CHECK_EQ_INT(apr_journal_load(&c, path), -1);
    CHECK(c.got == NULL);
    const char *bad[] = {
        "apr download journal 1\nsize 2500\nchunk 1000\nsingle 0\nvalidator x\ngot 1000 0 501\n",
        "apr download journal 1\nsize 2500\nchunk 1000\nsingle 0\nvalidator x\ngot 1 -1 0\n",
        "apr download journal 1\nsize 2500\nchunk 1000\nsingle 2\nvalidator x\ngot 0 0 0\n",
        "apr download journal 1\nsize 2500\nchunk 3000\nsingle 0\nvalidator x\ngot 0\n",
        "apr download journal 1\nsize 2500\nchunk 1000\nsingle 0\ngot 0 0 0\n",
        "apr download journal 1\nsize 2500\n",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(path, bad[i]);
        if (apr_journal_load(&b, path) != -1) test_fail(__FILE__, __LINE__, "journal %zu was taken", i);
    }
    CHECK_EQ_INT(b.got[2], 17);  /* a refused journal leaves the old state */
    unlink(path);
    CHECK_EQ_INT(apr_journal_load(&b, path), -1);
    apr_journal_clear(&a);
    apr_journal_clear(&b);
    apr_journal_clear(&b);
    rmdir(dir);
}
