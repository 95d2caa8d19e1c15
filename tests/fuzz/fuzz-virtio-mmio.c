/*
 * libFuzzer target: a hostile driver against the virtio-mmio transport
 * (hw/virtio/virtio-mmio.c) through the MMIO dispatch table (system/mmio.c),
 * with a two-queue device on the real core that pops whatever the rings
 * offer and uses it. Register accesses of any offset/size/value on the
 * device's transport, an empty one and the gap after them, guest stores
 * into RAM (rings included), and an honest driver set-up step so deep states
 * are reachable. The checks: the sanitizers, the interrupt line always
 * equal to "InterruptStatus != 0", a ready queue always having a size the
 * ring can have.
 *
 * Input (little-endian, zeros past the end): operations, each an opcode
 * byte (b % 4) and its arguments:
 *   0 ACCESS  u8 where (transport 1, 0, past the end), u16 off, u8 size (1 << b % 4),
 *             u64 value, u8 write
 *   1 STORE   u16 off, u8 n, n bytes          guest stores into RAM
 *   2 SETUP   u8 flags (packed, event idx), u16 num, u8 queue
 *             status/feature/queue sequence an honest driver does
 *   3 RESET   -                               status 0
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-device.h"
#include "fuzz-input.h"
#include "hw/virtio/virtio-mmio.h"
#include "sysemu/mmio.h"
#include "sysemu/qtest.h"

#define RAM_SIZE    0x10000u
#define NTRANSPORTS 2
#define DEV_BASE    (VIRTIO_MMIO_BASE + VIRTIO_MMIO_SIZE)       /* the device lands on the last one */
#define FZ_MAX_OPS  512

static int irq_level[NTRANSPORTS];

/* The transport's interrupt output (the qtest server in vdm). */
void qtest_set_irq_out(int n, int level)
{
    if (n >= VIRTIO_MMIO_IRQ_BASE && n < VIRTIO_MMIO_IRQ_BASE + NTRANSPORTS) {
        irq_level[n - VIRTIO_MMIO_IRQ_BASE] = level;
    }
}

static uint32_t reg(uint32_t off)
{
    uint8_t b[4];
    uint64_t n;
    const void *r = mmio_lookup(DEV_BASE + off, 4, &n);

    mmio_region_read(r, DEV_BASE + off, b, 4);
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

static void set_reg(uint32_t off, uint32_t val)
{
    fz_mmio_access(DEV_BASE + off, 4, val, true);
}

static void honest_setup(uint8_t flags, uint16_t num, uint8_t q)
{
    uint64_t feat = 1ULL << VIRTIO_F_VERSION_1;

    if (flags & 1) {
        feat |= 1ULL << VIRTIO_F_RING_PACKED;
    }
    if (flags & 2) {
        feat |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
    }
    set_reg(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    set_reg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    set_reg(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat);
    set_reg(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    set_reg(VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> 32));
    set_reg(VIRTIO_MMIO_STATUS, reg(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_FEATURES_OK);
    set_reg(VIRTIO_MMIO_QUEUE_SEL, q % 3);
    set_reg(VIRTIO_MMIO_QUEUE_NUM, num % 300);
    set_reg(VIRTIO_MMIO_QUEUE_DESC_LOW, 0x1000);
    set_reg(VIRTIO_MMIO_QUEUE_AVAIL_LOW, 0x4000 + (flags >> 2) % 8);
    set_reg(VIRTIO_MMIO_QUEUE_USED_LOW, 0x6000);
    set_reg(VIRTIO_MMIO_QUEUE_READY, 1);
    set_reg(VIRTIO_MMIO_STATUS, reg(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t ram[RAM_SIZE];
    Input in = { data, size };
    GuestMemory mem;
    VirtIODevice vdev;

    memset(ram, 0, sizeof(ram));
    memset(&vdev, 0, sizeof(vdev));
    memset(irq_level, 0, sizeof(irq_level));
    guest_memory_init(&mem);
    g_assert(guest_memory_add(&mem, 0, RAM_SIZE, ram, true) == 0);
    g_assert(virtio_init(&vdev, "fuzz-mmio", 2, 8, &mem, 2, 256) == 0);
    virtio_queue_set_handler(&vdev, 0, fz_use_all);
    virtio_queue_set_handler(&vdev, 1, fz_use_all);
    virtio_mmio_transports_init(VIRTIO_MMIO_BASE, NTRANSPORTS, VIRTIO_MMIO_IRQ_BASE);
    g_assert(virtio_mmio_plug(&vdev, NULL) == NTRANSPORTS - 1);

    for (unsigned ops = 0; in.left && ops < FZ_MAX_OPS; ops++) {
        switch (in_u8(&in) % 4) {
        case 0: {
            static const uint64_t bases[] = { DEV_BASE, VIRTIO_MMIO_BASE, DEV_BASE + VIRTIO_MMIO_SIZE };
            uint64_t base = bases[in_u8(&in) % 3];
            uint16_t off = in_u16(&in) % 0x400;
            unsigned sz = 1u << (in_u8(&in) % 4);
            uint64_t val = in_u64(&in);

            /* naturally aligned, as the qtest memory path sends them */
            fz_mmio_access(base + (off & ~(uint16_t)(sz - 1)), sz, val, in_u8(&in) & 1);
            break;
        }
        case 1: {
            uint16_t off = in_u16(&in);
            unsigned n = in_u8(&in) % 32;

            for (unsigned i = 0; i < n; i++) {
                ram[(off + i) % RAM_SIZE] = in_u8(&in);
            }
            break;
        }
        case 2: {
            uint8_t flags = in_u8(&in);
            uint16_t num = in_u16(&in);

            honest_setup(flags, num, in_u8(&in));
            break;
        }
        default:
            set_reg(VIRTIO_MMIO_STATUS, 0);
            break;
        }
        /* the line follows InterruptStatus; the empty transport never interrupts */
        if (irq_level[NTRANSPORTS - 1] != (reg(VIRTIO_MMIO_INTERRUPT_STATUS) != 0) || irq_level[0]) {
            __builtin_trap();
        }
        for (unsigned q = 0; q < 2; q++) {
            set_reg(VIRTIO_MMIO_QUEUE_SEL, q);
            if (reg(VIRTIO_MMIO_QUEUE_READY) && (virtio_queue_get_num(&vdev, q) == 0 ||
                                                 virtio_queue_get_num(&vdev, q) > 256)) {
                __builtin_trap();
            }
        }
    }
    virtio_mmio_unplug(&vdev);
    virtio_mmio_transports_cleanup();
    virtio_cleanup(&vdev);
    return 0;
}
