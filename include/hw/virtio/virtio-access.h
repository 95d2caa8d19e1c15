/*
 * Access to ring fields shared between driver and device, used by both the
 * core (hw/virtio/virtio.c) and the driver library (tests/libvdriver).
 *
 * Ring memory is little-endian (virtio 1.x) and written by the other side
 * concurrently: every load and store is one atomic access. Relaxed loads
 * give one read per field (a snapshot); ordering comes from the acquire on
 * the index or flags that published the data, and from the release on the
 * publishing side.
 */
#ifndef HW_VIRTIO_VIRTIO_ACCESS_H
#define HW_VIRTIO_VIRTIO_ACCESS_H

#include <endian.h>
#include <stdint.h>

static inline uint16_t vring_load_le16(const uint16_t *p)
{
    return le16toh(__atomic_load_n(p, __ATOMIC_RELAXED));
}

static inline uint16_t vring_load_acquire_le16(const uint16_t *p)
{
    return le16toh(__atomic_load_n(p, __ATOMIC_ACQUIRE));
}

static inline void vring_store_le16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, htole16(v), __ATOMIC_RELAXED);
}

static inline void vring_store_release_le16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, htole16(v), __ATOMIC_RELEASE);
}

/* Full barrier: a store to one ring area before a load from another (suppression checks). */
static inline void vring_mb(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

#endif
