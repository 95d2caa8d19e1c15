/*
 * virtio-pci modern transport (virtio spec 4.1); see include/hw/virtio/virtio-pci.h.
 *
 * Register writes map to the core's configuration calls; the core refuses
 * what it must (a running queue's config, bad sizes, unoffered features) and
 * this transport adds the spec's ordering rules on top: queue configuration
 * is frozen once the queue is enabled or the driver set DRIVER_OK
 * (spec 4.1.4.3.2 "The driver MUST configure the other virtqueue fields
 * before enabling the virtqueue"), features once FEATURES_OK is set.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/pci/msix.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/qdev.h"

/* ---- common configuration (spec 4.1.4.3) ---- */

static bool queue_valid(const VirtIOPCIProxy *p)
{
    return p->queue_select < p->vdev->num_queues;
}

/* Queue config is writable only before the queue is enabled and before DRIVER_OK. */
static bool queue_config_writable(const VirtIOPCIProxy *p)
{
    VirtIODevice *vdev = p->vdev;

    return queue_valid(p) && !(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) &&
           !virtio_queue_get_enabled(vdev, p->queue_select) &&
           !virtio_queue_is_running(vdev, p->queue_select);
}

/* The structure as the driver would see it right now, little-endian. */
static void common_image(VirtIOPCIProxy *p, uint8_t img[0x40])
{
    VirtIODevice *vdev = p->vdev;
    unsigned q = p->queue_select;
    hwaddr desc = 0, drv = 0, dev = 0;
    uint32_t df = 0;

    memset(img, 0, 0x40);
    if (p->dfselect < 2) {
        df = (uint32_t)(vdev->host_features >> (32 * p->dfselect));
    }
    pci_set_long(img + VIRTIO_PCI_COMMON_DFSELECT, p->dfselect);
    pci_set_long(img + VIRTIO_PCI_COMMON_DF, df);
    pci_set_long(img + VIRTIO_PCI_COMMON_GFSELECT, p->gfselect);
    pci_set_long(img + VIRTIO_PCI_COMMON_GF, p->gfselect < 2 ? p->guest_features[p->gfselect] : 0);
    pci_set_word(img + VIRTIO_PCI_COMMON_MSIX, p->config_vector);
    pci_set_word(img + VIRTIO_PCI_COMMON_NUMQ, (uint16_t)vdev->num_queues);
    img[VIRTIO_PCI_COMMON_STATUS] = vdev->status;
    img[VIRTIO_PCI_COMMON_CFGGENERATION] = (uint8_t)vdev->generation;
    pci_set_word(img + VIRTIO_PCI_COMMON_Q_SELECT, p->queue_select);
    pci_set_word(img + VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_NO_VECTOR);
    if (queue_valid(p)) {
        pci_set_word(img + VIRTIO_PCI_COMMON_Q_MSIX, virtio_queue_get_vector(vdev, q));
        pci_set_word(img + VIRTIO_PCI_COMMON_Q_SIZE, (uint16_t)virtio_queue_get_num(vdev, q));
        pci_set_word(img + VIRTIO_PCI_COMMON_Q_ENABLE, virtio_queue_get_enabled(vdev, q));
        pci_set_word(img + VIRTIO_PCI_COMMON_Q_NOFF, (uint16_t)q);
        virtio_queue_get_rings(vdev, q, &desc, &drv, &dev);
    }
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_DESCLO, (uint32_t)desc);
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_DESCHI, (uint32_t)(desc >> 32));
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_AVAILLO, (uint32_t)drv);
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_AVAILHI, (uint32_t)(drv >> 32));
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_USEDLO, (uint32_t)dev);
    pci_set_long(img + VIRTIO_PCI_COMMON_Q_USEDHI, (uint32_t)(dev >> 32));
}

static uint64_t common_read(VirtIOPCIProxy *p, hwaddr off, unsigned size)
{
    uint8_t img[0x40];
    uint64_t v = 0;

    if (off >= sizeof(img)) {
        return 0;
    }
    common_image(p, img);
    for (unsigned i = 0; i < size && off + i < sizeof(img); i++) {
        v |= (uint64_t)img[off + i] << (8 * i);
    }
    return v;
}

