/*
 * vhost-user-scsi-pci against the vdm-vhost-user-scsi daemon, on the four
 * layouts: IN_ORDER reaches the driver and the backend exactly when
 * in_order=on and the backend offers it (masked otherwise), commands go
 * through the backend (INQUIRY, writes and reads with a data check against
 * the image), and the driver may not change the backend's sense/CDB sizes.
 */
#include <fcntl.h>
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/virtio-scsi.h"
#include "qdaemon.h"
#include "qvirtio-dev.h"
#include "scsi-cdb.h"

#define IMG_SIZE        (4u << 20)
#define QUEUE_NUM       64
#define REQ_Q           2
#define SLOT_STRIDE     0x10000ull      /* slot i: request +0, response +0x100, data +0x1000 */

typedef struct VuScsi {
    QVirtioDev d;
    QDaemon daemon;
    char *dir, *img_path, *sock_path;
    int img_fd;
    uint64_t features;          /* what the driver negotiated */
} VuScsi;

/* Start the daemon (@daemon_in_order: its --in-order) and vdm with vhost-user-scsi-pci for layout @l. */
static void vus_start(VuScsi *s, const VDriverLayout *l, bool daemon_in_order)
{
    const char *daemon = g_getenv("VDM_VHOST_USER_SCSI");
    char *log, *cmd;

    g_assert_nonnull(daemon);
    memset(s, 0, sizeof(*s));
    s->dir = g_dir_make_tmp("vdm-vus-XXXXXX", NULL);
    s->img_path = g_build_filename(s->dir, "disk.img", NULL);
    s->sock_path = g_build_filename(s->dir, "vu.sock", NULL);
    s->img_fd = open(s->img_path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(s->img_fd, >=, 0);
    g_assert_cmpint(ftruncate(s->img_fd, IMG_SIZE), ==, 0);
    log = g_build_filename(s->dir, "backend.log", NULL);
    cmd = g_strdup_printf("%s --socket-path %s --blk-file %s --backend threads --in-order=%s", daemon,
                          s->sock_path, s->img_path, daemon_in_order ? "on" : "off");
    qdaemon_spawn(&s->daemon, log, cmd);
    qdaemon_wait_log(&s->daemon, "listening on", 1);
    g_free(cmd);
    g_free(log);
    qvdev_start(&s->d, VIRTIO_ID_SCSI,
                "-chardev socket,id=vu0,path=%s -device vhost-user-scsi-pci,chardev=vu0,addr=05.0,"
                "packed=%s,in_order=%s,event_idx=off", s->sock_path, l->packed ? "on" : "off",
                l->in_order ? "on" : "off");
}

static void vus_stop(VuScsi *s)
{
    char *log = g_strdup(s->daemon.log_path);

    qvdev_stop(&s->d);
    qdaemon_cleanup(&s->daemon);
    close(s->img_fd);
    unlink(s->img_path);
    unlink(s->sock_path);
    unlink(log);
    rmdir(s->dir);
    g_free(log);
    g_free(s->img_path);
    g_free(s->sock_path);
    g_free(s->dir);
}

/* Queue one command in @slot for target 0 / LUN 0, with @out_len data-out or @in_len data-in bytes. */
static void cmd_add(VuScsi *s, unsigned slot, const uint8_t *cdb, unsigned cdb_len, uint32_t out_len, uint32_t in_len)
{
    uint64_t base = QVDEV_DATA_BASE + slot * SLOT_STRIDE;
    VirtIOSCSICmdReq req = { .lun = { 1, 0, 0x40, 0 }, .tag = slot };
    VDriverSeg out[2] = { { base, sizeof(req) } }, in[2] = { { base + 0x100, sizeof(VirtIOSCSICmdResp) } };
    unsigned nout = 1, nin = 1;

    memcpy(req.cdb, cdb, cdb_len);
    memcpy(qvdev_host(&s->d, base), &req, sizeof(req));
    if (out_len) {
        out[nout++] = (VDriverSeg){ base + 0x1000, out_len };
    }
    if (in_len) {
        in[nin++] = (VDriverSeg){ base + 0x1000, in_len };
    }
    g_assert_cmpint(vdriver_add(s->d.vq[REQ_Q], out, nout, in, nin, GUINT_TO_POINTER(slot + 1), false), ==, 0);
}

static VirtIOSCSICmdResp *slot_resp(VuScsi *s, unsigned slot)
{
    return qvdev_host(&s->d, QVDEV_DATA_BASE + slot * SLOT_STRIDE + 0x100);
}

static uint8_t *slot_data(VuScsi *s, unsigned slot)
{
    return qvdev_host(&s->d, QVDEV_DATA_BASE + slot * SLOT_STRIDE + 0x1000);
}

/* Wait for @n commands; with IN_ORDER they must come back in the order they were queued. */
static void cmd_reap(VuScsi *s, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        uint32_t len;
        unsigned slot = GPOINTER_TO_UINT(qvdev_wait_used(&s->d, REQ_Q, &len)) - 1;

        g_assert_cmpuint(slot_resp(s, slot)->response, ==, VIRTIO_SCSI_S_OK);
        g_assert_cmpuint(slot_resp(s, slot)->status, ==, 0);
    }
}

