/*
 * What every vhost-user device model shares: a VirtIODevice whose rings (all
 * of them, or its first nvqs) a vhost-user backend serves through the vhost
 * frontend (hw/virtio/vhost.c). The base starts the backend at DRIVER_OK
 * (the core's own processing of those rings is switched off), stops it on
 * reset, forwards the driver's notifications of those rings to the backend's
 * kick eventfds (and of any later queue, e.g. virtio-net's control queue, to
 * the core), turns the backend's call eventfds into the transport's
 * interrupts, and restarts after a reconnect. A start the backend refuses,
 * or hangs up on VHOST_USER_BASE_START_TRIES times in a row, breaks the
 * device (NEEDS_RESET) instead of leaving the driver waiting. The device
 * model owns the VirtIODevice, the config space and its own feature offer;
 * the feature table masks that offer with the backend's.
 *
 * Two ways to use it:
 * - VHostUserDevice: a device model that is a vhost-user device and nothing
 *   else (vhost-user-scsi, vhost-user-blk) embeds it first; every queue is
 *   the backend's, vhost_user_device_realize installs the status/reset ops.
 * - A device model with a VirtIODevice of its own (virtio-net in vhost mode)
 *   embeds a VHostUserBase, hands the base its first nvqs queues and tells
 *   it of status writes and resets with vhost_user_base_status_changed (from
 *   a hook of its own: virtio_net_set_status_hook).
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VHOST_USER_BASE_H
#define HW_VIRTIO_VHOST_USER_BASE_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/vhost.h"

#define VHOST_USER_BASE_START_TRIES 3

typedef struct VHostUserBase VHostUserBase;

struct VHostUserBase {
    VirtIODevice *vdev;         /* the device model's */
    unsigned nvqs;              /* queues 0..nvqs-1 are the backend's; the rest stay in the core */
    struct vhost_dev dev;
    const char *name;           /* "vhost-user-scsi": for messages */
    const int *feature_bits;
    unsigned start_failures;    /* starts in a row the backend hung up on */
    /* Optional: config space from the backend (after realize and each reconnect). */
    int (*fetch_config)(VHostUserBase *b, char **errp);
    /* Optional: the backend runs the rings now (after DRIVER_OK, and after each reconnect). */
    void (*started)(VHostUserBase *b);
    void *started_opaque;
    /* The transport's interrupt for a queue (virtio_pci_notify_queue_irq). */
    void (*notify_irq)(void *opaque, unsigned n);
    void *notify_opaque;
};

/*
 * After the device model set up @vdev (virtio_init, its own host_features):
 * connect (socket @fd, or @path when -1; @fd is taken either way), learn the
 * backend's features, fetch the config, and offer the driver
 * vdev->host_features masked by @feature_bits against the backend's.
 * Queues 0..@nvqs-1 go to the backend. False with *@errp set; @vdev is
 * the caller's to clean up either way.
 */
bool vhost_user_base_realize(VHostUserBase *b, VirtIODevice *vdev, unsigned nvqs, const char *name,
                             const int *feature_bits, const char *path, int fd, unsigned reconnect_ms,
                             GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp);
void vhost_user_base_unrealize(VHostUserBase *b);
/*
 * The device's status was written (@reset false: starts the backend once
 * DRIVER_OK is set) or the device was reset (@reset true: stops it and
 * forgets the ring positions). @opaque is the VHostUserBase.
 */
void vhost_user_base_status_changed(void *opaque, bool reset);
/*
 * From the next start on, only queues 0..@n-1 are the backend's (the rest,
 * up to nvqs, stay in the core): virtio-net without MQ has one pair and its
 * control queue at index 2. @n >= nvqs: all of them again.
 */
void vhost_user_base_set_active_queues(VHostUserBase *b, unsigned n);
/*
 * The transport's queue notifier: a driver notification of queue @n goes to
 * the backend (n < nvqs) or to the core (virtio_queue_notify).
 */
void vhost_user_base_handle_notify(void *opaque, unsigned n);

/* A device model that is only a vhost-user device: all of its queues are the backend's. */
typedef struct VHostUserDevice {
    VirtIODevice parent_obj;    /* first */
    VHostUserBase vhost;
} VHostUserDevice;

/*
 * After virtio_init(&d->parent_obj, ...): offer @own_features (masked by the
 * backend's through @feature_bits), connect, and route status writes and
 * resets to the base. False with *@errp set (the VirtIODevice is cleaned up
 * then).
 */
bool vhost_user_device_realize(VHostUserDevice *d, const char *name, const int *feature_bits, uint64_t own_features,
                               const char *path, int fd, unsigned reconnect_ms, GuestMemory *mem,
                               VhostRamFdFn *ram_fd, char **errp);
void vhost_user_device_unrealize(VHostUserDevice *d);

#endif
