/*
 * virtio-blk as a -device of the device host, whatever its transport: the
 * part virtio-blk-pci (hw/virtio/virtio-blk-pci.c) and virtio-blk-device
 * (virtio-mmio, hw/virtio/virtio-blk-device.c) share — the virtio-blk
 * properties, the drive= lookup and attachment, realize and the reverse.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VIRTIO_BLK_HOST_H
#define HW_VIRTIO_VIRTIO_BLK_HOST_H

#include "hw/virtio/virtio-blk.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"

/*
 * A transport's own properties: returns 1 when @key is one (taken), 0 when
 * not, -1 on a bad value with *@errp set.
 */
typedef int VirtIOBlkTransportProp(void *tconf, const char *type_name, const char *key, const char *val,
                                   char **errp);

/*
 * Realize @vblk for -device @type_name from @opts: every option the
 * transport (@tprop with @tconf) does not take must be drive= or a
 * virtio-blk property; the drive is attached with @resized(@opaque) as its
 * resize callback. Returns the drive, or NULL with *@errp set (nothing left
 * attached or realized).
 */
Drive *virtio_blk_host_realize(VirtIOBlock *vblk, const char *type_name, const QDevOpt *opts, unsigned n,
                               VirtIOBlkTransportProp *tprop, void *tconf,
                               void (*resized)(void *opaque), void *opaque, char **errp);
/* Undo virtio_blk_host_realize (after the transport let go of the device). */
void virtio_blk_host_unrealize(VirtIOBlock *vblk, Drive *drive);
/* virtio_blk_set_config with the transports' config_write signature. */
int virtio_blk_host_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len);

#endif
