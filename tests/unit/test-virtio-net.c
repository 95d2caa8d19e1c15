/*
 * virtio-net through the core, driven by the driver library on all four
 * layouts (split, packed, split+IN_ORDER, packed+IN_ORDER), with a test peer
 * that records TX frames and can refuse them (busy).
 *
 * Proves: TX frames reach the peer intact with the header split across
 * descriptors anywhere; a chain shorter than the header breaks the device;
 * empty and oversized frames are dropped and counted; RX with and without
 * MRG_RXBUF (a frame spanning buffers, num_buffers right, every used length
 * right); an RX buffer too small is kept and the frame dropped; a frame that
 * finds too few buffers takes none and is delivered once buffers come;
 * oversized RX frames are dropped; control commands ack OK or ERR, and a
 * command without an ack byte breaks the device; a busy peer stops TX and,
 * resumed, TX continues in avail order; RX is never published in batches
 * while TX is under IN_ORDER.
 */
#include <endian.h>
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "hw/virtio/virtio-net.h"
#include "vdev-fixture.h"

#define QSIZE       64u
#define MAX_VQ      5u
#define HDR         12u
#define BIT(b)      (1ULL << (b))

typedef struct Frame {
    uint8_t *data;
    size_t len;
    unsigned qp;
} Frame;

typedef struct NetTest {
    VdevFixture f;              /* RAM, transport, driver queues */
    VirtIONet dev;
    unsigned nvq;
    /* peer */
    GPtrArray *frames;          /* Frame *, in the order sent */
    unsigned busy_after;        /* refuse sends once this many frames were taken (0: never) */
    unsigned send_done_calls;
    unsigned rx_ready_calls;
} NetTest;

typedef struct Opts {
    bool mrg_rxbuf;
    unsigned queue_pairs;
    bool no_tx_batch;
} Opts;

static bool peer_send(void *opaque, unsigned qp, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    NetTest *t = opaque;
    Frame *f;
    size_t off = 0;

    if (t->busy_after && t->frames->len >= t->busy_after) {
        return false;
    }
    f = g_new0(Frame, 1);
    f->data = g_malloc(len);
    f->len = len;
    f->qp = qp;
    for (unsigned i = 0; i < iovcnt; i++) {
        memcpy(f->data + off, iov[i].iov_base, iov[i].iov_len);
        off += iov[i].iov_len;
    }
    g_assert_cmpuint(off, ==, len);
    g_ptr_array_add(t->frames, f);
    return true;
}

static void peer_send_done(void *opaque, unsigned qp)
{
    ((NetTest *)opaque)->send_done_calls++;
}

static void peer_rx_ready(void *opaque, unsigned qp)
{
    ((NetTest *)opaque)->rx_ready_calls++;
}

static const VirtIONetPeerOps test_peer = {
    .send = peer_send,
    .send_done = peer_send_done,
    .rx_ready = peer_rx_ready,
};

static void frame_free(gpointer p)
{
    Frame *f = p;

    g_free(f->data);
    g_free(f);
}

static void *host(NetTest *t, hwaddr gpa)
{
    return vdf_host(&t->f, gpa);
}

static hwaddr galloc(NetTest *t, uint64_t size)
{
    return vdf_alloc(&t->f, size);
}

static void net_setup(NetTest *t, const VqLayout *layout, const Opts *o)
{
    VirtIONetConf conf;
    VirtIODevice *vdev = &t->dev.parent_obj;
    GError *err = NULL;
    uint64_t features;

    memset(t, 0, sizeof(*t));
    vdf_init(&t->f, layout);
    t->frames = g_ptr_array_new_with_free_func(frame_free);

    virtio_net_conf_init(&conf);
    conf.rx_queue_size = conf.tx_queue_size = QSIZE;
    conf.queue_pairs = o && o->queue_pairs ? o->queue_pairs : 1;
    g_assert_true(virtio_net_conf_set(&conf, "in_order", layout->in_order ? "on" : "off", &err));
    g_assert_true(virtio_net_conf_set(&conf, "packed", layout->packed ? "on" : "off", &err));
    g_assert_true(virtio_net_conf_set(&conf, "mrg_rxbuf", o && o->mrg_rxbuf ? "on" : "off", &err));
    g_assert_true(virtio_net_conf_set(&conf, "mac", "02:00:00:aa:bb:cc", &err));
    g_assert_true(virtio_net_conf_set(&conf, "host_mtu", "1500", &err));
    if (o && o->no_tx_batch) {
        g_assert_true(virtio_net_conf_set(&conf, "tx-batch", "off", &err));
    }
    g_assert_true(virtio_net_realize(&t->dev, &conf, &t->f.mem, &err));
    g_assert_no_error(err);
    vdf_attach(&t->f, vdev);
    virtio_net_set_peer(&t->dev, &test_peer, t);

    /* Event idx off: every kick and call is visible, which some tests count. */
    features = vdev->host_features & ~BIT(VIRTIO_RING_F_EVENT_IDX);
    g_assert_true(virtio_has_feature(features, VIRTIO_NET_F_MAC));
    g_assert_true(virtio_has_feature(features, VIRTIO_NET_F_CTRL_VQ));
    g_assert_cmpint(virtio_has_feature(features, VIRTIO_NET_F_MRG_RXBUF), ==, o && o->mrg_rxbuf);
    /* Every ring has indirect tables: the driver posts some chains through them. */
    g_assert_true(virtio_has_feature(features, VIRTIO_RING_F_INDIRECT_DESC));
    t->nvq = vdev->num_queues;
    g_assert_cmpuint(t->nvq, <=, MAX_VQ);
    vdf_start(&t->f, features, t->nvq, QSIZE, 16);
    g_assert_cmpuint(t->dev.hdr_len, ==, HDR);
}

