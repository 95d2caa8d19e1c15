/*
 * vdriver: the driver side of split and packed virtqueues (see vdriver.h).
 *
 * Barriers: the driver publishes with release stores (split avail->idx,
 * packed head descriptor flags) and reads the device's publication with
 * acquire loads (used->idx, packed used flags). The full fences before reading
 * the device's suppression fields pair with the device's fence between
 * writing its own (avail_event / used flags / event structure) and re-reading
 * the ring (virtio spec 2.7.7.2, 2.8.10; hw/virtio/virtio.c smp_mb).
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/virtio/virtio-ring.h"
#include "hw/virtio/virtio-access.h"
#include "vdriver.h"

const VDriverLayout vdriver_layouts[VDRIVER_NUM_LAYOUTS] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

/* Driver state of one buffer, by split head index / packed buffer id. */
typedef struct VDriverBuf {
    void *token;
    uint32_t in_len;            /* writable bytes: the most the device may report */
    uint16_t ndescs;            /* ring slots the buffer occupies */
    uint16_t last;              /* split: last descriptor of the chain (free-list splice) */
    bool busy;
} VDriverBuf;

struct VDriverQueue {
    VDriverQueueConfig cfg;
    bool ignore_readonly_len;   /* vdriver_ignore_readonly_len */
    unsigned num;
    unsigned num_free;          /* descriptor slots free */
    unsigned inflight;
    VDriverBuf *bufs;
    uint8_t *indirect;          /* host view of the indirect tables, or NULL */

    /* In-order bookkeeping: ids in flight in the order they were made available. */
    uint16_t *fifo;
    unsigned fifo_head, fifo_count;
    unsigned batch_left;        /* buffers of the current used batch still to hand out */
    uint32_t batch_len;         /* len of the batch's last buffer (the one with the entry) */

    /* split */
    VRingDesc *desc;
    VRingAvail *avail;
    VRingUsed *used;
    uint16_t *split_next;       /* driver's copy of each descriptor's next (free list) */
    uint16_t free_head;
    uint16_t avail_idx;         /* next avail slot; published at kick */
    uint16_t kicked_avail_idx;
    uint16_t last_used_idx;

    /* packed */
    VRingPackedDesc *pdesc;
    VRingPackedDescEvent *driver_evt;
    VRingPackedDescEvent *device_evt;
    uint16_t next_avail;
    bool avail_wrap;
    uint16_t last_used;
    bool used_wrap;
    uint16_t *free_ids;
    unsigned nfree_ids;
    unsigned added_since_kick;  /* descriptors */

    bool failed;
    char error[200];
    VDriverStats stats;
};

