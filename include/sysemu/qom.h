/*
 * The QOM tree as QEMU shows it to QMP and qtest clients, built on demand
 * from the machine and the plugged devices (system/qom.c):
 *
 *   /machine                          pc-i440fx-7.2-machine | pc-q35-7.2-machine | none-machine
 *   /machine/peripheral/ID            devices with id=
 *   /machine/peripheral-anon/device[N] devices without (N never reused)
 *   /machine/i440fx, .../i440fx/pci.0 pc: host bridge, bus 0 ("child[N]" links)
 *   /machine/i440fx/ioapic            pc: the IOAPIC (qtest "ioapic")
 *   /machine/unattached/device[0]     pc: the i440FX function at 00.0
 *   /machine/q35, q35/pcie.0, q35/mch, q35/ioapic, unattached/device[0] (ICH9-LPC): q35
 *   DEV/virtio-bus, DEV/virtio-backend virtio-pci devices
 *
 * Every object has "type"; children are child<TYPE> properties, references
 * link<TYPE>. Paths resolve as object_resolve_path: absolute, or partial
 * (a unique object whose path ends with the given components).
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_QOM_H
#define SYSEMU_QOM_H

#include <stdbool.h>

#include "sysemu/json.h"
#include "sysemu/qdev.h"

/*
 * QMP qom-list / qom-get / qom-set. Return the "return" value, or NULL with
 * *@errp set and *@err_class set ("DeviceNotFound") or left NULL (GenericError).
 */
JSONValue *qom_list(const char *path, const char **err_class, char **errp);
JSONValue *qom_get(const char *path, const char *prop, const char **err_class, char **errp);
JSONValue *qom_set(const char *path, const char *prop, const JSONValue *value, const char **err_class,
                   char **errp);

/*
 * Resolve @path (absolute or partial) to an object: true and its QOM type in
 * *@type (g_free it; may be NULL) and its canonical path in *@canon (may be NULL).
 */
bool qom_resolve(const char *path, char **type, char **canon);

#endif
