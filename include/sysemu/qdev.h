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

/*
 * One QOM property of a device: @name, its QOM type ("bool", "uint32",
 * "int32", "str", ...) and the current value as text (bools "true"/"false",
 * numbers in decimal). qom-get turns bool types into JSON booleans, integer
 * types into JSON numbers and anything else into strings.
 */
typedef void QDevPropFn(const char *name, const char *type, const char *value, void *opaque);

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
    /*
     * Optional (QOM, qom-list/qom-get): call @fn for each device property
     * of @dev with its current value. Without it, the -device/device_add
     * options the device was created with are shown as "str" properties.
     * ("addr" of a PCI device is always shown as int32 devfn.)
     */
    void (*list_props)(DeviceState *dev, QDevPropFn *fn, void *opaque);
    /*
     * Optional: QOM type of the "virtio-backend" child. Without it, a type
     * whose parent is "virtio-pci" gets one derived from its name
     * ("virtio-net-pci" -> "virtio-net-device", "vhost-user-blk-pci" ->
     * "vhost-user-blk").
     */
    const char *virtio_backend;
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
/* Unplug @dev and free it (dev->id with it). No event. */
void qdev_unplug(DeviceState *dev);

/* ---- hotplug (QMP device_add/device_del) and the QOM tree (system/qom.c) ---- */

/*
 * QMP device_add: like device_new, but the device is marked hotplugged and
 * the machine's hotplug controller is told (pc: ACPI PCI hotplug "up" bit
 * and SCI). Returns false with *@errp set.
 */
bool qdev_device_add(const QDevOpt *opts, unsigned n, char **errp);
/*
 * QMP device_del: request removal of the device named by @id (an id, or a
 * QOM path starting with '/'). pc: the ACPI PCI hotplug "down" bit and SCI,
 * the device stays until the guest ejects the slot (acpi_pcihp). Returns
 * false with *@errp set and *@err_class ("DeviceNotFound" or NULL for
 * GenericError).
 */
bool qdev_device_del(const char *id, const char **err_class, char **errp);
/* Unplug @dev as the guest's eject does: DEVICE_DELETED event(s), then free. */
void qdev_unplug_and_notify(DeviceState *dev);

/* What the QOM tree shows about a plugged device. */
typedef struct QDevInfo {
    const char *qom_name;       /* the id, or "device[N]" (peripheral-anon) */
    bool anonymous;             /* no id: under /machine/peripheral-anon */
    bool hotplugged;            /* added by device_add */
    bool pending_delete;        /* device_del requested, not ejected yet */
    int bus_index;              /* the bus's "child[N]" link */
    const QDevOpt *opts;        /* creation options */
    unsigned nopts;
} QDevInfo;

/* The @i-th plugged device (creation order), or NULL past the end. */
DeviceState *qdev_nth_device(unsigned i);
void qdev_get_info(DeviceState *dev, QDevInfo *info);
/* "/machine/peripheral/ID" or "/machine/peripheral-anon/device[N]"; g_free it. */
char *qdev_qom_path(DeviceState *dev);
/* QOM type of @dev's virtio-backend child, or NULL (see DeviceTypeInfo.virtio_backend); g_free it. */
char *qdev_virtio_backend_type(const DeviceState *dev);

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
