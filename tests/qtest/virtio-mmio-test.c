/*
 * virtio-blk-device on -machine microvm's virtio-mmio transports (spec 4.2,
 * version 2 registers) over qtest. Guest RAM is a shared file the test maps
 * too: tests/libvdriver builds the rings through host pointers, every
 * register is reached over qtest MMIO, the interrupt is watched as the
 * transport's qtest IRQ line. Data tests run on split, packed,
 * split+IN_ORDER and packed+IN_ORDER.
 */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-mmio.h"
#include "libqtest.h"
#include "qblk.h"
#include "vdriver.h"

#define RAM_SIZE    (64u << 20)
#define IMG_SIZE    (1u << 20)
#define QNUM        64
#define RINGS_GPA   0x10000ull
#define LAST        (VIRTIO_MMIO_MAX_TRANSPORTS - 1)
/* QEMU plugs the first device into the last transport */
#define DEV_BASE    (VIRTIO_MMIO_BASE + LAST * VIRTIO_MMIO_SIZE)
#define DEV_IRQ     (VIRTIO_MMIO_IRQ_BASE + LAST)

typedef struct RingKind {
    const char *name;
    bool packed, in_order;
} RingKind;

static const RingKind kinds[] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

typedef struct MicroVM {
    QBlkHost h;                 /* image, shared RAM, request slots */
    QTestState *qts;
    VDriverQueueConfig qc;
    VDriverQueue *vq;
} MicroVM;

static uint32_t rd(MicroVM *m, uint32_t off)
{
    return qtest_readl(m->qts, DEV_BASE + off);
}

static void wr(MicroVM *m, uint32_t off, uint32_t val)
{
    qtest_writel(m->qts, DEV_BASE + off, val);
}

static void vm_start(MicroVM *m, const RingKind *k, const char *more)
{
    memset(m, 0, sizeof(*m));
    qblk_host_init(&m->h, "vdm-mmio-XXXXXX", RAM_SIZE, IMG_SIZE);
    m->qts = qtest_initf("-machine microvm,memory-backend=mem -nodefaults "
                         "-object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                         "-drive file=%s,if=none,id=d0,format=raw "
                         "-device virtio-blk-device,drive=d0,packed=%s,in_order=%s,event_idx=off%s",
                         m->h.mem_path, m->h.img_path, k->packed ? "on" : "off", k->in_order ? "on" : "off",
                         more);
}

static void vm_stop(MicroVM *m)
{
    qtest_quit(m->qts);
    if (m->vq) {
        vdriver_queue_free(m->vq);
    }
    qblk_host_cleanup(&m->h);
}

