/* engine.c — the scheduler thread: continuous batching over one context.
 *
 * Callers (the server's Lua loop, or apr.load(...):generate through a
 * one-sequence engine) submit requests into a locked queue and read results
 * from an event queue; an eventfd becomes readable whenever events are
 * waiting, so an event loop can watch it instead of blocking. Only the
 * engine thread touches the context and the samplers of running requests.
 * Sampling, penalties, stop tokens, max_tokens and prefix reuse live here,
 * once, for every client.
 *
 * A request's tokens are its prompt followed by what it has generated; the
 * sequence it runs in holds the keys and values of all but the last of
 * them, and decoding the last gives the logits of the next. One step of
 * the thread:
 *   1. apply cancellations and admit waiting requests into free sequences,
 *      each first taking from the prefix cache the blocks that begin its
 *      tokens;
 *   2. plan ONE batch: the last token of every sequence that has one token
 *      left to decode, then prompt chunks of those still prefilling (a
 *      share for the oldest, then the shortest first), up to n_batch
 *      tokens, so a long prompt never stalls the others; making sure the
 *      pool has a block for every slot the batch takes;
 *   3. apr_decode it, sample each sequence that produced logits, and post a
 *      token event per sequence;
 *   4. a sequence that finished (a stop token, its token limit, an error)
 *      gets its final event and lets go of its blocks at once (full ones
 *      stay in the prefix cache for the next request that starts the same
 *      way).
 *
 * Paged admission. All sequences draw blocks from one pool as they grow:
 * a request may use the whole cache while the others are idle, and n_seq
 * bounds how many run, not how long each is. A request is admitted when a
 * sequence is free and the pool has blocks for its prompt beside one more
 * for each running sequence. When a step needs a block and the pool is
 * dry, the newest running request is preempted (preempt() below): it
 * lets go of its blocks and goes back to the head of the queue, to be
 * recomputed from its tokens later. The oldest request therefore always
 * advances, and nobody fails for want of memory.
 *
 * A request joins at the step after it arrives, never waiting for others to
 * finish. Each sequence only ever sees its own tokens at its own positions,
 * and on the CPU a token's logits are the same bits whatever shares its
 * batch and whether its prefix was decoded, reused or recomputed, so
 * batching, prefix reuse and preemption do not change what it generates. */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
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
    uint64_t id;              /* also its age: a smaller id arrived earlier */
    int32_t *tokens;          /* [n_prompt + max_tokens] the prompt, then each token generated */
    int n_prompt, n_tokens;
    int max_tokens;           /* after clamping to the pool */
    int logprobs, top_logprobs;
    int ignore_eog;
    int plain_greedy;         /* argmax of the raw logits: no penalties, bias or logprobs */
    int32_t *stop_ids;        /* [n_stop_ids] */
    int n_stop_ids;
    apr_sampler *sampler;
    struct job *next;         /* in the waiting queue */

    /* Engine thread only. */
    int seq;                  /* sequence index, -1 while waiting */
    int n_generated;          /* n_tokens - n_prompt */
    int n_cached;             /* prompt tokens the prefix cache gave it before its first preemption */
    int preempted;            /* times it was preempted */
    int take;                 /* tokens of it in this step's batch */
    int left;                 /* tokens it has yet to be given in this step's plan (sorting) */
    int planned;              /* blocks this step's batch takes for it */
} job;

struct apr_engine {
    apr_model *model;
    const apr_tokenizer *tok;
    apr_context *ctx;
    int n_seq, n_batch, n_vocab, max_queue, n_ctx;

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
    job **order;              /* [n_seq] the running jobs of this step, oldest first */
    job **prefill;            /* [n_seq] those with more than one token to decode (planning) */
    int n_order;
    job *requeue;             /* jobs preempted this step, oldest first, for the queue's head */
    int plan_tokens;          /* tokens this step's plan decodes */
    int planned;              /* blocks this step's plan takes */
    uint64_t reused, preemptions;  /* totals, for the stats */
    int32_t *b_ids, *b_pos, *b_seq;  /* [n_batch] the step's batch */
    int32_t *argmax;          /* [n_seq] ids apr_decode_greedy chose */
    int8_t *b_logits;         /* [n_batch] */
    int *row_seq;             /* [n_seq] which sequence each logits row belongs to */
    apr_engine_event *row_ev; /* [n_seq] the event each row's sampling produced */
    int *row_done;            /* [n_seq] 1 if that row's sequence finished */
    int step_greedy;          /* this step decoded with apr_decode_greedy */
    float *logits;            /* [n_seq, n_vocab] f32 */

