/* error.c — status names and the thread-local last-error message. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One message per thread: the engine thread and the Lua thread never
 * overwrite each other's failure. 512 bytes holds a path and a reason. */
static _Thread_local char last_error[512];

apr_status apr_error(apr_status code, const char *fmt, ...)
{
    /* formatted aside first: callers prefix context to the previous
     * message by passing apr_last_error() itself as an argument */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return code;
}

void apr_error_clear(void) { last_error[0] = '\0'; }

const char *apr_last_error(void) { return last_error; }

const char *apr_last_error_after(const char *prefix)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n && strncmp(last_error, prefix, n) == 0 && last_error[n] == ':' && last_error[n + 1] == ' ')
        return last_error + n + 2;
    return last_error;
}

const char *apr_status_str(apr_status s)
{
    switch (s) {
    case APR_OK: return "APR_OK";
    case APR_ERR_INVALID: return "APR_ERR_INVALID";
    case APR_ERR_IO: return "APR_ERR_IO";
    case APR_ERR_NOMEM: return "APR_ERR_NOMEM";
    case APR_ERR_FORMAT: return "APR_ERR_FORMAT";
    case APR_ERR_RANGE: return "APR_ERR_RANGE";
    case APR_ERR_NOT_FOUND: return "APR_ERR_NOT_FOUND";
    case APR_ERR_UNSUPPORTED: return "APR_ERR_UNSUPPORTED";
    case APR_ERR_DEVICE: return "APR_ERR_DEVICE";
    case APR_ERR_CANCELLED: return "APR_ERR_CANCELLED";
    case APR_ERR_BUSY: return "APR_ERR_BUSY";
    }
    return "APR_ERR_UNKNOWN";
}
