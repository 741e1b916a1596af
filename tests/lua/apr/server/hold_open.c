/* hold_open.c — an LD_PRELOAD library for the server specs: opening the
 * file named by $APR_TEST_HOLD_OPEN waits until a file of that name plus
 * ".release" exists, forever if it never does, as a model on a hung
 * network filesystem would. serve_helper.lua compiles it (cc) on demand;
 * the server under test is the real binary, unchanged. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void hold(const char *path)
{
    const char *want = getenv("APR_TEST_HOLD_OPEN");
    if (!want || !path || strcmp(path, want) != 0) return;
    char release[4096];
    snprintf(release, sizeof release, "%s.release", want);
    struct stat st;
    while (stat(release, &st) != 0) usleep(10000);
}

/* open's mode argument exists only with O_CREAT or O_TMPFILE. */
#define MODE_ARG(flags, mode)                                    \
    do {                                                         \
        if ((flags) & (O_CREAT | O_TMPFILE)) {                   \
            va_list ap;                                          \
            va_start(ap, flags);                                 \
            mode = (mode_t)va_arg(ap, int);                      \
            va_end(ap);                                          \
        }                                                        \
    } while (0)

int open(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    hold(path);
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    return real(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    hold(path);
    int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
    return real(path, flags, mode);
}

int openat(int dir, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    hold(path);
    int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat");
    return real(dir, path, flags, mode);
}

int openat64(int dir, const char *path, int flags, ...)
{
    mode_t mode = 0;
    MODE_ARG(flags, mode);
    hold(path);
    int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, "openat64");
    return real(dir, path, flags, mode);
}
