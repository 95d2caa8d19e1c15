/*
 * virtio-blk-device: the virtio-blk device model behind a virtio-mmio
 * transport (hw/virtio/virtio-mmio.c), on machines that have them
 * (-machine microvm). As in QEMU, the type plugs into a "virtio-bus": the
 * next free transport, highest address first.
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/virtio/virtio-blk-host.h"
#include "hw/virtio/virtio-mmio.h"

typedef struct VirtIOBlkDevice {
    DeviceState qdev;           /* first */
    VirtIOBlock vblk;
    Drive *drive;
} VirtIOBlkDevice;

static void vblk_dev_resized(void *opaque)
{
    VirtIOBlkDevice *s = opaque;

    virtio_blk_resize(&s->vblk);
}

static void vblk_dev_unplug(DeviceState *dev)
{
    virtio_mmio_unplug(&((VirtIOBlkDevice *)dev)->vblk.parent_obj);
}

static void vblk_dev_unrealize(DeviceState *dev)
{
    VirtIOBlkDevice *s = (VirtIOBlkDevice *)dev;

    virtio_blk_host_unrealize(&s->vblk, s->drive);
    g_free(s);
}

/* The properties every device on a virtio-bus takes here: driver=, id=, bus=. */
static int vblk_dev_prop(void *tconf, const char *type_name, const char *key, const char *val, char **errp)
{
    return !strcmp(key, "driver") || !strcmp(key, "id") || !strcmp(key, "bus");
}

static DeviceState *vblk_dev_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIOBlkDevice *s = g_new0(VirtIOBlkDevice, 1);

    s->drive = virtio_blk_host_realize(&s->vblk, "virtio-blk-device", opts, n, vblk_dev_prop, NULL,
                                       vblk_dev_resized, s, errp);
    if (!s->drive) {
        g_free(s);
        return NULL;
    }
    if (virtio_mmio_plug(&s->vblk.parent_obj, virtio_blk_host_config_write) < 0) {
        /* QEMU: no virtio-bus with a free slot */
        *errp = g_strdup("No 'virtio-bus' bus found for device 'virtio-blk-device'");
        virtio_blk_host_unrealize(&s->vblk, s->drive);
        g_free(s);
        return NULL;
    }
    s->qdev.unplug = vblk_dev_unplug;
    s->qdev.unrealize = vblk_dev_unrealize;
    return &s->qdev;
}

static void vblk_dev_help(void)
{
    printf("virtio-blk-device options:\n");
    qdev_print_prop("drive", "str", "Node name or ID of a block device to use as a backend", NULL);
    virtio_blk_conf_list(qdev_print_prop, NULL);
}

static const DeviceTypeInfo virtio_blk_device_info = {
    .name = "virtio-blk-device",
    .parent = "virtio-device",
    .category = "Storage devices",
    .desc = "virtio block device on a virtio-mmio transport",
    .create = vblk_dev_new,
    .help = vblk_dev_help,
    .bus = "virtio-bus",
};
device_type_init(virtio_blk_device_info)
