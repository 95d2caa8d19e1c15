/*
 * vhost-user-blk device model (see include/hw/virtio/vhost-user-blk.h).
 *
 * Context: main loop thread only.
 */
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

static VHostUserBlk *to_vub(VirtIODevice *vdev)
{
    return (VHostUserBlk *)vdev;    /* parent_obj is first */
}

/* Start the backend on the rings the driver set up; a failure is the device's, not the guest's. */
static void vhost_user_blk_start(VHostUserBlk *s)
{
    VirtIODevice *vdev = &s->parent_obj;
    char *err = NULL;

    if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) || vdev->broken || s->dev.started ||
        !vhost_dev_connected(&s->dev)) {
        return;
    }
    /* The core validated the rings at DRIVER_OK; the backend processes them, not the core. */
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        virtio_queue_deactivate(vdev, n);
    }
    /* a backend that came back with fewer features cannot serve what the driver accepted */
    if (vhost_backend_features(vhost_user_blk_feature_bits, vdev->guest_features) &
        ~s->dev.backend_features) {
        virtio_error(vdev, "vhost-user backend no longer offers the negotiated features");
        return;
    }
    if (vhost_dev_start(&s->dev, vdev, &err) < 0) {
        fprintf(stderr, "vdm: vhost-user-blk: %s\n", err);
        g_free(err);
    }
}

static void vhost_user_blk_set_status(VirtIODevice *vdev, uint8_t status)
{
    vhost_user_blk_start(to_vub(vdev));
}

static void vhost_user_blk_reset(VirtIODevice *vdev)
{
    vhost_dev_reset(&to_vub(vdev)->dev);
}

static const VirtIODeviceOps vhost_user_blk_ops = {
    .set_status = vhost_user_blk_set_status,
    .reset = vhost_user_blk_reset,
};

static void vhost_user_blk_call(void *opaque, unsigned n)
{
    VHostUserBlk *s = opaque;

    if (s->notify_irq) {
        s->notify_irq(s->notify_opaque, n);
    }
}

/* Refresh config space from the backend (at realize and after a reconnect). */
static int vhost_user_blk_fetch_config(VHostUserBlk *s, char **errp)
{
    VirtIODevice *vdev = &s->parent_obj;
    uint8_t cfg[sizeof(VirtIOBlkConfig)];
    int ret = vhost_dev_get_config(&s->dev, cfg, sizeof(cfg), errp);

    if (ret == 0) {
        memcpy(vdev->config, cfg, sizeof(cfg));
    }
    return ret;
}

static void vhost_user_blk_connection(void *opaque, bool lost)
{
    VHostUserBlk *s = opaque;
    char *err = NULL;

    if (lost) {
        fprintf(stderr, "vdm: vhost-user-blk: backend disconnected%s\n",
                s->dev.reconnect_ms ? ", reconnecting" : "");
        return;
    }
    if (vhost_user_blk_fetch_config(s, &err) < 0) {
        fprintf(stderr, "vdm: vhost-user-blk: %s\n", err);
        g_free(err);
    }
    vhost_user_blk_start(s);
}

static const VhostDevOps vhost_user_blk_dev_ops = {
    .call = vhost_user_blk_call,
    .connection = vhost_user_blk_connection,
};

void vhost_user_blk_handle_notify(void *opaque, unsigned n)
{
    VHostUserBlk *s = opaque;

    vhost_dev_kick(&s->dev, n);
}

bool vhost_user_blk_realize(VHostUserBlk *s, const VHostUserBlkConf *conf, const char *path, int fd,
                            unsigned reconnect_ms, GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp)
{
    VirtIODevice *vdev = &s->parent_obj;
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
    if (vhost_dev_init(&s->dev, path, fd, vhost_user_blk_feature_bits, conf->num_queues, mem, ram_fd,
                       &vhost_user_blk_dev_ops, s, errp) < 0) {
        virtio_cleanup(vdev);
        return false;
    }
    s->dev.queue_size = conf->queue_size;
    vhost_dev_set_reconnect(&s->dev, reconnect_ms);
    if (vhost_user_blk_fetch_config(s, errp) < 0) {
        vhost_dev_cleanup(&s->dev);
        virtio_cleanup(vdev);
        return false;
    }
    /* What QEMU's vhost-user-blk offers of its own, then the backend's say through the table. */
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
    s->own_features = own;
    vdev->host_features = vhost_get_features(vhost_user_blk_feature_bits, s->dev.backend_features, own);
    vdev->ops = &vhost_user_blk_ops;
    return true;

fail_fd:
    if (fd >= 0) {
        close(fd);
    }
    return false;
}

void vhost_user_blk_unrealize(VHostUserBlk *s)
{
    vhost_dev_cleanup(&s->dev);
    virtio_cleanup(&s->parent_obj);
}

int vhost_user_blk_set_config(VHostUserBlk *s, uint32_t offset, const uint8_t *data, uint32_t len)
{
    VirtIODevice *vdev = &s->parent_obj;
    const uint32_t wce = offsetof(VirtIOBlkConfig, writeback);

    /* Only the cache mode is writable, and only with CONFIG_WCE (spec 5.2.4). */
    if (!virtio_vdev_has_feature(vdev, VIRTIO_BLK_F_CONFIG_WCE) ||
        offset != wce || len != 1) {
        return -EINVAL;
    }
    vdev->config[wce] = data[0] ? 1 : 0;
    return vhost_dev_set_config(&s->dev, &vdev->config[wce], wce, 1);
}
