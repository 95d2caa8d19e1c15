/*
 * vdriver: the driver side of a virtqueue, for tests, benchmarks and test
 * frontends. It speaks split, packed, split+IN_ORDER and packed+IN_ORDER
 * rings, direct and indirect chains, kick and interrupt suppression (flags
 * and event idx), and reaps used buffers including in-order batches (one used
 * entry standing for several buffers, spec 2.7.9 / 2.8.21).
 *
 * It also checks the device: every used entry is validated (id in flight,
 * len within the buffer, packed flags and WRITE bit, in-order position) and
 * the first violation is kept in vdriver_error(). A test that expects a
 * correct device asserts vdriver_error() == NULL.
 *
 * Memory: ring areas and indirect tables are reached through a GuestMemory
 * table (host pointers), so the driver runs in the same process as the
 * device, on another thread, or against memory shared with a vhost-user
 * backend. Buffers are (gpa, len) pairs the caller owns.
 *
 * Context: one thread drives a queue; the device may run on another thread.
 */
#ifndef TESTS_LIBVDRIVER_VDRIVER_H
#define TESTS_LIBVDRIVER_VDRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "exec/memory.h"

typedef struct VDriverSeg {
    uint64_t addr;
    uint32_t len;
} VDriverSeg;

typedef struct VDriverQueueConfig {
    unsigned num;               /* split: power of two; packed: any 1..32768 */
    bool packed;
    bool in_order;              /* VIRTIO_F_IN_ORDER negotiated */
    bool event_idx;             /* VIRTIO_RING_F_EVENT_IDX negotiated */
    hwaddr desc, driver, device;
    /* Indirect tables: table for buffer slot i at indirect + i * indirect_max * 16. 0 = none. */
    hwaddr indirect;
    unsigned indirect_max;
} VDriverQueueConfig;

/* Counters, for tests and benchmarks. */
typedef struct VDriverStats {
    uint64_t added;
    uint64_t reaped;
    uint64_t used_entries;      /* used entries / descriptors read (< reaped when batched) */
    uint64_t batched;           /* buffers reaped without an entry of their own */
    uint64_t kicks;             /* vdriver_kick_prepare said notify */
    uint64_t kicks_suppressed;
} VDriverStats;

typedef struct VDriverQueue VDriverQueue;

/*
 * Set up a queue: zero its ring areas and reset driver state. Returns NULL
 * (with errno) if the configuration is invalid or a ring area is not inside
 * @mem.
 */
VDriverQueue *vdriver_queue_new(GuestMemory *mem, const VDriverQueueConfig *cfg);
void vdriver_queue_free(VDriverQueue *q);

/*
 * Make a buffer available: @out_num readable segments then @in_num writable
 * ones; @token comes back from vdriver_get_buf. @indirect puts the chain in
 * an indirect table (one ring slot). Packed descriptors are visible at once;
 * split ones at the next vdriver_kick_prepare. Returns 0, -ENOSPC (ring
 * full), or -EINVAL (empty chain, or longer than the ring / indirect table).
 */
int vdriver_add(VDriverQueue *q, const VDriverSeg *out, unsigned out_num,
                const VDriverSeg *in, unsigned in_num, void *token, bool indirect);

/*
 * Publish what was added (split: avail->idx) and decide whether the device
 * wants a notification (avail_event / used->flags / packed device event
 * suppression). Returns true when the caller should notify.
 */
bool vdriver_kick_prepare(VDriverQueue *q);

/*
 * Reap the next used buffer: returns its token and sets *@len, or NULL when
 * nothing more is used (or the device violated the protocol: see
 * vdriver_error). Buffers skipped by an in-order batch are returned one by
 * one with len = their writable length, and *@batched (if non-NULL) true.
 */
void *vdriver_get_buf(VDriverQueue *q, uint32_t *len, bool *batched);

/*
 * Packed: take a used descriptor with len > 0 and no WRITE flag as len 0
 * (spec 2.8.4: drivers ignore that len) instead of a violation. For foreign
 * devices (DPDK's vhost writes TX lengths there); vdm's own must not.
 */
void vdriver_ignore_readonly_len(VDriverQueue *q, bool on);

/* Is anything used that vdriver_get_buf has not returned yet? */
bool vdriver_has_used(VDriverQueue *q);

/*
 * Interrupt suppression: ask the device not to notify, or to notify again
 * after the next used buffer. enable returns true when used buffers are
 * already pending (the caller must poll again: the interrupt may not come).
 */
void vdriver_disable_cb(VDriverQueue *q);
bool vdriver_enable_cb(VDriverQueue *q);

/* Buffers in flight (added, not reaped). */
unsigned vdriver_inflight(const VDriverQueue *q);
/* Ring slots free for vdriver_add (descriptors). */
unsigned vdriver_free_slots(const VDriverQueue *q);
unsigned vdriver_num(const VDriverQueue *q);

/* First device protocol violation seen, or NULL. */
const char *vdriver_error(const VDriverQueue *q);

void vdriver_get_stats(const VDriverQueue *q, VDriverStats *stats);

/* Lay out a queue's ring areas from @base (aligned); returns the first byte after them. */
hwaddr vdriver_layout_rings(VDriverQueueConfig *cfg, hwaddr base);

/* The four ring layouts every ring/device test runs on (STYLE.md §9), named for test paths. */
typedef struct VDriverLayout {
    const char *name;           /* "split", "packed", "split-in-order", "packed-in-order" */
    bool packed, in_order;
} VDriverLayout;

#define VDRIVER_NUM_LAYOUTS 4
extern const VDriverLayout vdriver_layouts[VDRIVER_NUM_LAYOUTS];

#endif
