/*
 * virtio-scsi-pci in the device host, and the SCSI bus scsi-hd plugs into
 * (QEMU's bus name "ID.0" for the adapter with id=ID). vdm's adapter has one
 * unit (hw/scsi/virtio-scsi.c), cold-plugged before the driver scans.
 *
 * Context: main loop thread only.
 */
#ifndef HW_VIRTIO_VIRTIO_SCSI_PCI_H
#define HW_VIRTIO_VIRTIO_SCSI_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/scsi/scsi.h"
#include "sysemu/qdev.h"

typedef struct VirtIOSCSIPCI VirtIOSCSIPCI;

/*
 * The adapter behind bus @bus ("ID.0"), or the first adapter when @bus is
 * NULL. NULL with *@errp set (QEMU's messages) when there is none.
 */
VirtIOSCSIPCI *virtio_scsi_pci_find_bus(const char *bus, char **errp);
/*
 * Plug @unit (a scsi-hd) with @disk at @target. Unplugging the adapter
 * unplugs the unit first (qdev_unplug). False with *@errp set.
 */
bool virtio_scsi_pci_plug_unit(VirtIOSCSIPCI *a, DeviceState *unit, SCSIDisk *disk, uint32_t target,
                               char **errp);
/* The unit's unrealize: its commands complete, the adapter forgets it. */
void virtio_scsi_pci_unplug_unit(VirtIOSCSIPCI *a);

#endif
