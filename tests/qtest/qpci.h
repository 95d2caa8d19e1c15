/*
 * A libqos-like PCI layer over libqtest: configuration mechanism #1 through
 * qtest port accesses, device lookup, BAR sizing and mapping from a simple
 * allocator in the PCI hole, capability walks; and virtio-pci modern
 * register access built on it.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_QPCI_H
#define TESTS_QTEST_QPCI_H

#include <stdbool.h>
#include <stdint.h>

#include "libqtest.h"

/* Where qpci_map_bar places BARs (the pc machine's PCI hole, as libqos' pc allocator). */
#define QPCI_MMIO_BASE 0xe0000000ull

uint32_t qpci_config_readl(QTestState *s, int devfn, uint8_t off);
uint16_t qpci_config_readw(QTestState *s, int devfn, uint8_t off);
uint8_t qpci_config_readb(QTestState *s, int devfn, uint8_t off);
void qpci_config_writel(QTestState *s, int devfn, uint8_t off, uint32_t val);
void qpci_config_writew(QTestState *s, int devfn, uint8_t off, uint16_t val);
void qpci_config_writeb(QTestState *s, int devfn, uint8_t off, uint8_t val);

/* devfn of the first function with @vendor/@device on bus 0, or -1. */
int qpci_find_device(QTestState *s, uint16_t vendor, uint16_t device);
/* Size memory BAR @bar (64-bit aware); 0 when not implemented. */
uint64_t qpci_bar_size(QTestState *s, int devfn, int bar);
/* Size and program BAR @bar at the next free address, enable memory + bus master. Returns the address. */
uint64_t qpci_map_bar(QTestState *s, int devfn, int bar, uint64_t *next_free);
/* Offset of the first capability @id with (for vendor caps) cfg_type @type at byte 3, after @start (0: from the list head). */
uint8_t qpci_find_cap(QTestState *s, int devfn, uint8_t id, int vndr_type, uint8_t start);

/* The pc machine's ACPI PCI hotplug registers (QEMU's acpi_pci_hotplug.rst). */
#define QPCI_ACPI_PCIHP_ADDR    0xae00
#define QPCI_ACPI_PCIHP_EJ      0x08

/*
 * As libqos' qpci_unplug_acpi_device_test: device_del @id, then eject
 * @slot through the ACPI register as the guest's _EJ0 would, then wait for
 * DEVICE_DELETED (returned; json_free it).
 */
JSONValue *qpci_unplug_acpi_device_test(QTestState *s, const char *id, uint8_t slot);

/*
 * MSI-X (PCI 6.8.2): map the table's BAR @bar at @bar_addr, point vector v at
 * guest RAM @target + 0x100 * v with data QPCI_MSI_DATA(v) and zero those
 * words; entries stay masked (asserted: they come out of reset masked).
 */
#define QPCI_MSI_DATA(v)    (0x4d530000u | (v))
typedef struct QPCIMsix {
    int devfn;
    uint8_t cap;
    unsigned nvec;
    uint64_t table, pba, target;
} QPCIMsix;
void qpci_msix_init(QTestState *s, int devfn, int bar, uint64_t bar_addr, uint64_t target, QPCIMsix *m);
/* Message control ENABLE / MASKALL (the table size reads back unchanged: asserted). */
void qpci_msix_control(QTestState *s, const QPCIMsix *m, bool enable, bool maskall);
void qpci_msix_mask(QTestState *s, const QPCIMsix *m, unsigned v, bool mask);
/* Where vector @v writes, and what is there now. */
uint64_t qpci_msix_target(const QPCIMsix *m, unsigned v);
uint32_t qpci_msix_word(QTestState *s, const QPCIMsix *m, unsigned v);

/* virtio-pci modern: the four structures' guest-physical addresses. */
typedef struct QVirtioPCI {
    QTestState *qts;
    int devfn;
    uint64_t common, isr, device, notify;
    uint32_t notify_mult;
} QVirtioPCI;

/* Find the device's capabilities, map their BAR and fill @v. Asserts on a malformed device. */
void qvirtio_pci_init(QVirtioPCI *v, QTestState *s, int devfn);
/* The same with the BARs mapped from @base (a second device next to the first). */
void qvirtio_pci_init_at(QVirtioPCI *v, QTestState *s, int devfn, uint64_t base);
uint64_t qvirtio_pci_get_features(QVirtioPCI *v);
/* Write driver features and set FEATURES_OK; returns whether the device kept FEATURES_OK. */
bool qvirtio_pci_set_features(QVirtioPCI *v, uint64_t features);
uint8_t qvirtio_pci_get_status(QVirtioPCI *v);
void qvirtio_pci_set_status(QVirtioPCI *v, uint8_t status);
void qvirtio_pci_queue_select(QVirtioPCI *v, uint16_t q);
void qvirtio_pci_set_rings(QVirtioPCI *v, uint64_t desc, uint64_t driver, uint64_t device);
void qvirtio_pci_notify(QVirtioPCI *v, uint16_t q);

#endif
