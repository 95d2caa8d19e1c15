/*
 * vhost-user-blk-pci: the vhost-user-blk device model (hw/block/vhost-user-blk.c)
 * behind the virtio-pci transport, its backend reached through a socket
 * chardev (`-chardev socket,id=ID,path=P[,reconnect-ms=MS] -device
 * vhost-user-blk-pci,chardev=ID`). Driver notifications go straight to the
 * backend's kick eventfd; the backend's call eventfd becomes the queue's
 * interrupt (MSI-X vector, or ISR + INTx).
 *
 * Context: main loop thread only.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hw/virtio/vhost-user-blk.h"
#include "hw/virtio/vhost-user-pci.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/chardev.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

typedef struct VHostUserBlkPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VHostUserBlk vub;
    char *chardev_id;           /* claimed; looked up again at unplug (chardevs may be gone at exit) */
} VHostUserBlkPCI;

static int vub_pci_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return vhost_user_blk_set_config((VHostUserBlk *)vdev, offset, data, len);
}

static void vub_pci_unrealize(DeviceState *dev)
{
    VHostUserBlkPCI *s = (VHostUserBlkPCI *)dev;

    virtio_pci_unrealize(&s->proxy);        /* resets the device: the backend stops its rings */
    vhost_user_blk_unrealize(&s->vub);
    chardev_release_vhost_user(s->chardev_id);
    g_free(s->chardev_id);
    g_free(s);
}

static DeviceState *vub_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VHostUserBlkConf conf;
    VirtIOPCIConf pconf;
    VHostUserBlkPCI *s;
    const char *chr_id = NULL, *path;
    unsigned reconnect_ms;
    GError *gerr = NULL;
    int ret, fd;

    vhost_user_blk_conf_init(&conf);
    virtio_pci_conf_init(&pconf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        ret = virtio_pci_conf_set(&pconf, "vhost-user-blk-pci", k, v, errp);
        if (ret < 0) {
            return NULL;
        }
        if (ret > 0) {
            continue;
        }
        if (!strcmp(k, "chardev")) {
            chr_id = v;
            continue;
        }
        if (!vhost_user_blk_conf_set(&conf, k, v, &gerr)) {
            *errp = qdev_prop_error("vhost-user-blk-pci", k, gerr);
            return NULL;
        }
    }
    if (!chardev_take_vhost_user("vhost-user-blk-pci", chr_id, &fd, &path, &reconnect_ms, errp)) {
        return NULL;
    }
    s = g_new0(VHostUserBlkPCI, 1);
    if (!vhost_user_blk_realize(&s->vub, &conf, path, fd, reconnect_ms, vdm_guest_memory(), vdm_ram_fd,
                                errp)) {
        chardev_release_vhost_user(chr_id);
        g_free(s);
        return NULL;
    }
    if (!vhost_user_pci_realize(&s->proxy, &s->vub.base.vhost, "vhost-user-blk-pci", 0x010000, &pconf,
                                conf.num_queues + 1, errp)) {
        vhost_user_blk_unrealize(&s->vub);
        chardev_release_vhost_user(chr_id);
        g_free(s);
        return NULL;
    }
    s->chardev_id = g_strdup(chr_id);
    s->proxy.config_write = vub_pci_config_write;
    s->proxy.pci_dev.qdev.unrealize = vub_pci_unrealize;
    return &s->proxy.pci_dev.qdev;
}

static void vub_pci_help(void)
{
    printf("vhost-user-blk-pci options:\n");
    qdev_print_prop("chardev", "str", "ID of a socket chardev (client) connected to the backend", NULL);
    virtio_pci_conf_help();
    vhost_user_blk_conf_list(qdev_print_prop, NULL);
}

static const DeviceTypeInfo vhost_user_blk_pci_info = {
    .name = "vhost-user-blk-pci",
    .parent = "virtio-pci",
    .category = "Storage devices",
    .desc = "vhost-user block device on PCI (modern): requests served by a vhost-user backend",
    .create = vub_pci_new,
    .help = vub_pci_help,
};
device_type_init(vhost_user_blk_pci_info)
