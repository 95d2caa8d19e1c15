/*
 * virtio-blk-pci over qtest, as QEMU's libqos virtio-blk tests drive QEMU:
 * guest RAM is a shared file the test maps too, so the driver library
 * (tests/libvdriver) builds rings through host pointers while every device
 * register is reached over qtest (PCI config through 0xcf8/0xcfc, the
 * virtio-pci structures through MMIO). Each data test runs on the four
 * layouts: split, packed, split+IN_ORDER, packed+IN_ORDER.
 */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-pci.h"
#include "qblk.h"
#include "qpci.h"
#include "vdriver.h"

#define RAM_SIZE        (64u << 20)
#define IMG_SIZE        (1u << 20)
#define QUEUE_NUM       64
#define RING_BASE       0x10000ull
#define BLK_DEVFN       PCI_DEVFN(4, 0)
#define BLK_GSI         (PCI_INTX_GSI_BASE + 0)    /* slot 4, INTA: PIRQ (4 + 0) & 3 = A */

typedef struct Layout {
    const char *name;
    bool packed, in_order;
    const char *machine;        /* NULL: pc */
} Layout;

static const Layout layouts[] = {
    { "split", false, false, NULL },
    { "packed", true, false, NULL },
    { "split-in-order", false, true, NULL },
    { "packed-in-order", true, true, NULL },
};

/* The same on q35 (MCH host bridge; INTA of slot 4 is PIRQE, GSI 20). */
#define Q35_BLK_GSI     (PCI_INTX_GSI_BASE + 4)
static const Layout q35_layouts[] = {
    { "split", false, false, "q35" },
    { "packed", true, false, "q35" },
    { "split-in-order", false, true, "q35" },
    { "packed-in-order", true, true, "q35" },
};

typedef struct Blk {
    QTestState *qts;
    QBlkHost h;                 /* image and shared RAM */
    QVirtioPCI v;
    VDriverQueueConfig cfg;
    VDriverQueue *vq;
} Blk;

/*
 * Start vdm with the device on drive "d0": @drive NULL for the -drive on the
 * test image (else a full -blockdev/-drive option naming d0, where "@IMG@"
 * stands for the image's path), @dev_extra
 * appended to the -device properties ("" for none).
 */
static void blk_start_with(Blk *b, const Layout *l, const char *drive, const char *dev_extra)
{
    char *drive_opt;

    memset(b, 0, sizeof(*b));
    qblk_host_init(&b->h, "vdm-blk-XXXXXX", RAM_SIZE, IMG_SIZE);

    if (drive) {
        char **parts = g_strsplit(drive, "@IMG@", -1);     /* @IMG@: the image's path */
        drive_opt = g_strjoinv(b->h.img_path, parts);
        g_strfreev(parts);
    } else {
        drive_opt = g_strdup_printf("-drive file=%s,if=none,id=d0,format=raw", b->h.img_path);
    }
    b->qts = qtest_initf("-machine %s -object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                         "-machine memory-backend=mem -nodefaults %s "
                         "-device virtio-blk-pci,drive=d0,addr=04.0,packed=%s,in_order=%s,"
                         "event_idx=off,indirect_desc=off,serial=vdm0%s",
                         l->machine ? l->machine : "pc", b->h.mem_path, drive_opt, l->packed ? "on" : "off", l->in_order ? "on" : "off",
                         dev_extra);
    g_free(drive_opt);
    g_assert_cmpint(qpci_find_device(b->qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                     PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_BLOCK), ==, BLK_DEVFN);
    qvirtio_pci_init(&b->v, b->qts, BLK_DEVFN);
    g_assert_cmpuint(b->v.notify_mult, ==, 4);
}

static void blk_start(Blk *b, const Layout *l)
{
    blk_start_with(b, l, NULL, "");
}

static void blk_stop(Blk *b)
{
    qtest_quit(b->qts);
    if (b->vq) {
        vdriver_queue_free(b->vq);
    }
    qblk_host_cleanup(&b->h);
}

/* The driver initialisation sequence (spec 3.1.1) with queue 0 set up. */
static void blk_init_device(Blk *b, const Layout *l)
{
    QVirtioPCI *v = &b->v;
    uint64_t f, want;

    qvirtio_pci_set_status(v, 0);
    g_assert_cmphex(qvirtio_pci_get_status(v), ==, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = qvirtio_pci_get_features(v);
    g_assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_RING_PACKED)), ==, l->packed);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_IN_ORDER)), ==, l->in_order);
    want = (1ULL << VIRTIO_F_VERSION_1) | (f & ((1ULL << VIRTIO_F_RING_PACKED) | (1ULL << VIRTIO_F_IN_ORDER)));
    g_assert_true(qvirtio_pci_set_features(v, want));

    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    qvirtio_pci_queue_select(v, 0);
    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
    qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, QUEUE_NUM);
    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE), ==, QUEUE_NUM);
    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_Q_NOFF), ==, 0);

    b->cfg = (VDriverQueueConfig){ .num = QUEUE_NUM, .packed = l->packed, .in_order = l->in_order };
    vdriver_layout_rings(&b->cfg, RING_BASE);
    b->vq = vdriver_queue_new(&b->h.gm, &b->cfg);
    g_assert_nonnull(b->vq);
    qvirtio_pci_set_rings(v, b->cfg.desc, b->cfg.driver, b->cfg.device);
    g_assert_cmphex(qtest_readq(b->qts, v->common + VIRTIO_PCI_COMMON_Q_USEDLO), ==, b->cfg.device);
    qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qvirtio_pci_get_status(v), ==, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void blk_add_to(Blk *b, VDriverQueue *vq, unsigned slot, uint32_t type, uint64_t sector, uint32_t len,
                       bool indirect)
{
    qblk_add(&b->h, vq, slot, type, sector, len, indirect);
}

