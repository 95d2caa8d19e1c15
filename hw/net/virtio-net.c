/*
 * virtio-net device model (virtio spec 5.1).
 *
 * TX: each buffer is a virtio-net header then one frame, split across
 * descriptors however the driver likes (spec 2.6.4). The handler pops a
 * burst, skips the header, hands each frame to the peer straight from guest
 * memory (no copy, no allocation), fills the buffer with used length 0, and
 * publishes the burst with one flush and at most one notification. Under
 * VIRTIO_F_IN_ORDER a TX burst may be published as one batched used entry.
 *
 * RX: the peer calls virtio_net_receive with a frame; the device pops RX
 * buffers, writes a header and the frame, and fills them. With MRG_RXBUF a
 * frame may span several buffers (num_buffers in the first buffer's header);
 * without it one buffer must hold header and frame. A burst is published by
 * virtio_net_rx_flush. RX never uses batched publication: drivers (DPDK's
 * split in-order RX) read every used entry's length, and a short frame
 * leaves its buffer partly written.
 *
 * Control queue (spec 5.1.6.5): RX mode, MAC table and address, MQ pairs.
 *
 * Context: the thread that runs the queue handlers (see virtio-net.h).
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/qdev-properties.h"
#include "qemu/iov.h"
#include "hw/virtio/virtio-net.h"

#define BIT(b) (1ULL << (b))


/* ---------------------------------------------------------------------- */
/* Properties                                                              */

#define PROP(name_, type_, field_, desc_) DEFINE_PROP((name_), PROP_TYPE_##type_, VirtIONetConf, field_, (desc_))

static const Property net_props[] = {
    PROP("mac", MACADDR, mac, "MAC address (default 52:54:00:12:34:56)"),
    PROP("queues", UINT32, queue_pairs, "queue pairs (vdm; default 1, MQ offered when > 1)"),
    PROP("rx_queue_size", UINT32, rx_queue_size, "largest RX ring (default 256)"),
    PROP("tx_queue_size", UINT32, tx_queue_size, "largest TX ring (= rx_queue_size)"),
    PROP("host_mtu", UINT32, mtu, "offer MTU with this value (default 0: not offered)"),
    PROP("mrg_rxbuf", BOOL, mrg_rxbuf, "offer MRG_RXBUF (default on)"),
    PROP("status", BOOL, status, "offer STATUS (default on)"),
    PROP("ctrl_vq", BOOL, ctrl_vq, "offer the control queue (default on)"),
    PROP("ctrl_rx", BOOL, ctrl_rx, "offer CTRL_RX (default on)"),
    PROP("ctrl_mac_addr", BOOL, ctrl_mac_addr, "offer CTRL_MAC_ADDR (default on)"),
    PROP("in_order", BOOL, in_order, "offer VIRTIO_F_IN_ORDER (default off)"),
    PROP("packed", BOOL, packed, "offer VIRTIO_F_RING_PACKED (default off)"),
    PROP("event_idx", BOOL, event_idx, "offer VIRTIO_RING_F_EVENT_IDX (default on)"),
    PROP("indirect_desc", BOOL, indirect_desc, "offer VIRTIO_RING_F_INDIRECT_DESC (default on)"),
    PROP("tx-batch", BOOL, tx_batch, "IN_ORDER: publish a TX burst as one used entry (default on)"),
    PROP("tx-burst", UINT32, tx_burst, "TX buffers per handler run (default 256)"),
};

void virtio_net_conf_init(VirtIONetConf *conf)
{
    static const uint8_t default_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

    memset(conf, 0, sizeof(*conf));
    memcpy(conf->mac, default_mac, 6);
    conf->queue_pairs = 1;
    conf->rx_queue_size = 256;
    conf->tx_queue_size = 256;
    conf->mrg_rxbuf = true;
    conf->status = true;
    conf->ctrl_vq = true;
    conf->ctrl_rx = true;
    conf->ctrl_mac_addr = true;
    conf->event_idx = true;
    conf->indirect_desc = true;
    conf->tx_batch = true;
    conf->tx_burst = 256;
}

bool virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
    return qdev_prop_parse_mac(s, mac);
}

bool virtio_net_conf_set(VirtIONetConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, net_props, G_N_ELEMENTS(net_props), "virtio-net", name, value, errp);
}

void virtio_net_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                          void *opaque)
{
    qdev_prop_list(net_props, G_N_ELEMENTS(net_props), fn, opaque);
}

