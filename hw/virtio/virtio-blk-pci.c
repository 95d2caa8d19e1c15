/*
 * virtio-blk-pci: the virtio-blk device model (hw/block/virtio-blk.c) behind
 * the virtio-pci transport, on a drive of the device host
 * (include/sysemu/blockdev.h) whose completions the main loop delivers.
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/pci/msix.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk-host.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

typedef struct VirtIOBlkPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VirtIOBlock vblk;
    Drive *drive;
    char *drive_name;           /* drive= as given, for QOM */
} VirtIOBlkPCI;

static void vblk_pci_resized(void *opaque)
{
    VirtIOBlkPCI *s = opaque;

    virtio_blk_resize(&s->vblk);
}

static void vblk_pci_unrealize(DeviceState *dev)
{
    VirtIOBlkPCI *s = (VirtIOBlkPCI *)dev;

    virtio_pci_unrealize(&s->proxy);
    virtio_blk_host_unrealize(&s->vblk, s->drive);
    g_free(s->drive_name);
    g_free(s);
}

static int vblk_pci_prop(void *tconf, const char *type_name, const char *key, const char *val, char **errp)
{
    return virtio_pci_conf_set(tconf, type_name, key, val, errp);
}

static DeviceState *vblk_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIOPCIConf pconf;
    VirtIOBlkPCI *s = g_new0(VirtIOBlkPCI, 1);

    virtio_pci_conf_init(&pconf);
    s->drive = virtio_blk_host_realize(&s->vblk, "virtio-blk-pci", opts, n, vblk_pci_prop, &pconf,
                                       vblk_pci_resized, s, errp);
    if (!s->drive) {
        g_free(s);
        return NULL;
    }
    if (!virtio_pci_realize_conf(&s->proxy, &s->vblk.parent_obj, "virtio-blk-pci", 0x010000, &pconf,
                                 s->vblk.parent_obj.num_queues + 1, errp)) {
        virtio_blk_host_unrealize(&s->vblk, s->drive);
        g_free(s);
        return NULL;
    }
    s->proxy.config_write = virtio_blk_host_config_write;
    s->proxy.pci_dev.qdev.unrealize = vblk_pci_unrealize;
    s->drive_name = g_strdup(qdev_opt_get(opts, n, "drive"));
    return &s->proxy.pci_dev.qdev;
}

static void vblk_pci_help(void)
{
    printf("virtio-blk-pci options:\n");
    qdev_print_prop("drive", "str", "Node name or ID of a block device to use as a backend", NULL);
    virtio_pci_conf_help();
    virtio_blk_conf_list(qdev_print_prop, NULL);
}

static void vblk_pci_list_props(DeviceState *dev, QDevPropFn *fn, void *opaque)
{
    VirtIOBlkPCI *s = (VirtIOBlkPCI *)dev;
    char vectors[16];

    fn("drive", "str", s->drive_name, opaque);
    g_snprintf(vectors, sizeof(vectors), "%u", msix_nr_vectors(&s->proxy.pci_dev));
    fn("vectors", "uint32", vectors, opaque);
    virtio_blk_conf_list_values(&s->vblk.conf, fn, opaque);
}

static const DeviceTypeInfo virtio_blk_pci_info = {
    .name = "virtio-blk-pci",
    .parent = "virtio-pci",
    .category = "Storage devices",
    .desc = "virtio block device on PCI (modern)",
    .create = vblk_pci_new,
    .help = vblk_pci_help,
    .list_props = vblk_pci_list_props,
    .virtio_backend = "virtio-blk-device",
};
device_type_init(virtio_blk_pci_info)
