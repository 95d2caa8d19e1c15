/*
 * The virtio core: devices, virtqueues (split and packed) and elements.
 *
 * Devices see only elements: pop one, read its out_sg, write its in_sg,
 * then fill/flush (or push) it. Ring formats are private to hw/virtio/virtio.c.
 *
 * Context: one thread at a time per device. A device that completes requests
 * on other threads hands them back to that thread (or holds a per-device lock)
 * before calling fill/flush. The core needs no event loop and no glib.
 */
#ifndef HW_VIRTIO_VIRTIO_H
#define HW_VIRTIO_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "exec/memory.h"
#include "hw/virtio/virtio-features.h"
#include "hw/virtio/virtio-ring.h"

/* Device status bits (spec 2.1). */
#define VIRTIO_CONFIG_S_ACKNOWLEDGE     1
#define VIRTIO_CONFIG_S_DRIVER          2
#define VIRTIO_CONFIG_S_DRIVER_OK       4
#define VIRTIO_CONFIG_S_FEATURES_OK     8
#define VIRTIO_CONFIG_S_NEEDS_RESET     0x40
#define VIRTIO_CONFIG_S_FAILED          0x80

/* Most segments one element may carry (the same bound as IOV_MAX). */
#define VIRTQUEUE_MAX_SG 1024

/* "No MSI-X vector" as virtio-pci spells it. */
#define VIRTIO_NO_VECTOR 0xffff

typedef struct VirtIODevice VirtIODevice;
typedef struct VirtQueue VirtQueue;

/*
 * One buffer (descriptor chain) popped from a queue.
 * Readable segments come first in the ring (spec 2.7.4), so one array holds
 * both: out_sg = sg, in_sg = sg + out_num.
 */
typedef struct VirtQueueElement {
    unsigned int index;         /* split: head descriptor; packed: buffer id */
    unsigned int len;           /* bytes the device wrote, set by fill */
    unsigned int ndescs;        /* packed: ring slots the chain occupies; split: 1 */
    unsigned int out_num;
    unsigned int in_num;
    uint32_t in_len;            /* total device-writable bytes */
    uint32_t slot;              /* this element's entry in the queue's used_elems */
    bool filled;                /* set by virtqueue_ordered_fill */
    struct iovec *out_sg;
    struct iovec *in_sg;
} VirtQueueElement;

typedef void (*VirtIOHandleOutput)(VirtIODevice *vdev, VirtQueue *vq);

/* How a device reaches its driver; filled in by the transport (pci, mmio, vhost-user). */
typedef struct VirtIOTransportOps {
    /* Used-buffer notification for @vq (MSI-X vector, irq, or call eventfd). */
    void (*notify_queue)(VirtIODevice *vdev, VirtQueue *vq);
    /* Configuration change notification (also sent by virtio_error). */
    void (*notify_config)(VirtIODevice *vdev);
} VirtIOTransportOps;

/*
 * What a device model provides. All hooks optional. A device offers its
 * feature bits by setting host_features after virtio_init (which puts the
 * ring bits there), masked by what the registry says is implemented.
 */
typedef struct VirtIODeviceOps {
    void (*set_features)(VirtIODevice *vdev, uint64_t features);
    void (*reset)(VirtIODevice *vdev);
    void (*set_status)(VirtIODevice *vdev, uint8_t status);
} VirtIODeviceOps;

struct VirtIODevice {
    const char *name;           /* for messages: "virtio-blk" */
    uint16_t device_id;
    uint8_t status;
    uint8_t isr;
    bool broken;                /* sticky until reset: a ring fault was seen */
    uint64_t host_features;     /* offered to the driver */
    uint64_t guest_features;    /* accepted by the driver */
    GuestMemory *mem;
    unsigned num_queues;
    VirtQueue *vq;              /* array of num_queues */
    uint8_t *config;
    size_t config_len;
    uint32_t generation;
    const VirtIOTransportOps *transport;
    void *transport_opaque;
    const VirtIODeviceOps *ops;
    unsigned error_count;
    char error_msg[256];        /* first fault since reset, for logs and tests */
};