static void blk_add(Blk *b, unsigned slot, uint32_t type, uint64_t sector, uint32_t len)
{
    blk_add_to(b, b->vq, slot, type, sector, len, false);
}

static void blk_kick(Blk *b)
{
    if (vdriver_kick_prepare(b->vq)) {
        qvirtio_pci_notify(&b->v, 0);
    }
}

/* Reap @n buffers from @vq (bounded wait); each must have status OK. */
static void blk_reap_from(Blk *b, VDriverQueue *vq, unsigned n)
{
    qblk_reap(&b->h, vq, n);
}

static void blk_reap(Blk *b, unsigned n)
{
    blk_reap_from(b, b->vq, n);
}

static void test_config_capacity(const void *opaque)
{
    const Layout *l = opaque;
    Blk b;
    char serial[VIRTIO_BLK_ID_BYTES + 1] = { 0 };

    blk_start(&b, l);
    blk_init_device(&b, l);
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, IMG_SIZE / 512);
    /* the generation counter is stable while nothing changes */
    g_assert_cmpuint(qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION), ==,
                     qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION));
    /* GET_ID returns the serial */
    blk_add(&b, 0, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
    blk_kick(&b);
    blk_reap(&b, 1);
    memcpy(serial, b.h.ram + qblk_slot_gpa(0) + QBLK_REQ_DATA_OFF, VIRTIO_BLK_ID_BYTES);
    g_assert_cmpstr(serial, ==, "vdm0");
    blk_stop(&b);
}

