/*
 * libqos-like PCI and virtio-pci helpers over libqtest (see qpci.h).
 */
#include <glib.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "qpci.h"

static void select_reg(QTestState *s, int devfn, uint8_t off)
{
    qtest_outl(s, PCI_CONFIG_ADDR_PORT, 0x80000000u | ((uint32_t)devfn << 8) | (off & 0xfc));
}

uint32_t qpci_config_readl(QTestState *s, int devfn, uint8_t off)
{
    select_reg(s, devfn, off);
    return qtest_inl(s, PCI_CONFIG_DATA_PORT);
}

uint16_t qpci_config_readw(QTestState *s, int devfn, uint8_t off)
{
    select_reg(s, devfn, off);
    return qtest_inw(s, PCI_CONFIG_DATA_PORT + (off & 2));
}

uint8_t qpci_config_readb(QTestState *s, int devfn, uint8_t off)
{
    select_reg(s, devfn, off);
    return qtest_inb(s, PCI_CONFIG_DATA_PORT + (off & 3));
}

void qpci_config_writel(QTestState *s, int devfn, uint8_t off, uint32_t val)
{
    select_reg(s, devfn, off);
    qtest_outl(s, PCI_CONFIG_DATA_PORT, val);
}

void qpci_config_writew(QTestState *s, int devfn, uint8_t off, uint16_t val)
{
    select_reg(s, devfn, off);
    qtest_outw(s, PCI_CONFIG_DATA_PORT + (off & 2), val);
}

void qpci_config_writeb(QTestState *s, int devfn, uint8_t off, uint8_t val)
{
    select_reg(s, devfn, off);
    qtest_outb(s, PCI_CONFIG_DATA_PORT + (off & 3), val);
}

int qpci_find_device(QTestState *s, uint16_t vendor, uint16_t device)
{
    for (int devfn = 0; devfn < 256; devfn++) {
        uint32_t id = qpci_config_readl(s, devfn, PCI_VENDOR_ID);

        if (id == ((uint32_t)device << 16 | vendor)) {
            return devfn;
        }
    }
    return -1;
}

uint64_t qpci_bar_size(QTestState *s, int devfn, int bar)
{
    uint8_t reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint32_t lo_old = qpci_config_readl(s, devfn, reg), lo, hi = 0xffffffffu;
    bool is64 = lo_old & PCI_BASE_ADDRESS_MEM_TYPE_64;
    uint64_t mask;

    qpci_config_writel(s, devfn, reg, 0xffffffffu);
    lo = qpci_config_readl(s, devfn, reg);
    qpci_config_writel(s, devfn, reg, lo_old);
    if (is64) {
        uint32_t hi_old = qpci_config_readl(s, devfn, reg + 4);
        qpci_config_writel(s, devfn, reg + 4, 0xffffffffu);
        hi = qpci_config_readl(s, devfn, reg + 4);
        qpci_config_writel(s, devfn, reg + 4, hi_old);
    }
    mask = ((uint64_t)hi << 32) | (lo & ~0xfu);
    if ((lo & ~0xfu) == 0) {
        return 0;
    }
    return ~mask + 1;
}

