/*
 * virtio-scsi and scsi-hd through the core, driven by the driver library on
 * all four layouts (split, packed, split+IN_ORDER, packed+IN_ORDER), on an
 * image file served by the thread-pool engine.
 *
 * Proves: INQUIRY (standard, VPD pages, a LUN without a unit), READ
 * CAPACITY 10/16, data written with READ/WRITE 6/10/12/16 reads back and
 * reaches the file, UNMAP and WRITE SAME (pattern, zeros, UNMAP bit) and
 * their parameter checks, MODE SENSE pages, fixed-format sense for a bad LBA
 * or opcode, TMFs and AN, bad targets, hostile framing (short header or
 * response, bidirectional data, CDB longer than cdb_size, overrun, bad
 * config writes, bad event buffers), events with EVENTS_MISSED, and with
 * IN_ORDER and a backend finishing in reverse, used entries in avail order.
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/virtio-scsi.h"
#include "scsi-cdb.h"
#include "vdev-fixture.h"

#define IMG_BLOCKS  8192ull             /* 4 MiB of 512-byte blocks */
#define QSIZE       64u
#define NQ          3u                  /* control, event, one request queue */
#define REQQ        2u
#define RESP_SIZE   (12u + 96u)
#define REQ_SIZE    (19u + 32u)

typedef struct ScsiTest {
    VdevFixture f;              /* RAM, transport, driver queues (control, event, request) */
    char *path;
    BlockBackend *blk;
    SCSIDisk disk;
    VirtIOSCSI dev;
} ScsiTest;

static void *host(ScsiTest *t, hwaddr gpa)
{
    return vdf_host(&t->f, gpa);
}

static hwaddr galloc(ScsiTest *t, uint64_t size)
{
    return vdf_alloc(&t->f, size);
}

static void scsi_setup(ScsiTest *t, const VqLayout *layout, bool read_only)
{
    BlockBackendOptions bo = { .engine = BLK_ENGINE_THREADS, .threads = 4 };
    SCSIDiskConf dconf;
    VirtIOSCSIConf conf;
    VirtIODevice *vdev = &t->dev.parent_obj;
    GError *err = NULL;

    memset(t, 0, sizeof(*t));
    vdf_init(&t->f, layout);
    t->path = vdf_tmp_image("vdm-vscsi-XXXXXX", IMG_BLOCKS * 512);
    bo.filename = t->path;
    bo.read_only = read_only;
    t->blk = blk_new_open(&bo, &err);
    g_assert_no_error(err);

    scsi_disk_conf_init(&dconf);
    dconf.blk = t->blk;
    g_assert_true(scsi_disk_conf_set(&dconf, "serial", "vdm-scsi-0001", &err));
    g_assert_true(scsi_disk_realize(&t->disk, &dconf, &err));
    virtio_scsi_conf_init(&conf);
    conf.disk = &t->disk;
    g_assert_true(virtio_scsi_conf_set(&conf, "in_order", layout->in_order ? "on" : "off", &err));
    g_assert_true(virtio_scsi_conf_set(&conf, "packed", layout->packed ? "on" : "off", &err));
    g_assert_true(virtio_scsi_conf_set(&conf, "virtqueue_size", "64", &err));
    g_assert_true(virtio_scsi_realize(&t->dev, &conf, &t->f.mem, &err));
    g_assert_no_error(err);
    vdf_attach(&t->f, vdev);
    /* No indirect tables: commands are short chains. */
    vdf_start(&t->f, vdev->host_features, NQ, QSIZE, 0);
}

/* The device was reset or broken: the driver's view of the rings is void. */
static void drop_driver(ScsiTest *t)
{
    vdf_drop_driver(&t->f);
}

static void scsi_teardown(ScsiTest *t)
{
    vdf_free_driver(&t->f, false);
    virtio_scsi_unrealize(&t->dev);
    scsi_disk_unrealize(&t->disk);
    blk_unref(t->blk);
    g_unlink(t->path);
    g_free(t->path);
    vdf_cleanup(&t->f);
}

/* ---- commands, built in guest memory ---- */

typedef struct Cmd {
    hwaddr req, dout, resp, din;
    uint32_t req_len, dout_len, resp_len, din_len;
} Cmd;

static const uint8_t LUN0[8] = { 1, 0, 0, 0 };

/* Lay out request header | data-out | response | data-in contiguously. */
static Cmd cmd_build_lun(ScsiTest *t, const uint8_t *lun, const uint8_t *cdb, unsigned cdb_len,
                         uint32_t dout_len, uint32_t din_len)
{
    Cmd c;
    uint8_t *h;

    c.req_len = VIRTIO_SCSI_CMD_REQ_HDR + t->dev.cdb_size;
    c.resp_len = VIRTIO_SCSI_CMD_RESP_HDR + t->dev.sense_size;
    c.dout_len = dout_len;
    c.din_len = din_len;
    c.req = galloc(t, c.req_len + dout_len + c.resp_len + din_len);
    c.dout = c.req + c.req_len;
    c.resp = c.dout + dout_len;
    c.din = c.resp + c.resp_len;
    h = host(t, c.req);
    memset(h, 0, c.req_len);
    memcpy(h, lun, 8);
    h[8] = 0x42;                                /* tag */
    memcpy(h + VIRTIO_SCSI_CMD_REQ_HDR, cdb, MIN(cdb_len, t->dev.cdb_size));
    memset(host(t, c.resp), 0xee, c.resp_len);  /* the device must overwrite it */
    memset(host(t, c.din), 0xcc, din_len);
    return c;
}

static Cmd cmd_build(ScsiTest *t, const uint8_t *cdb, unsigned cdb_len, uint32_t dout_len, uint32_t din_len)
{
    return cmd_build_lun(t, LUN0, cdb, cdb_len, dout_len, din_len);
}

/* Cut [gpa, gpa + len) into @chop-byte pieces (0: one piece). */
static unsigned cut(VDriverSeg *segs, hwaddr gpa, uint64_t len, unsigned chop)
{
    unsigned n = 0;

    for (uint64_t off = 0; off < len;) {
        uint64_t l = chop ? MIN(chop, len - off) : len - off;
        segs[n++] = (VDriverSeg) { gpa + off, (uint32_t)l };
        off += l;
    }
    return n;
}

/* @chop cuts the header and response into small pieces (fields straddle descriptors). */
static void cmd_add(ScsiTest *t, const Cmd *c, unsigned chop, void *token)
{
    VDriverSeg out[256], in[256];
    unsigned out_num = cut(out, c->req, c->req_len, chop), in_num;

    out_num += cut(out + out_num, c->dout, c->dout_len, 0);
    in_num = cut(in, c->resp, c->resp_len, chop);
    in_num += cut(in + in_num, c->din, c->din_len, 0);
    g_assert_cmpint(vdriver_add(t->f.dq[REQQ], out, out_num, in, in_num, token, false), ==, 0);
}

static void kick(ScsiTest *t, unsigned q)
{
    vdriver_kick_prepare(t->f.dq[q]);
    virtio_queue_notify(&t->dev.parent_obj, q);
}

static void *reap(ScsiTest *t, unsigned q, uint32_t *len)
{
    for (unsigned tries = 0; tries < 1000; tries++) {
        void *token = vdriver_get_buf(t->f.dq[q], len, NULL);
        if (token) {
            return token;
        }
        g_assert_null(vdriver_error(t->f.dq[q]));
        if (!blk_in_flight(t->blk)) {
            break;
        }
        blk_drain(t->blk);
    }
    return NULL;
}

static VirtIOSCSICmdResp *resp_of(ScsiTest *t, const Cmd *c)
{
    return host(t, c->resp);
}

