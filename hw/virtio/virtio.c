/*
 * The virtio core: split and packed virtqueues, VIRTIO_F_IN_ORDER bookkeeping,
 * notification suppression, and the device state machine.
 *
 * Layout boundary: the public entry points dispatch once on vq->packed to a
 * _split or _packed implementation; nothing below that point asks which
 * layout it is on. Guest-shared fields are read once into locals
 * ("snapshot, validate, use") and every guest-steered index, length and
 * address is checked before use. A fault the guest caused breaks the device
 * (virtio_error); assert() guards only host-programming invariants.
 *
 * Spec references are to virtio 1.2 section numbers.
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-access.h"

/*
 * IN_ORDER bookkeeping: one entry per in-flight element.
 * Slot of an element: with IN_ORDER, split uses its sequence number modulo
 * the queue size (where its used entry will land), packed the ring position
 * of its first descriptor; without IN_ORDER, its head / buffer id (unique
 * among in-flight buffers). Invariant: a slot is inflight from pop until its
 * element is published (flush) or given back (unpop/detach); filled implies
 * inflight.
 */
typedef struct VirtQueueUsedElem {
    uint32_t len;
    uint32_t in_len;
    uint32_t seq;               /* pop sequence number, links rewinds to pops */
    uint16_t id;
    uint16_t ndescs;
    uint16_t prev;              /* slot popped just before this one */
    bool inflight;
    bool filled;                /* IN_ORDER: done, awaiting flush; otherwise: filled, awaiting flush */
    bool resubmitted;           /* from virtqueue_pop_inflight: consumed no avail entry */
} VirtQueueUsedElem;

struct VirtQueue {
    VirtIODevice *vdev;
    unsigned index;
    GuestMemoryCache mem_cache;     /* last region a buffer of this queue was in */
    VirtIOHandleOutput handler;

    /* Configuration state: written by the transport, frozen while running. */
    struct {
        unsigned num;
        unsigned num_max;
        hwaddr desc, driver, device;
        uint16_t vector;
        bool enabled;
    } cfg;

    /* Running state, produced by virtio_queue_activate() from cfg. */
    bool running;
    bool packed;
    bool in_order;              /* IN_ORDER negotiated, or ordered_use */
    bool in_order_negotiated;
    bool ordered_use;           /* the host's choice: use in order even without IN_ORDER */
    bool batch_active;          /* batch, and IN_ORDER negotiated (batching needs the feature) */
    bool event_idx;
    bool indirect;
    bool notify_on_empty;
    bool batch;
    bool notification;          /* driver kicks wanted */
    unsigned num;
    union {
        struct {
            VRingDesc *desc;
            VRingAvail *avail;
            VRingUsed *used;
        } split;
        struct {
            VRingPackedDesc *desc;
            VRingPackedDescEvent *driver;
            VRingPackedDescEvent *device;
        } packed;
    } ring;

    /*
     * Indices. Split: free-running 16-bit. Packed: ring positions < num plus
     * wrap counters (which start at 1, spec 2.8.1).
     */
    uint16_t last_avail_idx;
    bool last_avail_wrap;
    uint16_t shadow_avail_idx;  /* split: avail->idx as last read */
    uint16_t used_idx;
    bool used_wrap;
    uint32_t published_since_signal; /* buffers (split) / descriptors (packed), saturating */

    /* Non-IN_ORDER fill batch in progress (closed by flush). */
    unsigned fill_count;
    uint16_t *fill_slots;       /* without IN_ORDER: slots filled since the last flush */
    uint16_t fill_pos;          /* packed: where the next used descriptor goes */
    bool fill_wrap;
    uint16_t fill_first_flags;  /* packed: the batch's first flags, stored last */
    unsigned fill_descs;

    /* In-flight accounting. */
    unsigned inuse;             /* elements popped, not yet published */
    unsigned inuse_descs;       /* packed: ring descriptors they occupy */
    uint32_t pop_seq;
    uint16_t last_popped_slot;
    VirtQueueUsedElem *used_elems;  /* num_max entries */
    uint8_t *id_busy;           /* num_max entries: head / buffer id in flight */
    struct iovec *scratch_sg;   /* VIRTQUEUE_MAX_SG entries, for virtqueue_pop() */

    VirtQueueStats stats;
};

/* ---------------------------------------------------------------------- */
/* Errors                                                                  */

void virtio_error(VirtIODevice *vdev, const char *fmt, ...)
{
    va_list ap;
    char msg[sizeof(vdev->error_msg)];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    vdev->error_count++;
    if (vdev->broken) {
        return;                 /* rate limit: the first fault is the one that matters */
    }
    snprintf(vdev->error_msg, sizeof(vdev->error_msg), "%s", msg);
    fprintf(stderr, "vdm: %s: %s\n", vdev->name, msg);
    vdev->broken = true;
    vdev->status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    virtio_notify_config(vdev);
}

