/*
 * vhost-user backend tests: the protocol against the test frontend, hostile
 * frontends (each answered by an error reply or a closed connection, no fd
 * leaked, the next connection served), and an echo device driven through the
 * backend by the driver library on all four ring layouts.
 *
 * The backend runs on its own thread and GMainContext; the test thread is
 * the frontend. Every wait is bounded (VUF timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib.h>

#include "hw/virtio/vhost-user-backend.h"
#include "vdriver.h"
#include "vhost-user-frontend.h"

#define TIMEOUT_MS 5000
#define NUM_QUEUES 2
#define QUEUE_MAX 256
#define RAM_SIZE (1ull << 20)
#define ECHO_DEVICE_ID 42
#define ECHO_CONFIG_LEN 8

/* ---------------------------------------------------------------------- */
/* The echo device: copies each buffer's readable bytes into its writable ones */

typedef struct EchoDevice {
    VirtIODevice vdev;
    VhostUserBackend *be;
    /* Hold mode: pop and keep buffers (a daemon about to die with requests in flight). */
    bool hold;                  /* __atomic: set by the test thread */
    bool batch;                 /* publish in-order runs as batches (set before connecting) */
    unsigned held_num;          /* __atomic: read by the test thread */
    VirtQueueElement *held[QUEUE_MAX];
    unsigned resubmitted;
    unsigned started[NUM_QUEUES];
    unsigned stopped[NUM_QUEUES];
    unsigned resets;
    uint8_t last_config_write[ECHO_CONFIG_LEN];
} EchoDevice;

static size_t iov_copy_between(const struct iovec *dst, unsigned dst_num,
                               const struct iovec *src, unsigned src_num)
{
    size_t done = 0, soff = 0, doff = 0;
    unsigned s = 0, d = 0;

    while (s < src_num && d < dst_num) {
        size_t n = MIN(src[s].iov_len - soff, dst[d].iov_len - doff);
        memcpy((uint8_t *)dst[d].iov_base + doff, (const uint8_t *)src[s].iov_base + soff, n);
        done += n;
        soff += n;
        doff += n;
        if (soff == src[s].iov_len) {
            s++;
            soff = 0;
        }
        if (doff == dst[d].iov_len) {
            d++;
            doff = 0;
        }
    }
    return done;
}

/*
 * Pop everything, then complete in reverse order, publishing after each:
 * under IN_ORDER (ordered fill + flush) nothing may be published until the
 * first is filled; without it the driver sees them in reverse.
 */
static EchoDevice *echo_of(VirtIODevice *vdev)
{
    return (EchoDevice *)((char *)vdev - offsetof(EchoDevice, vdev));
}

/* Complete one element without IN_ORDER, keeping the inflight region exact. */
static void echo_push(EchoDevice *d, VirtQueue *vq, VirtQueueElement *e, size_t len)
{
    unsigned n = virtio_get_queue_index(vq);

    vhost_user_inflight_pre_put(d->be, n, e->index);
    virtqueue_push(vq, e, len);
    vhost_user_inflight_put(d->be, n, e->index);
}

static void echo_handle(VirtIODevice *vdev, VirtQueue *vq)
{
    EchoDevice *d = echo_of(vdev);
    bool in_order = virtio_vdev_has_feature(vdev, VIRTIO_F_IN_ORDER);
    /* As contrib/vhost-user-blk: split under IN_ORDER needs no record, packed always does. */
    bool tracked = !in_order || virtio_vdev_has_feature(vdev, VIRTIO_F_RING_PACKED);
    unsigned qn = virtio_get_queue_index(vq);
    VirtQueueElement *elems[QUEUE_MAX];
    size_t lens[QUEUE_MAX];
    unsigned n = 0;

    while (n < QUEUE_MAX) {
        VirtQueueElement *e = virtqueue_pop(vq, sizeof(VirtQueueElement));
        if (!e) {
            break;
        }
        if (tracked) {
            vhost_user_inflight_begin(d->be, qn, e);
        }
        if (__atomic_load_n(&d->hold, __ATOMIC_ACQUIRE)) {
            d->held[d->held_num] = e;
            __atomic_store_n(&d->held_num, d->held_num + 1, __ATOMIC_RELEASE);
            continue;
        }
        lens[n] = iov_copy_between(e->in_sg, e->in_num, e->out_sg, e->out_num);
        elems[n++] = e;
    }
    for (unsigned i = n; i-- > 0;) {
        if (in_order) {
            virtqueue_ordered_fill(vq, elems[i], lens[i]);
            virtqueue_ordered_flush(vq);
            if (tracked) {
                vhost_user_inflight_put(d->be, qn, elems[i]->index);
            }
        } else {
            echo_push(d, vq, elems[i], lens[i]);   /* really out of order */
        }
    }
    for (unsigned i = 0; i < n; i++) {
        virtqueue_element_free(elems[i]);
    }
    if (n) {
        virtio_notify(vdev, vq);
    }
}

/* After a restart: redo what the inflight region says was in flight, oldest first. */
static void echo_resubmit(EchoDevice *d, unsigned n)
{
    VirtQueue *vq = virtio_get_queue(&d->vdev, n);
    const uint16_t *heads;
    unsigned count = vhost_user_inflight_resubmit(d->be, n, &heads);

    for (unsigned i = 0; i < count; i++) {
        VirtQueueElement *e = virtqueue_pop_inflight(vq, heads[i], sizeof(VirtQueueElement));
        g_assert_nonnull(e);
        echo_push(d, vq, e, iov_copy_between(e->in_sg, e->in_num, e->out_sg, e->out_num));
        virtqueue_element_free(e);
        d->resubmitted++;
    }
    if (count) {
        virtio_notify(&d->vdev, vq);
    }
}

static void echo_queue_started(void *opaque, unsigned n, bool started)
{
    EchoDevice *d = opaque;

    if (started) {
        d->started[n]++;
        if (d->batch && virtio_vdev_has_feature(&d->vdev, VIRTIO_F_IN_ORDER)) {
            virtio_queue_set_batch(virtio_get_queue(&d->vdev, n), true);
        }
        echo_resubmit(d, n);
    } else {
        /* Stopping: a dying daemon's requests are simply gone (the inflight region remembers). */
        for (unsigned i = 0; i < d->held_num; i++) {
            virtqueue_element_free(d->held[i]);
        }
        __atomic_store_n(&d->held_num, 0, __ATOMIC_RELEASE);
        d->stopped[n]++;
    }
}

static void echo_reset(void *opaque)
{
    EchoDevice *d = opaque;
    d->resets++;
}

static int echo_set_config(void *opaque, uint32_t offset, const uint8_t *data, uint32_t len,
                           uint32_t flags)
{
    EchoDevice *d = opaque;

    memcpy(d->vdev.config + offset, data, len);
    memcpy(d->last_config_write, d->vdev.config, ECHO_CONFIG_LEN);
    return 0;
}

static const VhostUserBackendOps echo_ops = {
    .queue_started = echo_queue_started,
    .reset = echo_reset,
    .set_config = echo_set_config,
};

/* ---------------------------------------------------------------------- */
/* Fixture: backend thread + socket                                        */

typedef struct Fixture {
    EchoDevice dev;
    VhostUserBackend *be;
    GMainContext *ctx;
    GMainLoop *loop;
    GThread *thread;
    char *dir;
    char *path;
} Fixture;

static gpointer backend_thread(gpointer opaque)
{
    Fixture *fx = opaque;

    g_main_context_push_thread_default(fx->ctx);
    g_main_loop_run(fx->loop);
    g_main_context_pop_thread_default(fx->ctx);
    return NULL;
}

static void fixture_setup(Fixture *fx, gconstpointer data)
{
    GError *err = NULL;

    memset(fx, 0, sizeof(*fx));
    g_assert_cmpint(virtio_init(&fx->dev.vdev, "vu-echo", ECHO_DEVICE_ID, ECHO_CONFIG_LEN, NULL,
                                NUM_QUEUES, QUEUE_MAX), ==, 0);
    memcpy(fx->dev.vdev.config, "vdm-echo", ECHO_CONFIG_LEN);
    for (unsigned n = 0; n < NUM_QUEUES; n++) {
        virtio_queue_set_handler(&fx->dev.vdev, n, echo_handle);
    }
    fx->be = vhost_user_backend_new(&fx->dev.vdev, &echo_ops, &fx->dev);
    fx->dev.be = fx->be;
    fx->ctx = g_main_context_new();
    vhost_user_backend_set_context(fx->be, fx->ctx);
    fx->dir = g_dir_make_tmp("vdm-vu-XXXXXX", &err);
    g_assert_no_error(err);
    fx->path = g_build_filename(fx->dir, "sock", NULL);
    g_assert_cmpint(vhost_user_backend_listen(fx->be, fx->path, &err), ==, 0);
    g_assert_no_error(err);
    fx->loop = g_main_loop_new(fx->ctx, FALSE);
    fx->thread = g_thread_new("vu-backend", backend_thread, fx);
}

static gboolean quit_loop(gpointer opaque)
{
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

static void fixture_teardown(Fixture *fx, gconstpointer data)
{
    /* Quit from inside the loop: a quit before the thread reached g_main_loop_run would be lost. */
    g_main_context_invoke(fx->ctx, quit_loop, fx->loop);
    g_thread_join(fx->thread);
    vhost_user_backend_free(fx->be);
    g_main_loop_unref(fx->loop);
    g_main_context_unref(fx->ctx);
    virtio_cleanup(&fx->dev.vdev);
    rmdir(fx->dir);
    g_free(fx->path);
    g_free(fx->dir);
}

static void connect_ok(Fixture *fx, VuFrontend *f)
{
    g_assert_cmpint(vuf_connect(f, fx->path, TIMEOUT_MS), ==, 0);
}

/* A fresh connection answers GET_FEATURES: the previous one is fully cleaned up. */
static uint64_t roundtrip(Fixture *fx, VuFrontend *f)
{
    uint64_t features = 0;

    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, &features), ==, 0);
    return features;
}

