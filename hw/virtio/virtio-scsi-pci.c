/*
 * virtio-scsi-pci: the virtio-scsi adapter model (hw/scsi/virtio-scsi.c)
 * behind the virtio-pci transport, with the SCSI bus scsi-hd plugs into
 * (include/hw/virtio/virtio-scsi-pci.h).
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "hw/virtio/virtio-scsi.h"
#include "hw/virtio/virtio-scsi-pci.h"
#include "sysemu/sysemu.h"

struct VirtIOSCSIPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VirtIOSCSI vscsi;
    DeviceState *unit;          /* the plugged scsi-hd, or NULL */
};

/* Every adapter, in creation order: bus lookups by id, or the first. */
static GPtrArray *adapters;

static int vscsi_pci_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return virtio_scsi_set_config(VIRTIO_SCSI(vdev), offset, data, len);
}

static void vscsi_pci_unrealize(DeviceState *dev)
{
    VirtIOSCSIPCI *a = (VirtIOSCSIPCI *)dev;

    if (a->unit) {
        qdev_unplug(a->unit);   /* children first, as QEMU unplugs a bus */
    }
    virtio_pci_unrealize(&a->proxy);
    virtio_scsi_unrealize(&a->vscsi);
    g_ptr_array_remove(adapters, a);
    g_free(a);
}

static DeviceState *vscsi_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIOSCSIConf conf;
    VirtIOPCIConf pconf;
    VirtIOSCSIPCI *a;
    GError *gerr = NULL;
    int ret;

    virtio_scsi_conf_init(&conf);
    virtio_pci_conf_init(&pconf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        ret = virtio_pci_conf_set(&pconf, "virtio-scsi-pci", k, v, errp);
        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            continue;
        }
        /* The unit's target is scsi-hd's property, not the adapter's. */
        if (!strcmp(k, "scsi-id") || !virtio_scsi_conf_set(&conf, k, v, &gerr)) {
            *errp = qdev_prop_error("virtio-scsi-pci", k, gerr);
            return NULL;
        }
    }
    a = g_new0(VirtIOSCSIPCI, 1);
    if (!virtio_scsi_realize(&a->vscsi, &conf, vdm_guest_memory(), &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        g_free(a);
        return NULL;
    }
    /* QEMU's default vectors for virtio-scsi: num_queues + 3 (config, control, event). */
    if (!virtio_pci_realize_conf(&a->proxy, &a->vscsi.parent_obj, "virtio-scsi-pci", 0x010000, &pconf,
                                 conf.num_queues + 3, errp)) {
        virtio_scsi_unrealize(&a->vscsi);
        g_free(a);
        return NULL;
    }
    a->proxy.config_write = vscsi_pci_config_write;
    a->proxy.pci_dev.qdev.unrealize = vscsi_pci_unrealize;
    if (!adapters) {
        adapters = g_ptr_array_new();
    }
    g_ptr_array_add(adapters, a);
    return &a->proxy.pci_dev.qdev;
}

VirtIOSCSIPCI *virtio_scsi_pci_find_bus(const char *bus, char **errp)
{
    for (guint i = 0; adapters && i < adapters->len; i++) {
        VirtIOSCSIPCI *a = g_ptr_array_index(adapters, i);
        const char *id = a->proxy.pci_dev.qdev.id;

        if (!bus) {
            return a;
        }
        /* QEMU names an adapter's bus "ID.0". */
        if (id && g_str_has_prefix(bus, id) && !strcmp(bus + strlen(id), ".0")) {
            return a;
        }
    }
    *errp = bus ? g_strdup_printf("Bus '%s' not found", bus)
                : g_strdup("No 'SCSI' bus found for device 'scsi-hd'");
    return NULL;
}

bool virtio_scsi_pci_plug_unit(VirtIOSCSIPCI *a, DeviceState *unit, SCSIDisk *disk, uint32_t target,
                               char **errp)
{
    GError *gerr = NULL;

    if (a->vscsi.parent_obj.status) {
        *errp = g_strdup("vdm: scsi-hd can be plugged only before the driver starts the adapter");
        return false;
    }
    if (!virtio_scsi_attach_disk(&a->vscsi, disk, target, &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        return false;
    }
    a->unit = unit;
    return true;
}

void virtio_scsi_pci_unplug_unit(VirtIOSCSIPCI *a)
{
    virtio_scsi_detach_disk(&a->vscsi);
    a->unit = NULL;
}

static void vscsi_pci_help(void)
{
    printf("virtio-scsi-pci options:\n");
    virtio_pci_conf_help();
    virtio_scsi_conf_list(qdev_print_prop, NULL);
}

static const DeviceTypeInfo virtio_scsi_pci_info = {
    .name = "virtio-scsi-pci",
    .parent = "virtio-pci",
    .category = "Storage devices",
    .desc = "virtio SCSI host adapter on PCI (modern); units: scsi-hd",
    .create = vscsi_pci_new,
    .help = vscsi_pci_help,
};
device_type_init(virtio_scsi_pci_info)
