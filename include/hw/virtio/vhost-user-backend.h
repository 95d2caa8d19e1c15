/*
 * The backend side of the vhost-user protocol (QEMU docs/interop/vhost-user.rst)
 * on top of the vdm virtio core.
 *
 * The library maps vhost-user messages to core calls and nothing else: the
 * rings are driven by hw/virtio/virtio.c. SET_MEM_TABLE / ADD_MEM_REG fill the
 * GuestMemory the device uses, SET_VRING_* write a VirtQueue's configuration,
 * a queue starts (virtio_queue_activate) once it has a kick eventfd and is
 * enabled, kicks become virtio_queue_notify on the backend's GMainContext and
 * virtio_notify writes the queue's call eventfd.
 *
 * A daemon:
 *   1. creates the backend with vhost_user_backend_new() (the VirtIODevice
 *      may already be initialised with virtio_init(), its mem is replaced);
 *   2. sets its queue handlers with virtio_queue_set_handler();
 *   3. calls vhost_user_backend_listen() and runs the GMainContext.
 * One connection is served at a time; after a disconnect the device is reset,
 * guest memory unmapped, and the next connection accepted. The inflight
 * region (INFLIGHT_SHMFD) survives disconnects so a reconnecting frontend can
 * hand it back.
 *
 * The peer is untrusted: every message is checked against a per-request table
 * (size, fds, vring index) before its handler runs, and every address, size
 * and count in it afterwards. A bad message gets an error reply (REPLY_ACK
 * with NEED_REPLY) or, when no reply can say it (no NEED_REPLY, or a request
 * with a reply of its own), the connection is closed.
 *
 * Behaviour a daemon may rely on:
 * - SET_FEATURES drives the core's status to ACKNOWLEDGE|DRIVER|FEATURES_OK
 *   (refused without VERSION_1, or with other features while a ring runs); a
 *   device broken by a fault is reset by the next SET_FEATURES with all rings
 *   stopped (QEMU starts every run with one). The first ring to start adds
 *   DRIVER_OK. SET_STATUS is recorded for GET_STATUS only (QEMU sends 0 before
 *   GET_VRING_BASE; a reset there would lose the ring indices).
 * - A ring starts when it has memory, addresses, a kick eventfd, accepted
 *   features and is enabled (SET_VRING_ENABLE 1 once
 *   VHOST_USER_F_PROTOCOL_FEATURES is acked; without it, at the kick).
 *   Split rings resume from the ring's used index: IN_ORDER rewinds to it,
 *   inflight tracking resubmits, a base more than a ring ahead is replaced.
 * - GET_VRING_BASE stops the ring (queue_started(n, false) first) and closes
 *   its kick fd; packed values carry avail in bits 0-15 and used in 16-31.
 * - Kick and call fds must be eventfds; polling mode (no kick fd) is refused.
 * - A memory region that leaves the table while buffers are in flight stays
 *   mapped until none is (bounded; beyond that the change is refused).
 *
 * Context: everything here runs on the thread that iterates the backend's
 * GMainContext (queue handlers and ops included), except
 * vhost_user_backend_new/_set_context/_listen/_serve_fd, which are called
 * before that context runs, and vhost_user_backend_get_stats, which may be
 * called from any thread.
 */
#ifndef HW_VIRTIO_VHOST_USER_BACKEND_H
#define HW_VIRTIO_VHOST_USER_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include <glib.h>

#include "hw/virtio/virtio.h"

/* ---- protocol constants (vhost-user.rst), shared with test frontends ---- */

