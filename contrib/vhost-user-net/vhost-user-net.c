/*
 * vdm-vhost-user-net: the virtio-net device model served over a vhost-user
 * socket (DPDK virtio-user, QEMU's -netdev vhost-user, vdm's test frontend).
 *
 *   vdm-vhost-user-net --socket PATH [--queues N] [--queue-size N]
 *       [--in-order on|off] [--packed on|off] [--mrg-rxbuf on|off]
 *       [--mac XX:XX:XX:XX:XX:XX] [--busy-poll]
 *       (--loopback | --tap NAME | --peer-socket PATH2)
 *
 * Where frames go:
 *   --loopback      every TX frame comes back on the same queue pair's RX
 *                   (the benchmark mode: copied from the TX buffer straight
 *                   into RX buffers, one flush and one notification per burst);
 *   --tap NAME      a tap device (IFF_TAP | IFF_NO_PI, no vnet header), RX
 *                   on queue pair 0: the device host's tap netdev (net/tap.c)
 *                   with the same virtio-net glue (hw/net/virtio-net-client.c);
 *   --peer-socket   a second vhost-user socket: A's TX goes to B's RX and
 *                   back (a two-port switch).
 * A frame that finds no RX buffer waits (TX on that pair stops until the
 * driver posts RX buffers); a frame for an RX ring that is not running is
 * dropped and counted.
 *
 * --busy-poll polls every ring in a loop of its own without waiting for kicks
 * (as DPDK's vhost PMD does under testpmd): kicks are disabled once, calls
 * are sent only when the driver asks for them.
 *
 * Log lines scripts rely on (fixed form):
 *   vdm-vhost-user-net: negotiated features 0x%016llx: NAME,NAME,...
 *   vdm-vhost-user-net: VIRTIO_F_IN_ORDER negotiated | NOT negotiated
 *   vdm-vhost-user-net: VIRTIO_F_RING_PACKED negotiated | NOT negotiated
 *   vdm-vhost-user-net: VIRTIO_NET_F_MRG_RXBUF negotiated | NOT negotiated
 * Statistics (per queue pair, per queue) on disconnect, SIGUSR1 and SIGTERM.
 *
 * Context: single-threaded; one glib main loop runs messages, kicks and the
 * tap device; with --busy-poll the poll loop runs it between rounds.
 */
#include <glib-unix.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/uio.h>

#include "hw/virtio/vhost-user-backend.h"
#include "hw/virtio/virtio-net.h"
#include "net/net.h"
#include "net/virtio-net-client.h"
#include "vdmd.h"

#define POLL_ROUNDS 256         /* busy-poll rounds between main-loop iterations */

typedef struct Daemon Daemon;

typedef struct Port {
    Daemon *d;
    const char *name;           /* "A", "B", or "" with one port */
    char *socket;
    VirtIONet dev;
    VhostUserBackend *be;
    struct Port *dst;           /* where our TX frames go (NULL: tap) */
    struct Port *src;           /* whose TX frames come to our RX (NULL: tap) */
    bool features_logged;
    VirtQueueStats *q_last;     /* per queue: latest seen this connection */
    VirtQueueStats *q_acc;      /* per queue: finished connections */
    bool *resume;               /* per pair: run TX again from the idle source */
    guint resume_src;
    unsigned connections;
} Port;

struct Daemon {
    GMainLoop *loop;
    Port port[2];
    unsigned nports;
    NetClientState *tap;        /* --tap: the tap netdev, port 0 its NIC */
    VirtIONetClient tap_client;
    bool busy_poll;
};

/* ---- statistics ---- */

static void snapshot_queues(Port *p)
{
    vdmd_queue_stats_snapshot(&p->dev.parent_obj, p->q_last);
}

static void acc_queues(Port *p)
{
    for (unsigned n = 0; n < p->dev.parent_obj.num_queues; n++) {
        vdmd_queue_stats_add(&p->q_acc[n], &p->q_last[n]);
    }
    memset(p->q_last, 0, p->dev.parent_obj.num_queues * sizeof(p->q_last[0]));
}

static const char *port_tag(Port *p, char *buf, size_t size)
{
    if (!p->name[0]) {
        return "";
    }
    snprintf(buf, size, " port %s", p->name);
    return buf;
}

