/* synth_test.c — apr_synth_fill: random tensors with the mean and spread
 * asked for, the same bytes at any thread count, and refusals. */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "apr.h"
#include "core/parallel.h"

typedef struct { int dtype; int64_t ne0, ne1; double mean, std; } spec;

static const spec specs[] = {
    { APR_Q4_K, 1024, 512, 0, 1 / 32.0 },
    { APR_Q6_K, 2048, 256, 0, 1 / 45.25 },
    { APR_Q8_0, 896, 512, 0, 0.0334 },
    { APR_Q5_0, 896, 512, 0, 0.0334 },
    { APR_Q4_0, 512, 512, 0, 0.05 },
    { APR_F16, 512, 512, 0, 0.05 },
    { APR_BF16, 512, 256, 0, 0.05 },
    { APR_F32, 4096, 1, 1, 0.1 },
};
#define N_SPECS (int)(sizeof specs / sizeof *specs)

/* Writes every spec's tensor with seed 9 to path. */
static int write_model(const char *path)
{
    apr_gguf_writer *w = NULL;
    if (apr_gguf_writer_new(&w) != APR_OK) return 0;
    int ok = 1;
    for (int i = 0; i < N_SPECS && ok; i++) {
        char name[32];
        snprintf(name, sizeof name, "t%d", i);
        int64_t ne[2] = { specs[i].ne0, specs[i].ne1 };
        ok = apr_gguf_writer_add_tensor(w, name, specs[i].dtype, 2, ne) == APR_OK;
    }
    ok = ok && apr_gguf_writer_begin(w, path) == APR_OK;
    for (int i = 0; i < N_SPECS && ok; i++)
        ok = apr_synth_fill(w, i, specs[i].dtype, specs[i].ne0 * specs[i].ne1, specs[i].mean, specs[i].std, 9) == APR_OK;
    ok = ok && apr_gguf_writer_finish(w) == APR_OK;
    if (!ok) test_fail(__FILE__, __LINE__, "writing %s: %s", path, apr_last_error());
    apr_gguf_writer_free(w);
    return ok;
}

TEST(synth_fill_gives_the_asked_statistics_at_any_thread_count)
{
    char dir[] = "/tmp/apr-synth-XXXXXX", a[64], b[64];
    REQUIRE(mkdtemp(dir));
    snprintf(a, sizeof a, "%s/a.gguf", dir);
    snprintf(b, sizeof b, "%s/b.gguf", dir);
    int saved = apr_parallel_threads();
    apr_parallel_set_threads(1);
    int ok = write_model(a);
    apr_parallel_set_threads(3);
    ok = ok && write_model(b);
    apr_parallel_set_threads(saved);
    REQUIRE(ok);

    size_t na = 0, nb = 0;
    void *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    CHECK(pa && pb && na == nb && memcmp(pa, pb, na) == 0);
    free(pa);
    free(pb);

    apr_gguf *f = NULL;
    REQUIRE(apr_gguf_open(a, &f) == APR_OK);
    for (int i = 0; i < N_SPECS; i++) {
        apr_gguf_tensor_info t;
        REQUIRE(apr_gguf_tensor(f, i, &t) == APR_OK);
        apr_stats st;
        CHECK_EQ_INT(apr_tensor_stats(t.type, t.data, t.ne[0] * t.ne[1], &st), APR_OK);
        CHECK_EQ_INT(st.n_nan + st.n_inf, 0);
        /* the mean within 5 standard errors, the std within 2% */
        const double n = (double)(t.ne[0] * t.ne[1]);
        if (!(fabs(st.mean - specs[i].mean) < 5 * specs[i].std / sqrt(n) && fabs(st.std / specs[i].std - 1) < 0.02))
            test_fail(__FILE__, __LINE__, "%s: mean %g std %g, wanted %g and %g", apr_dtype_name(t.type), st.mean,
                      st.std, specs[i].mean, specs[i].std);
    }
    apr_gguf_close(f);
    unlink(a);
    unlink(b);
    rmdir(dir);
}

TEST(synth_fill_refuses_what_it_cannot_make)
{
    char dir[] = "/tmp/apr-synth-XXXXXX", path[64];
    REQUIRE(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/x.gguf", dir);
    apr_gguf_writer *w = NULL;
    REQUIRE(apr_gguf_writer_new(&w) == APR_OK);
    int64_t ne[2] = { 256, 4 };
    REQUIRE(apr_gguf_writer_add_tensor(w, "q", APR_Q4_K, 2, ne) == APR_OK);
    REQUIRE(apr_gguf_writer_add_tensor(w, "k", APR_Q2_K, 2, ne) == APR_OK);
    REQUIRE(apr_gguf_writer_begin(w, path) == APR_OK);
    CHECK_EQ_INT(apr_synth_fill(w, 0, APR_Q4_K, 1024, 0.5, 0.1, 1), APR_ERR_UNSUPPORTED);   /* blocks have mean 0 */
    CHECK_EQ_INT(apr_synth_fill(w, 0, APR_Q4_K, 512, 0, 0.1, 1), APR_ERR_INVALID);          /* not the tensor's size */
    CHECK_EQ_INT(apr_synth_fill(w, 0, APR_Q6_K, 1024, 0, 0.1, 1), APR_ERR_INVALID);         /* not its type */
    CHECK_EQ_INT(apr_synth_fill(w, 1, APR_Q2_K, 1024, 0, 0.1, 1), APR_ERR_UNSUPPORTED);
    CHECK_EQ_INT(apr_synth_fill(w, 0, APR_Q4_K, 1024, 0, NAN, 1), APR_ERR_INVALID);
    CHECK_EQ_INT(apr_synth_fill(w, 0, APR_Q4_K, 1024, 0, 0.1, 1), APR_OK);
    apr_gguf_writer_free(w);   /* unfinished: the file goes */
    CHECK(access(path, F_OK) != 0);
    rmdir(dir);
}