/* ---- device life cycle ---- */

/*
 * Set up @vdev with @num_queues queues, each offering at most @queue_max
 * entries. Returns 0 or -EINVAL (queue_max 0 or > 32768; queue_max must be a
 * power of two when the split layout may be used — callers pass one).
 */
int virtio_init(VirtIODevice *vdev, const char *name, uint16_t device_id,
                size_t config_len, GuestMemory *mem,
                unsigned num_queues, unsigned queue_max);
void virtio_cleanup(VirtIODevice *vdev);

/* Attach the handler run when the driver notifies @n. */
void virtio_queue_set_handler(VirtIODevice *vdev, unsigned n, VirtIOHandleOutput handler);
VirtQueue *virtio_get_queue(VirtIODevice *vdev, unsigned n);
unsigned virtio_get_queue_index(const VirtQueue *vq);
VirtIODevice *virtio_queue_get_device(const VirtQueue *vq);

/* Return every queue to its reset state; features, status and broken are cleared. */
void virtio_reset(VirtIODevice *vdev);

/*
 * Mark @vdev broken after a fault the driver (or vhost-user peer) caused: the
 * device stops touching its rings, sets NEEDS_RESET and raises a config
 * notification. Never aborts. The message names the device.
 */
void virtio_error(VirtIODevice *vdev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- features and status ---- */

static inline bool virtio_has_feature(uint64_t features, unsigned bit)
{
    return bit < 64 && (features & (1ULL << bit));
}

static inline bool virtio_vdev_has_feature(const VirtIODevice *vdev, unsigned bit)
{
    return virtio_has_feature(vdev->guest_features, bit);
}

/*
 * Accept the driver's features. Returns 0, or -EINVAL if @val has a bit that
 * was not offered (the features stay unset then). Refused after FEATURES_OK.
 */
int virtio_set_features(VirtIODevice *vdev, uint64_t val);

/*
 * Write the status register. Setting FEATURES_OK fails (returns -EINVAL, bit
 * stays clear) when the features are inconsistent; setting DRIVER_OK activates
 * every enabled queue; writing 0 resets the device.
 */
int virtio_set_status(VirtIODevice *vdev, uint8_t val);

/* ---- queue configuration (transport side) ---- */

/*
 * Configuration writes are refused (-EBUSY) while the queue is running.
 * Split sizes must be powers of two; both layouts allow 1..queue_max.
 */
int virtio_queue_set_num(VirtIODevice *vdev, unsigned n, unsigned num);
unsigned virtio_queue_get_num(VirtIODevice *vdev, unsigned n);
unsigned virtio_queue_get_max_num(VirtIODevice *vdev, unsigned n);
/* Split: descriptor table, avail ring, used ring. Packed: descriptor ring, driver area, device area. */
int virtio_queue_set_rings(VirtIODevice *vdev, unsigned n, hwaddr desc, hwaddr driver, hwaddr device);
void virtio_queue_get_rings(VirtIODevice *vdev, unsigned n, hwaddr *desc, hwaddr *driver, hwaddr *device);
int virtio_queue_set_vector(VirtIODevice *vdev, unsigned n, uint16_t vector);
uint16_t virtio_queue_get_vector(VirtIODevice *vdev, unsigned n);
int virtio_queue_set_enabled(VirtIODevice *vdev, unsigned n, bool enabled);
bool virtio_queue_get_enabled(VirtIODevice *vdev, unsigned n);

/*
 * Validate the queue's configuration against the negotiated features and guest
 * memory (size, alignment, every ring area inside one region, writable where
 * the device writes) and start it. A bad configuration is a driver fault:
 * virtio_error and -EINVAL. Starting a running queue is a no-op.
 */
int virtio_queue_activate(VirtIODevice *vdev, unsigned n);
/* Stop the queue without touching ring memory; its indices are kept. */
void virtio_queue_deactivate(VirtIODevice *vdev, unsigned n);
bool virtio_queue_is_running(VirtIODevice *vdev, unsigned n);
/* Reset one queue (VIRTIO_F_RING_RESET and vhost-user): config and state cleared. */
void virtio_queue_reset(VirtIODevice *vdev, unsigned n);

/*
 * Guest memory changed under running queues: translate the ring areas again.
 * A ring no longer inside guest memory breaks the device. Returns 0 or -EFAULT.
 */
int virtio_device_memory_changed(VirtIODevice *vdev);

/* Driver notified queue @n: run its handler (nothing when broken or not running). */
void virtio_queue_notify(VirtIODevice *vdev, unsigned n);

/* ---- elements (device side) ---- */

/*
 * Pop the next available buffer into a newly allocated object of @sz bytes
 * whose first member is a VirtQueueElement (QEMU's convention). Returns NULL
 * when the queue is empty, not running, or broken (a malformed chain breaks
 * the device). Free it with virtqueue_element_free().
 */
void *virtqueue_pop(VirtQueue *vq, size_t sz);
void virtqueue_element_free(void *elem);

/*
 * Resubmit a buffer that was in flight when a vhost-user backend died (split
 * layout; vhost-user INFLIGHT_SHMFD): map the chain at descriptor @head
 * without consuming the avail ring. The caller first restores the avail index
 * to used index + number of in-flight buffers; each resubmission must fit in
 * that gap. Returns 1, 0 (not running, broken or packed) or -1 (bad head or
 * chain: device broken). The element is then completed like any other.
 */
int virtqueue_pop_inflight_elem(VirtQueue *vq, unsigned head, VirtQueueElement *elem,
                                struct iovec *sg, unsigned sg_max);
/* Allocating form, like virtqueue_pop. */
void *virtqueue_pop_inflight(VirtQueue *vq, unsigned head, size_t sz);

/*
 * Allocation-free pop into caller storage: @sg holds @sg_max iovecs for both
 * directions. Returns 1 (popped), 0 (empty / not running / broken) or -1 (the
 * chain was malformed or needs more than @sg_max segments: device broken).
 */
int virtqueue_pop_elem(VirtQueue *vq, VirtQueueElement *elem, struct iovec *sg, unsigned sg_max);

/*
 * Complete @elem with @len bytes written. Without IN_ORDER @idx is the
 * element's position in the batch closed by the next flush. With IN_ORDER
 * both route to virtqueue_ordered_fill / virtqueue_ordered_flush.
 */
void virtqueue_fill(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len, unsigned int idx);
void virtqueue_flush(VirtQueue *vq, unsigned int count);
/* fill + flush of one element. */
void virtqueue_push(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len);

/*
 * IN_ORDER: mark @elem done (O(1), through its slot). Nothing is published
 * until every earlier element is filled too. Filling an element twice, or one
 * this queue does not hold, is a device-model bug and is reported (stderr) and
 * ignored rather than corrupting the ring.
 */
void virtqueue_ordered_fill(VirtQueue *vq, VirtQueueElement *elem, unsigned int len);
/*
 * IN_ORDER: publish the longest contiguous run of filled elements. Returns how
 * many. Without IN_ORDER both calls degrade to plain fill / flush (every
 * filled element is published, in fill order).
 */
unsigned virtqueue_ordered_flush(VirtQueue *vq);

/*
 * Batch publication (IN_ORDER only): a run of completely used buffers is
 * published as one used entry / descriptor carrying the last buffer's id
 * (spec 2.7.9 / 2.8.21 "in-order use of descriptors"). Off by default; never
 * enable it on a queue whose buffers may be written partially (net RX).
 */
void virtio_queue_set_batch(VirtQueue *vq, bool enable);

/*
 * Use buffers in the order they were made available even without
 * VIRTIO_F_IN_ORDER (the spec always allows it), each with a used entry of
 * its own (no batch publication, even under IN_ORDER). Completions go
 * through the in-order bookkeeping, so an earlier buffer's used entry is
 * never written after a later one's — on a packed ring no used descriptor
 * overwrites an in-flight buffer's descriptors, and a restarted vhost-user
 * backend can step over the used descriptors one buffer at a time. Takes
 * effect when the queue is next activated; survives resets.
 */
void virtio_queue_set_ordered_use(VirtQueue *vq, bool enable);

/*
 * Drop @elem without returning it to the driver. Under IN_ORDER it is used
 * with len 0 instead, so later completions are not stalled behind a hole.
 */
void virtqueue_detach_element(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len);

/* Give back the last popped element as if never popped (it must be the last one). */
void virtqueue_unpop(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len);
/* Give back the last @num popped elements. Returns false if fewer are in flight. */
bool virtqueue_rewind(VirtQueue *vq, unsigned int num);

/* ---- notifications ---- */

/* Enable or suppress driver notifications (kicks) for @vq. */
void virtio_queue_set_notification(VirtQueue *vq, int enable);
/* Should the driver be notified of what was published since the last notification? */
bool virtio_should_notify(VirtIODevice *vdev, VirtQueue *vq);
/* Notify the driver through the transport if virtio_should_notify says so. */
void virtio_notify(VirtIODevice *vdev, VirtQueue *vq);
void virtio_notify_config(VirtIODevice *vdev);

/* ---- queue state ---- */

bool virtio_queue_empty(VirtQueue *vq);
/* Elements popped and not yet published (or detached). */
unsigned virtio_queue_inuse(const VirtQueue *vq);

/*
 * Ring indices for save/restore and vhost-user. Split: free-running 16-bit
 * index. Packed: ring position in bits 0-14, wrap counter in bit 15.
 */
unsigned virtio_queue_get_last_avail_idx(VirtIODevice *vdev, unsigned n);
int virtio_queue_set_last_avail_idx(VirtIODevice *vdev, unsigned n, unsigned idx);
unsigned virtio_queue_get_used_idx(VirtIODevice *vdev, unsigned n);
int virtio_queue_set_used_idx(VirtIODevice *vdev, unsigned n, unsigned idx);
/*
 * Split, queue stopped: take the used index from the ring in guest memory
 * (what the driver has seen completed), e.g. when a vhost-user backend starts
 * on rings a previous backend served. Returns the index or -EINVAL (packed:
 * no used index in memory), -EBUSY (running), -EFAULT (ring outside memory).
 */
int virtio_queue_update_used_idx(VirtIODevice *vdev, unsigned n);
/* Resume at the used index (every in-flight buffer will be popped again). */
/*
 * Packed, queue stopped, rings set: from @pos_wrap (pos | wrap << 15) step
 * over the used descriptors the device wrote there, each by the count
 * @ndescs gives for its buffer id (0: unknown, stop). For a backend that
 * recorded its used position before a crash and may have published more
 * after. Returns the position reached (same encoding) or -errno.
 */
int virtio_queue_packed_skip_used(VirtIODevice *vdev, unsigned n, unsigned pos_wrap,
                                  unsigned (*ndescs)(void *opaque, uint16_t id), void *opaque);
void virtio_queue_restore_last_avail_idx(VirtIODevice *vdev, unsigned n);

/* Counters kept per queue, for stats and tests. */
typedef struct VirtQueueStats {
    uint64_t popped;
    uint64_t used;              /* buffers published */
    uint64_t used_entries;      /* used entries / descriptors written (< used when batching) */
    uint64_t flushes;           /* flushes that published something */
    uint64_t notifies;
} VirtQueueStats;
void virtio_queue_get_stats(const VirtQueue *vq, VirtQueueStats *stats);

#endif
