/*
 * vhost-user frontend: the message layer (see include/hw/virtio/vhost-user.h).
 */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "hw/virtio/vhost-user.h"

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vhost_user_conn_init(VhostUserConn *c, int timeout_ms)
{
    c->fd = -1;
    c->timeout_ms = timeout_ms;
}

int vhost_user_connect(VhostUserConn *c, const char *path, int retry_ms)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int64_t deadline = now_ms() + retry_ms;

    if (c->fd >= 0) {
        return -EISCONN;
    }
    if (strlen(path) >= sizeof(addr.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int err;

        if (fd < 0) {
            return -errno;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            c->fd = fd;
            return 0;
        }
        err = errno;
        close(fd);
        if (now_ms() >= deadline) {
            return -err;
        }
        usleep(10000);
    }
}

void vhost_user_close(VhostUserConn *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
}

/* Tests send more fds than a request may carry, to see the backend refuse them. */
#define SEND_MAX_FDS (2 * VHOST_USER_MAX_FDS)

static int send_all(VhostUserConn *c, const struct iovec *iov, unsigned niov, const int *fds,
                    unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(SEND_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = niov };
    size_t total = 0;
    ssize_t r;

    if (c->fd < 0) {
        return -EPIPE;
    }
    if (nfds > SEND_MAX_FDS) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < niov; i++) {
        total += iov[i].iov_len;
    }
    if (nfds) {
        struct cmsghdr *cm;

        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
    }
    do {
        r = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
    /* A unix stream socket takes a message this small whole, or fails. */
    return (size_t)r == total ? 0 : -EIO;
}

int vhost_user_send(VhostUserConn *c, uint32_t request, uint32_t flags, const void *payload,
                    uint32_t size, const int *fds, unsigned nfds)
{
    VhostUserHeader hdr = { .request = request, .flags = flags, .size = size };
    struct iovec iov[2] = {
        { .iov_base = &hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)payload, .iov_len = payload ? size : 0 },
    };

    return send_all(c, iov, 2, fds, nfds);
}

int vhost_user_send_raw(VhostUserConn *c, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return send_all(c, &iov, 1, NULL, 0);
}

/* Read exactly @len bytes within the timeout; the first fd that comes goes to *@fd. */
static int recv_exact(VhostUserConn *c, void *buf, size_t len, int *fd)
{
    int64_t deadline = now_ms() + c->timeout_ms;
    size_t have = 0;

    while (have < len) {
        union {
            char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = { .iov_base = (uint8_t *)buf + have, .iov_len = len - have };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
        int64_t left = deadline - now_ms();
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            return -ETIMEDOUT;
        }
        r = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r == 0 || errno == ECONNRESET ? -EPIPE : -errno;
        }
        for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
            size_t n;

            if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
                continue;
            }
            n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; i++) {
                int got;

                memcpy(&got, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
                if (fd && *fd < 0) {
                    *fd = got;
                } else {
                    close(got);     /* unexpected fds never leak */
                }
            }
        }
        have += (size_t)r;
    }
    return 0;
}

/* One message; @reply: it must carry flags exactly VERSION|REPLY, else only the version. */
static int recv_msg(VhostUserConn *c, VhostUserHeader *hdr, void *payload, size_t max, int *fd, bool reply)
{
    uint8_t discard[VHOST_USER_PAYLOAD_MAX];
    int ret;

    if (fd) {
        *fd = -1;
    }
    if (c->fd < 0) {
        return -EPIPE;
    }
    ret = recv_exact(c, hdr, sizeof(*hdr), fd);
    if (ret == 0 && hdr->size > VHOST_USER_PAYLOAD_MAX) {
        ret = -EPROTO;
    }
    if (ret == 0) {
        ret = recv_exact(c, hdr->size <= max ? payload : discard, hdr->size, fd);
    }
    if (ret == 0 && reply && hdr->flags != (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK)) {
        ret = -EPROTO;          /* replies carry flags exactly 0x5 */
    }
    if (ret == 0 && !reply && (hdr->flags & ~VHOST_USER_NEED_REPLY_MASK) != VHOST_USER_VERSION) {
        ret = -EPROTO;          /* a backend request: version 1, NEED_REPLY at most */
    }
    if (ret == 0 && hdr->size > max) {
        ret = -EMSGSIZE;
    }
    if (ret < 0) {
        if (fd && *fd >= 0) {
            close(*fd);
            *fd = -1;
        }
        return ret;
    }
    return (int)hdr->size;
}

