/*
 * A device's pool of request structures (virtio-blk, virtio-scsi): once warm,
 * popping a request allocates nothing (STYLE.md §10). The pool keeps at most
 * what the device's queues can have in flight at once; beyond that a
 * returned request is freed.
 *
 * A free request is linked through its first pointer-sized bytes (its
 * contents are dead while it is free), so a request type needs no link of
 * its own. Everything is inline: the hot path costs what an open-coded free
 * list costs.
 *
 * Context: the device's thread (the pool is not locked).
 */
#ifndef HW_VIRTIO_VIRTIO_REQ_POOL_H
#define HW_VIRTIO_VIRTIO_REQ_POOL_H

#include <glib.h>
#include <string.h>

typedef struct VirtIOReqPool {
    void *free;                 /* free requests, each linked through its first bytes */
    unsigned nfree;
} VirtIOReqPool;

/* A request of @size bytes (contents undefined): a pooled one, or a new one. */
static inline void *virtio_req_pool_get(VirtIOReqPool *pool, size_t size)
{
    void *req = pool->free;

    if (req) {
        memcpy(&pool->free, req, sizeof(void *));
        pool->nfree--;
        return req;
    }
    return g_malloc(size);
}

/* Return @req to the pool, which keeps at most @max requests (the rest are freed). */
static inline void virtio_req_pool_put(VirtIOReqPool *pool, void *req, unsigned max)
{
    if (pool->nfree >= max) {
        g_free(req);
        return;
    }
    memcpy(req, &pool->free, sizeof(void *));
    pool->free = req;
    pool->nfree++;
}

/* Free every pooled request (unrealize). */
static inline void virtio_req_pool_drain(VirtIOReqPool *pool)
{
    while (pool->free) {
        void *req = pool->free;

        memcpy(&pool->free, req, sizeof(void *));
        g_free(req);
    }
    pool->nfree = 0;
}

#endif
