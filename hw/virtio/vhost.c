/*
 * vhost frontend of the device host (see include/hw/virtio/vhost.h): feature
 * tables, memory table, vrings, inflight region, reconnect.
 *
 * Context: main loop thread only.
 */
#include <errno.h>
#include <glib.h>
#include <glib-unix.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "hw/virtio/vhost.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-net.h"

/* Bits the device headers do not name (virtio spec 5.1.3, 5.6.3). */
#define VHOST_NET_F_GSO             6
#define VHOST_NET_F_GUEST_USO4      54
#define VHOST_NET_F_GUEST_USO6      55
#define VHOST_NET_F_HOST_USO        56
#define VHOST_NET_F_HASH_REPORT     57
#define VHOST_NET_F_RSS             60
#define VHOST_NET_F_RSC_EXT         61
#define VHOST_SCSI_F_HOTPLUG        1
#define VHOST_SCSI_F_CHANGE         2
#define VHOST_SCSI_F_T10_PI         3

/*
 * The tables list the bits the backend decides on (QEMU's feature_bits[]);
 * every one holds VIRTIO_F_IN_ORDER so the bit reaches the driver exactly
 * when the backend implements it.
 */
const int vhost_user_blk_feature_bits[] = {
    VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_GEOMETRY, VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_TOPOLOGY, VIRTIO_BLK_F_MQ, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_FLUSH,
    VIRTIO_BLK_F_CONFIG_WCE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_WRITE_ZEROES,
    VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_RING_PACKED, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_RING_RESET,
    VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VHOST_INVALID_FEATURE_BIT
};

const int vhost_user_scsi_feature_bits[] = {
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX,
    VHOST_SCSI_F_HOTPLUG, VHOST_SCSI_F_T10_PI, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
    VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VHOST_INVALID_FEATURE_BIT
};

const int vhost_user_net_feature_bits[] = {
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_F_NOTIFICATION_DATA, VIRTIO_RING_F_INDIRECT_DESC,
    VIRTIO_RING_F_EVENT_IDX, VIRTIO_F_ANY_LAYOUT, VIRTIO_F_VERSION_1,
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VHOST_NET_F_GSO, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_UFO, VIRTIO_NET_F_HOST_TSO4,
    VIRTIO_NET_F_HOST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_UFO, VIRTIO_NET_F_MRG_RXBUF,
    VIRTIO_NET_F_MTU, VIRTIO_F_ACCESS_PLATFORM, VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET,
    VIRTIO_F_IN_ORDER, VHOST_NET_F_RSS, VHOST_NET_F_RSC_EXT, VHOST_NET_F_HASH_REPORT,
    VHOST_NET_F_GUEST_USO4, VHOST_NET_F_GUEST_USO6, VHOST_NET_F_HOST_USO,
    /* the backend announces itself after a migration: no RARP from the frontend */
    VIRTIO_NET_F_GUEST_ANNOUNCE,
    VIRTIO_NET_F_MQ,
    VHOST_INVALID_FEATURE_BIT
};

const int vhost_kernel_net_feature_bits[] = {
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_F_VERSION_1, VIRTIO_NET_F_MTU, VIRTIO_F_ACCESS_PLATFORM,
    VIRTIO_F_RING_PACKED, VIRTIO_F_RING_RESET, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VHOST_NET_F_HASH_REPORT,
    VHOST_INVALID_FEATURE_BIT
};

const int vhost_kernel_scsi_feature_bits[] = {
    VIRTIO_F_NOTIFY_ON_EMPTY, VIRTIO_RING_F_INDIRECT_DESC, VIRTIO_RING_F_EVENT_IDX,
    VHOST_SCSI_F_HOTPLUG, VIRTIO_F_RING_RESET, VIRTIO_F_IN_ORDER, VIRTIO_F_NOTIFICATION_DATA,
    VHOST_INVALID_FEATURE_BIT
};

