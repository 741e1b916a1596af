/* apr_write_test.c — GGUF -> APR -> GGUF: every fixture, every codec and
 * filter, several chunk sizes; the GGUF written back is the original byte
 * for byte, every decoded tensor equals the source's, and a job freed before
 * it finished leaves no file behind. The default model's round trip is in
 * tests/lua/apr/cmd/convert_spec.lua (through `apr convert`). */
#include "test.h"
#include "apr.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

static const char *FIXTURES[] = {
    "tests/fixtures/models/tiny-q8_0.gguf", "tests/fixtures/models/tiny-q4_k_m.gguf",
    "tests/fixtures/models/tiny-f16.gguf", "tests/fixtures/models/gqa5-q4_k_m.gguf",
};

static void tmp_path(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "/tmp/apr-aprf-write-%d-%s", (int)getpid(), name);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    char *pa = test_read_file(a, &na), *pb = test_read_file(b, &nb);
    int same = pa && pb && na == nb && memcmp(pa, pb, na) == 0;
    free(pa);
    free(pb);
    return same;
}

static apr_status convert(const apr_gguf *src, const char *out, int codec, int filter, uint32_t chunk, int threads,
                          char *source_sha)
{
    apr_aprf_write_params p;
    apr_aprf_write_params_default(&p);
    p.codec = codec;
    p.filter = filter;
    p.chunk_bytes = chunk;
    p.threads = threads;
    apr_aprf_writer *w;
    apr_status s = apr_aprf_writer_new(src, out, &p, &w);
    if (s != APR_OK) return s;
    apr_aprf_progress pr = { 0 };
    while (s == APR_OK && !pr.finished) s = apr_aprf_writer_step(w, &pr);
    if (s == APR_OK) s = apr_aprf_writer_finish(w);
    if (s == APR_OK && source_sha) apr_aprf_writer_digests(w, NULL, source_sha);
    apr_aprf_writer_free(w);
    return s;
}

static apr_status export_gguf(const apr_aprf *f, const char *out)
{
    apr_aprf_export *x;
    apr_status s = apr_aprf_export_new(f, out, 0, &x);
    if (s != APR_OK) return s;
    apr_aprf_progress pr = { 0 };
    while (s == APR_OK && !pr.finished) s = apr_aprf_export_step(x, &pr);
    if (s == APR_OK) s = apr_aprf_export_finish(x);
    apr_aprf_export_free(x);
    return s;
}

/* Every tensor of a decodes to the bytes of the same tensor of g. */
static int same_tensors(const apr_gguf *g, const apr_aprf *a)
{
    if (apr_gguf_n_tensors(g) != apr_aprf_n_tensors(a)) return 0;
    for (int64_t i = 0; i < apr_gguf_n_tensors(g); i++) {
        apr_gguf_tensor_info gt;
        apr_aprf_tensor_info at;
        apr_gguf_tensor(g, i, &gt);
        apr_aprf_tensor(a, i, &at);
        if (strcmp(gt.name, at.name) || gt.type != at.type || gt.nbytes != at.nbytes) return 0;
        void *buf = malloc(at.nbytes + 1);
        int ok = buf && apr_aprf_read_tensor(a, i, buf, 0) == APR_OK && memcmp(buf, gt.data, gt.nbytes) == 0;
        if (ok && at.codec == APR_CODEC_NONE) ok = at.data && memcmp(at.data, gt.data, gt.nbytes) == 0;
        free(buf);
        if (!ok) {
            fprintf(stderr, "    tensor %s differs: %s\n", gt.name, apr_last_error());
            return 0;
        }
    }
    return 1;
}