#define vq_error(vq, fmt, ...) \
    virtio_error((vq)->vdev, "queue %u: " fmt, (vq)->index, ##__VA_ARGS__)

/* A device-model bug (not the guest's): report loudly, never touch the ring. */
#define vq_bug(vq, fmt, ...) \
    fprintf(stderr, "vdm: %s: queue %u: device bug: " fmt "\n", \
            (vq)->vdev->name, (vq)->index, ##__VA_ARGS__)

/* ---------------------------------------------------------------------- */
/* Guest-shared field access                                               */

typedef struct DescSnapshot {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next_or_id;        /* split: next; packed: buffer id */
} DescSnapshot;

/*
 * Descriptors are copied, not loaded through a typed pointer: an indirect
 * table may sit at any guest address (the spec sets no alignment for it).
 * They were published before the avail index / head flags the caller loaded
 * with acquire. The compiler barrier keeps the copy a snapshot: the compiler
 * may not re-read guest memory in place of the local (a double fetch).
 */
static inline void desc_copy(const void *d, void *copy)
{
    memcpy(copy, d, 16);
    __asm__ __volatile__("" ::: "memory");
}

static inline void split_desc_read(const VRingDesc *d, DescSnapshot *s)
{
    VRingDesc c;

    desc_copy(d, &c);
    s->addr = le64toh(c.addr);
    s->len = le32toh(c.len);
    s->flags = le16toh(c.flags);
    s->next_or_id = le16toh(c.next);
}

/* An indirect table entry: its flags come from the same copy (the table may be unaligned). */
static inline void packed_table_desc_read(const VRingPackedDesc *d, DescSnapshot *s)
{
    VRingPackedDesc c;

    desc_copy(d, &c);
    s->addr = le64toh(c.addr);
    s->len = le32toh(c.len);
    s->next_or_id = le16toh(c.id);
    s->flags = le16toh(c.flags);
}

static inline void packed_desc_read(const VRingPackedDesc *d, DescSnapshot *s, uint16_t flags)
{
    VRingPackedDesc c;

    desc_copy(d, &c);
    s->addr = le64toh(c.addr);
    s->len = le32toh(c.len);
    s->next_or_id = le16toh(c.id);
    s->flags = flags;
}

/* ---------------------------------------------------------------------- */
/* Chain mapping, shared by both layouts                                   */

typedef struct ChainBuilder {
    VirtQueue *vq;
    VirtQueueElement *elem;
    struct iovec *sg;
    unsigned sg_max;
    unsigned nsg;
    uint64_t total;             /* bytes in the chain, bounded by 2^32 */
} ChainBuilder;

/* Map one descriptor's buffer onto the element. Returns false after virtio_error. */
static inline __attribute__((always_inline)) bool chain_add(ChainBuilder *cb, const DescSnapshot *d, bool is_write)
{
    VirtQueue *vq = cb->vq;
    VirtQueueElement *elem = cb->elem;
    uint64_t got;
    void *host;
    int n;

    if (!is_write && elem->in_num) {
        /* spec 2.7.4.2: device-readable descriptors precede device-writable ones */
        vq_error(vq, "readable descriptor after a writable one");
        return false;
    }
    cb->total += d->len;
    if (cb->total > UINT32_MAX) {
        vq_error(vq, "descriptor chain longer than 4 GiB");
        return false;
    }
    if (d->len == 0) {
        return true;            /* nothing to map; counted toward the chain bound already */
    }
    /* Fast path: the whole buffer inside one region (nearly always). */
    got = d->len;
    host = guest_memory_translate_cached(vq->vdev->mem, &vq->mem_cache, d->addr, &got, is_write);
    if (host && got == d->len && cb->nsg < cb->sg_max) {
        cb->sg[cb->nsg].iov_base = host;
        cb->sg[cb->nsg].iov_len = d->len;
        n = 1;
    } else {
        n = guest_memory_map_sg(vq->vdev->mem, d->addr, d->len, is_write,
                                cb->sg + cb->nsg, cb->sg_max - cb->nsg);
    }
    if (n == -ENOBUFS) {
        vq_error(vq, "descriptor chain needs more than %u segments", cb->sg_max);
        return false;
    }
    if (n < 0) {
        vq_error(vq, "%s buffer 0x%" PRIx64 "+0x%x outside guest memory",
                 is_write ? "writable" : "readable", d->addr, d->len);
        return false;
    }
    cb->nsg += n;
    if (is_write) {
        elem->in_num += n;
        elem->in_len += d->len;
    } else {
        elem->out_num += n;
    }
    return true;
}

/* Validate and map an indirect table descriptor; returns the table or NULL after virtio_error. */
static const void *chain_map_indirect(VirtQueue *vq, const DescSnapshot *d, unsigned *entries)
{
    const void *table;

    if (!vq->indirect) {
        vq_error(vq, "indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
        return NULL;
    }
    /* spec 2.7.5.3.1 / 2.8.19: a table is a whole number of 16-byte descriptors */
    if (d->len == 0 || d->len % 16) {
        vq_error(vq, "indirect table length %u is not a non-zero multiple of 16", d->len);
        return NULL;
    }
    /* spec 2.7.5.3.1: no chain longer than the queue size */
    if (d->len / 16 > vq->num) {
        vq_error(vq, "indirect table of %u entries exceeds queue size %u", d->len / 16, vq->num);
        return NULL;
    }
    table = guest_memory_map_contig(vq->vdev->mem, d->addr, d->len, false);
    if (!table) {
        vq_error(vq, "indirect table 0x%" PRIx64 "+0x%x outside guest memory", d->addr, d->len);
        return NULL;
    }
    *entries = d->len / 16;
    return table;
}

static inline void elem_init(VirtQueueElement *elem, struct iovec *sg)
{
    elem->len = 0;
    elem->ndescs = 1;
    elem->out_num = 0;
    elem->in_num = 0;
    elem->in_len = 0;
    elem->filled = false;
    elem->out_sg = sg;
    elem->in_sg = sg;
}

/* ---------------------------------------------------------------------- */
/* In-flight slot bookkeeping, shared by both layouts                      */

/*
 * Under IN_ORDER an element's slot is where its used entry will land: split,
 * used_idx + the elements ahead of it (its sequence number modulo the size);
 * packed, used_idx + the descriptors ahead of it (its first descriptor's ring
 * position). Counting from used_idx keeps this right after a restore that
 * left last_avail_idx elsewhere.
 */
static uint16_t in_order_slot(const VirtQueue *vq)
{
    if (vq->packed) {
        unsigned pos = vq->used_idx + vq->inuse_descs;   /* inuse_descs < num */
        return pos >= vq->num ? pos - vq->num : pos;
    }
    return (uint16_t)(vq->used_idx + vq->inuse) & (vq->num - 1);
}

/* Record a popped element. Returns false after virtio_error (id already in flight). */
static inline __attribute__((always_inline)) bool slot_record(VirtQueue *vq, VirtQueueElement *elem)
{
    uint16_t slot = vq->in_order ? in_order_slot(vq) : elem->index;
    VirtQueueUsedElem *u = &vq->used_elems[slot];

    if (vq->id_busy[elem->index]) {
        vq_error(vq, "buffer %u made available while still in flight", elem->index);
        return false;
    }
    if (u->inflight) {
        /* Only reachable by overrunning the ring; the id check covers honest drivers. */
        vq_error(vq, "in-order slot %u already in flight", slot);
        return false;
    }
    vq->id_busy[elem->index] = 1;
    *u = (VirtQueueUsedElem) {
        .in_len = elem->in_len,
        .seq = vq->pop_seq,
        .id = elem->index,
        .ndescs = elem->ndescs,
        .prev = vq->last_popped_slot,
        .inflight = true,
    };
    elem->slot = slot;
    vq->last_popped_slot = slot;
    vq->pop_seq++;
    vq->inuse++;
    vq->inuse_descs += elem->ndescs;
    vq->stats.popped++;
    return true;
}

static inline void slot_release(VirtQueue *vq, VirtQueueUsedElem *u)
{
    vq->id_busy[u->id] = 0;
    vq->inuse--;
    vq->inuse_descs -= u->ndescs;
    u->inflight = false;
    u->filled = false;
}

/* The slot @elem names, if it really is this in-flight element. */
static inline VirtQueueUsedElem *slot_of(VirtQueue *vq, const VirtQueueElement *elem)
{
    VirtQueueUsedElem *u;

    if (elem->slot >= vq->num) {
        return NULL;
    }
    u = &vq->used_elems[elem->slot];
    return u->inflight && u->id == elem->index ? u : NULL;
}

static void slots_clear(VirtQueue *vq)
{
    memset(vq->used_elems, 0, vq->cfg.num_max * sizeof(vq->used_elems[0]));
    memset(vq->id_busy, 0, vq->cfg.num_max);
    vq->inuse = 0;
    vq->inuse_descs = 0;
    vq->fill_count = 0;
    vq->fill_descs = 0;
}

/* ---------------------------------------------------------------------- */
/* Split ring                                                              */

static inline uint16_t split_mask(const VirtQueue *vq)
{
    return vq->num - 1;
}

static inline uint16_t *split_used_event(VirtQueue *vq)
{
    return &vq->ring.split.avail->ring[vq->num];
}

static inline uint16_t *split_avail_event(VirtQueue *vq)
{
    return (uint16_t *)&vq->ring.split.used->ring[vq->num];
}

/*
 * Number of buffers the driver has made available beyond last_avail_idx,
 * or -1 after virtio_error.
 */
static int split_avail_count(VirtQueue *vq)
{
    uint16_t n = vq->shadow_avail_idx - vq->last_avail_idx;

    if (n) {
        return n;
    }
    /* Pairs with the driver's write barrier before it stores avail->idx. */
    vq->shadow_avail_idx = vring_load_acquire_le16(&vq->ring.split.avail->idx);
    n = vq->shadow_avail_idx - vq->last_avail_idx;
    if (n > vq->num) {
        /* spec 2.7.13.3: the driver never gets more than num ahead */
        vq_error(vq, "avail index moved %u past last seen %u (queue size %u)",
                 n, vq->last_avail_idx, vq->num);
        return -1;
    }
    return n;
}

static bool virtqueue_split_empty(VirtQueue *vq)
{
    if (vq->shadow_avail_idx != vq->last_avail_idx) {
        return false;
    }
    return vring_load_acquire_le16(&vq->ring.split.avail->idx) == vq->last_avail_idx;
}

/* Map the chain at @head into @elem. Returns 1, or -1 after virtio_error. */
static inline __attribute__((always_inline)) int split_map_chain(VirtQueue *vq, unsigned head, VirtQueueElement *elem,
                           struct iovec *sg, unsigned sg_max)
{
    ChainBuilder cb = { .vq = vq, .elem = elem, .sg = sg, .sg_max = sg_max };
    const VRingDesc *table = vq->ring.split.desc;
    unsigned table_size = vq->num, visited = 1, i;
    DescSnapshot d;

    elem_init(elem, sg);
    elem->index = head;

    split_desc_read(&table[head], &d);
    if (d.flags & VRING_DESC_F_INDIRECT) {
        if (d.flags & VRING_DESC_F_NEXT) {
            /* spec 2.7.5.3.1: INDIRECT and NEXT are exclusive */
            vq_error(vq, "descriptor %u has both INDIRECT and NEXT", head);
            return -1;
        }
        table = chain_map_indirect(vq, &d, &table_size);
        if (!table) {
            return -1;
        }
        split_desc_read(&table[0], &d);
    }
    for (;;) {
        if (d.flags & VRING_DESC_F_INDIRECT) {
            /* spec 2.7.5.3.1: only the head may be indirect; no tables in tables */
            vq_error(vq, "%s indirect descriptor in chain at head %u",
                     table == vq->ring.split.desc ? "non-head" : "nested", head);
            return -1;
        }
        if (!chain_add(&cb, &d, d.flags & VRING_DESC_F_WRITE)) {
            return -1;
        }
        if (!(d.flags & VRING_DESC_F_NEXT)) {
            break;
        }
        i = d.next_or_id;
        if (i >= table_size) {
            vq_error(vq, "descriptor next %u out of range (%u entries)", i, table_size);
            return -1;
        }
        /* A chain visiting more entries than the table has must repeat one: a loop. */
        if (++visited > table_size) {
            vq_error(vq, "descriptor chain at head %u loops or exceeds %u entries", head, table_size);
            return -1;
        }
        split_desc_read(&table[i], &d);
    }
    elem->in_sg = sg + elem->out_num;
    return 1;
}

static int virtqueue_split_pop(VirtQueue *vq, VirtQueueElement *elem, struct iovec *sg, unsigned sg_max)
{
    int avail = split_avail_count(vq);
    unsigned head;

    if (avail <= 0) {
        return avail;
    }
    head = vring_load_le16(&vq->ring.split.avail->ring[vq->last_avail_idx & split_mask(vq)]);
    if (head >= vq->num) {
        vq_error(vq, "avail ring head %u out of range (queue size %u)", head, vq->num);
        return -1;
    }
    if (split_map_chain(vq, head, elem, sg, sg_max) < 0 || !slot_record(vq, elem)) {
        return -1;
    }
    vq->last_avail_idx++;
    if (vq->event_idx && vq->notification) {
        /* spec 2.7.10: keep avail_event current so the driver kicks for the next buffer */
        vring_store_le16(split_avail_event(vq), vq->last_avail_idx);
    }
    return 1;
}

static inline void split_write_used(VirtQueue *vq, uint16_t at, uint16_t id, uint32_t len)
{
    VRingUsedElem *e = &vq->ring.split.used->ring[at & split_mask(vq)];
    e->id = htole32(id);
    e->len = htole32(len);
}

/* Publish @count more used entries with one release store of used->idx. */
static void split_publish(VirtQueue *vq, uint16_t count)
{
    vq->used_idx += count;
    /* Pairs with the driver's read barrier after it loads used->idx. */
    vring_store_release_le16(&vq->ring.split.used->idx, vq->used_idx);
    if (vq->published_since_signal < UINT32_MAX - count) {
        vq->published_since_signal += count;
    }
}

static void virtqueue_split_fill(VirtQueue *vq, VirtQueueUsedElem *u, unsigned idx)
{
    split_write_used(vq, vq->used_idx + idx, u->id, u->len);
    vq->stats.used_entries++;
}

static void virtqueue_split_flush(VirtQueue *vq, unsigned count)
{
    split_publish(vq, count);
}

static unsigned virtqueue_split_ordered_flush(VirtQueue *vq)
{
    uint16_t mask = split_mask(vq);
    uint16_t entry_at = vq->used_idx, pos = vq->used_idx;
    const unsigned inuse = vq->inuse;   /* slot_release below shrinks vq->inuse */
    unsigned n = 0, entries = 0;
    bool open = false;              /* the entry at entry_at may absorb the next buffer */
    uint32_t entry_len = 0;
    uint16_t entry_id = 0;
    VirtQueueUsedElem *u;

    while (n < inuse && (u = &vq->used_elems[pos & mask])->filled) {
        /*
         * spec 2.7.9 in-order batch: one entry with the last buffer's id at
         * the first buffer's offset; the skipped buffers' entries stay
         * unwritten. Each entry is written once, when it closes (STYLE.md §10).
         */
        if (!open) {
            if (entries) {
                split_write_used(vq, entry_at, entry_id, entry_len);
            }
            entry_at = pos;
            entries++;
        }
        entry_id = u->id;
        entry_len = u->len;
        open = vq->batch_active && u->len == u->in_len;
        slot_release(vq, u);
        pos++;
        n++;
    }
    if (!n) {
        return 0;
    }
    split_write_used(vq, entry_at, entry_id, entry_len);
    vq->stats.used += n;
    vq->stats.used_entries += entries;
    vq->stats.flushes++;
    split_publish(vq, n);
    return n;
}

static bool virtio_split_should_notify(VirtQueue *vq)
{
    uint32_t delta = vq->published_since_signal;

    vq->published_since_signal = 0;
    if (!vq->event_idx) {
        return !(vring_load_le16(&vq->ring.split.avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
    }
    if (delta >= 0x10000) {
        return true;            /* used_event cannot tell how far we went: be safe */
    }
    return vring_need_event(vring_load_le16(split_used_event(vq)), vq->used_idx,
                            (uint16_t)(vq->used_idx - delta));
}

static void virtio_split_set_notification(VirtQueue *vq, bool enable)
{
    if (vq->event_idx) {
        if (enable) {
            /* Kick for the first buffer beyond what the driver has published so far. */
            vring_store_le16(split_avail_event(vq), vring_load_acquire_le16(&vq->ring.split.avail->idx));
        }
        /* Disabled: leave avail_event behind; the driver stops kicking past it. */
    } else {
        VRingUsed *used = vq->ring.split.used;
        uint16_t flags = vring_load_le16(&used->flags);
        vring_store_le16(&used->flags, enable ? flags & ~VRING_USED_F_NO_NOTIFY
                                        : flags | VRING_USED_F_NO_NOTIFY);
    }
}

static void split_rewind_one(VirtQueue *vq, VirtQueueUsedElem *u)
{
    vq->last_avail_idx--;
}

/* ---------------------------------------------------------------------- */
/* Packed ring                                                             */

static inline bool packed_desc_is_avail(uint16_t flags, bool wrap)
{
    bool avail = flags & (1 << VRING_PACKED_DESC_F_AVAIL);
    bool used = flags & (1 << VRING_PACKED_DESC_F_USED);
    /* spec 2.8.1: available when AVAIL matches the wrap counter and USED does not */
    return avail == wrap && used != wrap;
}

static inline void packed_advance(const VirtQueue *vq, uint16_t *pos, bool *wrap, unsigned by)
{
    unsigned p = *pos + by;
    if (p >= vq->num) {
        p -= vq->num;
        *wrap = !*wrap;
    }
    *pos = p;
}

static bool virtqueue_packed_empty(VirtQueue *vq)
{
    uint16_t flags = vring_load_acquire_le16(&vq->ring.packed.desc[vq->last_avail_idx].flags);
    return !packed_desc_is_avail(flags, vq->last_avail_wrap);
}

/* spec 2.8.10: ask for a kick when the driver makes the next descriptor available. */
static void packed_set_avail_event(VirtQueue *vq)
{
    vring_store_le16(&vq->ring.packed.device->off_wrap, vq->last_avail_idx |
               (uint16_t)(vq->last_avail_wrap << VRING_PACKED_EVENT_F_WRAP_CTR));
}

static int virtqueue_packed_pop(VirtQueue *vq, VirtQueueElement *elem, struct iovec *sg, unsigned sg_max)
{
    ChainBuilder cb = { .vq = vq, .elem = elem, .sg = sg, .sg_max = sg_max };
    VRingPackedDesc *ring = vq->ring.packed.desc;
    uint16_t start = vq->last_avail_idx, pos = start;
    bool wrap = vq->last_avail_wrap;
    unsigned ndescs = 1;
    DescSnapshot d;
    /* Pairs with the driver's release (write barrier) before the head's flags. */
    uint16_t flags = vring_load_acquire_le16(&ring[pos].flags);

    if (!packed_desc_is_avail(flags, wrap)) {
        return 0;
    }
    elem_init(elem, sg);
    packed_desc_read(&ring[pos], &d, flags);

    if (d.flags & VRING_DESC_F_INDIRECT) {
        const VRingPackedDesc *table;
        unsigned entries;

        if (d.flags & VRING_DESC_F_NEXT) {
            /* spec 2.8.19: an indirect descriptor is never part of a ring chain */
            vq_error(vq, "packed descriptor %u has both INDIRECT and NEXT", pos);
            return -1;
        }
        table = chain_map_indirect(vq, &d, &entries);
        if (!table) {
            return -1;
        }
        elem->index = d.next_or_id;
        /* spec 2.8.19: table entries are consecutive; only WRITE is meaningful */
        for (unsigned k = 0; k < entries; k++) {
            DescSnapshot t;
            packed_table_desc_read(&table[k], &t);
            if (t.flags & VRING_DESC_F_INDIRECT) {
                vq_error(vq, "nested indirect descriptor in table at %u", pos);
                return -1;
            }
            if (!chain_add(&cb, &t, t.flags & VRING_DESC_F_WRITE)) {
                return -1;
            }
        }
    } else {
        for (;;) {
            if (!chain_add(&cb, &d, d.flags & VRING_DESC_F_WRITE)) {
                return -1;
            }
            if (!(d.flags & VRING_DESC_F_NEXT)) {
                break;
            }
            if (++ndescs > vq->num) {
                vq_error(vq, "packed chain at %u longer than queue size %u", start, vq->num);
                return -1;
            }
            packed_advance(vq, &pos, &wrap, 1);
            /* Covered by the head's acquire: the driver writes the rest of the chain first. */
            packed_desc_read(&ring[pos], &d, vring_load_le16(&ring[pos].flags));
            if (d.flags & VRING_DESC_F_INDIRECT) {
                vq_error(vq, "indirect descriptor inside a packed chain at %u", pos);
                return -1;
            }
        }
        /* spec 2.8.6: the buffer id is in the last descriptor of the chain */
        elem->index = d.next_or_id;
    }
    if (elem->index >= vq->num) {
        vq_error(vq, "packed buffer id %u out of range (queue size %u)", elem->index, vq->num);
        return -1;
    }
    if (vq->inuse_descs + ndescs > vq->num) {
        vq_error(vq, "driver made available descriptors still in flight at %u", start);
        return -1;
    }
    elem->ndescs = ndescs;
    elem->in_sg = sg + elem->out_num;
    if (!slot_record(vq, elem)) {
        return -1;
    }
    packed_advance(vq, &vq->last_avail_idx, &vq->last_avail_wrap, ndescs);
    if (vq->event_idx && vq->notification) {
        packed_set_avail_event(vq);
    }
    return 1;
}

/* Flags of a used descriptor written at a position with device wrap @wrap. */
static inline uint16_t packed_used_flags(bool wrap, uint32_t len)
{
    uint16_t flags = wrap ? (1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED) : 0;
    /* spec 2.8.9: len is only meaningful to the driver with WRITE set */
    return len ? flags | VRING_DESC_F_WRITE : flags;
}

/* Write a used descriptor's id and len; its flags are the caller's to store. */
static inline void packed_write_used(VirtQueue *vq, uint16_t pos, uint16_t id, uint32_t len)
{
    VRingPackedDesc *d = &vq->ring.packed.desc[pos];
    d->id = htole16(id);
    d->len = htole32(len);
}

static void packed_publish(VirtQueue *vq, uint16_t first_pos, uint16_t first_flags, unsigned descs)
{
    /*
     * spec 2.8.21: the first descriptor of a batch is marked used last, so the
     * driver sees the whole batch at once. Pairs with the driver's read barrier
     * after it loads the flags.
     */
    vring_store_release_le16(&vq->ring.packed.desc[first_pos].flags, first_flags);
    packed_advance(vq, &vq->used_idx, &vq->used_wrap, descs);
    if (vq->published_since_signal < UINT32_MAX - descs) {
        vq->published_since_signal += descs;
    }
}

static void virtqueue_packed_fill(VirtQueue *vq, VirtQueueUsedElem *u, unsigned idx)
{
    uint16_t flags;

    if (vq->fill_count == 0) {
        vq->fill_pos = vq->used_idx;
        vq->fill_wrap = vq->used_wrap;
    }
    if (idx != vq->fill_count) {
        vq_bug(vq, "packed fill at batch index %u, expected %u", idx, vq->fill_count);
    }
    packed_write_used(vq, vq->fill_pos, u->id, u->len);
    flags = packed_used_flags(vq->fill_wrap, u->len);
    if (vq->fill_count == 0) {
        vq->fill_first_flags = flags;
    } else {
        vring_store_le16(&vq->ring.packed.desc[vq->fill_pos].flags, flags);
    }
    packed_advance(vq, &vq->fill_pos, &vq->fill_wrap, u->ndescs);
    vq->stats.used_entries++;
}

static void virtqueue_packed_flush(VirtQueue *vq, unsigned count)
{
    if (vq->fill_count == 0) {
        return;
    }
    packed_publish(vq, vq->used_idx, vq->fill_first_flags, vq->fill_descs);
}

static unsigned virtqueue_packed_ordered_flush(VirtQueue *vq)
{
    uint16_t pos = vq->used_idx;
    bool wrap = vq->used_wrap;
    uint16_t entry_pos = pos, first_flags = 0;
    bool entry_wrap = wrap, open = false, have_entry = false;
    unsigned n = 0, entries = 0, descs = 0;
    const unsigned inuse = vq->inuse;   /* slot_release below shrinks vq->inuse */
    uint32_t entry_len = 0;
    uint16_t entry_id = 0;
    VirtQueueUsedElem *u;

    /* Close the pending entry: id/len now; flags now, or last if it is the batch's first. */
#define EMIT_ENTRY()                                                            \
    do {                                                                        \
        uint16_t fl_ = packed_used_flags(entry_wrap, entry_len);                \
        packed_write_used(vq, entry_pos, entry_id, entry_len);                  \
        if (entries++ == 0) {                                                   \
            first_flags = fl_;                                                  \
        } else {                                                                \
            vring_store_le16(&vq->ring.packed.desc[entry_pos].flags, fl_);            \
        }                                                                       \
    } while (0)

    while (n < inuse && (u = &vq->used_elems[pos])->filled) {
        if (!open) {
            if (have_entry) {
                EMIT_ENTRY();
            }
            entry_pos = pos;
            entry_wrap = wrap;
            have_entry = true;
        }
        /* spec 2.8.21: a batch entry carries the last buffer's id and length */
        entry_id = u->id;
        entry_len = u->len;
        open = vq->batch_active && u->len == u->in_len;
        descs += u->ndescs;
        n++;
        packed_advance(vq, &pos, &wrap, u->ndescs);
        slot_release(vq, u);
    }
    if (!n) {
        return 0;
    }
    EMIT_ENTRY();
#undef EMIT_ENTRY
    vq->stats.used += n;
    vq->stats.used_entries += entries;
    vq->stats.flushes++;
    packed_publish(vq, vq->used_idx, first_flags, descs);
    return n;
}

static bool virtio_packed_should_notify(VirtQueue *vq)
{
    const VRingPackedDescEvent *ev = vq->ring.packed.driver;
    uint32_t delta = vq->published_since_signal;
    uint16_t flags = vring_load_le16(&ev->flags), off_wrap, event;

    vq->published_since_signal = 0;
    if (flags == VRING_PACKED_EVENT_FLAG_DISABLE) {
        return false;
    }
    if (flags != VRING_PACKED_EVENT_FLAG_DESC || !vq->event_idx) {
        return true;            /* ENABLE, or a value we must not interpret */
    }
    if (delta >= vq->num) {
        return true;            /* went past every position since the last notification */
    }
    off_wrap = vring_load_le16(&ev->off_wrap);
    event = off_wrap & ~(1u << VRING_PACKED_EVENT_F_WRAP_CTR);
    /* spec 2.8.10: an event offset from the previous lap sits num positions back */
    if (!!(off_wrap >> VRING_PACKED_EVENT_F_WRAP_CTR) != vq->used_wrap) {
        event -= vq->num;
    }
    return vring_need_event(event, vq->used_idx, (uint16_t)(vq->used_idx - delta));
}

static void virtio_packed_set_notification(VirtQueue *vq, bool enable)
{
    VRingPackedDescEvent *ev = vq->ring.packed.device;

    if (!enable) {
        vring_store_le16(&ev->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
    } else if (vq->event_idx) {
        packed_set_avail_event(vq);
        vring_store_le16(&ev->flags, VRING_PACKED_EVENT_FLAG_DESC);
    } else {
        vring_store_le16(&ev->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
    }
}

static void packed_rewind_one(VirtQueue *vq, VirtQueueUsedElem *u)
{
    unsigned back = u->ndescs;

    if (vq->last_avail_idx >= back) {
        vq->last_avail_idx -= back;
    } else {
        vq->last_avail_idx = vq->last_avail_idx + vq->num - back;
        vq->last_avail_wrap = !vq->last_avail_wrap;
    }
}

/* ---------------------------------------------------------------------- */
/* Public element API: one dispatch point per operation                    */

static bool vq_usable(VirtQueue *vq)
{
    return vq->running && !vq->vdev->broken;
}

int virtqueue_pop_elem(VirtQueue *vq, VirtQueueElement *elem, struct iovec *sg, unsigned sg_max)
{
    if (!vq_usable(vq)) {
        return 0;
    }
    return vq->packed ? virtqueue_packed_pop(vq, elem, sg, sg_max)
                      : virtqueue_split_pop(vq, elem, sg, sg_max);
}

int virtqueue_pop_inflight_elem(VirtQueue *vq, unsigned head, VirtQueueElement *elem,
                                struct iovec *sg, unsigned sg_max)
{
    if (!vq_usable(vq) || vq->packed) {
        return 0;
    }
    if (head >= vq->num) {
        vq_error(vq, "in-flight head %u out of range (queue size %u)", head, vq->num);
        return -1;
    }
    /* Resubmitted buffers fill the gap between the used and the restored avail index. */
    if (vq->inuse >= (uint16_t)(vq->last_avail_idx - vq->used_idx)) {
        vq_error(vq, "more in-flight buffers resubmitted than the %u between used and avail index",
                 (uint16_t)(vq->last_avail_idx - vq->used_idx));
        return -1;
    }
    if (split_map_chain(vq, head, elem, sg, sg_max) < 0 || !slot_record(vq, elem)) {
        return -1;
    }
    vq->used_elems[elem->slot].resubmitted = true;
    return 1;
}

/* Copy a scratch-popped element into a new allocation of @sz bytes plus its iovecs. */
static void *elem_dup(const VirtQueueElement *tmp, const struct iovec *sg, size_t sz)
{
    size_t sg_off = (sz + _Alignof(struct iovec) - 1) & ~(_Alignof(struct iovec) - 1);
    unsigned nsg = tmp->out_num + tmp->in_num;
    VirtQueueElement *elem;

    assert(sz >= sizeof(VirtQueueElement));     /* caller's type starts with the element */
    elem = calloc(1, sg_off + nsg * sizeof(struct iovec));
    if (!elem) {
        return NULL;
    }
    *elem = *tmp;
    elem->out_sg = (struct iovec *)((char *)elem + sg_off);
    elem->in_sg = elem->out_sg + tmp->out_num;
    memcpy(elem->out_sg, sg, nsg * sizeof(struct iovec));
    return elem;
}

void *virtqueue_pop(VirtQueue *vq, size_t sz)
{
    VirtQueueElement tmp, *elem;

    if (virtqueue_pop_elem(vq, &tmp, vq->scratch_sg, VIRTQUEUE_MAX_SG) != 1) {
        return NULL;
    }
    elem = elem_dup(&tmp, vq->scratch_sg, sz);
    if (!elem) {
        /* Host out of memory: hand the buffer back untouched. */
        virtqueue_unpop(vq, &tmp, 0);
    }
    return elem;
}

void *virtqueue_pop_inflight(VirtQueue *vq, unsigned head, size_t sz)
{
    VirtQueueElement tmp, *elem;

    if (virtqueue_pop_inflight_elem(vq, head, &tmp, vq->scratch_sg, VIRTQUEUE_MAX_SG) != 1) {
        return NULL;
    }
    elem = elem_dup(&tmp, vq->scratch_sg, sz);
    if (!elem) {
        VirtQueueUsedElem *u = &vq->used_elems[tmp.slot];

        /* Host out of memory: forget the resubmission; the caller may retry. */
        vq->last_popped_slot = u->prev;
        vq->pop_seq--;
        vq->stats.popped--;
        slot_release(vq, u);
    }
    return elem;
}

void virtqueue_element_free(void *elem)
{
    free(elem);
}

static inline void ordered_fill_slot(VirtQueue *vq, VirtQueueUsedElem *u, unsigned len)
{
    if (u->filled) {
        vq_bug(vq, "buffer %u filled twice", u->id);
        return;
    }
    if (len > u->in_len) {
        vq_bug(vq, "buffer %u: used length %u exceeds its %u writable bytes", u->id, len, u->in_len);
        len = u->in_len;
    }
    u->len = len;
    u->filled = true;
}

void virtqueue_ordered_fill(VirtQueue *vq, VirtQueueElement *elem, unsigned int len)
{
    VirtQueueUsedElem *u;

    if (!vq_usable(vq)) {
        return;
    }
    if (!vq->in_order) {
        /* Without IN_ORDER the ordered API degrades to plain fill (DESIGN.md). */
        virtqueue_fill(vq, elem, len, vq->fill_count);
        elem->filled = true;
        return;
    }
    u = slot_of(vq, elem);
    if (!u) {
        vq_bug(vq, "fill of buffer %u that is not in flight", elem->index);
        return;
    }
    ordered_fill_slot(vq, u, len);
    elem->filled = u->filled;
}

unsigned virtqueue_ordered_flush(VirtQueue *vq)
{
    unsigned count;

    if (!vq_usable(vq)) {
        return 0;
    }
    if (!vq->in_order) {
        count = vq->fill_count;
        virtqueue_flush(vq, count);
        return count;
    }
    return vq->packed ? virtqueue_packed_ordered_flush(vq) : virtqueue_split_ordered_flush(vq);
}

void virtqueue_fill(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len, unsigned int idx)
{
    VirtQueueUsedElem *u;

    if (!vq_usable(vq)) {
        return;
    }
    u = slot_of(vq, elem);
    if (!u || u->filled) {
        vq_bug(vq, "fill of buffer %u that is not in flight", elem->index);
        return;
    }
    if (vq->in_order) {
        ordered_fill_slot(vq, u, len);
        return;
    }
    if (len > u->in_len) {
        vq_bug(vq, "buffer %u: used length %u exceeds its %u writable bytes", u->id, len, u->in_len);
        len = u->in_len;
    }
    u->len = len;
    if (vq->packed) {
        virtqueue_packed_fill(vq, u, idx);
    } else {
        virtqueue_split_fill(vq, u, idx);
    }
    /*
     * The buffer stays in flight (its id busy) until the flush publishes it:
     * the driver may not reuse it before, so seeing it again is a fault.
     */
    u->filled = true;
    vq->fill_slots[vq->fill_count++] = (uint16_t)(u - vq->used_elems);
    vq->fill_descs += u->ndescs;
}

void virtqueue_flush(VirtQueue *vq, unsigned int count)
{
    if (!vq_usable(vq)) {
        return;
    }
    if (vq->in_order) {
        virtqueue_ordered_flush(vq);
        return;
    }
    if (count != vq->fill_count) {
        vq_bug(vq, "flush of %u buffers after %u fills", count, vq->fill_count);
        count = vq->fill_count;
    }
    if (!count) {
        return;
    }
    if (vq->packed) {
        virtqueue_packed_flush(vq, count);
    } else {
        virtqueue_split_flush(vq, count);
    }
    for (unsigned k = 0; k < count; k++) {
        slot_release(vq, &vq->used_elems[vq->fill_slots[k]]);
    }
    vq->fill_count = 0;
    vq->fill_descs = 0;
    vq->stats.used += count;
    vq->stats.flushes++;
}

void virtqueue_push(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len)
{
    virtqueue_fill(vq, elem, len, 0);
    virtqueue_flush(vq, 1);
}

void virtio_queue_set_batch(VirtQueue *vq, bool enable)
{
    vq->batch = enable;
    vq->batch_active = enable && vq->in_order_negotiated && !vq->ordered_use;
}

void virtio_queue_set_ordered_use(VirtQueue *vq, bool enable)
{
    vq->ordered_use = enable;
}

void virtqueue_detach_element(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len)
{
    VirtQueueUsedElem *u;

    if (!vq_usable(vq)) {
        return;
    }
    u = slot_of(vq, elem);
    if (!u || u->filled) {
        vq_bug(vq, "detach of buffer %u that is not in flight", elem->index);
        return;
    }
    if (vq->in_order) {
        /* A hole would stall every later completion: use it, empty. */
        ordered_fill_slot(vq, u, 0);
        return;
    }
    slot_release(vq, u);
}

/* The element popped last, if it is still in flight and unfilled. */
static VirtQueueUsedElem *last_popped(VirtQueue *vq, uint32_t seq)
{
    VirtQueueUsedElem *u;

    if (vq->last_popped_slot >= vq->num) {
        return NULL;
    }
    u = &vq->used_elems[vq->last_popped_slot];
    /* A resubmitted element took no avail entry, so there is nothing to give back. */
    return u->inflight && !u->filled && !u->resubmitted && u->seq == seq ? u : NULL;
}

static void rewind_one(VirtQueue *vq, VirtQueueUsedElem *u)
{
    if (vq->packed) {
        packed_rewind_one(vq, u);
    } else {
        split_rewind_one(vq, u);
    }
    vq->last_popped_slot = u->prev;
    vq->pop_seq--;
    slot_release(vq, u);
}

void virtqueue_unpop(VirtQueue *vq, const VirtQueueElement *elem, unsigned int len)
{
    VirtQueueUsedElem *u;

    if (!vq_usable(vq)) {
        return;
    }
    u = last_popped(vq, vq->pop_seq - 1);
    if (!u || u != slot_of(vq, elem)) {
        vq_bug(vq, "unpop of buffer %u, which is not the last popped", elem->index);
        return;
    }
    rewind_one(vq, u);
}

bool virtqueue_rewind(VirtQueue *vq, unsigned int num)
{
    uint16_t saved_last = vq->last_popped_slot;
    unsigned k;

    if (!vq_usable(vq)) {
        return num == 0;
    }
    /* Check the whole run first: a partial rewind would lose track of buffers. */
    for (k = 0; k < num; k++) {
        VirtQueueUsedElem *u = last_popped(vq, vq->pop_seq - 1 - k);
        if (!u) {
            vq->last_popped_slot = saved_last;
            return false;
        }
        vq->last_popped_slot = u->prev;
    }
    vq->last_popped_slot = saved_last;
    for (k = 0; k < num; k++) {
        rewind_one(vq, last_popped(vq, vq->pop_seq - 1));
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* Notifications                                                           */

void virtio_queue_set_notification(VirtQueue *vq, int enable)
{
    vq->notification = enable;
    if (!vq_usable(vq)) {
        return;
    }
    if (vq->packed) {
        virtio_packed_set_notification(vq, enable);
    } else {
        virtio_split_set_notification(vq, enable);
    }
    if (enable) {
        /* Order the event write before the caller re-checks the ring (pairs with the driver's mb). */
        vring_mb();
    }
}

bool virtio_queue_empty(VirtQueue *vq)
{
    if (!vq_usable(vq)) {
        return true;
    }
    return vq->packed ? virtqueue_packed_empty(vq) : virtqueue_split_empty(vq);
}

bool virtio_should_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    if (!vq_usable(vq)) {
        return false;
    }
    /* Order the used publication before reading the driver's suppression state. */
    vring_mb();
    if (vq->notify_on_empty && !vq->event_idx && !vq->inuse && virtio_queue_empty(vq)) {
        vq->published_since_signal = 0;
        return true;            /* spec 6: VIRTIO_F_NOTIFY_ON_EMPTY overrides the hint */
    }
    return vq->packed ? virtio_packed_should_notify(vq) : virtio_split_should_notify(vq);
}

void virtio_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    if (!virtio_should_notify(vdev, vq)) {
        return;
    }
    vq->stats.notifies++;
    vdev->isr |= 1;
    if (vdev->transport && vdev->transport->notify_queue) {
        vdev->transport->notify_queue(vdev, vq);
    }
}

void virtio_notify_config(VirtIODevice *vdev)
{
    if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK) && !vdev->broken) {
        return;
    }
    vdev->isr |= 3;
    vdev->generation++;
    if (vdev->transport && vdev->transport->notify_config) {
        vdev->transport->notify_config(vdev);
    }
}

/* ---------------------------------------------------------------------- */
/* Queue configuration and activation                                      */

static VirtQueue *queue_at(VirtIODevice *vdev, unsigned n)
{
    return n < vdev->num_queues ? &vdev->vq[n] : NULL;
}

VirtQueue *virtio_get_queue(VirtIODevice *vdev, unsigned n)
{
    return queue_at(vdev, n);
}

unsigned virtio_get_queue_index(const VirtQueue *vq)
{
    return vq->index;
}

VirtIODevice *virtio_queue_get_device(const VirtQueue *vq)
{
    return vq->vdev;
}

void virtio_queue_set_handler(VirtIODevice *vdev, unsigned n, VirtIOHandleOutput handler)
{
    VirtQueue *vq = queue_at(vdev, n);
    assert(vq);                 /* device models name their own queues */
    vq->handler = handler;
}

static inline bool is_power_of_2(unsigned x)
{
    return x && !(x & (x - 1));
}

static bool vdev_packed(const VirtIODevice *vdev)
{
    return virtio_vdev_has_feature(vdev, VIRTIO_F_RING_PACKED);
}

int virtio_queue_set_num(VirtIODevice *vdev, unsigned n, unsigned num)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq || vq->running) {
        return vq ? -EBUSY : -EINVAL;
    }
    if (num == 0 || num > vq->cfg.num_max) {
        return -EINVAL;
    }
    vq->cfg.num = num;
    return 0;
}

unsigned virtio_queue_get_num(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    return vq ? vq->cfg.num : 0;
}

unsigned virtio_queue_get_max_num(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    return vq ? vq->cfg.num_max : 0;
}

int virtio_queue_set_rings(VirtIODevice *vdev, unsigned n, hwaddr desc, hwaddr driver, hwaddr device)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq || vq->running) {
        return vq ? -EBUSY : -EINVAL;
    }
    vq->cfg.desc = desc;
    vq->cfg.driver = driver;
    vq->cfg.device = device;
    return 0;
}

void virtio_queue_get_rings(VirtIODevice *vdev, unsigned n, hwaddr *desc, hwaddr *driver, hwaddr *device)
{
    VirtQueue *vq = queue_at(vdev, n);

    *desc = vq ? vq->cfg.desc : 0;
    *driver = vq ? vq->cfg.driver : 0;
    *device = vq ? vq->cfg.device : 0;
}

int virtio_queue_set_vector(VirtIODevice *vdev, unsigned n, uint16_t vector)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq) {
        return -EINVAL;
    }
    vq->cfg.vector = vector;    /* the transport checks it against its table */
    return 0;
}

