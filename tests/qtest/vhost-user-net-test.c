/*
 * virtio-net-pci in vhost mode (-netdev vhost-user,chardev=...) on the four
 * layouts, against two backends:
 *
 * - vdm-vhost-user-net --loopback: TX frames come back on RX (header and
 *   bytes checked); IN_ORDER reaches the driver and the backend exactly when
 *   in_order=on and the daemon offers it (the daemon's log says what it
 *   negotiated), masked when it runs with --in-order=off; the control queue
 *   stays in the device model and answers (CTRL_RX promisc, MQ pairs); the
 *   config space is the device model's (mac=); two queue pairs with MQ.
 * - DPDK's testpmd with net_vhost in macswap forwarding (one port looping to
 *   itself, --no-huge): frames come back with their MACs swapped, IN_ORDER
 *   negotiated with in_order=on. Skipped without dpdk-testpmd.
 */
#include <glib.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hw/virtio/virtio-net.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "qdaemon.h"
#include "qvirtio-dev.h"

#define QUEUE_NUM       64
#define HDR_LEN         12              /* VERSION_1: with num_buffers (spec 5.1.6) */
#define SLOT_STRIDE     0x4000ull       /* per queue: QUEUE_NUM slots of 16 KiB */
#define RX_BUF_LEN      2048
#define F(b)            (1ULL << (b))

static const uint8_t nic_mac[6] = { 0x52, 0x54, 0x00, 0x00, 0x00, 0x0a };
static const uint8_t dst_mac[6] = { 0x02, 0x00, 0x00, 0x00, 0x00, 0x01 };

typedef struct VuNet {
    QVirtioDev d;
    QDaemon daemon;
    char *dir, *sock_path, *log_path;
    unsigned next_slot[QVDEV_MAX_QUEUES];
    uint64_t features;          /* what the driver negotiated */
} VuNet;

static uint64_t slot_gpa(unsigned q, unsigned slot)
{
    return QVDEV_DATA_BASE + q * QUEUE_NUM * SLOT_STRIDE + (slot % QUEUE_NUM) * SLOT_STRIDE;
}

static void vun_dirs(VuNet *t)
{
    memset(t, 0, sizeof(*t));
    t->dir = g_dir_make_tmp("vdm-vun-XXXXXX", NULL);
    g_assert_nonnull(t->dir);
    t->sock_path = g_build_filename(t->dir, "vu.sock", NULL);
    t->log_path = g_build_filename(t->dir, "backend.log", NULL);
}

/* vdm with the vhost-user netdev on the backend's socket and virtio-net-pci for layout @l (+ @extra props). */
static void vun_start_vdm(VuNet *t, const VDriverLayout *l, const char *netdev_extra, const char *dev_extra)
{
    qvdev_start(&t->d, VIRTIO_ID_NET,
                "-chardev socket,id=vu0,path=%s -netdev vhost-user,id=n0,chardev=vu0%s "
                "-device virtio-net-pci,netdev=n0,addr=05.0,mac=52:54:00:00:00:0a,packed=%s,in_order=%s,"
                "event_idx=off%s", t->sock_path, netdev_extra, l->packed ? "on" : "off", l->in_order ? "on" : "off",
                dev_extra);
}

/* Start vdm-vhost-user-net --loopback (@opts: more options), the @nth time in this test. */
static void vun_daemon_start(VuNet *t, const char *opts, unsigned nth)
{
    const char *daemon = g_getenv("VDM_VHOST_USER_NET");
    char *cmd;

    g_assert_nonnull(daemon);
    cmd = g_strdup_printf("%s --socket %s --loopback %s", daemon, t->sock_path, opts);
    qdaemon_spawn(&t->daemon, t->log_path, cmd);
    qdaemon_wait_log(&t->daemon, "listening on", nth);
    g_free(cmd);
}