const VhostFeatureTableInfo vhost_feature_tables[] = {
    { "vhost-user-blk", vhost_user_blk_feature_bits },
    { "vhost-user-scsi", vhost_user_scsi_feature_bits },
    { "vhost-user-net", vhost_user_net_feature_bits },
    { "vhost-kernel-net", vhost_kernel_net_feature_bits },
    { "vhost-kernel-scsi", vhost_kernel_scsi_feature_bits },
    { NULL, NULL },
};

bool vhost_feature_table_has(const int *feature_bits, unsigned bit)
{
    for (const int *b = feature_bits; *b != VHOST_INVALID_FEATURE_BIT; b++) {
        if ((unsigned)*b == bit) {
            return true;
        }
    }
    return false;
}

static uint64_t table_mask(const int *feature_bits)
{
    uint64_t m = 0;

    for (const int *b = feature_bits; *b != VHOST_INVALID_FEATURE_BIT; b++) {
        if (*b >= 0 && *b < 64) {
            m |= 1ULL << *b;
        }
    }
    return m;
}

uint64_t vhost_get_features(const int *feature_bits, uint64_t backend, uint64_t features)
{
    /* a listed bit needs both; an unlisted one is the device model's alone */
    return features & (~table_mask(feature_bits) | backend);
}

uint64_t vhost_backend_features(const int *feature_bits, uint64_t acked)
{
    /* VERSION_1 always: a modern-only device host never has a legacy ring layout */
    return acked & (table_mask(feature_bits) | 1ULL << VIRTIO_F_VERSION_1);
}

/* ---- connection ---- */

static void vhost_dev_lost(struct vhost_dev *dev);

static bool reply_ack(const struct vhost_dev *dev)
{
    return dev->protocol_features & (1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK);
}

static bool has_protocol(const struct vhost_dev *dev, unsigned bit)
{
    return dev->protocol_features & (1ULL << bit);
}

/* The socket turned readable or hung up outside a request: the backend closed it (or misbehaved). */
static gboolean vhost_hup(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vhost_dev *dev = opaque;
    char c;
    ssize_t n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);

    if (n < 0 && (errno == EAGAIN || errno == EINTR) && !(cond & (G_IO_HUP | G_IO_ERR))) {
        return G_SOURCE_CONTINUE;
    }
    /* EOF, an error, or an unsolicited message (nothing on this channel is): drop the backend */
    dev->hup_watch = 0;
    vhost_dev_lost(dev);
    return G_SOURCE_REMOVE;
}

static void watch_socket(struct vhost_dev *dev)
{
    if (!dev->hup_watch && dev->conn.fd >= 0) {
        dev->hup_watch = g_unix_fd_add(dev->conn.fd, G_IO_IN | G_IO_HUP | G_IO_ERR, vhost_hup, dev);
    }
}

static void unwatch_socket(struct vhost_dev *dev)
{
    if (dev->hup_watch) {
        g_source_remove(dev->hup_watch);
        dev->hup_watch = 0;
    }
}

/* ---- the backend's channel (BACKEND_REQ) ---- */

static void backend_chan_close(struct vhost_dev *dev)
{
    if (dev->backend_watch) {
        g_source_remove(dev->backend_watch);
        dev->backend_watch = 0;
    }
    vhost_user_close(&dev->backend_chan);
}

/*
 * A request from the backend. Only CONFIG_CHANGE_MSG is served; anything
 * else is refused (ack 1 when it wants one). A malformed message or EOF
 * closes the channel (the main connection is not affected).
 */
static gboolean backend_chan_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    struct vhost_dev *dev = opaque;
    uint8_t payload[VHOST_USER_PAYLOAD_MAX];
    VhostUserHeader hdr;
    uint64_t result = 0;
    int ret = vhost_user_recv_request(&dev->backend_chan, &hdr, payload, sizeof(payload), NULL);

    if (ret < 0) {
        dev->backend_watch = 0;
        vhost_user_close(&dev->backend_chan);
        return G_SOURCE_REMOVE;
    }
    if (hdr.request == VHOST_USER_BACKEND_CONFIG_CHANGE_MSG) {
        if (dev->ops && dev->ops->config_changed) {
            dev->ops->config_changed(dev->opaque);
        }
    } else {
        result = 1;
    }
    if (hdr.flags & VHOST_USER_NEED_REPLY_MASK) {
        vhost_user_send(&dev->backend_chan, hdr.request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, &result,
                        sizeof(result), NULL, 0);
    }
    return G_SOURCE_CONTINUE;
}

