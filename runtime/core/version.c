/* version.c — what this build is. The Makefile passes the version and the git
 * revision; the compiler names itself. */
#include "apr.h"

#ifndef APR_VERSION
#define APR_VERSION "0.0.0"
#endif
#ifndef APR_GIT_REV
#define APR_GIT_REV "unknown"
#endif

const char *apr_version(void) { return APR_VERSION; }
const char *apr_git_revision(void) { return APR_GIT_REV; }

const char *apr_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int apr_cuda_compiled(void)
{
#ifdef APR_CUDA
    return 1;
#else
    return 0;
#endif
}
