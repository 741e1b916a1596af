/* engine.c — the scheduler thread: continuous batching over one context.
 *
 * Callers (the server's Lua loop) submit requests into a locked queue and
 * read results from an event queue; an eventfd becomes readable whenever
 * events are waiting, so an event loop can watch it instead of blocking.
 * Only the engine thread touches the context and the samplers of running
 * requests.
 *
 * One step of the thread:
 *   1. apply cancellations and admit waiting requests into free sequences;
 *   2. build ONE batch: the last sampled token of every generating sequence,
 *      then prompt chunks of sequences still prefilling, up to n_batch
 *      tokens (so a long prompt never stalls the others for long);
 *   3. apr_decode it, sample each sequence that produced logits, and post a
 *      token event per sequence;
 *   4. a sequence that finished (a stop token, its token limit, an error)
 *      gets its final event and its KV cache is truncated at once, so the
 *      next waiting request can have it.
 * A request joins at the step after it arrives, never waiting for others to
 * finish. Each sequence only ever sees its own tokens at its own positions,
 * so batching does not change what it generates.
 *
 * Context: every sequence may hold n_ctx / n_seq tokens (as llama-server
 * splits -c among -np slots), so admission never has to guess whether the
 * cache will run out halfway through a generation. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include "core/error.h"
#include "core/parallel.h"
#include "model/model.h"  /* the context's paged cache, for its block counts */
#include "trace/trace.h"

/* ------------------------------------------------------------------ */
/* State                                                              */
/* ------------------------------------------------------------------ */

/* A submitted request, waiting or running. Owned by the engine. */
typedef struct job {
    uint64_t id;
    int32_t *prompt;          /* [n_prompt] */
    int n_prompt;
    int max_tokens;           /* after clamping to the sequence's room */
    int logprobs, top_logprobs;
    int ignore_eog;
    int plain_greedy;         /* argmax of the raw logits: no penalties, bias or logprobs */
    int32_t *stop_ids;        /* [n_stop_ids] */
    int n_stop_ids;
    apr_sampler *sampler;
    struct job *next;         /* in the waiting queue */

    /* Running state (engine thread only). */
    int seq;                  /* sequence index, -1 while waiting */
    int n_prefilled;          /* prompt tokens already decoded */
    int n_generated;
    int32_t last;             /* the token to decode next (after prefill) */
} job;

struct apr_engine {
    apr_model *model;
    const apr_tokenizer *tok;
    apr_context *ctx;
    int n_seq, n_batch, n_vocab, max_queue, n_ctx_seq;

    pthread_t thread;
    int thread_started;
    pthread_mutex_t lock;     /* guards everything below up to "engine thread only" */
    pthread_cond_t wake;
    int stopping;
    uint64_t next_id;
    job *queue_head, *queue_tail;
    int n_queued;
    uint64_t *cancels;        /* ids to cancel, [n_cancels] of [cap_cancels] */
    int n_cancels, cap_cancels;

    apr_engine_event *events; /* ring of [cap_events], n_events from ev_head */
    int ev_head, n_events, cap_events;
    int event_fd;

    apr_engine_stats stats;   /* published at the end of each step */

    /* Engine thread only. */
    job **running;            /* [n_seq], NULL where the sequence is free */
    int32_t *b_ids, *b_pos, *b_seq;  /* [n_batch] the step's batch */
    int32_t *argmax;          /* [n_seq] ids apr_decode_greedy chose */
    int8_t *b_logits;         /* [n_batch] */
    int *row_seq;             /* [n_seq] which sequence each logits row belongs to */
    apr_engine_event *row_ev; /* [n_seq] the event each row's sampling produced */
    int *row_done;            /* [n_seq] 1 if that row's sequence finished */
    int step_greedy;          /* this step decoded with apr_decode_greedy */
    float *logits;            /* [n_seq, n_vocab] f32 */
};

/* ------------------------------------------------------------------ */
/* Events                                                             */
/* ------------------------------------------------------------------ */

/* Appends an event (lock held). Grows the ring instead of ever dropping
 * one: a reader that falls behind costs memory, not correctness. */
