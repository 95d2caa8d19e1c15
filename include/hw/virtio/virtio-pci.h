/*
 * virtio-pci (virtio 1.x spec 4.1), modern interface, plus the legacy one
 * (spec 4.1.4.8, I/O BAR 0) on transitional devices (disable-legacy=off): a VirtIODevice
 * behind a PCI function with the vendor-specific capabilities for the
 * common, notify, ISR and device configuration structures, all in one
 * 64-bit memory BAR (BAR 4), laid out as QEMU lays them out:
 *
 *   0x0000 common cfg   0x1000 ISR   0x2000 device cfg   0x3000 notify
 *
 * A fifth vendor capability (cfg_type 5, spec 4.1.4.9) is a window into
 * BAR 4 through configuration space: the driver writes bar (4), offset and
 * length (1, 2 or 4, offset a multiple of it, inside the BAR) and then
 * reads or writes pci_cfg_data; anything else is ignored.
 *
 * Notify: queue N's notify address is 0x3000 + N * 4 (queue_notify_off = N,
 * notify_off_multiplier = 4). MSI-X (hw/pci/msix.h) in BAR 1 with
 * `nvectors` entries (QEMU's `vectors`; virtio-blk: num_queues + 1, at most
 * 64). msix_config / queue_msix_vector take a vector below the table size,
 * anything else reads back VIRTIO_MSI_NO_VECTOR (spec 4.1.5.1.2). With
 * MSI-X enabled a notification is the vector's message (none for
 * NO_VECTOR) and INTx stays low; otherwise every used-buffer and
 * configuration notification sets ISR and raises INTA. Reading ISR returns
 * and clears it and lowers INTA.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VIRTIO_PCI_H
#define HW_VIRTIO_VIRTIO_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio.h"

#define PCI_VENDOR_ID_REDHAT_QUMRANET   0x1af4
#define PCI_SUBVENDOR_ID_REDHAT_QUMRANET 0x1af4
#define PCI_DEVICE_ID_VIRTIO_MODERN_BASE 0x1040

/* cfg_type of struct virtio_pci_cap (spec 4.1.4). */
#define VIRTIO_PCI_CAP_COMMON_CFG   1
#define VIRTIO_PCI_CAP_NOTIFY_CFG   2
#define VIRTIO_PCI_CAP_ISR_CFG      3
#define VIRTIO_PCI_CAP_DEVICE_CFG   4
#define VIRTIO_PCI_CAP_PCI_CFG      5

/* struct virtio_pci_common_cfg offsets (spec 4.1.4.3). */
#define VIRTIO_PCI_COMMON_DFSELECT      0x00
#define VIRTIO_PCI_COMMON_DF            0x04
#define VIRTIO_PCI_COMMON_GFSELECT      0x08
#define VIRTIO_PCI_COMMON_GF            0x0c
#define VIRTIO_PCI_COMMON_MSIX          0x10
#define VIRTIO_PCI_COMMON_NUMQ          0x12
#define VIRTIO_PCI_COMMON_STATUS        0x14
#define VIRTIO_PCI_COMMON_CFGGENERATION 0x15
#define VIRTIO_PCI_COMMON_Q_SELECT      0x16
#define VIRTIO_PCI_COMMON_Q_SIZE        0x18
#define VIRTIO_PCI_COMMON_Q_MSIX        0x1a
#define VIRTIO_PCI_COMMON_Q_ENABLE      0x1c
#define VIRTIO_PCI_COMMON_Q_NOFF        0x1e
#define VIRTIO_PCI_COMMON_Q_DESCLO      0x20
#define VIRTIO_PCI_COMMON_Q_DESCHI      0x24
#define VIRTIO_PCI_COMMON_Q_AVAILLO     0x28
#define VIRTIO_PCI_COMMON_Q_AVAILHI     0x2c
#define VIRTIO_PCI_COMMON_Q_USEDLO      0x30
#define VIRTIO_PCI_COMMON_Q_USEDHI      0x34

/* struct virtio_pci_cfg_cap (spec 4.1.4.9): offsets within the capability. */
#define VIRTIO_PCI_CFG_CAP_BAR          4
#define VIRTIO_PCI_CFG_CAP_OFFSET       8
#define VIRTIO_PCI_CFG_CAP_LENGTH       12
#define VIRTIO_PCI_CFG_CAP_DATA         16
#define VIRTIO_PCI_CFG_CAP_SIZE         20

