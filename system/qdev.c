/*
 * Drives and devices: -drive / -blockdev open BlockBackends, -device
 * creates devices on the PCI bus (see include/sysemu/qdev.h).
 *
 * virtio-blk-pci is the virtio-blk device model (hw/block/virtio-blk.c)
 * behind the virtio-pci transport, its BlockBackend's completions delivered
 * by the main loop's GSource.
 */
#include <errno.h>
#include <glib.h>
#include <glib-unix.h>
#include <stdio.h>
#include <string.h>

#include "block/block-backend.h"
#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-pci.h"
#include "sysemu/qdev.h"
#include "sysemu/sysemu.h"

static const char *opt_get(const QDevOpt *opts, unsigned n, const char *key)
{
    for (unsigned i = n; i-- > 0;) {
        if (strcmp(opts[i].key, key) == 0) {
            return opts[i].val;
        }
    }
    return NULL;
}

static bool str_bool(const char *v, bool *out)
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

/* ---- drives ---- */

typedef struct VirtIOBlkPCI VirtIOBlkPCI;

typedef struct Drive {
    char *id;
    BlockBackend *blk;
    bool attached;
    bool blockdev;              /* -blockdev (id is a node-name) or -drive (a device name) */
    VirtIOBlkPCI *dev;          /* the device using it, when attached */
    unsigned reverse;           /* x-reverse-completions: group size, 0 off */
    GSource *reverse_source;    /* replaces the backend's own main-loop source */
} Drive;

static GPtrArray *drives;

/*
 * x-reverse-completions=N (test only): finished requests are held (the
 * backend's blk_set_hold hook) until N are, then delivered newest first,
 * so a device sees its requests complete in reverse order. blk_drain (reset,
 * unplug) still delivers what is held, oldest first.
 */
static gboolean reverse_completions_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    Drive *d = opaque;
    unsigned held = blk_wait_held(d->blk, d->reverse, 0);   /* collects without waiting */

    if (held >= d->reverse) {
        for (unsigned i = held; i-- > 0;) {
            blk_release_held(d->blk, i);
        }
    }
    return G_SOURCE_CONTINUE;
}

static Drive *drive_find(const char *id)
{
    for (guint i = 0; drives && i < drives->len; i++) {
        Drive *d = g_ptr_array_index(drives, i);
        if (strcmp(d->id, id) == 0) {
            return d;
        }
    }
    return NULL;
}

static bool aio_engine(const char *aio, BlockEngine *engine, char **errp)
{
    if (!aio) {
        *engine = BLK_ENGINE_AUTO;
    } else if (!strcmp(aio, "threads")) {
        *engine = BLK_ENGINE_THREADS;
    } else if (!strcmp(aio, "io_uring") || !strcmp(aio, "native")) {
        *engine = BLK_ENGINE_IO_URING;
    } else {
        *errp = g_strdup_printf("Parameter 'aio' does not accept value '%s'", aio);
        return false;
    }
    return true;
}