static void net_teardown(NetTest *t, bool expect_broken)
{
    vdf_free_driver(&t->f, expect_broken);
    g_assert_cmpint(t->dev.parent_obj.broken, ==, expect_broken);
    virtio_net_unrealize(&t->dev);
    g_ptr_array_free(t->frames, TRUE);
    vdf_cleanup(&t->f);
}

static void kick(NetTest *t, unsigned q)
{
    vdriver_kick_prepare(t->f.dq[q]);
    virtio_queue_notify(&t->dev.parent_obj, q);
}

static void fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 31 + i * 7 + (i >> 8));
    }
}

/* ---- TX ---- */

typedef struct TxBuf {
    hwaddr gpa;
    uint32_t len;               /* header + frame */
} TxBuf;

/* A TX buffer: header (zeroed) then a @flen-byte frame of pattern @seed. */
static TxBuf tx_buf(NetTest *t, uint32_t flen, unsigned seed)
{
    TxBuf b = { galloc(t, HDR + flen), HDR + flen };

    memset(host(t, b.gpa), 0, HDR);
    fill_pattern((uint8_t *)host(t, b.gpa) + HDR, flen, seed);
    return b;
}

/* Post @b on TX queue pair 0, cut into @chop-byte descriptors (0: header | frame). */
static void tx_post(NetTest *t, unsigned q, const TxBuf *b, unsigned chop, void *token)
{
    VDriverSeg out[64];
    unsigned num = 0;
    uint32_t off = 0;

    if (!chop) {
        out[num++] = (VDriverSeg) { b->gpa, MIN(HDR, b->len) };
        if (b->len > HDR) {
            out[num++] = (VDriverSeg) { b->gpa + HDR, b->len - HDR };
        }
    } else {
        /* @chop-byte pieces over the first 24 bytes (the header and the frame's start), then the rest. */
        while (off < b->len) {
            uint32_t l = off < 24 ? MIN(chop, b->len - off) : b->len - off;
            out[num++] = (VDriverSeg) { b->gpa + off, l };
            off += l;
        }
    }
    g_assert_cmpint(vdriver_add(t->f.dq[q], out, num, NULL, 0, token, (chop & 1) && num <= 16), ==, 0);
}

static void check_frame(NetTest *t, unsigned i, const TxBuf *b)
{
    Frame *f;

    g_assert_cmpuint(i, <, t->frames->len);
    f = g_ptr_array_index(t->frames, i);
    g_assert_cmpmem(f->data, f->len, (uint8_t *)host(t, b->gpa) + HDR, b->len - HDR);
}

/* Reap @n TX buffers; they must come back in @tokens order under IN_ORDER. */
static void tx_reap(NetTest *t, unsigned q, void **tokens, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t len = 99;
        void *tok = vdriver_get_buf(t->f.dq[q], &len, NULL);

        g_assert_nonnull(tok);
        g_assert_cmpuint(len, ==, 0);
        if (t->f.layout->in_order && tokens) {
            g_assert_true(tok == tokens[i]);
        }
    }
    g_assert_false(vdriver_has_used(t->f.dq[q]));
}

static void test_tx_header_split(gconstpointer data)
{
    static const unsigned chops[] = { 0, 1, 3, 5, 7, 11, 12, 13, 64 };
    NetTest t;
    TxBuf b[G_N_ELEMENTS(chops)];
    void *tok[G_N_ELEMENTS(chops)];
    VirtIONetQueueStats st;

    net_setup(&t, data, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(chops); i++) {
        b[i] = tx_buf(&t, 60 + i * 17, i);
        tok[i] = &b[i];
        tx_post(&t, 1, &b[i], chops[i], tok[i]);
    }
    kick(&t, 1);
    tx_reap(&t, 1, tok, G_N_ELEMENTS(chops));
    g_assert_cmpuint(t.frames->len, ==, G_N_ELEMENTS(chops));
    for (unsigned i = 0; i < G_N_ELEMENTS(chops); i++) {
        check_frame(&t, i, &b[i]);
    }
    g_assert_cmpuint(t.send_done_calls, ==, 1);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.tx_frames, ==, G_N_ELEMENTS(chops));
    net_teardown(&t, false);
}