/* Replace the 32-bit half (@hi) of ring address @which (0 desc, 1 driver, 2 device). */
static void set_ring_half(VirtIOPCIProxy *p, int which, bool hi, uint32_t val)
{
    hwaddr a[3];

    virtio_queue_get_rings(p->vdev, p->queue_select, &a[0], &a[1], &a[2]);
    a[which] = hi ? (a[which] & 0xffffffffull) | ((uint64_t)val << 32)
                  : (a[which] & ~0xffffffffull) | val;
    virtio_queue_set_rings(p->vdev, p->queue_select, a[0], a[1], a[2]);
}

static void virtio_pci_reset(VirtIOPCIProxy *p)
{
    virtio_set_status(p->vdev, 0);
    p->guest_features[0] = p->guest_features[1] = 0;
    p->queue_select = 0;
    p->config_vector = VIRTIO_NO_VECTOR;     /* the core resets the queue vectors */
    pci_set_irq(&p->pci_dev, 0);
}

static void status_write(VirtIOPCIProxy *p, uint8_t val)
{
    VirtIODevice *vdev = p->vdev;

    if (val == 0) {
        virtio_pci_reset(p);
        return;
    }
    if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        uint64_t f = ((uint64_t)p->guest_features[1] << 32) | p->guest_features[0];

        /* spec 3.1.1: the device refuses FEATURES_OK for features it did not offer */
        if (virtio_set_features(vdev, f) < 0) {
            val &= (uint8_t)~VIRTIO_CONFIG_S_FEATURES_OK;
        }
    }
    virtio_set_status(vdev, val);
}

/*
 * A vector the table has, else VIRTIO_MSI_NO_VECTOR: the driver reads the
 * register back to learn whether the device took it (spec 4.1.5.1.2).
 */
static uint16_t checked_vector(const VirtIOPCIProxy *p, uint32_t v)
{
    v &= 0xffff;
    return v < msix_nr_vectors(&p->pci_dev) ? (uint16_t)v : VIRTIO_NO_VECTOR;
}

