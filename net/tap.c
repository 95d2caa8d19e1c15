/*
 * tap netdev: frames to and from a Linux tap device (/dev/net/tun).
 *
 *   -netdev tap,id=ID,ifname=NAME[,script=no][,downscript=no][,vhost=off][,vnet_hdr=off]
 *
 * The device is opened IFF_TAP | IFF_NO_PI without IFF_VNET_HDR: virtio-net
 * here offers no checksum/GSO offloads, so its header carries nothing a tap
 * needs and frames cross as plain Ethernet. Scripts are not run (only
 * script=no/downscript=no are accepted); vhost-net is not used.
 *
 * RX: the fd is watched on the main loop while a NIC is attached; up to
 * TAP_BURST frames per wakeup, one flush per wakeup. A frame that finds no
 * RX buffer is held and reading stops until the NIC posts buffers (the
 * kernel queues meanwhile, or drops when its queue is full). TX: writev;
 * a full tap queue drops the frame, as a NIC would.
 *
 * Used by the device host (-netdev tap) and by contrib/vhost-user-net (--tap).
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "net/net.h"

#define TAP_BURST   64          /* frames read per wakeup */

typedef struct TapState {
    NetClientState nc;          /* first */
    int fd;
    char name[IFNAMSIZ];
    GSource *src;               /* NULL while not reading */
    uint8_t *buf;
    size_t held;                /* bytes of a frame waiting in buf for RX buffers (0: none) */
} TapState;

int tap_open(const char *ifname, char *name_out, char **errp)
{
    struct ifreq ifr;
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);

    if (fd < 0) {
        *errp = g_strdup_printf("could not open /dev/net/tun: %s", g_strerror(errno));
        return -1;
    }
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
    if (ifname) {
        g_strlcpy(ifr.ifr_name, ifname, IFNAMSIZ);
    }
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        *errp = g_strdup_printf("could not configure /dev/net/tun (%s): %s", ifname ? ifname : "",
                                g_strerror(errno));
        close(fd);
        return -1;
    }
    g_strlcpy(name_out, ifr.ifr_name, IFNAMSIZ);
    return fd;
}

static gboolean tap_readable(gint fd, GIOCondition cond, gpointer opaque);

static void tap_watch(TapState *t)
{
    if (t->nc.fe) {
        net_fd_watch(&t->src, t->fd, G_IO_IN, G_SOURCE_FUNC(tap_readable), t);
    }
}

static void tap_unwatch(TapState *t)
{
    net_fd_unwatch(&t->src);
}

/* Deliver the frame in t->buf. Returns false when it must wait for RX buffers. */
static bool tap_deliver(TapState *t, size_t len)
{
    return net_client_deliver_buf(&t->nc, t->buf, len, &t->held);
}

static gboolean tap_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    TapState *t = opaque;
    bool waiting = false;

    for (unsigned i = 0; i < TAP_BURST; i++) {
        ssize_t r = read(t->fd, t->buf, NET_MAX_FRAME);

        if (r <= 0) {
            break;
        }
        if (!tap_deliver(t, (size_t)r)) {
            waiting = true;
            break;
        }
    }
    net_client_deliver_flush(&t->nc);
    if (waiting) {
        g_source_unref(t->src);
        t->src = NULL;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static bool tap_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    TapState *t = (TapState *)nc;

    if (writev(t->fd, iov, (int)iovcnt) == (ssize_t)len) {
        nc->stats.tx_frames++;
        nc->stats.tx_bytes += len;
    } else {
        nc->stats.tx_dropped++;     /* full (EAGAIN) or down */
    }
    return true;
}

static void tap_rx_ready(NetClientState *nc, unsigned queue)
{
    TapState *t = (TapState *)nc;

    if (t->src) {
        return;                     /* reading already */
    }
    if (t->held && !tap_deliver(t, t->held)) {
        return;
    }
    net_client_deliver_flush(nc);
    tap_watch(t);
}

static void tap_rx_reset(NetClientState *nc)
{
    TapState *t = (TapState *)nc;

    if (t->held) {
        t->held = 0;
        nc->stats.rx_dropped++;
    }
    tap_watch(t);
}

static void tap_attached(NetClientState *nc, bool on)
{
    TapState *t = (TapState *)nc;

    if (on) {
        tap_watch(t);
    } else {
        tap_unwatch(t);
        t->held = 0;
    }
}

static void tap_cleanup(NetClientState *nc)
{
    TapState *t = (TapState *)nc;

    tap_unwatch(t);
    close(t->fd);
    g_free(t->buf);
}

static const NetClientInfo tap_info = {
    .type = "tap",
    .send = tap_send,
    .rx_ready = tap_rx_ready,
    .rx_reset = tap_rx_reset,
    .attached = tap_attached,
    .cleanup = tap_cleanup,
};

NetClientState *net_tap_new(const char *id, const char *ifname, char **errp)
{
    char name[IFNAMSIZ];
    int fd = tap_open(ifname, name, errp);
    TapState *t;

    if (fd < 0) {
        return NULL;
    }
    t = (TapState *)net_client_new(&tap_info, sizeof(TapState), id);
    t->fd = fd;
    memcpy(t->name, name, IFNAMSIZ);
    t->buf = g_malloc(NET_MAX_FRAME);
    return &t->nc;
}

const char *net_tap_ifname(NetClientState *nc)
{
    return nc->info == &tap_info ? ((TapState *)nc)->name : NULL;
}

NetClientState *net_init_tap(const char *id, const QDevOpt *opts, unsigned n, char **errp)
{
    static const char *const must_be_off[] = { "vhost", "vnet_hdr", NULL };
    static const char *const scripts[] = { "script", "downscript", NULL };

    for (const char *const *k = must_be_off; *k; k++) {
        const char *v = net_opt_get(opts, n, *k);
        bool on;

        if (v && (!net_opt_bool(v, &on) || on)) {
            *errp = g_strdup_printf("tap: %s=%s is not supported (vdm: %s=off only)", *k, v, *k);
            return NULL;
        }
    }
    for (const char *const *k = scripts; *k; k++) {
        const char *v = net_opt_get(opts, n, *k);

        if (v && strcmp(v, "no") && strcmp(v, "")) {
            *errp = g_strdup_printf("tap: %s=%s: vdm runs no scripts (%s=no only)", *k, v, *k);
            return NULL;
        }
    }
    return net_tap_new(id, net_opt_get(opts, n, "ifname"), errp);
}
