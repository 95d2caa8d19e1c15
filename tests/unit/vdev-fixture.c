/*
 * Shared set-up for device unit tests (see vdev-fixture.h).
 */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "vdev-fixture.h"

static void vdf_count_queue_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    ((VdevFixture *)vdev->transport_opaque)->queue_notifies++;
}

static void vdf_count_config_notify(VirtIODevice *vdev)
{
    ((VdevFixture *)vdev->transport_opaque)->config_notifies++;
}

static const VirtIOTransportOps vdf_transport = {
    .notify_queue = vdf_count_queue_notify,
    .notify_config = vdf_count_config_notify,
};

void vdf_init(VdevFixture *f, const VqLayout *layout)
{
    memset(f, 0, sizeof(*f));
    f->layout = layout;
    f->ram = g_malloc0(VDF_RAM_SIZE);
    guest_memory_init(&f->mem);
    g_assert_cmpint(guest_memory_add(&f->mem, VDF_RAM_GPA, VDF_RAM_SIZE, f->ram, true), ==, 0);
}

void vdf_attach(VdevFixture *f, VirtIODevice *vdev)
{
    f->vdev = vdev;
    vdev->transport = &vdf_transport;
    vdev->transport_opaque = f;
}

void vdf_start(VdevFixture *f, uint64_t features, unsigned nq, unsigned qsize, unsigned indirect_max)
{
    VirtIODevice *vdev = f->vdev;
    hwaddr base = VDF_RAM_GPA;

    g_assert_cmpuint(nq, <=, VDF_MAX_QUEUES);
    g_assert_cmpint(virtio_has_feature(features, VIRTIO_F_IN_ORDER), ==, f->layout->in_order);
    g_assert_cmpint(virtio_has_feature(features, VIRTIO_F_RING_PACKED), ==, f->layout->packed);
    g_assert_cmpint(virtio_set_features(vdev, features), ==, 0);
    g_assert_cmpint(virtio_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                      VIRTIO_CONFIG_S_FEATURES_OK), ==, 0);
    for (unsigned n = 0; n < nq; n++) {
        VDriverQueueConfig qc = {
            .num = qsize, .packed = f->layout->packed, .in_order = f->layout->in_order,
            .event_idx = virtio_has_feature(features, VIRTIO_RING_F_EVENT_IDX),
        };

        base = vdriver_layout_rings(&qc, base);
        if (indirect_max && virtio_has_feature(features, VIRTIO_RING_F_INDIRECT_DESC)) {
            qc.indirect = (base + 15) & ~15ull;
            qc.indirect_max = indirect_max;
            base = qc.indirect + 16ull * indirect_max * qsize;
        }
        g_assert_cmpint(virtio_queue_set_num(vdev, n, qsize), ==, 0);
        g_assert_cmpint(virtio_queue_set_rings(vdev, n, qc.desc, qc.driver, qc.device), ==, 0);
        g_assert_cmpint(virtio_queue_set_enabled(vdev, n, true), ==, 0);
        f->dq[n] = vdriver_queue_new(&f->mem, &qc);
        g_assert_nonnull(f->dq[n]);
    }
    f->heap = (base + 4095) & ~4095ull;
    g_assert_cmpint(virtio_set_status(vdev, vdev->status | VIRTIO_CONFIG_S_DRIVER_OK), ==, 0);
}

void vdf_drop_driver(VdevFixture *f)
{
    for (unsigned n = 0; n < VDF_MAX_QUEUES; n++) {
        vdriver_queue_free(f->dq[n]);
        f->dq[n] = NULL;
    }
}

void vdf_free_driver(VdevFixture *f, bool expect_error)
{
    for (unsigned n = 0; n < VDF_MAX_QUEUES; n++) {
        if (f->dq[n]) {
            if (!expect_error) {
                g_assert_null(vdriver_error(f->dq[n]));
            }
            vdriver_queue_free(f->dq[n]);
            f->dq[n] = NULL;
        }
    }
}

void vdf_cleanup(VdevFixture *f)
{
    g_free(f->ram);
    f->ram = NULL;
}

hwaddr vdf_alloc(VdevFixture *f, uint64_t size)
{
    hwaddr gpa = f->heap;

    f->heap += (size + 63) & ~63ull;
    g_assert_cmpuint(f->heap, <=, VDF_RAM_GPA + VDF_RAM_SIZE);
    return gpa;
}

void vdf_fill_pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(i * 13 + seed * 101 + 7);
    }
}

bool vdf_all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != v) {
            return false;
        }
    }
    return true;
}

void vdf_add_layout_tests(const char *device, const VdevTestCase *cases, unsigned n)
{
    for (unsigned l = 0; l < G_N_ELEMENTS(vq_layouts); l++) {
        for (unsigned c = 0; c < n; c++) {
            g_autofree char *path = g_strdup_printf("/%s/%s/%s", device, vq_layouts[l].name, cases[c].name);
            g_test_add_data_func(path, &vq_layouts[l], cases[c].fn);
        }
    }
}

char *vdf_tmp_image(const char *tmpl, uint64_t size)
{
    GError *err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp(tmpl, &path, &err);

    g_assert_no_error(err);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    close(fd);
    return path;
}