/* Run one command to completion; returns the used length. */
static uint32_t cmd_run(ScsiTest *t, const Cmd *c, unsigned chop)
{
    uint32_t len = 0;

    cmd_add(t, c, chop, (void *)c);
    kick(t, REQQ);
    g_assert_true(reap(t, REQQ, &len) == c);
    return len;
}

/* Expect GOOD with response OK. */
static void assert_good(ScsiTest *t, const Cmd *c)
{
    VirtIOSCSICmdResp *r = resp_of(t, c);

    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
    g_assert_cmpuint(r->status, ==, SCSI_STATUS_GOOD);
    g_assert_cmpuint(le32toh(r->sense_len), ==, 0);
}

/* Expect CHECK CONDITION with fixed-format sense @key/@asc/@ascq. */
static void assert_sense(ScsiTest *t, const Cmd *c, uint8_t key, uint8_t asc, uint8_t ascq)
{
    VirtIOSCSICmdResp *r = resp_of(t, c);

    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
    g_assert_cmpuint(r->status, ==, SCSI_STATUS_CHECK_CONDITION);
    g_assert_cmpuint(le32toh(r->sense_len), ==, SCSI_SENSE_FIXED_LEN);
    g_assert_cmphex(r->sense[0], ==, 0x70);
    g_assert_cmphex(r->sense[2] & 0xf, ==, key);
    g_assert_cmphex(r->sense[7], ==, 10);
    g_assert_cmphex(r->sense[12], ==, asc);
    g_assert_cmphex(r->sense[13], ==, ascq);
}

/* One command with no data: returns its response struct. */
static Cmd simple(ScsiTest *t, const uint8_t *cdb, unsigned cdb_len, uint32_t din_len)
{
    Cmd c = cmd_build(t, cdb, cdb_len, 0, din_len);
    cmd_run(t, &c, 0);
    return c;
}

static Cmd do_write(ScsiTest *t, uint8_t op, uint64_t lba, const void *data, uint32_t nb, unsigned chop)
{
    uint8_t cdb[16];
    unsigned n = scsi_cdb_rw(cdb, op, lba, nb);
    Cmd c = cmd_build(t, cdb, n, nb * 512, 0);
    uint32_t used;

    memcpy(host(t, c.dout), data, nb * 512);
    used = cmd_run(t, &c, chop);
    g_assert_cmpuint(used, ==, RESP_SIZE);
    return c;
}

static Cmd do_read(ScsiTest *t, uint8_t op, uint64_t lba, void *data, uint32_t nb, unsigned chop)
{
    uint8_t cdb[16];
    unsigned n = scsi_cdb_rw(cdb, op, lba, nb);
    Cmd c = cmd_build(t, cdb, n, 0, nb * 512);
    uint32_t used = cmd_run(t, &c, chop);

    if (resp_of(t, &c)->status == SCSI_STATUS_GOOD) {
        g_assert_cmpuint(used, ==, RESP_SIZE + nb * 512);
        memcpy(data, host(t, c.din), nb * 512);
    }
    return c;
}

static void file_read(ScsiTest *t, uint64_t off, void *buf, size_t len)
{
    int fd = open(t->path, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, (off_t)off), ==, (ssize_t)len);
    close(fd);
}

/* ---- tests ---- */

static void test_config_space(gconstpointer data)
{
    ScsiTest t;
    VirtIOSCSIConfig cfg;

    scsi_setup(&t, data, false);
    g_assert_cmpuint(t.dev.parent_obj.config_len, ==, 36);
    memcpy(&cfg, t.dev.parent_obj.config, sizeof(cfg));
    g_assert_cmpuint(le32toh(cfg.num_queues), ==, 1);
    g_assert_cmpuint(le32toh(cfg.seg_max), ==, QSIZE - 2);
    g_assert_cmpuint(le32toh(cfg.max_sectors), ==, 0xffff);
    g_assert_cmpuint(le32toh(cfg.cmd_per_lun), ==, 128);
    g_assert_cmpuint(le32toh(cfg.event_info_size), ==, 16);
    g_assert_cmpuint(le32toh(cfg.sense_size), ==, 96);
    g_assert_cmpuint(le32toh(cfg.cdb_size), ==, 32);
    g_assert_cmpuint(le16toh(cfg.max_channel), ==, 0);
    g_assert_cmpuint(le16toh(cfg.max_target), ==, 255);
    g_assert_cmpuint(le32toh(cfg.max_lun), ==, 16383);
    g_assert_cmpuint(t.dev.parent_obj.num_queues, ==, 3);
    /* Every offered bit is implemented (STYLE.md §7); no T10_PI, no INOUT. */
    for (unsigned bit = 0; bit < 64; bit++) {
        if (virtio_has_feature(t.dev.parent_obj.host_features, bit)) {
            const VirtIOFeatureInfo *fi = virtio_feature_lookup(VIRTIO_ID_SCSI, bit);
            g_assert_nonnull(fi);
            g_assert_true(fi->implemented);
        }
    }
    g_assert_false(virtio_has_feature(t.dev.parent_obj.host_features, VIRTIO_SCSI_F_T10_PI));
    g_assert_true(virtio_has_feature(t.dev.parent_obj.host_features, VIRTIO_SCSI_F_CHANGE));
    scsi_teardown(&t);
}

static void test_inquiry(gconstpointer data)
{
    static const uint8_t std[6] = { INQUIRY, 0, 0, 0, 96, 0 };
    static const uint8_t vpd0[6] = { INQUIRY, 1, 0x00, 0, 255, 0 };
    static const uint8_t vpd80[6] = { INQUIRY, 1, 0x80, 0, 255, 0 };
    static const uint8_t vpd83[6] = { INQUIRY, 1, 0x83, 0, 255, 0 };
    static const uint8_t vpdb0[6] = { INQUIRY, 1, 0xb0, 0, 255, 0 };
    static const uint8_t vpdb2[6] = { INQUIRY, 1, 0xb2, 0, 255, 0 };
    static const uint8_t vpd99[6] = { INQUIRY, 1, 0x99, 0, 255, 0 };
    static const uint8_t page_no_evpd[6] = { INQUIRY, 0, 0x80, 0, 255, 0 };
    static const uint8_t lun1[8] = { 1, 0, 0, 1 };
    ScsiTest t;
    Cmd c;
    uint8_t *d;
    uint32_t used;

    scsi_setup(&t, data, false);
    c = cmd_build(&t, std, 6, 0, 128);
    used = cmd_run(&t, &c, 0);
    assert_good(&t, &c);
    g_assert_cmpuint(used, ==, RESP_SIZE + 36);
    g_assert_cmpuint(le32toh(resp_of(&t, &c)->resid), ==, 128 - 36);
    d = host(&t, c.din);
    g_assert_cmphex(d[0], ==, 0x00);            /* qualifier 0, direct access */
    g_assert_cmphex(d[2], ==, 0x06);            /* SPC-4 */
    g_assert_cmphex(d[3] & 0xf, ==, 2);
    g_assert_cmpuint(d[4], ==, 31);
    g_assert_cmpmem(d + 8, 8, "VDM     ", 8);
    g_assert_cmpmem(d + 16, 16, "VDM HARDDISK    ", 16);
    g_assert_cmphex(d[36], ==, 0xcc);           /* nothing beyond 36 bytes */

    c = simple(&t, vpd0, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmphex(d[1], ==, 0x00);
    g_assert_cmpuint(d[3], ==, 5);
    g_assert_cmpmem(d + 4, 5, "\x00\x80\x83\xb0\xb2", 5);

    c = simple(&t, vpd80, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[3], ==, 13);
    g_assert_cmpmem(d + 4, 13, "vdm-scsi-0001", 13);

    c = simple(&t, vpd83, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmphex(d[1], ==, 0x83);
    g_assert_cmphex(d[4], ==, 0x02);            /* ASCII */
    g_assert_cmphex(d[5] & 0xf, ==, 0x01);      /* T10 vendor id */
    g_assert_cmpuint(d[7], ==, 8 + 13);
    g_assert_cmpmem(d + 8, 8 + 13, "VDM     vdm-scsi-0001", 8 + 13);

    c = simple(&t, vpdb0, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[3], ==, 0x3c);
    g_assert_cmpuint(scsi_be32(d + 20), ==, 0x400000);   /* maximum unmap LBA count */
    g_assert_cmpuint(scsi_be32(d + 24), ==, 255);        /* maximum unmap descriptors */

    c = simple(&t, vpdb2, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[3], ==, 4);
    g_assert_cmphex(d[5] & 0xe0, ==, 0xe0);     /* LBPU, LBPWS, LBPWS10 */

    c = simple(&t, vpd99, 6, 255);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0);
    c = simple(&t, page_no_evpd, 6, 255);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0);

    /* A LUN with no unit: qualifier 3, type 0x1f (SPC-4 6.6.2). */
    c = cmd_build_lun(&t, lun1, std, 6, 0, 96);
    cmd_run(&t, &c, 0);
    assert_good(&t, &c);
    g_assert_cmphex(*(uint8_t *)host(&t, c.din), ==, 0x7f);
    /* Allocation length cuts the data. */
    {
        static const uint8_t short_alloc[6] = { INQUIRY, 0, 0, 0, 5, 0 };
        c = cmd_build(&t, short_alloc, 6, 0, 96);
        used = cmd_run(&t, &c, 0);
        g_assert_cmpuint(used, ==, RESP_SIZE + 5);
    }
    scsi_teardown(&t);
}

