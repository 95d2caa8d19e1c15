/*
 * The frontend side of the vhost-user protocol (QEMU docs/interop/vhost-user.rst):
 * message encoding, sending with fds, bounded waits for replies, and the
 * request sequences a frontend needs (feature negotiation, memory table,
 * vring set-up, vring base, config, inflight region).
 *
 * This is the one implementation of the frontend's message layer: the device
 * host's vhost frontend (hw/virtio/vhost.c) and the test library
 * (tests/vhost-user/vhost-user-frontend.h) both use it.
 *
 * The backend is untrusted: every reply is checked (flags exactly
 * VERSION|REPLY, the request it answers, its size) before its payload is used.
 *
 * Plain POSIX, no glib and no event loop: callers block for at most
 * conn->timeout_ms per reply.
 * Context: one thread at a time per VhostUserConn.
 */
#ifndef HW_VIRTIO_VHOST_USER_H
#define HW_VIRTIO_VHOST_USER_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hw/virtio/vhost-user-backend.h"      /* protocol constants and payload layouts */

typedef struct VhostUserConn {
    int fd;                     /* connected socket, -1 when closed */
    int timeout_ms;             /* bound on every wait for a reply */
} VhostUserConn;

/* A closed connection that will wait @timeout_ms for replies. */
void vhost_user_conn_init(VhostUserConn *c, int timeout_ms);
/*
 * Connect to the unix socket @path; while it refuses, retry every 10 ms for up
 * to @retry_ms (0: one attempt). Returns 0, -EISCONN, -ENAMETOOLONG or -errno.
 */
int vhost_user_connect(VhostUserConn *c, const char *path, int retry_ms);
/* Close the socket (no-op when closed). */
void vhost_user_close(VhostUserConn *c);

/* Send one message (any header values, any payload, at most 2 * VHOST_USER_MAX_FDS fds). 0 or -errno. */
int vhost_user_send(VhostUserConn *c, uint32_t request, uint32_t flags, const void *payload,
                    uint32_t size, const int *fds, unsigned nfds);
/* Send raw bytes (tests: partial messages). */
int vhost_user_send_raw(VhostUserConn *c, const void *buf, size_t len);
/*
 * Receive one reply into @hdr and @payload (up to @max bytes). An fd that
 * came with it goes to *@fd (others, or all when @fd is NULL, are closed).
 * Returns the payload size, -EPIPE when the backend closed, -ETIMEDOUT,
 * -EPROTO (flags not exactly VERSION|REPLY, oversized), -EMSGSIZE.
 */
int vhost_user_recv(VhostUserConn *c, VhostUserHeader *hdr, void *payload, size_t max, int *fd);
/* The same for a request the backend sends on its channel (flags: version 1, NEED_REPLY allowed). */
int vhost_user_recv_request(VhostUserConn *c, VhostUserHeader *hdr, void *payload, size_t max, int *fd);

/*
 * A request without a reply of its own, sent with NEED_REPLY: returns the
 * backend's ack (0 success, > 0 refused), -EPIPE when the backend closed,
 * other -errno on failure. (REPLY_ACK must be negotiated for a reply to come.)
 */
int vhost_user_request(VhostUserConn *c, uint32_t request, const void *payload, uint32_t size,
                       const int *fds, unsigned nfds);
/* As vhost_user_request when @ack, else sent without waiting (returns 0 or -errno). */
int vhost_user_request_opt(VhostUserConn *c, bool ack, uint32_t request, const void *payload,
                           uint32_t size, const int *fds, unsigned nfds);
int vhost_user_set_u64(VhostUserConn *c, bool ack, uint32_t request, uint64_t val);
/*
 * A request with a reply of its own (GET_*): the reply must answer @request
 * and carry between @min and @max payload bytes. Returns the payload size or -errno.
 */
int vhost_user_call(VhostUserConn *c, uint32_t request, const void *payload, uint32_t size,
                    void *reply, size_t min, size_t max, int *reply_fd);
/* GET_FEATURES, GET_PROTOCOL_FEATURES, ...: 0 or -errno. */
int vhost_user_get_u64(VhostUserConn *c, uint32_t request, uint64_t *val);

/* True when a request was refused: error ack or closed connection. */
static inline bool vhost_user_refused(int ret)
{
    return ret > 0 || ret == -EPIPE;
}

/*
 * The handshake: SET_OWNER, GET_FEATURES (*@offered), GET/SET_PROTOCOL_FEATURES
 * (@want_protocol & offered; REPLY_ACK always asked for) into *@protocol.
 * The backend must offer VHOST_USER_F_PROTOCOL_FEATURES (-EPROTO otherwise).
 * Features are set separately (vhost_user_set_features). Returns 0 or -errno.
 */
int vhost_user_handshake(VhostUserConn *c, uint64_t want_protocol, uint64_t *offered,
                         uint64_t *protocol);
/* SET_FEATURES with @features | VHOST_USER_F_PROTOCOL_FEATURES. */
int vhost_user_set_features(VhostUserConn *c, bool ack, uint64_t features);

/* SET_MEM_TABLE with @n regions (each with its fd). */
int vhost_user_set_mem_table(VhostUserConn *c, bool ack, const VhostUserMemoryRegion *regions,
                             const int *fds, unsigned n);

/* One vring as a frontend hands it over: user addresses in the frontend's own mapping. */
typedef struct VhostUserVringSetup {
    unsigned index;
    unsigned num;
    uint32_t base;              /* SET_VRING_BASE (packed: avail in 0-15, used in 16-31) */
    uint64_t desc_uaddr, avail_uaddr, used_uaddr;
    int kick_fd, call_fd;       /* eventfds, not taken */
    bool enable;                /* SET_VRING_ENABLE 1 last */
} VhostUserVringSetup;
/*
 * SET_VRING_NUM, _BASE, _ADDR, _CALL, _KICK (and _ENABLE 1). Returns 0, the
 * first refusal (> 0) or -errno.
 */
int vhost_user_vring_setup(VhostUserConn *c, bool ack, const VhostUserVringSetup *r);
/* SET_VRING_ENABLE. */
int vhost_user_vring_enable(VhostUserConn *c, bool ack, unsigned index, bool enable);
/* GET_VRING_BASE: the backend stops the ring and reports its base. */
int vhost_user_get_vring_base(VhostUserConn *c, unsigned index, uint32_t *base);

/* GET_CONFIG: @len bytes (<= VHOST_USER_MAX_CONFIG_SIZE) at @offset into @buf. */
int vhost_user_get_config(VhostUserConn *c, uint32_t offset, uint32_t len, uint8_t *buf);
int vhost_user_set_config(VhostUserConn *c, bool ack, uint32_t offset, uint32_t len,
                          const uint8_t *buf);

/*
 * GET_INFLIGHT_FD for @num_queues queues of @queue_size: *@info gets the
 * backend's mmap size/offset, *@fd the region's fd (checked to be there).
 */
int vhost_user_get_inflight_fd(VhostUserConn *c, uint16_t num_queues, uint16_t queue_size,
                               VhostUserInflight *info, int *fd);
int vhost_user_set_inflight_fd(VhostUserConn *c, bool ack, const VhostUserInflight *info, int fd);

#endif
