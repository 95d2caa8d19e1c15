/*
 * Net backends ("netdevs", QEMU's -netdev) and the peer interface between a
 * backend and the NIC (frontend) that uses it.
 *
 * A NetClientState is a backend: tap (net/tap.c), socket/stream (net/socket.c),
 * hubport (net/hub.c), vhost-user (net/vhost-user.c: no frames here, the NIC
 * runs in vhost mode); one NIC attaches to it (net_client_attach). Frames
 * travel without a virtio-net header both ways, so the interface matches
 * the peer interface of hw/net/virtio-net.c (include/hw/virtio/virtio-net.h)
 * one to one:
 *
 *   NIC TX  -> net_client_send (backend send: taken, or busy)
 *           -> net_client_send_done (end of a TX burst)
 *   NIC RX buffers posted -> net_client_rx_ready (a held frame may go now)
 *   backend frame -> net_client_deliver (frontend receive: OK, BUSY, DROPPED)
 *                 -> net_client_deliver_flush (publish, notify once)
 *   backend can take frames again -> net_client_tx_resume
 *
 * Back-pressure is lossless where the backend can hold: a backend whose
 * frame finds no RX buffer keeps it and stops reading until rx_ready; a
 * NIC whose frame the backend cannot take now leaves it in its ring until
 * tx_resume. Queue indices are queue pairs of the NIC (0 without MQ).
 *
 * Netdev types are rows of one table in net/net.c (netdev_types); a new
 * type (e.g. vhost-user) adds a row with its option names and create
 * function.
 *
 * Context: main loop thread only (glib default main context); fd watches of
 * the backends run there.
 */
#ifndef NET_NET_H
#define NET_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <glib.h>

#include "sysemu/qdev.h"

/* Largest frame a backend carries (QEMU's NET_BUFSIZE: 4096 + 65536). */
#define NET_MAX_FRAME   69632u

typedef struct NetClientState NetClientState;

/* What a frontend says about a delivered frame. */
typedef enum NetRxResult {
    NET_RX_OK,          /* taken (published at the next deliver_flush) */
    NET_RX_BUSY,        /* no RX buffer now: nothing consumed; hold it until rx_ready */
    NET_RX_DROPPED,     /* refused for good (counted by the frontend) */
} NetRxResult;

/* The NIC side, given to net_client_attach. */
typedef struct NetFrontendOps {
    NetRxResult (*receive)(void *opaque, unsigned queue, const struct iovec *iov, unsigned iovcnt);
    /* Publish what receive filled on every queue, one notification per queue. */
    void (*flush)(void *opaque);
    /* The backend can take frames on @queue again (after send returned false). */
    void (*tx_resume)(void *opaque, unsigned queue);
    /* RX queues in use now (steering of multi-queue sources), >= 1. */
    unsigned (*rx_queues)(void *opaque);
} NetFrontendOps;

/* The backend side: one per netdev type. */
typedef struct NetClientInfo {
    const char *type;           /* "tap", "socket", "stream", "hubport" */
    /*
     * A NIC TX frame on @queue (@len bytes in @iov, valid only during the
     * call). Return true when taken (sent, or dropped and counted), false
     * when the backend cannot take it now: it calls net_client_tx_resume
     * for @queue later.
     */
    bool (*send)(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len);
    void (*send_done)(NetClientState *nc, unsigned queue);     /* optional */
    /* The NIC posted RX buffers on @queue: deliver what is held, read again. */
    void (*rx_ready)(NetClientState *nc, unsigned queue);      /* optional */
    /* The NIC was reset: drop what is held for it and read again. */
    void (*rx_reset)(NetClientState *nc);                      /* optional */
    /* A NIC attached (start reading) or detached (stop). */
    void (*attached)(NetClientState *nc, bool on);             /* optional */
    void (*cleanup)(NetClientState *nc);    /* free the backend (net_client_free frees nc) */
} NetClientInfo;

typedef struct NetClientStats {
    uint64_t tx_frames, tx_bytes;   /* NIC TX frames the backend passed on */
    uint64_t tx_dropped;            /* NIC TX frames dropped (no peer, write failed, too big) */
    uint64_t tx_busy;               /* times send said busy */
    uint64_t rx_frames, rx_bytes;   /* frames delivered to the NIC */
    uint64_t rx_dropped;            /* refused by the NIC, or no NIC, or malformed */
    uint64_t rx_held;               /* times a frame waited for RX buffers */
} NetClientStats;

struct NetClientState {
    const NetClientInfo *info;
    char *id;                       /* -netdev id= */
    unsigned queues;                /* queue pairs it serves (queues=, default 1) */
    const NetFrontendOps *fe;       /* NULL: no NIC attached */
    void *fe_opaque;
    NetClientStats stats;
};