/* Counters since the daemon started (device counters are never reset). */
static void print_stats(Port *p, const char *why)
{
    VirtIODevice *vdev = &p->dev.parent_obj;
    VirtIONetStats ns;
    char tagbuf[16];
    const char *tag = port_tag(p, tagbuf, sizeof(tagbuf));
    uint64_t txf = 0, rxf = 0;

    snapshot_queues(p);
    for (unsigned qp = 0; qp < p->dev.max_queue_pairs; qp++) {
        VirtIONetQueueStats s;

        virtio_net_get_queue_stats(&p->dev, qp, &s);
        txf += s.tx_frames;
        rxf += s.rx_frames;
        vdmd_log("stats (%s)%s: queue pair %u: tx frames=%" PRIu64 " bytes=%" PRIu64 " rx frames=%" PRIu64
                 " bytes=%" PRIu64 " buffers=%" PRIu64 " rx_drop_no_buffer=%" PRIu64 " rx_drop_too_small=%"
                 PRIu64 " rx_drop_oversize=%" PRIu64 " rx_drop_not_ready=%" PRIu64 " rx_drop_malformed=%"
                 PRIu64 " tx_drop_oversize=%" PRIu64 " tx_drop_malformed=%" PRIu64 " tx_waits=%" PRIu64
                 " rx_waits=%" PRIu64, why, tag, qp, s.tx_frames, s.tx_bytes, s.rx_frames, s.rx_bytes,
                 s.rx_buffers, s.rx_drop_no_buffer, s.rx_drop_too_small, s.rx_drop_oversize,
                 s.rx_drop_not_ready, s.rx_drop_malformed, s.tx_drop_oversize, s.tx_drop_malformed, s.tx_held,
                 s.rx_no_buffer_events);
    }
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        const VirtQueueStats *a = &p->q_acc[n], *l = &p->q_last[n];
        const char *kind = p->dev.ctrl_vq && n == vdev->num_queues - 1 ? "ctrl" : (n & 1) ? "tx" : "rx";

        if (!a->popped && !l->popped) {
            continue;
        }
        vdmd_log("stats (%s)%s: queue %u (%s): popped=%" PRIu64 " used buffers=%" PRIu64 " used entries=%"
                 PRIu64 " flushes=%" PRIu64 " notifies=%" PRIu64, why, tag, n, kind, a->popped + l->popped,
                 a->used + l->used, a->used_entries + l->used_entries, a->flushes + l->flushes,
                 a->notifies + l->notifies);
    }
    virtio_net_get_stats(&p->dev, &ns);
    vdmd_log("stats (%s)%s: total tx frames=%" PRIu64 " rx frames=%" PRIu64 " ctrl ok=%" PRIu64 " err=%" PRIu64
             " connections=%u", why, tag, txf, rxf, ns.ctrl_ok, ns.ctrl_err, p->connections);
}

static void print_all_stats(Daemon *d, const char *why)
{
    for (unsigned i = 0; i < d->nports; i++) {
        print_stats(&d->port[i], why);
    }
    if (d->tap) {
        const NetClientStats *t = &d->tap->stats;

        vdmd_log("stats (%s): tap %s: tx frames=%" PRIu64 " tx_drop_write=%" PRIu64 " rx frames=%" PRIu64
                 " rx_drop=%" PRIu64, why, net_tap_ifname(d->tap), t->tx_frames, t->tx_dropped, t->rx_frames,
                 t->rx_dropped);
    }
}

/* ---- deferred TX runs (a burst hit its budget, or a peer ring stopped) ---- */

static gboolean resume_cb(gpointer opaque)
{
    Port *p = opaque;

    p->resume_src = 0;
    for (unsigned qp = 0; qp < p->dev.max_queue_pairs; qp++) {
        if (p->resume[qp]) {
            p->resume[qp] = false;
            virtio_net_tx_resume(&p->dev, qp);
        }
    }
    return G_SOURCE_REMOVE;
}

static void schedule_resume(Port *p, unsigned qp)
{
    p->resume[qp] = true;
    if (!p->resume_src && !p->d->busy_poll) {
        p->resume_src = g_idle_add(resume_cb, p);
    }
}

/* ---- loopback and two-port peers ---- */

static bool port_send(void *opaque, unsigned qp, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    Port *p = opaque, *dst = p->dst;

    /* No buffer: hold (TX on this pair waits for the driver's RX buffers). */
    return virtio_net_receive(&dst->dev, qp % dst->dev.max_queue_pairs, iov, iovcnt) !=
           VIRTIO_NET_RX_NO_BUFFERS;
}