static void test_tx_chain_shorter_than_header(gconstpointer data)
{
    NetTest t;
    TxBuf b;

    net_setup(&t, data, NULL);
    b = tx_buf(&t, 0, 0);
    b.len = HDR - 1;            /* 11 bytes, in 3 + 8 */
    tx_post(&t, 1, &b, 3, &b);
    kick(&t, 1);
    g_assert_true(t.dev.parent_obj.broken);
    g_assert_nonnull(strstr(t.dev.parent_obj.error_msg, "shorter than the 12-byte header"));
    g_assert_cmpuint(t.frames->len, ==, 0);
    net_teardown(&t, true);
}

static void test_tx_empty_and_oversized_frames_dropped(gconstpointer data)
{
    NetTest t;
    TxBuf b[3];
    void *tok[3] = { &b[0], &b[1], &b[2] };
    VirtIONetQueueStats st;

    net_setup(&t, data, NULL);
    b[0] = tx_buf(&t, 0, 1);                            /* header only */
    b[1] = tx_buf(&t, VIRTIO_NET_MAX_FRAME + 1, 2);     /* one byte too long */
    b[2] = tx_buf(&t, VIRTIO_NET_MAX_FRAME, 3);         /* the longest that goes */
    for (unsigned i = 0; i < 3; i++) {
        tx_post(&t, 1, &b[i], 0, tok[i]);
    }
    kick(&t, 1);
    tx_reap(&t, 1, tok, 3);
    g_assert_cmpuint(t.frames->len, ==, 1);
    check_frame(&t, 0, &b[2]);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.tx_drop_malformed, ==, 1);
    g_assert_cmpuint(st.tx_drop_oversize, ==, 1);
    g_assert_cmpuint(st.tx_frames, ==, 1);
    net_teardown(&t, false);
}

/* A busy peer: the refused buffer goes back, TX stops; resumed, the rest follows in avail order. */
static void test_tx_busy_peer_resumes_in_order(gconstpointer data)
{
    NetTest t;
    TxBuf b[8];
    void *tok[8];
    VirtIONetQueueStats st;

    net_setup(&t, data, NULL);
    t.busy_after = 3;
    for (unsigned i = 0; i < 8; i++) {
        b[i] = tx_buf(&t, 64, i);
        tok[i] = &b[i];
        tx_post(&t, 1, &b[i], 0, tok[i]);
    }
    kick(&t, 1);
    tx_reap(&t, 1, tok, 3);
    g_assert_cmpuint(t.frames->len, ==, 3);
    g_assert_true(t.dev.queues[0].tx_waiting);
    /* Kicks do nothing while the peer is busy. */
    kick(&t, 1);
    g_assert_cmpuint(t.frames->len, ==, 3);
    t.busy_after = 0;
    virtio_net_tx_resume(&t.dev, 0);
    tx_reap(&t, 1, tok + 3, 5);
    for (unsigned i = 0; i < 8; i++) {
        check_frame(&t, i, &b[i]);
    }
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.tx_held, ==, 1);
    g_assert_cmpuint(st.tx_frames, ==, 8);
    net_teardown(&t, false);
}

/* TX under IN_ORDER may be published as one batched used entry; with tx-batch off never. */
static void tx_batching(gconstpointer data, bool batch)
{
    const VqLayout *l = data;
    Opts o = { .no_tx_batch = !batch };
    NetTest t;
    TxBuf b[16];
    void *tok[16];
    VDriverStats ds;

    net_setup(&t, l, &o);
    for (unsigned i = 0; i < 16; i++) {
        b[i] = tx_buf(&t, 64, i);
        tok[i] = &b[i];
        tx_post(&t, 1, &b[i], 0, tok[i]);
    }
    kick(&t, 1);
    tx_reap(&t, 1, tok, 16);
    vdriver_get_stats(t.f.dq[1], &ds);
    g_assert_cmpuint(ds.reaped, ==, 16);
    if (l->in_order && batch) {
        g_assert_cmpuint(ds.used_entries, <, 16);
    } else {
        g_assert_cmpuint(ds.used_entries, ==, 16);
        g_assert_cmpuint(ds.batched, ==, 0);
    }
    net_teardown(&t, false);
}

static void test_tx_batched_under_in_order(gconstpointer data)
{
    tx_batching(data, true);
}

static void test_tx_batch_off(gconstpointer data)
{
    tx_batching(data, false);
}

/* ---- RX ---- */

typedef struct RxBuf {
    hwaddr gpa;
    uint32_t len;
} RxBuf;

static void rx_post(NetTest *t, unsigned q, RxBuf *b, uint32_t len, unsigned chop)
{
    VDriverSeg in[64];
    unsigned num = 0;
    uint32_t off = 0;

    b->gpa = galloc(t, len);
    b->len = len;
    memset(host(t, b->gpa), 0xee, len);
    if (!chop) {
        in[num++] = (VDriverSeg) { b->gpa, len };
    } else {
        /* A few small pieces at the front (the header spans them), then the rest. */
        while (off < len && num < 4) {
            uint32_t l = num < 3 ? MIN(chop, len - off) : len - off;
            in[num++] = (VDriverSeg) { b->gpa + off, l };
            off += l;
        }
    }
    g_assert_cmpint(vdriver_add(t->f.dq[q], NULL, 0, in, num, b, false), ==, 0);
    vdriver_kick_prepare(t->f.dq[q]);
}

