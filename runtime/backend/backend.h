/* backend.h — the handful of operations a forward pass is written in (internal).
 *
 * runtime/model/qwen2.c calls these and nothing else, so a device only has to
 * provide this table: runtime/backend/cpu/ (the reference: scalar and AVX2,
 * on the worker pool) and kernels/ (CUDA). docs/model.md walks through the
 * contract; the rules that shape it:
 *
 *  - Weights are uploaded once, in their file formats (apr_weight keeps the
 *    GGUF block layout; a backend may repack blocks at upload, never expand
 *    them to f32 whole). On the CPU "upload" keeps a pointer into the mmap.
 *  - Every buffer an op touches is allocated before decoding starts: the
 *    activations and the per-token metadata (apr_step) by the context, the
 *    scratch by the backend's stream (stream_new). Ops allocate nothing, and
 *    their pointer arguments are the same from one step to the next, so a
 *    CUDA backend can capture a decode step as a graph and replay it. What
 *    changes between steps (token ids, positions, KV slots, block tables)
 *    lives in device memory that `upload` refreshes, never in op arguments;
 *    only the token count n is a plain integer (one graph per n).
 *  - Tokens of one pass may belong to different sequences, each at its own
 *    position (continuous batching): attention reads a token's sequence from
 *    apr_step, never assumes one sequence per pass.
 *  - Fusions a GPU wants are in the signatures: a linear layer has up to
 *    three parts sharing one input (q|k|v), its bias is added in the
 *    product, a residual add is the product's `accumulate` flag, the gate
 *    and up products end in the SwiGLU that joins them (matmul_glu), RoPE
 *    and the KV-cache store are one op.
 *  - Ops return nothing: a device reports failures at `sync`.
 *
 * Arguments come output first: (stream, out, inputs..., weights, sizes). */
#ifndef APR_BACKEND_BACKEND_H
#define APR_BACKEND_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "apr.h"

typedef struct apr_backend apr_backend;
typedef struct apr_stream apr_stream;

/* A matrix in its file format: `rows` rows of `cols` elements, row-major,
 * each row a whole number of blocks of `type`. GGUF's ne[0] is cols (the
 * input features) and ne[1] is rows (the output features). A vector (a norm
 * weight, a bias) is a matrix of one row. */
typedef struct apr_weight {
    const char *name;      /* the GGUF tensor name, for messages */
    int type;              /* apr_dtype */
    int64_t rows, cols;
    size_t row_bytes;
    const void *data;      /* on the backend's device, set by weight_upload */
    int gather_only;       /* set before upload when only get_rows reads it (token_embd beside
                              an output.weight): a GPU backend may leave it in host memory */
} apr_weight;

/* A weight's bytes as a reader gives them: range by range, into the
 * caller's memory (a model source's tensor: apr_source_tensor_read, which
 * decodes compressed chunks). `read` is called from many threads at once.
 * Ranges aligned to `piece` (a chunk's decoded size; 0: any) decode each
 * chunk once. */
typedef struct apr_weight_reader {
    apr_status (*read)(void *ctx, uint64_t offset, void *dst, uint64_t n);
    void *ctx;
    uint64_t piece;
} apr_weight_reader;

/* A linear layer y = x·Wᵀ + b whose weight may be stored as up to three
 * matrices with the same input: their outputs are concatenated per token
 * ([q | k | v], [gate | up]), so one product reads the input once. Parts may
 * have different types (Q4_K_M files keep attn_v in Q6_K beside a Q4_K
 * attn_q). A part's bias, if any, is an F32 vector of its rows. */
#define APR_LINEAR_MAX_PARTS 3
typedef struct apr_linear {
    int n_parts;
    apr_weight part[APR_LINEAR_MAX_PARTS];
    apr_weight bias[APR_LINEAR_MAX_PARTS];   /* data NULL: no bias */
    int64_t rows, cols;                      /* rows: the parts' sum */
} apr_linear;

/* The KV cache: fixed-size blocks of token slots, handed to sequences by
 * runtime/model/kvcache.c through per-sequence block tables, so a finished
 * sequence's blocks return to the pool at once and sequences of any mix of
 * lengths share one allocation. Slot s (= block * block_tokens + offset) of
 * layer l and KV head h holds one head_dim vector at
 *   k + l * layer_bytes + ((block * n_head_kv + h) * block_tokens + offset) * row_bytes
 * so a block of one head is a contiguous [block_tokens][head_dim] tile. */