/* The daemon (@daemon_opts: more options), then vdm. */
static void vun_start(VuNet *t, const VDriverLayout *l, const char *daemon_opts, const char *netdev_extra,
                      const char *dev_extra)
{
    vun_dirs(t);
    vun_daemon_start(t, daemon_opts, 1);
    vun_start_vdm(t, l, netdev_extra, dev_extra);
}

/* Stop the backend, remove the test's files. */
static void vun_cleanup(VuNet *t)
{
    qdaemon_cleanup(&t->daemon);
    unlink(t->sock_path);
    unlink(t->log_path);
    rmdir(t->dir);
    g_free(t->sock_path);
    g_free(t->log_path);
    g_free(t->dir);
}

static void vun_stop(VuNet *t)
{
    qvdev_stop(&t->d);
    vun_cleanup(t);
}

/* The next used buffer of queue @q (bounded wait): its token; a driver-side violation is shown. */
static unsigned wait_used(VuNet *t, unsigned q, uint32_t *len)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    void *tok;

    while (!(tok = vdriver_get_buf(t->d.vq[q], len, NULL))) {
        g_assert_cmpstr(vdriver_error(t->d.vq[q]), ==, NULL);
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
    g_assert_cmpstr(vdriver_error(t->d.vq[q]), ==, NULL);
    return GPOINTER_TO_UINT(tok);
}

/* Post @count RX buffers on queue @q; the token is slot + 1. */
static void rx_post(VuNet *t, unsigned q, unsigned count)
{
    for (unsigned k = 0; k < count; k++) {
        unsigned slot = t->next_slot[q]++ % QUEUE_NUM;
        VDriverSeg in = { slot_gpa(q, slot), RX_BUF_LEN };

        memset(qvdev_host(&t->d, in.addr), 0xee, RX_BUF_LEN);
        g_assert_cmpint(vdriver_add(t->d.vq[q], NULL, 0, &in, 1, GUINT_TO_POINTER(slot + 1), false), ==, 0);
    }
    qvdev_kick(&t->d, q);
}

/* Ethernet frame @seed of @len bytes: dst, our MAC, an experimental ethertype, a pattern. */
static void fill_frame(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t k = 0; k < len; k++) {
        p[k] = (uint8_t)(k * 13 + seed * 101 + (k >> 8));
    }
    memcpy(p, dst_mac, 6);
    memcpy(p + 6, nic_mac, 6);
    p[12] = 0x88;
    p[13] = 0xb5;
}

/* Queue frame @seed (zero header, @len bytes) on TX queue @q without kicking. */
static void tx_add(VuNet *t, unsigned q, size_t len, unsigned seed)
{
    unsigned slot = t->next_slot[q]++ % QUEUE_NUM;
    VDriverSeg out = { slot_gpa(q, slot), (uint32_t)(HDR_LEN + len) };

    memset(qvdev_host(&t->d, out.addr), 0, HDR_LEN);
    fill_frame(qvdev_host(&t->d, out.addr + HDR_LEN), len, seed);
    g_assert_cmpint(vdriver_add(t->d.vq[q], &out, 1, NULL, 0, GUINT_TO_POINTER(slot + 1), false), ==, 0);
}

/*
 * The next RX buffer of queue @q holds frame (@len, @seed) behind a plain
 * header (no offloads, num_buffers 1); @macswap: with its MACs swapped.
 */
