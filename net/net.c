/*
 * Net backends: the netdev registry, the NIC <-> backend peer calls and
 * -netdev option handling (see include/net/net.h).
 *
 * Context: main loop thread only.
 */
#include <glib-unix.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "net/net.h"

/*
 * The netdev types, QEMU's -netdev names. A type lists the options it takes
 * besides "type" and "id"; netdev_new refuses any other, as QEMU does. A
 * new backend adds its row here.
 */
typedef struct NetdevType {
    const char *name;
    const char *const *props;
    NetClientState *(*init)(const char *id, const QDevOpt *opts, unsigned n, char **errp);
} NetdevType;

static const char *const tap_props[] = { "ifname", "script", "downscript", "vhost", "vnet_hdr", NULL };
static const char *const socket_props[] = { "udp", "localaddr", "fd", NULL };
static const char *const stream_props[] = { "server", "addr.type", "addr.host", "addr.port", "addr.path", NULL };
static const char *const hubport_props[] = { "hubid", "queues", NULL };
static const char *const vhost_user_props[] = { "chardev", "queues", NULL };

static const NetdevType netdev_types[] = {
    { "tap", tap_props, net_init_tap },
    { "socket", socket_props, net_init_socket },
    { "stream", stream_props, net_init_stream },
    { "hubport", hubport_props, net_init_hubport },
    { "vhost-user", vhost_user_props, net_init_vhost_user },
};

/* Every netdev, in creation order. */
static GPtrArray *netdevs;

NetClientState *net_client_new(const NetClientInfo *info, size_t size, const char *id)
{
    NetClientState *nc;

    g_assert(size >= sizeof(NetClientState));     /* host-programming invariant */
    nc = g_malloc0(size);
    nc->info = info;
    nc->id = g_strdup(id);
    nc->queues = 1;
    return nc;
}

void net_client_free(NetClientState *nc)
{
    if (!nc) {
        return;
    }
    net_client_detach(nc);
    if (netdevs) {
        g_ptr_array_remove(netdevs, nc);
    }
    if (nc->info->cleanup) {
        nc->info->cleanup(nc);
    }
    g_free(nc->id);
    g_free(nc);
}

NetClientState *net_client_find(const char *id)
{
    for (guint i = 0; netdevs && i < netdevs->len; i++) {
        NetClientState *nc = g_ptr_array_index(netdevs, i);

        if (nc->id && !strcmp(nc->id, id)) {
            return nc;
        }
    }
    return NULL;
}

bool net_client_attach(NetClientState *nc, const NetFrontendOps *fe, void *opaque)
{
    if (nc->fe) {
        return false;
    }
    nc->fe = fe;
    nc->fe_opaque = opaque;
    if (nc->info->attached) {
        nc->info->attached(nc, true);
    }
    return true;
}

void net_client_detach(NetClientState *nc)
{
    if (!nc->fe) {
        return;
    }
    if (nc->info->attached) {
        nc->info->attached(nc, false);
    }
    nc->fe = NULL;
    nc->fe_opaque = NULL;
}

/* ---- NIC -> backend ---- */

bool net_client_send(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt, size_t len)
{
    if (len > NET_MAX_FRAME) {
        nc->stats.tx_dropped++;
        return true;
    }
    if (!nc->info->send(nc, queue, iov, iovcnt, len)) {
        nc->stats.tx_busy++;
        return false;
    }
    return true;
}

void net_client_send_done(NetClientState *nc, unsigned queue)
{
    if (nc->info->send_done) {
        nc->info->send_done(nc, queue);
    }
}

void net_client_rx_ready(NetClientState *nc, unsigned queue)
{
    if (nc->info->rx_ready) {
        nc->info->rx_ready(nc, queue);
    }
}

void net_client_rx_reset(NetClientState *nc)
{
    if (nc->info->rx_reset) {
        nc->info->rx_reset(nc);
    }
}

/* ---- backend -> NIC ---- */

NetRxResult net_client_deliver(NetClientState *nc, unsigned queue, const struct iovec *iov, unsigned iovcnt)
{
    NetRxResult r;
    unsigned nq;

    if (!nc->fe) {
        nc->stats.rx_dropped++;
        return NET_RX_DROPPED;
    }
    /* A source with more queues than the NIC uses now lands on queue (q mod used). */
    nq = nc->fe->rx_queues ? nc->fe->rx_queues(nc->fe_opaque) : 1;
    r = nc->fe->receive(nc->fe_opaque, queue % (nq ? nq : 1), iov, iovcnt);
    switch (r) {
    case NET_RX_OK:
        nc->stats.rx_frames++;
        for (unsigned i = 0; i < iovcnt; i++) {
            nc->stats.rx_bytes += iov[i].iov_len;
        }
        break;
    case NET_RX_BUSY:
        nc->stats.rx_held++;
        break;
    case NET_RX_DROPPED:
        nc->stats.rx_dropped++;
        break;
    }
    return r;
}

bool net_client_deliver_buf(NetClientState *nc, uint8_t *buf, size_t len, size_t *held)
{
    struct iovec iov = { buf, len };

    if (net_client_deliver(nc, 0, &iov, 1) == NET_RX_BUSY) {
        *held = len;
        return false;
    }
    *held = 0;
    return true;
}

