/*
 * Shared set-up for virtqueue unit tests.
 */
#include <endian.h>
#include <glib.h>
#include <string.h>

#include "vq-fixture.h"

const VqLayout vq_layouts[4] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static void count_queue_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    ((VqFixture *)vdev->transport_opaque)->queue_notifies++;
}

static void count_config_notify(VirtIODevice *vdev)
{
    ((VqFixture *)vdev->transport_opaque)->config_notifies++;
}

static const VirtIOTransportOps counting_transport = {
    .notify_queue = count_queue_notify,
    .notify_config = count_config_notify,
};

void vqf_init(VqFixture *f, const VqLayout *layout, unsigned num, uint64_t extra, uint64_t data_size)
{
    uint64_t off = 0;

    memset(f, 0, sizeof(*f));
    f->layout = layout;
    f->num = num;
    f->indirect_max = 16;
    f->features = (1ULL << VIRTIO_F_VERSION_1) | extra;
    if (layout->packed) {
        f->features |= 1ULL << VIRTIO_F_RING_PACKED;
    }
    if (layout->in_order) {
        f->features |= 1ULL << VIRTIO_F_IN_ORDER;
    }

    /* Rings first (each area aligned generously), then indirect tables, then data. */
    f->desc = VQF_RAM_GPA + off;
    off = align_up(off + 16ull * num, 64);
    f->driver = VQF_RAM_GPA + off;
    off = align_up(off + (layout->packed ? 4 : vring_split_avail_size(num)), 64);
    f->device = VQF_RAM_GPA + off;
    off = align_up(off + (layout->packed ? 4 : vring_split_used_size(num)), 4096);
    f->indirect = VQF_RAM_GPA + off;
    off = align_up(off + 16ull * f->indirect_max * num, 4096);
    f->data = VQF_RAM_GPA + off;
    f->data_size = data_size;
    f->ram_size = off + data_size;
    f->ram = g_malloc0(f->ram_size);

    guest_memory_init(&f->mem);
    g_assert_cmpint(guest_memory_add(&f->mem, VQF_RAM_GPA, f->ram_size, f->ram, true), ==, 0);
    g_assert_cmpint(virtio_init(&f->vdev, "vq-test", 1, 0, &f->mem, 1,
                                num > 256 ? num : 256), ==, 0);
    f->vdev.transport = &counting_transport;
    f->vdev.transport_opaque = f;
    f->vq = virtio_get_queue(&f->vdev, 0);

    g_assert_cmpint(virtio_set_features(&f->vdev, f->features), ==, 0);
    g_assert_cmpint(virtio_set_status(&f->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                                      VIRTIO_CONFIG_S_FEATURES_OK), ==, 0);
    g_assert_cmpint(virtio_queue_set_num(&f->vdev, 0, num), ==, 0);
    g_assert_cmpint(virtio_queue_set_rings(&f->vdev, 0, f->desc, f->driver, f->device), ==, 0);
    g_assert_cmpint(virtio_queue_set_enabled(&f->vdev, 0, true), ==, 0);
}

int vqf_start(VqFixture *f)
{
    virtio_set_status(&f->vdev, f->vdev.status | VIRTIO_CONFIG_S_DRIVER_OK);
    return virtio_queue_is_running(&f->vdev, 0) ? 0 : -1;
}

void vqf_cleanup(VqFixture *f)
{
    virtio_cleanup(&f->vdev);
    g_free(f->ram);
}

/* Tables may sit at any address (indirect tables need no alignment): copy, don't store through a typed pointer. */
void vqf_table_desc(VqFixture *f, hwaddr table_gpa, unsigned i, uint64_t addr, uint32_t len,
                    uint16_t flags, uint16_t next)
{
    VRingDesc d = { htole64(addr), htole32(len), htole16(flags), htole16(next) };

    memcpy((uint8_t *)vqf_host(f, table_gpa) + i * sizeof(d), &d, sizeof(d));
}

void vqf_split_desc(VqFixture *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
    vqf_table_desc(f, f->desc, i, addr, len, flags, next);
}

void vqf_split_avail_add(VqFixture *f, uint16_t head)
{
    VRingAvail *avail = vqf_host(f, f->driver);
    uint16_t idx = le16toh(avail->idx);

    avail->ring[idx % f->num] = htole16(head);
    __atomic_store_n(&avail->idx, htole16(idx + 1), __ATOMIC_RELEASE);
}

void vqf_split_set_avail_idx(VqFixture *f, uint16_t idx)
{
    VRingAvail *avail = vqf_host(f, f->driver);
    __atomic_store_n(&avail->idx, htole16(idx), __ATOMIC_RELEASE);
}

void vqf_packed_desc(VqFixture *f, unsigned pos, uint64_t addr, uint32_t len, uint16_t id,
                     uint16_t flags, bool wrap)
{
    VRingPackedDesc *d = (VRingPackedDesc *)vqf_host(f, f->desc) + pos;

    flags &= ~((1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED));
    if (wrap) {
        flags |= 1 << VRING_PACKED_DESC_F_AVAIL;
    } else {
        flags |= 1 << VRING_PACKED_DESC_F_USED;
    }
    d->addr = htole64(addr);
    d->len = htole32(len);
    d->id = htole16(id);
    __atomic_store_n(&d->flags, htole16(flags), __ATOMIC_RELEASE);
}

void vqf_packed_table_desc(VqFixture *f, hwaddr table_gpa, unsigned i, uint64_t addr, uint32_t len,
                           uint16_t flags)
{
    VRingPackedDesc d = { htole64(addr), htole32(len), 0, htole16(flags) };

    memcpy((uint8_t *)vqf_host(f, table_gpa) + i * sizeof(d), &d, sizeof(d));
}
