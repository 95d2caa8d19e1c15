/*
 * vdm-vhost-user-scsi end to end: the daemon is started on a temporary
 * image, the test frontend (tests/vhost-user) connects, shares RAM by memfd
 * and drives the control, event and request queues with the driver library,
 * on split, packed, split+IN_ORDER and packed+IN_ORDER.
 *
 * Proves: INQUIRY and READ CAPACITY answer, sixteen WRITE(10)s in flight
 * reach the image (checked with pread after the daemon is gone), READ(10)s
 * return them, SYNCHRONIZE CACHE, a bad LBA gets sense, a bad target gets
 * BAD_TARGET, a LUN RESET TMF is answered on the control queue, under
 * IN_ORDER completions come back in avail order, the daemon logs what was
 * negotiated, prints a summary on SIGTERM and exits 0.
 *
 * Usage: test-vhost-user-scsi DAEMON (meson passes the built daemon).
 */
#include <endian.h>
#include <glib/gstdio.h>
#include <string.h>

#include "hw/virtio/virtio-scsi.h"
#include "scsi-cdb.h"
#include "vdmd-test.h"

#define RAM_SIZE    (4ull * 1024 * 1024)
#define IMG_SIZE    (2ull * 1024 * 1024)
#define QNUM        32u
#define NQ          3u
#define REQQ        2u
#define REQ_BYTES   4096u
#define REQ_SIZE    (19u + 32u)
#define RESP_SIZE   (12u + 96u)

static const char *daemon_path;

typedef struct Case {
    const char *name;
    bool packed;
    bool in_order;
    const char *engine;
} Case;

typedef struct Run {
    const Case *c;
    VdmdTestDaemon d;
    char *image;
    VuFrontend f;
    VuFrontendRing ring[NQ];
    VDriverQueue *q[NQ];
    hwaddr heap;
} Run;

typedef struct Cmd {
    hwaddr req, data, resp;
    uint32_t len;
} Cmd;

static void start_daemon(Run *r)
{
    const char *argv[] = {
        daemon_path, "--socket-path", r->d.sock, "--blk-file", r->image, "--backend", r->c->engine,
        "--in-order", r->c->in_order ? "on" : "off", "--packed", r->c->packed ? "on" : "off",
        "--serial", "vdm-e2e", NULL,
    };

    vdmd_test_daemon_spawn(&r->d, argv);
}

static void run_setup(Run *r, const Case *c)
{
    uint64_t want = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    hwaddr base = VUF_RAM_GPA;

    memset(r, 0, sizeof(*r));
    r->c = c;
    vdmd_test_daemon_init(&r->d, "vdm-vuscsi-XXXXXX");
    r->image = vdmd_test_image_new(&r->d, "disk.img", IMG_SIZE);
    start_daemon(r);
    vdmd_test_connect(&r->f, r->d.sock, RAM_SIZE, want, c->packed, c->in_order, 0);

    for (unsigned n = 0; n < NQ; n++) {
        VDriverQueueConfig qc = { .num = QNUM, .packed = c->packed, .in_order = c->in_order };
        base = vdriver_layout_rings(&qc, base);
        qc.indirect = (base + 15) & ~15ull;
        qc.indirect_max = 8;
        base = qc.indirect + 16ull * 8 * QNUM;
        r->q[n] = vdmd_test_queue_new(&r->f, &qc, n, &r->ring[n]);
        g_assert_cmpint(vuf_ring_setup(&r->f, &r->ring[n]), ==, 0);
    }
    r->heap = (base + 4095) & ~4095ull;
}

static char *run_finish(Run *r)
{
    for (unsigned n = 0; n < NQ; n++) {
        g_assert_null(vdriver_error(r->q[n]));
        vdriver_queue_free(r->q[n]);
    }
    vuf_close(&r->f);
    for (unsigned n = 0; n < NQ; n++) {
        vuf_ring_close(&r->ring[n]);
    }
    return vdmd_test_daemon_stop(&r->d);
}

static void run_cleanup(Run *r)
{
    g_unlink(r->image);
    g_free(r->image);
    vdmd_test_daemon_cleanup(&r->d);
}

static hwaddr ralloc(Run *r, uint64_t len)
{
    return vdmd_test_alloc(&r->heap, len, VUF_RAM_GPA + RAM_SIZE);
}

