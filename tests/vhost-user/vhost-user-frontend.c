/*
 * Test vhost-user frontend (see vhost-user-frontend.h): memfd RAM, rings and
 * eventfds on top of the device host's message layer (hw/virtio/vhost-user.c).
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vhost-user-frontend.h"

int vuf_connect(VuFrontend *f, const char *path, int timeout_ms)
{
    memset(f, 0, sizeof(*f));
    vhost_user_conn_init(&f->conn, timeout_ms);
    f->mem_fd = -1;
    guest_memory_init(&f->mem);
    return vuf_reconnect(f, path);
}

int vuf_reconnect(VuFrontend *f, const char *path)
{
    int ret = vhost_user_connect(&f->conn, path, f->conn.timeout_ms);

    return ret == -EISCONN || ret == -ENAMETOOLONG || ret == 0 ? ret : -ETIMEDOUT;
}

void vuf_disconnect(VuFrontend *f)
{
    vhost_user_close(&f->conn);
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

int vuf_negotiate(VuFrontend *f, uint64_t want, uint64_t want_protocol)
{
    uint64_t offered;
    int ret = vhost_user_handshake(&f->conn, want_protocol, &offered, &f->protocol_features);

    if (ret < 0) {
        return ret;
    }
    f->features = want & offered & ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return vhost_user_set_features(&f->conn, true, f->features);
}

int vuf_set_mem_table(VuFrontend *f)
{
    VhostUserMemoryRegion r = {
        .guest_phys_addr = VUF_RAM_GPA,
        .memory_size = f->ram_size,
        .userspace_addr = vuf_uva(f, VUF_RAM_GPA),
        .mmap_offset = 0,
    };

    return vhost_user_set_mem_table(&f->conn, true, &r, &f->mem_fd, 1);
}

int vuf_ring_setup(VuFrontend *f, VuFrontendRing *r)
{
    VhostUserVringSetup s = {
        .index = r->index,
        .num = r->num,
        .base = r->base,
        .desc_uaddr = vuf_uva(f, r->desc),
        .avail_uaddr = vuf_uva(f, r->driver),
        .used_uaddr = vuf_uva(f, r->device),
        .enable = true,
    };

    if (r->kick_fd < 0) {
        r->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (r->call_fd < 0) {
        r->call_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    }
    if (r->kick_fd < 0 || r->call_fd < 0) {
        return -errno;
    }
    s.kick_fd = r->kick_fd;
    s.call_fd = r->call_fd;
    return vhost_user_vring_setup(&f->conn, true, &s);
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

    if (poll(&pfd, 1, f->conn.timeout_ms) != 1) {
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
