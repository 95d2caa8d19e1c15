/*
 * The virtqueue core against the driver library, on all four layouts
 * (split, packed, split+IN_ORDER, packed+IN_ORDER).
 *
 * The device side here is a correct device that completes buffers in a
 * random order within a window; the driver library checks every used entry.
 * Invariants (DESIGN.md "VIRTIO_F_IN_ORDER in the core"): under IN_ORDER
 * buffers come back exactly in avail order; every buffer is used exactly
 * once with the length the device wrote; inuse = popped - published; nothing
 * is published before its predecessors.
 */
#include <glib.h>
#include <string.h>

#include "vdriver.h"
#include "vq-fixture.h"

#define SEG_SIZE 512u
#define MAX_SEGS 4u

typedef struct Layout {
    const VqLayout *vq;
    unsigned num;
} Layout;

/* One buffer in flight, owned by the driver side of the harness. */
typedef struct Req {
    uint64_t seq;
    unsigned slot;
    uint32_t in_len;
    unsigned out_num, in_num;
    VDriverSeg segs[MAX_SEGS];
} Req;

typedef struct Harness {
    VqFixture f;
    VDriverQueue *drv;
    GRand *rand;
    bool event_idx;
    bool indirect;
    unsigned window;            /* device completes among the oldest @window it holds */
    bool ordered_api;           /* complete with virtqueue_ordered_fill/flush */
    bool used_in_order;         /* IN_ORDER negotiated or the queue set to ordered use */
    /* driver side */
    Req *reqs;                  /* by data slot */
    unsigned *free_slots;
    unsigned nfree;
    uint64_t added, reaped, next_expected;
    GHashTable *seen;
    /* device side */
    VirtQueueElement **held;
    unsigned nheld;
} Harness;

static uint32_t expected_len(uint64_t seq, uint32_t in_len, bool full)
{
    if (full || in_len == 0) {
        return in_len;
    }
    /* Mostly complete buffers, some short ones: exercises both batch rules. */
    return (seq % 3) ? in_len : (uint32_t)((seq * 2654435761u) % (in_len + 1));
}

static uint8_t pattern(uint64_t seq, size_t i)
{
    return (uint8_t)(seq * 31 + i * 7 + 1);
}

static void harness_init_full(Harness *h, const VqLayout *l, unsigned num, uint64_t extra, guint32 seed,
                              bool ordered_use)
{
    VDriverQueueConfig cfg;

    memset(h, 0, sizeof(*h));
    vqf_init(&h->f, l, num, extra, (uint64_t)num * MAX_SEGS * SEG_SIZE);
    h->event_idx = extra & (1ULL << VIRTIO_RING_F_EVENT_IDX);
    h->indirect = extra & (1ULL << VIRTIO_RING_F_INDIRECT_DESC);
    cfg = (VDriverQueueConfig){
        .num = num, .packed = l->packed, .in_order = l->in_order, .event_idx = h->event_idx,
        .desc = h->f.desc, .driver = h->f.driver, .device = h->f.device,
        .indirect = h->f.indirect, .indirect_max = h->f.indirect_max,
    };
    h->drv = vdriver_queue_new(&h->f.mem, &cfg);
    g_assert_nonnull(h->drv);
    virtio_queue_set_ordered_use(h->f.vq, ordered_use);
    h->used_in_order = l->in_order || ordered_use;
    g_assert_cmpint(vqf_start(&h->f), ==, 0);
    h->rand = g_rand_new_with_seed(seed);
    h->window = 1;
    h->reqs = g_new0(Req, num);
    h->free_slots = g_new(unsigned, num);
    for (unsigned i = 0; i < num; i++) {
        h->free_slots[i] = num - 1 - i;
    }
    h->nfree = num;
    h->seen = g_hash_table_new(NULL, NULL);
    h->held = g_new0(VirtQueueElement *, num);
}

static void harness_init(Harness *h, const VqLayout *l, unsigned num, uint64_t extra, guint32 seed)
{
    harness_init_full(h, l, num, extra, seed, false);
}

static void harness_cleanup(Harness *h)
{
    for (unsigned i = 0; i < h->nheld; i++) {
        virtqueue_element_free(h->held[i]);
    }
    g_free(h->held);
    g_hash_table_destroy(h->seen);
    g_free(h->free_slots);
    g_free(h->reqs);
    g_rand_free(h->rand);
    vdriver_queue_free(h->drv);
    vqf_cleanup(&h->f);
}