/* Open fds with one idle connection served (so the counts compare like with like). */
static int fds_with_idle_connection(Fixture *fx)
{
    VuFrontend f;
    int n;

    connect_ok(fx, &f);
    roundtrip(fx, &f);
    n = vuf_count_fds();
    vuf_close(&f);
    return n;
}

/* Connect, negotiate (REPLY_ACK on) and share RAM. */
static void session_start(Fixture *fx, VuFrontend *f, uint64_t features)
{
    connect_ok(fx, f);
    g_assert_cmpint(vuf_negotiate(f, features | 1ull << VIRTIO_F_VERSION_1,
                                  1ull << VHOST_USER_PROTOCOL_F_MQ |
                                  1ull << VHOST_USER_PROTOCOL_F_CONFIG |
                                  1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD |
                                  1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE |
                                  1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS |
                                  1ull << VHOST_USER_PROTOCOL_F_STATUS), ==, 0);
    g_assert_cmpint(vuf_ram_create(f, RAM_SIZE), ==, 0);
    g_assert_cmpint(vuf_set_mem_table(f), ==, 0);
}

/* ---------------------------------------------------------------------- */
/* Protocol                                                                */

static void test_negotiation(Fixture *fx, gconstpointer data)
{
    VuFrontend f;
    VhostUserBackendStats st;
    uint64_t features, pf, queues, slots, status;

    connect_ok(fx, &f);
    features = roundtrip(fx, &f);
    g_assert_true(features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
    g_assert_true(features & (1ull << VIRTIO_F_IN_ORDER));
    g_assert_true(features & (1ull << VIRTIO_F_VERSION_1));
    g_assert_cmpint(vuf_get_u64(&f, VHOST_USER_GET_PROTOCOL_FEATURES, &pf), ==, 0);
    for (unsigned bit = 0; bit < 64; bit++) {
        static const unsigned expected[] = {
            VHOST_USER_PROTOCOL_F_MQ, VHOST_USER_PROTOCOL_F_REPLY_ACK,
            VHOST_USER_PROTOCOL_F_BACKEND_REQ, VHOST_USER_PROTOCOL_F_CONFIG,
            VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD, VHOST_USER_PROTOCOL_F_RESET_DEVICE,
            VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS, VHOST_USER_PROTOCOL_F_STATUS,
        };
        bool want = false;
        for (unsigned i = 0; i < G_N_ELEMENTS(expected); i++) {
            want |= expected[i] == bit;
        }
        g_assert_cmpint(!!(pf & (1ull << bit)), ==, want);
    }
    vuf_close(&f);

    session_start(fx, &f, 1ull << VIRTIO_F_IN_ORDER);
    g_assert_cmpint(vuf_get_u64(&f, VHOST_USER_GET_QUEUE_NUM, &queues), ==, 0);
    g_assert_cmpuint(queues, ==, NUM_QUEUES);
    g_assert_cmpint(vuf_get_u64(&f, VHOST_USER_GET_MAX_MEM_SLOTS, &slots), ==, 0);
    g_assert_cmpuint(slots, ==, GUEST_MEMORY_MAX_REGIONS);
    g_assert_cmpint(vuf_set_u64(&f, VHOST_USER_SET_STATUS, 0xb), ==, 0);
    g_assert_cmpint(vuf_get_u64(&f, VHOST_USER_GET_STATUS, &status), ==, 0);
    g_assert_cmpuint(status, ==, 0xb);
    vhost_user_backend_get_stats(fx->be, &st);
    g_assert_true(st.connected);
    g_assert_true(st.features & (1ull << VIRTIO_F_IN_ORDER));
    g_assert_false(st.features & (1ull << VHOST_USER_F_PROTOCOL_FEATURES));
    g_assert_true(st.protocol_features & (1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK));
    /* A bit the device does not offer is refused and nothing changes. */
    g_assert_true(vuf_refused(vuf_set_u64(&f, VHOST_USER_SET_FEATURES, 1ull << 63)));
    g_assert_true(vuf_refused(vuf_set_u64(&f, VHOST_USER_SET_PROTOCOL_FEATURES,
                                          1ull << VHOST_USER_PROTOCOL_F_PAGEFAULT)));
    vuf_close(&f);
}

static void test_config(Fixture *fx, gconstpointer data)
{
    VuFrontend f;
    VhostUserConfig cfg = { .offset = 0, .size = ECHO_CONFIG_LEN + 4 };
    VhostUserHeader hdr;
    int ret;

    session_start(fx, &f, 0);
    g_assert_cmpint(vuf_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &cfg,
                             VHOST_USER_CONFIG_HDR_SIZE + cfg.size, NULL, 0), ==, 0);
    ret = vuf_recv(&f, &hdr, &cfg, sizeof(cfg), NULL);
    g_assert_cmpint(ret, ==, VHOST_USER_CONFIG_HDR_SIZE + ECHO_CONFIG_LEN + 4);
    g_assert_cmpmem(cfg.region, ECHO_CONFIG_LEN, "vdm-echo", ECHO_CONFIG_LEN);
    g_assert_cmpmem(cfg.region + ECHO_CONFIG_LEN, 4, "\0\0\0\0", 4);

    cfg = (VhostUserConfig) { .offset = 4, .size = 4 };
    memcpy(cfg.region, "ECHO", 4);
    g_assert_cmpint(vuf_request(&f, VHOST_USER_SET_CONFIG, &cfg, VHOST_USER_CONFIG_HDR_SIZE + 4,
                                NULL, 0), ==, 0);
    g_assert_cmpmem(fx->dev.last_config_write, ECHO_CONFIG_LEN, "vdm-ECHO", ECHO_CONFIG_LEN);
    /* Past the config space, or a size that disagrees with the message. */
    cfg = (VhostUserConfig) { .offset = 6, .size = 4 };
    g_assert_true(vuf_refused(vuf_request(&f, VHOST_USER_SET_CONFIG, &cfg,
                                          VHOST_USER_CONFIG_HDR_SIZE + 4, NULL, 0)));
    cfg = (VhostUserConfig) { .offset = 0, .size = 200 };
    g_assert_true(vuf_refused(vuf_request(&f, VHOST_USER_SET_CONFIG, &cfg,
                                          VHOST_USER_CONFIG_HDR_SIZE + 4, NULL, 0)));
    /* GET_CONFIG beyond 256 bytes: no reply is possible, the connection closes. */
    cfg = (VhostUserConfig) { .offset = 0xffffffff, .size = 8 };
    g_assert_cmpint(vuf_send(&f, VHOST_USER_GET_CONFIG, VHOST_USER_VERSION, &cfg,
                             VHOST_USER_CONFIG_HDR_SIZE + 8, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_recv(&f, &hdr, &cfg, sizeof(cfg), NULL), ==, -EPIPE);
    vuf_close(&f);
}

/* ---------------------------------------------------------------------- */
/* Hostile frontends: one class per test, no fd leaked, next connection served */

typedef void (*HostileFn)(Fixture *fx, VuFrontend *f);

static void run_hostile(Fixture *fx, HostileFn fn)
{
    VuFrontend f;
    VhostUserBackendStats before, after;
    int fds_before = fds_with_idle_connection(fx);
    int fds_after;

    vhost_user_backend_get_stats(fx->be, &before);
    session_start(fx, &f, 0);
    fn(fx, &f);
    vuf_close(&f);
    fds_after = fds_with_idle_connection(fx);
    g_assert_cmpint(fds_after, ==, fds_before);
    vhost_user_backend_get_stats(fx->be, &after);
    g_assert_cmpuint(after.bad_messages, >, before.bad_messages);
    g_assert_cmpuint(after.connections, >=, before.connections + 2);
}

/* Re-open a session after the backend closed one (the test continues on a fresh one). */
static void reopen(Fixture *fx, VuFrontend *f)
{
    vuf_close(f);
    session_start(fx, f, 0);
}

static void hostile_payload_sizes(Fixture *fx, VuFrontend *f)
{
    uint8_t junk[64] = { 0 };

    /* With NEED_REPLY: an error ack, the connection stays. */
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_FEATURES, junk, 4, NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, junk, 12, NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, junk, 32, NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_OWNER, junk, 16, NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_MEM_TABLE, junk, 8, &f->mem_fd, 1), >, 0);
    roundtrip(fx, f);
    /* A request with its own reply cannot be acked: closed. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, junk, 4, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, (uint64_t *)junk), ==, -EPIPE);
    reopen(fx, f);
    /* Without NEED_REPLY: closed. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION, junk, 16, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, (uint64_t *)junk), ==, -EPIPE);
}

static void hostile_fds(Fixture *fx, VuFrontend *f)
{
    uint64_t idx = 0;
    int fds[9];
    VhostUserMemory m = { .nregions = 2 };

    for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++) {
        fds[i] = dup(f->mem_fd);
    }
    /* Missing: a kick without the no-fd flag and without an fd. */
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &idx, sizeof(idx), NULL, 0), >, 0);
    /* Extra: an fd with the no-fd flag, an fd on SET_FEATURES. */
    idx = VHOST_USER_VRING_NOFD_MASK;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_CALL, &idx, sizeof(idx), fds, 1), >, 0);
    idx = 1ull << VIRTIO_F_VERSION_1;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_FEATURES, &idx, sizeof(idx), fds, 2), >, 0);
    /* Region count disagreeing with the fds. */
    m.regions[0] = (VhostUserMemoryRegion) { VUF_RAM_GPA, 4096, vuf_uva(f, VUF_RAM_GPA), 0 };
    m.regions[1] = (VhostUserMemoryRegion) { VUF_RAM_GPA + 4096, 4096, vuf_uva(f, VUF_RAM_GPA) + 4096, 4096 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_MEM_TABLE, &m,
                                offsetof(VhostUserMemory, regions) + 2 * sizeof(m.regions[0]), fds, 1), >, 0);
    /* Reserved bits in a vring fd payload. */
    idx = 1ull << 20;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_CALL, &idx, sizeof(idx), fds, 1), >, 0);
    /* More fds than any message may carry. */
    idx = 0;
    g_assert_true(vuf_refused(vuf_request(f, VHOST_USER_SET_VRING_CALL, &idx, sizeof(idx), fds, 9)));
    for (unsigned i = 0; i < G_N_ELEMENTS(fds); i++) {
        close(fds[i]);
    }
}

