/*
 * The vhost-user device base (include/hw/virtio/vhost-user-base.h).
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <unistd.h>

#include "hw/virtio/vhost-user-base.h"

/* Queues 0..this-1 are the backend's now. */
static unsigned base_active_queues(const VHostUserBase *b)
{
    return b->dev.start_nvqs ? b->dev.start_nvqs : b->nvqs;
}

void vhost_user_base_set_active_queues(VHostUserBase *b, unsigned n)
{
    b->dev.start_nvqs = n < b->nvqs ? n : 0;
}

/* Start the backend on the rings the driver set up; a failure is the device's, not the guest's. */
static void vhost_user_base_start(VHostUserBase *b)
{
    VirtIODevice *vdev = b->vdev;
    char *err = NULL;
    int ret;

    if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) || vdev->broken || b->dev.started ||
        !vhost_dev_connected(&b->dev)) {
        return;
    }
    /* The core validated the rings at DRIVER_OK; the backend processes its own, not the core. */
    for (unsigned n = 0; n < base_active_queues(b); n++) {
        virtio_queue_deactivate(vdev, n);
    }
    /* A backend that came back with fewer features cannot serve what the driver accepted. */
    if (vhost_backend_features(b->feature_bits, vdev->guest_features) & ~b->dev.backend_features) {
        virtio_error(vdev, "vhost-user backend no longer offers the negotiated features");
        return;
    }
    ret = vhost_dev_start(&b->dev, vdev, &err);
    if (ret == 0) {
        b->start_failures = 0;
        if (b->started) {
            b->started(b);
        }
    } else if ((ret == -EPIPE || ret == -ENOTCONN || ret == -ETIMEDOUT) &&
               ++b->start_failures < VHOST_USER_BASE_START_TRIES) {
        /* the backend went away meanwhile: the reconnect restarts the rings */
        fprintf(stderr, "vdm: %s: %s\n", b->name, err);
    } else {
        /* refused (a ring bigger than the backend's, ...) or hung up every time: the driver must learn it */
        virtio_error(vdev, "%s", err);
    }
    g_free(err);
}

void vhost_user_base_status_changed(void *opaque, bool reset)
{
    VHostUserBase *b = opaque;

    if (reset) {
        vhost_dev_reset(&b->dev);
        b->start_failures = 0;
    } else {
        vhost_user_base_start(b);
    }
}

static void base_call(void *opaque, unsigned n)
{
    VHostUserBase *b = opaque;

    if (b->notify_irq) {
        b->notify_irq(b->notify_opaque, n);
    }
}

static void base_connection(void *opaque, bool lost)
{
    VHostUserBase *b = opaque;
    char *err = NULL;

    if (lost) {
        fprintf(stderr, "vdm: %s: backend disconnected%s\n", b->name,
                b->dev.reconnect_ms ? ", reconnecting" : "");
        return;
    }
    if (b->fetch_config && b->fetch_config(b, &err) < 0) {
        fprintf(stderr, "vdm: %s: %s\n", b->name, err);
        g_free(err);
    }
    vhost_user_base_start(b);
}

/* The backend's CONFIG_CHANGE_MSG: re-read the config space and tell the driver (as QEMU, it rereads). */
static void base_config_changed(void *opaque)
{
    VHostUserBase *b = opaque;
    char *err = NULL;

    if (b->fetch_config && b->fetch_config(b, &err) < 0) {
        fprintf(stderr, "vdm: %s: %s\n", b->name, err);
        g_free(err);
    }
    virtio_notify_config(b->vdev);
}

static const VhostDevOps vhost_user_base_dev_ops = {
    .call = base_call,
    .connection = base_connection,
    .config_changed = base_config_changed,
};

void vhost_user_base_handle_notify(void *opaque, unsigned n)
{
    VHostUserBase *b = opaque;

    if (n < base_active_queues(b)) {
        vhost_dev_kick(&b->dev, n);
    } else {
        virtio_queue_notify(b->vdev, n);    /* a queue the device model serves (net's control queue) */
    }
}

bool vhost_user_base_realize(VHostUserBase *b, VirtIODevice *vdev, unsigned nvqs, const char *name,
                             const int *feature_bits, const char *path, int fd, unsigned reconnect_ms,
                             GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp)
{
    g_assert(nvqs >= 1 && nvqs <= vdev->num_queues);    /* host-programming invariant */
    b->vdev = vdev;
    b->nvqs = nvqs;
    b->name = name;
    b->feature_bits = feature_bits;
    if (vhost_dev_init(&b->dev, path, fd, feature_bits, nvqs, mem, ram_fd, &vhost_user_base_dev_ops, b,
                       errp) < 0) {
        return false;
    }
    vhost_dev_set_reconnect(&b->dev, reconnect_ms);
    if (b->fetch_config && b->fetch_config(b, errp) < 0) {
        vhost_dev_cleanup(&b->dev);
        return false;
    }
    vdev->host_features = vhost_get_features(feature_bits, b->dev.backend_features, vdev->host_features);
    return true;
}

void vhost_user_base_unrealize(VHostUserBase *b)
{
    vhost_dev_cleanup(&b->dev);
}

/* ---- VHostUserDevice: the core tells the base of status writes and resets ---- */

static void vhost_user_device_set_status(VirtIODevice *vdev, uint8_t status)
{
    vhost_user_base_status_changed(&((VHostUserDevice *)vdev)->vhost, false);   /* parent_obj is first */
}

static void vhost_user_device_reset(VirtIODevice *vdev)
{
    vhost_user_base_status_changed(&((VHostUserDevice *)vdev)->vhost, true);
}

static const VirtIODeviceOps vhost_user_device_ops = {
    .set_status = vhost_user_device_set_status,
    .reset = vhost_user_device_reset,
};

bool vhost_user_device_realize(VHostUserDevice *d, const char *name, const int *feature_bits, uint64_t own_features,
                               const char *path, int fd, unsigned reconnect_ms, GuestMemory *mem,
                               VhostRamFdFn *ram_fd, char **errp)
{
    VirtIODevice *vdev = &d->parent_obj;

    vdev->host_features = own_features;
    if (!vhost_user_base_realize(&d->vhost, vdev, vdev->num_queues, name, feature_bits, path, fd, reconnect_ms,
                                 mem, ram_fd, errp)) {
        virtio_cleanup(vdev);
        return false;
    }
    vdev->ops = &vhost_user_device_ops;
    return true;
}

void vhost_user_device_unrealize(VHostUserDevice *d)
{
    vhost_user_base_unrealize(&d->vhost);
    virtio_cleanup(&d->parent_obj);
}