/* Driver: make one buffer available. Returns false when the ring is full. */
static bool driver_add(Harness *h, unsigned chain_max)
{
    unsigned num = h->f.num, total, slot;
    bool indirect;
    Req *r;
    int ret;

    if (h->nfree == 0) {
        return false;
    }
    chain_max = MIN(chain_max, MAX_SEGS);
    indirect = h->indirect && g_rand_int_range(h->rand, 0, 4) == 0;
    total = g_rand_int_range(h->rand, 1, chain_max + 1);
    total = MIN(total, num);
    slot = h->free_slots[h->nfree - 1];
    r = &h->reqs[slot];
    r->seq = h->added;
    r->slot = slot;
    r->out_num = g_rand_int_range(h->rand, 0, total + 1);
    r->in_num = total - r->out_num;
    r->in_len = 0;
    for (unsigned k = 0; k < total; k++) {
        uint64_t gpa = h->f.data + ((uint64_t)slot * MAX_SEGS + k) * SEG_SIZE;

        r->segs[k].addr = gpa;
        r->segs[k].len = g_rand_int_range(h->rand, k == 0 ? 8 : 1, SEG_SIZE + 1);
        if (k >= r->out_num) {
            r->in_len += r->segs[k].len;
        }
    }
    /* The device learns the sequence number from the first 8 bytes. */
    memcpy(vqf_host(&h->f, r->segs[0].addr), &r->seq, sizeof(r->seq));
    ret = vdriver_add(h->drv, r->segs, r->out_num, r->segs + r->out_num, r->in_num, r, indirect);
    if (ret == -ENOSPC) {
        return false;
    }
    g_assert_cmpint(ret, ==, 0);
    h->nfree--;
    h->added++;
    return true;
}

/* Driver: reap everything used and check it. */
static void driver_reap(Harness *h, bool full_len)
{
    uint32_t len;
    bool batched;
    Req *r;

    while ((r = vdriver_get_buf(h->drv, &len, &batched))) {
        uint32_t want = expected_len(r->seq, r->in_len, full_len);
        size_t off = 0;

        g_assert_cmpuint(len, ==, want);
        if (h->used_in_order) {
            /* Used order equals avail order. */
            g_assert_cmpuint(r->seq, ==, h->next_expected);
        }
        h->next_expected = r->seq + 1;
        /* Each buffer used exactly once. */
        g_assert_false(g_hash_table_contains(h->seen, GSIZE_TO_POINTER(r->seq + 1)));
        g_hash_table_add(h->seen, GSIZE_TO_POINTER(r->seq + 1));
        /* The device wrote the pattern into the first len writable bytes. */
        for (unsigned k = r->out_num; k < r->out_num + r->in_num && off < len; k++) {
            const uint8_t *p = vqf_host(&h->f, r->segs[k].addr);
            for (uint32_t i = 0; i < r->segs[k].len && off < len; i++, off++) {
                if (p[i] != pattern(r->seq, off)) {
                    g_error("seq %" G_GUINT64_FORMAT " byte %zu: %#x", r->seq, off, p[i]);
                }
            }
        }
        h->free_slots[h->nfree++] = r->slot;
        h->reaped++;
    }
    g_assert_null(vdriver_error(h->drv));
}

/* The request behind @e, found from where its first segment lies in the data area. */
static uint64_t elem_seq(Harness *h, VirtQueueElement *e)
{
    const struct iovec *first = e->out_num ? &e->out_sg[0] : &e->in_sg[0];
    size_t off = (uint8_t *)first->iov_base - (uint8_t *)vqf_host(&h->f, h->f.data);
    unsigned slot = off / (MAX_SEGS * SEG_SIZE);

    g_assert_cmpuint(slot, <, h->f.num);
    return h->reqs[slot].seq;
}

/* Device: write the pattern and complete @e. */
static void device_complete(Harness *h, VirtQueueElement *e, unsigned idx, bool full_len)
{
    uint64_t seq = elem_seq(h, e);
    uint32_t len = expected_len(seq, e->in_len, full_len), off = 0;

    for (unsigned k = 0; k < e->in_num && off < len; k++) {
        uint8_t *p = e->in_sg[k].iov_base;
        for (size_t i = 0; i < e->in_sg[k].iov_len && off < len; i++, off++) {
            p[i] = pattern(seq, off);
        }
    }
    if (h->ordered_api) {
        virtqueue_ordered_fill(h->f.vq, e, len);
    } else {
        virtqueue_fill(h->f.vq, e, len, idx);
    }
    virtqueue_element_free(e);
}

static void check_inuse(Harness *h)
{
    VirtQueueStats st;

    virtio_queue_get_stats(h->f.vq, &st);
    g_assert_cmpuint(virtio_queue_inuse(h->f.vq), ==, st.popped - st.used);
    g_assert_cmpuint(virtio_queue_inuse(h->f.vq), <=, h->f.num);
}

/* Device: pop what is there, complete a random selection within the window. */
static void device_step(Harness *h, bool full_len)
{
    VirtQueue *vq = h->f.vq;
    VirtQueueElement *e;
    unsigned n, done = 0;

    while ((e = virtqueue_pop(vq, sizeof(*e)))) {
        g_assert_cmpuint(h->nheld, <, h->f.num);
        h->held[h->nheld++] = e;
    }
    g_assert_false(h->f.vdev.broken);
    n = g_rand_int_range(h->rand, 0, h->nheld + 1);
    for (unsigned i = 0; i < n; i++) {
        unsigned pick = g_rand_int_range(h->rand, 0, MIN(h->window, h->nheld));

        e = h->held[pick];
        memmove(&h->held[pick], &h->held[pick + 1], (h->nheld - pick - 1) * sizeof(e));
        h->nheld--;
        device_complete(h, e, done++, full_len);
    }
    /* In order, a flush may publish fills from earlier rounds (or nothing yet). */
    if (h->ordered_api) {
        g_assert_cmpuint(virtqueue_ordered_flush(vq), <=, (h->f.layout->in_order ? h->f.num : done));
    } else if (done || h->f.layout->in_order) {
        virtqueue_flush(vq, done);
    }
    virtio_notify(&h->f.vdev, vq);
    check_inuse(h);
}