static void test_read_capacity(gconstpointer data)
{
    static const uint8_t rc10[10] = { READ_CAPACITY_10 };
    static const uint8_t rc16[16] = { SERVICE_ACTION_IN_16, SAI_READ_CAPACITY_16, 0, 0, 0, 0, 0, 0, 0, 0,
                                      0, 0, 0, 32, 0, 0 };
    ScsiTest t;
    Cmd c;
    uint8_t *d;

    scsi_setup(&t, data, false);
    c = simple(&t, rc10, 10, 8);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(scsi_be32(d), ==, IMG_BLOCKS - 1);
    g_assert_cmpuint(scsi_be32(d + 4), ==, 512);

    c = simple(&t, rc16, 16, 32);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(scsi_be32(d), ==, 0);
    g_assert_cmpuint(scsi_be32(d + 4), ==, IMG_BLOCKS - 1);
    g_assert_cmpuint(scsi_be32(d + 8), ==, 512);
    g_assert_cmphex(d[14] & 0xc0, ==, 0xc0);    /* LBPME, LBPRZ */
    scsi_teardown(&t);
}

static void test_read_write(gconstpointer data)
{
    static const uint8_t ops[][2] = { { WRITE_6, READ_6 }, { WRITE_10, READ_10 },
                                      { WRITE_12, READ_12 }, { WRITE_16, READ_16 } };
    static const unsigned chops[] = { 0, 3, 5, 7 };
    ScsiTest t;
    uint8_t wbuf[8192], rbuf[8192], file[8192];

    scsi_setup(&t, data, false);
    for (unsigned i = 0; i < G_N_ELEMENTS(ops); i++) {
        uint64_t lba = 100 + 20 * i;
        Cmd c;
        vdf_fill_pattern(wbuf, sizeof(wbuf), i + 1);
        c = do_write(&t, ops[i][0], lba, wbuf, 16, chops[i]);
        assert_good(&t, &c);
        g_assert_cmpuint(le32toh(resp_of(&t, &c)->resid), ==, 0);
        memset(rbuf, 0, sizeof(rbuf));
        c = do_read(&t, ops[i][1], lba, rbuf, 16, chops[(i + 1) % 4]);
        assert_good(&t, &c);
        g_assert_cmpmem(rbuf, sizeof(rbuf), wbuf, sizeof(wbuf));
        file_read(&t, lba * 512, file, sizeof(file));
        g_assert_cmpmem(file, sizeof(file), wbuf, sizeof(wbuf));
    }
    /* The last block is reachable; a zero-length READ(10) is GOOD with nothing moved. */
    {
        Cmd c = do_write(&t, WRITE_16, IMG_BLOCKS - 1, wbuf, 1, 0);
        uint8_t cdb[16];
        assert_good(&t, &c);
        scsi_cdb_rw(cdb, READ_10, 0, 0);
        c = simple(&t, cdb, 10, 0);
        assert_good(&t, &c);
    }
    /* A bigger data-in buffer than the transfer: the residual says how much was not used. */
    {
        uint8_t cdb[16];
        Cmd c;
        scsi_cdb_rw(cdb, READ_10, 100, 2);
        c = cmd_build(&t, cdb, 10, 0, 4096);
        g_assert_cmpuint(cmd_run(&t, &c, 0), ==, RESP_SIZE + 1024);
        assert_good(&t, &c);
        g_assert_cmpuint(le32toh(resp_of(&t, &c)->resid), ==, 4096 - 1024);
    }
    g_assert_cmpuint(t.disk.stats.writes, ==, 5);
    scsi_teardown(&t);
}

static void test_sync_and_misc(gconstpointer data)
{
    static const uint8_t tur[6] = { TEST_UNIT_READY };
    static const uint8_t ssu[6] = { START_STOP, 0, 0, 0, 1, 0 };
    static const uint8_t sync10[10] = { SYNCHRONIZE_CACHE_10 };
    static const uint8_t sync16[16] = { SYNCHRONIZE_CACHE_16 };
    static const uint8_t rs[6] = { REQUEST_SENSE, 0, 0, 0, 18, 0 };
    static const uint8_t rl[12] = { REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0 };
    static const uint8_t rl_short[12] = { REPORT_LUNS, 0, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0 };
    ScsiTest t;
    Cmd c;
    uint8_t *d;

    scsi_setup(&t, data, false);
    c = simple(&t, tur, 6, 0);
    assert_good(&t, &c);
    c = simple(&t, ssu, 6, 0);
    assert_good(&t, &c);
    c = simple(&t, sync10, 10, 0);
    assert_good(&t, &c);
    c = simple(&t, sync16, 16, 0);
    assert_good(&t, &c);
    g_assert_cmpuint(t.disk.stats.syncs, ==, 2);
    c = simple(&t, rs, 6, 18);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmphex(d[0], ==, 0x70);
    g_assert_cmphex(d[2], ==, SCSI_SENSE_NO_SENSE);
    c = simple(&t, rl, 12, 64);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(scsi_be32(d), ==, 8);
    g_assert_true(vdf_all_bytes(d + 8, 8, 0));      /* LUN 0 */
    g_assert_cmpuint(le32toh(resp_of(&t, &c)->resid), ==, 64 - 16);
    c = simple(&t, rl_short, 12, 64);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0);
    scsi_teardown(&t);
}