typedef struct apr_kv_cache {
    int type;              /* APR_F16, or APR_Q8_0 / APR_Q4_0: each row a run of core/quant.h's blocks of 32,
                              keys and values quantized as rope_store writes them */
    int n_layer, n_head_kv, head_dim;
    int block_tokens;      /* token slots per block */
    int n_blocks;
    size_t row_bytes;      /* one head_dim vector in `type` */
    size_t layer_bytes;    /* n_blocks * n_head_kv * block_tokens * row_bytes */
    void *k, *v;           /* [n_layer][n_blocks][n_head_kv][block_tokens][head_dim], on the device */
    /* Quantized types: a constant per layer and KV head that rope_store
     * subtracts from each key before quantizing it, or NULL (none). A
     * constant shift of the keys adds the same q·c to every score of a
     * query, which the softmax cancels, so attention reads the stored keys
     * as they are; what changes is the range each block must cover.
     * context.c sets it (the keys' bias where RoPE leaves it still). */
    const float *k_offset; /* [n_layer][n_head_kv * head_dim] f32, on the device */
} apr_kv_cache;

/* Per-token metadata of one forward pass, in device memory at addresses
 * fixed for the life of a context (the context uploads new contents before
 * each pass). Token i is at position pos[i] of sequence seq[i] and attends
 * to that sequence's positions 0..pos[i], whose slots the sequence's row of
 * block_table gives (position p: block_table[seq * max_blocks + p / block_tokens]). */
typedef struct apr_step {
    int n;                  /* tokens in this pass (a host integer) */
    int n_out;              /* tokens whose logits are wanted (a host integer) */
    int max_blocks;         /* columns of block_table */
    const int32_t *ids;     /* [n] token ids, all in [0, n_vocab) */
    const int32_t *pos;     /* [n] positions */
    const int32_t *seq;     /* [n] sequence of each token */
    const int32_t *slot;    /* [n] the KV slot where token i's key and value go */
    const int32_t *out;     /* [n_out] indexes of the tokens whose logits are wanted, ascending */
    const int32_t *block_table; /* [n_seq][max_blocks] block ids */
} apr_step;

enum apr_rope_style {
    APR_ROPE_NORM = 0,     /* rotate adjacent pairs (x[2i], x[2i+1]): llama.cpp's LLAMA */
    APR_ROPE_NEOX = 2      /* rotate halves (x[i], x[i + n_rot/2]): QWEN2 (the GPT-NeoX layout) */
};

/* Attention geometry and rotary embedding. */
typedef struct apr_attn_params {
    int n_head, n_head_kv, head_dim;
    int n_rot;             /* leading dims of a head that RoPE rotates (head_dim usually) */
    int rope_style;        /* enum apr_rope_style */
    float rope_base;       /* theta_i = pos * rope_base^(-2i / n_rot) */
    float rope_scale;      /* positions are multiplied by this (1: none; linear scaling) */
    float scale;           /* on q·k before softmax: 1 / sqrt(head_dim) */
} apr_attn_params;

/* What a stream's scratch must hold: the largest pass a context runs. */
typedef struct apr_stream_sizes {
    int n_batch;           /* tokens per pass */
    int64_t max_cols;      /* widest input of a matmul */
    int n_ctx;             /* longest sequence attention reads */
    int n_head, n_head_kv, head_dim;
} apr_stream_sizes;

struct apr_backend {
    const char *name;      /* "cpu", "cuda" */
    int device;            /* apr_device_kind */
    uint64_t bytes;        /* device memory held now (weights, caches, buffers) */
    uint64_t budget;       /* the most device memory it may hold (--vram-budget); 0: no cap */

    /* ---- lifetime and memory (these may fail; ops may not) ---- */
    /* Frees the backend and what weight_upload made (streams and alloc'd
     * buffers are freed by their owners first). */
    void (*destroy)(apr_backend *b);
    /* Zeroed device memory, aligned to 64 bytes; NULL (message set) on failure. */
    void *(*alloc)(apr_backend *b, size_t bytes);
    void (*release)(apr_backend *b, void *p);
    /* Makes w (type, rows, cols, row_bytes set) usable by the ops: sets
     * w->data from host bytes that stay valid while the model lives (the
     * mmap). Fails for a type the backend cannot multiply. */
    apr_status (*weight_upload)(apr_backend *b, apr_weight *w, const void *host);
    /* Optional (NULL: use weight_upload): the same from a reader, for a
     * device whose weights need no host copy: the bytes stream through the
     * backend's own staging buffers (the CUDA backend: pinned, chunks
     * decoded in parallel, each buffer uploaded as it fills), so neither the
     * decoded model nor the file's pages stay in host memory. */
    apr_status (*weight_upload_read)(apr_backend *b, apr_weight *w, const apr_weight_reader *r);
    void (*weight_release)(apr_backend *b, apr_weight *w);
    /* Whether the ops run attention of geometry p over a KV cache of
     * element type kv_type (apr_dtype) in blocks of block_tokens slots:
     * APR_OK, or APR_ERR_UNSUPPORTED with a message that names what is not
     * supported and what is. apr_context_new asks before it allocates
     * anything, so an unsupported combination fails there, never at a pass. */
    apr_status (*supports)(apr_backend *b, int kv_type, int block_tokens, const apr_attn_params *p);
    /* A queue of ops with its own scratch (one per context). */
    apr_stream *(*stream_new)(apr_backend *b, const apr_stream_sizes *sizes);
    void (*stream_free)(apr_stream *s);
    /* Copies between host and device memory, in stream order. */
    void (*upload)(apr_stream *s, void *dst, const void *src, size_t bytes);
    void (*download)(apr_stream *s, void *dst, const void *src, size_t bytes);
    /* Waits for the stream; reports a failure of any op since the last sync. */
    apr_status (*sync)(apr_stream *s);

