/*
 * Guest memory: a table of regions mapping guest-physical addresses to host
 * memory. Every address a guest or vhost-user peer steers goes through here;
 * nothing outside the table is reachable.
 *
 * Context: the table is changed only while no queue is being processed
 * (device set-up, vhost-user SET_MEM_TABLE with rings stopped); lookups are
 * read-only and may run on any thread.
 */
#ifndef EXEC_MEMORY_H
#define EXEC_MEMORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

typedef uint64_t hwaddr;

#define GUEST_MEMORY_MAX_REGIONS 32

typedef struct GuestMemoryRegion {
    hwaddr gpa;
    uint64_t size;              /* > 0; gpa + size does not overflow */
    uint8_t *host;
    bool writable;
} GuestMemoryRegion;

typedef struct GuestMemory {
    unsigned nregions;
    /* Changes whenever the table does; unique across all tables (see GuestMemoryCache). */
    uint64_t generation;
    GuestMemoryRegion regions[GUEST_MEMORY_MAX_REGIONS];   /* sorted by gpa, disjoint */
} GuestMemory;

/*
 * A one-entry lookup cache for a single user (one virtqueue): the region the
 * last translation hit, valid while the table it came from is unchanged.
 * Zero-initialised means empty.
 */
typedef struct GuestMemoryCache {
    const GuestMemory *mem;
    uint64_t generation;
    const GuestMemoryRegion *region;
} GuestMemoryCache;

void guest_memory_init(GuestMemory *mem);

/*
 * Add a region. Returns 0, -EINVAL (size 0, gpa + size overflows, host NULL,
 * overlaps an existing region) or -ENOSPC (table full).
 */
int guest_memory_add(GuestMemory *mem, hwaddr gpa, uint64_t size, void *host, bool writable);

/* Remove the region that starts at @gpa with @size. Returns 0 or -ENOENT. */
int guest_memory_remove(GuestMemory *mem, hwaddr gpa, uint64_t size);

/*
 * Host pointer for @gpa. On entry *@plen is the wanted length (> 0); on
 * return it is clamped to what is contiguous in one region. NULL when @gpa is
 * outside every region, or @is_write and the region is read-only.
 */
void *guest_memory_translate(const GuestMemory *mem, hwaddr gpa, uint64_t *plen, bool is_write);

/* The lookup behind guest_memory_translate, inline for the ring fast path. */
static inline const GuestMemoryRegion *guest_memory_find_region(const GuestMemory *mem, hwaddr gpa)
{
    unsigned lo = 0, hi = mem->nregions;

    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        const GuestMemoryRegion *r = &mem->regions[mid];

        if (gpa < r->gpa) {
            hi = mid;
        } else if (gpa - r->gpa >= r->size) {
            lo = mid + 1;
        } else {
            return r;
        }
    }
    return NULL;
}

static inline void *guest_memory_translate_inline(const GuestMemory *mem, hwaddr gpa, uint64_t *plen,
                                                  bool is_write)
{
    const GuestMemoryRegion *r = guest_memory_find_region(mem, gpa);
    uint64_t avail;

    if (!r || (is_write && !r->writable)) {
        return NULL;
    }
    avail = r->size - (gpa - r->gpa);
    if (*plen > avail) {
        *plen = avail;
    }
    return r->host + (gpa - r->gpa);
}

/* guest_memory_translate_inline through a one-entry cache (consecutive buffers share a region). */
static inline void *guest_memory_translate_cached(const GuestMemory *mem, GuestMemoryCache *c, hwaddr gpa,
                                                  uint64_t *plen, bool is_write)
{
    const GuestMemoryRegion *r = c->region;
    uint64_t avail;

    if (!r || c->mem != mem || c->generation != mem->generation || gpa < r->gpa || gpa - r->gpa >= r->size) {
        r = guest_memory_find_region(mem, gpa);
        if (!r) {
            return NULL;
        }
        c->mem = mem;
        c->generation = mem->generation;
        c->region = r;
    }
    if (is_write && !r->writable) {
        return NULL;
    }
    avail = r->size - (gpa - r->gpa);
    if (*plen > avail) {
        *plen = avail;
    }
    return r->host + (gpa - r->gpa);
}

/* Host pointer for all of [gpa, gpa + len) inside one region, or NULL. */
void *guest_memory_map_contig(const GuestMemory *mem, hwaddr gpa, uint64_t len, bool is_write);

/*
 * Map [gpa, gpa + len) into iovecs, splitting at region boundaries. Returns
 * the number of iovecs written (0 for len 0), -EFAULT if any byte is outside
 * guest memory (or read-only when @is_write) or gpa + len overflows, -ENOBUFS
 * if more than @iov_max iovecs would be needed.
 */
int guest_memory_map_sg(const GuestMemory *mem, hwaddr gpa, uint64_t len, bool is_write,
                        struct iovec *iov, unsigned iov_max);

/* Copy to/from guest memory across regions. Return 0 or -EFAULT (nothing copied then). */
int guest_memory_read(const GuestMemory *mem, hwaddr gpa, void *buf, size_t len);
int guest_memory_write(const GuestMemory *mem, hwaddr gpa, const void *buf, size_t len);

#endif