/* Run @total requests through the queue; returns when all were reaped. */
static void run_traffic(Harness *h, uint64_t total, unsigned chain_max, bool full_len)
{
    unsigned idle = 0;

    while (h->reaped < total) {
        uint64_t before = h->reaped;

        while (h->added < total && driver_add(h, chain_max)) {
        }
        vdriver_kick_prepare(h->drv);
        device_step(h, full_len);
        driver_reap(h, full_len);
        /* The device may hold everything and complete none this round: bounded, not forever. */
        idle = h->reaped == before ? idle + 1 : 0;
        g_assert_cmpuint(idle, <, 1000);
    }
    g_assert_cmpuint(vdriver_inflight(h->drv), ==, 0);
    g_assert_cmpuint(virtio_queue_inuse(h->f.vq), ==, 0);
}

static const uint64_t ring_extras = (1ULL << VIRTIO_RING_F_INDIRECT_DESC) | (1ULL << VIRTIO_RING_F_EVENT_IDX);

static void test_random_completion_orders(gconstpointer data)
{
    const VqLayout *l = data;
    const unsigned windows[] = { 1, 2, 8, 64, 256 };

    for (unsigned w = 0; w < G_N_ELEMENTS(windows); w++) {
        for (guint32 seed = 1; seed <= 3; seed++) {
            Harness h;

            harness_init(&h, l, 256, seed == 2 ? 0 : ring_extras, seed * 7919 + w);
            h.window = windows[w];
            run_traffic(&h, 3000, 4, false);
            harness_cleanup(&h);
        }
    }
}

/* The ordered API on any layout: without IN_ORDER it degrades to plain fill/flush. */
static void test_ordered_api_on_every_layout(gconstpointer data)
{
    Harness h;

    harness_init(&h, data, 64, ring_extras, 4242);
    h.window = 16;
    h.ordered_api = true;
    run_traffic(&h, 3000, 3, false);
    harness_cleanup(&h);
}

/* spec 2.7.9 / 2.8.21: batches of completely used buffers share one used entry. */
static void test_in_order_batch_skips_completed_entries(gconstpointer data)
{
    const VqLayout *l = data;
    VirtQueueStats st;
    VDriverStats ds;
    Harness h;

    harness_init(&h, l, 64, ring_extras, 42);
    virtio_queue_set_batch(h.f.vq, true);
    h.window = 16;
    run_traffic(&h, 5000, 4, true);
    virtio_queue_get_stats(h.f.vq, &st);
    vdriver_get_stats(h.drv, &ds);
    g_assert_cmpuint(st.used, ==, 5000);
    g_assert_cmpuint(ds.used_entries, ==, st.used_entries);
    g_assert_cmpuint(ds.batched, ==, st.used - st.used_entries);
    if (l->in_order) {
        g_assert_cmpuint(st.used_entries, <, st.used / 2);
    } else {
        /* Batching is an in-order feature only. */
        g_assert_cmpuint(st.used_entries, ==, st.used);
    }
    harness_cleanup(&h);
}

/*
 * Ordered use (what a tracked vhost-user packed queue needs): completions in
 * random order are still used in avail order, with or without IN_ORDER, and
 * every buffer gets its own used entry even with batching asked for.
 */
static void test_ordered_use_without_in_order(gconstpointer data)
{
    const VqLayout *l = data;
    VirtQueueStats st;
    Harness h;

    harness_init_full(&h, l, 64, ring_extras, 77, true);
    virtio_queue_set_batch(h.f.vq, true);
    h.window = 32;
    run_traffic(&h, 4000, 4, true);
    virtio_queue_get_stats(h.f.vq, &st);
    g_assert_cmpuint(st.used, ==, 4000);
    g_assert_cmpuint(st.used_entries, ==, st.used);
    harness_cleanup(&h);
}

