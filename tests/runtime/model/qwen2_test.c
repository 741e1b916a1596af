/* qwen2_test.c — hyperparameters come from the file, and a file that lacks
 * or breaks what the forward pass needs fails to load with a message that
 * names the key or tensor. (The logits themselves are held to llama.cpp's
 * in tests/lua/apr/golden_spec.lua, on every device.) */
#include "test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"
#include "model_fixture.h"

TEST(qwen2_hyperparameters_come_from_the_metadata)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q4KM, 1);
    REQUIRE(m);
    apr_model_info info;
    apr_model_get_info(m, &info);
    CHECK_EQ_STR(info.arch, "qwen2");
    CHECK_EQ_INT(info.n_layer, 2);
    CHECK_EQ_INT(info.n_embd, 256);
    CHECK_EQ_INT(info.n_ff, 512);
    CHECK_EQ_INT(info.n_head, 4);
    CHECK_EQ_INT(info.n_head_kv, 2);
    CHECK_EQ_INT(info.head_dim, 64);
    CHECK_EQ_INT(info.n_vocab, 2048);
    CHECK_NEAR(info.rope_base, 1e6, 1);
    CHECK_NEAR(info.rms_eps, 1e-6, 1e-9);
    CHECK_EQ_INT(info.device, APR_DEVICE_CPU);
    CHECK(info.weight_bytes > 1000000 && info.weight_bytes < 1499616);
    CHECK_EQ_INT(m->hp.rope_style, APR_ROPE_NEOX);
    CHECK_EQ_INT(m->hp.n_rot, 64);
    CHECK(m->output.part[0].data != m->token_embd.data);  /* its own output.weight */
    /* q, k and v are one product with their biases */
    CHECK_EQ_INT(m->layers[0].attn_qkv.n_parts, 3);
    CHECK_EQ_INT(m->layers[0].attn_qkv.rows, 256 + 2 * 128);
    CHECK(m->layers[0].attn_qkv.bias[2].data != NULL);
    CHECK(apr_model_tokenizer(m) != NULL);
    apr_model_free(m);
}

/* Without output.weight the output product reads token_embd (tied
 * embeddings, as in Qwen2.5's small models) and the model still runs. */
TEST(qwen2_ties_the_output_to_token_embd_when_output_weight_is_absent)
{
    const char *path = fixture_tmp("tied.gguf");
    REQUIRE(fixture_copy(FIXTURE_TINY_Q8, path, &(fixture_edit){ .drop_tensor = "output.weight" }) == 0);
    apr_model *m = fixture_load(path, 1);
    REQUIRE(m);
    CHECK(m->output.part[0].data == m->token_embd.data);
    CHECK(m->output.part[0].type == m->token_embd.type);
    apr_context *c = fixture_context(m, 32, 1, 8);
    REQUIRE(c);
    static float logits[2048];
    int32_t ids[3] = { 10, 20, 30 };
    apr_batch b = { .n = 3, .ids = ids };
    CHECK_EQ_INT(apr_decode(c, &b, logits), APR_OK);
    apr_context_free(c);
    apr_model_free(m);
    remove(path);
}

/* The Llama architecture: tiny-q8_0 with its keys renamed to llama.* runs
 * as llama.cpp runs it (adjacent-pair RoPE, biases used since present),
 * against logits llama.cpp computed for that copy (tests/fixtures/README.md,
 * golden/tiny-llama-q8_0.code.bin: int32 n, n_vocab, 0, 0; n token ids;
 * n x n_vocab float32). The same weights read as Qwen2 (NEOX RoPE) must not
 * match: the rotation style is what is under test. */
