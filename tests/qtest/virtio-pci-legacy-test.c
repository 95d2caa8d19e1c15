/*
 * Transitional virtio-pci (disable-legacy=off) over qtest: QEMU's ids for
 * it, the legacy register block in I/O BAR 0 (spec 4.1.4.8) next to the
 * modern capabilities, a legacy driver's set-up (features without
 * FEATURES_OK, QUEUE_PFN with the legacy ring layout) doing real I/O on a
 * split ring, INTx through the legacy ISR, the MSI-X vector registers
 * shifting the device config, and hostile register use. I/O BARs: sizing,
 * decoding only with COMMAND.IO, never over claimed ports or past 64 KiB.
 */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-pci.h"
#include "qblk.h"
#include "qpci.h"

#define DEVFN       PCI_DEVFN(4, 0)
#define GSI         (PCI_INTX_GSI_BASE + 0)     /* slot 4 INTA on pc */
#define IOBASE      0xc000
#define QNUM        256                         /* legacy: QueueNumMax, fixed */
#define RING_GPA    0x10000ull

typedef struct Legacy {
    QBlkHost h;
    QTestState *qts;
    VDriverQueue *vq;
} Legacy;

static void legacy_start(Legacy *l, const char *vectors)
{
    memset(l, 0, sizeof(*l));
    qblk_host_init(&l->h, "vdm-legacy-XXXXXX", 64u << 20, 1u << 20);
    l->qts = qtest_initf("-machine pc -object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                         "-machine memory-backend=mem -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                         "-device virtio-blk-pci,drive=d0,addr=04.0,disable-legacy=off,event_idx=off,"
                         "vectors=%s", l->h.mem_path, l->h.img_path, vectors);
}

static void legacy_stop(Legacy *l)
{
    qtest_quit(l->qts);
    if (l->vq) {
        vdriver_queue_free(l->vq);
    }
    qblk_host_cleanup(&l->h);
}

static void map_io(Legacy *l)
{
    qpci_config_writel(l->qts, DEVFN, PCI_BASE_ADDRESS_0, IOBASE);
    qpci_config_writew(l->qts, DEVFN, PCI_COMMAND, PCI_COMMAND_IO | PCI_COMMAND_MASTER);
}

/* A legacy driver: reset, ACK + DRIVER, features, queue 0 by PFN, DRIVER_OK. */
static void legacy_driver_init(Legacy *l, uint32_t want)
{
    QTestState *s = l->qts;
    VDriverQueueConfig c = { .num = QNUM, .indirect = 0x20000, .indirect_max = 4 };

    qtest_outb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS, 0);
    qtest_outb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES, want);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_SEL, 0);
    g_assert_cmpuint(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NUM), ==, QNUM);
    /* the legacy layout: descriptors, available ring, used ring at the next 4 KiB */
    c.desc = RING_GPA;
    c.driver = RING_GPA + 16 * QNUM;
    c.device = (c.driver + 6 + 2 * QNUM + 4095) & ~4095ull;
    l->vq = vdriver_queue_new(&l->h.gm, &c);
    g_assert_nonnull(l->vq);
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN, (uint32_t)(RING_GPA >> 12));
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN), ==, RING_GPA >> 12);
    qtest_outb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS,
               VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qtest_inb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS), ==,
                    VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void legacy_kick(Legacy *l)
{
    if (vdriver_kick_prepare(l->vq)) {
        qtest_outw(l->qts, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 0);
    }
}