void virtio_net_conf_list_values(const VirtIONetConf *conf,
                                 void (*fn)(const char *name, const char *type, const char *value,
                                            void *opaque),
                                 void *opaque)
{
    qdev_prop_list_values(conf, net_props, G_N_ELEMENTS(net_props), fn, opaque);
}

/* ---------------------------------------------------------------------- */
/* Features, configuration space, queue layout                             */

static uint64_t net_device_features(const VirtIONetConf *c)
{
    uint64_t f = BIT(VIRTIO_NET_F_MAC);

    if (c->mrg_rxbuf) {
        f |= BIT(VIRTIO_NET_F_MRG_RXBUF);
    }
    if (c->status) {
        f |= BIT(VIRTIO_NET_F_STATUS);
    }
    if (c->mtu) {
        f |= BIT(VIRTIO_NET_F_MTU);
    }
    if (c->ctrl_vq) {
        f |= BIT(VIRTIO_NET_F_CTRL_VQ);
        if (c->ctrl_rx) {
            f |= BIT(VIRTIO_NET_F_CTRL_RX);
        }
        if (c->ctrl_mac_addr) {
            f |= BIT(VIRTIO_NET_F_CTRL_MAC_ADDR);
        }
    }
    /*
     * spec 5.1.3.1: MQ needs CTRL_VQ. Offered even with CTRL_VQ off when a
     * vhost-user frontend enables pairs itself (QEMU and DPDK handle the
     * control queue on their side): the daemon turns ctrl_vq on then.
     */
    if (c->queue_pairs > 1 && c->ctrl_vq) {
        f |= BIT(VIRTIO_NET_F_MQ);
    }
    /* STYLE.md §7: offer only what the registry lists as implemented. */
    return f & virtio_features_implemented(VIRTIO_ID_NET, VIRTIO_FEATURE_DEVICE);
}

static uint64_t net_ring_features(const VirtIONetConf *c)
{
    return virtio_ring_features_select(c->in_order, c->packed, c->event_idx, c->indirect_desc);
}

static VirtIONetConfig *net_config(VirtIONet *n)
{
    return (VirtIONetConfig *)n->parent_obj.config;
}

static void net_update_config(VirtIONet *n, bool link_up)
{
    VirtIONetConfig cfg;

    memset(&cfg, 0, sizeof(cfg));
    memcpy(cfg.mac, n->conf.mac, 6);
    cfg.status = htole16(link_up ? VIRTIO_NET_S_LINK_UP : 0);
    cfg.max_virtqueue_pairs = htole16((uint16_t)n->max_queue_pairs);
    cfg.mtu = htole16((uint16_t)n->conf.mtu);
    memcpy(net_config(n), &cfg, sizeof(cfg));
}

static void net_handle_rx(VirtIODevice *vdev, VirtQueue *vq);
static void net_handle_tx(VirtIODevice *vdev, VirtQueue *vq);
static void net_handle_ctrl(VirtIODevice *vdev, VirtQueue *vq);

/*
 * spec 5.1.2: the control queue is queue 2 without MQ and 2 * max pairs with
 * it; the queues in between exist only with MQ. Handlers follow the
 * negotiated layout (@mq); before negotiation the MQ layout is assumed.
 */
static void net_set_queue_layout(VirtIONet *n, bool mq)
{
    VirtIODevice *vdev = &n->parent_obj;
    unsigned pairs = mq ? n->max_queue_pairs : 1;
    unsigned ctrl = n->conf.ctrl_vq ? 2 * pairs : UINT32_MAX;

    n->ctrl_vq = NULL;
    for (unsigned i = 0; i < vdev->num_queues; i++) {
        VirtIOHandleOutput h = NULL;

        if (i == ctrl) {
            h = net_handle_ctrl;
            n->ctrl_vq = virtio_get_queue(vdev, i);
        } else if (i < 2 * pairs) {
            h = (i & 1) ? net_handle_tx : net_handle_rx;
        }
        virtio_queue_set_handler(vdev, i, h);
        /*
         * TX buffers are always used completely (length 0): IN_ORDER may
         * batch them. RX never (see the top of this file); nor the control
         * queue. The core keeps this across resets.
         */
        virtio_queue_set_batch(virtio_get_queue(vdev, i), h == net_handle_tx && n->conf.tx_batch);
    }
}

static void net_queue_state_reset(VirtIONetQueue *q)
{
    q->rx_pending = 0;
    q->tx_waiting = false;
    q->tx_running = false;
    q->rx_notify_on = true;
    q->tx_notify_on = true;
}

