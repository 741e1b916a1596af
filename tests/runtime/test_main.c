/* test_main.c — runs the registered C tests and counts the outcomes.
 *
 * usage: test_runtime [--counts FILE] [FILTER]
 * Prints one line per test and a summary; with --counts, also writes
 * "passed failed skipped" to FILE for scripts/test_summary.sh. */
#include "test.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 4096

static struct { const char *name, *file; test_fn fn; } tests[MAX_TESTS];
static int n_tests, cur_failed, cur_skipped;
static char skip_reason[256];

void test_register(const char *name, const char *file, test_fn fn)
{
    if (n_tests == MAX_TESTS) { fprintf(stderr, "too many tests\n"); exit(2); }
    tests[n_tests].name = name;
    tests[n_tests].file = file;
    tests[n_tests].fn = fn;
    n_tests++;
}

void test_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    cur_failed++;
    if (cur_failed > 10) return; /* one broken loop should not flood the log */
    fprintf(stdout, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
}

void *test_read_file(const char *path, size_t *size)
{
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *p = NULL;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (n >= 0 && fseek(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)n + 1)) != NULL) {
        if (fread(p, 1, (size_t)n, f) == (size_t)n) {
            p[n] = '\0';
            *size = (size_t)n;
        } else {
            free(p);
            p = NULL;
        }
    }
    fclose(f);
    return p;
}

int test_in_child(int (*fn)(const void *arg), const void *arg, int seconds)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) _exit(fn(arg) & 0xff);
    int status = 0;
    for (int waited_ms = 0; waited_ms < seconds * 1000; waited_ms += 10) {
        pid_t done = waitpid(pid, &status, WNOHANG);
        if (done == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        const struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
        nanosleep(&ten_ms, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

void test_skip(const char *reason)
{
    cur_skipped = 1;
    snprintf(skip_reason, sizeof skip_reason, "%s", reason);
}

int test_failed_now(void) { return cur_failed > 0; }

int main(int argc, char **argv)
{
    const char *counts = NULL, *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--counts") == 0 && i + 1 < argc) counts = argv[++i];
        else filter = argv[i];
    }
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter) && !strstr(tests[i].file, filter)) continue;
        cur_failed = cur_skipped = 0;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        if (cur_failed) {
            failed++;
            printf("FAIL %s (%s, %d failed checks)\n", tests[i].name, tests[i].file, cur_failed);
        } else if (cur_skipped) {
            skipped++;
            printf("skip %s: %s\n", tests[i].name, skip_reason);
        } else {
            passed++;
            if (ms > 1000) printf("ok   %s (%.1f s)\n", tests[i].name, ms / 1e3);
        }
        fflush(stdout);
    }
    printf("C runtime: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (counts) {
        FILE *f = fopen(counts, "w");
        if (f) { fprintf(f, "%d %d %d\n", passed, failed, skipped); fclose(f); }
    }
    return failed ? 1 : 0;
}
