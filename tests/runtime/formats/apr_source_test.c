/* apr_source_test.c — an APR file as a model source: the same metadata and
 * tensor bytes as its GGUF through every operation (whole tensors, ranges
 * that start and end inside chunks, from a file and from a memory image). */
#include "test.h"
#include "apr.h"
#include "formats/apr_format.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static apr_status write_apr(const char *gguf, const char *out, int codec, uint32_t chunk)
{
    apr_gguf *g;
    apr_status s = apr_gguf_open(gguf, &g);
    if (s != APR_OK) return s;
    apr_aprf_write_params p;
    apr_aprf_write_params_default(&p);
    p.codec = codec;
    p.chunk_bytes = chunk;
    apr_aprf_writer *w;
    s = apr_aprf_writer_new(g, out, &p, &w);
    apr_aprf_progress pr = { 0 };
    while (s == APR_OK && !pr.finished) s = apr_aprf_writer_step(w, &pr);
    if (s == APR_OK) s = apr_aprf_writer_finish(w);
    apr_aprf_writer_free(w);
    apr_gguf_close(g);
    return s;
}

/* Every tensor of src equals the GGUF's, whole and in odd ranges. */
static void check_source(apr_source *src, const apr_gguf *g)
{
    const apr_source_ops *ops = src->ops;
    CHECK_EQ_STR(src->info.format, "APR");
    CHECK_EQ_INT(src->info.n_tensors, apr_gguf_n_tensors(g));
    CHECK_EQ_INT(src->info.n_kv, apr_gguf_n_kv(g));
    for (int64_t k = 0; k < apr_gguf_n_kv(g); k++) {
        const char *ka, *kb;
        apr_gguf_value va, vb;
        REQUIRE(ops->kv(src, k, &ka, &va) == APR_OK);
        REQUIRE(apr_gguf_kv(g, k, &kb, &vb) == APR_OK);
        CHECK_EQ_STR(ka, kb);
        CHECK(va.size == vb.size && memcmp(va.data, vb.data, va.size - (va.type == APR_GGUF_STRING ? 8 : va.type == APR_GGUF_ARRAY ? 12 : 0)) == 0);
        CHECK_EQ_INT(ops->find_kv(src, kb), k);
    }
    for (int64_t i = 0; i < apr_gguf_n_tensors(g); i++) {
        apr_gguf_tensor_info gt;
        apr_tensor_info t;
        REQUIRE(apr_gguf_tensor(g, i, &gt) == APR_OK);
        REQUIRE(ops->tensor(src, i, &t) == APR_OK);
        CHECK_EQ_STR(t.name, gt.name);
        CHECK_EQ_INT(t.nbytes, gt.nbytes);
        CHECK_EQ_INT(ops->find_tensor(src, gt.name), i);
        CHECK(t.mapped == (strcmp(t.codec, "none") == 0));
        CHECK(t.mapped ? t.chunk_bytes == 0 : t.chunk_bytes > 0);
        const void *data;
        REQUIRE(ops->tensor_data(src, i, &data) == APR_OK);
        CHECK(memcmp(data, gt.data, gt.nbytes) == 0);
        ops->tensor_release(src, i);
        /* ranges: whole, a prefix, one ending inside a chunk, one spanning chunks from the middle */
        uint8_t *buf = malloc(gt.nbytes + 1);
        REQUIRE(buf);
        uint64_t n = gt.nbytes, ranges[][2] = { { 0, n }, { 0, n / 3 }, { n / 7, n / 2 }, { n / 5 + 1, n - n / 5 - 1 } };
        for (int r = 0; r < 4; r++) {
            uint64_t off = ranges[r][0], len = ranges[r][1] > off ? ranges[r][1] - off : 0;
            memset(buf, 0xee, gt.nbytes);
            apr_status s = ops->tensor_read(src, i, off, buf, len);
            if (s != APR_OK) fprintf(stderr, "    %s\n", apr_last_error());
            CHECK(s == APR_OK);
            if (memcmp(buf, (const uint8_t *)gt.data + off, len) != 0)
                test_fail(__FILE__, __LINE__, "tensor %s bytes [%llu, +%llu) differ", gt.name,
                          (unsigned long long)off, (unsigned long long)len);
        }
        free(buf);
    }
}

TEST(aprf_source_reads_what_the_gguf_holds)
{
    const char *gguf = "tests/fixtures/models/tiny-q4_k_m.gguf";
    char path[256];
    snprintf(path, sizeof path, "/tmp/apr-source-%d.apr", (int)getpid());
    apr_gguf *g;
    REQUIRE(apr_gguf_open(gguf, &g) == APR_OK);
    const int codecs[] = { APR_CODEC_ZSTD, APR_CODEC_NONE, APR_CODEC_LZ4 };
    for (int c = 0; c < 3; c++) {
        REQUIRE(write_apr(gguf, path, codecs[c], 20000) == APR_OK);
        apr_source *src;
        REQUIRE(apr_aprf_source_format.open(path, &src) == APR_OK);
        check_source(src, g);
        src->ops->close(src);
        /* a memory image: no descriptor, read in place */
        size_t size;
        void *image = test_read_file(path, &size);
        REQUIRE(image);
        REQUIRE(apr_aprf_source_format.open_memory(image, size, &src) == APR_OK);
        check_source(src, g);
        src->ops->close(src);
        free(image);
    }
    CHECK(apr_aprf_source_format.probe((const uint8_t *)"APRM\2\0\0\0", 8));
    CHECK(!apr_aprf_source_format.probe((const uint8_t *)"GGUF\3\0\0\0", 8));
    apr_gguf_close(g);
    unlink(path);
}
