/*
 * Block backend: image files (io_uring or a thread pool) and the null driver.
 *
 * Every request ends on the owning thread: the engines only move a finished
 * request to a done list and signal one eventfd; blk_process_completions()
 * runs the callbacks. The same eventfd is registered with io_uring, written
 * by the pool's workers and by the null engine, so a main loop watches one fd.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <limits.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block-backend.h"
#include "qemu/iov.h"

#ifdef CONFIG_IO_URING
#include <liburing.h>
#endif

#define BLK_DEFAULT_DEPTH   128
#define BLK_DEFAULT_THREADS 4
#define BLK_INLINE_IOV      16
#define BLK_FREE_MAX        256

/* Shared source for write-zeroes done by writing: never written to. */
#define ZERO_BUF_SIZE   (64 * 1024)
#define ZERO_IOV_MAX    16
static const uint8_t zero_buf[ZERO_BUF_SIZE];

typedef enum BlkReqType {
    BLK_REQ_READ,
    BLK_REQ_WRITE,
    BLK_REQ_FLUSH,
    BLK_REQ_DISCARD,
    BLK_REQ_ZEROES,
} BlkReqType;

typedef struct BlkReq BlkReq;
struct BlkReq {
    BlockBackend *blk;
    BlkReqType type;
    uint64_t offset;            /* where the remaining work starts */
    uint64_t bytes;             /* remaining work */
    uint64_t total;             /* bytes asked for, for stats */
    uint64_t seq;               /* submission order */
    unsigned zflags;
    bool zero_by_write;         /* ZERO_RANGE refused: writing zeros instead */
    int ret;
    BlockCompletionFunc *cb;
    void *opaque;
    /* Working copy of the caller's iovecs, advanced past short transfers. */
    struct iovec *iov;
    unsigned iovcnt;
    struct iovec *iov_heap;     /* the array to free when more than fit inline */
    struct iovec iov_inline[BLK_INLINE_IOV];
    BlkReq *next;
};

struct BlockBackend {
    BlockEngine engine;
    int fd;                     /* image; -1 for null */
    bool read_only;
    uint64_t size;
    int event_fd;
    unsigned in_flight;
    unsigned plugged;
    bool collecting;            /* in collect_done: the done list is about to be taken */
    uint64_t next_seq;
    GSource *source;

    /* Finished requests, main thread only (null engine, early errors, io_uring). */
    BlkReq *done_head, **done_tail;
    /* Finished by pool workers: under done_lock. */
    GMutex done_lock;
    BlkReq *wdone_head, **wdone_tail;
    GThreadPool *pool;

#ifdef CONFIG_IO_URING
    struct io_uring ring;
    bool ring_ready;
    unsigned ring_in_flight;    /* submitted to the kernel, cqe not yet seen */
    unsigned ring_depth;
    unsigned ring_unsubmitted;  /* prepared sqes waiting for unplug */
    BlkReq *backlog_head, **backlog_tail;   /* waiting for room in the ring */
#endif

    bool hold;
    GPtrArray *held;            /* finished, kept for a test to release */

    BlkReq *free_list;
    unsigned free_count;

    void (*batch_done)(void *opaque);
    void *batch_opaque;

    BlockBackendStats stats;
};

/* ---------------------------------------------------------------------- */
/* Engine names                                                            */

static const char *const engine_names[] = {
    [BLK_ENGINE_AUTO] = "auto",
    [BLK_ENGINE_IO_URING] = "io_uring",
    [BLK_ENGINE_THREADS] = "threads",
    [BLK_ENGINE_NULL] = "null",
};

bool blk_engine_parse(const char *name, BlockEngine *engine)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(engine_names); i++) {
        if (name && !strcmp(name, engine_names[i])) {
            *engine = (BlockEngine)i;
            return true;
        }
    }
    return false;
}

const char *blk_engine_name(BlockEngine engine)
{
    return (unsigned)engine < G_N_ELEMENTS(engine_names) ? engine_names[engine] : "unknown";
}