static void net_set_features(VirtIODevice *vdev, uint64_t features)
{
    VirtIONet *n = VIRTIO_NET(vdev);

    n->mrg_rxbuf = virtio_has_feature(features, VIRTIO_NET_F_MRG_RXBUF);
    /* spec 5.1.6: num_buffers is there with VERSION_1 or MRG_RXBUF. */
    n->hdr_len = (n->mrg_rxbuf || virtio_has_feature(features, VIRTIO_F_VERSION_1))
                 ? sizeof(VirtIONetHdr) : offsetof(VirtIONetHdr, num_buffers);
    net_set_queue_layout(n, virtio_has_feature(features, VIRTIO_NET_F_MQ));
}

static void net_reset(VirtIODevice *vdev)
{
    VirtIONet *n = VIRTIO_NET(vdev);
    bool link_up = le16toh(net_config(n)->status) & VIRTIO_NET_S_LINK_UP;

    for (unsigned i = 0; i < n->max_queue_pairs; i++) {
        net_queue_state_reset(&n->queues[i]);
    }
    n->curr_queue_pairs = 1;
    n->promisc = true;          /* as QEMU: promiscuous until the driver says otherwise */
    n->allmulti = false;
    n->mac_table_uni = n->mac_table_multi = 0;
    n->hdr_len = sizeof(VirtIONetHdr);
    n->mrg_rxbuf = false;
    net_update_config(n, link_up);
    net_set_queue_layout(n, true);
    if (n->peer && n->peer->reset) {
        n->peer->reset(n->peer_opaque);
    }
    if (n->status_hook) {
        n->status_hook(n->status_opaque, true);
    }
}

static void net_set_status(VirtIODevice *vdev, uint8_t status)
{
    VirtIONet *n = VIRTIO_NET(vdev);

    if (n->status_hook) {
        n->status_hook(n->status_opaque, false);
    }
}

static const VirtIODeviceOps virtio_net_ops = {
    .set_features = net_set_features,
    .reset = net_reset,
    .set_status = net_set_status,
};

void virtio_net_set_link(VirtIONet *n, bool up)
{
    VirtIONetConfig *cfg = net_config(n);
    uint16_t old = le16toh(cfg->status);
    uint16_t new = up ? (old | VIRTIO_NET_S_LINK_UP) : (old & ~VIRTIO_NET_S_LINK_UP);

    if (old == new) {
        return;
    }
    cfg->status = htole16(new);
    if (virtio_has_feature(n->parent_obj.host_features, VIRTIO_NET_F_STATUS)) {
        virtio_notify_config(&n->parent_obj);
    }
}

/* ---------------------------------------------------------------------- */
/* Notification state: written only when it changes (STYLE.md §10)         */

static void set_notify(VirtQueue *vq, bool *on, bool enable)
{
    if (*on != enable) {
        *on = enable;
        virtio_queue_set_notification(vq, enable);
    }
}

/* ---------------------------------------------------------------------- */
/* RX                                                                      */

bool virtio_net_rx_running(VirtIONet *n, unsigned qp)
{
    return qp < n->max_queue_pairs && !n->parent_obj.broken &&
           virtio_queue_is_running(&n->parent_obj, virtio_net_rx_queue(qp));
}

