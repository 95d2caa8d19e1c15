/*
 * Block drives (-drive / -blockdev) and devices (-device) of the device
 * host, in QEMU's syntax. Options arrive parsed into key/value pairs by
 * system/vl.c (QemuOpts rules: later keys override earlier ones).
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_QDEV_H
#define SYSEMU_QDEV_H

#include <stdbool.h>
#include <stdint.h>

typedef struct QDevOpt {
    const char *key, *val;
} QDevOpt;

/*
 * -drive file=IMG,if=none,id=D[,format=raw][,aio=threads|io_uring|native][,readonly=on]
 * -blockdev driver=file,filename=IMG,node-name=D | driver=null-co,node-name=D[,size=N]
 * Returns false with *@errp (g_free it) set.
 */
bool drive_new(const QDevOpt *opts, unsigned n, bool blockdev, char **errp);

/* -device help / -device TYPE,help: print to stdout and return true (the caller exits 0). */
bool device_help(const QDevOpt *opts, unsigned n);
/* -device TYPE,prop=value,...: create and plug. Returns false with *@errp set. */
bool device_new(const QDevOpt *opts, unsigned n, char **errp);

/*
 * QMP block_resize: @device names a -drive id, @node_name a -blockdev
 * node-name (either may be NULL; QEMU's bdrv_lookup_bs). The image is
 * truncated/extended to @size bytes and an attached virtio-blk updates its
 * capacity and sends a configuration change notification. Returns false
 * with *@errp set (QEMU's messages).
 */
bool qdev_block_resize(const char *device, const char *node_name, int64_t size, char **errp);

void qdev_register_types(void);
/* Unplug every device, then close every drive. */
void qdev_cleanup(void);

#endif