/* A command to @target with @cdb; @len data bytes, written by the device when @din. */
static Cmd cmd_new(Run *r, uint8_t target, const uint8_t *cdb, unsigned cdb_len, uint32_t len)
{
    Cmd c;
    uint8_t *h;

    c.req = ralloc(r, REQ_SIZE);
    c.resp = ralloc(r, RESP_SIZE);
    c.data = ralloc(r, MAX(len, 1));
    c.len = len;
    h = vuf_host(&r->f, c.req);
    memset(h, 0, REQ_SIZE);
    h[0] = 1;
    h[1] = target;
    memcpy(h + 19, cdb, cdb_len);
    memset(vuf_host(&r->f, c.resp), 0xee, RESP_SIZE);
    return c;
}

static void cmd_post(Run *r, Cmd *c, bool din)
{
    VDriverSeg out[2] = { { c->req, REQ_SIZE }, { c->data, c->len } };
    VDriverSeg in[2] = { { c->resp, RESP_SIZE }, { c->data, c->len } };

    g_assert_cmpint(vdriver_add(r->q[REQQ], out, !din && c->len ? 2 : 1, in, din && c->len ? 2 : 1, c,
                                true), ==, 0);
}

static void kick(Run *r, unsigned n)
{
    vdmd_test_kick(r->q[n], &r->ring[n]);
}

static void *wait_buf(Run *r, unsigned n, uint32_t *len)
{
    return vdmd_test_wait_buf(&r->f, r->q[n], &r->ring[n], len);
}

static VirtIOSCSICmdResp *resp(Run *r, const Cmd *c)
{
    return vuf_host(&r->f, c->resp);
}

/* Reap @n commands; under IN_ORDER they must be @cmds in order. Each must be GOOD. */
static void reap_good(Run *r, Cmd *cmds, unsigned n)
{
    for (unsigned got = 0; got < n; got++) {
        uint32_t len;
        Cmd *c = wait_buf(r, REQQ, &len);
        if (r->c->in_order) {
            g_assert_true(c == &cmds[got]);
        }
        g_assert_cmpuint(resp(r, c)->response, ==, VIRTIO_SCSI_S_OK);
        g_assert_cmpuint(resp(r, c)->status, ==, SCSI_STATUS_GOOD);
    }
}