/* For backends: allocate @size bytes (the backend struct, NetClientState first). */
NetClientState *net_client_new(const NetClientInfo *info, size_t size, const char *id);
/* Detach, info->cleanup, free. */
void net_client_free(NetClientState *nc);

/* The netdev with id @id, or NULL. */
NetClientState *net_client_find(const char *id);

/*
 * Attach a NIC. Returns false when another NIC uses @nc already. The
 * backend starts reading (info->attached).
 */
bool net_client_attach(NetClientState *nc, const NetFrontendOps *fe, void *opaque);
void net_client_detach(NetClientState *nc);

/* ---- called by the NIC ---- */
bool net_client_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len);
void net_client_send_done(NetClientState *nc, unsigned queue);
void net_client_rx_ready(NetClientState *nc, unsigned queue);
void net_client_rx_reset(NetClientState *nc);

/* ---- called by the backend ---- */
/* Deliver one frame to the NIC's RX on @queue (no NIC: dropped). Counts it. */
NetRxResult net_client_deliver(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt);
/*
 * The same for one frame of @len bytes at @buf on queue 0: when the NIC has
 * no RX buffer, *@held = @len and false (keep buf, stop reading until
 * rx_ready); else *@held = 0 and true.
 */
bool net_client_deliver_buf(NetClientState *nc, uint8_t *buf, size_t len, size_t *held);
void net_client_deliver_flush(NetClientState *nc);
void net_client_tx_resume(NetClientState *nc, unsigned queue);

/* An fd watch on the main loop in *@src (no-op when there is one), and its removal. */
void net_fd_watch(GSource **src, int fd, GIOCondition cond, GSourceFunc fn, void *opaque);
void net_fd_unwatch(GSource **src);

/* ---- -netdev ---- */

/* -netdev TYPE,id=ID,...: create (options as parsed by system/vl.c). Returns false with *@errp set. */
bool netdev_new(const QDevOpt *opts, unsigned n, char **errp);
/* -netdev help: print the types, return true (the caller exits 0). */
bool netdev_help(const QDevOpt *opts, unsigned n);
/* Free every netdev (after the NICs were unplugged). */
void net_cleanup(void);

/* ---- helpers for netdev types ---- */
const char *net_opt_get(const QDevOpt *opts, unsigned n, const char *key);
bool net_opt_bool(const char *v, bool *out);
/* "HOST:PORT" into a socket address (getaddrinfo, numeric port); false with *@errp set. */
bool net_parse_host_port(const char *str, int socktype, struct sockaddr_storage *ss, unsigned *sslen,
                         char **errp);

/* ---- the types (net/tap.c, net/socket.c, net/hub.c, net/vhost-user.c) ---- */

/*
 * Open tap device @ifname (IFF_TAP | IFF_NO_PI, no vnet header: virtio-net
 * negotiates no offloads, so frames cross as plain Ethernet), non-blocking.
 * Returns the fd and the kernel's name in @name_out (IFNAMSIZ), or -1 with
 * *@errp set.
 */
int tap_open(const char *ifname, char *name_out, char **errp);
/* A tap netdev on @ifname (the daemon uses it as well as -netdev tap). */
NetClientState *net_tap_new(const char *id, const char *ifname, char **errp);
const char *net_tap_ifname(NetClientState *nc);

NetClientState *net_init_tap(const char *id, const QDevOpt *opts, unsigned n, char **errp);
NetClientState *net_init_socket(const char *id, const QDevOpt *opts, unsigned n, char **errp);
NetClientState *net_init_stream(const char *id, const QDevOpt *opts, unsigned n, char **errp);
NetClientState *net_init_hubport(const char *id, const QDevOpt *opts, unsigned n, char **errp);

/*
 * vhost-user (net/vhost-user.c): chardev=CHR (a connected client socket
 * chardev, taken at creation), queues=N. Its NIC serves the data queues
 * through the backend (vhost mode) and sends no frames through the netdev.
 */
NetClientState *net_init_vhost_user(const char *id, const QDevOpt *opts, unsigned n, char **errp);
bool net_client_is_vhost_user(const NetClientState *nc);
/* A NIC has the connection now (net_vhost_user_take .. net_vhost_user_release). */
bool net_vhost_user_in_use(const NetClientState *nc);
/*
 * Hand the backend connection to a NIC: *@fd the socket connected at
 * creation (the caller owns it now), or -1 after an earlier NIC had it
 * (connect to *@path again), the socket path and reconnect interval (valid
 * while @nc lives). False with *@errp set while another NIC has it.
 */
bool net_vhost_user_take(NetClientState *nc, int *fd, const char **path, unsigned *reconnect_ms, char **errp);
/* The NIC is gone (unplugged, or failed to realize): another may take the netdev. */
void net_vhost_user_release(NetClientState *nc);

#endif
