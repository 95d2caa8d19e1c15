/*
 * vdm-vhost-user-blk: the virtio-blk device model served over a vhost-user
 * socket (QEMU's vhost-user-blk-pci, DPDK virtio-user, vdm's test frontend).
 *
 * One glib main loop runs everything: vhost-user messages, kicks, and the
 * block backend's completions. Requests run in parallel in the backend and
 * complete out of order; with VIRTIO_F_IN_ORDER negotiated the core still
 * publishes them in order (batched when every buffer was used completely).
 *
 * Context: single-threaded (the thread-pool engine's workers only do I/O).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "hw/virtio/vhost-user-backend.h"
#include "hw/virtio/virtio-blk.h"
#include "vdmd.h"
#include "vdmd-blk.h"

static const char *const blk_type_names[16] = {
    [VIRTIO_BLK_T_IN] = "read",
    [VIRTIO_BLK_T_OUT] = "write",
    [VIRTIO_BLK_T_FLUSH] = "flush",
    [VIRTIO_BLK_T_GET_ID] = "get-id",
    [VIRTIO_BLK_T_DISCARD] = "discard",
    [VIRTIO_BLK_T_WRITE_ZEROES] = "write-zeroes",
};

/* Counters a summary reports: device requests plus the core's queue stats. */
typedef struct Totals {
    uint64_t reqs[16];
    uint64_t ok, ioerr, unsupp;
    uint64_t bytes_read, bytes_written;
    uint64_t used, used_entries, flushes, notifies;
} Totals;

typedef struct Daemon {
    GMainLoop *loop;
    BlockBackend *blk;
    VirtIOBlock dev;
    VhostUserBackend *be;
    bool features_logged;       /* for this connection */
    Totals conn_start;          /* device counters when the connection's first ring started */
    Totals all;                 /* finished connections */
    VirtQueueStats *qstats;     /* per queue, latest seen this connection */
    unsigned connections;
} Daemon;

/* ---- statistics ---- */

static void device_totals(Daemon *d, Totals *t)
{
    VirtIOBlkStats st;

    virtio_blk_get_stats(&d->dev, &st);
    memset(t, 0, sizeof(*t));
    memcpy(t->reqs, st.reqs, sizeof(t->reqs));
    t->ok = st.status_ok;
    t->ioerr = st.status_ioerr;
    t->unsupp = st.status_unsupp;
    t->bytes_read = st.bytes_read;
    t->bytes_written = st.bytes_written;
}

/* This connection's counters: device counters since it started, plus its queues. */
static void connection_totals(Daemon *d, Totals *t)
{
    Totals now;
    VirtQueueStats q;

    device_totals(d, &now);
    memset(t, 0, sizeof(*t));
    for (unsigned i = 0; i < 16; i++) {
        t->reqs[i] = now.reqs[i] - d->conn_start.reqs[i];
    }
    t->ok = now.ok - d->conn_start.ok;
    t->ioerr = now.ioerr - d->conn_start.ioerr;
    t->unsupp = now.unsupp - d->conn_start.unsupp;
    t->bytes_read = now.bytes_read - d->conn_start.bytes_read;
    t->bytes_written = now.bytes_written - d->conn_start.bytes_written;
    vdmd_queue_stats_sum(d->qstats, d->dev.parent_obj.num_queues, &q);
    t->used = q.used;
    t->used_entries = q.used_entries;
    t->flushes = q.flushes;
    t->notifies = q.notifies;
}

static void totals_add(Totals *a, const Totals *b)
{
    for (unsigned i = 0; i < 16; i++) {
        a->reqs[i] += b->reqs[i];
    }
    a->ok += b->ok;
    a->ioerr += b->ioerr;
    a->unsupp += b->unsupp;
    a->bytes_read += b->bytes_read;
    a->bytes_written += b->bytes_written;
    a->used += b->used;
    a->used_entries += b->used_entries;
    a->flushes += b->flushes;
    a->notifies += b->notifies;
}

static void print_summary(const char *what, const Totals *t)
{
    GString *s = g_string_new(NULL);
    uint64_t total = 0;

    for (unsigned i = 0; i < 16; i++) {
        total += t->reqs[i];
        if (t->reqs[i]) {
            g_string_append_printf(s, " %s=%" PRIu64, blk_type_names[i] ? blk_type_names[i] : "other",
                                   t->reqs[i]);
        }
    }
    vdmd_log("%s: %" PRIu64 " requests (%s ) status ok=%" PRIu64 " ioerr=%" PRIu64 " unsupp=%" PRIu64
             "; %" PRIu64 " bytes read, %" PRIu64 " written", what, total, s->len ? s->str : " none",
             t->ok, t->ioerr, t->unsupp, t->bytes_read, t->bytes_written);
    vdmd_log("%s: used buffers=%" PRIu64 " used entries=%" PRIu64 " (batches; %" PRIu64
             " buffers published without an entry of their own) flushes=%" PRIu64 " notifies=%" PRIu64,
             what, t->used, t->used_entries, t->used - MIN(t->used, t->used_entries), t->flushes,
             t->notifies);
    g_string_free(s, TRUE);
}

