/*
 * Block backend: every engine reads back what it wrote, honours flush,
 * discard and write-zeroes, refuses out-of-range and read-only requests
 * through the callback, and delivers completions on the calling thread in
 * whatever order they finish (held and released by the test to force it).
 */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "block/block-backend.h"

#define IMG_SIZE (4u * 1024 * 1024)

typedef struct Done {
    int ret;
    int calls;
    int order;                  /* position among all completions */
} Done;

typedef struct Fixture {
    BlockBackend *blk;
    char *path;
    int completions;
    int batches;
} Fixture;

static Fixture *cur;

static void done_cb(void *opaque, int ret)
{
    Done *d = opaque;

    d->ret = ret;
    d->calls++;
    d->order = cur->completions++;
}

static void batch_cb(void *opaque)
{
    ((Fixture *)opaque)->batches++;
}

static char *make_image(uint64_t size)
{
    GError *err = NULL;
    char *path = NULL;
    int fd = g_file_open_tmp("vdm-blk-XXXXXX", &path, &err);

    g_assert_no_error(err);
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    close(fd);
    return path;
}

/* Open @engine on a fresh image; false (test skipped) if the engine cannot run here. */
static bool fixture_open(Fixture *f, BlockEngine engine, bool read_only, unsigned depth)
{
    BlockBackendOptions opts = {
        .engine = engine, .read_only = read_only, .queue_depth = depth, .null_size = IMG_SIZE,
    };
    GError *err = NULL;

    memset(f, 0, sizeof(*f));
    cur = f;
    if (engine != BLK_ENGINE_NULL) {
        f->path = make_image(IMG_SIZE);
        opts.filename = f->path;
    }
    f->blk = blk_new_open(&opts, &err);
    if (!f->blk && engine == BLK_ENGINE_IO_URING && err && err->code == G_FILE_ERROR_NOSYS) {
        g_test_skip(err->message);
        g_error_free(err);
        g_unlink(f->path);
        g_free(f->path);
        return false;
    }
    g_assert_no_error(err);
    g_assert_cmpint(blk_get_engine(f->blk), ==, engine);
    g_assert_cmpuint(blk_getlength(f->blk), ==, IMG_SIZE);
    blk_set_batch_done(f->blk, batch_cb, f);
    return true;
}

static void fixture_close(Fixture *f)
{
    blk_unref(f->blk);
    if (f->path) {
        g_unlink(f->path);
        g_free(f->path);
    }
    cur = NULL;
}

static void wait_done(Fixture *f, Done *d)
{
    while (!d->calls) {
        g_assert_cmpuint(blk_in_flight(f->blk), >, 0);
        blk_drain(f->blk);
    }
    g_assert_cmpint(d->calls, ==, 1);
}

static int do_read(Fixture *f, uint64_t off, void *buf, size_t len)
{
    struct iovec iov = { buf, len };
    Done d = { 0 };

    blk_aio_preadv(f->blk, off, &iov, 1, done_cb, &d);
    wait_done(f, &d);
    return d.ret;
}

static int do_write(Fixture *f, uint64_t off, const void *buf, size_t len)
{
    struct iovec iov = { (void *)buf, len };
    Done d = { 0 };

    blk_aio_pwritev(f->blk, off, &iov, 1, done_cb, &d);
    wait_done(f, &d);
    return d.ret;
}

static bool all_bytes(const uint8_t *p, size_t len, uint8_t v)
{
    for (size_t i = 0; i < len; i++) {
        if (p[i] != v) {
            return false;
        }
    }
    return true;
}