static void test_ids_and_io_bar(void)
{
    Legacy l;
    QTestState *s;

    legacy_start(&l, "0");
    s = l.qts;
    /* QEMU's transitional ids: 1af4:1001, revision 0, subsystem 1af4:0002; modern caps stay */
    g_assert_cmphex(qpci_config_readl(s, DEVFN, PCI_VENDOR_ID), ==, 0x10011af4);
    g_assert_cmphex(qpci_config_readb(s, DEVFN, PCI_REVISION_ID), ==, 0);
    g_assert_cmphex(qpci_config_readw(s, DEVFN, PCI_SUBSYSTEM_VENDOR_ID), ==, 0x1af4);
    g_assert_cmphex(qpci_config_readw(s, DEVFN, PCI_SUBSYSTEM_ID), ==, VIRTIO_ID_BLOCK);
    g_assert_cmpuint(qpci_find_cap(s, DEVFN, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_COMMON_CFG, 0), !=, 0);
    /* BAR 0: I/O, 128 bytes (24 + the 60-byte virtio-blk config, rounded up) */
    g_assert_cmphex(qpci_config_readl(s, DEVFN, PCI_BASE_ADDRESS_0), ==, PCI_BASE_ADDRESS_SPACE_IO);
    qpci_config_writel(s, DEVFN, PCI_BASE_ADDRESS_0, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(s, DEVFN, PCI_BASE_ADDRESS_0), ==, 0xffffff81);
    /* programmed but COMMAND.IO clear: nothing decodes */
    qpci_config_writel(s, DEVFN, PCI_BASE_ADDRESS_0, IOBASE);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG), ==, 0xffffffff);
    map_io(&l);
    /* capacity at 20 (MSI-X absent), 1 MiB = 2048 sectors; host features without VERSION_1 */
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG), ==, 2048);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_HOST_FEATURES) & (1u << VIRTIO_RING_F_INDIRECT_DESC),
                    !=, 0);
    /* over the 0xcf8 ports, or past 64 KiB: not mapped, and 0xcf8 keeps working */
    qpci_config_writel(s, DEVFN, PCI_BASE_ADDRESS_0, 0xc80);
    g_assert_cmphex(qpci_config_readl(s, DEVFN, PCI_VENDOR_ID), ==, 0x10011af4);
    g_assert_cmphex(qtest_inl(s, 0xc80 + VIRTIO_PCI_LEGACY_CONFIG), ==, 0xffffffff);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG), ==, 0xffffffff);
    qpci_config_writel(s, DEVFN, PCI_BASE_ADDRESS_0, 0x1ff80);
    g_assert_cmphex(qtest_inl(s, 0xff80 + VIRTIO_PCI_LEGACY_CONFIG), ==, 0xffffffff);
    qpci_config_writel(s, DEVFN, PCI_BASE_ADDRESS_0, 0xff80);
    g_assert_cmphex(qtest_inl(s, 0xff80 + VIRTIO_PCI_LEGACY_CONFIG), ==, 2048);
    legacy_stop(&l);
}

static void test_legacy_driver_io(void)
{
    enum { NREQ = 8, LEN = 4096 };
    uint8_t *want = g_malloc(LEN), *file = g_malloc(LEN);
    Legacy l;

    legacy_start(&l, "0");
    map_io(&l);
    qtest_irq_intercept_in(l.qts, "ioapic");
    legacy_driver_init(&l, 1u << VIRTIO_RING_F_INDIRECT_DESC);
    g_assert_cmphex(qtest_inl(l.qts, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES), ==,
                    1u << VIRTIO_RING_F_INDIRECT_DESC);
    /* Features are frozen once the driver runs: a late write changes nothing. */
    qtest_outl(l.qts, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES, 0);
    g_assert_cmphex(qtest_inl(l.qts, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES), ==,
                    1u << VIRTIO_RING_F_INDIRECT_DESC);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(l.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i);
        qblk_add(&l.h, l.vq, i, VIRTIO_BLK_T_OUT, i * 8, LEN, i & 1);
    }
    legacy_kick(&l);
    qblk_reap(&l.h, l.vq, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpint(pread(l.h.img_fd, file, LEN, (off_t)i * 8 * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    /* INTx and the legacy ISR: read returns the queue bit, clears it, lowers the line */
    (void)qtest_inb(l.qts, IOBASE + VIRTIO_PCI_LEGACY_STATUS);
    g_assert_true(qtest_get_irq(l.qts, GSI));
    g_assert_cmphex(qtest_inb(l.qts, IOBASE + VIRTIO_PCI_LEGACY_ISR), ==, 1);
    g_assert_false(qtest_get_irq(l.qts, GSI));
    g_assert_cmphex(qtest_inb(l.qts, IOBASE + VIRTIO_PCI_LEGACY_ISR), ==, 0);
    for (unsigned i = 0; i < NREQ; i++) {
        memset(l.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
        qblk_add(&l.h, l.vq, i, VIRTIO_BLK_T_IN, i * 8, LEN, false);
    }
    legacy_kick(&l);
    qblk_reap(&l.h, l.vq, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpmem(l.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    g_free(want);
    g_free(file);
    legacy_stop(&l);
}

static void test_msix_shifts_config(void)
{
    Legacy l;
    QTestState *s;
    uint8_t cap;

    legacy_start(&l, "2");
    s = l.qts;
    map_io(&l);
    /* MSI-X present but disabled: config at 20 */
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG), ==, 2048);
    cap = qpci_find_cap(s, DEVFN, PCI_CAP_ID_MSIX, -1, 0);
    qpci_config_writew(s, DEVFN, cap + 2, PCI_MSIX_FLAGS_ENABLE);
    /* enabled: the vector registers at 20/22, config at 24 */
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG_MSIX), ==, 2048);
    g_assert_cmphex(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR), ==, VIRTIO_NO_VECTOR);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR, 1);
    g_assert_cmphex(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR), ==, 1);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR, 2);     /* beyond the table */
    g_assert_cmphex(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR), ==, VIRTIO_NO_VECTOR);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR, 0);
    g_assert_cmphex(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR), ==, 0);
    legacy_stop(&l);
}

