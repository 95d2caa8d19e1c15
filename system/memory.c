/*
 * Guest memory: region table and bounds-checked translation.
 *
 * Regions are kept sorted and disjoint so a lookup is a binary search and an
 * access that crosses regions is split region by region, never overrun.
 */
#include <errno.h>
#include <string.h>

#include "exec/memory.h"

/* Generations are drawn from one counter, so no two table states share one (starting at 1: 0 is "empty"). */
static uint64_t next_generation(void)
{
    static uint64_t counter;

    return __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
}

void guest_memory_init(GuestMemory *mem)
{
    memset(mem, 0, sizeof(*mem));
    mem->generation = next_generation();
}

/* Last byte of a region: gpa + size never overflows once added. */
static inline hwaddr region_last(const GuestMemoryRegion *r)
{
    return r->gpa + (r->size - 1);
}

int guest_memory_add(GuestMemory *mem, hwaddr gpa, uint64_t size, void *host, bool writable)
{
    unsigned i;

    if (size == 0 || host == NULL || gpa + (size - 1) < gpa) {
        return -EINVAL;
    }
    if (mem->nregions == GUEST_MEMORY_MAX_REGIONS) {
        return -ENOSPC;
    }
    for (i = 0; i < mem->nregions; i++) {
        const GuestMemoryRegion *r = &mem->regions[i];
        if (gpa <= region_last(r) && r->gpa <= gpa + (size - 1)) {
            return -EINVAL;
        }
        if (r->gpa > gpa) {
            break;
        }
    }
    memmove(&mem->regions[i + 1], &mem->regions[i], (mem->nregions - i) * sizeof(mem->regions[0]));
    mem->regions[i] = (GuestMemoryRegion) {
        .gpa = gpa, .size = size, .host = host, .writable = writable,
    };
    mem->nregions++;
    mem->generation = next_generation();
    return 0;
}

int guest_memory_remove(GuestMemory *mem, hwaddr gpa, uint64_t size)
{
    for (unsigned i = 0; i < mem->nregions; i++) {
        if (mem->regions[i].gpa == gpa && mem->regions[i].size == size) {
            memmove(&mem->regions[i], &mem->regions[i + 1],
                    (mem->nregions - i - 1) * sizeof(mem->regions[0]));
            mem->nregions--;
            mem->generation = next_generation();
            return 0;
        }
    }
    return -ENOENT;
}

void *guest_memory_translate(const GuestMemory *mem, hwaddr gpa, uint64_t *plen, bool is_write)
{
    return guest_memory_translate_inline(mem, gpa, plen, is_write);
}

void *guest_memory_map_contig(const GuestMemory *mem, hwaddr gpa, uint64_t len, bool is_write)
{
    uint64_t got = len;
    void *p;

    if (len == 0 || gpa + (len - 1) < gpa) {
        return NULL;
    }
    p = guest_memory_translate(mem, gpa, &got, is_write);
    return p && got == len ? p : NULL;
}

int guest_memory_map_sg(const GuestMemory *mem, hwaddr gpa, uint64_t len, bool is_write,
                        struct iovec *iov, unsigned iov_max)
{
    unsigned n = 0;

    if (len && gpa + (len - 1) < gpa) {
        return -EFAULT;
    }
    while (len) {
        uint64_t chunk = len;
        void *p = guest_memory_translate_inline(mem, gpa, &chunk, is_write);
        if (!p) {
            return -EFAULT;
        }
        if (n == iov_max) {
            return -ENOBUFS;
        }
        iov[n].iov_base = p;
        iov[n].iov_len = chunk;
        n++;
        gpa += chunk;
        len -= chunk;
    }
    return n;
}

/* Both copies check the whole range first so a failure copies nothing. */
static bool range_mapped(const GuestMemory *mem, hwaddr gpa, size_t len, bool is_write)
{
    if (len && gpa + (len - 1) < gpa) {
        return false;
    }
    while (len) {
        uint64_t chunk = len;
        if (!guest_memory_translate(mem, gpa, &chunk, is_write)) {
            return false;
        }
        gpa += chunk;
        len -= chunk;
    }
    return true;
}

int guest_memory_read(const GuestMemory *mem, hwaddr gpa, void *buf, size_t len)
{
    uint8_t *out = buf;

    if (!range_mapped(mem, gpa, len, false)) {
        return -EFAULT;
    }
    while (len) {
        uint64_t chunk = len;
        const void *p = guest_memory_translate(mem, gpa, &chunk, false);
        memcpy(out, p, chunk);
        out += chunk;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}

int guest_memory_write(const GuestMemory *mem, hwaddr gpa, const void *buf, size_t len)
{
    const uint8_t *in = buf;

    if (!range_mapped(mem, gpa, len, true)) {
        return -EFAULT;
    }
    while (len) {
        uint64_t chunk = len;
        void *p = guest_memory_translate(mem, gpa, &chunk, true);
        memcpy(p, in, chunk);
        in += chunk;
        gpa += chunk;
        len -= chunk;
    }
    return 0;
}