VirtIONetRxResult virtio_net_receive(VirtIONet *n, unsigned qp, const struct iovec *iov, unsigned iovcnt)
{
    VirtIODevice *vdev = &n->parent_obj;
    VirtIONetQueue *q;
    VirtQueue *vq;
    VirtIONetHdr hdr;
    size_t len, total, hdr_len = n->hdr_len;
    unsigned nbuf, qnum = 0;
    uint8_t *nb_lo = NULL, *nb_hi = NULL;
    bool retried = false;

    if (qp >= n->max_queue_pairs) {
        return VIRTIO_NET_RX_DROPPED;
    }
    q = &n->queues[qp];
    vq = q->rx_vq;
    if (!virtio_net_rx_running(n, qp)) {
        q->stats.rx_drop_not_ready++;
        return VIRTIO_NET_RX_DROPPED;
    }
    len = iov_size(iov, iovcnt);
    if (len > VIRTIO_NET_MAX_FRAME) {
        q->stats.rx_drop_oversize++;
        return VIRTIO_NET_RX_DROPPED;
    }
    total = hdr_len + len;
    memset(&hdr, 0, sizeof(hdr));
    hdr.gso_type = VIRTIO_NET_HDR_GSO_NONE;
    /* spec 5.1.6.4: without MRG_RXBUF num_buffers (when present) is 1. */
    hdr.num_buffers = htole16(1);

again:
    nbuf = 0;
    for (size_t done = 0; done < total;) {
        VirtQueueElement *e = &q->rx_elems[nbuf];
        size_t w;
        int r = virtqueue_pop_elem(vq, e, q->rx_sg, VIRTQUEUE_MAX_SG);

        if (r < 0) {
            /* A malformed chain broke the device: the ring is not touched again. */
            return VIRTIO_NET_RX_DROPPED;
        }
        if (r == 0) {
            if (vdev->broken) {
                return VIRTIO_NET_RX_DROPPED;
            }
            /* Not enough buffers for this frame: give back what it took. */
            virtqueue_rewind(vq, nbuf);
            if (!n->poll_mode && !retried) {
                /*
                 * Ask for a kick when buffers come, then look again: the
                 * driver may have added some before it could see the
                 * request (the core's barrier pairs with the driver's).
                 */
                set_notify(vq, &q->rx_notify_on, true);
                retried = true;
                if (!virtio_queue_empty(vq)) {
                    goto again;
                }
            }
            q->stats.rx_no_buffer_events++;
            return VIRTIO_NET_RX_NO_BUFFERS;
        }
        if (e->in_num == 0) {
            virtio_error(vdev, "RX queue %u: buffer %u has no device-writable descriptor",
                         virtio_net_rx_queue(qp), e->index);
            return VIRTIO_NET_RX_DROPPED;
        }
        if (nbuf == 0 && e->in_num == 1 && e->in_sg[0].iov_len >= total) {
            /*
             * Fast path: header and frame fit the buffer's first writable
             * segment (nearly always). One buffer, so num_buffers is the 1
             * already in hdr (spec 5.1.6.4). memmove: see iov_copy.
             */
            uint8_t *dst = e->in_sg[0].iov_base;

            if (hdr_len == sizeof(VirtIONetHdr)) {
                memcpy(dst, &hdr, sizeof(VirtIONetHdr));
            } else {
                memcpy(dst, &hdr, offsetof(VirtIONetHdr, num_buffers));
            }
            if (iovcnt == 1) {
                memmove(dst + hdr_len, iov[0].iov_base, len);
            } else {
                iov_copy(e->in_sg, 1, hdr_len, iov, iovcnt, 0);
            }
            e->len = (unsigned)total;
            nbuf = 1;
            break;
        }
        if (nbuf == 0) {
            if (!n->mrg_rxbuf && e->in_len < total) {
                /* spec 5.1.6.3: one buffer per frame; this one cannot hold it. Keep the buffer. */
                virtqueue_unpop(vq, e, 0);
                q->stats.rx_drop_too_small++;
                return VIRTIO_NET_RX_DROPPED;
            }
            if (e->in_len < hdr_len) {
                /*
                 * spec 5.1.6.3.1: with MRG_RXBUF every buffer holds at least a
                 * header; this one does not. Return it empty, drop the frame.
                 */
                virtqueue_fill(vq, e, 0, q->rx_pending++);
                q->stats.rx_drop_malformed++;
                return VIRTIO_NET_RX_DROPPED;
            }
            /* The header may span descriptors: written piecewise, never read back. */
            {
                struct iovec hv = { &hdr, hdr_len };
                iov_copy(e->in_sg, e->in_num, 0, &hv, 1, 0);
            }
            if (hdr_len == sizeof(VirtIONetHdr)) {
                nb_lo = iov_byte(e->in_sg, e->in_num, offsetof(VirtIONetHdr, num_buffers));
                nb_hi = iov_byte(e->in_sg, e->in_num, offsetof(VirtIONetHdr, num_buffers) + 1);
            }
            w = hdr_len + iov_copy(e->in_sg, e->in_num, hdr_len, iov, iovcnt, 0);
        } else {
            w = iov_copy(e->in_sg, e->in_num, 0, iov, iovcnt, done - hdr_len);
        }
        e->len = (unsigned)w;   /* used length, until the fills below */
        done += w;
        nbuf++;
        if (!n->mrg_rxbuf) {
            break;
        }
        if (done < total && nbuf >= (qnum ? qnum : (qnum = virtio_queue_get_num(vdev, virtio_net_rx_queue(qp))))) {
            /* Every buffer of the ring would not hold it: it can never be delivered. */
            virtqueue_rewind(vq, nbuf);
            q->stats.rx_drop_too_small++;
            return VIRTIO_NET_RX_DROPPED;
        }
    }
    if (n->mrg_rxbuf && nb_lo && nb_hi) {
        /* spec 5.1.6.4: num_buffers counts the buffers this frame used. */
        *nb_lo = (uint8_t)nbuf;
        *nb_hi = (uint8_t)(nbuf >> 8);
    }
    for (unsigned i = 0; i < nbuf; i++) {
        virtqueue_fill(vq, &q->rx_elems[i], q->rx_elems[i].len, q->rx_pending++);
    }
    q->stats.rx_frames++;
    q->stats.rx_bytes += len;
    q->stats.rx_buffers += nbuf;
    return VIRTIO_NET_RX_OK;
}

