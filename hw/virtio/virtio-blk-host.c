/*
 * The transport-independent half of a virtio-blk -device; see
 * include/hw/virtio/virtio-blk-host.h.
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <string.h>

#include "hw/virtio/virtio-blk-host.h"
#include "sysemu/sysemu.h"

int virtio_blk_host_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return virtio_blk_set_config(VIRTIO_BLK(vdev), offset, data, len);
}

Drive *virtio_blk_host_realize(VirtIOBlock *vblk, const char *type_name, const QDevOpt *opts, unsigned n,
                               VirtIOBlkTransportProp *tprop, void *tconf,
                               void (*resized)(void *opaque), void *opaque, char **errp)
{
    VirtIOBlkConf conf;
    const char *drive_id = NULL;
    GError *gerr = NULL;
    Drive *drive;

    virtio_blk_conf_init(&conf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;
        int ret = tprop(tconf, type_name, k, v, errp);

        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            continue;
        }
        if (!strcmp(k, "drive")) {
            drive_id = v;
            continue;
        }
        if (!virtio_blk_conf_set(&conf, k, v, &gerr)) {
            *errp = qdev_prop_error(type_name, k, gerr);
            return NULL;
        }
    }
    drive = drive_claim(type_name, drive_id, resized, opaque, errp);
    if (!drive) {
        return NULL;
    }
    conf.blk = drive_get_blk(drive);
    if (!virtio_blk_realize(vblk, &conf, vdm_guest_memory(), &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        drive_detach(drive);
        return NULL;
    }
    return drive;
}

void virtio_blk_host_unrealize(VirtIOBlock *vblk, Drive *drive)
{
    virtio_blk_unrealize(vblk);
    drive_detach(drive);
}
