/*
 * Hostile ring input (HOSTILE-INPUT.md "Rings"): every malformed ring a
 * driver can build marks the device broken with a clear message, and the
 * device then stops touching the ring. One test per class, on every layout
 * the class applies to. Run under ASan/UBSan by `make check`.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>

#include "vq-fixture.h"

#define F_INDIRECT (1ULL << VIRTIO_RING_F_INDIRECT_DESC)

typedef struct RawDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;             /* WRITE / INDIRECT; NEXT is added for chains */
} RawDesc;

/*
 * Post @n descriptors as one chain the honest way (split: table slots from 0
 * chained by next, head in the avail ring; packed: ring positions from 0, id
 * in every descriptor, head flags last).
 */
static void raw_post(VqFixture *f, const RawDesc *d, unsigned n, uint16_t id)
{
    if (f->layout->packed) {
        for (unsigned i = n; i-- > 0;) {
            uint16_t flags = d[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
            vqf_packed_desc(f, i, d[i].addr, d[i].len, id, flags, true);
        }
        return;
    }
    for (unsigned i = 0; i < n; i++) {
        uint16_t flags = d[i].flags | (i + 1 < n ? VRING_DESC_F_NEXT : 0);
        vqf_split_desc(f, i, d[i].addr, d[i].len, flags, i + 1);
    }
    vqf_split_avail_add(f, 0);
}

static void setup(VqFixture *f, gconstpointer data, unsigned num, uint64_t extra)
{
    vqf_init(f, data, num, extra, 64 * 1024);
    g_assert_cmpint(vqf_start(f), ==, 0);
}

/* The device is broken, says why, asked for reset, and no longer pops. */
static void assert_broken(VqFixture *f, const char *why)
{
    VirtQueueElement elem;
    struct iovec sg[8];

    g_assert_true(f->vdev.broken);
    g_assert_true(f->vdev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
    g_assert_cmpuint(f->config_notifies, >=, 1);
    if (!strstr(f->vdev.error_msg, why)) {
        g_error("error \"%s\" does not mention \"%s\"", f->vdev.error_msg, why);
    }
    g_assert_cmpint(virtqueue_pop_elem(f->vq, &elem, sg, 8), ==, 0);
    g_assert_null(virtqueue_pop(f->vq, sizeof(VirtQueueElement)));
    g_assert_false(virtio_should_notify(&f->vdev, f->vq));
}

static void pop_expect_broken(VqFixture *f, const char *why)
{
    VirtQueueElement elem;
    struct iovec sg[64];

    g_assert_cmpint(virtqueue_pop_elem(f->vq, &elem, sg, 64), ==, -1);
    assert_broken(f, why);
}

static void test_chain_loop(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    if (f.layout->packed) {
        /* Every descriptor says NEXT: the chain would run round the ring forever. */
        for (unsigned i = 8; i-- > 0;) {
            vqf_packed_desc(&f, i, f.data, 16, 0, VRING_DESC_F_NEXT, true);
        }
        pop_expect_broken(&f, "longer than queue size");
    } else {
        vqf_split_desc(&f, 0, f.data, 16, VRING_DESC_F_NEXT, 1);
        vqf_split_desc(&f, 1, f.data, 16, VRING_DESC_F_NEXT, 0);
        vqf_split_avail_add(&f, 0);
        pop_expect_broken(&f, "loops");
    }
    vqf_cleanup(&f);
}

static void test_indirect_loop(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, F_INDIRECT);
    vqf_table_desc(&f, f.indirect, 0, f.data, 16, VRING_DESC_F_NEXT, 1);
    vqf_table_desc(&f, f.indirect, 1, f.data, 16, VRING_DESC_F_NEXT, 0);
    vqf_split_desc(&f, 0, f.indirect, 32, VRING_DESC_F_INDIRECT, 0);
    vqf_split_avail_add(&f, 0);
    pop_expect_broken(&f, "loops");
    vqf_cleanup(&f);
}

static void test_indirect_nested(gconstpointer data)
{
    VqFixture f;
    RawDesc head = { 0, 32, VRING_DESC_F_INDIRECT };

    setup(&f, data, 8, F_INDIRECT);
    head.addr = f.indirect;
    if (f.layout->packed) {
        vqf_packed_table_desc(&f, f.indirect, 0, f.indirect + 256, 16, VRING_DESC_F_INDIRECT);
        vqf_packed_table_desc(&f, f.indirect, 1, f.data, 16, 0);
    } else {
        vqf_table_desc(&f, f.indirect, 0, f.indirect + 256, 16, VRING_DESC_F_INDIRECT, 0);
    }
    raw_post(&f, &head, 1, 0);
    pop_expect_broken(&f, "nested indirect");
    vqf_cleanup(&f);
}

static void test_indirect_with_next(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, F_INDIRECT);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 1, f.data, 16, 0, 0, true);
        vqf_packed_desc(&f, 0, f.indirect, 16, 0, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, true);
    } else {
        vqf_split_desc(&f, 0, f.indirect, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
        vqf_split_desc(&f, 1, f.data, 16, 0, 0);
        vqf_split_avail_add(&f, 0);
    }
    pop_expect_broken(&f, "INDIRECT and NEXT");
    vqf_cleanup(&f);
}

