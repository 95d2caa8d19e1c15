/*
 * Net backends (net/) in-process against a fake NIC: -netdev option checks,
 * hub forwarding, steering and back-pressure, the stream netdev's framing
 * under arbitrary read boundaries, bad lengths and a busy NIC, stream TX
 * back-pressure, and UDP both ways. The glib main loop runs in this thread.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <glib.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "net/net.h"

typedef struct FakeNic {
    NetClientState *nc;
    bool busy;                  /* receive says BUSY */
    unsigned queues;            /* rx_queues */
    GPtrArray *frames;          /* GByteArray copies of what receive took */
    unsigned last_queue;
    unsigned flushes;
    unsigned resumes[4];
} FakeNic;

static NetRxResult fake_receive(void *opaque, unsigned queue, const struct iovec *iov, unsigned iovcnt)
{
    FakeNic *f = opaque;
    GByteArray *b;

    if (f->busy) {
        return NET_RX_BUSY;
    }
    b = g_byte_array_new();
    for (unsigned i = 0; i < iovcnt; i++) {
        g_byte_array_append(b, iov[i].iov_base, (guint)iov[i].iov_len);
    }
    g_ptr_array_add(f->frames, b);
    f->last_queue = queue;
    return NET_RX_OK;
}

static void fake_flush(void *opaque)
{
    ((FakeNic *)opaque)->flushes++;
}

static void fake_tx_resume(void *opaque, unsigned queue)
{
    FakeNic *f = opaque;

    g_assert_cmpuint(queue, <, G_N_ELEMENTS(f->resumes));
    f->resumes[queue]++;
}

static unsigned fake_rx_queues(void *opaque)
{
    return ((FakeNic *)opaque)->queues;
}

static const NetFrontendOps fake_ops = {
    .receive = fake_receive,
    .flush = fake_flush,
    .tx_resume = fake_tx_resume,
    .rx_queues = fake_rx_queues,
};

static void fake_attach(FakeNic *f, const char *id)
{
    memset(f, 0, sizeof(*f));
    f->queues = 1;
    f->frames = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
    f->nc = net_client_find(id);
    g_assert_nonnull(f->nc);
    g_assert_true(net_client_attach(f->nc, &fake_ops, f));
}

static void fake_free(FakeNic *f)
{
    g_ptr_array_free(f->frames, TRUE);
}

/* -netdev ARG (QemuOpts syntax, "type" implied first); returns the error or NULL. */
static char *netdev(const char *arg)
{
    char **parts = g_strsplit(arg, ",", -1);
    unsigned n = g_strv_length(parts);
    QDevOpt *opts = g_new0(QDevOpt, n);
    char *err = NULL;

    for (unsigned i = 0; i < n; i++) {
        char *eq = strchr(parts[i], '=');

        if (i == 0 && !eq) {
            opts[i].key = "type";
            opts[i].val = parts[i];
        } else {
            g_assert_nonnull(eq);
            *eq = 0;
            opts[i].key = parts[i];
            opts[i].val = eq + 1;
        }
    }
    if (netdev_new(opts, n, &err)) {
        g_assert_null(err);
    } else {
        g_assert_nonnull(err);
    }
    g_free(opts);
    g_strfreev(parts);
    return err;
}

static void expect_error(const char *arg, const char *msg)
{
    char *err = netdev(arg);

    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err, msg));
    g_free(err);
}

static void frame_fill(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 7 + seed * 31);
    }
}

static void check_frame(GByteArray *b, size_t len, unsigned seed)
{
    uint8_t *want = g_malloc(len);

    frame_fill(want, len, seed);
    g_assert_cmpmem(b->data, b->len, want, len);
    g_free(want);
}

static bool send_frame(NetClientState *nc, unsigned queue, size_t len, unsigned seed)
{
    uint8_t *buf = g_malloc(len);
    struct iovec iov[2] = { { buf, len / 3 }, { buf + len / 3, len - len / 3 } };
    bool r;

    frame_fill(buf, len, seed);
    r = net_client_send(nc, queue, iov, 2, len);
    g_free(buf);
    return r;
}