static void test_mode_sense(gconstpointer data)
{
    static const uint8_t ms6_cache[6] = { MODE_SENSE_6, 0, 0x08, 0, 255, 0 };
    static const uint8_t ms6_all[6] = { MODE_SENSE_6, 0x08, 0x3f, 0, 255, 0 };
    static const uint8_t ms10_ctrl[10] = { MODE_SENSE_10, 0x08, 0x0a, 0, 0, 0, 0, 0, 255, 0 };
    static const uint8_t ms10_llba[10] = { MODE_SENSE_10, 0x10, 0x08, 0, 0, 0, 0, 0, 255, 0 };
    static const uint8_t ms6_saved[6] = { MODE_SENSE_6, 0, 0xc8, 0, 255, 0 };
    static const uint8_t ms6_bad[6] = { MODE_SENSE_6, 0, 0x19, 0, 255, 0 };
    ScsiTest t;
    Cmd c;
    uint8_t *d;

    scsi_setup(&t, data, false);
    c = simple(&t, ms6_cache, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[0], ==, 4 + 8 + 20 - 1);
    g_assert_cmpuint(d[3], ==, 8);              /* block descriptor */
    g_assert_cmpuint(scsi_be32(d + 4), ==, IMG_BLOCKS);
    g_assert_cmphex(d[12], ==, 0x08);
    g_assert_cmphex(d[13], ==, 0x12);
    g_assert_cmphex(d[14] & 0x04, ==, 0x04);    /* WCE */

    c = simple(&t, ms6_all, 6, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[0], ==, 4 + 20 + 12 - 1);
    g_assert_cmpuint(d[3], ==, 0);              /* DBD */
    g_assert_cmphex(d[4], ==, 0x08);
    g_assert_cmphex(d[24], ==, 0x0a);

    c = simple(&t, ms10_ctrl, 10, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmpuint(d[1], ==, 8 + 12 - 2);
    g_assert_cmphex(d[8], ==, 0x0a);
    g_assert_cmphex(d[9], ==, 0x0a);

    c = simple(&t, ms10_llba, 10, 255);
    assert_good(&t, &c);
    d = host(&t, c.din);
    g_assert_cmphex(d[4] & 1, ==, 1);           /* LONGLBA */
    g_assert_cmpuint(d[7], ==, 16);
    g_assert_cmpuint(scsi_be32(d + 8 + 4), ==, IMG_BLOCKS);

    c = simple(&t, ms6_saved, 6, 255);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x39, 0);
    c = simple(&t, ms6_bad, 6, 255);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0);
    scsi_teardown(&t);
}

/* UNMAP with a parameter list of @ndesc descriptors (lba, nb) and a declared list length @plen. */
static Cmd do_unmap(ScsiTest *t, const uint64_t (*descs)[2], unsigned ndesc, int plen_override,
                    int ddlen_override)
{
    uint8_t cdb[10] = { UNMAP };
    uint32_t plen = 8 + 16 * ndesc;
    uint8_t *p;
    Cmd c;

    if (plen_override >= 0) {
        plen = (uint32_t)plen_override;
    }
    cdb[7] = (uint8_t)(plen >> 8);
    cdb[8] = (uint8_t)plen;
    c = cmd_build(t, cdb, 10, MAX(plen, 8 + 16 * ndesc), 0);
    p = host(t, c.dout);
    memset(p, 0, c.dout_len);
    p[0] = (uint8_t)((6 + 16 * ndesc) >> 8);
    p[1] = (uint8_t)(6 + 16 * ndesc);
    {
        uint32_t ddlen = ddlen_override >= 0 ? (uint32_t)ddlen_override : 16 * ndesc;
        p[2] = (uint8_t)(ddlen >> 8);
        p[3] = (uint8_t)ddlen;
    }
    for (unsigned i = 0; i < ndesc; i++) {
        scsi_put_be64(p + 8 + 16 * i, descs[i][0]);
        scsi_put_be32(p + 16 + 16 * i, (uint32_t)descs[i][1]);
    }
    cmd_run(t, &c, 0);
    return c;
}

static Cmd do_write_same(ScsiTest *t, bool sixteen, uint8_t flags, uint64_t lba, uint32_t nb,
                         const uint8_t *block)
{
    uint8_t cdb[16];
    Cmd c;

    memset(cdb, 0, sizeof(cdb));
    cdb[0] = sixteen ? WRITE_SAME_16 : WRITE_SAME_10;
    cdb[1] = flags;
    if (sixteen) {
        scsi_put_be64(cdb + 2, lba);
        scsi_put_be32(cdb + 10, nb);
    } else {
        scsi_put_be32(cdb + 2, (uint32_t)lba);
        cdb[7] = (uint8_t)(nb >> 8);
        cdb[8] = (uint8_t)nb;
    }
    c = cmd_build(t, cdb, sixteen ? 16 : 10, block ? 512 : 0, 0);
    if (block) {
        memcpy(host(t, c.dout), block, 512);
    }
    cmd_run(t, &c, 0);
    return c;
}

static void test_unmap_write_same(gconstpointer data)
{
    ScsiTest t;
    uint8_t *buf = g_malloc(700 * 512), block[512];
    Cmd c;

    scsi_setup(&t, data, false);
    vdf_fill_pattern(buf, 64 * 512, 9);
    c = do_write(&t, WRITE_10, 0, buf, 64, 0);
    assert_good(&t, &c);
    {
        static const uint64_t d[2][2] = { { 8, 8 }, { 32, 16 } };
        c = do_unmap(&t, d, 2, -1, -1);
        assert_good(&t, &c);
    }
    c = do_read(&t, READ_10, 0, buf, 64, 0);
    assert_good(&t, &c);
    g_assert_true(vdf_all_bytes(buf + 8 * 512, 8 * 512, 0));
    g_assert_true(vdf_all_bytes(buf + 32 * 512, 16 * 512, 0));
    g_assert_false(vdf_all_bytes(buf, 8 * 512, 0));
    g_assert_false(vdf_all_bytes(buf + 16 * 512, 16 * 512, 0));
    g_assert_cmpuint(t.disk.stats.unmaps, ==, 1);

    /* Parameter list checks (SBC-3 5.28): nothing is unmapped when one fails. */
    {
        static const uint64_t bad_lba[2][2] = { { 0, 1 }, { IMG_BLOCKS, 1 } };
        static const uint64_t ok[1][2] = { { 0, 1 } };
        c = do_unmap(&t, bad_lba, 2, -1, -1);
        assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
        c = do_unmap(&t, ok, 1, 6, -1);         /* list shorter than its header */
        assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x1a, 0);
        c = do_unmap(&t, ok, 1, -1, 15);        /* descriptor length not a multiple of 16 */
        assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x1a, 0);
        c = do_unmap(&t, ok, 1, -1, 32);        /* more descriptors than the list holds */
        assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x1a, 0);
        c = do_unmap(&t, ok, 1, 0, -1);         /* empty list: nothing to do */
        assert_good(&t, &c);
        g_assert_cmpuint(t.disk.stats.unmaps, ==, 1);
        c = do_read(&t, READ_10, 0, buf, 1, 0);
        g_assert_false(vdf_all_bytes(buf, 512, 0));
    }

    /* WRITE SAME 16 of a pattern over 600 blocks (more than one bounce buffer). */
    vdf_fill_pattern(block, sizeof(block), 3);
    c = do_write_same(&t, true, 0, 1000, 600, block);
    assert_good(&t, &c);
    c = do_read(&t, READ_16, 1000, buf, 600, 0);
    assert_good(&t, &c);
    for (unsigned i = 0; i < 600; i++) {
        g_assert_cmpmem(buf + i * 512, 512, block, 512);
    }
    c = do_read(&t, READ_16, 1600, buf, 1, 0);
    g_assert_true(vdf_all_bytes(buf, 512, 0));      /* not one block more */
    /* WRITE SAME 10 of zeros with UNMAP: zeros read back. */
    memset(block, 0, sizeof(block));
    c = do_write_same(&t, false, 0x08, 1000, 100, block);
    assert_good(&t, &c);
    c = do_read(&t, READ_10, 1000, buf, 101, 0);
    g_assert_true(vdf_all_bytes(buf, 100 * 512, 0));
    g_assert_false(vdf_all_bytes(buf + 100 * 512, 512, 0));
    /* NDOB (WRITE SAME 16, no data-out): zeros. */
    c = do_write_same(&t, true, 0x01, 1100, 10, NULL);
    assert_good(&t, &c);
    c = do_read(&t, READ_10, 1100, buf, 10, 0);
    g_assert_true(vdf_all_bytes(buf, 10 * 512, 0));
    /* WSNZ: zero blocks refused; past the end refused. */
    c = do_write_same(&t, true, 0, 0, 0, block);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x24, 0);
    c = do_write_same(&t, true, 0, IMG_BLOCKS - 1, 2, block);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
    g_free(buf);
    scsi_teardown(&t);
}

