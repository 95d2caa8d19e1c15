/*
 * The MMIO dispatch table (see include/sysemu/mmio.h).
 */
#include <errno.h>
#include <string.h>

#include "sysemu/mmio.h"

typedef struct MMIORegion {
    hwaddr base;
    uint64_t size;
    const MMIOOps *ops;
    void *opaque;
} MMIORegion;

static MMIORegion regions[MMIO_MAX_REGIONS];
static unsigned nregions;

int mmio_region_add(hwaddr base, uint64_t size, const MMIOOps *ops, void *opaque)
{
    if (size == 0 || base + (size - 1) < base) {
        return -EINVAL;
    }
    if (nregions == MMIO_MAX_REGIONS) {
        return -ENOSPC;
    }
    regions[nregions++] = (MMIORegion){ .base = base, .size = size, .ops = ops, .opaque = opaque };
    return 0;
}

int mmio_region_del(hwaddr base, void *opaque)
{
    for (unsigned i = 0; i < nregions; i++) {
        if (regions[i].base == base && regions[i].opaque == opaque) {
            memmove(&regions[i], &regions[i + 1], (nregions - i - 1) * sizeof(regions[0]));
            nregions--;
            return 0;
        }
    }
    return -ENOENT;
}

bool mmio_any(void)
{
    return nregions > 0;
}

const void *mmio_lookup(hwaddr addr, uint64_t len, uint64_t *n)
{
    uint64_t to_next = len;

    /* last added first: a later mapping shadows an earlier one */
    for (unsigned i = nregions; i-- > 0;) {
        const MMIORegion *r = &regions[i];

        if (addr >= r->base && addr - r->base < r->size) {
            uint64_t left = r->size - (addr - r->base);
            *n = len < left ? len : left;
            return r;
        }
        if (r->base > addr && r->base - addr < to_next) {
            to_next = r->base - addr;
        }
    }
    *n = to_next;
    return NULL;
}

/* The largest naturally aligned access (8, 4, 2, 1) at @off that fits in @n. */
static unsigned chunk_size(hwaddr off, uint64_t n)
{
    unsigned s = 8;

    while (s > 1 && (s > n || (off & (s - 1)))) {
        s >>= 1;
    }
    return s;
}

void mmio_region_read(const void *rp, hwaddr addr, uint8_t *buf, uint64_t n)
{
    const MMIORegion *r = rp;
    hwaddr off = addr - r->base;

    while (n) {
        unsigned s = chunk_size(off, n);
        uint64_t v = r->ops->read ? r->ops->read(r->opaque, off, s) : 0;

        for (unsigned i = 0; i < s; i++) {
            buf[i] = (uint8_t)(v >> (8 * i));      /* little-endian guest */
        }
        buf += s;
        off += s;
        n -= s;
    }
}

void mmio_region_write(const void *rp, hwaddr addr, const uint8_t *buf, uint64_t n)
{
    const MMIORegion *r = rp;
    hwaddr off = addr - r->base;

    while (n) {
        unsigned s = chunk_size(off, n);
        uint64_t v = 0;

        for (unsigned i = 0; i < s; i++) {
            v |= (uint64_t)buf[i] << (8 * i);
        }
        if (r->ops->write) {
            r->ops->write(r->opaque, off, v, s);
        }
        buf += s;
        off += s;
        n -= s;
    }
}