static uint64_t dev_features(MicroVM *m)
{
    wr(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    uint64_t hi = rd(m, VIRTIO_MMIO_DEVICE_FEATURES);

    wr(m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    return hi << 32 | rd(m, VIRTIO_MMIO_DEVICE_FEATURES);
}

/* Write driver features and set FEATURES_OK; whether the device kept it. */
static bool set_features(MicroVM *m, uint64_t f)
{
    wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)f);
    wr(m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    wr(m, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
    wr(m, VIRTIO_MMIO_STATUS, rd(m, VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_FEATURES_OK);
    return rd(m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK;
}

static void set_rings(MicroVM *m, uint64_t desc, uint64_t avail, uint64_t used)
{
    wr(m, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)desc);
    wr(m, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
    wr(m, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
    wr(m, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
    wr(m, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)used);
    wr(m, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
}

/* Driver initialisation (spec 3.1.1, 4.2.3.2) with queue 0 of QNUM entries. */
static void vm_driver_init(MicroVM *m, const RingKind *k)
{
    const uint64_t ring_bits = (1ULL << VIRTIO_F_RING_PACKED) | (1ULL << VIRTIO_F_IN_ORDER);
    uint64_t f;

    wr(m, VIRTIO_MMIO_STATUS, 0);
    g_assert_cmphex(rd(m, VIRTIO_MMIO_STATUS), ==, 0);
    wr(m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    wr(m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = dev_features(m);
    g_assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_RING_PACKED)), ==, k->packed);
    /* in_order=on offers bit 35 (DeviceFeatures word 1, bit 3) */
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_IN_ORDER)), ==, k->in_order);
    g_assert_true(set_features(m, (1ULL << VIRTIO_F_VERSION_1) | (f & ring_bits)));
    wr(m, VIRTIO_MMIO_QUEUE_SEL, 0);
    g_assert_cmpuint(rd(m, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 256);
    g_assert_cmpuint(rd(m, VIRTIO_MMIO_QUEUE_READY), ==, 0);
    wr(m, VIRTIO_MMIO_QUEUE_NUM, QNUM);
    m->qc = (VDriverQueueConfig){ .num = QNUM, .packed = k->packed, .in_order = k->in_order };
    vdriver_layout_rings(&m->qc, RINGS_GPA);
    m->vq = vdriver_queue_new(&m->h.gm, &m->qc);
    g_assert_nonnull(m->vq);
    set_rings(m, m->qc.desc, m->qc.driver, m->qc.device);
    g_assert_cmphex(rd(m, VIRTIO_MMIO_QUEUE_USED_LOW), ==, (uint32_t)m->qc.device);
    wr(m, VIRTIO_MMIO_QUEUE_READY, 1);
    g_assert_cmpuint(rd(m, VIRTIO_MMIO_QUEUE_READY), ==, 1);
    wr(m, VIRTIO_MMIO_STATUS, rd(m, VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(rd(m, VIRTIO_MMIO_STATUS), ==, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void vm_kick(MicroVM *m)
{
    if (vdriver_kick_prepare(m->vq)) {
        wr(m, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    }
}

static void test_ids_and_config(void)
{
    const RingKind *k = &kinds[0];
    MicroVM m;

    vm_start(&m, k, "");
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_MAGIC_VALUE), ==, VIRTIO_MMIO_MAGIC);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_VERSION), ==, 2);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_BLOCK);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_VENDOR_ID), ==, VIRTIO_MMIO_VENDOR_QEMU);
    /* an empty transport: magic and version, device id 0 */
    g_assert_cmphex(qtest_readl(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_MAGIC_VALUE), ==, VIRTIO_MMIO_MAGIC);
    g_assert_cmphex(qtest_readl(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_VERSION), ==, 2);
    g_assert_cmphex(qtest_readl(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_DEVICE_ID), ==, 0);
    qtest_writel(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_STATUS, 1);
    g_assert_cmphex(qtest_readl(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_STATUS), ==, 0);
    /* beyond the last transport nothing answers */
    g_assert_cmphex(qtest_readl(m.qts, VIRTIO_MMIO_BASE + VIRTIO_MMIO_MAX_TRANSPORTS * VIRTIO_MMIO_SIZE), ==, 0);
    /* config: capacity (le64) in sectors, any access size */
    g_assert_cmphex(qtest_readq(m.qts, DEV_BASE + VIRTIO_MMIO_CONFIG), ==, IMG_SIZE / 512);
    g_assert_cmphex(qtest_readl(m.qts, DEV_BASE + VIRTIO_MMIO_CONFIG), ==, IMG_SIZE / 512);
    g_assert_cmphex(qtest_readb(m.qts, DEV_BASE + VIRTIO_MMIO_CONFIG + 1), ==, (IMG_SIZE / 512) >> 8);
    g_assert_cmphex(qtest_readw(m.qts, DEV_BASE + VIRTIO_MMIO_CONFIG + 0x100 - 2), ==, 0);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_CONFIG_GENERATION), ==, 0);
    /* registers take 32-bit accesses only; no shared memory regions (length -1) */
    g_assert_cmphex(qtest_readw(m.qts, DEV_BASE + VIRTIO_MMIO_MAGIC_VALUE), ==, 0);
    qtest_writeb(m.qts, DEV_BASE + VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_STATUS), ==, 0);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_SHM_LEN_LOW), ==, 0xffffffff);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_SHM_LEN_HIGH), ==, 0xffffffff);
    /* a nonexistent queue: no size, never ready */
    wr(&m, VIRTIO_MMIO_QUEUE_SEL, 1);
    g_assert_cmpuint(rd(&m, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 0);
    wr(&m, VIRTIO_MMIO_QUEUE_READY, 1);
    g_assert_cmpuint(rd(&m, VIRTIO_MMIO_QUEUE_READY), ==, 0);
    vm_stop(&m);
}

