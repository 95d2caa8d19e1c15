/*
 * virtio-blk device model (virtio spec 5.2).
 *
 * A request is one element: a 16-byte header in its first readable bytes,
 * data, and a status byte in its last writable byte, laid out across
 * descriptors however the driver likes (spec 2.6.4, message framing). The
 * queue handler pops every available request and submits it to the block
 * backend; requests run in parallel and finish in any order. Each finished
 * request is filled; after a run of completions one flush publishes them and
 * one notification goes out. Under VIRTIO_F_IN_ORDER the core's ordered
 * fill/flush publishes them in avail order, batched when every buffer was
 * written in full.
 *
 * Context: the thread that owns the BlockBackend (completions arrive there).
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "hw/qdev-properties.h"
#include "hw/virtio/virtio-blk.h"
#include "qemu/iov.h"

/* ---------------------------------------------------------------------- */
/* iovec helpers beyond qemu/iov.h                                       */

/* Take the last byte off @iov and return where it was (NULL if @iov holds no bytes). */
static uint8_t *iov_take_last_byte(struct iovec *iov, unsigned *cnt)
{
    while (*cnt) {
        struct iovec *last = &iov[*cnt - 1];
        if (last->iov_len) {
            last->iov_len--;
            return (uint8_t *)last->iov_base + last->iov_len;
        }
        (*cnt)--;               /* zero-length tail segments carry nothing */
    }
    return NULL;
}

/* ---------------------------------------------------------------------- */
/* Properties                                                              */

#define PROP(name_, type_, field_, desc_) DEFINE_PROP((name_), PROP_TYPE_##type_, VirtIOBlkConf, field_, (desc_))

static const Property blk_props[] = {
    PROP("in_order", BOOL, in_order, "offer VIRTIO_F_IN_ORDER"),
    PROP("packed", BOOL, packed, "offer VIRTIO_F_RING_PACKED"),
    PROP("event_idx", BOOL, event_idx, "offer VIRTIO_RING_F_EVENT_IDX"),
    PROP("indirect_desc", BOOL, indirect_desc, "offer VIRTIO_RING_F_INDIRECT_DESC"),
    PROP("queue-size", UINT32, queue_size, "entries per queue (power of two)"),
    PROP("num-queues", UINT32, num_queues, "request queues"),
    PROP("serial", STRING, serial, "disk serial number (GET_ID, at most 20 bytes)"),
    PROP("read-only", BOOL, read_only, "offer VIRTIO_BLK_F_RO and refuse writes"),
    PROP("discard", BOOL, discard, "offer VIRTIO_BLK_F_DISCARD"),
    PROP("write-zeroes", BOOL, write_zeroes, "offer VIRTIO_BLK_F_WRITE_ZEROES"),
    PROP("config-wce", BOOL, config_wce, "offer VIRTIO_BLK_F_CONFIG_WCE"),
    PROP("x-writeback", BOOL, writeback, "initial write cache mode (writeback)"),
    PROP("used-batch", BOOL, used_batch, "IN_ORDER: publish fully used runs as one used entry"),
    PROP("seg-max", UINT32, seg_max, "segments per request (0: queue-size - 2)"),
    PROP("size-max", UINT32, size_max, "bytes per segment (0: not offered)"),
    PROP("logical_block_size", UINT32, logical_block_size, "block size (512..65536, power of two)"),
    PROP("max-discard-sectors", UINT32, max_discard_sectors, "sectors per discard segment"),
    PROP("max-discard-seg", UINT32, max_discard_seg, "segments per discard request"),
    PROP("max-write-zeroes-sectors", UINT32, max_write_zeroes_sectors,
         "sectors per write-zeroes segment"),
    PROP("max-write-zeroes-seg", UINT32, max_write_zeroes_seg, "segments per write-zeroes request"),
};

void virtio_blk_conf_init(VirtIOBlkConf *conf)
{
    memset(conf, 0, sizeof(*conf));
    conf->num_queues = 1;
    conf->queue_size = 256;
    conf->logical_block_size = VIRTIO_BLK_SECTOR_SIZE;
    /* QEMU's BDRV_REQUEST_MAX_SECTORS: INT_MAX bytes in sectors. */
    conf->max_discard_sectors = 4194303;
    conf->max_write_zeroes_sectors = 4194303;
    conf->max_discard_seg = 32;
    conf->max_write_zeroes_seg = 32;
    conf->discard = true;
    conf->write_zeroes = true;
    conf->config_wce = true;
    conf->writeback = true;
    conf->event_idx = true;
    conf->indirect_desc = true;
    conf->used_batch = true;
}

