/*
 * vhost-user-blk device model (see include/hw/virtio/vhost-user-blk.h).
 *
 * Context: main loop thread only.
 */
#include <endian.h>
#include <errno.h>
#include <glib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/qdev-properties.h"
#include "hw/virtio/vhost-user-blk.h"

#define PROP(name_, type_, field_, desc_) DEFINE_PROP(name_, PROP_TYPE_##type_, VHostUserBlkConf, field_, desc_)

static const Property vhost_user_blk_props[] = {
    PROP("num-queues", UINT32, num_queues, "request queues (the backend must have as many)"),
    PROP("queue-size", UINT32, queue_size, "entries per queue (power of two, at most 1024)"),
    PROP("in_order", BOOL, in_order, "offer VIRTIO_F_IN_ORDER (if the backend does)"),
    PROP("packed", BOOL, packed, "offer VIRTIO_F_RING_PACKED (if the backend does)"),
    PROP("event_idx", BOOL, event_idx, "offer VIRTIO_RING_F_EVENT_IDX (if the backend does)"),
    PROP("indirect_desc", BOOL, indirect_desc, "offer VIRTIO_RING_F_INDIRECT_DESC (if the backend does)"),
    PROP("config-wce", BOOL, config_wce, "offer VIRTIO_BLK_F_CONFIG_WCE (if the backend does)"),
    PROP("discard", BOOL, discard, "offer VIRTIO_BLK_F_DISCARD (if the backend does)"),
    PROP("write-zeroes", BOOL, write_zeroes, "offer VIRTIO_BLK_F_WRITE_ZEROES (if the backend does)"),
};

void vhost_user_blk_conf_init(VHostUserBlkConf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->num_queues = 1;
    conf->queue_size = 128;
    conf->event_idx = true;
    conf->indirect_desc = true;
    conf->config_wce = true;
    conf->discard = true;
    conf->write_zeroes = true;
}

bool vhost_user_blk_conf_set(VHostUserBlkConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, vhost_user_blk_props, G_N_ELEMENTS(vhost_user_blk_props), "vhost-user-blk",
                         name, value, errp);
}

void vhost_user_blk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                              void *opaque)
{
    qdev_prop_list(vhost_user_blk_props, G_N_ELEMENTS(vhost_user_blk_props), fn, opaque);
}

/*
 * Config space from the backend (at realize and after a reconnect), except
 * num_queues: the device has its own (QEMU's vhost-user-blk overrides it
 * too); a backend with more queues must not make the driver ask for them.
 */
static int vhost_user_blk_fetch_config(VHostUserBase *b, char **errp)
{
    VirtIODevice *vdev = b->vdev;
    VHostUserBlk *s = (VHostUserBlk *)vdev;     /* the VirtIODevice is first */
    VirtIOBlkConfig cfg;
    int ret = vhost_dev_get_config(&b->dev, (uint8_t *)&cfg, sizeof(cfg), errp);

    if (ret == 0) {
        cfg.num_queues = htole16((uint16_t)s->conf.num_queues);
        memcpy(vdev->config, &cfg, sizeof(cfg));
    }
    return ret;
}

bool vhost_user_blk_realize(VHostUserBlk *s, const VHostUserBlkConf *conf, const char *path, int fd,
                            unsigned reconnect_ms, GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp)
{
    VirtIODevice *vdev = &s->base.parent_obj;
    uint64_t own;

    if (conf->num_queues == 0 || conf->num_queues > 64) {
        *errp = g_strdup("vhost-user-blk: invalid number of IO queues");
        goto fail_fd;
    }
    if (conf->queue_size <= 2 || conf->queue_size > 1024 || (conf->queue_size & (conf->queue_size - 1))) {
        *errp = g_strdup("vhost-user-blk: queue size must be a power of two, more than 2, at most 1024");
        goto fail_fd;
    }
    if (virtio_init(vdev, "vhost-user-blk", VIRTIO_ID_BLOCK, sizeof(VirtIOBlkConfig), mem,
                    conf->num_queues, conf->queue_size) < 0) {
        *errp = g_strdup("vhost-user-blk: cannot allocate the device");
        goto fail_fd;
    }
    s->conf = *conf;
    /* What QEMU's vhost-user-blk offers of its own; the base masks it with the backend's through the table. */
    own = virtio_ring_features_select(conf->in_order, conf->packed, conf->event_idx, conf->indirect_desc) |
          1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_GEOMETRY |
          1ULL << VIRTIO_BLK_F_TOPOLOGY | 1ULL << VIRTIO_BLK_F_BLK_SIZE | 1ULL << VIRTIO_BLK_F_FLUSH |
          1ULL << VIRTIO_BLK_F_RO | 1ULL << VIRTIO_BLK_F_SIZE_MAX;
    if (conf->num_queues > 1) {
        own |= 1ULL << VIRTIO_BLK_F_MQ;
    }
    if (conf->config_wce) {
        own |= 1ULL << VIRTIO_BLK_F_CONFIG_WCE;
    }
    if (conf->discard) {
        own |= 1ULL << VIRTIO_BLK_F_DISCARD;
    }
    if (conf->write_zeroes) {
        own |= 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
    }
    s->base.vhost.fetch_config = vhost_user_blk_fetch_config;
    return vhost_user_device_realize(&s->base, "vhost-user-blk", vhost_user_blk_feature_bits, own, path, fd,
                                   reconnect_ms, mem, ram_fd, errp);

fail_fd:
    if (fd >= 0) {
        close(fd);
    }
    return false;
}

void vhost_user_blk_unrealize(VHostUserBlk *s)
{
    vhost_user_device_unrealize(&s->base);
}

int vhost_user_blk_set_config(VHostUserBlk *s, uint32_t offset, const uint8_t *data, uint32_t len)
{
    VirtIODevice *vdev = &s->base.parent_obj;
    const uint32_t wce = offsetof(VirtIOBlkConfig, writeback);

    /* Only the cache mode is writable, and only with CONFIG_WCE (spec 5.2.4). */
    if (!virtio_vdev_has_feature(vdev, VIRTIO_BLK_F_CONFIG_WCE) ||
        offset != wce || len != 1) {
        return -EINVAL;
    }
    vdev->config[wce] = data[0] ? 1 : 0;
    return vhost_dev_set_config(&s->base.vhost.dev, &vdev->config[wce], wce, 1);
}