static void test_write_read_data_check(const void *opaque)
{
    const Layout *l = opaque;
    enum { NREQ = 8, LEN = 4096 };
    uint8_t *want = g_malloc(LEN), *file = g_malloc(LEN);
    Blk b;

    blk_start(&b, l);
    blk_init_device(&b, l);
    /* several writes in flight at once, completing in whatever order the backend finishes them */
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i);
        blk_add(&b, i, VIRTIO_BLK_T_OUT, i * 16 + 1, LEN);
    }
    blk_kick(&b);
    blk_reap(&b, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpint(pread(b.h.img_fd, file, LEN, (off_t)(i * 16 + 1) * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    /* read back into cleared buffers */
    for (unsigned i = 0; i < NREQ; i++) {
        memset(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
        blk_add(&b, i, VIRTIO_BLK_T_IN, i * 16 + 1, LEN);
    }
    blk_kick(&b);
    blk_reap(&b, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpmem(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    /* more requests than fit at once: the ring wraps */
    for (unsigned round = 0; round < 3 * QUEUE_NUM / NREQ; round++) {
        for (unsigned i = 0; i < NREQ; i++) {
            blk_add(&b, i, VIRTIO_BLK_T_IN, i * 16 + 1, 512);
        }
        blk_kick(&b);
        blk_reap(&b, NREQ);
    }
    g_assert_cmpuint(vdriver_inflight(b.vq), ==, 0);
    g_free(want);
    g_free(file);
    blk_stop(&b);
}

static void test_intx_and_isr(const void *opaque)
{
    const Layout *l = opaque;
    const int gsi = l->machine ? Q35_BLK_GSI : BLK_GSI;
    Blk b;

    blk_start(&b, l);
    qtest_irq_intercept_in(b.qts, "ioapic");
    blk_init_device(&b, l);
    blk_add(&b, 0, VIRTIO_BLK_T_IN, 0, 512);
    blk_kick(&b);
    blk_reap(&b, 1);
    /* any command after the completion: the IRQ line was sent before its reply */
    (void)qvirtio_pci_get_status(&b.v);
    g_assert_true(qtest_get_irq(b.qts, gsi));
    g_assert_true(qpci_config_readw(b.qts, BLK_DEVFN, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    /* spec 4.1.4.5: reading ISR returns the queue bit, clears it, de-asserts INTx */
    g_assert_cmphex(qtest_readb(b.qts, b.v.isr), ==, 1);
    g_assert_false(qtest_get_irq(b.qts, gsi));
    g_assert_cmphex(qtest_readb(b.qts, b.v.isr), ==, 0);
    g_assert_false(qpci_config_readw(b.qts, BLK_DEVFN, PCI_STATUS) & PCI_STATUS_INTERRUPT);
    blk_stop(&b);
}

static void test_hostile_registers(void)
{
    const Layout *l = &layouts[0];
    QTestState *s;
    uint64_t common;
    Blk b;

    blk_start(&b, l);
    s = b.qts;
    common = b.v.common;

    /* FEATURES_OK is refused for a feature that was not offered */
    qvirtio_pci_set_status(&b.v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_false(qvirtio_pci_get_features(&b.v) & (1ULL << 40));
    g_assert_false(qvirtio_pci_set_features(&b.v, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << 40)));

    /* queue size 0 and above the maximum are refused */
    qvirtio_pci_queue_select(&b.v, 0);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_SIZE, 0);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_SIZE, 512);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
    /* a queue that does not exist reads size 0 and ignores writes */
    qvirtio_pci_queue_select(&b.v, 3);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_SIZE, 16);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 0);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_ENABLE), ==, 0);

    blk_init_device(&b, l);
    /* queue configuration after DRIVER_OK is refused */
    qvirtio_pci_queue_select(&b.v, 0);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_SIZE, 32);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_SIZE), ==, QUEUE_NUM);
    qtest_writel(s, common + VIRTIO_PCI_COMMON_Q_DESCLO, 0x200000);
    g_assert_cmphex(qtest_readl(s, common + VIRTIO_PCI_COMMON_Q_DESCLO), ==, (uint32_t)b.cfg.desc);
    qtest_writel(s, common + VIRTIO_PCI_COMMON_Q_USEDHI, 1);
    g_assert_cmphex(qtest_readl(s, common + VIRTIO_PCI_COMMON_Q_USEDHI), ==, 0);
    qtest_writew(s, common + VIRTIO_PCI_COMMON_Q_ENABLE, 0);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_ENABLE), ==, 1);
    /* features are frozen after FEATURES_OK */
    qtest_writel(s, common + VIRTIO_PCI_COMMON_GFSELECT, 0);
    qtest_writel(s, common + VIRTIO_PCI_COMMON_GF, 0xffffffff);
    g_assert_cmphex(qtest_readl(s, common + VIRTIO_PCI_COMMON_GF), ==, 0);
    /* notifications for queues that do not exist are ignored, read-only fields stay */
    for (unsigned q = 1; q < 1024; q += 97) {
        qtest_writew(s, b.v.notify + q * b.v.notify_mult, (uint16_t)q);
    }
    qtest_writew(s, common + VIRTIO_PCI_COMMON_NUMQ, 9);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    g_assert_false(qvirtio_pci_get_status(&b.v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* and the device still works */
    blk_add(&b, 0, VIRTIO_BLK_T_IN, 0, 512);
    blk_kick(&b);
    blk_reap(&b, 1);
    /* reset clears the status and the queue */
    qvirtio_pci_set_status(&b.v, 0);
    g_assert_cmphex(qvirtio_pci_get_status(&b.v), ==, 0);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_ENABLE), ==, 0);
    g_assert_cmpuint(qtest_readw(s, common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
    blk_stop(&b);
}

/* ---- MSI-X ---- */

#define MSIX_BAR_ADDR   (QPCI_MMIO_BASE + 0x100000)
#define MSI_TARGET      0x3f0000ull        /* vector v writes to MSI_TARGET + 0x100 * v (RAM) */
#define MSI_DATA(v)     QPCI_MSI_DATA(v)

typedef QPCIMsix Msix;

static uint64_t msi_target(unsigned v)
{
    return MSI_TARGET + 0x100ull * v;
}

/* Map the MSI-X BAR and point every entry at RAM (entries stay masked). */
static void msix_setup(Blk *b, Msix *m)
{
    qpci_msix_init(b->qts, BLK_DEVFN, VIRTIO_PCI_MSIX_BAR, MSIX_BAR_ADDR, MSI_TARGET, m);
}

static void msix_control(Blk *b, Msix *m, bool enable, bool maskall)
{
    qpci_msix_control(b->qts, m, enable, maskall);
}

static void msix_mask(Blk *b, Msix *m, unsigned v, bool mask)
{
    qpci_msix_mask(b->qts, m, v, mask);
}

static uint32_t msi_word(Blk *b, unsigned v)
{
    uint32_t w;

    memcpy(&w, b->h.ram + msi_target(v), 4);
    return GUINT32_FROM_LE(w);
}

/* Set a vector register and return what reads back. */
static uint16_t set_vector(Blk *b, uint64_t reg, uint16_t v)
{
    qtest_writew(b->qts, b->v.common + reg, v);
    return qtest_readw(b->qts, b->v.common + reg);
}

/* One read request, completed: the used entry is reaped, then one qtest round trip orders the interrupt. */
static void one_request(Blk *b)
{
    blk_add(b, 0, VIRTIO_BLK_T_IN, 0, 512);
    blk_kick(b);
    blk_reap(b, 1);
    (void)qvirtio_pci_get_status(&b->v);
}

static void test_msix_completion_to_ram(void)
{
    const Layout *l = &layouts[0];
    Msix m;
    Blk b;

    blk_start(&b, l);
    qtest_irq_intercept_in(b.qts, "ioapic");
    msix_setup(&b, &m);
    g_assert_cmpuint(m.nvec, ==, 2);        /* QEMU's default: num-queues + 1 */
    for (unsigned v = 0; v < m.nvec; v++) {
        msix_mask(&b, &m, v, false);
    }
    msix_control(&b, &m, true, false);
    blk_init_device(&b, l);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 1), ==, 1);
    qvirtio_pci_queue_select(&b.v, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, 0);
    for (unsigned round = 0; round < 3; round++) {
        memset(b.h.ram + msi_target(0), 0, 4);
        one_request(&b);
        g_assert_cmphex(msi_word(&b, 0), ==, MSI_DATA(0));
        g_assert_cmphex(msi_word(&b, 1), ==, 0);        /* not the config vector */
        g_assert_false(qtest_get_irq(b.qts, BLK_GSI));  /* no INTx under MSI-X */
    }
    /* with MSI-X disabled again the device falls back to INTx */
    msix_control(&b, &m, false, false);
    memset(b.h.ram + msi_target(0), 0, 4);
    one_request(&b);
    g_assert_cmphex(msi_word(&b, 0), ==, 0);
    g_assert_true(qtest_get_irq(b.qts, BLK_GSI));
    (void)qtest_readb(b.qts, b.v.isr);
    g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
    /* a device reset forgets the vectors */
    qvirtio_pci_set_status(&b.v, 0);
    g_assert_cmphex(qtest_readw(b.qts, b.v.common + VIRTIO_PCI_COMMON_MSIX), ==, VIRTIO_NO_VECTOR);
    g_assert_cmphex(qtest_readw(b.qts, b.v.common + VIRTIO_PCI_COMMON_Q_MSIX), ==, VIRTIO_NO_VECTOR);
    blk_stop(&b);
}

