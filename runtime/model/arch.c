/* arch.c — the tensors of each architecture apr runs, described once.
 *
 * A model file of architecture qwen2 or llama holds these tensors, with
 * shapes that follow from its hyperparameters (llama.cpp's loader expects
 * the same names and shapes: src/llama-model.cpp, LLM_ARCH_QWEN2 and
 * LLM_ARCH_LLAMA). The loader binds them from this table (qwen2.c),
 * `apr verify` checks files against it, `apr synth` writes it, and the Lua
 * side reads it through apr.h, so the list exists nowhere else.
 *
 * The order is the one apr synth writes files in: the embedding, each
 * block's tensors, the final norm and the output matrix. */
#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* The widths a shape is made of. */
typedef enum width { W_1, W_EMBD, W_FF, W_Q, W_KV, W_VOCAB } width;

typedef enum place { BEFORE, BLOCK, AFTER } place;

typedef struct row {
    place where;            /* before the blocks, in each block (blk.N.), after them */
    const char *kind;       /* the name's stem */
    const char *suffix;     /* "weight" or "bias" */
    int role;               /* apr_tensor_role */
    width ne0, ne1;         /* ne1 W_1 for vectors */
    int required;           /* 1 required; 0 optional; -1 the architecture's rule for biases */
} row;

/* Qwen2 and Llama: the same pre-norm decoder (qwen2.c's header). Qwen2
 * always has q/k/v biases (llama.cpp requires them); Llama files may. An
 * absent output.weight ties the output to token_embd. */
static const row decoder[] = {
    { BEFORE, "token_embd", "weight", APR_ROLE_EMBEDDING, W_EMBD, W_VOCAB, 1 },
    { BLOCK, "attn_norm", "weight", APR_ROLE_NORM, W_EMBD, W_1, 1 },
    { BLOCK, "attn_q", "weight", APR_ROLE_WEIGHT, W_EMBD, W_Q, 1 },
    { BLOCK, "attn_q", "bias", APR_ROLE_BIAS, W_Q, W_1, -1 },
    { BLOCK, "attn_k", "weight", APR_ROLE_WEIGHT, W_EMBD, W_KV, 1 },
    { BLOCK, "attn_k", "bias", APR_ROLE_BIAS, W_KV, W_1, -1 },
    { BLOCK, "attn_v", "weight", APR_ROLE_WEIGHT, W_EMBD, W_KV, 1 },
    { BLOCK, "attn_v", "bias", APR_ROLE_BIAS, W_KV, W_1, -1 },
    { BLOCK, "attn_output", "weight", APR_ROLE_WEIGHT, W_Q, W_EMBD, 1 },
    { BLOCK, "ffn_norm", "weight", APR_ROLE_NORM, W_EMBD, W_1, 1 },
    { BLOCK, "ffn_gate", "weight", APR_ROLE_WEIGHT, W_EMBD, W_FF, 1 },
    { BLOCK, "ffn_up", "weight", APR_ROLE_WEIGHT, W_EMBD, W_FF, 1 },
    { BLOCK, "ffn_down", "weight", APR_ROLE_WEIGHT, W_FF, W_EMBD, 1 },
    { AFTER, "output_norm", "weight", APR_ROLE_NORM, W_EMBD, W_1, 1 },
    { AFTER, "output", "weight", APR_ROLE_OUTPUT, W_EMBD, W_VOCAB, 0 },
};
enum { N_ROWS = sizeof decoder / sizeof *decoder };

typedef struct arch_info {
    const char *name;
    int biases_required;
} arch_info;

static const arch_info archs[] = {
    { "qwen2", 1 },
    { "llama", 0 },
};

static const arch_info *find(const char *name)
{
    for (size_t i = 0; name && i < sizeof archs / sizeof *archs; i++)
        if (strcmp(archs[i].name, name) == 0) return &archs[i];
    return NULL;
}