static void port_send_done(void *opaque, unsigned qp)
{
    Port *p = opaque, *dst = p->dst;

    virtio_net_rx_flush(&dst->dev, qp % dst->dev.max_queue_pairs);
}

static void port_rx_ready(void *opaque, unsigned qp)
{
    Port *p = opaque, *src = p->src;

    for (unsigned sqp = qp; sqp < src->dev.max_queue_pairs; sqp += p->dev.max_queue_pairs) {
        if (src->dev.queues[sqp].tx_waiting) {
            virtio_net_tx_resume(&src->dev, sqp);
        }
    }
}

static void port_tx_more(void *opaque, unsigned qp)
{
    schedule_resume(opaque, qp);
}

static const VirtIONetPeerOps port_peer = {
    .send = port_send,
    .send_done = port_send_done,
    .rx_ready = port_rx_ready,
    .tx_more = port_tx_more,
};

/* ---- busy polling ---- */

/* One busy-poll round over every queue pair of every port. */
static inline void poll_round(Daemon *d)
{
    for (unsigned i = 0; i < d->nports; i++) {
        Port *p = &d->port[i];
        VirtIODevice *vdev = &p->dev.parent_obj;

        for (unsigned qp = 0; qp < p->dev.max_queue_pairs; qp++) {
            /* RX first: a TX pair waiting for RX buffers resumes from there. */
            virtio_queue_notify(vdev, virtio_net_rx_queue(qp));
            if (p->resume[qp]) {
                p->resume[qp] = false;
                virtio_net_tx_resume(&p->dev, qp);
            } else {
                virtio_queue_notify(vdev, virtio_net_tx_queue(qp));
            }
        }
    }
}

/*
 * The busy-poll loop: POLL_ROUNDS rounds over the rings, then one
 * non-blocking main-context iteration (vhost-user messages, signals, tap).
 * glib stays out of the per-round path.
 */
static void poll_run(Daemon *d)
{
    GMainContext *ctx = g_main_loop_get_context(d->loop);

    while (!vdmd_quit_requested()) {
        for (unsigned round = 0; round < POLL_ROUNDS; round++) {
            poll_round(d);
        }
        g_main_context_iteration(ctx, FALSE);
    }
}

/* ---- vhost-user hooks ---- */

static void log_features(Port *p)
{
    VirtIODevice *vdev = &p->dev.parent_obj;

    if (p->name[0]) {
        vdmd_log("port %s (%s) connected", p->name, p->socket);
    }
    vdmd_log_negotiated(vdev, VIRTIO_ID_NET);
    vdmd_log("VIRTIO_NET_F_MRG_RXBUF %s", vdmd_negotiated(vdev, VIRTIO_NET_F_MRG_RXBUF));
}

static void on_queue_started(void *opaque, unsigned n, bool started)
{
    Port *p = opaque;

    if (started) {
        if (!p->features_logged) {
            p->features_logged = true;
            p->connections++;
            log_features(p);
        }
        virtio_net_queue_started(&p->dev, n);
        return;
    }
    /*
     * Nothing is in flight between handler runs (every burst is published
     * before it returns). A TX pair elsewhere waiting for this RX ring must
     * not wait forever: run it again, its frames are then dropped.
     */
    snapshot_queues(p);
    if (!(n & 1) && p->src && n / 2 < p->dev.max_queue_pairs) {
        for (unsigned sqp = n / 2; sqp < p->src->dev.max_queue_pairs; sqp += p->dev.max_queue_pairs) {
            if (p->src->dev.queues[sqp].tx_waiting) {
                schedule_resume(p->src, sqp);
            }
        }
    }
}

static void on_reset(void *opaque)
{
    Port *p = opaque;

    if (p->features_logged) {
        print_stats(p, "disconnect");
    }
    snapshot_queues(p);
    acc_queues(p);
    p->features_logged = false;
    if (p->d->tap) {
        net_client_rx_reset(p->d->tap);     /* a frame held for the old rings is dropped */
    }
}

static const VhostUserBackendOps daemon_ops = {
    .queue_started = on_queue_started,
    .reset = on_reset,
};

static gboolean on_usr1(gpointer opaque)
{
    print_all_stats(opaque, "SIGUSR1");
    return G_SOURCE_CONTINUE;
}

/* ---- command line ---- */

