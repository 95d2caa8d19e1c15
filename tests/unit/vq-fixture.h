/*
 * Shared set-up for virtqueue unit tests: guest RAM, a device with one queue
 * on one of the four layouts, and raw ring pokes for hostile-input tests.
 */
#ifndef TESTS_UNIT_VQ_FIXTURE_H
#define TESTS_UNIT_VQ_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/virtio.h"

typedef struct VqLayout {
    const char *name;
    bool packed;
    bool in_order;
} VqLayout;

/* split, packed, split-in-order, packed-in-order: every ring test runs on all four. */
extern const VqLayout vq_layouts[4];

#define VQF_RAM_GPA 0x100000ull

typedef struct VqFixture {
    const VqLayout *layout;
    uint8_t *ram;
    uint64_t ram_size;
    GuestMemory mem;
    VirtIODevice vdev;
    VirtQueue *vq;
    unsigned num;
    uint64_t features;
    hwaddr desc, driver, device;    /* ring areas */
    hwaddr indirect;                /* num tables of indirect_max entries */
    unsigned indirect_max;
    hwaddr data;                    /* free area for buffers */
    uint64_t data_size;
    unsigned queue_notifies;
    unsigned config_notifies;
} VqFixture;

/*
 * Set up a device whose driver negotiated VERSION_1, the layout's bits and
 * @extra features, with one queue of @num entries, rings placed in RAM.
 * @data_size bytes of buffer space follow the rings.
 */
void vqf_init(VqFixture *f, const VqLayout *layout, unsigned num, uint64_t extra, uint64_t data_size);
/* DRIVER_OK: activates the queue. Returns what virtio_queue_activate returned. */
int vqf_start(VqFixture *f);
void vqf_cleanup(VqFixture *f);

static inline void *vqf_host(VqFixture *f, hwaddr gpa)
{
    return f->ram + (gpa - VQF_RAM_GPA);
}

/* Raw ring writes, bypassing any driver logic (hostile tests). */
void vqf_split_desc(VqFixture *f, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
void vqf_split_avail_add(VqFixture *f, uint16_t head);
void vqf_split_set_avail_idx(VqFixture *f, uint16_t idx);
/* Write packed descriptor @pos as available for driver wrap counter @wrap (flags carry NEXT/WRITE/INDIRECT). */
void vqf_packed_desc(VqFixture *f, unsigned pos, uint64_t addr, uint32_t len, uint16_t id,
                     uint16_t flags, bool wrap);
/* Write an indirect table entry (split layout) at @table_gpa. */
void vqf_table_desc(VqFixture *f, hwaddr table_gpa, unsigned i, uint64_t addr, uint32_t len,
                    uint16_t flags, uint16_t next);
/* Write an indirect table entry (packed layout: only WRITE/INDIRECT flags matter). */
void vqf_packed_table_desc(VqFixture *f, hwaddr table_gpa, unsigned i, uint64_t addr, uint32_t len,
                           uint16_t flags);

#endif
