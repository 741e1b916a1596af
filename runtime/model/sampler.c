/* sampler.c — from logits to a token: bias, penalties, temperature, top-k,
 * top-p, min-p and one seeded draw.
 *
 * The vocabulary is large (152K for Qwen2) and a token is sampled per decode
 * step, so nothing here sorts the whole vocabulary unless the settings demand
 * it: top-k is a quickselect, and top-p sorts a growing prefix (64, 512, ...
 * candidates) chosen by quickselect, which stops as soon as the prefix holds
 * the requested mass. The normaliser is always summed over every survivor, so
 * stopping early changes nothing in the result.
 *
 * Candidates are ordered by value, then by id, a strict total order: every
 * selection and tie is then a pure function of the logits, and with the seed
 * the whole draw is reproducible. */
#include "apr.h"
#include "core/error.h"
#include "core/rng.h"
#include "trace/trace.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The penalty window's largest size: far beyond any useful setting, small
 * enough that the ring buffer stays a few megabytes. */
#define MAX_WINDOW (1 << 20)

/* top-p sorts this many candidates first, growing 8x while the mass falls
 * short; for typical settings (top_p 0.8-0.95 on a trained model) the first
 * prefix suffices. */
#define TOP_P_FIRST 64

typedef struct candidate {
    float v;      /* logit, later (logit - max) / temperature */
    int32_t id;
} candidate;

struct apr_sampler {
    apr_sampler_params p;
    int n_vocab;
    apr_rng rng;            /* the random stream (core/rng.h) */
    candidate *cand;        /* [n_vocab] scratch, rebuilt every step */
    int32_t *counts;        /* [n_vocab] occurrences of each id in the window */
    int32_t *window;        /* [penalty_last_n] ring of the most recent ids */
    int window_len;         /* ids in the ring (<= penalty_last_n) */
    int window_next;        /* where the next id goes (the oldest when full) */
    int n_bias;
    int32_t *bias_ids;      /* [n_bias] */
    float *bias_values;     /* [n_bias] */
};

/* ===================================================================== */
/* Candidate order, selection and sorting                                */
/* ===================================================================== */

/* a comes before b: a larger value, or an equal value and a lower id. */
static int better(candidate a, candidate b)
{
    return a.v > b.v || (a.v == b.v && a.id < b.id);
}

static void swap(candidate *a, candidate *b)
{
    candidate t = *a;
    *a = *b;
    *b = t;
}

/* Rearranges a[0..n) so that its k best candidates come first (in no
 * particular order): Hoare's selection with a median-of-three pivot. */
static void select_best(candidate *a, int n, int k)
{
    int lo = 0, hi = n - 1, target = k - 1;
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2;
        if (better(a[mid], a[lo])) swap(&a[mid], &a[lo]);
        if (better(a[hi], a[lo])) swap(&a[hi], &a[lo]);
        if (better(a[hi], a[mid])) swap(&a[hi], &a[mid]);
        candidate pivot = a[mid];
        int i = lo, j = hi;
        while (i <= j) {
            while (better(a[i], pivot)) i++;
            while (better(pivot, a[j])) j--;
            if (i <= j) swap(&a[i++], &a[j--]);
        }
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else break;
    }
}

static int compare_best_first(const void *pa, const void *pb)
{
    candidate a = *(const candidate *)pa, b = *(const candidate *)pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* ===================================================================== */
/* The steps of one draw                                                 */
/* ===================================================================== */

/* Fails on a NaN or +INFINITY logit, which no distribution can be made
 * from. The scan is branch-free (it vectorises); only a failure looks for
 * the culprit. */
static apr_status check_finite(const float *logits, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++) bad |= !(logits[i] == logits[i]) | (logits[i] == INFINITY);
    for (int i = 0; bad && i < n; i++) {
        float v = logits[i];
        APR_CHECK(v == v && v != INFINITY, APR_ERR_FORMAT,
                  "sampling: the logit of token %d is %s (the model's weights or activations are not finite)",
                  i, v == v ? "+inf" : "NaN");
    }
    return APR_OK;
}

static apr_status load_candidates(apr_sampler *s, const float *logits)
{
    APR_TRY(check_finite(logits, s->n_vocab));
    for (int i = 0; i < s->n_vocab; i++) {
        s->cand[i].v = logits[i];
        s->cand[i].id = i;
    }
    return APR_OK;
}

static void apply_bias(apr_sampler *s)
{
    for (int i = 0; i < s->n_bias; i++) s->cand[s->bias_ids[i]].v += s->bias_values[i];
}

/* Each distinct id of the window is penalised once, by its count. The count
 * is negated while its id is done so a repeat in the ring is skipped, then
 * restored: no second array, O(window) work. */
