/*
 * Devices: the registry of device types (each registered from its own file
 * with device_type_init) and -device creation on the PCI bus (see
 * include/sysemu/qdev.h). Drives are in system/blockdev.c.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "hw/acpi/pcihp.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-mmio.h"
#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"
#include "sysemu/qmp.h"
#include "sysemu/sysemu.h"

/* Filled by constructors before main, read-only afterwards. */
static const DeviceTypeInfo *device_types[32];
static unsigned n_device_types;
/* What qdev keeps about a plugged device besides the device itself. */
typedef struct QDevEntry {
    DeviceState *dev;
    char *anon_name;            /* "device[N]" when there is no id */
    bool hotplugged, pending_delete;
    int bus_index;
    QDevOpt *opts;              /* deep copy of the creation options */
    unsigned nopts;
} QDevEntry;

/* Every plugged device (QDevEntry), in creation order. */
static GPtrArray *devices;
/* QEMU's counters: peripheral-anon "device[N]" and a bus's "child[N]" are never reused. */
static unsigned anon_count, bus_child_count;

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

static QDevEntry *entry_of(const DeviceState *dev)
{
    for (guint i = 0; devices && i < devices->len; i++) {
        QDevEntry *e = g_ptr_array_index(devices, i);
        if (e->dev == dev) {
            return e;
        }
    }
    return NULL;
}

static void entry_free(QDevEntry *e)
{
    for (unsigned i = 0; i < e->nopts; i++) {
        g_free((char *)e->opts[i].key);
        g_free((char *)e->opts[i].val);
    }
    g_free(e->opts);
    g_free(e->anon_name);
    g_free(e);
}

/* QEMU's id_wellformed: a letter, then letters, digits, '-', '.', '_' (ids name QOM path components). */
static bool id_wellformed(const char *id)
{
    if (!g_ascii_isalpha(id[0])) {
        return false;
    }
    for (const char *p = id + 1; *p; p++) {
        if (!g_ascii_isalnum(*p) && !strchr("-._", *p)) {
            return false;
        }
    }
    return true;
}

static DeviceState *device_create(const QDevOpt *opts, unsigned n, bool hotplugged, char **errp)
{
    const char *driver = qdev_opt_get(opts, n, "driver"), *id = qdev_opt_get(opts, n, "id");
    const DeviceTypeInfo *t;
    DeviceState *dev;
    QDevEntry *e;

    if (id && !id_wellformed(id)) {
        *errp = g_strdup("Parameter 'id' expects an identifier");
        return NULL;
    }
    if (!driver) {
        *errp = g_strdup("Parameter 'driver' is missing");
        return NULL;
    }
    t = device_type_find(driver);
    if (!t) {
        *errp = g_strdup_printf("'%s' is not a valid device model name", driver);
        return NULL;
    }
    if (!bus_present(t->bus)) {
        *errp = g_strdup_printf("No '%s' bus found for device '%s'", t->bus ? t->bus : "PCI", driver);
        return NULL;
    }
    /*
     * Of the machine's buses only pc's PCI bus 0 has a hotplug controller
     * (QEMU: q35 has it on PCIe root ports, virtio-mmio has none); buses a
     * device provides (SCSI) take hot-added devices directly.
     */
    if (hotplugged && (t->bus ? !strcmp(t->bus, "virtio-bus") : !acpi_pcihp_present())) {
        *errp = g_strdup_printf("Bus '%s' does not support hotplugging", t->bus ? "virtio-mmio-bus.0" : "pcie.0");
        return NULL;
    }
    if (id && qdev_find_device(id)) {
        *errp = g_strdup_printf("Duplicate ID '%s' for device", id);
        return NULL;
    }
    dev = t->create(opts, n, errp);
    if (!dev) {
        return NULL;
    }
    dev->type = t;
    dev->id = g_strdup(id);
    e = g_new0(QDevEntry, 1);
    e->dev = dev;
    e->hotplugged = hotplugged;
    e->bus_index = (int)bus_child_count++;
    if (!id) {
        e->anon_name = g_strdup_printf("device[%u]", anon_count++);
    }
    e->opts = g_new0(QDevOpt, n ? n : 1);
    e->nopts = n;
    for (unsigned i = 0; i < n; i++) {
        e->opts[i].key = g_strdup(opts[i].key);
        e->opts[i].val = g_strdup(opts[i].val);
    }
    if (!devices) {
        devices = g_ptr_array_new();
    }
    g_ptr_array_add(devices, e);
    return dev;
}

bool device_new(const QDevOpt *opts, unsigned n, char **errp)
{
    return device_create(opts, n, false, errp) != NULL;
}

bool qdev_device_add(const QDevOpt *opts, unsigned n, char **errp)
{
    DeviceState *dev = device_create(opts, n, true, errp);

    if (!dev) {
        return false;
    }
    if (dev->unplug == pci_device_unplug) {
        acpi_pcihp_device_plugged(PCI_SLOT(((PCIDevice *)dev)->devfn));
    }
    return true;
}

DeviceState *qdev_find_device(const char *id)
{
    for (guint i = 0; devices && i < devices->len; i++) {
        QDevEntry *e = g_ptr_array_index(devices, i);
        if (e->dev->id && !strcmp(e->dev->id, id)) {
            return e->dev;
        }
    }
    return NULL;
}

DeviceState *qdev_nth_device(unsigned i)
{
    return devices && i < devices->len ? ((QDevEntry *)g_ptr_array_index(devices, i))->dev : NULL;
}

