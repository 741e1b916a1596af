/* model_test.c — apr_model_load's failure messages name the file once. */
#include "test.h"
#include "apr.h"
#include "model_fixture.h"

/* How often needle occurs in hay. */
static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

static void check_named_once(const char *dst, const fixture_edit *e, const char *what)
{
    REQUIRE(fixture_copy(FIXTURE_TINY_Q8, dst, e) == 0);
    apr_model_params p;
    apr_model_params_default(&p);
    p.device = APR_DEVICE_CPU;
    apr_model *m = NULL;
    CHECK(apr_model_load(dst, &p, &m) != APR_OK);
    CHECK(m == NULL);
    const char *msg = apr_last_error();
    CHECK(strstr(msg, what) != NULL);
    if (count(msg, dst) != 1) test_fail(__FILE__, __LINE__, "the path is not named once: %s", msg);
}

/* A key of the wrong type fails in the GGUF reader, whose message names
 * the file: the loader used to put the path in front again
 * ("FILE: FILE: key 'tokenizer.ggml.model' is a uint32, not a string"). */
TEST(model_load_names_the_file_once_for_a_tokenizer_key_of_the_wrong_type)
{
    fixture_edit e = { .drop_key = "tokenizer.ggml.model", .rename_from = "qwen2.context_length",
                       .rename_to = "tokenizer.ggml.model" };
    check_named_once(fixture_tmp("model-tok-type.gguf"), &e, "tokenizer.ggml.model");
}

TEST(model_load_names_the_file_once_for_a_hyperparameter_of_the_wrong_type)
{
    fixture_edit e = { .drop_key = "qwen2.block_count", .rename_from = "general.name",
                       .rename_to = "qwen2.block_count" };
    check_named_once(fixture_tmp("model-hp-type.gguf"), &e, "qwen2.block_count");
}