TEST(qwen2_llama_architecture_matches_llama_cpp)
{
    FILE *f = fopen("tests/fixtures/golden/tiny-llama-q8_0.code.bin", "rb");
    REQUIRE(f);
    int32_t hdr[4];
    REQUIRE(fread(hdr, 4, 4, f) == 4 && hdr[0] > 0 && hdr[0] <= 64 && hdr[1] == 2048);
    const int n = hdr[0], V = hdr[1];
    int32_t ids[64];
    float *want = malloc(sizeof(float) * (size_t)n * V), *got = malloc(sizeof(float) * (size_t)n * V);
    REQUIRE(want && got);
    REQUIRE(fread(ids, 4, (size_t)n, f) == (size_t)n && fread(want, 4, (size_t)n * V, f) == (size_t)n * V);
    fclose(f);

    const char *path = fixture_tmp("llama.gguf");
    fixture_edit e = { .rename_from = "qwen2.", .rename_to = "llama.", .set_str_key = "general.architecture",
                       .set_str_value = "llama" };
    REQUIRE(fixture_copy(FIXTURE_TINY_Q8, path, &e) == 0);
    const char *models[2] = { path, FIXTURE_TINY_Q8 };
    for (int k = 0; k < 2; k++) {
        apr_model *m = fixture_load(models[k], 2);
        REQUIRE(m);
        CHECK_EQ_INT(m->hp.rope_style, k == 0 ? APR_ROPE_NORM : APR_ROPE_NEOX);
        apr_context *c = fixture_context(m, 64, 1, 64);
        REQUIRE(c);
        int8_t all[64];
        memset(all, 1, sizeof all);
        apr_batch b = { .n = n, .ids = ids, .want_logits = all };
        REQUIRE(apr_decode(c, &b, got) == APR_OK);
        double worst_cos = 1, worst_rel = 0;
        for (int p = 0; p < n; p++) {
            double dot = 0, gg = 0, ww = 0, maxd = 0, maxw = 0;
            for (int v = 0; v < V; v++) {
                const double g = got[(size_t)p * V + v], w = want[(size_t)p * V + v];
                dot += g * w, gg += g * g, ww += w * w;
                maxd = fmax(maxd, fabs(g - w)), maxw = fmax(maxw, fabs(w));
            }
            worst_cos = fmin(worst_cos, dot / sqrt(gg * ww));
            worst_rel = fmax(worst_rel, maxd / maxw);
        }
        if (k == 0 && !(worst_cos >= 0.999 && worst_rel <= 6e-2))
            test_fail(__FILE__, __LINE__, "llama vs llama.cpp: cosine %.5f, max error %.4f of max", worst_cos, worst_rel);
        if (k == 1) CHECK(worst_cos < 0.99);  /* NEOX rotation on the same weights: far off */
        apr_context_free(c);
        apr_model_free(m);
    }
    remove(path);
    free(want);
    free(got);
}

/* Loads an edited copy of tiny-q8_0 and expects status and a message part;
 * apr_model_validate must say exactly what the load said (issue 16). */
static void expect_load_failure(const fixture_edit *e, apr_status want, const char *part)
{
    const char *path = fixture_tmp("edited.gguf");
    REQUIRE(fixture_copy(FIXTURE_TINY_Q8, path, e) == 0);
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    apr_model *m = (apr_model *)1;
    apr_status s = apr_model_load(path, &p, &m);
    if (s != want || !strstr(apr_last_error(), part) || !strstr(apr_last_error(), path))
        test_fail(__FILE__, __LINE__, "want %s with \"%s\", got %s: %s", apr_status_str(want), part, apr_status_str(s),
                  apr_last_error());
    CHECK(m == NULL);
    char said[512];
    snprintf(said, sizeof said, "%s", apr_last_error());
    CHECK_EQ_INT(apr_model_validate(path), s);
    CHECK_EQ_STR(apr_last_error(), said);
    remove(path);
}

TEST(qwen2_validate_passes_what_loads)
{
    const char *models[] = { FIXTURE_TINY_Q8, FIXTURE_TINY_Q4KM, FIXTURE_TINY_F16 };
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) CHECK_EQ_INT(apr_model_validate(models[i]), APR_OK);
    CHECK_EQ_INT(apr_model_validate("tests/fixtures/no-such.gguf"), APR_ERR_NOT_FOUND);
    CHECK_EQ_INT(apr_model_validate(NULL), APR_ERR_INVALID);
}

TEST(qwen2_missing_or_broken_parts_fail_with_their_names)
{
    expect_load_failure(&(fixture_edit){ .drop_key = "qwen2.block_count" }, APR_ERR_FORMAT, "qwen2.block_count");
    expect_load_failure(&(fixture_edit){ .drop_key = "qwen2.attention.layer_norm_rms_epsilon" }, APR_ERR_FORMAT,
                        "qwen2.attention.layer_norm_rms_epsilon");
    expect_load_failure(&(fixture_edit){ .drop_tensor = "blk.1.ffn_down.weight" }, APR_ERR_FORMAT,
                        "blk.1.ffn_down.weight");
    expect_load_failure(&(fixture_edit){ .drop_tensor = "blk.0.attn_k.bias" }, APR_ERR_FORMAT, "blk.0.attn_k.bias");
    expect_load_failure(&(fixture_edit){ .drop_tensor = "output_norm.weight" }, APR_ERR_FORMAT, "output_norm.weight");
    expect_load_failure(&(fixture_edit){ .set_str_key = "general.architecture", .set_str_value = "mamba" },
                        APR_ERR_UNSUPPORTED, "\"mamba\" is not supported");
    /* a Llama file must carry llama.* keys */
    expect_load_failure(&(fixture_edit){ .set_str_key = "general.architecture", .set_str_value = "llama" },
                        APR_ERR_FORMAT, "llama.block_count");
    /* a NaN in a norm (a float: its upper half 0x7fc0 makes it NaN) */
    expect_load_failure(&(fixture_edit){ .poke_tensor = "blk.1.ffn_norm.weight", .poke_at = 42, .poke_value = 0x7fc0 },
                        APR_ERR_FORMAT, "blk.1.ffn_norm.weight");
    /* the tokenizer's checks come first */
    expect_load_failure(&(fixture_edit){ .drop_key = "tokenizer.ggml.merges" }, APR_ERR_NOT_FOUND,
                        "lacks tokenizer.ggml.merges");
}

