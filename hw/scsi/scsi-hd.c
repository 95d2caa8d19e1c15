/*
 * scsi-hd in the device host: a SCSI disk (hw/scsi/scsi-disk.c) on a drive,
 * plugged into a virtio-scsi-pci adapter's bus (QEMU's
 * `-device scsi-hd,drive=D[,bus=ID.0][,channel=0][,scsi-id=T][,lun=L]`).
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/scsi/scsi.h"
#include "hw/virtio/virtio-scsi-pci.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"

typedef struct SCSIHd {
    DeviceState qdev;           /* first */
    SCSIDisk disk;
    Drive *drive;
    VirtIOSCSIPCI *adapter;
} SCSIHd;

static void scsi_hd_resized(void *opaque)
{
    SCSIHd *hd = opaque;

    scsi_disk_resize(&hd->disk);
}

static void scsi_hd_unrealize(DeviceState *dev)
{
    SCSIHd *hd = (SCSIHd *)dev;

    virtio_scsi_pci_unplug_unit(hd->adapter);
    scsi_disk_unrealize(&hd->disk);
    drive_detach(hd->drive);
    g_free(hd);
}

/* A number property: 0..@max. */
static bool uint_prop(const char *name, const char *v, uint64_t max, uint32_t *out, char **errp)
{
    guint64 x;

    if (!g_ascii_string_to_unsigned(v, 10, 0, max, &x, NULL)) {
        *errp = g_strdup_printf("Property 'scsi-hd.%s' doesn't take value '%s' (0..%" G_GUINT64_FORMAT ")",
                                name, v, (guint64)max);
        return false;
    }
    *out = (uint32_t)x;
    return true;
}

static DeviceState *scsi_hd_new(const QDevOpt *opts, unsigned n, char **errp)
{
    SCSIDiskConf conf;
    const char *drive_id = NULL, *bus = NULL;
    uint32_t target = 0, channel = 0;
    VirtIOSCSIPCI *adapter;
    GError *gerr = NULL;
    Drive *drive;
    SCSIHd *hd;

    scsi_disk_conf_init(&conf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        if (!strcmp(k, "driver") || !strcmp(k, "id")) {
            continue;
        } else if (!strcmp(k, "drive")) {
            drive_id = v;
        } else if (!strcmp(k, "bus")) {
            bus = v;
        } else if (!strcmp(k, "channel")) {
            if (!uint_prop(k, v, 0, &channel, errp)) {     /* virtio-scsi: max_channel 0 */
                return NULL;
            }
        } else if (!strcmp(k, "scsi-id")) {
            if (!uint_prop(k, v, 255, &target, errp)) {
                return NULL;
            }
        } else if (!scsi_disk_conf_set(&conf, k, v, &gerr)) {
            *errp = qdev_prop_error("scsi-hd", k, gerr);
            return NULL;
        }
    }
    adapter = virtio_scsi_pci_find_bus(bus, errp);
    if (!adapter) {
        return NULL;
    }
    hd = g_new0(SCSIHd, 1);
    drive = drive_claim("scsi-hd", drive_id, scsi_hd_resized, hd, errp);
    if (!drive) {
        g_free(hd);
        return NULL;
    }
    conf.blk = drive_get_blk(drive);
    if (!scsi_disk_realize(&hd->disk, &conf, &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        drive_detach(drive);
        g_free(hd);
        return NULL;
    }
    if (!virtio_scsi_pci_plug_unit(adapter, &hd->qdev, &hd->disk, target, errp)) {
        scsi_disk_unrealize(&hd->disk);
        drive_detach(drive);
        g_free(hd);
        return NULL;
    }
    hd->drive = drive;
    hd->adapter = adapter;
    hd->qdev.unrealize = scsi_hd_unrealize;
    return &hd->qdev;
}

static void scsi_hd_help(void)
{
    printf("scsi-hd options:\n");
    qdev_print_prop("drive", "str", "Node name or ID of a block device to use as a backend", NULL);
    qdev_print_prop("bus", "str", "the adapter's bus, ID.0 (default: the first virtio-scsi-pci)", NULL);
    qdev_print_prop("channel", "uint32", "0 (virtio-scsi has one channel)", NULL);
    qdev_print_prop("scsi-id", "uint32", "target (0..max_target), default 0", NULL);
    scsi_disk_conf_list(qdev_print_prop, NULL);
}

static const DeviceTypeInfo scsi_hd_info = {
    .name = "scsi-hd",
    .parent = "device",
    .category = "Storage devices",
    .desc = "virtual SCSI disk (on a virtio-scsi-pci bus)",
    .create = scsi_hd_new,
    .help = scsi_hd_help,
    .bus = "SCSI",
};
device_type_init(scsi_hd_info)