void net_fd_watch(GSource **src, int fd, GIOCondition cond, GSourceFunc fn, void *opaque)
{
    if (!*src) {
        *src = g_unix_fd_source_new(fd, cond);
        g_source_set_callback(*src, fn, opaque, NULL);
        g_source_attach(*src, NULL);
    }
}

void net_fd_unwatch(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

void net_client_deliver_flush(NetClientState *nc)
{
    if (nc->fe) {
        nc->fe->flush(nc->fe_opaque);
    }
}

void net_client_tx_resume(NetClientState *nc, unsigned queue)
{
    if (nc->fe) {
        nc->fe->tx_resume(nc->fe_opaque, queue);
    }
}

/* ---- options ---- */

const char *net_opt_get(const QDevOpt *opts, unsigned n, const char *key)
{
    for (unsigned i = n; i-- > 0;) {
        if (!strcmp(opts[i].key, key)) {
            return opts[i].val;
        }
    }
    return NULL;
}

bool net_opt_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")) {
        *out = false;
        return true;
    }
    return false;
}

bool net_parse_host_port(const char *str, int socktype, struct sockaddr_storage *ss, unsigned *sslen,
                         char **errp)
{
    const char *colon = strrchr(str, ':');
    struct addrinfo hints = { .ai_socktype = socktype, .ai_flags = AI_NUMERICSERV }, *res = NULL;
    char *host;
    int r;

    if (!colon || !colon[1]) {
        *errp = g_strdup_printf("host:port expected, not '%s'", str);
        return false;
    }
    host = g_strndup(str, (gsize)(colon - str));
    /* "[::1]:port" and ":port" (any address) as QEMU takes them */
    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = 0;
    }
    if (!host[0]) {
        g_free(host);
        host = g_strdup("0.0.0.0");
    }
    r = getaddrinfo(host, colon + 1, &hints, &res);
    if (r || !res || res->ai_addrlen > sizeof(*ss)) {
        *errp = g_strdup_printf("address resolution failed for %s: %s", str, r ? gai_strerror(r) : "no address");
        g_free(host);
        if (res) {
            freeaddrinfo(res);
        }
        return false;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *sslen = (unsigned)res->ai_addrlen;
    freeaddrinfo(res);
    g_free(host);
    return true;
}

/* "queues=N" (1..256), shared by the types that take it. */
static bool parse_queues(NetClientState *nc, const QDevOpt *opts, unsigned n, char **errp)
{
    const char *v = net_opt_get(opts, n, "queues");
    guint64 q;

    if (!v) {
        return true;
    }
    if (!g_ascii_string_to_unsigned(v, 10, 1, 256, &q, NULL)) {
        *errp = g_strdup_printf("Parameter 'queues' expects a number of queues 1..256, not '%s'", v);
        return false;
    }
    nc->queues = (unsigned)q;
    return true;
}

bool netdev_help(const QDevOpt *opts, unsigned n)
{
    const char *type = net_opt_get(opts, n, "type");

    if (!type || (strcmp(type, "help") && strcmp(type, "?"))) {
        return false;
    }
    printf("Available netdev backend types:\n");
    for (size_t i = 0; i < G_N_ELEMENTS(netdev_types); i++) {
        printf("%s\n", netdev_types[i].name);
    }
    return true;
}

bool netdev_new(const QDevOpt *opts, unsigned n, char **errp)
{
    const char *type = net_opt_get(opts, n, "type"), *id = net_opt_get(opts, n, "id");
    const NetdevType *t = NULL;
    NetClientState *nc;

    if (!type) {
        *errp = g_strdup("Parameter 'type' is missing");
        return false;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(netdev_types); i++) {
        if (!strcmp(netdev_types[i].name, type)) {
            t = &netdev_types[i];
        }
    }
    if (!t) {
        *errp = g_strdup_printf("Parameter 'type' does not accept value '%s'", type);
        return false;
    }
    for (unsigned i = 0; i < n; i++) {
        const char *const *p;

        if (!strcmp(opts[i].key, "type") || !strcmp(opts[i].key, "id")) {
            continue;
        }
        for (p = t->props; *p && strcmp(*p, opts[i].key); p++) {
        }
        if (!*p) {
            *errp = g_strdup_printf("Invalid parameter '%s'", opts[i].key);
            return false;
        }
    }
    if (!id) {
        *errp = g_strdup("Parameter 'id' is missing");
        return false;
    }
    if (net_client_find(id)) {
        *errp = g_strdup_printf("Duplicate ID '%s' for netdev", id);
        return false;
    }
    nc = t->init(id, opts, n, errp);
    if (!nc) {
        return false;
    }
    if (!parse_queues(nc, opts, n, errp)) {
        net_client_free(nc);
        return false;
    }
    if (!netdevs) {
        netdevs = g_ptr_array_new();
    }
    g_ptr_array_add(netdevs, nc);
    return true;
}

void net_cleanup(void)
{
    while (netdevs && netdevs->len) {
        net_client_free(g_ptr_array_index(netdevs, netdevs->len - 1));
    }
    if (netdevs) {
        g_ptr_array_free(netdevs, TRUE);
        netdevs = NULL;
    }
}
