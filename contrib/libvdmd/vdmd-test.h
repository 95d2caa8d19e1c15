/*
 * What the daemons' end-to-end tests (test-vhost-user-blk, -net, -scsi) share:
 * the daemon as a child process (temporary directory, socket, log; spawn,
 * SIGTERM, bounded wait for exit 0), the test frontend's connection and
 * rings (tests/vhost-user) and the driver library's queues on them.
 *
 * Context: the test's main thread; every wait is bounded.
 */
#ifndef CONTRIB_LIBVDMD_VDMD_TEST_H
#define CONTRIB_LIBVDMD_VDMD_TEST_H

#include <glib.h>
#include <stdbool.h>
#include <sys/types.h>

#include "vdriver.h"
#include "vhost-user-frontend.h"

/* A daemon under test: its files live in one temporary directory. */
typedef struct VdmdTestDaemon {
    char *dir;
    char *sock;                 /* DIR/sock */
    char *log;                  /* DIR/daemon.log: the daemon's stdout and stderr */
    pid_t pid;
} VdmdTestDaemon;

/* g_test_init, then the daemon's path from the command line (exits 2 without it). */
const char *vdmd_test_init(int *argc, char ***argv);

/* Create the directory (g_dir_make_tmp @tmpl) and the socket and log names. */
void vdmd_test_daemon_init(VdmdTestDaemon *d, const char *tmpl);
/* An image file DIR/@name of @size zero bytes; returns its path (g_free it). */
char *vdmd_test_image_new(VdmdTestDaemon *d, const char *name, uint64_t size);
/* Start @argv (argv[0] the daemon) with stdout and stderr into d->log. */
void vdmd_test_daemon_spawn(VdmdTestDaemon *d, const char *const *argv);
/* SIGTERM, wait (bounded) for exit 0; returns the log (g_free it). */
char *vdmd_test_daemon_stop(VdmdTestDaemon *d);
/* Remove the socket, log and directory; free the names. */
void vdmd_test_daemon_cleanup(VdmdTestDaemon *d);

/* Running @argv must fail (exit status not 0). */
void vdmd_test_assert_fails(const char *const *argv);
/* The daemon's log says whether @feature was negotiated ("NAME: FEATURE negotiated"). */
void vdmd_test_assert_negotiated(const char *log, const char *feature, bool on);
/* Blocks of @bytes at sector i * 16 of @image hold 0x10 + i, for i < @n. */
void vdmd_test_assert_image_pattern(const char *image, unsigned n, unsigned bytes);

/*
 * Connect to @sock, create @ram_size bytes of shared RAM, negotiate @want
 * (plus RING_PACKED / IN_ORDER when asked; both must then be negotiated as
 * asked) and @want_protocol, and share the memory table.
 */
void vdmd_test_connect(VuFrontend *f, const char *sock, uint64_t ram_size, uint64_t want, bool packed,
                       bool in_order, uint64_t want_protocol);
/*
 * A driver queue on @qc (rings already laid out) and the frontend's ring
 * @index for it (not yet sent: vuf_ring_setup does that).
 */
VDriverQueue *vdmd_test_queue_new(VuFrontend *f, const VDriverQueueConfig *qc, unsigned index,
                                  VuFrontendRing *ring);
/* Kick @ring if the driver queue asks for it. */
void vdmd_test_kick(VDriverQueue *q, VuFrontendRing *ring);
/* The next used buffer's token, waiting (bounded) for calls. */
void *vdmd_test_wait_buf(VuFrontend *f, VDriverQueue *q, VuFrontendRing *ring, uint32_t *len);
/* @size bytes of guest RAM from *heap (64-byte aligned), below @end. */
hwaddr vdmd_test_alloc(hwaddr *heap, uint64_t size, hwaddr end);

#endif
