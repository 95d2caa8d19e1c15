/*
 * libvdmd: the block backend of the disk daemons (vhost-user-blk and
 * vhost-user-scsi), opened the same way from their command lines.
 * Context: the daemon's main thread.
 */
#ifndef CONTRIB_LIBVDMD_VDMD_BLK_H
#define CONTRIB_LIBVDMD_VDMD_BLK_H

#include "block/block-backend.h"

/* --backend, the I/O engine (a value for vdmd_blk_open). */
#define VDMD_BLK_ENGINE_OPTION(engine) \
    { "backend", 0, 0, G_OPTION_ARG_STRING, &(engine), "I/O engine (default: io_uring if it works)", \
      "io_uring|threads|null" }

/*
 * Open @image with I/O engine @engine ("io_uring", "threads", "null"; NULL:
 * io_uring if it works), read-only if asked. The null engine serves 1 GiB.
 * NULL with @errp set on failure.
 */
BlockBackend *vdmd_blk_open(const char *image, const char *engine, bool read_only, GError **errp);

#endif