void virtio_net_rx_flush(VirtIONet *n, unsigned qp)
{
    VirtIONetQueue *q;

    if (qp >= n->max_queue_pairs) {
        return;
    }
    q = &n->queues[qp];
    if (!q->rx_pending) {
        return;
    }
    virtqueue_flush(q->rx_vq, q->rx_pending);
    q->rx_pending = 0;
    virtio_notify(&n->parent_obj, q->rx_vq);
}

void virtio_net_rx_drop_no_buffer(VirtIONet *n, unsigned qp)
{
    if (qp < n->max_queue_pairs) {
        n->queues[qp].stats.rx_drop_no_buffer++;
    }
}

/* The driver kicked RX (or the host polls it): buffers may be there for a waiting peer. */
static void net_handle_rx(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIONet *n = VIRTIO_NET(vdev);
    unsigned qp = virtio_get_queue_index(vq) / 2;
    VirtIONetQueue *q = &n->queues[qp];

    /* Kicks are wanted only while a frame waits for buffers (see virtio_net_receive). */
    set_notify(vq, &q->rx_notify_on, false);
    if (n->peer && n->peer->rx_ready) {
        n->peer->rx_ready(n->peer_opaque, qp);
    }
}

/* ---------------------------------------------------------------------- */
/* TX                                                                      */

/*
 * Hand one popped TX buffer to the peer. Returns 0 when it is done with
 * (used with length 0), 1 when the peer is busy (the buffer was given
 * back), -1 after a framing fault (device broken).
 */
static int net_tx_one(VirtIONet *n, VirtIONetQueue *q, unsigned qp, VirtQueueElement *e)
{
    struct iovec *out = e->out_sg;
    unsigned out_num = e->out_num;
    size_t total, len;
    bool ok;

    if (out_num == 1 && out[0].iov_len > n->hdr_len && out[0].iov_len - n->hdr_len <= VIRTIO_NET_MAX_FRAME) {
        /* Fast path: header and frame in one readable segment (nearly always). */
        struct iovec f = { (uint8_t *)out[0].iov_base + n->hdr_len, out[0].iov_len - n->hdr_len };

        if (!n->peer) {
            return 0;
        }
        ok = n->peer->send(n->peer_opaque, qp, &f, 1, f.iov_len);
        len = f.iov_len;
        goto sent;
    }
    total = iov_size(out, out_num);
    if (total < n->hdr_len) {
        /* spec 5.1.6.2: every TX buffer starts with a header (it may span descriptors). */
        virtio_error(&n->parent_obj, "TX queue %u: buffer %u of %zu readable bytes is shorter than the "
                     "%u-byte header", virtio_net_tx_queue(qp), e->index, total, n->hdr_len);
        return -1;
    }
    iov_trim_front(&out, &out_num, n->hdr_len);
    len = total - n->hdr_len;
    if (len == 0) {
        q->stats.tx_drop_malformed++;
        return 0;
    }
    if (len > VIRTIO_NET_MAX_FRAME) {
        q->stats.tx_drop_oversize++;
        return 0;
    }
    if (!n->peer) {
        return 0;
    }
    ok = n->peer->send(n->peer_opaque, qp, out, out_num, len);
sent:
    if (!ok) {
        virtqueue_unpop(q->tx_vq, e, 0);
        q->stats.tx_held++;
        return 1;
    }
    q->stats.tx_frames++;
    q->stats.tx_bytes += len;
    return 0;
}

