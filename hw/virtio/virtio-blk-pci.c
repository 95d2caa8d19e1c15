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
#include "hw/virtio/virtio-blk.h"
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

static int vblk_pci_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return virtio_blk_set_config(VIRTIO_BLK(vdev), offset, data, len);
}

static void vblk_pci_resized(void *opaque)
{
    VirtIOBlkPCI *s = opaque;

    virtio_blk_resize(&s->vblk);
}

static void vblk_pci_unrealize(DeviceState *dev)
{
    VirtIOBlkPCI *s = (VirtIOBlkPCI *)dev;

    virtio_pci_unrealize(&s->proxy);
    virtio_blk_unrealize(&s->vblk);
    drive_detach(s->drive);
    g_free(s->drive_name);
    g_free(s);
}

static DeviceState *vblk_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIOBlkConf conf;
    VirtIOPCIConf pconf;
    VirtIOBlkPCI *s;
    const char *drive_id = NULL;
    GError *gerr = NULL;
    int ret;
    Drive *drive;

    virtio_blk_conf_init(&conf);
    virtio_pci_conf_init(&pconf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        ret = virtio_pci_conf_set(&pconf, "virtio-blk-pci", k, v, errp);
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
            if (g_error_matches(gerr, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION)) {
                *errp = g_strdup_printf("Property 'virtio-blk-pci.%s' not found", k);
            } else {
                *errp = g_strdup(gerr->message);
            }
            g_error_free(gerr);
            return NULL;
        }
    }
    if (!drive_id) {
        *errp = g_strdup("drive property not set");
        return NULL;
    }
    drive = drive_find(drive_id);
    if (!drive) {
        *errp = g_strdup_printf("Property 'virtio-blk-pci.drive' can't find value '%s'", drive_id);
        return NULL;
    }
    conf.blk = drive_get_blk(drive);
    s = g_new0(VirtIOBlkPCI, 1);
    if (!drive_attach(drive, vblk_pci_resized, s)) {
        *errp = g_strdup_printf("Drive '%s' is already in use by another device", drive_id);
        g_free(s);
        return NULL;
    }
    if (!virtio_blk_realize(&s->vblk, &conf, vdm_guest_memory(), &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        drive_detach(drive);
        g_free(s);
        return NULL;
    }
    if (!virtio_pci_realize_conf(&s->proxy, &s->vblk.parent_obj, "virtio-blk-pci", 0x010000, &pconf,
                                 s->vblk.parent_obj.num_queues + 1, errp)) {
        virtio_blk_unrealize(&s->vblk);
        drive_detach(drive);
        g_free(s);
        return NULL;
    }
    s->proxy.config_write = vblk_pci_config_write;
    s->proxy.pci_dev.qdev.unrealize = vblk_pci_unrealize;
    s->drive = drive;
    s->drive_name = g_strdup(drive_id);
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