TEST(aprf_round_trip_every_fixture_codec_and_filter)
{
    const int codecs[] = { APR_CODEC_NONE, APR_CODEC_LZ4, APR_CODEC_ZSTD };
    const int filters[] = { APR_FILTER_NONE, APR_FILTER_BYTEPLANE };
    char apr[256], back[256];
    tmp_path(apr, sizeof apr, "rt.apr");
    tmp_path(back, sizeof back, "rt.gguf");
    for (size_t fi = 0; fi < sizeof FIXTURES / sizeof *FIXTURES; fi++) {
        apr_gguf *g;
        REQUIRE(apr_gguf_open(FIXTURES[fi], &g) == APR_OK);
        for (int c = 0; c < 3; c++) {
            for (int fl = 0; fl < 2; fl++) {
                /* small chunks: many per tensor, a short last one */
                char src_sha[65] = "";
                apr_status s = convert(g, apr, codecs[c], filters[fl], 40000, 0, src_sha);
                if (s != APR_OK) fprintf(stderr, "    %s\n", apr_last_error());
                REQUIRE(s == APR_OK);
                CHECK(!exists(back));
                apr_aprf *a;
                s = apr_aprf_open(apr, &a);
                if (s != APR_OK) fprintf(stderr, "    %s\n", apr_last_error());
                REQUIRE(s == APR_OK);
                CHECK(same_tensors(g, a));
                char rec[65];
                CHECK(apr_aprf_source_sha256(a, rec) == 1);
                CHECK_EQ_STR(rec, src_sha);
                s = export_gguf(a, back);
                if (s != APR_OK) fprintf(stderr, "    %s\n", apr_last_error());
                CHECK(s == APR_OK);
                if (!same_bytes(FIXTURES[fi], back))
                    test_fail(__FILE__, __LINE__, "%s: codec %d filter %d: the GGUF written back differs",
                              FIXTURES[fi], codecs[c], filters[fl]);
                apr_aprf_close(a);
                unlink(back);
            }
        }
        apr_gguf_close(g);
    }
    unlink(apr);
}

TEST(aprf_codecs_actually_compress_and_none_maps_in_place)
{
    apr_gguf *g;
    REQUIRE(apr_gguf_open("tests/fixtures/models/tiny-f16.gguf", &g) == APR_OK);
    char apr[256];
    tmp_path(apr, sizeof apr, "c.apr");
    /* f16 weights: zstd over byte planes shrinks them (docs/apr-format.md) */
    REQUIRE(convert(g, apr, APR_CODEC_ZSTD, APR_FILTER_AUTO, 0, 0, NULL) == APR_OK);
    apr_aprf *a;
    REQUIRE(apr_aprf_open(apr, &a) == APR_OK);
    int64_t i = apr_aprf_find_tensor(a, "token_embd.weight");
    REQUIRE(i >= 0);
    apr_aprf_tensor_info t;
    REQUIRE(apr_aprf_tensor(a, i, &t) == APR_OK);
    CHECK_EQ_INT(t.codec, APR_CODEC_ZSTD);
    CHECK_EQ_INT(t.filter, APR_FILTER_BYTEPLANE);
    CHECK(t.stored_bytes < t.nbytes * 95 / 100);
    CHECK(t.data == NULL);
    apr_aprf_close(a);
    /* none: every tensor is one span of the file, 4 KiB aligned */
    REQUIRE(convert(g, apr, APR_CODEC_NONE, APR_FILTER_AUTO, 0, 0, NULL) == APR_OK);
    REQUIRE(apr_aprf_open(apr, &a) == APR_OK);
    for (int64_t k = 0; k < apr_aprf_n_tensors(a); k++) {
        REQUIRE(apr_aprf_tensor(a, k, &t) == APR_OK);
        CHECK_EQ_INT(t.codec, APR_CODEC_NONE);
        CHECK(t.data != NULL);
        CHECK_EQ_INT(((const uint8_t *)t.data - (const uint8_t *)apr_aprf_base(a)) % 4096, 0);
        CHECK_EQ_INT(t.stored_bytes, t.nbytes);
    }
    apr_aprf_close(a);
    apr_gguf_close(g);
    unlink(apr);
}