static void post_locked(apr_engine *e, const apr_engine_event *ev)
{
    if (e->n_events == e->cap_events) {
        int cap = e->cap_events ? e->cap_events * 2 : 256;
        apr_engine_event *ring = malloc((size_t)cap * sizeof *ring);
        if (!ring) return;  /* out of memory: the event is lost, nothing else breaks */
        for (int i = 0; i < e->n_events; i++) ring[i] = e->events[(e->ev_head + i) % e->cap_events];
        free(e->events);
        e->events = ring;
        e->cap_events = cap;
        e->ev_head = 0;
    }
    e->events[(e->ev_head + e->n_events) % e->cap_events] = *ev;
    e->n_events++;
}

static void notify(apr_engine *e)
{
    uint64_t one = 1;
    ssize_t w = write(e->event_fd, &one, sizeof one);
    (void)w;  /* EAGAIN: the counter is already nonzero, the reader will wake */
}

static void finish_event(apr_engine_event *ev, const job *j, int finish)
{
    memset(ev, 0, sizeof *ev);
    ev->id = j->id;
    ev->token = -1;
    ev->finish = finish;
    ev->n_prompt = j->n_prompt;
    ev->n_generated = j->n_generated;
}

static void error_event(apr_engine_event *ev, const job *j, apr_status status, const char *msg)
{
    finish_event(ev, j, APR_FINISH_ERROR);
    ev->status = status;
    snprintf(ev->message, sizeof ev->message, "%s", msg);
}

/* ------------------------------------------------------------------ */
/* Jobs                                                               */
/* ------------------------------------------------------------------ */

static void job_free(job *j)
{
    if (!j) return;
    apr_sampler_free(j->sampler);
    free(j->prompt);
    free(j->stop_ids);
    free(j);
}

/* Frees a running job's sequence (engine thread). */
static void release(apr_engine *e, job *j)
{
    if (j->seq >= 0) {
        apr_context_seq_truncate(e->ctx, j->seq, 0);
        e->running[j->seq] = NULL;
    }
    job_free(j);
}

/* Takes the cancellations and the waiting requests that fit (lock held);
 * the final events of cancelled jobs are posted here too. Returns 1 if it
 * posted any. */
static int admit_locked(apr_engine *e)
{
    for (int c = 0; c < e->n_cancels; c++) {
        uint64_t id = e->cancels[c];
        apr_engine_event ev;
        for (int s = 0; s < e->n_seq; s++) {
            job *j = e->running[s];
            if (j && j->id == id) {
                finish_event(&ev, j, APR_FINISH_CANCELLED);
                post_locked(e, &ev);
                release(e, j);
            }
        }
        for (job **pp = &e->queue_head, *prev = NULL; *pp; prev = *pp, pp = &(*pp)->next) {
            job *j = *pp;
            if (j->id != id) continue;
            *pp = j->next;
            if (e->queue_tail == j) e->queue_tail = prev;
            e->n_queued--;
            finish_event(&ev, j, APR_FINISH_CANCELLED);
            post_locked(e, &ev);
            job_free(j);
            break;
        }
    }
    int posted = e->n_cancels > 0;
    e->n_cancels = 0;

    for (int s = 0; s < e->n_seq && e->queue_head; s++) {
        if (e->running[s]) continue;
        job *j = e->queue_head;
        e->queue_head = j->next;
        if (!e->queue_head) e->queue_tail = NULL;
        e->n_queued--;
        j->next = NULL;
        j->seq = s;
        e->running[s] = j;
    }
    return posted;
}

static int is_stop(const apr_engine *e, const job *j, int32_t id)
{
    if (!j->ignore_eog && apr_token_is_eog(e->tok, id)) return 1;
    for (int i = 0; i < j->n_stop_ids; i++)
        if (j->stop_ids[i] == id) return 1;
    return 0;
}

/* ------------------------------------------------------------------ */
/* One step                                                           */
/* ------------------------------------------------------------------ */

/* Fills the batch; returns its size, the number of logits rows and of
 * prompt tokens in it. */