/* FUA, and a unit whose write cache is off: the write is flushed before GOOD (SBC-3 4.15). */
static void test_fua_and_write_through(gconstpointer data)
{
    static const uint8_t ms6_cache[6] = { MODE_SENSE_6, 0x08, 0x08, 0, 255, 0 };
    ScsiTest t;
    uint8_t buf[1024], cdb[16];
    Cmd c;

    scsi_setup(&t, data, false);
    vdf_fill_pattern(buf, sizeof(buf), 5);
    c = do_write(&t, WRITE_10, 10, buf, 2, 0);
    assert_good(&t, &c);
    g_assert_cmpuint(t.disk.stats.stable_writes, ==, 0);
    scsi_cdb_rw(cdb, WRITE_16, 20, 2);
    cdb[1] = 0x08;                              /* FUA */
    c = cmd_build(&t, cdb, 16, sizeof(buf), 0);
    memcpy(host(&t, c.dout), buf, sizeof(buf));
    cmd_run(&t, &c, 0);
    assert_good(&t, &c);
    g_assert_cmpuint(t.disk.stats.stable_writes, ==, 1);
    /* Write cache off: WCE clear in the caching page, every write stable. */
    t.disk.conf.write_cache = false;
    c = simple(&t, ms6_cache, 6, 255);
    g_assert_cmphex(((uint8_t *)host(&t, c.din))[4 + 2] & 0x04, ==, 0);
    c = do_write(&t, WRITE_6, 30, buf, 2, 0);
    assert_good(&t, &c);
    c = do_write(&t, WRITE_10, 40, buf, 2, 0);
    assert_good(&t, &c);
    g_assert_cmpuint(t.disk.stats.stable_writes, ==, 3);
    c = do_read(&t, READ_10, 20, buf, 2, 0);
    assert_good(&t, &c);
    scsi_teardown(&t);
}

static void test_sense_bad_lba_and_opcode(gconstpointer data)
{
    static const uint8_t bad_op[10] = { 0x4d };         /* LOG SENSE: not implemented */
    static const uint8_t vendor_op[6] = { 0xff };       /* group 7 */
    ScsiTest t;
    uint8_t buf[1024], cdb[16];
    Cmd c;

    scsi_setup(&t, data, false);
    c = do_read(&t, READ_10, IMG_BLOCKS, buf, 1, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
    g_assert_cmpuint(le32toh(resp_of(&t, &c)->resid), ==, 512);
    c = do_read(&t, READ_10, IMG_BLOCKS - 1, buf, 2, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
    /* An LBA that would overflow lba + nb. */
    scsi_cdb_rw(cdb, READ_16, UINT64_MAX, 1);
    c = simple(&t, cdb, 16, 512);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
    c = do_write(&t, WRITE_16, IMG_BLOCKS, buf, 1, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x21, 0);
    c = simple(&t, bad_op, 10, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x20, 0);
    c = simple(&t, vendor_op, 6, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x20, 0);
    g_assert_cmpuint(t.disk.stats.check_conditions, ==, 6);
    scsi_teardown(&t);
}

static void test_read_only(gconstpointer data)
{
    static const uint8_t ms6[6] = { MODE_SENSE_6, 0x08, 0x3f, 0, 255, 0 };
    ScsiTest t;
    uint8_t buf[512] = { 1 };
    Cmd c;

    scsi_setup(&t, data, true);
    c = do_write(&t, WRITE_10, 0, buf, 1, 0);
    assert_sense(&t, &c, SCSI_SENSE_DATA_PROTECT, 0x27, 0);
    c = do_write_same(&t, true, 0, 0, 1, buf);
    assert_sense(&t, &c, SCSI_SENSE_DATA_PROTECT, 0x27, 0);
    c = simple(&t, ms6, 6, 255);
    g_assert_cmphex(((uint8_t *)host(&t, c.din))[2] & 0x80, ==, 0x80);    /* WP */
    c = do_read(&t, READ_10, 0, buf, 1, 0);
    assert_good(&t, &c);
    scsi_teardown(&t);
}

/* Control request with @out bytes and @in_len writable bytes; returns the used length. */
static uint32_t ctrl_run(ScsiTest *t, const void *out, uint32_t out_len, hwaddr *in, uint32_t in_len)
{
    hwaddr o = galloc(t, out_len), i = galloc(t, MAX(in_len, 1));
    VDriverSeg os = { o, out_len }, is = { i, in_len };
    uint32_t len = 0;
    int token;

    memcpy(host(t, o), out, out_len);
    memset(host(t, i), 0xee, in_len);
    g_assert_cmpint(vdriver_add(t->f.dq[0], &os, 1, &is, in_len ? 1 : 0, &token, false), ==, 0);
    kick(t, 0);
    if (in) {
        *in = i;
    }
    if (t->dev.parent_obj.broken) {
        return UINT32_MAX;
    }
    g_assert_true(reap(t, 0, &len) == &token);
    return len;
}

static uint8_t tmf(ScsiTest *t, uint32_t subtype, const uint8_t *lun, uint64_t tag)
{
    VirtIOSCSICtrlTMFReq r;
    hwaddr in;

    memset(&r, 0, sizeof(r));
    r.type = htole32(VIRTIO_SCSI_T_TMF);
    r.subtype = htole32(subtype);
    memcpy(r.lun, lun, 8);
    r.tag = htole64(tag);
    g_assert_cmpuint(ctrl_run(t, &r, sizeof(r), &in, 1), ==, 1);
    return *(uint8_t *)host(t, in);
}

static void test_tmf(gconstpointer data)
{
    static const uint8_t bad_target[8] = { 1, 7, 0, 0 };
    static const uint8_t lun3[8] = { 1, 0, 0, 3 };
    ScsiTest t;
    uint8_t cdb[16];
    uint32_t len;
    Cmd c;

    scsi_setup(&t, data, false);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, LUN0, 0), ==,
                     VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_I_T_NEXUS_RESET, LUN0, 0), ==,
                     VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_ABORT_TASK_SET, LUN0, 0), ==,
                     VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_CLEAR_ACA, LUN0, 0), ==, VIRTIO_SCSI_S_FUNCTION_REJECTED);
    g_assert_cmpuint(tmf(&t, 99, LUN0, 0), ==, VIRTIO_SCSI_S_FUNCTION_REJECTED);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, bad_target, 0), ==,
                     VIRTIO_SCSI_S_BAD_TARGET);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET, lun3, 0), ==,
                     VIRTIO_SCSI_S_INCORRECT_LUN);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_QUERY_TASK, LUN0, 0x42), ==, VIRTIO_SCSI_S_FUNCTION_COMPLETE);

    /* A command held in the backend: QUERY TASK finds it, ABORT TASK waits for it. */
    blk_set_hold(t.blk, true);
    scsi_cdb_rw(cdb, READ_10, 0, 8);
    c = cmd_build(&t, cdb, 10, 0, 4096);
    cmd_add(&t, &c, 0, &c);
    kick(&t, REQQ);
    g_assert_cmpuint(blk_wait_held(t.blk, 1, 10000), ==, 1);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_QUERY_TASK, LUN0, 0x42), ==,
                     VIRTIO_SCSI_S_FUNCTION_SUCCEEDED);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_QUERY_TASK, LUN0, 0x43), ==, VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_QUERY_TASK_SET, LUN0, 0), ==,
                     VIRTIO_SCSI_S_FUNCTION_SUCCEEDED);
    g_assert_false(vdriver_has_used(t.f.dq[REQQ]));
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_ABORT_TASK, LUN0, 0x42), ==, VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    /* The command was used before the TMF answered. */
    g_assert_true(vdriver_get_buf(t.f.dq[REQQ], &len, NULL) == &c);
    assert_good(&t, &c);
    g_assert_cmpuint(tmf(&t, VIRTIO_SCSI_T_TMF_QUERY_TASK_SET, LUN0, 0), ==,
                     VIRTIO_SCSI_S_FUNCTION_COMPLETE);
    blk_set_hold(t.blk, false);

    /* AN query / subscribe: no event class supported. */
    {
        VirtIOSCSICtrlANReq an;
        VirtIOSCSICtrlANResp *r;
        hwaddr in;
        memset(&an, 0, sizeof(an));
        an.type = htole32(VIRTIO_SCSI_T_AN_SUBSCRIBE);
        memcpy(an.lun, LUN0, 8);
        an.event_requested = htole32(0xff);
        g_assert_cmpuint(ctrl_run(&t, &an, sizeof(an), &in, sizeof(*r)), ==, sizeof(*r));
        r = host(&t, in);
        g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
        g_assert_cmpuint(le32toh(r->event_actual), ==, 0);
    }
    g_assert_false(t.dev.parent_obj.broken);
    scsi_teardown(&t);
}