uint16_t virtio_queue_get_vector(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    return vq ? vq->cfg.vector : VIRTIO_NO_VECTOR;
}

int virtio_queue_set_enabled(VirtIODevice *vdev, unsigned n, bool enabled)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq || vq->running) {
        return vq ? -EBUSY : -EINVAL;
    }
    vq->cfg.enabled = enabled;
    return 0;
}

bool virtio_queue_get_enabled(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    return vq && vq->cfg.enabled;
}

bool virtio_queue_is_running(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    return vq && vq->running;
}

/* Map one ring area; NULL after virtio_error. */
static void *map_ring_area(VirtQueue *vq, const char *what, hwaddr gpa, uint64_t size,
                           unsigned align, bool is_write)
{
    void *p;

    if (gpa % align) {
        vq_error(vq, "%s area 0x%" PRIx64 " not %u-byte aligned", what, gpa, align);
        return NULL;
    }
    p = guest_memory_map_contig(vq->vdev->mem, gpa, size, is_write);
    if (!p) {
        vq_error(vq, "%s area 0x%" PRIx64 "+0x%" PRIx64 " not in %sguest memory",
                 what, gpa, size, is_write ? "writable " : "");
    }
    return p;
}

/* Translate cfg into ring pointers. Returns false after virtio_error. */
static bool queue_map_rings(VirtQueue *vq)
{
    unsigned num = vq->num;

    if (vq->packed) {
        vq->ring.packed.desc = map_ring_area(vq, "descriptor ring", vq->cfg.desc,
                                             vring_packed_desc_size(num), VRING_DESC_ALIGN, true);
        vq->ring.packed.driver = map_ring_area(vq, "driver event", vq->cfg.driver,
                                               sizeof(VRingPackedDescEvent),
                                               VRING_EVENT_ALIGN_PACKED, false);
        vq->ring.packed.device = map_ring_area(vq, "device event", vq->cfg.device,
                                               sizeof(VRingPackedDescEvent),
                                               VRING_EVENT_ALIGN_PACKED, true);
        return vq->ring.packed.desc && vq->ring.packed.driver && vq->ring.packed.device;
    }
    vq->ring.split.desc = map_ring_area(vq, "descriptor table", vq->cfg.desc,
                                        vring_split_desc_size(num), VRING_DESC_ALIGN, false);
    vq->ring.split.avail = map_ring_area(vq, "avail ring", vq->cfg.driver,
                                         vring_split_avail_size(num), VRING_AVAIL_ALIGN_SPLIT, false);
    vq->ring.split.used = map_ring_area(vq, "used ring", vq->cfg.device,
                                        vring_split_used_size(num), VRING_USED_ALIGN_SPLIT, true);
    return vq->ring.split.desc && vq->ring.split.avail && vq->ring.split.used;
}

