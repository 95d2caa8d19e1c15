/*
 * virtio-blk through the core, driven by the driver library on all four
 * layouts (split, packed, split+IN_ORDER, packed+IN_ORDER), on an image file
 * served by the thread-pool engine (io_uring is covered by test-block-backend).
 *
 * Proves: data written reads back and reaches the file; FLUSH, GET_ID,
 * DISCARD, WRITE_ZEROES; read-only and out-of-range refusals; headers and
 * status bytes anywhere in the chain; framing faults break the device; with
 * IN_ORDER and a backend finishing in reverse, used entries still come back
 * in avail order (batched when complete); reset with requests in flight
 * publishes nothing.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/virtio-blk.h"
#include "vdev-fixture.h"

#define IMG_SECTORS 8192ull             /* 4 MiB */
#define QSIZE       64u
#define BIT(b)      (1ULL << (b))

typedef struct BlkTest {
    VdevFixture f;              /* RAM, transport, driver queues */
    char *path;
    BlockBackend *blk;
    VirtIOBlock dev;
    bool indirect;              /* post chains through indirect tables */
} BlkTest;

typedef struct TestOpts {
    bool read_only;
    unsigned num_queues;
    uint64_t drop_features;     /* not accepted by the driver */
    const char *serial;
} TestOpts;

static void *host(BlkTest *t, hwaddr gpa)
{
    return vdf_host(&t->f, gpa);
}

static hwaddr galloc(BlkTest *t, uint64_t size)
{
    return vdf_alloc(&t->f, size);
}

static bool offered(BlkTest *t, unsigned bit)
{
    return virtio_has_feature(t->dev.parent_obj.host_features, bit);
}

static void blk_setup(BlkTest *t, const VqLayout *layout, const TestOpts *o)
{
    BlockBackendOptions bo = { .engine = BLK_ENGINE_THREADS, .threads = 4 };
    VirtIOBlkConf conf;
    VirtIODevice *vdev = &t->dev.parent_obj;
    GError *err = NULL;
    uint64_t features;

    memset(t, 0, sizeof(*t));
    vdf_init(&t->f, layout);
    t->path = vdf_tmp_image("vdm-vblk-XXXXXX", IMG_SECTORS * 512);
    bo.filename = t->path;
    bo.read_only = o && o->read_only;
    t->blk = blk_new_open(&bo, &err);
    g_assert_no_error(err);

    virtio_blk_conf_init(&conf);
    conf.blk = t->blk;
    conf.queue_size = QSIZE;
    conf.num_queues = o && o->num_queues ? o->num_queues : 1;
    g_assert_true(virtio_blk_conf_set(&conf, "in_order", layout->in_order ? "on" : "off", &err));
    g_assert_true(virtio_blk_conf_set(&conf, "packed", layout->packed ? "on" : "off", &err));
    g_assert_true(virtio_blk_conf_set(&conf, "serial", o && o->serial ? o->serial : "vdm-serial-0001",
                                      &err));
    g_assert_true(virtio_blk_realize(&t->dev, &conf, &t->f.mem, &err));
    g_assert_no_error(err);
    vdf_attach(&t->f, vdev);

    /* The driver takes every offered bit except those the test drops. */
    features = vdev->host_features & ~(o ? o->drop_features : 0);
    g_assert_true(virtio_has_feature(features, VIRTIO_F_VERSION_1));
    vdf_start(&t->f, features, conf.num_queues, QSIZE, 16);
    g_assert_true(virtio_queue_is_running(vdev, 0));
}

static void blk_teardown(BlkTest *t)
{
    vdf_free_driver(&t->f, false);
    virtio_blk_unrealize(&t->dev);
    blk_unref(t->blk);
    g_unlink(t->path);
    g_free(t->path);
    vdf_cleanup(&t->f);
}

/* ---- requests, built in guest memory ---- */

typedef struct Req {
    hwaddr hdr, out_data, in_data, status;
    uint32_t out_len, in_len;   /* data bytes */
} Req;

/*
 * Lay a request out contiguously: header, out data, in data, status, so that
 * the readable part and the writable part can each be cut into segments of
 * any size (@chop; 0 = one segment per field).
 */
static Req req_build(BlkTest *t, uint32_t type, uint64_t sector, uint32_t out_len, uint32_t in_len)
{
    Req r;
    VirtIOBlkOutHdr *h;

    r.hdr = galloc(t, 16 + out_len + in_len + 1);
    r.out_data = r.hdr + 16;
    r.in_data = r.out_data + out_len;
    r.status = r.in_data + in_len;
    r.out_len = out_len;
    r.in_len = in_len;
    h = host(t, r.hdr);
    h->type = htole32(type);
    h->ioprio = 0;
    h->sector = htole64(sector);
    *(uint8_t *)host(t, r.status) = 0xee;   /* the device must overwrite it */
    return r;
}

/* Cut [gpa, gpa + len) into @chop-byte segments inside [zone_start, zone_end), whole elsewhere. */
static unsigned cut(VDriverSeg *segs, hwaddr gpa, uint64_t len, unsigned chop,
                    uint64_t zone_start, uint64_t zone_end)
{
    unsigned n = 0;
    uint64_t off = 0;

    while (off < len) {
        uint64_t l;
        if (chop && off >= zone_start && off < zone_end) {
            l = MIN(chop, zone_end - off);
        } else if (chop && off < zone_start) {
            l = zone_start - off;
        } else {
            l = len - off;
        }
        l = MIN(l, len - off);
        segs[n++] = (VDriverSeg) { gpa + off, (uint32_t)l };
        off += l;
    }
    return n;
}

/* Bytes cut small at the start of the readable part and the end of the writable part. */
#define CHOP_ZONE 24u

/*
 * @chop 0: one segment per field (header | data, data | status). Otherwise
 * the first CHOP_ZONE readable bytes (header and the start of the data) and
 * the last CHOP_ZONE writable bytes (end of the data and status) come in
 * @chop-byte segments, so fields straddle descriptors.
 */
static void req_add(BlkTest *t, unsigned q, const Req *r, unsigned chop, void *token)
{
    VDriverSeg out[64], in[64];
    unsigned out_num, in_num;
    uint64_t in_total = r->in_len + 1ull;

    if (chop) {
        out_num = cut(out, r->hdr, 16 + r->out_len, chop, 0, CHOP_ZONE);
        in_num = cut(in, r->in_data, in_total, chop, in_total > CHOP_ZONE ? in_total - CHOP_ZONE : 0,
                     in_total);
    } else {
        out_num = cut(out, r->hdr, 16, 0, 0, 0);
        out_num += cut(out + out_num, r->out_data, r->out_len, 0, 0, 0);
        in_num = cut(in, r->in_data, r->in_len, 0, 0, 0);
        in_num += cut(in + in_num, r->status, 1, 0, 0, 0);
    }
    g_assert_cmpint(vdriver_add(t->f.dq[q], out, out_num, in, in_num, token, t->indirect), ==, 0);
}

