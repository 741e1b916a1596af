/* apr.h — the public C API of the apr runtime.
 *
 * This is the only header Lua sees: scripts/gen_ffi.lua turns it into
 * lua/apr/ffi.lua at build time, so it holds only what LuaJIT's ffi.cdef
 * accepts: no macros beyond the guard and includes, no inline functions, no
 * bitfields, no _Float16. Constants are enums.
 *
 * Conventions (docs/c-api.md says more):
 *  - Functions that can fail return apr_status (APR_OK = 0, a negative code
 *    otherwise) and set a thread-local message read by apr_last_error().
 *    Functions returning a pointer return NULL on failure and set the message.
 *  - Handles are opaque and come in pairs: apr_X_open/apr_X_close or
 *    apr_X_new/apr_X_free. Every close/free accepts NULL.
 *  - Out-parameters come last. Strings returned as const char * belong to the
 *    object they came from and live as long as it does.
 */
#ifndef APR_H
#define APR_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ===================================================================== */
/* Status codes and errors                                               */
/* ===================================================================== */

typedef enum apr_status {
    APR_OK = 0,
    APR_ERR_INVALID = -1,     /* the caller passed a bad argument */
    APR_ERR_IO = -2,          /* open/read/write/mmap failed */
    APR_ERR_NOMEM = -3,       /* allocation failed or a budget was exceeded */
    APR_ERR_FORMAT = -4,      /* a file's content is malformed */
    APR_ERR_RANGE = -5,       /* an index, id or size is out of range */
    APR_ERR_NOT_FOUND = -6,   /* no such key, tensor or file */
    APR_ERR_UNSUPPORTED = -7, /* well-formed but not handled (type, architecture) */
    APR_ERR_DEVICE = -8,      /* no GPU, or the GPU driver reported a failure */
    APR_ERR_CANCELLED = -9,   /* the operation was stopped on request */
    APR_ERR_BUSY = -10        /* a queue or pool is full; try again later */
} apr_status;

/* The name of a status code ("APR_ERR_FORMAT"); never NULL. */
const char *apr_status_str(apr_status s);

/* The message of the last failure on this thread ("" if none). Valid until the
 * next failing call on the same thread. */
const char *apr_last_error(void);

/* ===================================================================== */
/* Build information                                                     */
/* ===================================================================== */

/* Static strings describing this build; never NULL. */
const char *apr_version(void);       /* "0.1.0" */
const char *apr_git_revision(void);  /* short hash, "+dirty" if modified, or "unknown" */
const char *apr_compiler(void);      /* e.g. "gcc 12.2.0" */
int apr_cuda_compiled(void);         /* 1 if built with the CUDA backend */

/* ===================================================================== */
/* Interrupts (Ctrl+C)                                                   */
/* ===================================================================== */

/* Installs the SIGINT handler: the first Ctrl+C sets a flag, a second one
 * before the flag is cleared kills the process. Called once by `apr`'s main. */
void apr_interrupt_install(void);
/* 1 if Ctrl+C was pressed since the last apr_interrupt_clear(). Long-running
 * runtime functions poll it and return APR_ERR_CANCELLED. */
int apr_interrupted(void);
void apr_interrupt_clear(void);

/* ===================================================================== */
/* Terminal and memory returned to callers                               */
/* ===================================================================== */

/* Frees memory that an apr function documents as the caller's to free. */
void apr_free(void *p);

int apr_term_isatty(int fd);
/* Reads one line from stdin (without its newline), with line editing and
 * history when stdin is a terminal and GNU readline is installed. Returns a
 * string to release with apr_free, or NULL at end of input. */
char *apr_term_readline(const char *prompt);
void apr_term_add_history(const char *line);
void apr_term_load_history(const char *path);  /* missing file: no-op */
void apr_term_save_history(const char *path);

#ifdef __cplusplus
}
#endif

#endif /* APR_H */