static void common_write(VirtIOPCIProxy *p, hwaddr off, uint64_t val, unsigned size)
{
    VirtIODevice *vdev = p->vdev;
    uint32_t v = (uint32_t)val;

    switch (off) {
    case VIRTIO_PCI_COMMON_DFSELECT:
        p->dfselect = v;
        break;
    case VIRTIO_PCI_COMMON_GFSELECT:
        p->gfselect = v;
        break;
    case VIRTIO_PCI_COMMON_GF:
        if (p->gfselect < 2 && !(vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
            p->guest_features[p->gfselect] = v;
        }
        break;
    case VIRTIO_PCI_COMMON_MSIX:
        p->config_vector = checked_vector(p, v);
        break;
    case VIRTIO_PCI_COMMON_Q_MSIX:
        if (queue_valid(p)) {
            virtio_queue_set_vector(vdev, p->queue_select, checked_vector(p, v));
        }
        break;
    case VIRTIO_PCI_COMMON_STATUS:
        status_write(p, (uint8_t)v);
        break;
    case VIRTIO_PCI_COMMON_Q_SELECT:
        p->queue_select = (uint16_t)v;
        break;
    case VIRTIO_PCI_COMMON_Q_SIZE:
        if (queue_config_writable(p)) {
            virtio_queue_set_num(vdev, p->queue_select, v & 0xffff);    /* refuses 0 / too big */
        }
        break;
    case VIRTIO_PCI_COMMON_Q_ENABLE:
        /* spec 4.1.4.3.2: the driver MUST NOT write 0 (no RING_RESET offered) */
        if ((v & 0xffff) == 1 && queue_config_writable(p)) {
            virtio_queue_set_enabled(vdev, p->queue_select, true);
        }
        break;
    case VIRTIO_PCI_COMMON_Q_DESCLO:
    case VIRTIO_PCI_COMMON_Q_DESCHI:
    case VIRTIO_PCI_COMMON_Q_AVAILLO:
    case VIRTIO_PCI_COMMON_Q_AVAILHI:
    case VIRTIO_PCI_COMMON_Q_USEDLO:
    case VIRTIO_PCI_COMMON_Q_USEDHI:
        if (queue_config_writable(p)) {
            int which = (int)(off - VIRTIO_PCI_COMMON_Q_DESCLO) / 8;
            bool hi = (off & 4) != 0;

            if (size == 8 && !hi) {
                set_ring_half(p, which, false, (uint32_t)val);
                set_ring_half(p, which, true, (uint32_t)(val >> 32));
            } else {
                set_ring_half(p, which, hi, v);
            }
        }
        break;
    default:
        break;                  /* read-only or reserved: ignored */
    }
}

/* The driver notified queue @q (modern notify area or legacy QUEUE_NOTIFY). */
static void queue_notify(VirtIOPCIProxy *p, uint64_t q)
{
    VirtIODevice *vdev = p->vdev;

    /* a notification for a queue the device does not have is ignored */
    if (q >= vdev->num_queues) {
        return;
    }
    if (p->queue_notifier) {
        p->queue_notifier(p->queue_notifier_opaque, (unsigned)q);     /* vhost: the backend's kick */
    } else {
        virtio_queue_notify(vdev, (unsigned)q);
    }
}

/* ---- the BAR ---- */

static uint64_t bar_read(void *opaque, hwaddr off, unsigned size)
{
    VirtIOPCIProxy *p = opaque;
    VirtIODevice *vdev = p->vdev;

    if (off < VIRTIO_PCI_ISR_OFFSET) {
        return common_read(p, off - VIRTIO_PCI_COMMON_OFFSET, size);
    }
    if (off < VIRTIO_PCI_DEVICE_OFFSET) {
        uint8_t isr;

        if (off != VIRTIO_PCI_ISR_OFFSET) {
            return 0;
        }
        /* spec 4.1.4.5: reading ISR resets it and de-asserts the interrupt */
        isr = vdev->isr;
        vdev->isr = 0;
        pci_set_irq(&p->pci_dev, 0);
        return isr;
    }
    if (off < VIRTIO_PCI_NOTIFY_OFFSET) {
        hwaddr c = off - VIRTIO_PCI_DEVICE_OFFSET;
        uint64_t v = 0;

        for (unsigned i = 0; i < size; i++) {
            if (c + i < vdev->config_len) {
                v |= (uint64_t)vdev->config[c + i] << (8 * i);
            }
        }
        return v;
    }
    return 0;                   /* notify region reads as 0 */
}

static void bar_write(void *opaque, hwaddr off, uint64_t val, unsigned size)
{
    VirtIOPCIProxy *p = opaque;
    VirtIODevice *vdev = p->vdev;

    if (off < VIRTIO_PCI_ISR_OFFSET) {
        common_write(p, off - VIRTIO_PCI_COMMON_OFFSET, val, size);
    } else if (off >= VIRTIO_PCI_DEVICE_OFFSET && off < VIRTIO_PCI_NOTIFY_OFFSET) {
        hwaddr c = off - VIRTIO_PCI_DEVICE_OFFSET;
        uint8_t buf[8];

        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(val >> (8 * i));
        }
        if (p->config_write && c < vdev->config_len) {
            p->config_write(vdev, (uint32_t)c, buf, size);
        }
    } else if (off >= VIRTIO_PCI_NOTIFY_OFFSET) {
        hwaddr q = (off - VIRTIO_PCI_NOTIFY_OFFSET) / VIRTIO_PCI_NOTIFY_MULTIPLIER;

        queue_notify(p, q);
    }
    /* ISR is read-only */
}

static const MMIOOps virtio_pci_bar_ops = { .read = bar_read, .write = bar_write };

/* ---- PCI configuration access capability (spec 4.1.4.9) ---- */

/*
 * The access the cfg cap's bar/offset/length describe, or false when it is
 * not one the device performs: the bar must be the modern BAR, the length
 * 1, 2 or 4, the offset a multiple of it (spec 4.1.4.9.1: the driver MUST
 * NOT do otherwise) and the whole access inside the BAR. QEMU ignores the
 * bar field and aligns the offset down; vdm ignores such accesses instead.
 */