/* SET_BACKEND_REQ_FD with one end of a socketpair; failing that, the device works without it. */
static void backend_chan_open(struct vhost_dev *dev)
{
    int sv[2], ret;

    if (!has_protocol(dev, VHOST_USER_PROTOCOL_F_BACKEND_REQ) ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        return;
    }
    ret = vhost_user_request_opt(&dev->conn, reply_ack(dev), VHOST_USER_SET_BACKEND_REQ_FD, NULL, 0, &sv[1], 1);
    close(sv[1]);
    if (ret != 0) {
        close(sv[0]);
        return;
    }
    /* the backend's messages are tiny: a partial one is waited for briefly, never long */
    vhost_user_conn_init(&dev->backend_chan, 100);
    dev->backend_chan.fd = sv[0];
    dev->backend_watch = g_unix_fd_add(sv[0], G_IO_IN | G_IO_HUP | G_IO_ERR, backend_chan_ready, dev);
}

/* Connect and handshake. Returns 0 or -errno with *@errp set. */
static int vhost_dev_connect(struct vhost_dev *dev, int retry_ms, char **errp)
{
    const uint64_t want = 1ULL << VHOST_USER_PROTOCOL_F_MQ | 1ULL << VHOST_USER_PROTOCOL_F_REPLY_ACK |
                          1ULL << VHOST_USER_PROTOCOL_F_CONFIG |
                          1ULL << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD |
                          1ULL << VHOST_USER_PROTOCOL_F_BACKEND_REQ;
    uint64_t offered, qnum;
    int ret = dev->conn.fd >= 0 ? 0 : vhost_user_connect(&dev->conn, dev->path, retry_ms);

    if (ret < 0) {
        *errp = g_strdup_printf("Failed to connect to '%s': %s", dev->path, g_strerror(-ret));
        return ret;
    }
    ret = vhost_user_handshake(&dev->conn, want, &offered, &dev->protocol_features);
    if (ret < 0) {
        *errp = g_strdup_printf("vhost-user handshake with '%s' failed: %s", dev->path,
                                g_strerror(-ret));
        goto fail;
    }
    dev->backend_features = offered & ~(1ULL << VHOST_USER_F_PROTOCOL_FEATURES);
    if (has_protocol(dev, VHOST_USER_PROTOCOL_F_MQ)) {
        ret = vhost_user_get_u64(&dev->conn, VHOST_USER_GET_QUEUE_NUM, &qnum);
        if (ret < 0) {
            *errp = g_strdup_printf("vhost-user: GET_QUEUE_NUM failed: %s", g_strerror(-ret));
            goto fail;
        }
        if (qnum < dev->nvqs) {
            *errp = g_strdup_printf("The maximum number of queues supported by the backend is %" PRIu64,
                                    qnum);
            ret = -EINVAL;
            goto fail;
        }
    } else if (dev->nvqs > 1) {
        *errp = g_strdup("vhost-user: the backend does not support multiple queues (MQ)");
        ret = -EINVAL;
        goto fail;
    }
    backend_chan_open(dev);
    watch_socket(dev);
    return 0;

fail:
    vhost_user_close(&dev->conn);
    return ret;
}

static int check_memory(struct vhost_dev *dev, char **errp)
{
    for (unsigned i = 0; i < dev->mem->nregions; i++) {
        uint64_t off;

        if (!dev->ram_fd || dev->ram_fd(dev->mem->regions[i].host, &off) < 0) {
            /* QEMU's vhost-user needs an fd per region; say what to change */
            *errp = g_strdup("vhost-user requires shared guest memory: use -object "
                             "memory-backend-memfd (or memory-backend-file,share=on) and "
                             "-machine memory-backend=ID");
            return -EINVAL;
        }
    }
    return 0;
}