/* ---- vhost-user hooks ---- */

static void log_features(Daemon *d)
{
    vdmd_log_negotiated(&d->dev.parent_obj, VIRTIO_ID_BLOCK);
    vdmd_log("write cache %s", virtio_blk_writeback(&d->dev) ? "writeback" : "writethrough");
}

/*
 * INFLIGHT_SHMFD: every popped split head is recorded in the frontend's
 * inflight region until its completion is published, so a daemon killed and
 * restarted resubmits exactly the requests that had not completed. Packed
 * rings record the device's used position instead (the backend then uses
 * buffers in order and a restart redoes everything after it).
 */
static void track_popped(void *opaque, unsigned queue, const VirtQueueElement *elem)
{
    vhost_user_inflight_begin(((Daemon *)opaque)->be, queue, elem);
}

static void track_publishing(void *opaque, unsigned queue, unsigned head)
{
    vhost_user_inflight_pre_put(((Daemon *)opaque)->be, queue, head);
}

static void track_published(void *opaque, unsigned queue, unsigned head)
{
    vhost_user_inflight_put(((Daemon *)opaque)->be, queue, head);
}

static const VirtIOBlkTracker inflight_tracker = {
    .popped = track_popped,
    .publishing = track_publishing,
    .published = track_published,
};

static void on_queue_started(void *opaque, unsigned n, bool started)
{
    Daemon *d = opaque;

    if (started) {
        const uint16_t *heads;
        unsigned count = vhost_user_inflight_resubmit(d->be, n, &heads);

        if (!d->features_logged) {
            d->features_logged = true;
            log_features(d);
        }
        if (count) {
            vdmd_log("queue %u: resubmitting %u request(s) in flight before the restart", n, count);
        }
        for (unsigned i = 0; i < count; i++) {
            if (!virtio_blk_resubmit(&d->dev, n, heads[i])) {
                vdmd_log("queue %u: resubmission of head %u failed: %s", n, heads[i],
                         d->dev.parent_obj.error_msg);
                break;
            }
        }
        return;
    }
    /*
     * The ring's index is read right after this and memory may go away:
     * finish every request now, publishing its completion.
     */
    virtio_blk_drain(&d->dev);
    vdmd_queue_stats_snapshot(&d->dev.parent_obj, d->qstats);
}

static void on_reset(void *opaque)
{
    Daemon *d = opaque;
    Totals t;

    virtio_blk_drain(&d->dev);
    vdmd_queue_stats_snapshot(&d->dev.parent_obj, d->qstats);
    if (d->features_logged) {
        connection_totals(d, &t);
        print_summary("connection", &t);
        totals_add(&d->all, &t);
    }
    d->features_logged = false;
    device_totals(d, &d->conn_start);
    memset(d->qstats, 0, d->dev.parent_obj.num_queues * sizeof(d->qstats[0]));
}

static int on_set_config(void *opaque, uint32_t offset, const uint8_t *data, uint32_t len, uint32_t flags)
{
    Daemon *d = opaque;

    return virtio_blk_set_config(&d->dev, offset, data, len);
}

static const VhostUserBackendOps daemon_ops = {
    .set_config = on_set_config,
    .queue_started = on_queue_started,
    .reset = on_reset,
};

/* ---- command line ---- */

