/* arch_test.c — the architecture table (model/arch.c): the tensors a Qwen2
 * or Llama file holds, their shapes from the hyperparameters, and the
 * element types allowed; checked against the fixture models' own tables. */
#include "test.h"
#include "apr.h"

#include <string.h>

TEST(arch_table_lists_the_fixture_models_tensors)
{
    /* tiny-q8_0: 2 layers, n_embd 256, n_ff 512, 4 heads of 64, 2 KV heads, 2048 tokens */
    const apr_arch_dims d = { .n_layer = 2, .n_embd = 256, .n_ff = 512, .n_head = 4, .n_head_kv = 2, .head_dim = 64,
                              .n_vocab = 2048 };
    CHECK_EQ_INT(apr_arch_n_tensors("qwen2", 2), 1 + 2 * 12 + 2);
    apr_source *s = NULL;
    REQUIRE(apr_source_open("tests/fixtures/models/tiny-q8_0.gguf", &s) == APR_OK);
    CHECK_EQ_INT(apr_source_n_tensors(s), apr_arch_n_tensors("qwen2", 2));
    for (int64_t i = 0; i < apr_arch_n_tensors("qwen2", 2); i++) {
        apr_expected_tensor e;
        REQUIRE(apr_arch_tensor("qwen2", &d, i, &e) == APR_OK);
        int64_t j = apr_source_find_tensor(s, e.name);
        if (j < 0) {
            test_fail(__FILE__, __LINE__, "the fixture lacks %s", e.name);
            continue;
        }
        apr_tensor_info t;
        REQUIRE(apr_source_tensor(s, j, &t) == APR_OK);
        CHECK_EQ_INT(t.n_dims, e.n_dims);
        CHECK(t.ne[0] == e.ne[0] && t.ne[1] == e.ne[1]);
        CHECK(apr_arch_type_allowed(e.role, t.type));
        CHECK(e.required == (e.role != APR_ROLE_OUTPUT));  /* qwen2: all but output.weight, biases included */
    }
    apr_source_close(s);
}

TEST(arch_table_names_shapes_and_roles)
{
    const apr_arch_dims d = { .n_layer = 3, .n_embd = 1280, .n_ff = 1536, .n_head = 10, .n_head_kv = 2,
                              .head_dim = 128, .n_vocab = 5000 };
    apr_expected_tensor e;
    REQUIRE(apr_arch_tensor("qwen2", &d, 0, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "token_embd.weight");
    CHECK(e.role == APR_ROLE_EMBEDDING && e.layer == -1 && e.ne[0] == 1280 && e.ne[1] == 5000);
    /* block 2's attn_k.weight: [n_embd, n_head_kv * head_dim] */
    REQUIRE(apr_arch_tensor("qwen2", &d, 1 + 2 * 12 + 3, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "blk.2.attn_k.weight");
    CHECK_EQ_STR(e.kind, "attn_k");
    CHECK(e.layer == 2 && e.role == APR_ROLE_WEIGHT && e.n_dims == 2 && e.ne[0] == 1280 && e.ne[1] == 256);
    REQUIRE(apr_arch_tensor("qwen2", &d, 1 + 2 * 12 + 4, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "blk.2.attn_k.bias");
    CHECK(e.role == APR_ROLE_BIAS && e.n_dims == 1 && e.ne[0] == 256 && e.ne[1] == 1 && e.required);
    REQUIRE(apr_arch_tensor("llama", &d, 1 + 2 * 12 + 4, &e) == APR_OK);
    CHECK(!e.required);  /* Llama files may leave the biases out */
    const int64_t n = apr_arch_n_tensors("qwen2", 3);
    REQUIRE(apr_arch_tensor("qwen2", &d, n - 1, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "output.weight");
    CHECK(e.role == APR_ROLE_OUTPUT && !e.required && e.ne[0] == 1280 && e.ne[1] == 5000);
    REQUIRE(apr_arch_tensor("qwen2", &d, n - 2, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "output_norm.weight");
    /* attn_output: [n_head * head_dim, n_embd] */
    REQUIRE(apr_arch_tensor("qwen2", &d, 1 + 7, &e) == APR_OK);
    CHECK_EQ_STR(e.name, "blk.0.attn_output.weight");
    CHECK(e.ne[0] == 1280 && e.ne[1] == 1280);
    CHECK_EQ_INT(apr_arch_tensor("qwen2", &d, n, &e), APR_ERR_RANGE);
    CHECK_EQ_INT(apr_arch_tensor("mamba", &d, 0, &e), APR_ERR_UNSUPPORTED);
    CHECK_EQ_INT(apr_arch_n_tensors("mamba", 3), -1);
    CHECK_EQ_INT(apr_arch_n_tensors("qwen2", -1), -1);
    CHECK(apr_arch_supported("qwen2") && apr_arch_supported("llama") && !apr_arch_supported("gemma"));
    CHECK(!apr_arch_supported(NULL));
}

TEST(arch_types_allowed)
{
    CHECK(apr_arch_type_allowed(APR_ROLE_NORM, APR_F32));
    CHECK(!apr_arch_type_allowed(APR_ROLE_NORM, APR_BF16));
    CHECK(!apr_arch_type_allowed(APR_ROLE_BIAS, APR_F16));
    CHECK(apr_arch_type_allowed(APR_ROLE_WEIGHT, APR_Q4_K) && apr_arch_type_allowed(APR_ROLE_OUTPUT, APR_Q6_K));
    CHECK(apr_arch_type_allowed(APR_ROLE_EMBEDDING, APR_Q8_0) && apr_arch_type_allowed(APR_ROLE_WEIGHT, APR_BF16));
    CHECK(!apr_arch_type_allowed(APR_ROLE_WEIGHT, 16));  /* IQ2_XXS */
    CHECK(!apr_arch_type_allowed(APR_ROLE_WEIGHT, APR_Q2_K));
    CHECK_EQ_STR(apr_arch_types(APR_ROLE_NORM), "F32");
    CHECK(strstr(apr_arch_types(APR_ROLE_WEIGHT), "Q4_K") != NULL);
}
