/*
 * The feature registry (STYLE.md §7). A bit is offered only if a row here
 * says it is implemented by its owner; devices add their rows as they land.
 */
#include <stdio.h>
#include <string.h>

#include "hw/virtio/virtio-features.h"

#define SHARED(bit_, owner_, impl_, name_) \
    { .device_id = 0, .bit = (bit_), .owner = (owner_), .implemented = (impl_), .name = (name_) }
#define DEVICE(id_, bit_, impl_, name_) \
    { .device_id = (id_), .bit = (bit_), .owner = VIRTIO_FEATURE_DEVICE, .implemented = (impl_), .name = (name_) }

/* Device ids (spec 5): the registry keeps device bits apart by them. */
#define ID_NET 1
#define ID_BLOCK 2
#define ID_SCSI 8

const VirtIOFeatureInfo virtio_feature_table[] = {
    SHARED(VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_FEATURE_RING, true, "NOTIFY_ON_EMPTY"),
    /* Implied by VERSION_1: the core never assumes a chain layout. */
    SHARED(VIRTIO_F_ANY_LAYOUT, VIRTIO_FEATURE_RING, true, "ANY_LAYOUT"),
    SHARED(VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_FEATURE_RING, true, "RING_INDIRECT_DESC"),
    SHARED(VIRTIO_RING_F_EVENT_IDX, VIRTIO_FEATURE_RING, true, "RING_EVENT_IDX"),
    SHARED(VIRTIO_F_BAD_FEATURE, VIRTIO_FEATURE_TRANSPORT, false, "BAD_FEATURE"),
    SHARED(VIRTIO_F_VERSION_1, VIRTIO_FEATURE_RING, true, "VERSION_1"),
    /* No IOMMU: guest addresses are physical. */
    SHARED(VIRTIO_F_ACCESS_PLATFORM, VIRTIO_FEATURE_TRANSPORT, false, "ACCESS_PLATFORM"),
    SHARED(VIRTIO_F_RING_PACKED, VIRTIO_FEATURE_RING, true, "RING_PACKED"),
    SHARED(VIRTIO_F_IN_ORDER, VIRTIO_FEATURE_RING, true, "IN_ORDER"),
    SHARED(VIRTIO_F_ORDER_PLATFORM, VIRTIO_FEATURE_TRANSPORT, false, "ORDER_PLATFORM"),
    SHARED(VIRTIO_F_SR_IOV, VIRTIO_FEATURE_TRANSPORT, false, "SR_IOV"),
    SHARED(VIRTIO_F_NOTIFICATION_DATA, VIRTIO_FEATURE_TRANSPORT, false, "NOTIFICATION_DATA"),
    SHARED(VIRTIO_F_NOTIF_CONFIG_DATA, VIRTIO_FEATURE_TRANSPORT, false, "NOTIF_CONFIG_DATA"),
    SHARED(VIRTIO_F_RING_RESET, VIRTIO_FEATURE_TRANSPORT, false, "RING_RESET"),
    /* virtio-blk, spec 5.2.3 (VIRTIO_BLK_F_* in hw/virtio/virtio-blk.h) */
    DEVICE(ID_BLOCK, 1, true, "SIZE_MAX"),
    DEVICE(ID_BLOCK, 2, true, "SEG_MAX"),
    DEVICE(ID_BLOCK, 4, false, "GEOMETRY"),
    DEVICE(ID_BLOCK, 5, true, "RO"),
    DEVICE(ID_BLOCK, 6, true, "BLK_SIZE"),
    DEVICE(ID_BLOCK, 9, true, "FLUSH"),
    DEVICE(ID_BLOCK, 10, false, "TOPOLOGY"),
    DEVICE(ID_BLOCK, 11, true, "CONFIG_WCE"),
    DEVICE(ID_BLOCK, 12, true, "MQ"),
    DEVICE(ID_BLOCK, 13, true, "DISCARD"),
    DEVICE(ID_BLOCK, 14, true, "WRITE_ZEROES"),
    /* virtio-scsi, spec 5.6.3 (VIRTIO_SCSI_F_* in hw/virtio/virtio-scsi.h) */
    DEVICE(ID_SCSI, 0, false, "INOUT"),         /* bidirectional commands are refused */
    DEVICE(ID_SCSI, 1, false, "HOTPLUG"),       /* no hotplug events are generated */
    DEVICE(ID_SCSI, 2, true, "CHANGE"),         /* PARAM_CHANGE on capacity change */
    DEVICE(ID_SCSI, 3, false, "T10_PI"),
    /* virtio-net, spec 5.1.3 (VIRTIO_NET_F_* in hw/virtio/virtio-net.h) */
    DEVICE(ID_NET, 0, false, "CSUM"),
    DEVICE(ID_NET, 1, false, "GUEST_CSUM"),
    DEVICE(ID_NET, 2, false, "CTRL_GUEST_OFFLOADS"),
    DEVICE(ID_NET, 3, true, "MTU"),
    DEVICE(ID_NET, 5, true, "MAC"),
    DEVICE(ID_NET, 7, false, "GUEST_TSO4"),
    DEVICE(ID_NET, 8, false, "GUEST_TSO6"),
    DEVICE(ID_NET, 9, false, "GUEST_ECN"),
    DEVICE(ID_NET, 10, false, "GUEST_UFO"),
    DEVICE(ID_NET, 11, false, "HOST_TSO4"),
    DEVICE(ID_NET, 12, false, "HOST_TSO6"),
    DEVICE(ID_NET, 13, false, "HOST_ECN"),
    DEVICE(ID_NET, 14, false, "HOST_UFO"),
    DEVICE(ID_NET, 15, true, "MRG_RXBUF"),
    DEVICE(ID_NET, 16, true, "STATUS"),
    DEVICE(ID_NET, 17, true, "CTRL_VQ"),
    DEVICE(ID_NET, 18, true, "CTRL_RX"),
    DEVICE(ID_NET, 19, false, "CTRL_VLAN"),
    DEVICE(ID_NET, 20, false, "CTRL_RX_EXTRA"),
    DEVICE(ID_NET, 21, false, "GUEST_ANNOUNCE"),
    DEVICE(ID_NET, 22, true, "MQ"),
    DEVICE(ID_NET, 23, true, "CTRL_MAC_ADDR"),
    { .name = NULL },
};

