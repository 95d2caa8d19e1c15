/*
 * libFuzzer target: a hostile guest against PCI (hw/pci/pci.c: config
 * mechanism #1, q35 MMCONFIG, memory and I/O BARs), MSI-X (hw/pci/msix.c)
 * and the virtio-pci transport (hw/virtio/virtio-pci.c: common/ISR/device/
 * notify structures, the PCI cfg access capability, the legacy I/O block)
 * with a two-queue device on the real core that uses every buffer it pops.
 * The checks: the sanitizers, and after every operation the device's ids
 * and capability list head are what realize set (read-only stays read-only).
 *
 * Input (little-endian, zeros past the end): a header byte (bit 0 q35,
 * bit 1 transitional, bits 2-3 MSI-X vectors 0..3), then operations, each an
 * opcode byte (b % 7) and its arguments:
 *   0 CF8     u32 value                       0xcf8 address latch (dword write)
 *   1 CFC     u8 off|size|write, u32 value    0xcfc-0xcff access
 *   2 MMIO    u8 where, u16 off, u8 size, u64 value, u8 write
 *             where: BAR 4, BAR 1 (MSI-X), MMCONFIG window, low RAM
 *   3 IO      u8 off, u8 size, u32 value, u8 write   the legacy BAR's ports
 *   4 MAP     -                               BARs programmed, IO/MEM/MASTER on, MMCONFIG on
 *   5 STORE   u16 off, u8 n, n bytes          guest RAM stores (rings, MSI-X targets)
 *   6 SETUP   u8 flags, u16 num, u8 queue     an honest modern driver's set-up
 */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "fuzz-device.h"
#include "fuzz-input.h"
#include "hw/acpi/pcihp.h"
#include "hw/pci/msix.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/ioport.h"
#include "sysemu/mmio.h"
#include "sysemu/qdev.h"
#include "sysemu/qtest.h"
#include "sysemu/sysemu.h"

#define RAM_SIZE    0x10000u
#define DEVFN       PCI_DEVFN(4, 0)
#define BAR4_ADDR   0xe0000000ull
#define BAR1_ADDR   0xe0010000ull
#define IO_ADDR     0xc000u
#define FZ_MAX_OPS  512

static uint8_t ram[RAM_SIZE];
static GuestMemory mem;

/* ---- what vdm's other files provide, reduced to this harness ---- */

void qtest_set_irq_out(int n, int level)
{
}

void acpi_pcihp_init(void)
{
}

void acpi_pcihp_cleanup(void)
{
}

/* MSI-X messages land in RAM (or nowhere): unassigned writes are dropped, as in vdm. */
void vdm_memory_write(hwaddr addr, const void *buf, uint64_t len)
{
    uint64_t n = len;
    uint8_t *p = guest_memory_translate(&mem, addr, &n, true);

    if (p) {
        memcpy(p, buf, n);
    }
}

bool qdev_str_bool(const char *v, bool *out)
{
    return false;
}

int qdev_parse_pci_addr(const char *s)
{
    return -1;
}

bool qdev_is_pci_common_prop(const char *key)
{
    return false;
}

void qdev_print_prop(const char *name, const char *type, const char *desc, void *opaque)
{
}

/* ---- the guest ---- */

static void cfg_write(uint8_t reg, uint32_t val, unsigned size)
{
    ioport_write(PCI_CONFIG_ADDR_PORT, 0x80000000u | DEVFN << 8 | (reg & 0xfc), 4);
    ioport_write(PCI_CONFIG_DATA_PORT + (reg & 3), val, size);
}

static void map_all(bool q35)
{
    cfg_write(PCI_BASE_ADDRESS_0 + 16, (uint32_t)BAR4_ADDR, 4);
    cfg_write(PCI_BASE_ADDRESS_0 + 20, 0, 4);
    cfg_write(PCI_BASE_ADDRESS_0 + 4, (uint32_t)BAR1_ADDR, 4);
    cfg_write(PCI_BASE_ADDRESS_0, IO_ADDR, 4);
    cfg_write(PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER, 2);
    if (q35) {
        ioport_write(PCI_CONFIG_ADDR_PORT, 0x80000000u | MCH_PCIEXBAR, 4);
        ioport_write(PCI_CONFIG_DATA_PORT, (uint32_t)MCH_PCIEXBAR_DEFAULT | MCH_PCIEXBAREN, 4);
    }
}

static void common_write(uint32_t off, uint64_t val, unsigned size)
{
    fz_mmio_access(BAR4_ADDR + VIRTIO_PCI_COMMON_OFFSET + off, size, val, true);
}