static void rx_expect(VuNet *t, unsigned q, size_t len, unsigned seed, bool macswap)
{
    uint32_t used;
    unsigned tok = wait_used(t, q, &used);
    const uint8_t *b = qvdev_host(&t->d, slot_gpa(q, tok - 1));
    uint8_t *want = g_malloc(len);
    VirtIONetHdr h;

    g_assert_cmpuint(used, ==, HDR_LEN + len);
    memcpy(&h, b, HDR_LEN);
    g_assert_cmpuint(h.flags, ==, 0);
    g_assert_cmpuint(h.gso_type, ==, VIRTIO_NET_HDR_GSO_NONE);
    g_assert_cmpuint(h.hdr_len, ==, 0);
    g_assert_cmpuint(h.gso_size, ==, 0);
    g_assert_cmpuint(h.csum_start, ==, 0);
    g_assert_cmpuint(h.csum_offset, ==, 0);
    g_assert_cmpuint(h.num_buffers, ==, 1);     /* MRG_RXBUF negotiated; x86: little-endian */
    fill_frame(want, len, seed);
    if (macswap) {
        memcpy(want, nic_mac, 6);
        memcpy(want + 6, dst_mac, 6);
    }
    g_assert_cmpmem(b + HDR_LEN, len, want, len);
    g_free(want);
}

static void reap_tx(VuNet *t, unsigned q, unsigned count)
{
    for (unsigned k = 0; k < count; k++) {
        uint32_t len;

        wait_used(t, q, &len);
        g_assert_cmpuint(len, ==, 0);
    }
}

/* @n frames of different lengths out on pair @qp, each back on its RX (checked). */
static void frames_round_trip(VuNet *t, unsigned qp, unsigned n, bool macswap)
{
    unsigned rxq = virtio_net_rx_queue(qp), txq = virtio_net_tx_queue(qp);

    rx_post(t, rxq, n);
    for (unsigned i = 0; i < n; i++) {
        tx_add(t, txq, 60 + i * 97, 100 * qp + i);
    }
    qvdev_kick(&t->d, txq);
    for (unsigned i = 0; i < n; i++) {
        rx_expect(t, rxq, 60 + i * 97, 100 * qp + i, macswap);
    }
    reap_tx(t, txq, n);
}

/* The backend's calls reached the transport as a queue interrupt (vectors=0: ISR bit 0 + INTx), bounded. */
static void wait_isr_queue_bit(VuNet *t)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;

    while (!(qtest_readb(t->d.qts, t->d.v.isr) & 1)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
}

/* A control command on queue @cq: its ack byte. */
static uint8_t ctrl_cmd(VuNet *t, unsigned cq, uint8_t cls, uint8_t cmd, const void *data, size_t dlen)
{
    unsigned slot = t->next_slot[cq]++ % QUEUE_NUM;
    uint64_t base = slot_gpa(cq, slot);
    VDriverSeg out = { base, (uint32_t)(2 + dlen) }, in = { base + 0x1000, 1 };
    uint8_t *p = qvdev_host(&t->d, base);
    uint32_t len;

    p[0] = cls;
    p[1] = cmd;
    if (dlen) {
        memcpy(p + 2, data, dlen);
    }
    p[0x1000] = 0xaa;
    g_assert_cmpint(vdriver_add(t->d.vq[cq], &out, 1, &in, 1, GUINT_TO_POINTER(slot + 1), false), ==, 0);
    qvdev_kick(&t->d, cq);
    wait_used(t, cq, &len);
    g_assert_cmpuint(len, ==, 1);
    return p[0x1000];
}

/* The features the backend's log says were negotiated (@prefix: the line's text before "0x"). */
static uint64_t backend_negotiated(VuNet *t, const char *prefix)
{
    char *log, *p;
    uint64_t f;

    qdaemon_wait_log(&t->daemon, prefix, 1);
    log = qdaemon_read_log(&t->daemon);
    p = strstr(log, prefix);
    g_assert_nonnull(p);
    f = g_ascii_strtoull(p + strlen(prefix), NULL, 16);
    g_free(log);
    return f;
}

static void check_mac_config(VuNet *t)
{
    for (unsigned i = 0; i < 6; i++) {
        g_assert_cmphex(qtest_readb(t->d.qts, t->d.v.device + i), ==, nic_mac[i]);
    }
}

/* What the driver negotiates: VERSION_1 + layout + MAC, MRG_RXBUF, the control queue with CTRL_RX. */
#define NET_EXTRA (F(VIRTIO_NET_F_MAC) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX))