static void kick(BlkTest *t, unsigned q)
{
    vdriver_kick_prepare(t->f.dq[q]);
    virtio_queue_notify(&t->dev.parent_obj, q);
}

/* Wait for the next used buffer on @q: returns its token, *len its used length. */
static void *reap(BlkTest *t, unsigned q, uint32_t *len)
{
    void *token;

    for (unsigned tries = 0; tries < 1000; tries++) {
        token = vdriver_get_buf(t->f.dq[q], len, NULL);
        if (token) {
            return token;
        }
        g_assert_null(vdriver_error(t->f.dq[q]));
        if (!blk_in_flight(t->blk)) {
            break;
        }
        blk_drain(t->blk);
    }
    g_assert_null(vdriver_error(t->f.dq[q]));
    return NULL;
}

/* One request, start to finish. Returns its status; *used gets the used length. */
static uint8_t run_req(BlkTest *t, const Req *r, unsigned chop, uint32_t *used)
{
    uint32_t len;
    void *token;

    req_add(t, 0, r, chop, (void *)r);
    kick(t, 0);
    token = reap(t, 0, &len);
    g_assert_true(token == r);
    if (used) {
        *used = len;
    }
    return *(uint8_t *)host(t, r->status);
}

static uint8_t do_write(BlkTest *t, uint64_t sector, const void *data, uint32_t len, unsigned chop)
{
    Req r = req_build(t, VIRTIO_BLK_T_OUT, sector, len, 0);
    uint32_t used;
    uint8_t st;

    memcpy(host(t, r.out_data), data, len);
    st = run_req(t, &r, chop, &used);
    g_assert_cmpuint(used, ==, 1);      /* only the status byte was written */
    return st;
}

static uint8_t do_read(BlkTest *t, uint64_t sector, void *data, uint32_t len, unsigned chop)
{
    Req r = req_build(t, VIRTIO_BLK_T_IN, sector, 0, len);
    uint32_t used;
    uint8_t st;

    memset(host(t, r.in_data), 0xcc, len);
    st = run_req(t, &r, chop, &used);
    if (st == VIRTIO_BLK_S_OK) {
        g_assert_cmpuint(used, ==, len + 1);
        memcpy(data, host(t, r.in_data), len);
    } else {
        g_assert_cmpuint(used, ==, 1);
    }
    return st;
}

/* ---- tests ---- */

static void test_config_space(gconstpointer data)
{
    BlkTest t;
    VirtIOBlkConfig cfg;

    blk_setup(&t, data, &(TestOpts) { .num_queues = 2 });
    memcpy(&cfg, t.dev.parent_obj.config, sizeof(cfg));
    g_assert_cmpuint(t.dev.parent_obj.config_len, ==, 60);
    g_assert_cmpuint(le64toh(cfg.capacity), ==, IMG_SECTORS);
    g_assert_cmpuint(le32toh(cfg.seg_max), ==, QSIZE - 2);
    g_assert_cmpuint(le32toh(cfg.blk_size), ==, 512);
    g_assert_cmpuint(le16toh(cfg.num_queues), ==, 2);
    g_assert_cmpuint(le32toh(cfg.max_discard_seg), ==, 32);
    g_assert_cmpuint(le32toh(cfg.max_write_zeroes_sectors), ==, 4194303);
    g_assert_cmpuint(cfg.write_zeroes_may_unmap, ==, 1);
    /* spec 5.2.5: writeback iff FLUSH negotiated (CONFIG_WCE lets the driver change it). */
    g_assert_cmpint(cfg.writeback, ==, offered(&t, VIRTIO_BLK_F_FLUSH));
    g_assert_cmpint(virtio_blk_writeback(&t.dev), ==, offered(&t, VIRTIO_BLK_F_FLUSH));
    /* Every offered bit is in the registry as implemented (STYLE.md §7). */
    for (unsigned bit = 0; bit < 64; bit++) {
        if (offered(&t, bit)) {
            const VirtIOFeatureInfo *fi = virtio_feature_lookup(VIRTIO_ID_BLOCK, bit);
            g_assert_nonnull(fi);
            g_assert_true(fi->implemented);
        }
    }
    blk_teardown(&t);
}

/* spec 5.2.4: only writeback is driver-writable, and only with CONFIG_WCE. */
static void test_config_write(gconstpointer data)
{
    BlkTest t;
    const VirtIOBlkConfig *cfg;
    uint8_t zero = 0, one = 1, junk[8] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

    blk_setup(&t, data, NULL);
    cfg = (const VirtIOBlkConfig *)t.dev.parent_obj.config;
    g_assert_cmpint(virtio_blk_set_config(&t.dev, 0, junk, 8), ==, -EPERM);    /* capacity */
    g_assert_cmpuint(le64toh(cfg->capacity), ==, IMG_SECTORS);
    g_assert_cmpint(virtio_blk_set_config(&t.dev, 60, junk, 1), ==, -EINVAL);
    g_assert_cmpint(virtio_blk_set_config(&t.dev, UINT32_MAX, junk, 2), ==, -EINVAL);
    if (offered(&t, VIRTIO_BLK_F_CONFIG_WCE)) {
        g_assert_cmpint(virtio_blk_set_config(&t.dev, offsetof(VirtIOBlkConfig, writeback), &zero, 1), ==, 0);
        g_assert_false(virtio_blk_writeback(&t.dev));
        g_assert_cmpint(virtio_blk_set_config(&t.dev, offsetof(VirtIOBlkConfig, writeback), &one, 1), ==, 0);
        g_assert_true(virtio_blk_writeback(&t.dev));
    } else {
        g_assert_cmpint(virtio_blk_set_config(&t.dev, offsetof(VirtIOBlkConfig, writeback), &one, 1),
                        ==, -EPERM);
    }
    blk_teardown(&t);
}

