/*
 * vdm-vhost-user-blk end to end: the daemon is started on a temporary image,
 * the test frontend (tests/vhost-user) connects, shares RAM by memfd and
 * drives one queue with the driver library, on split, packed,
 * split+IN_ORDER and packed+IN_ORDER, with each I/O engine.
 *
 * Proves: writes reach the image (checked with pread after the daemon is
 * gone), reads return them, FLUSH and GET_ID work, a ring full of requests
 * completes in avail order under IN_ORDER, the daemon logs whether IN_ORDER
 * and RING_PACKED were negotiated and prints a summary on SIGTERM, and exits 0.
 *
 * Usage: test-vhost-user-blk DAEMON (meson passes the built daemon).
 */
#include <endian.h>
#include <glib/gstdio.h>
#include <string.h>

#include "hw/virtio/virtio-blk.h"
#include "vdmd-test.h"

#define RAM_SIZE    (4ull * 1024 * 1024)
#define IMG_SIZE    (2ull * 1024 * 1024)
#define QNUM        32u
#define REQ_BYTES   4096u

static const char *daemon_path;

typedef struct Case {
    const char *name;
    bool packed;
    bool in_order;
    const char *engine;
    bool read_only;
} Case;

typedef struct Run {
    const Case *c;
    VdmdTestDaemon d;
    char *image;
    VuFrontend f;
    VuFrontendRing ring;
    VDriverQueue *q;
    hwaddr heap;
} Run;

typedef struct Req {
    hwaddr hdr, data, status;
    uint32_t len;
} Req;

static void start_daemon(Run *r)
{
    GPtrArray *argv = g_ptr_array_new();

    g_ptr_array_add(argv, (char *)daemon_path);
    g_ptr_array_add(argv, "--socket");
    g_ptr_array_add(argv, r->d.sock);
    g_ptr_array_add(argv, "--image");
    g_ptr_array_add(argv, r->image);
    g_ptr_array_add(argv, "--backend");
    g_ptr_array_add(argv, (char *)r->c->engine);
    g_ptr_array_add(argv, "--in-order");
    g_ptr_array_add(argv, r->c->in_order ? "on" : "off");
    g_ptr_array_add(argv, "--packed");
    g_ptr_array_add(argv, r->c->packed ? "on" : "off");
    g_ptr_array_add(argv, "--serial");
    g_ptr_array_add(argv, "vdm-e2e");
    g_ptr_array_add(argv, "--queue-size");
    g_ptr_array_add(argv, "64");
    if (r->c->read_only) {
        g_ptr_array_add(argv, "--read-only");
    }
    g_ptr_array_add(argv, NULL);
    vdmd_test_daemon_spawn(&r->d, (const char *const *)argv->pdata);
    g_ptr_array_free(argv, TRUE);
}

static void run_setup(Run *r, const Case *c)
{
    uint64_t want = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC |
                    1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_SEG_MAX |
                    1ull << VIRTIO_BLK_F_BLK_SIZE;
    VDriverQueueConfig qc = { .num = QNUM, .packed = c->packed, .in_order = c->in_order };

    memset(r, 0, sizeof(*r));
    r->c = c;
    vdmd_test_daemon_init(&r->d, "vdm-vublk-XXXXXX");
    r->image = vdmd_test_image_new(&r->d, "disk.img", IMG_SIZE);
    start_daemon(r);
    vdmd_test_connect(&r->f, r->d.sock, RAM_SIZE, want, c->packed, c->in_order,
                      1ull << VHOST_USER_PROTOCOL_F_CONFIG);

    r->heap = vdriver_layout_rings(&qc, VUF_RAM_GPA);
    qc.indirect = (r->heap + 15) & ~15ull;
    qc.indirect_max = 8;
    r->heap = (qc.indirect + 16ull * 8 * QNUM + 4095) & ~4095ull;
    r->q = vdmd_test_queue_new(&r->f, &qc, 0, &r->ring);
    g_assert_cmpint(vuf_ring_setup(&r->f, &r->ring), ==, 0);
}

/* Stop the daemon with SIGTERM; it must exit 0. Returns its log. */
static char *run_finish(Run *r)
{
    g_assert_null(vdriver_error(r->q));
    vdriver_queue_free(r->q);
    vuf_close(&r->f);
    vuf_ring_close(&r->ring);
    return vdmd_test_daemon_stop(&r->d);
}

static void run_cleanup(Run *r)
{
    g_unlink(r->image);
    g_free(r->image);
    vdmd_test_daemon_cleanup(&r->d);
}

static Req req_new(Run *r, uint32_t type, uint64_t sector, uint32_t len)
{
    Req q;
    VirtIOBlkOutHdr *h;

    q.hdr = vdmd_test_alloc(&r->heap, 16 + len + 1, VUF_RAM_GPA + RAM_SIZE);
    q.data = q.hdr + 16;
    q.status = q.data + len;
    q.len = len;
    h = vuf_host(&r->f, q.hdr);
    h->type = htole32(type);
    h->ioprio = 0;
    h->sector = htole64(sector);
    *(uint8_t *)vuf_host(&r->f, q.status) = 0xee;
    return q;
}

static void req_post(Run *r, Req *q, bool device_writes_data)
{
    VDriverSeg out[2] = { { q->hdr, 16 }, { q->data, q->len } };
    VDriverSeg in[2] = { { q->data, q->len }, { q->status, 1 } };
    int ret;

    if (device_writes_data) {
        ret = vdriver_add(r->q, out, 1, q->len ? in : in + 1, q->len ? 2 : 1, q, true);
    } else {
        ret = vdriver_add(r->q, out, q->len ? 2 : 1, in + 1, 1, q, true);
    }
    g_assert_cmpint(ret, ==, 0);
}