static void test_msix_mask_pba_unmask(void)
{
    const Layout *l = &layouts[0];
    uint64_t ctrl0;
    Msix m;
    Blk b;

    blk_start(&b, l);
    msix_setup(&b, &m);
    ctrl0 = m.table + PCI_MSIX_ENTRY_VECTOR_CTRL;
    /* only the mask bit of vector control is writable */
    qtest_writel(b.qts, ctrl0, 0xffffffff);
    g_assert_cmphex(qtest_readl(b.qts, ctrl0), ==, PCI_MSIX_ENTRY_CTRL_MASKBIT);
    /* the PBA is read-only */
    qtest_writeq(b.qts, m.pba, ~0ull);
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 0);
    msix_control(&b, &m, true, false);
    blk_init_device(&b, l);
    qvirtio_pci_queue_select(&b.v, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, 0);

    /* per-vector mask: the message is held as a pending bit */
    one_request(&b);
    g_assert_cmphex(msi_word(&b, 0), ==, 0);
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 1);
    /* unmasking delivers it and clears the bit */
    msix_mask(&b, &m, 0, false);
    g_assert_cmphex(msi_word(&b, 0), ==, MSI_DATA(0));
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 0);

    /* function mask: the same, released by clearing MASKALL */
    memset(b.h.ram + msi_target(0), 0, 4);
    msix_control(&b, &m, true, true);
    one_request(&b);
    g_assert_cmphex(msi_word(&b, 0), ==, 0);
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 1);
    msix_control(&b, &m, true, false);
    g_assert_cmphex(msi_word(&b, 0), ==, MSI_DATA(0));
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 0);

    /* unmasked and nothing pending: unmasking again sends nothing */
    memset(b.h.ram + msi_target(0), 0, 4);
    msix_mask(&b, &m, 0, true);
    msix_mask(&b, &m, 0, false);
    g_assert_cmphex(msi_word(&b, 0), ==, 0);
    blk_stop(&b);
}

static void test_msix_bad_vector(void)
{
    const Layout *l = &layouts[0];
    Msix m;
    Blk b;

    blk_start(&b, l);
    qtest_irq_intercept_in(b.qts, "ioapic");
    msix_setup(&b, &m);
    for (unsigned v = 0; v < m.nvec; v++) {
        msix_mask(&b, &m, v, false);
    }
    msix_control(&b, &m, true, false);
    blk_init_device(&b, l);
    /* spec 4.1.5.1.2: a vector the device cannot use reads back VIRTIO_MSI_NO_VECTOR */
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, (uint16_t)m.nvec), ==, VIRTIO_NO_VECTOR);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 0x1234), ==, VIRTIO_NO_VECTOR);
    qvirtio_pci_queue_select(&b.v, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, (uint16_t)m.nvec), ==, VIRTIO_NO_VECTOR);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0xfffe), ==, VIRTIO_NO_VECTOR);
    /* a queue that does not exist has no vector */
    qvirtio_pci_queue_select(&b.v, 7);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, VIRTIO_NO_VECTOR);
    qvirtio_pci_queue_select(&b.v, 0);
    /* the completion raises nothing: no message anywhere, nothing pending, no INTx */
    one_request(&b);
    one_request(&b);
    for (unsigned v = 0; v < m.nvec; v++) {
        g_assert_cmphex(msi_word(&b, v), ==, 0);
    }
    g_assert_cmphex(qtest_readq(b.qts, m.pba), ==, 0);
    g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
    blk_stop(&b);
}

/* vectors= (QEMU's property): 0 means no MSI-X at all; the default follows num-queues. */
static void test_msix_vectors_property(void)
{
    const Layout *l = &layouts[0];
    Msix m;
    Blk b;

    blk_start_with(&b, l, NULL, ",vectors=0");
    g_assert_cmpuint(qpci_find_cap(b.qts, BLK_DEVFN, PCI_CAP_ID_MSIX, -1, 0), ==, 0);
    g_assert_cmpuint(qpci_bar_size(b.qts, BLK_DEVFN, VIRTIO_PCI_MSIX_BAR), ==, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 0), ==, VIRTIO_NO_VECTOR);
    qvirtio_pci_queue_select(&b.v, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, VIRTIO_NO_VECTOR);
    blk_stop(&b);

    blk_start_with(&b, l, NULL, ",num-queues=4");
    msix_setup(&b, &m);
    g_assert_cmpuint(m.nvec, ==, 5);
    qvirtio_pci_queue_select(&b.v, 3);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 4), ==, 4);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 5), ==, VIRTIO_NO_VECTOR);
    blk_stop(&b);

    blk_start_with(&b, l, NULL, ",vectors=64");
    msix_setup(&b, &m);
    g_assert_cmpuint(m.nvec, ==, 64);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 63), ==, 63);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 64), ==, VIRTIO_NO_VECTOR);
    blk_stop(&b);
}

/* ---- QMP block_resize ---- */

/* Run block_resize with @args; NULL on success, else the error class (g_free it) and *@desc. */
static char *block_resize(Blk *b, const char *args, char **desc)
{
    JSONValue *r = qtest_qmp(b->qts, "{\"execute\": \"block_resize\", \"arguments\": {%s}}", args);
    JSONValue *err = json_object_get(r, "error");
    char *klass = NULL;

    if (err) {
        klass = g_strdup(json_get_string(json_object_get(err, "class")));
        if (desc) {
            *desc = g_strdup(json_get_string(json_object_get(err, "desc")));
        }
    } else {
        g_assert_nonnull(json_object_get(r, "return"));
        g_assert_cmpuint(json_object_size(json_object_get(r, "return")), ==, 0);
    }
    json_free(r);
    return klass;
}

static void assert_resize_error(Blk *b, const char *args, const char *want_desc)
{
    char *desc = NULL, *klass = block_resize(b, args, &desc);

    g_assert_cmpstr(klass, ==, "GenericError");
    g_assert_cmpstr(desc, ==, want_desc);
    g_free(klass);
    g_free(desc);
}