/* block_resize: capacity follows the image and the driver gets a config notification. */
static void test_resize(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[512];
    unsigned before;

    blk_setup(&t, data, NULL);
    before = t.f.config_notifies;
    g_assert_cmpint(blk_truncate(t.blk, IMG_SECTORS * 2 * 512), ==, 0);
    virtio_blk_resize(&t.dev);
    g_assert_cmpuint(t.f.config_notifies, ==, before + 1);
    g_assert_cmpuint(le64toh(((VirtIOBlkConfig *)t.dev.parent_obj.config)->capacity), ==, IMG_SECTORS * 2);
    g_assert_cmpint(do_read(&t, IMG_SECTORS * 2 - 1, buf, 512, 0), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpint(do_read(&t, IMG_SECTORS * 2, buf, 512, 0), ==, VIRTIO_BLK_S_IOERR);
    blk_teardown(&t);
}

static void test_read_write(gconstpointer data)
{
    BlkTest t;
    uint8_t wbuf[8192], rbuf[8192], file[8192];
    int fd;

    blk_setup(&t, data, NULL);
    vdf_fill_pattern(wbuf, sizeof(wbuf), 1);
    g_assert_cmpint(do_write(&t, 100, wbuf, sizeof(wbuf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpint(do_read(&t, 100, rbuf, sizeof(rbuf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpmem(rbuf, sizeof(rbuf), wbuf, sizeof(wbuf));
    /* The last sector of the disk is reachable. */
    g_assert_cmpint(do_write(&t, IMG_SECTORS - 1, wbuf, 512, 0), ==, VIRTIO_BLK_S_OK);
    /* And the image holds it. */
    fd = open(t.path, O_RDONLY);
    g_assert_cmpint(pread(fd, file, sizeof(file), 100 * 512), ==, (ssize_t)sizeof(file));
    close(fd);
    g_assert_cmpmem(file, sizeof(file), wbuf, sizeof(wbuf));
    g_assert_cmpuint(t.dev.stats.reqs[VIRTIO_BLK_T_OUT], ==, 2);
    g_assert_cmpuint(t.dev.stats.reqs[VIRTIO_BLK_T_IN], ==, 1);
    g_assert_cmpuint(t.dev.stats.bytes_read, ==, sizeof(rbuf));
    g_assert_cmpuint(t.f.queue_notifies, >=, 1);
    blk_teardown(&t);
}

/* spec 2.6.4: header, data and status may be cut anywhere; the device copes. */
static void test_header_split_across_descriptors(gconstpointer data)
{
    static const unsigned chops[] = { 1, 3, 5, 7, 16, 17 };
    BlkTest t;
    uint8_t wbuf[1024], rbuf[1024];

    blk_setup(&t, data, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(chops); i++) {
        uint32_t len = 1024;
        vdf_fill_pattern(wbuf, len, i + 2);
        g_assert_cmpint(do_write(&t, 8 * i, wbuf, len, chops[i]), ==, VIRTIO_BLK_S_OK);
        g_assert_cmpint(do_read(&t, 8 * i, rbuf, len, chops[i]), ==, VIRTIO_BLK_S_OK);
        g_assert_cmpmem(rbuf, len, wbuf, len);
    }
    blk_teardown(&t);
}

static void test_flush(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[512] = { 0x42 };
    Req r;

    blk_setup(&t, data, NULL);
    g_assert_cmpint(do_write(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
    r = req_build(&t, VIRTIO_BLK_T_FLUSH, 0, 0, 0);
    g_assert_cmpint(run_req(&t, &r, 0, NULL), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpuint(t.dev.stats.reqs[VIRTIO_BLK_T_FLUSH], ==, 1);
    blk_teardown(&t);
}

/* Writethrough (writeback 0): every write is followed by fdatasync before it completes. */
static void test_writethrough_flushes_each_write(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[512] = { 1 };

    blk_setup(&t, data, NULL);
    if (offered(&t, VIRTIO_BLK_F_CONFIG_WCE)) {
        uint8_t zero = 0;
        g_assert_cmpint(virtio_blk_set_config(&t.dev, offsetof(VirtIOBlkConfig, writeback), &zero, 1), ==, 0);
    }
    if (virtio_blk_writeback(&t.dev)) {
        g_test_skip("write cache cannot be turned off (no CONFIG_WCE)");
        blk_teardown(&t);
        return;
    }
    g_assert_cmpint(do_write(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpint(do_write(&t, 1, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpuint(t.dev.stats.writethrough_flushes, ==, 2);
    blk_teardown(&t);
}

static void test_get_id(gconstpointer data)
{
    BlkTest t;
    Req r;
    uint32_t used;

    blk_setup(&t, data, &(TestOpts) { .serial = "disk-7" });
    r = req_build(&t, VIRTIO_BLK_T_GET_ID, 0, 0, VIRTIO_BLK_ID_BYTES);
    memset(host(&t, r.in_data), 0xff, VIRTIO_BLK_ID_BYTES);
    g_assert_cmpint(run_req(&t, &r, 0, &used), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpuint(used, ==, VIRTIO_BLK_ID_BYTES + 1);
    g_assert_cmpmem(host(&t, r.in_data), 6, "disk-7", 6);
    g_assert_true(vdf_all_bytes(host(&t, r.in_data + 6), VIRTIO_BLK_ID_BYTES - 6, 0));
    blk_teardown(&t);

    /* A 20-byte serial fills the field with no terminator. */
    blk_setup(&t, data, &(TestOpts) { .serial = "ABCDEFGHIJKLMNOPQRST" });
    r = req_build(&t, VIRTIO_BLK_T_GET_ID, 0, 0, VIRTIO_BLK_ID_BYTES);
    g_assert_cmpint(run_req(&t, &r, 3, NULL), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpmem(host(&t, r.in_data), 20, "ABCDEFGHIJKLMNOPQRST", 20);
    blk_teardown(&t);
}

static uint8_t do_dwz(BlkTest *t, uint32_t type, const VirtIOBlkDiscardWriteZeroes *segs, unsigned n)
{
    Req r = req_build(t, type, 0, n * 16, 0);
    VirtIOBlkDiscardWriteZeroes *p = host(t, r.out_data);

    for (unsigned i = 0; i < n; i++) {
        p[i].sector = htole64(segs[i].sector);
        p[i].num_sectors = htole32(segs[i].num_sectors);
        p[i].flags = htole32(segs[i].flags);
    }
    return run_req(t, &r, 0, NULL);
}

static void check_zeroing(gconstpointer data, uint32_t type, uint32_t flags)
{
    unsigned bit = type == VIRTIO_BLK_T_DISCARD ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    BlkTest t;
    uint8_t *buf = g_malloc(64 * 512);
    VirtIOBlkDiscardWriteZeroes segs[2] = {
        { .sector = 8, .num_sectors = 8, .flags = flags },
        { .sector = 32, .num_sectors = 16, .flags = flags },
    };

    blk_setup(&t, data, NULL);
    memset(buf, 0x77, 64 * 512);
    g_assert_cmpint(do_write(&t, 0, buf, 64 * 512, 0), ==, VIRTIO_BLK_S_OK);
    if (!offered(&t, bit)) {
        /* Not offered (not in the feature registry): refused, data untouched. */
        g_assert_cmpint(do_dwz(&t, type, segs, 2), ==, VIRTIO_BLK_S_UNSUPP);
        g_assert_cmpint(do_read(&t, 0, buf, 64 * 512, 0), ==, VIRTIO_BLK_S_OK);
        g_assert_true(vdf_all_bytes(buf, 64 * 512, 0x77));
        g_test_message("feature bit %u not offered: only the refusal was tested", bit);
        blk_teardown(&t);
        g_free(buf);
        return;
    }
    g_assert_cmpint(do_dwz(&t, type, segs, 2), ==, VIRTIO_BLK_S_OK);
    g_assert_cmpint(do_read(&t, 0, buf, 64 * 512, 0), ==, VIRTIO_BLK_S_OK);
    g_assert_true(vdf_all_bytes(buf, 8 * 512, 0x77));
    g_assert_true(vdf_all_bytes(buf + 8 * 512, 8 * 512, 0));
    g_assert_true(vdf_all_bytes(buf + 16 * 512, 16 * 512, 0x77));
    g_assert_true(vdf_all_bytes(buf + 32 * 512, 16 * 512, 0));
    g_assert_true(vdf_all_bytes(buf + 48 * 512, 16 * 512, 0x77));
    blk_teardown(&t);
    g_free(buf);
}

static void test_discard(gconstpointer data)
{
    check_zeroing(data, VIRTIO_BLK_T_DISCARD, 0);
}

static void test_write_zeroes(gconstpointer data)
{
    check_zeroing(data, VIRTIO_BLK_T_WRITE_ZEROES, 0);
}

static void test_write_zeroes_unmap(gconstpointer data)
{
    check_zeroing(data, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP);
}

/* spec 5.2.6.2: bad flags UNSUPP, bad ranges IOERR; nothing is touched either way. */
static void test_discard_write_zeroes_refusals(gconstpointer data)
{
    BlkTest t;
    VirtIOBlkDiscardWriteZeroes seg = { .sector = 0, .num_sectors = 8 };
    VirtIOBlkDiscardWriteZeroes many[33];
    uint8_t buf[4096];
    Req r;

    blk_setup(&t, data, NULL);
    if (!offered(&t, VIRTIO_BLK_F_DISCARD) || !offered(&t, VIRTIO_BLK_F_WRITE_ZEROES)) {
        g_test_skip("DISCARD / WRITE_ZEROES not offered (feature registry)");
        blk_teardown(&t);
        return;
    }
    memset(buf, 0x31, sizeof(buf));
    g_assert_cmpint(do_write(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);

    seg.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;     /* unmap on a discard */
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_DISCARD, &seg, 1), ==, VIRTIO_BLK_S_UNSUPP);
    seg.flags = 2;                                      /* unknown flag */
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 1), ==, VIRTIO_BLK_S_UNSUPP);
    seg.flags = 0;
    seg.sector = IMG_SECTORS - 4;                       /* runs off the end */
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 1), ==, VIRTIO_BLK_S_IOERR);
    seg.sector = UINT64_MAX - 2;                        /* sector + count overflows */
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_DISCARD, &seg, 1), ==, VIRTIO_BLK_S_IOERR);
    for (unsigned i = 0; i < G_N_ELEMENTS(many); i++) {
        many[i] = (VirtIOBlkDiscardWriteZeroes) { .sector = i, .num_sectors = 1 };
    }
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_DISCARD, many, 33), ==, VIRTIO_BLK_S_UNSUPP);
    /* Segment payload that is not a whole number of segments. */
    r = req_build(&t, VIRTIO_BLK_T_WRITE_ZEROES, 0, 12, 0);
    g_assert_cmpint(run_req(&t, &r, 0, NULL), ==, VIRTIO_BLK_S_IOERR);
    /* A later segment's fault refuses the whole request before any of it runs. */
    many[0] = (VirtIOBlkDiscardWriteZeroes) { .sector = 0, .num_sectors = 8 };
    many[1] = (VirtIOBlkDiscardWriteZeroes) { .sector = IMG_SECTORS, .num_sectors = 1 };
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_WRITE_ZEROES, many, 2), ==, VIRTIO_BLK_S_IOERR);

    g_assert_cmpint(do_read(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_true(vdf_all_bytes(buf, sizeof(buf), 0x31));
    blk_teardown(&t);
}

static void test_read_only(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[1024];
    VirtIOBlkDiscardWriteZeroes seg = { .sector = 0, .num_sectors = 1 };

    blk_setup(&t, data, &(TestOpts) { .read_only = true });
    g_assert_false(offered(&t, VIRTIO_BLK_F_DISCARD));
    g_assert_false(offered(&t, VIRTIO_BLK_F_WRITE_ZEROES));
    if (virtio_feature_lookup(VIRTIO_ID_BLOCK, VIRTIO_BLK_F_RO)) {
        g_assert_true(offered(&t, VIRTIO_BLK_F_RO));
    }
    memset(buf, 0x99, sizeof(buf));
    /* spec 5.2.6.2: writes to a read-only device fail and write nothing. */
    g_assert_cmpint(do_write(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_dwz(&t, VIRTIO_BLK_T_WRITE_ZEROES, &seg, 1), !=, VIRTIO_BLK_S_OK);
    g_assert_cmpint(do_read(&t, 0, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
    g_assert_true(vdf_all_bytes(buf, sizeof(buf), 0));
    g_assert_cmpuint(t.dev.stats.status_ioerr, >=, 1);
    blk_teardown(&t);
}

static void test_out_of_range(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[1024];
    Req r;

    blk_setup(&t, data, NULL);
    g_assert_cmpint(do_read(&t, IMG_SECTORS, buf, 512, 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_read(&t, IMG_SECTORS - 1, buf, 1024, 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_read(&t, UINT64_MAX, buf, 512, 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_read(&t, UINT64_MAX / 512 + 1, buf, 512, 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_write(&t, IMG_SECTORS, buf, 512, 0), ==, VIRTIO_BLK_S_IOERR);
    /* Lengths that are not whole sectors. */
    g_assert_cmpint(do_read(&t, 0, buf, 100, 0), ==, VIRTIO_BLK_S_IOERR);
    g_assert_cmpint(do_write(&t, 0, buf, 513, 0), ==, VIRTIO_BLK_S_IOERR);
    /* Unknown request type. */
    r = req_build(&t, 77, 0, 0, 0);
    g_assert_cmpint(run_req(&t, &r, 0, NULL), ==, VIRTIO_BLK_S_UNSUPP);
    g_assert_false(t.dev.parent_obj.broken);
    /* Still serving. */
    g_assert_cmpint(do_read(&t, IMG_SECTORS - 2, buf, 1024, 0), ==, VIRTIO_BLK_S_OK);
    blk_teardown(&t);
}

/* Framing faults (no full header, no status byte) break the device: NEEDS_RESET. */
static void test_framing_faults_break_device(gconstpointer data)
{
    for (unsigned kind = 0; kind < 2; kind++) {
        BlkTest t;
        Req r;
        VDriverSeg out[2], in[1];

        blk_setup(&t, data, NULL);
        r = req_build(&t, VIRTIO_BLK_T_IN, 0, 0, 512);
        if (kind == 0) {
            out[0] = (VDriverSeg) { r.hdr, 12 };    /* 12 of 16 header bytes */
            in[0] = (VDriverSeg) { r.in_data, 513 };
            g_assert_cmpint(vdriver_add(t.f.dq[0], out, 1, in, 1, &r, false), ==, 0);
        } else {
            out[0] = (VDriverSeg) { r.hdr, 16 };
            out[1] = (VDriverSeg) { r.in_data, 512 };  /* nothing writable at all */
            g_assert_cmpint(vdriver_add(t.f.dq[0], out, 2, NULL, 0, &r, false), ==, 0);
        }
        kick(&t, 0);
        blk_drain(t.blk);
        g_assert_true(t.dev.parent_obj.broken);
        g_assert_true(t.dev.parent_obj.status & VIRTIO_CONFIG_S_NEEDS_RESET);
        g_assert_nonnull(strstr(t.dev.parent_obj.error_msg, kind == 0 ? "header" : "status"));
        g_assert_false(vdriver_has_used(t.f.dq[0]));
        g_assert_cmpuint(t.dev.in_flight, ==, 0);
        blk_teardown(&t);
    }
}

/*
 * Requests finishing in reverse: under IN_ORDER nothing is published until
 * the oldest finishes, then all at once in avail order (one used entry when
 * batched); without it each is published as it finishes.
 */
static void test_out_of_order_completion(gconstpointer data)
{
    enum { N = 8 };
    BlkTest t;
    Req r[N];
    VirtQueueStats st;
    uint32_t len;

    blk_setup(&t, data, NULL);
    blk_set_hold(t.blk, true);
    for (unsigned i = 0; i < N; i++) {
        r[i] = req_build(&t, VIRTIO_BLK_T_IN, i * 8, 0, 4096);
        req_add(&t, 0, &r[i], 0, &r[i]);
    }
    kick(&t, 0);
    g_assert_cmpuint(blk_wait_held(t.blk, N, 10000), ==, N);
    g_assert_cmpuint(t.dev.in_flight, ==, N);
    for (unsigned k = N; k-- > 1;) {
        g_assert_true(blk_release_held(t.blk, k));     /* newest first */
        if (t.f.layout->in_order) {
            g_assert_false(vdriver_has_used(t.f.dq[0]));
        } else {
            /* Published right away, out of avail order. */
            void *tok = vdriver_get_buf(t.f.dq[0], &len, NULL);
            g_assert_true(tok == &r[k]);
        }
    }
    g_assert_true(blk_release_held(t.blk, 0));
    if (t.f.layout->in_order) {
        for (unsigned i = 0; i < N; i++) {
            void *tok = vdriver_get_buf(t.f.dq[0], &len, NULL);
            g_assert_true(tok == &r[i]);
            g_assert_cmpuint(len, ==, 4097);
        }
    } else {
        g_assert_true(vdriver_get_buf(t.f.dq[0], &len, NULL) == &r[0]);
    }
    g_assert_null(vdriver_get_buf(t.f.dq[0], &len, NULL));
    g_assert_null(vdriver_error(t.f.dq[0]));
    virtio_queue_get_stats(virtio_get_queue(&t.dev.parent_obj, 0), &st);
    g_assert_cmpuint(st.used, ==, N);
    if (t.f.layout->in_order) {
        /* All eight were used completely and published in one flush: one entry. */
        g_assert_cmpuint(st.used_entries, ==, 1);
    } else {
        g_assert_cmpuint(st.used_entries, ==, N);
    }
    blk_set_hold(t.blk, false);
    blk_teardown(&t);
}

/* Under IN_ORDER a short completion (an error status) ends a batch: its length reaches the driver. */
static void test_in_order_error_ends_batch(gconstpointer data)
{
    BlkTest t;
    Req r[3];
    uint32_t len;
    bool batched;

    blk_setup(&t, data, NULL);
    blk_set_hold(t.blk, true);
    r[0] = req_build(&t, VIRTIO_BLK_T_IN, 0, 0, 512);
    r[1] = req_build(&t, VIRTIO_BLK_T_IN, IMG_SECTORS, 0, 512);   /* IOERR at parse */
    r[2] = req_build(&t, VIRTIO_BLK_T_IN, 8, 0, 512);
    for (unsigned i = 0; i < 3; i++) {
        req_add(&t, 0, &r[i], 0, &r[i]);
    }
    kick(&t, 0);
    g_assert_cmpuint(blk_wait_held(t.blk, 2, 10000), ==, 2);
    if (t.f.layout->in_order) {
        g_assert_false(vdriver_has_used(t.f.dq[0]));
    }
    blk_set_hold(t.blk, false);
    blk_drain(t.blk);
    for (unsigned seen = 0; seen < 3; seen++) {
        Req *tok = vdriver_get_buf(t.f.dq[0], &len, &batched);
        g_assert_nonnull(tok);
        if (t.f.layout->in_order) {
            g_assert_true(tok == &r[seen]);
        }
        g_assert_cmpuint(len, ==, tok == &r[1] ? 1 : 513);
        g_assert_cmpint(*(uint8_t *)host(&t, tok->status), ==,
                        tok == &r[1] ? VIRTIO_BLK_S_IOERR : VIRTIO_BLK_S_OK);
    }
    g_assert_null(vdriver_error(t.f.dq[0]));
    blk_teardown(&t);
}

/* Reset with requests in flight: they finish, nothing reaches the (reset) ring. */
static void test_reset_with_requests_in_flight(gconstpointer data)
{
    BlkTest t;
    Req r[4];
    VirtIODevice *vdev;

    blk_setup(&t, data, NULL);
    vdev = &t.dev.parent_obj;
    blk_set_hold(t.blk, true);
    for (unsigned i = 0; i < 4; i++) {
        r[i] = req_build(&t, VIRTIO_BLK_T_IN, i, 0, 512);
        req_add(&t, 0, &r[i], 0, &r[i]);
    }
    kick(&t, 0);
    g_assert_cmpuint(blk_wait_held(t.blk, 4, 10000), ==, 4);
    g_assert_cmpint(virtio_set_status(vdev, 0), ==, 0);
    g_assert_cmpuint(blk_in_flight(t.blk), ==, 0);
    g_assert_cmpuint(t.dev.in_flight, ==, 0);
    g_assert_false(vdriver_has_used(t.f.dq[0]));
    for (unsigned i = 0; i < 4; i++) {
        g_assert_cmpint(*(uint8_t *)host(&t, r[i].status), ==, 0xee);
    }
    g_assert_cmpint(((VirtIOBlkConfig *)vdev->config)->writeback, ==, 0);
    g_assert_cmpuint(le64toh(((VirtIOBlkConfig *)vdev->config)->capacity), ==, IMG_SECTORS);
    blk_set_hold(t.blk, false);
    /* The driver's rings are gone with the reset: don't let teardown check them. */
    vdf_drop_driver(&t.f);
    blk_teardown(&t);
}

static void test_multiqueue(gconstpointer data)
{
    BlkTest t;
    uint8_t buf[2048];
    Req w, rd;
    uint32_t len;

    blk_setup(&t, data, &(TestOpts) { .num_queues = 2 });
    if (virtio_feature_lookup(VIRTIO_ID_BLOCK, VIRTIO_BLK_F_MQ)) {
        g_assert_true(offered(&t, VIRTIO_BLK_F_MQ));
    }
    g_assert_true(virtio_queue_is_running(&t.dev.parent_obj, 1));
    vdf_fill_pattern(buf, sizeof(buf), 9);
    w = req_build(&t, VIRTIO_BLK_T_OUT, 40, sizeof(buf), 0);
    memcpy(host(&t, w.out_data), buf, sizeof(buf));
    req_add(&t, 1, &w, 0, &w);
    kick(&t, 1);
    g_assert_true(reap(&t, 1, &len) == &w);
    g_assert_cmpint(*(uint8_t *)host(&t, w.status), ==, VIRTIO_BLK_S_OK);
    rd = req_build(&t, VIRTIO_BLK_T_IN, 40, 0, sizeof(buf));
    req_add(&t, 0, &rd, 0, &rd);
    kick(&t, 0);
    g_assert_true(reap(&t, 0, &len) == &rd);
    g_assert_cmpmem(host(&t, rd.in_data), sizeof(buf), buf, sizeof(buf));
    blk_teardown(&t);
}

/* A full ring of mixed requests, completing as the thread pool finishes them. */
static void test_full_ring_mixed(gconstpointer data)
{
    BlkTest t;
    Req r[QSIZE];
    uint8_t buf[1024];
    unsigned got = 0, next = 0;

    blk_setup(&t, data, NULL);
    t.indirect = true;          /* a whole ring of three-segment requests */
    for (unsigned i = 0; i < QSIZE; i++) {
        if (i % 2) {
            r[i] = req_build(&t, VIRTIO_BLK_T_OUT, i * 2, 1024, 0);
            memset(host(&t, r[i].out_data), (int)i, 1024);
        } else {
            r[i] = req_build(&t, VIRTIO_BLK_T_IN, i * 2, 0, 1024);
        }
        req_add(&t, 0, &r[i], 0, &r[i]);
    }
    kick(&t, 0);
    while (got < QSIZE) {
        uint32_t len;
        Req *tok = reap(&t, 0, &len);
        g_assert_nonnull(tok);
        if (t.f.layout->in_order) {
            g_assert_true(tok == &r[next]);
            next++;
        }
        g_assert_cmpint(*(uint8_t *)host(&t, tok->status), ==, VIRTIO_BLK_S_OK);
        got++;
    }
    for (unsigned i = 1; i < QSIZE; i += 2) {
        g_assert_cmpint(do_read(&t, i * 2, buf, sizeof(buf), 0), ==, VIRTIO_BLK_S_OK);
        g_assert_true(vdf_all_bytes(buf, sizeof(buf), (uint8_t)i));
    }
    blk_teardown(&t);
}

typedef struct TrackCount {
    unsigned popped, publishing, published;
    bool open;                  /* between publishing and published */
} TrackCount;

static void track_popped(void *opaque, unsigned queue, const VirtQueueElement *elem)
{
    ((TrackCount *)opaque)->popped++;
}

static void track_publishing(void *opaque, unsigned queue, unsigned head)
{
    TrackCount *c = opaque;

    g_assert_false(c->open);
    c->open = true;
    c->publishing++;
}

static void track_published(void *opaque, unsigned queue, unsigned head)
{
    TrackCount *c = opaque;

    g_assert_true(c->open);
    c->open = false;
    c->published++;
}

static const VirtIOBlkTracker test_tracker = {
    .popped = track_popped, .publishing = track_publishing, .published = track_published,
};

/*
 * With a tracker (vhost-user inflight), each completion is published alone
 * between publishing() and published(); on a split ring under IN_ORDER the
 * tracker is unused (the used index in memory is the boundary), a packed
 * ring is tracked either way.
 */
static void test_tracker_publishes_one_by_one(gconstpointer data)
{
    enum { N = 6 };
    BlkTest t;
    Req r[N];
    TrackCount c = { 0 };
    VirtQueueStats st;
    uint32_t len;

    blk_setup(&t, data, NULL);
    virtio_blk_set_tracker(&t.dev, &test_tracker, &c);
    for (unsigned i = 0; i < N; i++) {
        r[i] = req_build(&t, VIRTIO_BLK_T_IN, i, 0, 512);
        req_add(&t, 0, &r[i], 0, &r[i]);
    }
    kick(&t, 0);
    for (unsigned i = 0; i < N; i++) {
        g_assert_nonnull(reap(&t, 0, &len));
    }
    virtio_queue_get_stats(virtio_get_queue(&t.dev.parent_obj, 0), &st);
    if (t.f.layout->in_order && !t.f.layout->packed) {
        g_assert_cmpuint(c.popped + c.publishing + c.published, ==, 0);
    } else {
        g_assert_cmpuint(c.popped, ==, N);
        g_assert_cmpuint(c.publishing, ==, N);
        g_assert_cmpuint(c.published, ==, N);
        if (!t.f.layout->in_order) {
            g_assert_cmpuint(st.flushes, ==, N);
        }
    }
    g_assert_cmpuint(st.used, ==, N);
    blk_teardown(&t);
}

/*
 * Random requests against a model of the disk: valid and invalid types,
 * sectors (in range, at the end, past it, overflowing), lengths (whole
 * sectors or not), segment lists and descriptor cuts, eight in flight at a
 * time in disjoint areas. Every status must be the one the model predicts,
 * every read must return the model's bytes; the device never breaks.
 */
typedef struct RandReq {
    Req r;
    uint32_t type;
    uint8_t expect;
    uint64_t sector;
    uint32_t nsect;             /* data sectors (IN/OUT) or one segment's (DISCARD/WZ) */
    uint32_t flags;
} RandReq;

static uint64_t rand_sector(GRand *g, unsigned slot, uint32_t nsect)
{
    static const uint64_t wild[] = {
        IMG_SECTORS, IMG_SECTORS + 1, UINT64_MAX, UINT64_MAX - 3, UINT64_MAX / 512, 1ull << 55,
    };

    if (g_rand_int_range(g, 0, 8) != 0) {
        /* Slot @slot owns [slot * 1000, slot * 1000 + 1000): requests of a batch never overlap. */
        return slot * 1000ull + (uint64_t)g_rand_int_range(g, 0, 1000 - (gint32)nsect);
    }
    if (g_rand_boolean(g)) {
        /*
         * Near the end (sectors 8184 and up, owned by no slot): only slot 0
         * may end exactly at the capacity; the others run past it (or are empty).
         */
        gint32 k = slot == 0 ? g_rand_int_range(g, 0, (gint32)nsect + 1)
                             : g_rand_int_range(g, 0, MAX((gint32)nsect, 1));
        return IMG_SECTORS - (uint64_t)k;
    }
    return wild[g_rand_int_range(g, 0, G_N_ELEMENTS(wild))];
}

static bool model_range_ok(uint64_t sector, uint64_t nsect)
{
    return sector <= IMG_SECTORS && nsect <= IMG_SECTORS - sector;
}

static void test_random_requests_against_model(gconstpointer data)
{
    enum { BATCH = 8, ROUNDS = 60 };
    static const uint32_t types[] = {
        VIRTIO_BLK_T_IN, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_OUT, VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, 3, 99, 0x80000001,
    };
    uint8_t *model = g_malloc0(IMG_SECTORS * 512);
    GRand *g = g_rand_new_with_seed(0x5eed);
    BlkTest t;

    blk_setup(&t, data, NULL);
    t.indirect = true;
    for (unsigned round = 0; round < ROUNDS; round++) {
        RandReq rr[BATCH];
        hwaddr mark = t.f.heap;
        /* Cuts of 4+ bytes keep chains within the 16-entry indirect tables. */
        unsigned chop = g_rand_boolean(g) ? 0 : (unsigned)g_rand_int_range(g, 4, 40);

        for (unsigned i = 0; i < BATCH; i++) {
            RandReq *q = &rr[i];
            bool whole = g_rand_int_range(g, 0, 6) != 0;
            uint32_t bytes;

            q->type = types[g_rand_int_range(g, 0, G_N_ELEMENTS(types))];
            q->nsect = (uint32_t)g_rand_int_range(g, 0, 9);
            q->sector = rand_sector(g, i, q->nsect);
            q->flags = 0;
            bytes = q->nsect * 512 + (whole ? 0 : (uint32_t)g_rand_int_range(g, 1, 512));
            switch (q->type) {
            case VIRTIO_BLK_T_IN:
            case VIRTIO_BLK_T_OUT:
                q->r = req_build(&t, q->type, q->sector, q->type == VIRTIO_BLK_T_OUT ? bytes : 0,
                                 q->type == VIRTIO_BLK_T_IN ? bytes : 0);
                if (q->type == VIRTIO_BLK_T_OUT) {
                    for (uint32_t b = 0; b < bytes; b++) {
                        ((uint8_t *)host(&t, q->r.out_data))[b] = (uint8_t)g_rand_int(g);
                    }
                }
                q->expect = whole && model_range_ok(q->sector, q->nsect) ? VIRTIO_BLK_S_OK
                                                                           : VIRTIO_BLK_S_IOERR;
                break;
            case VIRTIO_BLK_T_DISCARD:
            case VIRTIO_BLK_T_WRITE_ZEROES: {
                bool is_discard = q->type == VIRTIO_BLK_T_DISCARD;
                VirtIOBlkDiscardWriteZeroes *seg;
                q->flags = g_rand_int_range(g, 0, 4) == 0 ? (uint32_t)g_rand_int_range(g, 0, 4) : 0;
                q->r = req_build(&t, q->type, 0, 16, 0);
                seg = host(&t, q->r.out_data);
                seg->sector = htole64(q->sector);
                seg->num_sectors = htole32(q->nsect);
                seg->flags = htole32(q->flags);
                if (!offered(&t, is_discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES)) {
                    q->expect = VIRTIO_BLK_S_UNSUPP;
                } else if (q->flags & ~1u || (is_discard && q->flags)) {
                    q->expect = VIRTIO_BLK_S_UNSUPP;
                } else {
                    q->expect = model_range_ok(q->sector, q->nsect) ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR;
                }
                break;
            }
            case VIRTIO_BLK_T_FLUSH:
                q->r = req_build(&t, q->type, 0, 0, 0);
                q->expect = VIRTIO_BLK_S_OK;
                break;
            case VIRTIO_BLK_T_GET_ID:
                q->r = req_build(&t, q->type, 0, 0, VIRTIO_BLK_ID_BYTES);
                q->expect = VIRTIO_BLK_S_OK;
                break;
            default:
                q->r = req_build(&t, q->type, q->sector, bytes, 0);
                q->expect = VIRTIO_BLK_S_UNSUPP;
                break;
            }
            req_add(&t, 0, &q->r, chop, q);
        }
        kick(&t, 0);
        for (unsigned n = 0; n < BATCH; n++) {
            uint32_t len;
            RandReq *q = reap(&t, 0, &len);
            uint8_t st;

            g_assert_nonnull(q);
            st = *(uint8_t *)host(&t, q->r.status);
            if (st != q->expect) {
                g_error("round %u: type %u sector %" G_GUINT64_FORMAT " nsect %u flags %u: status %u, expected %u",
                        round, q->type, q->sector, q->nsect, q->flags, st, q->expect);
            }
            if (st != VIRTIO_BLK_S_OK) {
                g_assert_cmpuint(len, ==, 1);
                continue;
            }
            /* Disjoint areas: apply each completion to the model as it comes. */
            if (q->type == VIRTIO_BLK_T_OUT) {
                memcpy(model + q->sector * 512, host(&t, q->r.out_data), q->nsect * 512ull);
            } else if (q->type == VIRTIO_BLK_T_DISCARD || q->type == VIRTIO_BLK_T_WRITE_ZEROES) {
                memset(model + q->sector * 512, 0, q->nsect * 512ull);
            } else if (q->type == VIRTIO_BLK_T_IN) {
                g_assert_cmpuint(len, ==, q->nsect * 512 + 1);
                g_assert_cmpmem(host(&t, q->r.in_data), q->nsect * 512, model + q->sector * 512,
                                q->nsect * 512);
            }
        }
        g_assert_false(t.dev.parent_obj.broken);
        t.f.heap = mark;
    }
    blk_teardown(&t);
    g_rand_free(g);
    g_free(model);
}

static void test_properties(void)
{
    VirtIOBlkConf conf;
    GError *err = NULL;

    virtio_blk_conf_init(&conf);
    g_assert_false(conf.in_order);      /* QEMU's default */
    g_assert_true(virtio_blk_conf_set(&conf, "in_order", "on", &err));
    g_assert_true(conf.in_order);
    g_assert_true(virtio_blk_conf_set(&conf, "queue-size", "128", &err));
    g_assert_cmpuint(conf.queue_size, ==, 128);
    g_assert_false(virtio_blk_conf_set(&conf, "queue-size", "-1", &err));
    g_clear_error(&err);
    g_assert_false(virtio_blk_conf_set(&conf, "packed", "maybe", &err));
    g_clear_error(&err);
    g_assert_false(virtio_blk_conf_set(&conf, "serial", "123456789012345678901", &err));
    g_clear_error(&err);
    g_assert_false(virtio_blk_conf_set(&conf, "no-such-thing", "on", &err));
    g_clear_error(&err);
}

static void test_realize_refuses_bad_conf(void)
{
    VirtIOBlkConf conf;
    VirtIOBlock dev;
    GuestMemory mem;
    GError *err = NULL;
    BlockBackendOptions bo = { .engine = BLK_ENGINE_NULL, .null_size = 1 << 20 };
    BlockBackend *blk = blk_new_open(&bo, &err);

    guest_memory_init(&mem);
    virtio_blk_conf_init(&conf);
    g_assert_false(virtio_blk_realize(&dev, &conf, &mem, &err));       /* no backend */
    g_clear_error(&err);
    conf.blk = blk;
    conf.queue_size = 100;
    g_assert_false(virtio_blk_realize(&dev, &conf, &mem, &err));
    g_clear_error(&err);
    conf.queue_size = 256;
    conf.num_queues = 0;
    g_assert_false(virtio_blk_realize(&dev, &conf, &mem, &err));
    g_clear_error(&err);
    conf.num_queues = 1;
    g_assert_true(virtio_blk_realize(&dev, &conf, &mem, &err));
    virtio_blk_unrealize(&dev);
    blk_unref(blk);
}

/*
 * HOSTILE-INPUT.md: one kick processes a bounded amount of work. With a
 * tracker (vhost-user inflight, no IN_ORDER) completions are published one by
 * one; a guest that re-posts each refused request as soon as its used entry
 * appears must not keep one handler call going forever.
 */
typedef struct Guest {
    BlkTest *t;
    Req r;
    unsigned readds, limit;
    unsigned in_handler;
} Guest;

static void g_popped(void *o, unsigned q, const VirtQueueElement *elem)
{
}

static void g_publishing(void *o, unsigned q, unsigned h)
{
}

/* The guest's vCPU, running concurrently: it sees the used entry and posts the buffer again. */
static void g_published(void *o, unsigned q, unsigned h)
{
    Guest *g = o;
    uint32_t len;

    if (g->readds >= g->limit) {
        return;
    }
    g_assert_nonnull(vdriver_get_buf(g->t->f.dq[0], &len, NULL));
    req_add(g->t, 0, &g->r, 0, &g->r);
    vdriver_kick_prepare(g->t->f.dq[0]);     /* publishes avail idx */
    g->readds++;
}
static const VirtIOBlkTracker guest_tracker = { g_popped, g_publishing, g_published };

static void test_one_kick_bounded_work(gconstpointer data)
{
    BlkTest t;
    Guest g = { .t = &t, .limit = 200000 };
    VirtIOBlkStats st;

    blk_setup(&t, data, NULL);
    virtio_blk_set_tracker(&t.dev, &guest_tracker, &g);
    /* Read past the capacity: refused synchronously with IOERR, published at once. */
    g.r = req_build(&t, VIRTIO_BLK_T_IN, IMG_SECTORS + 1, 0, 512);
    req_add(&t, 0, &g.r, 0, &g.r);
    vdriver_kick_prepare(t.f.dq[0]);
    virtio_queue_notify(&t.dev.parent_obj, 0);     /* ONE kick */
    virtio_blk_get_stats(&t.dev, &st);
    g_test_message("one kick processed %" G_GUINT64_FORMAT " requests (queue size %u)",
                   st.reqs[VIRTIO_BLK_T_IN], QSIZE);
    g_assert_cmpuint(st.reqs[VIRTIO_BLK_T_IN], <=, QSIZE);
    blk_teardown(&t);
}

int main(int argc, char **argv)
{
    static const VdevTestCase cases[] = {
        { "config-space", test_config_space },
        { "config-write", test_config_write },
        { "resize", test_resize },
        { "read-write", test_read_write },
        { "header-split-across-descriptors", test_header_split_across_descriptors },
        { "flush", test_flush },
        { "writethrough-flushes-each-write", test_writethrough_flushes_each_write },
        { "get-id", test_get_id },
        { "discard", test_discard },
        { "write-zeroes", test_write_zeroes },
        { "write-zeroes-unmap", test_write_zeroes_unmap },
        { "discard-write-zeroes-refusals", test_discard_write_zeroes_refusals },
        { "read-only", test_read_only },
        { "out-of-range-and-unsupported", test_out_of_range },
        { "framing-faults-break-device", test_framing_faults_break_device },
        { "out-of-order-completion", test_out_of_order_completion },
        { "in-order-error-ends-batch", test_in_order_error_ends_batch },
        { "reset-with-requests-in-flight", test_reset_with_requests_in_flight },
        { "multiqueue", test_multiqueue },
        { "full-ring-mixed", test_full_ring_mixed },
        { "tracker-publishes-one-by-one", test_tracker_publishes_one_by_one },
        { "random-requests-against-model", test_random_requests_against_model },
    };

    g_test_init(&argc, &argv, NULL);
    g_test_add_data_func("/virtio-blk/split/one-kick-bounded-work", &vq_layouts[0], test_one_kick_bounded_work);
    vdf_add_layout_tests("virtio-blk", cases, G_N_ELEMENTS(cases));
    g_test_add_func("/virtio-blk/properties", test_properties);
    g_test_add_func("/virtio-blk/realize-refuses-bad-conf", test_realize_refuses_bad_conf);
    return g_test_run();
}