static void test_bad_target(gconstpointer data)
{
    static const uint8_t tur[6] = { TEST_UNIT_READY };
    static const uint8_t luns[][8] = {
        { 0, 0, 0, 0 },             /* byte 0 must be 1 */
        { 1, 1, 0, 0 },             /* target 1: nobody there */
        { 1, 0, 0x80, 0 },          /* extended addressing */
        { 1, 0, 0xc0, 0 },
    };
    static const uint8_t lun5[8] = { 1, 0, 0, 5 };
    static const uint8_t lun_flat[8] = { 1, 0, 0x40, 0 };   /* flat LUN 0 = the unit */
    static const uint8_t lun_junk[8] = { 1, 0, 0, 0, 1, 2, 3, 4 };
    ScsiTest t;
    Cmd c;
    uint32_t used;

    scsi_setup(&t, data, false);
    for (unsigned i = 0; i < G_N_ELEMENTS(luns); i++) {
        c = cmd_build_lun(&t, luns[i], tur, 6, 0, 0);
        used = cmd_run(&t, &c, 0);
        g_assert_cmpuint(used, ==, RESP_SIZE);
        g_assert_cmpuint(resp_of(&t, &c)->response, ==, VIRTIO_SCSI_S_BAD_TARGET);
    }
    c = cmd_build_lun(&t, lun5, tur, 6, 0, 0);
    cmd_run(&t, &c, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x25, 0);
    c = cmd_build_lun(&t, lun_junk, tur, 6, 0, 0);
    cmd_run(&t, &c, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x25, 0);
    c = cmd_build_lun(&t, lun_flat, tur, 6, 0, 0);
    cmd_run(&t, &c, 0);
    assert_good(&t, &c);
    g_assert_false(t.dev.parent_obj.broken);
    scsi_teardown(&t);
}

/* Framing faults: each breaks the device (fresh device per case). */
static void test_hostile_framing(gconstpointer data)
{
    static const uint8_t tur[6] = { TEST_UNIT_READY };

    for (unsigned k = 0; k < 6; k++) {
        ScsiTest t;
        Cmd c;
        VDriverSeg out[2], in[2];
        int token;

        scsi_setup(&t, data, false);
        c = cmd_build(&t, tur, 6, 0, 0);
        switch (k) {
        case 0:     /* header one byte short */
            out[0] = (VDriverSeg) { c.req, REQ_SIZE - 1 };
            in[0] = (VDriverSeg) { c.resp, RESP_SIZE };
            g_assert_cmpint(vdriver_add(t.f.dq[REQQ], out, 1, in, 1, &token, false), ==, 0);
            kick(&t, REQQ);
            break;
        case 1:     /* response one byte short */
            out[0] = (VDriverSeg) { c.req, REQ_SIZE };
            in[0] = (VDriverSeg) { c.resp, RESP_SIZE - 1 };
            g_assert_cmpint(vdriver_add(t.f.dq[REQQ], out, 1, in, 1, &token, false), ==, 0);
            kick(&t, REQQ);
            break;
        case 2: {   /* TMF too short */
            uint32_t ty = 0;
            g_assert_cmpuint(ctrl_run(&t, &ty, 4, NULL, 1), ==, UINT32_MAX);
            break;
        }
        case 3: {   /* control request without a type */
            uint8_t b = 0;
            g_assert_cmpuint(ctrl_run(&t, &b, 1, NULL, 1), ==, UINT32_MAX);
            break;
        }
        case 4: {   /* event buffer that is readable */
            hwaddr e = galloc(&t, 16);
            out[0] = (VDriverSeg) { e, 16 };
            g_assert_cmpint(vdriver_add(t.f.dq[1], out, 1, NULL, 0, &token, false), ==, 0);
            kick(&t, 1);
            virtio_scsi_resize(&t.dev);
            break;
        }
        default: {  /* sense_size beyond 65535 */
            uint32_t v = htole32(70000);
            g_assert_cmpint(virtio_scsi_set_config(&t.dev, offsetof(VirtIOSCSIConfig, sense_size),
                                                   (uint8_t *)&v, 4), ==, -EINVAL);
            break;
        }
        }
        g_assert_true(t.dev.parent_obj.broken);
        g_assert_true(t.dev.parent_obj.status & VIRTIO_CONFIG_S_NEEDS_RESET);
        g_assert_cmpuint(t.f.config_notifies, >=, 1);
        drop_driver(&t);
        scsi_teardown(&t);
    }
}

