/*
 * -netdev vhost-user,id=ID,chardev=CHR[,queues=N]: a netdev whose frames
 * never pass through the device host. The NIC that uses it (virtio-net-pci)
 * hands its data queues to the vhost-user backend behind the chardev (vhost
 * mode, include/hw/virtio/vhost-user-base.h) and keeps only its control
 * queue. As QEMU, the netdev takes the connected client chardev when it is
 * created; the NIC takes the connection from the netdev. A NIC plugged
 * after an earlier one was unplugged connects again by the socket path.
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <unistd.h>

#include "net/net.h"
#include "sysemu/chardev.h"

typedef struct NetVhostUserState {
    NetClientState nc;          /* first */
    int fd;                     /* the connected socket until a NIC takes it; -1 then */
    bool in_use;                /* a NIC has the connection (net_vhost_user_take .. _release) */
    char *chr_id;               /* the chardev, claimed while the netdev lives */
    char *path;                 /* the chardev's socket path (reconnects) */
    unsigned reconnect_ms;
} NetVhostUserState;

/* Only a NIC in vhost mode uses this netdev: a frame sent to it has nowhere to go. */
static bool vhost_user_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt,
                            size_t len)
{
    nc->stats.tx_dropped++;
    return true;
}

static void vhost_user_cleanup(NetClientState *nc)
{
    NetVhostUserState *s = (NetVhostUserState *)nc;

    if (s->fd >= 0) {
        close(s->fd);
    }
    chardev_release_vhost_user(s->chr_id);
    g_free(s->chr_id);
    g_free(s->path);
}

static const NetClientInfo net_vhost_user_info = {
    .type = "vhost-user",
    .send = vhost_user_send,
    .cleanup = vhost_user_cleanup,
};

NetClientState *net_init_vhost_user(const char *id, const QDevOpt *opts, unsigned n, char **errp)
{
    const char *chr_id = net_opt_get(opts, n, "chardev"), *path;
    NetVhostUserState *s;
    unsigned reconnect_ms;
    int fd;

    if (!chardev_take_vhost_user("vhost-user", chr_id, &fd, &path, &reconnect_ms, errp)) {
        return NULL;
    }
    s = (NetVhostUserState *)net_client_new(&net_vhost_user_info, sizeof(*s), id);
    s->fd = fd;
    s->chr_id = g_strdup(chr_id);
    s->path = g_strdup(path);
    s->reconnect_ms = reconnect_ms;
    return &s->nc;
}

bool net_client_is_vhost_user(const NetClientState *nc)
{
    return nc->info == &net_vhost_user_info;
}

bool net_vhost_user_in_use(const NetClientState *nc)
{
    return net_client_is_vhost_user(nc) && ((const NetVhostUserState *)nc)->in_use;
}

bool net_vhost_user_take(NetClientState *nc, int *fd, const char **path, unsigned *reconnect_ms, char **errp)
{
    NetVhostUserState *s = (NetVhostUserState *)nc;

    if (!net_client_is_vhost_user(nc) || s->in_use) {
        *errp = g_strdup_printf("netdev '%s': the vhost-user connection is in use", nc->id);
        return false;
    }
    s->in_use = true;
    *fd = s->fd;
    s->fd = -1;
    *path = s->path;
    *reconnect_ms = s->reconnect_ms;
    return true;
}

void net_vhost_user_release(NetClientState *nc)
{
    ((NetVhostUserState *)nc)->in_use = false;
}