static void net_tx_run(VirtIONet *n, unsigned qp)
{
    VirtIODevice *vdev = &n->parent_obj;
    VirtIONetQueue *q = &n->queues[qp];
    VirtQueue *vq = q->tx_vq;
    unsigned burst = n->conf.tx_burst ? n->conf.tx_burst : 256;
    unsigned done = 0;
    bool more = false;

    if (q->tx_running || q->tx_waiting) {
        return;
    }
    if (n->poll_mode && virtio_queue_empty(vq)) {
        return;                 /* polled and idle: touch nothing shared */
    }
    q->tx_running = true;
    for (;;) {
        set_notify(vq, &q->tx_notify_on, false);
        while (done < burst) {
            VirtQueueElement e;
            int r = virtqueue_pop_elem(vq, &e, q->tx_sg, VIRTQUEUE_MAX_SG);

            if (r != 1) {
                break;
            }
            r = net_tx_one(n, q, qp, &e);
            if (r < 0) {
                break;
            }
            if (r > 0) {
                q->tx_waiting = true;
                break;
            }
            virtqueue_fill(vq, &e, 0, done++);
        }
        if (vdev->broken || q->tx_waiting) {
            break;
        }
        if (done >= burst && !virtio_queue_empty(vq)) {
            more = true;        /* the re-run takes the rest; kicks may stay off */
            break;
        }
        if (n->poll_mode) {
            break;
        }
        /*
         * A full burst that emptied the ring must re-enable kicks like an
         * empty ring does: breaking out with them off would stall the queue
         * (seen with DPDK virtio-user, packed ring, under ASan timing).
         */
        /* Empty: ask for kicks again, then look once more (a buffer may have slipped in). */
        set_notify(vq, &q->tx_notify_on, true);
        if (virtio_queue_empty(vq)) {
            break;
        }
    }
    if (done) {
        virtqueue_flush(vq, done);
        virtio_notify(vdev, vq);
    }
    q->tx_running = false;
    if (n->peer && n->peer->send_done) {
        n->peer->send_done(n->peer_opaque, qp);
    }
    if (more) {
        if (n->peer && n->peer->tx_more) {
            n->peer->tx_more(n->peer_opaque, qp);
        } else {
            net_tx_run(n, qp);
        }
    }
}

static void net_handle_tx(VirtIODevice *vdev, VirtQueue *vq)
{
    net_tx_run(VIRTIO_NET(vdev), virtio_get_queue_index(vq) / 2);
}

void virtio_net_tx_resume(VirtIONet *n, unsigned qp)
{
    if (qp >= n->max_queue_pairs) {
        return;
    }
    n->queues[qp].tx_waiting = false;
    if (!n->parent_obj.broken && virtio_queue_is_running(&n->parent_obj, virtio_net_tx_queue(qp))) {
        net_tx_run(n, qp);
    }
}

/* ---------------------------------------------------------------------- */
/* Control queue (spec 5.1.6.5)                                            */

/* Command data: a view of the readable bytes after class and command. */
typedef struct CtrlData {
    const struct iovec *iov;
    unsigned cnt;
    size_t len;
} CtrlData;

static uint8_t ctrl_rx(VirtIONet *n, uint8_t cmd, const CtrlData *d)
{
    uint8_t on = 0;

    if (!virtio_vdev_has_feature(&n->parent_obj, VIRTIO_NET_F_CTRL_RX) || d->len != 1) {
        return VIRTIO_NET_ERR;
    }
    iov_to_buf(d->iov, d->cnt, 0, &on, 1);
    switch (cmd) {
    case VIRTIO_NET_CTRL_RX_PROMISC:
        n->promisc = on != 0;
        return VIRTIO_NET_OK;
    case VIRTIO_NET_CTRL_RX_ALLMULTI:
        n->allmulti = on != 0;
        return VIRTIO_NET_OK;
    default:
        /* ALLUNI..NOBCAST need CTRL_RX_EXTRA, which is not offered. */
        return VIRTIO_NET_ERR;
    }
}