int virtio_queue_activate(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    unsigned num;

    if (!vq) {
        return -EINVAL;
    }
    if (vq->running) {
        return 0;
    }
    if (vdev->broken) {
        return -EIO;
    }
    num = vq->cfg.num;
    vq->packed = vdev_packed(vdev);
    /* spec 2.7: split sizes are powers of two; both layouts stop at 32768 */
    if (num == 0 || num > vq->cfg.num_max || (!vq->packed && !is_power_of_2(num))) {
        vq_error(vq, "invalid %s queue size %u (max %u)", vq->packed ? "packed" : "split",
                 num, vq->cfg.num_max);
        return -EINVAL;
    }
    vq->num = num;
    vq->in_order_negotiated = virtio_vdev_has_feature(vdev, VIRTIO_F_IN_ORDER);
    /* spec 2.7.9 / 2.8.21: a device may always use buffers in order; batching needs the feature. */
    vq->in_order = vq->in_order_negotiated || vq->ordered_use;
    /* A host that asked for ordered use walks used entries one buffer at a time after a restart. */
    vq->batch_active = vq->batch && vq->in_order_negotiated && !vq->ordered_use;
    vq->event_idx = virtio_vdev_has_feature(vdev, VIRTIO_RING_F_EVENT_IDX);
    vq->indirect = virtio_vdev_has_feature(vdev, VIRTIO_RING_F_INDIRECT_DESC);
    vq->notify_on_empty = virtio_vdev_has_feature(vdev, VIRTIO_F_NOTIFY_ON_EMPTY);
    if (!queue_map_rings(vq)) {
        return -EINVAL;
    }
    if (vq->packed && (vq->last_avail_idx >= num || vq->used_idx >= num)) {
        vq_error(vq, "restored packed index beyond queue size %u", num);
        return -EINVAL;
    }
    vq->last_popped_slot = UINT16_MAX;
    vq->shadow_avail_idx = vq->last_avail_idx;
    vq->published_since_signal = 0;
    vq->running = true;
    return 0;
}

