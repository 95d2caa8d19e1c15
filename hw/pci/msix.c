/*
 * MSI-X capability, vector table and pending bit array; see
 * include/hw/pci/msix.h.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "hw/pci/msix.h"
#include "sysemu/sysemu.h"

/* Deliveries nested inside a delivery (a message aimed at a BAR) stop here. */
#define MSIX_MAX_NESTING 4

struct MSIXState {
    unsigned nvectors;
    uint8_t cap;                /* capability offset in config space */
    int bar;
    uint32_t bar_size, pba_offset;
    uint8_t *table;             /* nvectors * 16 bytes, little-endian */
    uint8_t *pba;               /* (nvectors + 63) / 64 * 8 bytes */
    bool was_enabled, was_masked;
};

static int nesting;

static uint16_t msix_control(const PCIDevice *d)
{
    return pci_get_word(d->config + d->msix->cap + PCI_MSIX_FLAGS);
}

bool msix_enabled(const PCIDevice *d)
{
    return d->msix && (msix_control(d) & PCI_MSIX_FLAGS_ENABLE);
}

static bool function_masked(const PCIDevice *d)
{
    return msix_control(d) & PCI_MSIX_FLAGS_MASKALL;
}

static bool vector_masked(const PCIDevice *d, unsigned v)
{
    const uint8_t *e = d->msix->table + v * PCI_MSIX_ENTRY_SIZE;

    return function_masked(d) || (e[PCI_MSIX_ENTRY_VECTOR_CTRL] & PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

unsigned msix_nr_vectors(const PCIDevice *d)
{
    return d->msix ? d->msix->nvectors : 0;
}

bool msix_is_pending(const PCIDevice *d, unsigned v)
{
    return d->msix && v < d->msix->nvectors && (d->msix->pba[v / 8] & (1u << (v % 8)));
}

static void set_pending(PCIDevice *d, unsigned v, bool on)
{
    if (on) {
        d->msix->pba[v / 8] |= (uint8_t)(1u << (v % 8));
    } else {
        d->msix->pba[v / 8] &= (uint8_t)~(1u << (v % 8));
    }
}

/* The message write: data (32-bit LE) to the entry's address, as a bus master. */
static void deliver(PCIDevice *d, unsigned v)
{
    const uint8_t *e = d->msix->table + v * PCI_MSIX_ENTRY_SIZE;
    uint64_t addr = pci_get_long(e + PCI_MSIX_ENTRY_LOWER_ADDR) |
                    ((uint64_t)pci_get_long(e + PCI_MSIX_ENTRY_UPPER_ADDR) << 32);
    uint8_t data[4];

    if (!(pci_get_word(d->config + PCI_COMMAND) & PCI_COMMAND_MASTER) || nesting >= MSIX_MAX_NESTING) {
        return;                 /* QEMU: the bus master address space is disabled */
    }
    memcpy(data, e + PCI_MSIX_ENTRY_DATA, 4);
    nesting++;
    vdm_memory_write(addr, data, sizeof(data));
    nesting--;
}

void msix_notify(PCIDevice *d, unsigned v)
{
    if (!msix_enabled(d) || v >= d->msix->nvectors) {
        return;
    }
    if (vector_masked(d, v)) {
        set_pending(d, v, true);
        return;
    }
    deliver(d, v);
}

/* A vector may have become unmasked: deliver what is pending (spec: then clear the bit). */
static void vector_unmask_check(PCIDevice *d, unsigned v)
{
    if (msix_enabled(d) && !vector_masked(d, v) && msix_is_pending(d, v)) {
        set_pending(d, v, false);
        deliver(d, v);
    }
}

void msix_config_written(PCIDevice *d, uint32_t addr, unsigned len)
{
    MSIXState *m = d->msix;
    bool enabled, masked;

    if (!m || addr + len <= m->cap + PCI_MSIX_FLAGS + 0u || addr >= m->cap + PCI_MSIX_FLAGS + 2u) {
        return;
    }
    enabled = msix_enabled(d);
    masked = function_masked(d);
    if (enabled && !m->was_enabled) {
        pci_set_irq(d, 0);      /* INTx is not used while MSI-X is enabled */
    }
    if (enabled != m->was_enabled || masked != m->was_masked) {
        m->was_enabled = enabled;
        m->was_masked = masked;
        for (unsigned v = 0; v < m->nvectors; v++) {
            vector_unmask_check(d, v);
        }
    }
}

/* ---- the BAR ---- */

static uint64_t msix_bar_read(void *opaque, hwaddr off, unsigned size)
{
    PCIDevice *d = opaque;
    MSIXState *m = d->msix;
    uint64_t v = 0;

    for (unsigned i = 0; i < size; i++) {
        hwaddr o = off + i;
        uint8_t b = 0;

        if (o < (hwaddr)m->nvectors * PCI_MSIX_ENTRY_SIZE) {
            b = m->table[o];
        } else if (o >= m->pba_offset && o < m->pba_offset + (m->nvectors + 63) / 64 * 8) {
            b = m->pba[o - m->pba_offset];
        }
        v |= (uint64_t)b << (8 * i);
    }
    return v;
}

static void msix_bar_write(void *opaque, hwaddr off, uint64_t val, unsigned size)
{
    PCIDevice *d = opaque;
    MSIXState *m = d->msix;
    unsigned touched = UINT32_MAX;

    for (unsigned i = 0; i < size; i++) {
        hwaddr o = off + i;
        uint8_t b = (uint8_t)(val >> (8 * i));

        if (o >= (hwaddr)m->nvectors * PCI_MSIX_ENTRY_SIZE) {
            continue;           /* the PBA is read-only; the rest is reserved */
        }
        if (o % PCI_MSIX_ENTRY_SIZE == PCI_MSIX_ENTRY_VECTOR_CTRL) {
            b &= PCI_MSIX_ENTRY_CTRL_MASKBIT;
            touched = (unsigned)(o / PCI_MSIX_ENTRY_SIZE);
        } else if (o % PCI_MSIX_ENTRY_SIZE > PCI_MSIX_ENTRY_VECTOR_CTRL) {
            continue;           /* reserved vector control bits read 0 */
        }
        m->table[o] = b;
    }
    if (touched != UINT32_MAX) {
        vector_unmask_check(d, touched);
    }
}

static const MMIOOps msix_bar_ops = { .read = msix_bar_read, .write = msix_bar_write };

int msix_init_exclusive_bar(PCIDevice *d, unsigned nvectors, int bar)
{
    MSIXState *m;
    uint32_t table_size = nvectors * PCI_MSIX_ENTRY_SIZE, pba_size = (nvectors + 63) / 64 * 8;
    uint32_t bar_size = 4096;
    uint8_t cap;

    g_assert(nvectors >= 1 && nvectors <= PCI_MSIX_MAX_VECTORS && !d->msix);    /* host bugs */
    /* as QEMU: table at 0, PBA at half the BAR, at least 4 KiB */
    while (table_size > bar_size / 2 || pba_size > bar_size / 2) {
        bar_size *= 2;
    }
    cap = pci_add_capability(d, PCI_CAP_ID_MSIX, PCI_MSIX_CAP_SIZE);
    if (!cap) {
        return -ENOSPC;
    }
    m = g_new0(MSIXState, 1);
    m->nvectors = nvectors;
    m->cap = cap;
    m->bar = bar;
    m->bar_size = bar_size;
    m->pba_offset = bar_size / 2;
    m->table = g_malloc0(table_size);
    m->pba = g_malloc0(pba_size);
    for (unsigned v = 0; v < nvectors; v++) {
        /* PCI 6.8.2.9: the mask bit is set after reset */
        m->table[v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL] = PCI_MSIX_ENTRY_CTRL_MASKBIT;
    }
    d->msix = m;
    pci_set_word(d->config + cap + PCI_MSIX_FLAGS, (uint16_t)(nvectors - 1));
    d->wmask[cap + PCI_MSIX_FLAGS + 1] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
    pci_set_long(d->config + cap + PCI_MSIX_TABLE, (uint32_t)bar);
    pci_set_long(d->config + cap + PCI_MSIX_PBA, m->pba_offset | (uint32_t)bar);
    pci_register_bar(d, bar, 0, bar_size, &msix_bar_ops, d);
    return 0;
}

void msix_uninit(PCIDevice *d)
{
    MSIXState *m = d->msix;

    if (!m) {
        return;
    }
    g_free(m->table);
    g_free(m->pba);
    g_free(m);
    d->msix = NULL;
}
