/*
 * virtio-mmio transport, version 2 (virtio spec 4.2); see
 * include/hw/virtio/virtio-mmio.h. Registers map to the core's configuration
 * calls, which refuse what they must; the transport adds the spec's
 * ordering rules (queue set-up before QueueReady and DRIVER_OK, features
 * before FEATURES_OK) and the size check QEMU makes on QueueReady.
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "hw/virtio/virtio-mmio.h"
#include "sysemu/mmio.h"
#include "sysemu/qtest.h"

typedef struct VirtIOMMIOProxy {
    uint64_t base;
    int irq;
    VirtIODevice *vdev;             /* NULL: no device plugged */
    VirtIOMMIOConfigWrite config_write;
    uint32_t host_features_sel, guest_features_sel;
    uint32_t guest_features[2];
    uint32_t queue_sel;
    uint32_t *queue_num;            /* QueueNum as written, per queue */
    uint32_t shm_sel;
} VirtIOMMIOProxy;

static VirtIOMMIOProxy *transports;
static unsigned n_transports;

/* ---- interrupt ---- */

/* The line follows InterruptStatus (the core's ISR bits). */
static void mmio_update_irq(VirtIOMMIOProxy *p)
{
    qtest_set_irq_out(p->irq, p->vdev && p->vdev->isr != 0);
}

static void mmio_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    mmio_update_irq(vdev->transport_opaque);   /* the core set the ISR bits */
}

static void mmio_notify_config(VirtIODevice *vdev)
{
    mmio_update_irq(vdev->transport_opaque);
}

static const VirtIOTransportOps virtio_mmio_transport_ops = {
    .notify_queue = mmio_notify,
    .notify_config = mmio_notify_config,
};

/* ---- registers ---- */

static bool queue_valid(const VirtIOMMIOProxy *p)
{
    return p->queue_sel < p->vdev->num_queues;
}

/* spec 4.2.2.3: queue registers only for an existing queue that is not ready, before DRIVER_OK. */
static bool queue_config_writable(const VirtIOMMIOProxy *p)
{
    VirtIODevice *vdev = p->vdev;

    return queue_valid(p) && !(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
           !virtio_queue_get_enabled(vdev, p->queue_sel) && !virtio_queue_is_running(vdev, p->queue_sel);
}

static void mmio_reset(VirtIOMMIOProxy *p)
{
    virtio_set_status(p->vdev, 0);
    p->host_features_sel = p->guest_features_sel = 0;
    p->guest_features[0] = p->guest_features[1] = 0;
    p->queue_sel = 0;
    p->shm_sel = 0;
    memset(p->queue_num, 0, p->vdev->num_queues * sizeof(p->queue_num[0]));
    mmio_update_irq(p);
}

static void status_write(VirtIOMMIOProxy *p, uint8_t val)
{
    VirtIODevice *vdev = p->vdev;

    if (val == 0) {
        mmio_reset(p);
        return;
    }
    if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        uint64_t f = (uint64_t)p->guest_features[1] << 32 | p->guest_features[0];

        /* spec 3.1.1: the device refuses FEATURES_OK for features it did not offer */
        if (virtio_set_features(vdev, f) < 0) {
            val &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
        }
    }
    virtio_set_status(vdev, val);
}

/*
 * QueueReady = 1: the size written to QueueNum must be one the ring can
 * have (1..QueueNumMax, a power of two unless the packed layout was
 * negotiated); otherwise the queue stays not ready.
 */
static void queue_ready_write(VirtIOMMIOProxy *p, uint32_t val)
{
    VirtIODevice *vdev = p->vdev;
    unsigned q = p->queue_sel;
    uint32_t num;

    if (!queue_valid(p)) {
        return;
    }
    if (val == 0) {
        /* stopping a running queue needs a device reset; before that it is just not ready */
        if (!virtio_queue_is_running(vdev, q)) {
            virtio_queue_set_enabled(vdev, q, false);
        }
        return;
    }
    if (val != 1 || !queue_config_writable(p)) {
        return;
    }
    num = p->queue_num[q];
    if (num == 0 || num > virtio_queue_get_max_num(vdev, q) ||
        (!virtio_vdev_has_feature(vdev, VIRTIO_F_RING_PACKED) && (num & (num - 1)))) {
        return;
    }
    if (virtio_queue_set_num(vdev, q, num) == 0) {
        virtio_queue_set_enabled(vdev, q, true);
    }
}