/* ---------------------------------------------------------------------- */
/* Requests and the done lists                                             */

static void eventfd_kick(BlockBackend *blk)
{
    uint64_t one = 1;

    /* Only fails if the counter would overflow, and then it is readable anyway. */
    if (write(blk->event_fd, &one, sizeof(one)) < 0) {
        return;
    }
}

static BlkReq *req_new(BlockBackend *blk, BlkReqType type, uint64_t offset, uint64_t bytes,
                       BlockCompletionFunc *cb, void *opaque)
{
    BlkReq *req = blk->free_list;

    if (req) {
        blk->free_list = req->next;
        blk->free_count--;
    } else {
        req = g_new(BlkReq, 1);
    }
    req->blk = blk;
    req->type = type;
    req->offset = offset;
    req->bytes = bytes;
    req->total = bytes;
    req->seq = blk->next_seq++;
    req->zflags = 0;
    req->zero_by_write = false;
    req->ret = 0;
    req->cb = cb;
    req->opaque = opaque;
    req->iov = req->iov_inline;
    req->iovcnt = 0;
    req->iov_heap = NULL;
    req->next = NULL;
    blk->in_flight++;
    return req;
}

static void req_free(BlockBackend *blk, BlkReq *req)
{
    g_free(req->iov_heap);
    if (blk->free_count < BLK_FREE_MAX) {
        req->next = blk->free_list;
        blk->free_list = req;
        blk->free_count++;
    } else {
        g_free(req);
    }
}

/* Context: main thread. */
static void req_finish_main(BlkReq *req, int ret)
{
    BlockBackend *blk = req->blk;

    req->ret = ret;
    req->next = NULL;
    /* While collecting, the list is taken right after: a kick would only wake us for nothing. */
    if (!blk->done_head && !blk->collecting) {
        eventfd_kick(blk);
    }
    *blk->done_tail = req;
    blk->done_tail = &req->next;
}

/* Context: a pool worker. */
static void req_finish_worker(BlkReq *req, int ret)
{
    BlockBackend *blk = req->blk;
    bool was_empty;

    req->ret = ret;
    req->next = NULL;
    g_mutex_lock(&blk->done_lock);
    was_empty = !blk->wdone_head;
    *blk->wdone_tail = req;
    blk->wdone_tail = &req->next;
    g_mutex_unlock(&blk->done_lock);
    /* The main thread takes the whole list once per wake-up: one kick per non-empty list. */
    if (was_empty) {
        eventfd_kick(blk);
    }
}

static void req_account(BlockBackend *blk, const BlkReq *req)
{
    uint64_t bytes = req->total;

    if (req->ret < 0) {
        blk->stats.errors++;
        return;
    }
    switch (req->type) {
    case BLK_REQ_READ:
        blk->stats.reads++;
        blk->stats.bytes_read += bytes;
        break;
    case BLK_REQ_WRITE:
        blk->stats.writes++;
        blk->stats.bytes_written += bytes;
        break;
    case BLK_REQ_FLUSH:
        blk->stats.flushes++;
        break;
    case BLK_REQ_DISCARD:
        blk->stats.discards++;
        break;
    case BLK_REQ_ZEROES:
        blk->stats.write_zeroes++;
        if (req->zero_by_write) {
            blk->stats.zeroes_fallback++;
        }
        break;
    }
}

static void req_deliver(BlockBackend *blk, BlkReq *req)
{
    BlockCompletionFunc *cb = req->cb;
    void *opaque = req->opaque;
    int ret = req->ret;

    req_account(blk, req);
    req_free(blk, req);
    blk->in_flight--;
    cb(opaque, ret);
}

/* Drop @n bytes from the front of the request's working iovecs. */
static void req_iov_zero(BlkReq *req)
{
    for (unsigned i = 0; i < req->iovcnt; i++) {
        memset(req->iov[i].iov_base, 0, req->iov[i].iov_len);
    }
}

