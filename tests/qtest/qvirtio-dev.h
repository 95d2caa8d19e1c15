/*
 * A virtio-pci device under test with its guest RAM shared with the test
 * (memory-backend-file, share=on), so tests/libvdriver builds the rings
 * through host pointers while every register access goes over qtest: the
 * libqos virtio-pci flow, with vdm's driver library.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_QVIRTIO_DEV_H
#define TESTS_QTEST_QVIRTIO_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "exec/memory.h"
#include "qpci.h"
#include "vdriver.h"

#define QVDEV_RAM_SIZE      (64u << 20)
#define QVDEV_MAX_QUEUES    16
#define QVDEV_RING_BASE     0x10000ull      /* queue q's rings + indirect tables at base + q * stride */
#define QVDEV_RING_STRIDE   0x4000ull
#define QVDEV_DATA_BASE     0x100000ull     /* free for the test's buffers up to the end of RAM */
#define QVDEV_INDIRECT_MAX  4

/*
 * Guest RAM the test shares with vdm: file DIR/ram of @size bytes, mapped
 * here (the return value) and entered at gpa 0 in @gm; *@mem_path is for
 * vdm's memory-backend-file,share=on (g_free it). qtest_shared_ram_free
 * unmaps and unlinks.
 */
uint8_t *qtest_shared_ram_new(const char *dir, uint64_t size, char **mem_path, GuestMemory *gm);
void qtest_shared_ram_free(uint8_t *ram, uint64_t size, char *mem_path);

typedef struct QVirtioDev {
    QTestState *qts;
    char *dir, *mem_path;
    uint8_t *ram;
    GuestMemory gm;
    QVirtioPCI v;
    int devfn;
    unsigned nq;
    VDriverQueueConfig cfg[QVDEV_MAX_QUEUES];
    VDriverQueue *vq[QVDEV_MAX_QUEUES];
} QVirtioDev;

/*
 * Start vdm (-machine pc, RAM shared with the test) with @args appended
 * (drives, devices), find the function with virtio device id @device_id and
 * map its virtio-pci structures.
 */
void qvdev_start(QVirtioDev *d, uint16_t device_id, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
void qvdev_stop(QVirtioDev *d);

/*
 * Reset, negotiate VERSION_1 + the offered layout bits (@packed/@in_order
 * must be offered exactly as asked) + @extra (each must be offered), set up
 * queues 0..@nq-1 with @num entries and set DRIVER_OK. Returns the features.
 */
uint64_t qvdev_init(QVirtioDev *d, bool packed, bool in_order, uint64_t extra, unsigned nq, unsigned num);
/* Notify queue @q if the driver library says the device wants it. */
void qvdev_kick(QVirtioDev *d, unsigned q);
/* The next used buffer of queue @q (bounded wait; asserts no device violation). */
void *qvdev_wait_used(QVirtioDev *d, unsigned q, uint32_t *len);
/* Register @fn as test "@prefix/@name/LAYOUT" for each of the four layouts (its data: the VDriverLayout). */
void qvdev_add_layout_tests(const char *prefix, const char *name, GTestDataFunc fn);

/* Host pointer to guest-physical @gpa. */
static inline void *qvdev_host(QVirtioDev *d, uint64_t gpa)
{
    return d->ram + gpa;
}

#endif