static void test_two_devices_fill_transports_downwards(void)
{
    MicroVM m;

    vm_start(&m, &kinds[0], " -blockdev driver=null-co,node-name=n1 -device virtio-blk-device,drive=n1");
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_BLOCK);
    g_assert_cmphex(qtest_readl(m.qts, DEV_BASE - VIRTIO_MMIO_SIZE + VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_BLOCK);
    g_assert_cmphex(qtest_readl(m.qts, DEV_BASE - 2 * VIRTIO_MMIO_SIZE + VIRTIO_MMIO_DEVICE_ID), ==, 0);
    /* null-co's default size is 1 GiB */
    g_assert_cmphex(qtest_readq(m.qts, DEV_BASE - VIRTIO_MMIO_SIZE + VIRTIO_MMIO_CONFIG), ==, (1u << 30) / 512);
    vm_stop(&m);
}

static void test_write_read(const void *opaque)
{
    const RingKind *k = opaque;
    enum { NREQ = 8, LEN = 4096 };
    uint8_t file[LEN], want[LEN];
    MicroVM m;

    vm_start(&m, k, "");
    qtest_irq_intercept_in(m.qts, "ioapic2");
    vm_driver_init(&m, k);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(m.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, i);
        qblk_add(&m.h, m.vq, i, VIRTIO_BLK_T_OUT, i * 8 + 3, LEN, false);
    }
    vm_kick(&m);
    qblk_reap(&m.h, m.vq, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        g_assert_cmpint(pread(m.h.img_fd, file, LEN, (off_t)(i * 8 + 3) * 512), ==, LEN);
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    /* the used-buffer interrupt: InterruptStatus bit 0 and the line, lowered by InterruptACK */
    (void)rd(&m, VIRTIO_MMIO_STATUS);
    g_assert_true(qtest_get_irq(m.qts, DEV_IRQ));
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_INTERRUPT_STATUS), ==, VIRTIO_MMIO_INT_VRING);
    wr(&m, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);     /* other bits: no effect */
    g_assert_true(qtest_get_irq(m.qts, DEV_IRQ));
    wr(&m, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    g_assert_false(qtest_get_irq(m.qts, DEV_IRQ));
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_INTERRUPT_STATUS), ==, 0);
    /* read back into cleared buffers, then enough rounds to wrap the ring */
    for (unsigned i = 0; i < NREQ; i++) {
        memset(m.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
        qblk_add(&m.h, m.vq, i, VIRTIO_BLK_T_IN, i * 8 + 3, LEN, false);
    }
    vm_kick(&m);
    qblk_reap(&m.h, m.vq, NREQ);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, i);
        g_assert_cmpmem(m.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    for (unsigned round = 0; round < 3 * QNUM / NREQ; round++) {
        for (unsigned i = 0; i < NREQ; i++) {
            qblk_add(&m.h, m.vq, i, VIRTIO_BLK_T_IN, i, 512, false);
        }
        vm_kick(&m);
        qblk_reap(&m.h, m.vq, NREQ);
    }
    g_assert_cmpuint(vdriver_inflight(m.vq), ==, 0);
    /* reset: status 0 clears the queue and lowers the line */
    wr(&m, VIRTIO_MMIO_STATUS, 0);
    g_assert_cmpuint(rd(&m, VIRTIO_MMIO_QUEUE_READY), ==, 0);
    g_assert_false(qtest_get_irq(m.qts, DEV_IRQ));
    vm_stop(&m);
}

static void test_in_order_bit_35(void)
{
    MicroVM m;

    vm_start(&m, &kinds[2], "");
    wr(&m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    wr(&m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_DEVICE_FEATURES) & (1u << (VIRTIO_F_IN_ORDER - 32)), !=, 0);
    g_assert_true(set_features(&m, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_IN_ORDER)));
    vm_stop(&m);
    /* in_order=off: not offered, and a driver asking for it does not get FEATURES_OK */
    vm_start(&m, &kinds[0], "");
    wr(&m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_cmphex(dev_features(&m) & (1ULL << VIRTIO_F_IN_ORDER), ==, 0);
    g_assert_false(set_features(&m, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_IN_ORDER)));
    vm_stop(&m);
}