/* Run the main loop until @cond(@opaque) holds (bounded). */
static void loop_until(bool (*cond)(void *), void *opaque)
{
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    while (!cond(opaque)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_main_context_iteration(NULL, FALSE);
        g_usleep(100);
    }
}

/* A few idle rounds: what is ready is handled. */
static void loop_settle(void)
{
    for (unsigned i = 0; i < 50; i++) {
        g_main_context_iteration(NULL, FALSE);
        g_usleep(200);
    }
}

static void test_options(void)
{
    expect_error("bogus,id=x", "Parameter 'type' does not accept value 'bogus'");
    expect_error("hubport,id=x,hubid=0,foo=1", "Invalid parameter 'foo'");
    expect_error("hubport,hubid=0", "Parameter 'id' is missing");
    expect_error("hubport,id=x", "Parameter 'hubid' is missing");
    expect_error("hubport,id=x,hubid=-1", "expects int32");
    expect_error("hubport,id=x,hubid=0,queues=0", "queues");
    expect_error("hubport,id=x,hubid=0,queues=257", "queues");
    expect_error("socket,id=x,udp=127.0.0.1:1", "localaddr");
    expect_error("socket,id=x,udp=127.0.0.1,localaddr=127.0.0.1:0", "host:port");
    expect_error("stream,id=x,server=maybe,addr.type=inet", "server");
    expect_error("stream,id=x,addr.type=vsock", "addr.type");
    expect_error("stream,id=x,addr.type=inet,addr.host=127.0.0.1", "addr.port");
    expect_error("socket,id=x,fd=abc", "not a stream or datagram socket");
    expect_error("socket,id=x,fd=1000000", "not a stream or datagram socket");
    expect_error("tap,id=x,vhost=on", "vhost");
    expect_error("tap,id=x,script=/etc/qemu-ifup", "script");
    g_assert_null(netdev("hubport,id=dup,hubid=5"));
    expect_error("hubport,id=dup,hubid=5", "Duplicate ID 'dup'");
    net_cleanup();
    g_assert_null(net_client_find("dup"));
}

static void test_hub_two_ports(void)
{
    FakeNic a, b;

    g_assert_null(netdev("hubport,id=a,hubid=0"));
    g_assert_null(netdev("hubport,id=b,hubid=0"));
    g_assert_null(netdev("hubport,id=other,hubid=1"));
    fake_attach(&a, "a");
    fake_attach(&b, "b");
    g_assert_false(net_client_attach(b.nc, &fake_ops, &b));     /* one NIC per netdev */

    g_assert_true(send_frame(a.nc, 0, 100, 1));
    g_assert_cmpuint(b.frames->len, ==, 1);
    g_assert_cmpuint(a.frames->len, ==, 0);     /* never back to the sender */
    check_frame(g_ptr_array_index(b.frames, 0), 100, 1);
    g_assert_true(send_frame(a.nc, 0, 80, 9));
    check_frame(g_ptr_array_index(b.frames, 1), 80, 9);
    /* published once, at the end of the sender's burst */
    g_assert_cmpuint(b.flushes, ==, 0);
    net_client_send_done(a.nc, 0);
    g_assert_cmpuint(b.flushes, ==, 1);
    /* B without RX buffers: A is told busy, and resumed when B posts buffers */
    b.busy = true;
    g_assert_false(send_frame(a.nc, 0, 60, 2));
    g_assert_cmpuint(a.nc->stats.tx_busy, ==, 1);
    g_assert_cmpuint(a.resumes[0], ==, 0);
    b.busy = false;
    net_client_rx_ready(b.nc, 0);
    g_assert_cmpuint(a.resumes[0], ==, 1);
    net_client_rx_ready(b.nc, 0);
    g_assert_cmpuint(a.resumes[0], ==, 1);      /* once per wait */
    /* a reset receiver lets the waiting sender go too */
    b.busy = true;
    g_assert_false(send_frame(a.nc, 0, 60, 3));
    net_client_rx_reset(b.nc);
    g_assert_cmpuint(a.resumes[0], ==, 2);
    /* B leaves: A's frames are dropped, not held */
    b.busy = false;
    net_client_detach(b.nc);
    g_assert_true(send_frame(a.nc, 0, 60, 4));
    g_assert_cmpuint(a.nc->stats.tx_dropped, ==, 1);
    net_cleanup();
    fake_free(&a);
    fake_free(&b);
}