static void test_resize_intx(void)
{
    const Layout *l = &layouts[0];
    uint8_t gen;
    Blk b;

    blk_start_with(&b, l, "-blockdev driver=file,filename=@IMG@,node-name=d0", "");
    qtest_irq_intercept_in(b.qts, "ioapic");
    blk_init_device(&b, l);
    gen = qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION);
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, IMG_SIZE / 512);
    g_assert_false(qtest_get_irq(b.qts, BLK_GSI));

    g_assert_null(block_resize(&b, "\"node-name\": \"d0\", \"size\": 2097152", NULL));
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, 2 * IMG_SIZE / 512);
    g_assert_cmpuint(qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION), !=, gen);
    g_assert_cmpint(lseek(b.h.img_fd, 0, SEEK_END), ==, 2 * IMG_SIZE);
    /* the configuration change interrupt: INTx with ISR bit 1 */
    g_assert_true(qtest_get_irq(b.qts, BLK_GSI));
    g_assert_cmphex(qtest_readb(b.qts, b.v.isr) & 2, ==, 2);
    g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
    /* the device keeps working on the larger disk */
    blk_add(&b, 0, VIRTIO_BLK_T_IN, 2 * IMG_SIZE / 512 - 1, 512);
    blk_kick(&b);
    blk_reap(&b, 1);

    /* errors, in QMP's error shape */
    assert_resize_error(&b, "\"node-name\": \"nope\", \"size\": 4096", "Cannot find device='' nor node-name='nope'");
    assert_resize_error(&b, "\"device\": \"d0\", \"size\": 4096", "Cannot find device='d0' nor node-name=''");
    assert_resize_error(&b, "\"node-name\": \"d0\"", "Parameter 'size' is missing");
    assert_resize_error(&b, "\"node-name\": \"d0\", \"size\": \"big\"",
                        "Invalid parameter type for 'size', expected: integer");
    assert_resize_error(&b, "\"node-name\": \"d0\", \"size\": -1", "Parameter 'size' expects a >0 size");
    assert_resize_error(&b, "\"node-name\": \"d0\", \"size\": 1, \"x\": 1", "Parameter 'x' is unexpected");
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, 2 * IMG_SIZE / 512);
    blk_stop(&b);
}

static void test_resize_msix_config_vector(void)
{
    const Layout *l = &layouts[0];
    uint8_t gen;
    Msix m;
    Blk b;

    blk_start(&b, l);      /* -drive id=d0: block_resize takes device= */
    qtest_irq_intercept_in(b.qts, "ioapic");
    msix_setup(&b, &m);
    for (unsigned v = 0; v < m.nvec; v++) {
        msix_mask(&b, &m, v, false);
    }
    msix_control(&b, &m, true, false);
    blk_init_device(&b, l);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 1), ==, 1);
    qvirtio_pci_queue_select(&b.v, 0);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, 0), ==, 0);
    gen = qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION);

    g_assert_null(block_resize(&b, "\"device\": \"d0\", \"size\": 524288", NULL));
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, IMG_SIZE / 2 / 512);
    g_assert_cmpuint(qtest_readb(b.qts, b.v.common + VIRTIO_PCI_COMMON_CFGGENERATION), !=, gen);
    g_assert_cmphex(msi_word(&b, 1), ==, MSI_DATA(1));     /* the config vector */
    g_assert_cmphex(msi_word(&b, 0), ==, 0);               /* not the queue's */
    g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
    /* a -drive id is not a node-name */
    assert_resize_error(&b, "\"node-name\": \"d0\", \"size\": 4096", "Cannot find device='' nor node-name='d0'");
    blk_stop(&b);
}

/* ---- forced out-of-order completion ---- */

#define REVERSE_GROUP 4

/* Reap @n buffers and record their slots in the order the device used them. */
static void blk_reap_order(Blk *b, unsigned n, unsigned *order)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    unsigned got = 0;

    while (got < n) {
        uint32_t len;
        void *tok = vdriver_get_buf(b->vq, &len, NULL);

        g_assert_null(vdriver_error(b->vq));    /* includes the in-order position check */
        if (!tok) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_usleep(200);
            continue;
        }
        order[got] = GPOINTER_TO_UINT(tok) - 1;
        g_assert_cmphex(b->h.ram[qblk_slot_gpa(order[got]) + 0x10], ==, VIRTIO_BLK_S_OK);
        got++;
    }
}

/*
 * The backend (x-reverse-completions) finishes each group of requests
 * newest first. With IN_ORDER the used entries still come in avail order;
 * without it they follow the completions (which shows the backend did
 * reverse them).
 */