uint64_t qpci_map_bar(QTestState *s, int devfn, int bar, uint64_t *next_free)
{
    uint8_t reg = PCI_BASE_ADDRESS_0 + 4 * bar;
    uint64_t size = qpci_bar_size(s, devfn, bar), addr;

    g_assert_cmpuint(size, >, 0);
    addr = (*next_free + size - 1) & ~(size - 1);
    *next_free = addr + size;
    qpci_config_writel(s, devfn, reg, (uint32_t)addr);
    if (qpci_config_readl(s, devfn, reg) & PCI_BASE_ADDRESS_MEM_TYPE_64) {
        qpci_config_writel(s, devfn, reg + 4, (uint32_t)(addr >> 32));
    }
    qpci_config_writew(s, devfn, PCI_COMMAND, qpci_config_readw(s, devfn, PCI_COMMAND) |
                       PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
    return addr;
}

uint8_t qpci_find_cap(QTestState *s, int devfn, uint8_t id, int vndr_type, uint8_t start)
{
    uint8_t off = start ? qpci_config_readb(s, devfn, start + 1)
                        : qpci_config_readb(s, devfn, PCI_CAPABILITY_LIST);
    unsigned hops = 0;

    while (off && hops++ < 48) {
        if (qpci_config_readb(s, devfn, off) == id &&
            (vndr_type < 0 || qpci_config_readb(s, devfn, off + 3) == vndr_type)) {
            return off;
        }
        off = qpci_config_readb(s, devfn, off + 1);
    }
    return 0;
}

void qvirtio_pci_init(QVirtioPCI *v, QTestState *s, int devfn)
{
    qvirtio_pci_init_at(v, s, devfn, QPCI_MMIO_BASE);
}

void qvirtio_pci_init_at(QVirtioPCI *v, QTestState *s, int devfn, uint64_t base)
{
    static const int types[] = { VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_ISR_CFG,
                                 VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_NOTIFY_CFG };
    uint64_t *dst[] = { &v->common, &v->isr, &v->device, &v->notify };
    uint64_t bar_addr[PCI_NUM_BARS] = { 0 }, next = base;

    v->qts = s;
    v->devfn = devfn;
    for (unsigned i = 0; i < G_N_ELEMENTS(types); i++) {
        uint8_t c = qpci_find_cap(s, devfn, PCI_CAP_ID_VNDR, types[i], 0);
        uint8_t bar;

        g_assert_cmpuint(c, !=, 0);
        bar = qpci_config_readb(s, devfn, c + 4);
        g_assert_cmpuint(bar, <, PCI_NUM_BARS);
        if (!bar_addr[bar]) {
            bar_addr[bar] = qpci_map_bar(s, devfn, bar, &next);
        }
        *dst[i] = bar_addr[bar] + qpci_config_readl(s, devfn, c + 8);
        if (types[i] == VIRTIO_PCI_CAP_NOTIFY_CFG) {
            g_assert_cmpuint(qpci_config_readb(s, devfn, c + 2), >=, 20);
            v->notify_mult = qpci_config_readl(s, devfn, c + 16);
        }
    }
}

uint64_t qvirtio_pci_get_features(QVirtioPCI *v)
{
    uint64_t f;

    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_DFSELECT, 0);
    f = qtest_readl(v->qts, v->common + VIRTIO_PCI_COMMON_DF);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_DFSELECT, 1);
    f |= (uint64_t)qtest_readl(v->qts, v->common + VIRTIO_PCI_COMMON_DF) << 32;
    return f;
}

uint8_t qvirtio_pci_get_status(QVirtioPCI *v)
{
    return qtest_readb(v->qts, v->common + VIRTIO_PCI_COMMON_STATUS);
}

void qvirtio_pci_set_status(QVirtioPCI *v, uint8_t status)
{
    qtest_writeb(v->qts, v->common + VIRTIO_PCI_COMMON_STATUS, status);
}

bool qvirtio_pci_set_features(QVirtioPCI *v, uint64_t features)
{
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_GFSELECT, 0);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_GF, (uint32_t)features);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_GFSELECT, 1);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_GF, (uint32_t)(features >> 32));
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_FEATURES_OK);
    return qvirtio_pci_get_status(v) & VIRTIO_CONFIG_S_FEATURES_OK;
}

void qvirtio_pci_queue_select(QVirtioPCI *v, uint16_t q)
{
    qtest_writew(v->qts, v->common + VIRTIO_PCI_COMMON_Q_SELECT, q);
}

void qvirtio_pci_set_rings(QVirtioPCI *v, uint64_t desc, uint64_t driver, uint64_t device)
{
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)desc);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_DESCHI, (uint32_t)(desc >> 32));
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t)driver);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_AVAILHI, (uint32_t)(driver >> 32));
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t)device);
    qtest_writel(v->qts, v->common + VIRTIO_PCI_COMMON_Q_USEDHI, (uint32_t)(device >> 32));
}

