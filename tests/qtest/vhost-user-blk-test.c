/*
 * vhost-user-blk-pci over qtest: vdm is the vhost-user frontend, a backend
 * daemon (vdm-vhost-user-blk, or qemu-storage-daemon when installed) serves
 * the rings. Guest RAM is a shared file the test maps too, so the driver
 * library (tests/libvdriver) builds rings that vdm hands to the backend; the
 * device registers are reached over qtest.
 *
 * What is proven, on split, packed, split+IN_ORDER and packed+IN_ORDER:
 * - features: IN_ORDER / RING_PACKED reach the driver exactly when the
 *   property asks and the backend offers, and the backend gets what the
 *   driver accepted (the daemon logs its negotiated features);
 * - write + read with a data check against the image, completions signalled
 *   through the backend's call eventfd (ISR bit 0);
 * - the backend killed and restarted: vdm reconnects (reconnect-ms) and I/O
 *   resumes, including a request queued while no backend was there.
 */
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-pci.h"
#include "qblk.h"
#include "qdaemon.h"
#include "qpci.h"
#include "vdriver.h"

#define RAM_SIZE        (64u << 20)
#define IMG_SIZE        (1u << 20)
#define QUEUE_NUM       64
#define RING_BASE       0x10000ull
#define DEVFN           PCI_DEVFN(4, 0)

typedef struct Layout {
    const char *name;
    bool packed, in_order;
} Layout;

static const Layout layouts[] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

typedef enum Peer { PEER_VDM, PEER_VDM_NO_IN_ORDER, PEER_VDM_TWO_QUEUES, PEER_VDM_SMALL_RINGS, PEER_QSD } Peer;

typedef struct VuBlk {
    QTestState *qts;
    QBlkHost h;                 /* image and shared RAM */
    char *sock_path, *log_path;
    QVirtioPCI v;
    VDriverQueueConfig cfg;
    VDriverQueue *vq;           /* queue 0 */
    VDriverQueue *vq1;          /* queue 1 (num-queues=2) */
    unsigned qnum;              /* ring size the driver sets, 0: QUEUE_NUM */
    QDaemon d;                  /* the backend */
    Peer peer;
    unsigned starts;            /* daemon starts, for log names */
    uint64_t offered;           /* device features the driver saw */
} VuBlk;

static const char *daemon_binary(void)
{
    const char *b = g_getenv("VDM_VHOST_USER_BLK");

    g_assert_nonnull(b);
    return b;
}

static bool qsd_available(void)
{
    return g_file_test("/usr/bin/qemu-storage-daemon", G_FILE_TEST_IS_EXECUTABLE);
}

/* Start the backend on b->sock_path (stderr to b->log_path) and wait until it listens. */
static void daemon_start(VuBlk *b)
{
    char *cmd;

    if (b->peer == PEER_QSD) {
        cmd = g_strdup_printf("/usr/bin/qemu-storage-daemon "
                              "--blockdev driver=file,node-name=f0,filename=%s "
                              "--export type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,"
                              "addr.path=%s,writable=on",
                              b->h.img_path, b->sock_path);
    } else {
        cmd = g_strdup_printf("%s --socket %s --image %s --backend threads %s",
                              daemon_binary(), b->sock_path, b->h.img_path,
                              b->peer == PEER_VDM_NO_IN_ORDER ? "--in-order=off" :
                              b->peer == PEER_VDM_TWO_QUEUES ? "--num-queues 2" :
                              b->peer == PEER_VDM_SMALL_RINGS ? "--queue-size 32" : "");
    }
    unlink(b->sock_path);
    qdaemon_spawn(&b->d, b->log_path, cmd);
    g_free(cmd);
    b->starts++;
    if (b->peer == PEER_QSD) {
        /* QSD says nothing when it listens: wait for its socket */
        gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;

        while (!g_file_test(b->sock_path, G_FILE_TEST_EXISTS)) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_usleep(5000);
        }
        g_usleep(50000);        /* bind() then listen(): let it reach listen */
    } else {
        qdaemon_wait_log(&b->d, "listening on", b->starts);
    }
}