static void test_indirect_not_at_head(gconstpointer data)
{
    VqFixture f;
    RawDesc chain[2];

    setup(&f, data, 8, F_INDIRECT);
    chain[0] = (RawDesc) { f.data, 16, 0 };
    chain[1] = (RawDesc) { f.indirect, 16, VRING_DESC_F_INDIRECT };
    raw_post(&f, chain, 2, 0);
    pop_expect_broken(&f, "indirect descriptor");
    vqf_cleanup(&f);
}

static void check_indirect_len(gconstpointer data, uint32_t len, const char *why)
{
    VqFixture f;
    RawDesc head;

    setup(&f, data, 8, F_INDIRECT);
    head = (RawDesc) { f.indirect, len, VRING_DESC_F_INDIRECT };
    for (unsigned i = 0; i < 16; i++) {
        vqf_table_desc(&f, f.indirect, i, f.data, 16, 0, 0);
    }
    raw_post(&f, &head, 1, 0);
    pop_expect_broken(&f, why);
    vqf_cleanup(&f);
}

static void test_indirect_bad_length(gconstpointer data)
{
    check_indirect_len(data, 0, "multiple of 16");
    check_indirect_len(data, 24, "multiple of 16");
    /* 9 entries on a queue of 8: a chain longer than the queue (spec 2.7.5.3.1) */
    check_indirect_len(data, 9 * 16, "exceeds queue size");
}

static void test_indirect_without_feature(gconstpointer data)
{
    VqFixture f;
    RawDesc head;

    setup(&f, data, 8, 0);
    head = (RawDesc) { f.indirect, 16, VRING_DESC_F_INDIRECT };
    raw_post(&f, &head, 1, 0);
    pop_expect_broken(&f, "without VIRTIO_RING_F_INDIRECT_DESC");
    vqf_cleanup(&f);
}

/* Filled but not yet flushed is still in flight: the driver may not reuse the id yet. */
static void test_same_buffer_again_before_flush(gconstpointer data)
{
    VqFixture f;
    VirtQueueElement elem;
    struct iovec sg[4];

    setup(&f, data, 8, 0);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 0, f.data, 16, 3, VRING_DESC_F_WRITE, true);
    } else {
        vqf_split_desc(&f, 0, f.data, 16, VRING_DESC_F_WRITE, 0);
        vqf_split_avail_add(&f, 0);
    }
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 4), ==, 1);
    virtqueue_fill(f.vq, &elem, 16, 0);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 1, f.data, 16, 3, VRING_DESC_F_WRITE, true);
    } else {
        vqf_split_avail_add(&f, 0);
    }
    pop_expect_broken(&f, "still in flight");
    vqf_cleanup(&f);
}