    /* ---- the ops of a forward pass ---- */
    /* out[i] = row ids[i] of table, as f32.                  out [n][table.cols] */
    void (*get_rows)(apr_stream *s, float *out, const apr_weight *table, const int32_t *ids, int n);
    /* out[i] = x[rows[i]].                                   out [n][dim] */
    void (*gather)(apr_stream *s, float *out, const float *x, const int32_t *rows, int n, int64_t dim);
    /* out[i] = x[i] / sqrt(mean(x[i]^2) + eps) * w.          out, x [n][w.cols] (out may be x) */
    void (*rmsnorm)(apr_stream *s, float *out, const float *x, const apr_weight *w, int n, float eps);
    /* out[i] (+)= x[i]·Wᵀ + b.                               out [n][W.rows], x [n][W.cols] */
    void (*matmul)(apr_stream *s, float *out, const float *x, const apr_linear *W, int n, int accumulate);
    /* Rotates q and k of each token of qkv in place ([n][q | k | v], q of
     * n_head heads, k and v of n_head_kv) at its position, and writes its k
     * and v into layer `layer` of the cache at its slot. */
    void (*rope_store)(apr_stream *s, float *qkv, const apr_kv_cache *kv, int layer,
                       const apr_step *st, const apr_attn_params *p);
    /* Causal attention of each token's q (in qkv, already rotated) over its
     * sequence's cached keys and values, softmax in f32.   out [n][n_head * head_dim] */
    void (*attention)(apr_stream *s, float *out, const float *qkv, const apr_kv_cache *kv, int layer,
                      const apr_step *st, const apr_attn_params *p);
    /* SwiGLU's first half: out[i] = silu(x[i]·Gᵀ) * (x[i]·Uᵀ) for W = [G | U],
     * two parts of equal rows (ffn_gate, ffn_up).          out [n][G.rows], x [n][W.cols] */
    void (*matmul_glu)(apr_stream *s, float *out, const float *x, const apr_linear *W, int n);

    /* ---- optional (NULL where a backend has no use for them) ---- */
    /* Recorded passes (CUDA graphs: ~640 kernel launches of a 32B decode
     * step become one). Before a pass's ops, pass_begin(s, key) returns 1
     * when it has replayed the ops recorded under key (the caller skips
     * them), or 0 when the caller must issue them, being recorded; after
     * the last op, pass_end(s) finishes the recording and runs it. Every
     * pass of one key must issue the same ops with the same arguments (the
     * pointers are fixed per context; key carries n and n_out). No upload,
     * download or sync between the two. */
    int (*pass_begin)(apr_stream *s, uint64_t key);
    void (*pass_end)(apr_stream *s);
    /* ids[i] = the index of the largest logit of row i (ties: the lowest),
     * on the device, so greedy decoding copies back 4 bytes a token.
     *                                                       ids [n], logits [n][n_vocab] */
    void (*argmax)(apr_stream *s, int32_t *ids, const float *logits, int n, int64_t n_vocab);

    /* KV blocks to and from host memory (runtime/model/kvswap.c, swapping
     * to a zram pool). A block's pages are its 2 * n_layer tiles, one
     * layer's keys or values each (n_head_kv * block_tokens * row_bytes
     * bytes); page i of n blocks listed is block blocks[i / (2 n_layer)],
     * layer (i / 2) % n_layer, values for odd i. blocks, same, words and
     * staging are host memory from host_alloc, which the device reads and
     * writes itself: the stream's order covers them as it covers the
     * cache. Both backends have these four or neither.
     * kv_stage: same[i] = 1 and words[i] = w when page i is one 8-byte word
     * w repeated (it stays where it is: no copy), else 0, 0, and the page
     * copied to staging + i * page bytes.          same, words [n * 2 n_layer] */
    void (*kv_stage)(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, uint8_t *same,
                     uint64_t *words, void *staging);
    /* kv_load: the reverse: page i filled with words[i] where same[i], else
     * copied from staging + i * page bytes. */
    void (*kv_load)(apr_stream *s, const apr_kv_cache *kv, const int32_t *blocks, int n, const uint8_t *same,
                    const uint64_t *words, const void *staging);
    /* Host memory the device reaches directly (pinned and mapped on a GPU),
     * aligned to 64; NULL (message set) on failure. Not counted against
     * the device budget. */
    void *(*host_alloc)(apr_backend *b, size_t bytes);
    void (*host_release)(apr_backend *b, void *p);
};

/* The CPU backend with n_threads threads (0: the worker pool's default). */
apr_backend *apr_backend_cpu_new(int n_threads);

#endif