/* A buffer used partially ends a batch: it may close one but the next starts anew. */
static void test_in_order_batch_stops_at_partial_buffer(gconstpointer data)
{
    const VqLayout *l = data;
    VirtQueueElement *e[8];
    VirtQueueStats st;
    Harness h;
    uint32_t len;
    bool batched;

    harness_init(&h, l, 16, 0, 7);
    virtio_queue_set_batch(h.f.vq, true);
    for (unsigned i = 0; i < 8; i++) {
        Req *r = &h.reqs[i];
        r->seq = i;
        r->slot = i;
        r->out_num = 0;
        r->in_num = 1;
        r->in_len = 64;
        r->segs[0] = (VDriverSeg){ h.f.data + i * SEG_SIZE, 64 };
        g_assert_cmpint(vdriver_add(h.drv, NULL, 0, r->segs, 1, r, false), ==, 0);
    }
    vdriver_kick_prepare(h.drv);
    for (unsigned i = 0; i < 8; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
        g_assert_nonnull(e[i]);
    }
    /* Completed backwards; buffer 3 short. */
    for (int i = 7; i >= 0; i--) {
        if (l->in_order) {
            virtqueue_fill(h.f.vq, e[i], i == 3 ? 10 : 64, 0);
            /* nothing is published before its predecessors */
            g_assert_cmpuint(virtqueue_ordered_flush(h.f.vq), ==, i == 0 ? 8 : 0);
        } else {
            virtqueue_push(h.f.vq, e[i], i == 3 ? 10 : 64);
        }
    }
    virtio_queue_get_stats(h.f.vq, &st);
    g_assert_cmpuint(st.used, ==, 8);
    /* One entry for 0-3 (3 is short, so it closes the batch), one for 4-7. */
    g_assert_cmpuint(st.used_entries, ==, l->in_order ? 2 : 8);
    for (unsigned i = 0; i < 8; i++) {
        unsigned want = l->in_order ? i : 7 - i;
        Req *r = vdriver_get_buf(h.drv, &len, &batched);
        g_assert_true(r == &h.reqs[want]);
        g_assert_cmpuint(len, ==, want == 3 ? 10 : 64);
        g_assert_cmpint(batched, ==, l->in_order && want != 3 && want != 7);
    }
    for (unsigned i = 0; i < 8; i++) {
        virtqueue_element_free(e[i]);
    }
    g_assert_null(vdriver_get_buf(h.drv, &len, &batched));
    g_assert_null(vdriver_error(h.drv));
    h.nfree = 0;
    harness_cleanup(&h);
}

static void test_queue_sizes(gconstpointer data)
{
    const VqLayout *l = data;
    const unsigned split_sizes[] = { 1, 2, 256, 32768 };
    const unsigned packed_sizes[] = { 1, 2, 3, 256, 1000, 32768 };
    const unsigned *sizes = l->packed ? packed_sizes : split_sizes;
    unsigned n = l->packed ? G_N_ELEMENTS(packed_sizes) : G_N_ELEMENTS(split_sizes);

    for (unsigned i = 0; i < n; i++) {
        Harness h;

        harness_init(&h, l, sizes[i], ring_extras, sizes[i]);
        h.window = 8;
        run_traffic(&h, MAX(3ull * sizes[i], 600), 4, false);
        harness_cleanup(&h);
    }
}

static void test_chain_as_long_as_ring(gconstpointer data)
{
    const VqLayout *l = data;
    const unsigned sizes[] = { 4, 3 };

    for (unsigned s = 0; s < (l->packed ? 2u : 1u); s++) {
        unsigned num = sizes[s];
        Harness h;

        harness_init(&h, l, num, 0, 99);
        for (unsigned round = 0; round < 7; round++) {
            VDriverSeg segs[MAX_SEGS];
            VirtQueueElement *e;
            uint32_t len;

            for (unsigned k = 0; k < num; k++) {
                segs[k] = (VDriverSeg){ h.f.data + k * SEG_SIZE, 100 };
            }
            /* Every descriptor of the ring in one chain; packed: it wraps after round 0 when num is 3. */
            g_assert_cmpint(vdriver_add(h.drv, segs, 1, segs + 1, num - 1, &h, false), ==, 0);
            g_assert_cmpint(vdriver_add(h.drv, segs, 1, NULL, 0, &h, false), ==, -ENOSPC);
            vdriver_kick_prepare(h.drv);
            e = virtqueue_pop(h.f.vq, sizeof(*e));
            g_assert_nonnull(e);
            g_assert_cmpuint(e->out_num, ==, 1);
            g_assert_cmpuint(e->in_num, ==, num - 1);
            g_assert_cmpuint(e->ndescs, ==, l->packed ? num : 1);
            virtqueue_push(h.f.vq, e, e->in_len);
            virtqueue_element_free(e);
            g_assert_true(vdriver_get_buf(h.drv, &len, NULL) == &h);
            g_assert_cmpuint(len, ==, 100 * (num - 1));
        }
        g_assert_null(vdriver_error(h.drv));
        g_assert_false(h.f.vdev.broken);
        h.nfree = 0;
        harness_cleanup(&h);
    }
}

/* 16-bit indices wrap (split) and wrap counters flip thousands of times (packed). */
static void test_indices_wrap_after_65536_requests(gconstpointer data)
{
    Harness h;

    harness_init(&h, data, 16, ring_extras, 65537);
    h.window = 4;
    run_traffic(&h, 70000, 3, false);
    harness_cleanup(&h);
}

/* Pop @n buffers of one 64-byte writable segment each. */
static void add_simple(Harness *h, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        unsigned slot = h->free_slots[--h->nfree];
        Req *r = &h->reqs[slot];

        *r = (Req){ .seq = h->added++, .slot = slot, .in_num = 1, .in_len = 64 };
        r->segs[0] = (VDriverSeg){ h->f.data + (uint64_t)slot * MAX_SEGS * SEG_SIZE, 64 };
        memcpy(vqf_host(&h->f, r->segs[0].addr), &r->seq, 8);
        g_assert_cmpint(vdriver_add(h->drv, NULL, 0, r->segs, 1, r, false), ==, 0);
    }
    vdriver_kick_prepare(h->drv);
}