static void test_rw_data(gconstpointer data)
{
    BlockEngine engine = GPOINTER_TO_INT(data);
    Fixture f;
    uint8_t *wbuf = g_malloc(65536), *rbuf = g_malloc0(65536);
    struct iovec iov[3];
    Done d = { 0 };

    if (!fixture_open(&f, engine, false, 0)) {
        return;
    }
    for (unsigned i = 0; i < 65536; i++) {
        wbuf[i] = (uint8_t)(i * 7 + 3);
    }
    /* Three uneven segments, written at an odd sector. */
    iov[0] = (struct iovec) { wbuf, 512 };
    iov[1] = (struct iovec) { wbuf + 512, 3000 };
    iov[2] = (struct iovec) { wbuf + 3512, 65536 - 3512 };
    blk_aio_pwritev(f.blk, 512 * 7, iov, 3, done_cb, &d);
    g_assert_cmpint(d.calls, ==, 0);    /* never completes inside the submit call */
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, 0);
    g_assert_cmpint(do_read(&f, 512 * 7, rbuf, 65536), ==, 0);
    if (engine == BLK_ENGINE_NULL) {
        g_assert_true(all_bytes(rbuf, 65536, 0));
    } else {
        g_assert_cmpmem(rbuf, 65536, wbuf, 65536);
    }
    g_assert_cmpint(f.batches, >=, 2);
    fixture_close(&f);
    g_free(wbuf);
    g_free(rbuf);
}

static void test_flush(gconstpointer data)
{
    Fixture f;
    Done d = { 0 };
    uint8_t buf[4096];
    BlockBackendStats st;

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        return;
    }
    memset(buf, 0xab, sizeof(buf));
    g_assert_cmpint(do_write(&f, 0, buf, sizeof(buf)), ==, 0);
    blk_aio_flush(f.blk, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, 0);
    blk_get_stats(f.blk, &st);
    g_assert_cmpuint(st.flushes, ==, 1);
    g_assert_cmpuint(st.writes, ==, 1);
    g_assert_cmpuint(st.bytes_written, ==, sizeof(buf));
    if (f.path) {
        /* The data is in the file as another opener sees it. */
        gchar *contents;
        gsize len;
        g_assert_true(g_file_get_contents(f.path, &contents, &len, NULL));
        g_assert_cmpuint(len, ==, IMG_SIZE);
        g_assert_true(all_bytes((uint8_t *)contents, sizeof(buf), 0xab));
        g_free(contents);
    }
    fixture_close(&f);
}

static void check_zeroed(gconstpointer data, bool discard, unsigned flags)
{
    Fixture f;
    Done d = { 0 };
    uint8_t *buf = g_malloc(256 * 1024);

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        g_free(buf);
        return;
    }
    memset(buf, 0x5a, 256 * 1024);
    g_assert_cmpint(do_write(&f, 0, buf, 256 * 1024), ==, 0);
    if (discard) {
        blk_aio_pdiscard(f.blk, 64 * 1024, 128 * 1024, done_cb, &d);
    } else {
        blk_aio_pwrite_zeroes(f.blk, 64 * 1024, 128 * 1024, flags, done_cb, &d);
    }
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, 0);
    g_assert_cmpint(do_read(&f, 0, buf, 256 * 1024), ==, 0);
    if (GPOINTER_TO_INT(data) != BLK_ENGINE_NULL) {
        g_assert_true(all_bytes(buf, 64 * 1024, 0x5a));
        g_assert_true(all_bytes(buf + 192 * 1024, 64 * 1024, 0x5a));
    }
    g_assert_true(all_bytes(buf + 64 * 1024, 128 * 1024, 0));
    fixture_close(&f);
    g_free(buf);
}

static void test_discard(gconstpointer data)
{
    check_zeroed(data, true, 0);
}

static void test_write_zeroes(gconstpointer data)
{
    check_zeroed(data, false, 0);
}

static void test_write_zeroes_unmap(gconstpointer data)
{
    check_zeroed(data, false, BLK_ZERO_MAY_UNMAP);
}