TEST(qwen2_vocab_only_loads_no_weights)
{
    apr_model_params p;
    apr_model_params_default(&p);
    p.vocab_only = 1;
    apr_model *m = NULL;
    REQUIRE(apr_model_load(FIXTURE_TINY_Q8, &p, &m) == APR_OK);
    apr_model_info info;
    apr_model_get_info(m, &info);
    CHECK_EQ_INT(info.n_vocab, 2048);
    CHECK_EQ_INT(info.weight_bytes, 0);
    CHECK(apr_model_tokenizer(m) != NULL);
    apr_context *c = (apr_context *)1;
    CHECK_EQ_INT(apr_context_new(m, NULL, &c), APR_ERR_INVALID);
    CHECK(c == NULL);
    apr_model_free(m);
}

TEST(qwen2_missing_file_and_bad_context_parameters)
{
    apr_model *m = (apr_model *)1;
    CHECK(apr_model_load("tests/fixtures/models/no-such.gguf", NULL, &m) != APR_OK);
    CHECK(m == NULL);
    CHECK(strstr(apr_last_error(), "no-such.gguf") != NULL);
    m = fixture_load(FIXTURE_TINY_Q8, 1);
    REQUIRE(m);
    apr_context_params p;
    apr_context_params_default(&p);
    apr_context *c = NULL;
    p.n_ctx = 1 << 30;  /* past the model's training context */
    CHECK_EQ_INT(apr_context_new(m, &p, &c), APR_ERR_RANGE);
    apr_context_params_default(&p);
    p.n_seq = 0;
    CHECK_EQ_INT(apr_context_new(m, &p, &c), APR_ERR_INVALID);
    apr_context_params_default(&p);
    p.kv_type = APR_Q4_K;
    CHECK_EQ_INT(apr_context_new(m, &p, &c), APR_ERR_UNSUPPORTED);
    /* the default context: the training length, one sequence */
    REQUIRE(apr_context_new(m, NULL, &c) == APR_OK);
    CHECK_EQ_INT(apr_context_n_ctx(c), m->hp.n_ctx_train);
    CHECK_EQ_INT(apr_context_seq_len(c, 0), 0);
    CHECK_EQ_INT(apr_context_seq_len(c, 1), -1);
    apr_context_free(c);
    apr_model_free(m);
}

/* A Q8_0 cache gives logits close to the f16 cache's (8-bit keys and
 * values; attention_test.c checks the cache arithmetic itself exactly). */
TEST(qwen2_q8_0_kv_cache_stays_close_to_f16)
{
    apr_model *m = fixture_load(FIXTURE_TINY_Q4KM, 2);
    REQUIRE(m);
    static float f16[20 * 2048], q8[20 * 2048];
    int32_t ids[20];
    int8_t want[20];
    for (int i = 0; i < 20; i++) ids[i] = (i * 131 + 7) % 2000, want[i] = 1;
    for (int k = 0; k < 2; k++) {
        apr_context_params p;
        apr_context_params_default(&p);
        p.n_ctx = 64;
        p.kv_type = k ? APR_Q8_0 : APR_F16;
        apr_context *c = NULL;
        REQUIRE(apr_context_new(m, &p, &c) == APR_OK);
        apr_batch b = { .n = 20, .ids = ids, .want_logits = want };
        REQUIRE(apr_decode(c, &b, k ? q8 : f16) == APR_OK);
        apr_context_free(c);
    }
    double max_diff = 0, max_abs = 0;
    for (int i = 0; i < 20 * 2048; i++) {
        max_diff = fmax(max_diff, fabs((double)f16[i] - q8[i]));
        max_abs = fmax(max_abs, fabs((double)f16[i]));
    }
    CHECK(max_diff > 0);
    CHECK(max_diff < 5e-2 * max_abs);  /* measured: 2.3e-2 */
    apr_model_free(m);
}