/* The daemon and vdm; @dev_extra NULL: no -device (hotplug later). */
static void vub_start(VuBlk *b, const Layout *l, Peer peer, const char *dev_extra)
{
    char *dev = dev_extra ? g_strdup_printf("-device vhost-user-blk-pci,chardev=vu0,addr=04.0,packed=%s,"
                                            "in_order=%s,event_idx=off,indirect_desc=off%s",
                                            l->packed ? "on" : "off", l->in_order ? "on" : "off", dev_extra)
                          : g_strdup("");

    memset(b, 0, sizeof(*b));
    b->peer = peer;
    qblk_host_init(&b->h, "vdm-vub-XXXXXX", RAM_SIZE, IMG_SIZE);
    b->sock_path = qblk_host_path(&b->h, "vu.sock");
    b->log_path = qblk_host_path(&b->h, "backend.log");
    daemon_start(b);
    b->qts = qtest_initf("-machine pc -object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                         "-machine memory-backend=mem -nodefaults "
                         "-chardev socket,id=vu0,path=%s,reconnect-ms=50 %s",
                         b->h.mem_path, b->sock_path, dev);
    g_free(dev);
    if (!dev_extra) {
        return;
    }
    g_assert_cmpint(qpci_find_device(b->qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                     PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_BLOCK), ==, DEVFN);
    qvirtio_pci_init(&b->v, b->qts, DEVFN);
}

static void vub_stop(VuBlk *b)
{
    qtest_quit(b->qts);
    qdaemon_cleanup(&b->d);
    if (b->vq) {
        vdriver_queue_free(b->vq);
    }
    if (b->vq1) {
        vdriver_queue_free(b->vq1);
    }
    unlink(b->sock_path);
    unlink(b->log_path);
    g_free(b->sock_path);
    g_free(b->log_path);
    qblk_host_cleanup(&b->h);
}