bool virtio_blk_conf_set(VirtIOBlkConf *conf, const char *name, const char *value, GError **errp)
{
    return qdev_prop_set(conf, blk_props, G_N_ELEMENTS(blk_props), "virtio-blk", name, value, errp);
}

void virtio_blk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                          void *opaque)
{
    qdev_prop_list(blk_props, G_N_ELEMENTS(blk_props), fn, opaque);
}

void virtio_blk_conf_list_values(const VirtIOBlkConf *conf,
                                 void (*fn)(const char *name, const char *type, const char *value,
                                            void *opaque),
                                 void *opaque)
{
    qdev_prop_list_values(conf, blk_props, G_N_ELEMENTS(blk_props), fn, opaque);
}

/* ---------------------------------------------------------------------- */
/* Features and configuration space                                        */

#define BIT(b) (1ULL << (b))

static uint64_t blk_device_features(const VirtIOBlock *s)
{
    const VirtIOBlkConf *c = &s->conf;
    uint64_t f = BIT(VIRTIO_BLK_F_SEG_MAX) | BIT(VIRTIO_BLK_F_BLK_SIZE) | BIT(VIRTIO_BLK_F_FLUSH);

    if (c->size_max) {
        f |= BIT(VIRTIO_BLK_F_SIZE_MAX);
    }
    if (c->config_wce) {
        f |= BIT(VIRTIO_BLK_F_CONFIG_WCE);
    }
    if (c->num_queues > 1) {
        f |= BIT(VIRTIO_BLK_F_MQ);
    }
    if (s->read_only) {
        f |= BIT(VIRTIO_BLK_F_RO);
    } else {
        /* Neither would be allowed on a read-only disk: don't advertise them. */
        if (c->discard) {
            f |= BIT(VIRTIO_BLK_F_DISCARD);
        }
        if (c->write_zeroes) {
            f |= BIT(VIRTIO_BLK_F_WRITE_ZEROES);
        }
    }
    /* STYLE.md §7: offer only what the registry lists as implemented. */
    return f & virtio_features_implemented(VIRTIO_ID_BLOCK, VIRTIO_FEATURE_DEVICE);
}

static uint64_t blk_ring_features(const VirtIOBlkConf *c)
{
    return virtio_ring_features_select(c->in_order, c->packed, c->event_idx, c->indirect_desc);
}

static VirtIOBlkConfig *blk_config(VirtIOBlock *s)
{
    return (VirtIOBlkConfig *)s->parent_obj.config;
}

static void blk_update_config(VirtIOBlock *s)
{
    const VirtIOBlkConf *c = &s->conf;
    VirtIOBlkConfig cfg;

    memset(&cfg, 0, sizeof(cfg));
    cfg.capacity = htole64(s->capacity);
    cfg.size_max = htole32(c->size_max);
    cfg.seg_max = htole32(c->seg_max ? c->seg_max : c->queue_size - 2);
    cfg.blk_size = htole32(c->logical_block_size);
    cfg.num_queues = htole16((uint16_t)c->num_queues);
    cfg.writeback = blk_config(s)->writeback;
    cfg.max_discard_sectors = htole32(c->max_discard_sectors);
    cfg.max_discard_seg = htole32(c->max_discard_seg);
    cfg.discard_sector_alignment = htole32(c->logical_block_size / VIRTIO_BLK_SECTOR_SIZE);
    cfg.max_write_zeroes_sectors = htole32(c->max_write_zeroes_sectors);
    cfg.max_write_zeroes_seg = htole32(c->max_write_zeroes_seg);
    /* Write-zeroes with unmap set punches a hole: deallocation can happen. */
    cfg.write_zeroes_may_unmap = 1;
    memcpy(blk_config(s), &cfg, sizeof(cfg));
}

bool virtio_blk_writeback(const VirtIOBlock *s)
{
    const VirtIODevice *vdev = &s->parent_obj;

    /*
     * spec 5.2.5: with CONFIG_WCE the driver picks the mode in `writeback`;
     * without it, the cache is writeback iff FLUSH was negotiated.
     */
    if (virtio_vdev_has_feature(vdev, VIRTIO_BLK_F_CONFIG_WCE)) {
        return ((const VirtIOBlkConfig *)vdev->config)->writeback != 0;
    }
    return virtio_vdev_has_feature(vdev, VIRTIO_BLK_F_FLUSH);
}