static int build_batch(apr_engine *e, int *n_rows, int *n_prompt_tokens)
{
    int n = 0, rows = 0, prompt = 0;
    /* Generating sequences first: one token each, never starved. */
    for (int s = 0; s < e->n_seq; s++) {
        job *j = e->running[s];
        if (!j || j->n_prefilled < j->n_prompt) continue;
        e->b_ids[n] = j->last;
        e->b_pos[n] = j->n_prompt + j->n_generated - 1;
        e->b_seq[n] = s;
        e->b_logits[n] = 1;
        e->row_seq[rows++] = s;
        n++;
    }
    /* Then prompt chunks, in sequence order, while room remains. */
    for (int s = 0; s < e->n_seq && n < e->n_batch; s++) {
        job *j = e->running[s];
        if (!j || j->n_prefilled >= j->n_prompt) continue;
        int take = j->n_prompt - j->n_prefilled;
        if (take > e->n_batch - n) take = e->n_batch - n;
        for (int k = 0; k < take; k++) {
            e->b_ids[n] = j->prompt[j->n_prefilled + k];
            e->b_pos[n] = j->n_prefilled + k;
            e->b_seq[n] = s;
            e->b_logits[n] = 0;
            n++;
        }
        j->n_prefilled += take;
        prompt += take;
        if (j->n_prefilled == j->n_prompt) {
            e->b_logits[n - 1] = 1;
            e->row_seq[rows++] = s;
        }
    }
    *n_rows = rows;
    *n_prompt_tokens = prompt;
    return n;
}

/* Samples one sequence's next token from its logits row and fills its
 * event; returns 1 if the sequence is finished. Touches only j (lock not
 * held; may run on a worker thread). */
static int sample_one(apr_engine *e, job *j, const float *logits, int32_t chosen, apr_engine_event *ev)
{
    int32_t id = chosen;
    apr_status st = logits ? apr_sampler_sample(j->sampler, logits, &id) : APR_OK;
    if (st != APR_OK) {
        error_event(ev, j, st, apr_last_error());
        return 1;
    }
    memset(ev, 0, sizeof *ev);
    ev->id = j->id;
    ev->token = id;
    if (j->logprobs) {
        st = apr_sampler_logprobs(logits, e->n_vocab, id, j->top_logprobs, &ev->logprob, ev->top);
        if (st != APR_OK) {
            error_event(ev, j, st, apr_last_error());
            return 1;
        }
        ev->n_top = j->top_logprobs;
    }
    j->n_generated++;
    j->last = id;
    ev->n_prompt = j->n_prompt;
    ev->n_generated = j->n_generated;
    if (is_stop(e, j, id)) {
        ev->finish = APR_FINISH_STOP;
        ev->stop_token = 1;
    } else if (j->n_generated >= j->max_tokens) {
        ev->finish = APR_FINISH_LENGTH;
    }
    return ev->finish != APR_FINISH_NONE;
}

static void publish_locked(apr_engine *e)
{
    int running = 0, used = 0, blocks = 0;
    const apr_kvcache *kv = &e->ctx->cache;
    for (int s = 0; s < e->n_seq; s++) {
        blocks += kv->n_owned[s];
        if (!e->running[s]) continue;
        running++;
        used += apr_context_seq_len(e->ctx, s);
    }
    e->stats.running = running;
    e->stats.queued = e->n_queued;
    e->stats.kv_tokens_used = used;
    e->stats.kv_blocks_used = blocks;
    e->stats.kv_blocks_total = blocks + kv->n_free;
}

/* Samples logits rows [begin, end): each row belongs to its own sequence,
 * sampler and event, so rows run on the worker pool side by side (with
 * 16 sequences and a 152k vocabulary, sampling one after another would
 * take milliseconds per step). */
static void sample_rows(void *ctx, int64_t begin, int64_t end, int thread)
{
    apr_engine *e = ctx;
    for (int64_t r = begin; r < end; r++) {
        job *j = e->running[e->row_seq[r]];
        const float *logits = e->step_greedy ? NULL : e->logits + (size_t)r * e->n_vocab;
        e->row_done[r] = sample_one(e, j, logits, e->argmax[r], &e->row_ev[r]);
    }
}

