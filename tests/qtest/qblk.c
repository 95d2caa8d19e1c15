/*
 * virtio-blk driver side for qtests over shared guest RAM (see qblk.h).
 */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hw/virtio/virtio-blk.h"
#include "libqtest.h"
#include "qblk.h"
#include "qvirtio-dev.h"

void qblk_host_init(QBlkHost *h, const char *tmpl, uint64_t ram_size, uint64_t img_size)
{
    memset(h, 0, sizeof(*h));
    h->dir = g_dir_make_tmp(tmpl, NULL);
    g_assert_nonnull(h->dir);
    h->img_path = g_build_filename(h->dir, "disk.img", NULL);
    h->img_fd = open(h->img_path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(h->img_fd, >=, 0);
    g_assert_cmpint(ftruncate(h->img_fd, (off_t)img_size), ==, 0);
    h->ram = qtest_shared_ram_new(h->dir, ram_size, &h->mem_path, &h->gm);
    h->ram_size = ram_size;
}

char *qblk_host_path(const QBlkHost *h, const char *name)
{
    return g_build_filename(h->dir, name, NULL);
}

void qblk_host_cleanup(QBlkHost *h)
{
    qtest_shared_ram_free(h->ram, h->ram_size, h->mem_path);
    close(h->img_fd);
    unlink(h->img_path);
    rmdir(h->dir);
    g_free(h->img_path);
    g_free(h->dir);
    memset(h, 0, sizeof(*h));
}

void qblk_add(QBlkHost *h, VDriverQueue *vq, unsigned slot, uint32_t type, uint64_t sector, uint32_t len,
              bool indirect)
{
    uint64_t base = qblk_slot_gpa(slot);
    VirtIOBlkOutHdr hdr = { .type = type, .sector = sector };       /* x86 test: little-endian */
    VDriverSeg out[2] = { { base, sizeof(hdr) } }, in[2];
    unsigned nout = 1, nin = 0;

    memcpy(h->ram + base, &hdr, sizeof(hdr));
    h->ram[base + QBLK_REQ_STATUS_OFF] = 0xff;     /* overwritten by the device */
    if (type == VIRTIO_BLK_T_OUT) {
        out[nout++] = (VDriverSeg){ base + QBLK_REQ_DATA_OFF, len };
    } else if (len) {
        in[nin++] = (VDriverSeg){ base + QBLK_REQ_DATA_OFF, len };
    }
    in[nin++] = (VDriverSeg){ base + QBLK_REQ_STATUS_OFF, 1 };
    g_assert_cmpint(vdriver_add(vq, out, nout, in, nin, GUINT_TO_POINTER(slot + 1), indirect), ==, 0);
}

void qblk_reap(QBlkHost *h, VDriverQueue *vq, unsigned n)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    unsigned got = 0;

    while (got < n) {
        uint32_t len;
        void *tok = vdriver_get_buf(vq, &len, NULL);

        g_assert_null(vdriver_error(vq));
        if (!tok) {
            g_assert_cmpint(g_get_monotonic_time(), <, deadline);
            g_usleep(200);
            continue;
        }
        g_assert_cmphex(h->ram[qblk_slot_gpa(GPOINTER_TO_UINT(tok) - 1) + QBLK_REQ_STATUS_OFF], ==,
                        VIRTIO_BLK_S_OK);
        got++;
    }
}

void qblk_fill_pattern(uint8_t *p, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        p[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 9));
    }
}