int virtio_blk_set_config(VirtIOBlock *s, uint32_t offset, const uint8_t *data, uint32_t len)
{
    const uint32_t wb = offsetof(VirtIOBlkConfig, writeback);

    if (offset > sizeof(VirtIOBlkConfig) || len > sizeof(VirtIOBlkConfig) - offset) {
        return -EINVAL;
    }
    /* spec 5.2.4: the driver may write only `writeback`, and only with CONFIG_WCE. */
    if (len == 0) {
        return 0;
    }
    if (offset != wb || len != 1 || !virtio_vdev_has_feature(&s->parent_obj, VIRTIO_BLK_F_CONFIG_WCE)) {
        return -EPERM;
    }
    blk_config(s)->writeback = data[0] ? 1 : 0;
    return 0;
}

static void blk_set_features(VirtIODevice *vdev, uint64_t features)
{
    VirtIOBlock *s = VIRTIO_BLK(vdev);

    /* spec 5.2.5: CONFIG_WCE without FLUSH MUST start in writethrough (writeback = 0). */
    blk_config(s)->writeback = virtio_has_feature(features, VIRTIO_BLK_F_FLUSH) && s->conf.writeback;
}

/* ---------------------------------------------------------------------- */
/* Requests                                                                */

typedef struct VirtIOBlockReq {
    VirtQueueElement elem;
    VirtIOBlock *dev;
    VirtQueue *vq;
    uint32_t type;
    uint8_t *status;            /* the element's last writable byte */
    struct iovec *data;         /* data segments: a trimmed view of elem's sg */
    unsigned data_cnt;
    size_t data_len;
    uint64_t sector;
    uint32_t in_written;        /* data bytes written for the driver */
    unsigned pending;           /* backend requests still running */
    int error;                  /* first backend error */
    struct VirtIOBlockReq *next_deferred;   /* VirtIOBlockQueue.deferred */
    struct iovec sg[VIRTQUEUE_MAX_SG];  /* the element's segments, both directions */
} VirtIOBlockReq;

/*
 * Requests come from a per-device pool (STYLE.md §10: no allocation per
 * request in steady state). It never holds more than the queues can have in
 * flight, the most that can ever be in use at once.
 */
static VirtIOBlockReq *req_get(VirtIOBlock *s)
{
    return virtio_req_pool_get(&s->req_pool, sizeof(VirtIOBlockReq));
}

static void req_put(VirtIOBlock *s, VirtIOBlockReq *req)
{
    virtio_req_pool_put(&s->req_pool, req, s->parent_obj.num_queues * s->conf.queue_size);
}

/* Pop the next request of @vq into a pooled request, or NULL (empty, stopped, broken). */
static VirtIOBlockReq *req_pop(VirtIOBlock *s, VirtQueue *vq)
{
    VirtIOBlockReq *req = req_get(s);

    if (virtqueue_pop_elem(vq, &req->elem, req->sg, VIRTQUEUE_MAX_SG) != 1) {
        req_put(s, req);
        return NULL;
    }
    return req;
}

static VirtIOBlockQueue *req_queue(VirtIOBlockReq *req)
{
    return &req->dev->queues[virtio_get_queue_index(req->vq)];
}

/* Tracked: one element per publication, so the tracker's record stays exact. */
static void blk_publish_tracked(VirtIOBlock *s, VirtIOBlockReq *req)
{
    unsigned qn = virtio_get_queue_index(req->vq);

    s->tracker->publishing(s->tracker_opaque, qn, req->elem.index);
    virtqueue_fill(req->vq, &req->elem, req->in_written + 1, 0);
    virtqueue_flush(req->vq, 1);
    s->tracker->published(s->tracker_opaque, qn, req->elem.index);
    virtqueue_batch_published(&req_queue(req)->batch);
}

/* Publish what was filled on queue @n and tell the driver, once per run. */
static void blk_flush_queue(VirtIOBlock *s, unsigned n)
{
    VirtIOBlockQueue *q = &s->queues[n];
    VirtQueue *vq = virtio_get_queue(&s->parent_obj, n);

    while (q->deferred) {
        VirtIOBlockReq *req = q->deferred;

        q->deferred = req->next_deferred;
        blk_publish_tracked(s, req);
        req_put(s, req);
    }
    virtqueue_batch_flush(&q->batch, &s->parent_obj, vq);
}

