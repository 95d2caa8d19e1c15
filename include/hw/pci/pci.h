/*
 * PCI: one bus (bus 0) behind a host bridge at 00.0, reached through
 * configuration mechanism #1 (ports 0xcf8 address / 0xcfc data) and, on
 * q35, through MMCONFIG (ECAM) once the guest enables the MCH's PCIEXBAR.
 * Each function has a 256-byte configuration space with a mask of writable
 * bits and one of write-1-to-clear bits, memory BARs (32/64-bit) sized by
 * writing all-ones and mapped into the MMIO table while the command
 * register's memory-space bit is set, a capability list, and INTx.
 *
 * INTx: as QEMU's PIIX3 routes PIRQ[A-D] to IOAPIC inputs 16-19, pin P
 * (1 = INTA) of slot S raises qtest IRQ line 16 + ((S + P - 1) & 3); on
 * q35 ICH9's default routing uses PIRQ[E-H]: line 20 + ((S + P - 1) & 3).
 *
 * Context: main loop thread only.
 */
#ifndef HW_PCI_PCI_H
#define HW_PCI_PCI_H

#include <stdbool.h>
#include <stdint.h>

#include "sysemu/ioport.h"
#include "sysemu/mmio.h"
#include "sysemu/qdev.h"

#define PCI_CONFIG_SPACE_SIZE   0x100
#define PCI_DEVFN(slot, fn)     ((((slot) & 0x1f) << 3) | ((fn) & 7))
#define PCI_SLOT(devfn)         (((devfn) >> 3) & 0x1f)
#define PCI_FUNC(devfn)         ((devfn) & 7)

/* Type 0 header (PCI Local Bus 3.0, 6.1). */
#define PCI_VENDOR_ID           0x00
#define PCI_DEVICE_ID           0x02
#define PCI_COMMAND             0x04
#define  PCI_COMMAND_IO         0x1
#define  PCI_COMMAND_MEMORY     0x2
#define  PCI_COMMAND_MASTER     0x4
#define  PCI_COMMAND_INTX_DISABLE 0x400
#define PCI_STATUS              0x06
#define  PCI_STATUS_INTERRUPT   0x08
#define  PCI_STATUS_CAP_LIST    0x10
#define PCI_REVISION_ID         0x08
#define PCI_CLASS_PROG          0x09
#define PCI_CLASS_DEVICE        0x0a
#define PCI_HEADER_TYPE         0x0e
#define  PCI_HEADER_TYPE_MULTI_FUNCTION 0x80
#define PCI_BASE_ADDRESS_0      0x10
#define  PCI_BASE_ADDRESS_SPACE_IO      0x01
#define  PCI_BASE_ADDRESS_MEM_TYPE_64   0x04
#define  PCI_BASE_ADDRESS_MEM_PREFETCH  0x08
#define PCI_SUBSYSTEM_VENDOR_ID 0x2c
#define PCI_SUBSYSTEM_ID        0x2e
#define PCI_CAPABILITY_LIST     0x34
#define PCI_INTERRUPT_LINE      0x3c
#define PCI_INTERRUPT_PIN       0x3d

#define PCI_CAP_ID_MSIX         0x11
#define PCI_CAP_ID_VNDR         0x09

#define PCI_NUM_BARS            6
#define PCI_BAR_UNMAPPED        UINT64_MAX

#define PCI_CONFIG_ADDR_PORT    0xcf8
#define PCI_CONFIG_DATA_PORT    0xcfc
/* First IOAPIC input of the PIRQ lines (QEMU's PIIX3 + IOAPIC). */
#define PCI_INTX_GSI_BASE       16

typedef struct PCIDevice PCIDevice;
typedef struct MSIXState MSIXState;

typedef struct PCIBar {
    uint64_t size;              /* 0: BAR not implemented */
    uint8_t type;               /* low bits: PCI_BASE_ADDRESS_SPACE_IO, or MEM_TYPE_64 / PREFETCH */
    uint64_t addr;              /* mapped address (port for I/O) or PCI_BAR_UNMAPPED */
    const MMIOOps *ops;         /* memory BAR */
    const IOPortOps *io_ops;    /* I/O BAR */
    void *opaque;
} PCIBar;