static VirtIONetRxResult rx_frame(NetTest *t, unsigned qp, uint32_t flen, unsigned seed, uint8_t **out)
{
    uint8_t *f = g_malloc(flen ? flen : 1);
    struct iovec iov[3];
    uint32_t a = flen / 3, b2 = flen / 3;
    VirtIONetRxResult r;

    fill_pattern(f, flen, seed);
    /* The peer's frame comes in pieces too. */
    iov[0] = (struct iovec) { f, a };
    iov[1] = (struct iovec) { f + a, b2 };
    iov[2] = (struct iovec) { f + a + b2, flen - a - b2 };
    r = virtio_net_receive(&t->dev, qp, iov, 3);
    if (out) {
        *out = f;
    } else {
        g_free(f);
    }
    return r;
}

/* Reap one frame from RX queue @q: @nbuf buffers; check header, lengths and bytes. */
static void rx_check(NetTest *t, unsigned q, RxBuf *bufs, unsigned nbuf, const uint8_t *frame, uint32_t flen)
{
    uint8_t *got = g_malloc(HDR + flen);
    size_t off = 0;
    VirtIONetHdr h;

    for (unsigned i = 0; i < nbuf; i++) {
        uint32_t len;
        RxBuf *b = vdriver_get_buf(t->f.dq[q], &len, NULL);

        g_assert_nonnull(b);
        g_assert_true(b == &bufs[i]);
        g_assert_cmpuint(len, <=, b->len);
        if (i + 1 < nbuf) {
            g_assert_cmpuint(len, ==, b->len);   /* every buffer but the last is full */
        }
        g_assert_cmpuint(off + len, <=, HDR + flen);
        memcpy(got + off, host(t, b->gpa), len);
        off += len;
    }
    g_assert_cmpuint(off, ==, HDR + flen);
    memcpy(&h, got, sizeof(h));
    g_assert_cmpuint(h.flags, ==, 0);
    g_assert_cmpuint(h.gso_type, ==, VIRTIO_NET_HDR_GSO_NONE);
    g_assert_cmpuint(le16toh(h.num_buffers), ==, nbuf);
    g_assert_cmpmem(got + HDR, flen, frame, flen);
    g_free(got);
}

static void test_rx_single_buffer(gconstpointer data)
{
    NetTest t;
    RxBuf b[4];
    uint8_t *f;
    VirtIONetQueueStats st;
    unsigned notifies;

    net_setup(&t, data, NULL);
    for (unsigned i = 0; i < 4; i++) {
        rx_post(&t, 0, &b[i], 1526, i & 1 ? 5 : 0);      /* header split over 5-byte pieces */
    }
    for (unsigned i = 0; i < 4; i++) {
        g_assert_cmpint(rx_frame(&t, 0, 60 + 400 * i, i, &f), ==, VIRTIO_NET_RX_OK);
        g_free(f);
    }
    /* Nothing is published before the flush. */
    g_assert_false(vdriver_has_used(t.f.dq[0]));
    notifies = t.f.queue_notifies;
    virtio_net_rx_flush(&t.dev, 0);
    g_assert_cmpuint(t.f.queue_notifies, ==, notifies + 1);
    for (unsigned i = 0; i < 4; i++) {
        uint8_t *want = g_malloc(60 + 400 * i);
        fill_pattern(want, 60 + 400 * i, i);
        rx_check(&t, 0, &b[i], 1, want, 60 + 400 * i);
        g_free(want);
    }
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_frames, ==, 4);
    g_assert_cmpuint(st.rx_buffers, ==, 4);
    net_teardown(&t, false);
}

static void test_rx_mrg_frame_spans_buffers(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b[12];
    uint8_t *f1, *f2;
    VirtIONetQueueStats st;

    net_setup(&t, data, &o);
    for (unsigned i = 0; i < 12; i++) {
        rx_post(&t, 0, &b[i], 100, i % 3 == 1 ? 7 : 0);
    }
    /* 12 + 350 bytes: 4 buffers (100, 100, 100, 62); then 12 + 88 exactly one. */
    g_assert_cmpint(rx_frame(&t, 0, 350, 1, &f1), ==, VIRTIO_NET_RX_OK);
    g_assert_cmpint(rx_frame(&t, 0, 88, 2, &f2), ==, VIRTIO_NET_RX_OK);
    virtio_net_rx_flush(&t.dev, 0);
    rx_check(&t, 0, &b[0], 4, f1, 350);
    rx_check(&t, 0, &b[4], 1, f2, 88);
    g_free(f1);
    g_free(f2);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_frames, ==, 2);
    g_assert_cmpuint(st.rx_buffers, ==, 5);
    net_teardown(&t, false);
}