/* Runs one step over the running sequences (lock not held). */
static void step(apr_engine *e)
{
    int rows, prompt;
    APR_TRACE_BEGIN(APR_SPAN_SCHEDULE);
    int n = build_batch(e, &rows, &prompt);
    APR_TRACE_END(APR_SPAN_SCHEDULE);
    if (n == 0) return;
    apr_batch b = { n, e->b_ids, e->b_pos, e->b_seq, e->b_logits };
    /* When every row only wants the argmax, the choice is made where the
     * logits are (on the GPU: 4 bytes a row come back instead of n_vocab
     * floats). Its tie rule is the sampler's, so the tokens are the same
     * whichever way a row went. */
    e->step_greedy = 1;
    for (int r = 0; r < rows && e->step_greedy; r++) e->step_greedy = e->running[e->row_seq[r]]->plain_greedy;
    apr_status st = e->step_greedy ? apr_decode_greedy(e->ctx, &b, e->argmax) : apr_decode(e->ctx, &b, e->logits);
    /* Sampling from logits is worth the worker pool; taking the argmax
     * the GPU chose is a few stores a row, less than waking the pool. */
    if (st == APR_OK) {
        if (rows > 1 && !e->step_greedy) apr_parallel_for(rows, 1, sample_rows, e);
        else sample_rows(e, 0, rows, 0);
    }

    pthread_mutex_lock(&e->lock);
    if (st != APR_OK) {
        /* The cache is unchanged on failure; the sequences of this batch
         * cannot go on, the others (none here: all were in it) can. */
        const char *msg = apr_last_error();
        for (int s = 0; s < e->n_seq; s++) {
            job *j = e->running[s];
            if (!j) continue;
            int in_batch = 0;
            for (int k = 0; k < n && !in_batch; k++) in_batch = e->b_seq[k] == s;
            if (!in_batch) continue;
            apr_engine_event ev;
            error_event(&ev, j, st, msg);
            post_locked(e, &ev);
            release(e, j);
        }
    } else {
        for (int r = 0; r < rows; r++) {
            post_locked(e, &e->row_ev[r]);
            e->stats.tokens_generated++;
            if (e->row_done[r]) release(e, e->running[e->row_seq[r]]);
        }
    }
    e->stats.tokens_prompt += (uint64_t)prompt;
    e->stats.steps++;
    e->stats.batch_tokens_last = n;
    /* Stats first, so a reader woken by this step's events sees them. */
    publish_locked(e);
    notify(e);
    pthread_mutex_unlock(&e->lock);
}

