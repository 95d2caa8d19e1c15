/*
 * vdm-vhost-user-net end to end, in loopback: the daemon is started, the test
 * frontend (tests/vhost-user) connects, shares RAM by memfd and drives an RX
 * and a TX ring with the driver library, for split/packed x IN_ORDER on/off
 * x MRG_RXBUF on/off, plus busy-poll and two queue pairs; and in two-port
 * mode (--socket A --peer-socket B): one daemon, two frontends (each its own
 * RAM and one queue pair) sending to each other at the same time.
 *
 * Proves: every frame sent on TX comes back on RX of the same pair (two-port:
 * on the other port's RX) intact and in order (sizes 60..1514; with MRG_RXBUF spread over small buffers and
 * num_buffers right), including when RX runs out of buffers and TX has to
 * wait for more; the daemon logs the negotiated features in its fixed form,
 * reports per-queue statistics on SIGUSR1 and SIGTERM, and exits 0.
 *
 * Usage: test-vhost-user-net DAEMON (meson passes the built daemon).
 */
#include <endian.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/virtio-net.h"
#include "vdmd-test.h"

#define RAM_SIZE    (8ull * 1024 * 1024)
#define QNUM        64u
#define HDR         12u
#define FRAME_MAX   1514u
#define MAX_PAIRS   2u

static const char *daemon_path;

typedef struct Case {
    const char *name;
    bool packed;
    bool in_order;
    bool mrg_rxbuf;
    bool busy_poll;
    unsigned pairs;
    unsigned frames;            /* per pair */
} Case;

typedef struct Slot {
    hwaddr gpa;
    uint32_t len;
    unsigned index;
} Slot;

typedef struct Pair {
    VuFrontendRing ring[2];     /* RX, TX */
    VDriverQueue *q[2];
    Slot rx[QNUM], tx[QNUM];
    unsigned tx_free[QNUM], ntx_free;
    unsigned sent, received;
    /* Frame being reassembled (MRG_RXBUF). */
    uint8_t *asm_buf;
    size_t asm_len;
    unsigned asm_left;
} Pair;

typedef struct Run {
    const Case *c;
    VdmdTestDaemon d;           /* two-port: the second frontend uses only d.sock */
    VuFrontend f;
    Pair p[MAX_PAIRS];
    hwaddr heap;
    uint32_t rx_buf_len;
} Run;

/* @peer: the second socket (two-port mode), NULL for loopback. */
static void start_daemon(Run *r, const char *peer)
{
    g_autofree char *queues = g_strdup_printf("%u", r->c->pairs);
    const char *argv[20];
    unsigned n = 0;

    argv[n++] = daemon_path;
    argv[n++] = "--socket";
    argv[n++] = r->d.sock;
    argv[n++] = "--queues";
    argv[n++] = queues;
    argv[n++] = "--in-order";
    argv[n++] = r->c->in_order ? "on" : "off";
    argv[n++] = "--mrg-rxbuf";
    argv[n++] = r->c->mrg_rxbuf ? "on" : "off";
    argv[n++] = "--queue-size";
    argv[n++] = "64";
    if (peer) {
        argv[n++] = "--peer-socket";
        argv[n++] = peer;
    } else {
        argv[n++] = "--loopback";
    }
    if (r->c->busy_poll) {
        argv[n++] = "--busy-poll";
    }
    argv[n] = NULL;
    vdmd_test_daemon_spawn(&r->d, argv);
}

static hwaddr galloc(Run *r, uint64_t size)
{
    return vdmd_test_alloc(&r->heap, size, VUF_RAM_GPA + RAM_SIZE);
}

