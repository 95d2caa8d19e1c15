/*
 * virtio-net-pci: the virtio-net device model (hw/net/virtio-net.c) behind
 * the virtio-pci transport, its peer a netdev of the device host
 * (include/net/net.h: tap, socket, stream, hubport).
 *
 *   -device virtio-net-pci[,netdev=ID][,mac=52:54:00:..][,mq=on|off][,queues=N][,vectors=N]
 *           [,in_order=..][,packed=..][,event_idx=..][,indirect_desc=..][,rx_queue_size=N]
 *           [,tx_queue_size=N][,mrg_rxbuf=..][,status=..][,ctrl_vq=..][,ctrl_rx=..] ...
 *
 * Queue pairs: queues=N if given (vdm), else with mq=on the netdev's queue
 * count (QEMU takes it from the netdev), else 1. TX runs when the driver
 * notifies a TX queue; RX runs when the netdev has a frame (its fd watch on
 * the main loop) or, for a hub, when the other NIC transmits. Without
 * netdev= frames are dropped (a NIC with its cable out, link still up).
 *
 * Vhost mode (netdev=ID of a -netdev vhost-user): the RX/TX queues of every
 * pair go to the vhost-user backend through the vhost-user device base
 * (hw/virtio/vhost-user-base.c, feature table vhost_user_net_feature_bits);
 * the control queue, the config space (MAC, status, max pairs, mtu) and the
 * device's own feature offer stay with the device model, that offer masked
 * by the table against the backend's (IN_ORDER reaches the driver only with
 * in_order=on and a backend that offers it).
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/vhost-user-pci.h"
#include "hw/virtio/virtio-net.h"
#include "hw/virtio/virtio-pci.h"
#include "net/net.h"
#include "net/virtio-net-client.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

#define TYPE_NAME "virtio-net-pci"

typedef struct VirtIONetPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VirtIONet vnet;
    VirtIONetClient client;     /* client.nc NULL without netdev= or in vhost mode */
    VHostUserBase vhost;        /* vhost mode: vhost.vdev set */
    NetClientState *vhost_nc;   /* vhost mode: the vhost-user netdev */
    unsigned vhost_pairs_on;    /* vhost mode: pairs enabled on the backend (SET_VRING_ENABLE) */
} VirtIONetPCI;

static void vnet_pci_vhost_unrealize(VirtIONetPCI *s)
{
    if (s->vhost.vdev) {
        virtio_net_set_status_hook(&s->vnet, NULL, NULL);
        vhost_user_base_unrealize(&s->vhost);
        s->vhost.vdev = NULL;
        net_vhost_user_release(s->vhost_nc);
        s->vhost_nc = NULL;
    }
}

static void vnet_pci_unrealize(DeviceState *dev)
{
    VirtIONetPCI *s = (VirtIONetPCI *)dev;

    virtio_pci_unrealize(&s->proxy);        /* resets the device: the backend stops its rings */
    virtio_net_client_detach(&s->client);
    vnet_pci_vhost_unrealize(s);
    virtio_net_unrealize(&s->vnet);
    g_free(s);
}

/* Vhost mode: status writes and resets reach the base; the pairs the driver negotiated are the backend's. */
static void vnet_pci_vhost_status(void *opaque, bool reset)
{
    VirtIONetPCI *s = opaque;
    bool mq = virtio_vdev_has_feature(&s->vnet.parent_obj, VIRTIO_NET_F_MQ);

    if (!reset) {
        /* spec 5.1.2: without MQ only pair 0 exists and queue 2 is the control queue (the device model's) */
        vhost_user_base_set_active_queues(&s->vhost, 2 * (mq ? s->vnet.max_queue_pairs : 1));
    }
    vhost_user_base_status_changed(&s->vhost, reset);
}

/* Vhost mode: queue pairs the backend runs since the start (MQ negotiated: all, else one). */
static unsigned vnet_pci_vhost_pairs(VirtIONetPCI *s)
{
    return virtio_vdev_has_feature(&s->vnet.parent_obj, VIRTIO_NET_F_MQ) ? s->vnet.max_queue_pairs : 1;
}

