/* journal.c — a download's progress on disk, for resuming it.
 *
 * A small text file beside the data (PATH.resume):
 *
 *   apr download journal 1
 *   size 19850000000
 *   chunk 67108864
 *   single 0
 *   validator "etag"
 *   got 67108864 67108864 1234 0 ...
 *
 * It is rewritten whole (tmp + rename) after the bytes it counts were
 * written with pwrite, so after a process is killed it never claims bytes
 * the file lacks. It is not fsynced: after a power loss the final SHA-256
 * catches counted bytes that never reached the disk. Anything that does
 * not describe this file (another size, a count past its chunk, a short or
 * garbled file) is ignored, and the download starts from nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/journal.h"

int apr_journal_chunks(apr_journal *j, int64_t chunk)
{
    if (chunk < 1) chunk = 1;
    j->chunk = chunk;
    j->n_chunks = j->size > 0 ? (int)((j->size + chunk - 1) / chunk) : 0;
    free(j->got);
    j->got = calloc((size_t)j->n_chunks + 1, sizeof *j->got);
    return j->got ? 0 : -1;
}

int64_t apr_journal_chunk_start(const apr_journal *j, int c) { return (int64_t)c * j->chunk; }

int64_t apr_journal_chunk_len(const apr_journal *j, int c)
{
    int64_t left = j->size - apr_journal_chunk_start(j, c);
    return left < j->chunk ? left : j->chunk;
}

int64_t apr_journal_written(const apr_journal *j)
{
    int64_t n = 0;
    for (int c = 0; c < j->n_chunks; c++) n += j->got[c];
    return n;
}

int apr_journal_save(const apr_journal *j, const char *path, const char *tmp)
{
    FILE *f = fopen(tmp, "wb");
    if (!f) return -1;
    fprintf(f, "apr download journal 1\nsize %lld\nchunk %lld\nsingle %d\nvalidator %s\ngot",
            (long long)j->size, (long long)j->chunk, j->single, j->validator);
    for (int c = 0; c < j->n_chunks; c++) fprintf(f, " %lld", (long long)j->got[c]);
    fputc('\n', f);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad || rename(tmp, path) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

int apr_journal_load(apr_journal *j, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    long long size = -1, chunk = 0;
    int single = 0, ok = 0;
    char line[APR_JOURNAL_ETAG_MAX + 32];
    apr_journal t = { .size = j->size };
    if (fgets(line, sizeof line, f) && strcmp(line, "apr download journal 1\n") == 0 &&
        fscanf(f, "size %lld\nchunk %lld\nsingle %d\n", &size, &chunk, &single) == 3 &&
        size == j->size && chunk >= 1 && chunk <= j->size && (single == 0 || single == 1) &&
        fgets(line, sizeof line, f) && strncmp(line, "validator ", 10) == 0 &&
        apr_journal_chunks(&t, single ? j->size : chunk) == 0) {
        line[strcspn(line, "\n")] = '\0';
        size_t k = strlen(line + 10);
        if (k >= sizeof t.validator) k = sizeof t.validator - 1;
        memcpy(t.validator, line + 10, k);
        t.validator[k] = '\0';
        t.single = single;
        ok = fscanf(f, "got") == 0;
        for (int c = 0; ok && c < t.n_chunks; c++) {
            long long g;
            ok = fscanf(f, " %lld", &g) == 1 && g >= 0 && g <= apr_journal_chunk_len(&t, c);
            if (ok) t.got[c] = g;
        }
    }
    fclose(f);
    if (!ok) {
        apr_journal_clear(&t);
        return -1;
    }
    apr_journal_clear(j);
    *j = t;
    return 0;
}

void apr_journal_clear(apr_journal *j)
{
    free(j->got);
    j->got = NULL;
}
