/*
 * PCI bus 0, its host bridge and configuration mechanism #1 (see
 * include/hw/pci/pci.h).
 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "hw/acpi/pcihp.h"
#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "sysemu/ioport.h"
#include "sysemu/qtest.h"

#define PCI_DEVFN_MAX 256

typedef struct PCIBus {
    PCIHostKind kind;
    PCIDevice *devices[PCI_DEVFN_MAX];
    uint32_t config_addr;       /* 0xcf8 latch */
    PCIDevice host_bridge;
    PCIDevice lpc;              /* q35: the ICH9 LPC bridge at 1f.0 (ids only) */
    uint64_t ecam_base;         /* q35: mapped MMCONFIG window, or PCI_BAR_UNMAPPED */
    uint64_t ecam_size;
} PCIBus;

static PCIBus *bus;

/* ---- configuration space ---- */

static bool bar_range(const PCIDevice *d, uint32_t addr, int *bar)
{
    if (addr < PCI_BASE_ADDRESS_0 || addr >= PCI_BASE_ADDRESS_0 + 4 * PCI_NUM_BARS) {
        return false;
    }
    *bar = (int)(addr - PCI_BASE_ADDRESS_0) / 4;
    return true;
}

/*
 * The address a BAR decodes, or PCI_BAR_UNMAPPED: memory decoding off, an
 * address of 0, or a range that wraps / leaves a 32-bit BAR's space (which
 * is what a BAR holds while it is being sized), as QEMU's pci_bar_address.
 */
static uint64_t bar_address(const PCIDevice *d, int n)
{
    const PCIBar *b = &d->bars[n];
    uint64_t addr, last;
    bool is64 = b->type & PCI_BASE_ADDRESS_MEM_TYPE_64;

    if (b->type & PCI_BASE_ADDRESS_SPACE_IO) {
        /* I/O decoding on, non-zero, inside the 64 KiB port space */
        if (!(pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_IO)) {
            return PCI_BAR_UNMAPPED;
        }
        addr = pci_get_long(d->config + PCI_BASE_ADDRESS_0 + 4 * n) & ~(uint32_t)(b->size - 1);
        return addr == 0 || addr + b->size > IOPORT_SPACE_SIZE ? PCI_BAR_UNMAPPED : addr;
    }
    if (!(pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_MEMORY)) {
        return PCI_BAR_UNMAPPED;
    }
    addr = pci_get_long(d->config + PCI_BASE_ADDRESS_0 + 4 * n) & ~0xfull;
    if (is64) {
        addr |= (uint64_t)pci_get_long(d->config + PCI_BASE_ADDRESS_0 + 4 * (n + 1)) << 32;
    }
    addr &= ~(b->size - 1);
    last = addr + b->size - 1;
    if (addr == 0 || last < addr || last == UINT64_MAX || (!is64 && last >= UINT32_MAX)) {
        return PCI_BAR_UNMAPPED;
    }
    return addr;
}

static void bar_unmap(PCIBar *b)
{
    if (b->addr == PCI_BAR_UNMAPPED) {
        return;
    }
    if (b->type & PCI_BASE_ADDRESS_SPACE_IO) {
        ioport_unregister((uint32_t)b->addr, (uint32_t)b->size);
    } else {
        mmio_region_del(b->addr, b->opaque);
    }
    b->addr = PCI_BAR_UNMAPPED;
}

static void update_mappings(PCIDevice *d)
{
    for (int n = 0; n < PCI_NUM_BARS; n++) {
        PCIBar *b = &d->bars[n];
        uint64_t addr;

        if (!b->size) {
            continue;
        }
        addr = bar_address(d, n);
        if (addr == b->addr) {
            continue;
        }
        bar_unmap(b);
        if (addr == PCI_BAR_UNMAPPED) {
            continue;
        }
        if (b->type & PCI_BASE_ADDRESS_SPACE_IO) {
            /*
             * Ports cannot overlap (no priorities in the I/O table): a BAR
             * the guest put over claimed ports stays unmapped, as if its
             * accesses went to the earlier owner.
             */
            if (ioport_register((uint32_t)addr, (uint32_t)b->size, b->io_ops, b->opaque) == 0) {
                b->addr = addr;
            }
        } else if (mmio_region_add(addr, b->size, b->ops, b->opaque) == 0) {
            b->addr = addr;
        } else {
            g_warning("%s: cannot map BAR %d at 0x%" G_GINT64_MODIFIER "x: MMIO table full", d->name, n, addr);
        }
    }
}

