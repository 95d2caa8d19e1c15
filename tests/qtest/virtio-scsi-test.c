/*
 * virtio-scsi-pci + scsi-hd over qtest on the four layouts (split, packed,
 * split+IN_ORDER, packed+IN_ORDER): INQUIRY, READ CAPACITY, writes and
 * reads with a data check against the image file, sense data for a bad LBA,
 * a wrong target and LUN, a task management function on the control queue,
 * the configuration space, and IN_ORDER with a backend that completes
 * newest first.
 */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "hw/scsi/scsi.h"
#include "hw/virtio/virtio-scsi.h"
#include "qvirtio-dev.h"
#include "scsi-cdb.h"

#define IMG_SIZE        (4u << 20)
#define QUEUE_NUM       64
#define CTRL_Q          0
#define EVENT_Q         1
#define REQ_Q           2
#define SLOT_STRIDE     0x10000ull      /* slot i: request +0, response +0x100, data +0x1000 */
#define SLOT_RESP       0x100
#define SLOT_DATA       0x1000

typedef VDriverLayout Layout;

typedef struct Scsi {
    QVirtioDev d;
    char *img_path;
    int img_fd;
} Scsi;

/* @drive_extra: appended to the -blockdev options (",x-reverse-completions=8"). */
static void scsi_start(Scsi *s, const Layout *l, const char *drive_extra, const char *adapter_extra)
{
    s->img_fd = g_file_open_tmp("vdm-scsi-XXXXXX.img", &s->img_path, NULL);
    g_assert_cmpint(s->img_fd, >=, 0);
    g_assert_cmpint(ftruncate(s->img_fd, IMG_SIZE), ==, 0);
    qvdev_start(&s->d, VIRTIO_ID_SCSI,
                "-blockdev driver=file,filename=%s,node-name=d0%s "
                "-device virtio-scsi-pci,id=scsi0,addr=05.0,packed=%s,in_order=%s,event_idx=off%s "
                "-device scsi-hd,drive=d0,bus=scsi0.0,scsi-id=0,lun=0,serial=vdm-scsi0",
                s->img_path, drive_extra, l->packed ? "on" : "off", l->in_order ? "on" : "off", adapter_extra);
    qvdev_init(&s->d, l->packed, l->in_order, 0, 3, QUEUE_NUM);
}

static void scsi_stop(Scsi *s)
{
    qvdev_stop(&s->d);
    close(s->img_fd);
    unlink(s->img_path);
    g_free(s->img_path);
}

static uint64_t slot_gpa(unsigned slot)
{
    return QVDEV_DATA_BASE + slot * SLOT_STRIDE;
}

static VirtIOSCSICmdResp *slot_resp(Scsi *s, unsigned slot)
{
    return qvdev_host(&s->d, slot_gpa(slot) + SLOT_RESP);
}

static uint8_t *slot_data(Scsi *s, unsigned slot)
{
    return qvdev_host(&s->d, slot_gpa(slot) + SLOT_DATA);
}

/*
 * Queue one command in @slot for @target/@lun: the CDB; @out_len bytes of
 * data-out from the slot's data area, or @in_len bytes of data-in into it.
 */
static void cmd_add(Scsi *s, unsigned slot, unsigned target, unsigned lun, const uint8_t *cdb, size_t cdb_len,
                    uint32_t out_len, uint32_t in_len)
{
    uint64_t base = slot_gpa(slot);
    VirtIOSCSICmdReq req = { .lun = { 1, (uint8_t)target, (uint8_t)(0x40 | (lun >> 8)), (uint8_t)lun } };
    VDriverSeg out[2] = { { base, sizeof(req) } }, in[2] = { { base + SLOT_RESP, sizeof(VirtIOSCSICmdResp) } };
    unsigned nout = 1, nin = 1;

    req.tag = slot;
    memcpy(req.cdb, cdb, cdb_len);
    memcpy(qvdev_host(&s->d, base), &req, sizeof(req));
    memset(slot_resp(s, slot), 0xee, sizeof(VirtIOSCSICmdResp));
    if (out_len) {
        out[nout++] = (VDriverSeg){ base + SLOT_DATA, out_len };
    }
    if (in_len) {
        in[nin++] = (VDriverSeg){ base + SLOT_DATA, in_len };
    }
    g_assert_cmpint(vdriver_add(s->d.vq[REQ_Q], out, nout, in, nin, GUINT_TO_POINTER(slot + 1), false), ==, 0);
}

/* Wait for @n commands; their slots in completion order go to @order (may be NULL). */
static void cmd_reap(Scsi *s, unsigned n, unsigned *order)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t len;
        unsigned slot = GPOINTER_TO_UINT(qvdev_wait_used(&s->d, REQ_Q, &len)) - 1;

        g_assert_cmpuint(len, >=, VIRTIO_SCSI_CMD_RESP_HDR);
        if (order) {
            order[i] = slot;
        }
    }
}

