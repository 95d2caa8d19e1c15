/*
 * The daemons' end-to-end test helpers (see vdmd-test.h).
 * Context: the test's main thread.
 */
#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "vdmd-test.h"

#define STOP_TIMEOUT_S  20

const char *vdmd_test_init(int *argc, char ***argv)
{
    g_test_init(argc, argv, NULL);
    if (*argc < 2) {
        g_printerr("usage: %s DAEMON\n", (*argv)[0]);
        exit(2);
    }
    /* A daemon that exits while we write to it must fail the test, not kill it. */
    signal(SIGPIPE, SIG_IGN);
    return (*argv)[1];
}

void vdmd_test_daemon_init(VdmdTestDaemon *d, const char *tmpl)
{
    GError *err = NULL;

    memset(d, 0, sizeof(*d));
    d->dir = g_dir_make_tmp(tmpl, &err);
    g_assert_no_error(err);
    d->sock = g_build_filename(d->dir, "sock", NULL);
    d->log = g_build_filename(d->dir, "daemon.log", NULL);
}

char *vdmd_test_image_new(VdmdTestDaemon *d, const char *name, uint64_t size)
{
    char *path = g_build_filename(d->dir, name, NULL);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    close(fd);
    return path;
}

void vdmd_test_daemon_spawn(VdmdTestDaemon *d, const char *const *argv)
{
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0) {
            _exit(126);
        }
        execv(argv[0], (char **)argv);
        _exit(127);
    }
    d->pid = pid;
}

char *vdmd_test_daemon_stop(VdmdTestDaemon *d)
{
    gint64 deadline = g_get_monotonic_time() + STOP_TIMEOUT_S * G_USEC_PER_SEC;
    int status = 0;
    char *log = NULL;
    pid_t w;

    g_assert_cmpint(kill(d->pid, SIGTERM), ==, 0);
    while ((w = waitpid(d->pid, &status, WNOHANG)) == 0 && g_get_monotonic_time() < deadline) {
        g_usleep(10 * 1000);
    }
    if (w == 0) {
        kill(d->pid, SIGKILL);
        waitpid(d->pid, &status, 0);
        g_error("daemon did not exit within %d s of SIGTERM", STOP_TIMEOUT_S);
    }
    g_assert_cmpint(w, ==, d->pid);
    g_assert_true(g_file_get_contents(d->log, &log, NULL, NULL));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        g_error("daemon exit status 0x%x; log:\n%s", status, log);
    }
    return log;
}

void vdmd_test_daemon_cleanup(VdmdTestDaemon *d)
{
    g_unlink(d->sock);
    g_unlink(d->log);
    g_rmdir(d->dir);
    g_free(d->sock);
    g_free(d->log);
    g_free(d->dir);
}

void vdmd_test_assert_fails(const char *const *argv)
{
    GError *err = NULL;
    gint status;

    g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_STDOUT_TO_DEV_NULL | G_SPAWN_STDERR_TO_DEV_NULL,
                               NULL, NULL, NULL, NULL, &status, &err));
    g_assert_no_error(err);
    g_assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

void vdmd_test_assert_negotiated(const char *log, const char *feature, bool on)
{
    g_autofree char *line = g_strdup_printf(": %s %s\n", feature, on ? "negotiated" : "NOT negotiated");

    if (!strstr(log, line)) {
        g_error("daemon log lacks '%s'", line + 2);
    }
}

void vdmd_test_assert_image_pattern(const char *image, unsigned n, unsigned bytes)
{
    g_autofree uint8_t *buf = g_malloc(bytes), *want = g_malloc(bytes);
    int fd = open(image, O_RDONLY);

    g_assert_cmpint(fd, >=, 0);
    for (unsigned i = 0; i < n; i++) {
        memset(want, 0x10 + i, bytes);
        g_assert_cmpint(pread(fd, buf, bytes, (off_t)i * 16 * 512), ==, (ssize_t)bytes);
        g_assert_cmpmem(buf, bytes, want, bytes);
    }
    close(fd);
}

void vdmd_test_connect(VuFrontend *f, const char *sock, uint64_t ram_size, uint64_t want, bool packed,
                       bool in_order, uint64_t want_protocol)
{
    g_assert_cmpint(vuf_connect(f, sock, 10000), ==, 0);
    g_assert_cmpint(vuf_ram_create(f, ram_size), ==, 0);
    if (packed) {
        want |= 1ull << VIRTIO_F_RING_PACKED;
    }
    if (in_order) {
        want |= 1ull << VIRTIO_F_IN_ORDER;
    }
    g_assert_cmpint(vuf_negotiate(f, want, want_protocol), ==, 0);
    g_assert_cmpint(!!(f->features & (1ull << VIRTIO_F_IN_ORDER)), ==, in_order);
    g_assert_cmpint(!!(f->features & (1ull << VIRTIO_F_RING_PACKED)), ==, packed);
    g_assert_cmpint(vuf_set_mem_table(f), ==, 0);
}

VDriverQueue *vdmd_test_queue_new(VuFrontend *f, const VDriverQueueConfig *qc, unsigned index,
                                  VuFrontendRing *ring)
{
    VDriverQueue *q = vdriver_queue_new(&f->mem, qc);

    g_assert_nonnull(q);
    *ring = (VuFrontendRing) {
        .index = index, .num = qc->num, .desc = qc->desc, .driver = qc->driver, .device = qc->device,
        /* Packed: avail and used wrap counters both start at 1 (bit 15 of each half). */
        .base = qc->packed ? 0x80008000u : 0, .kick_fd = -1, .call_fd = -1,
    };
    return q;
}

void vdmd_test_kick(VDriverQueue *q, VuFrontendRing *ring)
{
    if (vdriver_kick_prepare(q)) {
        vuf_kick(ring);
    }
}

void *vdmd_test_wait_buf(VuFrontend *f, VDriverQueue *q, VuFrontendRing *ring, uint32_t *len)
{
    for (;;) {
        void *tok = vdriver_get_buf(q, len, NULL);
        if (tok) {
            return tok;
        }
        g_assert_null(vdriver_error(q));
        g_assert_true(vuf_wait_call(f, ring));
    }
}

hwaddr vdmd_test_alloc(hwaddr *heap, uint64_t size, hwaddr end)
{
    hwaddr gpa = *heap;

    *heap = (*heap + size + 63) & ~63ull;
    g_assert_cmpuint(*heap, <=, end);
    return gpa;
}