/* "Front-end message types" */
typedef enum VhostUserRequest {
    VHOST_USER_NONE = 0,
    VHOST_USER_GET_FEATURES = 1,
    VHOST_USER_SET_FEATURES = 2,
    VHOST_USER_SET_OWNER = 3,
    VHOST_USER_RESET_OWNER = 4,
    VHOST_USER_SET_MEM_TABLE = 5,
    VHOST_USER_SET_LOG_BASE = 6,
    VHOST_USER_SET_LOG_FD = 7,
    VHOST_USER_SET_VRING_NUM = 8,
    VHOST_USER_SET_VRING_ADDR = 9,
    VHOST_USER_SET_VRING_BASE = 10,
    VHOST_USER_GET_VRING_BASE = 11,
    VHOST_USER_SET_VRING_KICK = 12,
    VHOST_USER_SET_VRING_CALL = 13,
    VHOST_USER_SET_VRING_ERR = 14,
    VHOST_USER_GET_PROTOCOL_FEATURES = 15,
    VHOST_USER_SET_PROTOCOL_FEATURES = 16,
    VHOST_USER_GET_QUEUE_NUM = 17,
    VHOST_USER_SET_VRING_ENABLE = 18,
    VHOST_USER_SEND_RARP = 19,
    VHOST_USER_NET_SET_MTU = 20,
    VHOST_USER_SET_BACKEND_REQ_FD = 21,
    VHOST_USER_IOTLB_MSG = 22,
    VHOST_USER_SET_VRING_ENDIAN = 23,
    VHOST_USER_GET_CONFIG = 24,
    VHOST_USER_SET_CONFIG = 25,
    VHOST_USER_CREATE_CRYPTO_SESSION = 26,
    VHOST_USER_CLOSE_CRYPTO_SESSION = 27,
    VHOST_USER_POSTCOPY_ADVISE = 28,
    VHOST_USER_POSTCOPY_LISTEN = 29,
    VHOST_USER_POSTCOPY_END = 30,
    VHOST_USER_GET_INFLIGHT_FD = 31,
    VHOST_USER_SET_INFLIGHT_FD = 32,
    VHOST_USER_GPU_SET_SOCKET = 33,
    VHOST_USER_RESET_DEVICE = 34,
    VHOST_USER_VRING_KICK = 35,
    VHOST_USER_GET_MAX_MEM_SLOTS = 36,
    VHOST_USER_ADD_MEM_REG = 37,
    VHOST_USER_REM_MEM_REG = 38,
    VHOST_USER_SET_STATUS = 39,
    VHOST_USER_GET_STATUS = 40,
    VHOST_USER_REQUEST_MAX
} VhostUserRequest;

/* "Back-end message types" (sent on the SET_BACKEND_REQ_FD channel). */
#define VHOST_USER_BACKEND_CONFIG_CHANGE_MSG 2

/* Header flags: bits 0-1 version, bit 2 reply, bit 3 need reply. */
#define VHOST_USER_VERSION          0x1
#define VHOST_USER_VERSION_MASK     0x3
#define VHOST_USER_REPLY_MASK       0x4
#define VHOST_USER_NEED_REPLY_MASK  0x8

/* Feature bit 30 of GET/SET_FEATURES: the protocol-feature handshake exists. */
#define VHOST_USER_F_PROTOCOL_FEATURES 30

/* Protocol feature bits (GET/SET_PROTOCOL_FEATURES). */
#define VHOST_USER_PROTOCOL_F_MQ                    0
#define VHOST_USER_PROTOCOL_F_LOG_SHMFD             1
#define VHOST_USER_PROTOCOL_F_RARP                  2
#define VHOST_USER_PROTOCOL_F_REPLY_ACK             3
#define VHOST_USER_PROTOCOL_F_NET_MTU               4
#define VHOST_USER_PROTOCOL_F_BACKEND_REQ           5
#define VHOST_USER_PROTOCOL_F_CROSS_ENDIAN          6
#define VHOST_USER_PROTOCOL_F_CRYPTO_SESSION        7
#define VHOST_USER_PROTOCOL_F_PAGEFAULT             8
#define VHOST_USER_PROTOCOL_F_CONFIG                9
#define VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD       10
#define VHOST_USER_PROTOCOL_F_HOST_NOTIFIER         11
#define VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD        12
#define VHOST_USER_PROTOCOL_F_RESET_DEVICE          13
#define VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS  14
#define VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS   15
#define VHOST_USER_PROTOCOL_F_STATUS                16

/* SET_VRING_KICK/CALL/ERR payload: bits 0-7 vring index, bit 8 "no fd". */
#define VHOST_USER_VRING_IDX_MASK   0xffull
#define VHOST_USER_VRING_NOFD_MASK  (1ull << 8)

/* Regions in one SET_MEM_TABLE (VHOST_MEMORY_BASELINE_NREGIONS) and fds per message. */
#define VHOST_USER_MAX_REGIONS      8
#define VHOST_USER_MAX_FDS          8
/* Largest payload accepted; a header announcing more closes the connection. */
#define VHOST_USER_PAYLOAD_MAX      4096
/* GET/SET_CONFIG: largest config space. */
#define VHOST_USER_MAX_CONFIG_SIZE  256

typedef struct VhostUserHeader {
    uint32_t request;
    uint32_t flags;
    uint32_t size;              /* payload bytes after the header */
} VhostUserHeader;

typedef struct VhostUserVringState {
    uint32_t index;
    uint32_t num;
} VhostUserVringState;

/* Addresses are the frontend's user (virtual) addresses. Note the order. */
typedef struct VhostUserVringAddr {
    uint32_t index;
    uint32_t flags;             /* bit 0: VHOST_VRING_F_LOG */
    uint64_t desc_user_addr;
    uint64_t used_user_addr;
    uint64_t avail_user_addr;
    uint64_t log_guest_addr;
} VhostUserVringAddr;