/* Requests that are wrong but framed correctly get a response, never a broken device. */
static void test_hostile_requests(gconstpointer data)
{
    static const uint8_t tur[6] = { TEST_UNIT_READY };
    ScsiTest t;
    uint8_t cdb[16], junk[4] = { 1, 2, 3, 4 };
    uint32_t v;
    Cmd c;

    scsi_setup(&t, data, false);
    /* Data-out and data-in in one request: FAILURE (INOUT is not offered). */
    scsi_cdb_rw(cdb, READ_10, 0, 1);
    c = cmd_build(&t, cdb, 10, 512, 512);
    g_assert_cmpuint(cmd_run(&t, &c, 0), ==, RESP_SIZE);
    g_assert_cmpuint(resp_of(&t, &c)->response, ==, VIRTIO_SCSI_S_FAILURE);
    /* A read bigger than the data-in buffer: OVERRUN, nothing written. */
    scsi_cdb_rw(cdb, READ_10, 0, 8);
    c = cmd_build(&t, cdb, 10, 0, 1024);
    g_assert_cmpuint(cmd_run(&t, &c, 0), ==, RESP_SIZE);
    g_assert_cmpuint(resp_of(&t, &c)->response, ==, VIRTIO_SCSI_S_OVERRUN);
    g_assert_true(vdf_all_bytes(host(&t, c.din), 1024, 0xcc));
    /* A write with no data at all: OVERRUN too. */
    scsi_cdb_rw(cdb, WRITE_10, 0, 1);
    c = cmd_build(&t, cdb, 10, 0, 0);
    cmd_run(&t, &c, 0);
    g_assert_cmpuint(resp_of(&t, &c)->response, ==, VIRTIO_SCSI_S_OVERRUN);
    /* Header and response cut into 3-byte descriptors: still parsed. */
    c = cmd_build(&t, tur, 6, 0, 0);
    cmd_run(&t, &c, 3);
    assert_good(&t, &c);
    /* Only sense_size and cdb_size are writable. */
    g_assert_cmpint(virtio_scsi_set_config(&t.dev, 0, junk, 4), ==, -EPERM);
    g_assert_cmpint(virtio_scsi_set_config(&t.dev, 36, junk, 1), ==, -EINVAL);
    g_assert_cmpint(virtio_scsi_set_config(&t.dev, UINT32_MAX, junk, 2), ==, -EINVAL);
    /* cdb_size 6: a 10-byte CDB no longer fits, so the command is refused; 6-byte ones work. */
    v = htole32(6);
    g_assert_cmpint(virtio_scsi_set_config(&t.dev, offsetof(VirtIOSCSIConfig, cdb_size), (uint8_t *)&v, 4), ==, 0);
    g_assert_cmpuint(le32toh(((VirtIOSCSIConfig *)t.dev.parent_obj.config)->cdb_size), ==, 6);
    scsi_cdb_rw(cdb, READ_10, 0, 1);
    c = cmd_build(&t, cdb, 10, 0, 512);
    cmd_run(&t, &c, 0);
    assert_sense(&t, &c, SCSI_SENSE_ILLEGAL_REQUEST, 0x20, 0);
    scsi_cdb_rw(cdb, READ_6, 0, 1);
    c = cmd_build(&t, cdb, 6, 0, 512);
    cmd_run(&t, &c, 0);
    assert_good(&t, &c);
    /* sense_size 8: sense is cut to what fits, the response is 20 bytes. */
    v = htole32(8);
    g_assert_cmpint(virtio_scsi_set_config(&t.dev, offsetof(VirtIOSCSIConfig, sense_size), (uint8_t *)&v, 4), ==, 0);
    cdb[0] = 0x4d;
    c = cmd_build(&t, cdb, 6, 0, 0);
    g_assert_cmpuint(cmd_run(&t, &c, 0), ==, 20);
    g_assert_cmpuint(le32toh(resp_of(&t, &c)->sense_len), ==, 8);
    g_assert_cmphex(resp_of(&t, &c)->sense[2], ==, SCSI_SENSE_ILLEGAL_REQUEST);
    g_assert_false(t.dev.parent_obj.broken);
    /* Reset restores the defaults. */
    virtio_set_status(&t.dev.parent_obj, 0);
    g_assert_cmpuint(t.dev.sense_size, ==, 96);
    g_assert_cmpuint(t.dev.cdb_size, ==, 32);
    drop_driver(&t);
    scsi_teardown(&t);
}

/* Events: without a buffer one is dropped, and the next event says so. */
static void test_events(gconstpointer data)
{
    ScsiTest t;
    hwaddr e[2];
    VirtIOSCSIEvent *ev;
    uint32_t len;
    int tokens[2];

    scsi_setup(&t, data, false);
    virtio_scsi_resize(&t.dev);                 /* no buffer yet */
    g_assert_true(t.dev.events_dropped);
    for (unsigned i = 0; i < 2; i++) {
        VDriverSeg s;
        e[i] = galloc(&t, 16);
        s = (VDriverSeg) { e[i], 16 };
        g_assert_cmpint(vdriver_add(t.f.dq[1], NULL, 0, &s, 1, &tokens[i], false), ==, 0);
    }
    kick(&t, 1);                                /* the kick reports the loss */
    g_assert_true(vdriver_get_buf(t.f.dq[1], &len, NULL) == &tokens[0]);
    g_assert_cmpuint(len, ==, 16);
    ev = host(&t, e[0]);
    g_assert_cmphex(le32toh(ev->event), ==, VIRTIO_SCSI_T_NO_EVENT | VIRTIO_SCSI_T_EVENTS_MISSED);
    g_assert_false(t.dev.events_dropped);
    virtio_scsi_resize(&t.dev);
    g_assert_true(vdriver_get_buf(t.f.dq[1], &len, NULL) == &tokens[1]);
    ev = host(&t, e[1]);
    g_assert_cmphex(le32toh(ev->event), ==, VIRTIO_SCSI_T_PARAM_CHANGE);
    g_assert_cmphex(le32toh(ev->reason), ==, 0x092a);
    g_assert_cmpuint(ev->lun[0], ==, 1);
    g_assert_cmpuint(t.dev.stats.events, ==, 2);
    scsi_teardown(&t);
}

/*
 * Commands finishing in reverse: under IN_ORDER nothing is published until
 * the oldest finishes, then all of them in avail order; without it each is
 * published as it finishes.
 */
static void test_out_of_order_completion(gconstpointer data)
{
    enum { N = 8 };
    ScsiTest t;
    Cmd c[N];
    uint8_t cdb[16];
    uint32_t len;

    scsi_setup(&t, data, false);
    blk_set_hold(t.blk, true);
    for (unsigned i = 0; i < N; i++) {
        scsi_cdb_rw(cdb, READ_10, i * 8, 8);
        c[i] = cmd_build(&t, cdb, 10, 0, 4096);
        cmd_add(&t, &c[i], 0, &c[i]);
    }
    kick(&t, REQQ);
    g_assert_cmpuint(blk_wait_held(t.blk, N, 10000), ==, N);
    g_assert_cmpuint(t.dev.in_flight, ==, N);
    for (unsigned k = N; k-- > 1;) {
        g_assert_true(blk_release_held(t.blk, k));     /* newest first */
        if (t.f.layout->in_order) {
            g_assert_false(vdriver_has_used(t.f.dq[REQQ]));
        } else {
            g_assert_true(vdriver_get_buf(t.f.dq[REQQ], &len, NULL) == &c[k]);
        }
    }
    g_assert_true(blk_release_held(t.blk, 0));
    if (t.f.layout->in_order) {
        for (unsigned i = 0; i < N; i++) {
            g_assert_true(vdriver_get_buf(t.f.dq[REQQ], &len, NULL) == &c[i]);
            g_assert_cmpuint(len, ==, RESP_SIZE + 4096);
        }
    } else {
        g_assert_true(vdriver_get_buf(t.f.dq[REQQ], &len, NULL) == &c[0]);
    }
    g_assert_null(vdriver_get_buf(t.f.dq[REQQ], &len, NULL));
    for (unsigned i = 0; i < N; i++) {
        assert_good(&t, &c[i]);
    }
    blk_set_hold(t.blk, false);
    scsi_teardown(&t);
}

/* Reset with commands in flight: they finish, nothing is published. */
static void test_reset_with_commands_in_flight(gconstpointer data)
{
    ScsiTest t;
    uint8_t cdb[16];
    Cmd c[4];

    scsi_setup(&t, data, false);
    blk_set_hold(t.blk, true);
    for (unsigned i = 0; i < 4; i++) {
        scsi_cdb_rw(cdb, READ_10, i, 1);
        c[i] = cmd_build(&t, cdb, 10, 0, 512);
        cmd_add(&t, &c[i], 0, &c[i]);
    }
    kick(&t, REQQ);
    g_assert_cmpuint(blk_wait_held(t.blk, 4, 10000), ==, 4);
    virtio_set_status(&t.dev.parent_obj, 0);
    g_assert_cmpuint(t.dev.in_flight, ==, 0);
    g_assert_cmpuint(t.disk.in_flight, ==, 0);
    for (unsigned i = 0; i < 4; i++) {
        g_assert_cmphex(resp_of(&t, &c[i])->response, ==, 0xee);
    }
    blk_set_hold(t.blk, false);
    drop_driver(&t);
    scsi_teardown(&t);
}

