/*
 * libvdmd: the vhost-user daemons' shared start-up and reporting code
 * (see vdmd.h). Context: the daemon's main thread.
 */
#include <glib-unix.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vdmd.h"

static const char *vdmd_name = "vdmd";
static bool vdmd_quit;

void vdmd_init(const char *name)
{
    vdmd_name = name;
}

bool vdmd_parse_args(const char *name, const char *summary, GOptionEntry *entries, int *argc, char ***argv,
                     GError **errp)
{
    GOptionContext *octx = g_option_context_new(summary);
    bool ok;

    vdmd_init(name);
    g_option_context_add_main_entries(octx, entries, NULL);
    ok = g_option_context_parse(octx, argc, argv, errp);
    g_option_context_free(octx);
    return ok;
}

void vdmd_log(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fprintf(stderr, "%s: ", vdmd_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
    va_end(ap);
}

void vdmd_report_error(GError **errp)
{
    if (*errp) {
        vdmd_log("%s", (*errp)->message);
        g_clear_error(errp);
    }
}

bool vdmd_parse_on_off(const char *opt, const char *v, bool *out, GError **errp)
{
    if (!v) {
        return true;
    }
    if (!strcmp(v, "on")) {
        *out = true;
    } else if (!strcmp(v, "off")) {
        *out = false;
    } else {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "%s takes on or off, not '%s'", opt, v);
        return false;
    }
    return true;
}

void vdmd_queue_stats_snapshot(VirtIODevice *vdev, VirtQueueStats *last)
{
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        VirtQueueStats st;

        virtio_queue_get_stats(virtio_get_queue(vdev, n), &st);
        if (st.popped >= last[n].popped) {
            last[n] = st;
        }
    }
}

void vdmd_queue_stats_add(VirtQueueStats *acc, const VirtQueueStats *s)
{
    acc->popped += s->popped;
    acc->used += s->used;
    acc->used_entries += s->used_entries;
    acc->flushes += s->flushes;
    acc->notifies += s->notifies;
}

void vdmd_queue_stats_sum(const VirtQueueStats *q, unsigned n, VirtQueueStats *sum)
{
    memset(sum, 0, sizeof(*sum));
    for (unsigned i = 0; i < n; i++) {
        vdmd_queue_stats_add(sum, &q[i]);
    }
}

const char *vdmd_negotiated(VirtIODevice *vdev, unsigned bit)
{
    return virtio_vdev_has_feature(vdev, bit) ? "negotiated" : "NOT negotiated";
}

void vdmd_log_negotiated(VirtIODevice *vdev, unsigned device_id)
{
    char names[1024];

    virtio_features_describe(device_id, vdev->guest_features, names, sizeof(names));
    vdmd_log("negotiated features 0x%016" PRIx64 ": %s", vdev->guest_features, names);
    vdmd_log("VIRTIO_F_IN_ORDER %s", vdmd_negotiated(vdev, VIRTIO_F_IN_ORDER));
    vdmd_log("VIRTIO_F_RING_PACKED %s", vdmd_negotiated(vdev, VIRTIO_F_RING_PACKED));
}

void vdmd_log_offered(VirtIODevice *vdev, unsigned device_id)
{
    char offered[1024];

    virtio_features_describe(device_id, vdev->host_features, offered, sizeof(offered));
    vdmd_log("offered features: %s", offered);
}

/* glib runs this in the main loop, not in signal context. */
static gboolean vdmd_on_quit_signal(gpointer opaque)
{
    vdmd_quit = true;
    g_main_loop_quit(opaque);
    return G_SOURCE_REMOVE;
}

GMainLoop *vdmd_main_loop_new(void)
{
    GMainLoop *loop = g_main_loop_new(NULL, FALSE);

    g_unix_signal_add(SIGTERM, vdmd_on_quit_signal, loop);
    g_unix_signal_add(SIGINT, vdmd_on_quit_signal, loop);
    signal(SIGPIPE, SIG_IGN);
    return loop;
}

bool vdmd_quit_requested(void)
{
    return vdmd_quit;
}