/* Out-of-range requests fail through the callback, with overflow-proof checks. */
static void test_range_errors(gconstpointer data)
{
    Fixture f;
    uint8_t buf[1024];
    Done d = { 0 };

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        return;
    }
    g_assert_cmpint(do_read(&f, IMG_SIZE - 512, buf, 1024), ==, -EINVAL);
    g_assert_cmpint(do_write(&f, IMG_SIZE, buf, 1), ==, -EINVAL);
    g_assert_cmpint(do_read(&f, UINT64_MAX - 100, buf, 1024), ==, -EINVAL);
    g_assert_cmpint(do_read(&f, IMG_SIZE - 1024, buf, 1024), ==, 0);
    blk_aio_pdiscard(f.blk, 512, UINT64_MAX, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, -EINVAL);
    d = (Done) { 0 };
    blk_aio_pwrite_zeroes(f.blk, UINT64_MAX, 2, 0, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, -EINVAL);
    fixture_close(&f);
}

static void test_read_only(gconstpointer data)
{
    Fixture f;
    uint8_t buf[512] = { 1 };
    Done d = { 0 };

    if (!fixture_open(&f, GPOINTER_TO_INT(data), true, 0)) {
        return;
    }
    g_assert_true(blk_is_read_only(f.blk));
    g_assert_cmpint(do_write(&f, 0, buf, sizeof(buf)), ==, -EROFS);
    blk_aio_pdiscard(f.blk, 0, 512, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, -EROFS);
    d = (Done) { 0 };
    blk_aio_pwrite_zeroes(f.blk, 0, 512, 0, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, -EROFS);
    g_assert_cmpint(do_read(&f, 0, buf, sizeof(buf)), ==, 0);
    g_assert_true(all_bytes(buf, sizeof(buf), 0));
    fixture_close(&f);
}

/* Completions held, then released last-first: callbacks run in that order, once each. */
static void test_out_of_order(gconstpointer data)
{
    enum { N = 8 };
    Fixture f;
    Done d[N];
    uint8_t bufs[N][512];
    struct iovec iov[N];

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        return;
    }
    memset(d, 0, sizeof(d));
    blk_set_hold(f.blk, true);
    for (unsigned i = 0; i < N; i++) {
        iov[i] = (struct iovec) { bufs[i], sizeof(bufs[i]) };
        blk_aio_preadv(f.blk, i * 512ull, &iov[i], 1, done_cb, &d[i]);
    }
    g_assert_cmpuint(blk_wait_held(f.blk, N, 10000), ==, N);
    g_assert_cmpuint(blk_in_flight(f.blk), ==, N);
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpint(d[i].calls, ==, 0);
    }
    /* Held requests are indexed in submission order: release newest first. */
    for (unsigned k = N; k-- > 0;) {
        g_assert_true(blk_release_held(f.blk, k));
    }
    g_assert_false(blk_release_held(f.blk, 0));
    g_assert_cmpuint(blk_in_flight(f.blk), ==, 0);
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpint(d[i].calls, ==, 1);
        g_assert_cmpint(d[i].ret, ==, 0);
    }
    /* Whatever order they finished in, delivery followed the release order. */
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpint(d[i].order, ==, N - 1 - i);
    }
    fixture_close(&f);
}

/* More requests than the io_uring queue holds: the backlog drains, every callback runs. */
static void test_many_in_flight(gconstpointer data)
{
    enum { N = 200 };
    Fixture f;
    Done *d = g_new0(Done, N);
    uint8_t *buf = g_malloc(N * 512);
    struct iovec *iov = g_new(struct iovec, N);

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 4)) {
        g_free(d);
        g_free(buf);
        g_free(iov);
        return;
    }
    for (unsigned i = 0; i < N; i++) {
        memset(buf + i * 512, (int)(i & 0xff), 512);
        iov[i] = (struct iovec) { buf + i * 512, 512 };
    }
    blk_io_plug(f.blk);
    for (unsigned i = 0; i < N; i++) {
        blk_aio_pwritev(f.blk, i * 512ull, &iov[i], 1, done_cb, &d[i]);
    }
    blk_io_unplug(f.blk);
    blk_drain(f.blk);
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpint(d[i].calls, ==, 1);
        g_assert_cmpint(d[i].ret, ==, 0);
    }
    memset(buf, 0xee, N * 512);
    for (unsigned i = 0; i < N; i++) {
        g_assert_cmpint(do_read(&f, i * 512ull, buf + i * 512, 512), ==, 0);
        if (GPOINTER_TO_INT(data) != BLK_ENGINE_NULL) {
            g_assert_true(all_bytes(buf + i * 512, 512, (uint8_t)(i & 0xff)));
        }
    }
    fixture_close(&f);
    g_free(d);
    g_free(buf);
    g_free(iov);
}