/* Legacy register block (spec 4.1.4.8) in I/O BAR 0 of transitional devices. */
#define VIRTIO_PCI_LEGACY_BAR                0
#define VIRTIO_PCI_LEGACY_HOST_FEATURES      0x00
#define VIRTIO_PCI_LEGACY_GUEST_FEATURES     0x04
#define VIRTIO_PCI_LEGACY_QUEUE_PFN          0x08
#define VIRTIO_PCI_LEGACY_QUEUE_NUM          0x0c
#define VIRTIO_PCI_LEGACY_QUEUE_SEL          0x0e
#define VIRTIO_PCI_LEGACY_QUEUE_NOTIFY       0x10
#define VIRTIO_PCI_LEGACY_STATUS             0x12
#define VIRTIO_PCI_LEGACY_ISR                0x13
#define VIRTIO_PCI_LEGACY_MSI_CONFIG_VECTOR  0x14
#define VIRTIO_PCI_LEGACY_MSI_QUEUE_VECTOR   0x16
#define VIRTIO_PCI_LEGACY_CONFIG             0x14    /* device config, MSI-X disabled */
#define VIRTIO_PCI_LEGACY_CONFIG_MSIX        0x18    /* device config, MSI-X enabled */
#define VIRTIO_PCI_LEGACY_PFN_SHIFT          12
#define VIRTIO_PCI_LEGACY_VRING_ALIGN        4096

#define VIRTIO_PCI_BAR                  4
#define VIRTIO_PCI_COMMON_OFFSET        0x0000
#define VIRTIO_PCI_ISR_OFFSET           0x1000
#define VIRTIO_PCI_DEVICE_OFFSET        0x2000
#define VIRTIO_PCI_NOTIFY_OFFSET        0x3000
#define VIRTIO_PCI_REGION_SIZE          0x1000
#define VIRTIO_PCI_NOTIFY_MULTIPLIER    4
#define VIRTIO_PCI_BAR_SIZE             0x4000
#define VIRTIO_PCI_MSIX_BAR             1
#define VIRTIO_PCI_MAX_VECTORS          64

typedef struct VirtIOPCIProxy {
    PCIDevice pci_dev;          /* first */
    VirtIODevice *vdev;
    uint32_t dfselect, gfselect;
    uint32_t guest_features[2];
    uint16_t queue_select;
    uint16_t config_vector;     /* msix_config */
    uint8_t cfg_cap;            /* offset of the PCI cfg access capability */
    bool legacy;                /* transitional: legacy I/O BAR 0 too (set before realize) */
    /* Device-specific config write (e.g. virtio_blk_set_config); NULL: read-only. */
    int (*config_write)(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len);
    /* vhost: queue notifications go here instead of the core (virtio_pci_set_queue_notifier). */
    void (*queue_notifier)(void *opaque, unsigned queue);
    void *queue_notifier_opaque;
} VirtIOPCIProxy;

/*
 * Put @vdev behind @proxy at @devfn (-1: first free slot): PCI ids (vendor
 * 0x1af4, device 0x1040 + device id, revision 1), capabilities, BAR 4 and
 * the transport ops. @class_code as QEMU gives it for the device type.
 * @nvectors MSI-X vectors (0: no MSI-X). Returns 0 or a negative errno
 * from pci_device_init / msix_init_exclusive_bar.
 */
int virtio_pci_realize(VirtIOPCIProxy *proxy, VirtIODevice *vdev, const char *type_name, int devfn,
                       uint32_t class_code, unsigned nvectors);
void virtio_pci_unrealize(VirtIOPCIProxy *proxy);

/*
 * vhost: the driver's notifications of every queue the device has go to
 * @fn(@opaque, queue) (a backend's kick eventfd) instead of the core's
 * handlers. NULL restores the core.
 */
void virtio_pci_set_queue_notifier(VirtIOPCIProxy *proxy, void (*fn)(void *opaque, unsigned queue),
                                   void *opaque);
/*
 * vhost: a used-buffer notification for queue @n that did not come through
 * the core (a backend's call eventfd): ISR bit 0 and INTx, or the queue's
 * MSI-X vector.
 */
void virtio_pci_notify_queue_irq(VirtIOPCIProxy *proxy, unsigned n);

/* Properties every virtio-pci device takes, collected from -device options. */
typedef struct VirtIOPCIConf {
    int devfn;                  /* addr=, -1: first free slot */
    long vectors;               /* vectors=, -1: the device's default */
    bool legacy;                /* disable-legacy=off|auto: transitional */
} VirtIOPCIConf;

void virtio_pci_conf_init(VirtIOPCIConf *c);
/*
 * Take @key=@val if it is a PCI or virtio-pci property of @type_name (addr,
 * bus, id, multifunction, vectors, disable-legacy, disable-modern). Returns
 * 1 taken, 0 not such a property, -1 bad value (*@errp set).
 */
int virtio_pci_conf_set(VirtIOPCIConf *c, const char *type_name, const char *key, const char *val,
                        char **errp);
/* The -device TYPE,help lines of those properties. */
void virtio_pci_conf_help(void);
/*
 * virtio_pci_realize with @c (@default_vectors when vectors= was not given,
 * capped at VIRTIO_PCI_MAX_VECTORS); sets DeviceState.unplug. Returns false with
 * *@errp set (QEMU's slot messages).
 */
bool virtio_pci_realize_conf(VirtIOPCIProxy *proxy, VirtIODevice *vdev, const char *type_name,
                             uint32_t class_code, const VirtIOPCIConf *c, unsigned default_vectors,
                             char **errp);

#endif