static bool port_init(Daemon *d, Port *p, const char *name, const char *socket, const VirtIONetConf *conf,
                      GError **errp)
{
    unsigned nq;

    p->d = d;
    p->name = name;
    p->socket = g_strdup(socket);
    if (!virtio_net_realize(&p->dev, conf, NULL, errp)) {
        return false;
    }
    nq = p->dev.parent_obj.num_queues;
    p->q_last = g_new0(VirtQueueStats, nq);
    p->q_acc = g_new0(VirtQueueStats, nq);
    p->resume = g_new0(bool, p->dev.max_queue_pairs);
    virtio_net_set_poll_mode(&p->dev, d->busy_poll);
    p->be = vhost_user_backend_new(&p->dev.parent_obj, &daemon_ops, p);
    if (!p->be) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "cannot create the vhost-user backend");
        return false;
    }
    return true;
}

static void port_cleanup(Port *p)
{
    vhost_user_backend_free(p->be);
    p->be = NULL;
    if (p->resume_src) {
        g_source_remove(p->resume_src);
        p->resume_src = 0;
    }
    virtio_net_unrealize(&p->dev);
    g_free(p->q_last);
    g_free(p->q_acc);
    g_free(p->resume);
    g_free(p->socket);
}

int main(int argc, char **argv)
{
    char *socket_path = NULL, *peer_socket = NULL, *tap_name = NULL, *mac = NULL;
    char *in_order = NULL, *packed = NULL, *mrg_rxbuf = NULL;
    gboolean loopback = FALSE, busy_poll = FALSE;
    gint queues = 1, queue_size = 1024, mtu = 0;
    GOptionEntry entries[] = {
        { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path, "vhost-user socket to listen on", "PATH" },
        { "queues", 0, 0, G_OPTION_ARG_INT, &queues, "queue pairs (default 1; MQ offered when > 1)", "N" },
        { "queue-size", 0, 0, G_OPTION_ARG_INT, &queue_size, "largest ring (default 1024, power of two)", "N" },
        VDMD_RING_OPTIONS(in_order, packed),
        { "mrg-rxbuf", 0, 0, G_OPTION_ARG_STRING, &mrg_rxbuf, "offer VIRTIO_NET_F_MRG_RXBUF (default on)",
          "on|off" },
        { "mac", 0, 0, G_OPTION_ARG_STRING, &mac, "MAC address (default 52:54:00:12:34:56)", "XX:..:XX" },
        { "mtu", 0, 0, G_OPTION_ARG_INT, &mtu, "offer VIRTIO_NET_F_MTU with this MTU (default: not offered)",
          "N" },
        { "loopback", 0, 0, G_OPTION_ARG_NONE, &loopback, "send every TX frame back on RX", NULL },
        { "tap", 0, 0, G_OPTION_ARG_STRING, &tap_name, "exchange frames with tap device NAME", "NAME" },
        { "peer-socket", 0, 0, G_OPTION_ARG_FILENAME, &peer_socket,
          "second vhost-user socket: switch frames between the two", "PATH2" },
        { "busy-poll", 0, 0, G_OPTION_ARG_NONE, &busy_poll, "poll the rings instead of waiting for kicks",
          NULL },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    VirtIONetConf conf;
    GError *err = NULL;
    Daemon d;
    int ret = 1;

    memset(&d, 0, sizeof(d));
    if (!vdmd_parse_args("vdm-vhost-user-net", "- virtio-net vhost-user backend", entries, &argc, &argv, &err)) {
        goto out;
    }
    if (!socket_path) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "--socket is required");
        goto out;
    }
    if (!!loopback + !!tap_name + !!peer_socket != 1) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED,
                    "exactly one of --loopback, --tap, --peer-socket is required");
        goto out;
    }
    if (queues < 1 || queues > 256 || queue_size < 2 || queue_size > 32768 || (queue_size & (queue_size - 1)) ||
        mtu < 0 || mtu > 65535) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--queues must be 1..256, --queue-size a power of two 2..32768, --mtu 68..65535");
        goto out;
    }

    virtio_net_conf_init(&conf);
    conf.in_order = true;       /* the daemon offers IN_ORDER unless told not to */
    conf.packed = true;         /* the frontend decides whether to use it */
    conf.queue_pairs = (uint32_t)queues;
    conf.rx_queue_size = conf.tx_queue_size = (uint32_t)queue_size;
    conf.mtu = (uint32_t)mtu;
    /* The frontend (QEMU, DPDK) runs the control queue itself; CTRL_VQ stays offered for MQ. */
    if (!vdmd_parse_on_off("--in-order", in_order, &conf.in_order, &err) ||
        !vdmd_parse_on_off("--packed", packed, &conf.packed, &err) ||
        !vdmd_parse_on_off("--mrg-rxbuf", mrg_rxbuf, &conf.mrg_rxbuf, &err)) {
        goto out;
    }
    if (mac && !virtio_net_conf_set(&conf, "mac", mac, &err)) {
        goto out;
    }
    d.busy_poll = busy_poll;
    /* A frontend that shrinks its memfd under us must break the device, not kill the daemon. */
    if (vhost_user_backend_guard_sigbus() < 0) {
        vdmd_log("cannot install the SIGBUS guard");
    }

    d.nports = peer_socket ? 2 : 1;
    if (!port_init(&d, &d.port[0], peer_socket ? "A" : "", socket_path, &conf, &err)) {
        goto out;
    }
    if (peer_socket) {
        /* The second port gets the next MAC address. */
        conf.mac[5]++;
        if (!port_init(&d, &d.port[1], "B", peer_socket, &conf, &err)) {
            goto out;
        }
        d.port[0].dst = d.port[0].src = &d.port[1];
        d.port[1].dst = d.port[1].src = &d.port[0];
        virtio_net_set_peer(&d.port[0].dev, &port_peer, &d.port[0]);
        virtio_net_set_peer(&d.port[1].dev, &port_peer, &d.port[1]);
    } else if (loopback) {
        d.port[0].dst = d.port[0].src = &d.port[0];
        virtio_net_set_peer(&d.port[0].dev, &port_peer, &d.port[0]);
    } else {
        char *msg = NULL;

        d.tap = net_tap_new("tap", tap_name, &msg);
        if (!d.tap) {
            g_set_error(&err, G_FILE_ERROR, G_FILE_ERROR_FAILED, "%s", msg);
            g_free(msg);
            goto out;
        }
        virtio_net_client_attach(&d.tap_client, &d.port[0].dev, d.tap);
    }
    for (unsigned i = 0; i < d.nports; i++) {
        Port *p = &d.port[i];

        if (vhost_user_backend_listen(p->be, p->socket, &err) < 0) {
            goto out;
        }
        vdmd_log("listening on %s%s%s: %s, %u queue pair(s) of up to %u, mac %02x:%02x:%02x:%02x:%02x:%02x%s",
                 p->socket, p->name[0] ? " as port " : "", p->name,
                 loopback ? "loopback" : d.tap ? "tap" : "two-port switch", p->dev.max_queue_pairs,
                 conf.rx_queue_size, p->dev.conf.mac[0], p->dev.conf.mac[1], p->dev.conf.mac[2],
                 p->dev.conf.mac[3], p->dev.conf.mac[4], p->dev.conf.mac[5], busy_poll ? ", busy-poll" : "");
        vdmd_log_offered(&p->dev.parent_obj, VIRTIO_ID_NET);
    }
    if (d.tap) {
        vdmd_log("tap device %s", net_tap_ifname(d.tap));
    }

    d.loop = vdmd_main_loop_new();
    g_unix_signal_add(SIGUSR1, on_usr1, &d);
    if (busy_poll) {
        poll_run(&d);
    } else {
        g_main_loop_run(d.loop);
    }

    vdmd_log("terminating");
    /* Closing the connections stops every ring (on_reset prints each connection's counters). */
    for (unsigned i = 0; i < d.nports; i++) {
        vhost_user_backend_free(d.port[i].be);
        d.port[i].be = NULL;
    }
    print_all_stats(&d, "total");
    ret = 0;

out:
    vdmd_report_error(&err);
    if (d.tap) {
        virtio_net_client_detach(&d.tap_client);
        net_client_free(d.tap);
    }
    for (unsigned i = 0; i < 2; i++) {
        if (d.port[i].socket) {
            port_cleanup(&d.port[i]);
        }
    }
    if (d.loop) {
        g_main_loop_unref(d.loop);
    }
    g_free(socket_path);
    g_free(peer_socket);
    g_free(tap_name);
    g_free(mac);
    g_free(in_order);
    g_free(packed);
    g_free(mrg_rxbuf);
    return ret;
}
