/*
 * hubport netdev: a port of a hub that forwards every frame to every other
 * port of the same hub (QEMU's "hub" / old -net vlan), so NICs can talk with
 * no host networking.
 *
 *   -netdev hubport,id=ID,hubid=N[,queues=Q]
 *
 * A frame from a NIC's TX queue q goes straight into each other port's NIC
 * RX queue (q mod the queues that NIC uses): no copy, no queue. Back-pressure:
 * with exactly one other port, a frame that finds no RX buffer stays in the
 * sender's TX ring (send says busy) and the sender is resumed when that NIC
 * posts RX buffers; with more ports a port without buffers misses the frame
 * (counted in that port's rx_dropped) so one slow NIC cannot stall the
 * others. queues=Q (a vdm extension) is how many queue
 * pairs a NIC on the port may use (its MQ default).
 *
 * Context: main loop thread only.
 */
#include <string.h>

#include "net/net.h"

typedef struct Hub Hub;

typedef struct HubPort {
    NetClientState nc;          /* first */
    Hub *hub;
    /* Per queue pair of this port's NIC: TX waits for another port's RX buffers. */
    bool *waiting;
} HubPort;

struct Hub {
    unsigned id;
    GPtrArray *ports;
};

static GPtrArray *hubs;

static bool hub_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    HubPort *src = (HubPort *)nc;
    GPtrArray *ports = src->hub->ports;
    HubPort *only = NULL;
    unsigned others = 0;

    for (guint i = 0; i < ports->len; i++) {
        HubPort *p = g_ptr_array_index(ports, i);

        if (p != src && p->nc.fe) {
            only = p;
            others++;
        }
    }
    if (others == 0) {
        nc->stats.tx_dropped++;
        return true;
    }
    if (others == 1) {
        if (net_client_deliver(&only->nc, queue, iov, iovcnt) == NET_RX_BUSY) {
            if (queue < src->nc.queues) {
                src->waiting[queue] = true;
            }
            return false;
        }
    } else {
        for (guint i = 0; i < ports->len; i++) {
            HubPort *p = g_ptr_array_index(ports, i);

            if (p != src && p->nc.fe && net_client_deliver(&p->nc, queue, iov, iovcnt) == NET_RX_BUSY) {
                p->nc.stats.rx_dropped++;
            }
        }
    }
    nc->stats.tx_frames++;
    nc->stats.tx_bytes += len;
    return true;
}

/* End of a NIC's TX burst: publish what it delivered to the other ports, one flush (and notification) each. */
static void hub_send_done(NetClientState *nc, unsigned queue)
{
    HubPort *src = (HubPort *)nc;
    GPtrArray *ports = src->hub->ports;

    for (guint i = 0; i < ports->len; i++) {
        HubPort *p = g_ptr_array_index(ports, i);

        if (p != src && p->nc.fe) {
            net_client_deliver_flush(&p->nc);
        }
    }
}

/* A NIC on @nc posted RX buffers (or was reset): resume every sender waiting for it. */
static void hub_wake_senders(NetClientState *nc)
{
    HubPort *dst = (HubPort *)nc;
    GPtrArray *ports = dst->hub->ports;

    for (guint i = 0; i < ports->len; i++) {
        HubPort *p = g_ptr_array_index(ports, i);

        for (unsigned q = 0; p != dst && q < p->nc.queues; q++) {
            if (p->waiting[q]) {
                p->waiting[q] = false;
                net_client_tx_resume(&p->nc, q);
            }
        }
    }
}

static void hub_rx_ready(NetClientState *nc, unsigned queue)
{
    hub_wake_senders(nc);
}

static void hub_attached(NetClientState *nc, bool on)
{
    if (!on) {
        hub_wake_senders(nc);   /* nobody waits for a NIC that left: their frames get dropped */
    }
}

static void hub_cleanup(NetClientState *nc)
{
    HubPort *port = (HubPort *)nc;
    Hub *hub = port->hub;

    g_ptr_array_remove(hub->ports, port);
    g_free(port->waiting);
    if (!hub->ports->len) {
        g_ptr_array_remove(hubs, hub);
        g_ptr_array_free(hub->ports, TRUE);
        g_free(hub);
        if (!hubs->len) {
            g_ptr_array_free(hubs, TRUE);
            hubs = NULL;
        }
    }
}

static const NetClientInfo hubport_info = {
    .type = "hubport",
    .send = hub_send,
    .send_done = hub_send_done,
    .rx_ready = hub_rx_ready,
    .rx_reset = hub_wake_senders,
    .attached = hub_attached,
    .cleanup = hub_cleanup,
};

NetClientState *net_init_hubport(const char *id, const QDevOpt *opts, unsigned n, char **errp)
{
    const char *v = net_opt_get(opts, n, "hubid"), *qv = net_opt_get(opts, n, "queues");
    guint64 hubid, queues = 1;
    HubPort *port;
    Hub *hub = NULL;

    if (!v) {
        *errp = g_strdup("Parameter 'hubid' is missing");
        return NULL;
    }
    if (!g_ascii_string_to_unsigned(v, 10, 0, INT32_MAX, &hubid, NULL)) {
        *errp = g_strdup_printf("Parameter 'hubid' expects int32, not '%s'", v);
        return NULL;
    }
    /* the waiting table is sized here; net.c checks the same range again */
    if (qv && !g_ascii_string_to_unsigned(qv, 10, 1, 256, &queues, NULL)) {
        *errp = g_strdup_printf("Parameter 'queues' expects a number of queues 1..256, not '%s'", qv);
        return NULL;
    }
    for (guint i = 0; hubs && i < hubs->len; i++) {
        Hub *h = g_ptr_array_index(hubs, i);

        if (h->id == hubid) {
            hub = h;
        }
    }
    if (!hub) {
        hub = g_new0(Hub, 1);
        hub->id = (unsigned)hubid;
        hub->ports = g_ptr_array_new();
        if (!hubs) {
            hubs = g_ptr_array_new();
        }
        g_ptr_array_add(hubs, hub);
    }
    port = (HubPort *)net_client_new(&hubport_info, sizeof(HubPort), id);
    port->hub = hub;
    port->waiting = g_new0(bool, queues);
    port->nc.queues = (unsigned)queues;
    g_ptr_array_add(hub->ports, port);
    return &port->nc;
}