    apr_zram *zram;           /* evicted KV blocks (apr_context_set_zram), or NULL; thread-safe itself */
    apr_kv_swap_stats swap;   /* the context's swap counters, published with the stats (lock) */
};

static apr_kvcache *kv(apr_engine *e) { return &e->ctx->cache; }

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
    ev->n_cached = j->n_cached;
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
    free(j->tokens);
    free(j->stop_ids);
    free(j);
}

/* Lets go of a running job's sequence: its blocks return to the pool, the
 * full ones to the prefix cache (engine thread). */
static void leave(apr_engine *e, job *j)
{
    int32_t unused_from, unused_to;
    apr_kvcache_truncate(kv(e), j->seq, 0, &unused_from, &unused_to);  /* to 0: never a copy, never fails */
    e->running[j->seq] = NULL;
    j->seq = -1;
}

/* Frees a running job (engine thread). */
static void release(apr_engine *e, job *j)
{
    if (j->seq >= 0) leave(e, j);
    job_free(j);
}

/* Takes from the prefix cache the blocks that continue j's sequence with
 * its tokens, keeping the last token to decode (its logits are the next
 * step's). The sequence must end at a block boundary. */
static void reuse(apr_engine *e, job *j)
{
    const int got = apr_kvcache_match(kv(e), j->seq, j->tokens, j->n_tokens - 1);
    if (!j->preempted && j->n_generated == 0) j->n_cached += got;
    e->reused += (uint64_t)got;
}