/* MRG_RXBUF: a frame needing more buffers than there are takes none; it goes once more come. */
static void test_rx_mrg_not_enough_buffers(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b[5];
    uint8_t *f;
    unsigned ready;

    net_setup(&t, data, &o);
    for (unsigned i = 0; i < 2; i++) {
        rx_post(&t, 0, &b[i], 100, 0);
    }
    g_assert_cmpint(rx_frame(&t, 0, 400, 9, &f), ==, VIRTIO_NET_RX_NO_BUFFERS);
    g_assert_cmpuint(virtio_queue_inuse(t.dev.queues[0].rx_vq), ==, 0);
    virtio_net_rx_flush(&t.dev, 0);
    g_assert_false(vdriver_has_used(t.f.dq[0]));
    /* More buffers and a kick: the peer hears about it. */
    ready = t.rx_ready_calls;
    for (unsigned i = 2; i < 5; i++) {
        rx_post(&t, 0, &b[i], 100, 0);
    }
    kick(&t, 0);
    g_assert_cmpuint(t.rx_ready_calls, ==, ready + 1);
    g_free(f);
    g_assert_cmpint(rx_frame(&t, 0, 400, 9, &f), ==, VIRTIO_NET_RX_OK);
    virtio_net_rx_flush(&t.dev, 0);
    rx_check(&t, 0, b, 5, f, 400);
    g_free(f);
    net_teardown(&t, false);
}

/* Without MRG_RXBUF a buffer too small for header + frame is kept; the frame is dropped. */
static void test_rx_buffer_too_small(gconstpointer data)
{
    NetTest t;
    RxBuf b;
    uint8_t *f;
    VirtIONetQueueStats st;

    net_setup(&t, data, NULL);
    rx_post(&t, 0, &b, 100, 3);
    g_assert_cmpint(rx_frame(&t, 0, 89, 1, NULL), ==, VIRTIO_NET_RX_DROPPED);
    g_assert_cmpuint(virtio_queue_inuse(t.dev.queues[0].rx_vq), ==, 0);
    /* The bytes after the buffer were not touched, and the buffer still takes a frame that fits. */
    g_assert_cmpint(rx_frame(&t, 0, 88, 2, &f), ==, VIRTIO_NET_RX_OK);
    virtio_net_rx_flush(&t.dev, 0);
    rx_check(&t, 0, &b, 1, f, 88);
    g_free(f);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_drop_too_small, ==, 1);
    g_assert_cmpuint(st.rx_frames, ==, 1);
    net_teardown(&t, false);
}

/* MRG_RXBUF: a first buffer shorter than the header is returned empty and the frame dropped. */
static void test_rx_mrg_buffer_shorter_than_header(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b[2];
    uint8_t *f;
    uint32_t len = 99;
    VirtIONetQueueStats st;

    net_setup(&t, data, &o);
    rx_post(&t, 0, &b[0], HDR - 1, 4);
    rx_post(&t, 0, &b[1], 200, 0);
    g_assert_cmpint(rx_frame(&t, 0, 60, 1, NULL), ==, VIRTIO_NET_RX_DROPPED);
    g_assert_cmpint(rx_frame(&t, 0, 60, 2, &f), ==, VIRTIO_NET_RX_OK);
    virtio_net_rx_flush(&t.dev, 0);
    g_assert_true(vdriver_get_buf(t.f.dq[0], &len, NULL) == &b[0]);
    g_assert_cmpuint(len, ==, 0);
    rx_check(&t, 0, &b[1], 1, f, 60);
    g_free(f);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_drop_malformed, ==, 1);
    net_teardown(&t, false);
}

static void test_rx_oversized_and_no_buffer(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b;
    VirtIONetQueueStats st;
    uint8_t *f;

    net_setup(&t, data, &o);
    /* No buffer at all. */
    g_assert_cmpint(rx_frame(&t, 0, 60, 1, NULL), ==, VIRTIO_NET_RX_NO_BUFFERS);
    virtio_net_rx_drop_no_buffer(&t.dev, 0);
    rx_post(&t, 0, &b, 2048, 0);
    g_assert_cmpint(rx_frame(&t, 0, VIRTIO_NET_MAX_FRAME + 1, 1, NULL), ==, VIRTIO_NET_RX_DROPPED);
    g_assert_cmpint(rx_frame(&t, 0, 1514, 3, &f), ==, VIRTIO_NET_RX_OK);
    virtio_net_rx_flush(&t.dev, 0);
    rx_check(&t, 0, &b, 1, f, 1514);
    g_free(f);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_drop_oversize, ==, 1);
    g_assert_cmpuint(st.rx_drop_no_buffer, ==, 1);
    g_assert_cmpuint(st.rx_no_buffer_events, ==, 1);
    /* An RX queue pair that does not exist. */
    g_assert_cmpint(rx_frame(&t, 7, 60, 1, NULL), ==, VIRTIO_NET_RX_DROPPED);
    net_teardown(&t, false);
}

