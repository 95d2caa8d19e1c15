/*
 * vhost-user-blk: a virtio-blk device whose requests a vhost-user backend
 * serves (vdm-vhost-user-blk, qemu-storage-daemon, SPDK, ...). The device
 * model keeps the configuration and its feature offer; the rings go to the
 * backend through the vhost-user device base (include/hw/virtio/vhost-user-base.h).
 *
 * Features offered to the driver: the device model's own (VERSION_1, the ring
 * bits its properties allow, the virtio-blk bits QEMU's vhost-user-blk offers)
 * masked by vhost_user_blk_feature_bits against the backend's, so IN_ORDER
 * (in_order=on) and RING_PACKED (packed=on) reach the driver only when the
 * backend offers them. Config space comes from GET_CONFIG.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VHOST_USER_BLK_H
#define HW_VIRTIO_VHOST_USER_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/vhost-user-base.h"
#include "hw/virtio/virtio-blk.h"

typedef struct VHostUserBlkConf {
    uint32_t num_queues;        /* "num-queues", default 1 */
    uint32_t queue_size;        /* "queue-size", default 128 (QEMU's), power of two <= 1024 */
    bool in_order;              /* "in_order", default off (QEMU) */
    bool packed;                /* "packed", default off */
    bool event_idx;             /* "event_idx", default on */
    bool indirect_desc;         /* "indirect_desc", default on */
    bool config_wce;            /* "config-wce", default on */
    bool discard;               /* "discard", default on */
    bool write_zeroes;          /* "write-zeroes", default on */
} VHostUserBlkConf;

typedef struct VHostUserBlk {
    VHostUserDevice base;       /* first: the VirtIODevice, the vhost_dev, start/stop/reconnect */
    VHostUserBlkConf conf;
} VHostUserBlk;

void vhost_user_blk_conf_init(VHostUserBlkConf *conf);
/* -device property @name=@value. False with *@errp set ("Property 'vhost-user-blk.X' not found", ...). */
bool vhost_user_blk_conf_set(VHostUserBlkConf *conf, const char *name, const char *value, GError **errp);
void vhost_user_blk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                              void *opaque);

/*
 * Connect (socket @fd, or @path when -1), read the backend's features and
 * config, and set up the VirtIODevice. Returns false with *@errp set.
 */
bool vhost_user_blk_realize(VHostUserBlk *s, const VHostUserBlkConf *conf, const char *path, int fd,
                            unsigned reconnect_ms, GuestMemory *mem, VhostRamFdFn *ram_fd, char **errp);
void vhost_user_blk_unrealize(VHostUserBlk *s);
/* Driver config write (writeback byte with CONFIG_WCE): sent to the backend with SET_CONFIG. */
int vhost_user_blk_set_config(VHostUserBlk *s, uint32_t offset, const uint8_t *data, uint32_t len);

#endif
