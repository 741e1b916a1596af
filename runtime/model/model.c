/* model.c — loading a model: the file, its tokenizer, a backend, the weights.
 *
 * The file is read through the model-source interface (apr_source: GGUF,
 * split GGUF, other containers by their magic) and stays open for the
 * model's life: on the CPU the weights are its mapped bytes (never copied),
 * and the template's string points into it. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "core/error.h"
#include "trace/trace.h"

void apr_model_params_default(apr_model_params *p)
{
    memset(p, 0, sizeof *p);
    p->device = APR_DEVICE_AUTO;
}

/* The backend for the requested device: CUDA when asked (failing clearly
 * without a GPU) and for AUTO when a device apr's kernels run on exists;
 * otherwise the CPU. */
static apr_status open_backend(apr_model *m, const apr_model_params *p)
{
    APR_CHECK(p->device == APR_DEVICE_AUTO || p->device == APR_DEVICE_CPU || p->device == APR_DEVICE_CUDA,
              APR_ERR_INVALID, "unknown device kind %d", p->device);
    if (p->device == APR_DEVICE_CUDA || (p->device == APR_DEVICE_AUTO && apr_cuda_available())) {
        m->backend = apr_backend_cuda_new(p->gpu_index, p->vram_budget);
        if (m->backend) return APR_OK;
        APR_CHECK(p->device != APR_DEVICE_CUDA, APR_ERR_DEVICE, "%s: %s", m->path, apr_last_error());
    }
    m->backend = apr_backend_cpu_new(p->n_threads);
    return m->backend ? APR_OK : APR_ERR_NOMEM;
}

/* apr_model_load, and apr_model_validate with check_only: the same steps
 * and checks, without a backend, so nothing is uploaded (bind stops after
 * each tensor's checks). One path, so verify says what loading would. */
static apr_status load(const char *path, const apr_model_params *params, int check_only, apr_model **out)
{
    apr_model_params defaults;
    apr_model_params_default(&defaults);
    const apr_model_params *p = params ? params : &defaults;
    APR_CHECK(p->n_threads >= 0, APR_ERR_INVALID, "apr_model_load: n_threads %d is negative", p->n_threads);

    apr_model *m = calloc(1, sizeof *m);
    APR_CHECK(m, APR_ERR_NOMEM, "cannot allocate a model");
    APR_TRACE_BEGIN(APR_SPAN_MODEL_LOAD);
    atomic_init(&m->refs, 1);
    m->path = strdup(path);
    atomic_init(&m->refs, 1);
    m->vocab_only = p->vocab_only != 0;
    apr_status s = m->path ? APR_OK : apr_error(APR_ERR_NOMEM, "cannot allocate a model");
    if (s == APR_OK) s = apr_source_open(path, &m->src);
    if (s == APR_OK) {
        s = apr_tokenizer_from_source(m->src, &m->tok);
        if (s != APR_OK) s = apr_error(s, "%s: %s", path, apr_last_error());
    }
    if (s == APR_OK) {
        const char *name = "", *tmpl = NULL;
        apr_source_get_str(m->src, "general.name", &name);
        m->name = strdup(name);
        if (apr_source_get_str(m->src, "tokenizer.chat_template", &tmpl) == APR_OK) m->chat_template = tmpl;
        if (!m->name) s = apr_error(APR_ERR_NOMEM, "cannot allocate a model");
    }
    if (s == APR_OK) {
        /* a vocabulary file's hyperparameters may be placeholders: only a
         * model that runs needs them */
        s = apr_qwen2_hparams(m->src, path, &m->hp);
        if (m->vocab_only) {
            if (s != APR_OK) memset(&m->hp, 0, sizeof m->hp);
            m->hp.n_vocab = apr_tokenizer_n_vocab(m->tok);
            s = APR_OK;
        }
    }
    if (s == APR_OK && !m->vocab_only && !check_only) s = open_backend(m, p);
    APR_TRACE_BEGIN(APR_SPAN_WEIGHTS_UPLOAD);
    if (s == APR_OK && !m->vocab_only) s = apr_qwen2_bind(m);
    APR_TRACE_END(APR_SPAN_WEIGHTS_UPLOAD);
    APR_TRACE_END(APR_SPAN_MODEL_LOAD);
    if (s == APR_OK && !m->vocab_only && apr_tokenizer_n_vocab(m->tok) > m->hp.n_vocab)
        s = apr_error(APR_ERR_FORMAT, "%s: the tokenizer has %d tokens but token_embd.weight only %d rows", path,
                      apr_tokenizer_n_vocab(m->tok), m->hp.n_vocab);
    if (s != APR_OK) {
        apr_model_free(m);
        return s;
    }
    *out = m;
    return APR_OK;
}

apr_status apr_model_load(const char *path, const apr_model_params *params, apr_model **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "apr_model_load: out is NULL");
    *out = NULL;
    APR_CHECK(path, APR_ERR_INVALID, "apr_model_load: path is NULL");
    return load(path, params, 0, out);
}

apr_status apr_model_validate(const char *path)
{
    APR_CHECK(path, APR_ERR_INVALID, "apr_model_validate: path is NULL");
    apr_model *m = NULL;
    apr_status s = load(path, NULL, 1, &m);
    apr_model_free(m);
    return s;
}

apr_model *apr_model_retain(apr_model *m)
{
    if (m) atomic_fetch_add_explicit(&m->refs, 1, memory_order_relaxed);
    return m;
}

void apr_model_free(apr_model *m)
{
    if (!m) return;
    /* acq_rel: whatever a releasing thread did with the model happens
     * before the last one frees it */
    if (atomic_fetch_sub_explicit(&m->refs, 1, memory_order_acq_rel) != 1) return;
    if (m->backend) m->backend->destroy(m->backend);
    free(m->layers);
    apr_tokenizer_free(m->tok);
    apr_source_close(m->src);
    free(m->name);
    free(m->path);
    free(m);
}

void apr_model_get_info(const apr_model *m, apr_model_info *out)
{
    const apr_hparams *hp = &m->hp;
    *out = (apr_model_info){
        .arch = hp->arch,
        .name = m->name,
        .n_layer = hp->n_layer, .n_embd = hp->n_embd, .n_ff = hp->n_ff,
        .n_head = hp->n_head, .n_head_kv = hp->n_head_kv, .head_dim = hp->head_dim,
        .n_vocab = hp->n_vocab, .n_ctx_train = hp->n_ctx_train,
        .rope_base = hp->rope_base, .rms_eps = hp->rms_eps,
        .device = m->backend ? m->backend->device : APR_DEVICE_CPU,
        .weight_bytes = m->weight_bytes,
    };
}

const struct apr_tokenizer *apr_model_tokenizer(const apr_model *m) { return m ? m->tok : NULL; }

const char *apr_model_chat_template(const apr_model *m) { return m ? m->chat_template : NULL; }