/* A glib main loop watching the eventfd delivers completions with no explicit drain. */
static void test_main_context(gconstpointer data)
{
    Fixture f;
    GMainContext *ctx = g_main_context_new();
    uint8_t buf[4096];
    struct iovec iov = { buf, sizeof(buf) };
    Done d = { 0 };
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        g_main_context_unref(ctx);
        return;
    }
    blk_attach_main_context(f.blk, ctx);
    blk_aio_preadv(f.blk, 0, &iov, 1, done_cb, &d);
    while (!d.calls && g_get_monotonic_time() < deadline) {
        g_main_context_iteration(ctx, TRUE);
    }
    g_assert_cmpint(d.calls, ==, 1);
    g_assert_cmpint(d.ret, ==, 0);
    fixture_close(&f);
    g_main_context_unref(ctx);
}

/*
 * Where fallocate(ZERO_RANGE) is refused (tmpfs), write-zeroes falls back to
 * writing zeros, in chunks, across more than one chunk.
 */
static void test_write_zeroes_fallback(gconstpointer data)
{
    BlockEngine engine = GPOINTER_TO_INT(data);
    BlockBackendOptions opts = { .engine = engine };
    const uint64_t size = 4 * 1024 * 1024, zoff = 4096, zlen = 3 * 1024 * 1024 + 512;
    char path[] = "/dev/shm/vdm-blk-zero-XXXXXX";
    struct statfs sfs;
    BlockBackendStats st;
    GError *err = NULL;
    Fixture f;
    Done d = { 0 };
    uint8_t *buf;
    int fd = mkstemp(path);

    if (fd < 0 || fstatfs(fd, &sfs) < 0 || sfs.f_type != TMPFS_MAGIC) {
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        g_test_skip("no tmpfs at /dev/shm");
        return;
    }
    g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
    close(fd);
    memset(&f, 0, sizeof(f));
    cur = &f;
    opts.filename = path;
    f.blk = blk_new_open(&opts, &err);
    if (!f.blk && engine == BLK_ENGINE_IO_URING) {
        g_test_skip(err->message);
        g_error_free(err);
        unlink(path);
        return;
    }
    g_assert_no_error(err);
    buf = g_malloc(size);
    memset(buf, 0xa5, size);
    g_assert_cmpint(do_write(&f, 0, buf, size), ==, 0);
    blk_aio_pwrite_zeroes(f.blk, zoff, zlen, 0, done_cb, &d);
    wait_done(&f, &d);
    g_assert_cmpint(d.ret, ==, 0);
    blk_get_stats(f.blk, &st);
    g_assert_cmpuint(st.zeroes_fallback, ==, 1);
    g_assert_cmpint(do_read(&f, 0, buf, size), ==, 0);
    g_assert_true(all_bytes(buf, zoff, 0xa5));
    g_assert_true(all_bytes(buf + zoff, zlen, 0));
    g_assert_true(all_bytes(buf + zoff + zlen, size - zoff - zlen, 0xa5));
    blk_unref(f.blk);
    unlink(path);
    g_free(buf);
    cur = NULL;
}

