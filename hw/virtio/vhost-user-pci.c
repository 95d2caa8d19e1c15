/*
 * The PCI side of vhost-user-*-pci devices (see include/hw/virtio/vhost-user-pci.h).
 *
 * Context: main loop thread only.
 */
#include "hw/virtio/vhost-user-pci.h"

static void vhost_user_pci_notify_irq(void *opaque, unsigned n)
{
    virtio_pci_notify_queue_irq(opaque, n);
}

bool vhost_user_pci_realize(VirtIOPCIProxy *proxy, VHostUserBase *b, const char *type_name, uint32_t class_code,
                            const VirtIOPCIConf *pconf, unsigned default_vectors, char **errp)
{
    if (!virtio_pci_realize_conf(proxy, b->vdev, type_name, class_code, pconf, default_vectors, errp)) {
        return false;
    }
    virtio_pci_set_queue_notifier(proxy, vhost_user_base_handle_notify, b);
    b->notify_irq = vhost_user_pci_notify_irq;
    b->notify_opaque = proxy;
    return true;
}