static bool cfg_cap_target(VirtIOPCIProxy *p, uint32_t *off, unsigned *len)
{
    const uint8_t *c = p->pci_dev.config + p->cfg_cap;
    uint32_t o = pci_get_long(c + VIRTIO_PCI_CFG_CAP_OFFSET), l = pci_get_long(c + VIRTIO_PCI_CFG_CAP_LENGTH);

    if (c[VIRTIO_PCI_CFG_CAP_BAR] != VIRTIO_PCI_BAR || (l != 1 && l != 2 && l != 4) || o % l ||
        o >= VIRTIO_PCI_BAR_SIZE || l > VIRTIO_PCI_BAR_SIZE - o) {
        return false;
    }
    *off = o;
    *len = l;
    return true;
}

/* Whether config access [@addr, @addr + @len) touches the first byte of pci_cfg_data (QEMU's trigger). */
static bool cfg_cap_data_access(const VirtIOPCIProxy *p, uint32_t addr, unsigned len)
{
    uint32_t data = p->cfg_cap + VIRTIO_PCI_CFG_CAP_DATA;

    return p->cfg_cap && addr <= data && data < addr + len;
}

/* Context: main loop; a read of pci_cfg_data reads the BAR into it first. */
static void virtio_pci_config_read(PCIDevice *d, uint32_t addr, unsigned len)
{
    VirtIOPCIProxy *p = (VirtIOPCIProxy *)d;
    uint32_t off;
    unsigned n;

    if (p->vdev && cfg_cap_data_access(p, addr, len) && cfg_cap_target(p, &off, &n)) {
        uint64_t v = bar_read(p, off, n);

        for (unsigned i = 0; i < n; i++) {
            d->config[p->cfg_cap + VIRTIO_PCI_CFG_CAP_DATA + i] = (uint8_t)(v >> (8 * i));
        }
    }
}

/* Context: main loop; a write of pci_cfg_data writes its first cap.length bytes to the BAR. */
static void virtio_pci_config_written(PCIDevice *d, uint32_t addr, unsigned len)
{
    VirtIOPCIProxy *p = (VirtIOPCIProxy *)d;
    uint64_t v = 0;
    uint32_t off;
    unsigned n;

    if (p->vdev && cfg_cap_data_access(p, addr, len) && cfg_cap_target(p, &off, &n)) {
        for (unsigned i = 0; i < n; i++) {
            v |= (uint64_t)d->config[p->cfg_cap + VIRTIO_PCI_CFG_CAP_DATA + i] << (8 * i);
        }
        bar_write(p, off, v, n);
    }
}

/* struct virtio_pci_cfg_cap: bar, offset, length and pci_cfg_data writable, all 0 at first (as QEMU). */
static void add_cfg_cap(VirtIOPCIProxy *p)
{
    PCIDevice *d = &p->pci_dev;
    uint8_t c = pci_add_capability(d, PCI_CAP_ID_VNDR, VIRTIO_PCI_CFG_CAP_SIZE);

    g_assert(c);        /* host bug: the config space has room for it */
    d->config[c + 2] = VIRTIO_PCI_CFG_CAP_SIZE;
    d->config[c + 3] = VIRTIO_PCI_CAP_PCI_CFG;
    d->wmask[c + VIRTIO_PCI_CFG_CAP_BAR] = 0xff;
    memset(d->wmask + c + VIRTIO_PCI_CFG_CAP_OFFSET, 0xff, 12);    /* offset, length, pci_cfg_data */
    p->cfg_cap = c;
    d->config_read = virtio_pci_config_read;
    d->config_written = virtio_pci_config_written;
}

/* ---- legacy interface (spec 4.1.4.8): I/O BAR 0 of transitional devices ---- */

/* Where the device configuration starts: after the MSI-X vector registers while MSI-X is enabled. */
static unsigned legacy_config_off(const VirtIOPCIProxy *p)
{
    return msix_enabled(&p->pci_dev) ? VIRTIO_PCI_LEGACY_CONFIG_MSIX : VIRTIO_PCI_LEGACY_CONFIG;
}