static void hostile_header(Fixture *fx, VuFrontend *f)
{
    uint64_t v = 0;
    uint8_t big[VHOST_USER_PAYLOAD_MAX + 16] = { 0 };

    /* Unknown requests: acked as errors when asked, else closed. */
    g_assert_cmpint(vuf_request(f, 99, &v, sizeof(v), NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_NONE, NULL, 0, NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_POSTCOPY_ADVISE, NULL, 0, NULL, 0), >, 0);
    /* Not offered: refused. */
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_LOG_BASE, &v, sizeof(v), NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ENDIAN, &v, sizeof(v), NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_IOTLB_MSG, big, 64, NULL, 0), >, 0);
    roundtrip(fx, f);
    /* Wrong version. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_GET_FEATURES, 2, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, &v), ==, -EPIPE);
    reopen(fx, f);
    /* A reply flag on a request. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_GET_FEATURES, 5, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, &v), ==, -EPIPE);
    reopen(fx, f);
    /* Oversized payload announced: closed before reading it. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_SET_FEATURES, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK,
                             big, sizeof(big), NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, &v), ==, -EPIPE);
    reopen(fx, f);
    g_assert_cmpint(vuf_send(f, 99, VHOST_USER_VERSION, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_FEATURES, &v), ==, -EPIPE);
}

/* One SET_MEM_TABLE region list (up to one more than allowed), each region backed by @fd. */
static int mem_table(VuFrontend *f, const VhostUserMemoryRegion *r, unsigned n, int fd)
{
    uint8_t buf[offsetof(VhostUserMemory, regions) + (VHOST_USER_MAX_REGIONS + 1) * sizeof(*r)];
    uint32_t nregions = n;
    int fds[VHOST_USER_MAX_REGIONS + 1];

    g_assert_cmpuint(n, <=, VHOST_USER_MAX_REGIONS + 1);
    memset(buf, 0, sizeof(buf));
    memcpy(buf, &nregions, sizeof(nregions));
    memcpy(buf + offsetof(VhostUserMemory, regions), r, n * sizeof(*r));
    for (unsigned i = 0; i < n; i++) {
        fds[i] = fd;
    }
    return vuf_request(f, VHOST_USER_SET_MEM_TABLE, buf,
                       offsetof(VhostUserMemory, regions) + n * sizeof(*r), fds, n);
}

static void hostile_regions(Fixture *fx, VuFrontend *f)
{
    uint64_t uva = vuf_uva(f, VUF_RAM_GPA);
    VhostUserMemoryRegion r[VHOST_USER_MAX_REGIONS + 1];
    VhostUserMemRegMsg reg = { 0 };
    int pipefd[2];

    /* Overlapping guest-physical ranges. */
    r[0] = (VhostUserMemoryRegion) { 0x100000, 0x10000, uva, 0 };
    r[1] = (VhostUserMemoryRegion) { 0x108000, 0x10000, uva + 0x20000, 0x20000 };
    g_assert_cmpint(mem_table(f, r, 2, f->mem_fd), >, 0);
    /* Overlapping user addresses. */
    r[1] = (VhostUserMemoryRegion) { 0x200000, 0x10000, uva + 0x8000, 0x20000 };
    g_assert_cmpint(mem_table(f, r, 2, f->mem_fd), >, 0);
    /* Overflowing gpa + size, uva + size, offset + size; zero size. */
    r[0] = (VhostUserMemoryRegion) { UINT64_MAX - 0xfff, 0x2000, uva, 0 };
    g_assert_cmpint(mem_table(f, r, 1, f->mem_fd), >, 0);
    r[0] = (VhostUserMemoryRegion) { 0x100000, 0x2000, UINT64_MAX - 0xfff, 0 };
    g_assert_cmpint(mem_table(f, r, 1, f->mem_fd), >, 0);
    r[0] = (VhostUserMemoryRegion) { 0x100000, 0x2000, uva, UINT64_MAX - 0xfff };
    g_assert_cmpint(mem_table(f, r, 1, f->mem_fd), >, 0);
    r[0] = (VhostUserMemoryRegion) { 0x100000, 0, uva, 0 };
    g_assert_cmpint(mem_table(f, r, 1, f->mem_fd), >, 0);
    /* Larger than the file behind it (would SIGBUS), and not a file at all. */
    r[0] = (VhostUserMemoryRegion) { 0x100000, RAM_SIZE, uva, 0x1000 };
    g_assert_cmpint(mem_table(f, r, 1, f->mem_fd), >, 0);
    g_assert_cmpint(pipe(pipefd), ==, 0);
    r[0] = (VhostUserMemoryRegion) { 0x100000, 0x1000, uva, 0 };
    g_assert_cmpint(mem_table(f, r, 1, pipefd[0]), >, 0);
    close(pipefd[0]);
    close(pipefd[1]);
    /* More regions than a table holds. */
    for (unsigned i = 0; i < G_N_ELEMENTS(r); i++) {
        r[i] = (VhostUserMemoryRegion) { 0x100000 + i * 0x1000ull, 0x1000, uva + i * 0x1000ull, i * 0x1000ull };
    }
    g_assert_true(vuf_refused(mem_table(f, r, VHOST_USER_MAX_REGIONS + 1, f->mem_fd)));
    reopen(fx, f);
    /* A valid table of 8 pieces works; ADD_MEM_REG overlapping it is refused, a new one added and removed. */
    g_assert_cmpint(mem_table(f, r, VHOST_USER_MAX_REGIONS, f->mem_fd), ==, 0);
    reg.region = (VhostUserMemoryRegion) { 0x100000, 0x1000, uva + 0x80000, 0x80000 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_ADD_MEM_REG, &reg, sizeof(reg), &f->mem_fd, 1), >, 0);
    reg.region = (VhostUserMemoryRegion) { 0x400000, 0x1000, uva + 0x80000, 0x80000 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_ADD_MEM_REG, &reg, sizeof(reg), &f->mem_fd, 1), ==, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_REM_MEM_REG, &reg, sizeof(reg), NULL, 0), ==, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_REM_MEM_REG, &reg, sizeof(reg), NULL, 0), >, 0);
    /* Replacing the table keeps unchanged regions and drops the rest (no leak either way). */
    g_assert_cmpint(mem_table(f, r, 2, f->mem_fd), ==, 0);
    g_assert_cmpint(vuf_set_mem_table(f), ==, 0);
}

static void hostile_vrings(Fixture *fx, VuFrontend *f)
{
    VhostUserVringState s;
    VhostUserVringAddr a = { 0 };
    uint64_t v;
    int efd = eventfd(0, EFD_CLOEXEC);
    int not_eventfd[2];

    /* Index out of range on every kind of vring message. */
    s = (VhostUserVringState) { NUM_QUEUES, 64 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_BASE, &s, sizeof(s), NULL, 0), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ENABLE, &s, sizeof(s), NULL, 0), >, 0);
    s.index = 0xffffffff;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    a.index = NUM_QUEUES;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), >, 0);
    v = 0xff;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_CALL, &v, sizeof(v), &efd, 1), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), &efd, 1), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ERR, &v, sizeof(v), &efd, 1), >, 0);
    /* Queue sizes: 0, above the maximum, not a power of two (split). */
    s = (VhostUserVringState) { 0, 0 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    s.num = QUEUE_MAX * 2;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    s.num = 65536;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    s.num = 100;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), >, 0);
    /* Split base beyond 16 bits; enable value not 0/1. */
    s = (VhostUserVringState) { 0, 0x10000 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_BASE, &s, sizeof(s), NULL, 0), >, 0);
    s = (VhostUserVringState) { 0, 2 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ENABLE, &s, sizeof(s), NULL, 0), >, 0);
    /* Ring addresses outside the memory table, straddling its end, or with unknown flags. */
    a = (VhostUserVringAddr) { .index = 0, .desc_user_addr = 0x1000, .avail_user_addr = 0x2000,
                               .used_user_addr = 0x3000 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), >, 0);
    a.desc_user_addr = vuf_uva(f, VUF_RAM_GPA + RAM_SIZE - 64);
    a.avail_user_addr = vuf_uva(f, VUF_RAM_GPA);
    a.used_user_addr = vuf_uva(f, VUF_RAM_GPA + 0x1000);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), >, 0);
    a.desc_user_addr = vuf_uva(f, VUF_RAM_GPA + 0x2000);
    a.flags = 2;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), >, 0);
    /* Kick and call fds that are not eventfds: a file, a pipe. */
    v = 0;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), &f->mem_fd, 1), >, 0);
    g_assert_cmpint(pipe2(not_eventfd, O_CLOEXEC), ==, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_CALL, &v, sizeof(v), &not_eventfd[1], 1), >, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), &not_eventfd[0], 1), >, 0);
    close(not_eventfd[0]);
    close(not_eventfd[1]);
    /* Kick in polling mode is not supported. */
    v = VHOST_USER_VRING_NOFD_MASK;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), NULL, 0), >, 0);
    /* GET_VRING_BASE on a ring never set up is answered; repeated, it leaks nothing. */
    for (unsigned i = 0; i < 3; i++) {
        uint32_t base;
        g_assert_cmpint(vuf_ring_get_base(f, 1, &base), ==, 0);
    }
    /* The misaligned ring the core refuses at start: an error ack, and the device stays sane. */
    a = (VhostUserVringAddr) { .index = 0, .desc_user_addr = vuf_uva(f, VUF_RAM_GPA + 0x2008),
                               .avail_user_addr = vuf_uva(f, VUF_RAM_GPA),
                               .used_user_addr = vuf_uva(f, VUF_RAM_GPA + 0x1000) };
    s = (VhostUserVringState) { 0, 64 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_NUM, &s, sizeof(s), NULL, 0), ==, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ADDR, &a, sizeof(a), NULL, 0), ==, 0);
    s = (VhostUserVringState) { 0, 1 };
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_ENABLE, &s, sizeof(s), NULL, 0), ==, 0);
    v = 0;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_VRING_KICK, &v, sizeof(v), &efd, 1), >, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_STATUS, &v), ==, 0);
    g_assert_true(v & VIRTIO_CONFIG_S_NEEDS_RESET);
    /* RESET_DEVICE clears it. */
    g_assert_cmpint(vuf_request(f, VHOST_USER_RESET_DEVICE, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_get_u64(f, VHOST_USER_GET_STATUS, &v), ==, 0);
    g_assert_false(v & VIRTIO_CONFIG_S_NEEDS_RESET);
    close(efd);
}