/* Replace one 32-bit half of ring address @which (0 desc, 1 driver/avail, 2 device/used). */
static void set_ring_half(VirtIOMMIOProxy *p, int which, bool hi, uint32_t val)
{
    hwaddr a[3];

    virtio_queue_get_rings(p->vdev, p->queue_sel, &a[0], &a[1], &a[2]);
    a[which] = hi ? (a[which] & 0xffffffffull) | (uint64_t)val << 32 : (a[which] & ~0xffffffffull) | val;
    virtio_queue_set_rings(p->vdev, p->queue_sel, a[0], a[1], a[2]);
}

/* Whether @off is one of the six ring address registers: which ring (0 desc, 1 avail, 2 used), which half. */
static bool ring_reg(hwaddr off, int *which, bool *hi)
{
    if (off < VIRTIO_MMIO_QUEUE_DESC_LOW || off > VIRTIO_MMIO_QUEUE_USED_HIGH || (off & 0xf) > 4 || (off & 3)) {
        return false;
    }
    *which = (int)(off - VIRTIO_MMIO_QUEUE_DESC_LOW) / 0x10;
    *hi = off & 4;
    return true;
}

static uint32_t ring_half(VirtIOMMIOProxy *p, int which, bool hi)
{
    hwaddr a[3] = { 0, 0, 0 };

    if (queue_valid(p)) {
        virtio_queue_get_rings(p->vdev, p->queue_sel, &a[0], &a[1], &a[2]);
    }
    return (uint32_t)(hi ? a[which] >> 32 : a[which]);
}

static uint32_t reg_read(VirtIOMMIOProxy *p, hwaddr off)
{
    VirtIODevice *vdev = p->vdev;
    int which;
    bool hi;

    switch (off) {
    case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
    case VIRTIO_MMIO_VERSION:
        return VIRTIO_MMIO_VERSION_2;
    case VIRTIO_MMIO_VENDOR_ID:
        return VIRTIO_MMIO_VENDOR_QEMU;
    }
    if (!vdev) {
        return 0;               /* DeviceID 0: no device behind this transport */
    }
    if (ring_reg(off, &which, &hi)) {
        return ring_half(p, which, hi);
    }
    switch (off) {
    case VIRTIO_MMIO_DEVICE_ID:
        return vdev->device_id;
    case VIRTIO_MMIO_DEVICE_FEATURES:
        return p->host_features_sel < 2 ? (uint32_t)(vdev->host_features >> (32 * p->host_features_sel)) : 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return queue_valid(p) ? virtio_queue_get_max_num(vdev, p->queue_sel) : 0;
    case VIRTIO_MMIO_QUEUE_READY:
        return queue_valid(p) && virtio_queue_get_enabled(vdev, p->queue_sel);
    case VIRTIO_MMIO_INTERRUPT_STATUS:
        return vdev->isr;
    case VIRTIO_MMIO_STATUS:
        return vdev->status;
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
        return UINT32_MAX;      /* spec 4.2.2: a region that does not exist has length -1 */
    case VIRTIO_MMIO_CONFIG_GENERATION:
        return vdev->generation;
    default:
        return 0;               /* write-only or reserved */
    }
}

static void reg_write(VirtIOMMIOProxy *p, hwaddr off, uint32_t val)
{
    VirtIODevice *vdev = p->vdev;
    int which;
    bool hi;

    if (!vdev) {
        return;
    }
    if (ring_reg(off, &which, &hi)) {
        if (queue_config_writable(p)) {
            set_ring_half(p, which, hi, val);
        }
        return;
    }
    switch (off) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        p->host_features_sel = val;
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
        if (p->guest_features_sel < 2 && !(vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
            p->guest_features[p->guest_features_sel] = val;
        }
        break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        p->guest_features_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_SEL:
        p->queue_sel = val;
        break;
    case VIRTIO_MMIO_QUEUE_NUM:
        if (queue_config_writable(p)) {
            p->queue_num[p->queue_sel] = val;
        }
        break;
    case VIRTIO_MMIO_QUEUE_READY:
        queue_ready_write(p, val);
        break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
        /* without VIRTIO_F_NOTIFICATION_DATA the value is the queue index */
        if (val < vdev->num_queues) {
            virtio_queue_notify(vdev, val);
        }
        break;
    case VIRTIO_MMIO_INTERRUPT_ACK:
        vdev->isr &= (uint8_t)~val;
        mmio_update_irq(p);
        break;
    case VIRTIO_MMIO_STATUS:
        status_write(p, (uint8_t)val);
        break;
    case VIRTIO_MMIO_SHM_SEL:
        p->shm_sel = val;
        break;
    default:
        break;                  /* read-only or reserved: ignored */
    }
}