/*
 * Random CDBs (any opcode, random fields), random data buffer sizes in either
 * direction (sometimes both) and sometimes bad LUN bytes: every command gets
 * a well-formed answer and the device never breaks (HOSTILE-INPUT.md).
 */
static void test_random_cdbs_answered(gconstpointer data)
{
    static const uint8_t responses[] = { VIRTIO_SCSI_S_OK, VIRTIO_SCSI_S_OVERRUN, VIRTIO_SCSI_S_BAD_TARGET,
                                         VIRTIO_SCSI_S_FAILURE };
    ScsiTest t;
    unsigned answered[4] = { 0 };

    scsi_setup(&t, data, false);
    for (unsigned i = 0; i < 400; i++) {
        uint8_t cdb[16], lun[8] = { 1, 0, 0, 0 };
        uint32_t dout = 0, din = 0, used;
        unsigned k = g_test_rand_int_range(0, 10);
        VirtIOSCSICmdResp *r;
        bool known = false;
        Cmd c;

        for (unsigned b = 0; b < sizeof(cdb); b++) {
            cdb[b] = (uint8_t)g_test_rand_int();
        }
        if (k < 6) {
            /* Mostly implemented opcodes, with random fields: the interesting paths. */
            static const uint8_t ops[] = { INQUIRY, MODE_SENSE_6, MODE_SENSE_10, READ_CAPACITY_10,
                                           SERVICE_ACTION_IN_16, REPORT_LUNS, REQUEST_SENSE, READ_10, WRITE_10,
                                           READ_16, WRITE_16, UNMAP, WRITE_SAME_10, WRITE_SAME_16, VERIFY_16 };
            cdb[0] = ops[g_test_rand_int_range(0, G_N_ELEMENTS(ops))];
            if (cdb[0] == READ_16 || cdb[0] == WRITE_16 || cdb[0] == WRITE_SAME_16 || cdb[0] == VERIFY_16) {
                memset(cdb + 2, 0, 6);          /* keep the LBA small enough to be in range sometimes */
                cdb[9] &= 0x1f;
                memset(cdb + 10, 0, 2);
            }
        }
        if (k == 7) {
            lun[0] = (uint8_t)g_test_rand_int_range(0, 3);
            lun[1] = (uint8_t)g_test_rand_int_range(0, 3);
            lun[2] = (uint8_t)g_test_rand_int();
        }
        switch (g_test_rand_int_range(0, 4)) {
        case 0:
            dout = (uint32_t)g_test_rand_int_range(1, 8193);
            break;
        case 1:
            din = (uint32_t)g_test_rand_int_range(1, 8193);
            break;
        case 2:
            dout = (uint32_t)g_test_rand_int_range(1, 600);
            din = (uint32_t)g_test_rand_int_range(1, 600);
            break;
        default:
            break;
        }
        c = cmd_build_lun(&t, lun, cdb, sizeof(cdb), dout, din);
        for (uint32_t b = 0; b < dout; b++) {
            ((uint8_t *)host(&t, c.dout))[b] = (uint8_t)g_test_rand_int();
        }
        used = cmd_run(&t, &c, g_test_rand_int_range(0, 2) ? 0 : 7);
        r = resp_of(&t, &c);
        g_assert_false(t.dev.parent_obj.broken);
        g_assert_cmpuint(used, >=, RESP_SIZE);
        g_assert_cmpuint(used, <=, RESP_SIZE + din);
        for (unsigned j = 0; j < G_N_ELEMENTS(responses); j++) {
            if (r->response == responses[j]) {
                answered[j]++;
                known = true;
            }
        }
        g_assert_true(known);
        if (r->response == VIRTIO_SCSI_S_OK && r->status == SCSI_STATUS_CHECK_CONDITION) {
            g_assert_cmpuint(le32toh(r->sense_len), ==, SCSI_SENSE_FIXED_LEN);
            g_assert_cmphex(r->sense[0], ==, 0x70);
        } else if (r->response == VIRTIO_SCSI_S_OK) {
            g_assert_cmpuint(r->status, ==, SCSI_STATUS_GOOD);
        }
        g_assert_cmpuint(le32toh(r->resid), <=, MAX(dout, din));
        /* Keep the heap from running out: commands are done, their memory can be reused. */
        if (t.f.heap > VDF_RAM_GPA + VDF_RAM_SIZE / 2) {
            t.f.heap = VDF_RAM_GPA + VDF_RAM_SIZE / 4;
        }
    }
    g_assert_cmpuint(answered[0], >, 0);
    g_assert_cmpuint(t.disk.in_flight, ==, 0);
    g_assert_cmpuint(t.dev.in_flight, ==, 0);
    scsi_teardown(&t);
}

static void test_properties(void)
{
    VirtIOSCSIConf conf;
    SCSIDiskConf dconf;
    VirtIOSCSI s;
    GError *err = NULL;

    virtio_scsi_conf_init(&conf);
    g_assert_false(conf.in_order);
    g_assert_true(virtio_scsi_conf_set(&conf, "num-queues", "4", &err));
    g_assert_cmpuint(conf.num_queues, ==, 4);
    g_assert_true(virtio_scsi_conf_set(&conf, "num_queues", "2", &err));
    g_assert_cmpuint(conf.num_queues, ==, 2);
    g_assert_true(virtio_scsi_conf_set(&conf, "queue-size", "128", &err));
    g_assert_cmpuint(conf.queue_size, ==, 128);
    g_assert_true(virtio_scsi_conf_set(&conf, "packed", "on", &err));
    g_assert_false(virtio_scsi_conf_set(&conf, "no-such", "1", &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
    g_assert_false(virtio_scsi_conf_set(&conf, "in_order", "maybe", &err));
    g_clear_error(&err);
    conf.queue_size = 100;
    g_assert_false(virtio_scsi_realize(&s, &conf, NULL, &err));
    g_clear_error(&err);
    virtio_scsi_conf_init(&conf);
    conf.target = 300;
    g_assert_false(virtio_scsi_realize(&s, &conf, NULL, &err));
    g_clear_error(&err);

    scsi_disk_conf_init(&dconf);
    g_assert_true(scsi_disk_conf_set(&dconf, "serial", "abc", &err));
    g_assert_false(scsi_disk_conf_set(&dconf, "serial", "0123456789012345678901234567890123456789", &err));
    g_clear_error(&err);
    g_assert_true(scsi_disk_conf_set(&dconf, "discard", "off", &err));
    g_assert_false(dconf.discard);
}

int main(int argc, char **argv)
{
    static const VdevTestCase cases[] = {
        { "config-space", test_config_space },
        { "inquiry", test_inquiry },
        { "read-capacity", test_read_capacity },
        { "read-write", test_read_write },
        { "sync-and-misc", test_sync_and_misc },
        { "mode-sense", test_mode_sense },
        { "unmap-write-same", test_unmap_write_same },
        { "sense-bad-lba-and-opcode", test_sense_bad_lba_and_opcode },
        { "fua-and-write-through", test_fua_and_write_through },
        { "read-only", test_read_only },
        { "tmf", test_tmf },
        { "bad-target", test_bad_target },
        { "hostile-framing-breaks-device", test_hostile_framing },
        { "hostile-requests-answered", test_hostile_requests },
        { "events", test_events },
        { "out-of-order-completion", test_out_of_order_completion },
        { "reset-with-commands-in-flight", test_reset_with_commands_in_flight },
        { "random-cdbs-answered", test_random_cdbs_answered },
    };

    g_test_init(&argc, &argv, NULL);
    vdf_add_layout_tests("virtio-scsi", cases, G_N_ELEMENTS(cases));
    g_test_add_func("/virtio-scsi/properties", test_properties);
    return g_test_run();
}