static void rx_post(Run *r, Pair *p, Slot *s)
{
    VDriverSeg in[2];
    unsigned num = 0;

    /* Cut the header across two descriptors in every other buffer. */
    if (s->index & 1) {
        in[num++] = (VDriverSeg) { s->gpa, 5 };
        in[num++] = (VDriverSeg) { s->gpa + 5, s->len - 5 };
    } else {
        in[num++] = (VDriverSeg) { s->gpa, s->len };
    }
    memset(vuf_host(&r->f, s->gpa), 0xee, s->len);
    g_assert_cmpint(vdriver_add(p->q[0], NULL, 0, in, num, s, false), ==, 0);
}

/* The temporary directory, socket and log paths of @r (no daemon yet). */
static void run_init(Run *r, const Case *c)
{
    memset(r, 0, sizeof(*r));
    r->c = c;
    vdmd_test_daemon_init(&r->d, "vdm-vunet-XXXXXX");
}

/* Connect to r->sock, share RAM, negotiate, set up every queue pair's rings. */
static void frontend_setup(Run *r)
{
    const Case *c = r->c;
    uint64_t want = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_NET_F_MAC | 1ull << VIRTIO_NET_F_STATUS;

    if (c->mrg_rxbuf) {
        want |= 1ull << VIRTIO_NET_F_MRG_RXBUF;
    }
    if (c->pairs > 1) {
        want |= 1ull << VIRTIO_NET_F_MQ | 1ull << VIRTIO_NET_F_CTRL_VQ;
    }
    vdmd_test_connect(&r->f, r->d.sock, RAM_SIZE, want, c->packed, c->in_order, 1ull << VHOST_USER_PROTOCOL_F_MQ);
    g_assert_cmpuint(r->f.features & ~(1ull << VIRTIO_F_RING_PACKED | 1ull << VIRTIO_F_IN_ORDER), ==, want);

    r->heap = VUF_RAM_GPA;
    /* With MRG_RXBUF, small buffers: a full-size frame spans up to seven. */
    r->rx_buf_len = c->mrg_rxbuf ? 256 : HDR + FRAME_MAX;
    for (unsigned k = 0; k < c->pairs; k++) {
        Pair *p = &r->p[k];

        for (unsigned d = 0; d < 2; d++) {
            VDriverQueueConfig qc = { .num = QNUM, .packed = c->packed, .in_order = c->in_order };

            r->heap = vdriver_layout_rings(&qc, r->heap);
            r->heap = (r->heap + 4095) & ~4095ull;
            p->q[d] = vdmd_test_queue_new(&r->f, &qc, 2 * k + d, &p->ring[d]);
        }
        for (unsigned i = 0; i < QNUM; i++) {
            p->rx[i] = (Slot) { galloc(r, r->rx_buf_len), r->rx_buf_len, i };
            p->tx[i] = (Slot) { galloc(r, HDR + FRAME_MAX), 0, i };
            p->tx_free[p->ntx_free++] = i;
        }
        p->asm_buf = g_malloc(HDR + FRAME_MAX);
        /* RX buffers first, as drivers do; then the rings start. */
        for (unsigned i = 0; i < QNUM && vdriver_free_slots(p->q[0]) >= 2; i++) {
            rx_post(r, p, &p->rx[i]);
        }
        vdriver_kick_prepare(p->q[0]);
        for (unsigned d = 0; d < 2; d++) {
            g_assert_cmpint(vuf_ring_setup(&r->f, &p->ring[d]), ==, 0);
        }
    }
}

static void run_setup(Run *r, const Case *c)
{
    run_init(r, c);
    start_daemon(r, NULL);
    frontend_setup(r);
}

static void frontend_check(Run *r)
{
    for (unsigned k = 0; k < r->c->pairs; k++) {
        for (unsigned d = 0; d < 2; d++) {
            g_assert_null(vdriver_error(r->p[k].q[d]));
        }
    }
}

/* Free the driver queues, close the rings and disconnect. */
static void frontend_close(Run *r)
{
    for (unsigned k = 0; k < r->c->pairs; k++) {
        for (unsigned d = 0; d < 2; d++) {
            vdriver_queue_free(r->p[k].q[d]);
            vuf_ring_close(&r->p[k].ring[d]);
        }
        g_free(r->p[k].asm_buf);
    }
    vuf_close(&r->f);
}