uint32_t pci_config_read(PCIDevice *d, uint32_t addr, unsigned len)
{
    uint32_t v = 0;

    if (d->config_read) {
        d->config_read(d, addr, len);
    }
    for (unsigned i = 0; i < len && addr + i < PCI_CONFIG_SPACE_SIZE; i++) {
        v |= (uint32_t)d->config[addr + i] << (8 * i);
    }
    return v;
}

static void update_irq(PCIDevice *d);

void pci_config_write(PCIDevice *d, uint32_t addr, uint32_t val, unsigned len)
{
    bool remap = false;
    int bar;

    for (unsigned i = 0; i < len && addr + i < PCI_CONFIG_SPACE_SIZE; i++) {
        uint32_t a = addr + i;
        uint8_t b = (uint8_t)(val >> (8 * i));

        d->config[a] = (d->config[a] & ~d->wmask[a]) | (b & d->wmask[a]);
        d->config[a] &= ~(b & d->w1cmask[a]);
        if (a == PCI_COMMAND || bar_range(d, a, &bar)) {
            remap = true;
        }
    }
    if (remap) {
        update_mappings(d);
        update_irq(d);      /* INTX_DISABLE may have changed */
    }
    if (d->msix) {
        msix_config_written(d, addr, len);
    }
    if (d->config_written) {
        d->config_written(d, addr, len);
    }
}

/* ---- configuration mechanism #1 ---- */

static PCIDevice *config_target(uint32_t *reg)
{
    uint32_t a = bus->config_addr;

    if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0) {
        return NULL;            /* disabled, or a bus that does not exist */
    }
    *reg = a & 0xfc;
    return bus->devices[(a >> 8) & 0xff];
}

static uint32_t cf8_read(void *opaque, uint32_t offset, unsigned size)
{
    uint64_t v = bus->config_addr;

    return (uint32_t)(v >> (8 * offset));
}

static void cf8_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    /* only a dword access latches the address, as on real chipsets and QEMU */
    if (offset == 0 && size == 4) {
        bus->config_addr = value & 0x80fffffcu;
    }
}

static uint32_t cfc_read(void *opaque, uint32_t offset, unsigned size)
{
    uint32_t reg;
    PCIDevice *d = config_target(&reg);

    if (!d) {
        return UINT32_MAX;      /* no device: master abort, all-ones */
    }
    return pci_config_read(d, reg + offset, size);
}

static void cfc_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    uint32_t reg;
    PCIDevice *d = config_target(&reg);

    if (d) {
        pci_config_write(d, reg + offset, value, size);
    }
}

static const IOPortOps cf8_ops = { .read = cf8_read, .write = cf8_write };
static const IOPortOps cfc_ops = { .read = cfc_read, .write = cfc_write };

/* ---- devices ---- */