void qvirtio_pci_notify(QVirtioPCI *v, uint16_t q)
{
    uint16_t off;

    qvirtio_pci_queue_select(v, q);
    off = qtest_readw(v->qts, v->common + VIRTIO_PCI_COMMON_Q_NOFF);
    qtest_writew(v->qts, v->notify + (uint64_t)off * v->notify_mult, q);
}

JSONValue *qpci_unplug_acpi_device_test(QTestState *s, const char *id, uint8_t slot)
{
    qtest_qmp_device_del_send(s, id);
    qtest_outl(s, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u << slot);
    return qtest_qmp_eventwait(s, "DEVICE_DELETED");
}

/* ---- MSI-X ---- */

uint64_t qpci_msix_target(const QPCIMsix *m, unsigned v)
{
    return m->target + 0x100ull * v;
}

void qpci_msix_init(QTestState *s, int devfn, int bar, uint64_t bar_addr, uint64_t target, QPCIMsix *m)
{
    uint64_t next = bar_addr, base;
    uint32_t table, pba;

    memset(m, 0, sizeof(*m));
    m->devfn = devfn;
    m->target = target;
    m->cap = qpci_find_cap(s, devfn, PCI_CAP_ID_MSIX, -1, 0);
    g_assert_cmpuint(m->cap, !=, 0);
    m->nvec = (qpci_config_readw(s, devfn, m->cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE) + 1;
    table = qpci_config_readl(s, devfn, m->cap + PCI_MSIX_TABLE);
    pba = qpci_config_readl(s, devfn, m->cap + PCI_MSIX_PBA);
    g_assert_cmpuint(table & 7, ==, (unsigned)bar);
    g_assert_cmpuint(pba & 7, ==, (unsigned)bar);
    base = qpci_map_bar(s, devfn, bar, &next);
    m->table = base + (table & ~7u);
    m->pba = base + (pba & ~7u);
    for (unsigned v = 0; v < m->nvec; v++) {
        uint64_t e = m->table + v * PCI_MSIX_ENTRY_SIZE;

        /* PCI 6.8.2.9: every vector comes out of reset masked */
        g_assert_cmphex(qtest_readl(s, e + PCI_MSIX_ENTRY_VECTOR_CTRL), ==, PCI_MSIX_ENTRY_CTRL_MASKBIT);
        qtest_writel(s, e + PCI_MSIX_ENTRY_LOWER_ADDR, (uint32_t)qpci_msix_target(m, v));
        qtest_writel(s, e + PCI_MSIX_ENTRY_UPPER_ADDR, (uint32_t)(qpci_msix_target(m, v) >> 32));
        qtest_writel(s, e + PCI_MSIX_ENTRY_DATA, QPCI_MSI_DATA(v));
        g_assert_cmphex(qtest_readl(s, e + PCI_MSIX_ENTRY_DATA), ==, QPCI_MSI_DATA(v));
        qtest_writel(s, qpci_msix_target(m, v), 0);
    }
}

void qpci_msix_control(QTestState *s, const QPCIMsix *m, bool enable, bool maskall)
{
    uint16_t f = qpci_config_readw(s, m->devfn, m->cap + PCI_MSIX_FLAGS);

    f &= (uint16_t)~(PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    f |= (enable ? PCI_MSIX_FLAGS_ENABLE : 0) | (maskall ? PCI_MSIX_FLAGS_MASKALL : 0);
    qpci_config_writew(s, m->devfn, m->cap + PCI_MSIX_FLAGS, f);
    /* the table size is read-only */
    g_assert_cmphex(qpci_config_readw(s, m->devfn, m->cap + PCI_MSIX_FLAGS), ==, f);
}

void qpci_msix_mask(QTestState *s, const QPCIMsix *m, unsigned v, bool mask)
{
    qtest_writel(s, m->table + v * PCI_MSIX_ENTRY_SIZE + PCI_MSIX_ENTRY_VECTOR_CTRL, mask);
}

uint32_t qpci_msix_word(QTestState *s, const QPCIMsix *m, unsigned v)
{
    return qtest_readl(s, qpci_msix_target(m, v));
}