/* Iovecs over the shared zero buffer for the next chunk of a write-zeroes done by writing. */
static int zero_iov_fill(struct iovec *iov, uint64_t bytes)
{
    int n = 0;

    while (bytes && n < ZERO_IOV_MAX) {
        size_t len = bytes < ZERO_BUF_SIZE ? (size_t)bytes : ZERO_BUF_SIZE;
        iov[n].iov_base = (void *)zero_buf;
        iov[n].iov_len = len;
        bytes -= len;
        n++;
    }
    return n;
}

static int zero_range_mode(const BlkReq *req)
{
    /* MAY_UNMAP lets the device deallocate (spec 5.2.6.2 write zeroes "unmap"). */
    return req->zflags & BLK_ZERO_MAY_UNMAP ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
                                            : FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
}

static bool fallocate_unsupported(int err)
{
    return err == EOPNOTSUPP || err == ENOTSUP || err == ENOSYS || err == EINVAL;
}

/* ---------------------------------------------------------------------- */
/* Thread pool engine                                                      */

/* Read or write all of @req, across short transfers. Context: a pool worker. */
static int pool_rw(BlkReq *req, int fd)
{
    bool is_write = req->type == BLK_REQ_WRITE;

    while (req->bytes) {
        int cnt = (int)MIN(req->iovcnt, (unsigned)IOV_MAX);
        ssize_t n = is_write ? pwritev(fd, req->iov, cnt, (off_t)req->offset)
                             : preadv(fd, req->iov, cnt, (off_t)req->offset);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            if (is_write) {
                return -EIO;
            }
            req_iov_zero(req);          /* past the end of a shrunk file: zeros */
            return 0;
        }
        iov_trim_front(&req->iov, &req->iovcnt, (size_t)n);
        req->offset += (uint64_t)n;
        req->bytes -= MIN((uint64_t)n, req->bytes);
    }
    return 0;
}

/* The whole request, synchronously. Context: a pool worker. */
static int pool_run(BlkReq *req)
{
    int fd = req->blk->fd;

    switch (req->type) {
    case BLK_REQ_READ:
    case BLK_REQ_WRITE:
        return pool_rw(req, fd);
    case BLK_REQ_FLUSH:
        return fdatasync(fd) < 0 ? -errno : 0;
    case BLK_REQ_DISCARD:
        if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                      (off_t)req->offset, (off_t)req->bytes) < 0) {
            /* Discard is a hint: a file system that cannot punch holes keeps the data. */
            return fallocate_unsupported(errno) ? 0 : -errno;
        }
        return 0;
    case BLK_REQ_ZEROES:
        if (fallocate(fd, zero_range_mode(req), (off_t)req->offset, (off_t)req->bytes) == 0) {
            return 0;
        }
        if (!fallocate_unsupported(errno)) {
            return -errno;
        }
        req->zero_by_write = true;
        while (req->bytes) {
            struct iovec iov[ZERO_IOV_MAX];
            int cnt = zero_iov_fill(iov, req->bytes);
            ssize_t n = pwritev(fd, iov, cnt, (off_t)req->offset);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) {
                    continue;
                }
                return -errno;
            }
            if (n == 0) {
                return -EIO;
            }
            req->offset += (uint64_t)n;
            req->bytes -= (uint64_t)n;
        }
        return 0;
    }
    return -EINVAL;
}

static void pool_worker(gpointer data, gpointer user_data)
{
    BlkReq *req = data;

    req_finish_worker(req, pool_run(req));
}

/* ---------------------------------------------------------------------- */
/* io_uring engine                                                         */

#ifdef CONFIG_IO_URING
static void uring_submit_pending(BlockBackend *blk)
{
    if (blk->ring_unsubmitted) {
        int r = io_uring_submit(&blk->ring);
        /* The sqes stay queued on a transient failure; the next submit retries. */
        if (r > 0) {
            blk->ring_unsubmitted -= MIN((unsigned)r, blk->ring_unsubmitted);
        }
    }
}

