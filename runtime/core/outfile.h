/* outfile.h — a file written front to back under a temporary name, hashed
 * as it goes, and renamed into place only when complete (internal).
 *
 * Conversions write tens of GB; one that fails, is interrupted (Ctrl+C) or
 * runs out of disk must leave nothing under the name the user asked for, and
 * whatever was there before stays until the new file is whole. The bytes go
 * to PATH.tmp.PID beside PATH (same folder: rename is atomic there), each
 * write at the end of what was written, through an SHA-256 of everything
 * written so far. */
#ifndef APR_CORE_OUTFILE_H
#define APR_CORE_OUTFILE_H

#include <stdint.h>

#include "apr.h"

typedef struct apr_outfile {
    char *path, *tmp;
    int fd;
    uint64_t pos;              /* bytes written */
    apr_sha256 *sha;           /* of the bytes written */
    int committed;
} apr_outfile;

/* Creates the temporary file for path. On failure nothing is left behind. */
apr_status apr_outfile_open(apr_outfile *o, const char *path);
/* Appends n bytes (data NULL: zeros) and hashes them. */
apr_status apr_outfile_write(apr_outfile *o, const void *data, uint64_t n);
/* Appends n bytes without hashing them: for a writer that hashes the same
 * bytes, in the same order, on another thread (apr_outfile_hash), so that
 * writing and hashing overlap. */
apr_status apr_outfile_append(apr_outfile *o, const void *data, uint64_t n);
/* Feeds n bytes (data NULL: zeros) to the hash only. */
void apr_outfile_hash(apr_outfile *o, const void *data, uint64_t n);
/* Appends zeros up to a multiple of align (a power of two). */
apr_status apr_outfile_pad(apr_outfile *o, uint64_t align);
/* The SHA-256 of what was written so far (32 bytes); the hash starts over. */
void apr_outfile_digest(apr_outfile *o, uint8_t *digest);
/* Closes the file and renames it onto path. */
apr_status apr_outfile_commit(apr_outfile *o);
/* Closes and, unless committed, removes the temporary file; frees o's
 * contents (not o). Safe on a zeroed or failed-to-open outfile. */
void apr_outfile_discard(apr_outfile *o);

#endif
