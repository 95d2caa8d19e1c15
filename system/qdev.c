/*
 * Devices: the registry of device types (each registered from its own file
 * with device_type_init) and -device creation on the PCI bus (see
 * include/sysemu/qdev.h). Drives are in system/blockdev.c.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-mmio.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

/* Filled by constructors before main, read-only afterwards. */
static const DeviceTypeInfo *device_types[32];
static unsigned n_device_types;
/* Every plugged device, in creation order. */
static GPtrArray *devices;

void device_type_register(const DeviceTypeInfo *info)
{
    /* A host-programming invariant: the table is sized for every type built in. */
    g_assert(n_device_types < G_N_ELEMENTS(device_types));
    device_types[n_device_types++] = info;
}

static const DeviceTypeInfo *device_type_find(const char *name)
{
    for (unsigned i = 0; i < n_device_types; i++) {
        if (!strcmp(device_types[i]->name, name)) {
            return device_types[i];
        }
    }
    return NULL;
}

static gint type_order(gconstpointer a, gconstpointer b)
{
    const DeviceTypeInfo *x = *(const DeviceTypeInfo *const *)a, *y = *(const DeviceTypeInfo *const *)b;
    int c = strcmp(x->category, y->category);

    return c ? c : strcmp(x->name, y->name);
}

const char *qdev_opt_get(const QDevOpt *opts, unsigned n, const char *key)
{
    for (unsigned i = n; i-- > 0;) {
        if (strcmp(opts[i].key, key) == 0) {
            return opts[i].val;
        }
    }
    return NULL;
}

bool qdev_str_bool(const char *v, bool *out)
{
    if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes")) {
        *out = true;
        return true;
    }
    if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no")) {
        *out = false;
        return true;
    }
    return false;
}

int qdev_parse_pci_addr(const char *s)
{
    char *end;
    unsigned long slot, fn = 0;

    slot = strtoul(s, &end, 16);
    if (end == s || slot > 0x1f) {
        return -1;
    }
    if (*end == '.') {
        const char *f = end + 1;
        fn = strtoul(f, &end, 16);
        if (end == f || fn > 7) {
            return -1;
        }
    }
    return *end ? -1 : (int)PCI_DEVFN(slot, fn);
}

bool qdev_is_pci_common_prop(const char *key)
{
    static const char *const props[] = { "addr", "bus", "id", "multifunction", NULL };

    for (const char *const *p = props; *p; p++) {
        if (!strcmp(*p, key)) {
            return true;
        }
    }
    return false;
}

char *qdev_prop_error(const char *type, const char *key, GError *gerr)
{
    char *msg = !gerr || g_error_matches(gerr, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION)
                ? g_strdup_printf("Property '%s.%s' not found", type, key)
                : g_strdup(gerr->message);

    g_clear_error(&gerr);
    return msg;
}

void qdev_print_prop(const char *name, const char *type, const char *desc, void *opaque)
{
    int pad = 24 - (int)strlen(name) - (int)strlen(type);

    printf("  %s=<%s>%*s - %s\n", name, type, pad > 0 ? pad : 0, "", desc);
}

bool device_help(const QDevOpt *opts, unsigned n)
{
    const char *driver = qdev_opt_get(opts, n, "driver");
    const DeviceTypeInfo *t;

    if (driver && (!strcmp(driver, "help") || !strcmp(driver, "?"))) {
        GPtrArray *sorted = g_ptr_array_new();
        const char *category = NULL;

        for (unsigned i = 0; i < n_device_types; i++) {
            g_ptr_array_add(sorted, (gpointer)device_types[i]);
        }
        g_ptr_array_sort(sorted, type_order);
        for (guint i = 0; i < sorted->len; i++) {
            t = g_ptr_array_index(sorted, i);
            if (!category || strcmp(category, t->category)) {
                printf("%s%s:\n", category ? "\n" : "", t->category);
                category = t->category;
            }
            printf("name \"%s\", bus %s, desc \"%s\"\n", t->name, t->bus ? t->bus : "PCI", t->desc);
        }
        g_ptr_array_free(sorted, TRUE);
        return true;
    }
    if (!qdev_opt_get(opts, n, "help") && !qdev_opt_get(opts, n, "?")) {
        return false;
    }
    t = driver ? device_type_find(driver) : NULL;
    if (!t) {
        return false;       /* device_new reports the unknown type */
    }
    t->help();
    return true;
}

/* The machine's bus of kind @bus (NULL: PCI). Buses devices provide (SCSI) are the device's to find. */
static bool bus_present(const char *bus)
{
    if (!bus) {
        return pci_bus_present();
    }
    if (!strcmp(bus, "virtio-bus")) {
        return virtio_mmio_bus_present();
    }
    return true;
}

bool device_new(const QDevOpt *opts, unsigned n, char **errp)
{
    const char *driver = qdev_opt_get(opts, n, "driver"), *id;
    const DeviceTypeInfo *t;
    DeviceState *dev;

    if (!driver) {
        *errp = g_strdup("Parameter 'driver' is missing");
        return false;
    }
    t = device_type_find(driver);
    if (!t) {
        *errp = g_strdup_printf("'%s' is not a valid device model name", driver);
        return false;
    }
    if (!bus_present(t->bus)) {
        *errp = g_strdup_printf("No '%s' bus found for device '%s'", t->bus ? t->bus : "PCI", driver);
        return false;
    }
    id = qdev_opt_get(opts, n, "id");
    if (id && qdev_find_device(id)) {
        *errp = g_strdup_printf("Duplicate ID '%s' for device", id);
        return false;
    }
    dev = t->create(opts, n, errp);
    if (!dev) {
        return false;
    }
    dev->type = t;
    dev->id = g_strdup(id);
    if (!devices) {
        devices = g_ptr_array_new();
    }
    g_ptr_array_add(devices, dev);
    return true;
}

DeviceState *qdev_find_device(const char *id)
{
    for (guint i = 0; devices && i < devices->len; i++) {
        DeviceState *dev = g_ptr_array_index(devices, i);
        if (dev->id && !strcmp(dev->id, id)) {
            return dev;
        }
    }
    return NULL;
}

void qdev_unplug(DeviceState *dev)
{
    char *id = dev->id;

    g_ptr_array_remove(devices, dev);
    if (dev->unplug) {
        dev->unplug(dev);
    }
    dev->unrealize(dev);
    g_free(id);
}

void qdev_register_types(void)
{
    type_register_simple("device", "object", true);
    type_register_simple("pci-device", "device", true);
    type_register_simple("virtio-pci", "pci-device", true);
    type_register_simple("virtio-device", "device", true);
    for (unsigned i = 0; i < n_device_types; i++) {
        type_register_simple(device_types[i]->name, device_types[i]->parent, false);
    }
}

void qdev_cleanup(void)
{
    while (devices && devices->len) {
        qdev_unplug(g_ptr_array_index(devices, devices->len - 1));
    }
    if (devices) {
        g_ptr_array_free(devices, TRUE);
        devices = NULL;
    }
    pci_bus_cleanup();
    drives_cleanup();
}