/* Prepare the next step of @req. Returns false when the ring has no room (request untouched). */
static bool uring_prep(BlockBackend *blk, BlkReq *req)
{
    struct io_uring_sqe *sqe;

    if (blk->ring_in_flight >= blk->ring_depth) {
        return false;
    }
    sqe = io_uring_get_sqe(&blk->ring);
    if (!sqe) {
        uring_submit_pending(blk);
        sqe = io_uring_get_sqe(&blk->ring);
        if (!sqe) {
            return false;
        }
    }
    switch (req->type) {
    case BLK_REQ_READ:
        io_uring_prep_readv(sqe, blk->fd, req->iov, MIN(req->iovcnt, (unsigned)IOV_MAX), req->offset);
        break;
    case BLK_REQ_WRITE:
        io_uring_prep_writev(sqe, blk->fd, req->iov, MIN(req->iovcnt, (unsigned)IOV_MAX), req->offset);
        break;
    case BLK_REQ_FLUSH:
        io_uring_prep_fsync(sqe, blk->fd, IORING_FSYNC_DATASYNC);
        break;
    case BLK_REQ_DISCARD:
        io_uring_prep_fallocate(sqe, blk->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                (off_t)req->offset, (off_t)req->bytes);
        break;
    case BLK_REQ_ZEROES:
        if (req->zero_by_write) {
            req->iovcnt = (unsigned)zero_iov_fill(req->iov_inline, req->bytes);
            req->iov = req->iov_inline;
            io_uring_prep_writev(sqe, blk->fd, req->iov, req->iovcnt, req->offset);
        } else {
            io_uring_prep_fallocate(sqe, blk->fd, zero_range_mode(req),
                                    (off_t)req->offset, (off_t)req->bytes);
        }
        break;
    }
    io_uring_sqe_set_data(sqe, req);
    blk->ring_in_flight++;
    blk->ring_unsubmitted++;
    return true;
}

static void uring_queue(BlockBackend *blk, BlkReq *req)
{
    if (blk->backlog_head || !uring_prep(blk, req)) {
        req->next = NULL;
        *blk->backlog_tail = req;
        blk->backlog_tail = &req->next;
        return;
    }
    if (!blk->plugged) {
        uring_submit_pending(blk);
    }
}

static void uring_kick_backlog(BlockBackend *blk)
{
    while (blk->backlog_head && uring_prep(blk, blk->backlog_head)) {
        blk->backlog_head = blk->backlog_head->next;
        if (!blk->backlog_head) {
            blk->backlog_tail = &blk->backlog_head;
        }
    }
    if (!blk->plugged) {
        uring_submit_pending(blk);
    }
}

/* One cqe for @req: finish it, or queue its next step (short transfer, fallback). */
static void uring_complete(BlockBackend *blk, BlkReq *req, int res)
{
    if (res == -EINTR || res == -EAGAIN) {
        uring_queue(blk, req);
        return;
    }
    switch (req->type) {
    case BLK_REQ_READ:
    case BLK_REQ_WRITE:
        if (res < 0) {
            break;
        }
        if (res == 0) {
            if (req->type == BLK_REQ_READ) {
                req_iov_zero(req);      /* past the end of a shrunk file: zeros */
                res = 0;
            } else {
                res = -EIO;
            }
            break;
        }
        iov_trim_front(&req->iov, &req->iovcnt, (size_t)res);
        req->offset += (uint64_t)res;
        req->bytes -= MIN((uint64_t)res, req->bytes);
        if (req->bytes) {
            uring_queue(blk, req);      /* short transfer: the rest */
            return;
        }
        res = 0;
        break;
    case BLK_REQ_FLUSH:
        break;
    case BLK_REQ_DISCARD:
        if (res < 0 && fallocate_unsupported(-res)) {
            res = 0;                    /* discard is a hint */
        }
        break;
    case BLK_REQ_ZEROES:
        if (!req->zero_by_write) {
            if (res < 0 && fallocate_unsupported(-res)) {
                req->zero_by_write = true;
                uring_queue(blk, req);
                return;
            }
            break;
        }
        if (res <= 0) {
            res = res < 0 ? res : -EIO;
            break;
        }
        req->offset += (uint64_t)res;
        req->bytes -= MIN((uint64_t)res, req->bytes);
        if (req->bytes) {
            uring_queue(blk, req);
            return;
        }
        res = 0;
        break;
    }
    req_finish_main(req, res < 0 ? res : 0);
}

