/* test.h — the C test runner's vocabulary.
 *
 *   TEST(gguf_rejects_bad_magic) {
 *       CHECK(x == 1);                 // records a failure, carries on
 *       REQUIRE(p != NULL);            // records a failure, ends the test
 *       CHECK_EQ_INT(a, b);            // shows both values on failure
 *       if (!have_gpu) SKIP("no CUDA device");
 *   }
 *
 * Tests register themselves at load time; test_main.c runs them all, or those
 * whose name contains the first command-line argument. Each test runs in the
 * repository root, so fixture paths are relative to it. Randomness in tests
 * is always seeded explicitly. */
#ifndef APR_TEST_H
#define APR_TEST_H

#include <stdio.h>
#include <string.h>

typedef void (*test_fn)(void);
void test_register(const char *name, const char *file, test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void test_skip(const char *reason);
int test_failed_now(void);

#define TEST(name)                                                         \
    static void test_##name(void);                                         \
    __attribute__((constructor)) static void register_##name(void)         \
    { test_register(#name, __FILE__, test_##name); }                       \
    static void test_##name(void)

#define CHECK(cond) \
    do { if (!(cond)) test_fail(__FILE__, __LINE__, "CHECK(%s)", #cond); } while (0)
#define REQUIRE(cond) \
    do { if (!(cond)) { test_fail(__FILE__, __LINE__, "REQUIRE(%s)", #cond); return; } } while (0)
#define CHECK_EQ_INT(a, b) \
    do { long long a_ = (long long)(a), b_ = (long long)(b); \
         if (a_ != b_) test_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, a_, b_); } while (0)
#define CHECK_EQ_STR(a, b) \
    do { const char *a_ = (a), *b_ = (b); \
         if (!a_ || !b_ || strcmp(a_, b_) != 0) \
             test_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)"); } while (0)
#define CHECK_NEAR(a, b, tol) \
    do { double a_ = (a), b_ = (b); \
         if (!(a_ - b_ <= (tol) && b_ - a_ <= (tol))) \
             test_fail(__FILE__, __LINE__, "%s ~= %s (%.9g vs %.9g, tol %g)", #a, #b, a_, b_, (double)(tol)); } while (0)
#define SKIP(reason) do { test_skip(reason); return; } while (0)

/* The bytes of a whole file, with a NUL after them (the caller frees);
 * *size gets their count. NULL if the file cannot be read. */
void *test_read_file(const char *path, size_t *size);

/* Runs fn(arg) in a child process and returns its exit status (what fn
 * returned, 0..255), or -1 if it did not end within `seconds` (the child is
 * then killed) or died of a signal: for calls that must not block or crash
 * the runner when they go wrong. */
int test_in_child(int (*fn)(const void *arg), const void *arg, int seconds);

#endif