/*
 * Loopback daemon offering IN_ORDER: IN_ORDER negotiated end to end exactly
 * with in_order=on; frames come back; the control queue answers from the
 * device model and never reaches the backend.
 */
static void test_loopback(const void *opaque)
{
    const VDriverLayout *l = opaque;
    uint64_t be;
    uint8_t on = 1;
    VuNet t;

    vun_start(&t, l, "--in-order=on", "", ",vectors=0");
    g_assert_cmpuint(qtest_readw(t.d.qts, t.d.v.common + VIRTIO_PCI_COMMON_NUMQ), ==, 3);
    check_mac_config(&t);       /* the device model's mac=, not the daemon's default */
    t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA, 3, QUEUE_NUM);
    (void)qtest_readb(t.d.qts, t.d.v.isr);  /* clear */
    frames_round_trip(&t, 0, 8, false);
    wait_isr_queue_bit(&t);
    g_assert_cmpuint(ctrl_cmd(&t, 2, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1), ==, VIRTIO_NET_OK);
    g_assert_cmpuint(ctrl_cmd(&t, 2, 200, 0, NULL, 0), ==, VIRTIO_NET_ERR);
    frames_round_trip(&t, 0, 8, false);     /* the data queues still run after control traffic */

    be = backend_negotiated(&t, "negotiated features ");
    g_assert_cmpint(!!(be & F(VIRTIO_F_IN_ORDER)), ==, l->in_order);
    g_assert_cmpint(!!(be & F(VIRTIO_F_RING_PACKED)), ==, l->packed);
    g_assert_true(be & F(VIRTIO_NET_F_MRG_RXBUF));
    /* the control queue is the device model's: the backend never hears of it */
    g_assert_false(be & (F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_CTRL_RX)));
    g_assert_cmphex(be & ~F(VIRTIO_NET_F_CTRL_VQ) & ~F(VIRTIO_NET_F_CTRL_RX),
                    ==, t.features & ~F(VIRTIO_NET_F_CTRL_VQ) & ~F(VIRTIO_NET_F_CTRL_RX) & ~F(VIRTIO_NET_F_MAC));
    vun_stop(&t);
}

/* EVENT_IDX negotiated end to end: kicks and calls suppressed by the event indices, frames still loop. */
static void test_event_idx(const void *opaque)
{
    const VDriverLayout *l = opaque;
    uint64_t be;
    VuNet t;

    vun_start(&t, l, "", "", ",event_idx=on");
    t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA | F(VIRTIO_RING_F_EVENT_IDX), 3, QUEUE_NUM);
    for (unsigned round = 0; round < 4; round++) {
        frames_round_trip(&t, 0, 8, false);
    }
    be = backend_negotiated(&t, "negotiated features ");
    g_assert_true(be & F(VIRTIO_RING_F_EVENT_IDX));
    vun_stop(&t);
}