static void test_hub_three_ports_and_steering(void)
{
    FakeNic a, b, c;

    g_assert_null(netdev("hubport,id=a,hubid=3,queues=2"));
    g_assert_null(netdev("hubport,id=b,hubid=3"));
    g_assert_null(netdev("hubport,id=c,hubid=3"));
    fake_attach(&a, "a");
    fake_attach(&b, "b");
    fake_attach(&c, "c");
    g_assert_cmpuint(a.nc->queues, ==, 2);
    /* a busy port misses the frame; the others get it and the sender is not held */
    b.busy = true;
    g_assert_true(send_frame(a.nc, 1, 70, 5));
    g_assert_cmpuint(b.frames->len, ==, 0);
    g_assert_cmpuint(b.nc->stats.rx_dropped, ==, 1);
    g_assert_cmpuint(c.frames->len, ==, 1);
    check_frame(g_ptr_array_index(c.frames, 0), 70, 5);
    /* queue 1 lands on queue 1 of a NIC using 2 queues, on 0 of one using 1 */
    g_assert_cmpuint(c.last_queue, ==, 0);
    c.queues = 2;
    g_assert_true(send_frame(a.nc, 1, 70, 6));
    g_assert_cmpuint(c.last_queue, ==, 1);
    /* a frame above the largest is dropped before any backend */
    g_assert_true(send_frame(a.nc, 0, NET_MAX_FRAME + 1, 7));
    g_assert_cmpuint(c.frames->len, ==, 2);
    net_cleanup();
    fake_free(&a);
    fake_free(&b);
    fake_free(&c);
}

/* ---- stream ---- */

static int unix_connect(const char *path)
{
    struct sockaddr_un un = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(un.sun_path, path, sizeof(un.sun_path));
    g_assert_cmpint(connect(fd, (struct sockaddr *)&un, sizeof(un)), ==, 0);
    return fd;
}

typedef struct Want {
    FakeNic *f;
    unsigned n;
} Want;

static bool have_frames(void *opaque)
{
    Want *w = opaque;

    return w->f->frames->len >= w->n;
}

