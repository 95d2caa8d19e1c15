/*
 * Socket netdevs, QEMU's syntax and wire formats:
 *
 *   -netdev socket,id=ID,udp=HOST:PORT,localaddr=HOST:PORT
 *       one frame per UDP datagram, sent to udp=, received on localaddr=
 *       from anyone (as QEMU's socket netdev in udp mode);
 *   -netdev socket,id=ID,fd=N
 *       an inherited socket: stream framing (below) on a stream socket, one
 *       frame per datagram on a datagram socket (QEMU's qtests use this);
 *   -netdev stream,id=ID,server=on|off,addr.type=inet,addr.host=H,addr.port=P
 *   -netdev stream,id=ID,server=on|off,addr.type=unix,addr.path=PATH
 *       a stream connection (QEMU 7.2's stream netdev): every frame is a
 *       4-byte big-endian length then the frame. server=on listens and
 *       takes one peer at a time (again after it leaves); server=off
 *       connects at start-up (the peer must be listening).
 *
 * RX: the fd is watched on the main loop while a NIC is attached. A frame
 * that finds no RX buffer is held and reading stops until the NIC posts
 * buffers. A stream length of 0 or above NET_MAX_FRAME is a broken peer:
 * the connection is closed. TX: UDP drops when the socket buffer is full;
 * the stream keeps unsent bytes in an output buffer and says busy while
 * it holds more than STREAM_OUT_MAX, resuming the NIC when it drains.
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/net.h"

#define SOCK_BURST      64                  /* frames read per wakeup */
#define STREAM_HDR      4
#define STREAM_IN_SIZE  (2 * (STREAM_HDR + NET_MAX_FRAME))
#define STREAM_OUT_MAX  (256u * 1024)

typedef struct NetSocketState {
    NetClientState nc;          /* first */
    bool stream;
    int fd;                     /* UDP socket or stream connection; -1: none */
    int listen_fd;              /* stream server=on; -1 otherwise */
    GSource *src;               /* fd readable (or listen_fd acceptable) */
    GSource *out_src;           /* stream: fd writable while out holds bytes */
    struct sockaddr_storage dst;    /* UDP destination */
    unsigned dst_len;
    uint8_t *buf;               /* UDP: one datagram; stream: input bytes */
    size_t in_len;              /* stream: bytes in buf */
    size_t held;                /* UDP: bytes of a held frame (0: none) */
    bool stream_held;           /* stream: the first frame in buf waits for RX buffers */
    GByteArray *out;            /* stream: bytes not yet written */
    bool *tx_waiting;           /* stream, per queue: the NIC waits for out to drain */
    unsigned tx_waiting_n;
    char *unix_path;            /* stream server=on, addr.type=unix: unlinked at cleanup */
} NetSocketState;

static gboolean sock_readable(gint fd, GIOCondition cond, gpointer opaque);
static gboolean sock_acceptable(gint fd, GIOCondition cond, gpointer opaque);

static void sock_unwatch(NetSocketState *s)
{
    net_fd_unwatch(&s->src);
}

static void sock_unwatch_out(NetSocketState *s)
{
    net_fd_unwatch(&s->out_src);
}

/* Watch what there is to watch: the connection, else the listening socket. */
static void sock_watch(NetSocketState *s)
{
    int fd = s->fd >= 0 ? s->fd : s->listen_fd;

    if (fd < 0 || !s->nc.fe) {
        return;
    }
    net_fd_watch(&s->src, fd, G_IO_IN, s->fd >= 0 ? G_SOURCE_FUNC(sock_readable) : G_SOURCE_FUNC(sock_acceptable),
                 s);
}

static void stream_wake_senders(NetSocketState *s)
{
    for (unsigned q = 0; q < s->tx_waiting_n; q++) {
        if (s->tx_waiting[q]) {
            s->tx_waiting[q] = false;
            net_client_tx_resume(&s->nc, q);
        }
    }
}