/* Detach in flight: under IN_ORDER the element is used with len 0, so nothing stalls. */
static void test_detach_mid_flight(gconstpointer data)
{
    const VqLayout *l = data;
    VirtQueueElement *e[4];
    Harness h;
    uint32_t len;
    Req *r;

    harness_init(&h, l, 8, 0, 5);
    add_simple(&h, 4);
    for (unsigned i = 0; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
    }
    virtqueue_detach_element(h.f.vq, e[1], 0);
    virtqueue_element_free(e[1]);
    for (int i = 3; i >= 0; i--) {
        if (i != 1) {
            virtqueue_fill(h.f.vq, e[i], 64, 0);
            virtqueue_flush(h.f.vq, 1);
            virtqueue_element_free(e[i]);
        }
    }
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 0);
    for (unsigned i = 0; i < 4; i++) {
        if (!l->in_order && i == 1) {
            continue;       /* dropped: the driver never gets it back */
        }
        r = vdriver_get_buf(h.drv, &len, NULL);
        g_assert_nonnull(r);
        if (l->in_order) {
            g_assert_cmpuint(r->seq, ==, i);
            g_assert_cmpuint(len, ==, i == 1 ? 0 : 64);
        }
    }
    g_assert_null(vdriver_get_buf(h.drv, &len, NULL));
    g_assert_null(vdriver_error(h.drv));
    h.nfree = 0;
    harness_cleanup(&h);
}

static void renegotiate_queue(Harness *h)
{
    VqFixture *f = &h->f;

    g_assert_cmpint(virtio_queue_set_num(&f->vdev, 0, f->num), ==, 0);
    g_assert_cmpint(virtio_queue_set_rings(&f->vdev, 0, f->desc, f->driver, f->device), ==, 0);
    g_assert_cmpint(virtio_queue_set_enabled(&f->vdev, 0, true), ==, 0);
}

/* Reset with elements in flight and filled-but-unpublished: no stale slot survives. */
static void test_reset_mid_flight(gconstpointer data)
{
    const VqLayout *l = data;
    VDriverQueueConfig cfg;
    VirtQueueElement *e[4];
    Harness h;

    harness_init(&h, l, 8, ring_extras, 11);
    add_simple(&h, 4);
    for (unsigned i = 0; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
    }
    /* Later ones filled, the first not: nothing may be published. */
    for (unsigned i = 1; i < 4; i++) {
        virtqueue_fill(h.f.vq, e[i], 64, i - 1);
    }
    if (l->in_order) {
        g_assert_cmpuint(virtqueue_ordered_flush(h.f.vq), ==, 0);
    }
    for (unsigned i = 0; i < 4; i++) {
        virtqueue_element_free(e[i]);
    }
    /* Device reset, driver starts over on the same memory. */
    g_assert_cmpint(virtio_set_status(&h.f.vdev, 0), ==, 0);
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 0);
    g_assert_cmpint(virtio_set_features(&h.f.vdev, h.f.features | ring_extras), ==, 0);
    g_assert_cmpint(virtio_set_status(&h.f.vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                      VIRTIO_CONFIG_S_FEATURES_OK), ==, 0);
    renegotiate_queue(&h);
    cfg = (VDriverQueueConfig){ .num = 8, .packed = l->packed, .in_order = l->in_order, .event_idx = true,
                                .desc = h.f.desc, .driver = h.f.driver, .device = h.f.device,
                                .indirect = h.f.indirect, .indirect_max = h.f.indirect_max };
    vdriver_queue_free(h.drv);
    h.drv = vdriver_queue_new(&h.f.mem, &cfg);
    g_assert_cmpint(vqf_start(&h.f), ==, 0);
    h.nfree = 8;
    for (unsigned i = 0; i < 8; i++) {
        h.free_slots[i] = i;
    }
    h.added = h.reaped = h.next_expected = 0;
    /* The new first buffer completes alone: it alone is published. */
    add_simple(&h, 2);
    e[0] = virtqueue_pop(h.f.vq, sizeof(*e[0]));
    e[1] = virtqueue_pop(h.f.vq, sizeof(*e[1]));
    device_complete(&h, e[0], 0, false);
    virtqueue_flush(h.f.vq, 1);
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 1);
    device_complete(&h, e[1], 0, false);
    virtqueue_flush(h.f.vq, 1);
    h.window = 1;
    run_traffic(&h, 2, 1, false);
    harness_cleanup(&h);
}