/* SIGTERM, wait (bounded) for exit 0, remove the daemon's files; returns its log. */
static char *daemon_finish(Run *r)
{
    char *log = vdmd_test_daemon_stop(&r->d);

    vdmd_test_daemon_cleanup(&r->d);
    return log;
}

static char *run_finish(Run *r)
{
    frontend_check(r);
    /* Statistics on demand first, then SIGTERM. */
    g_assert_cmpint(kill(r->d.pid, SIGUSR1), ==, 0);
    g_usleep(100 * 1000);
    frontend_close(r);
    return daemon_finish(r);
}

/* Frame @i of pair @k: its size and bytes (its number in the first bytes). */
static uint32_t frame_len(unsigned k, unsigned i)
{
    return 60 + (i * 97 + k * 13) % (FRAME_MAX - 59);
}

static void frame_fill(uint8_t *buf, unsigned k, unsigned i)
{
    uint32_t len = frame_len(k, i);

    for (uint32_t b = 0; b < len; b++) {
        buf[b] = (uint8_t)(i * 7 + k * 101 + b * 3);
    }
    memcpy(buf, &i, sizeof(i));
    buf[4] = (uint8_t)k;
}

static bool tx_send_some(Run *r, Pair *p, unsigned k)
{
    bool any = false;

    while (p->sent < r->c->frames && p->ntx_free && vdriver_free_slots(p->q[1]) >= 2) {
        Slot *s = &p->tx[p->tx_free[--p->ntx_free]];
        uint8_t *h = vuf_host(&r->f, s->gpa);
        VDriverSeg out[2];

        s->len = HDR + frame_len(k, p->sent);
        memset(h, 0, HDR);
        frame_fill(h + HDR, k, p->sent);
        /* The header split 7 + 5 on every third frame. */
        if (p->sent % 3 == 0) {
            out[0] = (VDriverSeg) { s->gpa, 7 };
            out[1] = (VDriverSeg) { s->gpa + 7, s->len - 7 };
        } else {
            out[0] = (VDriverSeg) { s->gpa, HDR };
            out[1] = (VDriverSeg) { s->gpa + HDR, s->len - HDR };
        }
        g_assert_cmpint(vdriver_add(p->q[1], out, 2, NULL, 0, s, false), ==, 0);
        p->sent++;
        any = true;
    }
    if (any && vdriver_kick_prepare(p->q[1])) {
        vuf_kick(&p->ring[1]);
    }
    return any;
}

static bool tx_reap(Pair *p)
{
    bool any = false;
    uint32_t len;
    Slot *s;

    while ((s = vdriver_get_buf(p->q[1], &len, NULL))) {
        g_assert_cmpuint(len, ==, 0);
        p->tx_free[p->ntx_free++] = s->index;
        any = true;
    }
    g_assert_null(vdriver_error(p->q[1]));
    return any;
}

static void frame_check(Run *r, Pair *p, unsigned k)
{
    uint8_t want[FRAME_MAX];
    uint32_t flen = frame_len(k, p->received);

    g_assert_cmpuint(p->asm_len, ==, HDR + flen);
    frame_fill(want, k, p->received);
    g_assert_cmpmem(p->asm_buf + HDR, p->asm_len - HDR, want, flen);
    p->received++;
}