static uint64_t mmio_read(void *opaque, hwaddr off, unsigned size)
{
    VirtIOMMIOProxy *p = opaque;
    uint64_t v = 0;

    if (off >= VIRTIO_MMIO_CONFIG) {
        hwaddr c = off - VIRTIO_MMIO_CONFIG;

        for (unsigned i = 0; p->vdev && i < size; i++) {
            if (c + i < p->vdev->config_len) {
                v |= (uint64_t)p->vdev->config[c + i] << (8 * i);
            }
        }
        return v;
    }
    /* registers: 32-bit accesses only, as QEMU ("wrong size access to register") */
    return size == 4 ? reg_read(p, off) : 0;
}

static void mmio_write(void *opaque, hwaddr off, uint64_t val, unsigned size)
{
    VirtIOMMIOProxy *p = opaque;

    if (off >= VIRTIO_MMIO_CONFIG) {
        hwaddr c = off - VIRTIO_MMIO_CONFIG;
        uint8_t buf[8];

        if (!p->vdev || !p->config_write || c >= p->vdev->config_len) {
            return;
        }
        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(val >> (8 * i));
        }
        p->config_write(p->vdev, (uint32_t)c, buf, size);
        return;
    }
    if (size == 4) {
        reg_write(p, off, (uint32_t)val);
    }
}

static const MMIOOps virtio_mmio_ops = { .read = mmio_read, .write = mmio_write };

/* ---- transports ---- */

void virtio_mmio_transports_init(uint64_t base, unsigned n, int irq_base)
{
    g_assert(!transports && n > 0 && n <= VIRTIO_MMIO_MAX_TRANSPORTS);     /* machine set-up */
    transports = g_new0(VirtIOMMIOProxy, n);
    n_transports = n;
    for (unsigned i = 0; i < n; i++) {
        transports[i].base = base + (uint64_t)i * VIRTIO_MMIO_SIZE;
        transports[i].irq = irq_base + (int)i;
        if (mmio_region_add(transports[i].base, VIRTIO_MMIO_SIZE, &virtio_mmio_ops, &transports[i]) < 0) {
            g_error("virtio-mmio: cannot map transport %u", i);
        }
    }
}

void virtio_mmio_transports_cleanup(void)
{
    for (unsigned i = 0; i < n_transports; i++) {
        g_assert(!transports[i].vdev);      /* qdev_cleanup unplugged every device */
        mmio_region_del(transports[i].base, &transports[i]);
    }
    g_free(transports);
    transports = NULL;
    n_transports = 0;
}

bool virtio_mmio_bus_present(void)
{
    return n_transports > 0;
}

int virtio_mmio_plug(VirtIODevice *vdev, VirtIOMMIOConfigWrite config_write)
{
    for (unsigned i = n_transports; i-- > 0;) {
        VirtIOMMIOProxy *p = &transports[i];

        if (!p->vdev) {
            p->vdev = vdev;
            p->config_write = config_write;
            p->queue_num = g_new0(uint32_t, vdev->num_queues ? vdev->num_queues : 1);
            vdev->transport = &virtio_mmio_transport_ops;
            vdev->transport_opaque = p;
            mmio_reset(p);
            return (int)i;
        }
    }
    return -ENOSPC;
}

void virtio_mmio_unplug(VirtIODevice *vdev)
{
    VirtIOMMIOProxy *p = vdev->transport_opaque;

    if (!p || vdev->transport != &virtio_mmio_transport_ops) {
        return;
    }
    virtio_set_status(vdev, 0);
    qtest_set_irq_out(p->irq, 0);
    vdev->transport = NULL;
    vdev->transport_opaque = NULL;
    g_free(p->queue_num);
    memset(&p->guest_features, 0, sizeof(p->guest_features));
    p->queue_num = NULL;
    p->vdev = NULL;
    p->config_write = NULL;
}