static void kick(Run *r)
{
    vdmd_test_kick(r->q, &r->ring);
}

/* Reap @n used buffers with status @status; under IN_ORDER they must be @reqs in order. */
static void reap_status(Run *r, Req *reqs, unsigned n, uint8_t status)
{
    for (unsigned got = 0; got < n; got++) {
        uint32_t len;
        Req *q = vdmd_test_wait_buf(&r->f, r->q, &r->ring, &len);

        if (r->c->in_order) {
            g_assert_true(q == &reqs[got]);
        }
        g_assert_cmpint(*(uint8_t *)vuf_host(&r->f, q->status), ==, status);
    }
}

static void reap(Run *r, Req *reqs, unsigned n)
{
    reap_status(r, reqs, n, VIRTIO_BLK_S_OK);
}

static void test_e2e(gconstpointer data)
{
    const Case *c = data;
    Run r;
    Req w[16], rd[16], fl, id;
    char *log;
    uint8_t buf[REQ_BYTES];
    bool null_engine = !strcmp(c->engine, "null");

    run_setup(&r, c);
    /* Sixteen writes in flight at once, then sixteen reads of them. */
    for (unsigned i = 0; i < 16; i++) {
        w[i] = req_new(&r, VIRTIO_BLK_T_OUT, i * 16ull, REQ_BYTES);
        memset(vuf_host(&r.f, w[i].data), 0x10 + i, REQ_BYTES);
        req_post(&r, &w[i], false);
    }
    kick(&r);
    reap(&r, w, 16);
    fl = req_new(&r, VIRTIO_BLK_T_FLUSH, 0, 0);
    req_post(&r, &fl, false);
    kick(&r);
    reap(&r, &fl, 1);
    for (unsigned i = 0; i < 16; i++) {
        rd[i] = req_new(&r, VIRTIO_BLK_T_IN, i * 16ull, REQ_BYTES);
        req_post(&r, &rd[i], true);
    }
    kick(&r);
    reap(&r, rd, 16);
    for (unsigned i = 0; i < 16; i++) {
        memset(buf, null_engine ? 0 : 0x10 + i, sizeof(buf));
        g_assert_cmpmem(vuf_host(&r.f, rd[i].data), REQ_BYTES, buf, sizeof(buf));
    }
    id = req_new(&r, VIRTIO_BLK_T_GET_ID, 0, VIRTIO_BLK_ID_BYTES);
    req_post(&r, &id, true);
    kick(&r);
    reap(&r, &id, 1);
    g_assert_cmpmem(vuf_host(&r.f, id.data), 8, "vdm-e2e\0", 8);

    log = run_finish(&r);
    g_test_message("%s", log);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_IN_ORDER", c->in_order);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_RING_PACKED", c->packed);
    g_assert_nonnull(strstr(log, "write=16"));
    g_assert_nonnull(strstr(log, "read=16"));
    g_assert_nonnull(strstr(log, "used buffers=34"));
    g_free(log);

    if (null_engine) {
        run_cleanup(&r);
        return;
    }
    /* The image, read behind the daemon's back. */
    vdmd_test_assert_image_pattern(r.image, 16, REQ_BYTES);
    run_cleanup(&r);
}

/* --read-only: writes fail with IOERR and the image keeps its contents. */
static void test_read_only(gconstpointer data)
{
    Run r;
    Req w, rd;
    char *log;
    uint8_t zeros[REQ_BYTES] = { 0 };

    run_setup(&r, data);
    w = req_new(&r, VIRTIO_BLK_T_OUT, 0, REQ_BYTES);
    memset(vuf_host(&r.f, w.data), 0x5a, REQ_BYTES);
    req_post(&r, &w, false);
    kick(&r);
    reap_status(&r, &w, 1, VIRTIO_BLK_S_IOERR);
    rd = req_new(&r, VIRTIO_BLK_T_IN, 0, REQ_BYTES);
    req_post(&r, &rd, true);
    kick(&r);
    reap(&r, &rd, 1);
    g_assert_cmpmem(vuf_host(&r.f, rd.data), REQ_BYTES, zeros, sizeof(zeros));
    log = run_finish(&r);
    g_assert_nonnull(strstr(log, "(read-only)"));
    g_assert_nonnull(strstr(log, "ioerr=1"));
    g_free(log);
    run_cleanup(&r);
}

static void test_bad_options(void)
{
    const char *argv[] = { daemon_path, "--socket", "/nonexistent/dir/sock", "--image", "/nonexistent",
                           NULL };

    vdmd_test_assert_fails(argv);
}

int main(int argc, char **argv)
{
    static const Case cases[] = {
        { "split/threads", false, false, "threads", false },
        { "packed/threads", true, false, "threads", false },
        { "split-in-order/threads", false, true, "threads", false },
        { "packed-in-order/threads", true, true, "threads", false },
        { "split-in-order/io_uring", false, true, "io_uring", false },
        { "packed-in-order/io_uring", true, true, "io_uring", false },
        { "split/null", false, false, "null", false },
    };

    daemon_path = vdmd_test_init(&argc, &argv);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/vhost-user-blk/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_e2e);
    }
    {
        static const Case ro = { "read-only", false, true, "threads", true };
        g_test_add_data_func("/vhost-user-blk/read-only", &ro, test_read_only);
    }
    g_test_add_func("/vhost-user-blk/bad-options", test_bad_options);
    return g_test_run();
}