/* Byte @a of the legacy register block as the driver would read it now (ISR without clearing). */
static uint8_t legacy_byte(VirtIOPCIProxy *p, uint32_t a)
{
    VirtIODevice *vdev = p->vdev;
    unsigned cfg = legacy_config_off(p);
    uint8_t img[VIRTIO_PCI_LEGACY_CONFIG_MSIX] = { 0 };
    hwaddr desc = 0, drv, dev;

    if (a >= cfg) {
        return a - cfg < vdev->config_len ? vdev->config[a - cfg] : 0;
    }
    pci_set_long(img + VIRTIO_PCI_LEGACY_HOST_FEATURES, (uint32_t)vdev->host_features);
    pci_set_long(img + VIRTIO_PCI_LEGACY_GUEST_FEATURES, (uint32_t)vdev->guest_features);
    if (queue_valid(p)) {
        virtio_queue_get_rings(vdev, p->queue_select, &desc, &drv, &dev);
        pci_set_long(img + VIRTIO_PCI_LEGACY_QUEUE_PFN, (uint32_t)(desc >> VIRTIO_PCI_LEGACY_PFN_SHIFT));
        pci_set_word(img + VIRTIO_PCI_LEGACY_QUEUE_NUM,
                     (uint16_t)virtio_queue_get_max_num(vdev, p->queue_select));
    }
    pci_set_word(img + VIRTIO_PCI_LEGACY_QUEUE_SEL, p->queue_select);
    img[VIRTIO_PCI_LEGACY_STATUS] = vdev->status;
    img[VIRTIO_PCI_LEGACY_ISR] = vdev->isr;
    pci_set_word(img + VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR, p->config_vector);
    pci_set_word(img + VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR,
                 queue_valid(p) ? virtio_queue_get_vector(vdev, p->queue_select) : VIRTIO_NO_VECTOR);
    return img[a];
}

static uint32_t legacy_read(void *opaque, uint32_t off, unsigned size)
{
    VirtIOPCIProxy *p = opaque;
    uint32_t v = 0;

    for (unsigned i = 0; i < size; i++) {
        v |= (uint32_t)legacy_byte(p, off + i) << (8 * i);
    }
    /* reading ISR returns and clears it and de-asserts INTx, as the modern ISR */
    if (off <= VIRTIO_PCI_LEGACY_ISR && VIRTIO_PCI_LEGACY_ISR < off + size &&
        VIRTIO_PCI_LEGACY_ISR < legacy_config_off(p)) {
        p->vdev->isr = 0;
        pci_set_irq(&p->pci_dev, 0);
    }
    return v;
}

/*
 * QUEUE_PFN: the legacy layout (spec 2.7.2 legacy interfaces) of a queue of
 * QueueNumMax entries from page @pfn: descriptors, the available ring right
 * after them, the used ring at the next 4 KiB boundary. The queue is then
 * enabled; 0 resets the device, as QEMU does.
 */
static void legacy_queue_pfn(VirtIOPCIProxy *p, uint32_t pfn)
{
    VirtIODevice *vdev = p->vdev;
    unsigned q = p->queue_select, num;
    hwaddr desc, avail, used;

    if (pfn == 0) {
        virtio_pci_reset(p);
        return;
    }
    if (!queue_config_writable(p)) {
        return;
    }
    num = virtio_queue_get_max_num(vdev, q);
    desc = (hwaddr)pfn << VIRTIO_PCI_LEGACY_PFN_SHIFT;
    avail = desc + 16ull * num;
    used = (avail + 6 + 2ull * num + VIRTIO_PCI_LEGACY_VRING_ALIGN - 1) & ~(hwaddr)(VIRTIO_PCI_LEGACY_VRING_ALIGN - 1);
    if (virtio_queue_set_num(vdev, q, num) == 0 && virtio_queue_set_rings(vdev, q, desc, avail, used) == 0) {
        virtio_queue_set_enabled(vdev, q, true);
    }
}