static void violation(VDriverQueue *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(VDriverQueue *q, const char *fmt, ...)
{
    va_list ap;

    if (q->failed) {
        return;
    }
    q->failed = true;
    va_start(ap, fmt);
    vsnprintf(q->error, sizeof(q->error), fmt, ap);
    va_end(ap);
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

hwaddr vdriver_layout_rings(VDriverQueueConfig *cfg, hwaddr base)
{
    /* 64-byte alignment keeps driver- and device-written areas on different cache lines. */
    cfg->desc = align_up(base, 64);
    cfg->driver = align_up(cfg->desc + 16ull * cfg->num, 64);
    cfg->device = align_up(cfg->driver + (cfg->packed ? 4 : vring_split_avail_size(cfg->num)), 64);
    return align_up(cfg->device + (cfg->packed ? 4 : vring_split_used_size(cfg->num)), 64);
}

static void *map_area(GuestMemory *mem, hwaddr gpa, uint64_t len)
{
    return guest_memory_map_contig(mem, gpa, len, true);
}

VDriverQueue *vdriver_queue_new(GuestMemory *mem, const VDriverQueueConfig *cfg)
{
    unsigned num = cfg->num;
    VDriverQueue *q;

    if (num == 0 || num > VIRTQUEUE_MAX_SIZE || (!cfg->packed && (num & (num - 1)))) {
        errno = EINVAL;
        return NULL;
    }
    q = calloc(1, sizeof(*q));
    if (!q) {
        return NULL;
    }
    q->cfg = *cfg;
    q->num = num;
    q->num_free = num;
    q->bufs = calloc(num, sizeof(*q->bufs));
    q->fifo = calloc(num, sizeof(*q->fifo));
    if (!q->bufs || !q->fifo) {
        goto fail;
    }
    if (cfg->indirect) {
        q->indirect = map_area(mem, cfg->indirect, 16ull * cfg->indirect_max * num);
        if (!q->indirect || cfg->indirect_max == 0) {
            goto fail_fault;
        }
    }

    if (cfg->packed) {
        q->pdesc = map_area(mem, cfg->desc, vring_packed_desc_size(num));
        q->driver_evt = map_area(mem, cfg->driver, sizeof(VRingPackedDescEvent));
        q->device_evt = map_area(mem, cfg->device, sizeof(VRingPackedDescEvent));
        q->free_ids = calloc(num, sizeof(*q->free_ids));
        if (!q->pdesc || !q->driver_evt || !q->device_evt) {
            goto fail_fault;
        }
        if (!q->free_ids) {
            goto fail;
        }
        memset(q->pdesc, 0, vring_packed_desc_size(num));
        memset(q->driver_evt, 0, sizeof(*q->driver_evt));
        memset(q->device_evt, 0, sizeof(*q->device_evt));
        /* Lowest ids handed out first: easier to read in test failures. */
        for (unsigned i = 0; i < num; i++) {
            q->free_ids[i] = num - 1 - i;
        }
        q->nfree_ids = num;
        /* spec 2.8.1: both wrap counters start at 1 */
        q->avail_wrap = true;
        q->used_wrap = true;
    } else {
        q->desc = map_area(mem, cfg->desc, vring_split_desc_size(num));
        q->avail = map_area(mem, cfg->driver, vring_split_avail_size(num));
        q->used = map_area(mem, cfg->device, vring_split_used_size(num));
        q->split_next = calloc(num, sizeof(*q->split_next));
        if (!q->desc || !q->avail || !q->used) {
            goto fail_fault;
        }
        if (!q->split_next) {
            goto fail;
        }
        memset(q->desc, 0, vring_split_desc_size(num));
        memset(q->avail, 0, vring_split_avail_size(num));
        memset(q->used, 0, vring_split_used_size(num));
        for (unsigned i = 0; i < num; i++) {
            q->split_next[i] = (uint16_t)(i + 1);
        }
    }
    return q;

fail_fault:
    vdriver_queue_free(q);
    errno = EFAULT;
    return NULL;
fail:
    vdriver_queue_free(q);
    errno = ENOMEM;
    return NULL;
}

void vdriver_queue_free(VDriverQueue *q)
{
    if (!q) {
        return;
    }
    free(q->bufs);
    free(q->fifo);
    free(q->split_next);
    free(q->free_ids);
    free(q);
}

/* Sum of segment lengths, or -1 when the writable total exceeds a used len (u32). */
static int64_t chain_in_len(const VDriverSeg *in, unsigned in_num)
{
    uint64_t total = 0;

    for (unsigned i = 0; i < in_num; i++) {
        total += in[i].len;
    }
    return total > UINT32_MAX ? -1 : (int64_t)total;
}

static const VDriverSeg *seg_at(const VDriverSeg *out, unsigned out_num, const VDriverSeg *in, unsigned k)
{
    return k < out_num ? &out[k] : &in[k - out_num];
}

/* Write an indirect table for buffer slot @slot; returns its guest address. */
static hwaddr fill_indirect_table(VDriverQueue *q, unsigned slot, const VDriverSeg *out,
                                  unsigned out_num, const VDriverSeg *in, unsigned total)
{
    hwaddr gpa = q->cfg.indirect + 16ull * q->cfg.indirect_max * slot;
    uint8_t *table = q->indirect + 16ull * q->cfg.indirect_max * slot;

    for (unsigned k = 0; k < total; k++) {
        const VDriverSeg *s = seg_at(out, out_num, in, k);
        uint16_t flags = k >= out_num ? VRING_DESC_F_WRITE : 0;

        if (q->cfg.packed) {
            /* spec 2.8.19: packed indirect tables are sequential; only WRITE matters */
            VRingPackedDesc d = { htole64(s->addr), htole32(s->len), 0, htole16(flags) };
            memcpy(table + 16ull * k, &d, sizeof(d));
        } else {
            VRingDesc d = { htole64(s->addr), htole32(s->len),
                            htole16(flags | (k + 1 < total ? VRING_DESC_F_NEXT : 0)),
                            htole16((uint16_t)(k + 1)) };
            memcpy(table + 16ull * k, &d, sizeof(d));
        }
    }
    return gpa;
}

/* Index of the @k-th oldest in-flight buffer in the fifo (k < num; no division on the hot path). */
static inline unsigned fifo_pos(const VDriverQueue *q, unsigned k)
{
    unsigned pos = q->fifo_head + k;

    return pos >= q->num ? pos - q->num : pos;
}

/* Only IN_ORDER needs the avail order of what is in flight. */
static void fifo_push(VDriverQueue *q, uint16_t id)
{
    if (q->cfg.in_order) {
        q->fifo[fifo_pos(q, q->fifo_count)] = id;
        q->fifo_count++;
    }
}

static int split_add(VDriverQueue *q, const VDriverSeg *out, unsigned out_num,
                     const VDriverSeg *in, unsigned in_num, unsigned total, uint32_t in_len,
                     void *token, bool indirect)
{
    unsigned need = indirect ? 1 : total;
    uint16_t head = q->free_head, i = head, last = head;

    if (need > q->num_free) {
        return -ENOSPC;
    }
    if (indirect) {
        hwaddr table = fill_indirect_table(q, head, out, out_num, in, total);
        VRingDesc d = { htole64(table), htole32(16u * total), htole16(VRING_DESC_F_INDIRECT), 0 };

        q->desc[head] = d;
        i = q->split_next[head];
    } else {
        for (unsigned k = 0; k < total; k++) {
            const VDriverSeg *s = seg_at(out, out_num, in, k);
            uint16_t flags = (k >= out_num ? VRING_DESC_F_WRITE : 0) |
                             (k + 1 < total ? VRING_DESC_F_NEXT : 0);
            VRingDesc d = { htole64(s->addr), htole32(s->len), htole16(flags),
                            htole16(q->split_next[i]) };

            q->desc[i] = d;
            last = i;
            i = q->split_next[i];
        }
    }
    q->free_head = i;
    q->num_free -= need;
    q->bufs[head] = (VDriverBuf){ token, in_len, (uint16_t)need, last, true };
    /* Visible to the device only when kick_prepare publishes avail->idx. */
    vring_store_le16(&q->avail->ring[q->avail_idx & (q->num - 1)], head);
    q->avail_idx++;
    fifo_push(q, head);
    return 0;
}

static inline uint16_t packed_avail_flags(bool wrap)
{
    /* spec 2.8.1: available when AVAIL equals the driver's wrap counter and USED does not */
    return wrap ? (1u << VRING_PACKED_DESC_F_AVAIL) : (1u << VRING_PACKED_DESC_F_USED);
}

static int packed_add(VDriverQueue *q, const VDriverSeg *out, unsigned out_num,
                      const VDriverSeg *in, unsigned in_num, unsigned total, uint32_t in_len,
                      void *token, bool indirect)
{
    unsigned need = indirect ? 1 : total;
    uint16_t head = q->next_avail, pos = head, head_flags = 0, id;
    bool wrap = q->avail_wrap;

    if (need > q->num_free || q->nfree_ids == 0) {
        return -ENOSPC;
    }
    id = q->free_ids[--q->nfree_ids];
    if (indirect) {
        hwaddr table = fill_indirect_table(q, id, out, out_num, in, total);

        q->pdesc[pos].addr = htole64(table);
        q->pdesc[pos].len = htole32(16u * total);
        q->pdesc[pos].id = htole16(id);
        head_flags = VRING_DESC_F_INDIRECT | packed_avail_flags(wrap);
        if (++pos == q->num) {
            pos = 0;
            wrap = !wrap;
        }
    } else {
        for (unsigned k = 0; k < total; k++) {
            const VDriverSeg *s = seg_at(out, out_num, in, k);
            uint16_t flags = (k >= out_num ? VRING_DESC_F_WRITE : 0) |
                             (k + 1 < total ? VRING_DESC_F_NEXT : 0) | packed_avail_flags(wrap);

            q->pdesc[pos].addr = htole64(s->addr);
            q->pdesc[pos].len = htole32(s->len);
            q->pdesc[pos].id = htole16(id);
            if (k == 0) {
                head_flags = flags;
            } else {
                vring_store_le16(&q->pdesc[pos].flags, flags);
            }
            if (++pos == q->num) {
                pos = 0;
                wrap = !wrap;
            }
        }
    }
    /* The head's flags go last: the device sees the whole chain or none of it. */
    vring_store_release_le16(&q->pdesc[head].flags, head_flags);
    q->next_avail = pos;
    q->avail_wrap = wrap;
    q->num_free -= need;
    q->added_since_kick += need;
    q->bufs[id] = (VDriverBuf){ token, in_len, (uint16_t)need, 0, true };
    fifo_push(q, id);
    return 0;
}

int vdriver_add(VDriverQueue *q, const VDriverSeg *out, unsigned out_num,
                const VDriverSeg *in, unsigned in_num, void *token, bool indirect)
{
    unsigned total = out_num + in_num;
    int64_t in_len = chain_in_len(in, in_num);
    int ret;

    /* spec 2.7.5.3.1: no chain longer than the queue size, indirect or not */
    if (total == 0 || in_len < 0 || total > q->num ||
        (indirect && (!q->indirect || total > q->cfg.indirect_max))) {
        return -EINVAL;
    }
    ret = q->cfg.packed ? packed_add(q, out, out_num, in, in_num, total, (uint32_t)in_len, token, indirect)
                        : split_add(q, out, out_num, in, in_num, total, (uint32_t)in_len, token, indirect);
    if (ret == 0) {
        q->inflight++;
        q->stats.added++;
    }
    return ret;
}

/* avail_event follows the used ring's num entries (spec 2.7.8). */
static uint16_t *split_avail_event(VDriverQueue *q)
{
    return (uint16_t *)&q->used->ring[q->num];
}

bool vdriver_kick_prepare(VDriverQueue *q)
{
    bool need;

    if (q->cfg.packed) {
        uint16_t new_pos = q->next_avail, old_pos = (uint16_t)(new_pos - q->added_since_kick);
        uint16_t flags, off_wrap, event;
        bool added = q->added_since_kick != 0;

        q->added_since_kick = 0;
        /* Pairs with the device's fence after it writes its event structure. */
        vring_mb();
        flags = vring_load_le16(&q->device_evt->flags) & 3;
        off_wrap = vring_load_le16(&q->device_evt->off_wrap);
        if (!added || flags == VRING_PACKED_EVENT_FLAG_DISABLE) {
            need = false;
        } else if (flags == VRING_PACKED_EVENT_FLAG_DESC && q->cfg.event_idx) {
            /* Descriptor positions count modulo num; map the event into the same window. */
            event = off_wrap & 0x7fff;
            if (!!(off_wrap >> VRING_PACKED_EVENT_F_WRAP_CTR) != q->avail_wrap) {
                event -= q->num;
            }
            need = vring_need_event(event, new_pos, old_pos);
        } else {
            need = true;
        }
    } else {
        uint16_t old = q->kicked_avail_idx, new_idx = q->avail_idx;

        /* Pairs with the device's acquire load of avail->idx. */
        vring_store_release_le16(&q->avail->idx, new_idx);
        q->kicked_avail_idx = new_idx;
        /* Pairs with the device's fence after it writes avail_event / used->flags. */
        vring_mb();
        if (old == new_idx) {
            need = false;
        } else if (q->cfg.event_idx) {
            need = vring_need_event(vring_load_le16(split_avail_event(q)), new_idx, old);
        } else {
            need = !(vring_load_le16(&q->used->flags) & VRING_USED_F_NO_NOTIFY);
        }
    }
    if (need) {
        q->stats.kicks++;
    } else {
        q->stats.kicks_suppressed++;
    }
    return need;
}

/* Hand buffer @id back to the caller and free its ring slots. */
static void *complete_buf(VDriverQueue *q, uint16_t id, uint32_t len, uint32_t *plen)
{
    VDriverBuf *b = &q->bufs[id];
    void *token = b->token;

    if (len > b->in_len) {
        violation(q, "buffer %u used with len %u but has only %u writable bytes", id, len, b->in_len);
        return NULL;
    }
    if (q->cfg.packed) {
        unsigned pos = q->last_used + b->ndescs;

        if (pos >= q->num) {
            pos -= q->num;
            q->used_wrap = !q->used_wrap;
        }
        q->last_used = (uint16_t)pos;
        q->free_ids[q->nfree_ids++] = id;
    } else {
        q->split_next[b->last] = q->free_head;
        q->free_head = id;
        q->last_used_idx++;
    }
    q->num_free += b->ndescs;
    b->busy = false;
    b->token = NULL;
    if (q->cfg.in_order) {
        q->fifo_head = fifo_pos(q, 1);
        q->fifo_count--;
    }
    q->inflight--;
    q->stats.reaped++;
    *plen = len;
    return token;
}

static void *next_batched(VDriverQueue *q, uint32_t *len, bool *batched)
{
    uint16_t id = q->fifo[q->fifo_head];

    q->batch_left--;
    if (batched) {
        *batched = q->batch_left > 0;
    }
    if (q->batch_left > 0) {
        q->stats.batched++;
        return complete_buf(q, id, q->bufs[id].in_len, len);
    }
    return complete_buf(q, id, q->batch_len, len);
}

/* Position of @id among the in-flight buffers in avail order, or -1. */
static int fifo_find(const VDriverQueue *q, uint16_t id)
{
    for (unsigned k = 0; k < q->fifo_count; k++) {
        if (q->fifo[fifo_pos(q, k)] == id) {
            return (int)k;
        }
    }
    return -1;
}

/* Account a used entry for @id: in order, it may close a batch of earlier buffers. */
static void *take_used(VDriverQueue *q, uint32_t id, uint32_t len, unsigned room, uint32_t *plen, bool *batched)
{
    q->stats.used_entries++;
    if (batched) {
        *batched = false;
    }
    if (id >= q->num || !q->bufs[id].busy) {
        violation(q, "used entry names buffer %u, which is not in flight", id);
        return NULL;
    }
    if (q->cfg.in_order) {
        int k = fifo_find(q, (uint16_t)id);

        if (k > 0) {
            /* spec 2.7.9 / 2.8.21: one entry for a batch; the earlier buffers were used in full */
            if ((unsigned)k + 1 > room) {
                violation(q, "in-order batch of %d buffers but the device published only %u", k + 1, room);
                return NULL;
            }
            q->batch_left = (unsigned)k + 1;
            q->batch_len = len;
            return next_batched(q, plen, batched);
        }
    }
    return complete_buf(q, (uint16_t)id, len, plen);
}

static bool packed_used_at(const VDriverQueue *q, uint16_t *flags)
{
    uint16_t f = vring_load_acquire_le16(&q->pdesc[q->last_used].flags);
    bool avail = f & (1u << VRING_PACKED_DESC_F_AVAIL);
    bool used = f & (1u << VRING_PACKED_DESC_F_USED);

    *flags = f;
    return avail == used && used == q->used_wrap;
}

void *vdriver_get_buf(VDriverQueue *q, uint32_t *len, bool *batched)
{
    if (q->failed) {
        return NULL;
    }
    if (q->batch_left) {
        return next_batched(q, len, batched);
    }
    if (q->cfg.packed) {
        uint16_t flags;
        const VRingPackedDesc *d = &q->pdesc[q->last_used];
        uint32_t used_len;

        if (!packed_used_at(q, &flags)) {
            return NULL;
        }
        used_len = le32toh(d->len);
        /* spec 2.8.4: len is only meaningful with WRITE; the device must set it when len > 0 */
        if (used_len > 0 && !(flags & VRING_DESC_F_WRITE) && q->ignore_readonly_len) {
            used_len = 0;
        } else if (used_len > 0 && !(flags & VRING_DESC_F_WRITE)) {
            violation(q, "used descriptor at %u has len %u without the WRITE flag", q->last_used, used_len);
            return NULL;
        }
        /* A packed batch's size is bounded by what is in flight; nothing more to check. */
        return take_used(q, le16toh(d->id), used_len, q->inflight, len, batched);
    } else {
        uint16_t used_idx = vring_load_acquire_le16(&q->used->idx);
        uint16_t room = (uint16_t)(used_idx - q->last_used_idx);
        VRingUsedElem e;

        if (room == 0) {
            return NULL;
        }
        if (room > q->inflight) {
            violation(q, "used idx moved %u past the %u buffers in flight", room, q->inflight);
            return NULL;
        }
        e = q->used->ring[q->last_used_idx & (q->num - 1)];
        return take_used(q, le32toh(e.id), le32toh(e.len), room, len, batched);
    }
}

void vdriver_ignore_readonly_len(VDriverQueue *q, bool on)
{
    q->ignore_readonly_len = on;
}

bool vdriver_has_used(VDriverQueue *q)
{
    uint16_t flags;

    if (q->batch_left) {
        return true;
    }
    if (q->cfg.packed) {
        return packed_used_at(q, &flags);
    }
    return vring_load_acquire_le16(&q->used->idx) != q->last_used_idx;
}

static uint16_t *split_used_event(VDriverQueue *q)
{
    return &q->avail->ring[q->num];
}

void vdriver_disable_cb(VDriverQueue *q)
{
    if (q->cfg.packed) {
        vring_store_le16(&q->driver_evt->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
    } else if (q->cfg.event_idx) {
        /* spec 2.7.7: flags stay 0 with event idx; an index already passed means "not soon" */
        vring_store_le16(split_used_event(q), (uint16_t)(q->last_used_idx - 1));
    } else {
        vring_store_le16(&q->avail->flags, VRING_AVAIL_F_NO_INTERRUPT);
    }
}

bool vdriver_enable_cb(VDriverQueue *q)
{
    if (q->cfg.packed) {
        if (q->cfg.event_idx) {
            vring_store_le16(&q->driver_evt->off_wrap,
                    (uint16_t)(q->last_used | (q->used_wrap << VRING_PACKED_EVENT_F_WRAP_CTR)));
            vring_store_le16(&q->driver_evt->flags, VRING_PACKED_EVENT_FLAG_DESC);
        } else {
            vring_store_le16(&q->driver_evt->flags, VRING_PACKED_EVENT_FLAG_ENABLE);
        }
    } else if (q->cfg.event_idx) {
        vring_store_le16(split_used_event(q), q->last_used_idx);
    } else {
        vring_store_le16(&q->avail->flags, 0);
    }
    /* Pairs with the device's fence between publishing and reading our suppression fields. */
    vring_mb();
    return vdriver_has_used(q);
}

unsigned vdriver_inflight(const VDriverQueue *q)
{
    return q->inflight;
}

unsigned vdriver_free_slots(const VDriverQueue *q)
{
    return q->num_free;
}

unsigned vdriver_num(const VDriverQueue *q)
{
    return q->num;
}

const char *vdriver_error(const VDriverQueue *q)
{
    return q->failed ? q->error : NULL;
}

void vdriver_get_stats(const VDriverQueue *q, VDriverStats *stats)
{
    *stats = q->stats;
}