static int penalties_active(const apr_sampler *s)
{
    const apr_sampler_params *p = &s->p;
    return s->window_len > 0 &&
           (p->repeat_penalty != 1.0f || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f);
}

static void apply_penalties(apr_sampler *s)
{
    const apr_sampler_params *p = &s->p;
    if (!penalties_active(s)) return;
    for (int i = 0; i < s->window_len; i++) {
        int32_t id = s->window[i];
        int32_t count = s->counts[id];
        if (count <= 0) continue;
        float *v = &s->cand[id].v;
        if (p->repeat_penalty != 1.0f) *v = *v > 0 ? *v / p->repeat_penalty : *v * p->repeat_penalty;
        *v -= (float)count * p->frequency_penalty + p->presence_penalty;
        s->counts[id] = -count;
    }
    for (int i = 0; i < s->window_len; i++) {
        int32_t id = s->window[i];
        if (s->counts[id] < 0) s->counts[id] = -s->counts[id];
    }
}

/* The index of the best candidate (ties: the lowest id, since the
 * candidates are in id order here), or -1 when every one is -INFINITY. */
static int argmax(const candidate *c, int n)
{
    int best = -1;
    float v = -INFINITY;
    for (int i = 0; i < n; i++)
        if (c[i].v > v) { v = c[i].v; best = i; }
    return best;
}

/* Keeps the best candidates whose probabilities sum to at least top_p
 * (values are already log-probabilities up to the constant -log z). */
static int keep_top_p(candidate *c, int n, float top_p)
{
    double z = 0;
    for (int i = 0; i < n; i++) z += expf(c[i].v);
    double need = top_p * z;
    for (int m = n < TOP_P_FIRST ? n : TOP_P_FIRST;; m = (m > n / 8) ? n : m * 8) {
        select_best(c, n, m);
        qsort(c, (size_t)m, sizeof *c, compare_best_first);
        double mass = 0;
        for (int j = 0; j < m; j++) {
            mass += expf(c[j].v);
            if (mass >= need) return j + 1;
        }
        if (m == n) return n;  /* rounding kept the sum just short: keep all */
    }
}

/* Drops candidates below min_p times the best probability. The best has
 * value 0 here, so the threshold is log(min_p). Order is preserved. */
static int keep_min_p(candidate *c, int n, float min_p)
{
    float threshold = logf(min_p);
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (c[i].v >= threshold) c[kept++] = c[i];
    return kept;
}

/* One draw: the values become weights exp(v) in place, then a uniform
 * point in [0, total) picks the candidate whose interval holds it. */
static int32_t draw(apr_sampler *s, candidate *c, int n)
{
    double z = 0;
    for (int i = 0; i < n; i++) {
        c[i].v = expf(c[i].v);
        z += c[i].v;
    }
    double u = apr_rng_uniform(&s->rng) * z, acc = 0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (c[i].v == 0) continue;
        acc += c[i].v;
        last = i;
        if (u < acc) return c[i].id;
    }
    return c[last].id;  /* u landed in the rounding gap at the top */
}

static void window_push(apr_sampler *s, int32_t id)
{
    int cap = s->p.penalty_last_n;
    if (cap == 0) return;
    if (s->window_len == cap) s->counts[s->window[s->window_next]]--;
    else s->window_len++;
    s->window[s->window_next] = id;
    s->counts[id]++;
    s->window_next = (s->window_next + 1) % cap;
}

/* ===================================================================== */
/* Public functions                                                      */
/* ===================================================================== */

void apr_sampler_params_default(apr_sampler_params *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 1.0f;
    p->top_k = 0;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repeat_penalty = 1.0f;
    p->presence_penalty = 0.0f;
    p->frequency_penalty = 0.0f;
    p->penalty_last_n = 64;
    p->seed = 0;
}