/* The stream peer left (or broke the framing): forget it; a server listens again. */
static void stream_disconnect(NetSocketState *s)
{
    sock_unwatch(s);
    sock_unwatch_out(s);
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    s->in_len = 0;
    s->stream_held = false;
    g_byte_array_set_size(s->out, 0);
    stream_wake_senders(s);     /* their frames are dropped now: no peer */
    sock_watch(s);
}

/* ---- RX ---- */

/* Deliver the whole frames in buf. Returns false when one waits for RX buffers. */
static bool stream_process(NetSocketState *s)
{
    size_t off = 0;
    bool ok = true;

    while (s->in_len - off >= STREAM_HDR) {
        uint8_t *p = s->buf + off;
        uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        struct iovec iov;

        if (len == 0 || len > NET_MAX_FRAME) {
            s->nc.stats.rx_dropped++;
            stream_disconnect(s);
            return true;
        }
        if (s->in_len - off - STREAM_HDR < len) {
            break;
        }
        iov.iov_base = p + STREAM_HDR;
        iov.iov_len = len;
        if (net_client_deliver(&s->nc, 0, &iov, 1) == NET_RX_BUSY) {
            s->stream_held = true;
            ok = false;
            break;
        }
        off += STREAM_HDR + len;
    }
    if (off) {
        memmove(s->buf, s->buf + off, s->in_len - off);
        s->in_len -= off;
    }
    if (ok) {
        s->stream_held = false;
    }
    return ok;
}

static bool udp_deliver(NetSocketState *s, size_t len)
{
    return net_client_deliver_buf(&s->nc, s->buf, len, &s->held);
}