/* QueueNum @num then QueueReady = 1 on a fresh split or packed device: whether the queue became ready. */
static bool ready_with_num(const RingKind *k, uint32_t num)
{
    MicroVM m;
    bool ready;

    vm_start(&m, k, "");
    wr(&m, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_true(set_features(&m, (1ULL << VIRTIO_F_VERSION_1) |
                                   (k->packed ? 1ULL << VIRTIO_F_RING_PACKED : 0)));
    wr(&m, VIRTIO_MMIO_QUEUE_SEL, 0);
    wr(&m, VIRTIO_MMIO_QUEUE_NUM, num);
    set_rings(&m, 0x10000, 0x20000, 0x30000);
    wr(&m, VIRTIO_MMIO_QUEUE_READY, 1);
    ready = rd(&m, VIRTIO_MMIO_QUEUE_READY);
    vm_stop(&m);
    return ready;
}

static void test_hostile_queue_ready(void)
{
    g_assert_false(ready_with_num(&kinds[0], 0));
    g_assert_false(ready_with_num(&kinds[0], 512));            /* above QueueNumMax */
    g_assert_false(ready_with_num(&kinds[0], 0x10000));
    g_assert_false(ready_with_num(&kinds[0], 100));            /* split: not a power of two */
    g_assert_true(ready_with_num(&kinds[0], 128));
    g_assert_true(ready_with_num(&kinds[1], 100));             /* packed: any size */
    g_assert_false(ready_with_num(&kinds[1], 257));
}

static void test_hostile_registers(void)
{
    const RingKind *k = &kinds[0];
    MicroVM m;

    vm_start(&m, k, "");
    qtest_irq_intercept_in(m.qts, "ioapic2");
    vm_driver_init(&m, k);
    /* notifications for queues the device lacks are ignored */
    wr(&m, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
    wr(&m, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffff);
    wr(&m, VIRTIO_MMIO_QUEUE_NOTIFY, 0xffffffff);
    /* after DRIVER_OK the queue and features are frozen */
    wr(&m, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x123000);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_QUEUE_DESC_LOW), ==, (uint32_t)m.qc.desc);
    wr(&m, VIRTIO_MMIO_QUEUE_NUM, 8);
    wr(&m, VIRTIO_MMIO_QUEUE_READY, 0);         /* a running queue stays ready until reset */
    g_assert_cmpuint(rd(&m, VIRTIO_MMIO_QUEUE_READY), ==, 1);
    wr(&m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    wr(&m, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
    wr(&m, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 7);
    wr(&m, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);
    wr(&m, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_DEVICE_FEATURES), ==, 0);
    /* read-only registers ignore writes; a stray ACK changes nothing */
    wr(&m, VIRTIO_MMIO_MAGIC_VALUE, 0);
    wr(&m, VIRTIO_MMIO_QUEUE_NUM_MAX, 0);
    wr(&m, VIRTIO_MMIO_INTERRUPT_STATUS, 0xff);
    wr(&m, VIRTIO_MMIO_INTERRUPT_ACK, 0xffffffff);
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_MAGIC_VALUE), ==, VIRTIO_MMIO_MAGIC);
    g_assert_cmpuint(rd(&m, VIRTIO_MMIO_QUEUE_NUM_MAX), ==, 256);
    /* config writes outside the device's config are dropped */
    qtest_writel(m.qts, DEV_BASE + VIRTIO_MMIO_CONFIG + 0xf0, 0xffffffff);
    /* the device still works: one read completes with the interrupt */
    qblk_add(&m.h, m.vq, 0, VIRTIO_BLK_T_IN, 0, 512, false);
    vm_kick(&m);
    qblk_reap(&m.h, m.vq, 1);
    (void)rd(&m, VIRTIO_MMIO_STATUS);
    g_assert_true(qtest_get_irq(m.qts, DEV_IRQ));
    g_assert_cmphex(rd(&m, VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_NEEDS_RESET, ==, 0);
    vm_stop(&m);
}

/*
 * -machine microvm,acpi=off: 8 transports on GSI 5-12; acpi on with
 * ioapic2=off: 8 on GSI 16-23. The device takes transport 7 and a config
 * change (block_resize) raises that transport's line.
 */
