/* slab.c — size-class slabs for compressed pages.
 *
 * A slab is one malloc: this header, then per_slab slots; a 64-bit mask
 * marks the free ones. Slabs with a free slot sit on their class's list;
 * a full slab is reachable only through the pages in it. Classes are
 * 1/64th of a page apart (at least 16 bytes), so a stored page wastes under
 * 1/64th of a page to rounding. */
#include "zram/slab.h"

#include <stdlib.h>

struct zram_slab {
    zram_slab *prev, *next;  /* on the class's partial list */
    uint64_t free_mask;      /* bit i set: slot i is free */
    uint32_t n_used;
    int cls;
    uint32_t slot_bytes;
    uint32_t alloc_bytes;    /* of this header and the slots */
    _Alignas(16) unsigned char mem[];
};

/* A slab is about four pages: small enough that a pool of few pages wastes
 * little in its partly filled slabs (at most a slab per class), large
 * enough that small slots come 64 to a malloc. */
#define SLAB_PAGES 4u

void zram_slabs_init(zram_slabs *s, uint32_t page_bytes)
{
    *s = (zram_slabs){ .page_bytes = page_bytes };
    uint32_t g = (page_bytes + ZRAM_MAX_CLASSES - 1) / ZRAM_MAX_CLASSES;
    g = (g + 15) & ~15u;
    if (g < 16) g = 16;
    s->granule = g;
    s->n_classes = (int)((page_bytes + g - 1) / g);
    for (int c = 0; c < s->n_classes; c++) {
        uint32_t slot = c == s->n_classes - 1 ? page_bytes : (uint32_t)(c + 1) * g;
        uint32_t per = SLAB_PAGES * page_bytes / slot;
        s->cls[c] = (zram_class){ .slot_bytes = slot, .per_slab = per < 1 ? 1 : per > 64 ? 64 : per };
    }
}

static void unlink_partial(zram_slabs *s, zram_slab *b)
{
    if (b->prev) b->prev->next = b->next;
    else s->cls[b->cls].partial = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = NULL;
}

static void push_partial(zram_slabs *s, zram_slab *b)
{
    zram_class *k = &s->cls[b->cls];
    b->prev = NULL;
    b->next = k->partial;
    if (k->partial) k->partial->prev = b;
    k->partial = b;
}

void zram_slabs_release(zram_slabs *s)
{
    /* Full slabs are reachable only through their pages: the pool frees its
     * pages first (each slot's free gives an emptied slab back), so what is
     * left here are partial slabs of pages already freed; none normally. */
    for (int c = 0; c < s->n_classes; c++) {
        zram_slab *b = s->cls[c].partial;
        while (b) {
            zram_slab *next = b->next;
            s->bytes -= b->alloc_bytes;
            s->n_slabs--;
            free(b);
            b = next;
        }
        s->cls[c].partial = NULL;
    }
}

int zram_slabs_class(const zram_slabs *s, size_t n)
{
    int c = n == 0 ? 0 : (int)((n - 1) / s->granule);
    return c < s->n_classes ? c : s->n_classes - 1;
}

size_t zram_slabs_max_compressed(const zram_slabs *s) { return (size_t)(s->n_classes - 1) * s->granule; }

static size_t slab_bytes(const zram_class *k) { return sizeof(zram_slab) + (size_t)k->per_slab * k->slot_bytes; }

size_t zram_slabs_growth(const zram_slabs *s, int c) { return s->cls[c].partial ? 0 : slab_bytes(&s->cls[c]); }

void *zram_slabs_alloc(zram_slabs *s, int c, zram_slab **slab, uint8_t *slot)
{
    zram_class *k = &s->cls[c];
    zram_slab *b = k->partial;
    if (!b) {
        size_t bytes = slab_bytes(k);
        b = malloc(bytes);
        if (!b) return NULL;
        *b = (zram_slab){ .cls = c, .slot_bytes = k->slot_bytes, .alloc_bytes = (uint32_t)bytes,
                          .free_mask = k->per_slab == 64 ? ~0ull : (1ull << k->per_slab) - 1 };
        s->bytes += bytes;
        s->n_slabs++;
        push_partial(s, b);
    }
    int i = __builtin_ctzll(b->free_mask);
    b->free_mask &= b->free_mask - 1;
    b->n_used++;
    if (!b->free_mask) unlink_partial(s, b);
    *slab = b;
    *slot = (uint8_t)i;
    return b->mem + (size_t)i * b->slot_bytes;
}

void *zram_slabs_at(zram_slab *slab, uint8_t slot) { return slab->mem + (size_t)slot * slab->slot_bytes; }

void zram_slabs_free(zram_slabs *s, zram_slab *b, uint8_t slot)
{
    int was_full = b->free_mask == 0;
    b->free_mask |= 1ull << slot;
    b->n_used--;
    if (b->n_used == 0) {
        if (!was_full) unlink_partial(s, b);
        s->bytes -= b->alloc_bytes;
        s->n_slabs--;
        free(b);
        return;
    }
    if (was_full) push_partial(s, b);
}
