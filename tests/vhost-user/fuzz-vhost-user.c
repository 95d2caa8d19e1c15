/*
 * libFuzzer target: the vhost-user backend fed by a hostile frontend.
 *
 * The input is a program of operations: raw messages (any header, payload
 * and fds), well-formed but random state changes, a quick "good" set-up that
 * gets a ring running, writes into the shared guest RAM (ring contents), kicks
 * and reconnects. Frontend and backend run in this thread; after each
 * operation the backend's GMainContext is drained. A crash, a sanitizer
 * report, a hang (libFuzzer -timeout) or an fd leaked across an input
 * (abort) is a finding.
 *
 * Without -fsanitize=fuzzer (VU_FUZZ_REPLAY) main() replays the files named
 * on the command line, or a fixed series of pseudo-random inputs.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib.h>

#include "hw/virtio/vhost-user-backend.h"
#include "vhost-user-frontend.h"

#define FZ_QUEUES 2
#define FZ_QUEUE_MAX 256
#define FZ_RAM_SIZE (256u * 1024)
#define FZ_RAM_GPA 0x40000000ull
#define FZ_MAX_OPS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct Input {
    const uint8_t *p;
    size_t left;
} Input;

static uint64_t take(Input *in, unsigned bytes)
{
    uint64_t v = 0;

    for (unsigned i = 0; i < bytes && in->left; i++, in->left--) {
        v |= (uint64_t)*in->p++ << (8 * i);
    }
    return v;
}

/* Process-wide fixture, made once: fuzzing re-creates nothing per input but the connection. */
static struct {
    VirtIODevice vdev;
    VhostUserBackend *be;
    GMainContext *ctx;
    int ram_fd;
    uint8_t *ram;
    int sock;                   /* frontend end, -1 between inputs */
    int kick[FZ_QUEUES], call[FZ_QUEUES];
} fz;

/* The device: writes a pattern into every writable byte and completes in pop order. */
static void fz_handle(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtQueueElement *e;
    unsigned n = 0;

    while (n++ < FZ_QUEUE_MAX && (e = virtqueue_pop(vq, sizeof(*e)))) {
        for (unsigned i = 0; i < e->in_num; i++) {
            memset(e->in_sg[i].iov_base, 0xab, e->in_sg[i].iov_len);
        }
        virtqueue_push(vq, e, e->in_len);
        virtqueue_element_free(e);
    }
    virtio_notify(vdev, vq);
}

static void fz_init(void)
{
    if (fz.be) {
        return;
    }
    if (virtio_init(&fz.vdev, "vu-fuzz", 42, 16, NULL, FZ_QUEUES, FZ_QUEUE_MAX) < 0) {
        abort();
    }
    for (unsigned n = 0; n < FZ_QUEUES; n++) {
        virtio_queue_set_handler(&fz.vdev, n, fz_handle);
        fz.kick[n] = fz.call[n] = -1;
    }
    fz.be = vhost_user_backend_new(&fz.vdev, NULL, NULL);
    vhost_user_backend_set_log(fz.be, getenv("FUZZ_VHOST_USER_LOG") != NULL);
    fz.ctx = g_main_context_new();
    vhost_user_backend_set_context(fz.be, fz.ctx);
    vhost_user_backend_guard_sigbus();
    fz.ram_fd = memfd_create("vu-fuzz-ram", MFD_CLOEXEC);
    if (fz.ram_fd < 0 || ftruncate(fz.ram_fd, FZ_RAM_SIZE) < 0) {
        abort();
    }
    fz.ram = mmap(NULL, FZ_RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fz.ram_fd, 0);
    if (fz.ram == MAP_FAILED) {
        abort();
    }
    fz.sock = -1;
}

/* Run the backend until it has nothing to do; read and drop its replies. */
static void pump(void)
{
    uint8_t buf[4096];

    for (unsigned i = 0; i < 1000 && g_main_context_iteration(fz.ctx, FALSE); i++) {
    }
    for (;;) {
        union {
            char buf[CMSG_SPACE(8 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = { buf, sizeof(buf) };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        if (fz.sock < 0 || recvmsg(fz.sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) <= 0) {
            break;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t k = 0; k < n; k++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + k * sizeof(int), sizeof(int));
                close(fd);
            }
        }
    }
}

static void fz_connect(void)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
        fcntl(sv[0], F_SETFL, O_NONBLOCK) < 0 ||
        vhost_user_backend_serve_fd(fz.be, sv[1], NULL) < 0) {
        abort();
    }
    fz.sock = sv[0];
}

