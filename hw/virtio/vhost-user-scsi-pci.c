/*
 * vhost-user-scsi-pci: the vhost-user-scsi device model
 * (hw/scsi/vhost-user-scsi.c) behind the virtio-pci transport, its backend
 * reached through a socket chardev (`-chardev socket,id=ID,path=P
 * -device vhost-user-scsi-pci,chardev=ID`).
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/virtio/vhost-user-scsi.h"
#include "hw/virtio/vhost-user-pci.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/chardev.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

typedef struct VHostUserSCSIPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VHostUserSCSI vus;
    char *chardev_id;           /* claimed until unplug */
} VHostUserSCSIPCI;

static int vus_pci_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return vhost_user_scsi_set_config((VHostUserSCSI *)vdev, offset, data, len);
}

static void vus_pci_unrealize(DeviceState *dev)
{
    VHostUserSCSIPCI *s = (VHostUserSCSIPCI *)dev;

    virtio_pci_unrealize(&s->proxy);        /* resets the device: the backend stops its rings */
    vhost_user_scsi_unrealize(&s->vus);
    chardev_release_vhost_user(s->chardev_id);
    g_free(s->chardev_id);
    g_free(s);
}

static DeviceState *vus_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    static const char type[] = "vhost-user-scsi-pci";
    VHostUserSCSIConf conf;
    VirtIOPCIConf pconf;
    VHostUserSCSIPCI *s;
    const char *chr_id = NULL, *path;
    unsigned reconnect_ms;
    GError *gerr = NULL;
    int ret, fd;

    vhost_user_scsi_conf_init(&conf);
    virtio_pci_conf_init(&pconf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        ret = virtio_pci_conf_set(&pconf, type, k, v, errp);
        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            continue;
        }
        if (!strcmp(k, "chardev")) {
            chr_id = v;
        } else if (!vhost_user_scsi_conf_set(&conf, k, v, &gerr)) {
            *errp = qdev_prop_error(type, k, gerr);
            return NULL;
        }
    }
    if (!chardev_take_vhost_user(type, chr_id, &fd, &path, &reconnect_ms, errp)) {
        return NULL;
    }
    s = g_new0(VHostUserSCSIPCI, 1);
    if (!vhost_user_scsi_realize(&s->vus, &conf, path, fd, reconnect_ms, vdm_guest_memory(), vdm_ram_fd, errp)) {
        chardev_release_vhost_user(chr_id);
        g_free(s);
        return NULL;
    }
    /* QEMU's default vectors for virtio-scsi: num_queues + 3 (config, control, event). */
    if (!vhost_user_pci_realize(&s->proxy, &s->vus.base.vhost, type, 0x010000, &pconf, conf.num_queues + 3, errp)) {
        vhost_user_scsi_unrealize(&s->vus);
        chardev_release_vhost_user(chr_id);
        g_free(s);
        return NULL;
    }
    s->chardev_id = g_strdup(chr_id);
    s->proxy.config_write = vus_pci_config_write;
    s->proxy.pci_dev.qdev.unrealize = vus_pci_unrealize;
    return &s->proxy.pci_dev.qdev;
}

static void vus_pci_help(void)
{
    printf("vhost-user-scsi-pci options:\n");
    qdev_print_prop("chardev", "str", "ID of a socket chardev (client) connected to the backend", NULL);
    virtio_pci_conf_help();
    vhost_user_scsi_conf_list(qdev_print_prop, NULL);
}

static const DeviceTypeInfo vhost_user_scsi_pci_info = {
    .name = "vhost-user-scsi-pci",
    .parent = "virtio-pci",
    .category = "Storage devices",
    .desc = "vhost-user SCSI host adapter on PCI (modern): commands served by a vhost-user backend",
    .create = vus_pci_new,
    .help = vus_pci_help,
};
device_type_init(vhost_user_scsi_pci_info)
