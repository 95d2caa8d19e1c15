/*
 * vdm-ring-demo: what VIRTIO_F_IN_ORDER changes, shown on the real core.
 *
 * A driver (tests/libvdriver) makes 8 buffers available; the device (the vdm
 * virtio core) completes them out of order, as a block backend with parallel
 * I/O would. After each completion the demo prints what the device has
 * published to the driver so far, for split and packed rings, without and
 * with IN_ORDER, and with in-order batching (one used entry per batch).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/virtio/virtio.h"
#include "vdriver.h"

#define RAM_GPA 0x100000ull
#define NUM 8u
#define BUF_LEN 512u

typedef struct Mode {
    const char *name;
    bool packed;
    bool in_order;
    bool batch;
} Mode;

static void no_notify(VirtIODevice *vdev, VirtQueue *vq)
{
}

static void no_config(VirtIODevice *vdev)
{
}

static const VirtIOTransportOps demo_transport = { no_notify, no_config };

static int run_mode(const Mode *m, const unsigned *order)
{
    VDriverQueueConfig dq = { .num = NUM, .packed = m->packed, .in_order = m->in_order };
    uint64_t features = 1ULL << VIRTIO_F_VERSION_1;
    VirtQueueElement *elem[NUM];
    uint64_t ram_size = 64 * 1024;
    uint8_t *ram = calloc(1, ram_size);
    VirtQueueStats st;
    VDriverQueue *drv;
    VirtIODevice vdev;
    GuestMemory mem;
    hwaddr data;
    int ret = 1;

    data = (vdriver_layout_rings(&dq, RAM_GPA) + 4095) & ~4095ull;
    guest_memory_init(&mem);
    if (!ram || guest_memory_add(&mem, RAM_GPA, ram_size, ram, true) < 0 ||
        virtio_init(&vdev, "demo-blk", 2, 0, &mem, 1, NUM) < 0) {
        return 1;
    }
    vdev.transport = &demo_transport;
    features |= m->packed ? 1ULL << VIRTIO_F_RING_PACKED : 0;
    features |= m->in_order ? 1ULL << VIRTIO_F_IN_ORDER : 0;
    virtio_set_features(&vdev, features);
    virtio_set_status(&vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    virtio_queue_set_num(&vdev, 0, NUM);
    virtio_queue_set_rings(&vdev, 0, dq.desc, dq.driver, dq.device);
    virtio_queue_set_enabled(&vdev, 0, true);
    drv = vdriver_queue_new(&mem, &dq);
    virtio_set_status(&vdev, vdev.status | VIRTIO_CONFIG_S_DRIVER_OK);
    if (!drv || !virtio_queue_is_running(&vdev, 0)) {
        goto out;
    }
    virtio_queue_set_batch(virtio_get_queue(&vdev, 0), m->batch);

    printf("\n== %s ==\n", m->name);
    /* The driver makes requests r0..r7 available (one writable buffer each). */
    for (unsigned i = 0; i < NUM; i++) {
        VDriverSeg seg = { data + i * BUF_LEN, BUF_LEN };
        vdriver_add(drv, NULL, 0, &seg, 1, (void *)(uintptr_t)(i + 1), false);
    }
    vdriver_kick_prepare(drv);
    for (unsigned i = 0; i < NUM; i++) {
        elem[i] = virtqueue_pop(virtio_get_queue(&vdev, 0), sizeof(VirtQueueElement));
        if (!elem[i]) {
            goto out;
        }
    }
    /* The backend finishes them out of order; the device completes each at once. */
    for (unsigned k = 0; k < NUM; k++) {
        unsigned i = order[k];
        VirtQueue *vq = virtio_get_queue(&vdev, 0);
        char seen[128] = "";
        bool batched;
        uint32_t len;
        void *tok;

        virtqueue_push(vq, elem[i], BUF_LEN);
        virtqueue_element_free(elem[i]);
        while ((tok = vdriver_get_buf(drv, &len, &batched))) {
            char one[24];
            snprintf(one, sizeof(one), " r%u%s", (unsigned)((uintptr_t)tok - 1), batched ? "*" : "");
            strncat(seen, one, sizeof(seen) - strlen(seen) - 1);
        }
        printf("  backend finished r%u -> driver sees:%s\n", i, seen[0] ? seen : " (nothing yet)");
    }
    virtio_queue_get_stats(virtio_get_queue(&vdev, 0), &st);
    printf("  published %llu buffers in %llu used %s over %llu flushes%s\n",
           (unsigned long long)st.used, (unsigned long long)st.used_entries,
           m->packed ? "descriptors" : "ring entries", (unsigned long long)st.flushes,
           vdriver_error(drv) ? " -- DRIVER SAW A PROTOCOL VIOLATION" : "");
    ret = vdriver_error(drv) ? 1 : 0;
out:
    vdriver_queue_free(drv);
    virtio_cleanup(&vdev);
    free(ram);
    return ret;
}

int main(void)
{
    static const Mode modes[] = {
        { "split ring, IN_ORDER off: completions reach the driver as they finish", false, false, false },
        { "split ring, IN_ORDER on: published in avail order, held until predecessors finish", false, true, false },
        { "split ring, IN_ORDER on + batching: one used entry per run (* = no entry of its own)", false, true, true },
        { "packed ring, IN_ORDER off", true, false, false },
        { "packed ring, IN_ORDER on", true, true, false },
        { "packed ring, IN_ORDER on + batching", true, true, true },
    };
    static const unsigned order[NUM] = { 3, 1, 0, 2, 7, 5, 4, 6 };
    int failures = 0;

    printf("vdm ring demo: 8 requests r0..r7, the backend finishes them in the order 3 1 0 2 7 5 4 6\n");
    for (unsigned m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
        failures += run_mode(&modes[m], order);
    }
    return failures ? 1 : 0;
}