static int inflight_get(VuFrontend *f, uint16_t num_queues, uint16_t queue_size, VhostUserInflight *out,
                        int *fd)
{
    VhostUserInflight in = { .num_queues = num_queues, .queue_size = queue_size };
    VhostUserHeader hdr;
    int ret = vuf_send(f, VHOST_USER_GET_INFLIGHT_FD, VHOST_USER_VERSION, &in, VHOST_USER_INFLIGHT_SIZE,
                       NULL, 0);

    if (ret < 0) {
        return ret;
    }
    return vuf_recv(f, &hdr, out, sizeof(*out), fd);
}

static void hostile_inflight(Fixture *fx, VuFrontend *f)
{
    VhostUserInflight in;
    int fd = -1, small;

    /* A good region first, twice (the second replaces the first: nothing leaks). */
    for (unsigned i = 0; i < 2; i++) {
        g_assert_cmpint(inflight_get(f, NUM_QUEUES, 128, &in, &fd), ==, sizeof(in));
        g_assert_cmpint(fd, >=, 0);
        g_assert_cmpuint(in.mmap_size, ==, NUM_QUEUES * vhost_user_inflight_queue_size(128));
        g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), ==, 0);
        close(fd);
    }
    g_assert_cmpint(inflight_get(f, NUM_QUEUES, 128, &in, &fd), ==, sizeof(in));
    /* SET with a size that does not match the geometry, an unaligned offset, or a short file. */
    in.mmap_size += 64;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), >, 0);
    in.mmap_size -= 64;
    in.mmap_offset = 100;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), >, 0);
    in.mmap_offset = 4096;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), >, 0);
    in.mmap_offset = 0;
    small = memfd_create("small", MFD_CLOEXEC);
    g_assert_cmpint(ftruncate(small, 64), ==, 0);
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &small, 1), >, 0);
    close(small);
    /* Bad geometry on SET: more queues than the device, zero or oversized queues. */
    in.num_queues = NUM_QUEUES + 1;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), >, 0);
    in.num_queues = NUM_QUEUES;
    in.queue_size = 0;
    g_assert_cmpint(vuf_request(f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE, &fd, 1), >, 0);
    close(fd);
    /* Bad geometry on GET: no reply possible, the connection closes. */
    g_assert_cmpint(inflight_get(f, 0, 128, &in, &fd), ==, -EPIPE);
    reopen(fx, f);
    g_assert_cmpint(inflight_get(f, NUM_QUEUES, 0xffff, &in, &fd), ==, -EPIPE);
    reopen(fx, f);
    g_assert_cmpint(inflight_get(f, 200, 128, &in, &fd), ==, -EPIPE);
}

static void hostile_disconnect_mid_message(Fixture *fx, VuFrontend *f)
{
    VhostUserHeader hdr = { VHOST_USER_SET_VRING_ADDR, VHOST_USER_VERSION, sizeof(VhostUserVringAddr) };
    uint8_t partial[sizeof(hdr) + 10] = { 0 };
    uint64_t idx = 0;
    int efd = dup(f->mem_fd);

    /* Half a header. */
    g_assert_cmpint(vuf_send_raw(f, &hdr, 6), ==, 0);
    reopen(fx, f);
    /* A header and part of its payload. */
    memcpy(partial, &hdr, sizeof(hdr));
    g_assert_cmpint(vuf_send_raw(f, partial, sizeof(partial)), ==, 0);
    reopen(fx, f);
    /* A header whose fd came along but whose payload never does. */
    g_assert_cmpint(vuf_send(f, VHOST_USER_SET_VRING_CALL, VHOST_USER_VERSION, NULL, sizeof(idx),
                             &efd, 1), ==, 0);
    reopen(fx, f);
    /* Make the class show up in the bad-message count too. */
    g_assert_cmpint(vuf_request(f, 77, NULL, 0, NULL, 0), >, 0);
    close(efd);
}