static void uring_reap(BlockBackend *blk)
{
    struct io_uring_cqe *cqe;

    while (io_uring_peek_cqe(&blk->ring, &cqe) == 0) {
        BlkReq *req = io_uring_cqe_get_data(cqe);
        int res = cqe->res;

        io_uring_cqe_seen(&blk->ring, cqe);
        blk->ring_in_flight--;
        uring_complete(blk, req, res);
    }
    uring_kick_backlog(blk);
}

static bool uring_open(BlockBackend *blk, unsigned depth, GError **errp)
{
    int r = io_uring_queue_init(depth, &blk->ring, 0);

    if (r < 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOSYS, "io_uring_queue_init: %s",
                    g_strerror(-r));
        return false;
    }
    r = io_uring_register_eventfd(&blk->ring, blk->event_fd);
    if (r < 0) {
        io_uring_queue_exit(&blk->ring);
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOSYS, "io_uring_register_eventfd: %s",
                    g_strerror(-r));
        return false;
    }
    blk->ring_ready = true;
    blk->ring_depth = depth;
    blk->backlog_tail = &blk->backlog_head;
    return true;
}
#endif

/* ---------------------------------------------------------------------- */
/* Submission                                                              */

static void req_submit(BlockBackend *blk, BlkReq *req)
{
    switch (blk->engine) {
    case BLK_ENGINE_NULL:
        if (req->type == BLK_REQ_READ) {
            req_iov_zero(req);
        }
        req_finish_main(req, 0);
        return;
    case BLK_ENGINE_THREADS:
        g_thread_pool_push(blk->pool, req, NULL);
        return;
    case BLK_ENGINE_IO_URING:
#ifdef CONFIG_IO_URING
        uring_queue(blk, req);
        return;
#endif
    case BLK_ENGINE_AUTO:
        break;
    }
    req_finish_main(req, -ENOTSUP);
}

/* Range check that cannot overflow: @bytes past @offset stays inside the image. */
static bool range_ok(const BlockBackend *blk, uint64_t offset, uint64_t bytes)
{
    return offset <= blk->size && bytes <= blk->size - offset;
}

static void submit_rw(BlockBackend *blk, BlkReqType type, uint64_t offset, const struct iovec *iov,
                      int iovcnt, BlockCompletionFunc *cb, void *opaque)
{
    size_t bytes = iovcnt > 0 ? iov_size(iov, (unsigned)iovcnt) : 0;
    BlkReq *req = req_new(blk, type, offset, bytes, cb, opaque);

    if (iovcnt < 0 || !range_ok(blk, offset, bytes)) {
        req_finish_main(req, -EINVAL);
        return;
    }
    if (type == BLK_REQ_WRITE && blk->read_only) {
        req_finish_main(req, -EROFS);
        return;
    }
    if (bytes == 0) {
        req_finish_main(req, 0);
        return;
    }
    if (iovcnt > BLK_INLINE_IOV) {
        req->iov_heap = g_new(struct iovec, iovcnt);
        req->iov = req->iov_heap;
    }
    memcpy(req->iov, iov, sizeof(*iov) * (size_t)iovcnt);
    req->iovcnt = (unsigned)iovcnt;
    req_submit(blk, req);
}

void blk_aio_preadv(BlockBackend *blk, uint64_t offset, const struct iovec *iov, int iovcnt,
                    BlockCompletionFunc *cb, void *opaque)
{
    submit_rw(blk, BLK_REQ_READ, offset, iov, iovcnt, cb, opaque);
}