void virtio_queue_deactivate(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    if (vq) {
        vq->running = false;
    }
}

int virtio_device_memory_changed(VirtIODevice *vdev)
{
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        VirtQueue *vq = &vdev->vq[n];
        if (vq->running && !queue_map_rings(vq)) {
            vq->running = false;
            return -EFAULT;
        }
    }
    return 0;
}

static void queue_reset_state(VirtQueue *vq)
{
    vq->running = false;
    /* vq->batch and ordered_use are the host's choice, not ring state: they survive resets. */
    vq->notification = true;
    vq->last_avail_idx = 0;
    vq->shadow_avail_idx = 0;
    vq->used_idx = 0;
    /* spec 2.8.1: both wrap counters start at 1 */
    vq->last_avail_wrap = true;
    vq->used_wrap = true;
    vq->published_since_signal = 0;
    vq->pop_seq = 0;
    vq->last_popped_slot = UINT16_MAX;
    slots_clear(vq);
    memset(&vq->ring, 0, sizeof(vq->ring));
}

void virtio_queue_reset(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq) {
        return;
    }
    queue_reset_state(vq);
    vq->cfg.num = vq->cfg.num_max;
    vq->cfg.desc = vq->cfg.driver = vq->cfg.device = 0;
    vq->cfg.vector = VIRTIO_NO_VECTOR;
    vq->cfg.enabled = false;
    memset(&vq->stats, 0, sizeof(vq->stats));
}

