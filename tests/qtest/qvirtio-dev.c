/*
 * A virtio-pci device under test on RAM shared with the test (qvirtio-dev.h).
 */
#include <fcntl.h>
#include <glib.h>
#include <stdarg.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hw/virtio/virtio-pci.h"
#include "qvirtio-dev.h"

uint8_t *qtest_shared_ram_new(const char *dir, uint64_t size, char **mem_path, GuestMemory *gm)
{
    uint8_t *ram;
    int fd;

    *mem_path = g_build_filename(dir, "ram", NULL);
    fd = open(*mem_path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_true(ram != MAP_FAILED);
    close(fd);
    guest_memory_init(gm);
    g_assert_cmpint(guest_memory_add(gm, 0, size, ram, true), ==, 0);
    return ram;
}

void qtest_shared_ram_free(uint8_t *ram, uint64_t size, char *mem_path)
{
    munmap(ram, size);
    unlink(mem_path);
    g_free(mem_path);
}

void qvdev_start(QVirtioDev *d, uint16_t device_id, const char *fmt, ...)
{
    va_list ap;
    char *args;

    memset(d, 0, sizeof(*d));
    d->dir = g_dir_make_tmp("vdm-qvdev-XXXXXX", NULL);
    g_assert_nonnull(d->dir);
    d->ram = qtest_shared_ram_new(d->dir, QVDEV_RAM_SIZE, &d->mem_path, &d->gm);

    va_start(ap, fmt);
    args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    d->qts = qtest_initf("-machine pc -object memory-backend-file,id=mem,size=%uM,mem-path=%s,share=on "
                         "-machine memory-backend=mem -nodefaults %s", QVDEV_RAM_SIZE >> 20, d->mem_path, args);
    g_free(args);
    d->devfn = qpci_find_device(d->qts, PCI_VENDOR_ID_REDHAT_QUMRANET, PCI_DEVICE_ID_VIRTIO_MODERN_BASE + device_id);
    g_assert_cmpint(d->devfn, >=, 0);
    qvirtio_pci_init(&d->v, d->qts, d->devfn);
}

void qvdev_stop(QVirtioDev *d)
{
    qtest_quit(d->qts);
    for (unsigned q = 0; q < d->nq; q++) {
        vdriver_queue_free(d->vq[q]);
    }
    qtest_shared_ram_free(d->ram, QVDEV_RAM_SIZE, d->mem_path);
    rmdir(d->dir);
    g_free(d->dir);
}

uint64_t qvdev_init(QVirtioDev *d, bool packed, bool in_order, uint64_t extra, unsigned nq, unsigned num)
{
    QVirtioPCI *v = &d->v;
    uint64_t f, want;

    g_assert_cmpuint(nq, <=, QVDEV_MAX_QUEUES);
    for (unsigned q = 0; q < d->nq; q++) {
        vdriver_queue_free(d->vq[q]);
    }
    d->nq = 0;
    qvirtio_pci_set_status(v, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = qvirtio_pci_get_features(v);
    g_assert_true(f & (1ULL << VIRTIO_F_VERSION_1));
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_RING_PACKED)), ==, packed);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_IN_ORDER)), ==, in_order);
    g_assert_cmphex(f & extra, ==, extra);
    want = (1ULL << VIRTIO_F_VERSION_1) | extra | (packed ? 1ULL << VIRTIO_F_RING_PACKED : 0) |
           (in_order ? 1ULL << VIRTIO_F_IN_ORDER : 0);
    g_assert_true(qvirtio_pci_set_features(v, want));
    g_assert_cmpuint(qtest_readw(d->qts, v->common + VIRTIO_PCI_COMMON_NUMQ), >=, nq);
    for (unsigned q = 0; q < nq; q++) {
        VDriverQueueConfig *c = &d->cfg[q];
        uint64_t base = QVDEV_RING_BASE + q * QVDEV_RING_STRIDE;

        qvirtio_pci_queue_select(v, (uint16_t)q);
        qtest_writew(d->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, (uint16_t)num);
        g_assert_cmpuint(qtest_readw(d->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE), ==, num);
        g_assert_cmpuint(qtest_readw(d->qts, v->common + VIRTIO_PCI_COMMON_Q_NOFF), ==, q);
        *c = (VDriverQueueConfig){
            .num = num, .packed = packed, .in_order = in_order,
            .event_idx = extra & (1ULL << VIRTIO_RING_F_EVENT_IDX), .indirect_max = QVDEV_INDIRECT_MAX,
        };
        c->indirect = vdriver_layout_rings(c, base);
        g_assert_cmpuint(c->indirect + (uint64_t)num * QVDEV_INDIRECT_MAX * 16, <=, base + QVDEV_RING_STRIDE);
        memset(d->ram + base, 0, QVDEV_RING_STRIDE);
        d->vq[q] = vdriver_queue_new(&d->gm, c);
        g_assert_nonnull(d->vq[q]);
        qvirtio_pci_set_rings(v, c->desc, c->driver, c->device);
        qtest_writew(d->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    }
    d->nq = nq;
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    g_assert_cmphex(qvirtio_pci_get_status(v) & VIRTIO_CONFIG_S_DRIVER_OK, ==, VIRTIO_CONFIG_S_DRIVER_OK);
    return want;
}

void qvdev_kick(QVirtioDev *d, unsigned q)
{
    if (vdriver_kick_prepare(d->vq[q])) {
        qvirtio_pci_notify(&d->v, (uint16_t)q);
    }
}

void *qvdev_wait_used(QVirtioDev *d, unsigned q, uint32_t *len)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;
    void *tok;

    while (!(tok = vdriver_get_buf(d->vq[q], len, NULL))) {
        g_assert_null(vdriver_error(d->vq[q]));
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(100);
    }
    g_assert_null(vdriver_error(d->vq[q]));
    return tok;
}

void qvdev_add_layout_tests(const char *prefix, const char *name, GTestDataFunc fn)
{
    for (size_t i = 0; i < VDRIVER_NUM_LAYOUTS; i++) {
        char *path = g_strdup_printf("%s/%s/%s", prefix, name, vdriver_layouts[i].name);

        g_test_add_data_func(path, &vdriver_layouts[i], fn);
        g_free(path);
    }
}
