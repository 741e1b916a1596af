/* journal.h — a download's progress on disk, for resuming it (internal;
 * runtime/net/journal.c). */
#ifndef APR_NET_JOURNAL_H
#define APR_NET_JOURNAL_H

#include <stdint.h>

enum { APR_JOURNAL_ETAG_MAX = 192 };

/* What a partly downloaded file holds: the file is cut into chunks, and
 * got[c] bytes from the start of chunk c are written. */
typedef struct apr_journal {
    int64_t size;             /* the file's size in bytes */
    int64_t chunk;            /* bytes per chunk (the last one may be shorter) */
    int n_chunks;
    int single;               /* 1: one stream without ranges (one chunk, the whole file) */
    char validator[APR_JOURNAL_ETAG_MAX];  /* the ETag the bytes came with ("" unknown) */
    int64_t *got;             /* [n_chunks] */
} apr_journal;

/* Cuts j->size into chunks of `chunk` bytes with nothing written (got
 * reallocated, zeroed). 0, or -1 when out of memory. */
int apr_journal_chunks(apr_journal *j, int64_t chunk);
int64_t apr_journal_chunk_start(const apr_journal *j, int c);
int64_t apr_journal_chunk_len(const apr_journal *j, int c);
/* Bytes written in all. */
int64_t apr_journal_written(const apr_journal *j);
/* Writes j to path through tmp renamed over it (a reader, or a process
 * killed mid-write, sees the old journal or the new one, whole). 0 or -1. */
int apr_journal_save(const apr_journal *j, const char *path, const char *tmp);
/* Loads path into j when it describes a file of j->size bytes, every count
 * within its chunk; 0 if taken, else -1 with j unchanged but for got. */
int apr_journal_load(apr_journal *j, const char *path);
/* Frees got. */
void apr_journal_clear(apr_journal *j);

#endif