void blk_aio_pwritev(BlockBackend *blk, uint64_t offset, const struct iovec *iov, int iovcnt,
                     BlockCompletionFunc *cb, void *opaque)
{
    submit_rw(blk, BLK_REQ_WRITE, offset, iov, iovcnt, cb, opaque);
}

void blk_aio_flush(BlockBackend *blk, BlockCompletionFunc *cb, void *opaque)
{
    BlkReq *req = req_new(blk, BLK_REQ_FLUSH, 0, 0, cb, opaque);

    if (blk->read_only) {
        req_finish_main(req, 0);        /* nothing was written */
        return;
    }
    req_submit(blk, req);
}

static void submit_range(BlockBackend *blk, BlkReqType type, uint64_t offset, uint64_t bytes,
                         unsigned flags, BlockCompletionFunc *cb, void *opaque)
{
    BlkReq *req = req_new(blk, type, offset, bytes, cb, opaque);

    req->zflags = flags;
    if (!range_ok(blk, offset, bytes) || bytes > INT64_MAX) {
        req_finish_main(req, -EINVAL);
        return;
    }
    if (blk->read_only) {
        req_finish_main(req, -EROFS);
        return;
    }
    if (bytes == 0) {
        req_finish_main(req, 0);
        return;
    }
    req_submit(blk, req);
}

void blk_aio_pdiscard(BlockBackend *blk, uint64_t offset, uint64_t bytes,
                      BlockCompletionFunc *cb, void *opaque)
{
    submit_range(blk, BLK_REQ_DISCARD, offset, bytes, 0, cb, opaque);
}

void blk_aio_pwrite_zeroes(BlockBackend *blk, uint64_t offset, uint64_t bytes, unsigned flags,
                           BlockCompletionFunc *cb, void *opaque)
{
    submit_range(blk, BLK_REQ_ZEROES, offset, bytes, flags, cb, opaque);
}

void blk_io_plug(BlockBackend *blk)
{
    blk->plugged++;
}

void blk_io_unplug(BlockBackend *blk)
{
    g_assert(blk->plugged > 0);         /* host bug: unbalanced plug */
    if (--blk->plugged == 0) {
#ifdef CONFIG_IO_URING
        if (blk->ring_ready) {
            uring_submit_pending(blk);
        }
#endif
    }
}

unsigned blk_in_flight(const BlockBackend *blk)
{
    return blk->in_flight;
}

/* ---------------------------------------------------------------------- */
/* Completion delivery                                                     */

/* Move every finished request to one list, in finishing order. */
static BlkReq *collect_done(BlockBackend *blk)
{
    uint64_t cnt;
    BlkReq *head, *wdone;

    /* Clear the eventfd first: a request finishing after this kicks it again. */
    if (read(blk->event_fd, &cnt, sizeof(cnt)) < 0 && errno != EAGAIN) {
        g_warning("block backend: eventfd read: %s", g_strerror(errno));
    }
#ifdef CONFIG_IO_URING
    if (blk->ring_ready) {
        blk->collecting = true;
        uring_reap(blk);
        blk->collecting = false;
    }
#endif
    if (blk->pool) {
        g_mutex_lock(&blk->done_lock);
        wdone = blk->wdone_head;
        blk->wdone_head = NULL;
        blk->wdone_tail = &blk->wdone_head;
        g_mutex_unlock(&blk->done_lock);
        for (BlkReq *r = wdone, *next; r; r = next) {
            next = r->next;
            r->next = NULL;
            *blk->done_tail = r;
            blk->done_tail = &r->next;
        }
    }
    head = blk->done_head;
    blk->done_head = NULL;
    blk->done_tail = &blk->done_head;
    return head;
}

/* Keep held requests in submission order, whatever order they finished in. */
static void held_insert(BlockBackend *blk, BlkReq *req)
{
    unsigned i = blk->held->len;

    while (i > 0 && ((BlkReq *)g_ptr_array_index(blk->held, i - 1))->seq > req->seq) {
        i--;
    }
    g_ptr_array_insert(blk->held, (gint)i, req);
}

