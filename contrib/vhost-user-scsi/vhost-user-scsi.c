/*
 * vdm-vhost-user-scsi: the virtio-scsi device model with one scsi-hd unit
 * (target 0, LUN 0) served over a vhost-user socket (QEMU's
 * vhost-user-scsi-pci, vdm's test frontend).
 *
 * The command line follows QEMU's contrib/vhost-user-blk and
 * vhost-user-scsi: --socket-path / -s, --blk-file / -b, --read-only / -r,
 * --print-capabilities / -c.
 *
 * One glib main loop runs everything: vhost-user messages, kicks, and the
 * block backend's completions, which may come in any order; with
 * VIRTIO_F_IN_ORDER negotiated the core still publishes them in order.
 *
 * Context: single-threaded (the thread-pool engine's workers only do I/O).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hw/virtio/vhost-user-backend.h"
#include "hw/virtio/virtio-scsi.h"
#include "vdmd.h"
#include "vdmd-blk.h"

typedef struct Daemon {
    GMainLoop *loop;
    BlockBackend *blk;
    SCSIDisk disk;
    VirtIOSCSI dev;
    VhostUserBackend *be;
    bool features_logged;       /* for this connection */
    uint64_t used;              /* buffers published on finished connections */
    VirtQueueStats *qstats;     /* per queue, latest seen this connection */
} Daemon;

static void end_connection(Daemon *d)
{
    VirtQueueStats q;

    virtio_scsi_drain(&d->dev);
    vdmd_queue_stats_snapshot(&d->dev.parent_obj, d->qstats);
    vdmd_queue_stats_sum(d->qstats, d->dev.parent_obj.num_queues, &q);
    if (d->features_logged) {
        vdmd_log("connection: used buffers=%" PRIu64, q.used);
        d->used += q.used;
    }
    d->features_logged = false;
    memset(d->qstats, 0, d->dev.parent_obj.num_queues * sizeof(d->qstats[0]));
}

static void print_summary(Daemon *d)
{
    const SCSIDiskStats *ds = &d->disk.stats;
    const VirtIOSCSIStats *vs = &d->dev.stats;

    vdmd_log("total: %" PRIu64 " commands (read=%" PRIu64 " write=%" PRIu64 " sync=%" PRIu64
             " unmap=%" PRIu64 " write-same=%" PRIu64 ") check-conditions=%" PRIu64
             " bad-target=%" PRIu64 " overrun=%" PRIu64 "; %" PRIu64 " bytes read, %" PRIu64
             " written; tmf=%" PRIu64 " an=%" PRIu64 " events=%" PRIu64 "; used buffers=%" PRIu64,
             vs->cmds, ds->reads, ds->writes, ds->syncs, ds->unmaps, ds->write_sames, ds->check_conditions,
             vs->resp[VIRTIO_SCSI_S_BAD_TARGET], vs->resp[VIRTIO_SCSI_S_OVERRUN], ds->bytes_read,
             ds->bytes_written, vs->tmfs, vs->ans, vs->events, d->used);
}

/* ---- vhost-user hooks ---- */

static void on_queue_started(void *opaque, unsigned n, bool started)
{
    Daemon *d = opaque;

    if (started) {
        if (!d->features_logged) {
            d->features_logged = true;
            vdmd_log_negotiated(&d->dev.parent_obj, VIRTIO_ID_SCSI);
        }
        return;
    }
    /* The ring's index is read right after this and memory may go away: finish everything now. */
    virtio_scsi_drain(&d->dev);
    vdmd_queue_stats_snapshot(&d->dev.parent_obj, d->qstats);
}

static void on_reset(void *opaque)
{
    end_connection(opaque);
}

static int on_set_config(void *opaque, uint32_t offset, const uint8_t *data, uint32_t len, uint32_t flags)
{
    Daemon *d = opaque;

    return virtio_scsi_set_config(&d->dev, offset, data, len);
}

static const VhostUserBackendOps daemon_ops = {
    .set_config = on_set_config,
    .queue_started = on_queue_started,
    .reset = on_reset,
};

/* ---- command line ---- */

