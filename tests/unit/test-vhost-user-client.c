/*
 * The frontend's message layer (hw/virtio/vhost-user.c) against a hostile
 * backend: the test holds the other end of a socketpair and answers with
 * malformed replies. Every one must be refused with an error (never used),
 * every fd that came with it closed, every wait bounded.
 */
#include <dirent.h>
#include <glib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hw/virtio/vhost-user.h"

typedef struct Pair {
    VhostUserConn c;
    int peer;
} Pair;

static void pair_open(Pair *p)
{
    int sv[2];

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    vhost_user_conn_init(&p->c, 200);
    p->c.fd = sv[0];
    p->peer = sv[1];
}

static void pair_close(Pair *p)
{
    vhost_user_close(&p->c);
    if (p->peer >= 0) {
        close(p->peer);
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    g_assert_nonnull(d);
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

/* Queue a reply (header + payload, optional fds) for the client's next read. */
static void reply(Pair *p, uint32_t request, uint32_t flags, uint32_t size, const void *payload, size_t len,
                  unsigned nfds)
{
    VhostUserConn peer = { .fd = p->peer, .timeout_ms = 200 };
    VhostUserHeader hdr = { request, flags, size };
    int fds[4];
    uint8_t buf[sizeof(hdr) + 512];

    g_assert_cmpuint(len, <=, 512);
    memcpy(buf, &hdr, sizeof(hdr));
    if (len) {
        memcpy(buf + sizeof(hdr), payload, len);
    }
    for (unsigned i = 0; i < nfds; i++) {
        fds[i] = eventfd(0, EFD_CLOEXEC);
    }
    if (nfds) {
        /* the fds ride on the header bytes, as a backend would send them */
        g_assert_cmpint(vhost_user_send(&peer, request, flags, payload, (uint32_t)len, fds, nfds), ==, 0);
        for (unsigned i = 0; i < nfds; i++) {
            close(fds[i]);
        }
        return;
    }
    g_assert_cmpint(vhost_user_send_raw(&peer, buf, sizeof(hdr) + len), ==, 0);
}

static const uint32_t OK_FLAGS = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;

static void test_bad_flags_and_request(void)
{
    Pair p;
    uint64_t v = 7, val;

    pair_open(&p);
    reply(&p, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, 8, &v, 8, 0);     /* no REPLY bit */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS | VHOST_USER_NEED_REPLY_MASK, 8, &v, 8, 0);
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_PROTOCOL_FEATURES, OK_FLAGS, 8, &v, 8, 0);      /* answers another request */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, 4, &v, 4, 0);               /* too short */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, 16, (uint64_t[2]){ 1, 2 }, 16, 0);  /* too long */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EMSGSIZE);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, 8, &v, 8, 0);               /* and a good one works */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, 0);
    g_assert_cmphex(val, ==, 7);
    pair_close(&p);
}

static void test_oversized_header_closes(void)
{
    Pair p;
    uint64_t val;

    pair_open(&p);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, VHOST_USER_PAYLOAD_MAX + 1, NULL, 0, 0);
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPROTO);
    pair_close(&p);
}

static void test_fds_on_replies_are_closed(void)
{
    int before = count_fds();
    Pair p;
    uint64_t v = 1, val;
    VhostUserInflight inf = { .mmap_size = 0, .num_queues = 1, .queue_size = 8 };
    int fd;

    pair_open(&p);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, 8, &v, 8, 3);       /* fds nobody asked for */
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, 0);
    /* inflight: an fd with a zero size, and a size without an fd, are both refused */
    reply(&p, VHOST_USER_GET_INFLIGHT_FD, OK_FLAGS, VHOST_USER_INFLIGHT_SIZE, &inf, VHOST_USER_INFLIGHT_SIZE, 1);
    g_assert_cmpint(vhost_user_get_inflight_fd(&p.c, 1, 8, &inf, &fd), ==, -EPROTO);
    g_assert_cmpint(fd, ==, -1);
    inf.mmap_size = 4096;
    reply(&p, VHOST_USER_GET_INFLIGHT_FD, OK_FLAGS, VHOST_USER_INFLIGHT_SIZE, &inf, VHOST_USER_INFLIGHT_SIZE, 0);
    g_assert_cmpint(vhost_user_get_inflight_fd(&p.c, 1, 8, &inf, &fd), ==, -EPROTO);
    /* a reply for the wrong request with an fd */
    reply(&p, VHOST_USER_GET_CONFIG, OK_FLAGS, VHOST_USER_INFLIGHT_SIZE, &inf, VHOST_USER_INFLIGHT_SIZE, 2);
    g_assert_cmpint(vhost_user_get_inflight_fd(&p.c, 1, 8, &inf, &fd), ==, -EPROTO);
    g_assert_cmpint(fd, ==, -1);
    pair_close(&p);
    g_assert_cmpint(count_fds(), ==, before);
}

