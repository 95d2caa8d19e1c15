/*
 * The x86 I/O port space (64 KiB): a small dispatch table that devices (the
 * PCI host bridge's 0xcf8/0xcfc, legacy virtio BARs) register ranges in.
 * Ports nobody claims read as all-ones and ignore writes, like QEMU's
 * unassigned I/O.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_IOPORT_H
#define SYSEMU_IOPORT_H

#include <stdbool.h>
#include <stdint.h>

#define IOPORT_SPACE_SIZE 0x10000u
#define IOPORT_MAX_RANGES 64

typedef struct IOPortOps {
    /* @offset is relative to the range base; @size is 1, 2 or 4. */
    uint32_t (*read)(void *opaque, uint32_t offset, unsigned size);
    void (*write)(void *opaque, uint32_t offset, uint32_t value, unsigned size);
} IOPortOps;

/*
 * Claim [@base, @base + @len). Returns 0, -EINVAL (empty, beyond 64 KiB,
 * overlapping) or -ENOSPC.
 */
int ioport_register(uint32_t base, uint32_t len, const IOPortOps *ops, void *opaque);
int ioport_unregister(uint32_t base, uint32_t len);

/*
 * Port access of @size bytes. An access is dispatched only when it lies
 * wholly inside one range; otherwise it is unassigned.
 */
uint32_t ioport_read(uint64_t port, unsigned size);
void ioport_write(uint64_t port, uint32_t value, unsigned size);

#endif