static void *engine_main(void *arg)
{
    apr_engine *e = arg;
    apr_trace_thread_name("engine");
    pthread_mutex_lock(&e->lock);
    for (;;) {
        APR_TRACE_BEGIN(APR_SPAN_SCHEDULE);
        int posted = admit_locked(e);
        APR_TRACE_END(APR_SPAN_SCHEDULE);
        publish_locked(e);
        if (posted) notify(e);
        if (e->stopping) break;
        int any = 0;
        for (int s = 0; s < e->n_seq && !any; s++) any = e->running[s] != NULL;
        if (!any) {
            pthread_cond_wait(&e->wake, &e->lock);
            continue;
        }
        pthread_mutex_unlock(&e->lock);
        APR_TRACE_BEGIN(APR_SPAN_ENGINE_STEP);
        step(e);
        APR_TRACE_END(APR_SPAN_ENGINE_STEP);
        pthread_mutex_lock(&e->lock);
    }
    pthread_mutex_unlock(&e->lock);
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Public functions                                                   */
/* ------------------------------------------------------------------ */

void apr_engine_params_default(apr_engine_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_seq = 4;
    p->n_ctx = 0;
    p->n_batch = 512;
    p->max_queue = 64;
    p->kv_type = APR_F16;
}

void apr_engine_request_default(apr_engine_request *r)
{
    memset(r, 0, sizeof *r);
    r->max_tokens = 16;
    apr_sampler_params_default(&r->sampling);
}

apr_status apr_engine_new(apr_model *m, const apr_engine_params *p, apr_engine **out)
{
    APR_CHECK(out, APR_ERR_INVALID, "engine: out is NULL");
    *out = NULL;
    APR_CHECK(m && p, APR_ERR_INVALID, "engine: NULL model or params");
    APR_CHECK(p->n_seq >= 1 && p->n_seq <= 1024, APR_ERR_INVALID, "engine: n_seq %d is not in [1, 1024]", p->n_seq);
    APR_CHECK(p->n_batch >= 1, APR_ERR_INVALID, "engine: n_batch %d must be positive", p->n_batch);
    APR_CHECK(p->max_queue >= 0, APR_ERR_INVALID, "engine: max_queue %d is negative", p->max_queue);

    apr_engine *e = calloc(1, sizeof *e);
    APR_CHECK(e, APR_ERR_NOMEM, "engine: out of memory");
    e->model = apr_model_retain(m);  /* the thread reads it until apr_engine_free */
    e->tok = apr_model_tokenizer(m);
    e->n_seq = p->n_seq;
    /* Every generating sequence needs a slot in each step's batch. */
    e->n_batch = p->n_batch < p->n_seq ? p->n_seq : p->n_batch;
    e->max_queue = p->max_queue;
    e->next_id = 1;
    e->event_fd = -1;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->wake, NULL);

    apr_model_info info;
    apr_model_get_info(m, &info);
    e->n_vocab = info.n_vocab;

    apr_context_params cp;
    apr_context_params_default(&cp);
    cp.n_ctx = p->n_ctx;
    cp.n_seq = p->n_seq;
    cp.n_batch = e->n_batch;
    if (p->kv_type) cp.kv_type = p->kv_type;
    APR_TRACE_BEGIN(APR_SPAN_TENSOR_ALLOC);
    apr_status st = apr_context_new(m, &cp, &e->ctx);
    APR_TRACE_END(APR_SPAN_TENSOR_ALLOC);
    if (st != APR_OK) {
        apr_engine_free(e);
        return st;
    }
    int n_ctx = apr_context_n_ctx(e->ctx);
    e->n_ctx_seq = n_ctx / e->n_seq;
    if (e->n_ctx_seq < 2) {
        apr_engine_free(e);
        return apr_error(APR_ERR_INVALID, "engine: a context of %d tokens leaves %d per sequence for %d sequences",
                         n_ctx, n_ctx / p->n_seq, p->n_seq);
    }
    e->stats.n_seq = e->n_seq;
    e->stats.n_ctx = n_ctx;
    e->stats.n_ctx_seq = e->n_ctx_seq;
    e->stats.kv_tokens_total = n_ctx;

    e->running = calloc((size_t)e->n_seq, sizeof *e->running);
    e->b_ids = malloc((size_t)e->n_batch * sizeof *e->b_ids);
    e->b_pos = malloc((size_t)e->n_batch * sizeof *e->b_pos);
    e->b_seq = malloc((size_t)e->n_batch * sizeof *e->b_seq);
    e->b_logits = malloc((size_t)e->n_batch);
    e->row_seq = malloc((size_t)e->n_seq * sizeof *e->row_seq);
    e->row_ev = malloc((size_t)e->n_seq * sizeof *e->row_ev);
    e->row_done = malloc((size_t)e->n_seq * sizeof *e->row_done);
    e->argmax = malloc((size_t)e->n_seq * sizeof *e->argmax);
    e->logits = malloc((size_t)e->n_seq * (size_t)e->n_vocab * sizeof *e->logits);
    e->cap_cancels = 64;
    e->cancels = malloc((size_t)e->cap_cancels * sizeof *e->cancels);
    if (!e->running || !e->b_ids || !e->b_pos || !e->b_seq || !e->b_logits || !e->row_seq || !e->row_ev ||
        !e->row_done || !e->argmax || !e->logits ||
        !e->cancels) {
        apr_engine_free(e);
        return apr_error(APR_ERR_NOMEM, "engine: out of memory for %d sequences of %d logits", p->n_seq, e->n_vocab);
    }
    e->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (e->event_fd < 0) {
        int err = errno;
        apr_engine_free(e);
        return apr_error(APR_ERR_IO, "engine: eventfd: %s", strerror(err));
    }
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0) {
        apr_engine_free(e);
        return apr_error(APR_ERR_NOMEM, "engine: cannot start its thread");
    }
    e->thread_started = 1;
    *out = e;
    return APR_OK;
}