static void legacy_write(void *opaque, uint32_t off, uint32_t val, unsigned size)
{
    VirtIOPCIProxy *p = opaque;
    VirtIODevice *vdev = p->vdev;
    unsigned cfg = legacy_config_off(p);

    if (off >= cfg) {
        uint8_t buf[4];

        for (unsigned i = 0; i < size; i++) {
            buf[i] = (uint8_t)(val >> (8 * i));
        }
        if (p->config_write && off - cfg < vdev->config_len) {
            p->config_write(vdev, off - cfg, buf, size);
        }
        return;
    }
    switch (off) {
    case VIRTIO_PCI_LEGACY_GUEST_FEATURES:
        /*
         * No FEATURES_OK in legacy: the device takes the offered bits, as QEMU
         * does, but not once the driver is running (STYLE.md §1: configuration
         * is frozen after activation; QEMU would re-negotiate mid-stream).
         */
        if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
            virtio_set_features(vdev, val & vdev->host_features);
        }
        break;
    case VIRTIO_PCI_LEGACY_QUEUE_PFN:
        legacy_queue_pfn(p, val);
        break;
    case VIRTIO_PCI_LEGACY_QUEUE_SEL:
        p->queue_select = (uint16_t)val;
        break;
    case VIRTIO_PCI_LEGACY_QUEUE_NOTIFY:
        queue_notify(p, val & 0xffff);
        break;
    case VIRTIO_PCI_LEGACY_STATUS:
        if ((val & 0xff) == 0) {
            virtio_pci_reset(p);
        } else {
            virtio_set_status(vdev, (uint8_t)val);
        }
        break;
    case VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR:
        p->config_vector = checked_vector(p, val);
        break;
    case VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR:
        if (queue_valid(p)) {
            virtio_queue_set_vector(vdev, p->queue_select, checked_vector(p, val));
        }
        break;
    default:
        break;                  /* read-only (features, num, ISR) or reserved: ignored */
    }
}

static const IOPortOps virtio_pci_legacy_ops = { .read = legacy_read, .write = legacy_write };

/* The transitional device id (spec 4.1.2.3) of virtio device @id, or 0 when it has none. */
static uint16_t legacy_device_id(uint16_t id)
{
    static const uint16_t ids[][2] = {
        { 1, 0x1000 }, { 2, 0x1001 }, { 5, 0x1002 }, { 3, 0x1003 }, { 8, 0x1004 }, { 4, 0x1005 },
        { 9, 0x1009 },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        if (ids[i][0] == id) {
            return ids[i][1];
        }
    }
    return 0;
}

/* ---- transport ops: MSI-X when enabled, else INTx ---- */

static void virtio_pci_notify_vector(VirtIOPCIProxy *p, uint16_t vector)
{
    if (msix_enabled(&p->pci_dev)) {
        /* VIRTIO_MSI_NO_VECTOR: no interrupt at all (INTx is off under MSI-X) */
        if (vector != VIRTIO_NO_VECTOR) {
            msix_notify(&p->pci_dev, vector);
        }
        return;
    }
    pci_set_irq(&p->pci_dev, 1);    /* the core set the ISR bits */
}

static void virtio_pci_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOPCIProxy *p = vdev->transport_opaque;

    virtio_pci_notify_vector(p, virtio_queue_get_vector(vdev, virtio_get_queue_index(vq)));
}

static void virtio_pci_notify_config(VirtIODevice *vdev)
{
    VirtIOPCIProxy *p = vdev->transport_opaque;

    virtio_pci_notify_vector(p, p->config_vector);
}

void virtio_pci_set_queue_notifier(VirtIOPCIProxy *proxy, void (*fn)(void *opaque, unsigned queue),
                                   void *opaque)
{
    proxy->queue_notifier = fn;
    proxy->queue_notifier_opaque = opaque;
}

void virtio_pci_notify_queue_irq(VirtIOPCIProxy *proxy, unsigned n)
{
    VirtIODevice *vdev = proxy->vdev;

    if (!vdev || n >= vdev->num_queues) {
        return;
    }
    vdev->isr |= 1;             /* spec 4.1.4.5: queue interrupt */
    virtio_pci_notify_vector(proxy, virtio_queue_get_vector(vdev, n));
}

static const VirtIOTransportOps virtio_pci_transport_ops = {
    .notify_queue = virtio_pci_notify,
    .notify_config = virtio_pci_notify_config,
};