static void fz_disconnect(void)
{
    if (fz.sock >= 0) {
        close(fz.sock);
        fz.sock = -1;
    }
    pump();                     /* the backend sees the hang-up and resets */
    for (unsigned n = 0; n < FZ_QUEUES; n++) {
        if (fz.kick[n] >= 0) {
            close(fz.kick[n]);
        }
        if (fz.call[n] >= 0) {
            close(fz.call[n]);
        }
        fz.kick[n] = fz.call[n] = -1;
    }
}

/* Send without blocking (the socket is non-blocking): a full socket drops the message. */
static void send_msg(uint32_t request, uint32_t flags, const void *payload, uint32_t size,
                     const int *fds, unsigned nfds)
{
    VhostUserConn c = { .fd = fz.sock };

    vhost_user_send(&c, request, flags, payload, size, fds, nfds);
}

static const uint32_t ack = VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK;

static uint64_t uva(uint64_t off)
{
    return (uint64_t)(uintptr_t)fz.ram + off;
}

/* An fd of a kind the input picks: guest RAM, an eventfd, /dev/null. Caller closes. */
static int make_fd(unsigned kind)
{
    switch (kind % 3) {
    case 0:
        return dup(fz.ram_fd);
    case 1:
        return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    default:
        return open("/dev/null", O_RDWR | O_CLOEXEC);
    }
}

static void op_raw(Input *in)
{
    uint8_t payload[300] = { 0 };
    uint32_t request = take(in, 1) % (VHOST_USER_REQUEST_MAX + 4);
    uint32_t flags = take(in, 1);
    uint32_t size = take(in, 2) % sizeof(payload);
    unsigned nfds = take(in, 1) % 4;
    int fds[4] = { -1, -1, -1, -1 };

    flags = flags & 0x80 ? flags : (flags & VHOST_USER_NEED_REPLY_MASK) | VHOST_USER_VERSION;
    for (uint32_t i = 0; i < size && in->left; i++) {
        payload[i] = take(in, 1);
    }
    for (unsigned i = 0; i < nfds; i++) {
        fds[i] = make_fd(take(in, 1));
    }
    send_msg(request, flags, payload, size, fds, nfds);
    for (unsigned i = 0; i < nfds; i++) {
        close(fds[i]);
    }
}

/* A plausible value for a payload field: small index, size, RAM address, or anything. */
static uint64_t plausible(Input *in)
{
    switch (take(in, 1) % 5) {
    case 0:
        return take(in, 1) % (FZ_QUEUES + 1);
    case 1:
        return 1ull << (take(in, 1) % 16);
    case 2:
        return uva(take(in, 4) % FZ_RAM_SIZE);
    case 3:
        return FZ_RAM_GPA + take(in, 4) % FZ_RAM_SIZE;
    default:
        return take(in, 8);
    }
}

static void op_plausible(Input *in)
{
    static const uint32_t requests[] = {
        VHOST_USER_SET_FEATURES, VHOST_USER_SET_MEM_TABLE, VHOST_USER_SET_VRING_NUM,
        VHOST_USER_SET_VRING_ADDR, VHOST_USER_SET_VRING_BASE, VHOST_USER_GET_VRING_BASE,
        VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_CALL, VHOST_USER_SET_VRING_ENABLE,
        VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_RESET_DEVICE,
        VHOST_USER_ADD_MEM_REG, VHOST_USER_REM_MEM_REG, VHOST_USER_GET_CONFIG,
        VHOST_USER_SET_CONFIG, VHOST_USER_SET_STATUS,
    };
    static const uint32_t sizes[] = { 0, 8, 12, 20, 24, 40, 72 };
    uint64_t payload[9];
    uint32_t request = requests[take(in, 1) % G_N_ELEMENTS(requests)];
    uint32_t size = sizes[take(in, 1) % G_N_ELEMENTS(sizes)];
    unsigned nfds = take(in, 1) % 2;
    int fd = nfds ? make_fd(take(in, 1)) : -1;

    for (unsigned i = 0; i < G_N_ELEMENTS(payload); i++) {
        payload[i] = plausible(in);
    }
    send_msg(request, ack, payload, size, &fd, nfds);
    if (fd >= 0) {
        close(fd);
    }
}

