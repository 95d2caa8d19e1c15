/*
 * Test vhost-user frontend (see vhost-user-frontend.h).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "vhost-user-frontend.h"

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int vuf_connect(VuFrontend *f, const char *path, int timeout_ms)
{
    memset(f, 0, sizeof(*f));
    f->fd = -1;
    f->mem_fd = -1;
    f->timeout_ms = timeout_ms;
    guest_memory_init(&f->mem);
    return vuf_reconnect(f, path);
}

int vuf_reconnect(VuFrontend *f, const char *path)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    int64_t deadline = now_ms() + f->timeout_ms;

    if (f->fd >= 0) {
        return -EISCONN;
    }
    if (strlen(path) >= sizeof(addr.sun_path)) {
        return -ENAMETOOLONG;
    }
    strcpy(addr.sun_path, path);
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            return -errno;
        }
        if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0) {
            f->fd = fd;
            return 0;
        }
        close(fd);
        if (now_ms() > deadline) {
            return -ETIMEDOUT;
        }
        usleep(10000);
    }
}

void vuf_disconnect(VuFrontend *f)
{
    if (f->fd >= 0) {
        close(f->fd);
        f->fd = -1;
    }
}

void vuf_close(VuFrontend *f)
{
    vuf_disconnect(f);
    if (f->ram) {
        munmap(f->ram, f->ram_size);
        f->ram = NULL;
    }
    if (f->mem_fd >= 0) {
        close(f->mem_fd);
        f->mem_fd = -1;
    }
    guest_memory_init(&f->mem);
}

int vuf_ram_create(VuFrontend *f, uint64_t size)
{
    f->mem_fd = memfd_create("vuf-ram", MFD_CLOEXEC);
    if (f->mem_fd < 0 || ftruncate(f->mem_fd, (off_t)size) < 0) {
        return -errno;
    }
    f->ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->mem_fd, 0);
    if (f->ram == MAP_FAILED) {
        f->ram = NULL;
        return -errno;
    }
    f->ram_size = size;
    return guest_memory_add(&f->mem, VUF_RAM_GPA, size, f->ram, true);
}

static int send_all(VuFrontend *f, const struct iovec *iov, unsigned niov, const int *fds, unsigned nfds)
{
    union {
        char buf[CMSG_SPACE(16 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = { .msg_iov = (struct iovec *)iov, .msg_iovlen = niov };
    size_t total = 0;
    ssize_t r;

    if (f->fd < 0) {
        return -EPIPE;
    }
    if (nfds > 16) {
        return -EINVAL;
    }
    for (unsigned i = 0; i < niov; i++) {
        total += iov[i].iov_len;
    }
    if (nfds) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(nfds * sizeof(int));
        memcpy(CMSG_DATA(c), fds, nfds * sizeof(int));
    }
    do {
        r = sendmsg(f->fd, &mh, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        return errno == ECONNRESET ? -EPIPE : -errno;
    }
    return (size_t)r == total ? 0 : -EIO;
}

int vuf_send(VuFrontend *f, uint32_t request, uint32_t flags, const void *payload, uint32_t size,
             const int *fds, unsigned nfds)
{
    VhostUserHeader hdr = { .request = request, .flags = flags, .size = size };
    struct iovec iov[2] = {
        { .iov_base = &hdr, .iov_len = sizeof(hdr) },
        { .iov_base = (void *)payload, .iov_len = payload ? size : 0 },
    };

    return send_all(f, iov, 2, fds, nfds);
}

int vuf_send_raw(VuFrontend *f, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
    return send_all(f, &iov, 1, NULL, 0);
}

/* Read exactly @len bytes (fds collected into *fd) within the timeout. */
static int recv_exact(VuFrontend *f, void *buf, size_t len, int *fd)
{
    int64_t deadline = now_ms() + f->timeout_ms;
    size_t have = 0;

    while (have < len) {
        union {
            char buf[CMSG_SPACE(8 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = { .iov_base = (uint8_t *)buf + have, .iov_len = len - have };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1,
                             .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        struct pollfd pfd = { .fd = f->fd, .events = POLLIN };
        int64_t left = deadline - now_ms();
        ssize_t r;

        if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
            return -ETIMEDOUT;
        }
        r = recvmsg(f->fd, &mh, MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return r == 0 || errno == ECONNRESET ? -EPIPE : -errno;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
            size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < n; i++) {
                int got;
                memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (fd && *fd < 0) {
                    *fd = got;
                } else {
                    close(got);
                }
            }
        }
        have += r;
    }
    return 0;
}

int vuf_recv(VuFrontend *f, VhostUserHeader *hdr, void *payload, size_t max, int *fd)
{
    uint8_t discard[VHOST_USER_PAYLOAD_MAX];
    int ret;

    if (fd) {
        *fd = -1;
    }
    if (f->fd < 0) {
        return -EPIPE;
    }
    ret = recv_exact(f, hdr, sizeof(*hdr), fd);
    if (ret < 0) {
        return ret;
    }
    if (hdr->size > VHOST_USER_PAYLOAD_MAX) {
        return -EPROTO;
    }
    ret = recv_exact(f, hdr->size <= max ? payload : discard, hdr->size, fd);
    if (ret < 0) {
        return ret;
    }
    if (hdr->flags != (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK)) {
        return -EPROTO;         /* replies carry flags exactly 0x5 */
    }
    return hdr->size <= max ? (int)hdr->size : -EMSGSIZE;
}

int vuf_request(VuFrontend *f, uint32_t request, const void *payload, uint32_t size,
                const int *fds, unsigned nfds)
{
    VhostUserHeader hdr;
    uint64_t ack;
    int ret = vuf_send(f, request, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK, payload, size,
                       fds, nfds);

    if (ret < 0) {
        return ret;
    }
    ret = vuf_recv(f, &hdr, &ack, sizeof(ack), NULL);
    if (ret < 0) {
        return ret;
    }
    if (hdr.request != request || ret != sizeof(ack)) {
        return -EPROTO;
    }
    return ack == 0 ? 0 : (ack > 0x7fffffff ? 0x7fffffff : (int)ack);
}

int vuf_set_u64(VuFrontend *f, uint32_t request, uint64_t val)
{
    return vuf_request(f, request, &val, sizeof(val), NULL, 0);
}

int vuf_get_u64(VuFrontend *f, uint32_t request, uint64_t *val)
{
    VhostUserHeader hdr;
    int ret = vuf_send(f, request, VHOST_USER_VERSION, NULL, 0, NULL, 0);

    if (ret < 0) {
        return ret;
    }
    ret = vuf_recv(f, &hdr, val, sizeof(*val), NULL);
    if (ret < 0) {
        return ret;
    }
    return hdr.request == request && ret == sizeof(*val) ? 0 : -EPROTO;
}

int vuf_negotiate(VuFrontend *f, uint64_t want, uint64_t want_protocol)
{
    uint64_t offered, poffered;
    int ret;

    ret = vuf_send(f, VHOST_USER_SET_OWNER, VHOST_USER_VERSION, NULL, 0, NULL, 0);
    if (ret == 0) {
        ret = vuf_get_u64(f, VHOST_USER_GET_FEATURES, &offered);
    }
    if (ret < 0) {
        return ret;
    }
    if (!(offered & (1ull << VHOST_USER_F_PROTOCOL_FEATURES))) {
        return -EPROTO;
    }
    ret = vuf_get_u64(f, VHOST_USER_GET_PROTOCOL_FEATURES, &poffered);
    if (ret < 0) {
        return ret;
    }
    f->protocol_features = (want_protocol | 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK) & poffered;
    /* No ack for this one: REPLY_ACK is only in force once it is set. */
    ret = vuf_send(f, VHOST_USER_SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, &f->protocol_features,
                   sizeof(uint64_t), NULL, 0);
    if (ret < 0) {
        return ret;
    }
    f->features = want & offered & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return vuf_set_u64(f, VHOST_USER_SET_FEATURES,
                       f->features | 1ull << VHOST_USER_F_PROTOCOL_FEATURES);
}

int vuf_set_mem_table(VuFrontend *f)
{
    VhostUserMemory m = {
        .nregions = 1,
        .regions[0] = {
            .guest_phys_addr = VUF_RAM_GPA,
            .memory_size = f->ram_size,
            .userspace_addr = vuf_uva(f, VUF_RAM_GPA),
            .mmap_offset = 0,
        },
    };

    return vuf_request(f, VHOST_USER_SET_MEM_TABLE, &m,
                       offsetof(VhostUserMemory, regions) + sizeof(m.regions[0]), &f->mem_fd, 1);
}

int vuf_ring_setup(VuFrontend *f, VuFrontendRing *r)
{
    VhostUserVringState num = { r->index, r->num }, base = { r->index, r->base };
    VhostUserVringState enable = { r->index, 1 };
    VhostUserVringAddr addr = {
        .index = r->index,
        .desc_user_addr = vuf_uva(f, r->desc),
        .used_user_addr = vuf_uva(f, r->device),
        .avail_user_addr = vuf_uva(f, r->driver),
    };
    uint64_t idx = r->index;
    int ret;

    if (r->kick_fd < 0) {
        r->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (r->call_fd < 0) {
        r->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (r->kick_fd < 0 || r->call_fd < 0) {
        return -errno;
    }
    if ((ret = vuf_request(f, VHOST_USER_SET_VRING_NUM, &num, sizeof(num), NULL, 0)) ||
        (ret = vuf_request(f, VHOST_USER_SET_VRING_BASE, &base, sizeof(base), NULL, 0)) ||
        (ret = vuf_request(f, VHOST_USER_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0)) ||
        (ret = vuf_request(f, VHOST_USER_SET_VRING_CALL, &idx, sizeof(idx), &r->call_fd, 1)) ||
        (ret = vuf_request(f, VHOST_USER_SET_VRING_KICK, &idx, sizeof(idx), &r->kick_fd, 1))) {
        return ret;
    }
    return vuf_request(f, VHOST_USER_SET_VRING_ENABLE, &enable, sizeof(enable), NULL, 0);
}

int vuf_ring_get_base(VuFrontend *f, unsigned index, uint32_t *base)
{
    VhostUserVringState s = { index, 0 };
    VhostUserHeader hdr;
    int ret = vuf_send(f, VHOST_USER_GET_VRING_BASE, VHOST_USER_VERSION, &s, sizeof(s), NULL, 0);

    if (ret < 0) {
        return ret;
    }
    ret = vuf_recv(f, &hdr, &s, sizeof(s), NULL);
    if (ret < 0) {
        return ret;
    }
    if (ret != sizeof(s) || s.index != index) {
        return -EPROTO;
    }
    *base = s.num;
    return 0;
}

void vuf_ring_close(VuFrontendRing *r)
{
    if (r->kick_fd >= 0) {
        close(r->kick_fd);
    }
    if (r->call_fd >= 0) {
        close(r->call_fd);
    }
    r->kick_fd = r->call_fd = -1;
}

void vuf_kick(VuFrontendRing *r)
{
    uint64_t one = 1;
    ssize_t ret = write(r->kick_fd, &one, sizeof(one));
    (void)ret;                  /* a full counter still means "kicked" */
}

bool vuf_wait_call(VuFrontend *f, VuFrontendRing *r)
{
    struct pollfd pfd = { .fd = r->call_fd, .events = POLLIN };
    uint64_t count;

    if (poll(&pfd, 1, f->timeout_ms) != 1) {
        return false;
    }
    return read(r->call_fd, &count, sizeof(count)) == sizeof(count);
}

int vuf_count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (!d) {
        return -1;
    }
    while ((e = readdir(d))) {
        n += e->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;               /* the directory's own fd */
}
