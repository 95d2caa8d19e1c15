/*
 * virtio-net-pci over qtest with the device host's netdevs: guest RAM is a
 * shared file the test maps too, so tests/libvdriver drives the rings
 * through host pointers while registers go over qtest (as virtio-blk-test).
 *
 * - hubport: two NICs on one hub; frames from NIC A's TX arrive on NIC B's
 *   RX, header and bytes checked; back-pressure (no RX buffer: A's TX waits,
 *   nothing lost); MRG_RXBUF on/off; MQ with 2 pairs and the control queue.
 * - socket udp= and stream (the test is the peer), frames both ways.
 * - hostile: TX chain shorter than the header, RX buffers too small, notify
 *   on a queue that does not exist, stream lengths out of range.
 * - tap in a private network namespace (skipped when that is not allowed).
 * Ring tests run on split, packed, split+IN_ORDER, packed+IN_ORDER.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-net.h"
#include "hw/virtio/virtio-pci.h"
#include "qpci.h"
#include "qvirtio-dev.h"
#include "vdriver.h"

#define RAM_SIZE        (64u << 20)
#define QUEUE_NUM       64
#define MAX_Q           5
#define HDR_LEN         12          /* VERSION_1: with num_buffers (spec 5.1.6) */
#define BUF_STRIDE      0x4000ull       /* QUEUE_NUM slots fill the queue's 1 MiB */
#define NIC_DEVFN(i)    PCI_DEVFN(4 + (i), 0)

typedef struct Nic {
    QVirtioPCI v;
    unsigned nq;                    /* queues set up */
    VDriverQueueConfig cfg[MAX_Q];
    VDriverQueue *vq[MAX_Q];
    unsigned next_slot[MAX_Q];
    uint64_t features;              /* negotiated */
} Nic;

typedef struct Net {
    QTestState *qts;
    char *dir, *mem_path;
    uint8_t *ram;
    GuestMemory gm;
    Nic nic[2];
    unsigned nnics;
} Net;

static uint64_t ring_gpa(unsigned nic, unsigned q)
{
    return 0x10000ull + (nic * 8 + q) * 0x8000ull;
}

/* Buffer slot @slot of queue @q of NIC @nic (16 KiB each). */
static uint64_t buf_gpa(unsigned nic, unsigned q, unsigned slot)
{
    return 0x400000ull + (nic * 8 + q) * 0x100000ull + (slot % QUEUE_NUM) * BUF_STRIDE;
}

