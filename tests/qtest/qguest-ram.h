/*
 * Guest RAM shared with the test, as the virtio qtests use it: a temporary
 * directory holding a disk image and a RAM file that vdm maps as
 * `memory-backend-file,share=on` and the test maps too, entered in a
 * GuestMemory so tests/libvdriver builds rings through host pointers.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_QGUEST_RAM_H
#define TESTS_QTEST_QGUEST_RAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdriver.h"

typedef struct QGuestRam {
    char *dir, *img_path, *mem_path;
    int img_fd;                 /* the image, open read-write */
    uint8_t *ram;               /* guest physical 0 .. ram_size */
    size_t ram_size;
    GuestMemory gm;
} QGuestRam;

/* The ring layouts every ring test runs on: split, packed, split+IN_ORDER, packed+IN_ORDER. */
typedef struct QVirtioLayout {
    const char *name;
    bool packed, in_order;
} QVirtioLayout;

#define QVIRTIO_N_LAYOUTS 4
extern const QVirtioLayout qvirtio_layouts[QVIRTIO_N_LAYOUTS];

/* Create the directory (name from @prefix), an @img_size image and @ram_size of mapped RAM; asserts. */
void qguest_ram_init(QGuestRam *g, const char *prefix, size_t ram_size, size_t img_size);
/* Unmap, close and remove everything. */
void qguest_ram_cleanup(QGuestRam *g);

#endif