void apr_engine_free(apr_engine *e)
{
    if (!e) return;
    if (e->thread_started) {
        pthread_mutex_lock(&e->lock);
        e->stopping = 1;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->thread, NULL);
    }
    if (e->running)
        for (int s = 0; s < e->n_seq; s++) job_free(e->running[s]);
    for (job *j = e->queue_head, *next; j; j = next) {
        next = j->next;
        job_free(j);
    }
    apr_context_free(e->ctx);
    if (e->event_fd >= 0) close(e->event_fd);
    free(e->running);
    free(e->b_ids);
    free(e->b_pos);
    free(e->b_seq);
    free(e->b_logits);
    free(e->row_seq);
    free(e->row_ev);
    free(e->row_done);
    free(e->argmax);
    free(e->logits);
    free(e->cancels);
    free(e->events);
    pthread_mutex_destroy(&e->lock);
    pthread_cond_destroy(&e->wake);
    apr_model_free(e->model);
    free(e);
}

int apr_engine_fd(const apr_engine *e) { return e ? e->event_fd : -1; }

apr_status apr_engine_submit(apr_engine *e, const apr_engine_request *r, uint64_t *id)
{
    APR_CHECK(e && r && id, APR_ERR_INVALID, "engine submit: NULL argument");
    *id = 0;
    APR_CHECK(r->n_prompt >= 1 && r->prompt, APR_ERR_INVALID, "engine submit: the prompt is empty");
    APR_CHECK(r->max_tokens >= 1, APR_ERR_INVALID, "engine submit: max_tokens %d must be at least 1", r->max_tokens);
    APR_CHECK(r->top_logprobs >= 0 && r->top_logprobs <= APR_ENGINE_MAX_TOP, APR_ERR_INVALID,
              "engine submit: top_logprobs %d is not in [0, %d]", r->top_logprobs, APR_ENGINE_MAX_TOP);
    APR_CHECK(r->n_stop_ids >= 0 && (r->n_stop_ids == 0 || r->stop_ids), APR_ERR_INVALID,
              "engine submit: bad stop ids");
    APR_CHECK(r->n_bias >= 0 && (r->n_bias == 0 || (r->bias_ids && r->bias)), APR_ERR_INVALID,
              "engine submit: bad logit bias");
    for (int i = 0; i < r->n_prompt; i++)
        APR_CHECK(r->prompt[i] >= 0 && r->prompt[i] < e->n_vocab, APR_ERR_RANGE,
                  "engine submit: prompt token %d is id %d, outside [0, %d)", i, r->prompt[i], e->n_vocab);
    for (int i = 0; i < r->n_stop_ids; i++)
        APR_CHECK(r->stop_ids[i] >= 0 && r->stop_ids[i] < e->n_vocab, APR_ERR_RANGE,
                  "engine submit: stop id %d is outside [0, %d)", r->stop_ids[i], e->n_vocab);
    /* The prompt and at least one generated token must fit the sequence. */
    APR_CHECK(r->n_prompt < e->n_ctx_seq, APR_ERR_RANGE,
              "the prompt of %d tokens does not fit the context of %d tokens per sequence",
              r->n_prompt, e->n_ctx_seq);

    job *j = calloc(1, sizeof *j);
    APR_CHECK(j, APR_ERR_NOMEM, "engine submit: out of memory");
    j->seq = -1;
    j->n_prompt = r->n_prompt;
    j->max_tokens = r->max_tokens;
    if (j->max_tokens > e->n_ctx_seq - r->n_prompt) j->max_tokens = e->n_ctx_seq - r->n_prompt;
    j->logprobs = r->logprobs || r->top_logprobs > 0;
    j->top_logprobs = r->top_logprobs;
    j->ignore_eog = r->ignore_eog;
    const apr_sampler_params *sp = &r->sampling;
    j->plain_greedy = sp->temperature <= 0 && !j->logprobs && r->n_bias == 0 &&
                      (sp->penalty_last_n == 0 || (sp->repeat_penalty == 1 && sp->presence_penalty == 0 &&
                                                   sp->frequency_penalty == 0));
    j->prompt = malloc((size_t)r->n_prompt * sizeof *j->prompt);
    j->n_stop_ids = r->n_stop_ids;
    if (r->n_stop_ids) j->stop_ids = malloc((size_t)r->n_stop_ids * sizeof *j->stop_ids);
    if (!j->prompt || (r->n_stop_ids && !j->stop_ids)) {
        job_free(j);
        return apr_error(APR_ERR_NOMEM, "engine submit: out of memory for %d prompt tokens", r->n_prompt);
    }
    memcpy(j->prompt, r->prompt, (size_t)r->n_prompt * sizeof *j->prompt);
    if (r->n_stop_ids) memcpy(j->stop_ids, r->stop_ids, (size_t)r->n_stop_ids * sizeof *j->stop_ids);
    apr_status st = apr_sampler_new(e->n_vocab, &r->sampling, &j->sampler);
    if (st == APR_OK && r->n_bias) st = apr_sampler_set_logit_bias(j->sampler, r->n_bias, r->bias_ids, r->bias);
    /* The prompt's tail enters the penalty window, as in llama.cpp and
     * apr.load(...):generate, so both penalise the same repeats. */
    int window = r->sampling.penalty_last_n;
    for (int i = r->n_prompt - window < 0 ? 0 : r->n_prompt - window; st == APR_OK && window > 0 && i < r->n_prompt; i++)
        st = apr_sampler_accept(j->sampler, r->prompt[i]);
    if (st != APR_OK) {
        job_free(j);
        return st;
    }

    pthread_mutex_lock(&e->lock);
    int free_seqs = 0;
    for (int s = 0; s < e->n_seq; s++) free_seqs += e->running[s] == NULL;
    if (e->stopping || e->n_queued >= e->max_queue + free_seqs) {
        int queued = e->n_queued;
        pthread_mutex_unlock(&e->lock);
        job_free(j);
        return apr_error(APR_ERR_BUSY, "engine busy: %d requests are already waiting", queued);
    }
    j->id = e->next_id++;
    if (e->queue_tail) e->queue_tail->next = j;
    else e->queue_head = j;
    e->queue_tail = j;
    e->n_queued++;
    e->stats.submitted++;
    *id = j->id;
    pthread_mutex_unlock(&e->lock);
    /* Signalled after unlocking: a thread woken under the lock would run
     * straight into it and sleep again until we let go. */
    pthread_cond_signal(&e->wake);
    return APR_OK;
}