bool drive_new(const QDevOpt *opts, unsigned n, bool blockdev, char **errp)
{
    static const char *const drive_keys[] = {
        "file", "if", "id", "format", "aio", "readonly", "cache", "discard", "media",
        "x-reverse-completions", NULL };
    static const char *const blockdev_keys[] = {
        "driver", "filename", "node-name", "aio", "read-only", "size", "read-zeroes", "cache.direct",
        "cache.no-flush", "discard", "auto-read-only", "detect-zeroes", "x-reverse-completions", NULL };
    const char *const *keys = blockdev ? blockdev_keys : drive_keys;
    BlockBackendOptions bo = { 0 };
    const char *id, *ro, *driver = "file", *rev = opt_get(opts, n, "x-reverse-completions");
    guint64 reverse = 0;
    GError *gerr = NULL;
    Drive *d;

    for (unsigned i = 0; i < n; i++) {
        const char *const *k = keys;
        while (*k && strcmp(*k, opts[i].key)) {
            k++;
        }
        if (!*k) {
            *errp = g_strdup_printf("Invalid parameter '%s'", opts[i].key);
            return false;
        }
    }
    id = opt_get(opts, n, blockdev ? "node-name" : "id");
    if (!id) {
        *errp = g_strdup(blockdev ? "A block device must be given a node-name" :
                         "vdm: -drive needs id= (only if=none drives are supported)");
        return false;
    }
    if (drive_find(id)) {
        *errp = g_strdup_printf("Duplicate ID '%s' for drive", id);
        return false;
    }
    if (blockdev) {
        driver = opt_get(opts, n, "driver");
        if (!driver) {
            *errp = g_strdup("Parameter 'driver' is missing");
            return false;
        }
        if (strcmp(driver, "file") && strcmp(driver, "null-co")) {
            *errp = g_strdup_printf("Invalid parameter value for 'driver': '%s' (vdm: file, null-co)",
                                    driver);
            return false;
        }
        bo.filename = opt_get(opts, n, "filename");
        ro = opt_get(opts, n, "read-only");
    } else {
        const char *ifv = opt_get(opts, n, "if"), *fmt = opt_get(opts, n, "format");

        if (!ifv || strcmp(ifv, "none")) {
            *errp = g_strdup("vdm: only if=none drives are supported");
            return false;
        }
        if (fmt && strcmp(fmt, "raw")) {
            *errp = g_strdup_printf("'%s' invalid format (vdm: raw only)", fmt);
            return false;
        }
        bo.filename = opt_get(opts, n, "file");
        ro = opt_get(opts, n, "readonly");
    }
    if (ro && !str_bool(ro, &bo.read_only)) {
        *errp = g_strdup_printf("Parameter 'read-only' expects 'on' or 'off'");
        return false;
    }
    if (!strcmp(driver, "null-co")) {
        const char *size = opt_get(opts, n, "size");
        guint64 sz = 1ull << 30;        /* QEMU's null-co default: 1 GiB */

        if (size && !g_ascii_string_to_unsigned(size, 10, 0, UINT64_MAX, &sz, NULL)) {
            *errp = g_strdup("Parameter 'size' expects a number");
            return false;
        }
        bo.engine = BLK_ENGINE_NULL;
        bo.null_size = sz;
    } else {
        if (!bo.filename) {
            *errp = g_strdup(blockdev ? "Parameter 'filename' is missing" : "vdm: -drive needs file=");
            return false;
        }
        if (!aio_engine(opt_get(opts, n, "aio"), &bo.engine, errp)) {
            return false;
        }
    }
    if (rev && !g_ascii_string_to_unsigned(rev, 10, 0, 1024, &reverse, NULL)) {
        *errp = g_strdup("Parameter 'x-reverse-completions' expects a number of requests (0..1024)");
        return false;
    }
    d = g_new0(Drive, 1);
    d->blk = blk_new_open(&bo, &gerr);
    if (!d->blk) {
        *errp = g_strdup_printf("Could not open '%s': %s", bo.filename ? bo.filename : id, gerr->message);
        g_error_free(gerr);
        g_free(d);
        return false;
    }
    /* completions are delivered by the main loop */
    d->reverse = (unsigned)reverse;
    if (d->reverse > 1) {
        blk_set_hold(d->blk, true);
        d->reverse_source = g_unix_fd_source_new(blk_get_event_fd(d->blk), G_IO_IN);
        g_source_set_callback(d->reverse_source, (GSourceFunc)(void (*)(void))reverse_completions_ready,
                              d, NULL);
        g_source_attach(d->reverse_source, NULL);
    } else {
        blk_attach_main_context(d->blk, NULL);
    }
    d->id = g_strdup(id);
    d->blockdev = blockdev;
    if (!drives) {
        drives = g_ptr_array_new();
    }
    g_ptr_array_add(drives, d);
    return true;
}

/* ---- devices ---- */

struct VirtIOBlkPCI {
    VirtIOPCIProxy proxy;       /* first: the PCIDevice */
    VirtIOBlock vblk;
    Drive *drive;
};

static int vblk_pci_config_write(VirtIODevice *vdev, uint32_t offset, const uint8_t *data, uint32_t len)
{
    return virtio_blk_set_config(VIRTIO_BLK(vdev), offset, data, len);
}

static void vblk_pci_unrealize(PCIDevice *d)
{
    VirtIOBlkPCI *s = (VirtIOBlkPCI *)d;

    virtio_pci_unrealize(&s->proxy);
    virtio_blk_unrealize(&s->vblk);
    s->drive->attached = false;
    s->drive->dev = NULL;
    g_free(d->id);
    g_free(s);
}

/* Properties every PCI device takes (QEMU's PCIDevice properties). */
static const char *const pci_common_props[] = { "addr", "bus", "id", "multifunction", NULL };
/* virtio-pci properties accepted with their only supported value. */
static const char *const virtio_pci_fixed_props[] = { "disable-legacy", "disable-modern", NULL };

