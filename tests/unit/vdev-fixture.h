/*
 * Shared set-up for device unit tests (test-virtio-blk, -net, -scsi): guest
 * RAM, a transport that counts notifications, and the driver side (the
 * driver library's queues) of a device on one of the four layouts.
 * The device itself is the test's: it realizes it on f->mem and hands it over.
 *
 * Context: the test's thread.
 */
#ifndef TESTS_UNIT_VDEV_FIXTURE_H
#define TESTS_UNIT_VDEV_FIXTURE_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "hw/virtio/virtio.h"
#include "vdriver.h"
#include "vq-fixture.h"

#define VDF_RAM_GPA     0x100000ull
#define VDF_RAM_SIZE    (8ull * 1024 * 1024)
#define VDF_MAX_QUEUES  8u

typedef struct VdevFixture {
    const VqLayout *layout;
    uint8_t *ram;
    GuestMemory mem;            /* VDF_RAM_SIZE bytes at VDF_RAM_GPA */
    VirtIODevice *vdev;
    VDriverQueue *dq[VDF_MAX_QUEUES];
    hwaddr heap;                /* bump allocator for buffers, after the rings */
    unsigned queue_notifies;    /* counted by the test transport */
    unsigned config_notifies;
} VdevFixture;

/* Zero @f and create guest RAM for @layout. */
void vdf_init(VdevFixture *f, const VqLayout *layout);
/* @vdev (realized on f->mem) notifies through the counting test transport. */
void vdf_attach(VdevFixture *f, VirtIODevice *vdev);
/*
 * The driver: accept @features (the layout's IN_ORDER / RING_PACKED bits must
 * be among them exactly as the layout says), FEATURES_OK, then @nq queues of
 * @qsize entries laid out from VDF_RAM_GPA (with indirect tables of
 * @indirect_max entries when INDIRECT_DESC is accepted and @indirect_max > 0;
 * event idx as accepted), DRIVER_OK. The heap starts on the next page.
 */
void vdf_start(VdevFixture *f, uint64_t features, unsigned nq, unsigned qsize, unsigned indirect_max);
/* The device was reset or broke: the driver's view of the rings is void. */
void vdf_drop_driver(VdevFixture *f);
/* Free the driver queues (asserting none saw an error unless @expect_error). */
void vdf_free_driver(VdevFixture *f, bool expect_error);
/* Free guest RAM (after the device is unrealized). */
void vdf_cleanup(VdevFixture *f);

static inline void *vdf_host(VdevFixture *f, hwaddr gpa)
{
    return f->ram + (gpa - VDF_RAM_GPA);
}
/* @size bytes from the heap (64-byte granules). */
hwaddr vdf_alloc(VdevFixture *f, uint64_t size);
/* Fill @buf with a pattern derived from @seed (disk tests: what was written reads back). */
void vdf_fill_pattern(uint8_t *buf, size_t len, unsigned seed);
/* Are all @len bytes at @p equal to @v? */
bool vdf_all_bytes(const uint8_t *p, size_t len, uint8_t v);

/* A device test run on every layout: registered as /DEVICE/LAYOUT/NAME with the layout as data. */
typedef struct VdevTestCase {
    const char *name;
    GTestDataFunc fn;
} VdevTestCase;
void vdf_add_layout_tests(const char *device, const VdevTestCase *cases, unsigned n);

/* A temporary image file of @size zero bytes named from @tmpl; returns its path (g_free it). */
char *vdf_tmp_image(const char *tmpl, uint64_t size);

#endif