/* The spec sets no alignment for indirect tables: an odd address is legal and read right. */
static void test_indirect_table_unaligned(gconstpointer data)
{
    VqFixture f;
    VirtQueueElement elem;
    struct iovec sg[4];
    RawDesc head;
    hwaddr table;

    setup(&f, data, 8, F_INDIRECT);
    table = f.data + 4096 + 1;
    if (f.layout->packed) {
        vqf_packed_table_desc(&f, table, 0, f.data, 8, 0);
        vqf_packed_table_desc(&f, table, 1, f.data + 64, 32, VRING_DESC_F_WRITE);
    } else {
        vqf_table_desc(&f, table, 0, f.data, 8, VRING_DESC_F_NEXT, 1);
        vqf_table_desc(&f, table, 1, f.data + 64, 32, VRING_DESC_F_WRITE, 0);
    }
    head = (RawDesc) { table, 32, VRING_DESC_F_INDIRECT };
    raw_post(&f, &head, 1, 0);
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 4), ==, 1);
    g_assert_false(f.vdev.broken);
    g_assert_cmpuint(elem.out_num, ==, 1);
    g_assert_cmpuint(elem.in_num, ==, 1);
    g_assert_true(elem.out_sg[0].iov_base == vqf_host(&f, f.data));
    g_assert_cmpuint(elem.in_sg[0].iov_len, ==, 32);
    vqf_cleanup(&f);
}

static void test_indirect_table_outside_memory(gconstpointer data)
{
    VqFixture f;
    RawDesc head;

    setup(&f, data, 8, F_INDIRECT);
    head = (RawDesc) { VQF_RAM_GPA + f.ram_size - 16, 32, VRING_DESC_F_INDIRECT };
    raw_post(&f, &head, 1, 0);
    pop_expect_broken(&f, "indirect table");
    vqf_cleanup(&f);
}

static void test_buffer_outside_memory(gconstpointer data)
{
    static const struct { uint64_t off; uint64_t addr; uint32_t len; } cases[] = {
        { 0, 0x1000, 16 },                      /* below RAM */
        { 1, 0, 32 },                           /* runs off the end of RAM */
        { 0, UINT64_MAX - 7, 64 },              /* addr + len wraps */
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(cases); i++) {
        VqFixture f;
        RawDesc d;

        setup(&f, data, 8, 0);
        d = (RawDesc) { cases[i].off ? VQF_RAM_GPA + f.ram_size - 16 : cases[i].addr, cases[i].len,
                        VRING_DESC_F_WRITE };
        raw_post(&f, &d, 1, 0);
        pop_expect_broken(&f, "outside guest memory");
        vqf_cleanup(&f);
    }
}

static void test_write_to_read_only_memory(gconstpointer data)
{
    static uint8_t rom[4096];
    VqFixture f;
    RawDesc d = { 0x10000000, 64, VRING_DESC_F_WRITE };

    setup(&f, data, 8, 0);
    g_assert_cmpint(guest_memory_add(&f.mem, 0x10000000, sizeof(rom), rom, false), ==, 0);
    raw_post(&f, &d, 1, 0);
    pop_expect_broken(&f, "writable buffer");
    vqf_cleanup(&f);
}

static void test_readable_after_writable(gconstpointer data)
{
    VqFixture f;
    RawDesc chain[2];

    setup(&f, data, 8, 0);
    chain[0] = (RawDesc) { f.data, 16, VRING_DESC_F_WRITE };
    chain[1] = (RawDesc) { f.data + 64, 16, 0 };
    raw_post(&f, chain, 2, 0);
    pop_expect_broken(&f, "readable descriptor after a writable");
    vqf_cleanup(&f);
}

static void test_avail_index_jump(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    vqf_split_desc(&f, 0, f.data, 16, 0, 0);
    vqf_split_set_avail_idx(&f, 9);     /* 9 buffers on a ring of 8 */
    pop_expect_broken(&f, "avail index moved 9");
    vqf_cleanup(&f);
}