static bool in_list(const char *const *list, const char *key)
{
    for (; *list; list++) {
        if (!strcmp(*list, key)) {
            return true;
        }
    }
    return false;
}

/* "SLOT[.FN]" in hex, as QEMU's PCI "addr" property. Returns devfn or -1. */
static int parse_pci_addr(const char *s)
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

static bool vblk_pci_new(const QDevOpt *opts, unsigned n, char **errp)
{
    VirtIOBlkConf conf;
    VirtIOBlkPCI *s;
    const char *drive_id = NULL, *addr = opt_get(opts, n, "addr");
    GError *gerr = NULL;
    int devfn = -1, ret;
    long vectors = -1;          /* QEMU's default: num_queues + 1 */
    Drive *drive;

    virtio_blk_conf_init(&conf);
    for (unsigned i = 0; i < n; i++) {
        const char *k = opts[i].key, *v = opts[i].val;

        if (!strcmp(k, "driver") || in_list(pci_common_props, k)) {
            continue;
        }
        if (!strcmp(k, "drive")) {
            drive_id = v;
            continue;
        }
        if (!strcmp(k, "vectors")) {
            char *end;
            vectors = strtol(v, &end, 0);
            if (end == v || *end || vectors < 0 || vectors > VIRTIO_PCI_MAX_VECTORS) {
                *errp = g_strdup_printf("Property 'virtio-blk-pci.vectors' doesn't take value '%s' "
                                        "(0..%d)", v, VIRTIO_PCI_MAX_VECTORS);
                return false;
            }
            continue;
        }
        if (in_list(virtio_pci_fixed_props, k)) {
            bool b;
            if (!str_bool(v, &b) || b != !strcmp(k, "disable-legacy")) {
                *errp = g_strdup_printf("vdm: virtio-blk-pci supports only disable-legacy=on, "
                                        "disable-modern=off");
                return false;
            }
            continue;
        }
        if (!virtio_blk_conf_set(&conf, k, v, &gerr)) {
            if (g_error_matches(gerr, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION)) {
                *errp = g_strdup_printf("Property 'virtio-blk-pci.%s' not found", k);
            } else {
                *errp = g_strdup(gerr->message);
            }
            g_error_free(gerr);
            return false;
        }
    }
    if (!drive_id) {
        *errp = g_strdup("drive property not set");
        return false;
    }
    drive = drive_find(drive_id);
    if (!drive) {
        *errp = g_strdup_printf("Property 'virtio-blk-pci.drive' can't find value '%s'", drive_id);
        return false;
    }
    if (drive->attached) {
        *errp = g_strdup_printf("Drive '%s' is already in use by another device", drive_id);
        return false;
    }
    if (addr) {
        devfn = parse_pci_addr(addr);
        if (devfn < 0) {
            *errp = g_strdup_printf("Property 'virtio-blk-pci.addr' doesn't take value '%s'", addr);
            return false;
        }
    }
    conf.blk = drive->blk;
    s = g_new0(VirtIOBlkPCI, 1);
    if (!virtio_blk_realize(&s->vblk, &conf, vdm_guest_memory(), &gerr)) {
        *errp = g_strdup(gerr->message);
        g_error_free(gerr);
        g_free(s);
        return false;
    }
    if (vectors < 0) {
        vectors = MIN(s->vblk.parent_obj.num_queues + 1, VIRTIO_PCI_MAX_VECTORS);
    }
    ret = virtio_pci_realize(&s->proxy, &s->vblk.parent_obj, "virtio-blk-pci", devfn, 0x010000,
                             (unsigned)vectors);
    if (ret < 0) {
        *errp = devfn >= 0 ? g_strdup_printf("PCI: slot %d function %d not available for virtio-blk-pci",
                                             PCI_SLOT(devfn), PCI_FUNC(devfn))
                           : g_strdup("PCI: no slot available for virtio-blk-pci");
        virtio_blk_unrealize(&s->vblk);
        g_free(s);
        return false;
    }
    s->proxy.config_write = vblk_pci_config_write;
    s->proxy.pci_dev.unrealize = vblk_pci_unrealize;
    s->proxy.pci_dev.id = g_strdup(opt_get(opts, n, "id"));
    s->drive = drive;
    drive->attached = true;
    drive->dev = s;
    return true;
}

static void print_prop(const char *name, const char *type, const char *desc, void *opaque)
{
    printf("  %s=<%s>%*s - %s\n", name, type, (int)(24 - strlen(name) - strlen(type)), "", desc);
}