static void blk_batch_done(void *opaque)
{
    VirtIOBlock *s = opaque;

    for (unsigned n = 0; n < s->parent_obj.num_queues; n++) {
        blk_flush_queue(s, n);
    }
}

/* Does the host track requests one by one (see VirtIOBlkTracker)? */
static bool blk_tracked(const VirtIOBlock *s)
{
    return s->tracker && (!virtio_vdev_has_feature(&s->parent_obj, VIRTIO_F_IN_ORDER) ||
                          virtio_vdev_has_feature(&s->parent_obj, VIRTIO_F_RING_PACKED));
}

static void blk_req_complete(VirtIOBlockReq *req, uint8_t status)
{
    VirtIOBlock *s = req->dev;
    VirtIOBlockQueue *q = req_queue(req);

    switch (status) {
    case VIRTIO_BLK_S_OK:
        s->stats.status_ok++;
        break;
    case VIRTIO_BLK_S_UNSUPP:
        s->stats.status_unsupp++;
        break;
    default:
        s->stats.status_ioerr++;
        break;
    }
    q->in_flight--;
    s->in_flight--;
    if (!s->quiesce) {
        /*
         * spec 5.2.6: status is the last byte the device writes; used len
         * counts every byte written (data + status). The core's release
         * store of the used index orders both before the driver sees them.
         */
        *req->status = status;
        if (blk_tracked(s) && q->in_handler) {
            req->next_deferred = q->deferred;   /* published by blk_flush_queue */
            q->deferred = req;
            return;
        } else if (blk_tracked(s)) {
            blk_publish_tracked(s, req);
        } else {
            virtqueue_batch_fill(&q->batch, req->vq, &req->elem, req->in_written + 1);
        }
    }
    req_put(s, req);
}