static void test_reverse_completions(const void *opaque)
{
    const Layout *l = opaque;
    enum { LEN = 4096, ROUNDS = 3 };
    unsigned order[REVERSE_GROUP];
    uint8_t *want = g_malloc(LEN), *file = g_malloc(LEN);
    char *drive = g_strdup_printf("-blockdev driver=file,filename=@IMG@,node-name=d0,x-reverse-completions=%d",
                                  REVERSE_GROUP);
    Blk b;

    blk_start_with(&b, l, drive, "");
    blk_init_device(&b, l);
    for (unsigned round = 0; round < ROUNDS; round++) {
        for (unsigned i = 0; i < REVERSE_GROUP; i++) {
            qblk_fill_pattern(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i + round * 16);
            blk_add(&b, i, VIRTIO_BLK_T_OUT, i * 8 + round * 64, LEN);
        }
        blk_kick(&b);
        blk_reap_order(&b, REVERSE_GROUP, order);
        for (unsigned i = 0; i < REVERSE_GROUP; i++) {
            /*
             * writethrough (no FLUSH negotiated): each write is followed by a
             * flush, submitted as the writes came back, so the backend's
             * reversal is undone for writes; only IN_ORDER's rule is checked
             */
            if (l->in_order) {
                g_assert_cmpuint(order[i], ==, i);
            }
            qblk_fill_pattern(want, LEN, i + round * 16);
            g_assert_cmpint(pread(b.h.img_fd, file, LEN, (off_t)(i * 8 + round * 64) * 512), ==, LEN);
            g_assert_cmpmem(file, LEN, want, LEN);
        }
        /* read back: reads complete newest first; IN_ORDER still uses them in avail order */
        for (unsigned i = 0; i < REVERSE_GROUP; i++) {
            memset(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
            blk_add(&b, i, VIRTIO_BLK_T_IN, i * 8 + round * 64, LEN);
        }
        blk_kick(&b);
        blk_reap_order(&b, REVERSE_GROUP, order);
        for (unsigned i = 0; i < REVERSE_GROUP; i++) {
            g_assert_cmpuint(order[i], ==, (l->in_order ? i : REVERSE_GROUP - 1 - i));
            qblk_fill_pattern(want, LEN, i + round * 16);
            g_assert_cmpmem(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
        }
    }
    g_assert_cmpuint(vdriver_inflight(b.vq), ==, 0);
    blk_stop(&b);
    g_free(drive);
    g_free(want);
    g_free(file);
}

/* The same on a null-co node: reads complete newest first, IN_ORDER keeps avail order. */
static void test_reverse_completions_null(void)
{
    const Layout *l = &layouts[2];      /* split-in-order */
    unsigned order[8];
    Blk b;

    blk_start_with(&b, l, "-blockdev driver=null-co,node-name=d0,size=1048576,x-reverse-completions=8", "");
    blk_init_device(&b, l);
    for (unsigned i = 0; i < 8; i++) {
        blk_add(&b, i, VIRTIO_BLK_T_IN, i, 512);
    }
    blk_kick(&b);
    blk_reap_order(&b, 8, order);
    for (unsigned i = 0; i < 8; i++) {
        g_assert_cmpuint(order[i], ==, i);
    }
    blk_stop(&b);
}

/* ---- ring features and queues: indirect, event idx, multiqueue, reset ---- */

#define MQ_MAX          4
#define MQ_RING_STRIDE  0x4000ull   /* per queue: rings, then its indirect tables */
#define INDIRECT_MAX    4

typedef struct BlkQueues {
    unsigned n;
    VDriverQueueConfig cfg[MQ_MAX];
    VDriverQueue *vq[MQ_MAX];
} BlkQueues;

/*
 * The driver initialisation sequence with @extra feature bits (each must be
 * offered; all are accepted) and @nq queues of QUEUE_NUM entries set up.
 */
static void blk_init_queues(Blk *b, const Layout *l, uint64_t extra, unsigned nq, BlkQueues *qs)
{
    QVirtioPCI *v = &b->v;
    uint64_t f, layout_bits = (1ULL << VIRTIO_F_RING_PACKED) | (1ULL << VIRTIO_F_IN_ORDER);

    qvirtio_pci_set_status(v, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = qvirtio_pci_get_features(v);
    g_assert_cmphex(f & extra, ==, extra);
    g_assert_true(qvirtio_pci_set_features(v, (1ULL << VIRTIO_F_VERSION_1) | (f & layout_bits) | extra));
    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_NUMQ), >=, nq);
    memset(qs, 0, sizeof(*qs));
    qs->n = nq;
    for (unsigned q = 0; q < nq; q++) {
        VDriverQueueConfig *c = &qs->cfg[q];

        qvirtio_pci_queue_select(v, (uint16_t)q);
        qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, QUEUE_NUM);
        g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_Q_NOFF), ==, q);
        *c = (VDriverQueueConfig){
            .num = QUEUE_NUM, .packed = l->packed, .in_order = l->in_order,
            .event_idx = extra & (1ULL << VIRTIO_RING_F_EVENT_IDX), .indirect_max = INDIRECT_MAX,
        };
        c->indirect = vdriver_layout_rings(c, RING_BASE + q * MQ_RING_STRIDE);
        g_assert_cmpuint(c->indirect + QUEUE_NUM * INDIRECT_MAX * 16, <=, RING_BASE + (q + 1) * MQ_RING_STRIDE);
        qs->vq[q] = vdriver_queue_new(&b->h.gm, c);
        g_assert_nonnull(qs->vq[q]);
        qvirtio_pci_set_rings(v, c->desc, c->driver, c->device);
        qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    }
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qvirtio_pci_get_status(v) & VIRTIO_CONFIG_S_DRIVER_OK, ==, VIRTIO_CONFIG_S_DRIVER_OK);
}

static void blk_queues_free(BlkQueues *qs)
{
    for (unsigned q = 0; q < qs->n; q++) {
        g_assert_cmpuint(vdriver_inflight(qs->vq[q]), ==, 0);
        vdriver_queue_free(qs->vq[q]);
    }
    qs->n = 0;
}

static void blk_kick_queue(Blk *b, BlkQueues *qs, unsigned q)
{
    if (vdriver_kick_prepare(qs->vq[q])) {
        qvirtio_pci_notify(&b->v, (uint16_t)q);
    }
}