const VirtIOFeatureInfo *virtio_feature_lookup(uint16_t device_id, unsigned bit)
{
    const VirtIOFeatureInfo *shared = NULL;

    for (const VirtIOFeatureInfo *f = virtio_feature_table; f->name; f++) {
        if (f->bit != bit) {
            continue;
        }
        if (device_id && f->device_id == device_id) {
            return f;
        }
        if (f->device_id == 0) {
            shared = f;
        }
    }
    return shared;
}

const char *virtio_feature_name(uint16_t device_id, unsigned bit)
{
    const VirtIOFeatureInfo *f = virtio_feature_lookup(device_id, bit);
    return f ? f->name : "unknown";
}

uint64_t virtio_features_implemented(uint16_t device_id, VirtIOFeatureOwner owner)
{
    uint64_t mask = 0;

    for (unsigned bit = 0; bit < 64; bit++) {
        const VirtIOFeatureInfo *f = virtio_feature_lookup(device_id, bit);
        if (f && f->owner == owner && f->implemented) {
            mask |= 1ULL << bit;
        }
    }
    return mask;
}

uint64_t virtio_ring_features(void)
{
    return virtio_features_implemented(0, VIRTIO_FEATURE_RING);
}

uint64_t virtio_ring_features_select(bool in_order, bool packed, bool event_idx, bool indirect_desc)
{
    uint64_t off = (in_order ? 0 : 1ULL << VIRTIO_F_IN_ORDER) |
                   (packed ? 0 : 1ULL << VIRTIO_F_RING_PACKED) |
                   (event_idx ? 0 : 1ULL << VIRTIO_RING_F_EVENT_IDX) |
                   (indirect_desc ? 0 : 1ULL << VIRTIO_RING_F_INDIRECT_DESC);

    return virtio_ring_features() & ~off;
}

void virtio_features_describe(uint16_t device_id, uint64_t features, char *buf, unsigned size)
{
    unsigned used = 0;

    if (size == 0) {
        return;
    }
    buf[0] = '\0';
    for (unsigned bit = 0; bit < 64; bit++) {
        char unknown[16];
        const char *name;
        int n;

        if (!(features & (1ULL << bit))) {
            continue;
        }
        name = virtio_feature_name(device_id, bit);
        if (!strcmp(name, "unknown")) {
            snprintf(unknown, sizeof(unknown), "bit%u", bit);
            name = unknown;
        }
        n = snprintf(buf + used, size - used, "%s%s", used ? "," : "", name);
        if (n < 0 || (unsigned)n >= size - used) {
            return;             /* truncated, still terminated */
        }
        used += n;
    }
}