typedef struct VhostUserMemoryRegion {
    uint64_t guest_phys_addr;
    uint64_t memory_size;
    uint64_t userspace_addr;
    uint64_t mmap_offset;
} VhostUserMemoryRegion;

typedef struct VhostUserMemory {
    uint32_t nregions;
    uint32_t padding;
    VhostUserMemoryRegion regions[VHOST_USER_MAX_REGIONS];
} VhostUserMemory;

/* ADD_MEM_REG / REM_MEM_REG */
typedef struct VhostUserMemRegMsg {
    uint64_t padding;
    VhostUserMemoryRegion region;
} VhostUserMemRegMsg;

typedef struct VhostUserConfig {
    uint32_t offset;
    uint32_t size;
    uint32_t flags;
    uint8_t region[VHOST_USER_MAX_CONFIG_SIZE];
} VhostUserConfig;
#define VHOST_USER_CONFIG_HDR_SIZE 12

typedef struct VhostUserInflight {
    uint64_t mmap_size;
    uint64_t mmap_offset;
    uint16_t num_queues;
    uint16_t queue_size;
} VhostUserInflight;
/* Bytes a frontend sends: the fields without the struct's tail padding. */
#define VHOST_USER_INFLIGHT_SIZE 20

/*
 * The inflight region, one per queue, split layout (as libvhost-user lays it
 * out, so a region a frontend kept across backends of either kind reads the
 * same): a header then one 16-byte entry per descriptor head. Queue regions
 * follow each other, each rounded up to 64 bytes.
 *
 * Packed rings (vdm's own use of the same bytes; QEMU only keeps the region):
 * used_idx holds the device's used position as pos | !wrap << 15, so a
 * zeroed region reads as the ring's start (position 0, wrap 1); desc[id].next
 * holds the descriptor count of buffer id's last chain.
 */
typedef struct VhostUserInflightDesc {
    uint8_t inflight;           /* 1 while the head is popped and not yet used */
    uint8_t padding[5];
    uint16_t next;              /* packed: the chain's descriptor count */
    uint64_t counter;           /* pop order, for resubmission */
} VhostUserInflightDesc;

typedef struct VhostUserInflightQueue {
    uint64_t features;
    uint16_t version;           /* 1 */
    uint16_t desc_num;
    uint16_t last_batch_head;   /* head being published when a crash may strike */
    uint16_t used_idx;          /* used index once last_batch_head was published */
    VhostUserInflightDesc desc[];
} VhostUserInflightQueue;

/* Bytes one queue's inflight area takes for @queue_size heads. */
uint64_t vhost_user_inflight_queue_size(unsigned queue_size);

/* ---- the backend ---- */

typedef struct VhostUserBackend VhostUserBackend;

/* Hooks into the daemon. All optional. @opaque is what vhost_user_backend_new got. */
typedef struct VhostUserBackendOps {
    /*
     * GET_CONFIG: refresh vdev->config before @len bytes at @offset are sent
     * (e.g. capacity). Without it vdev->config is sent as it is.
     */
    void (*get_config)(void *opaque, uint32_t offset, uint32_t len);
    /*
     * SET_CONFIG: the frontend writes @len bytes at @offset (offset + len <=
     * config_len, checked). Return 0 or -errno. Without it SET_CONFIG is refused.
     */
    int (*set_config)(void *opaque, uint32_t offset, const uint8_t *data, uint32_t len,
                      uint32_t flags);
    /*
     * Queue @n started (true: running; its handler may be called) or is about
     * to stop (false: GET_VRING_BASE, disable, reset or disconnect). When
     * stopping, finish or give up every request in flight on @n before
     * returning: its ring index is read right after, and guest memory may be
     * unmapped.
     */
    void (*queue_started)(void *opaque, unsigned n, bool started);
    /* The connection closed or the frontend reset the device; the device is reset next. */
    void (*reset)(void *opaque);
} VhostUserBackendOps;

/*
 * Create a backend for @vdev (initialised with virtio_init; its mem may be
 * NULL). The backend owns the guest memory: vdev->mem is pointed at it, and
 * vdev->transport at the vhost-user notifications. Protocol features offered:
 * MQ, REPLY_ACK, BACKEND_REQ, CONFIG (when vdev->config_len > 0),
 * INFLIGHT_SHMFD, RESET_DEVICE, CONFIGURE_MEM_SLOTS, STATUS.
 */
VhostUserBackend *vhost_user_backend_new(VirtIODevice *vdev, const VhostUserBackendOps *ops,
                                         void *opaque);
/*
 * Close the connection (if any: queue_started(n, false) and reset run, so the
 * daemon's opaque must still be valid), stop listening, unmap everything,
 * and detach from vdev (call virtio_cleanup afterwards). @be may be NULL.
 */