static gboolean sock_readable(gint fd, GIOCondition cond, gpointer opaque)
{
    NetSocketState *s = opaque;
    bool waiting = false;

    for (unsigned i = 0; i < SOCK_BURST && !waiting; i++) {
        ssize_t r;

        if (!s->stream) {
            r = recv(s->fd, s->buf, NET_MAX_FRAME, MSG_TRUNC);
            if (r < 0) {
                break;
            }
            if (r == 0 || r > NET_MAX_FRAME) {
                if (r) {
                    s->nc.stats.rx_dropped++;   /* longer than any frame: truncated, dropped */
                }
                continue;
            }
            waiting = !udp_deliver(s, (size_t)r);
            continue;
        }
        if (s->in_len == STREAM_IN_SIZE) {
            /* Full (a frame was held): deliver first; a zero-length recv would read as EOF. */
            waiting = !stream_process(s);
            if (s->fd < 0) {
                net_client_deliver_flush(&s->nc);
                return G_SOURCE_REMOVE;
            }
            continue;
        }
        r = recv(s->fd, s->buf + s->in_len, STREAM_IN_SIZE - s->in_len, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            net_client_deliver_flush(&s->nc);
            stream_disconnect(s);
            return G_SOURCE_REMOVE;
        }
        if (r < 0) {
            break;
        }
        s->in_len += (size_t)r;
        waiting = !stream_process(s);
        if (s->fd < 0) {
            net_client_deliver_flush(&s->nc);
            return G_SOURCE_REMOVE;     /* disconnected by a framing fault */
        }
    }
    net_client_deliver_flush(&s->nc);
    if (waiting) {
        g_source_unref(s->src);
        s->src = NULL;
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean sock_acceptable(gint fd, GIOCondition cond, gpointer opaque)
{
    NetSocketState *s = opaque;
    int c = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

    if (c < 0) {
        return G_SOURCE_CONTINUE;
    }
    /* One peer at a time: stop listening, watch the connection. */
    g_source_unref(s->src);
    s->src = NULL;
    s->fd = c;
    sock_watch(s);
    return G_SOURCE_REMOVE;
}

static void sock_rx_ready(NetClientState *nc, unsigned queue)
{
    NetSocketState *s = (NetSocketState *)nc;

    if (s->src || s->fd < 0) {
        return;
    }
    if (s->stream ? (s->stream_held && !stream_process(s)) : (s->held && !udp_deliver(s, s->held))) {
        return;
    }
    net_client_deliver_flush(nc);
    sock_watch(s);
}

/* Drop the frame held for a NIC without RX buffers (a stream's is the first in buf; what follows stays). */
static void sock_drop_held(NetSocketState *s)
{
    if (s->held || s->stream_held) {
        s->nc.stats.rx_dropped++;
    }
    s->held = 0;
    if (s->stream_held) {
        /* drop the held frame (the first in buf), keep what follows */
        s->stream_held = false;
        if (s->in_len >= STREAM_HDR) {
            uint32_t len = (uint32_t)s->buf[0] << 24 | (uint32_t)s->buf[1] << 16 | (uint32_t)s->buf[2] << 8 |
                           s->buf[3];
            size_t drop = STREAM_HDR + (size_t)len;

            /* stream_held means a whole frame heads buf (stream_process checked its length) */
            if (drop <= s->in_len) {
                memmove(s->buf, s->buf + drop, s->in_len - drop);
                s->in_len -= drop;
            }
        }
    }
}

static void sock_rx_reset(NetClientState *nc)
{
    NetSocketState *s = (NetSocketState *)nc;

    sock_drop_held(s);
    sock_watch(s);
}

/* ---- TX ---- */

static bool udp_send(NetSocketState *s, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    struct msghdr msg = {
        .msg_name = s->dst_len ? &s->dst : NULL, .msg_namelen = s->dst_len,   /* fd=: connected */
        .msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt,
    };

    if (sendmsg(s->fd, &msg, MSG_DONTWAIT) == (ssize_t)len) {
        s->nc.stats.tx_frames++;
        s->nc.stats.tx_bytes += len;
    } else {
        s->nc.stats.tx_dropped++;
    }
    return true;
}

static gboolean stream_writable(gint fd, GIOCondition cond, gpointer opaque);

/* Write what out holds; watch for writability while some is left. */
static void stream_flush_out(NetSocketState *s)
{
    while (s->out->len) {
        ssize_t w = send(s->fd, s->out->data, s->out->len, MSG_DONTWAIT | MSG_NOSIGNAL);

        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            if (errno == EINTR) {
                continue;
            }
            stream_disconnect(s);
            return;
        }
        g_byte_array_remove_range(s->out, 0, (guint)w);
    }
    if (s->out->len) {
        net_fd_watch(&s->out_src, s->fd, G_IO_OUT, G_SOURCE_FUNC(stream_writable), s);
    }
    if (s->out->len < STREAM_OUT_MAX) {
        stream_wake_senders(s);
    }
}

static gboolean stream_writable(gint fd, GIOCondition cond, gpointer opaque)
{
    NetSocketState *s = opaque;

    g_source_unref(s->out_src);
    s->out_src = NULL;
    stream_flush_out(s);
    return G_SOURCE_REMOVE;
}

static bool stream_send(NetSocketState *s, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    uint8_t hdr[STREAM_HDR] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };

    if (s->fd < 0) {
        s->nc.stats.tx_dropped++;       /* no peer (yet) */
        return true;
    }
    if (s->out->len >= STREAM_OUT_MAX) {
        if (queue < s->tx_waiting_n) {
            s->tx_waiting[queue] = true;
        }
        return false;
    }
    g_byte_array_append(s->out, hdr, sizeof(hdr));
    for (unsigned i = 0; i < iovcnt; i++) {
        g_byte_array_append(s->out, iov[i].iov_base, (guint)iov[i].iov_len);
    }
    s->nc.stats.tx_frames++;
    s->nc.stats.tx_bytes += len;
    return true;
}

static bool sock_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    NetSocketState *s = (NetSocketState *)nc;

    return s->stream ? stream_send(s, queue, iov, iovcnt, len) : udp_send(s, iov, iovcnt, len);
}

