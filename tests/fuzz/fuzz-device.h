/*
 * What the transport fuzz targets (fuzz-virtio-mmio, fuzz-virtio-pci) share:
 * a device that uses every buffer the rings offer, and a guest access to the
 * MMIO dispatch table as the qtest memory path makes it.
 */
#ifndef TESTS_FUZZ_FUZZ_DEVICE_H
#define TESTS_FUZZ_FUZZ_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/virtio.h"
#include "sysemu/mmio.h"

/* Queue handler: pop (bounded) and use every element completely, then notify. */
static inline void fz_use_all(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtQueueElement *e;
    unsigned n = 0;

    while (n++ < 512 && (e = virtqueue_pop(vq, sizeof(*e)))) {
        virtqueue_push(vq, e, 0);
        virtqueue_element_free(e);
    }
    virtio_notify(vdev, vq);
}

/* A naturally aligned guest access of @size bytes at @addr (unassigned: nothing). */
static inline void fz_mmio_access(uint64_t addr, unsigned size, uint64_t val, bool write)
{
    uint8_t buf[8];
    uint64_t n;
    const void *r = mmio_lookup(addr, size, &n);

    if (!r) {
        return;
    }
    if (write) {
        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(val >> (8 * i));
        }
        mmio_region_write(r, addr, buf, n);
    } else {
        mmio_region_read(r, addr, buf, n);
    }
}

#endif
