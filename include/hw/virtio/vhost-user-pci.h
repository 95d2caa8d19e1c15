/*
 * The PCI side every vhost-user-*-pci device shares: a realized vhost-user
 * device (include/hw/virtio/vhost-user-base.h) behind the virtio-pci
 * transport, the driver's notifications going to the backend's kick
 * eventfds and the backend's calls becoming the queue interrupts (MSI-X
 * vector, or ISR + INTx).
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VHOST_USER_PCI_H
#define HW_VIRTIO_VHOST_USER_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/vhost-user-base.h"
#include "hw/virtio/virtio-pci.h"

/*
 * virtio_pci_realize_conf(@proxy, @b's VirtIODevice, ...) and the wiring
 * above. False with *@errp set (QEMU's slot messages); @b stays realized.
 */
bool vhost_user_pci_realize(VirtIOPCIProxy *proxy, VHostUserBase *b, const char *type_name, uint32_t class_code,
                            const VirtIOPCIConf *pconf, unsigned default_vectors, char **errp);

#endif
