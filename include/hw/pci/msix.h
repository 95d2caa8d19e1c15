/*
 * MSI-X (PCI Local Bus 3.0, 6.8.2): a capability in configuration space
 * (message control with table size, function mask and enable bits; table
 * and PBA offset/BIR), the vector table (16 bytes per entry: message
 * address low/high, message data, vector control with the per-vector mask
 * bit) and the pending bit array, both in one memory BAR as QEMU's
 * msix_init_exclusive_bar lays them out (table at 0, PBA at half the BAR).
 *
 * Delivery: with no CPU (qtest), a message is a 32-bit little-endian write
 * of the entry's data to its address through the same guest memory path
 * qtest writes take (RAM, or a mapped BAR), as QEMU's libqos expects when
 * it points MSI-X addresses at guest RAM and polls them. A masked vector
 * (per-vector or function mask) sets its pending bit instead; unmasking
 * delivers it and clears the bit. Nothing is delivered while MSI-X is
 * disabled or bus mastering is off.
 *
 * Context: main loop thread only.
 */
#ifndef HW_PCI_MSIX_H
#define HW_PCI_MSIX_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/pci/pci.h"

#define PCI_MSIX_FLAGS              2       /* message control, in the capability */
#define  PCI_MSIX_FLAGS_QSIZE       0x07ff
#define  PCI_MSIX_FLAGS_MASKALL     0x4000
#define  PCI_MSIX_FLAGS_ENABLE      0x8000
#define PCI_MSIX_TABLE              4
#define PCI_MSIX_PBA                8
#define PCI_MSIX_CAP_SIZE           12

#define PCI_MSIX_ENTRY_SIZE         16
#define PCI_MSIX_ENTRY_LOWER_ADDR   0
#define PCI_MSIX_ENTRY_UPPER_ADDR   4
#define PCI_MSIX_ENTRY_DATA         8
#define PCI_MSIX_ENTRY_VECTOR_CTRL  12
#define  PCI_MSIX_ENTRY_CTRL_MASKBIT 1

#define PCI_MSIX_MAX_VECTORS        2048

/*
 * Give @d an MSI-X capability with @nvectors (1..2048) entries, table and
 * PBA in a 32-bit memory BAR @bar of its own. Returns 0, or -ENOSPC when
 * the capability does not fit. Undone by pci_device_remove.
 */
int msix_init_exclusive_bar(PCIDevice *d, unsigned nvectors, int bar);
void msix_uninit(PCIDevice *d);
unsigned msix_nr_vectors(const PCIDevice *d);
/* MSI-X present and its enable bit set. */
bool msix_enabled(const PCIDevice *d);
/* Send vector @vector (deliver, or set pending when masked); out of range: nothing. */
void msix_notify(PCIDevice *d, unsigned vector);
bool msix_is_pending(const PCIDevice *d, unsigned vector);
/* pci.c calls this after every config write (enable / function mask changes). */
void msix_config_written(PCIDevice *d, uint32_t addr, unsigned len);

#endif
