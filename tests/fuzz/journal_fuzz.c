/* journal_fuzz.c — libFuzzer target for the download journal's reader
 * (runtime/net/journal.c), the file a killed download resumes from.
 *
 * Besides "no crash, no leak, no out-of-bounds access" (ASan/UBSan): a
 * journal the reader takes describes the file (every count within its
 * chunk, the chunks covering the size), and writing it back and reading
 * that gives the same state. Seeds in tests/fuzz/seeds/journal. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/journal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], back[64], tmp[64];
    snprintf(path, sizeof path, "/tmp/apr-journal-fuzz-%d", (int)getpid());
    snprintf(back, sizeof back, "%s.back", path);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    apr_journal j = { .size = 4194304 };
    if (apr_journal_load(&j, path) == 0) {
        if (j.chunk < 1 || j.n_chunks != (int)((j.size + j.chunk - 1) / j.chunk)) __builtin_trap();
        for (int c = 0; c < j.n_chunks; c++) {
            if (j.got[c] < 0 || j.got[c] > apr_journal_chunk_len(&j, c)) __builtin_trap();
        }
        if (apr_journal_save(&j, back, tmp) == 0) {
            apr_journal k = { .size = j.size };
            if (apr_journal_load(&k, back) != 0) __builtin_trap();
            if (k.chunk != j.chunk || k.single != j.single || strcmp(k.validator, j.validator) != 0) __builtin_trap();
            if (memcmp(k.got, j.got, (size_t)j.n_chunks * sizeof *j.got) != 0) __builtin_trap();
            apr_journal_clear(&k);
        }
        unlink(back);
    }
    apr_journal_clear(&j);
    unlink(path);
    return 0;
}