/* One command, completed: returns its response. */
static VirtIOSCSICmdResp *cmd_run(Scsi *s, unsigned target, unsigned lun, const uint8_t *cdb, size_t cdb_len,
                                  uint32_t out_len, uint32_t in_len)
{
    cmd_add(s, 0, target, lun, cdb, cdb_len, out_len, in_len);
    qvdev_kick(&s->d, REQ_Q);
    cmd_reap(s, 1, NULL);
    return slot_resp(s, 0);
}

static void assert_good(const VirtIOSCSICmdResp *r)
{
    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
    g_assert_cmpuint(r->status, ==, SCSI_STATUS_GOOD);
}

static void fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 13 + seed * 29 + (i >> 9));
    }
}

static void test_inquiry_capacity_write_read(const void *opaque)
{
    enum { NREQ = 8, BLOCKS = 8, LEN = BLOCKS * 512 };
    const uint8_t tur[6] = { TEST_UNIT_READY }, inquiry[6] = { INQUIRY, 0, 0, 0, 96, 0 };
    const uint8_t capacity[10] = { READ_CAPACITY_10 };
    uint8_t cdb[16], want[LEN], file[LEN];
    unsigned n;
    VirtIOSCSICmdResp *r;
    uint8_t *d;
    Scsi s;

    scsi_start(&s, opaque, "", "");
    assert_good(cmd_run(&s, 0, 0, tur, sizeof(tur), 0, 0));
    r = cmd_run(&s, 0, 0, inquiry, sizeof(inquiry), 0, 96);
    assert_good(r);
    d = slot_data(&s, 0);
    g_assert_cmpuint(d[0], ==, 0x00);                       /* direct-access block device, connected */
    g_assert_cmpmem(d + 8, 3, "VDM", 3);
    r = cmd_run(&s, 0, 0, capacity, sizeof(capacity), 0, 8);
    assert_good(r);
    g_assert_cmpuint(scsi_be32(d), ==, IMG_SIZE / 512 - 1);
    g_assert_cmpuint(scsi_be32(d + 4), ==, 512);

    /* writes in flight together, completing in whatever order the backend finishes them */
    for (unsigned i = 0; i < NREQ; i++) {
        fill_pattern(slot_data(&s, i), LEN, i);
        n = scsi_cdb_rw(cdb, WRITE_10, i * 32 + 3, BLOCKS);
        cmd_add(&s, i, 0, 0, cdb, n, LEN, 0);
    }
    qvdev_kick(&s.d, REQ_Q);
    cmd_reap(&s, NREQ, NULL);
    for (unsigned i = 0; i < NREQ; i++) {
        assert_good(slot_resp(&s, i));
        fill_pattern(want, LEN, i);
        g_assert_cmpint(pread(s.img_fd, file, LEN, (off_t)(i * 32 + 3) * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    for (unsigned i = 0; i < NREQ; i++) {
        memset(slot_data(&s, i), 0, LEN);
        n = scsi_cdb_rw(cdb, READ_10, i * 32 + 3, BLOCKS);
        cmd_add(&s, i, 0, 0, cdb, n, 0, LEN);
    }
    qvdev_kick(&s.d, REQ_Q);
    cmd_reap(&s, NREQ, NULL);
    for (unsigned i = 0; i < NREQ; i++) {
        assert_good(slot_resp(&s, i));
        g_assert_cmpuint(slot_resp(&s, i)->resid, ==, 0);
        fill_pattern(want, LEN, i);
        g_assert_cmpmem(slot_data(&s, i), LEN, want, LEN);
    }
    scsi_stop(&s);
}

/* spec 5.6.6.1: a target nobody answers is BAD_TARGET; a bad LBA is CHECK CONDITION with sense. */
static void test_errors_and_sense(const void *opaque)
{
    const uint8_t tur[6] = { TEST_UNIT_READY };
    uint8_t cdb[16];
    VirtIOSCSICmdResp *r;
    Scsi s;

    scsi_start(&s, opaque, "", "");
    r = cmd_run(&s, 1, 0, tur, sizeof(tur), 0, 0);
    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_BAD_TARGET);

    r = cmd_run(&s, 0, 0, cdb, scsi_cdb_rw(cdb, READ_10, IMG_SIZE / 512, 1), 0, 512);  /* one past the end */
    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
    g_assert_cmpuint(r->status, ==, SCSI_STATUS_CHECK_CONDITION);
    g_assert_cmpuint(r->sense_len, >=, SCSI_SENSE_FIXED_LEN);
    g_assert_cmpuint(r->sense[0] & 0x7f, ==, 0x70);                 /* fixed format, current */
    g_assert_cmpuint(r->sense[2] & 0xf, ==, SCSI_SENSE_ILLEGAL_REQUEST);
    g_assert_cmpuint(r->sense[12], ==, 0x21);                       /* LBA OUT OF RANGE */

    /* an unsupported LUN on the target: CHECK CONDITION, LOGICAL UNIT NOT SUPPORTED (ASC 0x25) */
    r = cmd_run(&s, 0, 3, tur, sizeof(tur), 0, 0);
    g_assert_cmpuint(r->response, ==, VIRTIO_SCSI_S_OK);
    g_assert_cmpuint(r->status, ==, SCSI_STATUS_CHECK_CONDITION);
    g_assert_cmpuint(r->sense[12], ==, 0x25);
    scsi_stop(&s);
}

/* Control queue: LOGICAL UNIT RESET on the unit completes (spec 5.6.6.2). */
static void test_tmf_lun_reset(const void *opaque)
{
    uint64_t base = slot_gpa(40);
    VirtIOSCSICtrlTMFReq req = {
        .type = VIRTIO_SCSI_T_TMF, .subtype = VIRTIO_SCSI_T_TMF_LOGICAL_UNIT_RESET,
        .lun = { 1, 0, 0x40, 0 },
    };
    VDriverSeg out = { base, sizeof(req) }, in = { base + SLOT_RESP, 1 };
    uint8_t *resp;
    uint32_t len;
    Scsi s;

    scsi_start(&s, opaque, "", "");
    memcpy(qvdev_host(&s.d, base), &req, sizeof(req));
    resp = qvdev_host(&s.d, base + SLOT_RESP);
    *resp = 0xee;
    g_assert_cmpint(vdriver_add(s.d.vq[CTRL_Q], &out, 1, &in, 1, GUINT_TO_POINTER(1), false), ==, 0);
    qvdev_kick(&s.d, CTRL_Q);
    g_assert_cmpuint(GPOINTER_TO_UINT(qvdev_wait_used(&s.d, CTRL_Q, &len)), ==, 1);
    g_assert_cmpuint(len, ==, 1);
    g_assert_true(*resp == VIRTIO_SCSI_S_FUNCTION_COMPLETE || *resp == VIRTIO_SCSI_S_FUNCTION_SUCCEEDED);
    scsi_stop(&s);
}

/*
 * The backend (x-reverse-completions=8) finishes each group of reads newest
 * first: with IN_ORDER the used entries still come in avail order, without
 * it they follow the completions.
 */
static void test_reverse_completions(const void *opaque)
{
    const Layout *l = opaque;
    enum { N = 8 };
    unsigned order[N], n;
    uint8_t cdb[16];
    Scsi s;

    scsi_start(&s, l, ",x-reverse-completions=8", "");
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned i = 0; i < N; i++) {
            n = scsi_cdb_rw(cdb, READ_10, i + round * N, 1);
            cmd_add(&s, i, 0, 0, cdb, n, 0, 512);
        }
        qvdev_kick(&s.d, REQ_Q);
        cmd_reap(&s, N, order);
        for (unsigned i = 0; i < N; i++) {
            assert_good(slot_resp(&s, i));
            g_assert_cmpuint(order[i], ==, l->in_order ? i : N - 1 - i);
        }
    }
    scsi_stop(&s);
}

