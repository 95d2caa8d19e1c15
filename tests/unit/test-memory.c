/*
 * Guest memory: region table rules and bounds-checked translation.
 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "exec/memory.h"

static uint8_t ram_a[4096], ram_b[4096], rom[4096];

static void setup_two_regions(GuestMemory *mem)
{
    guest_memory_init(mem);
    /* [0x1000, 0x2000) and [0x2000, 0x3000) touch; rom far away, read-only. */
    g_assert_cmpint(guest_memory_add(mem, 0x2000, sizeof(ram_b), ram_b, true), ==, 0);
    g_assert_cmpint(guest_memory_add(mem, 0x1000, sizeof(ram_a), ram_a, true), ==, 0);
    g_assert_cmpint(guest_memory_add(mem, 0x100000, sizeof(rom), rom, false), ==, 0);
}

static void test_add_rejects_bad_regions(void)
{
    GuestMemory mem;

    setup_two_regions(&mem);
    g_assert_cmpint(guest_memory_add(&mem, 0x5000, 0, ram_a, true), ==, -EINVAL);
    g_assert_cmpint(guest_memory_add(&mem, 0x5000, 16, NULL, true), ==, -EINVAL);
    /* gpa + size wraps past 2^64 */
    g_assert_cmpint(guest_memory_add(&mem, UINT64_MAX - 15, 32, ram_a, true), ==, -EINVAL);
    /* overlaps: inside, straddling start, straddling end, covering */
    g_assert_cmpint(guest_memory_add(&mem, 0x1800, 16, ram_a, true), ==, -EINVAL);
    g_assert_cmpint(guest_memory_add(&mem, 0xff0, 32, ram_a, true), ==, -EINVAL);
    g_assert_cmpint(guest_memory_add(&mem, 0x2ff0, 32, ram_a, true), ==, -EINVAL);
    g_assert_cmpint(guest_memory_add(&mem, 0, 0x200000, ram_a, true), ==, -EINVAL);
    g_assert_cmpuint(mem.nregions, ==, 3);
    /* the very last byte of the address space is a valid region end */
    g_assert_cmpint(guest_memory_add(&mem, UINT64_MAX - 15, 16, ram_a, true), ==, 0);
}

static void test_table_full(void)
{
    GuestMemory mem;
    unsigned i;

    guest_memory_init(&mem);
    for (i = 0; i < GUEST_MEMORY_MAX_REGIONS; i++) {
        g_assert_cmpint(guest_memory_add(&mem, i * 0x10000ull, 16, ram_a, true), ==, 0);
    }
    g_assert_cmpint(guest_memory_add(&mem, i * 0x10000ull, 16, ram_a, true), ==, -ENOSPC);
    g_assert_cmpint(guest_memory_remove(&mem, 0x10000, 16), ==, 0);
    g_assert_cmpint(guest_memory_remove(&mem, 0x10000, 16), ==, -ENOENT);
    g_assert_cmpint(guest_memory_add(&mem, 0x10000, 16, ram_b, true), ==, 0);
}

static void test_translate_clamps_to_region(void)
{
    GuestMemory mem;
    uint64_t len = 0x100;
    uint8_t *p;

    setup_two_regions(&mem);
    p = guest_memory_translate(&mem, 0x1f80, &len, false);
    g_assert(p == ram_a + 0xf80);
    g_assert_cmpuint(len, ==, 0x80);
    len = 16;
    g_assert_null(guest_memory_translate(&mem, 0x3000, &len, false));
    len = 16;
    g_assert_null(guest_memory_translate(&mem, 0xfff, &len, false));
    len = 16;
    g_assert_nonnull(guest_memory_translate(&mem, 0x100000, &len, false));
    len = 16;
    g_assert_null(guest_memory_translate(&mem, 0x100000, &len, true));   /* read-only */
}

static void test_map_contig_needs_one_region(void)
{
    GuestMemory mem;

    setup_two_regions(&mem);
    g_assert(guest_memory_map_contig(&mem, 0x1000, 4096, true) == ram_a);
    /* adjacent regions are still two host mappings: not contiguous */
    g_assert_null(guest_memory_map_contig(&mem, 0x1ff0, 32, false));
    g_assert_null(guest_memory_map_contig(&mem, 0x1000, 0, false));
    g_assert_null(guest_memory_map_contig(&mem, UINT64_MAX - 3, 8, false));
}

static void test_map_sg_splits_and_bounds(void)
{
    GuestMemory mem;
    struct iovec iov[4];

    setup_two_regions(&mem);
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x1ff0, 0x20, true, iov, 4), ==, 2);
    g_assert(iov[0].iov_base == ram_a + 0xff0);
    g_assert_cmpuint(iov[0].iov_len, ==, 0x10);
    g_assert(iov[1].iov_base == ram_b);
    g_assert_cmpuint(iov[1].iov_len, ==, 0x10);
    /* one iovec short */
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x1ff0, 0x20, true, iov, 1), ==, -ENOBUFS);
    /* runs off the end of RAM into a hole */
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x2ff0, 0x20, false, iov, 4), ==, -EFAULT);
    /* overflowing length */
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x1000, UINT64_MAX, false, iov, 4), ==, -EFAULT);
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x1000, 0, false, iov, 4), ==, 0);
    g_assert_cmpint(guest_memory_map_sg(&mem, 0x100000, 8, true, iov, 4), ==, -EFAULT);
}

static void test_read_write_across_regions(void)
{
    GuestMemory mem;
    uint8_t out[64], in[64];

    setup_two_regions(&mem);
    for (unsigned i = 0; i < sizeof(out); i++) {
        out[i] = i * 7 + 1;
    }
    g_assert_cmpint(guest_memory_write(&mem, 0x1fe0, out, sizeof(out)), ==, 0);
    g_assert_cmpint(memcmp(ram_a + 0xfe0, out, 32), ==, 0);
    g_assert_cmpint(memcmp(ram_b, out + 32, 32), ==, 0);
    g_assert_cmpint(guest_memory_read(&mem, 0x1fe0, in, sizeof(in)), ==, 0);
    g_assert_cmpint(memcmp(in, out, sizeof(in)), ==, 0);

    /* a failing copy copies nothing */
    memset(ram_b + 0xfe0, 0xaa, 32);
    g_assert_cmpint(guest_memory_write(&mem, 0x2fe0, out, sizeof(out)), ==, -EFAULT);
    g_assert_cmpuint(ram_b[0xfe0], ==, 0xaa);
    g_assert_cmpint(guest_memory_write(&mem, 0x100000, out, 4), ==, -EFAULT);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/memory/add_rejects_bad_regions", test_add_rejects_bad_regions);
    g_test_add_func("/memory/table_full", test_table_full);
    g_test_add_func("/memory/translate_clamps_to_region", test_translate_clamps_to_region);
    g_test_add_func("/memory/map_contig_needs_one_region", test_map_contig_needs_one_region);
    g_test_add_func("/memory/map_sg_splits_and_bounds", test_map_sg_splits_and_bounds);
    g_test_add_func("/memory/read_write_across_regions", test_read_write_across_regions);
    return g_test_run();
}