static uint8_t ctrl_mac(VirtIONet *n, uint8_t cmd, const CtrlData *d)
{
    VirtIODevice *vdev = &n->parent_obj;
    uint32_t entries[2];
    uint64_t off = 0;

    if (cmd == VIRTIO_NET_CTRL_MAC_ADDR_SET) {
        uint8_t mac[6];

        if (!virtio_vdev_has_feature(vdev, VIRTIO_NET_F_CTRL_MAC_ADDR) || d->len != sizeof(mac)) {
            return VIRTIO_NET_ERR;
        }
        iov_to_buf(d->iov, d->cnt, 0, mac, sizeof(mac));
        memcpy(net_config(n)->mac, mac, sizeof(mac));
        return VIRTIO_NET_OK;
    }
    if (cmd != VIRTIO_NET_CTRL_MAC_TABLE_SET || !virtio_vdev_has_feature(vdev, VIRTIO_NET_F_CTRL_RX)) {
        return VIRTIO_NET_ERR;
    }
    /*
     * Two tables, unicast then multicast: le32 entries, then entries * 6
     * bytes. The counts are the driver's: checked in 64 bits against what
     * it sent, and the tables must fill the command exactly.
     */
    for (unsigned t = 0; t < 2; t++) {
        uint32_t le;

        if (d->len - off < sizeof(le)) {
            return VIRTIO_NET_ERR;
        }
        iov_to_buf(d->iov, d->cnt, off, &le, sizeof(le));
        entries[t] = le32toh(le);
        off += sizeof(le);
        if ((uint64_t)entries[t] * 6 > d->len - off) {
            return VIRTIO_NET_ERR;
        }
        off += (uint64_t)entries[t] * 6;
    }
    if (off != d->len) {
        return VIRTIO_NET_ERR;
    }
    n->mac_table_uni = entries[0];
    n->mac_table_multi = entries[1];
    return VIRTIO_NET_OK;
}

static uint8_t ctrl_mq(VirtIONet *n, uint8_t cmd, const CtrlData *d)
{
    uint16_t pairs;

    if (cmd != VIRTIO_NET_CTRL_MQ_VQ_PAIRS_SET || !virtio_vdev_has_feature(&n->parent_obj, VIRTIO_NET_F_MQ) ||
        d->len != sizeof(pairs)) {
        return VIRTIO_NET_ERR;
    }
    iov_to_buf(d->iov, d->cnt, 0, &pairs, sizeof(pairs));
    pairs = le16toh(pairs);
    /* spec 5.1.6.5.5: 1..max_virtqueue_pairs. */
    if (pairs < 1 || pairs > n->max_queue_pairs) {
        return VIRTIO_NET_ERR;
    }
    n->curr_queue_pairs = pairs;
    return VIRTIO_NET_OK;
}

static void net_handle_ctrl(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIONet *n = VIRTIO_NET(vdev);
    VirtQueueElement e;
    unsigned done = 0;

    for (;;) {
        struct iovec *out;
        unsigned out_num, in_num;
        uint8_t cls_cmd[2], status, *ack;
        CtrlData d;
        int r = virtqueue_pop_elem(vq, &e, n->ctrl_sg, VIRTQUEUE_MAX_SG);

        if (r != 1) {
            break;
        }
        out = e.out_sg;
        out_num = e.out_num;
        in_num = e.in_num;
        /* spec 5.1.6.5: class, command, data (readable), then the ack byte (writable). */
        if (iov_to_buf(out, out_num, 0, cls_cmd, 2) < 2) {
            virtio_error(vdev, "control queue: command %u shorter than its 2-byte header", e.index);
            break;
        }
        ack = NULL;
        while (in_num && !(ack = iov_byte(e.in_sg, in_num, 0))) {
            in_num--;           /* (zero-length segments only) */
        }
        if (!ack) {
            virtio_error(vdev, "control queue: command %u has no writable ack byte", e.index);
            break;
        }
        iov_trim_front(&out, &out_num, 2);
        d.iov = out;
        d.cnt = out_num;
        d.len = iov_size(out, out_num);
        switch (cls_cmd[0]) {
        case VIRTIO_NET_CTRL_RX:
            status = ctrl_rx(n, cls_cmd[1], &d);
            break;
        case VIRTIO_NET_CTRL_MAC:
            status = ctrl_mac(n, cls_cmd[1], &d);
            break;
        case VIRTIO_NET_CTRL_MQ:
            status = ctrl_mq(n, cls_cmd[1], &d);
            break;
        default:
            status = VIRTIO_NET_ERR;
            break;
        }
        *ack = status;
        if (status == VIRTIO_NET_OK) {
            n->stats.ctrl_ok++;
        } else {
            n->stats.ctrl_err++;
        }
        virtqueue_fill(vq, &e, 1, done++);
    }
    if (done) {
        virtqueue_flush(vq, done);
        virtio_notify(vdev, vq);
    }
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

void virtio_net_set_peer(VirtIONet *n, const VirtIONetPeerOps *ops, void *opaque)
{
    n->peer = ops;
    n->peer_opaque = opaque;
}

void virtio_net_set_status_hook(VirtIONet *n, VirtIONetStatusHook *fn, void *opaque)
{
    n->status_hook = fn;
    n->status_opaque = opaque;
}

void virtio_net_set_poll_mode(VirtIONet *n, bool poll)
{
    n->poll_mode = poll;
}

void virtio_net_queue_started(VirtIONet *n, unsigned index)
{
    unsigned qp = index / 2;

    if (!n->queues || qp >= n->max_queue_pairs) {
        return;
    }
    if (index & 1) {
        n->queues[qp].tx_waiting = false;
        n->queues[qp].tx_notify_on = true;
    } else {
        n->queues[qp].rx_pending = 0;
        n->queues[qp].rx_notify_on = true;
    }
}

static bool net_check_conf(const VirtIONetConf *c, GError **errp)
{
    const char *bad = NULL;

    if (c->queue_pairs == 0 || c->queue_pairs > 256) {
        bad = "queues must be 1..256";
    } else if (c->rx_queue_size < 2 || c->rx_queue_size > VIRTQUEUE_MAX_SIZE ||
               (c->rx_queue_size & (c->rx_queue_size - 1)) || c->tx_queue_size != c->rx_queue_size) {
        /* The core takes one maximum for every queue. */
        bad = "rx_queue_size and tx_queue_size must be the same power of two, 2..32768";
    } else if (c->mtu && (c->mtu < 68 || c->mtu > 65535)) {
        bad = "host_mtu must be 68..65535";
    } else if (c->tx_burst == 0 || c->tx_burst > 65536) {
        bad = "tx-burst must be 1..65536";
    } else if (c->mac[0] & 1) {
        bad = "mac must be a unicast address";
    }
    if (bad) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "virtio-net: %s", bad);
        return false;
    }
    return true;
}