/* The daemon without IN_ORDER: in_order=on offers the driver nothing (the table's allowlist). */
static void test_in_order_masked_by_backend(const void *opaque)
{
    const VDriverLayout *l = opaque;
    VuNet t;

    vun_start(&t, l, "--in-order=off", "", "");
    qvirtio_pci_set_status(&t.d.v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_false(qvirtio_pci_get_features(&t.d.v) & F(VIRTIO_F_IN_ORDER));
    t.features = qvdev_init(&t.d, l->packed, false, NET_EXTRA, 3, QUEUE_NUM);
    frames_round_trip(&t, 0, 4, false);
    g_assert_false(backend_negotiated(&t, "negotiated features ") & F(VIRTIO_F_IN_ORDER));
    vun_stop(&t);
}

/*
 * Two pairs: queues 0-3 the backend's, the control queue (4) the device
 * model's; pair 1 runs on the backend only once the driver asked for two
 * pairs (SET_VRING_ENABLE, as QEMU), then loops too.
 */
static void test_mq(const void *opaque)
{
    const VDriverLayout *l = opaque;
    uint16_t pairs = 2;
    VuNet t;

    vun_start(&t, l, "--queues=2", ",queues=2", ",mq=on");
    g_assert_cmpuint(qtest_readw(t.d.qts, t.d.v.common + VIRTIO_PCI_COMMON_NUMQ), ==, 5);
    g_assert_cmpuint(qtest_readw(t.d.qts, t.d.v.device + 8), ==, 2);    /* max_virtqueue_pairs */
    t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA | F(VIRTIO_NET_F_MQ), 5, QUEUE_NUM);
    /* one pair in use until VQ_PAIRS_SET (spec 5.1.6.5.5): pair 1 is disabled on the backend */
    rx_post(&t, 2, 1);
    tx_add(&t, 3, 200, 77);
    qvdev_kick(&t.d, 3);
    frames_round_trip(&t, 0, 4, false);
    g_usleep(50 * 1000);
    (void)qvirtio_pci_get_status(&t.d.v);
    g_assert_false(vdriver_has_used(t.d.vq[2]));
    g_assert_false(vdriver_has_used(t.d.vq[3]));
    g_assert_cmpuint(ctrl_cmd(&t, 4, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), ==,
                     VIRTIO_NET_OK);
    /* enabled: the waiting frame goes */
    rx_expect(&t, 2, 200, 77, false);
    reap_tx(&t, 3, 1);
    pairs = 3;
    g_assert_cmpuint(ctrl_cmd(&t, 4, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), ==,
                     VIRTIO_NET_ERR);
    frames_round_trip(&t, 0, 4, false);
    frames_round_trip(&t, 1, 4, false);
    g_assert_true(backend_negotiated(&t, "negotiated features ") & F(VIRTIO_NET_F_MQ));
    vun_stop(&t);
}

/*
 * Two pairs offered, the driver declines MQ: pair 0 is the backend's and
 * queue 2 is the control queue (spec 5.1.2), answered by the device model.
 */
static void test_mq_declined(const void *opaque)
{
    const VDriverLayout *l = opaque;
    uint8_t on = 1;
    VuNet t;

    vun_start(&t, l, "--queues=2", ",queues=2", ",mq=on");
    qvirtio_pci_set_status(&t.d.v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_true(qvirtio_pci_get_features(&t.d.v) & F(VIRTIO_NET_F_MQ));
    t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA, 3, QUEUE_NUM);
    g_assert_cmpuint(ctrl_cmd(&t, 2, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1), ==, VIRTIO_NET_OK);
    frames_round_trip(&t, 0, 4, false);
    g_assert_cmpuint(ctrl_cmd(&t, 2, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1), ==, VIRTIO_NET_OK);
    g_assert_false(backend_negotiated(&t, "negotiated features ") & F(VIRTIO_NET_F_MQ));
    vun_stop(&t);
}

/*
 * The NIC unplugged (ACPI eject) and plugged again on the same netdev: the
 * netdev is free again and the new NIC connects to the socket anew.
 */