/* Blocks j still has to take to hold all its tokens. */
static int blocks_to_finish(apr_engine *e, const job *j)
{
    const apr_kvcache *c = kv(e);
    return apr_kvcache_blocks_needed(c, j->seq, j->n_tokens - apr_kvcache_len(c, j->seq));
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

    /* First come, first served: a request whose prompt does not fit yet
     * waits, and so do those behind it, so a long prompt is not starved by
     * a stream of short ones. */
    int n_running = 0;
    for (int s = 0; s < e->n_seq; s++) n_running += e->running[s] != NULL;
    for (int s = 0; s < e->n_seq && e->queue_head; s++) {
        if (e->running[s]) continue;
        job *j = e->queue_head;
        j->seq = s;
        e->running[s] = j;
        const uint64_t reused_before = e->reused;
        const int cached_before = j->n_cached;
        reuse(e, j);
        /* blocks for its prompt, and one more for each running sequence's
         * next step, so that admitting it does not preempt at once */
        if (n_running > 0 && blocks_to_finish(e, j) > apr_kvcache_available(kv(e)) - n_running) {
            leave(e, j);
            j->n_cached = cached_before;
            e->reused = reused_before;
            break;
        }
        e->queue_head = j->next;
        if (!e->queue_head) e->queue_tail = NULL;
        e->n_queued--;
        j->next = NULL;
        n_running++;
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
/* Planning a step                                                    */
/* ------------------------------------------------------------------ */

/* Tokens j has yet to decode (the last of them gives its next logits). */
static int pending(apr_engine *e, const job *j) { return j->n_tokens - apr_kvcache_len(kv(e), j->seq); }

/* Blocks the pool can still give this step's plan. */
static int spare(apr_engine *e) { return apr_kvcache_available(kv(e)) - e->planned; }

/* Preempts j: it lets go of its sequence and waits again, at the head of
 * the queue, holding everything it needs to go on: its tokens (the prompt
 * and what it generated, already posted), its sampler (the random state
 * and the penalty window go on where they were), its counts. Its full
 * blocks stay in the prefix cache, so when it is admitted again the part
 * not evicted meanwhile is taken back, and the rest recomputed.
 *
 * With a zram pool (apr_engine_params.zram_ratio), the blocks evicted
 * meanwhile are not lost: eviction copies them to the pool, and reuse() at
 * admission loads them back (runtime/model/kvswap.c), so nothing of the
 * prompt is recomputed while the pool keeps it. */
static void preempt(apr_engine *e, job *j)
{
    e->planned -= j->planned;
    e->plan_tokens -= j->take;
    j->planned = 0;
    j->take = 0;
    leave(e, j);
    j->preempted++;
    e->preemptions++;
    /* off this step's order; queued at its end, oldest first */
    int k = 0;
    for (int i = 0; i < e->n_order; i++)
        if (e->order[i] != j) e->order[k++] = e->order[i];
    e->n_order = k;
    job **pp = &e->requeue;
    while (*pp && (*pp)->id < j->id) pp = &(*pp)->next;
    j->next = *pp;
    *pp = j;
}

/* Makes room in the pool for `blocks` more blocks for j by preempting the
 * newest running jobs; returns 0 if j was the newest and was preempted. */
static int make_room(apr_engine *e, job *j, int blocks)
{
    while (spare(e) < blocks) {
        job *newest = e->order[e->n_order - 1];
        preempt(e, newest);
        if (newest == j) return 0;
    }
    return 1;
}

static int by_age(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Prompt tokens j has yet to be given in this step's plan. */
static int tokens_left(apr_engine *e, const job *j) { return pending(e, j) - j->take; }

static int by_tokens_left(const void *a, const void *b)
{
    const job *x = *(job *const *)a, *y = *(job *const *)b;
    if (x->left != y->left) return x->left < y->left ? -1 : 1;
    return by_age(a, b);
}

/* Adds up to `want` more of j's prompt to this step's plan, as far as the
 * batch and the pool allow (preempting newer jobs when the pool cannot
 * give j a single slot). `singles` is the batch's share of single tokens. */
static void grant(apr_engine *e, job *j, int want, int singles)
{
    apr_kvcache *c = kv(e);
    if (j->seq < 0) return;  /* preempted meanwhile */
    const int len = apr_kvcache_len(c, j->seq) + j->take, left = tokens_left(e, j);
    int take = e->n_batch - e->plan_tokens;
    if (left < take) take = left;
    if (want < take) take = want;
    if (take <= 0) return;
    /* slots in the blocks it holds or is given, and in those the pool can give */
    int room = (c->n_owned[j->seq] + j->planned) * APR_KV_BLOCK - len;
    if (room + spare(e) * APR_KV_BLOCK < 1) {
        if (!make_room(e, j, 1)) return;
        room = (c->n_owned[j->seq] + j->planned) * APR_KV_BLOCK - len;
    }
    const int fits = room + spare(e) * APR_KV_BLOCK;
    if (take > fits) take = fits;
    /* A chunk that does not finish the prompt ends on a block boundary:
     * the next chunk then starts on one, where the prefix cache can supply
     * it (another request may be computing the same block now). One that
     * would not reach the next boundary waits a step, if a step can hold a
     * block beside the single tokens (the oldest prompt then always
     * advances). */
    if (take < left) {
        const int aligned = take - (len + take) % APR_KV_BLOCK;
        if (aligned > 0) take = aligned;
        else if (e->n_batch - singles >= APR_KV_BLOCK) return;
    }
    const int need = apr_kvcache_blocks_needed(c, j->seq, j->take + take) - j->planned;
    j->take += take;
    j->planned += need;
    e->planned += need;
    e->plan_tokens += take;
}

/* Decides each running job's share of the batch (j->take), preempting
 * where the pool cannot hold it; returns the batch's size. */
static int plan(apr_engine *e)
{
    apr_kvcache *c = kv(e);
    e->n_order = 0;
    e->planned = 0;
    e->plan_tokens = 0;
    for (int s = 0; s < e->n_seq; s++)
        if (e->running[s]) e->order[e->n_order++] = e->running[s];
    qsort(e->order, (size_t)e->n_order, sizeof *e->order, by_age);
    /* Prompts whose first blocks another request has just computed take
     * them now (16 requests with the same preamble, admitted together,
     * compute it once). Before any planning: a block taken from the cache
     * is one the pool can no longer give. */
    for (int i = 0; i < e->n_order; i++) {
        job *j = e->order[i];
        j->take = j->planned = 0;
        if (pending(e, j) > 1 && apr_kvcache_len(c, j->seq) % APR_KV_BLOCK == 0) reuse(e, j);
    }

    /* One token each for those with one left: never starved. */
    for (int i = 0; i < e->n_order; i++) {
        job *j = e->order[i];
        if (pending(e, j) != 1) continue;
        const int need = apr_kvcache_blocks_needed(c, j->seq, 1);
        if (!make_room(e, j, need)) {
            i--;  /* j left the order */
            continue;
        }
        j->take = 1;
        j->planned = need;
        e->planned += need;
        e->plan_tokens++;
    }
    /* Then prompt chunks. The oldest prompt gets a quarter of what the
     * single tokens leave first (so it always advances); the others then
     * go shortest first, so short requests beside a long prompt get their
     * first tokens at once instead of after it; what is left goes to the
     * oldest first. */
    const int singles = e->plan_tokens;
    int n_prefill = 0;
    for (int i = 0; i < e->n_order; i++)
        if (pending(e, e->order[i]) > 1) e->prefill[n_prefill++] = e->order[i];
    if (n_prefill > 0) {
        int quota = (e->n_batch - singles) / 4;
        quota = quota < APR_KV_BLOCK ? APR_KV_BLOCK : quota - quota % APR_KV_BLOCK;
        grant(e, e->prefill[0], quota, singles);
        for (int i = 1; i < n_prefill; i++) {
            job *j = e->prefill[i];
            j->left = j->seq >= 0 ? tokens_left(e, j) : 0;  /* preempted by the oldest's share: skipped */
        }
        qsort(e->prefill + 1, (size_t)n_prefill - 1, sizeof *e->prefill, by_tokens_left);
        for (int i = 1; i < n_prefill; i++) grant(e, e->prefill[i], INT_MAX, singles);
        qsort(e->prefill, (size_t)n_prefill, sizeof *e->prefill, by_age);
        for (int i = 0; i < n_prefill; i++) grant(e, e->prefill[i], INT_MAX, singles);
    }
    return e->plan_tokens;
}

/* ------------------------------------------------------------------ */
/* One step                                                           */
/* ------------------------------------------------------------------ */

/* Fills the batch from the plan; returns its size, the number of logits
 * rows and of prompt tokens in it. */
static int build_batch(apr_engine *e, int *n_rows, int *n_prompt_tokens)
{
    int n = 0, rows = 0, prompt = 0;
    /* the single tokens first, then the chunks: as planned */
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < e->n_order; i++) {
            job *j = e->order[i];
            if (j->take == 0 || (pass == 0) != (pending(e, j) == 1)) continue;
            const int len = apr_kvcache_len(kv(e), j->seq);
            for (int k = 0; k < j->take; k++) {
                e->b_ids[n] = j->tokens[len + k];
                e->b_pos[n] = len + k;
                e->b_seq[n] = j->seq;
                e->b_logits[n] = 0;
                prompt += len + k < j->n_prompt;
                n++;
            }
            if (len + j->take == j->n_tokens) {
                e->b_logits[n - 1] = 1;
                e->row_seq[rows++] = j->seq;
            }
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
    j->tokens[j->n_tokens++] = id;
    j->n_generated++;
    ev->n_prompt = j->n_prompt;
    ev->n_generated = j->n_generated;
    ev->n_cached = j->n_cached;
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
    int running = 0, used = 0;
    const apr_kvcache *c = kv(e);
    for (int s = 0; s < e->n_seq; s++) {
        if (!e->running[s]) continue;
        running++;
        used += apr_kvcache_len(c, s);
    }
    e->stats.running = running;
    e->stats.queued = e->n_queued;
    e->stats.kv_tokens_used = used;
    e->stats.kv_blocks_total = c->dev.n_blocks;
    e->stats.kv_blocks_cached = c->n_lru;
    e->stats.kv_blocks_used = c->dev.n_blocks - c->n_free - c->n_lru;
    e->stats.tokens_reused = e->reused;
    e->stats.preemptions = e->preemptions;
    if (e->zram) apr_context_get_swap_stats(e->ctx, &e->swap);
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

/* Puts this step's preempted jobs back at the head of the queue, oldest
 * first (lock held). */
static void requeue_locked(apr_engine *e)
{
    if (!e->requeue) return;
    job *last = e->requeue;
    int k = 1;
    while (last->next) {
        last = last->next;
        k++;
    }
    last->next = e->queue_head;
    if (!e->queue_head) e->queue_tail = last;
    e->queue_head = e->requeue;
    e->requeue = NULL;
    e->n_queued += k;
}

/* Runs one step over the running sequences (lock not held). */
static void step(apr_engine *e)
{
    int rows = 0, prompt = 0;
    APR_TRACE_BEGIN(APR_SPAN_SCHEDULE);
    int n = plan(e);
    if (n > 0) n = build_batch(e, &rows, &prompt);
    APR_TRACE_END(APR_SPAN_SCHEDULE);
    apr_status st = APR_OK;
    if (n > 0) {
        apr_batch b = { n, e->b_ids, e->b_pos, e->b_seq, e->b_logits };
        /* When every row only wants the argmax, the choice is made where
         * the logits are (on the GPU: 4 bytes a row come back instead of
         * n_vocab floats). Its tie rule is the sampler's, so the tokens are
         * the same whichever way a row went. */
        e->step_greedy = 1;
        for (int r = 0; r < rows && e->step_greedy; r++) e->step_greedy = e->running[e->row_seq[r]]->plain_greedy;
        st = e->step_greedy ? apr_decode_greedy(e->ctx, &b, e->argmax) : apr_decode(e->ctx, &b, e->logits);
        /* Sampling from logits is worth the worker pool; taking the argmax
         * the GPU chose is a few stores a row, less than waking the pool. */
        if (st == APR_OK) {
            /* a sampler records its own span; the device's argmax is taken here */
            if (e->step_greedy) APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
            if (rows > 1 && !e->step_greedy) apr_parallel_for(rows, 1, sample_rows, e);
            else sample_rows(e, 0, rows, 0);
            if (e->step_greedy) APR_TRACE_END(APR_SPAN_SAMPLE);
        }
    }

    pthread_mutex_lock(&e->lock);
    if (st != APR_OK) {
        /* The cache is unchanged on failure; the sequences of this batch
         * cannot go on, the others can. */
        const char *msg = apr_last_error();
        for (int s = 0; s < e->n_seq; s++) {
            job *j = e->running[s];
            if (!j || j->take == 0) continue;
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
    requeue_locked(e);
    e->stats.tokens_prompt += (uint64_t)prompt;
    if (n > 0) e->stats.steps++;
    e->stats.batch_tokens_last = n;
    /* Stats first, so a reader woken by this step's events sees them. */
    publish_locked(e);
    if (rows > 0 || st != APR_OK) notify(e);
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
    p->prefix_cache = 1;
}

void apr_engine_request_default(apr_engine_request *r)
{
    memset(r, 0, sizeof *r);
    r->max_tokens = 16;
    apr_sampler_params_default(&r->sampling);
}

/* The pool for p->zram_ratio times the cache's bytes, attached to the
 * context: blocks the prefix cache evicts go there, and reuse() at
 * admission takes them back, so a preempted request resumes without
 * recomputing its prompt. */
static apr_status attach_zram(apr_engine *e, const apr_engine_params *p)
{
    APR_CHECK(p->prefix_cache, APR_ERR_INVALID, "engine: a zram pool needs the prefix cache");
    APR_CHECK(p->zram_ratio <= 1000, APR_ERR_INVALID, "engine: zram ratio %g is not in (0, 1000]", p->zram_ratio);
    apr_zram_params zp;
    apr_zram_params_default(&zp);
    zp.algo = p->zram_algo;
    zp.page_bytes = apr_context_kv_page_bytes(e->ctx);
    zp.max_bytes = (uint64_t)(p->zram_ratio * (double)apr_context_kv_bytes(e->ctx));
    APR_TRY(apr_zram_new(&zp, &e->zram));
    return apr_context_set_zram(e->ctx, e->zram);
}

int apr_engine_get_zram(apr_engine *e, apr_zram_stats *pool, apr_kv_swap_stats *swap)
{
    if (pool) memset(pool, 0, sizeof *pool);
    if (swap) memset(swap, 0, sizeof *swap);
    if (!e || !e->zram) return 0;
    if (pool) apr_zram_get_stats(e->zram, pool);
    if (swap) {
        pthread_mutex_lock(&e->lock);
        *swap = e->swap;
        pthread_mutex_unlock(&e->lock);
    }
    return 1;
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
    cp.prefix_cache = p->prefix_cache;
    apr_status st = apr_context_new(m, &cp, &e->ctx);
    APR_TRACE_END(APR_SPAN_TENSOR_ALLOC);
    if (st != APR_OK) {
        apr_engine_free(e);
        return st;
    }
    e->n_ctx = apr_context_n_ctx(e->ctx);
    if (e->n_ctx < 2) {
        apr_engine_free(e);
        return apr_error(APR_ERR_INVALID, "engine: a context of %d token leaves no room to generate", e->n_ctx);
    }
    if (p->zram_ratio > 0 && (st = attach_zram(e, p)) != APR_OK) {
        apr_engine_free(e);
        return st;
    }
    e->stats.n_seq = e->n_seq;
    e->stats.n_ctx = e->n_ctx;
    e->stats.n_ctx_seq = e->n_ctx;
    e->stats.kv_tokens_total = e->n_ctx;
    e->stats.prefix_cache = p->prefix_cache != 0;

    e->running = calloc((size_t)e->n_seq, sizeof *e->running);
    e->order = malloc((size_t)e->n_seq * sizeof *e->order);
    e->prefill = malloc((size_t)e->n_seq * sizeof *e->prefill);
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
    if (!e->running || !e->order || !e->prefill || !e->b_ids || !e->b_pos || !e->b_seq || !e->b_logits || !e->row_seq || !e->row_ev ||
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
    apr_zram_free(e->zram);  /* after the context, whose swap drops its pages */
    if (e->event_fd >= 0) close(e->event_fd);
    free(e->running);
    free(e->order);
    free(e->prefill);
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
    /* The prompt and at least one generated token must fit the pool. */
    APR_CHECK(r->n_prompt < e->n_ctx, APR_ERR_RANGE,
              "the prompt of %d tokens does not fit the context of %d tokens (one more is needed to generate)",
              r->n_prompt, e->n_ctx);

    job *j = calloc(1, sizeof *j);
    APR_CHECK(j, APR_ERR_NOMEM, "engine submit: out of memory");
    j->seq = -1;
    j->n_prompt = r->n_prompt;
    j->max_tokens = r->max_tokens;
    if (j->max_tokens > e->n_ctx - r->n_prompt) j->max_tokens = e->n_ctx - r->n_prompt;
    j->logprobs = r->logprobs || r->top_logprobs > 0;
    j->top_logprobs = r->top_logprobs;
    j->ignore_eog = r->ignore_eog;
    const apr_sampler_params *sp = &r->sampling;
    j->plain_greedy = sp->temperature <= 0 && !j->logprobs && r->n_bias == 0 &&
                      (sp->penalty_last_n == 0 || (sp->repeat_penalty == 1 && sp->presence_penalty == 0 &&
                                                   sp->frequency_penalty == 0));
    j->tokens = malloc(((size_t)r->n_prompt + (size_t)j->max_tokens) * sizeof *j->tokens);
    j->n_tokens = r->n_prompt;
    j->n_stop_ids = r->n_stop_ids;
    if (r->n_stop_ids) j->stop_ids = malloc((size_t)r->n_stop_ids * sizeof *j->stop_ids);
    if (!j->tokens || (r->n_stop_ids && !j->stop_ids)) {
        job_free(j);
        return apr_error(APR_ERR_NOMEM, "engine submit: out of memory for %d prompt tokens", r->n_prompt);
    }
    memcpy(j->tokens, r->prompt, (size_t)r->n_prompt * sizeof *j->tokens);
    if (r->n_stop_ids) memcpy(j->stop_ids, r->stop_ids, (size_t)r->n_stop_ids * sizeof *j->stop_ids);
    apr_status st = apr_sampler_new(e->n_vocab, &r->sampling, &j->sampler);
    if (st == APR_OK && r->n_bias) st = apr_sampler_set_logit_bias(j->sampler, r->n_bias, r->bias_ids, r->bias);
    /* The prompt's tail enters the penalty window, as in llama.cpp. */
    int window = r->sampling.penalty_last_n;
    for (int i = r->n_prompt - window < 0 ? 0 : r->n_prompt - window; st == APR_OK && window > 0 && i < r->n_prompt; i++)
        st = apr_sampler_accept(j->sampler, r->prompt[i]);
    if (st != APR_OK) {
        job_free(j);
        return st;
    }

    pthread_mutex_lock(&e->lock);
    const int free_seqs = e->n_seq - e->stats.running;
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

int apr_engine_wait(apr_engine *e, int timeout_ms)
{
    if (!e) return 0;
    struct pollfd pfd = { e->event_fd, POLLIN, 0 };
    int r;
    do r = poll(&pfd, 1, timeout_ms < 0 ? -1 : timeout_ms);
    while (r < 0 && errno == EINTR && !apr_interrupted());
    return r > 0;
}

void apr_engine_get_stats(apr_engine *e, apr_engine_stats *out)
{
    if (!e || !out) return;
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    pthread_mutex_unlock(&e->lock);
}