/*
 * As QEMU's virtio_net_set_queue_pairs under vhost: the pairs at or above
 * the driver's VQ_PAIRS_SET count (1 after a reset) are disabled on the
 * backend (SET_VRING_ENABLE 0), so it delivers no frame where the driver
 * does not look. After the backend started and after each control command.
 */
static void vnet_pci_vhost_apply_pairs(VirtIONetPCI *s)
{
    unsigned pairs = vnet_pci_vhost_pairs(s), curr = MIN(s->vnet.curr_queue_pairs, pairs);

    if (!s->vhost.dev.started || curr == s->vhost_pairs_on) {
        return;
    }
    for (unsigned qp = 0; qp < pairs; qp++) {
        bool on = qp < curr;
        unsigned q[2] = { virtio_net_rx_queue(qp), virtio_net_tx_queue(qp) };

        if ((qp < s->vhost_pairs_on) == on) {
            continue;
        }
        for (unsigned i = 0; i < 2; i++) {
            /* -EINVAL: a queue the driver did not set up, never handed over */
            int ret = vhost_dev_set_vring_enable(&s->vhost.dev, q[i], on);

            if (ret != 0 && ret != -EINVAL) {
                fprintf(stderr, "vdm: " TYPE_NAME ": SET_VRING_ENABLE %u %d failed\n", q[i], on);
            }
        }
    }
    s->vhost_pairs_on = curr;
}

static void vnet_pci_vhost_started(VHostUserBase *b)
{
    VirtIONetPCI *s = b->started_opaque;

    s->vhost_pairs_on = vnet_pci_vhost_pairs(s);    /* a start enables every ring it hands over */
    vnet_pci_vhost_apply_pairs(s);
}

/* Vhost mode: the transport's queue notifier (data queues to the backend, the control queue to the core). */
static void vnet_pci_vhost_notify(void *opaque, unsigned n)
{
    VirtIONetPCI *s = opaque;

    vhost_user_base_handle_notify(&s->vhost, n);
    vnet_pci_vhost_apply_pairs(s);      /* a control command may have changed the pairs */
}

/* Vhost mode: the data queues (RX and TX of every pair) are the backend's of netdev @nc. */
static bool vnet_pci_vhost_realize(VirtIONetPCI *s, NetClientState *nc, char **errp)
{
    const char *path;
    unsigned reconnect_ms;
    int fd;

    if (!net_vhost_user_take(nc, &fd, &path, &reconnect_ms, errp)) {
        return false;
    }
    if (!vhost_user_base_realize(&s->vhost, &s->vnet.parent_obj, 2 * s->vnet.max_queue_pairs, TYPE_NAME,
                                 vhost_user_net_feature_bits, path, fd, reconnect_ms, vdm_guest_memory(),
                                 vdm_ram_fd, errp)) {
        s->vhost.vdev = NULL;
        net_vhost_user_release(nc);
        return false;
    }
    s->vhost_nc = nc;
    s->vhost.started = vnet_pci_vhost_started;
    s->vhost.started_opaque = s;
    virtio_net_set_status_hook(&s->vnet, vnet_pci_vhost_status, s);
    return true;
}

static bool set_error(char **errp, GError *gerr, const char *key)
{
    if (g_error_matches(gerr, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION)) {
        *errp = g_strdup_printf("Property '" TYPE_NAME ".%s' not found", key);
    } else {
        *errp = g_strdup(gerr->message);
    }
    g_error_free(gerr);
    return false;
}

