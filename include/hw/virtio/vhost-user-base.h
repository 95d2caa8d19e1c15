/*
 * What every vhost-user device model shares: a VirtIODevice whose rings a
 * vhost-user backend serves through the vhost frontend (hw/virtio/vhost.c).
 * The base starts the backend at DRIVER_OK (the core's own processing of
 * those rings is switched off), stops it on reset, forwards the driver's
 * notifications to the backend's kick eventfds and turns its call eventfds
 * into the transport's interrupts, and restarts after a reconnect. A start
 * the backend refuses, or hangs up on VHOST_USER_BASE_START_TRIES times in
 * a row, breaks the device (NEEDS_RESET) instead of leaving the driver
 * waiting. The
 * device model (vhost-user-scsi, ...) owns the config space and its own
 * feature offer; the feature table masks that offer with the backend's.
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
    VirtIODevice parent_obj;    /* first */
    struct vhost_dev dev;
    const char *name;           /* "vhost-user-scsi": for messages */
    const int *feature_bits;
    uint64_t own_features;      /* the device model's offer before the backend's say */
    unsigned start_failures;    /* starts in a row the backend hung up on */
    /* Optional: config space from the backend (after realize and each reconnect). */
    int (*fetch_config)(VHostUserBase *b, char **errp);
    /* The transport's interrupt for a queue (virtio_pci_notify_queue_irq). */
    void (*notify_irq)(void *opaque, unsigned n);
    void *notify_opaque;
};

/*
 * After virtio_init(&b->parent_obj, ...): connect (socket @fd, or @path when
 * -1; @fd is taken either way), learn the backend's features, fetch the
 * config, and offer the driver @own_features masked by @feature_bits. All
 * queues of the device go to the backend. False with *@errp set (the
 * VirtIODevice is cleaned up then).
 */
bool vhost_user_base_realize(VHostUserBase *b, const char *name, const int *feature_bits, uint64_t own_features,
                             const char *path, int fd, unsigned reconnect_ms, GuestMemory *mem,
                             VhostRamFdFn *ram_fd, char **errp);
void vhost_user_base_unrealize(VHostUserBase *b);
/* The transport's queue notifier: a driver notification of queue @n goes to the backend. */
void vhost_user_base_handle_notify(void *opaque, unsigned n);

#endif