/* block_resize: the new size is taken at once and bounds later requests. */
static void test_truncate(gconstpointer data)
{
    Fixture f;
    uint8_t buf[512];

    if (!fixture_open(&f, GPOINTER_TO_INT(data), false, 0)) {
        return;
    }
    g_assert_cmpint(blk_truncate(f.blk, IMG_SIZE * 2), ==, 0);
    g_assert_cmpuint(blk_getlength(f.blk), ==, IMG_SIZE * 2);
    g_assert_cmpint(do_read(&f, IMG_SIZE * 2 - 512, buf, 512), ==, 0);
    g_assert_cmpint(blk_truncate(f.blk, IMG_SIZE / 2), ==, 0);
    g_assert_cmpint(do_read(&f, IMG_SIZE / 2, buf, 512), ==, -EINVAL);
    g_assert_cmpint(blk_refresh_length(f.blk), ==, 0);
    g_assert_cmpuint(blk_getlength(f.blk), ==, IMG_SIZE / 2);
    g_assert_cmpint(blk_truncate(f.blk, UINT64_MAX), ==, -EINVAL);
    fixture_close(&f);

    if (fixture_open(&f, GPOINTER_TO_INT(data), true, 0)) {
        g_assert_cmpint(blk_truncate(f.blk, IMG_SIZE * 2), ==, -EROFS);
        g_assert_cmpuint(blk_getlength(f.blk), ==, IMG_SIZE);
        fixture_close(&f);
    }
}

static void test_open_errors(void)
{
    BlockBackendOptions opts = { .filename = "/nonexistent/vdm-image", .engine = BLK_ENGINE_THREADS };
    GError *err = NULL;
    BlockEngine e;

    g_assert_null(blk_new_open(&opts, &err));
    g_assert_nonnull(err);
    g_error_free(err);
    g_assert_true(blk_engine_parse("io_uring", &e));
    g_assert_cmpint(e, ==, BLK_ENGINE_IO_URING);
    g_assert_true(blk_engine_parse("threads", &e));
    g_assert_cmpint(e, ==, BLK_ENGINE_THREADS);
    g_assert_false(blk_engine_parse("aio", &e));
    g_assert_false(blk_engine_parse(NULL, &e));
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } cases[] = {
        { "rw-data", test_rw_data },
        { "flush", test_flush },
        { "discard-reads-zeros", test_discard },
        { "write-zeroes", test_write_zeroes },
        { "write-zeroes-unmap", test_write_zeroes_unmap },
        { "range-errors", test_range_errors },
        { "read-only-refuses-writes", test_read_only },
        { "out-of-order-completion", test_out_of_order },
        { "more-requests-than-queue-depth", test_many_in_flight },
        { "main-context-delivery", test_main_context },
        { "truncate", test_truncate },
    };
    static const BlockEngine engines[] = { BLK_ENGINE_NULL, BLK_ENGINE_THREADS, BLK_ENGINE_IO_URING };

    g_test_init(&argc, &argv, NULL);
    for (unsigned e = 0; e < G_N_ELEMENTS(engines); e++) {
        for (unsigned c = 0; c < G_N_ELEMENTS(cases); c++) {
            g_autofree char *path = g_strdup_printf("/block-backend/%s/%s",
                                                    blk_engine_name(engines[e]), cases[c].name);
            g_test_add_data_func(path, GINT_TO_POINTER(engines[e]), cases[c].fn);
        }
    }
    g_test_add_data_func("/block-backend/threads/write-zeroes-fallback-on-tmpfs",
                         GINT_TO_POINTER(BLK_ENGINE_THREADS), test_write_zeroes_fallback);
    g_test_add_data_func("/block-backend/io_uring/write-zeroes-fallback-on-tmpfs",
                         GINT_TO_POINTER(BLK_ENGINE_IO_URING), test_write_zeroes_fallback);
    g_test_add_func("/block-backend/open-errors", test_open_errors);
    return g_test_run();
}