/* Queue @n: @cfg laid out at @base, enabled. */
static VDriverQueue *vub_init_queue(VuBlk *b, unsigned n, VDriverQueueConfig *cfg, bool packed, bool in_order,
                                    uint64_t base)
{
    QVirtioPCI *v = &b->v;
    unsigned num = b->qnum ? b->qnum : QUEUE_NUM;
    VDriverQueue *vq;

    qvirtio_pci_queue_select(v, (uint16_t)n);
    g_assert_cmpuint(qtest_readw(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 128);
    qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, num);
    *cfg = (VDriverQueueConfig){ .num = num, .packed = packed, .in_order = in_order };
    vdriver_layout_rings(cfg, base);
    vq = vdriver_queue_new(&b->h.gm, cfg);
    g_assert_nonnull(vq);
    qvirtio_pci_set_rings(v, cfg->desc, cfg->driver, cfg->device);
    qtest_writew(b->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    return vq;
}

/*
 * Driver initialisation (spec 3.1.1) with @nq queues; the driver accepts
 * VERSION_1, PACKED, IN_ORDER as offered. Returns the status after DRIVER_OK.
 */
static uint8_t vub_init_queues_status(VuBlk *b, bool packed, bool in_order, unsigned nq)
{
    QVirtioPCI *v = &b->v;
    uint64_t want;

    qvirtio_pci_set_status(v, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    b->offered = qvirtio_pci_get_features(v);
    g_assert_true(b->offered & (1ULL << VIRTIO_F_VERSION_1));
    want = (1ULL << VIRTIO_F_VERSION_1) |
           (b->offered & ((1ULL << VIRTIO_F_RING_PACKED) | (1ULL << VIRTIO_F_IN_ORDER)));
    g_assert_true(qvirtio_pci_set_features(v, want));
    b->vq = vub_init_queue(b, 0, &b->cfg, packed, in_order, RING_BASE);
    if (nq > 1) {
        VDriverQueueConfig cfg1;

        b->vq1 = vub_init_queue(b, 1, &cfg1, packed, in_order, RING_BASE + 0x8000);
    }
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    return qvirtio_pci_get_status(v);
}

static void vub_init_queues(VuBlk *b, bool packed, bool in_order, unsigned nq)
{
    g_assert_cmphex(vub_init_queues_status(b, packed, in_order, nq), ==,
                    VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
                    VIRTIO_CONFIG_S_DRIVER_OK);
}

static void vub_init_device(VuBlk *b, bool packed, bool in_order)
{
    vub_init_queues(b, packed, in_order, 1);
}

static void vub_init_device_num(VuBlk *b, bool packed, bool in_order, unsigned num)
{
    b->qnum = num;
    vub_init_queues(b, packed, in_order, 1);
}

static void vub_kick(VuBlk *b)
{
    if (vdriver_kick_prepare(b->vq)) {
        qvirtio_pci_notify(&b->v, 0);
    }
}

/* Reap @n completions (bounded); each must be OK. Then the call must have become ISR bit 0. */
static void vub_reap(VuBlk *b, unsigned n)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    uint8_t isr = 0;

    qblk_reap(&b->h, b->vq, n);
    /* the backend's call eventfd reached the transport (vectors=0: ISR + INTx) */
    while (!((isr |= qtest_readb(b->qts, b->v.isr)) & 1)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(200);
    }
}

/* @nreq writes then reads of @len bytes at sectors seed-dependent, checked against the image and back. */
static void write_read_check(VuBlk *b, unsigned nreq, unsigned seed)
{
    enum { LEN = 4096 };
    uint8_t *want = g_malloc(LEN), *file = g_malloc(LEN);

    for (unsigned i = 0; i < nreq; i++) {
        qblk_fill_pattern(b->h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, seed + i);
        qblk_add(&b->h, b->vq, i, VIRTIO_BLK_T_OUT, i * 8 + seed, LEN, false);
    }
    vub_kick(b);
    vub_reap(b, nreq);
    for (unsigned i = 0; i < nreq; i++) {
        qblk_fill_pattern(want, LEN, seed + i);
        g_assert_cmpint(pread(b->h.img_fd, file, LEN, (off_t)(i * 8 + seed) * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
        memset(b->h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, LEN);
        qblk_add(&b->h, b->vq, i, VIRTIO_BLK_T_IN, i * 8 + seed, LEN, false);
    }
    vub_kick(b);
    vub_reap(b, nreq);
    for (unsigned i = 0; i < nreq; i++) {
        qblk_fill_pattern(want, LEN, seed + i);
        g_assert_cmpmem(b->h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    g_free(want);
    g_free(file);
}

/* The features the backend logged for its latest connection ("negotiated features 0x..."). */
static uint64_t backend_negotiated(VuBlk *b)
{
    char *text = qdaemon_read_log(&b->d);
    const char *p = g_strrstr(text, "negotiated features 0x");
    uint64_t f;

    g_assert_nonnull(p);
    f = g_ascii_strtoull(p + strlen("negotiated features 0x"), NULL, 16);
    g_free(text);
    return f;
}

static void check_features(VuBlk *b, const Layout *l, bool backend_in_order)
{
    bool in_order = l->in_order && backend_in_order;
    uint64_t f;

    g_assert_cmpint(!!(b->offered & (1ULL << VIRTIO_F_IN_ORDER)), ==, in_order);
    g_assert_cmpint(!!(b->offered & (1ULL << VIRTIO_F_RING_PACKED)), ==, l->packed);
    qdaemon_wait_log(&b->d, "negotiated features 0x", b->starts);
    f = backend_negotiated(b);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_IN_ORDER)), ==, in_order);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_RING_PACKED)), ==, l->packed);
    g_assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
}