static DeviceState *vnet_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIONetConf conf;
    VirtIOPCIConf pconf;
    VirtIONetPCI *s;
    const char *netdev_id = NULL;
    NetClientState *nc = NULL;
    bool mq = false, queues_given = false;
    GError *gerr = NULL;
    int ret;

    virtio_net_conf_init(&conf);
    virtio_pci_conf_init(&pconf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        ret = virtio_pci_conf_set(&pconf, TYPE_NAME, k, v, errp);
        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            continue;
        }
        if (!strcmp(k, "netdev")) {
            netdev_id = v;
            continue;
        }
        if (!strcmp(k, "mq")) {
            if (!qdev_str_bool(v, &mq)) {
                *errp = g_strdup_printf("Parameter 'mq' expects 'on' or 'off'");
                return NULL;
            }
            continue;
        }
        if (!virtio_net_conf_set(&conf, k, v, &gerr)) {
            set_error(errp, gerr, k);
            return NULL;
        }
        queues_given |= !strcmp(k, "queues");
    }
    if (netdev_id) {
        nc = net_client_find(netdev_id);
        if (!nc) {
            *errp = g_strdup_printf("Property '" TYPE_NAME ".netdev' can't find value '%s'", netdev_id);
            return NULL;
        }
        if (net_client_is_vhost_user(nc) ? net_vhost_user_in_use(nc) : nc->fe != NULL) {
            *errp = g_strdup_printf("Property '" TYPE_NAME ".netdev' can't take value '%s', it's in use",
                                    netdev_id);
            return NULL;
        }
    }
    if (!queues_given) {
        conf.queue_pairs = mq && nc ? nc->queues : 1;
    }
    s = g_new0(VirtIONetPCI, 1);
    if (!virtio_net_realize(&s->vnet, &conf, vdm_guest_memory(), &gerr)) {
        set_error(errp, gerr, "");
        g_free(s);
        return NULL;
    }
    if (nc && net_client_is_vhost_user(nc) && !vnet_pci_vhost_realize(s, nc, errp)) {
        virtio_net_unrealize(&s->vnet);
        g_free(s);
        return NULL;
    }
    /* QEMU's default for virtio-net-pci: 2 * queue pairs + 2 (a vector per queue plus config). */
    if (s->vhost.vdev ? !vhost_user_pci_realize(&s->proxy, &s->vhost, TYPE_NAME, 0x020000, &pconf,
                                                s->vnet.parent_obj.num_queues + 1, errp)
                      : !virtio_pci_realize_conf(&s->proxy, &s->vnet.parent_obj, TYPE_NAME, 0x020000, &pconf,
                                                 s->vnet.parent_obj.num_queues + 1, errp)) {
        vnet_pci_vhost_unrealize(s);
        virtio_net_unrealize(&s->vnet);
        g_free(s);
        return NULL;
    }
    if (s->vhost.vdev) {
        virtio_pci_set_queue_notifier(&s->proxy, vnet_pci_vhost_notify, s);
    }
    /* A packet peer; a vhost-user netdev is not one (the backend has the data queues). */
    if (nc && !s->vhost.vdev && !virtio_net_client_attach(&s->client, &s->vnet, nc)) {
        /* checked above: nothing else attaches between */
        g_assert_not_reached();
    }
    s->proxy.pci_dev.qdev.unrealize = vnet_pci_unrealize;
    return &s->proxy.pci_dev.qdev;
}

static void vnet_pci_help(void)
{
    printf(TYPE_NAME " options:\n");
    qdev_print_prop("netdev", "str", "ID of a netdev to use as a backend", NULL);
    qdev_print_prop("mq", "bool", "multi-queue: as many queue pairs as the netdev has (default off)", NULL);
    virtio_pci_conf_help();
    virtio_net_conf_list(qdev_print_prop, NULL);
}

static void vnet_pci_list_props(DeviceState *dev, QDevPropFn *fn, void *opaque)
{
    VirtIONetPCI *s = (VirtIONetPCI *)dev;
    char vectors[16];

    fn("netdev", "str", s->client.nc ? s->client.nc->id : s->vhost_nc ? s->vhost_nc->id : "", opaque);
    fn("mq", "bool", s->vnet.max_queue_pairs > 1 ? "on" : "off", opaque);
    g_snprintf(vectors, sizeof(vectors), "%u", msix_nr_vectors(&s->proxy.pci_dev));
    fn("vectors", "uint32", vectors, opaque);
    virtio_net_conf_list_values(&s->vnet.conf, fn, opaque);
}

static const DeviceTypeInfo virtio_net_pci_info = {
    .name = TYPE_NAME,
    .parent = "virtio-pci",
    .category = "Network devices",
    .desc = "virtio network device on PCI (modern)",
    .create = vnet_pci_new,
    .help = vnet_pci_help,
    .list_props = vnet_pci_list_props,
    .virtio_backend = "virtio-net-device",
};
device_type_init(virtio_net_pci_info)