void vhost_user_backend_free(VhostUserBackend *be);

/* Run on @ctx instead of the default main context. Call before _listen / _serve_fd. */
void vhost_user_backend_set_context(VhostUserBackend *be, GMainContext *ctx);

/*
 * Listen on a unix socket at @socket_path (a stale socket file there is
 * replaced) and serve one connection at a time. Returns 0 or -1 with @errp set.
 */
int vhost_user_backend_listen(VhostUserBackend *be, const char *socket_path, GError **errp);

/*
 * Serve an already connected socket (socketpair, or a frontend in server
 * mode). Takes @fd. Fails (-1, @errp) if a connection is being served.
 */
int vhost_user_backend_serve_fd(VhostUserBackend *be, int fd, GError **errp);

/*
 * Survive a frontend that shrinks the file behind guest memory after it was
 * mapped (the next access would raise SIGBUS and kill the daemon): installs
 * a process-wide SIGBUS handler that puts a zero page over the faulting page
 * of a backend mapping; the device is then broken (NEEDS_RESET) at the next
 * kick or message. Faults outside backend mappings go to the previous
 * handler. Call once, early, from the daemon's main thread. Returns 0 or -errno.
 */
int vhost_user_backend_guard_sigbus(void);

/* Drop the current connection as if the peer had closed it (then accept the next). */
void vhost_user_backend_disconnect(VhostUserBackend *be);

/*
 * Log refused messages and failures to stderr (default on; at most a few
 * dozen lines per connection, so a hostile peer cannot flood the log).
 */
void vhost_user_backend_set_log(VhostUserBackend *be, bool enabled);

VirtIODevice *vhost_user_backend_get_device(VhostUserBackend *be);
GuestMemory *vhost_user_backend_get_memory(VhostUserBackend *be);

typedef struct VhostUserBackendStats {
    uint64_t connections;       /* accepted so far */
    uint64_t messages;          /* requests handled (valid or not) */
    uint64_t bad_messages;      /* refused by the table check or a handler */
    uint64_t kicks;
    uint64_t calls;
    bool connected;
    uint64_t features;          /* negotiated virtio features (bit 30 stripped) */
    uint64_t protocol_features; /* negotiated protocol features */
    unsigned queues_running;
} VhostUserBackendStats;
void vhost_user_backend_get_stats(VhostUserBackend *be, VhostUserBackendStats *stats);

/* ---- inflight tracking (VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD) ---- */

/*
 * A daemon that wants requests resumed after it is killed and restarted
 * records each element it pops and completes. The calls are no-ops when
 * the frontend gave no inflight region or the id is out of range. Order per
 * request:
 *   vhost_user_inflight_begin(elem)     after virtqueue_pop
 *   vhost_user_inflight_pre_put(head)   just before virtqueue_push publishes it
 *   vhost_user_inflight_put(head)       right after
 * Split: publishing one element per push keeps this exact (a crash between
 * pre_put and put is recognised by the used index); a batch flush is covered
 * only for its last head.
 * Packed (with or without IN_ORDER): the backend makes a tracked queue use
 * buffers in order, each with its own used descriptor
 * (virtio_queue_set_ordered_use), so no used descriptor ever overwrites an
 * in-flight buffer's descriptors; put() records the used position and
 * begin() each buffer's descriptor count. A restarted queue walks any used
 * descriptors published after the record and resumes popping there: the
 * buffers still in flight are popped (and done) again. A packed ring keeps
 * no used index in guest memory, so this is needed under IN_ORDER too.
 *
 * Split under VIRTIO_F_IN_ORDER needs none of this: the used index in guest
 * memory is a contiguous completion boundary and a restarted queue rewinds
 * last_avail_idx to it (the backend does that itself).
 */
void vhost_user_inflight_begin(VhostUserBackend *be, unsigned n, const VirtQueueElement *elem);
void vhost_user_inflight_pre_put(VhostUserBackend *be, unsigned n, unsigned head);
void vhost_user_inflight_put(VhostUserBackend *be, unsigned n, unsigned head);

/*
 * Heads to resubmit on queue @n, oldest first: valid from the
 * queue_started(n, true) call until the queue stops. The ring's
 * last_avail_idx already counts them (used_idx + count), so they are not
 * popped again: the daemon re-reads each chain with virtqueue_pop_inflight()
 * (or _elem) and completes it as usual with pre_put/put; the heads stay
 * marked in flight until then. Returns the count; *@heads is set when non-NULL.
 */
unsigned vhost_user_inflight_resubmit(VhostUserBackend *be, unsigned n, const uint16_t **heads);

#endif