static bool rx_reap(Run *r, Pair *p, unsigned k)
{
    bool any = false;
    uint32_t len;
    Slot *s;

    while ((s = vdriver_get_buf(p->q[0], &len, NULL))) {
        g_assert_cmpuint(len, <=, s->len);
        if (p->asm_left == 0) {
            VirtIONetHdr h;

            g_assert_cmpuint(len, >=, HDR);
            memcpy(&h, vuf_host(&r->f, s->gpa), sizeof(h));
            p->asm_left = le16toh(h.num_buffers);
            g_assert_cmpuint(p->asm_left, >=, 1);
            if (!r->c->mrg_rxbuf) {
                g_assert_cmpuint(p->asm_left, ==, 1);
            }
            g_assert_cmpuint(h.gso_type, ==, 0);
            p->asm_len = 0;
        }
        g_assert_cmpuint(p->asm_len + len, <=, HDR + FRAME_MAX);
        memcpy(p->asm_buf + p->asm_len, vuf_host(&r->f, s->gpa), len);
        p->asm_len += len;
        if (--p->asm_left == 0) {
            frame_check(r, p, k);
        } else {
            g_assert_cmpuint(len, ==, s->len);      /* all but a frame's last buffer are full */
        }
        rx_post(r, p, s);
        any = true;
    }
    g_assert_null(vdriver_error(p->q[0]));
    if (any && vdriver_kick_prepare(p->q[0])) {
        vuf_kick(&p->ring[0]);
    }
    return any;
}

/* Wait (bounded) for a call on any ring of the @nr frontends @rs. */
static void wait_calls_n(Run *const *rs, unsigned nr)
{
    struct pollfd pfd[2 * 2 * MAX_PAIRS];
    unsigned n = 0;

    g_assert_cmpuint(nr, <=, 2);
    for (unsigned i = 0; i < nr; i++) {
        for (unsigned k = 0; k < rs[i]->c->pairs; k++) {
            for (unsigned d = 0; d < 2; d++) {
                pfd[n++] = (struct pollfd) { .fd = rs[i]->p[k].ring[d].call_fd, .events = POLLIN };
            }
        }
    }
    g_assert_cmpint(poll(pfd, n, 10000), >, 0);
    for (unsigned i = 0; i < n; i++) {
        uint64_t v;
        if (pfd[i].revents & POLLIN) {
            g_assert_cmpint(read(pfd[i].fd, &v, sizeof(v)), ==, sizeof(v));
        }
    }
}

static void wait_calls(Run *r)
{
    wait_calls_n(&r, 1);
}

static void test_loopback(gconstpointer data)
{
    const Case *c = data;
    Run r;
    char *log;
    bool done;

    run_setup(&r, c);
    do {
        bool progress = false;

        done = true;
        for (unsigned k = 0; k < c->pairs; k++) {
            Pair *p = &r.p[k];

            progress |= tx_reap(p);
            progress |= rx_reap(&r, p, k);
            progress |= tx_send_some(&r, p, k);
            if (p->received < c->frames) {
                done = false;
            }
        }
        if (!done && !progress) {
            wait_calls(&r);
        }
    } while (!done);
    for (unsigned k = 0; k < c->pairs; k++) {
        g_assert_cmpuint(r.p[k].received, ==, c->frames);
    }

    log = run_finish(&r);
    g_test_message("%s", log);
    g_assert_nonnull(strstr(log, "vdm-vhost-user-net: negotiated features 0x"));
    vdmd_test_assert_negotiated(log, "VIRTIO_F_IN_ORDER", c->in_order);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_RING_PACKED", c->packed);
    vdmd_test_assert_negotiated(log, "VIRTIO_NET_F_MRG_RXBUF", c->mrg_rxbuf);
    g_assert_nonnull(strstr(log, "stats (SIGUSR1)"));
    for (unsigned k = 0; k < c->pairs; k++) {
        g_autofree char *want = g_strdup_printf("stats (total): queue pair %u: tx frames=%u ", k, c->frames);
        g_assert_nonnull(strstr(log, want));
    }
    g_assert_nonnull(strstr(log, "rx_drop_no_buffer=0 rx_drop_too_small=0 rx_drop_oversize=0"));
    g_free(log);
}

/*
 * Two-port mode: one daemon with --socket A --peer-socket B, one frontend on
 * each (its own RAM, one queue pair), both sending at once. A's frames (key 0)
 * must all arrive on B's RX intact and in order, B's (key 1) on A's RX.
 * Both frontends set up their rings (acked) before anything is sent: a frame
 * for a ring that is not running would be dropped.
 */
