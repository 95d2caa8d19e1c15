/*
 * The vhost frontend of the device host: a device whose rings are processed
 * by another process (a vhost-user backend) hands that process guest
 * memory, the rings and eventfds, and negotiates features through a
 * per-device feature-bit table.
 *
 * Device-neutral: vhost-user-blk-pci uses it, and so can any device type
 * (e.g. -netdev vhost-user). A device model:
 *   1. vhost_dev_init(dev, path, fd, feature_table, nvqs, mem, ram_fd, &ops, opaque): connect,
 *      handshake, learn the backend's features (dev->backend_features);
 *   2. offers the driver vhost_get_features(table, backend, own features);
 *   3. forwards the driver's kicks with vhost_dev_kick(dev, n) (virtio-pci:
 *      virtio_pci_set_queue_notifier) and turns ops->call into the
 *      transport's interrupt (virtio_pci_notify_queue_irq);
 *   4. vhost_dev_start(dev, vdev) at DRIVER_OK, vhost_dev_reset(dev) on reset;
 *   5. vhost_dev_cleanup(dev) when unplugged.
 * hw/virtio/vhost-user-base.c does 2-4 for a device model (blk, scsi, net),
 * hw/virtio/vhost-user-pci.c the virtio-pci wiring of 3.
 *
 * Feature tables (QEMU's feature_bits[] idea): the list of bits the backend
 * controls, terminated by VHOST_INVALID_FEATURE_BIT. Allowlist semantics: a
 * listed bit is offered only when the device model AND the backend offer it;
 * an unlisted bit is the device model's own and the backend's opinion does not
 * matter; a bit only the backend offers is never offered. Every table holds
 * VIRTIO_F_IN_ORDER (35), so IN_ORDER reaches the driver exactly when both
 * ends implement it.
 *
 * Memory: every region of guest RAM must be a shared memory backend
 * (memory-backend-memfd, or memory-backend-file with share=on); the regions
 * are sent with their fds (SET_MEM_TABLE) at start.
 *
 * Reconnect: when the backend closes the socket the device stops (ring
 * state kept in the VirtIODevice, the inflight region kept until the next
 * device reset), and, with reconnect_ms > 0, the frontend reconnects every
 * reconnect_ms and restarts the rings where the driver is (split: the used
 * index in guest memory; the backend resubmits what the inflight region
 * says was in flight, and finds its packed position there).
 *
 * Backend channel (BACKEND_REQ): CONFIG_CHANGE_MSG calls ops->config_changed.
 *
 * Context: main loop thread only. Messages are synchronous: each waits at
 * most VHOST_USER_TIMEOUT_MS for its reply.
 */
#ifndef HW_VIRTIO_VHOST_H
#define HW_VIRTIO_VHOST_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/vhost-user.h"
#include "hw/virtio/virtio.h"

#define VHOST_INVALID_FEATURE_BIT 0xff
#define VHOST_USER_TIMEOUT_MS 5000

/* The bits each kind of backend controls (hw/virtio/vhost.c). */
extern const int vhost_user_blk_feature_bits[];
extern const int vhost_user_scsi_feature_bits[];
extern const int vhost_user_net_feature_bits[];
extern const int vhost_kernel_net_feature_bits[];
extern const int vhost_kernel_scsi_feature_bits[];

/* Every table above, NULL-terminated, with its name (for tests). */
typedef struct VhostFeatureTableInfo {
    const char *name;
    const int *bits;
} VhostFeatureTableInfo;
extern const VhostFeatureTableInfo vhost_feature_tables[];

bool vhost_feature_table_has(const int *feature_bits, unsigned bit);
/*
 * What the driver is offered: @features (the device model's own offer) with
 * every bit of @feature_bits the backend does not offer in @backend removed.
 */
uint64_t vhost_get_features(const int *feature_bits, uint64_t backend, uint64_t features);
/* What the backend is told: @acked limited to the bits of @feature_bits, plus the ring/transport ones it must see. */
uint64_t vhost_backend_features(const int *feature_bits, uint64_t acked);

/* Where the fd behind a piece of guest RAM comes from (the device host: vdm_ram_fd). */
typedef int VhostRamFdFn(const void *host, uint64_t *offset);

typedef struct VhostDevOps {
    /* The backend signalled used buffers on queue @n (its call eventfd). */
    void (*call)(void *opaque, unsigned n);
    /* The backend went away (true) or is back and running again (false). */
    void (*connection)(void *opaque, bool lost);
    /* The backend said its config space changed (BACKEND_REQ channel, CONFIG_CHANGE_MSG). */
    void (*config_changed)(void *opaque);
} VhostDevOps;