bool virtio_net_realize(VirtIONet *n, const VirtIONetConf *conf, GuestMemory *mem, GError **errp)
{
    VirtIODevice *vdev = &n->parent_obj;
    unsigned nq;

    memset(n, 0, sizeof(*n));
    if (!net_check_conf(conf, errp)) {
        return false;
    }
    nq = 2 * conf->queue_pairs + (conf->ctrl_vq ? 1 : 0);
    if (virtio_init(vdev, "virtio-net", VIRTIO_ID_NET, sizeof(VirtIONetConfig), mem, nq,
                    conf->rx_queue_size) < 0) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "virtio-net: virtio_init failed");
        return false;
    }
    n->conf = *conf;
    n->max_queue_pairs = conf->queue_pairs;
    n->queues = g_new0(VirtIONetQueue, n->max_queue_pairs);
    for (unsigned i = 0; i < n->max_queue_pairs; i++) {
        VirtIONetQueue *q = &n->queues[i];

        q->rx_vq = virtio_get_queue(vdev, virtio_net_rx_queue(i));
        q->tx_vq = virtio_get_queue(vdev, virtio_net_tx_queue(i));
        q->rx_elems = g_new0(VirtQueueElement, conf->rx_queue_size);
        q->rx_sg = g_new(struct iovec, VIRTQUEUE_MAX_SG);
        q->tx_sg = g_new(struct iovec, VIRTQUEUE_MAX_SG);
    }
    n->ctrl_sg = g_new(struct iovec, VIRTQUEUE_MAX_SG);
    vdev->ops = &virtio_net_ops;
    vdev->host_features = net_ring_features(conf) | net_device_features(conf);
    net_update_config(n, true);
    net_reset(vdev);
    return true;
}

void virtio_net_unrealize(VirtIONet *n)
{
    if (!n->queues) {
        return;
    }
    virtio_cleanup(&n->parent_obj);
    for (unsigned i = 0; i < n->max_queue_pairs; i++) {
        g_free(n->queues[i].rx_elems);
        g_free(n->queues[i].rx_sg);
        g_free(n->queues[i].tx_sg);
    }
    g_free(n->queues);
    g_free(n->ctrl_sg);
    n->queues = NULL;
}

void virtio_net_get_queue_stats(const VirtIONet *n, unsigned qp, VirtIONetQueueStats *stats)
{
    if (qp < n->max_queue_pairs) {
        *stats = n->queues[qp].stats;
    } else {
        memset(stats, 0, sizeof(*stats));
    }
}

void virtio_net_get_stats(const VirtIONet *n, VirtIONetStats *stats)
{
    *stats = n->stats;
}