static void check_small_layout(const char *props, int irq)
{
    const uint64_t base = VIRTIO_MMIO_BASE + 7 * VIRTIO_MMIO_SIZE;
    char *dir = g_dir_make_tmp("vdm-mmio-XXXXXX", NULL), *img = g_build_filename(dir, "d.img", NULL);
    QTestState *s;
    JSONValue *r;
    int fd = open(img, O_RDWR | O_CREAT, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, IMG_SIZE), ==, 0);
    close(fd);
    s = qtest_initf("-machine microvm,%s -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                    "-device virtio-blk-device,drive=d0", props, img);
    qtest_irq_intercept_in(s, "ioapic");
    g_assert_cmphex(qtest_readl(s, base + VIRTIO_MMIO_DEVICE_ID), ==, VIRTIO_ID_BLOCK);
    g_assert_cmphex(qtest_readl(s, base + VIRTIO_MMIO_SIZE + VIRTIO_MMIO_MAGIC_VALUE), ==, 0);  /* no 9th */
    qtest_writel(s, base + VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    qtest_writel(s, base + VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    qtest_writel(s, base + VIRTIO_MMIO_DRIVER_FEATURES, 1);        /* VERSION_1 */
    qtest_writel(s, base + VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                 VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_false(qtest_get_irq(s, irq));
    r = qtest_qmp(s, "{\"execute\": \"block_resize\", \"arguments\": {\"device\": \"d0\", \"size\": %u}}",
                  2 * IMG_SIZE);
    g_assert_nonnull(json_object_get(r, "return"));
    json_free(r);
    /* a qtest command after the QMP reply: the IRQ line (sent on the qtest socket) is read by then */
    (void)qtest_readl(s, base + VIRTIO_MMIO_STATUS);
    g_assert_true(qtest_get_irq(s, irq));
    /* a configuration change sets both bits, as QEMU's virtio_notify_config */
    g_assert_cmphex(qtest_readl(s, base + VIRTIO_MMIO_INTERRUPT_STATUS), ==,
                    VIRTIO_MMIO_INT_CONFIG | VIRTIO_MMIO_INT_VRING);
    g_assert_cmphex(qtest_readq(s, base + VIRTIO_MMIO_CONFIG), ==, 2 * IMG_SIZE / 512);
    qtest_writel(s, base + VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
    g_assert_true(qtest_get_irq(s, irq));
    qtest_writel(s, base + VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
    g_assert_false(qtest_get_irq(s, irq));
    qtest_quit(s);
    unlink(img);
    rmdir(dir);
    g_free(img);
    g_free(dir);
}

static void test_acpi_off_and_single_ioapic(void)
{
    check_small_layout("acpi=off", 5 + 7);
    check_small_layout("ioapic2=off", 16 + 7);
}

static void test_no_virtio_bus_elsewhere(void)
{
    QTestState *s = qtest_init("-machine microvm -m 64M -nodefaults");

    /* microvm: no PCI (0xcf8/0xcfc unassigned), fw_cfg present */
    g_assert_cmphex(qtest_inl(s, 0xcfc), ==, 0xffffffff);
    qtest_outw(s, 0x510, 0);
    g_assert_cmphex(qtest_inb(s, 0x511), ==, 'Q');
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/virtio-mmio/ids-config-and-empty-transports", test_ids_and_config);
    g_test_add_func("/virtio-mmio/second-device-on-next-lower-transport", test_two_devices_fill_transports_downwards);
    for (unsigned i = 0; i < G_N_ELEMENTS(kinds); i++) {
        char *p = g_strdup_printf("/virtio-mmio/%s/write-read-data-check-and-interrupt", kinds[i].name);
        g_test_add_data_func(p, &kinds[i], test_write_read);
        g_free(p);
    }
    g_test_add_func("/virtio-mmio/in-order-negotiates-bit-35", test_in_order_bit_35);
    g_test_add_func("/virtio-mmio/hostile/queue-ready-with-bad-size", test_hostile_queue_ready);
    g_test_add_func("/virtio-mmio/hostile/registers-and-bad-notify", test_hostile_registers);
    g_test_add_func("/virtio-mmio/microvm-has-fw_cfg-no-pci", test_no_virtio_bus_elsewhere);
    g_test_add_func("/virtio-mmio/acpi-off-and-single-ioapic-layouts-config-irq",
                    test_acpi_off_and_single_ioapic);
    return g_test_run();
}