static void test_two_port(gconstpointer data)
{
    const Case *c = data;
    Run a, b;
    Run *const both[2] = { &a, &b };
    char *log;
    bool done;
    gint64 deadline;

    g_assert_cmpuint(c->pairs, ==, 1);
    run_init(&a, c);
    memset(&b, 0, sizeof(b));
    b.c = c;
    b.d.sock = g_build_filename(a.d.dir, "sock-b", NULL);
    start_daemon(&a, b.d.sock);
    frontend_setup(&a);
    frontend_setup(&b);

    deadline = g_get_monotonic_time() + 60 * G_USEC_PER_SEC;
    do {
        bool progress = false;

        for (unsigned k = 0; k < 2; k++) {
            Run *src = both[k], *dst = both[!k];

            progress |= tx_reap(&src->p[0]);
            progress |= rx_reap(dst, &dst->p[0], k);    /* key k: sent by the other port */
            progress |= tx_send_some(src, &src->p[0], k);
        }
        done = a.p[0].received == c->frames && b.p[0].received == c->frames;
        if (!done && !progress) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            wait_calls_n(both, 2);
        }
    } while (!done);
    /* Every TX buffer comes back (the switch publishes each burst before returning). */
    while (a.p[0].ntx_free < QNUM || b.p[0].ntx_free < QNUM) {
        if (!tx_reap(&a.p[0]) && !tx_reap(&b.p[0])) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            wait_calls_n(both, 2);
        }
    }
    g_assert_cmpuint(a.p[0].sent, ==, c->frames);
    g_assert_cmpuint(b.p[0].sent, ==, c->frames);

    frontend_check(&a);
    frontend_check(&b);
    g_assert_cmpint(kill(a.d.pid, SIGUSR1), ==, 0);
    g_usleep(100 * 1000);
    frontend_close(&a);
    frontend_close(&b);
    /* Let the daemon see both disconnects before SIGTERM. */
    g_usleep(100 * 1000);
    g_unlink(b.d.sock);
    g_free(b.d.sock);
    log = daemon_finish(&a);
    g_test_message("%s", log);
    for (unsigned k = 0; k < 2; k++) {
        const char *port = k ? "B" : "A";
        g_autofree char *conn = g_strdup_printf("vdm-vhost-user-net: port %s (", port);
        g_autofree char *total = g_strdup_printf("stats (total) port %s: queue pair 0: tx frames=%u ", port,
                                                 c->frames);
        g_autofree char *rx = g_strdup_printf("stats (total) port %s: total tx frames=%u rx frames=%u ", port,
                                              c->frames, c->frames);

        g_assert_nonnull(strstr(log, conn));
        g_assert_nonnull(strstr(log, total));
        g_assert_nonnull(strstr(log, rx));
    }
    g_assert_nonnull(strstr(log, "two-port switch"));
    vdmd_test_assert_negotiated(log, "VIRTIO_F_IN_ORDER", c->in_order);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_RING_PACKED", c->packed);
    g_assert_nonnull(strstr(log, "stats (SIGUSR1) port A"));
    g_assert_nonnull(strstr(log, "stats (SIGUSR1) port B"));
    /* No frame dropped anywhere, on either port. */
    {
        g_auto(GStrv) lines = g_strsplit(log, "\n", -1);
        unsigned nstat = 0;

        for (unsigned i = 0; lines[i]; i++) {
            if (strstr(lines[i], "stats (total) port ") && strstr(lines[i], ": queue pair ")) {
                g_assert_nonnull(strstr(lines[i], " rx_drop_no_buffer=0 rx_drop_too_small=0 rx_drop_oversize=0 "
                                        "rx_drop_not_ready=0 rx_drop_malformed=0 tx_drop_oversize=0 "
                                        "tx_drop_malformed=0 "));
                nstat++;
            }
        }
        g_assert_cmpuint(nstat, ==, 2);
    }
    g_free(log);
}