/* A peer that sends requests but never reads the replies is dropped, not waited for. */
static void hostile_peer_not_reading(Fixture *fx, VuFrontend *f)
{
    int ret = 0;

    for (unsigned i = 0; i < 1000000 && ret == 0; i++) {
        ret = vuf_send(f, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    }
    g_assert_cmpint(ret, ==, -EPIPE);
    reopen(fx, f);
    g_assert_cmpint(vuf_request(f, 77, NULL, 0, NULL, 0), >, 0);    /* a bad message for the count */
}

typedef struct HostileTest {
    const char *name;
    HostileFn fn;
} HostileTest;

static const HostileTest hostile_tests[] = {
    { "payload-sizes", hostile_payload_sizes },
    { "fds", hostile_fds },
    { "header", hostile_header },
    { "regions", hostile_regions },
    { "vrings", hostile_vrings },
    { "inflight", hostile_inflight },
    { "disconnect-mid-message", hostile_disconnect_mid_message },
    { "peer-not-reading", hostile_peer_not_reading },
};

static void test_hostile(Fixture *fx, gconstpointer data)
{
    const HostileTest *t = data;
    run_hostile(fx, t->fn);
}

/* ---------------------------------------------------------------------- */
/* Echo through the backend with the driver library                        */

typedef struct Layout {
    const char *name;
    bool packed;
    bool in_order;
} Layout;

static const Layout layouts[] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

#define ECHO_NUM 64
#define ECHO_BUF 256

typedef struct EchoSession {
    VuFrontend f;
    VuFrontendRing ring;
    VDriverQueueConfig qcfg;
    VDriverQueue *q;
    hwaddr data;                /* out buffers then in buffers, ECHO_BUF each */
    uint64_t tokens_reaped;
    VhostUserBackend *be;       /* for stats in failure messages */
} EchoSession;

static void echo_session_start(Fixture *fx, EchoSession *s, const Layout *l)
{
    uint64_t features = (l->packed ? 1ull << VIRTIO_F_RING_PACKED : 0) |
                        (l->in_order ? 1ull << VIRTIO_F_IN_ORDER : 0);

    memset(s, 0, sizeof(*s));
    s->be = fx->be;
    session_start(fx, &s->f, features);
    s->qcfg = (VDriverQueueConfig) { .num = ECHO_NUM, .packed = l->packed, .in_order = l->in_order };
    s->data = vdriver_layout_rings(&s->qcfg, VUF_RAM_GPA);
    s->q = vdriver_queue_new(&s->f.mem, &s->qcfg);
    g_assert_nonnull(s->q);
    s->ring = (VuFrontendRing) {
        .index = 0, .num = ECHO_NUM, .desc = s->qcfg.desc, .driver = s->qcfg.driver,
        .device = s->qcfg.device, .base = l->packed ? 0x80008000 : 0, .kick_fd = -1, .call_fd = -1,
    };
    g_assert_cmpint(vuf_ring_setup(&s->f, &s->ring), ==, 0);
}

/* Make @count buffers available (tokens from @first) and kick. */
static void echo_add(EchoSession *s, unsigned first, unsigned count)
{
    for (unsigned i = 0; i < count; i++) {
        unsigned slot = (first + i) % ECHO_NUM;
        VDriverSeg out = { s->data + slot * ECHO_BUF, ECHO_BUF };
        VDriverSeg in = { s->data + (ECHO_NUM + slot) * ECHO_BUF, ECHO_BUF };
        memset(vuf_host(&s->f, out.addr), (int)(first + i), ECHO_BUF);
        memset(vuf_host(&s->f, in.addr), 0, ECHO_BUF);
        g_assert_cmpint(vdriver_add(s->q, &out, 1, &in, 1, GUINT_TO_POINTER(first + i + 1), false), ==, 0);
    }
    if (vdriver_kick_prepare(s->q)) {
        vuf_kick(&s->ring);
    }
}

/* Wait for @count completions of the buffers from @first on; check contents (and order under IN_ORDER). */
static void echo_reap(EchoSession *s, const Layout *l, unsigned first, unsigned count)
{
    unsigned reaped = 0;

    while (reaped < count) {
        uint32_t len;
        void *token;

        while ((token = vdriver_get_buf(s->q, &len, NULL))) {
            unsigned seq = GPOINTER_TO_UINT(token) - 1;
            unsigned slot = seq % ECHO_NUM;
            uint8_t *in = vuf_host(&s->f, s->data + (ECHO_NUM + slot) * ECHO_BUF);

            g_assert_cmpuint(len, ==, ECHO_BUF);
            g_assert_cmpuint(seq - first, <, count);
            g_assert_cmpuint(in[0], ==, (uint8_t)seq);
            g_assert_cmpuint(in[ECHO_BUF - 1], ==, (uint8_t)seq);
            if (l->in_order) {
                /* The device completed in reverse; IN_ORDER makes them arrive in order. */
                g_assert_cmpuint(seq, ==, first + reaped);
            }
            reaped++;
        }
        g_assert_null(vdriver_error(s->q));
        if (reaped < count && !vuf_wait_call(&s->f, &s->ring)) {
            VhostUserBackendStats st;
            vhost_user_backend_get_stats(s->be, &st);
            g_test_message("no call: %u running, %" G_GUINT64_FORMAT " kicks, %" G_GUINT64_FORMAT " calls",
                           st.queues_running, st.kicks, st.calls);
            g_assert_not_reached();
        }
    }
    s->tokens_reaped += reaped;
}

static void echo_round(EchoSession *s, const Layout *l, unsigned first, unsigned count)
{
    echo_add(s, first, count);
    echo_reap(s, l, first, count);
}

static void echo_session_end(EchoSession *s)
{
    vdriver_queue_free(s->q);
    vuf_ring_close(&s->ring);
    vuf_close(&s->f);
}

static void test_echo(Fixture *fx, gconstpointer data)
{
    const Layout *l = data;
    EchoSession s;
    VhostUserBackendStats st;
    VirtQueueStats qs;
    uint32_t base;

    echo_session_start(fx, &s, l);
    for (unsigned round = 0; round < 10; round++) {
        echo_round(&s, l, round * 24, 24);
    }
    vhost_user_backend_get_stats(fx->be, &st);
    g_assert_cmpint(!!(st.features & (1ull << VIRTIO_F_IN_ORDER)), ==, l->in_order);
    g_assert_cmpint(!!(st.features & (1ull << VIRTIO_F_RING_PACKED)), ==, l->packed);
    g_assert_cmpuint(st.queues_running, ==, 1);
    g_assert_cmpuint(st.calls, >, 0);
    g_assert_cmpuint(fx->dev.started[0], ==, 1);

    /* Stop: GET_VRING_BASE returns where the ring is (packed: both halves with wrap bits). */
    g_assert_cmpint(vuf_ring_get_base(&s.f, 0, &base), ==, 0);
    g_assert_cmpuint(fx->dev.stopped[0], ==, 1);
    if (l->packed) {
        /* Each buffer is two descriptors; the wrap counters start at 1 and flip every lap. */
        unsigned descs = 240 * 2, pos = descs % ECHO_NUM, wrap = !((descs / ECHO_NUM) & 1);
        g_assert_cmphex(base, ==, (pos | wrap << 15) * 0x10001u);
    } else {
        g_assert_cmpuint(base, ==, 240);
    }
    virtio_queue_get_stats(virtio_get_queue(&fx->dev.vdev, 0), &qs);
    g_assert_cmpuint(qs.used, ==, 240);
    if (l->in_order) {
        /* Reverse completion, flush after each fill: one publication per round of 24. */
        g_assert_cmpuint(qs.flushes, ==, 10);
    }
    echo_session_end(&s);
}

/*
 * IN_ORDER batch publication through vhost-user: each round of 24 reverse
 * completions is published as one used entry / descriptor for 24 buffers,
 * and the driver library reads the batch right (contents and order checked).
 */
static void test_echo_batched(Fixture *fx, gconstpointer data)
{
    const Layout *l = data;
    EchoSession s;
    VirtQueueStats qs;
    VDriverStats ds;
    uint32_t base;

    fx->dev.batch = true;
    echo_session_start(fx, &s, l);
    for (unsigned round = 0; round < 10; round++) {
        echo_round(&s, l, round * 24, 24);
    }
    g_assert_cmpint(vuf_ring_get_base(&s.f, 0, &base), ==, 0);
    virtio_queue_get_stats(virtio_get_queue(&fx->dev.vdev, 0), &qs);
    vdriver_get_stats(s.q, &ds);
    g_assert_cmpuint(qs.used, ==, 240);
    g_assert_cmpuint(qs.used_entries, ==, 10);
    g_assert_cmpuint(ds.reaped, ==, 240);
    g_assert_cmpuint(ds.used_entries, ==, 10);
    g_assert_cmpuint(ds.batched, ==, 230);
    echo_session_end(&s);
}

/*
 * Reconnect: a frontend restarts the ring on a new connection from the base
 * GET_VRING_BASE returned, on memory it kept; I/O continues.
 */
static void echo_reconnect(Fixture *fx, const Layout *l, bool base_zero)
{
    EchoSession s;
    uint64_t features = (l->packed ? 1ull << VIRTIO_F_RING_PACKED : 0) |
                        (l->in_order ? 1ull << VIRTIO_F_IN_ORDER : 0);
    int fds_before = fds_with_idle_connection(fx);

    echo_session_start(fx, &s, l);
    for (unsigned round = 0; round < 4; round++) {
        echo_round(&s, l, round * 24, 24);
    }
    g_assert_cmpint(vuf_ring_get_base(&s.f, 0, &s.ring.base), ==, 0);
    vuf_disconnect(&s.f);
    if (base_zero) {
        /* DPDK virtio-user reconnecting in server mode: base 0, the ring far ahead. */
        s.ring.base = 0;
    }

    /* New connection, same RAM, rings and eventfds; the backend reset in between. */
    g_assert_cmpint(vuf_reconnect(&s.f, fx->path), ==, 0);
    g_assert_cmpint(vuf_negotiate(&s.f, features | 1ull << VIRTIO_F_VERSION_1, 0), ==, 0);
    g_assert_cmpint(vuf_set_mem_table(&s.f), ==, 0);
    g_assert_cmpint(vuf_ring_setup(&s.f, &s.ring), ==, 0);
    g_assert_cmpuint(fx->dev.resets, >=, 1);
    echo_round(&s, l, 96, 24);
    echo_round(&s, l, 120, ECHO_NUM / 2);     /* a full ring: two descriptors each */
    echo_session_end(&s);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/* Reconnect: the ring restarts on a new connection from the base GET_VRING_BASE returned. */
static void test_echo_reconnect(Fixture *fx, gconstpointer data)
{
    echo_reconnect(fx, data, false);
}

/* Split: a base inconsistent with the ring's used index resumes at the used index. */
static void test_echo_reconnect_base_zero(Fixture *fx, gconstpointer data)
{
    echo_reconnect(fx, data, true);
}

/* Wait (bounded) until the device on the backend thread holds exactly @want buffers. */
static void wait_held(EchoDevice *d, unsigned want)
{
    for (int ms = 0; __atomic_load_n(&d->held_num, __ATOMIC_ACQUIRE) != want; ms++) {
        g_assert_cmpint(ms, <, TIMEOUT_MS);
        g_usleep(1000);
    }
}

/*
 * Inflight tracking (INFLIGHT_SHMFD, split without IN_ORDER): the daemon
 * dies with buffers popped but not used; the frontend reconnects with the
 * inflight fd it kept and the used index as base (as QEMU does); the
 * backend hands the heads back oldest first and they complete.
 */
static void test_inflight_resubmit(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VhostUserInflight in;
    int inflight_fd = -1;
    int fds_before = fds_with_idle_connection(fx);

    echo_session_start(fx, &s, &split);
    g_assert_cmpint(inflight_get(&s.f, NUM_QUEUES, ECHO_NUM, &in, &inflight_fd), ==, sizeof(in));
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE,
                                &inflight_fd, 1), ==, 0);
    echo_round(&s, &split, 0, 8);

    /* Buffers 8..15 are popped and held when the "daemon" goes away. */
    __atomic_store_n(&fx->dev.hold, true, __ATOMIC_RELEASE);
    echo_add(&s, 8, 8);
    wait_held(&fx->dev, 8);
    vuf_disconnect(&s.f);
    __atomic_store_n(&fx->dev.hold, false, __ATOMIC_RELEASE);

    g_assert_cmpint(vuf_reconnect(&s.f, fx->path), ==, 0);
    g_assert_cmpint(vuf_negotiate(&s.f, 1ull << VIRTIO_F_VERSION_1,
                                  1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD), ==, 0);
    g_assert_cmpint(vuf_set_mem_table(&s.f), ==, 0);
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE,
                                &inflight_fd, 1), ==, 0);
    s.ring.base = 8;            /* the used index: what QEMU restores after a backend crash */
    g_assert_cmpint(vuf_ring_setup(&s.f, &s.ring), ==, 0);
    echo_reap(&s, &split, 8, 8);
    g_assert_cmpuint(fx->dev.resubmitted, ==, 8);
    echo_round(&s, &split, 16, 24);
    close(inflight_fd);
    echo_session_end(&s);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/*
 * Inflight tracking on a packed ring (without IN_ORDER): the daemon dies with
 * buffers popped but not used; the frontend reconnects with the inflight fd
 * and the ring's start as base (QEMU 7.2 cannot read a dead backend's base
 * and resends 0x80008000). The backend resumes at the used position it
 * recorded and redoes the held buffers. @data non-NULL: the record is lost
 * as if the daemon died between a flush and its record, so the backend must
 * step over the used descriptors published after it. @data "garbage": the
 * frontend scribbled over the region (a position beyond the ring, absurd
 * descriptor counts): the backend falls back to the base the frontend sent.
 */
typedef struct PackedRestart {
    bool in_order;
    bool lose_record;           /* as if the daemon died between a flush and its record */
    bool garbage;               /* the frontend scribbled over the record */
} PackedRestart;