unsigned blk_process_completions(BlockBackend *blk)
{
    BlkReq *req = collect_done(blk);
    unsigned n = 0;

    while (req) {
        BlkReq *next = req->next;
        if (blk->hold) {
            held_insert(blk, req);
        } else {
            req_deliver(blk, req);
            n++;
        }
        req = next;
    }
    if (n && blk->batch_done) {
        blk->batch_done(blk->batch_opaque);
    }
    return n;
}

int blk_get_event_fd(const BlockBackend *blk)
{
    return blk->event_fd;
}

static gboolean blk_source_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    blk_process_completions(opaque);
    return G_SOURCE_CONTINUE;
}

void blk_attach_main_context(BlockBackend *blk, GMainContext *ctx)
{
    if (blk->source) {
        g_source_destroy(blk->source);
        g_source_unref(blk->source);
    }
    blk->source = g_unix_fd_source_new(blk->event_fd, G_IO_IN);
    /*
     * Not recursive, glib would take the fd out of its poll set around every
     * dispatch and back in, each time waking its own eventfd: three more
     * syscalls per completion batch. The callback never re-enters the loop.
     */
    g_source_set_can_recurse(blk->source, TRUE);
    g_source_set_callback(blk->source, (GSourceFunc)(void (*)(void))blk_source_ready, blk, NULL);
    g_source_attach(blk->source, ctx);
}

/* Sleep until the eventfd is readable or @timeout_ms passes (-1: forever). */
static void wait_event(BlockBackend *blk, int timeout_ms)
{
    struct pollfd pfd = { .fd = blk->event_fd, .events = POLLIN };

#ifdef CONFIG_IO_URING
    if (blk->ring_ready) {
        uring_submit_pending(blk);
    }
#endif
    if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR) {
        g_warning("block backend: poll: %s", g_strerror(errno));
    }
}

void blk_drain(BlockBackend *blk)
{
    while (blk->in_flight) {
        if (blk->held->len) {
            bool hold = blk->hold;
            blk->hold = false;
            while (blk->held->len) {
                blk_release_held(blk, 0);
            }
            blk->hold = hold;
            continue;
        }
        wait_event(blk, 1000);
        blk_process_completions(blk);
    }
}

void blk_set_batch_done(BlockBackend *blk, void (*fn)(void *opaque), void *opaque)
{
    blk->batch_done = fn;
    blk->batch_opaque = opaque;
}

void blk_set_hold(BlockBackend *blk, bool hold)
{
    blk->hold = hold;
}

unsigned blk_wait_held(BlockBackend *blk, unsigned n, unsigned timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

    for (;;) {
        gint64 left;

        blk_process_completions(blk);
        if (blk->held->len >= n) {
            break;
        }
        left = (deadline - g_get_monotonic_time()) / 1000;
        if (left <= 0) {
            break;
        }
        wait_event(blk, (int)MIN(left, 100));
    }
    return blk->held->len;
}

bool blk_release_held(BlockBackend *blk, unsigned i)
{
    BlkReq *req;

    if (i >= blk->held->len) {
        return false;
    }
    req = g_ptr_array_steal_index(blk->held, i);
    req_deliver(blk, req);
    if (blk->batch_done) {
        blk->batch_done(blk->batch_opaque);
    }
    return true;
}

void blk_get_stats(const BlockBackend *blk, BlockBackendStats *stats)
{
    *stats = blk->stats;
}

/* ---------------------------------------------------------------------- */
/* Open and close                                                          */

uint64_t blk_getlength(const BlockBackend *blk)
{
    return blk->size;
}

int blk_truncate(BlockBackend *blk, uint64_t size)
{
    if (blk->read_only) {
        return -EROFS;
    }
    if (size > INT64_MAX) {
        return -EINVAL;
    }
    if (blk->fd >= 0 && ftruncate(blk->fd, (off_t)size) < 0) {
        return -errno;
    }
    blk->size = size;
    return 0;
}

