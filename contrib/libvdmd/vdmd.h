/*
 * libvdmd: what the vhost-user daemons (contrib/vhost-user-blk, -net, -scsi)
 * share around their device model: a log prefixed with the daemon's name,
 * on|off options, queue counters that survive queue resets, the negotiated
 * feature lines scripts parse, and the main loop with its signals.
 *
 * Context: the daemon's main thread (one glib main loop per process).
 */
#ifndef CONTRIB_LIBVDMD_VDMD_H
#define CONTRIB_LIBVDMD_VDMD_H

#include <glib.h>
#include <stdbool.h>

#include "hw/virtio/virtio.h"

/* Set the log prefix ("vdm-vhost-user-blk"); call first in main(). */
void vdmd_init(const char *name);

/*
 * vdmd_init(@name), then parse the command line against @entries (glib's
 * option syntax; @summary follows the usage line of --help).
 */
bool vdmd_parse_args(const char *name, const char *summary, GOptionEntry *entries, int *argc, char ***argv,
                     GError **errp);

/* --in-order and --packed, which every daemon takes (values for vdmd_parse_on_off). */
#define VDMD_RING_OPTIONS(in_order, packed) \
    { "in-order", 0, 0, G_OPTION_ARG_STRING, &(in_order), "offer VIRTIO_F_IN_ORDER (default on)", "on|off" }, \
    { "packed", 0, 0, G_OPTION_ARG_STRING, &(packed), "offer VIRTIO_F_RING_PACKED (default on)", "on|off" }

/* One log line on stderr, "NAME: message", flushed. */
void vdmd_log(const char *fmt, ...) G_GNUC_PRINTF(1, 2);

/* Log and free *errp if set (the daemon's exit path). */
void vdmd_report_error(GError **errp);

/*
 * Option @opt's value @v: "on" or "off" into *out; @v NULL (option not given)
 * leaves *out alone. False with @errp set for anything else.
 */
bool vdmd_parse_on_off(const char *opt, const char *v, bool *out, GError **errp);

/*
 * The core's queue counters are cleared by a queue reset: keep the latest
 * copy of each of @vdev's queues in @last (num_queues entries), never going
 * backwards (a reset queue reports zeros until it runs again).
 */
void vdmd_queue_stats_snapshot(VirtIODevice *vdev, VirtQueueStats *last);
/* *acc += *s, every counter. */
void vdmd_queue_stats_add(VirtQueueStats *acc, const VirtQueueStats *s);
/* The sum of @n queues' counters. */
void vdmd_queue_stats_sum(const VirtQueueStats *q, unsigned n, VirtQueueStats *sum);

/* "negotiated" or "NOT negotiated": the fixed words of the feature lines. */
const char *vdmd_negotiated(VirtIODevice *vdev, unsigned bit);
/*
 * The lines scripts rely on when a connection starts its first ring:
 *   NAME: negotiated features 0x%016llx: NAME,NAME,...
 *   NAME: VIRTIO_F_IN_ORDER negotiated | NOT negotiated
 *   NAME: VIRTIO_F_RING_PACKED negotiated | NOT negotiated
 */
void vdmd_log_negotiated(VirtIODevice *vdev, unsigned device_id);
/* "NAME: offered features: NAME,..." once the socket listens. */
void vdmd_log_offered(VirtIODevice *vdev, unsigned device_id);

/*
 * The daemon's main loop: SIGTERM and SIGINT quit it, SIGPIPE is ignored (a
 * frontend that vanishes is a disconnect, not a crash). Call once.
 */
GMainLoop *vdmd_main_loop_new(void);
/* True once SIGTERM or SIGINT arrived (for loops that do not block in glib). */
bool vdmd_quit_requested(void);

#endif
