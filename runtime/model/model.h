/* model.h — a loaded model and an inference context, inside (internal).
 *
 *   model.c    apr_model_load: the file, the tokenizer, the backend, the weights
 *   arch.c     the tensors of each architecture (apr_arch_*)
 *   qwen2.c    hyperparameters, tensor binding, and the forward pass
 *   kvcache.c  the paged KV cache: one pool of blocks, per-sequence block tables, prefix reuse
 *   context.c  apr_context_* and apr_decode: batches in, logits out */
#ifndef APR_MODEL_MODEL_H
#define APR_MODEL_MODEL_H

#include <stdatomic.h>

#include "apr.h"
#include "backend/backend.h"
#include "model/kvcache.h"

/* Hyperparameters (llama.cpp's names in parentheses where they differ). */
typedef struct apr_hparams {
    char arch[16];         /* general.architecture: "qwen2" or "llama" */
    int n_layer;           /* transformer blocks ({arch}.block_count) */
    int n_embd;            /* width of the residual stream ({arch}.embedding_length) */
    int n_ff;              /* hidden width of the feed-forward network ({arch}.feed_forward_length) */
    int n_head;            /* query heads ({arch}.attention.head_count) */
    int n_head_kv;         /* key/value heads, n_head / n_head_kv queries share one (GQA) */
    int head_dim;          /* {arch}.attention.key_length, else n_embd / n_head */
    int n_rot;             /* dims RoPE rotates ({arch}.rope.dimension_count, else head_dim) */
    int rope_style;        /* APR_ROPE_NEOX for qwen2, APR_ROPE_NORM for llama */
    float rope_base;       /* {arch}.rope.freq_base (10000 if absent) */
    float rope_scale;      /* 1 / {arch}.rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;         /* {arch}.attention.layer_norm_rms_epsilon */
    int n_vocab;           /* rows of token_embd */
    int n_ctx_train;       /* {arch}.context_length */
} apr_hparams;

/* One transformer block's weights, named as in the GGUF file (blk.N.*). */
typedef struct apr_layer {
    apr_weight attn_norm;      /* [n_embd] f32 */
    apr_linear attn_qkv;       /* attn_q | attn_k | attn_v (+ their biases in qwen2): [q_dim + 2 kv_dim][n_embd] */
    apr_linear attn_output;    /* [n_embd][q_dim] */
    apr_weight ffn_norm;       /* [n_embd] f32 */
    apr_linear ffn_gate_up;    /* ffn_gate | ffn_up: [2 n_ff][n_embd] */
    apr_linear ffn_down;       /* [n_embd][n_ff] */
} apr_layer;

struct apr_model {
    /* References: the loader's (released by apr_model_free) and one per
     * context (engines hold theirs through their context). Whatever frees
     * last frees the model, so contexts may be freed in any order relative
     * to it (Lua finalizers run in no particular order at exit). */
    atomic_int refs;
    char *path;
    apr_source *src;           /* the file, kept open: CPU weights are its bytes (mapped, or decoded and kept) */
    apr_hparams hp;
    char *name;                /* general.name or "" */
    struct apr_tokenizer *tok;
    const char *chat_template; /* in the file, or NULL */
    int vocab_only;
    apr_backend *backend;      /* NULL when vocab_only */
    uint64_t weight_bytes;
    apr_weight token_embd;     /* [n_vocab][n_embd] */
    apr_weight output_norm;    /* [n_embd] f32 */
    apr_linear output;         /* output.weight, or token_embd when the file ties them: [n_vocab][n_embd] */
    apr_layer *layers;         /* [n_layer] */
};

/* Reads the hyperparameters of f (path names it in messages). */
apr_status apr_qwen2_hparams(const apr_source *f, const char *path, apr_hparams *hp);
/* Finds, checks and uploads every tensor of the architecture's table
 * (model/arch.c); with no backend (apr_model_validate), only checks. */
apr_status apr_qwen2_bind(apr_model *m);

struct apr_context {
    apr_model *model;
    apr_context_params p;
    apr_backend *B;
    apr_stream *stream;
    apr_kvcache cache;
    apr_attn_params attn;
    int logit_rows;            /* wanted tokens whose logits one output product computes */

    /* activations, on the device */
    float *x;                  /* [n_batch][n_embd] the residual stream */
    float *h;                  /* [n_batch][n_embd] the normed input of a block */
    float *qkv;                /* [n_batch][q_dim + 2 kv_dim] */
    float *att;                /* [n_batch][q_dim] attention's output */
    float *ff;                 /* [n_batch][n_ff] */
    float *logits;             /* [logit_rows][n_vocab] */
    int32_t *ids;              /* [logit_rows] argmax of each logits row (backends with argmax) */
    float *host_logits;        /* [logit_rows][n_vocab] on the host, for argmax where the backend has none */

    /* the pass's per-token metadata: on the device (step) and staged on the host */
    apr_step step;
    int32_t *dev_meta;         /* device: ids, pos, seq, slot, out ([n_batch] each), then the block table */
    int32_t *host_meta;        /* the same layout, filled on the host */
    size_t meta_bytes;
    void *block_copy;          /* host bytes of one KV block of one layer (copy-on-write of a shared block) */
};

/* One forward pass over c->step (already uploaded); writes the logits of
 * the step's `out` tokens to logits_out ([n_out][n_vocab]) and/or the ids
 * of their largest logits to ids_out ([n_out]); either may be NULL. */
apr_status apr_qwen2_forward(apr_context *c, float *logits_out, int32_t *ids_out);

#endif