/*
 * The frontend truncates the memfd behind guest memory while the rings run:
 * the daemon's next look at a ring would SIGBUS. With the guard it survives,
 * breaks the device with a message, and still ends cleanly on SIGTERM.
 */
static void test_memory_shrunk(void)
{
    static const Case c = { "split", false, false, false, false, 1, 8 };
    Run r;
    char *log;

    run_setup(&r, &c);
    /* From here on this process must not touch the RAM either (it would SIGBUS too). */
    g_assert_cmpint(ftruncate(r.f.mem_fd, 0), ==, 0);
    vuf_kick(&r.p[0].ring[1]);
    for (unsigned ms = 0;; ms++) {
        g_autofree char *text = NULL;

        g_assert_cmpuint(ms, <, 10000);
        if (g_file_get_contents(r.d.log, &text, NULL, NULL) && strstr(text, "guest memory shrank")) {
            break;
        }
        g_usleep(1000);
    }
    frontend_close(&r);
    log = daemon_finish(&r);        /* asserts exit status 0 */
    g_assert_nonnull(strstr(log, "guest memory shrank"));
    g_free(log);
}

static void test_bad_options(void)
{
    const char *argvs[][6] = {
        { NULL, "--socket", "/tmp/x", NULL },                             /* no backend */
        { NULL, "--socket", "/tmp/x", "--loopback", "--tap=t0", NULL },   /* two backends */
        { NULL, "--loopback", NULL },                                     /* no socket */
        { NULL, "--socket", "/nonexistent/dir/sock", "--loopback", NULL },
        { NULL, "--socket", "/tmp/x", "--loopback", "--in-order=maybe", NULL },
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(argvs); i++) {
        argvs[i][0] = daemon_path;
        vdmd_test_assert_fails(argvs[i]);
    }
}

int main(int argc, char **argv)
{
    static Case cases[8 + 3];
    unsigned n = 0;

    daemon_path = vdmd_test_init(&argc, &argv);
    for (unsigned packed = 0; packed < 2; packed++) {
        for (unsigned in_order = 0; in_order < 2; in_order++) {
            for (unsigned mrg = 0; mrg < 2; mrg++) {
                cases[n++] = (Case) {
                    .name = g_strdup_printf("%s%s/mrg-rxbuf-%s", packed ? "packed" : "split",
                                            in_order ? "-in-order" : "", mrg ? "on" : "off"),
                    .packed = packed, .in_order = in_order, .mrg_rxbuf = mrg, .pairs = 1, .frames = 500,
                };
            }
        }
    }
    cases[n++] = (Case) { "split-in-order/busy-poll", false, true, true, true, 1, 500 };
    cases[n++] = (Case) { "packed-in-order/busy-poll", true, true, false, true, 1, 500 };
    cases[n++] = (Case) { "packed-in-order/two-pairs", true, true, true, false, 2, 300 };
    for (unsigned i = 0; i < n; i++) {
        g_autofree char *path = g_strdup_printf("/vhost-user-net/loopback/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_loopback);
    }
    {
        static const Case two_port[] = {
            { "split-in-order", false, true, false, false, 1, 300 },
            { "packed-in-order", true, true, false, false, 1, 300 },
            { "split-in-order/mrg-rxbuf-on", false, true, true, false, 1, 300 },
            { "packed-in-order/busy-poll", true, true, true, true, 1, 300 },
        };

        for (unsigned i = 0; i < G_N_ELEMENTS(two_port); i++) {
            g_autofree char *path = g_strdup_printf("/vhost-user-net/two-port/%s", two_port[i].name);
            g_test_add_data_func(path, &two_port[i], test_two_port);
        }
    }
    g_test_add_func("/vhost-user-net/bad-options", test_bad_options);
    g_test_add_func("/vhost-user-net/hostile/memory-shrunk", test_memory_shrunk);
    return g_test_run();
}