static void test_inflight_packed_restart(Fixture *fx, gconstpointer data)
{
    const PackedRestart *pr = data;
    const Layout packed = { pr->in_order ? "packed-in-order" : "packed", true, pr->in_order };
    bool lose_record = pr->lose_record;
    bool garbage = pr->garbage;
    EchoSession s;
    VhostUserInflight in;
    VhostUserInflightQueue *q;
    int inflight_fd = -1;
    int fds_before = fds_with_idle_connection(fx);
    void *region;

    echo_session_start(fx, &s, &packed);
    g_assert_cmpint(inflight_get(&s.f, NUM_QUEUES, ECHO_NUM, &in, &inflight_fd), ==, sizeof(in));
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE,
                                &inflight_fd, 1), ==, 0);
    region = mmap(NULL, in.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, inflight_fd, 0);
    g_assert_true(region != MAP_FAILED);
    q = region;
    echo_round(&s, &packed, 0, 8);
    g_assert_cmpuint(q->used_idx ^ 0x8000, ==, 0x8000 | 16);     /* 8 buffers x 2 descriptors */

    /* Buffers 8..15 are popped and held when the "daemon" goes away. */
    __atomic_store_n(&fx->dev.hold, true, __ATOMIC_RELEASE);
    echo_add(&s, 8, 8);
    wait_held(&fx->dev, 8);
    vuf_disconnect(&s.f);
    __atomic_store_n(&fx->dev.hold, false, __ATOMIC_RELEASE);
    if (lose_record) {
        q->used_idx = 0;        /* the start of the ring, as a zeroed region says */
    }
    if (garbage) {
        q->used_idx = 0x7fff;
        for (unsigned i = 0; i < ECHO_NUM; i++) {
            q->desc[i].next = 0xffff;
        }
    }

    g_assert_cmpint(vuf_reconnect(&s.f, fx->path), ==, 0);
    g_assert_cmpint(vuf_negotiate(&s.f, 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_F_RING_PACKED |
                                  (pr->in_order ? 1ull << VIRTIO_F_IN_ORDER : 0),
                                  1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD), ==, 0);
    g_assert_cmpint(vuf_set_mem_table(&s.f), ==, 0);
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_SET_INFLIGHT_FD, &in, VHOST_USER_INFLIGHT_SIZE,
                                &inflight_fd, 1), ==, 0);
    /* Garbage: the right base (avail and used at 8 x 2 descriptors), which the backend must fall back to. */
    s.ring.base = garbage ? 0x80108010 : 0x80008000;
    g_assert_cmpint(vuf_ring_setup(&s.f, &s.ring), ==, 0);
    echo_reap(&s, &packed, 8, 8);
    /* Across the ring's end and through a full ring: the record follows. */
    for (unsigned round = 0; round < 4; round++) {
        echo_round(&s, &packed, 16 + round * 24, 24);
    }
    munmap(region, in.mmap_size);
    close(inflight_fd);
    echo_session_end(&s);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/* Spec "Ring states": with VHOST_USER_F_PROTOCOL_FEATURES rings wait for SET_VRING_ENABLE. */
static void test_ring_enable(Fixture *fx, gconstpointer data)
{
    for (unsigned acked = 0; acked < 2; acked++) {
        VuFrontend f;
        VuFrontendRing r = { .index = 1, .num = 16, .kick_fd = -1, .call_fd = -1 };
        VDriverQueueConfig qcfg = { .num = 16 };
        VhostUserVringState state;
        VhostUserBackendStats st;
        uint64_t idx = 1;

        session_start(fx, &f, 0);
        if (!acked) {
            /* Same features without bit 30: rings start enabled. */
            g_assert_cmpint(vuf_set_u64(&f, VHOST_USER_SET_FEATURES, f.features), ==, 0);
        }
        vdriver_layout_rings(&qcfg, VUF_RAM_GPA);
        r.desc = qcfg.desc;
        r.driver = qcfg.driver;
        r.device = qcfg.device;
        r.kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        state = (VhostUserVringState) { 1, 16 };
        g_assert_cmpint(vuf_request(&f, VHOST_USER_SET_VRING_NUM, &state, sizeof(state), NULL, 0), ==, 0);
        g_assert_cmpint(vuf_ring_setup(&f, &r), ==, 0);   /* ends with ENABLE 1 */
        state = (VhostUserVringState) { 1, 0 };
        g_assert_cmpint(vuf_request(&f, VHOST_USER_SET_VRING_ENABLE, &state, sizeof(state), NULL, 0), ==, 0);
        vhost_user_backend_get_stats(fx->be, &st);
        g_assert_cmpuint(st.queues_running, ==, !acked);
        /* A new kick fd restarts the ring only when enabled. */
        g_assert_cmpint(vuf_request(&f, VHOST_USER_SET_VRING_KICK, &idx, sizeof(idx), &r.kick_fd, 1), ==, 0);
        vhost_user_backend_get_stats(fx->be, &st);
        g_assert_cmpuint(st.queues_running, ==, !acked);
        state = (VhostUserVringState) { 1, 1 };
        g_assert_cmpint(vuf_request(&f, VHOST_USER_SET_VRING_ENABLE, &state, sizeof(state), NULL, 0), ==, 0);
        vhost_user_backend_get_stats(fx->be, &st);
        g_assert_cmpuint(st.queues_running, ==, 1);
        vuf_ring_close(&r);
        vuf_close(&f);
    }
}

static gboolean raise_config_change(gpointer opaque)
{
    virtio_notify_config(opaque);
    return G_SOURCE_REMOVE;
}

/* virtio_notify_config reaches the frontend as CONFIG_CHANGE_MSG on the backend channel. */
static void test_config_change(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VhostUserHeader hdr;
    int sv[2];
    struct pollfd pfd;

    echo_session_start(fx, &s, &split);    /* a running ring: DRIVER_OK */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    s.f.protocol_features |= 1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ | 1ull << VHOST_USER_PROTOCOL_F_CONFIG;
    g_assert_cmpint(vuf_send(&s.f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION,
                             &s.f.protocol_features, sizeof(uint64_t), NULL, 0), ==, 0);
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1), ==, 0);
    close(sv[1]);
    g_main_context_invoke(fx->ctx, raise_config_change, &fx->dev.vdev);
    pfd = (struct pollfd) { .fd = sv[0], .events = POLLIN };
    g_assert_cmpint(poll(&pfd, 1, TIMEOUT_MS), ==, 1);
    g_assert_cmpint(read(sv[0], &hdr, sizeof(hdr)), ==, sizeof(hdr));
    g_assert_cmpuint(hdr.request, ==, VHOST_USER_BACKEND_CONFIG_CHANGE_MSG);
    g_assert_cmpuint(hdr.flags, ==, VHOST_USER_VERSION);
    g_assert_cmpuint(hdr.size, ==, 0);
    close(sv[0]);
    echo_session_end(&s);
}

static gboolean complete_held(gpointer opaque)
{
    EchoDevice *d = opaque;
    VirtQueue *vq = virtio_get_queue(&d->vdev, 0);

    for (unsigned i = 0; i < d->held_num; i++) {
        VirtQueueElement *e = d->held[i];
        /* Writes into guest memory the frontend has removed: must still be mapped. */
        echo_push(d, vq, e, iov_copy_between(e->in_sg, e->in_num, e->out_sg, e->out_num));
        virtqueue_element_free(e);
    }
    __atomic_store_n(&d->held_num, 0, __ATOMIC_RELEASE);
    return G_SOURCE_REMOVE;
}

/*
 * The frontend removes guest memory while the device holds buffers in it:
 * the ring breaks (NEEDS_RESET), the held buffers can still be completed
 * without touching unmapped memory, and nothing leaks.
 */