static void test_head_out_of_range(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 0, f.data, 16, 8, 0, true);  /* buffer id == queue size */
        pop_expect_broken(&f, "buffer id 8 out of range");
    } else {
        vqf_split_avail_add(&f, 8);
        pop_expect_broken(&f, "head 8 out of range");
    }
    vqf_cleanup(&f);
}

static void test_next_out_of_range(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    vqf_split_desc(&f, 0, f.data, 16, VRING_DESC_F_NEXT, 8);
    vqf_split_avail_add(&f, 0);
    pop_expect_broken(&f, "next 8 out of range");
    vqf_cleanup(&f);
}

static void test_same_buffer_in_flight_twice(gconstpointer data)
{
    VqFixture f;
    VirtQueueElement elem;
    struct iovec sg[4];

    setup(&f, data, 8, 0);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 1, f.data, 16, 3, 0, true);
        vqf_packed_desc(&f, 0, f.data, 16, 3, 0, true);
    } else {
        vqf_split_desc(&f, 0, f.data, 16, 0, 0);
        vqf_split_avail_add(&f, 0);
        vqf_split_avail_add(&f, 0);
    }
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 4), ==, 1);
    pop_expect_broken(&f, "still in flight");
    vqf_cleanup(&f);
}

static void test_packed_overrun_of_in_flight_descriptors(gconstpointer data)
{
    VqFixture f;
    VirtQueueElement elem;
    struct iovec sg[4];

    setup(&f, data, 2, 0);
    vqf_packed_desc(&f, 0, f.data, 16, 0, 0, true);
    vqf_packed_desc(&f, 1, f.data, 16, 1, 0, true);
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 4), ==, 1);
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 4), ==, 1);
    /* Position 0 again, second lap, while both buffers are still the device's. */
    vqf_packed_desc(&f, 0, f.data, 16, 1, 0, false);
    pop_expect_broken(&f, "still in flight");
    vqf_cleanup(&f);
}

static void test_chain_longer_than_4g(gconstpointer data)
{
    const uint64_t big = 0x80000000ull, gpa = 0x400000000ull;
    void *huge = mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    VqFixture f;
    RawDesc chain[3];

    g_assert_true(huge != MAP_FAILED);
    setup(&f, data, 8, 0);
    /* Never touched: the device only maps buffers at pop time. */
    g_assert_cmpint(guest_memory_add(&f.mem, gpa, big, huge, true), ==, 0);
    chain[0] = (RawDesc) { gpa, (uint32_t)big, 0 };
    chain[1] = (RawDesc) { gpa, (uint32_t)big, 0 };
    chain[2] = (RawDesc) { gpa, 1, 0 };
    raw_post(&f, chain, 3, 0);
    pop_expect_broken(&f, "longer than 4 GiB");
    vqf_cleanup(&f);
    munmap(huge, big);
}

static void test_too_many_segments(gconstpointer data)
{
    VqFixture f;
    RawDesc chain[4];
    VirtQueueElement elem;
    struct iovec sg[3];

    setup(&f, data, 8, 0);
    for (unsigned i = 0; i < 4; i++) {
        chain[i] = (RawDesc) { f.data + 64 * i, 16, 0 };
    }
    raw_post(&f, chain, 4, 0);
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 3), ==, -1);
    assert_broken(&f, "more than 3 segments");
    vqf_cleanup(&f);
}

static void test_zero_length_descriptors_neither_spin_nor_count(gconstpointer data)
{
    VqFixture f;
    RawDesc chain[4];
    VirtQueueElement elem;
    struct iovec sg[8];

    setup(&f, data, 8, 0);
    chain[0] = (RawDesc) { f.data, 0, 0 };
    chain[1] = (RawDesc) { f.data, 32, 0 };
    chain[2] = (RawDesc) { f.data, 0, VRING_DESC_F_WRITE };
    chain[3] = (RawDesc) { f.data + 64, 8, VRING_DESC_F_WRITE };
    raw_post(&f, chain, 4, 5);
    g_assert_cmpint(virtqueue_pop_elem(f.vq, &elem, sg, 8), ==, 1);
    g_assert_false(f.vdev.broken);
    g_assert_cmpuint(elem.out_num, ==, 1);
    g_assert_cmpuint(elem.in_num, ==, 1);
    g_assert_cmpuint(elem.in_len, ==, 8);
    g_assert_cmpuint(elem.out_sg[0].iov_len, ==, 32);
    g_assert_cmpuint(elem.ndescs, ==, f.layout->packed ? 4 : 1);
    g_assert_cmpuint(elem.index, ==, f.layout->packed ? 5 : 0);
    vqf_cleanup(&f);
}