int vhost_dev_init(struct vhost_dev *dev, const char *path, int fd, const int *feature_bits, unsigned nvqs,
                   GuestMemory *mem, VhostRamFdFn *ram_fd, const VhostDevOps *ops, void *opaque,
                   char **errp)
{
    int ret;

    memset(dev, 0, sizeof(*dev));
    vhost_user_conn_init(&dev->conn, VHOST_USER_TIMEOUT_MS);
    vhost_user_conn_init(&dev->backend_chan, 100);
    dev->path = g_strdup(path);
    dev->feature_bits = feature_bits;
    dev->nvqs = nvqs;
    dev->mem = mem;
    dev->ram_fd = ram_fd;
    dev->ops = ops;
    dev->opaque = opaque;
    dev->inflight_fd = -1;
    dev->vqs = g_new0(struct vhost_virtqueue, nvqs);
    for (unsigned i = 0; i < nvqs; i++) {
        dev->vqs[i].kick_fd = dev->vqs[i].call_fd = -1;
    }
    ret = check_memory(dev, errp);
    if (ret < 0 && fd >= 0) {
        close(fd);
    }
    if (ret == 0) {
        dev->conn.fd = fd;      /* -1: vhost_dev_connect connects by path */
        ret = vhost_dev_connect(dev, VHOST_USER_TIMEOUT_MS, errp);
    }
    if (ret < 0) {
        g_free(dev->vqs);
        g_free(dev->path);
        memset(dev, 0, sizeof(*dev));
        dev->conn.fd = dev->backend_chan.fd = dev->inflight_fd = -1;
    }
    return ret;
}

bool vhost_dev_connected(const struct vhost_dev *dev)
{
    return dev->conn.fd >= 0;
}

void vhost_dev_set_reconnect(struct vhost_dev *dev, unsigned ms)
{
    dev->reconnect_ms = ms;
}

/* ---- rings ---- */

static gboolean vhost_call_ready(gint fd, GIOCondition cond, gpointer opaque);

typedef struct CallCtx {
    struct vhost_dev *dev;
    unsigned n;
} CallCtx;