void virtio_queue_notify(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);

    /* A notify for a queue that does not exist or is not running is ignored (spec 4.1.4.4). */
    if (!vq || !vq_usable(vq) || !vq->handler) {
        return;
    }
    vq->handler(vdev, vq);
}

/* ---------------------------------------------------------------------- */
/* Queue state for save/restore and vhost-user                            */

static unsigned encode_packed_idx(uint16_t pos, bool wrap)
{
    return pos | (unsigned)wrap << 15;
}

unsigned virtio_queue_get_last_avail_idx(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq) {
        return 0;
    }
    return vdev_packed(vdev) ? encode_packed_idx(vq->last_avail_idx, vq->last_avail_wrap)
                             : vq->last_avail_idx;
}

int virtio_queue_set_last_avail_idx(VirtIODevice *vdev, unsigned n, unsigned idx)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq || vq->running) {
        return vq ? -EBUSY : -EINVAL;
    }
    if (vdev_packed(vdev)) {
        /* The position is checked against the size when the queue starts. */
        vq->last_avail_idx = idx & 0x7fff;
        vq->last_avail_wrap = idx & 0x8000;
    } else {
        vq->last_avail_idx = idx;
    }
    vq->shadow_avail_idx = vq->last_avail_idx;
    slots_clear(vq);
    return 0;
}