static void test_hotplug(const void *opaque)
{
    const VDriverLayout *l = opaque;
    char *props = g_strdup_printf("\"netdev\": \"n0\", \"addr\": \"05.0\", \"mac\": \"52:54:00:00:00:0a\", "
                                  "\"packed\": %s, \"in_order\": %s, \"event_idx\": \"off\"",
                                  l->packed ? "true" : "false", l->in_order ? "true" : "false");
    VuNet t;

    vun_start(&t, l, "", "", ",id=nic0");
    qtest_irq_intercept_in(t.d.qts, "ioapic");
    qtest_outb(t.d.qts, 0xafe2, 0x02);      /* GPE.1 (PCI hotplug) enabled, as a guest does */
    for (unsigned round = 0; round < 3; round++) {
        if (round) {
            qtest_qmp_device_add(t.d.qts, "virtio-net-pci", "nic0", props);
            g_assert_cmpint(qpci_find_device(t.d.qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                             PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_NET), ==, t.d.devfn);
            qvirtio_pci_init(&t.d.v, t.d.qts, t.d.devfn);
            memset(t.next_slot, 0, sizeof(t.next_slot));
        }
        t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA, 3, QUEUE_NUM);
        frames_round_trip(&t, 0, 4, false);
        if (round < 2) {
            json_free(qpci_unplug_acpi_device_test(t.d.qts, "nic0", PCI_SLOT(t.d.devfn)));
            json_free(qtest_qmp_eventwait(t.d.qts, "DEVICE_DELETED"));
            g_assert_cmphex(qpci_config_readl(t.d.qts, t.d.devfn, 0), ==, 0xffffffff);
        }
    }
    qdaemon_wait_log(&t.daemon, "negotiated features ", 3);     /* one connection per NIC */
    g_free(props);
    vun_stop(&t);
}

/*
 * The daemon killed (SIGKILL) and started again, twice: vdm reconnects
 * (reconnect-ms=50), restarts the data queues where the driver is, and
 * frames loop again, including a frame queued while no backend was there
 * and RX buffers posted before the crash. The control queue works meanwhile.
 * Split layouts only (see the skip).
 */
static void test_reconnect(const void *opaque)
{
    const VDriverLayout *l = opaque;
    uint8_t on = 1;
    VuNet t;

    if (l->packed) {
        /* split rings resume at the used index in guest memory; packed ones need the backend's record */
        g_test_skip("packed after a backend crash: vdm-vhost-user-net keeps no inflight/position record");
        return;
    }
    vun_dirs(&t);
    vun_daemon_start(&t, "", 1);
    qvdev_start(&t.d, VIRTIO_ID_NET,
                "-chardev socket,id=vu0,path=%s,reconnect-ms=50 -netdev vhost-user,id=n0,chardev=vu0 "
                "-device virtio-net-pci,netdev=n0,addr=05.0,mac=52:54:00:00:00:0a,packed=%s,in_order=%s,"
                "event_idx=off", t.sock_path, l->packed ? "on" : "off", l->in_order ? "on" : "off");
    t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA, 3, QUEUE_NUM);
    frames_round_trip(&t, 0, 4, false);
    for (unsigned round = 0; round < 2; round++) {
        qdaemon_kill(&t.daemon, SIGKILL);
        /* RX buffers and a frame while no backend is there: the kicks wait in the eventfds */
        rx_post(&t, 0, 1);
        tx_add(&t, 1, 100, 50 + round);
        qvdev_kick(&t.d, 1);
        g_assert_cmpuint(ctrl_cmd(&t, 2, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1), ==,
                         VIRTIO_NET_OK);
        vun_daemon_start(&t, "", round + 2);
        rx_expect(&t, 0, 100, 50 + round, false);
        reap_tx(&t, 1, 1);
        frames_round_trip(&t, 0, 4, false);
    }
    vun_stop(&t);
}