/* End of a TX burst: one write for the whole burst. */
static void sock_send_done(NetClientState *nc, unsigned queue)
{
    NetSocketState *s = (NetSocketState *)nc;

    if (s->stream && s->fd >= 0 && !s->out_src) {
        stream_flush_out(s);
    }
}

/* ---- life cycle ---- */

static void sock_attached(NetClientState *nc, bool on)
{
    NetSocketState *s = (NetSocketState *)nc;

    if (on) {
        if (!s->tx_waiting) {
            s->tx_waiting_n = nc->queues;
            s->tx_waiting = g_new0(bool, s->tx_waiting_n);
        }
        sock_watch(s);
    } else {
        /* The next NIC must not receive a frame held for this one. */
        sock_unwatch(s);
        sock_drop_held(s);
    }
}

static void sock_cleanup(NetClientState *nc)
{
    NetSocketState *s = (NetSocketState *)nc;

    sock_unwatch(s);
    sock_unwatch_out(s);
    if (s->fd >= 0) {
        close(s->fd);
    }
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
    }
    if (s->unix_path) {
        unlink(s->unix_path);   /* the socket file we created (as QEMU does) */
        g_free(s->unix_path);
    }
    g_free(s->buf);
    g_free(s->tx_waiting);
    if (s->out) {
        g_byte_array_free(s->out, TRUE);
    }
}

/* UDP and stream differ only in their type name: one set of ops. */
#define SOCKET_INFO(type_) {                                                    \
        .type = (type_), .send = sock_send, .send_done = sock_send_done,        \
        .rx_ready = sock_rx_ready, .rx_reset = sock_rx_reset,                   \
        .attached = sock_attached, .cleanup = sock_cleanup,                     \
    }
static const NetClientInfo socket_info = SOCKET_INFO("socket");
static const NetClientInfo stream_info = SOCKET_INFO("stream");

static NetSocketState *sock_new(const NetClientInfo *info, const char *id, bool stream)
{
    NetSocketState *s = (NetSocketState *)net_client_new(info, sizeof(NetSocketState), id);

    s->stream = stream;
    s->fd = s->listen_fd = -1;
    s->buf = g_malloc(stream ? STREAM_IN_SIZE : NET_MAX_FRAME);
    s->out = g_byte_array_new();
    return s;
}

/*
 * fd=N: a socket inherited from the parent (QEMU's qtests pass one end of a
 * socketpair): a stream socket speaks the stream netdev's framing, a
 * datagram socket one frame per datagram to its connected peer.
 */