/* A whole ring of tiny buffers cannot hold the frame: dropped for good, not held forever. */
static void test_rx_mrg_frame_larger_than_ring(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b[QSIZE];
    VirtIONetQueueStats st;

    net_setup(&t, data, &o);
    for (unsigned i = 0; i < QSIZE; i++) {
        rx_post(&t, 0, &b[i], 16, 0);
    }
    g_assert_cmpint(rx_frame(&t, 0, 1500, 1, NULL), ==, VIRTIO_NET_RX_DROPPED);
    g_assert_cmpuint(virtio_queue_inuse(t.dev.queues[0].rx_vq), ==, 0);
    virtio_net_get_queue_stats(&t.dev, 0, &st);
    g_assert_cmpuint(st.rx_drop_too_small, ==, 1);
    net_teardown(&t, false);
}

/* RX is published one used entry per buffer, IN_ORDER or not; frames of every size. */
static void test_rx_never_batched(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    RxBuf b[32];
    VDriverStats ds;
    uint8_t *f[32];

    net_setup(&t, data, &o);
    for (unsigned i = 0; i < 32; i++) {
        rx_post(&t, 0, &b[i], 1526, 0);
    }
    for (unsigned i = 0; i < 32; i++) {
        g_assert_cmpint(rx_frame(&t, 0, 1514 - i * 40, i, &f[i]), ==, VIRTIO_NET_RX_OK);
    }
    virtio_net_rx_flush(&t.dev, 0);
    for (unsigned i = 0; i < 32; i++) {
        rx_check(&t, 0, &b[i], 1, f[i], 1514 - i * 40);
        g_free(f[i]);
    }
    vdriver_get_stats(t.f.dq[0], &ds);
    g_assert_cmpuint(ds.reaped, ==, 32);
    g_assert_cmpuint(ds.used_entries, ==, 32);
    g_assert_cmpuint(ds.batched, ==, 0);
    net_teardown(&t, false);
}

/* A peer that sends every TX frame back on RX (the daemon's loopback), in one burst. */
static bool loop_send(void *opaque, unsigned qp, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    NetTest *t = opaque;

    return virtio_net_receive(&t->dev, qp, iov, iovcnt) != VIRTIO_NET_RX_NO_BUFFERS;
}

static void loop_send_done(void *opaque, unsigned qp)
{
    virtio_net_rx_flush(&((NetTest *)opaque)->dev, qp);
}

static void loop_rx_ready(void *opaque, unsigned qp)
{
    NetTest *t = opaque;

    if (t->dev.queues[qp].tx_waiting) {
        virtio_net_tx_resume(&t->dev, qp);
    }
}

static const VirtIONetPeerOps loop_peer = {
    .send = loop_send,
    .send_done = loop_send_done,
    .rx_ready = loop_rx_ready,
};

static void test_loopback_holds_until_rx_buffers(gconstpointer data)
{
    Opts o = { .mrg_rxbuf = true };
    NetTest t;
    TxBuf tb[8];
    RxBuf rb[8];
    void *tok[8];

    net_setup(&t, data, &o);
    virtio_net_set_peer(&t.dev, &loop_peer, &t);
    for (unsigned i = 0; i < 3; i++) {
        rx_post(&t, 0, &rb[i], 1526, 0);
    }
    for (unsigned i = 0; i < 8; i++) {
        tb[i] = tx_buf(&t, 100 + i, i);
        tok[i] = &tb[i];
        /* One descriptor for header and frame, or the header in 5-byte pieces. */
        tx_post(&t, 1, &tb[i], i & 1 ? 5 : 4096, tok[i]);
    }
    kick(&t, 1);
    tx_reap(&t, 1, tok, 3);
    g_assert_true(t.dev.queues[0].tx_waiting);
    for (unsigned i = 3; i < 8; i++) {
        rx_post(&t, 0, &rb[i], 1526, 0);
    }
    kick(&t, 0);
    tx_reap(&t, 1, tok + 3, 5);
    for (unsigned i = 0; i < 8; i++) {
        rx_check(&t, 0, &rb[i], 1, (uint8_t *)host(&t, tb[i].gpa) + HDR, 100 + i);
    }
    net_teardown(&t, false);
}

/* ---- control queue ---- */

static uint8_t ctrl_cmd(NetTest *t, uint8_t cls, uint8_t cmd, const void *payload, uint32_t len, bool ack)
{
    unsigned q = t->nvq - 1;
    hwaddr h = galloc(t, 2 + len + 1);
    uint8_t *p = host(t, h);
    VDriverSeg out[2] = { { h, 2 }, { h + 2, len } };
    VDriverSeg in[1] = { { h + 2 + len, 1 } };
    uint32_t used;

    p[0] = cls;
    p[1] = cmd;
    if (len) {
        memcpy(p + 2, payload, len);
    }
    p[2 + len] = 0xee;
    g_assert_cmpint(vdriver_add(t->f.dq[q], out, len ? 2 : 1, in, ack ? 1 : 0, p, false), ==, 0);
    kick(t, q);
    if (!ack) {
        return 0xff;
    }
    g_assert_true(vdriver_get_buf(t->f.dq[q], &used, NULL) == p);
    g_assert_cmpuint(used, ==, 1);
    return p[2 + len];
}