static void test_e2e(gconstpointer data)
{
    const Case *c = data;
    static const uint8_t inquiry[6] = { INQUIRY, 0, 0, 0, 36, 0 };
    static const uint8_t rc10[10] = { READ_CAPACITY_10 };
    static const uint8_t sync10[10] = { SYNCHRONIZE_CACHE_10 };
    Run r;
    Cmd w[16], rd[16], one, bad;
    uint8_t cdb[16], buf[REQ_BYTES], *d;
    uint32_t len;
    char *log;

    run_setup(&r, c);
    one = cmd_new(&r, 0, inquiry, 6, 36);
    cmd_post(&r, &one, true);
    kick(&r, REQQ);
    reap_good(&r, &one, 1);
    d = vuf_host(&r.f, one.data);
    g_assert_cmpmem(d + 8, 8, "VDM     ", 8);
    one = cmd_new(&r, 0, rc10, 10, 8);
    cmd_post(&r, &one, true);
    kick(&r, REQQ);
    reap_good(&r, &one, 1);
    d = vuf_host(&r.f, one.data);
    g_assert_cmpuint(scsi_be32(d), ==, IMG_SIZE / 512 - 1);

    /* Sixteen writes in flight at once, a cache flush, then sixteen reads of them. */
    for (unsigned i = 0; i < 16; i++) {
        scsi_cdb_rw(cdb, WRITE_10, i * 16, REQ_BYTES / 512);
        w[i] = cmd_new(&r, 0, cdb, 10, REQ_BYTES);
        memset(vuf_host(&r.f, w[i].data), 0x10 + i, REQ_BYTES);
        cmd_post(&r, &w[i], false);
    }
    kick(&r, REQQ);
    reap_good(&r, w, 16);
    one = cmd_new(&r, 0, sync10, 10, 0);
    cmd_post(&r, &one, false);
    kick(&r, REQQ);
    reap_good(&r, &one, 1);
    for (unsigned i = 0; i < 16; i++) {
        scsi_cdb_rw(cdb, READ_10, i * 16, REQ_BYTES / 512);
        rd[i] = cmd_new(&r, 0, cdb, 10, REQ_BYTES);
        cmd_post(&r, &rd[i], true);
    }
    kick(&r, REQQ);
    reap_good(&r, rd, 16);
    for (unsigned i = 0; i < 16; i++) {
        memset(buf, 0x10 + i, sizeof(buf));
        g_assert_cmpmem(vuf_host(&r.f, rd[i].data), REQ_BYTES, buf, sizeof(buf));
    }

    /* Past the end: CHECK CONDITION, LBA OUT OF RANGE. A missing target: BAD_TARGET. */
    scsi_cdb_rw(cdb, READ_10, IMG_SIZE / 512, 1);
    bad = cmd_new(&r, 0, cdb, 10, 512);
    cmd_post(&r, &bad, true);
    kick(&r, REQQ);
    g_assert_true(wait_buf(&r, REQQ, &len) == &bad);
    g_assert_cmpuint(resp(&r, &bad)->status, ==, SCSI_STATUS_CHECK_CONDITION);
    g_assert_cmphex(resp(&r, &bad)->sense[12], ==, 0x21);
    bad = cmd_new(&r, 9, inquiry, 6, 36);
    cmd_post(&r, &bad, true);
    kick(&r, REQQ);
    g_assert_true(wait_buf(&r, REQQ, &len) == &bad);
    g_assert_cmpuint(resp(&r, &bad)->response, ==, VIRTIO_SCSI_S_BAD_TARGET);

    /* LUN RESET on the control queue. */
    {
        VirtIOSCSICtrlTMFReq *tmf;
        hwaddr o = ralloc(&r, sizeof(*tmf)), i = ralloc(&r, 1);
        VDriverSeg os = { o, sizeof(*tmf) }, is = { i, 1 };
        int token;

        tmf = vuf_host(&r.f, o);
        memset(tmf, 0, sizeof(*tmf));
        tmf->type = htole32(VIRTIO_SCSI_T_TMF);
        tmf->subtype = htole32(VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET);
        tmf->lun[0] = 1;
        *(uint8_t *)vuf_host(&r.f, i) = 0xee;
        g_assert_cmpint(vdriver_add(r.q[0], &os, 1, &is, 1, &token, false), ==, 0);
        kick(&r, 0);
        g_assert_true(wait_buf(&r, 0, &len) == &token);
        g_assert_cmpuint(len, ==, 1);
        g_assert_cmpuint(*(uint8_t *)vuf_host(&r.f, i), ==, VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    }

    log = run_finish(&r);
    g_test_message("%s", log);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_IN_ORDER", c->in_order);
    vdmd_test_assert_negotiated(log, "VIRTIO_F_RING_PACKED", c->packed);
    g_assert_nonnull(strstr(log, "write=16"));
    g_assert_nonnull(strstr(log, "read=16"));
    g_assert_nonnull(strstr(log, "bad-target=1"));
    g_assert_nonnull(strstr(log, "tmf=1"));
    g_assert_nonnull(strstr(log, "used buffers=38"));
    g_free(log);

    /* The image, read behind the daemon's back. */
    vdmd_test_assert_image_pattern(r.image, 16, REQ_BYTES);
    run_cleanup(&r);
}

static void test_print_capabilities(void)
{
    const char *argv[] = { daemon_path, "--print-capabilities", NULL };
    g_autofree char *out = NULL;
    gint status;
    GError *err = NULL;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDERR_TO_DEV_NULL, NULL, NULL, &out, NULL,
                               &status, &err));
    g_assert_no_error(err);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_assert_nonnull(strstr(out, "\"scsi\""));
}

static void test_bad_options(void)
{
    const char *argv[] = { daemon_path, "--socket-path", "/nonexistent/dir/sock", "--blk-file", "/nonexistent",
                           NULL };

    vdmd_test_assert_fails(argv);
}

int main(int argc, char **argv)
{
    static const Case cases[] = {
        { "split/threads", false, false, "threads" },
        { "packed/threads", true, false, "threads" },
        { "split-in-order/threads", false, true, "threads" },
        { "packed-in-order/threads", true, true, "threads" },
        { "packed-in-order/io_uring", true, true, "io_uring" },
    };

    daemon_path = vdmd_test_init(&argc, &argv);
    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autofree char *path = g_strdup_printf("/vhost-user-scsi/%s", cases[i].name);
        g_test_add_data_func(path, &cases[i], test_e2e);
    }
    g_test_add_func("/vhost-user-scsi/print-capabilities", test_print_capabilities);
    g_test_add_func("/vhost-user-scsi/bad-options", test_bad_options);
    return g_test_run();
}