/* A bit the device was told not to offer stays unoffered. */
static void assert_not_offered(const Layout *l, const char *dev_extra, unsigned bit)
{
    Blk b;

    blk_start_with(&b, l, NULL, dev_extra);
    qvirtio_pci_set_status(&b.v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_false(qvirtio_pci_get_features(&b.v) & (1ULL << bit));
    blk_stop(&b);
}

/*
 * indirect_desc=on: a whole ring of three-segment requests, each in an
 * indirect table taking one ring slot (without INDIRECT_DESC only a third
 * would fit), written and read back with a data check.
 */
static void test_indirect(const void *opaque)
{
    const Layout *l = opaque;
    enum { LEN = 512 };
    uint8_t want[LEN], file[LEN];
    BlkQueues qs;
    Blk b;

    assert_not_offered(l, "", VIRTIO_RING_F_INDIRECT_DESC);
    blk_start_with(&b, l, NULL, ",indirect_desc=on");
    blk_init_queues(&b, l, 1ULL << VIRTIO_RING_F_INDIRECT_DESC, 1, &qs);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned i = 0; i < QUEUE_NUM; i++) {
            qblk_fill_pattern(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i + round);
            blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_OUT, i, LEN, true);
        }
        g_assert_cmpuint(vdriver_free_slots(qs.vq[0]), ==, 0);
        blk_kick_queue(&b, &qs, 0);
        blk_reap_from(&b, qs.vq[0], QUEUE_NUM);
        for (unsigned i = 0; i < QUEUE_NUM; i++) {
            memset(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
            blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_IN, i, LEN, true);
        }
        blk_kick_queue(&b, &qs, 0);
        blk_reap_from(&b, qs.vq[0], QUEUE_NUM);
        for (unsigned i = 0; i < QUEUE_NUM; i++) {
            qblk_fill_pattern(want, LEN, i + round);
            g_assert_cmpmem(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
            g_assert_cmpint(pread(b.h.img_fd, file, LEN, (off_t)i * 512), ==, LEN);
            g_assert_cmpmem(file, LEN, want, LEN);
        }
    }
    blk_queues_free(&qs);
    blk_stop(&b);
}

/*
 * event_idx=on (spec 2.7.10 / 2.8.10): while the driver has interrupts
 * suppressed, completions raise nothing (ISR stays clear, INTx low); once
 * re-enabled, the next completion interrupts.
 */
static void test_event_idx(const void *opaque)
{
    const Layout *l = opaque;
    BlkQueues qs;
    Blk b;

    assert_not_offered(l, "", VIRTIO_RING_F_EVENT_IDX);
    blk_start_with(&b, l, NULL, ",event_idx=on,vectors=0");
    qtest_irq_intercept_in(b.qts, "ioapic");
    blk_init_queues(&b, l, 1ULL << VIRTIO_RING_F_EVENT_IDX, 1, &qs);
    for (unsigned round = 0; round < 3; round++) {
        vdriver_disable_cb(qs.vq[0]);
        for (unsigned i = 0; i < 8; i++) {
            blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_IN, i, 512, false);
        }
        blk_kick_queue(&b, &qs, 0);
        blk_reap_from(&b, qs.vq[0], 8);
        (void)qvirtio_pci_get_status(&b.v);     /* orders any interrupt before the checks */
        g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
        g_assert_cmphex(qtest_readb(b.qts, b.v.isr), ==, 0);

        g_assert_false(vdriver_enable_cb(qs.vq[0]));    /* nothing pending */
        blk_add_to(&b, qs.vq[0], 0, VIRTIO_BLK_T_IN, 0, 512, false);
        blk_kick_queue(&b, &qs, 0);
        blk_reap_from(&b, qs.vq[0], 1);
        (void)qvirtio_pci_get_status(&b.v);
        g_assert_true(qtest_get_irq(b.qts, BLK_GSI));
        g_assert_cmphex(qtest_readb(b.qts, b.v.isr), ==, 1);
        g_assert_false(qtest_get_irq(b.qts, BLK_GSI));
    }
    blk_queues_free(&qs);
    blk_stop(&b);
}

/*
 * num-queues=4: each queue writes its own sectors and reads back another
 * queue's, with a data check; each queue's completions arrive on its own
 * MSI-X vector (queue q -> vector q + 1, config -> vector 0).
 */