static int vq_fds(struct vhost_dev *dev, unsigned n)
{
    struct vhost_virtqueue *vq = &dev->vqs[n];

    if (vq->kick_fd < 0) {
        vq->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (vq->call_fd < 0) {
        vq->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (vq->kick_fd < 0 || vq->call_fd < 0) {
        return -errno;
    }
    if (!vq->call_watch) {
        CallCtx *c = g_new(CallCtx, 1);

        c->dev = dev;
        c->n = n;
        vq->call_watch = g_unix_fd_add_full(G_PRIORITY_DEFAULT, vq->call_fd, G_IO_IN, vhost_call_ready,
                                            c, g_free);
    }
    return 0;
}

static gboolean vhost_call_ready(gint fd, GIOCondition cond, gpointer opaque)
{
    CallCtx *c = opaque;
    uint64_t count;

    /* one read drains every signal since the last; one interrupt covers them */
    if (read(fd, &count, sizeof(count)) == sizeof(count) && c->dev->ops && c->dev->ops->call) {
        c->dev->ops->call(c->dev->opaque, c->n);
    }
    return G_SOURCE_CONTINUE;
}

void vhost_dev_kick(struct vhost_dev *dev, unsigned n)
{
    uint64_t one = 1;

    /* While the backend is away the count waits in the eventfd: the next backend gets it. */
    if (n < dev->nvqs && dev->vqs[n].kick_fd >= 0) {
        ssize_t r = write(dev->vqs[n].kick_fd, &one, sizeof(one));
        (void)r;                /* EAGAIN: the counter is saturated, still a kick */
    }
}

int vhost_dev_set_vring_enable(struct vhost_dev *dev, unsigned n, bool enable)
{
    if (n >= dev->nvqs || !dev->vqs[n].started || dev->conn.fd < 0) {
        return -EINVAL;
    }
    return vhost_user_vring_enable(&dev->conn, reply_ack(dev), n, enable);
}

static int set_mem_table(struct vhost_dev *dev)
{
    VhostUserMemoryRegion regions[VHOST_USER_MAX_REGIONS];
    int fds[VHOST_USER_MAX_REGIONS];
    unsigned n = dev->mem->nregions;

    if (n == 0 || n > VHOST_USER_MAX_REGIONS) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < n; i++) {
        const GuestMemoryRegion *r = &dev->mem->regions[i];
        uint64_t off;

        fds[i] = dev->ram_fd ? dev->ram_fd(r->host, &off) : -1;
        if (fds[i] < 0) {
            return -EINVAL;
        }
        regions[i] = (VhostUserMemoryRegion){
            .guest_phys_addr = r->gpa,
            .memory_size = r->size,
            .userspace_addr = (uint64_t)(uintptr_t)r->host,
            .mmap_offset = off,
        };
    }
    return vhost_user_set_mem_table(&dev->conn, reply_ack(dev), regions, fds, n);
}

static void free_inflight(struct vhost_dev *dev)
{
    if (dev->inflight_addr) {
        munmap(dev->inflight_addr, dev->inflight.mmap_size);
        dev->inflight_addr = NULL;
    }
    if (dev->inflight_fd >= 0) {
        close(dev->inflight_fd);
        dev->inflight_fd = -1;
    }
}

/* Does the next start hand queue @n to the backend? (enabled by the driver, below start_nvqs) */
static bool vq_handed_over(const struct vhost_dev *dev, VirtIODevice *vdev, unsigned n)
{
    return virtio_queue_get_enabled(vdev, n) && (!dev->start_nvqs || n < dev->start_nvqs);
}

/*
 * GET_INFLIGHT_FD at the first start after a reset (the region then lives
 * across backend restarts until the next device reset, as QEMU keeps it),
 * sized for the rings the driver set up; SET_INFLIGHT_FD every start.
 */
static int setup_inflight(struct vhost_dev *dev, VirtIODevice *vdev)
{
    unsigned qsize = 0;
    int ret;

    if (!has_protocol(dev, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD)) {
        return 0;
    }
    for (unsigned n = 0; n < dev->nvqs; n++) {
        if (vq_handed_over(dev, vdev, n)) {
            qsize = MAX(qsize, virtio_queue_get_num(vdev, n));
        }
    }
    if (dev->inflight_fd >= 0 && qsize > dev->inflight.queue_size) {
        free_inflight(dev);     /* not big enough: nothing can be in flight in it (see vhost_dev_reset) */
    }
    if (dev->inflight_fd < 0) {
        void *addr;

        ret = vhost_user_get_inflight_fd(&dev->conn, (uint16_t)dev->nvqs, (uint16_t)qsize,
                                         &dev->inflight, &dev->inflight_fd);
        if (ret < 0) {
            return ret;
        }
        /* map it so it stays alive (and is ours) whatever the backend does */
        addr = mmap(NULL, dev->inflight.mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
                    dev->inflight_fd, (off_t)dev->inflight.mmap_offset);
        if (addr == MAP_FAILED) {
            ret = -errno;
            close(dev->inflight_fd);
            dev->inflight_fd = -1;
            return ret;
        }
        dev->inflight_addr = addr;
        dev->inflight.num_queues = (uint16_t)dev->nvqs;
        dev->inflight.queue_size = (uint16_t)qsize;
    }
    return vhost_user_set_inflight_fd(&dev->conn, reply_ack(dev), &dev->inflight, dev->inflight_fd);
}

/*
 * Where the backend resumes queue @n: after a clean stop the base it
 * reported; otherwise split rings resume at the used index in guest memory
 * (everything after it is redone, or resubmitted from the inflight region),
 * packed rings at the core's indices.
 */
static uint32_t vring_base(struct vhost_dev *dev, VirtIODevice *vdev, unsigned n)
{
    struct vhost_virtqueue *vq = &dev->vqs[n];
    bool packed = virtio_vdev_has_feature(vdev, VIRTIO_F_RING_PACKED);
    int used;

    if (vq->base_valid) {
        return vq->last_base;
    }
    if (!packed && vq->resync) {
        used = virtio_queue_update_used_idx(vdev, n);
        if (used >= 0) {
            return (uint32_t)used & 0xffff;
        }
    }
    if (!packed) {
        return virtio_queue_get_last_avail_idx(vdev, n) & 0xffff;
    }
    return (virtio_queue_get_last_avail_idx(vdev, n) & 0xffff) |
           (virtio_queue_get_used_idx(vdev, n) & 0xffff) << 16;
}

int vhost_dev_start(struct vhost_dev *dev, VirtIODevice *vdev, char **errp)
{
    const char *what;
    int ret;

    if (dev->started) {
        return 0;
    }
    if (dev->conn.fd < 0) {
        *errp = g_strdup("vhost-user backend not connected");
        return -ENOTCONN;
    }
    dev->vdev = vdev;
    dev->acked_features = vhost_backend_features(dev->feature_bits, vdev->guest_features);
    what = "SET_FEATURES";
    ret = vhost_user_set_features(&dev->conn, reply_ack(dev), dev->acked_features);
    if (ret == 0) {
        what = "SET_MEM_TABLE";
        ret = set_mem_table(dev);
    }
    if (ret == 0) {
        what = "SET_INFLIGHT_FD";
        ret = setup_inflight(dev, vdev);
    }
    for (unsigned n = 0; ret == 0 && n < dev->nvqs; n++) {
        VhostUserVringSetup s = { .index = n, .enable = true };
        hwaddr desc, drv, devc;

        if (!vq_handed_over(dev, vdev, n)) {
            continue;
        }
        what = "vring set-up";
        ret = vq_fds(dev, n);
        if (ret < 0) {
            break;
        }
        virtio_queue_get_rings(vdev, n, &desc, &drv, &devc);
        /* the core validated the rings at DRIVER_OK: each lies inside one RAM region */
        s.desc_uaddr = (uint64_t)(uintptr_t)guest_memory_translate(dev->mem, desc, &(uint64_t){ 1 }, false);
        s.avail_uaddr = (uint64_t)(uintptr_t)guest_memory_translate(dev->mem, drv, &(uint64_t){ 1 }, false);
        s.used_uaddr = (uint64_t)(uintptr_t)guest_memory_translate(dev->mem, devc, &(uint64_t){ 1 }, true);
        if (!s.desc_uaddr || !s.avail_uaddr || !s.used_uaddr) {
            ret = -EFAULT;
            break;
        }
        s.num = virtio_queue_get_num(vdev, n);
        s.base = vring_base(dev, vdev, n);
        s.kick_fd = dev->vqs[n].kick_fd;
        s.call_fd = dev->vqs[n].call_fd;
        ret = vhost_user_vring_setup(&dev->conn, reply_ack(dev), &s);
        if (ret == 0) {
            dev->vqs[n].started = true;
            dev->vqs[n].base_valid = false;
            dev->vqs[n].resync = false;
            /* kicks sent while no backend listened are in the eventfd already */
        }
    }
    if (ret != 0) {
        *errp = g_strdup_printf("vhost-user: %s failed: %s", what,
                                ret > 0 ? "refused by the backend" : g_strerror(-ret));
        /* The queues set up before the failure run in the backend: stop them (GET_VRING_BASE). */
        dev->started = true;
        vhost_dev_stop(dev);
        return ret > 0 ? -EIO : ret;
    }
    dev->started = true;
    return 0;
}

void vhost_dev_stop(struct vhost_dev *dev)
{
    if (!dev->started) {
        return;
    }
    for (unsigned n = 0; n < dev->nvqs; n++) {
        struct vhost_virtqueue *vq = &dev->vqs[n];

        if (!vq->started) {
            continue;
        }
        vq->started = false;
        if (dev->conn.fd >= 0 && vhost_user_get_vring_base(&dev->conn, n, &vq->last_base) == 0) {
            vq->base_valid = true;
        }
    }
    dev->started = false;
    dev->vdev = NULL;
}

/* The device was reset: nothing of the old rings may be resumed. */
void vhost_dev_reset(struct vhost_dev *dev)
{
    vhost_dev_stop(dev);
    for (unsigned n = 0; n < dev->nvqs; n++) {
        dev->vqs[n].base_valid = false;
        dev->vqs[n].resync = false;
    }
    /* a fresh driver has nothing in flight; its rings may be bigger: a new region at the next start */
    free_inflight(dev);
}

/* ---- reconnect ---- */

static gboolean vhost_reconnect_timer(gpointer opaque)
{
    struct vhost_dev *dev = opaque;
    char *err = NULL;

    if (vhost_dev_connect(dev, 0, &err) < 0) {
        g_free(err);
        return G_SOURCE_CONTINUE;       /* try again in reconnect_ms */
    }
    dev->reconnect_timer = 0;
    dev->reconnects++;
    if (dev->ops && dev->ops->connection) {
        dev->ops->connection(dev->opaque, false);   /* the device restarts its rings */
    }
    return G_SOURCE_REMOVE;
}

static void vhost_dev_lost(struct vhost_dev *dev)
{
    unwatch_socket(dev);
    backend_chan_close(dev);
    vhost_user_close(&dev->conn);
    if (dev->started) {
        /* no GET_VRING_BASE possible: the next start resumes from guest memory */
        for (unsigned n = 0; n < dev->nvqs; n++) {
            dev->vqs[n].resync = dev->vqs[n].started;
            dev->vqs[n].started = false;
            dev->vqs[n].base_valid = false;
        }
        dev->started = false;
        dev->vdev = NULL;
    }
    if (dev->ops && dev->ops->connection) {
        dev->ops->connection(dev->opaque, true);
    }
    if (dev->reconnect_ms && !dev->reconnect_timer) {
        dev->reconnect_timer = g_timeout_add(dev->reconnect_ms, vhost_reconnect_timer, dev);
    }
}

void vhost_dev_cleanup(struct vhost_dev *dev)
{
    if (!dev->vqs) {
        return;
    }
    vhost_dev_stop(dev);
    unwatch_socket(dev);
    backend_chan_close(dev);
    if (dev->reconnect_timer) {
        g_source_remove(dev->reconnect_timer);
        dev->reconnect_timer = 0;
    }
    vhost_user_close(&dev->conn);
    for (unsigned n = 0; n < dev->nvqs; n++) {
        struct vhost_virtqueue *vq = &dev->vqs[n];

        if (vq->call_watch) {
            g_source_remove(vq->call_watch);
        }
        if (vq->kick_fd >= 0) {
            close(vq->kick_fd);
        }
        if (vq->call_fd >= 0) {
            close(vq->call_fd);
        }
    }
    free_inflight(dev);
    g_free(dev->vqs);
    g_free(dev->path);
    dev->vqs = NULL;
    dev->path = NULL;
}

/* ---- config space ---- */

int vhost_dev_get_config(struct vhost_dev *dev, uint8_t *config, uint32_t len, char **errp)
{
    int ret;

    if (!has_protocol(dev, VHOST_USER_PROTOCOL_F_CONFIG)) {
        *errp = g_strdup("vhost-user: the backend does not offer the CONFIG protocol feature");
        return -ENOTSUP;
    }
    ret = vhost_user_get_config(&dev->conn, 0, len, config);
    if (ret < 0) {
        *errp = g_strdup_printf("vhost-user: GET_CONFIG failed: %s", g_strerror(-ret));
    }
    return ret;
}

int vhost_dev_set_config(struct vhost_dev *dev, const uint8_t *data, uint32_t offset, uint32_t len)
{
    if (!has_protocol(dev, VHOST_USER_PROTOCOL_F_CONFIG) || dev->conn.fd < 0) {
        return -ENOTSUP;
    }
    return vhost_user_set_config(&dev->conn, reply_ack(dev), offset, len, data);
}