static void test_ctrl_commands(gconstpointer data)
{
    Opts o = { .queue_pairs = 2 };
    NetTest t;
    uint8_t on = 1, off = 0, mac[6] = { 0x02, 1, 2, 3, 4, 5 };
    uint8_t table[4 + 12 + 4 + 6];
    uint16_t pairs;
    uint32_t v;
    VirtIONetStats st;

    net_setup(&t, data, &o);
    g_assert_cmpuint(t.nvq, ==, 5);
    g_assert_true(t.dev.ctrl_vq == virtio_get_queue(&t.dev.parent_obj, 4));
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &off, 1, true), ==,
                    VIRTIO_NET_OK);
    g_assert_false(t.dev.promisc);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_ALLMULTI, &on, 1, true), ==,
                    VIRTIO_NET_OK);
    g_assert_true(t.dev.allmulti);
    /* Wrong data size, and a command that needs CTRL_RX_EXTRA. */
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, mac, 2, true), ==,
                    VIRTIO_NET_ERR);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_RX, 2, &on, 1, true), ==, VIRTIO_NET_ERR);

    /* MAC table: two unicast, one multicast entry. */
    v = htole32(2);
    memcpy(table, &v, 4);
    memset(table + 4, 0x02, 12);
    v = htole32(1);
    memcpy(table + 16, &v, 4);
    memset(table + 20, 0x01, 6);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table),
                             true), ==, VIRTIO_NET_OK);
    g_assert_cmpuint(t.dev.mac_table_uni, ==, 2);
    g_assert_cmpuint(t.dev.mac_table_multi, ==, 1);
    /* Counts that lie: huge, one too many, trailing bytes, truncated. */
    v = htole32(0xffffffffu);
    memcpy(table, &v, 4);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table),
                             true), ==, VIRTIO_NET_ERR);
    v = htole32(3);
    memcpy(table, &v, 4);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table),
                             true), ==, VIRTIO_NET_ERR);
    v = htole32(1);
    memcpy(table, &v, 4);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, sizeof(table),
                             true), ==, VIRTIO_NET_ERR);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_TABLE_SET, table, 3, true), ==,
                    VIRTIO_NET_ERR);
    g_assert_cmpuint(t.dev.mac_table_uni, ==, 2);
    /* MAC address. */
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac, 6, true), ==,
                    VIRTIO_NET_OK);
    g_assert_cmpmem(((VirtIONetConfig *)t.dev.parent_obj.config)->mac, 6, mac, 6);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MAC, VIRTIO_NET_CTRL_MAC_ADDR_SET, mac, 5, true), ==,
                    VIRTIO_NET_ERR);

    /* MQ: 1..max pairs. */
    pairs = htole16(2);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, true), ==,
                    VIRTIO_NET_OK);
    g_assert_cmpuint(t.dev.curr_queue_pairs, ==, 2);
    pairs = htole16(3);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, true), ==,
                    VIRTIO_NET_ERR);
    pairs = 0;
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MQ, VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET, &pairs, 2, true), ==,
                    VIRTIO_NET_ERR);
    g_assert_cmpuint(t.dev.curr_queue_pairs, ==, 2);

    /* Unknown classes and commands. */
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_VLAN, 0, &on, 1, true), ==, VIRTIO_NET_ERR);
    g_assert_cmpint(ctrl_cmd(&t, 0xfe, 0x77, NULL, 0, true), ==, VIRTIO_NET_ERR);
    g_assert_cmpint(ctrl_cmd(&t, VIRTIO_NET_CTRL_MQ, 9, &pairs, 2, true), ==, VIRTIO_NET_ERR);
    virtio_net_get_stats(&t.dev, &st);
    g_assert_cmpuint(st.ctrl_ok, ==, 5);
    g_assert_cmpuint(st.ctrl_err, ==, 12);

    /* TX on the second pair reaches the peer with its pair number. */
    {
        TxBuf b = tx_buf(&t, 70, 1);
        void *tok = &b;
        tx_post(&t, 3, &b, 0, tok);
        kick(&t, 3);
        tx_reap(&t, 3, &tok, 1);
        g_assert_cmpuint(((Frame *)g_ptr_array_index(t.frames, 0))->qp, ==, 1);
    }

    /* A command without an ack byte breaks the device. */
    ctrl_cmd(&t, VIRTIO_NET_CTRL_RX, VIRTIO_NET_CTRL_RX_PROMISC, &on, 1, false);
    g_assert_true(t.dev.parent_obj.broken);
    net_teardown(&t, true);
}