static void test_features_and_data(const void *opaque)
{
    const Layout *l = opaque;
    VuBlk b;

    vub_start(&b, l, PEER_VDM, ",vectors=0");
    /* config space from GET_CONFIG: the image's capacity */
    g_assert_cmpuint(qtest_readq(b.qts, b.v.device + 0), ==, IMG_SIZE / 512);
    vub_init_device(&b, l->packed, l->in_order);
    check_features(&b, l, true);
    write_read_check(&b, 8, 1);
    /* more requests than the ring holds over time: it wraps */
    for (unsigned round = 0; round < 3 * QUEUE_NUM / 8; round++) {
        write_read_check(&b, 4, 100 + round);
    }
    g_assert_cmpuint(vdriver_inflight(b.vq), ==, 0);
    vub_stop(&b);
}

/* The backend's call eventfd becomes the queue's MSI-X message (vector 0), never the config vector. */
static void test_msix_call(const void *opaque)
{
    const Layout *l = opaque;
    gint64 deadline;
    QPCIMsix m;
    VuBlk b;

    vub_start(&b, l, PEER_VDM, "");
    qpci_msix_init(b.qts, DEVFN, VIRTIO_PCI_MSIX_BAR, QPCI_MMIO_BASE + 0x100000, 0x3f0000, &m);
    g_assert_cmpuint(m.nvec, ==, 2);        /* num-queues + 1 */
    qpci_msix_mask(b.qts, &m, 0, false);
    qpci_msix_mask(b.qts, &m, 1, false);
    qpci_msix_control(b.qts, &m, true, false);
    vub_init_device(&b, l->packed, l->in_order);
    qtest_writew(b.qts, b.v.common + VIRTIO_PCI_COMMON_MSIX, 1);
    qvirtio_pci_queue_select(&b.v, 0);
    qtest_writew(b.qts, b.v.common + VIRTIO_PCI_COMMON_Q_MSIX, 0);
    g_assert_cmpuint(qtest_readw(b.qts, b.v.common + VIRTIO_PCI_COMMON_Q_MSIX), ==, 0);
    for (unsigned round = 0; round < 3; round++) {
        qtest_writel(b.qts, qpci_msix_target(&m, 0), 0);
        write_read_check(&b, 2, 20 + round);
        deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
        while (qpci_msix_word(b.qts, &m, 0) != QPCI_MSI_DATA(0)) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_usleep(200);
        }
        g_assert_cmphex(qpci_msix_word(b.qts, &m, 1), ==, 0);
    }
    vub_stop(&b);
}

/* The backend does not offer IN_ORDER: in_order=on cannot reach the driver (allowlist). */
static void test_in_order_masked_by_backend(const void *opaque)
{
    const Layout *l = opaque;
    VuBlk b;

    vub_start(&b, l, PEER_VDM_NO_IN_ORDER, ",vectors=0");
    vub_init_device(&b, l->packed, false);
    check_features(&b, l, false);
    write_read_check(&b, 4, 7);
    vub_stop(&b);
}

/*
 * Start for a crash test. Packed rings keep no used index in memory and a
 * killed backend answers no GET_VRING_BASE: the restarted daemon finds its
 * position in its own record in the inflight region vdm kept (with or
 * without IN_ORDER).
 */
static bool vub_start_crashable(VuBlk *b, const Layout *l)
{
    vub_start(b, l, PEER_VDM, ",vectors=0");
    vub_init_device(b, l->packed, l->in_order);
    return true;
}

