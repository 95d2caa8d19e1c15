/*
 * Devices of the device host (-device TYPE,prop=value,...), in QEMU's
 * syntax. Options arrive parsed into key/value pairs by system/vl.c
 * (QemuOpts rules: later keys override earlier ones).
 *
 * Each device type lives in its own file (hw/virtio/virtio-blk-pci.c, ...)
 * and registers a DeviceTypeInfo with device_type_init(); system/qdev.c
 * looks types up by name, lists them and creates them.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_QDEV_H
#define SYSEMU_QDEV_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

typedef struct QDevOpt {
    const char *key, *val;
} QDevOpt;

typedef struct DeviceTypeInfo DeviceTypeInfo;
typedef struct DeviceState DeviceState;

/* What every device has, whatever its bus (QEMU's DeviceState). */
struct DeviceState {
    const DeviceTypeInfo *type;     /* set by device_new */
    char *id;                       /* id=, or NULL; set by device_new */
    /* Take the device off its bus (PCI: pci_device_remove); may be NULL. */
    void (*unplug)(DeviceState *dev);
    /* Free the device model, after unplug. */
    void (*unrealize)(DeviceState *dev);
};

struct DeviceTypeInfo {
    const char *name;           /* "virtio-blk-pci" */
    const char *parent;         /* QOM parent for qom-list-types, e.g. "virtio-pci" */
    const char *category;       /* -device help heading: "Storage devices", "Network devices" */
    const char *desc;
    /*
     * Create and plug the device from @opts (including "driver", "id",
     * "addr"). Returns the device (with unplug/unrealize set), or NULL
     * with *@errp set.
     */
    DeviceState *(*create)(const QDevOpt *opts, unsigned n, char **errp);
    /* Print "TYPE options:" and one line per property (qdev_print_prop). */
    void (*help)(void);
    /*
     * QEMU bus type the device plugs into: NULL = "PCI"; "virtio-bus" = a
     * virtio-mmio transport; "SCSI" = a virtio-scsi-pci adapter's (scsi-hd
     * finds it itself).
     */
    const char *bus;
};

void device_type_register(const DeviceTypeInfo *info);
/* Register @info at start-up (QEMU's type_init). */
#define device_type_init(info)                                                  \
    static void __attribute__((constructor)) device_type_init_##info(void)      \
    {                                                                           \
        device_type_register(&(info));                                         \
    }

/* -device help / -device TYPE,help: print to stdout and return true (the caller exits 0). */
bool device_help(const QDevOpt *opts, unsigned n);
/* -device TYPE,prop=value,...: create and plug. Returns false with *@errp set. */
bool device_new(const QDevOpt *opts, unsigned n, char **errp);

/* The device with id=@id, or NULL. */
DeviceState *qdev_find_device(const char *id);
/* Unplug @dev and free it (dev->id with it). */
void qdev_unplug(DeviceState *dev);

/* ---- helpers for device types ---- */

/* The value of @key (the last one given), or NULL. */
const char *qdev_opt_get(const QDevOpt *opts, unsigned n, const char *key);
/* on/off, true/false, yes/no. */
bool qdev_str_bool(const char *v, bool *out);
/* "SLOT[.FN]" in hex, as QEMU's PCI "addr" property: devfn, or -1. */
int qdev_parse_pci_addr(const char *s);
/* Properties every PCI device takes (addr, bus, id, multifunction). */
bool qdev_is_pci_common_prop(const char *key);
/*
 * The -device message for a property a device's conf parser refused with
 * @gerr (freed): "Property 'TYPE.KEY' not found" for an unknown name, else
 * the parser's message.
 */
char *qdev_prop_error(const char *type, const char *key, GError *gerr);
/* One `-device TYPE,help` line. */
void qdev_print_prop(const char *name, const char *type, const char *desc, void *opaque);

void qdev_register_types(void);
/* Unplug every device, then close every drive. */
void qdev_cleanup(void);

#endif