/* Per-queue reset (VIRTIO_F_RING_RESET / vhost-user) in flight behaves like a device reset. */
static void test_queue_reset_mid_flight(gconstpointer data)
{
    const VqLayout *l = data;
    VDriverQueueConfig cfg;
    VirtQueueElement *e;
    Harness h;

    harness_init(&h, l, 8, 0, 12);
    add_simple(&h, 3);
    e = virtqueue_pop(h.f.vq, sizeof(*e));
    virtqueue_fill(h.f.vq, e, 64, 0);
    virtqueue_element_free(e);
    virtio_queue_reset(&h.f.vdev, 0);
    g_assert_false(virtio_queue_is_running(&h.f.vdev, 0));
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 0);
    renegotiate_queue(&h);
    cfg = (VDriverQueueConfig){ .num = 8, .packed = l->packed, .in_order = l->in_order,
                                .desc = h.f.desc, .driver = h.f.driver, .device = h.f.device };
    vdriver_queue_free(h.drv);
    h.drv = vdriver_queue_new(&h.f.mem, &cfg);
    g_assert_cmpint(virtio_queue_activate(&h.f.vdev, 0), ==, 0);
    h.nfree = 8;
    for (unsigned i = 0; i < 8; i++) {
        h.free_slots[i] = i;
    }
    h.added = h.reaped = h.next_expected = 0;
    h.window = 4;
    run_traffic(&h, 100, 2, false);
    harness_cleanup(&h);
}

static void test_unpop_and_rewind(gconstpointer data)
{
    const VqLayout *l = data;
    VirtQueueElement *e[4], *again;
    unsigned first_index[4];
    Harness h;

    harness_init(&h, l, 8, 0, 13);
    add_simple(&h, 4);
    for (unsigned i = 0; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
        first_index[i] = e[i]->index;
    }
    /* unpop: the last one comes back next */
    virtqueue_unpop(h.f.vq, e[3], 0);
    virtqueue_element_free(e[3]);
    again = virtqueue_pop(h.f.vq, sizeof(*again));
    g_assert_cmpuint(again->index, ==, first_index[3]);
    g_assert_cmpuint(elem_seq(&h, again), ==, 3);
    e[3] = again;
    /* rewind 2: buffers 2 and 3 come back in the same order */
    for (unsigned i = 2; i < 4; i++) {
        virtqueue_element_free(e[i]);
    }
    g_assert_true(virtqueue_rewind(h.f.vq, 2));
    g_assert_false(virtqueue_rewind(h.f.vq, 3));
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 2);
    for (unsigned i = 2; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
        g_assert_cmpuint(e[i]->index, ==, first_index[i]);
        g_assert_cmpuint(elem_seq(&h, e[i]), ==, i);
    }
    g_assert_null(virtqueue_pop(h.f.vq, sizeof(VirtQueueElement)));
    for (int i = 3; i >= 0; i--) {
        device_complete(&h, e[i], 0, false);
        virtqueue_flush(h.f.vq, 1);
    }
    driver_reap(&h, false);
    g_assert_cmpuint(h.reaped, ==, 4);
    harness_cleanup(&h);
}

/*
 * Save/restore: a backend that lost its in-flight elements resumes at the
 * used index (the in-order completion boundary) and pops them again.
 */
static void test_save_restore_indices(gconstpointer data)
{
    const VqLayout *l = data;
    unsigned last_avail, used;
    VirtQueueElement *e;
    Harness h;

    harness_init(&h, l, 8, ring_extras, 17);
    h.window = 1;
    run_traffic(&h, 13, 2, false);         /* move the indices off zero, packed: wrap */
    add_simple(&h, 5);
    for (unsigned i = 0; i < 5; i++) {
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        if (i < 2) {
            device_complete(&h, e, 0, false);
            virtqueue_flush(h.f.vq, 1);
        } else {
            virtqueue_element_free(e);  /* lost with the backend */
        }
    }
    last_avail = virtio_queue_get_last_avail_idx(&h.f.vdev, 0);
    used = virtio_queue_get_used_idx(&h.f.vdev, 0);
    g_assert_cmpuint(last_avail, !=, used);
    virtio_queue_deactivate(&h.f.vdev, 0);
    virtio_queue_reset(&h.f.vdev, 0);
    renegotiate_queue(&h);
    g_assert_cmpint(virtio_queue_set_last_avail_idx(&h.f.vdev, 0, last_avail), ==, 0);
    g_assert_cmpint(virtio_queue_set_used_idx(&h.f.vdev, 0, used), ==, 0);
    virtio_queue_restore_last_avail_idx(&h.f.vdev, 0);
    g_assert_cmpuint(virtio_queue_get_last_avail_idx(&h.f.vdev, 0), ==, used);
    g_assert_cmpint(virtio_queue_activate(&h.f.vdev, 0), ==, 0);
    /* The three lost buffers come again, in order; then traffic goes on. */
    for (unsigned i = 2; i < 5; i++) {
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        g_assert_nonnull(e);
        g_assert_cmpuint(elem_seq(&h, e), ==, 13 + i);
        device_complete(&h, e, 0, false);
        virtqueue_flush(h.f.vq, 1);
    }
    driver_reap(&h, false);
    g_assert_cmpuint(h.reaped, ==, 18);
    run_traffic(&h, 60, 3, false);
    harness_cleanup(&h);
}

/*
 * vhost-user inflight resubmission (split): the backend died with buffers
 * popped; a new one restores avail = used + in-flight count and maps the
 * in-flight heads again. Every buffer reaches the driver exactly once.
 */
