/*
 * Completions of one virtqueue published in batches: a device fills each
 * completed element as it finishes, then after a run of completions (the
 * queue handler's pop loop, or the backend's batch callback) one flush
 * publishes them all and one notification goes out (STYLE.md §10).
 * Under VIRTIO_F_IN_ORDER the core's fill/flush keep avail order.
 *
 * Inline: fill costs what the open-coded counter cost.
 * Context: the device's thread.
 */
#ifndef HW_VIRTIO_VIRTQUEUE_BATCH_H
#define HW_VIRTIO_VIRTQUEUE_BATCH_H

#include <stdbool.h>

#include "hw/virtio/virtio.h"

typedef struct VirtQueueBatch {
    unsigned pending_fills;     /* filled since the last flush (non-IN_ORDER fill index) */
    bool need_notify;           /* published, driver not yet told */
} VirtQueueBatch;

/* @elem completed with @len bytes written: filled now, published by the next flush. */
static inline void virtqueue_batch_fill(VirtQueueBatch *b, VirtQueue *vq, const VirtQueueElement *elem,
                                        unsigned len)
{
    virtqueue_fill(vq, elem, len, b->pending_fills++);
}

/* Something was published outside the batch (one by one): notify at the next flush. */
static inline void virtqueue_batch_published(VirtQueueBatch *b)
{
    b->need_notify = true;
}

/* Publish what was filled on @vq and notify the driver, once per run. */
static inline void virtqueue_batch_flush(VirtQueueBatch *b, VirtIODevice *vdev, VirtQueue *vq)
{
    if (b->pending_fills) {
        virtqueue_flush(vq, b->pending_fills);
        b->pending_fills = 0;
        b->need_notify = true;
    }
    if (b->need_notify) {
        b->need_notify = false;
        virtio_notify(vdev, vq);
    }
}

/* Forget unpublished fills (queue or device reset: the core dropped them). */
static inline void virtqueue_batch_reset(VirtQueueBatch *b)
{
    b->pending_fills = 0;
    b->need_notify = false;
}

#endif