static void honest_setup(uint8_t flags, uint16_t num, uint8_t q)
{
    uint64_t f = 1ULL << VIRTIO_F_VERSION_1 | (flags & 1 ? 1ULL << VIRTIO_F_RING_PACKED : 0);

    common_write(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER, 1);
    common_write(VIRTIO_PCI_COMMON_GFSELECT, 0, 4);
    common_write(VIRTIO_PCI_COMMON_GF, (uint32_t)f, 4);
    common_write(VIRTIO_PCI_COMMON_GFSELECT, 1, 4);
    common_write(VIRTIO_PCI_COMMON_GF, (uint32_t)(f >> 32), 4);
    common_write(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                 VIRTIO_CONFIG_S_FEATURES_OK, 1);
    common_write(VIRTIO_PCI_COMMON_Q_SELECT, q % 3, 2);
    common_write(VIRTIO_PCI_COMMON_Q_SIZE, num % 300, 2);
    common_write(VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000, 8);
    common_write(VIRTIO_PCI_COMMON_Q_AVAILLO, 0x4000 + (flags >> 1) % 8, 8);
    common_write(VIRTIO_PCI_COMMON_Q_USEDLO, 0x6000, 8);
    common_write(VIRTIO_PCI_COMMON_Q_MSIX, flags >> 4, 2);
    common_write(VIRTIO_PCI_COMMON_Q_ENABLE, 1, 2);
    common_write(VIRTIO_PCI_COMMON_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in = { data, size };
    uint8_t hdr = in_u8(&in);
    bool q35 = hdr & 1;
    static VirtIOPCIProxy proxy;
    static VirtIODevice vdev;
    uint16_t want_id;

    memset(ram, 0, sizeof(ram));
    memset(&proxy, 0, sizeof(proxy));
    memset(&vdev, 0, sizeof(vdev));
    guest_memory_init(&mem);
    g_assert(guest_memory_add(&mem, 0, RAM_SIZE, ram, true) == 0);
    g_assert(virtio_init(&vdev, "fuzz-pci", 2, 8, &mem, 2, 256) == 0);
    virtio_queue_set_handler(&vdev, 0, fz_use_all);
    virtio_queue_set_handler(&vdev, 1, fz_use_all);
    pci_bus_init(q35 ? PCI_HOST_Q35 : PCI_HOST_I440FX);
    proxy.legacy = hdr & 2;
    g_assert(virtio_pci_realize(&proxy, &vdev, "fuzz-pci", DEVFN, 0x010000, (hdr >> 2) & 3) == 0);
    want_id = proxy.legacy ? 0x1001 : 0x1042;

    for (unsigned ops = 0; in.left && ops < FZ_MAX_OPS; ops++) {
        switch (in_u8(&in) % 7) {
        case 0:
            ioport_write(PCI_CONFIG_ADDR_PORT, in_u32(&in), 4);
            break;
        case 1: {
            uint8_t b = in_u8(&in);
            unsigned sz = 1u << ((b >> 2) % 3);
            uint32_t port = PCI_CONFIG_DATA_PORT + (b & 3 & ~(sz - 1));
            uint32_t val = in_u32(&in);

            if (b & 0x80) {
                ioport_write(port, val, sz);
            } else {
                (void)ioport_read(port, sz);
            }
            break;
        }
        case 2: {
            static const uint64_t bases[] = { BAR4_ADDR, BAR1_ADDR, MCH_PCIEXBAR_DEFAULT + (DEVFN << 12), 0 };
            uint64_t base = bases[in_u8(&in) % 4];
            unsigned sz = 1u << (in_u8(&in) % 4);
            uint16_t off = in_u16(&in) & (uint16_t)~(sz - 1);
            uint64_t val = in_u64(&in);

            fz_mmio_access(base + off, sz, val, in_u8(&in) & 1);
            break;
        }
        case 3: {
            uint8_t off = in_u8(&in);
            unsigned sz = 1u << (in_u8(&in) % 3);
            uint32_t val = in_u32(&in);

            if (in_u8(&in) & 1) {
                ioport_write(IO_ADDR + off, val, sz);
            } else {
                (void)ioport_read(IO_ADDR + off, sz);
            }
            break;
        }
        case 4:
            map_all(q35);
            break;
        case 5: {
            uint16_t off = in_u16(&in);
            unsigned n = in_u8(&in) % 32;

            for (unsigned i = 0; i < n; i++) {
                ram[(off + i) % RAM_SIZE] = in_u8(&in);
            }
            break;
        }
        default: {
            uint8_t flags = in_u8(&in);
            uint16_t num = in_u16(&in);

            honest_setup(flags, num, in_u8(&in));
            break;
        }
        }
        /* read-only stays read-only: ids and the capability list head */
        if (pci_get_word(proxy.pci_dev.config + PCI_DEVICE_ID) != want_id ||
            proxy.pci_dev.config[PCI_CAPABILITY_LIST] != ((hdr >> 2) & 3 ? 0x98 : 0x84)) {
            __builtin_trap();
        }
    }
    virtio_pci_unrealize(&proxy);
    pci_device_remove(&proxy.pci_dev);
    pci_bus_cleanup();
    virtio_cleanup(&vdev);
    return 0;
}