int main(int argc, char **argv)
{
    char *socket_path = NULL, *image = NULL, *in_order = NULL, *packed = NULL, *engine = NULL;
    char *serial = NULL;
    gboolean read_only = FALSE;
    gint num_queues = 1, queue_size = 256, seg_max = 0;
    GOptionEntry entries[] = {
        { "socket", 's', 0, G_OPTION_ARG_FILENAME, &socket_path, "vhost-user socket to listen on", "PATH" },
        { "image", 'i', 0, G_OPTION_ARG_FILENAME, &image, "disk image file", "FILE" },
        { "read-only", 'r', 0, G_OPTION_ARG_NONE, &read_only, "open the image read-only (offer RO)", NULL },
        { "num-queues", 0, 0, G_OPTION_ARG_INT, &num_queues, "request queues (default 1)", "N" },
        { "queue-size", 0, 0, G_OPTION_ARG_INT, &queue_size, "entries per queue (default 256)", "N" },
        { "seg-max", 0, 0, G_OPTION_ARG_INT, &seg_max,
          "segments per request in the config space (default: min(queue-size, 128) - 2)", "N" },
        VDMD_RING_OPTIONS(in_order, packed),
        VDMD_BLK_ENGINE_OPTION(engine),
        { "serial", 0, 0, G_OPTION_ARG_STRING, &serial, "serial number for GET_ID (at most 20 bytes)", "S" },
        { NULL, 0, 0, 0, NULL, NULL, NULL },
    };
    VirtIOBlkConf conf;
    GError *err = NULL;
    Daemon d;
    Totals t;
    int ret = 1;

    memset(&d, 0, sizeof(d));
    if (!vdmd_parse_args("vdm-vhost-user-blk", "- virtio-blk vhost-user backend", entries, &argc, &argv, &err)) {
        goto out;
    }
    if (!socket_path || !image) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "--socket and --image are required");
        goto out;
    }
    if (num_queues < 1 || queue_size < 4 || seg_max < 0 || seg_max > queue_size - 2) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                    "--num-queues must be > 0, --queue-size >= 4, --seg-max <= queue-size - 2");
        goto out;
    }

    virtio_blk_conf_init(&conf);
    conf.in_order = true;       /* the daemon offers IN_ORDER unless told not to */
    conf.packed = true;         /* the frontend decides whether to use it */
    conf.num_queues = (uint32_t)num_queues;
    conf.queue_size = (uint32_t)queue_size;
    /*
     * The frontend picks the ring size after reading seg_max, and a driver
     * trusts seg_max for its indirect tables, which may not hold more
     * entries than the ring (spec 2.7.5.3.1). QEMU's vhost-user-blk rings
     * default to 128 entries: stay within them unless told otherwise.
     */
    conf.seg_max = seg_max ? (uint32_t)seg_max : (uint32_t)MIN(queue_size, 128) - 2;
    conf.read_only = read_only;
    if (!vdmd_parse_on_off("--in-order", in_order, &conf.in_order, &err) ||
        !vdmd_parse_on_off("--packed", packed, &conf.packed, &err)) {
        goto out;
    }
    if (serial && !virtio_blk_conf_set(&conf, "serial", serial, &err)) {
        goto out;
    }

    d.blk = vdmd_blk_open(image, engine, read_only, &err);
    if (!d.blk) {
        goto out;
    }
    conf.blk = d.blk;
    if (!virtio_blk_realize(&d.dev, &conf, NULL, &err)) {
        goto out;
    }
    d.qstats = g_new0(VirtQueueStats, conf.num_queues);
    /* A frontend that shrinks its memfd under us must break the device, not kill the daemon. */
    if (vhost_user_backend_guard_sigbus() < 0) {
        vdmd_log("cannot install the SIGBUS guard");
    }
    d.be = vhost_user_backend_new(&d.dev.parent_obj, &daemon_ops, &d);
    if (!d.be) {
        g_set_error(&err, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "cannot create the vhost-user backend");
        goto out;
    }
    virtio_blk_set_tracker(&d.dev, &inflight_tracker, &d);
    blk_attach_main_context(d.blk, NULL);
    if (vhost_user_backend_listen(d.be, socket_path, &err) < 0) {
        goto out;
    }
    vdmd_log("listening on %s: image %s, %" PRIu64 " sectors%s, engine %s, %u queue(s) of %u", socket_path,
              image, blk_getlength(d.blk) / VIRTIO_BLK_SECTOR_SIZE, d.dev.read_only ? " (read-only)" : "",
              blk_engine_name(blk_get_engine(d.blk)), conf.num_queues, conf.queue_size);
    vdmd_log_offered(&d.dev.parent_obj, VIRTIO_ID_BLOCK);

    d.loop = vdmd_main_loop_new();
    g_main_loop_run(d.loop);

    /*
     * SIGTERM: closing the connection stops every ring (each drained, the
     * connection's summary printed by on_reset); then report everything.
     */
    vdmd_log("terminating");
    vhost_user_backend_free(d.be);
    d.be = NULL;
    virtio_blk_drain(&d.dev);
    vdmd_queue_stats_snapshot(&d.dev.parent_obj, d.qstats);
    if (d.features_logged) {
        connection_totals(&d, &t);
        print_summary("connection", &t);
        totals_add(&d.all, &t);
    }
    print_summary("total", &d.all);
    ret = 0;

out:
    vdmd_report_error(&err);
    vhost_user_backend_free(d.be);
    if (d.dev.queues) {
        virtio_blk_unrealize(&d.dev);
    }
    blk_unref(d.blk);
    if (d.loop) {
        g_main_loop_unref(d.loop);
    }
    g_free(d.qstats);
    g_free(socket_path);
    g_free(image);
    g_free(in_order);
    g_free(packed);
    g_free(engine);
    g_free(serial);
    return ret;
}
