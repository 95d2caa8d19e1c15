/*
 * The feature registry: every virtio feature bit vdm knows, who owns it and
 * whether it is implemented (STYLE.md §7). Offered features are always an
 * allowlist built from this table; an unlisted bit is never offered.
 */
#ifndef HW_VIRTIO_VIRTIO_FEATURES_H
#define HW_VIRTIO_VIRTIO_FEATURES_H

#include <stdbool.h>
#include <stdint.h>

/* Ring and transport bits (spec 6, "Reserved Feature Bits"). */
#define VIRTIO_F_NOTIFY_ON_EMPTY        24
#define VIRTIO_F_ANY_LAYOUT             27
#define VIRTIO_RING_F_INDIRECT_DESC     28
#define VIRTIO_RING_F_EVENT_IDX         29
#define VIRTIO_F_BAD_FEATURE            30      /* legacy: never offered */
#define VIRTIO_F_VERSION_1              32
#define VIRTIO_F_ACCESS_PLATFORM        33
#define VIRTIO_F_RING_PACKED            34
#define VIRTIO_F_IN_ORDER               35
#define VIRTIO_F_ORDER_PLATFORM         36
#define VIRTIO_F_SR_IOV                 37
#define VIRTIO_F_NOTIFICATION_DATA      38
#define VIRTIO_F_NOTIF_CONFIG_DATA      39
#define VIRTIO_F_RING_RESET             40

/* Who implements a bit. */
typedef enum VirtIOFeatureOwner {
    VIRTIO_FEATURE_RING,        /* hw/virtio/virtio.c */
    VIRTIO_FEATURE_TRANSPORT,   /* virtio-pci / virtio-mmio */
    VIRTIO_FEATURE_DEVICE,      /* a device model (device_id names which) */
    VIRTIO_FEATURE_VHOST_USER,  /* vhost-user protocol layer */
} VirtIOFeatureOwner;

typedef struct VirtIOFeatureInfo {
    uint16_t device_id;         /* 0 for bits shared by every device */
    uint8_t bit;
    VirtIOFeatureOwner owner;
    bool implemented;
    const char *name;
} VirtIOFeatureInfo;

/* The table, terminated by a row with name NULL. */
extern const VirtIOFeatureInfo virtio_feature_table[];

/* The row for @bit of @device_id (device rows first, then shared rows), or NULL. */
const VirtIOFeatureInfo *virtio_feature_lookup(uint16_t device_id, unsigned bit);

/* Name of a bit, "unknown" if unlisted. */
const char *virtio_feature_name(uint16_t device_id, unsigned bit);

/* Mask of implemented bits with @owner for @device_id (shared rows included). */
uint64_t virtio_features_implemented(uint16_t device_id, VirtIOFeatureOwner owner);

/* The ring bits the core implements: what every device offers on top of its own. */
uint64_t virtio_ring_features(void);

/*
 * The ring bits a device offers, given its common properties (QEMU's
 * in_order, packed, event_idx, indirect_desc): virtio_ring_features() with
 * the ones turned off removed.
 */
uint64_t virtio_ring_features_select(bool in_order, bool packed, bool event_idx, bool indirect_desc);

/* Write "NAME,NAME,..." for @features into @buf (always NUL-terminated). */
void virtio_features_describe(uint16_t device_id, uint64_t features, char *buf, unsigned size);

#endif