/* Rows before, in, and after the blocks. */
static void counts(int *before, int *block, int *after)
{
    *before = *block = *after = 0;
    for (int r = 0; r < N_ROWS; r++) {
        if (decoder[r].where == BEFORE) ++*before;
        else if (decoder[r].where == BLOCK) ++*block;
        else ++*after;
    }
}

/* The index in decoder[] of the k-th row at place p. */
static int nth(place p, int k)
{
    for (int r = 0; r < N_ROWS; r++)
        if (decoder[r].where == p && k-- == 0) return r;
    return -1;
}

static int64_t size_of(width w, const apr_arch_dims *d)
{
    switch (w) {
    case W_EMBD: return d->n_embd;
    case W_FF: return d->n_ff;
    case W_Q: return (int64_t)d->n_head * d->head_dim;
    case W_KV: return (int64_t)d->n_head_kv * d->head_dim;
    case W_VOCAB: return d->n_vocab;
    default: return 1;
    }
}

int apr_arch_supported(const char *name) { return find(name) != NULL; }

int64_t apr_arch_n_tensors(const char *name, int n_layer)
{
    if (!find(name) || n_layer < 0) return -1;
    int before, block, after;
    counts(&before, &block, &after);
    return before + (int64_t)n_layer * block + after;
}

apr_status apr_arch_tensor(const char *name, const apr_arch_dims *d, int64_t i, apr_expected_tensor *out)
{
    APR_CHECK(d && out, APR_ERR_INVALID, "apr_arch_tensor: NULL argument");
    const arch_info *a = find(name);
    APR_CHECK(a, APR_ERR_UNSUPPORTED, "architecture \"%.40s\" has no tensor table (qwen2, llama)", name ? name : "");
    const int64_t n = apr_arch_n_tensors(name, d->n_layer);
    APR_CHECK(n >= 0 && i >= 0 && i < n, APR_ERR_RANGE, "tensor %lld of %s with %d layers is outside [0, %lld)",
              (long long)i, name, d->n_layer, (long long)n);
    int before, block, after, r, layer = -1;
    counts(&before, &block, &after);
    if (i < before) {
        r = nth(BEFORE, (int)i);
    } else if (i < before + (int64_t)d->n_layer * block) {
        layer = (int)((i - before) / block);
        r = nth(BLOCK, (int)((i - before) % block));
    } else {
        r = nth(AFTER, (int)(i - before - (int64_t)d->n_layer * block));
    }
    const row *w = &decoder[r];
    memset(out, 0, sizeof *out);
    if (layer >= 0) snprintf(out->name, sizeof out->name, "blk.%d.%s.%s", layer, w->kind, w->suffix);
    else snprintf(out->name, sizeof out->name, "%s.%s", w->kind, w->suffix);
    out->kind = w->kind;
    out->layer = layer;
    out->role = w->role;
    out->n_dims = w->ne1 == W_1 ? 1 : 2;
    out->ne[0] = size_of(w->ne0, d);
    out->ne[1] = size_of(w->ne1, d);
    out->required = w->required < 0 ? a->biases_required : w->required;
    return APR_OK;
}

/* Norms and biases are read as floats by every backend; the matrices go
 * through the products (and token_embd's rows through get_rows), which
 * implement these types (backend/cpu/gemm_scalar.c apr_cpu_gemm_scalar). */
int apr_arch_type_allowed(int role, int dtype)
{
    if (role == APR_ROLE_NORM || role == APR_ROLE_BIAS) return dtype == APR_F32;
    switch (dtype) {
    case APR_F32: case APR_F16: case APR_BF16: case APR_Q4_0: case APR_Q4_1: case APR_Q5_0: case APR_Q5_1:
    case APR_Q8_0: case APR_Q4_K: case APR_Q5_K: case APR_Q6_K:
        return 1;
    default:
        return 0;
    }
}

const char *apr_arch_types(int role)
{
    if (role == APR_ROLE_NORM || role == APR_ROLE_BIAS) return "F32";
    return "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K";
}