static void test_inflight_resubmission(gconstpointer data)
{
    const VqLayout *l = data;
    unsigned heads[4], nlost = 0, used;
    VirtQueueElement *e[4];
    Harness h;

    harness_init(&h, l, 8, 0, 29);
    run_traffic(&h, 11, 2, false);
    add_simple(&h, 4);
    for (unsigned i = 0; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
        if (l->in_order || i % 2 == 0) {
            heads[nlost++] = e[i]->index;
        }
    }
    /* 1 and 3 complete (published at once without IN_ORDER, held back with it). */
    for (unsigned i = 0; i < 4; i++) {
        if (i % 2) {
            device_complete(&h, e[i], 0, false);
            virtqueue_flush(h.f.vq, 1);
        } else {
            virtqueue_element_free(e[i]);
        }
    }
    driver_reap(&h, false);
    used = virtio_queue_get_used_idx(&h.f.vdev, 0);
    virtio_queue_reset(&h.f.vdev, 0);
    renegotiate_queue(&h);
    if (l->packed) {
        /* Only the split layout has an inflight format to resubmit from. */
        g_assert_cmpint(virtio_queue_activate(&h.f.vdev, 0), ==, 0);
        g_assert_null(virtqueue_pop_inflight(h.f.vq, heads[0], sizeof(VirtQueueElement)));
        g_assert_false(h.f.vdev.broken);
        harness_cleanup(&h);
        return;
    }
    g_assert_cmpint(virtio_queue_set_last_avail_idx(&h.f.vdev, 0, (uint16_t)(used + nlost)), ==, 0);
    g_assert_cmpint(virtio_queue_set_used_idx(&h.f.vdev, 0, used), ==, 0);
    g_assert_cmpint(virtio_queue_activate(&h.f.vdev, 0), ==, 0);
    for (unsigned i = 0; i < nlost; i++) {
        e[i] = virtqueue_pop_inflight(h.f.vq, heads[i], sizeof(*e[i]));
        g_assert_nonnull(e[i]);
    }
    /* The gap is full: one more would overrun the ring. */
    g_assert_null(virtqueue_pop_inflight(h.f.vq, heads[0], sizeof(VirtQueueElement)));
    g_assert_true(h.f.vdev.broken);
    g_assert_nonnull(strstr(h.f.vdev.error_msg, "more in-flight buffers resubmitted"));
    for (unsigned i = 0; i < nlost; i++) {
        virtqueue_element_free(e[i]);
    }
    harness_cleanup(&h);
}

static void test_inflight_resubmission_completes(gconstpointer data)
{
    const VqLayout *l = data;
    unsigned heads[4], nlost = 0, used;
    VirtQueueElement *e[4];
    Harness h;

    if (l->packed) {
        return;     /* covered above: packed has no resubmission */
    }
    harness_init(&h, l, 8, 0, 31);
    run_traffic(&h, 11, 2, false);
    add_simple(&h, 4);
    for (unsigned i = 0; i < 4; i++) {
        e[i] = virtqueue_pop(h.f.vq, sizeof(*e[i]));
        heads[i] = e[i]->index;
    }
    device_complete(&h, e[1], 0, false);
    virtqueue_flush(h.f.vq, 1);
    for (unsigned i = 0; i < 4; i++) {
        if (l->in_order || i != 1) {
            heads[nlost++] = heads[i];
        }
        if (i != 1) {
            virtqueue_element_free(e[i]);
        }
    }
    used = virtio_queue_get_used_idx(&h.f.vdev, 0);
    virtio_queue_reset(&h.f.vdev, 0);
    renegotiate_queue(&h);
    g_assert_cmpint(virtio_queue_set_last_avail_idx(&h.f.vdev, 0, (uint16_t)(used + nlost)), ==, 0);
    g_assert_cmpint(virtio_queue_set_used_idx(&h.f.vdev, 0, used), ==, 0);
    g_assert_cmpint(virtio_queue_activate(&h.f.vdev, 0), ==, 0);
    for (unsigned i = 0; i < nlost; i++) {
        e[i] = virtqueue_pop_inflight(h.f.vq, heads[i], sizeof(*e[i]));
        g_assert_nonnull(e[i]);
    }
    g_assert_null(virtqueue_pop(h.f.vq, sizeof(VirtQueueElement)));
    /* A resubmitted element took no avail entry: unpop/rewind must not move the avail index. */
    virtqueue_unpop(h.f.vq, e[nlost - 1], 0);
    g_assert_false(virtqueue_rewind(h.f.vq, 1));
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, nlost);
    g_assert_cmpuint(virtio_queue_get_last_avail_idx(&h.f.vdev, 0), ==, (uint16_t)(used + nlost));
    g_assert_false(h.f.vdev.broken);
    for (int i = (int)nlost - 1; i >= 0; i--) {
        device_complete(&h, e[i], 0, false);
        virtqueue_flush(h.f.vq, 1);
    }
    driver_reap(&h, false);
    g_assert_cmpuint(h.reaped, ==, 15);
    g_assert_cmpuint(virtio_queue_inuse(h.f.vq), ==, 0);
    run_traffic(&h, 40, 2, false);
    harness_cleanup(&h);
}

static unsigned kicks(Harness *h)
{
    VDriverStats ds;

    vdriver_get_stats(h->drv, &ds);
    return ds.kicks;
}