static void test_hostile_memory_removed_under_buffers(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VhostUserMemRegMsg reg = { 0 };
    uint64_t status;
    int fds_before = fds_with_idle_connection(fx);

    echo_session_start(fx, &s, &split);
    echo_round(&s, &split, 0, 4);
    __atomic_store_n(&fx->dev.hold, true, __ATOMIC_RELEASE);
    echo_add(&s, 4, 4);
    wait_held(&fx->dev, 4);
    reg.region = (VhostUserMemoryRegion) { VUF_RAM_GPA, RAM_SIZE, vuf_uva(&s.f, VUF_RAM_GPA), 0 };
    g_assert_cmpint(vuf_request(&s.f, VHOST_USER_REM_MEM_REG, &reg, sizeof(reg), NULL, 0), >, 0);
    g_assert_cmpint(vuf_get_u64(&s.f, VHOST_USER_GET_STATUS, &status), ==, 0);
    g_assert_true(status & VIRTIO_CONFIG_S_NEEDS_RESET);
    __atomic_store_n(&fx->dev.hold, false, __ATOMIC_RELEASE);
    g_main_context_invoke(fx->ctx, complete_held, &fx->dev);
    wait_held(&fx->dev, 0);
    /* Nothing was published by the broken device. */
    g_assert_false(vdriver_has_used(s.q));
    echo_session_end(&s);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/*
 * Random messages (a fuzzer's poor cousin, deterministic per seed): biased
 * towards plausible indices, sizes, addresses and fds. After each one the
 * backend must still answer GET_FEATURES within the timeout, or have closed
 * the connection (then a new one is served). No fd may leak.
 */
static uint64_t plausible_u64(VuFrontend *f)
{
    switch (g_test_rand_int_range(0, 6)) {
    case 0:
        return g_test_rand_int_range(0, NUM_QUEUES + 1);
    case 1:
        return 1ull << g_test_rand_int_range(0, 16);
    case 2:
        return vuf_uva(f, VUF_RAM_GPA + (g_test_rand_int_range(0, RAM_SIZE / 64) * 64ull));
    case 3:
        return VUF_RAM_GPA + g_test_rand_int_range(0, RAM_SIZE);
    case 4:
        return ((uint64_t)g_test_rand_int() << 32) | (uint32_t)g_test_rand_int();
    default:
        return 0;
    }
}

/* Requests that change running state, for the random test with a live ring. */
static const uint32_t stateful_requests[] = {
    VHOST_USER_SET_FEATURES, VHOST_USER_RESET_OWNER, VHOST_USER_SET_MEM_TABLE,
    VHOST_USER_SET_VRING_NUM, VHOST_USER_SET_VRING_ADDR, VHOST_USER_SET_VRING_BASE,
    VHOST_USER_GET_VRING_BASE, VHOST_USER_SET_VRING_KICK, VHOST_USER_SET_VRING_CALL,
    VHOST_USER_SET_VRING_ENABLE, VHOST_USER_SET_INFLIGHT_FD, VHOST_USER_RESET_DEVICE,
    VHOST_USER_ADD_MEM_REG, VHOST_USER_REM_MEM_REG, VHOST_USER_SET_STATUS,
};

/* A well-formed message of @request with plausible but random contents. */
static void structured_message(VuFrontend *f, uint32_t request)
{
    uint64_t off = g_test_rand_int_range(0, RAM_SIZE / 4096) * 4096ull;
    uint64_t len = g_test_rand_int_range(1, (RAM_SIZE - off) / 4096 + 1) * 4096ull;
    VhostUserMemoryRegion region = { VUF_RAM_GPA + off, len, vuf_uva(f, VUF_RAM_GPA + off), off };
    unsigned index = g_test_rand_int_range(0, NUM_QUEUES);
    int fd = -1;

    switch (request) {
    case VHOST_USER_SET_MEM_TABLE: {
        VhostUserMemory m = { .nregions = 1, .regions[0] = region };
        fd = dup(f->mem_fd);
        vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, &m,
                 offsetof(VhostUserMemory, regions) + sizeof(region), &fd, 1);
        break;
    }
    case VHOST_USER_ADD_MEM_REG:
    case VHOST_USER_REM_MEM_REG: {
        VhostUserMemRegMsg reg = { .region = region };
        fd = dup(f->mem_fd);
        vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, &reg, sizeof(reg),
                 &fd, request == VHOST_USER_ADD_MEM_REG);
        break;
    }
    case VHOST_USER_SET_VRING_ADDR: {
        VhostUserVringAddr a = {
            .index = index,
            .desc_user_addr = vuf_uva(f, VUF_RAM_GPA + g_test_rand_int_range(0, RAM_SIZE / 16) * 16ull),
            .used_user_addr = vuf_uva(f, VUF_RAM_GPA + g_test_rand_int_range(0, RAM_SIZE / 4) * 4ull),
            .avail_user_addr = vuf_uva(f, VUF_RAM_GPA + g_test_rand_int_range(0, RAM_SIZE / 2) * 2ull),
        };
        vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, &a, sizeof(a), NULL, 0);
        break;
    }
    case VHOST_USER_SET_VRING_KICK:
    case VHOST_USER_SET_VRING_CALL: {
        uint64_t v = index;
        fd = eventfd(0, EFD_CLOEXEC);
        vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, &v, sizeof(v), &fd, 1);
        break;
    }
    default: {
        VhostUserVringState st = { index, g_test_rand_bit() ? 1u << g_test_rand_int_range(0, 9)
                                                            : (uint32_t)g_test_rand_int_range(0, 0x10000) };
        vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, &st, sizeof(st), NULL, 0);
        break;
    }
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void random_message(VuFrontend *f, bool stateful)
{
    static const uint32_t sizes[] = { 0, 4, 8, 12, 16, 20, 24, 40, 72, 264, 268 };
    uint64_t payload[64];
    uint32_t request = stateful ? stateful_requests[g_test_rand_int_range(0, G_N_ELEMENTS(stateful_requests))]
                                : (uint32_t)g_test_rand_int_range(0, VHOST_USER_REQUEST_MAX + 2);
    uint32_t flags = g_test_rand_int_range(0, 8) ? VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK
                                                 : (uint32_t)g_test_rand_int_range(0, 16);
    uint32_t size = g_test_rand_int_range(0, 4) ? sizes[g_test_rand_int_range(0, G_N_ELEMENTS(sizes))]
                                                : (uint32_t)g_test_rand_int_range(0, sizeof(payload));
    int fds[3];
    unsigned nfds = g_test_rand_int_range(0, 4) ? g_test_rand_int_range(0, 2) : g_test_rand_int_range(0, 4);

    for (unsigned i = 0; i < G_N_ELEMENTS(payload); i++) {
        payload[i] = plausible_u64(f);
    }
    if (stateful && g_test_rand_bit()) {
        structured_message(f, request);
        return;
    }
    if (g_test_rand_bit()) {
        /* vring state / index-first payloads: a small index in the low half */
        payload[0] = (payload[0] & ~0xffffffffull) | (uint32_t)g_test_rand_int_range(0, NUM_QUEUES + 1);
    }
    for (unsigned i = 0; i < nfds; i++) {
        switch (g_test_rand_int_range(0, 3)) {
        case 0:
            fds[i] = eventfd(0, EFD_CLOEXEC);
            break;
        case 1:
            fds[i] = dup(f->mem_fd);
            break;
        default:
            fds[i] = open("/dev/null", O_RDWR | O_CLOEXEC);
            break;
        }
    }
    vuf_send(f, request, flags, payload, size, fds, nfds);
    for (unsigned i = 0; i < nfds; i++) {
        close(fds[i]);
    }
}

/* GET_FEATURES, skipping whatever replies the random message produced. Returns 0 or -EPIPE. */
static int resync(VuFrontend *f)
{
    VhostUserHeader hdr;
    uint64_t payload[64];
    int ret = vuf_send(f, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0);

    while (ret == 0) {
        int fd;
        ret = vuf_recv(f, &hdr, payload, sizeof(payload), &fd);
        if (fd >= 0) {
            close(fd);
        }
        if (ret >= 0 && hdr.request == VHOST_USER_GET_FEATURES) {
            return 0;
        }
        ret = ret < 0 ? ret : 0;
    }
    g_assert_cmpint(ret, ==, -EPIPE);  /* never a timeout: that would be a hang */
    return ret;
}

