/*
 * vhost-user-scsi device model (see include/hw/virtio/vhost-user-scsi.h).
 *
 * Context: main loop thread only.
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>

#include "hw/qdev-properties.h"
#include "hw/virtio/vhost-user-scsi.h"
#include "hw/virtio/virtio-scsi.h"

#define PROP(name_, type_, field_, desc_) DEFINE_PROP(name_, PROP_TYPE_##type_, VHostUserSCSIConf, field_, desc_)

static const Property vhost_user_scsi_props[] = {
    PROP("num_queues", UINT32, num_queues, "request queues (the backend must have as many)"),
    PROP("virtqueue_size", UINT32, queue_size, "entries per queue (power of two, at most 1024)"),
    PROP("max_sectors", UINT32, max_sectors, "largest transfer in 512-byte sectors"),
    PROP("cmd_per_lun", UINT32, cmd_per_lun, "commands per LUN the driver may queue"),
    PROP("hotplug", BOOL, hotplug, "offer VIRTIO_SCSI_F_HOTPLUG (if the backend does)"),
    PROP("param_change", BOOL, param_change, "offer VIRTIO_SCSI_F_CHANGE"),
    PROP("in_order", BOOL, in_order, "offer VIRTIO_F_IN_ORDER (if the backend does)"),
    PROP("packed", BOOL, packed, "offer VIRTIO_F_RING_PACKED (if the backend does)"),
    PROP("event_idx", BOOL, event_idx, "offer VIRTIO_RING_F_EVENT_IDX (if the backend does)"),
    PROP("indirect_desc", BOOL, indirect_desc, "offer VIRTIO_RING_F_INDIRECT_DESC (if the backend does)"),
};

void vhost_user_scsi_conf_init(VHostUserSCSIConf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->num_queues = 1;
    conf->queue_size = 128;
    conf->max_sectors = 0xffff;
    conf->cmd_per_lun = 128;
    conf->hotplug = true;
    conf->param_change = true;
    conf->event_idx = true;
    conf->indirect_desc = true;
}

bool vhost_user_scsi_conf_set(VHostUserSCSIConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, vhost_user_scsi_props, G_N_ELEMENTS(vhost_user_scsi_props), "vhost-user-scsi",
                         name, value, errp);
}

void vhost_user_scsi_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                               void *opaque)
{
    qdev_prop_list(vhost_user_scsi_props, G_N_ELEMENTS(vhost_user_scsi_props), fn, opaque);
}

/* The configuration space a vhost backend works with (QEMU's vhost-scsi-common values). */
static void vhost_user_scsi_build_config(VHostUserSCSI *s)
{
    VirtIOSCSIConfig cfg = {
        .num_queues = htole32(s->conf.num_queues),
        .seg_max = htole32(s->conf.queue_size - 2),
        .max_sectors = htole32(s->conf.max_sectors),
        .cmd_per_lun = htole32(s->conf.cmd_per_lun),
        .event_info_size = htole32(sizeof(VirtIOSCSIEvent)),
        .sense_size = htole32(VIRTIO_SCSI_SENSE_DEFAULT_SIZE),
        .cdb_size = htole32(VIRTIO_SCSI_CDB_DEFAULT_SIZE),
        .max_channel = htole16(VIRTIO_SCSI_MAX_CHANNEL),
        .max_target = htole16(VIRTIO_SCSI_MAX_TARGET),
        .max_lun = htole32(VIRTIO_SCSI_MAX_LUN),
    };

    memcpy(s->base.parent_obj.config, &cfg, sizeof(cfg));
}

bool vhost_user_scsi_realize(VHostUserSCSI *s, const VHostUserSCSIConf *conf, const char *path, int fd,
                             unsigned reconnect_ms, GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp)
{
    VirtIODevice *vdev = &s->base.parent_obj;
    uint64_t own;

    if (conf->num_queues == 0 || conf->num_queues > 64) {
        *errp = g_strdup("vhost-user-scsi: num_queues must be 1..64");
        goto fail_fd;
    }
    if (conf->queue_size <= 2 || conf->queue_size > 1024 || (conf->queue_size & (conf->queue_size - 1))) {
        *errp = g_strdup("vhost-user-scsi: virtqueue_size must be a power of two, more than 2, at most 1024");
        goto fail_fd;
    }
    if (conf->max_sectors == 0 || conf->cmd_per_lun == 0) {
        *errp = g_strdup("vhost-user-scsi: max_sectors and cmd_per_lun must be > 0");
        goto fail_fd;
    }
    /* control, event, then the request queues: all of them the backend's */
    if (virtio_init(vdev, "vhost-user-scsi", VIRTIO_ID_SCSI, sizeof(VirtIOSCSIConfig), mem,
                    2 + conf->num_queues, conf->queue_size) < 0) {
        *errp = g_strdup("vhost-user-scsi: cannot allocate the device");
        goto fail_fd;
    }
    s->conf = *conf;
    vhost_user_scsi_build_config(s);
    own = virtio_ring_features_select(conf->in_order, conf->packed, conf->event_idx, conf->indirect_desc) |
          1ULL << VIRTIO_F_VERSION_1;
    if (conf->hotplug) {
        own |= 1ULL << VIRTIO_SCSI_F_HOTPLUG;
    }
    if (conf->param_change) {
        own |= 1ULL << VIRTIO_SCSI_F_CHANGE;
    }
    return vhost_user_device_realize(&s->base, "vhost-user-scsi", vhost_user_scsi_feature_bits, own,
                                   path, fd, reconnect_ms, mem, ram_fd, errp);

fail_fd:
    if (fd >= 0) {
        close(fd);
    }
    return false;
}

void vhost_user_scsi_unrealize(VHostUserSCSI *s)
{
    vhost_user_device_unrealize(&s->base);
}

int vhost_user_scsi_set_config(VHostUserSCSI *s, uint32_t offset, const uint8_t *data, uint32_t len)
{
    VirtIODevice *vdev = &s->base.parent_obj;
    const uint32_t sense = offsetof(VirtIOSCSIConfig, sense_size), cdb = offsetof(VirtIOSCSIConfig, cdb_size);

    if (len == 0 || offset >= sizeof(VirtIOSCSIConfig) || len > sizeof(VirtIOSCSIConfig) - offset) {
        return -EINVAL;
    }
    if (offset < sense || offset + len > cdb + 4) {
        return -EPERM;      /* spec 5.6.4: only sense_size and cdb_size are the driver's */
    }
    if (memcmp(vdev->config + offset, data, len)) {
        virtio_error(vdev, "vhost-user-scsi does not support changing the sense data and CDB sizes");
        return -EINVAL;
    }
    return 0;
}
