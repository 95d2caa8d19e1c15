/*
 * virtio-mmio transport, version 2 register layout (virtio spec 4.2.2), as
 * QEMU's x86 microvm machine wires it: VIRTIO_MMIO_MAX_TRANSPORTS transports
 * of 0x200 bytes from 0xfeb00000, transport i on interrupt line 24 + i (the
 * second IOAPIC QEMU adds when ACPI is on, its default).
 *
 * A transport without a device reads MagicValue, Version, VendorID and
 * DeviceID 0. Registers below 0x100 take 32-bit accesses only (others read 0
 * and are ignored, as QEMU); the device configuration from 0x100 takes any
 * size. InterruptStatus holds the core's ISR bits; the line is high while it
 * is non-zero and InterruptACK clears bits. QueueNum is kept per queue and
 * checked when QueueReady is written: a size of 0, above QueueNumMax, or not
 * a power of two on a split ring leaves the queue not ready. Queue
 * registers are writable only while the selected queue exists, is not ready
 * and DRIVER_OK is not set (spec 4.2.2.3); QueueReady 0 on a running queue
 * is ignored. QueueNotify for a queue the device lacks is ignored.
 *
 * Devices are plugged (virtio_mmio_plug) into the free transport with the
 * highest index first: QEMU's qdev finds the transports' buses newest
 * first, so its first -device lands on the last transport.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VIRTIO_MMIO_H
#define HW_VIRTIO_VIRTIO_MMIO_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/virtio.h"

/* QEMU include/hw/i386/microvm.h and x86 IOAPIC numbering. */
#define VIRTIO_MMIO_BASE            0xfeb00000ull
#define VIRTIO_MMIO_SIZE            0x200
#define VIRTIO_MMIO_MAX_TRANSPORTS  24
#define VIRTIO_MMIO_IRQ_BASE        24

#define VIRTIO_MMIO_MAGIC           0x74726976      /* "virt" */
#define VIRTIO_MMIO_VERSION_2       2
#define VIRTIO_MMIO_VENDOR_QEMU     0x554d4551      /* "QEMU", QEMU's VIRT_VENDOR */

/* Register offsets (spec 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW     0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH    0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW      0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH     0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING           0x1
#define VIRTIO_MMIO_INT_CONFIG          0x2

/* Create @n transports (at most VIRTIO_MMIO_MAX_TRANSPORTS) at @base, transport i on line @irq_base + i. */
void virtio_mmio_transports_init(uint64_t base, unsigned n, int irq_base);
void virtio_mmio_transports_cleanup(void);
/* Whether the machine has virtio-mmio transports (QEMU: a "virtio-bus"). */
bool virtio_mmio_bus_present(void);

/* Device-specific config write (e.g. virtio_blk_set_config); NULL: read-only. */
typedef int (*VirtIOMMIOConfigWrite)(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len);

/* Put @vdev behind the free transport with the highest index. Returns that index or -ENOSPC. */
int virtio_mmio_plug(VirtIODevice *vdev, VirtIOMMIOConfigWrite config_write);
/* Reset @vdev and free its transport. */
void virtio_mmio_unplug(VirtIODevice *vdev);

#endif