static void test_hostile_legacy_registers(void)
{
    Legacy l;
    QTestState *s;

    legacy_start(&l, "0");
    s = l.qts;
    map_io(&l);
    qtest_outb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    /* unoffered feature bits are dropped (bit 31 is not offered) */
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES, 0x80000000u | (1u << VIRTIO_RING_F_INDIRECT_DESC));
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_GUEST_FEATURES), ==,
                    1u << VIRTIO_RING_F_INDIRECT_DESC);
    /* a queue the device lacks: size 0, PFN ignored, notify ignored */
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_SEL, 5);
    g_assert_cmpuint(qtest_inw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NUM), ==, 0);
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN, 0x20);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN), ==, 0);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 5);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 0xffff);
    /* a PFN whose rings leave RAM: the device breaks at DRIVER_OK (NEEDS_RESET), it does not crash */
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_SEL, 0);
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN, 0xfffff);
    qtest_outb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS,
               VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qtest_inb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, !=, 0);
    qtest_outw(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_NOTIFY, 0);
    /* after DRIVER_OK the PFN is frozen; PFN 0 resets the device */
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN, 0x10);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN), ==, 0xfffff);
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN, 0);
    g_assert_cmphex(qtest_inb(s, IOBASE + VIRTIO_PCI_LEGACY_STATUS), ==, 0);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_QUEUE_PFN), ==, 0);
    /* read-only registers ignore writes; writes past the device config are dropped */
    qtest_outl(s, IOBASE + VIRTIO_PCI_LEGACY_HOST_FEATURES, 0);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_HOST_FEATURES), !=, 0);
    qtest_outl(s, IOBASE + 124, 0xffffffff);
    g_assert_cmphex(qtest_inl(s, IOBASE + VIRTIO_PCI_LEGACY_CONFIG), ==, 2048);
    /* the device works again after the reset */
    legacy_driver_init(&l, 0);
    qblk_add(&l.h, l.vq, 0, VIRTIO_BLK_T_IN, 0, 512, false);
    legacy_kick(&l);
    qblk_reap(&l.h, l.vq, 1);
    legacy_stop(&l);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/virtio-pci-legacy/ids-and-io-bar", test_ids_and_io_bar);
    g_test_add_func("/virtio-pci-legacy/split/legacy-driver-write-read-intx", test_legacy_driver_io);
    g_test_add_func("/virtio-pci-legacy/msix-vector-registers-shift-config", test_msix_shifts_config);
    g_test_add_func("/virtio-pci-legacy/hostile-registers", test_hostile_legacy_registers);
    return g_test_run();
}