unsigned virtio_queue_get_used_idx(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq) {
        return 0;
    }
    return vdev_packed(vdev) ? encode_packed_idx(vq->used_idx, vq->used_wrap) : vq->used_idx;
}

int virtio_queue_set_used_idx(VirtIODevice *vdev, unsigned n, unsigned idx)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq || vq->running) {
        return vq ? -EBUSY : -EINVAL;
    }
    if (vdev_packed(vdev)) {
        vq->used_idx = idx & 0x7fff;
        vq->used_wrap = idx & 0x8000;
    } else {
        vq->used_idx = idx;
    }
    return 0;
}

int virtio_queue_update_used_idx(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);
    uint16_t idx;

    /* Packed rings keep no used index in memory: only the device knows its position. */
    if (!vq || vdev_packed(vdev)) {
        return -EINVAL;
    }
    if (vq->running) {
        return -EBUSY;
    }
    if (guest_memory_read(vdev->mem, vq->cfg.device + offsetof(VRingUsed, idx), &idx, sizeof(idx)) < 0) {
        return -EFAULT;
    }
    vq->used_idx = le16toh(idx);
    return vq->used_idx;
}

int virtio_queue_packed_skip_used(VirtIODevice *vdev, unsigned n, unsigned pos_wrap,
                                  unsigned (*ndescs)(void *opaque, uint16_t id), void *opaque)
{
    VirtQueue *vq = queue_at(vdev, n);
    unsigned pos = pos_wrap & 0x7fff, num;
    bool wrap = pos_wrap & 0x8000;

    if (!vq || !vdev_packed(vdev)) {
        return -EINVAL;
    }
    if (vq->running) {
        return -EBUSY;
    }
    num = vq->cfg.num;
    if (num == 0 || pos >= num) {
        return -EINVAL;
    }
    /* At most one lap: every step moves at least one descriptor. */
    for (unsigned seen = 0; seen < num;) {
        VRingPackedDesc d;
        uint16_t flags;
        unsigned count;
        bool avail, used;

        if (guest_memory_read(vdev->mem, vq->cfg.desc + (hwaddr)pos * sizeof(d), &d, sizeof(d)) < 0) {
            return -EFAULT;
        }
        /* spec 2.8.1: a used descriptor has AVAIL == USED == the device's wrap counter. */
        flags = le16toh(d.flags);
        avail = flags & (1 << VRING_PACKED_DESC_F_AVAIL);
        used = flags & (1 << VRING_PACKED_DESC_F_USED);
        if (avail != wrap || used != wrap) {
            break;
        }
        count = ndescs(opaque, le16toh(d.id));
        if (count == 0 || count > num - seen) {
            break;          /* no record of that buffer: not one of ours */
        }
        seen += count;
        pos += count;
        if (pos >= num) {
            pos -= num;
            wrap = !wrap;
        }
    }
    return (int)encode_packed_idx((uint16_t)pos, wrap);
}

