/*
 * A small vhost-user frontend for tests and benchmarks: it speaks the
 * frontend side of the protocol over a unix socket, shares "guest RAM" with
 * the backend through a memfd, and sets up rings whose driver side is
 * tests/libvdriver. It can also send arbitrary (hostile) messages.
 *
 * Guest-physical addresses start at VUF_RAM_GPA; the frontend's user address
 * of a gpa is where this process mapped it (as DPDK virtio-user does).
 *
 * The message layer is the device host's own vhost-user frontend
 * (hw/virtio/vhost-user.c); this library adds a memfd "guest RAM", gpa to
 * user-address translation and the eventfds of its rings.
 *
 * Every wait is bounded by f->conn.timeout_ms.
 * Context: one thread per VuFrontend.
 */
#ifndef TESTS_VHOST_USER_VHOST_USER_FRONTEND_H
#define TESTS_VHOST_USER_VHOST_USER_FRONTEND_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "exec/memory.h"
#include "hw/virtio/vhost-user.h"

#define VUF_RAM_GPA 0x100000ull

typedef struct VuFrontend {
    VhostUserConn conn;         /* the socket (conn.fd -1 when closed) and the reply timeout */
    /* Guest RAM shared with the backend. */
    int mem_fd;
    uint8_t *ram;
    uint64_t ram_size;
    GuestMemory mem;            /* the frontend's own view, for vdriver */
    uint64_t features;          /* negotiated, without VHOST_USER_F_PROTOCOL_FEATURES */
    uint64_t protocol_features;
} VuFrontend;

/* Connect to @path, retrying until the timeout (the backend may still be starting). */
int vuf_connect(VuFrontend *f, const char *path, int timeout_ms);
/* Connect again after vuf_disconnect, keeping RAM (a frontend resuming after a backend restart). */
int vuf_reconnect(VuFrontend *f, const char *path);
/* Close the socket and unmap RAM. */
void vuf_close(VuFrontend *f);
/* Close only the socket (RAM stays, e.g. to reconnect and resume). */
void vuf_disconnect(VuFrontend *f);

/* Create @size bytes of shared RAM at VUF_RAM_GPA (memfd). */
int vuf_ram_create(VuFrontend *f, uint64_t size);
static inline void *vuf_host(VuFrontend *f, hwaddr gpa)
{
    return f->ram + (gpa - VUF_RAM_GPA);
}
static inline uint64_t vuf_uva(VuFrontend *f, hwaddr gpa)
{
    return (uint64_t)(uintptr_t)vuf_host(f, gpa);
}

/* Send one message (any header values, any payload, any fds). Returns 0 or -errno. */
static inline int vuf_send(VuFrontend *f, uint32_t request, uint32_t flags, const void *payload,
                           uint32_t size, const int *fds, unsigned nfds)
{
    return vhost_user_send(&f->conn, request, flags, payload, size, fds, nfds);
}
/* Send raw bytes (partial messages). */
static inline int vuf_send_raw(VuFrontend *f, const void *buf, size_t len)
{
    return vhost_user_send_raw(&f->conn, buf, len);
}
/* vhost_user_recv: payload size, -EPIPE when the backend closed, -ETIMEDOUT, -EPROTO. */
static inline int vuf_recv(VuFrontend *f, VhostUserHeader *hdr, void *payload, size_t max, int *fd)
{
    return vhost_user_recv(&f->conn, hdr, payload, max, fd);
}
/* With NEED_REPLY: 0 success, > 0 refused, -EPIPE closed, other -errno. */
static inline int vuf_request(VuFrontend *f, uint32_t request, const void *payload, uint32_t size,
                              const int *fds, unsigned nfds)
{
    return vhost_user_request(&f->conn, request, payload, size, fds, nfds);
}
static inline int vuf_set_u64(VuFrontend *f, uint32_t request, uint64_t val)
{
    return vhost_user_set_u64(&f->conn, true, request, val);
}
/* A request with a u64 reply (GET_FEATURES, ...). Returns 0 or -errno. */
static inline int vuf_get_u64(VuFrontend *f, uint32_t request, uint64_t *val)
{
    return vhost_user_get_u64(&f->conn, request, val);
}

/* True when a request was refused: error ack or closed connection. */
static inline bool vuf_refused(int ret)
{
    return vhost_user_refused(ret);
}

/*
 * SET_OWNER, features (@want & offered, plus bit 30), protocol features
 * (@want_protocol & offered; REPLY_ACK always). Returns 0 or -errno.
 */
int vuf_negotiate(VuFrontend *f, uint64_t want, uint64_t want_protocol);
/* SET_MEM_TABLE with the RAM as one region. Returns the ack. */
int vuf_set_mem_table(VuFrontend *f);

/* One ring as the frontend sets it up. */
typedef struct VuFrontendRing {
    unsigned index;
    unsigned num;
    hwaddr desc, driver, device;
    uint32_t base;              /* SET_VRING_BASE value */
    int kick_fd;                /* eventfds created by vuf_ring_setup */
    int call_fd;
} VuFrontendRing;

/*
 * SET_VRING_NUM, SET_VRING_BASE, SET_VRING_ADDR, SET_VRING_CALL,
 * SET_VRING_KICK and SET_VRING_ENABLE 1 for @r (eventfds created when
 * r->kick_fd / r->call_fd are < 0). Returns 0, the first refusal ack, or -errno.
 */
int vuf_ring_setup(VuFrontend *f, VuFrontendRing *r);
/* GET_VRING_BASE: stops the ring. */
static inline int vuf_ring_get_base(VuFrontend *f, unsigned index, uint32_t *base)
{
    return vhost_user_get_vring_base(&f->conn, index, base);
}
void vuf_ring_close(VuFrontendRing *r);
void vuf_kick(VuFrontendRing *r);
/* Wait for a call; returns true if one came within the timeout. */
bool vuf_wait_call(VuFrontend *f, VuFrontendRing *r);

/* Number of open fds of this process (/proc/self/fd), for leak checks. */
int vuf_count_fds(void);

#endif