struct PCIDevice {
    DeviceState qdev;           /* first; unplug is pci_device_unplug */
    char *name;                 /* type name, for messages */
    int devfn;
    uint8_t config[PCI_CONFIG_SPACE_SIZE];
    uint8_t wmask[PCI_CONFIG_SPACE_SIZE];      /* bits the driver may write */
    uint8_t w1cmask[PCI_CONFIG_SPACE_SIZE];    /* bits cleared by writing 1 */
    PCIBar bars[PCI_NUM_BARS];
    uint8_t cap_next_free;      /* capability allocator, from 0x40 */
    int irq_level;
    MSIXState *msix;            /* NULL: no MSI-X (hw/pci/msix.h) */
    /* Optional: after config bytes [@addr, @addr + @len) were written. */
    void (*config_written)(PCIDevice *d, uint32_t addr, unsigned len);
    /* Optional: before config bytes [@addr, @addr + @len) are read (may update them). */
    void (*config_read)(PCIDevice *d, uint32_t addr, unsigned len);
};

/* Q35 MCH: PCIEXBAR (QEMU include/hw/pci-host/q35.h). */
#define MCH_PCIEXBAR                0x60
#define MCH_PCIEXBAR_DEFAULT        0xb0000000ull
#define MCH_PCIEXBAREN              0x1
#define MCH_PCIEXBAR_LENGTH_MASK    0x6
#define MCH_PCIEXBAR_LENGTH_256M    0x0
#define MCH_PCIEXBAR_LENGTH_128M    0x2
#define MCH_PCIEXBAR_LENGTH_64M     0x4

typedef enum PCIHostKind {
    PCI_HOST_I440FX,            /* -machine pc */
    PCI_HOST_Q35,               /* -machine q35: MCH + ECAM, ICH9 LPC at 1f.0 */
} PCIHostKind;

/* Create bus 0 with the host bridge of @kind and claim 0xcf8/0xcfc. */
void pci_bus_init(PCIHostKind kind);
bool pci_bus_present(void);
void pci_bus_cleanup(void);

/*
 * Initialise @d's header and place it at @devfn (-1: first free slot,
 * function 0). Returns 0, -EBUSY (devfn taken) or -ENOSPC.
 */
int pci_device_init(PCIDevice *d, const char *name, int devfn, uint16_t vendor, uint16_t device,
                    uint32_t class_code, uint8_t revision);
void pci_device_remove(PCIDevice *d);
/* DeviceState.unplug of a PCI device: pci_device_remove. */
void pci_device_unplug(DeviceState *dev);
PCIDevice *pci_find_device(int devfn);

/* A memory BAR of @size bytes (a power of two >= 16); @type: MEM_TYPE_64 / PREFETCH bits. */
void pci_register_bar(PCIDevice *d, int n, uint8_t type, uint64_t size, const MMIOOps *ops, void *opaque);
/*
 * An I/O BAR of @size bytes (a power of two, 4..256). It decodes while
 * COMMAND.IO is set and its address is non-zero with the whole range below
 * 64 KiB; a range over ports already claimed stays unmapped.
 */
void pci_register_io_bar(PCIDevice *d, int n, uint32_t size, const IOPortOps *ops, void *opaque);
/*
 * Add a capability of @size bytes at the next free offset (from 0x40) and
 * put it at the head of the list, as QEMU does: returns its offset (id and
 * next set), or 0 when full.
 */
uint8_t pci_add_capability(PCIDevice *d, uint8_t cap_id, uint8_t size);
/* Set the INTx line level (pin INTA). Honours INTX_DISABLE and updates the status bit. */
void pci_set_irq(PCIDevice *d, int level);
/* The qtest IRQ line @d's INTA reaches. */
int pci_intx_gsi(const PCIDevice *d);

/* Configuration space access as the host bridge performs it (@len 1, 2 or 4, inside the space). */
uint32_t pci_config_read(PCIDevice *d, uint32_t addr, unsigned len);
void pci_config_write(PCIDevice *d, uint32_t addr, uint32_t val, unsigned len);

static inline void pci_set_word(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

static inline void pci_set_long(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (8 * i));
    }
}

static inline uint16_t pci_get_word(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}

static inline uint32_t pci_get_long(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#endif