/* spec 5.6.4: num_queues as configured; sense_size and cdb_size are the driver's to write. */
static void test_config(const void *opaque)
{
    uint64_t cfg;
    Scsi s;

    scsi_start(&s, opaque, "", ",num_queues=2");
    cfg = s.d.v.device;
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 0), ==, 2);                       /* num_queues */
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 20), ==, VIRTIO_SCSI_SENSE_DEFAULT_SIZE);
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 24), ==, VIRTIO_SCSI_CDB_DEFAULT_SIZE);
    qtest_writel(s.d.qts, cfg + 20, 64);
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 20), ==, 64);
    qtest_writel(s.d.qts, cfg + 0, 7);                                            /* read-only */
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 0), ==, 2);
    scsi_stop(&s);
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } cases[] = {
        { "inquiry-capacity-write-read", test_inquiry_capacity_write_read },
        { "bad-target-lun-and-lba-sense", test_errors_and_sense },
        { "tmf-lun-reset", test_tmf_lun_reset },
        { "reverse-completions", test_reverse_completions },
        { "config", test_config },
    };

    g_test_init(&argc, &argv, NULL);
    for (unsigned i = 0; i < G_N_ELEMENTS(vdriver_layouts); i++) {
        for (unsigned c = 0; c < G_N_ELEMENTS(cases); c++) {
            char *p = g_strdup_printf("/virtio-scsi-pci/%s/%s", vdriver_layouts[i].name, cases[c].name);
            g_test_add_data_func(p, &vdriver_layouts[i], cases[c].fn);
            g_free(p);
        }
    }
    return g_test_run();
}
