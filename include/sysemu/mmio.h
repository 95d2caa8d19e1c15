/*
 * Memory-mapped I/O regions (PCI BARs): the qtest memory path consults this
 * table before guest RAM, so a mapped BAR shadows whatever lies below it,
 * as a higher-priority MemoryRegion does in QEMU.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_MMIO_H
#define SYSEMU_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "exec/memory.h"

#define MMIO_MAX_REGIONS 128

typedef struct MMIOOps {
    /* @offset is relative to the region base; @size is 1, 2, 4 or 8 and the access lies inside. */
    uint64_t (*read)(void *opaque, hwaddr offset, unsigned size);
    void (*write)(void *opaque, hwaddr offset, uint64_t value, unsigned size);
} MMIOOps;

/*
 * Map [@base, @base + @size). Regions may overlap; the one added last wins.
 * Returns 0, -EINVAL (size 0, wraps) or -ENOSPC.
 */
int mmio_region_add(hwaddr base, uint64_t size, const MMIOOps *ops, void *opaque);
/* Unmap the region (@base, @opaque). Returns 0 or -ENOENT. */
int mmio_region_del(hwaddr base, void *opaque);

/*
 * If @addr lies in a mapped region: *@n = bytes of [@addr, @addr + @len)
 * that lie in it, and the region is returned (opaque handle). Otherwise NULL
 * and *@n = bytes up to the next region start (or @len).
 */
const void *mmio_lookup(hwaddr addr, uint64_t len, uint64_t *n);
/* Access @n bytes within the region @r returned by mmio_lookup (split into naturally aligned accesses). */
void mmio_region_read(const void *r, hwaddr addr, uint8_t *buf, uint64_t n);
void mmio_region_write(const void *r, hwaddr addr, const uint8_t *buf, uint64_t n);
bool mmio_any(void);

#endif