void qdev_get_info(DeviceState *dev, QDevInfo *info)
{
    QDevEntry *e = entry_of(dev);

    g_assert(e);        /* host bug: only plugged devices are asked about */
    info->qom_name = dev->id ? dev->id : e->anon_name;
    info->anonymous = !dev->id;
    info->hotplugged = e->hotplugged;
    info->pending_delete = e->pending_delete;
    info->bus_index = e->bus_index;
    info->opts = e->opts;
    info->nopts = e->nopts;
}

char *qdev_qom_path(DeviceState *dev)
{
    QDevEntry *e = entry_of(dev);

    g_assert(e);
    return dev->id ? g_strdup_printf("/machine/peripheral/%s", dev->id)
                   : g_strdup_printf("/machine/peripheral-anon/%s", e->anon_name);
}

char *qdev_virtio_backend_type(const DeviceState *dev)
{
    const DeviceTypeInfo *t = dev->type;
    size_t len = strlen(t->name);

    if (t->virtio_backend) {
        return g_strdup(t->virtio_backend);
    }
    if (!t->parent || strcmp(t->parent, "virtio-pci") || len < 4 || strcmp(t->name + len - 4, "-pci")) {
        return NULL;
    }
    /* QEMU names the backends virtio-X-device, vhost-user-X */
    return g_strdup_printf("%.*s%s", (int)(len - 4), t->name,
                           g_str_has_prefix(t->name, "virtio-") ? "-device" : "");
}

/*
 * DEVICE_DELETED data collected while qdev_unplug_and_notify runs: devices
 * unplugged inside it (children of a bus the device provides, e.g. a SCSI
 * disk of the adapter) finish first and are announced first, as QEMU's
 * device_unparent empties a device's buses before it goes itself.
 */
static GPtrArray *deleted_events;

static JSONValue *device_deleted_data(const char *id, const char *path)
{
    JSONValue *data = json_object();

    if (id) {
        json_object_set(data, "device", json_string(id));
    }
    json_object_set(data, "path", json_string(path));
    return data;
}

void qdev_unplug(DeviceState *dev)
{
    QDevEntry *e = entry_of(dev);
    char *id = dev->id, *path = NULL, *backend = NULL;

    if (deleted_events) {
        path = qdev_qom_path(dev);
        backend = qdev_virtio_backend_type(dev);
    }
    g_ptr_array_remove(devices, e);
    entry_free(e);
    if (dev->unplug) {
        dev->unplug(dev);
    }
    dev->unrealize(dev);
    if (deleted_events) {
        /* the virtio backend child goes before its proxy */
        if (backend) {
            char *bpath = g_strdup_printf("%s/virtio-backend", path);
            g_ptr_array_add(deleted_events, device_deleted_data(NULL, bpath));
            g_free(bpath);
        }
        g_ptr_array_add(deleted_events, device_deleted_data(id, path));
    }
    g_free(backend);
    g_free(path);
    g_free(id);
}

void qdev_unplug_and_notify(DeviceState *dev)
{
    GPtrArray *events;

    g_assert(!deleted_events);      /* host bug: not re-entered */
    deleted_events = g_ptr_array_new();
    qdev_unplug(dev);
    events = deleted_events;
    deleted_events = NULL;
    for (guint i = 0; i < events->len; i++) {
        qmp_event_emit("DEVICE_DELETED", g_ptr_array_index(events, i));
    }
    g_ptr_array_free(events, TRUE);
}

bool qdev_device_del(const char *id, const char **err_class, char **errp)
{
    DeviceState *dev = NULL;
    QDevEntry *e;

    *err_class = NULL;
    if (id[0] == '/') {
        /* a QOM path: only a device's own node names it */
        for (guint i = 0; devices && i < devices->len && !dev; i++) {
            QDevEntry *c = g_ptr_array_index(devices, i);
            char *p = qdev_qom_path(c->dev);
            if (!strcmp(p, id)) {
                dev = c->dev;
            }
            g_free(p);
        }
    } else {
        dev = qdev_find_device(id);
    }
    if (!dev) {
        *err_class = "DeviceNotFound";
        *errp = g_strdup_printf("Device '%s' not found", id);
        return false;
    }
    e = entry_of(dev);
    if (e->pending_delete) {
        *errp = g_strdup_printf("Device %s is already in the process of unplug", id);
        return false;
    }
    if (dev->type->bus && strcmp(dev->type->bus, "virtio-bus")) {
        /* a bus a device provides (SCSI): removed at once, as QEMU's simple unplug */
        qdev_unplug_and_notify(dev);
        return true;
    }
    if (dev->unplug != pci_device_unplug || !acpi_pcihp_present()) {
        *errp = g_strdup_printf("Bus '%s' does not support hotplugging",
                                dev->unplug == pci_device_unplug ? "pcie.0" : "virtio-mmio-bus.0");
        return false;
    }
    /* pc: ask the guest; the device goes when it ejects the slot */
    e->pending_delete = true;
    acpi_pcihp_unplug_request(PCI_SLOT(((PCIDevice *)dev)->devfn));
    return true;
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
        qdev_unplug(((QDevEntry *)g_ptr_array_index(devices, devices->len - 1))->dev);
    }
    if (devices) {
        g_ptr_array_free(devices, TRUE);
        devices = NULL;
    }
    pci_bus_cleanup();
    drives_cleanup();
}
