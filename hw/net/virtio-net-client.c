/*
 * virtio-net as the NIC of a net backend (see include/net/virtio-net-client.h).
 *
 * Context: main loop thread only.
 */
#include "net/virtio-net-client.h"

/* ---- device -> backend (VirtIONetPeerOps) ---- */

static bool vnc_send(void *opaque, unsigned qp, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    VirtIONetClient *c = opaque;

    return net_client_send(c->nc, qp, iov, iovcnt, len);
}

static void vnc_send_done(void *opaque, unsigned qp)
{
    VirtIONetClient *c = opaque;

    net_client_send_done(c->nc, qp);
}

static void vnc_rx_ready(void *opaque, unsigned qp)
{
    VirtIONetClient *c = opaque;

    net_client_rx_ready(c->nc, qp);
}

static gboolean vnc_resume_run(gpointer opaque)
{
    VirtIONetClient *c = opaque;

    c->resume_src = 0;
    for (unsigned qp = 0; qp < c->n->max_queue_pairs; qp++) {
        if (c->resume[qp]) {
            c->resume[qp] = false;
            virtio_net_tx_resume(c->n, qp);
        }
    }
    return G_SOURCE_REMOVE;
}

static void vnc_schedule_resume(VirtIONetClient *c, unsigned qp)
{
    if (qp >= c->n->max_queue_pairs) {
        return;
    }
    c->resume[qp] = true;
    if (!c->resume_src) {
        c->resume_src = g_idle_add(vnc_resume_run, c);
    }
}

static void vnc_tx_more(void *opaque, unsigned qp)
{
    vnc_schedule_resume(opaque, qp);
}

static void vnc_reset(void *opaque)
{
    VirtIONetClient *c = opaque;

    net_client_rx_reset(c->nc);
}

static const VirtIONetPeerOps vnc_peer_ops = {
    .send = vnc_send,
    .send_done = vnc_send_done,
    .rx_ready = vnc_rx_ready,
    .tx_more = vnc_tx_more,
    .reset = vnc_reset,
};

/* ---- backend -> device (NetFrontendOps) ---- */

static NetRxResult vnc_receive(void *opaque, unsigned queue, const struct iovec *iov, unsigned iovcnt)
{
    VirtIONetClient *c = opaque;

    switch (virtio_net_receive(c->n, queue, iov, iovcnt)) {
    case VIRTIO_NET_RX_OK:
        return NET_RX_OK;
    case VIRTIO_NET_RX_NO_BUFFERS:
        return NET_RX_BUSY;
    default:
        return NET_RX_DROPPED;
    }
}

static void vnc_flush(void *opaque)
{
    VirtIONetClient *c = opaque;

    for (unsigned qp = 0; qp < c->n->max_queue_pairs; qp++) {
        virtio_net_rx_flush(c->n, qp);
    }
}

static void vnc_tx_resume(void *opaque, unsigned queue)
{
    vnc_schedule_resume(opaque, queue);
}

static unsigned vnc_rx_queues(void *opaque)
{
    VirtIONetClient *c = opaque;

    /* Without MQ negotiated only pair 0 exists for the driver (spec 5.1.2). */
    if (!virtio_vdev_has_feature(&c->n->parent_obj, VIRTIO_NET_F_MQ)) {
        return 1;
    }
    return c->n->curr_queue_pairs ? c->n->curr_queue_pairs : 1;
}

static const NetFrontendOps vnc_frontend_ops = {
    .receive = vnc_receive,
    .flush = vnc_flush,
    .tx_resume = vnc_tx_resume,
    .rx_queues = vnc_rx_queues,
};

bool virtio_net_client_attach(VirtIONetClient *c, VirtIONet *n, NetClientState *nc)
{
    c->n = n;
    c->nc = nc;
    c->resume = g_new0(bool, n->max_queue_pairs);
    c->resume_src = 0;
    if (!net_client_attach(nc, &vnc_frontend_ops, c)) {
        g_free(c->resume);
        c->resume = NULL;
        c->nc = NULL;
        return false;
    }
    virtio_net_set_peer(n, &vnc_peer_ops, c);
    return true;
}

void virtio_net_client_detach(VirtIONetClient *c)
{
    if (!c->nc) {
        return;
    }
    virtio_net_set_peer(c->n, NULL, NULL);
    net_client_detach(c->nc);
    if (c->resume_src) {
        g_source_remove(c->resume_src);
        c->resume_src = 0;
    }
    g_free(c->resume);
    c->resume = NULL;
    c->nc = NULL;
}