apr_status apr_sampler_new(int n_vocab, const apr_sampler_params *p, apr_sampler **out)
{
    APR_CHECK(out != NULL, APR_ERR_INVALID, "apr_sampler_new: out is NULL");
    *out = NULL;
    APR_CHECK(p != NULL, APR_ERR_INVALID, "apr_sampler_new: params is NULL");
    APR_CHECK(n_vocab > 0, APR_ERR_INVALID, "sampler: n_vocab must be positive, got %d", n_vocab);
    APR_CHECK(p->temperature == p->temperature, APR_ERR_INVALID, "sampler: temperature is NaN");
    APR_CHECK(p->top_k >= 0, APR_ERR_INVALID, "sampler: top_k must be >= 0, got %d", p->top_k);
    APR_CHECK(p->top_p > 0 && p->top_p <= 1, APR_ERR_INVALID, "sampler: top_p must be in (0, 1], got %g", p->top_p);
    APR_CHECK(p->min_p >= 0 && p->min_p <= 1, APR_ERR_INVALID, "sampler: min_p must be in [0, 1], got %g", p->min_p);
    APR_CHECK(p->repeat_penalty > 0 && isfinite(p->repeat_penalty), APR_ERR_INVALID,
              "sampler: repeat_penalty must be positive, got %g", p->repeat_penalty);
    APR_CHECK(isfinite(p->presence_penalty), APR_ERR_INVALID, "sampler: presence_penalty is not finite");
    APR_CHECK(isfinite(p->frequency_penalty), APR_ERR_INVALID, "sampler: frequency_penalty is not finite");
    APR_CHECK(p->penalty_last_n >= 0 && p->penalty_last_n <= MAX_WINDOW, APR_ERR_INVALID,
              "sampler: penalty_last_n must be in [0, %d], got %d", MAX_WINDOW, p->penalty_last_n);

    apr_sampler *s = calloc(1, sizeof *s);
    if (s) {
        s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
        s->counts = calloc((size_t)n_vocab, sizeof *s->counts);
        s->window = malloc((size_t)(p->penalty_last_n > 0 ? p->penalty_last_n : 1) * sizeof *s->window);
    }
    if (!s || !s->cand || !s->counts || !s->window) {
        apr_sampler_free(s);
        return apr_error(APR_ERR_NOMEM, "sampler: cannot allocate scratch for %d logits", n_vocab);
    }
    s->p = *p;
    s->n_vocab = n_vocab;
    apr_rng_seed(&s->rng, p->seed);
    *out = s;
    return APR_OK;
}

void apr_sampler_free(apr_sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s->counts);
    free(s->window);
    free(s->bias_ids);
    free(s->bias_values);
    free(s);
}

void apr_sampler_reset(apr_sampler *s)
{
    if (!s) return;
    for (int i = 0; i < s->window_len; i++) s->counts[s->window[i]] = 0;
    s->window_len = 0;
    s->window_next = 0;
    apr_rng_seed(&s->rng, s->p.seed);
}

apr_status apr_sampler_set_logit_bias(apr_sampler *s, int n, const int32_t *ids, const float *bias)
{
    APR_CHECK(s != NULL, APR_ERR_INVALID, "apr_sampler_set_logit_bias: sampler is NULL");
    APR_CHECK(n >= 0, APR_ERR_INVALID, "logit bias: count must be >= 0, got %d", n);
    APR_CHECK(n == 0 || (ids && bias), APR_ERR_INVALID, "logit bias: ids or values are NULL");
    for (int i = 0; i < n; i++) {
        APR_CHECK(ids[i] >= 0 && ids[i] < s->n_vocab, APR_ERR_RANGE,
                  "logit bias: token id %d is outside the vocabulary [0, %d)", (int)ids[i], s->n_vocab);
        APR_CHECK(bias[i] == bias[i] && bias[i] != INFINITY, APR_ERR_RANGE,
                  "logit bias of token %d must be finite or -inf, got %g", (int)ids[i], bias[i]);
    }
    int32_t *new_ids = NULL;
    float *new_values = NULL;
    if (n > 0) {
        new_ids = malloc((size_t)n * sizeof *new_ids);
        new_values = malloc((size_t)n * sizeof *new_values);
        if (!new_ids || !new_values) {
            free(new_ids);
            free(new_values);
            return apr_error(APR_ERR_NOMEM, "logit bias: cannot allocate %d entries", n);
        }
        memcpy(new_ids, ids, (size_t)n * sizeof *new_ids);
        memcpy(new_values, bias, (size_t)n * sizeof *new_values);
    }
    free(s->bias_ids);
    free(s->bias_values);
    s->bias_ids = new_ids;
    s->bias_values = new_values;
    s->n_bias = n;
    return APR_OK;
}

apr_status apr_sampler_accept(apr_sampler *s, int32_t id)
{
    APR_CHECK(s != NULL, APR_ERR_INVALID, "apr_sampler_accept: sampler is NULL");
    APR_CHECK(id >= 0 && id < s->n_vocab, APR_ERR_RANGE,
              "sampler: token id %d is outside the vocabulary [0, %d)", (int)id, s->n_vocab);
    window_push(s, id);
    return APR_OK;
}

