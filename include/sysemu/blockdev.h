/*
 * Block drives of the device host: -drive / -blockdev open a BlockBackend
 * under a name (a -drive id or a -blockdev node-name) that devices attach to
 * with their `drive=` property, and QMP block_resize finds.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_BLOCKDEV_H
#define SYSEMU_BLOCKDEV_H

#include <stdbool.h>
#include <stdint.h>

#include "block/block-backend.h"
#include "sysemu/qdev.h"

typedef struct Drive Drive;

/*
 * -drive file=IMG,if=none,id=D[,format=raw][,aio=threads|io_uring|native][,readonly=on]
 * -blockdev driver=file,filename=IMG,node-name=D | driver=null-co,node-name=D[,size=N]
 * Completions are delivered by the main loop. Returns false with *@errp
 * (g_free it) set.
 */
bool drive_new(const QDevOpt *opts, unsigned n, bool blockdev, char **errp);

/* A device's `drive=NAME` (-drive id or -blockdev node-name), or NULL. */
Drive *drive_find(const char *name);
BlockBackend *drive_get_blk(const Drive *d);

/*
 * A device's drive= property: find @drive_id and attach it (drive_attach)
 * for device type @type. NULL with *@errp set (QEMU's messages: not set,
 * can't find value, already in use).
 */
Drive *drive_claim(const char *type, const char *drive_id, void (*resized)(void *opaque), void *opaque,
                   char **errp);

/*
 * Give @d to one device. @resized (may be NULL) runs after block_resize
 * changed the size. Returns false when another device holds it.
 */
bool drive_attach(Drive *d, void (*resized)(void *opaque), void *opaque);
void drive_detach(Drive *d);

/*
 * QMP block_resize: @device names a -drive id, @node_name a -blockdev
 * node-name (either may be NULL; QEMU's bdrv_lookup_bs). The image is
 * truncated/extended to @size bytes and the attached device told. Returns
 * false with *@errp set (QEMU's messages).
 */
bool qdev_block_resize(const char *device, const char *node_name, int64_t size, char **errp);

/* Close every drive (after every device was unplugged). */
void drives_cleanup(void);

#endif