/* Start vdm with @netdevs and one virtio-net-pci per entry of @devs (NULL-terminated extra properties). */
static void net_start(Net *t, const VDriverLayout *l, const char *netdevs, const char *const *devs)
{
    GString *cmd = g_string_new(NULL);

    memset(t, 0, sizeof(*t));
    t->dir = g_dir_make_tmp("vdm-net-XXXXXX", NULL);
    g_assert_nonnull(t->dir);
    t->ram = qtest_shared_ram_new(t->dir, RAM_SIZE, &t->mem_path, &t->gm);

    g_string_printf(cmd, "-machine pc -object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                    "-machine memory-backend=mem -nodefaults %s", t->mem_path, netdevs);
    for (unsigned i = 0; devs[i]; i++) {
        g_string_append_printf(cmd, " -device virtio-net-pci,addr=%02x.0,packed=%s,in_order=%s,"
                               "event_idx=off,indirect_desc=off%s", 4 + i, l->packed ? "on" : "off",
                               l->in_order ? "on" : "off", devs[i]);
        t->nnics++;
    }
    t->qts = qtest_initf("%s", cmd->str);
    g_string_free(cmd, TRUE);
    for (unsigned i = 0; i < t->nnics; i++) {
        g_assert_cmpint(qpci_find_device(t->qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                         PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_NET), ==, NIC_DEVFN(0));
        g_assert_cmphex(qpci_config_readw(t->qts, NIC_DEVFN(i), PCI_DEVICE_ID), ==, 0x1041);
        g_assert_cmphex(qpci_config_readl(t->qts, NIC_DEVFN(i), PCI_REVISION_ID) >> 8, ==, 0x020000);
        qvirtio_pci_init_at(&t->nic[i].v, t->qts, NIC_DEVFN(i), QPCI_MMIO_BASE + i * 0x100000ull);
    }
}

static void net_stop(Net *t)
{
    qtest_quit(t->qts);
    for (unsigned i = 0; i < t->nnics; i++) {
        for (unsigned q = 0; q < MAX_Q; q++) {
            if (t->nic[i].vq[q]) {
                g_assert_null(vdriver_error(t->nic[i].vq[q]));
                vdriver_queue_free(t->nic[i].vq[q]);
            }
        }
    }
    qtest_shared_ram_free(t->ram, RAM_SIZE, t->mem_path);
    rmdir(t->dir);
    g_free(t->dir);
}

#define F(b) (1ULL << (b))

/*
 * The driver initialisation sequence (spec 3.1.1): negotiate VERSION_1, the
 * layout's ring bits and @want of the device bits, set up @nq queues.
 */
static void nic_init(Net *t, unsigned i, const VDriverLayout *l, uint64_t want, unsigned nq)
{
    Nic *n = &t->nic[i];
    QVirtioPCI *v = &n->v;
    uint64_t f;

    qvirtio_pci_set_status(v, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = qvirtio_pci_get_features(v);
    g_assert_true(f & F(VIRTIO_F_VERSION_1));
    g_assert_cmpint(!!(f & F(VIRTIO_F_RING_PACKED)), ==, l->packed);
    /* in_order=on offers bit 35 (and only then) */
    g_assert_cmpint(!!(f & F(VIRTIO_F_IN_ORDER)), ==, l->in_order);
    g_assert_true(f & F(VIRTIO_NET_F_MAC));
    n->features = F(VIRTIO_F_VERSION_1) | (f & (F(VIRTIO_F_RING_PACKED) | F(VIRTIO_F_IN_ORDER))) | (f & want);
    g_assert_true(qvirtio_pci_set_features(v, n->features));
    qtest_writel(t->qts, v->common + VIRTIO_PCI_COMMON_GFSELECT, 1);
    g_assert_cmphex(qtest_readl(t->qts, v->common + VIRTIO_PCI_COMMON_GF), ==, (uint32_t)(n->features >> 32));
    n->nq = nq;
    for (unsigned q = 0; q < nq; q++) {
        qvirtio_pci_queue_select(v, (uint16_t)q);
        g_assert_cmpuint(qtest_readw(t->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
        qtest_writew(t->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, QUEUE_NUM);
        n->cfg[q] = (VDriverQueueConfig){ .num = QUEUE_NUM, .packed = l->packed, .in_order = l->in_order };
        vdriver_layout_rings(&n->cfg[q], ring_gpa(i, q));
        g_assert_cmpuint(n->cfg[q].device + 0x1000, <=, ring_gpa(i, q) + 0x8000);
        n->vq[q] = vdriver_queue_new(&t->gm, &n->cfg[q]);
        g_assert_nonnull(n->vq[q]);
        qvirtio_pci_set_rings(v, n->cfg[q].desc, n->cfg[q].driver, n->cfg[q].device);
        qtest_writew(t->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    }
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qvirtio_pci_get_status(v), ==, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                    VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
}

static void kick(Net *t, unsigned i, unsigned q)
{
    if (vdriver_kick_prepare(t->nic[i].vq[q])) {
        qvirtio_pci_notify(&t->nic[i].v, (uint16_t)q);
    }
}

/* Post @count RX buffers of @len bytes on queue @q; the token is slot + 1. */
static void rx_post(Net *t, unsigned i, unsigned q, unsigned count, uint32_t len)
{
    Nic *n = &t->nic[i];

    for (unsigned k = 0; k < count; k++) {
        unsigned slot = n->next_slot[q]++;
        VDriverSeg in = { buf_gpa(i, q, slot), len };

        memset(t->ram + in.addr, 0xee, len);
        g_assert_cmpint(vdriver_add(n->vq[q], NULL, 0, &in, 1, GUINT_TO_POINTER(slot % QUEUE_NUM + 1),
                                    false), ==, 0);
    }
    kick(t, i, q);
}

static void fill_frame(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t k = 0; k < len; k++) {
        p[k] = (uint8_t)(k * 13 + seed * 101 + (k >> 8));
    }
    if (len >= 14) {
        memset(p, 0xff, 6);             /* broadcast destination */
        p[12] = 0x08;                   /* IPv4 ethertype, for the tap test */
        p[13] = 0x00;
    }
}

/* Queue one TX frame (zero header then @len pattern bytes) on queue @q, without kicking. */
static void tx_add(Net *t, unsigned i, unsigned q, size_t len, unsigned seed)
{
    Nic *n = &t->nic[i];
    unsigned slot = n->next_slot[q]++;
    VDriverSeg out = { buf_gpa(i, q, slot), (uint32_t)(HDR_LEN + len) };

    memset(t->ram + out.addr, 0, HDR_LEN);
    fill_frame(t->ram + out.addr + HDR_LEN, len, seed);
    g_assert_cmpint(vdriver_add(n->vq[q], &out, 1, NULL, 0, GUINT_TO_POINTER(slot % QUEUE_NUM + 1), false), ==, 0);
}

/* Wait (bounded) for the next used buffer of queue @q: its token, *@len its used length. */
static unsigned wait_used(Net *t, unsigned i, unsigned q, uint32_t *len)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;

    for (;;) {
        void *tok = vdriver_get_buf(t->nic[i].vq[q], len, NULL);

        g_assert_null(vdriver_error(t->nic[i].vq[q]));
        if (tok) {
            return GPOINTER_TO_UINT(tok);
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
}

/* Nothing used on queue @q after the device had time to (every event it acts on came first). */
static void assert_nothing_used(Net *t, unsigned i, unsigned q)
{
    (void)qvirtio_pci_get_status(&t->nic[i].v);     /* a round trip: queued events were handled */
    g_usleep(20000);
    (void)qvirtio_pci_get_status(&t->nic[i].v);
    g_assert_false(vdriver_has_used(t->nic[i].vq[q]));
}

/* Check RX buffer @tok of queue @q: header (num_buffers @nbuf) then the frame (@len, @seed). */
static void check_rx(Net *t, unsigned i, unsigned q, unsigned tok, uint32_t used, size_t len, unsigned seed)
{
    const uint8_t *b = t->ram + buf_gpa(i, q, tok - 1);
    uint8_t *want = g_malloc(len);
    VirtIONetHdr h;

    g_assert_cmpuint(used, ==, HDR_LEN + len);
    memcpy(&h, b, HDR_LEN);
    g_assert_cmpuint(h.flags, ==, 0);
    g_assert_cmpuint(h.gso_type, ==, VIRTIO_NET_HDR_GSO_NONE);
    g_assert_cmpuint(h.num_buffers, ==, 1);     /* x86 test: little-endian */
    fill_frame(want, len, seed);
    g_assert_cmpmem(b + HDR_LEN, len, want, len);
    g_free(want);
}

/* Wait for the next RX buffer of queue @q and check it holds one frame (@len, @seed). */
static void rx_expect(Net *t, unsigned i, unsigned q, size_t len, unsigned seed)
{
    uint32_t used;
    unsigned tok = wait_used(t, i, q, &used);

    check_rx(t, i, q, tok, used, len, seed);
}

static void reap_tx(Net *t, unsigned i, unsigned q, unsigned count)
{
    for (unsigned k = 0; k < count; k++) {
        uint32_t len;

        wait_used(t, i, q, &len);
        g_assert_cmpuint(len, ==, 0);
    }
}

static const char *const two_nics[] = { ",netdev=n0,mac=52:54:00:00:00:0a", ",netdev=n1,mac=52:54:00:00:00:0b", NULL };
#define HUB_NETDEVS "-netdev hubport,id=n0,hubid=0 -netdev hubport,id=n1,hubid=0"

/* A's TX arrives on B's RX (and back), in order, bytes and header checked; no RX buffer: A waits, nothing lost. */
static void test_hub_a_to_b(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const size_t sizes[] = { 60, 1514, 64, 333, 1000, 14, 9000, 42 };
    enum { N = G_N_ELEMENTS(sizes) };
    Net t;

    net_start(&t, l, HUB_NETDEVS, two_nics);
    for (unsigned i = 0; i < 2; i++) {
        nic_init(&t, i, l, F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_STATUS), 2);
    }
    rx_post(&t, 1, 0, N, 9100);
    for (unsigned k = 0; k < N; k++) {
        tx_add(&t, 0, 1, sizes[k], k);
    }
    kick(&t, 0, 1);
    for (unsigned k = 0; k < N; k++) {
        uint32_t len;
        unsigned tok = wait_used(&t, 1, 0, &len);

        /* used entries in avail order (IN_ORDER demands it; the hub keeps order anyway) */
        g_assert_cmpuint(tok, ==, k + 1);
        check_rx(&t, 1, 0, tok, len, sizes[k], k);
    }
    reap_tx(&t, 0, 1, N);

    /* B to A */
    rx_post(&t, 0, 0, 1, 2048);
    tx_add(&t, 1, 1, 100, 77);
    kick(&t, 1, 1);
    {
        uint32_t len;
        unsigned tok = wait_used(&t, 0, 0, &len);

        check_rx(&t, 0, 0, tok, len, 100, 77);
    }
    reap_tx(&t, 1, 1, 1);

    /* back-pressure: B has no RX buffer, A's frames stay in A's TX ring ... */
    for (unsigned k = 0; k < 3; k++) {
        tx_add(&t, 0, 1, 200 + k, 50 + k);
    }
    kick(&t, 0, 1);
    assert_nothing_used(&t, 0, 1);
    /* ... until B posts buffers: then all three arrive, in order */
    rx_post(&t, 1, 0, 3, 2048);
    for (unsigned k = 0; k < 3; k++) {
        uint32_t len;
        unsigned tok = wait_used(&t, 1, 0, &len);

        check_rx(&t, 1, 0, tok, len, 200 + k, 50 + k);
    }
    reap_tx(&t, 0, 1, 3);
    g_assert_cmpuint(vdriver_inflight(t.nic[0].vq[1]), ==, 0);
    g_assert_cmpuint(vdriver_inflight(t.nic[1].vq[0]), ==, 0);
    net_stop(&t);
}

/*
 * A sender held for a receiver without RX buffers is let go when the
 * receiver's driver resets it: its frames are dropped, not stuck.
 */
static void test_peer_reset_releases_sender(const void *opaque)
{
    const VDriverLayout *l = opaque;
    Net t;

    net_start(&t, l, HUB_NETDEVS, two_nics);
    nic_init(&t, 0, l, 0, 2);
    nic_init(&t, 1, l, 0, 2);
    for (unsigned k = 0; k < 3; k++) {
        tx_add(&t, 0, 1, 100, k);
    }
    kick(&t, 0, 1);
    assert_nothing_used(&t, 0, 1);
    qvirtio_pci_set_status(&t.nic[1].v, 0);
    reap_tx(&t, 0, 1, 3);
    /* and once B is back, frames flow again */
    for (unsigned q = 0; q < 2; q++) {
        vdriver_queue_free(t.nic[1].vq[q]);
        t.nic[1].vq[q] = NULL;
    }
    memset(t.nic[1].next_slot, 0, sizeof(t.nic[1].next_slot));
    nic_init(&t, 1, l, 0, 2);
    rx_post(&t, 1, 0, 1, 2048);
    tx_add(&t, 0, 1, 90, 9);
    kick(&t, 0, 1);
    rx_expect(&t, 1, 0, 90, 9);
    reap_tx(&t, 0, 1, 1);
    net_stop(&t);
}

/* MRG_RXBUF: a frame spans small buffers (num_buffers); without it one buffer per frame. */
static void test_mrg_rxbuf(const void *opaque)
{
    const VDriverLayout *l = opaque;
    Net t;
    uint32_t len;
    unsigned tok;
    uint8_t *want = g_malloc(2000), *got = g_malloc(2000);
    VirtIONetHdr h;
    size_t off = 0;

    net_start(&t, l, HUB_NETDEVS, two_nics);
    nic_init(&t, 0, l, 0, 2);
    nic_init(&t, 1, l, F(VIRTIO_NET_F_MRG_RXBUF), 2);
    g_assert_true(t.nic[1].features & F(VIRTIO_NET_F_MRG_RXBUF));
    /* 12 + 1000 bytes over 256-byte buffers: 4 buffers, num_buffers 4 in the first */
    rx_post(&t, 1, 0, 6, 256);
    tx_add(&t, 0, 1, 1000, 9);
    kick(&t, 0, 1);
    for (unsigned k = 0; k < 4; k++) {
        tok = wait_used(&t, 1, 0, &len);
        g_assert_cmpuint(tok, ==, k + 1);
        g_assert_cmpuint(len, ==, k < 3 ? 256 : 1012 - 3 * 256);
        if (k == 0) {
            memcpy(&h, t.ram + buf_gpa(1, 0, 0), HDR_LEN);
            g_assert_cmpuint(h.num_buffers, ==, 4);
            memcpy(got, t.ram + buf_gpa(1, 0, 0) + HDR_LEN, 256 - HDR_LEN);
            off = 256 - HDR_LEN;
        } else {
            memcpy(got + off, t.ram + buf_gpa(1, 0, k), len);
            off += len;
        }
    }
    g_assert_cmpuint(off, ==, 1000);
    fill_frame(want, 1000, 9);
    g_assert_cmpmem(got, 1000, want, 1000);
    reap_tx(&t, 0, 1, 1);

    /* NIC A did not negotiate MRG_RXBUF: header still 12 bytes (VERSION_1), num_buffers 1 */
    g_assert_false(t.nic[0].features & F(VIRTIO_NET_F_MRG_RXBUF));
    rx_post(&t, 0, 0, 1, 1600);
    tx_add(&t, 1, 1, 1514, 3);
    kick(&t, 1, 1);
    tok = wait_used(&t, 0, 0, &len);
    check_rx(&t, 0, 0, tok, len, 1514, 3);
    reap_tx(&t, 1, 1, 1);
    g_free(want);
    g_free(got);
    net_stop(&t);
}

/* Without MRG_RXBUF an RX buffer too small for a frame drops the frame and keeps the buffer. */
static void test_rx_buffer_too_small(const void *opaque)
{
    const VDriverLayout *l = opaque;
    Net t;
    uint32_t len;
    unsigned tok;

    net_start(&t, l, HUB_NETDEVS, two_nics);
    nic_init(&t, 0, l, 0, 2);
    nic_init(&t, 1, l, 0, 2);
    rx_post(&t, 1, 0, 1, 64);
    tx_add(&t, 0, 1, 1000, 1);
    kick(&t, 0, 1);
    reap_tx(&t, 0, 1, 1);               /* taken (and dropped at B) */
    g_assert_false(vdriver_has_used(t.nic[1].vq[0]));
    /* the buffer is still B's: a frame that fits lands in it */
    tx_add(&t, 0, 1, 40, 2);
    kick(&t, 0, 1);
    tok = wait_used(&t, 1, 0, &len);
    g_assert_cmpuint(tok, ==, 1);
    check_rx(&t, 1, 0, tok, len, 40, 2);
    reap_tx(&t, 0, 1, 1);
    g_assert_false(qvirtio_pci_get_status(&t.nic[1].v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    net_stop(&t);
}

/* Control command on the control queue @cq: class, cmd, @data; returns the ack. */
static uint8_t ctrl_cmd(Net *t, unsigned i, unsigned cq, uint8_t cls, uint8_t cmd, const void *data, size_t dlen)
{
    Nic *n = &t->nic[i];
    unsigned slot = n->next_slot[cq]++;
    uint64_t base = buf_gpa(i, cq, slot);
    VDriverSeg out = { base, (uint32_t)(2 + dlen) }, in = { base + 0x1000, 1 };
    uint32_t len;

    t->ram[base] = cls;
    t->ram[base + 1] = cmd;
    if (dlen) {
        memcpy(t->ram + base + 2, data, dlen);
    }
    t->ram[base + 0x1000] = 0xaa;
    g_assert_cmpint(vdriver_add(n->vq[cq], &out, 1, &in, 1, GUINT_TO_POINTER(slot + 1), false), ==, 0);
    kick(t, i, cq);
    wait_used(t, i, cq, &len);
    g_assert_cmpuint(len, ==, 1);
    return t->ram[base + 0x1000];
}

/* MQ: 2 pairs + control queue; VQ_PAIRS_SET 2; pair k's TX lands on the peer's pair k RX. */
static void test_mq(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const char *const devs[] = { ",netdev=n0,mq=on,vectors=6", ",netdev=n1,mq=on", NULL };
    uint16_t pairs;
    Net t;

    net_start(&t, l, "-netdev hubport,id=n0,hubid=1,queues=2 -netdev hubport,id=n1,hubid=1,queues=2", devs);
    for (unsigned i = 0; i < 2; i++) {
        g_assert_cmpuint(qtest_readw(t.qts, t.nic[i].v.common + VIRTIO_PCI_COMMON_NUMQ), ==, 5);
        /* config: max_virtqueue_pairs */
        g_assert_cmpuint(qtest_readw(t.qts, t.nic[i].v.device + 8), ==, 2);
        nic_init(&t, i, l, F(VIRTIO_NET_F_MQ) | F(VIRTIO_NET_F_CTRL_VQ) | F(VIRTIO_NET_F_MRG_RXBUF), 5);
        g_assert_true(t.nic[i].features & F(VIRTIO_NET_F_MQ));
        g_assert_true(t.nic[i].features & F(VIRTIO_NET_F_CTRL_VQ));
        /* out of range: 0 and 3 pairs are refused (spec 5.1.6.5.5) */
        pairs = 3;
        g_assert_cmpuint(ctrl_cmd(&t, i, 4, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), ==,
                         VIRTIO_NET_ERR);
        pairs = 0;
        g_assert_cmpuint(ctrl_cmd(&t, i, 4, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), ==,
                         VIRTIO_NET_ERR);
        pairs = 2;
        g_assert_cmpuint(ctrl_cmd(&t, i, 4, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2), ==,
                         VIRTIO_NET_OK);
        /* an unknown class is an error reply, not a fault */
        g_assert_cmpuint(ctrl_cmd(&t, i, 4, 200, 0, NULL, 0), ==, VIRTIO_NET_ERR);
    }
    /* vectors=6 on A: the MSI-X table has 6 entries */
    {
        uint8_t cap = qpci_find_cap(t.qts, NIC_DEVFN(0), PCI_CAP_ID_MSIX, -1, 0);

        g_assert_cmpuint(cap, !=, 0);
        g_assert_cmpuint((qpci_config_readw(t.qts, NIC_DEVFN(0), cap + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_QSIZE) + 1,
                         ==, 6);
    }
    for (unsigned qp = 0; qp < 2; qp++) {
        rx_post(&t, 1, 2 * qp, 2, 2048);
    }
    for (unsigned qp = 0; qp < 2; qp++) {
        tx_add(&t, 0, 2 * qp + 1, 300 + qp, 10 + qp);
        kick(&t, 0, 2 * qp + 1);
    }
    for (unsigned qp = 0; qp < 2; qp++) {
        uint32_t len;
        unsigned tok = wait_used(&t, 1, 2 * qp, &len);

        check_rx(&t, 1, 2 * qp, tok, len, 300 + qp, 10 + qp);
        reap_tx(&t, 0, 2 * qp + 1, 1);
    }
    g_assert_false(vdriver_has_used(t.nic[1].vq[0]));
    g_assert_false(vdriver_has_used(t.nic[1].vq[2]));
    net_stop(&t);
}

/* Config space: MAC from mac=, status LINK_UP with STATUS; status=off takes STATUS away. */
static void test_config(void)
{
    static const char *const devs[] = { ",netdev=n0,mac=52:54:00:ab:cd:ef", ",netdev=n1,status=off", NULL };
    static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0xab, 0xcd, 0xef };
    Net t;

    net_start(&t, &vdriver_layouts[0], HUB_NETDEVS, devs);
    for (unsigned k = 0; k < 6; k++) {
        g_assert_cmphex(qtest_readb(t.qts, t.nic[0].v.device + k), ==, mac[k]);
    }
    g_assert_cmphex(qtest_readw(t.qts, t.nic[0].v.device + 6), ==, VIRTIO_NET_S_LINK_UP);
    g_assert_cmpuint(qtest_readw(t.qts, t.nic[0].v.device + 8), ==, 1);
    g_assert_true(qvirtio_pci_get_features(&t.nic[0].v) & F(VIRTIO_NET_F_STATUS));
    g_assert_false(qvirtio_pci_get_features(&t.nic[1].v) & F(VIRTIO_NET_F_STATUS));
    g_assert_false(qvirtio_pci_get_features(&t.nic[0].v) & F(VIRTIO_NET_F_MQ));
    /* the default MAC, QEMU's */
    g_assert_cmphex(qtest_readb(t.qts, t.nic[1].v.device + 5), ==, 0x56);
    /* config is read-only: a write changes nothing */
    qtest_writeb(t.qts, t.nic[0].v.device + 0, 0x00);
    g_assert_cmphex(qtest_readb(t.qts, t.nic[0].v.device + 0), ==, 0x52);
    net_stop(&t);
}

/* Hostile: a TX chain shorter than the header breaks the device (NEEDS_RESET); notify on absent queues. */
static void test_hostile(const void *opaque)
{
    const VDriverLayout *l = opaque;
    Net t;
    VDriverSeg out;

    net_start(&t, l, HUB_NETDEVS, two_nics);
    nic_init(&t, 0, l, 0, 2);
    nic_init(&t, 1, l, 0, 2);
    /* notifies on queues that do not exist are ignored */
    for (unsigned q = 2; q < 1024; q += 61) {
        qtest_writew(t.qts, t.nic[0].v.notify + q * t.nic[0].v.notify_mult, (uint16_t)q);
    }
    g_assert_false(qvirtio_pci_get_status(&t.nic[0].v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* and the NIC still works */
    rx_post(&t, 1, 0, 1, 2048);
    tx_add(&t, 0, 1, 64, 4);
    kick(&t, 0, 1);
    rx_expect(&t, 1, 0, 64, 4);
    reap_tx(&t, 0, 1, 1);
    /* a 4-byte TX chain (the header is 12): NEEDS_RESET, nothing sent, vdm alive */
    out = (VDriverSeg){ buf_gpa(0, 1, 40), 4 };
    rx_post(&t, 1, 0, 1, 2048);
    g_assert_cmpint(vdriver_add(t.nic[0].vq[1], &out, 1, NULL, 0, GUINT_TO_POINTER(99), false), ==, 0);
    kick(&t, 0, 1);
    g_assert_true(qvirtio_pci_get_status(&t.nic[0].v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    assert_nothing_used(&t, 1, 0);
    /* the other NIC is unaffected, and a reset brings A back */
    g_assert_false(qvirtio_pci_get_status(&t.nic[1].v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    vdriver_queue_free(t.nic[0].vq[0]);
    vdriver_queue_free(t.nic[0].vq[1]);
    t.nic[0].vq[0] = t.nic[0].vq[1] = NULL;
    memset(t.nic[0].next_slot, 0, sizeof(t.nic[0].next_slot));
    nic_init(&t, 0, l, 0, 2);
    tx_add(&t, 0, 1, 80, 5);
    kick(&t, 0, 1);
    rx_expect(&t, 1, 0, 80, 5);
    reap_tx(&t, 0, 1, 1);
    net_stop(&t);
}

/*
 * Hotplug: device_add a virtio-net-pci on a free netdev (in use: refused),
 * frames flow, ACPI unplug frees the netdev for the next device_add.
 */
static void test_hotplug(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const char *const devs[] = { ",netdev=n0", NULL };
    char *props = g_strdup_printf("\"netdev\": \"n1\", \"addr\": \"05.0\", \"packed\": %s, \"in_order\": %s, "
                                  "\"event_idx\": \"off\", \"indirect_desc\": \"off\", "
                                  "\"mac\": \"52:54:00:00:00:99\"",
                                  l->packed ? "true" : "false", l->in_order ? "true" : "false");
    JSONValue *r;
    Net t;

    net_start(&t, l, HUB_NETDEVS, devs);
    for (unsigned round = 0; round < 2; round++) {
        const char *id = round ? "hp1" : "hp0";

        qtest_qmp_device_add(t.qts, "virtio-net-pci", id, props);
        r = qtest_qmp(t.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-net-pci\", "
                      "\"id\": \"x\", \"netdev\": \"n1\", \"addr\": \"06.0\"}}");
        g_assert_cmpstr(json_get_string(json_object_get(json_object_get(r, "error"), "desc")), ==,
                        "Property 'virtio-net-pci.netdev' can't take value 'n1', it's in use");
        json_free(r);
        {
            char *path = g_strdup_printf("/machine/peripheral/%s", id);

            r = qtest_qom_get(t.qts, path, "netdev");
            g_assert_cmpstr(json_get_string(r), ==, "n1");
            json_free(r);
            r = qtest_qom_get(t.qts, path, "mac");
            g_assert_cmpstr(json_get_string(r), ==, "52:54:00:00:00:99");
            json_free(r);
            g_free(path);
        }
        qvirtio_pci_init_at(&t.nic[1].v, t.qts, NIC_DEVFN(1), QPCI_MMIO_BASE + 0x100000ull);
        t.nnics = 2;
        if (round == 0) {
            nic_init(&t, 0, l, 0, 2);
        }
        nic_init(&t, 1, l, 0, 2);
        rx_post(&t, 1, 0, 1, 2048);
        tx_add(&t, 0, 1, 128, 30 + round);
        kick(&t, 0, 1);
        rx_expect(&t, 1, 0, 128, 30 + round);
        reap_tx(&t, 0, 1, 1);
        /* the guest ejects it: the netdev is free, A's frames now go nowhere (dropped, not held) */
        json_free(qpci_unplug_acpi_device_test(t.qts, id, 5));
        r = qtest_qmp_eventwait(t.qts, "DEVICE_DELETED");
        g_assert_cmpstr(json_get_string(json_object_get(json_object_get(r, "data"), "device")), ==, id);
        json_free(r);
        for (unsigned q = 0; q < 2; q++) {
            vdriver_queue_free(t.nic[1].vq[q]);
            t.nic[1].vq[q] = NULL;
        }
        memset(t.nic[1].next_slot, 0, sizeof(t.nic[1].next_slot));
        t.nnics = 1;
        tx_add(&t, 0, 1, 64, 40);
        kick(&t, 0, 1);
        reap_tx(&t, 0, 1, 1);
    }
    net_stop(&t);
    g_free(props);
}

/* ---- socket and stream netdevs: the test is the peer ---- */

static int bound_socket(int type, unsigned *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&a, sizeof(a)), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&a, &alen), ==, 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* Read exactly @len bytes (bounded wait); returns false on EOF. */
static bool read_full(int fd, void *buf, size_t len)
{
    size_t got = 0;

    while (got < len) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t r;

        g_assert_cmpint(poll(&p, 1, qtest_timeout_seconds() * 1000), ==, 1);
        r = read(fd, (uint8_t *)buf + got, len - got);
        if (r == 0) {
            return false;
        }
        g_assert_cmpint(r, >, 0);
        got += (size_t)r;
    }
    return true;
}

static void test_socket_udp(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const char *const devs[] = { ",netdev=n0", NULL };
    unsigned my_port, vdm_port;
    int fd = bound_socket(SOCK_DGRAM, &my_port), tmp = bound_socket(SOCK_DGRAM, &vdm_port);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    uint8_t buf[2048], want[2048];
    char *netdev;
    Net t;

    close(tmp);     /* a free port for vdm's localaddr */
    netdev = g_strdup_printf("-netdev socket,id=n0,udp=127.0.0.1:%u,localaddr=127.0.0.1:%u", my_port, vdm_port);
    net_start(&t, l, netdev, devs);
    nic_init(&t, 0, l, F(VIRTIO_NET_F_MRG_RXBUF), 2);
    /* NIC TX -> one datagram per frame */
    for (unsigned k = 0; k < 3; k++) {
        tx_add(&t, 0, 1, 100 + 400 * k, k);
    }
    kick(&t, 0, 1);
    for (unsigned k = 0; k < 3; k++) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        ssize_t r;

        g_assert_cmpint(poll(&p, 1, qtest_timeout_seconds() * 1000), ==, 1);
        r = recv(fd, buf, sizeof(buf), 0);
        g_assert_cmpint(r, ==, 100 + 400 * k);
        fill_frame(want, (size_t)r, k);
        g_assert_cmpmem(buf, (size_t)r, want, (size_t)r);
    }
    reap_tx(&t, 0, 1, 3);
    /* datagram -> NIC RX (sent before the buffers exist: held until they come) */
    to.sin_port = htons((uint16_t)vdm_port);
    fill_frame(buf, 700, 8);
    g_assert_cmpint(sendto(fd, buf, 700, 0, (struct sockaddr *)&to, sizeof(to)), ==, 700);
    fill_frame(buf, 60, 9);
    g_assert_cmpint(sendto(fd, buf, 60, 0, (struct sockaddr *)&to, sizeof(to)), ==, 60);
    g_usleep(20000);            /* not needed for correctness: makes the held-frame path likely */
    rx_post(&t, 0, 0, 2, 2048);
    rx_expect(&t, 0, 0, 700, 8);
    rx_expect(&t, 0, 0, 60, 9);
    net_stop(&t);
    close(fd);
    g_free(netdev);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void test_stream(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const char *const devs[] = { ",netdev=n0", NULL };
    unsigned port;
    int lfd = bound_socket(SOCK_STREAM, &port), c;
    uint8_t hdr[4], buf[4096], want[2048];
    char *netdev;
    size_t off = 0;
    Net t;

    g_assert_cmpint(listen(lfd, 1), ==, 0);
    netdev = g_strdup_printf("-netdev stream,id=n0,server=off,addr.type=inet,addr.host=127.0.0.1,addr.port=%u",
                             port);
    net_start(&t, l, netdev, devs);
    c = accept(lfd, NULL, NULL);
    g_assert_cmpint(c, >=, 0);
    nic_init(&t, 0, l, F(VIRTIO_NET_F_MRG_RXBUF), 2);
    /* NIC TX -> 4-byte big-endian length, frame */
    for (unsigned k = 0; k < 4; k++) {
        tx_add(&t, 0, 1, 60 + 300 * k, k);
    }
    kick(&t, 0, 1);
    for (unsigned k = 0; k < 4; k++) {
        g_assert_true(read_full(c, hdr, 4));
        g_assert_cmpuint((uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3], ==, 60 + 300 * k);
        g_assert_true(read_full(c, buf, 60 + 300 * k));
        fill_frame(want, 60 + 300 * k, k);
        g_assert_cmpmem(buf, 60 + 300 * k, want, 60 + 300 * k);
    }
    reap_tx(&t, 0, 1, 4);
    /* two frames in one write, then a third split in the middle of its length */
    for (unsigned k = 0; k < 3; k++) {
        size_t flen = 100 + 500 * k;

        put_be32(buf + off, (uint32_t)flen);
        fill_frame(buf + off + 4, flen, 20 + k);
        off += 4 + flen;
    }
    rx_post(&t, 0, 0, 3, 2048);
    g_assert_cmpint(write(c, buf, 4 + 100 + 4 + 600 + 2), ==, 4 + 100 + 4 + 600 + 2);
    for (unsigned k = 0; k < 2; k++) {
        rx_expect(&t, 0, 0, 100 + 500 * k, 20 + k);
    }
    g_assert_cmpint(write(c, buf + 710, off - 710), ==, (ssize_t)(off - 710));
    rx_expect(&t, 0, 0, 1100, 22);
    /* hostile: a length above the largest frame closes the connection; vdm lives on */
    put_be32(buf, 0x7fffffff);
    g_assert_cmpint(write(c, buf, 8), ==, 8);
    g_assert_false(read_full(c, buf, 1));
    g_assert_false(qvirtio_pci_get_status(&t.nic[0].v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* TX with no peer is dropped, not stuck */
    tx_add(&t, 0, 1, 64, 1);
    kick(&t, 0, 1);
    reap_tx(&t, 0, 1, 1);
    net_stop(&t);
    close(c);
    close(lfd);
    g_free(netdev);
}

/*
 * socket,fd=N (how QEMU's own virtio-net qtest connects): one end of a
 * socketpair inherited by vdm, stream framing on it, frames both ways.
 */
static void test_socket_fd(const void *opaque)
{
    const VDriverLayout *l = opaque;
    static const char *const devs[] = { ",netdev=n0", NULL };
    uint8_t hdr[4], buf[2048], want[2048];
    int sv[2];
    char *netdev;
    Net t;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    fcntl(sv[0], F_SETFD, FD_CLOEXEC);
    netdev = g_strdup_printf("-netdev socket,id=n0,fd=%d", sv[1]);
    net_start(&t, l, netdev, devs);
    close(sv[1]);
    nic_init(&t, 0, l, F(VIRTIO_NET_F_MRG_RXBUF), 2);
    tx_add(&t, 0, 1, 1000, 1);
    kick(&t, 0, 1);
    g_assert_true(read_full(sv[0], hdr, 4));
    g_assert_cmpuint((uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3], ==, 1000);
    g_assert_true(read_full(sv[0], buf, 1000));
    fill_frame(want, 1000, 1);
    g_assert_cmpmem(buf, 1000, want, 1000);
    reap_tx(&t, 0, 1, 1);
    rx_post(&t, 0, 0, 1, 2048);
    put_be32(buf, 500);
    fill_frame(buf + 4, 500, 2);
    g_assert_cmpint(write(sv[0], buf, 504), ==, 504);
    rx_expect(&t, 0, 0, 500, 2);
    net_stop(&t);
    close(sv[0]);
    g_free(netdev);
}

/* stream server=on: the test connects; a zero length is a broken peer too. */
static void test_stream_server(void)
{
    const VDriverLayout *l = &vdriver_layouts[0];
    static const char *const devs[] = { ",netdev=n0", NULL };
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    unsigned port;
    int tmp = bound_socket(SOCK_STREAM, &port), c;
    uint8_t buf[128];
    char *netdev;
    Net t;

    close(tmp);
    netdev = g_strdup_printf("-netdev stream,id=n0,server=on,addr.type=inet,addr.host=127.0.0.1,addr.port=%u",
                             port);
    net_start(&t, l, netdev, devs);
    nic_init(&t, 0, l, 0, 2);
    rx_post(&t, 0, 0, 2, 2048);
    for (unsigned round = 0; round < 2; round++) {
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        a.sin_port = htons((uint16_t)port);
        g_assert_cmpint(connect(c, (struct sockaddr *)&a, sizeof(a)), ==, 0);
        put_be32(buf, 64);
        fill_frame(buf + 4, 64, round);
        g_assert_cmpint(write(c, buf, 68), ==, 68);
        rx_expect(&t, 0, 0, 64, round);
        /* zero length: vdm drops the connection and listens again */
        put_be32(buf, 0);
        g_assert_cmpint(write(c, buf, 4), ==, 4);
        g_assert_false(read_full(c, buf, 1));
        close(c);
    }
    net_stop(&t);
    g_free(netdev);
}

/* ---- tap, in a network namespace of our own ---- */

/* Runs in a subprocess (test_tap): it moves itself into a network namespace. */
static void test_tap_child(void)
{
    const VDriverLayout *l = &vdriver_layouts[0];
    static const char *const devs[] = { ",netdev=n0", NULL };
    struct ifreq ifr;
    struct sockaddr_ll sll;
    uint8_t buf[2048], want[2048];
    uint32_t len;
    int ps, ctl;
    Net t;

    g_assert_cmpint(unshare(CLONE_NEWNET), ==, 0);
    /* From here on this process (and the vdm it starts) is in a namespace of its own. */
    net_start(&t, l, "-netdev tap,id=n0,ifname=vdmtap0,script=no,downscript=no,vhost=off", devs);
    ctl = socket(AF_INET, SOCK_DGRAM, 0);
    memset(&ifr, 0, sizeof(ifr));
    g_strlcpy(ifr.ifr_name, "vdmtap0", IFNAMSIZ);
    g_assert_cmpint(ioctl(ctl, SIOCGIFFLAGS, &ifr), ==, 0);
    ifr.ifr_flags |= IFF_UP;
    g_assert_cmpint(ioctl(ctl, SIOCSIFFLAGS, &ifr), ==, 0);
    g_assert_cmpint(ioctl(ctl, SIOCGIFINDEX, &ifr), ==, 0);
    close(ctl);
    ps = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, htons(ETH_P_ALL));
    g_assert_cmpint(ps, >=, 0);
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifr.ifr_ifindex;
    g_assert_cmpint(bind(ps, (struct sockaddr *)&sll, sizeof(sll)), ==, 0);
    nic_init(&t, 0, l, F(VIRTIO_NET_F_MRG_RXBUF), 2);
    /* NIC TX -> tap (seen on the interface) */
    tx_add(&t, 0, 1, 300, 6);
    kick(&t, 0, 1);
    reap_tx(&t, 0, 1, 1);
    fill_frame(want, 300, 6);
    for (;;) {
        struct pollfd p = { .fd = ps, .events = POLLIN };
        ssize_t r;

        g_assert_cmpint(poll(&p, 1, qtest_timeout_seconds() * 1000), ==, 1);
        r = recv(ps, buf, sizeof(buf), 0);
        if (r == 300 && !memcmp(buf, want, 300)) {
            break;              /* (the kernel may send its own frames, e.g. IPv6 router solicitations) */
        }
    }
    /* interface -> tap -> NIC RX */
    rx_post(&t, 0, 0, 8, 2048);
    fill_frame(buf, 500, 7);
    g_assert_cmpint(send(ps, buf, 500, 0), ==, 500);
    for (;;) {
        unsigned tok = wait_used(&t, 0, 0, &len);

        if (len == HDR_LEN + 500) {
            check_rx(&t, 0, 0, tok, len, 500, 7);
            break;
        }
    }
    close(ps);
    net_stop(&t);
}

/* Can a process of ours make a network namespace with a tap in it? (asked in a child) */
static bool tap_possible(void)
{
    int status;
    pid_t pid;

    if (access("/dev/net/tun", R_OK | W_OK)) {
        return false;
    }
    pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        _exit(unshare(CLONE_NEWNET) == 0 ? 0 : 1);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void test_tap(void)
{
    if (g_test_subprocess()) {
        test_tap_child();
        return;
    }
    if (!tap_possible()) {
        g_test_skip("no /dev/net/tun or no permission for a network namespace");
        return;
    }
    g_test_trap_subprocess(NULL, (guint64)qtest_timeout_seconds() * 2 * G_USEC_PER_SEC,
                           G_TEST_SUBPROCESS_INHERIT_STDERR);
    g_test_trap_assert_passed();
}

static void add_layout_tests(const char *name, GTestDataFunc fn)
{
    qvdev_add_layout_tests("/virtio-net-pci", name, fn);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    add_layout_tests("hub-a-to-b", test_hub_a_to_b);
    add_layout_tests("peer-reset-releases-sender", test_peer_reset_releases_sender);
    add_layout_tests("mrg-rxbuf", test_mrg_rxbuf);
    add_layout_tests("hotplug", test_hotplug);
    add_layout_tests("rx-buffer-too-small", test_rx_buffer_too_small);
    add_layout_tests("mq", test_mq);
    add_layout_tests("hostile", test_hostile);
    add_layout_tests("socket-udp", test_socket_udp);
    add_layout_tests("stream", test_stream);
    add_layout_tests("socket-fd", test_socket_fd);
    g_test_add_func("/virtio-net-pci/config", test_config);
    g_test_add_func("/virtio-net-pci/stream-server", test_stream_server);
    g_test_add_func("/virtio-net-pci/tap-netns", test_tap);
    return g_test_run();
}