static void vblk_pci_help(void)
{
    printf("virtio-blk-pci options:\n");
    print_prop("addr", "int32", "Slot and optional function number, example: 06.0 or 06", NULL);
    print_prop("drive", "str", "Node name or ID of a block device to use as a backend", NULL);
    print_prop("vectors", "uint32", "MSI-X vectors (default num-queues + 1, 0: no MSI-X, max 64)", NULL);
    print_prop("disable-legacy", "OnOffAuto", "on (vdm: modern only)", NULL);
    print_prop("disable-modern", "bool", "false (vdm: modern only)", NULL);
    virtio_blk_conf_list(print_prop, NULL);
}

typedef struct DeviceType {
    const char *name;
    const char *desc;
    bool (*create)(const QDevOpt *opts, unsigned n, char **errp);
    void (*help)(void);
} DeviceType;

static const DeviceType device_types[] = {
    { "virtio-blk-pci", "virtio block device on PCI (modern)", vblk_pci_new, vblk_pci_help },
};

static const DeviceType *device_type_find(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(device_types); i++) {
        if (!strcmp(device_types[i].name, name)) {
            return &device_types[i];
        }
    }
    return NULL;
}

bool device_help(const QDevOpt *opts, unsigned n)
{
    const char *driver = opt_get(opts, n, "driver");
    const DeviceType *t;

    if (driver && (!strcmp(driver, "help") || !strcmp(driver, "?"))) {
        printf("Storage devices:\n");
        for (size_t i = 0; i < G_N_ELEMENTS(device_types); i++) {
            printf("name \"%s\", bus PCI, desc \"%s\"\n", device_types[i].name, device_types[i].desc);
        }
        return true;
    }
    if (!opt_get(opts, n, "help") && !opt_get(opts, n, "?")) {
        return false;
    }
    t = driver ? device_type_find(driver) : NULL;
    if (!t) {
        return false;       /* device_new reports the unknown type */
    }
    t->help();
    return true;
}

bool device_new(const QDevOpt *opts, unsigned n, char **errp)
{
    const char *driver = opt_get(opts, n, "driver");
    const DeviceType *t;

    if (!driver) {
        *errp = g_strdup("Parameter 'driver' is missing");
        return false;
    }
    t = device_type_find(driver);
    if (!t) {
        *errp = g_strdup_printf("'%s' is not a valid device model name", driver);
        return false;
    }
    if (!pci_bus_present()) {
        *errp = g_strdup_printf("No 'PCI' bus found for device '%s'", driver);
        return false;
    }
    return t->create(opts, n, errp);
}

bool qdev_block_resize(const char *device, const char *node_name, int64_t size, char **errp)
{
    Drive *d = NULL;
    int ret;

    if (device) {
        d = drive_find(device);
        if (d && d->blockdev) {
            d = NULL;           /* a node-name is not a device name */
        }
    }
    if (!d && node_name) {
        d = drive_find(node_name);
        if (d && !d->blockdev) {
            d = NULL;
        }
    }
    if (!d) {
        *errp = g_strdup_printf("Cannot find device='%s' nor node-name='%s'", device ? device : "",
                                node_name ? node_name : "");
        return false;
    }
    if (size < 0) {
        *errp = g_strdup("Parameter 'size' expects a >0 size");
        return false;
    }
    ret = blk_truncate(d->blk, (uint64_t)size);
    if (ret == -EROFS || ret == -EACCES || ret == -EPERM) {
        *errp = g_strdup("Image is read-only");
        return false;
    }
    if (ret < 0) {
        *errp = g_strdup_printf("Could not resize: %s", g_strerror(-ret));
        return false;
    }
    if (d->dev) {
        virtio_blk_resize(&d->dev->vblk);
    }
    return true;
}

void qdev_register_types(void)
{
    type_register_simple("device", "object", true);
    type_register_simple("pci-device", "device", true);
    type_register_simple("virtio-pci", "pci-device", true);
    type_register_simple("virtio-blk-pci", "virtio-pci", false);
}

void qdev_cleanup(void)
{
    pci_bus_cleanup();
    for (guint i = 0; drives && i < drives->len; i++) {
        Drive *d = g_ptr_array_index(drives, i);
        if (d->reverse_source) {
            g_source_destroy(d->reverse_source);
            g_source_unref(d->reverse_source);
        }
        blk_unref(d->blk);
        g_free(d->id);
        g_free(d);
    }
    if (drives) {
        g_ptr_array_free(drives, TRUE);
        drives = NULL;
    }
}
