/*
 * A virtio-net device (hw/net/virtio-net.c) as the NIC of a net backend
 * (include/net/net.h): the device's peer ops forward to the backend, the
 * backend's frontend ops go to the device. TX resumption (the backend can
 * take frames again, or a burst hit tx-burst) runs from an idle source on
 * the main loop, never inside another device's handler.
 *
 * Used by virtio-net-pci (the device host) and by contrib/vhost-user-net.
 *
 * Context: main loop thread only.
 */
#ifndef NET_VIRTIO_NET_CLIENT_H
#define NET_VIRTIO_NET_CLIENT_H

#include "hw/virtio/virtio-net.h"
#include "net/net.h"

typedef struct VirtIONetClient {
    VirtIONet *n;
    NetClientState *nc;
    bool *resume;               /* per queue pair: run TX again from the idle source */
    guint resume_src;
} VirtIONetClient;

/* Make @nc the peer of @n. Returns false when another NIC uses @nc. */
bool virtio_net_client_attach(VirtIONetClient *c, VirtIONet *n, NetClientState *nc);
void virtio_net_client_detach(VirtIONetClient *c);

#endif
