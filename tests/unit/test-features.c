/*
 * The feature registry and negotiation rules (STYLE.md §7).
 */
#include <errno.h>
#include <glib.h>
#include <string.h>

#include "hw/virtio/virtio.h"

static void test_offered_bits_are_registered_and_implemented(void)
{
    GuestMemory mem;
    VirtIODevice vdev;

    guest_memory_init(&mem);
    g_assert_cmpint(virtio_init(&vdev, "test", 1, 0, &mem, 1, 8), ==, 0);
    for (unsigned bit = 0; bit < 64; bit++) {
        const VirtIOFeatureInfo *f;
        if (!virtio_has_feature(vdev.host_features, bit)) {
            continue;
        }
        f = virtio_feature_lookup(vdev.device_id, bit);
        g_assert_nonnull(f);
        g_assert_true(f->implemented);
    }
    virtio_cleanup(&vdev);
}

static void test_ring_features_are_the_core_bits(void)
{
    uint64_t ring = virtio_ring_features();
    const unsigned must[] = {
        VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX,
        VIRTIO_F_RING_PACKED, VIRTIO_F_IN_ORDER,
    };
    const unsigned never[] = {
        VIRTIO_F_BAD_FEATURE, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_NOTIFICATION_DATA,
        VIRTIO_F_RING_RESET, VIRTIO_F_SR_IOV,
    };

    for (unsigned i = 0; i < G_N_ELEMENTS(must); i++) {
        g_assert_true(virtio_has_feature(ring, must[i]));
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(never); i++) {
        g_assert_false(virtio_has_feature(ring, never[i]));
    }
    /* Masks are built with 1ULL << bit: bit 35 lands above 32. */
    g_assert_cmphex(ring & (1ULL << 35), ==, 1ULL << 35);
}

static void test_registry_has_unique_rows(void)
{
    for (const VirtIOFeatureInfo *a = virtio_feature_table; a->name; a++) {
        g_assert_cmpuint(a->bit, <, 64);
        for (const VirtIOFeatureInfo *b = a + 1; b->name; b++) {
            g_assert_false(a->bit == b->bit && a->device_id == b->device_id);
        }
    }
    g_assert_cmpstr(virtio_feature_name(0, VIRTIO_F_IN_ORDER), ==, "IN_ORDER");
    g_assert_cmpstr(virtio_feature_name(0, 63), ==, "unknown");
}

static void test_describe_lists_names(void)
{
    char buf[128], tiny[8];

    virtio_features_describe(0, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_F_IN_ORDER) | (1ULL << 5),
                             buf, sizeof(buf));
    g_assert_cmpstr(buf, ==, "bit5,VERSION_1,IN_ORDER");
    virtio_features_describe(0, 1ULL << VIRTIO_F_VERSION_1, tiny, sizeof(tiny));
    g_assert_cmpuint(strlen(tiny), <, sizeof(tiny));
}

static void test_negotiation_rules(void)
{
    GuestMemory mem;
    VirtIODevice vdev;
    uint64_t v1 = 1ULL << VIRTIO_F_VERSION_1;

    guest_memory_init(&mem);
    g_assert_cmpint(virtio_init(&vdev, "test", 1, 0, &mem, 1, 8), ==, 0);
    /* A bit that was not offered is refused and nothing is accepted. */
    g_assert_cmpint(virtio_set_features(&vdev, v1 | (1ULL << VIRTIO_F_ACCESS_PLATFORM)), ==, -EINVAL);
    g_assert_cmphex(vdev.guest_features, ==, 0);

    /* Without VERSION_1 (legacy) FEATURES_OK does not stick. */
    g_assert_cmpint(virtio_set_features(&vdev, 1ULL << VIRTIO_F_IN_ORDER), ==, 0);
    g_assert_cmpint(virtio_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                      VIRTIO_CONFIG_S_FEATURES_OK), ==, -EINVAL);
    g_assert_false(vdev.status & VIRTIO_CONFIG_S_FEATURES_OK);

    g_assert_cmpint(virtio_set_features(&vdev, v1 | (1ULL << VIRTIO_F_IN_ORDER)), ==, 0);
    g_assert_cmpint(virtio_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                      VIRTIO_CONFIG_S_FEATURES_OK), ==, 0);
    g_assert_true(vdev.status & VIRTIO_CONFIG_S_FEATURES_OK);
    /* Frozen once accepted (spec 3.1.1). */
    g_assert_cmpint(virtio_set_features(&vdev, v1), ==, -EBUSY);
    g_assert_true(virtio_vdev_has_feature(&vdev, VIRTIO_F_IN_ORDER));

    /* Status 0 is a reset: features forgotten. */
    g_assert_cmpint(virtio_set_status(&vdev, 0), ==, 0);
    g_assert_cmphex(vdev.guest_features, ==, 0);
    g_assert_cmpuint(vdev.status, ==, 0);
    virtio_cleanup(&vdev);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/features/offered_bits_are_registered_and_implemented",
                    test_offered_bits_are_registered_and_implemented);
    g_test_add_func("/features/ring_features_are_the_core_bits", test_ring_features_are_the_core_bits);
    g_test_add_func("/features/registry_has_unique_rows", test_registry_has_unique_rows);
    g_test_add_func("/features/describe_lists_names", test_describe_lists_names);
    g_test_add_func("/features/negotiation_rules", test_negotiation_rules);
    return g_test_run();
}
