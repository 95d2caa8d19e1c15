/*
 * vhost-user-scsi: a virtio-scsi adapter whose control, event and request
 * queues a vhost-user backend serves (vdm-vhost-user-scsi, SPDK, QEMU's
 * contrib/vhost-user-scsi, ...), on the vhost-user device base. As QEMU's
 * vhost-scsi-common, the device model builds the configuration space itself
 * (the backend's defaults: sense 96 and CDB 32 bytes, which a driver may not
 * change) and offers VERSION_1, the ring bits its properties allow,
 * VIRTIO_SCSI_F_HOTPLUG and VIRTIO_SCSI_F_CHANGE; vhost_user_scsi_feature_bits
 * leaves each backend-controlled bit (IN_ORDER, RING_PACKED, HOTPLUG, ...) to
 * the backend.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VHOST_USER_SCSI_H
#define HW_VIRTIO_VHOST_USER_SCSI_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "hw/virtio/vhost-user-base.h"

typedef struct VHostUserSCSIConf {
    uint32_t num_queues;        /* "num_queues": request queues, default 1 */
    uint32_t queue_size;        /* "virtqueue_size", default 128, power of two <= 1024 */
    uint32_t max_sectors;       /* "max_sectors", default 0xffff */
    uint32_t cmd_per_lun;       /* "cmd_per_lun", default 128 */
    bool hotplug;               /* "hotplug": offer VIRTIO_SCSI_F_HOTPLUG (if the backend does), default on */
    bool param_change;          /* "param_change": offer VIRTIO_SCSI_F_CHANGE, default on */
    bool in_order;              /* "in_order", default off (QEMU) */
    bool packed;                /* "packed", default off */
    bool event_idx;             /* "event_idx", default on */
    bool indirect_desc;         /* "indirect_desc", default on */
} VHostUserSCSIConf;

typedef struct VHostUserSCSI {
    VHostUserDevice base;       /* first: the VirtIODevice and the base (every queue the backend's) */
    VHostUserSCSIConf conf;
} VHostUserSCSI;

void vhost_user_scsi_conf_init(VHostUserSCSIConf *conf);
bool vhost_user_scsi_conf_set(VHostUserSCSIConf *conf, const char *name, const char *value, GError **errp);
void vhost_user_scsi_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                               void *opaque);

/* Connect (socket @fd, or @path when -1) and set up the device. False with *@errp set. */
bool vhost_user_scsi_realize(VHostUserSCSI *s, const VHostUserSCSIConf *conf, const char *path, int fd,
                             unsigned reconnect_ms, GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp);
void vhost_user_scsi_unrealize(VHostUserSCSI *s);
/*
 * Driver config write: sense_size and cdb_size are writable in virtio-scsi,
 * but a vhost-user backend keeps its own: writing another value breaks the
 * device (QEMU exits). Other fields -EPERM.
 */
int vhost_user_scsi_set_config(VHostUserSCSI *s, uint32_t offset, const uint8_t *data, uint32_t len);

#endif
