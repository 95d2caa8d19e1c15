/*
 * virtio-blk: the block device model (virtio spec 5.2) on the virtio core
 * and a BlockBackend.
 *
 * No transport code: a host (virtio-pci in the device host, or a vhost-user
 * backend) owns guest memory and the transport ops, calls virtio_blk_realize
 * and then drives the embedded VirtIODevice through the core's API
 * (virtio_set_features, virtio_set_status, virtio_queue_notify, ...).
 *
 * Context: the main-loop thread that owns the BlockBackend; the device and
 * its completions never run anywhere else.
 */
#ifndef HW_VIRTIO_VIRTIO_BLK_H
#define HW_VIRTIO_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "block/block-backend.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-req-pool.h"
#include "hw/virtio/virtqueue-batch.h"

#define VIRTIO_ID_BLOCK 2

/* Feature bits (spec 5.2.3). */
#define VIRTIO_BLK_F_SIZE_MAX       1
#define VIRTIO_BLK_F_SEG_MAX        2
#define VIRTIO_BLK_F_GEOMETRY       4
#define VIRTIO_BLK_F_RO             5
#define VIRTIO_BLK_F_BLK_SIZE       6
#define VIRTIO_BLK_F_FLUSH          9
#define VIRTIO_BLK_F_TOPOLOGY       10
#define VIRTIO_BLK_F_CONFIG_WCE     11
#define VIRTIO_BLK_F_MQ             12
#define VIRTIO_BLK_F_DISCARD        13
#define VIRTIO_BLK_F_WRITE_ZEROES   14

/* Request types (spec 5.2.6). */
#define VIRTIO_BLK_T_IN             0
#define VIRTIO_BLK_T_OUT            1
#define VIRTIO_BLK_T_FLUSH          4
#define VIRTIO_BLK_T_GET_ID         8
#define VIRTIO_BLK_T_DISCARD        11
#define VIRTIO_BLK_T_WRITE_ZEROES   13

/* Request status (spec 5.2.6). */
#define VIRTIO_BLK_S_OK             0
#define VIRTIO_BLK_S_IOERR          1
#define VIRTIO_BLK_S_UNSUPP         2

#define VIRTIO_BLK_ID_BYTES         20
#define VIRTIO_BLK_SECTOR_SIZE      512

/* Discard / write-zeroes segment flags (spec 5.2.6). */
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1u

/* Request header, the first 16 readable bytes of every request (little-endian). */
typedef struct VirtIOBlkOutHdr {
    uint32_t type;
    uint32_t ioprio;            /* "reserved" in virtio 1.x */
    uint64_t sector;
} VirtIOBlkOutHdr;

/* One discard / write-zeroes segment (little-endian). */
typedef struct VirtIOBlkDiscardWriteZeroes {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
} VirtIOBlkDiscardWriteZeroes;

/* Configuration space layout (spec 5.2.4), little-endian, up to write_zeroes_may_unmap. */
typedef struct __attribute__((packed)) VirtIOBlkConfig {
    uint64_t capacity;          /* in 512-byte sectors */
    uint32_t size_max;
    uint32_t seg_max;
    struct {
        uint16_t cylinders;
        uint8_t heads;
        uint8_t sectors;
    } geometry;
    uint32_t blk_size;
    struct {
        uint8_t physical_block_exp;
        uint8_t alignment_offset;
        uint16_t min_io_size;
        uint32_t opt_io_size;
    } topology;
    uint8_t writeback;
    uint8_t unused0;
    uint16_t num_queues;
    uint32_t max_discard_sectors;
    uint32_t max_discard_seg;
    uint32_t discard_sector_alignment;
    uint32_t max_write_zeroes_sectors;
    uint32_t max_write_zeroes_seg;
    uint8_t write_zeroes_may_unmap;
    uint8_t unused1[3];
} VirtIOBlkConfig;

/* Device properties, named and defaulted as QEMU's virtio-blk (see virtio_blk_conf_init). */
typedef struct VirtIOBlkConf {
    BlockBackend *blk;          /* not owned */
    char serial[VIRTIO_BLK_ID_BYTES + 1];
    uint32_t num_queues;        /* "num-queues", default 1 */
    uint32_t queue_size;        /* "queue-size", default 256 (power of two) */
    uint32_t seg_max;           /* 0: queue-size - 2 */
    uint32_t size_max;          /* 0: not offered */
    uint32_t logical_block_size;            /* "logical_block_size", default 512 */
    uint32_t max_discard_sectors;           /* "max-discard-sectors", default 4194303 */
    uint32_t max_discard_seg;               /* "max-discard-seg", default 32 */
    uint32_t max_write_zeroes_sectors;      /* "max-write-zeroes-sectors", default 4194303 */
    uint32_t max_write_zeroes_seg;          /* "max-write-zeroes-seg", default 32 */
    bool read_only;             /* "read-only": offer RO, refuse writes (also if the backend is RO) */
    bool discard;               /* "discard", default on */
    bool write_zeroes;          /* "write-zeroes", default on */
    bool config_wce;            /* "config-wce", default on */
    bool writeback;             /* initial cache mode when the driver may choose, default on */
    bool in_order;              /* "in_order": offer VIRTIO_F_IN_ORDER, default off (as QEMU) */
    bool packed;                /* "packed", default off */
    bool event_idx;             /* "event_idx", default on */
    bool indirect_desc;         /* "indirect_desc", default on */
    bool used_batch;            /* "used-batch": in-order batch publication, default on */
} VirtIOBlkConf;