/* struct virtio_pci_cap (and virtio_pci_notify_cap), spec 4.1.4. */
static void add_virtio_cap(PCIDevice *d, uint8_t cfg_type, uint32_t offset, uint32_t length)
{
    uint8_t len = cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG ? 20 : 16;
    uint8_t c = pci_add_capability(d, PCI_CAP_ID_VNDR, len);

    g_assert(c);        /* host bug: the config space has room for these */
    d->config[c + 2] = len;
    d->config[c + 3] = cfg_type;
    d->config[c + 4] = VIRTIO_PCI_BAR;
    pci_set_long(d->config + c + 8, offset);
    pci_set_long(d->config + c + 12, length);
    if (cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
        pci_set_long(d->config + c + 16, VIRTIO_PCI_NOTIFY_MULTIPLIER);
    }
}

int virtio_pci_realize(VirtIOPCIProxy *proxy, VirtIODevice *vdev, const char *type_name, int devfn,
                       uint32_t class_code, unsigned nvectors)
{
    PCIDevice *d = &proxy->pci_dev;
    uint16_t legacy_id = proxy->legacy ? legacy_device_id(vdev->device_id) : 0;
    int ret;

    if (proxy->legacy && !legacy_id) {
        return -ENOTSUP;
    }
    /* transitional: the legacy device id, revision 0, subsystem id = virtio device id (as QEMU) */
    ret = pci_device_init(d, type_name, devfn, PCI_VENDOR_ID_REDHAT_QUMRANET,
                          legacy_id ? legacy_id : PCI_DEVICE_ID_VIRTIO_MODERN_BASE + vdev->device_id,
                          class_code, legacy_id ? 0 : 1);
    if (ret < 0) {
        return ret;
    }
    proxy->vdev = vdev;
    pci_set_word(d->config + PCI_SUBSYSTEM_VENDOR_ID, PCI_SUBVENDOR_ID_REDHAT_QUMRANET);
    pci_set_word(d->config + PCI_SUBSYSTEM_ID, legacy_id ? vdev->device_id : 0x1100);   /* QEMU's ids */
    if (legacy_id) {
        /* QEMU: the register block with the MSI-X vectors plus the device config, rounded up */
        uint32_t size = 4;

        while (size < VIRTIO_PCI_LEGACY_CONFIG_MSIX + vdev->config_len) {
            size <<= 1;
        }
        pci_register_io_bar(d, VIRTIO_PCI_LEGACY_BAR, size, &virtio_pci_legacy_ops, proxy);
    }
    d->config[PCI_INTERRUPT_PIN] = 1;                        /* INTA */
    /*
     * QEMU's order: common, ISR, device, notify, PCI cfg access, then MSI-X;
     * each goes to the head of the list, so it reads MSI-X (0x98), cfg
     * (0x84), notify (0x70), device (0x60), ISR (0x50), common (0x40).
     */
    add_virtio_cap(d, VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_COMMON_OFFSET, VIRTIO_PCI_REGION_SIZE);
    add_virtio_cap(d, VIRTIO_PCI_CAP_ISR_CFG, VIRTIO_PCI_ISR_OFFSET, VIRTIO_PCI_REGION_SIZE);
    add_virtio_cap(d, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_DEVICE_OFFSET, VIRTIO_PCI_REGION_SIZE);
    add_virtio_cap(d, VIRTIO_PCI_CAP_NOTIFY_CFG, VIRTIO_PCI_NOTIFY_OFFSET, VIRTIO_PCI_REGION_SIZE);
    add_cfg_cap(proxy);
    pci_register_bar(d, VIRTIO_PCI_BAR, PCI_BASE_ADDRESS_MEM_TYPE_64 | PCI_BASE_ADDRESS_MEM_PREFETCH,
                     VIRTIO_PCI_BAR_SIZE, &virtio_pci_bar_ops, proxy);
    proxy->config_vector = VIRTIO_NO_VECTOR;
    if (nvectors) {
        ret = msix_init_exclusive_bar(d, nvectors, VIRTIO_PCI_MSIX_BAR);
        if (ret < 0) {
            pci_device_remove(d);
            proxy->vdev = NULL;
            return ret;
        }
    }
    vdev->transport = &virtio_pci_transport_ops;
    vdev->transport_opaque = proxy;
    return 0;
}

