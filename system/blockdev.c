/*
 * Block drives: -drive / -blockdev open BlockBackends by name; devices
 * attach to them (include/sysemu/blockdev.h).
 */
#include <errno.h>
#include <glib.h>
#include <glib-unix.h>
#include <stdio.h>
#include <string.h>

#include "sysemu/blockdev.h"

typedef struct Drive {
    char *id;
    BlockBackend *blk;
    bool attached;
    bool blockdev;              /* -blockdev (id is a node-name) or -drive (a device name) */
    void (*resized)(void *opaque);  /* the attached device's resize hook */
    void *resized_opaque;
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

Drive *drive_find(const char *id)
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
    const char *id, *ro, *driver = "file", *rev = qdev_opt_get(opts, n, "x-reverse-completions");
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
    id = qdev_opt_get(opts, n, blockdev ? "node-name" : "id");
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
        driver = qdev_opt_get(opts, n, "driver");
        if (!driver) {
            *errp = g_strdup("Parameter 'driver' is missing");
            return false;
        }
        if (strcmp(driver, "file") && strcmp(driver, "null-co")) {
            *errp = g_strdup_printf("Invalid parameter value for 'driver': '%s' (vdm: file, null-co)",
                                    driver);
            return false;
        }
        bo.filename = qdev_opt_get(opts, n, "filename");
        ro = qdev_opt_get(opts, n, "read-only");
    } else {
        const char *ifv = qdev_opt_get(opts, n, "if"), *fmt = qdev_opt_get(opts, n, "format");

        if (!ifv || strcmp(ifv, "none")) {
            *errp = g_strdup("vdm: only if=none drives are supported");
            return false;
        }
        if (fmt && strcmp(fmt, "raw")) {
            *errp = g_strdup_printf("'%s' invalid format (vdm: raw only)", fmt);
            return false;
        }
        bo.filename = qdev_opt_get(opts, n, "file");
        ro = qdev_opt_get(opts, n, "readonly");
    }
    if (ro && !qdev_str_bool(ro, &bo.read_only)) {
        *errp = g_strdup_printf("Parameter 'read-only' expects 'on' or 'off'");
        return false;
    }
    if (!strcmp(driver, "null-co")) {
        const char *size = qdev_opt_get(opts, n, "size");
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
        if (!aio_engine(qdev_opt_get(opts, n, "aio"), &bo.engine, errp)) {
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

BlockBackend *drive_get_blk(const Drive *d)
{
    return d->blk;
}

bool drive_attach(Drive *d, void (*resized)(void *opaque), void *opaque)
{
    if (d->attached) {
        return false;
    }
    d->attached = true;
    d->resized = resized;
    d->resized_opaque = opaque;
    return true;
}

Drive *drive_claim(const char *type, const char *drive_id, void (*resized)(void *opaque), void *opaque,
                   char **errp)
{
    Drive *d;

    if (!drive_id) {
        *errp = g_strdup("drive property not set");
        return NULL;
    }
    d = drive_find(drive_id);
    if (!d) {
        *errp = g_strdup_printf("Property '%s.drive' can't find value '%s'", type, drive_id);
        return NULL;
    }
    if (!drive_attach(d, resized, opaque)) {
        *errp = g_strdup_printf("Drive '%s' is already in use by another device", drive_id);
        return NULL;
    }
    return d;
}

void drive_detach(Drive *d)
{
    d->attached = false;
    d->resized = NULL;
    d->resized_opaque = NULL;
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
    if (d->attached && d->resized) {
        d->resized(d->resized_opaque);
    }
    return true;
}

void drives_cleanup(void)
{
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