static void test_config_and_vring_base_checked(void)
{
    Pair p;
    VhostUserConfig cfg = { .offset = 0, .size = 8 };
    VhostUserVringState st = { 1, 42 };
    uint8_t buf[8];
    uint32_t base;

    pair_open(&p);
    cfg.size = 4;       /* another window than asked */
    reply(&p, VHOST_USER_GET_CONFIG, OK_FLAGS, VHOST_USER_CONFIG_HDR_SIZE + 8, &cfg,
          VHOST_USER_CONFIG_HDR_SIZE + 8, 0);
    g_assert_cmpint(vhost_user_get_config(&p.c, 0, 8, buf), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_CONFIG, OK_FLAGS, VHOST_USER_CONFIG_HDR_SIZE, &cfg, VHOST_USER_CONFIG_HDR_SIZE, 0);
    g_assert_cmpint(vhost_user_get_config(&p.c, 0, 8, buf), ==, -EPROTO);    /* short */
    g_assert_cmpint(vhost_user_get_config(&p.c, 0, VHOST_USER_MAX_CONFIG_SIZE + 1, buf), ==, -EINVAL);
    reply(&p, VHOST_USER_GET_VRING_BASE, OK_FLAGS, sizeof(st), &st, sizeof(st), 0);  /* index 1, asked 0 */
    g_assert_cmpint(vhost_user_get_vring_base(&p.c, 0, &base), ==, -EPROTO);
    reply(&p, VHOST_USER_GET_VRING_BASE, OK_FLAGS, sizeof(st), &st, sizeof(st), 0);
    g_assert_cmpint(vhost_user_get_vring_base(&p.c, 1, &base), ==, 0);
    g_assert_cmpuint(base, ==, 42);
    pair_close(&p);
}

static void test_ack_values(void)
{
    Pair p;
    uint64_t ack;

    pair_open(&p);
    ack = 0;
    reply(&p, VHOST_USER_SET_FEATURES, OK_FLAGS, 8, &ack, 8, 0);
    g_assert_cmpint(vhost_user_set_features(&p.c, true, 1ULL << 32), ==, 0);
    ack = 1ULL << 40;   /* any non-zero ack is a refusal, reported positive */
    reply(&p, VHOST_USER_SET_FEATURES, OK_FLAGS, 8, &ack, 8, 0);
    g_assert_cmpint(vhost_user_set_features(&p.c, true, 1ULL << 32), >, 0);
    reply(&p, VHOST_USER_SET_OWNER, OK_FLAGS, 8, &ack, 8, 0);                  /* ack for another request */
    g_assert_cmpint(vhost_user_set_features(&p.c, true, 1ULL << 32), ==, -EPROTO);
    pair_close(&p);
}

static void test_silence_and_close_bounded(void)
{
    Pair p;
    uint64_t val;
    VhostUserHeader half = { VHOST_USER_GET_FEATURES, OK_FLAGS, 8 };
    gint64 t0;

    pair_open(&p);
    t0 = g_get_monotonic_time();
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -ETIMEDOUT);
    g_assert_cmpint(g_get_monotonic_time() - t0, <, 2 * G_USEC_PER_SEC);
    /* a header, half a payload, then the backend goes away */
    g_assert_cmpint(write(p.peer, &half, sizeof(half)), ==, sizeof(half));
    g_assert_cmpint(write(p.peer, "abcd", 4), ==, 4);
    close(p.peer);
    p.peer = -1;
    g_assert_cmpint(vhost_user_get_u64(&p.c, VHOST_USER_GET_FEATURES, &val), ==, -EPIPE);
    /* and every later request says so, without SIGPIPE */
    g_assert_cmpint(vhost_user_set_u64(&p.c, false, VHOST_USER_SET_FEATURES, 0), ==, -EPIPE);
    pair_close(&p);
}

static void test_handshake_needs_protocol_features(void)
{
    Pair p;
    uint64_t offered = 1ULL << 32, proto;

    pair_open(&p);
    reply(&p, VHOST_USER_GET_FEATURES, OK_FLAGS, 8, &offered, 8, 0);
    g_assert_cmpint(vhost_user_handshake(&p.c, 0, &offered, &proto), ==, -EPROTO);
    pair_close(&p);
}

/* The backend's channel: its requests carry version 1 and at most NEED_REPLY, never REPLY. */
static void test_backend_requests(void)
{
    Pair p;
    VhostUserHeader hdr;
    uint64_t v = 0;

    pair_open(&p);
    reply(&p, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, VHOST_USER_VERSION, 0, NULL, 0, 0);
    g_assert_cmpint(vhost_user_recv_request(&p.c, &hdr, &v, sizeof(v), NULL), ==, 0);
    g_assert_cmpuint(hdr.request, ==, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG);
    reply(&p, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, 0, NULL, 0, 0);
    g_assert_cmpint(vhost_user_recv_request(&p.c, &hdr, &v, sizeof(v), NULL), ==, 0);
    reply(&p, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, OK_FLAGS, 0, NULL, 0, 0);
    g_assert_cmpint(vhost_user_recv_request(&p.c, &hdr, &v, sizeof(v), NULL), ==, -EPROTO);
    reply(&p, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG, 0x2, 0, NULL, 0, 0);          /* version 2 */
    g_assert_cmpint(vhost_user_recv_request(&p.c, &hdr, &v, sizeof(v), NULL), ==, -EPROTO);
    pair_close(&p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vhost-user-client/bad_flags_and_request", test_bad_flags_and_request);
    g_test_add_func("/vhost-user-client/oversized_header", test_oversized_header_closes);
    g_test_add_func("/vhost-user-client/fds_on_replies_closed", test_fds_on_replies_are_closed);
    g_test_add_func("/vhost-user-client/config_and_vring_base_checked", test_config_and_vring_base_checked);
    g_test_add_func("/vhost-user-client/ack_values", test_ack_values);
    g_test_add_func("/vhost-user-client/silence_and_close_bounded", test_silence_and_close_bounded);
    g_test_add_func("/vhost-user-client/handshake_needs_protocol_features",
                    test_handshake_needs_protocol_features);
    g_test_add_func("/vhost-user-client/backend_requests", test_backend_requests);
    return g_test_run();
}