/* Negotiate, share RAM and start ring @q with rings at a fixed place (contents from other ops). */
static void op_setup(Input *in)
{
    uint64_t features = (take(in, 8) | 1ull << VIRTIO_F_VERSION_1 |
                         1ull << VHOST_USER_F_PROTOCOL_FEATURES) & (fz.vdev.host_features |
                         1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    uint64_t pf = 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK | 1ull << VHOST_USER_PROTOCOL_F_MQ |
                  1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD |
                  1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS;
    unsigned q = take(in, 1) % FZ_QUEUES;
    unsigned num = 1u << (take(in, 1) % 9);
    uint64_t ring = q * (FZ_RAM_SIZE / 4);
    VhostUserMemory m = { .nregions = 1,
                          .regions[0] = { FZ_RAM_GPA, FZ_RAM_SIZE, uva(0), 0 } };
    VhostUserVringState st = { q, num }, base = { q, (uint32_t)take(in, 4) };
    VhostUserVringAddr a = { .index = q, .desc_user_addr = uva(ring),
                             .avail_user_addr = uva(ring + 0x2000), .used_user_addr = uva(ring + 0x4000) };
    VhostUserVringState enable = { q, 1 };
    uint64_t idx = q;

    send_msg(VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    send_msg(VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &pf, sizeof(pf), NULL, 0);
    send_msg(VHOST_USER_SET_FEATURES, ack, &features, sizeof(features), NULL, 0);
    send_msg(VHOST_USER_SET_MEM_TABLE, ack, &m, offsetof(VhostUserMemory, regions) + sizeof(m.regions[0]),
             &fz.ram_fd, 1);
    pump();
    send_msg(VHOST_USER_SET_VRING_NUM, ack, &st, sizeof(st), NULL, 0);
    send_msg(VHOST_USER_SET_VRING_BASE, ack, &base, sizeof(base), NULL, 0);
    send_msg(VHOST_USER_SET_VRING_ADDR, ack, &a, sizeof(a), NULL, 0);
    pump();
    if (fz.call[q] < 0) {
        fz.call[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (fz.kick[q] < 0) {
        fz.kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    send_msg(VHOST_USER_SET_VRING_CALL, ack, &idx, sizeof(idx), &fz.call[q], 1);
    send_msg(VHOST_USER_SET_VRING_KICK, ack, &idx, sizeof(idx), &fz.kick[q], 1);
    send_msg(VHOST_USER_SET_VRING_ENABLE, ack, &enable, sizeof(enable), NULL, 0);
}

/* Ring and buffer contents: the driver side, as hostile as the input makes it. */
static void op_write_ram(Input *in)
{
    uint32_t off = take(in, 4) % FZ_RAM_SIZE;
    uint32_t len = take(in, 1);

    for (uint32_t i = 0; i < len && off + i < FZ_RAM_SIZE && in->left; i++) {
        fz.ram[off + i] = take(in, 1);
    }
}

static void op_kick(Input *in)
{
    unsigned q = take(in, 1) % FZ_QUEUES;
    uint64_t one = 1;

    if (fz.kick[q] >= 0 && write(fz.kick[q], &one, sizeof(one)) < 0) {
        /* counter full: still a kick */
    }
}

static int count_fds(void)
{
    int n = 0;

    for (int fd = 0; fd < 4096; fd++) {
        n += fcntl(fd, F_GETFD) >= 0;
    }
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Input in = { data, size };
    int fds_before;

    fz_init();
    fds_before = count_fds();
    memset(fz.ram, 0, FZ_RAM_SIZE);
    fz_connect();
    for (unsigned ops = 0; ops < FZ_MAX_OPS && in.left; ops++) {
        switch (take(&in, 1) % 7) {
        case 0:
            op_raw(&in);
            break;
        case 1:
            op_plausible(&in);
            break;
        case 2:
            op_setup(&in);
            break;
        case 3:
            op_write_ram(&in);
            break;
        case 4:
            op_kick(&in);
            break;
        case 5:
            fz_disconnect();
            fz_connect();
            break;
        default:
            op_write_ram(&in);
            op_kick(&in);
            break;
        }
        pump();
    }
    fz_disconnect();
    if (count_fds() != fds_before) {
        fprintf(stderr, "fuzz-vhost-user: fd leak: %d open before the input, %d after\n",
                fds_before, count_fds());
        abort();
    }
    return 0;
}

#ifdef VU_FUZZ_REPLAY
/* Replay files, or (no arguments) a fixed series of pseudo-random inputs. */
int main(int argc, char **argv)
{
    uint8_t buf[4096];
    GRand *rand;

    for (int i = 1; i < argc; i++) {
        gchar *contents;
        gsize len;
        if (!g_file_get_contents(argv[i], &contents, &len, NULL)) {
            fprintf(stderr, "fuzz-vhost-user: cannot read %s\n", argv[i]);
            return 1;
        }
        LLVMFuzzerTestOneInput((const uint8_t *)contents, len);
        g_free(contents);
    }
    if (argc > 1) {
        return 0;
    }
    rand = g_rand_new_with_seed(0x7668);
    for (unsigned run = 0; run < 2000; run++) {
        size_t len = g_rand_int_range(rand, 1, sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            buf[i] = g_rand_int(rand);
        }
        LLVMFuzzerTestOneInput(buf, len);
    }
    g_rand_free(rand);
    printf("fuzz-vhost-user: 2000 inputs replayed\n");
    return 0;
}
#endif
