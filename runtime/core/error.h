/* error.h — setting the thread-local error message (internal).
 *
 * Every public entry point validates its arguments with one APR_CHECK line per
 * condition (the habit of neovim's VALIDATE macros): on failure it records a
 * message naming the input and returns the code. */
#ifndef APR_CORE_ERROR_H
#define APR_CORE_ERROR_H

#include "apr.h"

/* Records a printf-style message for apr_last_error() and returns code, so a
 * failure path reads `return apr_error(APR_ERR_IO, "open %s: %s", ...)`. */
apr_status apr_error(apr_status code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears the message (used by tests; failures overwrite it anyway). */
void apr_error_clear(void);

/* The last message without its leading "PREFIX: ", when it starts so: for
 * a caller about to put that prefix (a file's path) in front of it, since
 * the GGUF reader's messages name the file already ("FILE: FILE: key ..."
 * otherwise). */
const char *apr_last_error_after(const char *prefix);

#define APR_CHECK(cond, code, ...) \
    do { if (!(cond)) return apr_error((code), __VA_ARGS__); } while (0)

/* For functions returning a pointer: record the message and return NULL. */
#define APR_CHECK_NULL(cond, code, ...) \
    do { if (!(cond)) { apr_error((code), __VA_ARGS__); return NULL; } } while (0)

/* Propagate a failure from a callee that has already set the message. */
#define APR_TRY(expr) \
    do { apr_status apr_try_s_ = (expr); if (apr_try_s_ != APR_OK) return apr_try_s_; } while (0)

#endif