static bool peer_closed(void *opaque)
{
    int fd = *(int *)opaque;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    char c;

    return poll(&p, 1, 0) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static size_t put_frame(uint8_t *p, size_t len, unsigned seed)
{
    p[0] = (uint8_t)(len >> 24);
    p[1] = (uint8_t)(len >> 16);
    p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    frame_fill(p + 4, len, seed);
    return 4 + len;
}

static void test_stream_framing(void)
{
    char *dir = g_dir_make_tmp("vdm-net-XXXXXX", NULL), *path = g_build_filename(dir, "s", NULL);
    char *arg = g_strdup_printf("stream,id=s,server=on,addr.type=unix,addr.path=%s", path);
    static const size_t lens[] = { 1, 60, 1514, 9000, 65535, NET_MAX_FRAME, 14 };
    GRand *rnd = g_rand_new_with_seed(42);
    size_t total = 0, off = 0;
    uint8_t *stream = g_malloc(200000);
    FakeNic f;
    Want w;
    int c;

    g_assert_null(netdev(arg));
    fake_attach(&f, "s");
    c = unix_connect(path);
    for (unsigned k = 0; k < G_N_ELEMENTS(lens); k++) {
        total += put_frame(stream + total, lens[k], k);
    }
    /* arbitrary write boundaries, some a single byte, with the loop running between */
    while (off < total) {
        size_t chunk = g_rand_boolean(rnd) ? 1 : (size_t)g_rand_int_range(rnd, 1, 40000);

        chunk = MIN(chunk, total - off);
        g_assert_cmpint(write(c, stream + off, chunk), ==, (ssize_t)chunk);
        off += chunk;
        g_main_context_iteration(NULL, FALSE);
    }
    w = (Want){ &f, G_N_ELEMENTS(lens) };
    loop_until(have_frames, &w);
    for (unsigned k = 0; k < G_N_ELEMENTS(lens); k++) {
        GByteArray *b = g_ptr_array_index(f.frames, k);

        g_assert_cmpuint(b->len, ==, lens[k]);
        check_frame(b, lens[k], k);
    }
    /* a busy NIC: frames wait in the backend (reading stops), then come in order */
    f.busy = true;
    total = put_frame(stream, 100, 50);
    total += put_frame(stream + total, 200, 51);
    g_assert_cmpint(write(c, stream, total), ==, (ssize_t)total);
    loop_settle();
    g_assert_cmpuint(f.frames->len, ==, G_N_ELEMENTS(lens));
    g_assert_cmpuint(f.nc->stats.rx_held, >=, 1);
    f.busy = false;
    net_client_rx_ready(f.nc, 0);
    w.n += 2;
    loop_until(have_frames, &w);
    check_frame(g_ptr_array_index(f.frames, w.n - 2), 100, 50);
    check_frame(g_ptr_array_index(f.frames, w.n - 1), 200, 51);
    /* a length above the largest frame: the connection is closed ... */
    memcpy(stream, "\x00\x02\x00\x00", 4);     /* 131072: above NET_MAX_FRAME */
    g_assert_cmpint(write(c, stream, 8), ==, 8);
    loop_until(peer_closed, &c);
    close(c);
    /* ... and the server takes the next peer */
    c = unix_connect(path);
    total = put_frame(stream, 33, 60);
    g_assert_cmpint(write(c, stream, total), ==, (ssize_t)total);
    w.n++;
    loop_until(have_frames, &w);
    check_frame(g_ptr_array_index(f.frames, w.n - 1), 33, 60);
    close(c);
    net_cleanup();
    /* the socket file goes with the netdev */
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
    rmdir(dir);
    fake_free(&f);
    g_rand_free(rnd);
    g_free(stream);
    g_free(arg);
    g_free(path);
    g_free(dir);
}

static bool resumed(void *opaque)
{
    return ((FakeNic *)opaque)->resumes[0] > 0;
}

static void test_stream_tx_backpressure(void)
{
    char *dir = g_dir_make_tmp("vdm-net-XXXXXX", NULL), *path = g_build_filename(dir, "s", NULL);
    char *arg = g_strdup_printf("stream,id=s,server=on,addr.type=unix,addr.path=%s", path);
    uint8_t *buf = g_malloc(4 + 9000);
    unsigned sent = 0;
    FakeNic f;
    int c;

    g_assert_null(netdev(arg));
    fake_attach(&f, "s");
    g_assert_true(send_frame(f.nc, 0, 64, 0));      /* no peer yet: dropped */
    g_assert_cmpuint(f.nc->stats.tx_dropped, ==, 1);
    c = unix_connect(path);
    loop_settle();                                  /* accept */
    /* the peer does not read: the backend buffers, then says busy */
    while (send_frame(f.nc, 0, 9000, sent)) {
        net_client_send_done(f.nc, 0);
        sent++;
        g_assert_cmpuint(sent, <, 1000);
    }
    g_assert_cmpuint(sent, >, 10);
    g_assert_cmpuint(f.resumes[0], ==, 0);
    /* the peer reads everything: the NIC is resumed, every frame arrives whole and in order */
    for (unsigned k = 0; k < sent; k++) {
        size_t got = 0;

        while (got < 4 + 9000) {
            ssize_t r;

            g_main_context_iteration(NULL, FALSE);
            r = recv(c, buf + got, 4 + 9000 - got, MSG_DONTWAIT);
            if (r < 0) {
                g_assert_cmpint(errno, ==, EAGAIN);
                continue;
            }
            g_assert_cmpint(r, >, 0);
            got += (size_t)r;
        }
        g_assert_cmpuint((uint32_t)buf[2] << 8 | buf[3], ==, 9000);
        {
            uint8_t *want = g_malloc(9000);

            frame_fill(want, 9000, k);
            g_assert_cmpmem(buf + 4, 9000, want, 9000);
            g_free(want);
        }
    }
    loop_until(resumed, &f);
    close(c);
    net_cleanup();
    rmdir(dir);
    fake_free(&f);
    g_free(buf);
    g_free(arg);
    g_free(path);
    g_free(dir);
}

static void test_udp(void)
{
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) }, other;
    socklen_t alen = sizeof(me);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), tmp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    uint8_t buf[2048];
    char *arg;
    FakeNic f;
    Want w = { &f, 1 };

    g_assert_cmpint(bind(fd, (struct sockaddr *)&me, sizeof(me)), ==, 0);
    g_assert_cmpint(getsockname(fd, (struct sockaddr *)&me, &alen), ==, 0);
    other = me;
    other.sin_port = 0;
    g_assert_cmpint(bind(tmp, (struct sockaddr *)&other, sizeof(other)), ==, 0);
    g_assert_cmpint(getsockname(tmp, (struct sockaddr *)&other, &alen), ==, 0);
    close(tmp);
    arg = g_strdup_printf("socket,id=u,udp=127.0.0.1:%u,localaddr=127.0.0.1:%u", ntohs(me.sin_port),
                          ntohs(other.sin_port));
    g_assert_null(netdev(arg));
    fake_attach(&f, "u");
    g_assert_true(send_frame(f.nc, 0, 700, 3));
    g_assert_cmpint(recv(fd, buf, sizeof(buf), 0), ==, 700);
    {
        GByteArray b = { buf, 700 };

        check_frame(&b, 700, 3);
    }
    frame_fill(buf, 1000, 4);
    g_assert_cmpint(sendto(fd, buf, 1000, 0, (struct sockaddr *)&other, sizeof(other)), ==, 1000);
    g_assert_cmpint(sendto(fd, buf, 0, 0, (struct sockaddr *)&other, sizeof(other)), ==, 0);   /* no frame */
    frame_fill(buf, 20, 5);
    g_assert_cmpint(sendto(fd, buf, 20, 0, (struct sockaddr *)&other, sizeof(other)), ==, 20);
    w.n = 2;
    loop_until(have_frames, &w);
    check_frame(g_ptr_array_index(f.frames, 0), 1000, 4);
    check_frame(g_ptr_array_index(f.frames, 1), 20, 5);
    close(fd);
    net_cleanup();
    fake_free(&f);
    g_free(arg);
}