/* What the daemon said it negotiated. */
static bool backend_negotiated_in_order(VuScsi *s)
{
    char *log;
    bool yes;

    qdaemon_wait_log(&s->daemon, "VIRTIO_F_IN_ORDER", 1);
    log = qdaemon_read_log(&s->daemon);
    yes = strstr(log, "VIRTIO_F_IN_ORDER negotiated") != NULL;
    g_free(log);
    return yes;
}

static void write_read_check(VuScsi *s)
{
    enum { N = 8, BLOCKS = 8, LEN = BLOCKS * 512 };
    const uint8_t inquiry[6] = { INQUIRY, 0, 0, 0, 36, 0 };
    uint8_t cdb[16], file[LEN];

    cmd_add(s, 0, inquiry, sizeof(inquiry), 0, 36);
    qvdev_kick(&s->d, REQ_Q);
    cmd_reap(s, 1);
    g_assert_cmpuint(slot_data(s, 0)[0], ==, 0);
    for (unsigned i = 0; i < N; i++) {
        memset(slot_data(s, i), 0x40 + i, LEN);
        cmd_add(s, i, cdb, scsi_cdb_rw(cdb, WRITE_10, i * 16, BLOCKS), LEN, 0);
    }
    qvdev_kick(&s->d, REQ_Q);
    cmd_reap(s, N);
    for (unsigned i = 0; i < N; i++) {
        uint8_t want[LEN];

        memset(want, 0x40 + i, LEN);
        g_assert_cmpint(pread(s->img_fd, file, LEN, (off_t)i * 16 * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
        memset(slot_data(s, i), 0, LEN);
        cmd_add(s, i, cdb, scsi_cdb_rw(cdb, READ_10, i * 16, BLOCKS), 0, LEN);
    }
    qvdev_kick(&s->d, REQ_Q);
    cmd_reap(s, N);
    for (unsigned i = 0; i < N; i++) {
        uint8_t want[LEN];

        memset(want, 0x40 + i, LEN);
        g_assert_cmpmem(slot_data(s, i), LEN, want, LEN);
    }
}

/* Both ends offer IN_ORDER: it is negotiated end to end exactly when in_order=on. */
static void test_features_and_data(const void *opaque)
{
    const VDriverLayout *l = opaque;
    VuScsi s;

    vus_start(&s, l, true);
    s.features = qvdev_init(&s.d, l->packed, l->in_order, 0, 3, QUEUE_NUM);
    write_read_check(&s);
    g_assert_cmpint(backend_negotiated_in_order(&s), ==, l->in_order);
    vus_stop(&s);
}

/* The backend without IN_ORDER: in_order=on offers nothing (the table's allowlist). */
static void test_in_order_masked_by_backend(const void *opaque)
{
    const VDriverLayout *l = opaque;
    VuScsi s;

    vus_start(&s, l, false);
    qvirtio_pci_set_status(&s.d.v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    g_assert_false(qvirtio_pci_get_features(&s.d.v) & (1ULL << VIRTIO_F_IN_ORDER));
    s.features = qvdev_init(&s.d, l->packed, false, 0, 3, QUEUE_NUM);
    write_read_check(&s);
    g_assert_false(backend_negotiated_in_order(&s));
    vus_stop(&s);
}

/* Config: the backend's sizes; the same value may be written back, another breaks the device. */
static void test_config_sizes_fixed(void)
{
    VuScsi s;
    uint64_t cfg;

    vus_start(&s, &vdriver_layouts[0], true);
    qvdev_init(&s.d, false, false, 0, 3, QUEUE_NUM);
    cfg = s.d.v.device;
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 0), ==, 1);
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 20), ==, VIRTIO_SCSI_SENSE_DEFAULT_SIZE);
    g_assert_cmpuint(qtest_readl(s.d.qts, cfg + 24), ==, VIRTIO_SCSI_CDB_DEFAULT_SIZE);
    qtest_writel(s.d.qts, cfg + 20, VIRTIO_SCSI_SENSE_DEFAULT_SIZE);
    g_assert_false(qvirtio_pci_get_status(&s.d.v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    qtest_writel(s.d.qts, cfg + 24, 16);
    g_assert_true(qvirtio_pci_get_status(&s.d.v) & VIRTIO_CONFIG_S_NEEDS_RESET);
    vus_stop(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (unsigned i = 0; i < VDRIVER_NUM_LAYOUTS; i++) {
        char *p = g_strdup_printf("/vhost-user-scsi-pci/%s/features-and-data", vdriver_layouts[i].name);
        g_test_add_data_func(p, &vdriver_layouts[i], test_features_and_data);
        g_free(p);
        p = g_strdup_printf("/vhost-user-scsi-pci/%s/in-order-masked-by-backend", vdriver_layouts[i].name);
        g_test_add_data_func(p, &vdriver_layouts[i], test_in_order_masked_by_backend);
        g_free(p);
    }
    g_test_add_func("/vhost-user-scsi-pci/config-sizes-fixed", test_config_sizes_fixed);
    return g_test_run();
}
