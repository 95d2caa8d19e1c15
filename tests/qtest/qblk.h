/*
 * virtio-blk driver side for qtests over shared guest RAM: a temporary
 * directory with a disk image and a RAM file that vdm maps as
 * memory-backend-file,share=on and the test maps too, so tests/libvdriver
 * builds rings and requests through host pointers. Used by virtio-blk-test
 * and vhost-user-blk-test.
 *
 * Request slot i lives at QBLK_REQ_BASE + i * QBLK_REQ_STRIDE: header at 0,
 * status byte at 0x10, data at QBLK_REQ_DATA_OFF.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_QBLK_H
#define TESTS_QTEST_QBLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec/memory.h"
#include "vdriver.h"

#define QBLK_REQ_BASE       0x100000ull
#define QBLK_REQ_STRIDE     0x10000ull
#define QBLK_REQ_DATA_OFF   0x1000ull
#define QBLK_REQ_STATUS_OFF 0x10ull

typedef struct QBlkHost {
    char *dir, *img_path, *mem_path;
    int img_fd;
    uint8_t *ram;
    uint64_t ram_size;
    GuestMemory gm;             /* the RAM at gpa 0, for vdriver */
} QBlkHost;

/* Make the directory (g_dir_make_tmp @tmpl), a zeroed image of @img_size and mapped RAM of @ram_size. */
void qblk_host_init(QBlkHost *h, const char *tmpl, uint64_t ram_size, uint64_t img_size);
/* A path inside the directory (g_free it); remove such files before qblk_host_cleanup. */
char *qblk_host_path(const QBlkHost *h, const char *name);
/* Unmap and remove everything qblk_host_init made. */
void qblk_host_cleanup(QBlkHost *h);

static inline uint64_t qblk_slot_gpa(unsigned slot)
{
    return QBLK_REQ_BASE + slot * QBLK_REQ_STRIDE;
}

/*
 * Queue one request on @vq in slot @slot: header, @len data bytes at the
 * slot's data area (none for a read with @len 0), status; @indirect puts the
 * chain in an indirect table. The token is slot + 1.
 */
void qblk_add(QBlkHost *h, VDriverQueue *vq, unsigned slot, uint32_t type, uint64_t sector, uint32_t len,
              bool indirect);
/* Reap @n buffers from @vq (bounded by the qtest timeout); each must have status OK. */
void qblk_reap(QBlkHost *h, VDriverQueue *vq, unsigned n);
/* A data pattern that differs per @seed and per 512-byte sector. */
void qblk_fill_pattern(uint8_t *p, size_t len, unsigned seed);

#endif