static apr_status sample(apr_sampler *s, const float *logits, int32_t *out)
{
    const apr_sampler_params *p = &s->p;
    candidate *c = s->cand;
    if (p->temperature <= 0 && s->n_bias == 0 && !penalties_active(s)) {
        /* Plain greedy, the common case of `apr pass`: one scan, no copy. */
        APR_TRY(check_finite(logits, s->n_vocab));
        int32_t id = 0;
        for (int i = 1; i < s->n_vocab; i++)
            if (logits[i] > logits[id]) id = i;
        APR_CHECK(logits[id] > -INFINITY, APR_ERR_RANGE, "sampling: every logit is -inf");
        window_push(s, id);
        *out = id;
        return APR_OK;
    }
    APR_TRY(load_candidates(s, logits));
    apply_bias(s);
    apply_penalties(s);

    int best = argmax(c, s->n_vocab);
    APR_CHECK(best >= 0, APR_ERR_RANGE, "sampling: every token has probability 0 (the logit bias bans them all)");
    int32_t id;
    if (p->temperature <= 0) {
        id = c[best].id;
    } else {
        /* top_k does not depend on the temperature, so it goes first and
         * the scaling touches only its survivors. Subtracting the maximum
         * before dividing keeps a tiny temperature from overflowing to
         * +inf: the best candidate becomes exactly 0. */
        float max = c[best].v;
        int n = s->n_vocab;
        if (p->top_k > 0 && p->top_k < n) {
            select_best(c, n, p->top_k);
            n = p->top_k;
        }
        for (int i = 0; i < n; i++) c[i].v = (c[i].v - max) / p->temperature;
        if (p->top_p < 1.0f) n = keep_top_p(c, n, p->top_p);
        if (p->min_p > 0.0f) n = keep_min_p(c, n, p->min_p);
        id = draw(s, c, n);
    }
    window_push(s, id);
    *out = id;
    return APR_OK;
}

apr_status apr_sampler_sample(apr_sampler *s, const float *logits, int32_t *out)
{
    APR_CHECK(s != NULL && logits != NULL && out != NULL, APR_ERR_INVALID,
              "apr_sampler_sample: NULL argument");
    APR_TRACE_BEGIN(APR_SPAN_SAMPLE);
    apr_status st = sample(s, logits, out);
    APR_TRACE_END(APR_SPAN_SAMPLE);
    return st;
}

/* ===================================================================== */
/* Log-probabilities (stateless: the server calls it on any logits)      */
/* ===================================================================== */

/* top[0..n) as a min-heap by `better`: the root is the worst kept entry. */
static int worse_entry(apr_token_logprob a, apr_token_logprob b)
{
    return a.logprob < b.logprob || (a.logprob == b.logprob && a.id > b.id);
}

static void heap_sift_down(apr_token_logprob *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && worse_entry(h[l], h[w])) w = l;
        if (r < n && worse_entry(h[r], h[w])) w = r;
        if (w == i) return;
        apr_token_logprob t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void heap_sift_up(apr_token_logprob *h, int i)
{
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (!worse_entry(h[i], h[parent])) return;
        apr_token_logprob t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

apr_status apr_sampler_logprobs(const float *logits, int n_vocab, int32_t chosen, int n_top,
                                float *chosen_logprob, apr_token_logprob *top)
{
    APR_CHECK(logits != NULL && n_vocab > 0, APR_ERR_INVALID, "apr_sampler_logprobs: no logits");
    APR_CHECK(chosen >= 0 && chosen < n_vocab, APR_ERR_RANGE,
              "logprobs: token id %d is outside the vocabulary [0, %d)", (int)chosen, n_vocab);
    APR_CHECK(n_top >= 0 && n_top <= n_vocab, APR_ERR_RANGE,
              "logprobs: top count %d is outside [0, %d]", n_top, n_vocab);
    APR_CHECK(n_top == 0 || top != NULL, APR_ERR_INVALID, "apr_sampler_logprobs: top is NULL");

    float max = -INFINITY;
    for (int i = 0; i < n_vocab; i++) {
        float v = logits[i];
        APR_CHECK(v == v && v != INFINITY, APR_ERR_FORMAT,
                  "logprobs: the logit of token %d is %s", i, v == v ? "+inf" : "NaN");
        if (v > max) max = v;
    }
    double z = 0;
    for (int i = 0; i < n_vocab; i++) z += exp((double)logits[i] - max);
    float log_z = (float)(max + log(z));   /* max is finite: some logit is */
    if (max == -INFINITY) log_z = 0;       /* all -inf: every logprob is -inf */

    if (chosen_logprob) *chosen_logprob = logits[chosen] - log_z;
    if (n_top == 0) return APR_OK;

    /* Keep the n_top best raw logits in a min-heap, then sort them. */
    int n = 0;
    for (int i = 0; i < n_vocab; i++) {
        apr_token_logprob e = { i, logits[i] };
        if (n < n_top) {
            top[n] = e;
            heap_sift_up(top, n++);
        } else if (worse_entry(top[0], e)) {
            top[0] = e;
            heap_sift_down(top, n, 0);
        }
    }
    for (int end = n - 1; end > 0; end--) {  /* heapsort: worst to the back */
        apr_token_logprob t = top[0];
        top[0] = top[end];
        top[end] = t;
        heap_sift_down(top, end, 0);
    }
    for (int i = 0; i < n; i++) top[i].logprob -= log_z;
    return APR_OK;
}