/* What the device did, for logs and tests. */
typedef struct VirtIOBlkStats {
    uint64_t reqs[16];          /* by VIRTIO_BLK_T_* (types >= 16 count in reqs[15]) */
    uint64_t status_ok, status_ioerr, status_unsupp;
    uint64_t bytes_read, bytes_written;
    uint64_t writethrough_flushes;  /* flushes the device added after writes (writeback off) */
    uint64_t max_in_flight;
} VirtIOBlkStats;

typedef struct VirtIOBlockQueue {
    VirtQueueBatch batch;       /* also published one by one (tracker): notify at the end of the run */
    unsigned in_flight;
    bool in_handler;            /* inside the queue handler's pop loop */
    /*
     * Tracked requests completed inside the pop loop (refused at parse time),
     * published when the loop ends: publishing there would free ring space a
     * guest could refill at once, and one kick would never end.
     */
    struct VirtIOBlockReq *deferred;
} VirtIOBlockQueue;

/*
 * Per-request notifications for a host that keeps its own record of requests
 * in flight (vhost-user INFLIGHT_SHMFD), so that a restarted backend can
 * resubmit them. @head is the element's index (split: head descriptor,
 * packed: buffer id); popped() gets the whole element.
 * While a tracker is set, completions are published one element at a time
 * between publishing() and published(). A split ring under IN_ORDER needs no
 * tracking (its used index in guest memory is a contiguous completion
 * boundary) and the tracker is not called; a packed ring keeps no used index
 * in memory, so it is tracked with or without IN_ORDER.
 */
typedef struct VirtIOBlkTracker {
    void (*popped)(void *opaque, unsigned queue, const VirtQueueElement *elem);
    void (*publishing)(void *opaque, unsigned queue, unsigned head);
    void (*published)(void *opaque, unsigned queue, unsigned head);
} VirtIOBlkTracker;

typedef struct VirtIOBlock {
    VirtIODevice parent_obj;    /* first: VIRTIO_BLK() casts from it */
    VirtIOBlkConf conf;
    BlockBackend *blk;
    uint64_t capacity;          /* sectors */
    bool read_only;
    VirtIOBlockQueue *queues;
    unsigned in_flight;
    bool quiesce;               /* completions must not touch the rings (reset in progress) */
    const VirtIOBlkTracker *tracker;
    void *tracker_opaque;
    VirtIOReqPool req_pool;     /* no allocation per request once warm */
    VirtIOBlkStats stats;
} VirtIOBlock;

static inline VirtIOBlock *VIRTIO_BLK(VirtIODevice *vdev)
{
    return (VirtIOBlock *)vdev;
}

/* QEMU's defaults. */
void virtio_blk_conf_init(VirtIOBlkConf *conf);

/*
 * Set a property by its QEMU name ("in_order", "packed", "queue-size",
 * "num-queues", "serial", ...): "on"/"off"/"true"/"false" for booleans.
 * Returns false with @errp set for an unknown name or a bad value.
 */
bool virtio_blk_conf_set(VirtIOBlkConf *conf, const char *name, const char *value, GError **errp);
/* Call @fn for each property: name, type ("bool", "uint32", "str") and a one-line description. */
void virtio_blk_conf_list(void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                          void *opaque);
/* Each property with its current value in @conf (qdev_prop_list_values). */
void virtio_blk_conf_list_values(const VirtIOBlkConf *conf,
                                 void (*fn)(const char *name, const char *type, const char *value,
                                            void *opaque),
                                 void *opaque);

/*
 * Set up @s on @conf->blk with guest memory @mem: queues, config space and
 * offered features. The host then sets vdev.transport / transport_opaque.
 * Returns false with @errp set for a bad configuration.
 */
bool virtio_blk_realize(VirtIOBlock *s, const VirtIOBlkConf *conf, GuestMemory *mem, GError **errp);
/* Drain, then free what realize allocated (the BlockBackend is the caller's). */
void virtio_blk_unrealize(VirtIOBlock *s);

/*
 * Finish every request in flight, publishing their completions (vhost-user
 * GET_VRING_BASE, memory-map changes, stop). Reset drains too, but drops the
 * completions without touching the rings.
 */
void virtio_blk_drain(VirtIOBlock *s);

/*
 * A driver write to the configuration space (transport or vhost-user
 * SET_CONFIG). Only `writeback` is writable, and only with CONFIG_WCE
 * negotiated (spec 5.2.4); anything else is refused with -EPERM and changes
 * nothing. Returns 0, -EPERM or -EINVAL (outside the config space).
 */
int virtio_blk_set_config(VirtIOBlock *s, uint32_t offset, const uint8_t *data, uint32_t len);

void virtio_blk_set_tracker(VirtIOBlock *s, const VirtIOBlkTracker *tracker, void *opaque);

/*
 * Start again the split chain at @head on @queue, a request that was in
 * flight when a previous backend stopped (already counted by the restored
 * avail index, see virtqueue_pop_inflight). Returns false if the chain could
 * not be mapped (the device is broken then).
 */
bool virtio_blk_resubmit(VirtIOBlock *s, unsigned queue, unsigned head);

/* The image size changed (block_resize): update capacity and notify the driver. */
void virtio_blk_resize(VirtIOBlock *s);

/* Is the volatile write cache on (writes completed before a flush may be lost)? */
bool virtio_blk_writeback(const VirtIOBlock *s);

void virtio_blk_get_stats(const VirtIOBlock *s, VirtIOBlkStats *stats);

#endif