static void test_hostile_random(Fixture *fx, gconstpointer data)
{
    VuFrontend f;
    int fds_before = fds_with_idle_connection(fx);
    unsigned closed = 0;

    session_start(fx, &f, 0);
    for (unsigned i = 0; i < 3000; i++) {
        random_message(&f, false);
        if (resync(&f) < 0) {
            closed++;
            vuf_close(&f);
            session_start(fx, &f, 0);
        }
    }
    vuf_close(&f);
    g_test_message("%u connections closed by the backend", closed);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/*
 * The same with a live echo ring: state-changing requests at random while
 * the driver keeps adding buffers and reaping whatever comes back. The
 * backend and core must neither crash nor hang nor leak.
 */
static void test_hostile_random_running(Fixture *fx, gconstpointer data)
{
    const Layout *l = data;
    EchoSession s;
    int fds_before = fds_with_idle_connection(fx);
    unsigned seq = 0;

    echo_session_start(fx, &s, l);
    for (unsigned i = 0; i < 2000; i++) {
        uint32_t len;

        if (g_test_rand_int_range(0, 3) == 0) {
            random_message(&s.f, true);
        }
        if (resync(&s.f) < 0) {
            /* Closed: start over with a fresh session and driver. */
            echo_session_end(&s);
            echo_session_start(fx, &s, l);
            continue;
        }
        if (vdriver_free_slots(s.q) >= 2) {
            VDriverSeg out = { s.data, ECHO_BUF }, in = { s.data + ECHO_NUM * ECHO_BUF, ECHO_BUF };
            vdriver_add(s.q, &out, 1, &in, 1, GUINT_TO_POINTER(++seq), false);
            if (vdriver_kick_prepare(s.q)) {
                vuf_kick(&s.ring);
            }
        }
        while (vdriver_get_buf(s.q, &len, NULL)) {
        }
    }
    echo_session_end(&s);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/*
 * The frontend truncates the memfd behind guest memory while the ring runs:
 * the next access would SIGBUS. With the guard the backend survives, the
 * device is broken (NEEDS_RESET) and keeps answering; nothing leaks.
 */
static void test_hostile_memory_shrunk(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VDriverSeg out, in;
    uint64_t status;
    int fds_before = fds_with_idle_connection(fx);

    echo_session_start(fx, &s, &split);
    echo_round(&s, &split, 0, 8);
    out = (VDriverSeg) { s.data, ECHO_BUF };
    in = (VDriverSeg) { s.data + ECHO_NUM * ECHO_BUF, ECHO_BUF };
    g_assert_cmpint(vdriver_add(s.q, &out, 1, &in, 1, GUINT_TO_POINTER(9), false), ==, 0);
    vdriver_kick_prepare(s.q);
    /* From here on this process must not touch the RAM either (it would SIGBUS too). */
    g_assert_cmpint(ftruncate(s.f.mem_fd, 0), ==, 0);
    vuf_kick(&s.ring);
    g_assert_cmpint(vuf_get_u64(&s.f, VHOST_USER_GET_STATUS, &status), ==, 0);
    for (int ms = 0; !(status & VIRTIO_CONFIG_S_NEEDS_RESET); ms++) {
        g_assert_cmpint(ms, <, TIMEOUT_MS);
        g_usleep(1000);
        g_assert_cmpint(vuf_get_u64(&s.f, VHOST_USER_GET_STATUS, &status), ==, 0);
    }
    g_assert_cmpstr(fx->dev.vdev.error_msg, !=, "");
    vdriver_queue_free(s.q);
    vuf_ring_close(&s.ring);
    vuf_close(&s.f);
    g_assert_cmpint(fds_with_idle_connection(fx), ==, fds_before);
}

/*
 * A new table that repeats the live region and then fails (overlap) is
 * refused as a whole: the live mapping it reused stays mapped and the ring
 * keeps working on it.
 */
static void test_hostile_memory_table_rollback(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VhostUserMemoryRegion r[2];

    echo_session_start(fx, &s, &split);
    echo_round(&s, &split, 0, 8);
    r[0] = (VhostUserMemoryRegion) { VUF_RAM_GPA, RAM_SIZE, vuf_uva(&s.f, VUF_RAM_GPA), 0 };
    r[1] = (VhostUserMemoryRegion) { VUF_RAM_GPA + 0x1000, 0x1000, vuf_uva(&s.f, VUF_RAM_GPA) + RAM_SIZE, 0 };
    g_assert_cmpint(mem_table(&s.f, r, 2, s.f.mem_fd), >, 0);
    echo_round(&s, &split, 8, 8);
    /* Repeating it alone keeps the mapping (the ring runs on). */
    g_assert_cmpint(mem_table(&s.f, r, 1, s.f.mem_fd), ==, 0);
    echo_round(&s, &split, 16, 8);
    echo_session_end(&s);
}

/* One connection at a time: a second frontend waits until the first has gone. */
static void test_one_connection_at_a_time(Fixture *fx, gconstpointer data)
{
    VuFrontend a, b;
    VhostUserHeader hdr;
    uint64_t v;

    connect_ok(fx, &a);
    roundtrip(fx, &a);
    connect_ok(fx, &b);         /* accepted by the kernel (backlog), not yet served */
    b.conn.timeout_ms = 200;
    g_assert_cmpint(vuf_send(&b, VHOST_USER_GET_FEATURES, VHOST_USER_VERSION, NULL, 0, NULL, 0), ==, 0);
    g_assert_cmpint(vuf_recv(&b, &hdr, &v, sizeof(v), NULL), ==, -ETIMEDOUT);
    roundtrip(fx, &a);
    vuf_close(&a);
    b.conn.timeout_ms = TIMEOUT_MS;
    g_assert_cmpint(vuf_recv(&b, &hdr, &v, sizeof(v), NULL), ==, sizeof(v));
    g_assert_cmpuint(hdr.request, ==, VHOST_USER_GET_FEATURES);
    vuf_close(&b);
}

/* listen() replaces a stale socket file but never another kind of file. */
static void test_listen_path(Fixture *fx, gconstpointer data)
{
    VirtIODevice vdev;
    VhostUserBackend *be;
    GError *err = NULL;
    char *stale = g_build_filename(fx->dir, "stale", NULL);
    char *plain = g_build_filename(fx->dir, "plain", NULL);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(virtio_init(&vdev, "vu-listen", ECHO_DEVICE_ID, 0, NULL, 1, 16), ==, 0);
    be = vhost_user_backend_new(&vdev, NULL, NULL);
    g_strlcpy(addr.sun_path, stale, sizeof(addr.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    close(fd);                  /* the socket file stays behind */
    g_assert_true(g_file_set_contents(plain, "keep me", -1, NULL));
    g_assert_cmpint(vhost_user_backend_listen(be, plain, &err), ==, -1);
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_true(g_file_test(plain, G_FILE_TEST_IS_REGULAR));
    g_assert_cmpint(vhost_user_backend_listen(be, stale, &err), ==, 0);
    g_assert_no_error(err);
    vhost_user_backend_free(be);   /* removes its socket file */
    g_assert_false(g_file_test(stale, G_FILE_TEST_EXISTS));
    virtio_cleanup(&vdev);
    unlink(plain);
    g_free(stale);
    g_free(plain);
}

/* Both queues of the device at once (MQ): completions land on the queue they came from. */
static void test_echo_two_queues(Fixture *fx, gconstpointer data)
{
    static const Layout split_in_order = { "split-in-order", false, true };
    EchoSession s0, s1;

    echo_session_start(fx, &s0, &split_in_order);
    /* Queue 1 shares the session's connection and RAM; its rings and buffers go above queue 0's. */
    s1 = s0;
    s1.qcfg.desc = s1.qcfg.driver = s1.qcfg.device = 0;
    s1.data = vdriver_layout_rings(&s1.qcfg, s0.data + 2 * ECHO_NUM * ECHO_BUF);
    s1.q = vdriver_queue_new(&s1.f.mem, &s1.qcfg);
    g_assert_nonnull(s1.q);
    s1.ring = (VuFrontendRing) { .index = 1, .num = ECHO_NUM, .desc = s1.qcfg.desc,
                                 .driver = s1.qcfg.driver, .device = s1.qcfg.device,
                                 .kick_fd = -1, .call_fd = -1 };
    g_assert_cmpint(vuf_ring_setup(&s1.f, &s1.ring), ==, 0);
    for (unsigned round = 0; round < 8; round++) {
        echo_add(&s0, round * 16, 16);
        echo_add(&s1, 1000 + round * 16, 16);
        echo_reap(&s1, &split_in_order, 1000 + round * 16, 16);
        echo_reap(&s0, &split_in_order, round * 16, 16);
    }
    g_assert_cmpuint(fx->dev.started[0], ==, 1);
    g_assert_cmpuint(fx->dev.started[1], ==, 1);
    vdriver_queue_free(s1.q);
    vuf_ring_close(&s1.ring);
    echo_session_end(&s0);
}

/*
 * A ring the core stops by itself (its memory was removed under it) is
 * stopped in the backend too: the device is told, the kick watch goes, and
 * a restart after the frontend's reset is one start, not a second one.
 */
static void test_hostile_ring_memory_removed(Fixture *fx, gconstpointer data)
{
    static const Layout split = { "split", false, false };
    EchoSession s;
    VhostUserMemRegMsg reg = { 0 };
    uint64_t status;
    uint32_t base;

    echo_session_start(fx, &s, &split);
    echo_round(&s, &split, 0, 4);
    g_assert_cmpuint(fx->dev.started[0], ==, 1);
    reg.region = (VhostUserMemoryRegion) { VUF_RAM_GPA, RAM_SIZE, vuf_uva(&s.f, VUF_RAM_GPA), 0 };
    vuf_request(&s.f, VHOST_USER_REM_MEM_REG, &reg, sizeof(reg), NULL, 0);
    g_assert_cmpint(vuf_get_u64(&s.f, VHOST_USER_GET_STATUS, &status), ==, 0);
    g_assert_cmpuint(fx->dev.stopped[0], ==, 1);
    vuf_request(&s.f, VHOST_USER_ADD_MEM_REG, &reg, sizeof(reg), &s.f.mem_fd, 1);
    vuf_set_u64(&s.f, VHOST_USER_SET_FEATURES, s.f.features | 1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    g_assert_cmpint(vuf_ring_get_base(&s.f, 0, &base), ==, 0);
    g_usleep(200000);       /* a stale kick watch would fire now */
    g_assert_cmpint(vuf_get_u64(&s.f, VHOST_USER_GET_STATUS, &status), ==, 0);
    g_assert_cmpuint(fx->dev.started[0], <=, fx->dev.stopped[0] + 1);
    echo_session_end(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_assert_cmpint(vhost_user_backend_guard_sigbus(), ==, 0);

    g_test_add("/vhost-user/protocol/negotiation", Fixture, NULL, fixture_setup, test_negotiation,
               fixture_teardown);
    g_test_add("/vhost-user/protocol/config", Fixture, NULL, fixture_setup, test_config,
               fixture_teardown);
    g_test_add("/vhost-user/protocol/one-connection-at-a-time", Fixture, NULL, fixture_setup,
               test_one_connection_at_a_time, fixture_teardown);
    g_test_add("/vhost-user/protocol/listen-path", Fixture, NULL, fixture_setup, test_listen_path,
               fixture_teardown);
    g_test_add("/vhost-user/echo/two-queues", Fixture, NULL, fixture_setup, test_echo_two_queues,
               fixture_teardown);
    g_test_add("/vhost-user/protocol/ring-enable", Fixture, NULL, fixture_setup, test_ring_enable,
               fixture_teardown);
    g_test_add("/vhost-user/protocol/config-change", Fixture, NULL, fixture_setup, test_config_change,
               fixture_teardown);
    g_test_add("/vhost-user/hostile/memory-removed-under-buffers", Fixture, NULL, fixture_setup,
               test_hostile_memory_removed_under_buffers, fixture_teardown);
    g_test_add("/vhost-user/hostile/random", Fixture, NULL, fixture_setup, test_hostile_random,
               fixture_teardown);
    g_test_add("/vhost-user/hostile/memory-shrunk", Fixture, NULL, fixture_setup,
               test_hostile_memory_shrunk, fixture_teardown);
    g_test_add("/vhost-user/hostile/memory-table-rollback", Fixture, NULL, fixture_setup,
               test_hostile_memory_table_rollback, fixture_teardown);
    g_test_add("/vhost-user/hostile/ring-memory-removed", Fixture, NULL, fixture_setup,
               test_hostile_ring_memory_removed, fixture_teardown);
    g_test_add("/vhost-user/inflight/resubmit", Fixture, NULL, fixture_setup, test_inflight_resubmit,
               fixture_teardown);
    {
        static const struct {
            const char *path;
            PackedRestart pr;
        } restarts[] = {
            { "/vhost-user/inflight/packed-restart", { false, false, false } },
            { "/vhost-user/inflight/packed-restart-record-lost", { false, true, false } },
            { "/vhost-user/inflight/packed-in-order-restart", { true, false, false } },
            { "/vhost-user/inflight/packed-in-order-restart-record-lost", { true, true, false } },
            { "/vhost-user/hostile/packed-inflight-garbage", { false, false, true } },
        };
        for (unsigned i = 0; i < G_N_ELEMENTS(restarts); i++) {
            g_test_add(restarts[i].path, Fixture, &restarts[i].pr, fixture_setup, test_inflight_packed_restart,
                       fixture_teardown);
        }
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(hostile_tests); i++) {
        char *name = g_strdup_printf("/vhost-user/hostile/%s", hostile_tests[i].name);
        g_test_add(name, Fixture, &hostile_tests[i], fixture_setup, test_hostile, fixture_teardown);
        g_free(name);
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        char *name = g_strdup_printf("/vhost-user/hostile/random-running/%s", layouts[i].name);
        g_test_add(name, Fixture, &layouts[i], fixture_setup, test_hostile_random_running,
                   fixture_teardown);
        g_free(name);
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        char *name = g_strdup_printf("/vhost-user/echo/%s", layouts[i].name);
        g_test_add(name, Fixture, &layouts[i], fixture_setup, test_echo, fixture_teardown);
        g_free(name);
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        char *name;
        if (!layouts[i].in_order) {
            continue;
        }
        name = g_strdup_printf("/vhost-user/echo/batched/%s", layouts[i].name);
        g_test_add(name, Fixture, &layouts[i], fixture_setup, test_echo_batched, fixture_teardown);
        g_free(name);
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(layouts); i++) {
        char *name = g_strdup_printf("/vhost-user/echo/reconnect/%s", layouts[i].name);
        g_test_add(name, Fixture, &layouts[i], fixture_setup, test_echo_reconnect, fixture_teardown);
        g_free(name);
        if (!layouts[i].packed) {
            name = g_strdup_printf("/vhost-user/echo/reconnect-base-zero/%s", layouts[i].name);
            g_test_add(name, Fixture, &layouts[i], fixture_setup, test_echo_reconnect_base_zero,
                       fixture_teardown);
            g_free(name);
        }
    }
    return g_test_run();
}
