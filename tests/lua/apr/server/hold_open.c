/* hold_open.c — an LD_PRELOAD shim for serve_spec (test support only).
 *
 * open() of the path named by $APR_TEST_HOLD waits until the file named by
 * $APR_TEST_RELEASE exists (at most 60 s), so a spec can watch `apr serve`
 * while its first model is still loading. Specs used a FIFO for that until
 * the loader learnt to refuse FIFOs without blocking (issue 16).
 * serve_helper.lua compiles it with cc when a spec asks for it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static void hold(const char *path)
{
    const char *held = getenv("APR_TEST_HOLD"), *release = getenv("APR_TEST_RELEASE");
    if (!held || !release || !path || strcmp(path, held) != 0) return;
    const struct timespec ten_ms = { 0, 10 * 1000 * 1000 };
    for (int i = 0; i < 6000 && access(release, F_OK) != 0; i++) nanosleep(&ten_ms, NULL);
}

typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);

#define MODE_ARG(flags, mode)                          \
    mode_t mode = 0;                                   \
    if ((flags) & (O_CREAT | O_TMPFILE)) {             \
        va_list ap;                                    \
        va_start(ap, flags);                           \
        mode = (mode_t)va_arg(ap, int);                \
        va_end(ap);                                    \
    }

int open(const char *path, int flags, ...)
{
    MODE_ARG(flags, mode);
    hold(path);
    return ((open_fn)dlsym(RTLD_NEXT, "open"))(path, flags, mode);
}

int open64(const char *path, int flags, ...)
{
    MODE_ARG(flags, mode);
    hold(path);
    return ((open_fn)dlsym(RTLD_NEXT, "open64"))(path, flags, mode);
}

int openat(int dir, const char *path, int flags, ...)
{
    MODE_ARG(flags, mode);
    hold(path);
    return ((openat_fn)dlsym(RTLD_NEXT, "openat"))(dir, path, flags, mode);
}