/* Backend callback for a request's last (or only) backend operation. */
static void blk_rw_done(void *opaque, int ret)
{
    VirtIOBlockReq *req = opaque;
    VirtIOBlock *s = req->dev;

    if (ret < 0 && !req->error) {
        req->error = ret;
    }
    if (--req->pending) {
        return;
    }
    if (req->error) {
        blk_req_complete(req, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (req->type == VIRTIO_BLK_T_IN) {
        req->in_written = (uint32_t)req->data_len;
        s->stats.bytes_read += req->data_len;
    } else if (req->type == VIRTIO_BLK_T_OUT) {
        s->stats.bytes_written += req->data_len;
        if (!s->quiesce && !virtio_blk_writeback(s)) {
            /* spec 5.2.6.2: in writethrough mode a write is stable before it completes. */
            s->stats.writethrough_flushes++;
            req->type = VIRTIO_BLK_T_FLUSH;
            req->pending = 1;
            blk_aio_flush(s->blk, blk_rw_done, req);
            return;
        }
    }
    blk_req_complete(req, VIRTIO_BLK_S_OK);
}

/* spec 5.2.6.2 sector checks, written so that nothing can overflow. */
static bool blk_sectors_ok(const VirtIOBlock *s, uint64_t sector, uint64_t nsect)
{
    return sector <= s->capacity && nsect <= s->capacity - sector;
}

static void blk_submit_rw(VirtIOBlockReq *req)
{
    VirtIOBlock *s = req->dev;
    bool is_write = req->type == VIRTIO_BLK_T_OUT;

    if (is_write && s->read_only) {
        /* spec 5.2.6.2: a write to a read-only device fails and writes nothing. */
        blk_req_complete(req, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (req->data_len % VIRTIO_BLK_SECTOR_SIZE ||
        !blk_sectors_ok(s, req->sector, req->data_len / VIRTIO_BLK_SECTOR_SIZE)) {
        blk_req_complete(req, VIRTIO_BLK_S_IOERR);
        return;
    }
    req->pending = 1;
    if (is_write) {
        blk_aio_pwritev(s->blk, req->sector * VIRTIO_BLK_SECTOR_SIZE, req->data, (int)req->data_cnt,
                        blk_rw_done, req);
    } else {
        blk_aio_preadv(s->blk, req->sector * VIRTIO_BLK_SECTOR_SIZE, req->data, (int)req->data_cnt,
                       blk_rw_done, req);
    }
}

static void blk_get_id(VirtIOBlockReq *req)
{
    char id[VIRTIO_BLK_ID_BYTES];

    /* spec 5.2.6: 20 bytes, zero-padded, not NUL-terminated when 20 long. */
    memset(id, 0, sizeof(id));
    memcpy(id, req->dev->conf.serial, strnlen(req->dev->conf.serial, sizeof(id)));
    req->in_written = (uint32_t)iov_from_buf(req->data, req->data_cnt, 0, id,
                                             MIN(req->data_len, sizeof(id)));
    blk_req_complete(req, VIRTIO_BLK_S_OK);
}

/* DISCARD and WRITE_ZEROES: every segment is checked before any is submitted. */
static void blk_discard_write_zeroes(VirtIOBlockReq *req)
{
    VirtIOBlock *s = req->dev;
    bool is_discard = req->type == VIRTIO_BLK_T_DISCARD;
    uint32_t max_seg = is_discard ? s->conf.max_discard_seg : s->conf.max_write_zeroes_seg;
    uint32_t max_sectors = is_discard ? s->conf.max_discard_sectors : s->conf.max_write_zeroes_sectors;
    uint64_t feature = is_discard ? VIRTIO_BLK_F_DISCARD : VIRTIO_BLK_F_WRITE_ZEROES;
    VirtIOBlkDiscardWriteZeroes *segs;
    size_t n;

    if (!virtio_has_feature(s->parent_obj.host_features, feature)) {
        blk_req_complete(req, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    if (s->read_only) {
        blk_req_complete(req, VIRTIO_BLK_S_IOERR);
        return;
    }
    if (req->data_len == 0 || req->data_len % sizeof(*segs)) {
        blk_req_complete(req, VIRTIO_BLK_S_IOERR);
        return;
    }
    n = req->data_len / sizeof(*segs);
    if (n > max_seg) {
        blk_req_complete(req, VIRTIO_BLK_S_UNSUPP);
        return;
    }
    /* A snapshot: guest memory is read once, then only the copy is checked and used. */
    segs = g_new(VirtIOBlkDiscardWriteZeroes, n);
    iov_to_buf(req->data, req->data_cnt, 0, segs, n * sizeof(*segs));
    for (size_t i = 0; i < n; i++) {
        uint32_t flags = le32toh(segs[i].flags);
        uint32_t num = le32toh(segs[i].num_sectors);
        uint64_t sector = le64toh(segs[i].sector);

        /* spec 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP. */
        if ((flags & ~VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) ||
            (is_discard && (flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))) {
            g_free(segs);
            blk_req_complete(req, VIRTIO_BLK_S_UNSUPP);
            return;
        }
        if (num > max_sectors || !blk_sectors_ok(s, sector, num)) {
            g_free(segs);
            blk_req_complete(req, VIRTIO_BLK_S_IOERR);
            return;
        }
        segs[i].flags = flags;
        segs[i].num_sectors = num;
        segs[i].sector = sector;
    }
    req->pending = (unsigned)n;
    for (size_t i = 0; i < n; i++) {
        uint64_t off = segs[i].sector * VIRTIO_BLK_SECTOR_SIZE;
        uint64_t bytes = (uint64_t)segs[i].num_sectors * VIRTIO_BLK_SECTOR_SIZE;
        if (is_discard) {
            blk_aio_pdiscard(s->blk, off, bytes, blk_rw_done, req);
        } else {
            blk_aio_pwrite_zeroes(s->blk, off, bytes,
                                  segs[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP ? BLK_ZERO_MAY_UNMAP : 0,
                                  blk_rw_done, req);
        }
    }
    g_free(segs);
}

/*
 * Parse and start one popped request. Returns -1 after a framing fault
 * (the device is broken then and the queue must not be touched again).
 */
static int blk_handle_request(VirtIOBlock *s, VirtQueue *vq, VirtIOBlockReq *req)
{
    VirtIODevice *vdev = &s->parent_obj;
    VirtIOBlockQueue *q = &s->queues[virtio_get_queue_index(vq)];
    struct iovec *out = req->elem.out_sg, *in = req->elem.in_sg;
    unsigned out_num = req->elem.out_num, in_num = req->elem.in_num;
    VirtIOBlkOutHdr hdr;

    req->dev = s;
    req->vq = vq;
    req->in_written = 0;
    req->pending = 0;
    req->error = 0;
    req->data = NULL;
    req->data_cnt = 0;
    req->data_len = 0;
    /*
     * spec 5.2.6.1 / 2.6.4: the header is the first 16 readable bytes and the
     * status the last writable byte, wherever the descriptors split them.
     */
    if (iov_to_buf(out, out_num, 0, &hdr, sizeof(hdr)) < sizeof(hdr)) {
        virtio_error(vdev, "queue %u: request header shorter than %zu bytes",
                     virtio_get_queue_index(vq), sizeof(hdr));
        virtqueue_detach_element(vq, &req->elem, 0);
        req_put(s, req);
        return -1;
    }
    req->status = iov_take_last_byte(in, &in_num);
    if (!req->status) {
        virtio_error(vdev, "queue %u: request without a writable status byte",
                     virtio_get_queue_index(vq));
        virtqueue_detach_element(vq, &req->elem, 0);
        req_put(s, req);
        return -1;
    }
    iov_trim_front(&out, &out_num, sizeof(hdr));
    req->type = le32toh(hdr.type);
    req->sector = le64toh(hdr.sector);
    s->stats.reqs[req->type < 16 ? req->type : 15]++;
    q->in_flight++;
    s->in_flight++;
    if (s->in_flight > s->stats.max_in_flight) {
        s->stats.max_in_flight = s->in_flight;
    }

    switch (req->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_GET_ID:
        req->data = in;
        req->data_cnt = in_num;
        req->data_len = iov_size(in, in_num);
        if (req->type == VIRTIO_BLK_T_GET_ID) {
            blk_get_id(req);
        } else {
            blk_submit_rw(req);
        }
        break;
    case VIRTIO_BLK_T_OUT:
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES:
        req->data = out;
        req->data_cnt = out_num;
        req->data_len = iov_size(out, out_num);
        if (req->type == VIRTIO_BLK_T_OUT) {
            blk_submit_rw(req);
        } else {
            blk_discard_write_zeroes(req);
        }
        break;
    case VIRTIO_BLK_T_FLUSH:
        /* spec 5.2.6.2: completed writes are stable once a flush completes (fdatasync). */
        req->pending = 1;
        blk_aio_flush(s->blk, blk_rw_done, req);
        break;
    default:
        /* spec 5.2.6.2: unknown request types get UNSUPP. */
        blk_req_complete(req, VIRTIO_BLK_S_UNSUPP);
        break;
    }
    return 0;
}

static void blk_handle_output(VirtIODevice *vdev, VirtQueue *vq)
{
    VirtIOBlock *s = VIRTIO_BLK(vdev);
    VirtIOBlockReq *req;

    VirtIOBlockQueue *q = &s->queues[virtio_get_queue_index(vq)];

    blk_io_plug(s->blk);
    q->in_handler = true;
    /*
     * Pops are bounded by the queue size: nothing is used before this returns
     * (the backend never completes inside a submit), so the driver cannot
     * make more available than fits in the ring.
     */
    do {
        virtio_queue_set_notification(vq, 0);
        while ((req = req_pop(s, vq))) {
            if (blk_tracked(s)) {
                s->tracker->popped(s->tracker_opaque, virtio_get_queue_index(vq), &req->elem);
            }
            if (blk_handle_request(s, vq, req) < 0) {
                break;
            }
        }
        virtio_queue_set_notification(vq, 1);
    } while (!vdev->broken && !virtio_queue_empty(vq));
    q->in_handler = false;
    blk_io_unplug(s->blk);
    /* Requests refused at parse time were filled already. */
    blk_flush_queue(s, virtio_get_queue_index(vq));
}

void virtio_blk_set_tracker(VirtIOBlock *s, const VirtIOBlkTracker *tracker, void *opaque)
{
    s->tracker = tracker;
    s->tracker_opaque = opaque;
}

bool virtio_blk_resubmit(VirtIOBlock *s, unsigned queue, unsigned head)
{
    VirtQueue *vq = virtio_get_queue(&s->parent_obj, queue);
    VirtIOBlockReq *req;

    if (!vq) {
        return false;
    }
    req = req_get(s);
    if (virtqueue_pop_inflight_elem(vq, head, &req->elem, req->sg, VIRTQUEUE_MAX_SG) != 1) {
        req_put(s, req);
        return false;
    }
    blk_io_plug(s->blk);
    blk_handle_request(s, vq, req);
    blk_io_unplug(s->blk);
    blk_flush_queue(s, queue);
    return !s->parent_obj.broken;
}

/* ---------------------------------------------------------------------- */
/* Life cycle                                                              */

void virtio_blk_drain(VirtIOBlock *s)
{
    if (s->blk) {
        blk_drain(s->blk);
    }
}

static void blk_reset(VirtIODevice *vdev)
{
    VirtIOBlock *s = VIRTIO_BLK(vdev);

    /*
     * The core resets the rings right after this returns: finish every
     * request first, but leave the rings alone (the driver reset the
     * device; nothing may be published any more).
     */
    s->quiesce = true;
    virtio_blk_drain(s);
    s->quiesce = false;
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        virtqueue_batch_reset(&s->queues[n].batch);
    }
    blk_config(s)->writeback = 0;
    blk_update_config(s);
}

static const VirtIODeviceOps virtio_blk_ops = {
    .set_features = blk_set_features,
    .reset = blk_reset,
};

static bool blk_check_conf(const VirtIOBlkConf *c, GError **errp)
{
    const char *bad = NULL;

    if (!c->blk) {
        bad = "no block backend (drive)";
    } else if (c->num_queues == 0 || c->num_queues > 1024) {
        bad = "num-queues must be 1..1024";
    } else if (c->queue_size < 4 || c->queue_size > VIRTQUEUE_MAX_SIZE ||
               (c->queue_size & (c->queue_size - 1))) {
        /* Split rings need a power of two; seg_max defaults to queue-size - 2. */
        bad = "queue-size must be a power of two, 4..32768";
    } else if (c->seg_max > c->queue_size - 2 && c->seg_max) {
        bad = "seg-max must not exceed queue-size - 2";
    } else if (c->logical_block_size < VIRTIO_BLK_SECTOR_SIZE || c->logical_block_size > 65536 ||
               (c->logical_block_size & (c->logical_block_size - 1))) {
        bad = "logical_block_size must be a power of two, 512..65536";
    } else if (c->max_discard_seg == 0 || c->max_write_zeroes_seg == 0 ||
               c->max_discard_seg > 4096 || c->max_write_zeroes_seg > 4096) {
        bad = "max-discard-seg / max-write-zeroes-seg must be 1..4096";
    }
    if (bad) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "virtio-blk: %s", bad);
        return false;
    }
    return true;
}

bool virtio_blk_realize(VirtIOBlock *s, const VirtIOBlkConf *conf, GuestMemory *mem, GError **errp)
{
    VirtIODevice *vdev = &s->parent_obj;

    memset(s, 0, sizeof(*s));
    if (!blk_check_conf(conf, errp)) {
        return false;
    }
    if (virtio_init(vdev, "virtio-blk", VIRTIO_ID_BLOCK, sizeof(VirtIOBlkConfig), mem,
                    conf->num_queues, conf->queue_size) < 0) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_FAILED, "virtio-blk: virtio_init failed");
        return false;
    }
    s->conf = *conf;
    s->blk = conf->blk;
    s->read_only = conf->read_only || blk_is_read_only(conf->blk);
    s->capacity = blk_getlength(conf->blk) / VIRTIO_BLK_SECTOR_SIZE;
    s->queues = g_new0(VirtIOBlockQueue, conf->num_queues);
    vdev->ops = &virtio_blk_ops;
    vdev->host_features = blk_ring_features(conf) | blk_device_features(s);
    for (unsigned n = 0; n < conf->num_queues; n++) {
        virtio_queue_set_handler(vdev, n, blk_handle_output);
        /* A queue property the core keeps across resets (only used under IN_ORDER). */
        virtio_queue_set_batch(virtio_get_queue(vdev, n), conf->used_batch);
    }
    blk_update_config(s);
    blk_set_batch_done(s->blk, blk_batch_done, s);
    return true;
}

void virtio_blk_unrealize(VirtIOBlock *s)
{
    if (!s->queues) {
        return;
    }
    s->quiesce = true;
    virtio_blk_drain(s);
    blk_set_batch_done(s->blk, NULL, NULL);
    virtio_cleanup(&s->parent_obj);
    virtio_req_pool_drain(&s->req_pool);
    g_free(s->queues);
    s->queues = NULL;
}

void virtio_blk_resize(VirtIOBlock *s)
{
    s->capacity = blk_getlength(s->blk) / VIRTIO_BLK_SECTOR_SIZE;
    blk_update_config(s);
    virtio_notify_config(&s->parent_obj);
}

void virtio_blk_get_stats(const VirtIOBlock *s, VirtIOBlkStats *stats)
{
    *stats = s->stats;
}
