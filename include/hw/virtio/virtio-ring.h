/*
 * Virtqueue memory layouts shared by the device core and the driver library.
 *
 * Everything here is guest-visible and little-endian (virtio 1.x, "Basic
 * Facilities of a Virtio Device" / "Virtqueues"). Only layouts and constants
 * live here; no behaviour.
 */
#ifndef HW_VIRTIO_VIRTIO_RING_H
#define HW_VIRTIO_VIRTIO_RING_H

#include <stdint.h>

/* Largest queue size either layout allows (spec 2.7 / 2.8: 32768). */
#define VIRTQUEUE_MAX_SIZE 32768

/* Split ring descriptor flags (spec 2.7.5). */
#define VRING_DESC_F_NEXT       1
#define VRING_DESC_F_WRITE      2
#define VRING_DESC_F_INDIRECT   4

/* Packed ring descriptor flags (spec 2.8.1): AVAIL and USED bits. */
#define VRING_PACKED_DESC_F_AVAIL 7
#define VRING_PACKED_DESC_F_USED  15

/* avail->flags / used->flags hints, used without EVENT_IDX (spec 2.7.7/2.7.10). */
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY     1

/* Packed event suppression flags (spec 2.8.10). */
#define VRING_PACKED_EVENT_FLAG_ENABLE  0x0
#define VRING_PACKED_EVENT_FLAG_DISABLE 0x1
#define VRING_PACKED_EVENT_FLAG_DESC    0x2
/* Bit 15 of off_wrap carries the wrap counter; bits 0-14 the ring offset. */
#define VRING_PACKED_EVENT_F_WRAP_CTR   15

/* Alignment the spec requires of each ring area (spec 2.7, table "Virtqueue Part Alignment"). */
#define VRING_DESC_ALIGN        16
#define VRING_AVAIL_ALIGN_SPLIT 2
#define VRING_USED_ALIGN_SPLIT  4
#define VRING_EVENT_ALIGN_PACKED 4

typedef struct VRingDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
} VRingDesc;

typedef struct VRingAvail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];            /* num entries, then used_event */
} VRingAvail;

typedef struct VRingUsedElem {
    uint32_t id;
    uint32_t len;
} VRingUsedElem;

typedef struct VRingUsed {
    uint16_t flags;
    uint16_t idx;
    VRingUsedElem ring[];       /* num entries, then avail_event */
} VRingUsed;

typedef struct VRingPackedDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t id;
    uint16_t flags;
} VRingPackedDesc;

typedef struct VRingPackedDescEvent {
    uint16_t off_wrap;
    uint16_t flags;
} VRingPackedDescEvent;

_Static_assert(sizeof(VRingDesc) == 16, "split descriptor is 16 bytes");
_Static_assert(sizeof(VRingPackedDesc) == 16, "packed descriptor is 16 bytes");
_Static_assert(sizeof(VRingUsedElem) == 8, "used element is 8 bytes");
_Static_assert(sizeof(VRingPackedDescEvent) == 4, "event suppression is 4 bytes");

/* Byte sizes of the split ring areas for a queue of @num entries (with event idx fields). */
static inline uint64_t vring_split_desc_size(unsigned num) { return 16ull * num; }
static inline uint64_t vring_split_avail_size(unsigned num) { return 6ull + 2ull * num; }
static inline uint64_t vring_split_used_size(unsigned num) { return 6ull + 8ull * num; }
static inline uint64_t vring_packed_desc_size(unsigned num) { return 16ull * num; }

/*
 * Event index test shared by both sides (spec 2.7.7.2 / 2.7.10): notify when
 * @event_idx lies in the half-open window (old, new], all modulo 2^16.
 */
static inline int vring_need_event(uint16_t event_idx, uint16_t new_idx, uint16_t old)
{
    return (uint16_t)(new_idx - event_idx - 1) < (uint16_t)(new_idx - old);
}

#endif