int vhost_user_recv(VhostUserConn *c, VhostUserHeader *hdr, void *payload, size_t max, int *fd)
{
    return recv_msg(c, hdr, payload, max, fd, true);
}

int vhost_user_recv_request(VhostUserConn *c, VhostUserHeader *hdr, void *payload, size_t max, int *fd)
{
    return recv_msg(c, hdr, payload, max, fd, false);
}

int vhost_user_call(VhostUserConn *c, uint32_t request, const void *payload, uint32_t size,
                    void *reply, size_t min, size_t max, int *reply_fd)
{
    VhostUserHeader hdr;
    int ret = vhost_user_send(c, request, VHOST_USER_VERSION, payload, size, NULL, 0);

    if (ret < 0) {
        return ret;
    }
    ret = vhost_user_recv(c, &hdr, reply, max, reply_fd);
    if (ret < 0) {
        return ret;
    }
    if (hdr.request != request || (size_t)ret < min) {
        if (reply_fd && *reply_fd >= 0) {
            close(*reply_fd);
            *reply_fd = -1;
        }
        return -EPROTO;
    }
    return ret;
}

int vhost_user_request(VhostUserConn *c, uint32_t request, const void *payload, uint32_t size,
                       const int *fds, unsigned nfds)
{
    VhostUserHeader hdr;
    uint64_t ack;
    int ret = vhost_user_send(c, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload,
                              size, fds, nfds);

    if (ret < 0) {
        return ret;
    }
    ret = vhost_user_recv(c, &hdr, &ack, sizeof(ack), NULL);
    if (ret < 0) {
        return ret;
    }
    if (hdr.request != request || ret != sizeof(ack)) {
        return -EPROTO;
    }
    return ack == 0 ? 0 : (ack > 0x7fffffff ? 0x7fffffff : (int)ack);
}

int vhost_user_request_opt(VhostUserConn *c, bool ack, uint32_t request, const void *payload,
                           uint32_t size, const int *fds, unsigned nfds)
{
    if (ack) {
        return vhost_user_request(c, request, payload, size, fds, nfds);
    }
    return vhost_user_send(c, request, VHOST_USER_VERSION, payload, size, fds, nfds);
}

int vhost_user_set_u64(VhostUserConn *c, bool ack, uint32_t request, uint64_t val)
{
    return vhost_user_request_opt(c, ack, request, &val, sizeof(val), NULL, 0);
}

int vhost_user_get_u64(VhostUserConn *c, uint32_t request, uint64_t *val)
{
    int ret = vhost_user_call(c, request, NULL, 0, val, sizeof(*val), sizeof(*val), NULL);

    return ret < 0 ? ret : 0;
}

int vhost_user_handshake(VhostUserConn *c, uint64_t want_protocol, uint64_t *offered,
                         uint64_t *protocol)
{
    uint64_t poffered, p;
    int ret;

    ret = vhost_user_send(c, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    if (ret == 0) {
        ret = vhost_user_get_u64(c, VHOST_USER_GET_FEATURES, offered);
    }
    if (ret < 0) {
        return ret;
    }
    if (!(*offered & (1ull << VHOST_USER_F_PROTOCOL_FEATURES))) {
        return -EPROTO;
    }
    ret = vhost_user_get_u64(c, VHOST_USER_GET_PROTOCOL_FEATURES, &poffered);
    if (ret < 0) {
        return ret;
    }
    p = (want_protocol | 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) & poffered;
    /* No ack for this one: REPLY_ACK is only in force once it is set. */
    ret = vhost_user_send(c, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &p, sizeof(p),
                          NULL, 0);
    if (ret < 0) {
        return ret;
    }
    *protocol = p;
    return 0;
}

int vhost_user_set_features(VhostUserConn *c, bool ack, uint64_t features)
{
    return vhost_user_set_u64(c, ack, VHOST_USER_SET_FEATURES,
                              features | 1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

int vhost_user_set_mem_table(VhostUserConn *c, bool ack, const VhostUserMemoryRegion *regions,
                             const int *fds, unsigned n)
{
    VhostUserMemory m = { .nregions = n };

    if (n == 0 || n > VHOST_USER_MAX_REGIONS) {
        return -EINVAL;
    }
    memcpy(m.regions, regions, n * sizeof(regions[0]));
    return vhost_user_request_opt(c, ack, VHOST_USER_SET_MEM_TABLE, &m,
                                  (uint32_t)(offsetof(VhostUserMemory, regions) + n * sizeof(regions[0])),
                                  fds, n);
}

int vhost_user_vring_setup(VhostUserConn *c, bool ack, const VhostUserVringSetup *r)
{
    VhostUserVringState num = { r->index, r->num }, base = { r->index, r->base };
    VhostUserVringAddr addr = {
        .index = r->index,
        .desc_user_addr = r->desc_uaddr,
        .used_user_addr = r->used_uaddr,
        .avail_user_addr = r->avail_uaddr,
    };
    uint64_t idx = r->index;
    int ret;

    if ((ret = vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0)) ||
        (ret = vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_BASE, &base, sizeof(base), NULL, 0)) ||
        (ret = vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) ||
        (ret = vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_CALL, &idx, sizeof(idx), &r->call_fd, 1)) ||
        (ret = vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_KICK, &idx, sizeof(idx), &r->kick_fd, 1))) {
        return ret;
    }
    return r->enable ? vhost_user_vring_enable(c, ack, r->index, true) : 0;
}

