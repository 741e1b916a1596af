/* file.h — opening input files without blocking on what is not a file
 * (internal).
 *
 * open() of a FIFO for reading waits for a writer, forever if none comes,
 * and a device or directory is no model or tokenizer either: every reader
 * of a path (model files, sidecars, tokenizer.json) opens it here, which
 * checks the type of what it opened before anything reads. */
#ifndef APR_CORE_FILE_H
#define APR_CORE_FILE_H

#include <stdint.h>

#include "apr.h"

/* Opens path read-only (O_NONBLOCK, so a FIFO does not wait for a writer;
 * O_CLOEXEC) and keeps it only if fstat says it is a regular file: a FIFO,
 * directory, device or socket fails with APR_ERR_IO and one line, "PATH:
 * not a regular file (a FIFO)". A missing file is APR_ERR_NOT_FOUND, other
 * failures APR_ERR_IO with the system's reason, each naming the path. On
 * success *fd is the descriptor, back in blocking mode, which the caller
 * closes, and *size the file's size in bytes; on failure *fd is -1. */
apr_status apr_file_open_regular(const char *path, int *fd, uint64_t *size);

#endif