/* Command lines vdm refuses (exit 1) with QEMU's messages; a daemon listens so only they are wrong. */
static void test_bad_cmdlines(void)
{
    static const struct {
        const char *args, *msg;
    } bad[] = {
        { "-netdev vhost-user,id=n0", "chardev is mandatory" },
        { "-netdev vhost-user,id=n0,chardev=nope", "can't find value 'nope'" },
        { "-chardev socket,id=c,path=@S -netdev vhost-user,id=n0,chardev=c,vhostforce=on",
          "Invalid parameter 'vhostforce'" },
        { "-chardev socket,id=c,path=@S -netdev vhost-user,id=n0,chardev=c -netdev vhost-user,id=n1,chardev=c",
          "it's in use" },
        { "@MEM -chardev socket,id=c,path=@S -netdev vhost-user,id=n0,chardev=c "
          "-device virtio-net-pci,netdev=n0 -device virtio-net-pci,netdev=n0",
          "Property 'virtio-net-pci.netdev' can't take value 'n0', it's in use" },
        { "-m 64M -chardev socket,id=c,path=@S -netdev vhost-user,id=n0,chardev=c -device virtio-net-pci,netdev=n0",
          "vhost-user requires shared guest memory" },
    };
    char *mem_path;
    VuNet t;

    vun_dirs(&t);
    vun_daemon_start(&t, "", 1);
    mem_path = g_build_filename(t.dir, "ram", NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
        char *mem = g_strdup_printf("-object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                                    "-machine memory-backend=mem", mem_path);
        GString *args = g_string_new(bad[i].args);
        char *cmd, *out = NULL, *err = NULL;
        int status;

        g_string_replace(args, "@S", t.sock_path, 0);
        g_string_replace(args, "@MEM", mem, 0);
        cmd = g_strdup_printf("%s -machine pc -nodefaults %s", qtest_binary(), args->str);
        g_test_message("%s", args->str);
        g_assert_true(g_spawn_command_line_sync(cmd, &out, &err, &status, NULL));
        g_assert_true(WIFEXITED(status));
        g_assert_cmpint(WEXITSTATUS(status), ==, 1);
        if (!strstr(err, bad[i].msg)) {
            g_error("'%s': stderr '%s' lacks '%s'", args->str, err, bad[i].msg);
        }
        g_string_free(args, TRUE);
        g_free(mem);
        g_free(cmd);
        g_free(out);
        g_free(err);
    }
    unlink(mem_path);
    g_free(mem_path);
    vun_cleanup(&t);
}

/* ---- DPDK testpmd, net_vhost ---- */

static char *find_testpmd(void)
{
    const char *env = g_getenv("VDM_DPDK_TESTPMD");

    return env ? g_strdup(env) : g_find_program_in_path("dpdk-testpmd");
}

/* DPDK's runtime directory for --file-prefix @prefix (config, memseg arrays, mp_socket): remove it. */
static void remove_dpdk_runtime_dir(const char *prefix)
{
    char *dir = g_build_filename("/var/run/dpdk", prefix, NULL);
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        char *f = g_build_filename(dir, name, NULL);

        unlink(f);
        g_free(f);
    }
    if (d) {
        g_dir_close(d);
    }
    rmdir(dir);
    g_free(dir);
}

/*
 * Wait (bounded) until testpmd listens on the socket. False when it exited
 * first (an EAL that cannot start here: no memory, no rights): the test skips.
 */
static bool dpdk_wait_listening(VuNet *t)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    int status;

    for (;;) {
        char *log = qdaemon_read_log(&t->daemon);
        bool up = strstr(log, "binding succeeded") != NULL;

        g_free(log);
        if (up) {
            return true;
        }
        if (waitpid(t->daemon.pid, &status, WNOHANG) == t->daemon.pid) {
            g_spawn_close_pid(t->daemon.pid);
            t->daemon.pid = 0;
            return false;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(5000);
    }
}

/*
 * macswap, one port forwarding to itself; memory not shared (it maps ours):
 * --no-huge. @pairs queue pairs (MQ with 2).
 */
