/*
 * Block backend: an image (file, or the null driver) with asynchronous
 * vectored I/O and a completion callback.
 *
 * Engines: io_uring (liburing, when built with it), a worker thread pool, and
 * null (reads return zeros, writes are dropped). Requests run in parallel and
 * complete in any order.
 *
 * Context: every function here, and every completion callback, runs on the
 * thread that owns the backend (the main loop thread). Worker threads and the
 * kernel only ever signal the completion eventfd; callbacks are delivered by
 * blk_process_completions() (or the GSource from blk_attach_main_context()).
 */
#ifndef BLOCK_BLOCK_BACKEND_H
#define BLOCK_BLOCK_BACKEND_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include <glib.h>

#define BDRV_SECTOR_BITS 9
#define BDRV_SECTOR_SIZE (1u << BDRV_SECTOR_BITS)

typedef struct BlockBackend BlockBackend;

/* @ret is 0 on success or a negative errno. Runs on the owning thread. */
typedef void BlockCompletionFunc(void *opaque, int ret);

typedef enum BlockEngine {
    BLK_ENGINE_AUTO,            /* io_uring if it works here, else threads */
    BLK_ENGINE_IO_URING,
    BLK_ENGINE_THREADS,
    BLK_ENGINE_NULL,            /* no image: zeros in, writes dropped */
} BlockEngine;

typedef struct BlockBackendOptions {
    const char *filename;       /* image file; ignored by the null engine */
    bool read_only;
    BlockEngine engine;
    unsigned queue_depth;       /* io_uring submission queue entries (0: 128) */
    unsigned threads;           /* thread pool workers (0: 4) */
    uint64_t null_size;         /* null engine: size in bytes */
} BlockBackendOptions;

/* Flags for blk_aio_pwrite_zeroes. */
#define BLK_ZERO_MAY_UNMAP 1u

/* Parse "io_uring", "threads", "null", "auto". Returns false if unknown. */
bool blk_engine_parse(const char *name, BlockEngine *engine);
const char *blk_engine_name(BlockEngine engine);

/* Open an image. NULL with @errp set on failure. */
BlockBackend *blk_new_open(const BlockBackendOptions *opts, GError **errp);
/* Drain every request (their callbacks run), then close. NULL is ignored. */
void blk_unref(BlockBackend *blk);

uint64_t blk_getlength(const BlockBackend *blk);
/*
 * Resize the image to @size bytes (QMP block_resize): ftruncate, synchronous.
 * Returns 0, -EROFS, or -errno. The null engine just takes the new size.
 */
int blk_truncate(BlockBackend *blk, uint64_t size);
/* Re-read the image size (it may have changed behind our back). Returns 0 or -errno. */
int blk_refresh_length(BlockBackend *blk);
bool blk_is_read_only(const BlockBackend *blk);
BlockEngine blk_get_engine(const BlockBackend *blk);

/*
 * Asynchronous requests. Offsets and lengths are in bytes and are checked
 * against the image size (-EINVAL), writes against read-only (-EROFS); any
 * error reaches @cb, never the caller, and @cb never runs before the submit
 * call returns. @iov must stay valid until @cb runs.
 */
void blk_aio_preadv(BlockBackend *blk, uint64_t offset, const struct iovec *iov, int iovcnt,
                    BlockCompletionFunc *cb, void *opaque);
void blk_aio_pwritev(BlockBackend *blk, uint64_t offset, const struct iovec *iov, int iovcnt,
                     BlockCompletionFunc *cb, void *opaque);
/* fdatasync: every write completed before this call is durable when @cb runs. */
void blk_aio_flush(BlockBackend *blk, BlockCompletionFunc *cb, void *opaque);
/* Deallocate (fallocate PUNCH_HOLE | KEEP_SIZE); the range reads back as zeros. */
void blk_aio_pdiscard(BlockBackend *blk, uint64_t offset, uint64_t bytes,
                      BlockCompletionFunc *cb, void *opaque);
/* Zero a range: fallocate ZERO_RANGE (PUNCH_HOLE with MAY_UNMAP), else writes of zeros. */
void blk_aio_pwrite_zeroes(BlockBackend *blk, uint64_t offset, uint64_t bytes, unsigned flags,
                           BlockCompletionFunc *cb, void *opaque);

/*
 * Submission batching: between plug and unplug, io_uring requests are queued
 * and submitted with one system call at unplug. Nests.
 */
void blk_io_plug(BlockBackend *blk);
void blk_io_unplug(BlockBackend *blk);

/* Requests submitted and not yet delivered to their callback. */
unsigned blk_in_flight(const BlockBackend *blk);

/* ---- completion delivery ---- */

/* Readable when completions are waiting; then call blk_process_completions(). */
int blk_get_event_fd(const BlockBackend *blk);
/* Run the callbacks of every finished request. Returns how many ran. */
unsigned blk_process_completions(BlockBackend *blk);
/* Watch the eventfd from @ctx (NULL: the default context). Detached by blk_unref. */
void blk_attach_main_context(BlockBackend *blk, GMainContext *ctx);
/* Block until nothing is in flight, running callbacks (held ones too). */
void blk_drain(BlockBackend *blk);

/*
 * Called once after each run of completion callbacks, so a device can publish
 * a whole batch of completions with one flush and one notification.
 */
void blk_set_batch_done(BlockBackend *blk, void (*fn)(void *opaque), void *opaque);

/*
 * Test hooks: with hold on, finished requests are kept instead of delivered
 * until released one at a time, so a test can choose the completion order.
 */
void blk_set_hold(BlockBackend *blk, bool hold);
/* Wait (at most @timeout_ms) until @n finished requests are held. Returns how many are. */
unsigned blk_wait_held(BlockBackend *blk, unsigned n, unsigned timeout_ms);
/* Deliver held request @i (0 = the oldest submitted). Returns false if there is none. */
bool blk_release_held(BlockBackend *blk, unsigned i);

typedef struct BlockBackendStats {
    uint64_t reads, writes, flushes, discards, write_zeroes;
    uint64_t bytes_read, bytes_written;
    uint64_t errors;
    uint64_t zeroes_fallback;   /* write-zeroes done by writing zeros */
} BlockBackendStats;
void blk_get_stats(const BlockBackend *blk, BlockBackendStats *stats);

#endif
