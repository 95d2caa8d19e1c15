/*
 * The I/O port space dispatch table (see include/sysemu/ioport.h).
 */
#include <errno.h>
#include <string.h>

#include "sysemu/ioport.h"

typedef struct IOPortRange {
    uint32_t base, len;
    const IOPortOps *ops;
    void *opaque;
} IOPortRange;

static IOPortRange ranges[IOPORT_MAX_RANGES];
static unsigned nranges;

int ioport_register(uint32_t base, uint32_t len, const IOPortOps *ops, void *opaque)
{
    unsigned i;

    if (len == 0 || base >= IOPORT_SPACE_SIZE || len > IOPORT_SPACE_SIZE - base) {
        return -EINVAL;
    }
    for (i = 0; i < nranges; i++) {
        if (base < ranges[i].base + ranges[i].len && ranges[i].base < base + len) {
            return -EINVAL;
        }
    }
    if (nranges == IOPORT_MAX_RANGES) {
        return -ENOSPC;
    }
    ranges[nranges++] = (IOPortRange){ .base = base, .len = len, .ops = ops, .opaque = opaque };
    return 0;
}

int ioport_unregister(uint32_t base, uint32_t len)
{
    unsigned i;

    for (i = 0; i < nranges; i++) {
        if (ranges[i].base == base && ranges[i].len == len) {
            ranges[i] = ranges[--nranges];
            return 0;
        }
    }
    return -ENOENT;
}

static const IOPortRange *ioport_find(uint64_t port, unsigned size)
{
    unsigned i;

    for (i = 0; i < nranges; i++) {
        const IOPortRange *r = &ranges[i];
        if (port >= r->base && port - r->base < r->len && size <= r->len - (port - r->base)) {
            return r;
        }
    }
    return NULL;
}

static uint32_t size_mask(unsigned size)
{
    return size >= 4 ? UINT32_MAX : (1u << (size * 8)) - 1;
}

uint32_t ioport_read(uint64_t port, unsigned size)
{
    const IOPortRange *r = ioport_find(port, size);

    if (!r || !r->ops->read) {
        return size_mask(size);     /* unassigned I/O reads as all-ones */
    }
    return r->ops->read(r->opaque, (uint32_t)(port - r->base), size) & size_mask(size);
}

void ioport_write(uint64_t port, uint32_t value, unsigned size)
{
    const IOPortRange *r = ioport_find(port, size);

    if (r && r->ops->write) {
        r->ops->write(r->opaque, (uint32_t)(port - r->base), value & size_mask(size), size);
    }
}