static void dpdk_macswap(const VDriverLayout *l, unsigned pairs)
{
    char *testpmd = find_testpmd(), *cmd, *prefix;
    uint64_t be;
    VuNet t;

    if (!testpmd) {
        g_test_skip("dpdk-testpmd not found (Debian package dpdk-dev)");
        return;
    }
    vun_dirs(&t);
    prefix = g_strdup_printf("vdm-vun-%d", (int)getpid());
    /* stdout too: testpmd's progress and DPDK's log lines in one file */
    cmd = g_strdup_printf("%s -l 0,1 --main-lcore 1 --no-pci --no-huge -m 256 --file-prefix %s "
                          "--vdev net_vhost0,iface=%s,queues=%u -- --forward-mode=macswap --port-topology=loop "
                          "--rxq=%u --txq=%u --auto-start --stats-period 3600 --no-flush-rx "
                          "--total-num-mbufs=2048 >>%s",
                          testpmd, prefix, t.sock_path, pairs, pairs, pairs, t.log_path);
    qdaemon_spawn(&t.daemon, t.log_path, cmd);
    if (!dpdk_wait_listening(&t)) {
        char *log = qdaemon_read_log(&t.daemon), *why;

        g_strdelimit(g_strstrip(log), "\r\n", ' ');       /* one TAP line */
        why = g_strdup_printf("dpdk-testpmd exited before listening: ...%s", log + MAX(0, (int)strlen(log) - 160));
        g_test_skip(why);
        g_free(why);
        g_free(log);
        vun_cleanup(&t);
        remove_dpdk_runtime_dir(prefix);
        g_free(prefix);
        g_free(cmd);
        g_free(testpmd);
        return;
    }
    if (pairs > 1) {
        char *netdev = g_strdup_printf(",queues=%u", pairs);

        vun_start_vdm(&t, l, netdev, ",mq=on");
        g_free(netdev);
        t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA | F(VIRTIO_NET_F_MQ), 2 * pairs + 1,
                                QUEUE_NUM);
        g_assert_cmpuint(ctrl_cmd(&t, 2 * pairs, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET,
                                  &(uint16_t){ (uint16_t)pairs }, 2), ==, VIRTIO_NET_OK);
    } else {
        vun_start_vdm(&t, l, "", "");
        t.features = qvdev_init(&t.d, l->packed, l->in_order, NET_EXTRA, 3, QUEUE_NUM);
    }
    for (unsigned qp = 0; qp < pairs; qp++) {
        /* DPDK's packed dequeue leaves the TX length in used descriptors without WRITE: drivers ignore it */
        vdriver_ignore_readonly_len(t.d.vq[virtio_net_tx_queue(qp)], true);
        frames_round_trip(&t, qp, 8, true);
    }
    be = backend_negotiated(&t, "negotiated Virtio features: ");
    g_test_message("DPDK negotiated 0x%016" PRIx64, be);
    g_assert_cmpint(!!(be & F(VIRTIO_F_IN_ORDER)), ==, l->in_order);
    g_assert_cmpint(!!(be & F(VIRTIO_F_RING_PACKED)), ==, l->packed);
    vun_stop(&t);
    remove_dpdk_runtime_dir(prefix);
    g_free(prefix);
    g_free(cmd);
    g_free(testpmd);
}

static void test_dpdk_macswap(const void *opaque)
{
    dpdk_macswap(opaque, 1);
}

static void test_dpdk_macswap_mq(const void *opaque)
{
    dpdk_macswap(opaque, 2);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qvdev_add_layout_tests("/vhost-user-net", "loopback", test_loopback);
    qvdev_add_layout_tests("/vhost-user-net", "in-order-masked-by-backend", test_in_order_masked_by_backend);
    qvdev_add_layout_tests("/vhost-user-net", "event-idx", test_event_idx);
    qvdev_add_layout_tests("/vhost-user-net", "mq", test_mq);
    qvdev_add_layout_tests("/vhost-user-net", "mq-declined", test_mq_declined);
    qvdev_add_layout_tests("/vhost-user-net", "hotplug", test_hotplug);
    qvdev_add_layout_tests("/vhost-user-net", "reconnect", test_reconnect);
    g_test_add_func("/vhost-user-net/bad-cmdlines", test_bad_cmdlines);
    qvdev_add_layout_tests("/vhost-user-net", "dpdk-macswap", test_dpdk_macswap);
    qvdev_add_layout_tests("/vhost-user-net", "dpdk-macswap-mq", test_dpdk_macswap_mq);
    return g_test_run();
}