int vhost_user_vring_enable(VhostUserConn *c, bool ack, unsigned index, bool enable)
{
    VhostUserVringState s = { index, enable };

    return vhost_user_request_opt(c, ack, VHOST_USER_SET_VRING_ENABLE, &s, sizeof(s), NULL, 0);
}

int vhost_user_get_vring_base(VhostUserConn *c, unsigned index, uint32_t *base)
{
    VhostUserVringState s = { index, 0 };
    int ret = vhost_user_call(c, VHOST_USER_GET_VRING_BASE, &s, sizeof(s), &s, sizeof(s), sizeof(s),
                              NULL);

    if (ret < 0) {
        return ret;
    }
    if (s.index != index) {
        return -EPROTO;
    }
    *base = s.num;
    return 0;
}

int vhost_user_get_config(VhostUserConn *c, uint32_t offset, uint32_t len, uint8_t *buf)
{
    VhostUserConfig cfg = { .offset = offset, .size = len };
    uint32_t size = VHOST_USER_CONFIG_HDR_SIZE + len;
    int ret;

    if (len > VHOST_USER_MAX_CONFIG_SIZE) {
        return -EINVAL;
    }
    ret = vhost_user_call(c, VHOST_USER_GET_CONFIG, &cfg, size, &cfg, size, size, NULL);
    if (ret < 0) {
        return ret;
    }
    /* The backend answers the same window or nothing usable (an empty or resized reply). */
    if (cfg.offset != offset || cfg.size != len) {
        return -EPROTO;
    }
    memcpy(buf, cfg.region, len);
    return 0;
}

int vhost_user_set_config(VhostUserConn *c, bool ack, uint32_t offset, uint32_t len,
                          const uint8_t *buf)
{
    VhostUserConfig cfg = { .offset = offset, .size = len };

    if (len > VHOST_USER_MAX_CONFIG_SIZE) {
        return -EINVAL;
    }
    memcpy(cfg.region, buf, len);
    return vhost_user_request_opt(c, ack, VHOST_USER_SET_CONFIG, &cfg, VHOST_USER_CONFIG_HDR_SIZE + len,
                                  NULL, 0);
}

int vhost_user_get_inflight_fd(VhostUserConn *c, uint16_t num_queues, uint16_t queue_size,
                               VhostUserInflight *info, int *fd)
{
    VhostUserInflight req = { .num_queues = num_queues, .queue_size = queue_size };
    int ret;

    *fd = -1;
    memset(info, 0, sizeof(*info));
    ret = vhost_user_call(c, VHOST_USER_GET_INFLIGHT_FD, &req, VHOST_USER_INFLIGHT_SIZE, info,
                          VHOST_USER_INFLIGHT_SIZE, sizeof(*info), fd);
    if (ret < 0) {
        return ret;
    }
    if (*fd < 0 || info->mmap_size == 0) {
        if (*fd >= 0) {
            close(*fd);
            *fd = -1;
        }
        return -EPROTO;
    }
    return 0;
}

int vhost_user_set_inflight_fd(VhostUserConn *c, bool ack, const VhostUserInflight *info, int fd)
{
    return vhost_user_request_opt(c, ack, VHOST_USER_SET_INFLIGHT_FD, info, VHOST_USER_INFLIGHT_SIZE,
                                  &fd, 1);
}