/* socket,fd= on a datagram socketpair: one frame per datagram to the connected peer. */
static void test_socket_fd_dgram(void)
{
    uint8_t buf[2048];
    int sv[2];
    char *arg;
    FakeNic f;
    Want w = { &f, 1 };

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    arg = g_strdup_printf("socket,id=d,fd=%d", sv[1]);
    g_assert_null(netdev(arg));
    fake_attach(&f, "d");
    g_assert_true(send_frame(f.nc, 0, 300, 8));
    g_assert_cmpint(recv(sv[0], buf, sizeof(buf), 0), ==, 300);
    {
        GByteArray b = { buf, 300 };

        check_frame(&b, 300, 8);
    }
    frame_fill(buf, 400, 9);
    g_assert_cmpint(send(sv[0], buf, 400, 0), ==, 400);
    loop_until(have_frames, &w);
    check_frame(g_ptr_array_index(f.frames, 0), 400, 9);
    net_cleanup();              /* closes sv[1] */
    close(sv[0]);
    fake_free(&f);
    g_free(arg);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/net/options", test_options);
    g_test_add_func("/net/hub/two-ports-backpressure", test_hub_two_ports);
    g_test_add_func("/net/hub/three-ports-and-steering", test_hub_three_ports_and_steering);
    g_test_add_func("/net/stream/framing-busy-bad-length", test_stream_framing);
    g_test_add_func("/net/stream/tx-backpressure", test_stream_tx_backpressure);
    g_test_add_func("/net/socket/udp", test_udp);
    g_test_add_func("/net/socket/fd-dgram", test_socket_fd_dgram);
    return g_test_run();
}