int blk_refresh_length(BlockBackend *blk)
{
    off_t end;

    if (blk->fd < 0) {
        return 0;
    }
    end = lseek(blk->fd, 0, SEEK_END);
    if (end < 0) {
        return -errno;
    }
    blk->size = (uint64_t)end;
    return 0;
}

bool blk_is_read_only(const BlockBackend *blk)
{
    return blk->read_only;
}

BlockEngine blk_get_engine(const BlockBackend *blk)
{
    return blk->engine;
}

static bool open_image(BlockBackend *blk, const BlockBackendOptions *opts, GError **errp)
{
    off_t end;

    if (!opts->filename) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_INVAL, "no image file name");
        return false;
    }
    blk->fd = open(opts->filename, (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    if (blk->fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s",
                    opts->filename, g_strerror(errno));
        return false;
    }
    /* lseek also sizes block devices, where st_size is 0. */
    end = lseek(blk->fd, 0, SEEK_END);
    if (end < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno), "%s: %s",
                    opts->filename, g_strerror(errno));
        return false;
    }
    blk->size = (uint64_t)end;
    return true;
}

BlockBackend *blk_new_open(const BlockBackendOptions *opts, GError **errp)
{
    BlockBackend *blk = g_new0(BlockBackend, 1);
    BlockEngine engine = opts->engine;

    blk->fd = -1;
    blk->read_only = opts->read_only;
    blk->done_tail = &blk->done_head;
    blk->wdone_tail = &blk->wdone_head;
    blk->held = g_ptr_array_new();
    g_mutex_init(&blk->done_lock);
    blk->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (blk->event_fd < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(errno), "eventfd: %s", g_strerror(errno));
        goto fail;
    }

    if (engine == BLK_ENGINE_NULL) {
        blk->size = opts->null_size;
        blk->engine = BLK_ENGINE_NULL;
        return blk;
    }
    if (!open_image(blk, opts, errp)) {
        goto fail;
    }
    if (engine == BLK_ENGINE_AUTO || engine == BLK_ENGINE_IO_URING) {
#ifdef CONFIG_IO_URING
        GError *err = NULL;
        if (uring_open(blk, opts->queue_depth ? opts->queue_depth : BLK_DEFAULT_DEPTH, &err)) {
            blk->engine = BLK_ENGINE_IO_URING;
            return blk;
        }
        if (engine == BLK_ENGINE_IO_URING) {
            g_propagate_error(errp, err);
            goto fail;
        }
        g_clear_error(&err);    /* auto: io_uring unavailable here, use the pool */
#else
        if (engine == BLK_ENGINE_IO_URING) {
            g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NOSYS, "built without io_uring");
            goto fail;
        }
#endif
    }
    blk->pool = g_thread_pool_new(pool_worker, blk, (gint)(opts->threads ? opts->threads
                                                                        : BLK_DEFAULT_THREADS),
                                  FALSE, errp);
    if (!blk->pool) {
        goto fail;
    }
    blk->engine = BLK_ENGINE_THREADS;
    return blk;

fail:
    blk_unref(blk);
    return NULL;
}

void blk_unref(BlockBackend *blk)
{
    if (!blk) {
        return;
    }
    if (blk->event_fd >= 0) {
        blk_drain(blk);
    }
    if (blk->source) {
        g_source_destroy(blk->source);
        g_source_unref(blk->source);
    }
    if (blk->pool) {
        g_thread_pool_free(blk->pool, FALSE, TRUE);
    }
#ifdef CONFIG_IO_URING
    if (blk->ring_ready) {
        io_uring_queue_exit(&blk->ring);
    }
#endif
    while (blk->free_list) {
        BlkReq *next = blk->free_list->next;
        g_free(blk->free_list);
        blk->free_list = next;
    }
    g_ptr_array_free(blk->held, TRUE);
    g_mutex_clear(&blk->done_lock);
    if (blk->fd >= 0) {
        close(blk->fd);
    }
    if (blk->event_fd >= 0) {
        close(blk->event_fd);
    }
    g_free(blk);
}