static void test_multiqueue(const void *opaque)
{
    const Layout *l = opaque;
    enum { PER_QUEUE = 8, LEN = 1024 };
    uint8_t want[LEN], file[LEN];
    BlkQueues qs;
    Msix m;
    Blk b;

    blk_start_with(&b, l, NULL, ",num-queues=4");
    g_assert_cmpuint(qtest_readw(b.qts, b.v.device + 34), ==, 4);     /* config num_queues */
    msix_setup(&b, &m);
    g_assert_cmpuint(m.nvec, ==, 5);
    for (unsigned v = 0; v < m.nvec; v++) {
        msix_mask(&b, &m, v, false);
    }
    msix_control(&b, &m, true, false);
    blk_init_queues(&b, l, 1ULL << VIRTIO_BLK_F_MQ, MQ_MAX, &qs);
    g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_MSIX, 0), ==, 0);
    for (unsigned q = 0; q < MQ_MAX; q++) {
        qvirtio_pci_queue_select(&b.v, (uint16_t)q);
        g_assert_cmphex(set_vector(&b, VIRTIO_PCI_COMMON_Q_MSIX, (uint16_t)(q + 1)), ==, q + 1);
    }
    for (unsigned q = 0; q < MQ_MAX; q++) {
        for (unsigned i = 0; i < PER_QUEUE; i++) {
            unsigned slot = q * PER_QUEUE + i;

            qblk_fill_pattern(b.h.ram + qblk_slot_gpa(slot) + QBLK_REQ_DATA_OFF, LEN, slot);
            blk_add_to(&b, qs.vq[q], slot, VIRTIO_BLK_T_OUT, slot * 2, LEN, false);
        }
        memset(b.h.ram + msi_target(q + 1), 0, 4);
        blk_kick_queue(&b, &qs, q);
        blk_reap_from(&b, qs.vq[q], PER_QUEUE);
        (void)qvirtio_pci_get_status(&b.v);
        for (unsigned v = 0; v < m.nvec; v++) {
            g_assert_cmphex(msi_word(&b, v), ==, v == q + 1 ? MSI_DATA(v) : 0);
        }
        memset(b.h.ram + msi_target(q + 1), 0, 4);
    }
    for (unsigned slot = 0; slot < MQ_MAX * PER_QUEUE; slot++) {
        qblk_fill_pattern(want, LEN, slot);
        g_assert_cmpint(pread(b.h.img_fd, file, LEN, (off_t)slot * 2 * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    /* read back through the next queue */
    for (unsigned q = 0; q < MQ_MAX; q++) {
        unsigned rq = (q + 1) % MQ_MAX;

        for (unsigned i = 0; i < PER_QUEUE; i++) {
            unsigned slot = q * PER_QUEUE + i;

            memset(b.h.ram + qblk_slot_gpa(slot) + QBLK_REQ_DATA_OFF, 0, LEN);
            blk_add_to(&b, qs.vq[rq], slot, VIRTIO_BLK_T_IN, slot * 2, LEN, false);
        }
        blk_kick_queue(&b, &qs, rq);
        blk_reap_from(&b, qs.vq[rq], PER_QUEUE);
        for (unsigned i = 0; i < PER_QUEUE; i++) {
            unsigned slot = q * PER_QUEUE + i;

            qblk_fill_pattern(want, LEN, slot);
            g_assert_cmpmem(b.h.ram + qblk_slot_gpa(slot) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
        }
    }
    blk_queues_free(&qs);
    blk_stop(&b);
}

/*
 * Device reset (status 0) with requests still in the backend (held by
 * x-reverse-completions until 8 finish): the device drains them without
 * touching the rings (spec 2.4: after reset nothing is used), then a fresh
 * initialisation on the same memory works.
 */
static void test_reset_mid_flight(const void *opaque)
{
    const Layout *l = opaque;
    enum { LEN = 4096 };
    uint8_t want[LEN];
    uint8_t *rings = g_malloc(MQ_RING_STRIDE);
    BlkQueues qs;
    Blk b;

    blk_start_with(&b, l, "-blockdev driver=file,filename=@IMG@,node-name=d0,x-reverse-completions=8", "");
    blk_init_queues(&b, l, 0, 1, &qs);
    for (unsigned i = 0; i < 4; i++) {
        blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_IN, i, 512, false);
    }
    blk_kick_queue(&b, &qs, 0);
    (void)qvirtio_pci_get_status(&b.v);
    g_assert_false(vdriver_has_used(qs.vq[0]));     /* held in the backend */
    memcpy(rings, b.h.ram + RING_BASE, MQ_RING_STRIDE);
    qvirtio_pci_set_status(&b.v, 0);
    g_assert_cmphex(qvirtio_pci_get_status(&b.v), ==, 0);
    g_assert_cmpmem(b.h.ram + RING_BASE, MQ_RING_STRIDE, rings, MQ_RING_STRIDE);
    vdriver_queue_free(qs.vq[0]);
    qs.n = 0;
    memset(b.h.ram + RING_BASE, 0, MQ_RING_STRIDE);

    blk_init_queues(&b, l, 0, 1, &qs);
    for (unsigned i = 0; i < 8; i++) {
        qblk_fill_pattern(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i + 40);
        blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_OUT, i * 8, LEN, false);
    }
    blk_kick_queue(&b, &qs, 0);
    blk_reap_from(&b, qs.vq[0], 8);
    for (unsigned i = 0; i < 8; i++) {
        memset(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
        blk_add_to(&b, qs.vq[0], i, VIRTIO_BLK_T_IN, i * 8, LEN, false);
    }
    blk_kick_queue(&b, &qs, 0);
    blk_reap_from(&b, qs.vq[0], 8);
    for (unsigned i = 0; i < 8; i++) {
        qblk_fill_pattern(want, LEN, i + 40);
        g_assert_cmpmem(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    blk_queues_free(&qs);
    blk_stop(&b);
    g_free(rings);
}

int main(int argc, char **argv)
{
    /* Run on each of the four layouts. */
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } layout_cases[] = {
        { "write-read-data-check", test_write_read_data_check },
        { "config-capacity-and-serial", test_config_capacity },
        { "reverse-completions", test_reverse_completions },
        { "indirect-whole-ring", test_indirect },
        { "event-idx-suppresses-interrupts", test_event_idx },
        { "multiqueue-msix-per-queue", test_multiqueue },
        { "reset-mid-flight", test_reset_mid_flight },
    };

    g_test_init(&argc, &argv, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        for (unsigned c = 0; c < G_N_ELEMENTS(layout_cases); c++) {
            char *p = g_strdup_printf("/virtio-blk-pci/%s/%s", layouts[i].name, layout_cases[c].name);
            g_test_add_data_func(p, &layouts[i], layout_cases[c].fn);
            g_free(p);
        }
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(q35_layouts); i++) {
        char *p = g_strdup_printf("/virtio-blk-pci/q35/%s/write-read-data-check", q35_layouts[i].name);
        g_test_add_data_func(p, &q35_layouts[i], test_write_read_data_check);
        g_free(p);
    }
    g_test_add_data_func("/virtio-blk-pci/intx-raised-on-used-and-cleared-by-isr-read", &layouts[0],
                         test_intx_and_isr);
    g_test_add_data_func("/virtio-blk-pci/q35/intx-gsi-20-raised-and-cleared-by-isr-read", &q35_layouts[0],
                         test_intx_and_isr);
    g_test_add_func("/virtio-blk-pci/hostile-registers-refused", test_hostile_registers);
    g_test_add_func("/virtio-blk-pci/msix/completion-written-to-ram", test_msix_completion_to_ram);
    g_test_add_func("/virtio-blk-pci/msix/mask-pba-unmask", test_msix_mask_pba_unmask);
    g_test_add_func("/virtio-blk-pci/msix/bad-vector", test_msix_bad_vector);
    g_test_add_func("/virtio-blk-pci/msix/vectors-property", test_msix_vectors_property);
    g_test_add_func("/virtio-blk-pci/block-resize/intx", test_resize_intx);
    g_test_add_func("/virtio-blk-pci/split-in-order/reverse-completions-null-co", test_reverse_completions_null);
    g_test_add_func("/virtio-blk-pci/block-resize/msix-config-vector", test_resize_msix_config_vector);
    return g_test_run();
}