void virtio_pci_unrealize(VirtIOPCIProxy *proxy)
{
    if (proxy->vdev) {
        virtio_set_status(proxy->vdev, 0);
        proxy->vdev->transport = NULL;
        proxy->vdev = NULL;
    }
}

void virtio_pci_conf_init(VirtIOPCIConf *c)
{
    c->devfn = -1;
    c->vectors = -1;
    c->legacy = false;
}

int virtio_pci_conf_set(VirtIOPCIConf *c, const char *type_name, const char *key, const char *val,
                        char **errp)
{
    if (!strcmp(key, "driver")) {
        return 1;
    }
    if (!strcmp(key, "addr")) {
        c->devfn = qdev_parse_pci_addr(val);
        if (c->devfn < 0) {
            *errp = g_strdup_printf("Property '%s.addr' doesn't take value '%s'", type_name, val);
            return -1;
        }
        return 1;
    }
    if (qdev_is_pci_common_prop(key)) {
        return 1;
    }
    if (!strcmp(key, "vectors")) {
        char *end;

        c->vectors = strtol(val, &end, 0);
        if (end == val || *end || c->vectors < 0 || c->vectors > VIRTIO_PCI_MAX_VECTORS) {
            *errp = g_strdup_printf("Property '%s.vectors' doesn't take value '%s' (0..%d)", type_name,
                                    val, VIRTIO_PCI_MAX_VECTORS);
            return -1;
        }
        return 1;
    }
    if (!strcmp(key, "disable-legacy")) {
        bool b;

        /* off (and QEMU's auto on a root bus): a transitional device with the legacy I/O BAR */
        if (!strcmp(val, "auto")) {
            b = false;
        } else if (!qdev_str_bool(val, &b)) {
            *errp = g_strdup_printf("Property '%s.disable-legacy' doesn't take value '%s'", type_name, val);
            return -1;
        }
        c->legacy = !b;
        return 1;
    }
    if (!strcmp(key, "disable-modern")) {
        bool b;

        if (!qdev_str_bool(val, &b) || b) {
            *errp = g_strdup_printf("vdm: %s supports only disable-modern=off", type_name);
            return -1;
        }
        return 1;
    }
    return 0;
}

void virtio_pci_conf_help(void)
{
    qdev_print_prop("addr", "int32", "Slot and optional function number, example: 06.0 or 06", NULL);
    qdev_print_prop("vectors", "uint32", "MSI-X vectors (default num-queues + 1, 0: no MSI-X, max 64)",
                    NULL);
    qdev_print_prop("disable-legacy", "OnOffAuto",
                    "on (default here: modern only), off/auto: transitional with the legacy I/O BAR", NULL);
    qdev_print_prop("disable-modern", "bool", "false (vdm: always modern)", NULL);
}

bool virtio_pci_realize_conf(VirtIOPCIProxy *proxy, VirtIODevice *vdev, const char *type_name,
                             uint32_t class_code, const VirtIOPCIConf *c, unsigned default_vectors,
                             char **errp)
{
    long vectors = c->vectors >= 0 ? c->vectors : MIN(default_vectors, VIRTIO_PCI_MAX_VECTORS);

    proxy->legacy = c->legacy;
    if (c->legacy && !legacy_device_id(vdev->device_id)) {
        *errp = g_strdup("device is modern-only, use disable-legacy=on");       /* QEMU's message */
        return false;
    }
    if (virtio_pci_realize(proxy, vdev, type_name, c->devfn, class_code, (unsigned)vectors) < 0) {
        *errp = c->devfn >= 0 ? g_strdup_printf("PCI: slot %d function %d not available for %s",
                                                PCI_SLOT(c->devfn), PCI_FUNC(c->devfn), type_name)
                              : g_strdup_printf("PCI: no slot available for %s", type_name);
        return false;
    }
    proxy->pci_dev.qdev.unplug = pci_device_unplug;
    return true;
}