static NetClientState *socket_from_fd(const char *id, const char *v, char **errp)
{
    guint64 fd;
    int type = 0;
    socklen_t len = sizeof(type);
    NetSocketState *s;

    if (!g_ascii_string_to_unsigned(v, 10, 0, INT32_MAX, &fd, NULL) ||
        getsockopt((int)fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 ||
        (type != SOCK_STREAM && type != SOCK_DGRAM)) {
        *errp = g_strdup_printf("socket: fd=%s is not a stream or datagram socket", v);
        return NULL;
    }
    fcntl((int)fd, F_SETFL, fcntl((int)fd, F_GETFL) | O_NONBLOCK);
    fcntl((int)fd, F_SETFD, FD_CLOEXEC);
    s = sock_new(&socket_info, id, type == SOCK_STREAM);
    s->fd = (int)fd;
    return &s->nc;
}

NetClientState *net_init_socket(const char *id, const QDevOpt *opts, unsigned n, char **errp)
{
    const char *udp = net_opt_get(opts, n, "udp"), *local = net_opt_get(opts, n, "localaddr");
    const char *fd_s = net_opt_get(opts, n, "fd");
    struct sockaddr_storage la;
    unsigned la_len;
    NetSocketState *s;
    int fd;

    if (fd_s && !udp && !local) {
        return socket_from_fd(id, fd_s, errp);
    }
    if (!udp || !local || fd_s) {
        *errp = g_strdup("socket: vdm takes udp=HOST:PORT,localaddr=HOST:PORT or fd=N "
                         "(listen=, connect=, mcast= are not supported)");
        return NULL;
    }
    s = sock_new(&socket_info, id, false);
    if (!net_parse_host_port(udp, SOCK_DGRAM, &s->dst, &s->dst_len, errp) ||
        !net_parse_host_port(local, SOCK_DGRAM, &la, &la_len, errp)) {
        net_client_free(&s->nc);
        return NULL;
    }
    fd = socket(la.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&la, la_len) < 0) {
        *errp = g_strdup_printf("can't bind ip=%s to socket: %s", local, g_strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        net_client_free(&s->nc);
        return NULL;
    }
    s->fd = fd;
    return &s->nc;
}

NetClientState *net_init_stream(const char *id, const QDevOpt *opts, unsigned n, char **errp)
{
    const char *type = net_opt_get(opts, n, "addr.type"), *server_s = net_opt_get(opts, n, "server");
    struct sockaddr_storage ss;
    unsigned ss_len = 0;
    bool server = false;
    NetSocketState *s;
    int fd;

    if (server_s && !net_opt_bool(server_s, &server)) {
        *errp = g_strdup("Parameter 'server' expects 'on' or 'off'");
        return NULL;
    }
    if (!type) {
        *errp = g_strdup("Parameter 'addr.type' is missing");
        return NULL;
    }
    memset(&ss, 0, sizeof(ss));
    if (!strcmp(type, "inet")) {
        const char *host = net_opt_get(opts, n, "addr.host"), *port = net_opt_get(opts, n, "addr.port");
        char *hp;
        bool ok;

        if (!host || !port) {
            *errp = g_strdup_printf("Parameter 'addr.%s' is missing", host ? "port" : "host");
            return NULL;
        }
        hp = g_strdup_printf(strchr(host, ':') ? "[%s]:%s" : "%s:%s", host, port);
        ok = net_parse_host_port(hp, SOCK_STREAM, &ss, &ss_len, errp);
        g_free(hp);
        if (!ok) {
            return NULL;
        }
    } else if (!strcmp(type, "unix")) {
        const char *path = net_opt_get(opts, n, "addr.path");
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;

        if (!path) {
            *errp = g_strdup("Parameter 'addr.path' is missing");
            return NULL;
        }
        if (strlen(path) >= sizeof(un->sun_path)) {
            *errp = g_strdup_printf("UNIX socket path '%s' is too long", path);
            return NULL;
        }
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, path);
        ss_len = sizeof(*un);
    } else {
        *errp = g_strdup_printf("Parameter 'addr.type' does not accept value '%s' (vdm: inet, unix)", type);
        return NULL;
    }
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *errp = g_strdup_printf("socket: %s", g_strerror(errno));
        return NULL;
    }
    if (server) {
        int one = 1;

        if (ss.ss_family != AF_UNIX) {
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        }
        if (bind(fd, (struct sockaddr *)&ss, ss_len) < 0 || listen(fd, 1) < 0) {
            *errp = g_strdup_printf("can't listen: %s", g_strerror(errno));
            close(fd);
            return NULL;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    } else if (connect(fd, (struct sockaddr *)&ss, ss_len) < 0) {
        *errp = g_strdup_printf("can't connect: %s", g_strerror(errno));
        close(fd);
        return NULL;
    } else {
        int one = 1;

        if (ss.ss_family != AF_UNIX) {
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    }
    s = sock_new(&stream_info, id, true);
    if (server) {
        s->listen_fd = fd;
        if (ss.ss_family == AF_UNIX) {
            s->unix_path = g_strdup(((struct sockaddr_un *)&ss)->sun_path);
        }
    } else {
        s->fd = fd;
    }
    return &s->nc;
}