int main(int argc, char **argv)
{
    char *socket_path = NULL, *socket_alias = NULL, *image = NULL, *image_alias = NULL;
    char *in_order = NULL, *packed = NULL, *engine = NULL, *serial = NULL, *discard = NULL;
    gboolean read_only = FALSE, caps = FALSE;
    gint num_queues = 1, queue_size = 128;
    GOptionEntry entries[] = {
        { "socket-path", 's', 0, G_OPTION_ARG_FILENAME, &socket_path, "vhost-user socket to listen on", "PATH" },
        { "socket", 0, G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &socket_alias, "alias of --socket-path",
          "PATH" },
        { "blk-file", 'b', 0, G_OPTION_ARG_FILENAME, &image, "disk image file", "FILE" },
        { "image", 'i', G_OPTION_FLAG_HIDDEN, G_OPTION_ARG_FILENAME, &image_alias, "alias of --blk-file",
          "FILE" },
        { "read-only", 'r', 0, G_OPTION_ARG_NONE, &read_only, "open the image read-only (write protected)",
          NULL },
        { "print-capabilities", 'c', 0, G_OPTION_ARG_NONE, &caps, "print the backend's capabilities (JSON)",
          NULL },
        { "num-queues", 0, 0, G_OPTION_ARG_INT, &num_queues, "request queues (default 1)", "N" },
        { "queue-size", 0, 0, G_OPTION_ARG_INT, &queue_size, "largest ring (default 128)", "N" },
        VDMD_RING_OPTIONS(in_order, packed),
        { "discard", 0, 0, G_OPTION_ARG_STRING, &discard, "UNMAP / WRITE SAME with UNMAP (default on)",
          "on|off" },
        VDMD_BLK_ENGINE_OPTION(engine),
        { "serial", 0, 0, G_OPTION_ARG_STRING, &serial, "unit serial number (VPD 0x80)", "S" },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    SCSIDiskConf dconf;
    VirtIOSCSIConf conf;
    GError *err = NULL;
    Daemon d;
    int ret = 1;

    memset(&d, 0, sizeof(d));
    if (!vdmd_parse_args("vdm-vhost-user-scsi", "- virtio-scsi vhost-user backend", entries, &argc, &argv, &err)) {
        goto out;
    }
    if (caps) {
        /* vhost-user.rst, "Backend program conventions". */
        printf("{\n  \"type\": \"scsi\"\n}\n");
        ret = 0;
        goto out;
    }
    if (!socket_path) {
        socket_path = g_steal_pointer(&socket_alias);
    }
    if (!image) {
        image = g_steal_pointer(&image_alias);
    }
    if (!socket_path || !image) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "--socket-path and --blk-file are required");
        goto out;
    }

    scsi_disk_conf_init(&dconf);
    virtio_scsi_conf_init(&conf);
    conf.in_order = true;       /* offered unless told not to: the frontend decides */
    conf.packed = true;
    conf.num_queues = (uint32_t)MAX(num_queues, 0);
    conf.queue_size = (uint32_t)MAX(queue_size, 0);
    dconf.read_only = read_only;
    if (!vdmd_parse_on_off("--in-order", in_order, &conf.in_order, &err) ||
        !vdmd_parse_on_off("--packed", packed, &conf.packed, &err) ||
        !vdmd_parse_on_off("--discard", discard, &dconf.discard, &err)) {
        goto out;
    }
    if (serial && !scsi_disk_conf_set(&dconf, "serial", serial, &err)) {
        goto out;
    }

    d.blk = vdmd_blk_open(image, engine, read_only, &err);
    if (!d.blk) {
        goto out;
    }
    dconf.blk = d.blk;
    if (!scsi_disk_realize(&d.disk, &dconf, &err)) {
        goto out;
    }
    conf.disk = &d.disk;
    if (!virtio_scsi_realize(&d.dev, &conf, NULL, &err)) {
        goto out;
    }
    d.qstats = g_new0(VirtQueueStats, d.dev.parent_obj.num_queues);
    if (vhost_user_backend_guard_sigbus() < 0) {
        vdmd_log("cannot install the SIGBUS guard");
    }
    d.be = vhost_user_backend_new(&d.dev.parent_obj, &daemon_ops, &d);
    if (!d.be) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "cannot create the vhost-user backend");
        goto out;
    }
    blk_attach_main_context(d.blk, NULL);
    if (vhost_user_backend_listen(d.be, socket_path, &err) < 0) {
        goto out;
    }
    vdmd_log("listening on %s: image %s, %" PRIu64 " blocks of %u%s, engine %s, %u request queue(s) of %u",
             socket_path, image, d.disk.nb_blocks, d.disk.conf.logical_block_size,
             d.disk.read_only ? " (read-only)" : "", blk_engine_name(blk_get_engine(d.blk)), conf.num_queues,
             conf.queue_size);
    vdmd_log_offered(&d.dev.parent_obj, VIRTIO_ID_SCSI);

    d.loop = vdmd_main_loop_new();
    g_main_loop_run(d.loop);

    vdmd_log("terminating");
    vhost_user_backend_free(d.be);      /* closes the connection: on_reset prints its summary */
    d.be = NULL;
    end_connection(&d);
    print_summary(&d);
    ret = 0;

out:
    vdmd_report_error(&err);
    vhost_user_backend_free(d.be);
    if (d.dev.queues) {
        virtio_scsi_unrealize(&d.dev);
    }
    if (d.disk.blk) {
        scsi_disk_unrealize(&d.disk);
    }
    blk_unref(d.blk);
    if (d.loop) {
        g_main_loop_unref(d.loop);
    }
    g_free(d.qstats);
    g_free(socket_path);
    g_free(socket_alias);
    g_free(image);
    g_free(image_alias);
    g_free(in_order);
    g_free(packed);
    g_free(discard);
    g_free(engine);
    g_free(serial);
    return ret;
}
