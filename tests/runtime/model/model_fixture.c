/* model_fixture.c — loading the tiny models and writing broken copies. */
#include "model_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

apr_model *fixture_load(const char *path, int n_threads)
{
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    p.n_threads = n_threads;
    apr_model *m = NULL;
    if (apr_model_load(path, &p, &m) != APR_OK) {
        printf("    load %s: %s\n", path, apr_last_error());
        return NULL;
    }
    return m;
}

apr_context *fixture_context(apr_model *m, int n_ctx, int n_seq, int n_batch)
{
    apr_context_params p;
    apr_context_params_default(&p);
    p.n_ctx = n_ctx;
    p.n_seq = n_seq;
    p.n_batch = n_batch;
    apr_context *c = NULL;
    if (apr_context_new(m, &p, &c) != APR_OK) {
        printf("    context: %s\n", apr_last_error());
        return NULL;
    }
    return c;
}

const char *fixture_tmp(const char *name)
{
    static char buf[8][256];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, 256, "/tmp/apr-model-test-%d-%s", (int)getpid(), name);
    return p;
}

int fixture_copy(const char *src, const char *dst, const fixture_edit *e)
{
    apr_gguf *f = NULL;
    apr_gguf_writer *w = NULL;
    int rc = 1;
    if (apr_gguf_open(src, &f) != APR_OK || apr_gguf_writer_new(&w) != APR_OK) goto done;
    for (int64_t i = 0; i < apr_gguf_n_kv(f); i++) {
        const char *key;
        apr_gguf_value v;
        if (apr_gguf_kv(f, i, &key, &v) != APR_OK) goto done;
        if (e->drop_key && strcmp(key, e->drop_key) == 0) continue;
        char renamed[256];
        if (e->rename_from && strncmp(key, e->rename_from, strlen(e->rename_from)) == 0) {
            snprintf(renamed, sizeof renamed, "%s%s", e->rename_to, key + strlen(e->rename_from));
            key = renamed;
        }
        apr_status s = e->set_str_key && strcmp(key, e->set_str_key) == 0
                           ? apr_gguf_writer_add_str(w, key, e->set_str_value, strlen(e->set_str_value))
                           : apr_gguf_writer_add_value(w, key, &v);
        if (s != APR_OK) goto done;
    }
    int64_t n = apr_gguf_n_tensors(f), *src_of = calloc((size_t)n, sizeof *src_of), k = 0;
    for (int64_t i = 0; i < n; i++) {
        apr_gguf_tensor_info t;
        apr_gguf_tensor(f, i, &t);
        if (e->drop_tensor && strcmp(t.name, e->drop_tensor) == 0) continue;
        if (apr_gguf_writer_add_tensor(w, t.name, t.type, t.n_dims, t.ne) != APR_OK) { free(src_of); goto done; }
        src_of[k++] = i;
    }
    if (apr_gguf_writer_begin(w, dst) != APR_OK) { free(src_of); goto done; }
    for (int64_t j = 0; j < k; j++) {
        apr_gguf_tensor_info t;
        apr_gguf_tensor(f, src_of[j], &t);
        uint8_t *data = malloc(t.nbytes);
        memcpy(data, t.data, t.nbytes);
        if (e->poke_tensor && strcmp(t.name, e->poke_tensor) == 0 && e->poke_at + 2 <= t.nbytes)
            memcpy(data + e->poke_at, &e->poke_value, 2);
        apr_status s = apr_gguf_writer_write(w, j, 0, data, t.nbytes);
        free(data);
        if (s != APR_OK) { free(src_of); goto done; }
    }
    free(src_of);
    rc = apr_gguf_writer_finish(w) == APR_OK ? 0 : 1;
done:
    if (rc) printf("    fixture_copy %s: %s\n", dst, apr_last_error());
    apr_gguf_writer_free(w);
    apr_gguf_close(f);
    return rc;
}
