/*
 * ACPI PCI hotplug of the pc machine (QEMU's docs/specs/acpi_pci_hotplug.rst,
 * PIIX4 PM flavour), for bus 0:
 *
 *   0xae00 up      (r)  slots with a pending hot-add (cleared by the read)
 *   0xae04 down    (r)  slots whose removal was requested (device_del)
 *   0xae08 eject   (w)  eject the lowest slot set in the value (the guest's
 *                       _EJ0); reads 0 (no hotplug features)
 *   0xae0c rmv     (r)  removable slots (all but the host bridge's slot 0)
 *   0xae10 select  (rw) bus selector (only bus 0 exists)
 *
 * all 4-byte accesses (QEMU's min/max access size; other sizes read
 * all-ones and are ignored), and the ACPI GPE block at 0xafe0: two status
 * bytes (write 1 to clear) and two enable bytes. A plug or an unplug
 * request sets GPE status bit 1; SCI (qtest IRQ line 9, ISA IRQ 9 on the
 * IOAPIC) is high while a status bit is set whose enable bit is set.
 *
 * Context: main loop thread only.
 */
#ifndef HW_ACPI_PCIHP_H
#define HW_ACPI_PCIHP_H

#include <stdbool.h>

#define ACPI_PCIHP_ADDR         0xae00
#define ACPI_PCIHP_SIZE         0x14
#define  ACPI_PCIHP_UP          0x00
#define  ACPI_PCIHP_DOWN        0x04
#define  ACPI_PCIHP_EJ          0x08
#define  ACPI_PCIHP_RMV         0x0c
#define  ACPI_PCIHP_SEL         0x10
#define ACPI_GPE_ADDR           0xafe0
#define ACPI_GPE_LEN            4
#define ACPI_GPE_PCI_HOTPLUG    0x02    /* GPE status/enable bit 1 */
#define ACPI_SCI_IRQ            9

/* Claim the ports (pc machine, with PCI bus 0). */
void acpi_pcihp_init(void);
void acpi_pcihp_cleanup(void);
bool acpi_pcihp_present(void);
/* A device was hot-added in @slot: "up" bit, GPE status, SCI. */
void acpi_pcihp_device_plugged(int slot);
/* device_del of a device in @slot: "down" bit, GPE status, SCI. */
void acpi_pcihp_unplug_request(int slot);

#endif
