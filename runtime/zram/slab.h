/* slab.h — size-class slabs for compressed pages (internal).
 *
 * A compressed page goes into a slot of the smallest size class that holds
 * it. Each class carves its slots out of slabs (one allocation of up to 64
 * slots, about four pages), so a page costs its size rounded up to the class,
 * not a malloc header and a whole page; a slab whose last slot empties is
 * given back at once, so memory follows the pages held. Not thread-safe: the
 * pool's lock covers it. */
#ifndef APR_ZRAM_SLAB_H
#define APR_ZRAM_SLAB_H

#include <stddef.h>
#include <stdint.h>

#define ZRAM_MAX_CLASSES 64

typedef struct zram_slab zram_slab;

typedef struct zram_class {
    uint32_t slot_bytes;   /* bytes of one slot */
    uint32_t per_slab;     /* slots in one slab, 1..64 */
    zram_slab *partial;    /* slabs with a free slot (doubly linked) */
} zram_class;

typedef struct zram_slabs {
    uint32_t page_bytes;
    uint32_t granule;      /* class c holds up to (c + 1) * granule bytes, the last one page_bytes */
    int n_classes;
    zram_class cls[ZRAM_MAX_CLASSES];
    uint64_t bytes;        /* memory of all slabs, headers included */
    uint64_t n_slabs;
} zram_slabs;

/* Sets up the classes for pages of page_bytes (> 0); no memory yet. */
void zram_slabs_init(zram_slabs *s, uint32_t page_bytes);
/* Frees every slab (the pages in them are gone). */
void zram_slabs_release(zram_slabs *s);

/* The class of a stored size (1..page_bytes). The last class holds whole
 * pages: a page compressing into it is stored raw instead. */
int zram_slabs_class(const zram_slabs *s, size_t n);
/* The most bytes a compressed page may take and still save memory: the
 * top of the class below the last. */
size_t zram_slabs_max_compressed(const zram_slabs *s);
/* Bytes a new slot of class c would add to s->bytes: 0 when a slab of the
 * class has a free slot, else the size of a new slab. */
size_t zram_slabs_growth(const zram_slabs *s, int c);

/* A free slot of class c (a new slab when none is free): its memory, with
 * *slab and *slot naming it for zram_slabs_free. NULL when malloc fails. */
void *zram_slabs_alloc(zram_slabs *s, int c, zram_slab **slab, uint8_t *slot);
/* The memory of a slot. */
void *zram_slabs_at(zram_slab *slab, uint8_t slot);
/* Frees a slot; its slab is given back when it was the last one used. */
void zram_slabs_free(zram_slabs *s, zram_slab *slab, uint8_t slot);

#endif