TEST(aprf_result_does_not_depend_on_threads)
{
    apr_gguf *g;
    REQUIRE(apr_gguf_open("tests/fixtures/models/gqa5-q4_k_m.gguf", &g) == APR_OK);
    char a1[256], a2[256];
    tmp_path(a1, sizeof a1, "t1.apr");
    tmp_path(a2, sizeof a2, "t2.apr");
    REQUIRE(convert(g, a1, APR_CODEC_ZSTD, APR_FILTER_AUTO, 100000, 1, NULL) == APR_OK);
    REQUIRE(convert(g, a2, APR_CODEC_ZSTD, APR_FILTER_AUTO, 100000, 7, NULL) == APR_OK);
    CHECK(same_bytes(a1, a2));
    apr_gguf_close(g);
    unlink(a1);
    unlink(a2);
}

TEST(aprf_writer_freed_early_leaves_nothing)
{
    apr_gguf *g;
    REQUIRE(apr_gguf_open("tests/fixtures/models/tiny-q8_0.gguf", &g) == APR_OK);
    char out[256], tmp[300];
    tmp_path(out, sizeof out, "early.apr");
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
    apr_aprf_write_params p;
    apr_aprf_write_params_default(&p);
    p.chunk_bytes = 65536;
    p.threads = 2;
    apr_aprf_writer *w;
    REQUIRE(apr_aprf_writer_new(g, out, &p, &w) == APR_OK);
    apr_aprf_progress pr;
    REQUIRE(apr_aprf_writer_step(w, &pr) == APR_OK);
    CHECK(!pr.finished);
    CHECK(exists(tmp));
    CHECK(!exists(out));
    apr_aprf_writer_free(w);
    CHECK(!exists(tmp));
    CHECK(!exists(out));
    /* finish before every chunk is written is refused */
    REQUIRE(apr_aprf_writer_new(g, out, &p, &w) == APR_OK);
    CHECK(apr_aprf_writer_finish(w) == APR_ERR_INVALID);
    apr_aprf_writer_free(w);
    CHECK(!exists(out));
    /* a Ctrl+C stops the next step */
    REQUIRE(apr_aprf_writer_new(g, out, &p, &w) == APR_OK);
    apr_interrupt_install();
    raise(SIGINT);
    CHECK(apr_aprf_writer_step(w, &pr) == APR_ERR_CANCELLED);
    apr_interrupt_clear();
    apr_aprf_writer_free(w);
    CHECK(!exists(out) && !exists(tmp));
    apr_gguf_close(g);
}

TEST(aprf_export_refuses_a_digest_mismatch)
{
    /* An APR file whose recorded source digest is not what its contents give
     * back: the export fails and leaves nothing. */
    apr_gguf *g;
    REQUIRE(apr_gguf_open("tests/fixtures/models/tiny-q8_0.gguf", &g) == APR_OK);
    char apr[256], back[256];
    tmp_path(apr, sizeof apr, "mm.apr");
    tmp_path(back, sizeof back, "mm.gguf");
    apr_aprf_write_params p;
    apr_aprf_write_params_default(&p);
    p.source_sha256 = "00000000000000000000000000000000000000000000000000000000000000ff";
    apr_aprf_writer *w;
    REQUIRE(apr_aprf_writer_new(g, apr, &p, &w) == APR_OK);
    apr_aprf_progress pr = { 0 };
    while (!pr.finished) REQUIRE(apr_aprf_writer_step(w, &pr) == APR_OK);
    REQUIRE(apr_aprf_writer_finish(w) == APR_OK);
    apr_aprf_writer_free(w);
    apr_aprf *a;
    REQUIRE(apr_aprf_open(apr, &a) == APR_OK);
    CHECK(export_gguf(a, back) == APR_ERR_FORMAT);
    CHECK(strstr(apr_last_error(), "SHA-256") != NULL);
    CHECK(!exists(back));
    apr_aprf_close(a);
    apr_gguf_close(g);
    unlink(apr);
}