/* ---- ring placement, validated on activation ---- */

static void start_expect_broken(VqFixture *f, const char *why)
{
    g_assert_cmpint(vqf_start(f), ==, -1);
    assert_broken(f, why);
}

static void test_ring_misaligned(gconstpointer data)
{
    VqFixture f;

    vqf_init(&f, data, 8, 0, 4096);
    virtio_queue_set_rings(&f.vdev, 0, f.desc + 8, f.driver, f.device);
    start_expect_broken(&f, "not 16-byte aligned");
    vqf_cleanup(&f);

    vqf_init(&f, data, 8, 0, 4096);
    virtio_queue_set_rings(&f.vdev, 0, f.desc, f.driver, f.device + 2);
    start_expect_broken(&f, "aligned");
    vqf_cleanup(&f);
}

static void test_ring_outside_memory(gconstpointer data)
{
    VqFixture f;

    vqf_init(&f, data, 8, 0, 4096);
    /* The descriptor area starts inside RAM and runs off its end. */
    virtio_queue_set_rings(&f.vdev, 0, VQF_RAM_GPA + f.ram_size - 64, f.driver, f.device);
    start_expect_broken(&f, "not in");
    vqf_cleanup(&f);
}

static void test_ring_written_area_read_only(gconstpointer data)
{
    static uint8_t rom[4096] __attribute__((aligned(64)));
    VqFixture f;

    vqf_init(&f, data, 8, 0, 4096);
    g_assert_cmpint(guest_memory_add(&f.mem, 0x20000000, sizeof(rom), rom, false), ==, 0);
    /* split: the used ring; packed: the descriptor ring. Both are device-written. */
    if (f.layout->packed) {
        virtio_queue_set_rings(&f.vdev, 0, 0x20000000, f.driver, f.device);
    } else {
        virtio_queue_set_rings(&f.vdev, 0, f.desc, f.driver, 0x20000000);
    }
    start_expect_broken(&f, "writable");
    vqf_cleanup(&f);
}

static void test_queue_size_rules(gconstpointer data)
{
    const VqLayout *layout = data;
    VqFixture f;

    vqf_init(&f, data, 8, 0, 4096);
    g_assert_cmpint(virtio_queue_set_num(&f.vdev, 0, 0), ==, -EINVAL);
    g_assert_cmpint(virtio_queue_set_num(&f.vdev, 0, 257), ==, -EINVAL);    /* max is 256 */
    g_assert_cmpint(virtio_queue_set_num(&f.vdev, 0, 3), ==, 0);
    if (layout->packed) {
        g_assert_cmpint(vqf_start(&f), ==, 0);       /* packed sizes need not be powers of two */
    } else {
        start_expect_broken(&f, "invalid split queue size 3");
    }
    vqf_cleanup(&f);
}

static void test_config_frozen_while_running(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    g_assert_cmpint(virtio_queue_set_num(&f.vdev, 0, 4), ==, -EBUSY);
    g_assert_cmpint(virtio_queue_set_rings(&f.vdev, 0, 0, 0, 0), ==, -EBUSY);
    g_assert_cmpint(virtio_queue_set_enabled(&f.vdev, 0, false), ==, -EBUSY);
    g_assert_cmpint(virtio_queue_set_last_avail_idx(&f.vdev, 0, 5), ==, -EBUSY);
    g_assert_cmpuint(virtio_queue_get_num(&f.vdev, 0), ==, 8);
    g_assert_false(f.vdev.broken);
    vqf_cleanup(&f);
}

