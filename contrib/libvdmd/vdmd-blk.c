/*
 * libvdmd: the disk daemons' block backend (see vdmd-blk.h). Kept apart from
 * vdmd.c so that vhost-user-net does not link the block layer.
 */
#include "vdmd-blk.h"

BlockBackend *vdmd_blk_open(const char *image, const char *engine, bool read_only, GError **errp)
{
    BlockBackendOptions bo = {
        .filename = image,
        .read_only = read_only,
        .engine = BLK_ENGINE_AUTO,
        .null_size = 1ull << 30,
    };

    if (engine && !blk_engine_parse(engine, &bo.engine)) {
        g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE, "unknown --backend '%s'", engine);
        return NULL;
    }
    return blk_new_open(&bo, errp);
}
