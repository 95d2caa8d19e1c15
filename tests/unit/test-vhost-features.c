/*
 * The vhost feature-bit tables (hw/virtio/vhost.c): every table holds
 * VIRTIO_F_IN_ORDER, and the offer is an allowlist — a listed bit passes only
 * when both the device model and the backend offer it, an unlisted bit is the
 * device model's alone, and a bit only the backend offers never passes.
 */
#include <glib.h>

#include "hw/virtio/vhost.h"
#include "hw/virtio/virtio-blk.h"

static void test_every_table_has_in_order(void)
{
    unsigned n = 0;

    for (const VhostFeatureTableInfo *t = vhost_feature_tables; t->name; t++, n++) {
        g_test_message("%s", t->name);
        g_assert_true(vhost_feature_table_has(t->bits, VIRTIO_F_IN_ORDER));
    }
    g_assert_cmpuint(n, ==, 5);     /* blk, scsi, net, kernel net, kernel scsi */
}

static void test_tables_are_terminated_and_in_range(void)
{
    for (const VhostFeatureTableInfo *t = vhost_feature_tables; t->name; t++) {
        unsigned len = 0;

        for (const int *b = t->bits; *b != VHOST_INVALID_FEATURE_BIT; b++, len++) {
            g_assert_cmpint(*b, >=, 0);
            g_assert_cmpint(*b, <, 64);
            /* the vhost-user handshake bit is never a device feature */
            g_assert_cmpint(*b, !=, VHOST_USER_F_PROTOCOL_FEATURES);
        }
        g_assert_cmpuint(len, >, 5);
        g_assert_cmpuint(len, <, 64);
    }
}

/* Every bit, against each table, over all four combinations of "device offers" x "backend offers". */
static void test_allowlist_semantics(void)
{
    for (const VhostFeatureTableInfo *t = vhost_feature_tables; t->name; t++) {
        for (unsigned bit = 0; bit < 64; bit++) {
            uint64_t m = 1ULL << bit;
            bool listed = vhost_feature_table_has(t->bits, bit);

            /* neither: never */
            g_assert_cmphex(vhost_get_features(t->bits, 0, 0) & m, ==, 0);
            /* backend only: never, listed or not */
            g_assert_cmphex(vhost_get_features(t->bits, m, 0) & m, ==, 0);
            g_assert_cmphex(vhost_get_features(t->bits, ~0ULL, 0), ==, 0);
            /* both: always */
            g_assert_cmphex(vhost_get_features(t->bits, m, m), ==, m);
            /* device only: only when the backend has no say over it */
            g_assert_cmphex(vhost_get_features(t->bits, 0, m), ==, listed ? 0 : m);
            /* other bits never leak in */
            g_assert_cmphex(vhost_get_features(t->bits, ~0ULL, m), ==, m);
        }
    }
}

static void test_in_order_end_to_end_mask(void)
{
    const int *blk = vhost_user_blk_feature_bits;
    uint64_t dev = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_IN_ORDER | 1ULL << VIRTIO_BLK_F_FLUSH;
    uint64_t qsd = 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_BLK_F_FLUSH |
                   1ULL << VHOST_USER_F_PROTOCOL_FEATURES;     /* no IN_ORDER, like qemu-storage-daemon */

    g_assert_cmphex(vhost_get_features(blk, qsd, dev), ==, dev & ~(1ULL << VIRTIO_F_IN_ORDER));
    g_assert_cmphex(vhost_get_features(blk, qsd | 1ULL << VIRTIO_F_IN_ORDER, dev), ==, dev);
    /* what the backend is told: only table bits (+ VERSION_1) of what the driver acked */
    g_assert_cmphex(vhost_backend_features(blk, dev | 1ULL << 63), ==, dev);
    g_assert_cmphex(vhost_backend_features(vhost_user_scsi_feature_bits, 1ULL << VIRTIO_F_VERSION_1 |
                                           1ULL << VIRTIO_F_IN_ORDER | 1ULL << 50),
                    ==, 1ULL << VIRTIO_F_VERSION_1 | 1ULL << VIRTIO_F_IN_ORDER);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/vhost/features/every_table_has_in_order", test_every_table_has_in_order);
    g_test_add_func("/vhost/features/tables_terminated_in_range", test_tables_are_terminated_and_in_range);
    g_test_add_func("/vhost/features/allowlist_semantics", test_allowlist_semantics);
    g_test_add_func("/vhost/features/in_order_masked_without_backend", test_in_order_end_to_end_mask);
    return g_test_run();
}