int pci_device_init(PCIDevice *d, const char *name, int devfn, uint16_t vendor, uint16_t device,
                    uint32_t class_code, uint8_t revision)
{
    g_assert(bus);      /* host bug: callers check pci_bus_present() */
    if (devfn < 0) {
        for (devfn = PCI_DEVFN(1, 0); devfn < PCI_DEVFN_MAX && bus->devices[devfn]; devfn += 8) {
        }
        if (devfn >= PCI_DEVFN_MAX) {
            return -ENOSPC;
        }
    }
    if (devfn >= PCI_DEVFN_MAX || bus->devices[devfn]) {
        return -EBUSY;
    }
    memset(d->config, 0, sizeof(d->config));
    memset(d->wmask, 0, sizeof(d->wmask));
    memset(d->w1cmask, 0, sizeof(d->w1cmask));
    d->msix = NULL;
    d->irq_level = 0;
    d->name = g_strdup(name);
    d->devfn = devfn;
    pci_set_word(d->config + PCI_VENDOR_ID, vendor);
    pci_set_word(d->config + PCI_DEVICE_ID, device);
    d->config[PCI_REVISION_ID] = revision;
    d->config[PCI_CLASS_PROG] = class_code & 0xff;
    pci_set_word(d->config + PCI_CLASS_DEVICE, (uint16_t)(class_code >> 8));
    pci_set_word(d->wmask + PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER |
                                         PCI_COMMAND_INTX_DISABLE);
    d->wmask[PCI_INTERRUPT_LINE] = 0xff;
    d->wmask[0x0c] = 0xff;      /* cache line size */
    d->wmask[0x0d] = 0xff;      /* latency timer */
    d->cap_next_free = 0x40;
    for (int n = 0; n < PCI_NUM_BARS; n++) {
        d->bars[n].addr = PCI_BAR_UNMAPPED;
    }
    bus->devices[devfn] = d;
    /* function 0 of a slot with more functions advertises it */
    if (PCI_FUNC(devfn) && bus->devices[devfn & ~7]) {
        bus->devices[devfn & ~7]->config[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTI_FUNCTION;
    }
    return 0;
}

void pci_device_remove(PCIDevice *d)
{
    pci_set_irq(d, 0);
    for (int n = 0; n < PCI_NUM_BARS; n++) {
        if (d->bars[n].size) {
            bar_unmap(&d->bars[n]);
        }
    }
    msix_uninit(d);
    if (bus && bus->devices[d->devfn] == d) {
        bus->devices[d->devfn] = NULL;
    }
    g_free(d->name);
    d->name = NULL;
}

void pci_device_unplug(DeviceState *dev)
{
    pci_device_remove((PCIDevice *)dev);
}

PCIDevice *pci_find_device(int devfn)
{
    return bus && devfn >= 0 && devfn < PCI_DEVFN_MAX ? bus->devices[devfn] : NULL;
}

void pci_register_bar(PCIDevice *d, int n, uint8_t type, uint64_t size, const MMIOOps *ops, void *opaque)
{
    uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * n;
    uint64_t wmask = ~(size - 1);

    /* host bugs, not guest input */
    g_assert(n >= 0 && n < PCI_NUM_BARS && size >= 16 && (size & (size - 1)) == 0);
    g_assert(!(type & PCI_BASE_ADDRESS_MEM_TYPE_64) || n < PCI_NUM_BARS - 1);
    type &= PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH;
    d->bars[n] = (PCIBar){ .size = size, .type = type, .addr = PCI_BAR_UNMAPPED, .ops = ops,
                           .opaque = opaque };
    pci_set_long(d->config + reg, type);
    pci_set_long(d->wmask + reg, (uint32_t)wmask & ~0xfu);
    if (type & PCI_BASE_ADDRESS_MEM_TYPE_64) {
        pci_set_long(d->wmask + reg + 4, (uint32_t)(wmask >> 32));
    }
}

void pci_register_io_bar(PCIDevice *d, int n, uint32_t size, const IOPortOps *ops, void *opaque)
{
    uint32_t reg = PCI_BASE_ADDRESS_0 + 4 * n;

    /* host bugs, not guest input */
    g_assert(n >= 0 && n < PCI_NUM_BARS && size >= 4 && size <= 256 && (size & (size - 1)) == 0);
    d->bars[n] = (PCIBar){ .size = size, .type = PCI_BASE_ADDRESS_SPACE_IO, .addr = PCI_BAR_UNMAPPED,
                           .io_ops = ops, .opaque = opaque };
    pci_set_long(d->config + reg, PCI_BASE_ADDRESS_SPACE_IO);
    pci_set_long(d->wmask + reg, ~(size - 1) & ~3u);
}

uint8_t pci_add_capability(PCIDevice *d, uint8_t cap_id, uint8_t size)
{
    uint8_t off = d->cap_next_free;

    if (size < 2 || off + size > PCI_CONFIG_SPACE_SIZE) {
        return 0;
    }
    /*
     * Space is taken upwards from 0x40 but the new capability goes to the
     * head of the list, as QEMU's pci_add_capability: the list reads newest
     * first (a virtio-pci device: MSI-X at 0x98 first, common cfg at 0x40 last).
     */
    d->config[off] = cap_id;
    d->config[off + 1] = d->config[PCI_CAPABILITY_LIST];
    d->config[PCI_CAPABILITY_LIST] = off;
    d->config[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
    d->cap_next_free = (uint8_t)((off + size + 3) & ~3);
    if (off + size + 3 > 0xff) {
        d->cap_next_free = 0xff;
    }
    return off;
}

int pci_intx_gsi(const PCIDevice *d)
{
    int pin = d->config[PCI_INTERRUPT_PIN] ? d->config[PCI_INTERRUPT_PIN] : 1;
    int pirq = (PCI_SLOT(d->devfn) + pin - 1) & 3;

    /* q35: ICH9's default routing sends INTA-D of the slots to PIRQ E-H (GSI 20-23) */
    return PCI_INTX_GSI_BASE + (bus && bus->kind == PCI_HOST_Q35 ? pirq + 4 : pirq);
}

/* Drive the line from the device's level, the status bit and INTX_DISABLE. */
static void update_irq(PCIDevice *d)
{
    bool disabled = pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_INTX_DISABLE;

    if (!d->config[PCI_INTERRUPT_PIN]) {
        return;
    }
    qtest_set_irq_out(pci_intx_gsi(d), d->irq_level && !disabled);
}

void pci_set_irq(PCIDevice *d, int level)
{
    d->irq_level = !!level;
    if (level) {
        d->config[PCI_STATUS] |= PCI_STATUS_INTERRUPT;
    } else {
        d->config[PCI_STATUS] &= ~PCI_STATUS_INTERRUPT;
    }
    update_irq(d);
}

/* ---- q35: MMCONFIG (ECAM) through the MCH's PCIEXBAR ---- */

/* The function ECAM offset @off addresses and its register, or NULL (no bus 1+, empty devfn). */
static PCIDevice *ecam_target(hwaddr off, uint32_t *reg)
{
    if ((off >> 20) != 0) {
        return NULL;
    }
    *reg = (uint32_t)(off & 0xfff);
    return bus->devices[(off >> 12) & 0xff];
}

/*
 * Every function here is conventional PCI (QEMU's MCH and virtio-pci on the
 * root bus are), so its space is 256 bytes: the extended space reads as
 * all-ones and ignores writes, as QEMU's pcie_mmcfg_data_read/write do.
 */
static uint64_t ecam_read(void *opaque, hwaddr off, unsigned size)
{
    uint32_t reg;
    PCIDevice *d;

    if (size == 8) {
        return ecam_read(opaque, off, 4) | ecam_read(opaque, off + 4, 4) << 32;
    }
    d = ecam_target(off, &reg);
    if (!d || reg >= PCI_CONFIG_SPACE_SIZE) {
        return size >= 4 ? UINT32_MAX : (1u << (8 * size)) - 1;
    }
    return pci_config_read(d, reg, size);
}

static void ecam_write(void *opaque, hwaddr off, uint64_t val, unsigned size)
{
    uint32_t reg;
    PCIDevice *d;

    if (size == 8) {
        ecam_write(opaque, off, (uint32_t)val, 4);
        ecam_write(opaque, off + 4, val >> 32, 4);
        return;
    }
    d = ecam_target(off, &reg);
    if (d && reg < PCI_CONFIG_SPACE_SIZE) {
        pci_config_write(d, reg, (uint32_t)val, size);
    }
}

static const MMIOOps ecam_ops = { .read = ecam_read, .write = ecam_write };

/* Map or unmap the MMCONFIG window from PCIEXBAR (QEMU's mch_update_pciexbar). */
static void mch_update_pciexbar(PCIDevice *hb)
{
    uint64_t bar = (uint64_t)pci_get_long(hb->config + MCH_PCIEXBAR) |
                   (uint64_t)pci_get_long(hb->config + MCH_PCIEXBAR + 4) << 32;
    uint64_t size, base = PCI_BAR_UNMAPPED;

    switch (bar & MCH_PCIEXBAR_LENGTH_MASK) {
    case MCH_PCIEXBAR_LENGTH_256M:
        size = 256ull << 20;
        break;
    case MCH_PCIEXBAR_LENGTH_128M:
        size = 128ull << 20;
        break;
    case MCH_PCIEXBAR_LENGTH_64M:
        size = 64ull << 20;
        break;
    default:
        size = 0;           /* reserved encoding: no window (QEMU aborts here) */
        break;
    }
    if ((bar & MCH_PCIEXBAREN) && size) {
        /* address bits 35:26 as the length allows (ADMSK, 128ADMSK, 64ADMSK) */
        base = bar & 0xffc000000ull & ~(size - 1);
    }
    if (base == bus->ecam_base && size == bus->ecam_size) {
        return;
    }
    if (bus->ecam_base != PCI_BAR_UNMAPPED) {
        mmio_region_del(bus->ecam_base, bus);
    }
    bus->ecam_base = base;
    bus->ecam_size = size;
    if (base != PCI_BAR_UNMAPPED && mmio_region_add(base, size, &ecam_ops, bus) < 0) {
        g_warning("q35: cannot map MMCONFIG at 0x%" G_GINT64_MODIFIER "x: MMIO table full", base);
        bus->ecam_base = PCI_BAR_UNMAPPED;
    }
}

static void mch_config_written(PCIDevice *hb, uint32_t addr, unsigned len)
{
    if (addr < MCH_PCIEXBAR + 8 && addr + len > MCH_PCIEXBAR) {
        mch_update_pciexbar(hb);
    }
}

/* ---- the bus ---- */

void pci_bus_init(PCIHostKind kind)
{
    PCIDevice *hb;

    g_assert(!bus);
    bus = g_new0(PCIBus, 1);
    bus->kind = kind;
    bus->ecam_base = PCI_BAR_UNMAPPED;
    hb = &bus->host_bridge;
    if (kind == PCI_HOST_Q35) {
        /*
         * Q35 MCH at 00.0 (revision 0) with PCIEXBAR at 0x60: reset value
         * 0xb0000000, 256 MiB, disabled until firmware sets the enable bit,
         * as QEMU's mch_reset. The ICH9 LPC bridge sits at 1f.0.
         */
        pci_device_init(hb, "mch", PCI_DEVFN(0, 0), 0x8086, 0x29c0, 0x060000, 0x00);
        pci_set_long(hb->config + MCH_PCIEXBAR, (uint32_t)MCH_PCIEXBAR_DEFAULT);
        memset(hb->wmask + MCH_PCIEXBAR, 0xff, 8);
        hb->config_written = mch_config_written;
        pci_device_init(&bus->lpc, "ICH9-LPC", PCI_DEVFN(0x1f, 0), 0x8086, 0x2918, 0x060100, 0x02);
        bus->lpc.config[PCI_HEADER_TYPE] |= PCI_HEADER_TYPE_MULTI_FUNCTION;
    } else {
        /* i440FX host bridge, as QEMU's "pc" machine has at 00.0 */
        pci_device_init(hb, "i440FX-pcihost", PCI_DEVFN(0, 0), 0x8086, 0x1237, 0x060000, 0x02);
    }
    if (ioport_register(PCI_CONFIG_ADDR_PORT, 4, &cf8_ops, NULL) < 0 ||
        ioport_register(PCI_CONFIG_DATA_PORT, 4, &cfc_ops, NULL) < 0) {
        g_error("pci: cannot claim ports 0xcf8/0xcfc");
    }
    if (kind == PCI_HOST_I440FX) {
        acpi_pcihp_init();  /* the pc machine's ACPI PCI hotplug of bus 0 (PIIX4 PM) */
    }
}

bool pci_bus_present(void)
{
    return bus != NULL;
}

void pci_bus_cleanup(void)
{
    if (!bus) {
        return;
    }
    /* Devices were unplugged by qdev_cleanup: only the host bridge (and q35's LPC) are left. */
    if (bus->ecam_base != PCI_BAR_UNMAPPED) {
        mmio_region_del(bus->ecam_base, bus);
    }
    if (bus->lpc.name) {
        pci_device_remove(&bus->lpc);
    }
    pci_device_remove(&bus->host_bridge);
    acpi_pcihp_cleanup();
    ioport_unregister(PCI_CONFIG_ADDR_PORT, 4);
    ioport_unregister(PCI_CONFIG_DATA_PORT, 4);
    g_free(bus);
    bus = NULL;
}