static void test_memory_change_revalidates_rings(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    g_assert_cmpint(virtio_device_memory_changed(&f.vdev), ==, 0);
    g_assert_cmpint(guest_memory_remove(&f.mem, VQF_RAM_GPA, f.ram_size), ==, 0);
    g_assert_cmpint(virtio_device_memory_changed(&f.vdev), ==, -EFAULT);
    assert_broken(&f, "not in");
    vqf_cleanup(&f);
}

static void test_reset_clears_broken(gconstpointer data)
{
    VqFixture f;

    setup(&f, data, 8, 0);
    if (f.layout->packed) {
        vqf_packed_desc(&f, 0, f.data, 16, 8, 0, true);
    } else {
        vqf_split_avail_add(&f, 8);
    }
    pop_expect_broken(&f, "out of range");
    virtio_reset(&f.vdev);
    g_assert_false(f.vdev.broken);
    g_assert_cmpuint(f.vdev.status, ==, 0);
    g_assert_cmpstr(f.vdev.error_msg, ==, "");
    g_assert_false(virtio_queue_is_running(&f.vdev, 0));
    vqf_cleanup(&f);
}

typedef struct HostileCase {
    const char *name;
    GTestDataFunc fn;
    bool split;
    bool packed;
} HostileCase;

static const HostileCase cases[] = {
    { "chain_loop", test_chain_loop, true, true },
    { "indirect_loop", test_indirect_loop, true, false },
    { "indirect_nested", test_indirect_nested, true, true },
    { "indirect_with_next", test_indirect_with_next, true, true },
    { "indirect_not_at_head", test_indirect_not_at_head, true, true },
    { "indirect_bad_length", test_indirect_bad_length, true, true },
    { "indirect_without_feature", test_indirect_without_feature, true, true },
    { "indirect_table_outside_memory", test_indirect_table_outside_memory, true, true },
    { "buffer_outside_memory", test_buffer_outside_memory, true, true },
    { "write_to_read_only_memory", test_write_to_read_only_memory, true, true },
    { "readable_after_writable", test_readable_after_writable, true, true },
    { "avail_index_jump", test_avail_index_jump, true, false },
    { "head_out_of_range", test_head_out_of_range, true, true },
    { "next_out_of_range", test_next_out_of_range, true, false },
    { "same_buffer_in_flight_twice", test_same_buffer_in_flight_twice, true, true },
    { "same_buffer_again_before_flush", test_same_buffer_again_before_flush, true, true },
    { "indirect_table_unaligned", test_indirect_table_unaligned, true, true },
    { "packed_overrun_of_in_flight_descriptors", test_packed_overrun_of_in_flight_descriptors, false, true },
    { "chain_longer_than_4g", test_chain_longer_than_4g, true, true },
    { "too_many_segments", test_too_many_segments, true, true },
    { "zero_length_descriptors_neither_spin_nor_count", test_zero_length_descriptors_neither_spin_nor_count, true, true },
    { "ring_misaligned", test_ring_misaligned, true, true },
    { "ring_outside_memory", test_ring_outside_memory, true, true },
    { "ring_written_area_read_only", test_ring_written_area_read_only, true, true },
    { "queue_size_rules", test_queue_size_rules, true, true },
    { "config_frozen_while_running", test_config_frozen_while_running, true, true },
    { "memory_change_revalidates_rings", test_memory_change_revalidates_rings, true, true },
    { "reset_clears_broken", test_reset_clears_broken, true, true },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (unsigned l = 0; l < G_N_ELEMENTS(vq_layouts); l++) {
        for (unsigned c = 0; c < G_N_ELEMENTS(cases); c++) {
            bool applies = vq_layouts[l].packed ? cases[c].packed : cases[c].split;
            if (applies) {
                g_autofree char *path = g_strdup_printf("/hostile/%s/%s", vq_layouts[l].name, cases[c].name);
                g_test_add_data_func(path, &vq_layouts[l], cases[c].fn);
            }
        }
    }
    return g_test_run();
}