static void test_reconnect(const void *opaque)
{
    const Layout *l = opaque;
    gint64 t0;
    VuBlk b;

    if (!vub_start_crashable(&b, l)) {
        return;
    }
    check_features(&b, l, true);
    write_read_check(&b, 8, 3);

    /* the backend dies; vdm notices (HUP) and retries every 50 ms */
    qdaemon_kill(&b.d, SIGKILL);
    /* a request while no backend is there: its kick waits in the eventfd */
    qblk_fill_pattern(b.h.ram + qblk_slot_gpa(0) + QBLK_REQ_DATA_OFF, 4096, 42);
    qblk_add(&b.h, b.vq, 0, VIRTIO_BLK_T_OUT, 200, 4096, false);
    vub_kick(&b);
    (void)qvirtio_pci_get_status(&b.v);     /* vdm took the kick */
    daemon_start(&b);
    t0 = g_get_monotonic_time();
    /* vdm reconnected and restarted the ring with the features it had */
    check_features(&b, l, true);
    vub_reap(&b, 1);
    g_test_message("backend listening -> queued request completed: %.1f ms (reconnect-ms=50)",
                   (g_get_monotonic_time() - t0) / 1000.0);
    {
        uint8_t want[4096], file[4096];

        qblk_fill_pattern(want, sizeof(want), 42);
        g_assert_cmpint(pread(b.h.img_fd, file, sizeof(file), 200 * 512), ==, (ssize_t)sizeof(file));
        g_assert_cmpmem(file, sizeof(file), want, sizeof(want));
    }
    write_read_check(&b, 8, 300);
    /* and once more */
    qdaemon_kill(&b.d, SIGKILL);
    daemon_start(&b);
    qdaemon_wait_log(&b.d, "negotiated features 0x", b.starts);
    write_read_check(&b, 8, 500);
    vub_stop(&b);
}

/*
 * A malformed request (its header outside guest RAM) breaks the backend's
 * device; the daemon says so with CONFIG_CHANGE_MSG on the BACKEND_REQ
 * channel and vdm raises the configuration interrupt (ISR bit 1). A reset
 * and fresh rings bring the device back.
 */
static void test_backend_fault_reaches_driver(const void *opaque)
{
    const Layout *l = opaque;
    VDriverSeg out = { RAM_SIZE + 0x100000, 16 }, in = { qblk_slot_gpa(0) + 0x10, 1 };
    gint64 deadline;
    uint8_t isr = 0;

    VuBlk b;

    vub_start(&b, l, PEER_VDM, ",vectors=0");
    vub_init_device(&b, l->packed, l->in_order);
    write_read_check(&b, 2, 40);
    (void)qtest_readb(b.qts, b.v.isr);      /* clear */
    g_assert_cmpint(vdriver_add(b.vq, &out, 1, &in, 1, GUINT_TO_POINTER(1), false), ==, 0);
    vub_kick(&b);
    deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    while (!((isr |= qtest_readb(b.qts, b.v.isr)) & 2)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(500);
    }
    qdaemon_wait_log(&b.d, "outside", 1);
    vdriver_queue_free(b.vq);
    b.vq = NULL;
    memset(b.h.ram + RING_BASE, 0, 0x10000);
    vub_init_device(&b, l->packed, l->in_order);
    write_read_check(&b, 4, 41);
    vub_stop(&b);
}

/* A driver reset with the backend alive (GET_VRING_BASE), then fresh rings: I/O works again. */
static void test_driver_reset(const void *opaque)
{
    const Layout *l = opaque;
    VuBlk b;

    vub_start(&b, l, PEER_VDM, ",vectors=0");
    vub_init_device(&b, l->packed, l->in_order);
    write_read_check(&b, 8, 11);
    vdriver_queue_free(b.vq);
    b.vq = NULL;
    memset(b.h.ram + RING_BASE, 0, 0x10000);       /* the new driver's rings start clean */
    vub_init_device(&b, l->packed, l->in_order);
    write_read_check(&b, 8, 12);
    vub_stop(&b);
}

/*
 * Killed with writes in flight: whatever the backend had not completed is
 * redone by the next one (IN_ORDER: from the used index; otherwise from the
 * inflight region vdm kept), so every write completes once and lands.
 */