void virtio_queue_restore_last_avail_idx(VirtIODevice *vdev, unsigned n)
{
    VirtQueue *vq = queue_at(vdev, n);

    if (!vq) {
        return;
    }
    /* Under IN_ORDER used_idx is a contiguous completion boundary: everything after it is redone. */
    vq->last_avail_idx = vq->used_idx;
    vq->last_avail_wrap = vq->used_wrap;
    vq->shadow_avail_idx = vq->last_avail_idx;
    vq->last_popped_slot = UINT16_MAX;
    slots_clear(vq);
}

unsigned virtio_queue_inuse(const VirtQueue *vq)
{
    return vq->inuse;
}

void virtio_queue_get_stats(const VirtQueue *vq, VirtQueueStats *stats)
{
    *stats = vq->stats;
}

/* ---------------------------------------------------------------------- */
/* Device                                                                  */

int virtio_init(VirtIODevice *vdev, const char *name, uint16_t device_id,
                size_t config_len, GuestMemory *mem,
                unsigned num_queues, unsigned queue_max)
{
    if (queue_max == 0 || queue_max > VIRTQUEUE_MAX_SIZE || num_queues == 0) {
        return -EINVAL;
    }
    memset(vdev, 0, sizeof(*vdev));
    vdev->name = name;
    vdev->device_id = device_id;
    vdev->mem = mem;
    vdev->num_queues = num_queues;
    vdev->host_features = virtio_ring_features();
    vdev->config_len = config_len;
    vdev->config = config_len ? calloc(1, config_len) : NULL;
    vdev->vq = calloc(num_queues, sizeof(VirtQueue));
    if ((config_len && !vdev->config) || !vdev->vq) {
        goto fail;
    }
    for (unsigned n = 0; n < num_queues; n++) {
        VirtQueue *vq = &vdev->vq[n];
        vq->vdev = vdev;
        vq->index = n;
        vq->cfg.num_max = queue_max;
        vq->used_elems = calloc(queue_max, sizeof(vq->used_elems[0]));
        vq->id_busy = calloc(queue_max, 1);
        vq->scratch_sg = calloc(VIRTQUEUE_MAX_SG, sizeof(struct iovec));
        vq->fill_slots = calloc(queue_max, sizeof(vq->fill_slots[0]));
        if (!vq->used_elems || !vq->id_busy || !vq->scratch_sg || !vq->fill_slots) {
            goto fail;
        }
        virtio_queue_reset(vdev, n);
    }
    return 0;

fail:
    virtio_cleanup(vdev);
    return -ENOMEM;
}

void virtio_cleanup(VirtIODevice *vdev)
{
    for (unsigned n = 0; vdev->vq && n < vdev->num_queues; n++) {
        free(vdev->vq[n].used_elems);
        free(vdev->vq[n].id_busy);
        free(vdev->vq[n].scratch_sg);
        free(vdev->vq[n].fill_slots);
    }
    free(vdev->vq);
    free(vdev->config);
    vdev->vq = NULL;
    vdev->config = NULL;
    vdev->num_queues = 0;
}

void virtio_reset(VirtIODevice *vdev)
{
    if (vdev->ops && vdev->ops->reset) {
        vdev->ops->reset(vdev);
    }
    vdev->status = 0;
    vdev->isr = 0;
    vdev->guest_features = 0;
    vdev->broken = false;
    vdev->error_count = 0;
    vdev->error_msg[0] = '\0';
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        virtio_queue_reset(vdev, n);
    }
}

int virtio_set_features(VirtIODevice *vdev, uint64_t val)
{
    if (vdev->status & VIRTIO_CONFIG_S_FEATURES_OK) {
        return -EBUSY;          /* spec 3.1.1: features are frozen once accepted */
    }
    if (val & ~vdev->host_features) {
        return -EINVAL;
    }
    vdev->guest_features = val;
    if (vdev->ops && vdev->ops->set_features) {
        vdev->ops->set_features(vdev, val);
    }
    return 0;
}

int virtio_set_status(VirtIODevice *vdev, uint8_t val)
{
    uint8_t old = vdev->status;

    if (val == 0) {
        virtio_reset(vdev);
        return 0;
    }
    if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(old & VIRTIO_CONFIG_S_FEATURES_OK) &&
        !virtio_vdev_has_feature(vdev, VIRTIO_F_VERSION_1)) {
        /* Only the modern interface is implemented: refuse a legacy negotiation. */
        val &= ~VIRTIO_CONFIG_S_FEATURES_OK;
        vdev->status = val | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
        return -EINVAL;
    }
    vdev->status = val | (old & VIRTIO_CONFIG_S_NEEDS_RESET);
    if ((val & VIRTIO_CONFIG_S_DRIVER_OK) && !(old & VIRTIO_CONFIG_S_DRIVER_OK)) {
        for (unsigned n = 0; n < vdev->num_queues; n++) {
            if (vdev->vq[n].cfg.enabled && virtio_queue_activate(vdev, n) < 0) {
                break;          /* virtio_error already broke the device */
            }
        }
    }
    if (vdev->ops && vdev->ops->set_status) {
        vdev->ops->set_status(vdev, vdev->status);
    }
    return 0;
}