static void test_config_space(gconstpointer data)
{
    Opts o = { .queue_pairs = 2 };
    NetTest t;
    VirtIONetConfig *cfg;

    net_setup(&t, data, &o);
    cfg = (VirtIONetConfig *)t.dev.parent_obj.config;
    g_assert_cmpuint(t.dev.parent_obj.config_len, ==, 12);
    g_assert_cmpmem(cfg->mac, 6, "\x02\x00\x00\xaa\xbb\xcc", 6);
    g_assert_cmpuint(le16toh(cfg->status), ==, VIRTIO_NET_S_LINK_UP);
    g_assert_cmpuint(le16toh(cfg->max_virtqueue_pairs), ==, 2);
    g_assert_cmpuint(le16toh(cfg->mtu), ==, 1500);
    g_assert_true(virtio_vdev_has_feature(&t.dev.parent_obj, VIRTIO_NET_F_MQ));
    g_assert_true(virtio_vdev_has_feature(&t.dev.parent_obj, VIRTIO_NET_F_MTU));
    g_assert_true(virtio_vdev_has_feature(&t.dev.parent_obj, VIRTIO_NET_F_STATUS));
    virtio_net_set_link(&t.dev, false);
    g_assert_cmpuint(le16toh(cfg->status), ==, 0);
    net_teardown(&t, false);
}

/* ---- without a layout ---- */

static void test_properties_and_bad_conf(void)
{
    VirtIONetConf conf;
    VirtIONet n;
    GError *err = NULL;
    uint8_t mac[6];

    virtio_net_conf_init(&conf);
    g_assert_false(virtio_net_conf_set(&conf, "no-such", "1", &err));
    g_clear_error(&err);
    g_assert_false(virtio_net_conf_set(&conf, "mac", "01:02:03", &err));
    g_clear_error(&err);
    g_assert_false(virtio_net_conf_set(&conf, "in_order", "maybe", &err));
    g_clear_error(&err);
    g_assert_true(virtio_net_parse_mac("de:ad:be:ef:00:01", mac));
    g_assert_false(virtio_net_parse_mac("de:ad:be:ef:00:01:02", mac));
    conf.rx_queue_size = 100;
    g_assert_false(virtio_net_realize(&n, &conf, NULL, &err));
    g_clear_error(&err);
    virtio_net_conf_init(&conf);
    conf.queue_pairs = 0;
    g_assert_false(virtio_net_realize(&n, &conf, NULL, &err));
    g_clear_error(&err);
    virtio_net_conf_init(&conf);
    conf.mac[0] = 1;            /* multicast */
    g_assert_false(virtio_net_realize(&n, &conf, NULL, &err));
    g_clear_error(&err);
    /* No control queue: two queues, no MQ, no CTRL_* bits. */
    virtio_net_conf_init(&conf);
    conf.ctrl_vq = false;
    conf.queue_pairs = 4;
    g_assert_true(virtio_net_realize(&n, &conf, NULL, &err));
    g_assert_cmpuint(n.parent_obj.num_queues, ==, 8);
    g_assert_false(virtio_has_feature(n.parent_obj.host_features, VIRTIO_NET_F_CTRL_VQ));
    g_assert_false(virtio_has_feature(n.parent_obj.host_features, VIRTIO_NET_F_CTRL_RX));
    g_assert_false(virtio_has_feature(n.parent_obj.host_features, VIRTIO_NET_F_MQ));
    g_assert_false(virtio_has_feature(n.parent_obj.host_features, VIRTIO_NET_F_CSUM));
    g_assert_false(virtio_has_feature(n.parent_obj.host_features, VIRTIO_NET_F_GUEST_CSUM));
    virtio_net_unrealize(&n);
}

int main(int argc, char **argv)
{
    static const VdevTestCase cases[] = {
        { "config-space", test_config_space },
        { "tx-header-split-across-descriptors", test_tx_header_split },
        { "tx-chain-shorter-than-header-breaks-device", test_tx_chain_shorter_than_header },
        { "tx-empty-and-oversized-frames-dropped", test_tx_empty_and_oversized_frames_dropped },
        { "tx-busy-peer-resumes-in-order", test_tx_busy_peer_resumes_in_order },
        { "tx-batched-under-in-order", test_tx_batched_under_in_order },
        { "tx-batch-off", test_tx_batch_off },
        { "rx-single-buffer", test_rx_single_buffer },
        { "rx-mrg-frame-spans-buffers", test_rx_mrg_frame_spans_buffers },
        { "rx-mrg-not-enough-buffers", test_rx_mrg_not_enough_buffers },
        { "rx-buffer-too-small", test_rx_buffer_too_small },
        { "rx-mrg-buffer-shorter-than-header", test_rx_mrg_buffer_shorter_than_header },
        { "rx-oversized-and-no-buffer", test_rx_oversized_and_no_buffer },
        { "rx-mrg-frame-larger-than-ring", test_rx_mrg_frame_larger_than_ring },
        { "rx-never-batched", test_rx_never_batched },
        { "loopback-holds-until-rx-buffers", test_loopback_holds_until_rx_buffers },
        { "ctrl-commands", test_ctrl_commands },
    };

    g_test_init(&argc, &argv, NULL);
    vdf_add_layout_tests("virtio-net", cases, G_N_ELEMENTS(cases));
    g_test_add_func("/virtio-net/properties-and-bad-conf", test_properties_and_bad_conf);
    return g_test_run();
}