apr_status apr_engine_cancel(apr_engine *e, uint64_t id)
{
    APR_CHECK(e, APR_ERR_INVALID, "engine cancel: NULL engine");
    pthread_mutex_lock(&e->lock);
    if (e->n_cancels == e->cap_cancels) {
        uint64_t *c = realloc(e->cancels, (size_t)e->cap_cancels * 2 * sizeof *c);
        if (!c) {
            pthread_mutex_unlock(&e->lock);
            return apr_error(APR_ERR_NOMEM, "engine cancel: out of memory");
        }
        e->cancels = c;
        e->cap_cancels *= 2;
    }
    e->cancels[e->n_cancels++] = id;
    pthread_mutex_unlock(&e->lock);
    pthread_cond_signal(&e->wake);
    return APR_OK;
}

int apr_engine_poll(apr_engine *e, apr_engine_event *out, int max)
{
    if (!e || !out || max <= 0) return 0;
    /* Reset the eventfd before taking events: an event posted after this
     * read makes it readable again, so none is left without a wake-up. */
    uint64_t count;
    ssize_t r = read(e->event_fd, &count, sizeof count);
    (void)r;
    pthread_mutex_lock(&e->lock);
    int n = e->n_events < max ? e->n_events : max;
    for (int i = 0; i < n; i++) out[i] = e->events[(e->ev_head + i) % e->cap_events];
    if (n) {
        e->ev_head = (e->ev_head + n) % e->cap_events;
        e->n_events -= n;
    }
    /* Events left behind (max was too small): keep the fd readable. */
    if (e->n_events) notify(e);
    pthread_mutex_unlock(&e->lock);
    return n;
}

void apr_engine_get_stats(apr_engine *e, apr_engine_stats *out)
{
    if (!e || !out) return;
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    pthread_mutex_unlock(&e->lock);
}