struct vhost_virtqueue {
    int kick_fd, call_fd;       /* eventfds we own; the backend gets copies */
    unsigned call_watch;        /* main-loop source of call_fd */
    bool started;
    bool base_valid;            /* last_base holds where the backend stopped */
    bool resync;                /* the backend died with the ring running: resume from guest memory */
    uint32_t last_base;         /* GET_VRING_BASE at the last clean stop */
};

struct vhost_dev {
    VhostUserConn conn;
    char *path;                 /* socket to connect (and reconnect) to */
    const int *feature_bits;
    unsigned nvqs;
    /* Queues the next start hands over: 0..start_nvqs-1 (0: all nvqs); net without MQ: one pair. */
    unsigned start_nvqs;
    struct vhost_virtqueue *vqs;
    uint64_t backend_features;  /* GET_FEATURES, without VHOST_USER_F_PROTOCOL_FEATURES */
    uint64_t protocol_features; /* negotiated */
    uint64_t acked_features;    /* last SET_FEATURES */
    VirtIODevice *vdev;         /* while started */
    GuestMemory *mem;
    VhostRamFdFn *ram_fd;
    bool started;
    /* INFLIGHT_SHMFD region, kept across backend restarts. */
    int inflight_fd;
    void *inflight_addr;
    VhostUserInflight inflight; /* num_queues, queue_size: what the region was asked for */
    /* Reconnect */
    unsigned reconnect_ms;      /* 0: never */
    unsigned hup_watch, reconnect_timer;
    /* BACKEND_REQ: the channel the backend sends its own requests on (socketpair, our end). */
    VhostUserConn backend_chan;
    unsigned backend_watch;
    unsigned reconnects;        /* successful reconnections so far */
    const VhostDevOps *ops;
    void *opaque;
};

/*
 * Use the connected socket @fd (taken; e.g. chardev_take_fd), or with @fd -1
 * connect to the backend at @path (retrying for VHOST_USER_TIMEOUT_MS); do
 * the handshake (protocol features: MQ, REPLY_ACK, CONFIG, INFLIGHT_SHMFD,
 * BACKEND_REQ as offered; the backend channel carries CONFIG_CHANGE_MSG to
 * ops->config_changed) and read its features. @mem / @ram_fd: guest memory and where
 * its fds come from. Returns 0 or -errno with *@errp set (g_free it).
 */
int vhost_dev_init(struct vhost_dev *dev, const char *path, int fd, const int *feature_bits, unsigned nvqs,
                   GuestMemory *mem, VhostRamFdFn *ram_fd, const VhostDevOps *ops, void *opaque,
                   char **errp);
/* Stop (if started), close everything, free. */
void vhost_dev_cleanup(struct vhost_dev *dev);
/* Reconnect every @ms after the backend went away (0: never). */
void vhost_dev_set_reconnect(struct vhost_dev *dev, unsigned ms);
bool vhost_dev_connected(const struct vhost_dev *dev);

/*
 * Hand the backend the negotiated features (vdev->guest_features through the
 * table), the memory table, the inflight region and every enabled queue of
 * @vdev (its size, addresses and index), then enable them. Returns 0 or
 * -errno (*@errp set); the device is left stopped on failure.
 */
int vhost_dev_start(struct vhost_dev *dev, VirtIODevice *vdev, char **errp);
/* GET_VRING_BASE on every started queue (stops them), keep the bases. */
void vhost_dev_stop(struct vhost_dev *dev);
/* The device was reset: stop, forget the bases, clear the inflight region. */
void vhost_dev_reset(struct vhost_dev *dev);
/* Forward a driver notification of queue @n to the backend's kick eventfd. */
void vhost_dev_kick(struct vhost_dev *dev, unsigned n);
/*
 * SET_VRING_ENABLE on started queue @n (virtio-net: the pairs beyond the
 * driver's VQ_PAIRS_SET are disabled, as QEMU). 0, > 0 refused, or -errno.
 */
int vhost_dev_set_vring_enable(struct vhost_dev *dev, unsigned n, bool enable);

/* GET_CONFIG / SET_CONFIG (CONFIG protocol feature needed). 0 or -errno. */
int vhost_dev_get_config(struct vhost_dev *dev, uint8_t *config, uint32_t len, char **errp);
int vhost_dev_set_config(struct vhost_dev *dev, const uint8_t *data, uint32_t offset, uint32_t len);

#endif