static void test_kick_suppression(gconstpointer data)
{
    const VqLayout *l = data;

    for (int event_idx = 0; event_idx < 2; event_idx++) {
        VirtQueueElement *e;
        Harness h;

        harness_init(&h, l, 8, event_idx ? ring_extras : 0, 19);
        add_simple(&h, 1);
        g_assert_cmpuint(kicks(&h), ==, 1);
        g_assert_false(vdriver_kick_prepare(h.drv));    /* nothing new: never a kick */
        /* Suppressed: used->flags / packed DISABLE; with event idx, avail_event stays behind. */
        virtio_queue_set_notification(h.f.vq, 0);
        add_simple(&h, 1);
        g_assert_cmpuint(kicks(&h), ==, 1);
        /*
         * Re-enabled: split asks for a kick past what is published; packed
         * with event idx names the descriptor it will look at next, which is
         * already there, so the device re-checks the ring instead of waiting.
         */
        virtio_queue_set_notification(h.f.vq, 1);
        add_simple(&h, 1);
        g_assert_cmpuint(kicks(&h), ==, (event_idx && l->packed) ? 1 : 2);
        /* With event idx the device asked for one kick, not one per buffer. */
        add_simple(&h, 1);
        g_assert_cmpuint(kicks(&h), ==, !event_idx ? 3 : l->packed ? 1 : 2);
        g_assert_false(virtio_queue_empty(h.f.vq));
        while ((e = virtqueue_pop(h.f.vq, sizeof(*e)))) {
            device_complete(&h, e, 0, false);
            virtqueue_flush(h.f.vq, 1);
        }
        driver_reap(&h, false);
        g_assert_cmpuint(h.reaped, ==, 4);
        harness_cleanup(&h);
    }
}

static void test_interrupt_suppression(gconstpointer data)
{
    const VqLayout *l = data;

    for (int event_idx = 0; event_idx < 2; event_idx++) {
        VirtQueueElement *e;
        Harness h;

        harness_init(&h, l, 8, event_idx ? ring_extras : 0, 23);
        add_simple(&h, 4);
        vdriver_disable_cb(h.drv);
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        device_complete(&h, e, 0, false);
        virtqueue_flush(h.f.vq, 1);
        virtio_notify(&h.f.vdev, h.f.vq);
        g_assert_cmpuint(h.f.queue_notifies, ==, 0);
        /* Enabling again reports the pending buffer: the driver polls instead of waiting. */
        g_assert_true(vdriver_enable_cb(h.drv));
        driver_reap(&h, false);
        g_assert_false(vdriver_enable_cb(h.drv));
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        device_complete(&h, e, 0, false);
        virtqueue_flush(h.f.vq, 1);
        virtio_notify(&h.f.vdev, h.f.vq);
        g_assert_cmpuint(h.f.queue_notifies, ==, 1);
        /* Not reaped yet: with event idx the next buffer does not interrupt again. */
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        device_complete(&h, e, 0, false);
        virtqueue_flush(h.f.vq, 1);
        virtio_notify(&h.f.vdev, h.f.vq);
        g_assert_cmpuint(h.f.queue_notifies, ==, event_idx ? 1 : 2);
        driver_reap(&h, false);
        g_assert_cmpuint(h.reaped, ==, 3);
        e = virtqueue_pop(h.f.vq, sizeof(*e));
        virtqueue_element_free(e);
        virtqueue_rewind(h.f.vq, 1);
        harness_cleanup(&h);
    }
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        GTestDataFunc fn;
    } cases[] = {
        { "random_completion_orders", test_random_completion_orders },
        { "ordered_api_on_every_layout", test_ordered_api_on_every_layout },
        { "in_order_batch_skips_completed_entries", test_in_order_batch_skips_completed_entries },
        { "in_order_batch_stops_at_partial_buffer", test_in_order_batch_stops_at_partial_buffer },
        { "ordered_use_without_in_order", test_ordered_use_without_in_order },
        { "queue_sizes", test_queue_sizes },
        { "chain_as_long_as_ring", test_chain_as_long_as_ring },
        { "indices_wrap_after_65536_requests", test_indices_wrap_after_65536_requests },
        { "detach_mid_flight", test_detach_mid_flight },
        { "reset_mid_flight", test_reset_mid_flight },
        { "queue_reset_mid_flight", test_queue_reset_mid_flight },
        { "unpop_and_rewind", test_unpop_and_rewind },
        { "save_restore_indices", test_save_restore_indices },
        { "inflight_resubmission_overrun", test_inflight_resubmission },
        { "inflight_resubmission_completes", test_inflight_resubmission_completes },
        { "kick_suppression", test_kick_suppression },
        { "interrupt_suppression", test_interrupt_suppression },
    };

    g_test_init(&argc, &argv, NULL);
    for (unsigned l = 0; l < G_N_ELEMENTS(vq_layouts); l++) {
        for (unsigned c = 0; c < G_N_ELEMENTS(cases); c++) {
            char *path = g_strdup_printf("/virtqueue/%s/%s", vq_layouts[l].name, cases[c].name);
            g_test_add_data_func(path, &vq_layouts[l], cases[c].fn);
            g_free(path);
        }
    }
    return g_test_run();
}