static void test_reconnect_under_load(const void *opaque)
{
    const Layout *l = opaque;
    enum { NREQ = 20, LEN = 4096 };     /* 3 descriptors each: 60 of the 64 */
    uint8_t want[LEN], file[LEN];
    VuBlk b;

    if (!vub_start_crashable(&b, l)) {
        return;
    }
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(b.h.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, 60 + i);
        qblk_add(&b.h, b.vq, i, VIRTIO_BLK_T_OUT, 400 + i * 8, LEN, false);
    }
    vub_kick(&b);
    (void)qvirtio_pci_get_status(&b.v);     /* vdm forwarded the kick */
    qdaemon_kill(&b.d, SIGKILL);
    daemon_start(&b);
    qblk_reap(&b.h, b.vq, NREQ);
    g_assert_cmpuint(vdriver_inflight(b.vq), ==, 0);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(want, LEN, 60 + i);
        g_assert_cmpint(pread(b.h.img_fd, file, LEN, (off_t)(400 + i * 8) * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    {
        char *log = qdaemon_read_log(&b.d);

        /* which path ran depends on when the kill struck: say so */
        g_test_message("backend resubmitted in-flight requests: %s",
                       strstr(log, "resubmitting") ? "yes" : "no (all done or rewound)");
        g_free(log);
    }
    write_read_check(&b, 8, 70);
    vub_stop(&b);
}

/* num-queues=2 (MQ): both queues run in the backend; data written through one is read through the other. */
static void test_two_queues(const void *opaque)
{
    const Layout *l = opaque;
    enum { LEN = 4096 };
    uint8_t want[LEN];
    VuBlk b;

    vub_start(&b, l, PEER_VDM_TWO_QUEUES, ",vectors=0,num-queues=2");
    g_assert_true(qtest_readw(b.qts, b.v.common + VIRTIO_PCI_COMMON_NUMQ) == 2);
    vub_init_queues(&b, l->packed, l->in_order, 2);
    g_assert_true(b.offered & (1ULL << VIRTIO_BLK_F_MQ));
    for (unsigned round = 0; round < 4; round++) {
        VDriverQueue *wq = round & 1 ? b.vq1 : b.vq, *rq = round & 1 ? b.vq : b.vq1;
        unsigned wn = round & 1, rn = !(round & 1);

        qblk_fill_pattern(b.h.ram + qblk_slot_gpa(0) + QBLK_REQ_DATA_OFF, LEN, 80 + round);
        qblk_add(&b.h, wq, 0, VIRTIO_BLK_T_OUT, 64 + round * 8, LEN, false);
        if (vdriver_kick_prepare(wq)) {
            qvirtio_pci_notify(&b.v, (uint16_t)wn);
        }
        qblk_reap(&b.h, wq, 1);
        memset(b.h.ram + qblk_slot_gpa(1) + QBLK_REQ_DATA_OFF, 0, LEN);
        qblk_add(&b.h, rq, 1, VIRTIO_BLK_T_IN, 64 + round * 8, LEN, false);
        if (vdriver_kick_prepare(rq)) {
            qvirtio_pci_notify(&b.v, (uint16_t)rn);
        }
        qblk_reap(&b.h, rq, 1);
        qblk_fill_pattern(want, LEN, 80 + round);
        g_assert_cmpmem(b.h.ram + qblk_slot_gpa(1) + QBLK_REQ_DATA_OFF, LEN, want, LEN);
    }
    vub_stop(&b);
}

/*
 * A backend with more queues than the device (2 vs num-queues=1): config
 * space comes from GET_CONFIG but num_queues is the device's own, so the
 * driver asks for no queue the device lacks (QEMU overrides it too).
 */
static void test_config_num_queues_is_the_devices(void)
{
    VuBlk b;

    vub_start(&b, &layouts[0], PEER_VDM_TWO_QUEUES, ",vectors=0");
    g_assert_cmpuint(qtest_readw(b.qts, b.v.common + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    g_assert_cmpuint(qtest_readw(b.qts, b.v.device + offsetof(VirtIOBlkConfig, num_queues)), ==, 1);
    vub_stop(&b);
}

/* device_add / device_del (ACPI eject) twice on one chardev: the backend serves each device in turn. */
static void test_hotplug(const void *opaque)
{
    const Layout *l = opaque;
    char *props = g_strdup_printf("\"chardev\": \"vu0\", \"addr\": \"04.0\", \"packed\": %s, "
                                  "\"in_order\": %s, \"event_idx\": \"off\", \"vectors\": 0",
                                  l->packed ? "true" : "false", l->in_order ? "true" : "false");
    VuBlk b;

    vub_start(&b, l, PEER_VDM, NULL);
    qtest_irq_intercept_in(b.qts, "ioapic");
    qtest_outb(b.qts, 0xafe2, 0x02);        /* GPE.1 (PCI hotplug) enabled, as a guest does */
    for (unsigned round = 0; round < 2; round++) {
        JSONValue *ev;

        qtest_qmp_device_add(b.qts, "vhost-user-blk-pci", "vub0", props);
        g_assert_cmpint(qpci_find_device(b.qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                         PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_BLOCK), ==, DEVFN);
        qvirtio_pci_init(&b.v, b.qts, DEVFN);
        memset(b.h.ram + RING_BASE, 0, 0x10000);
        vub_init_device(&b, l->packed, l->in_order);
        check_features(&b, l, true);
        write_read_check(&b, 4, 30 + round);
        ev = qpci_unplug_acpi_device_test(b.qts, "vub0", PCI_SLOT(DEVFN));
        json_free(ev);
        json_free(qtest_qmp_eventwait(b.qts, "DEVICE_DELETED"));
        g_assert_cmphex(qpci_config_readl(b.qts, DEVFN, 0), ==, 0xffffffff);
        vdriver_queue_free(b.vq);
        b.vq = NULL;
    }
    g_free(props);
    vub_stop(&b);
}

/* The backend cannot take the driver's ring (64 entries, its maximum is 32): NEEDS_RESET, not a silent hang. */
static void test_backend_refuses_ring(const void *opaque)
{
    const Layout *l = opaque;
    VuBlk b;

    gint64 deadline;

    vub_start(&b, l, PEER_VDM_SMALL_RINGS, ",vectors=0");
    (void)vub_init_queues_status(&b, l->packed, l->in_order, 1);
    /*
     * The daemon hangs up at GET_INFLIGHT_FD for rings above its size: vdm
     * reconnects, retries, and after VHOST_USER_BASE_START_TRIES sets NEEDS_RESET.
     */
    deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    while (!(qvirtio_pci_get_status(&b.v) & VIRTIO_CONFIG_S_NEEDS_RESET)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(1000);
    }
    g_assert_cmphex(qvirtio_pci_get_status(&b.v), ==,
                    VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK |
                    VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET);
    /* the config change interrupt told the driver (ISR bit 1) */
    g_assert_cmphex(qtest_readb(b.qts, b.v.isr) & 2, ==, 2);
    /* a reset and a ring the backend takes: the device works */
    memset(b.h.ram + RING_BASE, 0, 0x10000);
    vdriver_queue_free(b.vq);
    b.vq = NULL;
    vub_init_device_num(&b, l->packed, l->in_order, 32);
    write_read_check(&b, 4, 90);
    vub_stop(&b);
}

/* qemu-storage-daemon offers neither IN_ORDER nor RING_PACKED: both masked, I/O works. */
static void test_qsd_peer(const void *opaque)
{
    const Layout *l = opaque;
    VuBlk b;

    if (!qsd_available()) {
        g_test_skip("qemu-storage-daemon not installed");
        return;
    }
    vub_start(&b, l, PEER_QSD, ",vectors=0");
    vub_init_device(&b, false, false);
    g_assert_false(b.offered & (1ULL << VIRTIO_F_IN_ORDER));
    g_assert_false(b.offered & (1ULL << VIRTIO_F_RING_PACKED));
    write_read_check(&b, 8, 9);
    vub_stop(&b);
}

/* Command lines vdm refuses (exit 1, the message on stderr); "@SOCK@" is the running daemon's socket. */
static const struct {
    const char *args, *msg;
} bad_cmdlines[] = {
    /* anonymous RAM cannot be handed to a backend */
    { "-m 64 -chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0",
      "vhost-user requires shared guest memory" },
    { "-object memory-backend-file,id=mem,size=64M,mem-path=@DIR@,share=off -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0",
      "vhost-user requires shared guest memory" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-device vhost-user-blk-pci", "chardev is mandatory" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-device vhost-user-blk-pci,chardev=nope", "can't find value 'nope'" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0,queue-size=100",
      "queue size must be a power of two" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0,num-queues=4",
      "maximum number of queues supported by the backend is 1" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0,bogus=1",
      "Property 'vhost-user-blk-pci.bogus' not found" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@,reconnect-ms=x", "expects uint64" },
    { "-object memory-backend-memfd,id=mem,size=64M -machine memory-backend=mem "
      "-chardev socket,id=vu0,path=@SOCK@ -device vhost-user-blk-pci,chardev=vu0 "
      "-device vhost-user-blk-pci,chardev=vu0", "it's in use" },
};

static char *subst(const char *text, const char *key, const char *val)
{
    char **parts = g_strsplit(text, key, -1);
    char *r = g_strjoinv(val, parts);

    g_strfreev(parts);
    return r;
}

static void test_bad_cmdlines(void)
{
    VuBlk b;

    /* a running daemon, so that only the command line is wrong */
    memset(&b, 0, sizeof(b));
    b.peer = PEER_VDM;
    qblk_host_init(&b.h, "vdm-vub-XXXXXX", 4096, IMG_SIZE);
    b.sock_path = qblk_host_path(&b.h, "vu.sock");
    b.log_path = qblk_host_path(&b.h, "backend.log");
    daemon_start(&b);
    for (unsigned i = 0; i < G_N_ELEMENTS(bad_cmdlines); i++) {
        char *a1 = subst(bad_cmdlines[i].args, "@SOCK@", b.sock_path);
        char *args = subst(a1, "@DIR@", b.h.dir);
        char *cmd = g_strdup_printf("%s -machine pc -nodefaults %s", qtest_binary(), args);
        char *out = NULL, *err = NULL;
        int status;

        g_test_message("%s", args);
        g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, NULL));
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 1);
        if (!strstr(err, bad_cmdlines[i].msg)) {
            g_error("'%s': stderr '%s' lacks '%s'", args, err, bad_cmdlines[i].msg);
        }
        g_free(a1);
        g_free(args);
        g_free(cmd);
        g_free(out);
        g_free(err);
    }
    qdaemon_cleanup(&b.d);
    unlink(b.sock_path);
    unlink(b.log_path);
    g_free(b.sock_path);
    g_free(b.log_path);
    qblk_host_cleanup(&b.h);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        char *p;

        p = g_strdup_printf("/vhost-user-blk/%s/features_and_data", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_features_and_data);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/in_order_masked_by_backend", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_in_order_masked_by_backend);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/qemu-storage-daemon", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_qsd_peer);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/two_queues", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_two_queues);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/hotplug", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_hotplug);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/backend_refuses_ring", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_backend_refuses_ring);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/backend_fault_reaches_driver", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_backend_fault_reaches_driver);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/driver_reset", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_driver_reset);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/reconnect_under_load", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_reconnect_under_load);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/msix_call", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_msix_call);
        g_free(p);
        p = g_strdup_printf("/vhost-user-blk/%s/reconnect", layouts[i].name);
        g_test_add_data_func(p, &layouts[i], test_reconnect);
        g_free(p);
    }
    g_test_add_func("/vhost-user-blk/bad_cmdlines", test_bad_cmdlines);
    g_test_add_func("/vhost-user-blk/config-num-queues-is-the-devices", test_config_num_queues_is_the_devices);
    return g_test_run();
}
