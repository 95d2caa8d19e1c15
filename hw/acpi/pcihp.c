/*
 * ACPI PCI hotplug registers and the GPE block of the pc machine (see
 * include/hw/acpi/pcihp.h). The eject register unplugs through qdev, which
 * sends DEVICE_DELETED.
 */
#include <glib.h>
#include <strings.h>

#include "hw/acpi/pcihp.h"
#include "hw/pci/pci.h"
#include "sysemu/ioport.h"
#include "sysemu/qdev.h"
#include "sysemu/qtest.h"

typedef struct AcpiPciHpState {
    uint32_t up, down;          /* bus 0's pending slots */
    uint32_t select;            /* bus selector */
    uint8_t gpe_sts[ACPI_GPE_LEN / 2], gpe_en[ACPI_GPE_LEN / 2];
} AcpiPciHpState;

static AcpiPciHpState *hp;

static void update_sci(void)
{
    bool level = false;

    for (unsigned i = 0; i < sizeof(hp->gpe_sts); i++) {
        level |= (hp->gpe_sts[i] & hp->gpe_en[i]) != 0;
    }
    qtest_set_irq_out(ACPI_SCI_IRQ, level);
}

static void gpe_event(void)
{
    hp->gpe_sts[0] |= ACPI_GPE_PCI_HOTPLUG;
    update_sci();
}

/* Unplug every device in @slot of bus 0 (all functions), as QEMU's acpi_pcihp_eject_slot. */
static void eject_slot(int slot)
{
    bool again = true;

    hp->down &= ~(1u << slot);
    hp->up &= ~(1u << slot);
    /* restart the walk after each unplug: the device list changes under it */
    while (again) {
        DeviceState *dev;

        again = false;
        for (unsigned i = 0; (dev = qdev_nth_device(i)) != NULL; i++) {
            if (dev->unplug == pci_device_unplug && PCI_SLOT(((PCIDevice *)dev)->devfn) == slot) {
                qdev_unplug_and_notify(dev);
                again = true;
                break;
            }
        }
    }
}

static uint32_t pcihp_read(void *opaque, uint32_t offset, unsigned size)
{
    uint32_t v;

    if (size != 4) {
        return UINT32_MAX;
    }
    if (hp->select != 0 && offset != ACPI_PCIHP_SEL) {
        return 0;       /* no such bus */
    }
    switch (offset) {
    case ACPI_PCIHP_UP:
        v = hp->up;
        hp->up = 0;
        return v;
    case ACPI_PCIHP_DOWN:
        return hp->down;
    case ACPI_PCIHP_RMV:
        return ~1u;     /* slot 0, the host bridge, is not removable */
    case ACPI_PCIHP_SEL:
        return hp->select;
    default:
        return 0;       /* EJ reads the feature set: none */
    }
}

static void pcihp_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    if (size != 4) {
        return;
    }
    switch (offset) {
    case ACPI_PCIHP_EJ:
        if (hp->select == 0 && value) {
            int slot = ffs((int)value) - 1;

            if (slot > 0) {
                eject_slot(slot);
            } else {
                hp->down &= ~1u;
                hp->up &= ~1u;
            }
        }
        break;
    case ACPI_PCIHP_SEL:
        hp->select = value;
        break;
    default:
        break;
    }
}

static uint32_t gpe_read(void *opaque, uint32_t offset, unsigned size)
{
    uint32_t v = 0;

    for (unsigned i = 0; i < size; i++) {
        unsigned b = offset + i;
        uint8_t byte = b < 2 ? hp->gpe_sts[b] : b < 4 ? hp->gpe_en[b - 2] : 0xff;
        v |= (uint32_t)byte << (8 * i);
    }
    return v;
}

static void gpe_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    for (unsigned i = 0; i < size; i++) {
        unsigned b = offset + i;
        uint8_t byte = (uint8_t)(value >> (8 * i));

        if (b < 2) {
            hp->gpe_sts[b] &= ~byte;        /* write 1 to clear */
        } else if (b < 4) {
            hp->gpe_en[b - 2] = byte;
        }
    }
    update_sci();
}

static const IOPortOps pcihp_ops = { .read = pcihp_read, .write = pcihp_write };
static const IOPortOps gpe_ops = { .read = gpe_read, .write = gpe_write };

void acpi_pcihp_init(void)
{
    g_assert(!hp);
    hp = g_new0(AcpiPciHpState, 1);
    if (ioport_register(ACPI_PCIHP_ADDR, ACPI_PCIHP_SIZE, &pcihp_ops, NULL) < 0 ||
        ioport_register(ACPI_GPE_ADDR, ACPI_GPE_LEN, &gpe_ops, NULL) < 0) {
        g_error("acpi: cannot claim ports 0x%x/0x%x", ACPI_PCIHP_ADDR, ACPI_GPE_ADDR);
    }
}

void acpi_pcihp_cleanup(void)
{
    if (!hp) {
        return;
    }
    ioport_unregister(ACPI_PCIHP_ADDR, ACPI_PCIHP_SIZE);
    ioport_unregister(ACPI_GPE_ADDR, ACPI_GPE_LEN);
    g_free(hp);
    hp = NULL;
}

bool acpi_pcihp_present(void)
{
    return hp != NULL;
}

void acpi_pcihp_device_plugged(int slot)
{
    hp->up |= 1u << slot;
    gpe_event();
}

void acpi_pcihp_unplug_request(int slot)
{
    hp->down |= 1u << slot;
    gpe_event();
}
