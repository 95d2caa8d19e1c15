/*
 * vhost-user backend: the protocol side only (QEMU docs/interop/vhost-user.rst).
 *
 * Messages become calls into the virtio core; no ring is parsed here. Every
 * request is checked against vhost_user_requests[] (payload size, fd count,
 * vring index) before its handler runs; handlers then check every address,
 * size and count they use. Unconsumed fds are closed by the dispatcher.
 *
 * Context: the thread iterating be->ctx, except where a function says otherwise.
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <glib-unix.h>

#include "hw/virtio/vhost-user-backend.h"

/* Inflight areas are laid out in 64-byte steps (as libvhost-user does). */
#define INFLIGHT_ALIGN 64
#define INFLIGHT_VERSION 1

/* Messages handled per wake-up before yielding to the main loop (fairness). */
#define MESSAGES_PER_WAKEUP 32

/* Mappings kept after leaving the memory table while buffers were in flight. */
#define RETIRED_MAX 64

/* Log lines per connection before going quiet: a hostile peer must not flood the log. */
#define LOG_LINES_PER_CONNECTION 32

_Static_assert(sizeof(VhostUserHeader) == 12, "vhost-user header is 12 bytes");
_Static_assert(sizeof(VhostUserVringAddr) == 40, "vring addr payload is 40 bytes");
_Static_assert(sizeof(VhostUserMemoryRegion) == 32, "memory region is 32 bytes");
_Static_assert(sizeof(VhostUserMemRegMsg) == 40, "single region payload is 40 bytes");
_Static_assert(sizeof(VhostUserInflightDesc) == 16, "inflight descriptor state is 16 bytes");
_Static_assert(sizeof(VhostUserInflightQueue) == 16, "inflight queue header is 16 bytes");

/* One mapped region: where the frontend has it (uva) and where we do. */
typedef struct VuRegion {
    uint64_t gpa;
    uint64_t size;
    uint64_t uva;
    uint64_t mmap_offset;
    uint8_t *map_base;          /* mmap() result */
    size_t map_len;
    int guard_slot;             /* SIGBUS guard entry, or -1 */
    uint8_t *host;              /* map_base + offset within the mapping */
    dev_t dev;                  /* backing file, to keep a mapping a new table repeats */
    ino_t ino;
} VuRegion;

typedef struct VuVring {
    VhostUserBackend *be;
    unsigned index;
    int kick_fd;
    int call_fd;
    int err_fd;
    GSource *kick_src;
    bool enabled;               /* SET_VRING_ENABLE (meaningful with protocol features) */
    bool addr_set;
    uint64_t desc_uva, avail_uva, used_uva;
    bool started;               /* queue_started(n, true) was reported */
    uint16_t *resubmit;         /* heads to resubmit, oldest first */
    unsigned resubmit_num;
    uint64_t inflight_counter;  /* next counter value for vhost_user_inflight_begin */
} VuVring;

/* Every payload layout a handler reads or a reply carries. */
typedef union VuPayload {
    uint64_t u64;
    VhostUserVringState state;
    VhostUserVringAddr addr;
    VhostUserMemory memory;
    VhostUserMemRegMsg memreg;
    VhostUserConfig config;
    VhostUserInflight inflight;
    uint8_t raw[VHOST_USER_PAYLOAD_MAX];
} VuPayload;

/* Header and payload are separate on our side (the payload is 8-aligned); the wire has no gap. */
typedef struct VuMsg {
    VhostUserHeader hdr;
    VuPayload payload;
} VuMsg;

struct VhostUserBackend {
    VirtIODevice *vdev;
    const VhostUserBackendOps *ops;
    void *opaque;
    GMainContext *ctx;

    GuestMemory mem;
    VuRegion regions[GUEST_MEMORY_MAX_REGIONS];
    unsigned nregions;
    /*
     * Regions dropped from the table while the device held buffers (their
     * iovecs may point into them): unmapped once no buffer is in flight.
     */
    VuRegion retired[RETIRED_MAX];
    unsigned nretired;
    VuVring *vrings;            /* vdev->num_queues entries */

    char *socket_path;
    int listen_fd;
    GSource *listen_src;
    int conn_fd;
    GSource *conn_src;
    bool log_enabled;
    unsigned log_lines;

    /* The message being received. */
    VuMsg rx;
    size_t rx_have;
    int rx_fds[VHOST_USER_MAX_FDS];
    unsigned rx_nfds;
    bool rx_bad_fds;            /* more fds than allowed, or truncated */

    /* Reply under construction. */
    VuMsg tx;
    int tx_fd;

    /* Session state (reset on disconnect). */
    uint64_t protocol_features;
    bool protocol_features_acked;   /* VHOST_USER_F_PROTOCOL_FEATURES in SET_FEATURES */
    uint8_t frontend_status;
    int backend_req_fd;

    /* Pages the SIGBUS guard replaced in our mappings, as last seen. */
    uint64_t guard_faults_seen;

    /* Inflight region (kept across connections). */
    int inflight_guard_slot;
    uint8_t *inflight_addr;
    uint64_t inflight_size;
    uint16_t inflight_num_queues;
    uint16_t inflight_queue_size;

    VhostUserBackendStats stats;    /* updated with __atomic, read from any thread */
};

/* ---------------------------------------------------------------------- */
/* Small helpers                                                           */

static void vu_log(VhostUserBackend *be, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void vu_log(VhostUserBackend *be, const char *fmt, ...)
{
    va_list ap;

    if (!be->log_enabled || be->log_lines >= LOG_LINES_PER_CONNECTION) {
        return;
    }
    if (++be->log_lines == LOG_LINES_PER_CONNECTION) {
        fprintf(stderr, "vdm-vhost-user: %s: further messages suppressed\n", be->vdev->name);
        return;
    }
    va_start(ap, fmt);
    fprintf(stderr, "vdm-vhost-user: %s: ", be->vdev->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void stat_add(uint64_t *counter, uint64_t n)
{
    __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static void source_drop(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

static bool has_protocol_feature(const VhostUserBackend *be, unsigned bit)
{
    return be->protocol_features & (1ull << bit);
}

static bool vdev_packed(const VhostUserBackend *be)
{
    return virtio_vdev_has_feature(be->vdev, VIRTIO_F_RING_PACKED);
}

static int set_nonblock(int fd)
{
    int flags = fcntl(fd, F_GETFL);

    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        return -errno;
    }
    return 0;
}

static uint64_t payload_u64(const VuMsg *m)
{
    return m->payload.u64;
}

static void reply_u64(VhostUserBackend *be, uint64_t val)
{
    be->tx.payload.u64 = val;
    be->tx.hdr.size = sizeof(uint64_t);
}

/* ---------------------------------------------------------------------- */
/* SIGBUS guard                                                            */
/*
 * A frontend may shrink the file behind a region after we mapped it; the
 * next access then raises SIGBUS. With the guard installed, the handler
 * puts an anonymous zero page over the faulting page of a registered
 * mapping and counts the fault; the backend sees the count and breaks the
 * device. Faults elsewhere go to the previous disposition.
 *
 * The table is read by the signal handler, so entries are published with
 * atomics and changed under guard_lock only.
 */
#define GUARD_SLOTS 256

typedef struct GuardRange {
    uintptr_t start;            /* 0: free */
    uintptr_t end;
    uintptr_t align;            /* page size of the mapping (hugetlbfs: its huge page size) */
    uint64_t faults;
} GuardRange;

static GuardRange guard_ranges[GUARD_SLOTS];
static GMutex guard_lock;
static bool guard_installed;
static struct sigaction guard_old_action;

static void guard_sigbus(int sig, siginfo_t *si, void *uc)
{
    uintptr_t addr = (uintptr_t)si->si_addr;

    for (unsigned i = 0; i < GUARD_SLOTS; i++) {
        GuardRange *g = &guard_ranges[i];
        uintptr_t start = __atomic_load_n(&g->start, __ATOMIC_ACQUIRE);
        uintptr_t end = __atomic_load_n(&g->end, __ATOMIC_ACQUIRE);
        uintptr_t align = __atomic_load_n(&g->align, __ATOMIC_RELAXED);
        void *page;

        if (!start || addr < start || addr >= end) {
            continue;
        }
        page = (void *)(addr & ~(align - 1));
        /* mmap is async-signal-safe in practice: it is a plain system call. */
        if (mmap(page, align, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0) != MAP_FAILED) {
            __atomic_fetch_add(&g->faults, 1, __ATOMIC_RELAXED);
            return;             /* the access is retried on the zero page */
        }
        break;
    }
    if ((guard_old_action.sa_flags & SA_SIGINFO) && guard_old_action.sa_sigaction) {
        guard_old_action.sa_sigaction(sig, si, uc);
    } else if (guard_old_action.sa_handler != SIG_DFL && guard_old_action.sa_handler != SIG_IGN) {
        guard_old_action.sa_handler(sig);
    } else {
        signal(SIGBUS, SIG_DFL);    /* the access faults again and takes the default action */
    }
}

int vhost_user_backend_guard_sigbus(void)
{
    struct sigaction sa = { .sa_sigaction = guard_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
    int ret = 0;

    g_mutex_lock(&guard_lock);
    if (!guard_installed) {
        sigemptyset(&sa.sa_mask);
        ret = sigaction(SIGBUS, &sa, &guard_old_action) < 0 ? -errno : 0;
        guard_installed = ret == 0;
    }
    g_mutex_unlock(&guard_lock);
    return ret;
}

/* Watch [p, p + len) (page size @align); returns the slot, or -1 when the table is full. */
static int guard_register(void *p, size_t len, size_t align)
{
    int slot = -1;

    g_mutex_lock(&guard_lock);
    for (unsigned i = 0; i < GUARD_SLOTS; i++) {
        GuardRange *g = &guard_ranges[i];
        if (!g->start) {
            __atomic_store_n(&g->faults, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&g->align, (uintptr_t)align, __ATOMIC_RELAXED);
            __atomic_store_n(&g->end, (uintptr_t)p + len, __ATOMIC_RELEASE);
            __atomic_store_n(&g->start, (uintptr_t)p, __ATOMIC_RELEASE);
            slot = i;
            break;
        }
    }
    g_mutex_unlock(&guard_lock);
    return slot;
}

static void guard_unregister(int slot)
{
    if (slot >= 0) {
        g_mutex_lock(&guard_lock);
        __atomic_store_n(&guard_ranges[slot].start, 0, __ATOMIC_RELEASE);
        g_mutex_unlock(&guard_lock);
    }
}

static uint64_t guard_faults(int slot)
{
    return slot >= 0 ? __atomic_load_n(&guard_ranges[slot].faults, __ATOMIC_RELAXED) : 0;
}

/* Page size of a mapping of @fd: hugetlbfs reports its huge page size as st_blksize. */
static size_t map_page_size(const struct stat *st)
{
    size_t page = sysconf(_SC_PAGESIZE);
    size_t blk = st->st_blksize;

    return blk > page && !(blk & (blk - 1)) ? blk : page;
}

/* mmap + guard registration; NULL (errno set) on failure. */
static void *guarded_mmap(size_t len, int fd, off_t offset, const struct stat *st, int *slot)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, offset);

    if (p == MAP_FAILED) {
        return NULL;
    }
    *slot = guard_register(p, len, map_page_size(st));
    return p;
}

static void guarded_munmap(void *p, size_t len, int *slot)
{
    guard_unregister(*slot);
    *slot = -1;
    munmap(p, len);
}

/* ---------------------------------------------------------------------- */
/* Guest memory                                                            */

/* [a, a + alen) and [b, b + blen) intersect; both ranges are known not to wrap. */
static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/*
 * Check one region the frontend describes against overflow and against
 * @others (gpa and uva ranges must stay disjoint: a uva maps to one gpa).
 */
static int region_check(VhostUserBackend *be, const VhostUserMemoryRegion *r,
                        const VuRegion *others, unsigned nothers)
{
    uint64_t size = r->memory_size;

    if (size == 0 || r->guest_phys_addr + size < r->guest_phys_addr ||
        r->userspace_addr + size < r->userspace_addr || r->mmap_offset + size < r->mmap_offset ||
        r->mmap_offset + size > SIZE_MAX) {
        vu_log(be, "memory region gpa 0x%" PRIx64 " size 0x%" PRIx64 " uva 0x%" PRIx64
               " offset 0x%" PRIx64 ": empty or overflowing", r->guest_phys_addr, size,
               r->userspace_addr, r->mmap_offset);
        return -EINVAL;
    }
    for (unsigned i = 0; i < nothers; i++) {
        if (ranges_overlap(r->guest_phys_addr, size, others[i].gpa, others[i].size) ||
            ranges_overlap(r->userspace_addr, size, others[i].uva, others[i].size)) {
            vu_log(be, "memory region gpa 0x%" PRIx64 " size 0x%" PRIx64 " overlaps another",
                   r->guest_phys_addr, size);
            return -EINVAL;
        }
    }
    return 0;
}

/*
 * Map @r from @fd into @out. A region of @reuse (same file, offset, size and
 * addresses) keeps its mapping: SET_MEM_TABLE repeats unchanged regions on
 * hotplug and buffers in flight may point into them.
 */
static int region_map(VhostUserBackend *be, VuRegion *out, const VhostUserMemoryRegion *r, int fd,
                      VuRegion *reuse, unsigned nreuse)
{
    struct stat st;
    long page = sysconf(_SC_PAGESIZE);
    uint64_t offset_in_page, map_offset;
    void *p;

    if (fstat(fd, &st) < 0) {
        return -errno;
    }
    /*
     * Only regular files (memfd, tmpfs, hugetlbfs) whose size covers the
     * region: mapping past the end of a file would SIGBUS on first access.
     */
    if (!S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size < r->mmap_offset + r->memory_size) {
        vu_log(be, "memory region fd is not a file covering offset 0x%" PRIx64 " + 0x%" PRIx64,
               r->mmap_offset, r->memory_size);
        return -EINVAL;
    }
    *out = (VuRegion) {
        .gpa = r->guest_phys_addr, .size = r->memory_size, .uva = r->userspace_addr,
        .mmap_offset = r->mmap_offset, .dev = st.st_dev, .ino = st.st_ino, .guard_slot = -1,
    };
    for (unsigned i = 0; i < nreuse; i++) {
        VuRegion *o = &reuse[i];
        if (o->map_base && o->dev == out->dev && o->ino == out->ino && o->gpa == out->gpa &&
            o->size == out->size && o->uva == out->uva && o->mmap_offset == out->mmap_offset) {
            *out = *o;
            o->map_base = NULL;     /* moved: the caller must not unmap it */
            return 0;
        }
    }
    offset_in_page = r->mmap_offset % (uint64_t)page;
    map_offset = r->mmap_offset - offset_in_page;
    if (map_offset > (uint64_t)INT64_MAX) {
        return -EINVAL;
    }
    out->map_len = r->memory_size + offset_in_page;
    p = guarded_mmap(out->map_len, fd, (off_t)map_offset, &st, &out->guard_slot);
    if (!p) {
        int err = -errno;
        vu_log(be, "mmap of memory region (0x%zx bytes) failed: %s", out->map_len, strerror(-err));
        return err;
    }
    out->map_base = p;
    out->host = out->map_base + offset_in_page;
    return 0;
}

static void region_unmap(VuRegion *r)
{
    if (r->map_base) {
        guarded_munmap(r->map_base, r->map_len, &r->guard_slot);
        r->map_base = NULL;
    }
}

static bool requests_in_flight(VhostUserBackend *be)
{
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        if (virtio_queue_inuse(virtio_get_queue(be->vdev, n))) {
            return true;
        }
    }
    return false;
}

/* Room to retire @count regions (always, when nothing is in flight). */
static bool retire_room(VhostUserBackend *be, unsigned count)
{
    return !requests_in_flight(be) || be->nretired + count <= RETIRED_MAX;
}

/* @r left the table: unmap it now, or once the buffers in flight are done. */
static void region_retire(VhostUserBackend *be, VuRegion *r)
{
    if (r->map_base && requests_in_flight(be) && be->nretired < RETIRED_MAX) {
        be->retired[be->nretired++] = *r;
        r->map_base = NULL;
        return;
    }
    region_unmap(r);
}

static void retired_reap(VhostUserBackend *be, bool force)
{
    if (be->nretired && (force || !requests_in_flight(be))) {
        for (unsigned i = 0; i < be->nretired; i++) {
            region_unmap(&be->retired[i]);
        }
        be->nretired = 0;
    }
}

static void running_count_update(VhostUserBackend *be);
static void vrings_sync_stopped(VhostUserBackend *be);

/* Rebuild be->mem from be->regions and tell the core (rings are re-translated). */
static int memory_commit(VhostUserBackend *be)
{
    int ret;

    guest_memory_init(&be->mem);
    for (unsigned i = 0; i < be->nregions; i++) {
        const VuRegion *r = &be->regions[i];
        ret = guest_memory_add(&be->mem, r->gpa, r->size, r->host, true);
        assert(ret == 0);       /* regions were checked disjoint and non-overflowing */
    }
    ret = virtio_device_memory_changed(be->vdev);
    vrings_sync_stopped(be);    /* a ring no longer in memory has stopped */
    running_count_update(be);
    return ret;
}

static void memory_unmap_all(VhostUserBackend *be)
{
    for (unsigned i = 0; i < be->nregions; i++) {
        region_unmap(&be->regions[i]);
    }
    be->nregions = 0;
    guest_memory_init(&be->mem);
}

/* Frontend address [uva, uva + len) → guest-physical, inside one region. */
static bool uva_to_gpa(const VhostUserBackend *be, uint64_t uva, uint64_t len, hwaddr *gpa)
{
    for (unsigned i = 0; i < be->nregions; i++) {
        const VuRegion *r = &be->regions[i];
        if (uva >= r->uva && uva - r->uva < r->size && len <= r->size - (uva - r->uva)) {
            *gpa = r->gpa + (uva - r->uva);
            return true;
        }
    }
    return false;
}

/* ---------------------------------------------------------------------- */
/* Inflight region                                                         */

uint64_t vhost_user_inflight_queue_size(unsigned queue_size)
{
    uint64_t bytes = sizeof(VhostUserInflightQueue) +
                     (uint64_t)queue_size * sizeof(VhostUserInflightDesc);
    return (bytes + INFLIGHT_ALIGN - 1) & ~(uint64_t)(INFLIGHT_ALIGN - 1);
}

static void inflight_unmap(VhostUserBackend *be)
{
    if (be->inflight_addr) {
        guarded_munmap(be->inflight_addr, be->inflight_size, &be->inflight_guard_slot);
        be->inflight_addr = NULL;
    }
    be->inflight_size = 0;
    be->inflight_num_queues = 0;
    be->inflight_queue_size = 0;
}

/* Queue @n's inflight area (either layout), or NULL. */
static VhostUserInflightQueue *inflight_area(VhostUserBackend *be, unsigned n)
{
    if (!be->inflight_addr || n >= be->inflight_num_queues) {
        return NULL;
    }
    return (VhostUserInflightQueue *)(be->inflight_addr +
                                      n * vhost_user_inflight_queue_size(be->inflight_queue_size));
}

/* Queue @n's inflight area when split tracking applies, else NULL. */
static VhostUserInflightQueue *inflight_queue(VhostUserBackend *be, unsigned n)
{
    return vdev_packed(be) ? NULL : inflight_area(be, n);
}

/* Packed tracking: the used position is stored as pos | !wrap << 15 (a zeroed region = the start). */
#define INFLIGHT_PACKED_WRAP_FLIP 0x8000

/* Heads a queue's inflight area may name: within it, and within the ring. */
static unsigned inflight_heads(VhostUserBackend *be, unsigned n)
{
    unsigned num = virtio_queue_get_num(be->vdev, n);
    return MIN(num, be->inflight_queue_size);
}

void vhost_user_inflight_begin(VhostUserBackend *be, unsigned n, const VirtQueueElement *elem)
{
    VhostUserInflightQueue *q = inflight_area(be, n);
    unsigned head = elem->index;

    if (!q || head >= inflight_heads(be, n)) {
        return;
    }
    if (vdev_packed(be)) {
        /* Before its completion can be published: a restart steps over its used descriptor by this. */
        __atomic_store_n(&q->desc[head].next, (uint16_t)elem->ndescs, __ATOMIC_RELEASE);
        return;
    }
    q->desc[head].counter = be->vrings[n].inflight_counter++;
    /* The counter is in place before the head counts as in flight (read back after a crash). */
    __atomic_store_n(&q->desc[head].inflight, 1, __ATOMIC_RELEASE);
}

void vhost_user_inflight_pre_put(VhostUserBackend *be, unsigned n, unsigned head)
{
    VhostUserInflightQueue *q = inflight_queue(be, n);

    if (!q || head >= inflight_heads(be, n)) {
        return;
    }
    __atomic_store_n(&q->last_batch_head, (uint16_t)head, __ATOMIC_RELEASE);
}

void vhost_user_inflight_put(VhostUserBackend *be, unsigned n, unsigned head)
{
    VhostUserInflightQueue *q = inflight_area(be, n);

    if (!q || head >= inflight_heads(be, n)) {
        return;
    }
    if (vdev_packed(be)) {
        unsigned used = virtio_queue_get_used_idx(be->vdev, n);
        __atomic_store_n(&q->used_idx, (uint16_t)(used ^ INFLIGHT_PACKED_WRAP_FLIP), __ATOMIC_RELEASE);
        return;
    }
    __atomic_store_n(&q->desc[head].inflight, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&q->used_idx, (uint16_t)virtio_queue_get_used_idx(be->vdev, n),
                     __ATOMIC_RELEASE);
}

unsigned vhost_user_inflight_resubmit(VhostUserBackend *be, unsigned n, const uint16_t **heads)
{
    if (n >= be->vdev->num_queues) {
        return 0;
    }
    if (heads) {
        *heads = be->vrings[n].resubmit;
    }
    return be->vrings[n].resubmit_num;
}

typedef struct InflightHead {
    uint64_t counter;
    uint16_t head;
} InflightHead;

static int inflight_head_cmp(const void *a, const void *b)
{
    const InflightHead *x = a, *y = b;
    return x->counter < y->counter ? -1 : x->counter > y->counter;
}

/*
 * A split queue restarts with inflight tracking: the heads still marked are
 * collected oldest first. A crash between publishing last_batch_head and
 * clearing its mark shows as a used index that moved: that head is done.
 * The region is frontend-shared memory, so each field is read once.
 * Returns the number of heads to resubmit.
 */
static unsigned inflight_collect(VhostUserBackend *be, unsigned n, uint16_t ring_used_idx)
{
    VhostUserInflightQueue *q = inflight_queue(be, n);
    VuVring *vr = &be->vrings[n];
    unsigned heads = inflight_heads(be, n);
    InflightHead *found;
    unsigned count = 0;
    uint64_t max_counter = 0;

    g_free(vr->resubmit);
    vr->resubmit = NULL;
    vr->resubmit_num = 0;
    if (!q || heads == 0) {
        return 0;
    }
    if (__atomic_load_n(&q->used_idx, __ATOMIC_ACQUIRE) != ring_used_idx) {
        uint16_t last = __atomic_load_n(&q->last_batch_head, __ATOMIC_RELAXED);
        if (last < heads) {
            __atomic_store_n(&q->desc[last].inflight, 0, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&q->used_idx, ring_used_idx, __ATOMIC_RELEASE);
    }
    found = g_new(InflightHead, heads);
    for (unsigned h = 0; h < heads; h++) {
        if (__atomic_load_n(&q->desc[h].inflight, __ATOMIC_ACQUIRE) == 1) {
            found[count].counter = __atomic_load_n(&q->desc[h].counter, __ATOMIC_RELAXED);
            found[count].head = h;
            max_counter = MAX(max_counter, found[count].counter);
            count++;
        }
    }
    qsort(found, count, sizeof(found[0]), inflight_head_cmp);
    if (count) {
        vr->resubmit = g_new(uint16_t, count);
        for (unsigned i = 0; i < count; i++) {
            vr->resubmit[i] = found[i].head;
        }
    }
    vr->resubmit_num = count;
    vr->inflight_counter = max_counter + 1;
    g_free(found);
    return count;
}

/* Under IN_ORDER the region is not needed: forget stale marks so a later session starts clean. */
static void inflight_clear_queue(VhostUserBackend *be, unsigned n)
{
    VhostUserInflightQueue *q = inflight_queue(be, n);
    unsigned heads = inflight_heads(be, n);

    for (unsigned h = 0; q && h < heads; h++) {
        __atomic_store_n(&q->desc[h].inflight, 0, __ATOMIC_RELAXED);
    }
}

/* ---------------------------------------------------------------------- */
/* Vrings: start and stop                                                  */

static gboolean vu_kick_cb(gint fd, GIOCondition cond, gpointer opaque);

/*
 * The SIGBUS guard replaced pages of our mappings since the last look: the
 * frontend shrank guest memory under us. The device reads zeros now; stop it.
 */
static void guard_check(VhostUserBackend *be)
{
    uint64_t faults = guard_faults(be->inflight_guard_slot);

    for (unsigned i = 0; i < be->nregions; i++) {
        faults += guard_faults(be->regions[i].guard_slot);
    }
    for (unsigned i = 0; i < be->nretired; i++) {
        faults += guard_faults(be->retired[i].guard_slot);
    }
    if (faults > be->guard_faults_seen) {
        virtio_error(be->vdev, "guest memory shrank under its mapping (%" PRIu64 " pages lost)",
                     faults - be->guard_faults_seen);
    }
    be->guard_faults_seen = faults;
}

static bool vring_enabled(const VhostUserBackend *be, const VuVring *vr)
{
    /* Spec "Ring states": without VHOST_USER_F_PROTOCOL_FEATURES rings start enabled. */
    return be->protocol_features_acked ? vr->enabled : true;
}

static void running_count_update(VhostUserBackend *be)
{
    unsigned running = 0;

    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        running += virtio_queue_is_running(be->vdev, n);
    }
    __atomic_store_n(&be->stats.queues_running, running, __ATOMIC_RELAXED);
}

/* Stop queue @n (kick watch off, ring stopped); its indices and fds are kept. */
static void vring_stop(VhostUserBackend *be, unsigned n)
{
    VuVring *vr = &be->vrings[n];

    source_drop(&vr->kick_src);
    if (vr->started) {
        vr->started = false;
        if (be->ops && be->ops->queue_started) {
            be->ops->queue_started(be->opaque, n, false);
        }
    }
    virtio_queue_deactivate(be->vdev, n);
    virtio_queue_set_enabled(be->vdev, n, false);
    running_count_update(be);
    retired_reap(be, false);
}

/*
 * Rings the core stopped by itself (a memory change left them outside guest
 * memory, breaking the device) are stopped here too: the device hears about
 * it and the kick watch goes, so a later start is a start, not a second one.
 */
static void vrings_sync_stopped(VhostUserBackend *be)
{
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        if (be->vrings[n].started && !virtio_queue_is_running(be->vdev, n)) {
            vring_stop(be, n);
        }
    }
}

/*
 * Split: set the used index from the ring and choose where popping resumes.
 * SET_VRING_BASE gave last_avail_idx; the ring's used->idx is the truth for
 * what was completed. In-order: resume at the used index (everything after it
 * is redone). Inflight tracking: used index + heads to resubmit. A base more
 * than a ring ahead of the used index is inconsistent (a reconnecting DPDK
 * virtio-user sends 0): resume at the used index.
 */
static int vring_restore_split(VhostUserBackend *be, unsigned n)
{
    VirtIODevice *vdev = be->vdev;
    uint16_t ring_used, base = virtio_queue_get_last_avail_idx(vdev, n);
    unsigned num = virtio_queue_get_num(vdev, n);
    unsigned resubmit;
    int ret = virtio_queue_update_used_idx(vdev, n);

    if (ret < 0) {
        return ret;
    }
    ring_used = (uint16_t)ret;
    if (virtio_vdev_has_feature(vdev, VIRTIO_F_IN_ORDER)) {
        inflight_clear_queue(be, n);
        base = ring_used;
    } else if ((resubmit = inflight_collect(be, n, ring_used)) > 0) {
        base = ring_used + resubmit;
    } else if ((uint16_t)(base - ring_used) > num) {
        vu_log(be, "queue %u: base %u inconsistent with used index %u: resuming at %u",
               n, base, ring_used, ring_used);
        base = ring_used;
    } else if (base != ring_used) {
        vu_log(be, "queue %u: %u buffers were in flight without tracking", n,
               (uint16_t)(base - ring_used));
    }
    if (virtio_queue_set_last_avail_idx(vdev, n, base) < 0 ||
        virtio_queue_set_used_idx(vdev, n, ring_used) < 0) {
        return -EBUSY;
    }
    return 0;
}

typedef struct PackedWalk {
    VhostUserBackend *be;
    VhostUserInflightQueue *q;
    unsigned n;
} PackedWalk;

static unsigned packed_recorded_ndescs(void *opaque, uint16_t id)
{
    PackedWalk *w = opaque;

    return id < inflight_heads(w->be, w->n) ? __atomic_load_n(&w->q->desc[id].next, __ATOMIC_ACQUIRE) : 0;
}

/*
 * Packed with an inflight region: buffers were used in order (IN_ORDER or
 * ordered use), each with its own used descriptor, so the recorded used
 * position, stepped over whatever
 * was published after the record, is a contiguous completion boundary:
 * resume popping there and redo everything after it. The frontend's base
 * (QEMU 7.2 resends the ring's start after a backend crash) is not needed.
 * The region is frontend-shared memory: a position beyond the ring falls
 * back to the base.
 */
static int vring_restore_packed_tracked(VhostUserBackend *be, unsigned n)
{
    VirtIODevice *vdev = be->vdev;
    PackedWalk w = { be, inflight_area(be, n), n };
    unsigned rec = __atomic_load_n(&w.q->used_idx, __ATOMIC_ACQUIRE) ^ INFLIGHT_PACKED_WRAP_FLIP;
    unsigned base = virtio_queue_get_last_avail_idx(vdev, n);
    int pos = virtio_queue_packed_skip_used(vdev, n, rec, packed_recorded_ndescs, &w);

    if (pos == -EINVAL) {
        vu_log(be, "queue %u: recorded used position 0x%x is outside the ring: using base 0x%x",
               n, rec, base);
        return 0;
    }
    if (pos < 0) {
        return pos;
    }
    if ((unsigned)pos != base) {
        vu_log(be, "queue %u: resuming at used position 0x%x (base 0x%x, recorded 0x%x)", n,
               (unsigned)pos, base, rec);
    }
    if (virtio_queue_set_last_avail_idx(vdev, n, (unsigned)pos) < 0 ||
        virtio_queue_set_used_idx(vdev, n, (unsigned)pos) < 0) {
        return -EBUSY;
    }
    __atomic_store_n(&w.q->used_idx, (uint16_t)(pos ^ INFLIGHT_PACKED_WRAP_FLIP), __ATOMIC_RELEASE);
    return 0;
}

/*
 * Start queue @n if everything it needs is there: memory, addresses, a kick
 * fd, enabled, features accepted. Returns 0 (started or not ready yet) or
 * -errno when the configuration is bad (the core broke the device then, or
 * the rings are outside memory).
 */
static int vring_try_start(VhostUserBackend *be, unsigned n)
{
    VirtIODevice *vdev = be->vdev;
    VuVring *vr = &be->vrings[n];
    unsigned num = virtio_queue_get_num(vdev, n);
    bool packed = vdev_packed(be);
    hwaddr desc, driver, device;
    int ret;

    if (virtio_queue_is_running(vdev, n) || vr->kick_fd < 0 || !vring_enabled(be, vr) ||
        !vr->addr_set || be->nregions == 0 || !(vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        return 0;
    }
    if (!uva_to_gpa(be, vr->desc_uva, packed ? vring_packed_desc_size(num) : vring_split_desc_size(num),
                    &desc) ||
        !uva_to_gpa(be, vr->avail_uva, packed ? sizeof(VRingPackedDescEvent) : vring_split_avail_size(num),
                    &driver) ||
        !uva_to_gpa(be, vr->used_uva, packed ? sizeof(VRingPackedDescEvent) : vring_split_used_size(num),
                    &device)) {
        vu_log(be, "queue %u: ring addresses outside the memory table", n);
        return -EFAULT;
    }
    ret = virtio_queue_set_rings(vdev, n, desc, driver, device);
    /* Packed tracking needs in-order use; split tracking resubmits by head. */
    virtio_queue_set_ordered_use(virtio_get_queue(vdev, n), packed && inflight_area(be, n));
    if (ret == 0 && !packed) {
        ret = vring_restore_split(be, n);
    } else if (ret == 0 && inflight_area(be, n)) {
        /* Packed: no used index in memory; the record in the region is where completions stopped. */
        ret = vring_restore_packed_tracked(be, n);
    } else if (ret == 0 && virtio_vdev_has_feature(vdev, VIRTIO_F_IN_ORDER)) {
        /* Packed in-order without a region: the frontend's used position is the boundary. */
        virtio_queue_restore_last_avail_idx(vdev, n);
    }
    if (ret == 0) {
        ret = virtio_queue_set_enabled(vdev, n, true);
    }
    if (ret == 0) {
        ret = virtio_queue_activate(vdev, n);
    }
    if (ret < 0) {
        virtio_queue_set_enabled(vdev, n, false);
        vu_log(be, "queue %u: cannot start: %s", n, vdev->broken ? vdev->error_msg : strerror(-ret));
        return ret;
    }
    if (!(vdev->status & VIRTIO_CONFIG_S_DRIVER_OK)) {
        /* The first running ring makes the device live (config notifications need DRIVER_OK). */
        virtio_set_status(vdev, vdev->status | VIRTIO_CONFIG_S_DRIVER_OK);
    }
    source_drop(&vr->kick_src);     /* one watch per ring, whatever came before */
    vr->kick_src = g_unix_fd_source_new(vr->kick_fd, G_IO_IN);
    /* As the block backend's source: no poll-set churn (and wakeups) around each kick's dispatch. */
    g_source_set_can_recurse(vr->kick_src, TRUE);
    g_source_set_callback(vr->kick_src, G_SOURCE_FUNC(vu_kick_cb), vr, NULL);
    g_source_attach(vr->kick_src, be->ctx);
    vr->started = true;
    running_count_update(be);
    if (be->ops && be->ops->queue_started) {
        be->ops->queue_started(be->opaque, n, true);
    }
    /* Buffers made available before the kick fd was watched. */
    virtio_queue_notify(vdev, n);
    return 0;
}

static void vrings_try_start_all(VhostUserBackend *be)
{
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        vring_try_start(be, n);
    }
}

static bool any_vring_running(VhostUserBackend *be)
{
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        if (virtio_queue_is_running(be->vdev, n)) {
            return true;
        }
    }
    return false;
}

static void vring_forget(VhostUserBackend *be, unsigned n)
{
    VuVring *vr = &be->vrings[n];

    vring_stop(be, n);
    close_fd(&vr->kick_fd);
    close_fd(&vr->call_fd);
    close_fd(&vr->err_fd);
    vr->enabled = false;
    vr->addr_set = false;
    g_free(vr->resubmit);
    vr->resubmit = NULL;
    vr->resubmit_num = 0;
}

/* RESET_DEVICE / RESET_OWNER / disconnect: every ring stopped and forgotten, device reset. */
static void device_reset(VhostUserBackend *be)
{
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        vring_forget(be, n);
    }
    if (be->ops && be->ops->reset) {
        be->ops->reset(be->opaque);
    }
    virtio_reset(be->vdev);
    retired_reap(be, false);
    be->frontend_status = 0;
    be->protocol_features_acked = false;
    __atomic_store_n(&be->stats.features, 0, __ATOMIC_RELAXED);
}

static gboolean vu_kick_cb(gint fd, GIOCondition cond, gpointer opaque)
{
    VuVring *vr = opaque;
    VhostUserBackend *be = vr->be;
    uint64_t count;
    ssize_t r = read(fd, &count, sizeof(count));

    if (r == sizeof(count)) {
        stat_add(&be->stats.kicks, 1);
        virtio_queue_notify(be->vdev, vr->index);
        guard_check(be);
        return G_SOURCE_CONTINUE;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR) && !(cond & (G_IO_ERR | G_IO_HUP | G_IO_NVAL))) {
        return G_SOURCE_CONTINUE;
    }
    /* Not an eventfd after all (EOF, short read, error): stop watching rather than spin. */
    vu_log(be, "queue %u: kick fd unusable, no longer watched", vr->index);
    g_source_unref(vr->kick_src);
    vr->kick_src = NULL;
    return G_SOURCE_REMOVE;
}

/* ---------------------------------------------------------------------- */
/* Transport: notifications to the frontend                                */

static void vu_notify_queue(VirtIODevice *vdev, VirtQueue *vq)
{
    VhostUserBackend *be = vdev->transport_opaque;
    VuVring *vr = &be->vrings[virtio_get_queue_index(vq)];
    uint64_t one = 1;

    if (vr->call_fd < 0) {
        return;                 /* "no fd": the frontend polls */
    }
    /* Non-blocking fd: a full counter (or a peer's pipe) must not stall the device. */
    if (write(vr->call_fd, &one, sizeof(one)) == sizeof(one)) {
        stat_add(&be->stats.calls, 1);
    }
}

static void vu_notify_config(VirtIODevice *vdev)
{
    VhostUserBackend *be = vdev->transport_opaque;
    VhostUserHeader hdr = {
        .request = VHOST_USER_BACKEND_CONFIG_CHANGE_MSG,
        .flags = VHOST_USER_VERSION,
        .size = 0,
    };

    /* Spec: only on the backend channel, and only when both sides speak CONFIG. */
    if (be->backend_req_fd < 0 || !has_protocol_feature(be, VHOST_USER_PROTOCOL_F_BACKEND_REQ) ||
        !has_protocol_feature(be, VHOST_USER_PROTOCOL_F_CONFIG)) {
        return;
    }
    if (send(be->backend_req_fd, &hdr, sizeof(hdr), MSG_DONTWAIT | MSG_NOSIGNAL) != sizeof(hdr)) {
        vu_log(be, "config change message not sent: backend channel closed");
        close_fd(&be->backend_req_fd);
    }
}

static const VirtIOTransportOps vu_transport_ops = {
    .notify_queue = vu_notify_queue,
    .notify_config = vu_notify_config,
};

/* ---------------------------------------------------------------------- */
/* Request handlers                                                        */
/*
 * A handler runs after the table check. It takes an fd by setting
 * fds[i] = -1; the rest are closed after it. It returns 0 or -errno; a
 * request with a reply of its own fills be->tx (payload and hdr.size).
 */

typedef int (*VuHandler)(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds);

static uint64_t offered_protocol_features(const VhostUserBackend *be)
{
    uint64_t f = 1ull << VHOST_USER_PROTOCOL_F_MQ |
                 1ull << VHOST_USER_PROTOCOL_F_REPLY_ACK |
                 1ull << VHOST_USER_PROTOCOL_F_BACKEND_REQ |
                 1ull << VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD |
                 1ull << VHOST_USER_PROTOCOL_F_RESET_DEVICE |
                 1ull << VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS |
                 1ull << VHOST_USER_PROTOCOL_F_STATUS;

    if (be->vdev->config_len > 0) {
        f |= 1ull << VHOST_USER_PROTOCOL_F_CONFIG;
    }
    return f;
}

static int vu_get_features(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    reply_u64(be, be->vdev->host_features | 1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    return 0;
}

static int vu_set_features(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    VirtIODevice *vdev = be->vdev;
    uint64_t val = payload_u64(m);
    bool protocol = val & (1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    uint8_t driver_ok = vdev->status & VIRTIO_CONFIG_S_DRIVER_OK;
    int ret;

    val &= ~(1ull << VHOST_USER_F_PROTOCOL_FEATURES);
    if (vdev->broken && !any_vring_running(be)) {
        /*
         * A frontend (re)starting the device after a fault: QEMU resets its
         * guest without RESET_DEVICE, and SET_FEATURES begins every start.
         */
        vu_log(be, "device was broken (%s): reset for a new start", vdev->error_msg);
        vrings_sync_stopped(be);
        if (be->ops && be->ops->reset) {
            be->ops->reset(be->opaque);
        }
        virtio_reset(vdev);
        driver_ok = 0;
    }
    if ((vdev->status & VIRTIO_CONFIG_S_FEATURES_OK) && val == vdev->guest_features) {
        be->protocol_features_acked = protocol;
        return 0;               /* QEMU repeats SET_FEATURES on every start */
    }
    if (any_vring_running(be)) {
        vu_log(be, "SET_FEATURES 0x%" PRIx64 " while rings run", val);
        return -EBUSY;
    }
    /* vhost-user renegotiates with rings stopped: reopen the core's feature phase. */
    vdev->status &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    ret = virtio_set_features(vdev, val);
    if (ret < 0) {
        vu_log(be, "SET_FEATURES 0x%" PRIx64 ": not offered (offered 0x%" PRIx64 ")", val,
               vdev->host_features);
        return ret;
    }
    ret = virtio_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                            VIRTIO_CONFIG_S_FEATURES_OK | driver_ok);
    if (ret < 0) {
        vu_log(be, "SET_FEATURES 0x%" PRIx64 ": refused by the device (VERSION_1 missing?)", val);
        return ret;
    }
    be->protocol_features_acked = protocol;
    __atomic_store_n(&be->stats.features, val, __ATOMIC_RELAXED);
    vrings_try_start_all(be);
    return 0;
}

static int vu_nop(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    return 0;
}

/* Requests for features this backend never offers. */
static int vu_refuse(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    vu_log(be, "request %u not supported", m->hdr.request);
    return -ENOTSUP;
}

static int vu_reset_device(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    device_reset(be);
    return 0;
}

static int vu_set_mem_table(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserMemory *mt = &m->payload.memory;
    VuRegion fresh[VHOST_USER_MAX_REGIONS];
    VuRegion old[GUEST_MEMORY_MAX_REGIONS];
    unsigned nold = be->nregions;
    unsigned n = mt->nregions;
    int ret = 0;

    if (n == 0 || n > VHOST_USER_MAX_REGIONS || n != nfds ||
        m->hdr.size != offsetof(VhostUserMemory, regions) + n * sizeof(VhostUserMemoryRegion)) {
        vu_log(be, "SET_MEM_TABLE: %u regions, %u fds, %u bytes", n, nfds, m->hdr.size);
        return -EINVAL;
    }
    if (!retire_room(be, nold)) {
        return -EBUSY;          /* a peer churning tables under held buffers */
    }
    memcpy(old, be->regions, sizeof(old[0]) * nold);
    for (unsigned i = 0; i < n; i++) {
        ret = region_check(be, &mt->regions[i], fresh, i);
        if (ret == 0) {
            ret = region_map(be, &fresh[i], &mt->regions[i], fds[i], old, nold);
        }
        if (ret < 0) {
            /*
             * Unmap only what this table mapped itself: a reused mapping
             * (its old[] copy was emptied) still belongs to be->regions.
             */
            for (unsigned j = 0; j < i; j++) {
                bool reused = false;
                for (unsigned k = 0; k < nold; k++) {
                    reused |= !old[k].map_base && old[k].host == fresh[j].host;
                }
                if (!reused) {
                    region_unmap(&fresh[j]);
                }
            }
            return ret;
        }
    }
    memcpy(be->regions, fresh, sizeof(fresh[0]) * n);
    be->nregions = n;
    ret = memory_commit(be);
    if (ret < 0) {
        vu_log(be, "SET_MEM_TABLE: a running ring is no longer in memory");
    }
    for (unsigned k = 0; k < nold; k++) {
        region_retire(be, &old[k]);     /* only those the new table did not reuse */
    }
    vrings_try_start_all(be);
    return ret;
}

static int vu_get_max_mem_slots(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    reply_u64(be, GUEST_MEMORY_MAX_REGIONS);
    return 0;
}

static int vu_add_mem_reg(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserMemRegMsg *reg = &m->payload.memreg;
    VuRegion r;
    int ret;

    if (be->nregions >= GUEST_MEMORY_MAX_REGIONS) {
        vu_log(be, "ADD_MEM_REG: all %u slots in use", GUEST_MEMORY_MAX_REGIONS);
        return -ENOSPC;
    }
    ret = region_check(be, &reg->region, be->regions, be->nregions);
    if (ret == 0) {
        ret = region_map(be, &r, &reg->region, fds[0], NULL, 0);
    }
    if (ret < 0) {
        return ret;
    }
    be->regions[be->nregions++] = r;
    ret = memory_commit(be);
    vrings_try_start_all(be);
    return ret;
}

static int vu_rem_mem_reg(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserMemoryRegion *want = &m->payload.memreg.region;
    int ret;

    for (unsigned i = 0; i < be->nregions; i++) {
        VuRegion r = be->regions[i];
        if (r.gpa == want->guest_phys_addr && r.size == want->memory_size &&
            r.uva == want->userspace_addr) {
            if (!retire_room(be, 1)) {
                return -EBUSY;
            }
            be->regions[i] = be->regions[--be->nregions];
            /* The core lets go of the region (rings re-translated) before it is unmapped. */
            ret = memory_commit(be);
            region_retire(be, &r);
            return ret;
        }
    }
    vu_log(be, "REM_MEM_REG: no region at gpa 0x%" PRIx64, want->guest_phys_addr);
    return -ENOENT;
}

static int vu_set_vring_num(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserVringState *s = &m->payload.state;
    VirtIODevice *vdev = be->vdev;

    /* spec 2.7: split sizes are powers of two (activation re-checks once features are final) */
    if ((vdev->status & VIRTIO_CONFIG_S_FEATURES_OK) && !vdev_packed(be) &&
        (s->num & (s->num - 1)) != 0) {
        vu_log(be, "queue %u: split size %u is not a power of two", s->index, s->num);
        return -EINVAL;
    }
    if (virtio_queue_set_num(vdev, s->index, s->num) < 0) {
        vu_log(be, "queue %u: size %u refused (max %u, or ring running)", s->index, s->num,
               virtio_queue_get_max_num(vdev, s->index));
        return -EINVAL;
    }
    return 0;
}

static int vu_set_vring_addr(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserVringAddr *a = &m->payload.addr;
    VuVring *vr = &be->vrings[a->index];
    unsigned num = virtio_queue_get_num(be->vdev, a->index);
    bool packed = vdev_packed(be);
    hwaddr gpa;

    if (virtio_queue_is_running(be->vdev, a->index)) {
        return -EBUSY;          /* configuration is frozen while the ring runs */
    }
    if (a->flags & ~1u) {       /* bit 0 is VHOST_VRING_F_LOG; logging is not offered */
        return -EINVAL;
    }
    /* With a memory table in place, refuse rings outside it now rather than at start. */
    if (be->nregions &&
        (!uva_to_gpa(be, a->desc_user_addr,
                     packed ? vring_packed_desc_size(num) : vring_split_desc_size(num), &gpa) ||
         !uva_to_gpa(be, a->avail_user_addr,
                     packed ? sizeof(VRingPackedDescEvent) : vring_split_avail_size(num), &gpa) ||
         !uva_to_gpa(be, a->used_user_addr,
                     packed ? sizeof(VRingPackedDescEvent) : vring_split_used_size(num), &gpa))) {
        vu_log(be, "queue %u: ring addresses outside the memory table", a->index);
        vr->addr_set = false;
        return -EFAULT;
    }
    vr->desc_uva = a->desc_user_addr;
    vr->avail_uva = a->avail_user_addr;
    vr->used_uva = a->used_user_addr;
    vr->addr_set = true;
    return 0;
}

static int vu_set_vring_base(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserVringState *s = &m->payload.state;
    VirtIODevice *vdev = be->vdev;
    uint32_t avail = s->num & 0xffff, used = s->num >> 16;

    if (!vdev_packed(be) && s->num > 0xffff) {
        return -EINVAL;         /* split: a 16-bit free-running index */
    }
    if (vdev_packed(be) && used == 0) {
        /* DPDK sends only the avail half: used position and wrap start where avail does. */
        used = avail;
    }
    if (virtio_queue_set_last_avail_idx(vdev, s->index, avail) < 0 ||
        (vdev_packed(be) && virtio_queue_set_used_idx(vdev, s->index, used) < 0)) {
        return -EBUSY;
    }
    return 0;
}

static int vu_get_vring_base(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserVringState *s = &m->payload.state;
    VirtIODevice *vdev = be->vdev;
    VhostUserVringState *out = &be->tx.payload.state;
    VirtQueue *vq = virtio_get_queue(vdev, s->index);
    unsigned idx;

    /* Spec: GET_VRING_BASE stops the ring; a new SET_VRING_KICK starts it again. */
    vring_stop(be, s->index);
    close_fd(&be->vrings[s->index].kick_fd);
    if (virtio_vdev_has_feature(vdev, VIRTIO_F_IN_ORDER) && virtio_queue_inuse(vq)) {
        /* Buffers still in flight are redone by whoever resumes: rewind to the used boundary. */
        virtio_queue_restore_last_avail_idx(vdev, s->index);
    }
    idx = virtio_queue_get_last_avail_idx(vdev, s->index);
    if (vdev_packed(be)) {
        idx |= virtio_queue_get_used_idx(vdev, s->index) << 16;
    }
    out->index = s->index;
    out->num = idx;
    be->tx.hdr.size = sizeof(*out);
    return 0;
}

/* SET_VRING_KICK / CALL / ERR share the payload: index in bits 0-7, "no fd" in bit 8. */
static int vring_fd_take(int *fds, unsigned nfds)
{
    int fd = nfds ? fds[0] : -1;

    if (nfds) {
        fds[0] = -1;
    }
    return fd;
}

/*
 * Kick and call fds must be eventfds: a file or pipe would keep the main loop
 * spinning on reads or let every completion write into the peer's file.
 * Without /proc the check is skipped.
 */
static bool fd_is_eventfd(int fd)
{
    char path[32], target[32];
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    n = readlink(path, target, sizeof(target) - 1);
    if (n < 0) {
        return true;
    }
    target[n] = '\0';
    return strcmp(target, "anon_inode:[eventfd]") == 0;
}

static int vu_set_vring_kick(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    unsigned n = payload_u64(m) & VHOST_USER_VRING_IDX_MASK;
    VuVring *vr = &be->vrings[n];

    if (nfds == 0) {
        /* Polling mode (no kick fd) is not supported: nothing would ever notify the queue. */
        vu_log(be, "queue %u: kick without fd (polling) not supported", n);
        return -ENOTSUP;
    }
    if (!fd_is_eventfd(fds[0]) || set_nonblock(fds[0]) < 0) {
        vu_log(be, "queue %u: kick fd is not an eventfd", n);
        return -EINVAL;
    }
    vring_stop(be, n);
    close_fd(&vr->kick_fd);
    vr->kick_fd = vring_fd_take(fds, nfds);
    return vring_try_start(be, n);
}

static int vu_set_vring_call(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    VuVring *vr = &be->vrings[payload_u64(m) & VHOST_USER_VRING_IDX_MASK];

    if (nfds && (!fd_is_eventfd(fds[0]) || set_nonblock(fds[0]) < 0)) {
        vu_log(be, "queue %u: call fd is not an eventfd", vr->index);
        return -EINVAL;
    }
    close_fd(&vr->call_fd);
    vr->call_fd = vring_fd_take(fds, nfds);
    return 0;
}

static int vu_set_vring_err(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    VuVring *vr = &be->vrings[payload_u64(m) & VHOST_USER_VRING_IDX_MASK];

    close_fd(&vr->err_fd);
    vr->err_fd = vring_fd_take(fds, nfds);
    return 0;
}

static int vu_get_protocol_features(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    reply_u64(be, offered_protocol_features(be));
    return 0;
}

static int vu_set_protocol_features(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    uint64_t val = payload_u64(m);

    if (val & ~offered_protocol_features(be)) {
        vu_log(be, "SET_PROTOCOL_FEATURES 0x%" PRIx64 ": not offered", val);
        return -EINVAL;
    }
    be->protocol_features = val;
    __atomic_store_n(&be->stats.protocol_features, val, __ATOMIC_RELAXED);
    return 0;
}

static int vu_get_queue_num(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    reply_u64(be, be->vdev->num_queues);
    return 0;
}

static int vu_set_vring_enable(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserVringState *s = &m->payload.state;
    VuVring *vr = &be->vrings[s->index];

    if (s->num > 1) {
        return -EINVAL;
    }
    /*
     * Recorded even before SET_FEATURES acks PROTOCOL_FEATURES: QEMU 7.2's
     * vhost-user-net sends SET_VRING_ENABLE 1 while the driver negotiates,
     * before SET_FEATURES, and never again. Until the ack, rings are enabled
     * by their kick alone (spec "Ring states").
     */
    vr->enabled = s->num;
    if (!be->protocol_features_acked) {
        return 0;
    }
    if (!vr->enabled) {
        vring_stop(be, s->index);
        return 0;
    }
    return vring_try_start(be, s->index);
}

static int vu_set_backend_req_fd(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    close_fd(&be->backend_req_fd);
    be->backend_req_fd = fds[0];
    fds[0] = -1;
    return 0;
}

static int vu_get_config(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserConfig *in = &m->payload.config;
    VhostUserConfig *out = &be->tx.payload.config;
    VirtIODevice *vdev = be->vdev;
    uint64_t end = (uint64_t)in->offset + in->size;

    if (in->size > VHOST_USER_MAX_CONFIG_SIZE || end > VHOST_USER_MAX_CONFIG_SIZE ||
        m->hdr.size != VHOST_USER_CONFIG_HDR_SIZE + in->size) {
        vu_log(be, "GET_CONFIG offset %u size %u (message %u bytes)", in->offset, in->size,
               m->hdr.size);
        return -EINVAL;
    }
    if (be->ops && be->ops->get_config) {
        be->ops->get_config(be->opaque, in->offset, in->size);
    }
    out->offset = in->offset;
    out->size = in->size;
    out->flags = in->flags;
    /* Bytes past the device's config space read as zero. */
    memset(out->region, 0, in->size);
    if (in->offset < vdev->config_len) {
        memcpy(out->region, vdev->config + in->offset, MIN(end, vdev->config_len) - in->offset);
    }
    be->tx.hdr.size = VHOST_USER_CONFIG_HDR_SIZE + in->size;
    return 0;
}

static int vu_set_config(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserConfig *in = &m->payload.config;
    uint64_t end = (uint64_t)in->offset + in->size;

    if (in->size > VHOST_USER_MAX_CONFIG_SIZE || end > be->vdev->config_len ||
        m->hdr.size != VHOST_USER_CONFIG_HDR_SIZE + in->size) {
        vu_log(be, "SET_CONFIG offset %u size %u (message %u bytes): outside config space",
               in->offset, in->size, m->hdr.size);
        return -EINVAL;
    }
    if (!be->ops || !be->ops->set_config) {
        return -ENOTSUP;
    }
    return be->ops->set_config(be->opaque, in->offset, in->region, in->size, in->flags);
}

/* num_queues and queue_size of an inflight request, checked against the device. */
static int inflight_check_geometry(VhostUserBackend *be, const VhostUserInflight *in)
{
    if (in->num_queues == 0 || in->num_queues > be->vdev->num_queues || in->queue_size == 0 ||
        in->queue_size > virtio_queue_get_max_num(be->vdev, 0)) {
        vu_log(be, "inflight: %u queues of %u entries (device: %u of at most %u)", in->num_queues,
               in->queue_size, be->vdev->num_queues, virtio_queue_get_max_num(be->vdev, 0));
        return -EINVAL;
    }
    return 0;
}

static int vu_get_inflight_fd(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserInflight *in = &m->payload.inflight;
    VhostUserInflight *out = &be->tx.payload.inflight;
    uint64_t qsize, size;
    struct stat st;
    void *addr;
    int fd, ret, slot;

    ret = inflight_check_geometry(be, in);
    if (ret < 0) {
        return ret;
    }
    qsize = vhost_user_inflight_queue_size(in->queue_size);
    size = qsize * in->num_queues;
    fd = memfd_create("vdm-vhost-user-inflight", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) {
        return -errno;
    }
    if (ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        ret = -errno;
        close(fd);
        return ret;
    }
    addr = fstat(fd, &st) == 0 ? guarded_mmap(size, fd, 0, &st, &slot) : NULL;
    if (!addr) {
        ret = -errno;
        close(fd);
        return ret;
    }
    inflight_unmap(be);
    be->inflight_guard_slot = slot;
    be->inflight_addr = addr;
    be->inflight_size = size;
    be->inflight_num_queues = in->num_queues;
    be->inflight_queue_size = in->queue_size;
    for (unsigned q = 0; q < in->num_queues; q++) {
        VhostUserInflightQueue *iq = (VhostUserInflightQueue *)(be->inflight_addr + q * qsize);
        iq->version = INFLIGHT_VERSION;
        iq->desc_num = in->queue_size;
        be->vrings[q].inflight_counter = 1;
    }
    *out = (VhostUserInflight) {
        .mmap_size = size, .mmap_offset = 0,
        .num_queues = in->num_queues, .queue_size = in->queue_size,
    };
    be->tx.hdr.size = sizeof(*out);
    be->tx_fd = fd;             /* sent with the reply, then closed */
    return 0;
}

static int vu_set_inflight_fd(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    const VhostUserInflight *in = &m->payload.inflight;
    long page = sysconf(_SC_PAGESIZE);
    struct stat st;
    void *addr;
    int ret, slot;

    ret = inflight_check_geometry(be, in);
    if (ret < 0) {
        return ret;
    }
    /* The region must be exactly what GET_INFLIGHT_FD would have made for this geometry. */
    if (in->mmap_size != vhost_user_inflight_queue_size(in->queue_size) * in->num_queues ||
        in->mmap_offset % (uint64_t)page || in->mmap_offset > (uint64_t)INT64_MAX - in->mmap_size) {
        vu_log(be, "SET_INFLIGHT_FD: size 0x%" PRIx64 " offset 0x%" PRIx64 " do not fit %u x %u",
               in->mmap_size, in->mmap_offset, in->num_queues, in->queue_size);
        return -EINVAL;
    }
    if (fstat(fds[0], &st) < 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
        (uint64_t)st.st_size < in->mmap_offset + in->mmap_size) {
        vu_log(be, "SET_INFLIGHT_FD: fd is not a file of 0x%" PRIx64 " bytes",
               in->mmap_offset + in->mmap_size);
        return -EINVAL;
    }
    addr = guarded_mmap(in->mmap_size, fds[0], (off_t)in->mmap_offset, &st, &slot);
    if (!addr) {
        return -errno;
    }
    inflight_unmap(be);
    be->inflight_guard_slot = slot;
    be->inflight_addr = addr;
    be->inflight_size = in->mmap_size;
    be->inflight_num_queues = in->num_queues;
    be->inflight_queue_size = in->queue_size;
    return 0;
}

static int vu_set_status(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    uint64_t val = payload_u64(m);

    if (val > 0xff) {
        return -EINVAL;
    }
    /*
     * Recorded, not applied: QEMU sends 0 when it stops the device, before
     * GET_VRING_BASE, so a reset here would lose the ring indices. The core's
     * status follows SET_FEATURES and the rings instead.
     */
    be->frontend_status = val;
    if ((val & VIRTIO_CONFIG_S_FEATURES_OK) && !(be->vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        return -EINVAL;         /* FEATURES_OK without accepted features */
    }
    return 0;
}

static int vu_get_status(VhostUserBackend *be, const VuMsg *m, int *fds, unsigned nfds)
{
    uint8_t status = be->frontend_status;

    if (!(be->vdev->status & VIRTIO_CONFIG_S_FEATURES_OK)) {
        status &= ~VIRTIO_CONFIG_S_FEATURES_OK;     /* spec 3.1.1: re-read to see it stuck */
    }
    if (be->vdev->broken) {
        status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    }
    reply_u64(be, status);
    return 0;
}

/* ---------------------------------------------------------------------- */
/* The request table (STYLE.md §6)                                         */

typedef enum VuIndexKind {
    VU_INDEX_NONE,
    VU_INDEX_STATE,     /* u32 index first in the payload (vring state / addr) */
    VU_INDEX_FD,        /* u64: bits 0-7 index, bit 8 "no fd", fd count must agree */
} VuIndexKind;

typedef struct VuRequestInfo {
    const char *name;
    VuHandler handler;
    uint8_t fds_min, fds_max;
    uint16_t size_min, size_max;
    VuIndexKind index;
    bool has_reply;             /* a reply of its own (REPLY_ACK does not apply) */
    int8_t needs_pfeature;      /* protocol feature that must be negotiated, or -1 */
} VuRequestInfo;

#define U64 sizeof(uint64_t)
#define STATE sizeof(VhostUserVringState)
#define MEM_MIN (offsetof(VhostUserMemory, regions) + sizeof(VhostUserMemoryRegion))
#define MEM_MAX sizeof(VhostUserMemory)
#define CFG_MAX sizeof(VhostUserConfig)

#define ROW(req, h, fmin, fmax, smin, smax, idx, reply, pf) \
    [VHOST_USER_##req] = { #req, h, fmin, fmax, smin, smax, VU_INDEX_##idx, reply, pf }

/* GET_* without a payload: frontends send size 0 (QEMU) or a zero u64; both are accepted. */
static const VuRequestInfo vhost_user_requests[VHOST_USER_REQUEST_MAX] = {
    ROW(GET_FEATURES,          vu_get_features,          0, 0, 0, U64, NONE, true, -1),
    ROW(SET_FEATURES,          vu_set_features,          0, 0, U64, U64, NONE, false, -1),
    ROW(SET_OWNER,             vu_nop,                   0, 0, 0, U64, NONE, false, -1),
    ROW(RESET_OWNER,           vu_reset_device,          0, 0, 0, U64, NONE, false, -1),
    ROW(SET_MEM_TABLE,         vu_set_mem_table,         1, VHOST_USER_MAX_REGIONS, MEM_MIN, MEM_MAX,
        NONE, false, -1),
    ROW(SET_LOG_BASE,          vu_refuse,                0, 1, 0, VHOST_USER_PAYLOAD_MAX, NONE, false, -1),
    ROW(SET_LOG_FD,            vu_refuse,                0, 1, 0, U64, NONE, false, -1),
    ROW(SET_VRING_NUM,         vu_set_vring_num,         0, 0, STATE, STATE, STATE, false, -1),
    ROW(SET_VRING_ADDR,        vu_set_vring_addr,        0, 0, sizeof(VhostUserVringAddr),
        sizeof(VhostUserVringAddr), STATE, false, -1),
    ROW(SET_VRING_BASE,        vu_set_vring_base,        0, 0, STATE, STATE, STATE, false, -1),
    ROW(GET_VRING_BASE,        vu_get_vring_base,        0, 0, STATE, STATE, STATE, true, -1),
    ROW(SET_VRING_KICK,        vu_set_vring_kick,        0, 1, U64, U64, FD, false, -1),
    ROW(SET_VRING_CALL,        vu_set_vring_call,        0, 1, U64, U64, FD, false, -1),
    ROW(SET_VRING_ERR,         vu_set_vring_err,         0, 1, U64, U64, FD, false, -1),
    ROW(GET_PROTOCOL_FEATURES, vu_get_protocol_features, 0, 0, 0, U64, NONE, true, -1),
    ROW(SET_PROTOCOL_FEATURES, vu_set_protocol_features, 0, 0, U64, U64, NONE, false, -1),
    ROW(GET_QUEUE_NUM,         vu_get_queue_num,         0, 0, 0, U64, NONE, true,
        VHOST_USER_PROTOCOL_F_MQ),
    ROW(SET_VRING_ENABLE,      vu_set_vring_enable,      0, 0, STATE, STATE, STATE, false, -1),
    ROW(SEND_RARP,             vu_nop,                   0, 0, U64, U64, NONE, false, -1),
    ROW(NET_SET_MTU,           vu_nop,                   0, 0, U64, U64, NONE, false, -1),
    ROW(SET_BACKEND_REQ_FD,    vu_set_backend_req_fd,    1, 1, 0, U64, NONE, false,
        VHOST_USER_PROTOCOL_F_BACKEND_REQ),
    ROW(IOTLB_MSG,             vu_refuse,                0, 0, 0, VHOST_USER_PAYLOAD_MAX, NONE, false, -1),
    ROW(SET_VRING_ENDIAN,      vu_refuse,                0, 0, 0, VHOST_USER_PAYLOAD_MAX, NONE, false, -1),
    ROW(GET_CONFIG,            vu_get_config,            0, 0, VHOST_USER_CONFIG_HDR_SIZE, CFG_MAX,
        NONE, true, VHOST_USER_PROTOCOL_F_CONFIG),
    ROW(SET_CONFIG,            vu_set_config,            0, 0, VHOST_USER_CONFIG_HDR_SIZE, CFG_MAX,
        NONE, false, VHOST_USER_PROTOCOL_F_CONFIG),
    ROW(GET_INFLIGHT_FD,       vu_get_inflight_fd,       0, 0, VHOST_USER_INFLIGHT_SIZE,
        sizeof(VhostUserInflight), NONE, true, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD),
    ROW(SET_INFLIGHT_FD,       vu_set_inflight_fd,       1, 1, VHOST_USER_INFLIGHT_SIZE,
        sizeof(VhostUserInflight), NONE, false, VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD),
    ROW(GPU_SET_SOCKET,        vu_refuse,                0, 1, 0, VHOST_USER_PAYLOAD_MAX, NONE, false, -1),
    ROW(RESET_DEVICE,          vu_reset_device,          0, 0, 0, U64, NONE, false,
        VHOST_USER_PROTOCOL_F_RESET_DEVICE),
    ROW(VRING_KICK,            vu_refuse,                0, 0, 0, VHOST_USER_PAYLOAD_MAX, NONE, false, -1),
    ROW(GET_MAX_MEM_SLOTS,     vu_get_max_mem_slots,     0, 0, 0, U64, NONE, true,
        VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
    ROW(ADD_MEM_REG,           vu_add_mem_reg,           1, 1, sizeof(VhostUserMemRegMsg),
        sizeof(VhostUserMemRegMsg), NONE, false, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
    ROW(REM_MEM_REG,           vu_rem_mem_reg,           0, 1, sizeof(VhostUserMemRegMsg),
        sizeof(VhostUserMemRegMsg), NONE, false, VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS),
    ROW(SET_STATUS,            vu_set_status,            0, 0, U64, U64, NONE, false,
        VHOST_USER_PROTOCOL_F_STATUS),
    ROW(GET_STATUS,            vu_get_status,            0, 0, 0, U64, NONE, true,
        VHOST_USER_PROTOCOL_F_STATUS),
};

/* Why a message fails the table check, or NULL. */
static const char *request_check(VhostUserBackend *be, const VuRequestInfo *info, const VuMsg *m,
                                 unsigned nfds)
{
    unsigned index;

    if (m->hdr.size < info->size_min || m->hdr.size > info->size_max) {
        return "payload size";
    }
    if (nfds < info->fds_min || nfds > info->fds_max) {
        return "fd count";
    }
    if (info->needs_pfeature >= 0 && !has_protocol_feature(be, info->needs_pfeature)) {
        return "protocol feature not negotiated";
    }
    switch (info->index) {
    case VU_INDEX_NONE:
        return NULL;
    case VU_INDEX_STATE:
        index = m->payload.state.index;
        break;
    case VU_INDEX_FD:
        if (payload_u64(m) & ~(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK)) {
            return "reserved bits set";
        }
        if (!!(payload_u64(m) & VHOST_USER_VRING_NOFD_MASK) == (nfds == 1)) {
            return "fd count disagrees with the no-fd flag";
        }
        index = payload_u64(m) & VHOST_USER_VRING_IDX_MASK;
        break;
    default:
        abort();                /* table rows are ours */
    }
    return index < be->vdev->num_queues ? NULL : "vring index out of range";
}

/* ---------------------------------------------------------------------- */
/* Connection                                                              */

static void rx_reset(VhostUserBackend *be)
{
    for (unsigned i = 0; i < be->rx_nfds; i++) {
        close_fd(&be->rx_fds[i]);
    }
    be->rx_nfds = 0;
    be->rx_bad_fds = false;
    be->rx_have = 0;
}

static void listen_watch(VhostUserBackend *be);

static void connection_close(VhostUserBackend *be)
{
    if (be->conn_fd < 0) {
        return;
    }
    source_drop(&be->conn_src);
    close_fd(&be->conn_fd);
    rx_reset(be);
    device_reset(be);
    memory_unmap_all(be);
    close_fd(&be->backend_req_fd);
    be->protocol_features = 0;
    __atomic_store_n(&be->stats.protocol_features, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&be->stats.connected, false, __ATOMIC_RELEASE);
    listen_watch(be);           /* the next frontend may connect */
}

void vhost_user_backend_disconnect(VhostUserBackend *be)
{
    connection_close(be);
}

/* Send be->tx (and be->tx_fd). The socket is non-blocking: a peer that does not read is dropped. */
static bool reply_send(VhostUserBackend *be, uint32_t request)
{
    struct iovec iov[2] = {
        { .iov_base = &be->tx.hdr, .iov_len = sizeof(be->tx.hdr) },
        { .iov_base = &be->tx.payload, .iov_len = be->tx.hdr.size },
    };
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = { .msg_iov = iov, .msg_iovlen = 2 };
    ssize_t r;
    int err;

    be->tx.hdr.request = request;
    be->tx.hdr.flags = VHOST_USER_VERSION | VHOST_USER_REPLY_MASK;  /* exactly 0x5 (DPDK checks) */
    if (be->tx_fd >= 0) {
        struct cmsghdr *c;
        memset(&ctl, 0, sizeof(ctl));
        mh.msg_control = ctl.buf;
        mh.msg_controllen = sizeof(ctl.buf);
        c = CMSG_FIRSTHDR(&mh);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &be->tx_fd, sizeof(int));
    }
    do {
        r = sendmsg(be->conn_fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    err = errno;
    close_fd(&be->tx_fd);
    if (r != (ssize_t)(iov[0].iov_len + iov[1].iov_len)) {
        vu_log(be, "reply to request %u not sent (%s): closing", request,
               r < 0 ? strerror(err) : "short write");
        return false;
    }
    return true;
}

/* Handle the complete message in be->rx. Returns false when the connection must close. */
static bool dispatch(VhostUserBackend *be)
{
    const VuMsg *m = &be->rx;
    uint32_t request = m->hdr.request;
    const VuRequestInfo *info = request < VHOST_USER_REQUEST_MAX ? &vhost_user_requests[request] : NULL;
    bool need_reply = (m->hdr.flags & VHOST_USER_NEED_REPLY_MASK) &&
                      has_protocol_feature(be, VHOST_USER_PROTOCOL_F_REPLY_ACK);
    const char *bad;
    int ret;

    stat_add(&be->stats.messages, 1);
    guard_check(be);
    retired_reap(be, false);
    memset(&be->tx.hdr, 0, sizeof(be->tx.hdr));
    be->tx_fd = -1;

    if (!info || !info->handler) {
        bad = "unknown request";
    } else if ((m->hdr.flags & VHOST_USER_VERSION_MASK) != VHOST_USER_VERSION ||
               (m->hdr.flags & VHOST_USER_REPLY_MASK)) {
        bad = "bad version or reply flag";
    } else if (be->rx_bad_fds) {
        bad = "too many fds";
    } else {
        bad = request_check(be, info, m, be->rx_nfds);
    }
    if (bad) {
        stat_add(&be->stats.bad_messages, 1);
        vu_log(be, "request %u (%s): %s (size %u, %u fds)", request, info && info->name ? info->name : "?",
               bad, m->hdr.size, be->rx_nfds);
        rx_reset(be);
        if (need_reply && !(info && info->has_reply)) {
            reply_u64(be, EINVAL);
            return reply_send(be, request);
        }
        return false;           /* nothing to answer with: the peer is not speaking the protocol */
    }

    ret = info->handler(be, m, be->rx_fds, be->rx_nfds);
    rx_reset(be);               /* closes every fd the handler did not take */
    if (ret < 0) {
        stat_add(&be->stats.bad_messages, 1);
        vu_log(be, "%s failed: %s", info->name, strerror(-ret));
        if (info->has_reply) {
            close_fd(&be->tx_fd);
            return false;       /* the frontend waits for a reply we cannot give */
        }
    }
    if (be->conn_fd < 0) {
        return false;
    }
    if (info->has_reply) {
        return reply_send(be, request);
    }
    if (need_reply) {
        reply_u64(be, ret < 0 ? (uint64_t)-ret : 0);
        return reply_send(be, request);
    }
    return true;
}

/* Take the fds of one recvmsg; beyond VHOST_USER_MAX_FDS they are closed and the message is bad. */
static void rx_take_fds(VhostUserBackend *be, struct msghdr *mh)
{
    for (struct cmsghdr *c = CMSG_FIRSTHDR(mh); c; c = CMSG_NXTHDR(mh, c)) {
        size_t nfds;
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) {
            continue;
        }
        nfds = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfds; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            if (be->rx_nfds < VHOST_USER_MAX_FDS) {
                be->rx_fds[be->rx_nfds++] = fd;
            } else {
                close(fd);
                be->rx_bad_fds = true;
            }
        }
    }
    if (mh->msg_flags & MSG_CTRUNC) {
        be->rx_bad_fds = true;  /* the kernel dropped fds that did not fit */
    }
}

/*
 * Read what is there of the current message. Returns 1 when a whole message
 * is in be->rx, 0 when more is needed (EAGAIN), -1 when the connection must close.
 */
static int rx_read(VhostUserBackend *be)
{
    union {
        char buf[CMSG_SPACE(VHOST_USER_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    size_t want = sizeof(VhostUserHeader);
    struct iovec iov;
    struct msghdr mh;
    ssize_t r;

    for (;;) {
        if (be->rx_have >= sizeof(VhostUserHeader)) {
            if (be->rx.hdr.size > VHOST_USER_PAYLOAD_MAX) {
                vu_log(be, "request %u announces %u payload bytes: closing", be->rx.hdr.request,
                       be->rx.hdr.size);
                return -1;
            }
            want = sizeof(VhostUserHeader) + be->rx.hdr.size;
        }
        if (be->rx_have == want) {
            return 1;
        }
        /* One part at a time: the header, then the payload (ours are not contiguous). */
        if (be->rx_have < sizeof(VhostUserHeader)) {
            iov = (struct iovec) { .iov_base = (uint8_t *)&be->rx.hdr + be->rx_have,
                                   .iov_len = sizeof(VhostUserHeader) - be->rx_have };
        } else {
            iov = (struct iovec) {
                .iov_base = be->rx.payload.raw + (be->rx_have - sizeof(VhostUserHeader)),
                .iov_len = want - be->rx_have };
        }
        mh = (struct msghdr) { .msg_iov = &iov, .msg_iovlen = 1,
                               .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf) };
        r = recvmsg(be->conn_fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0 && errno == EAGAIN) {
            return 0;
        }
        if (r <= 0) {
            return -1;          /* closed (possibly mid-message) or failed */
        }
        rx_take_fds(be, &mh);
        be->rx_have += r;
    }
}

static gboolean vu_conn_cb(gint fd, GIOCondition cond, gpointer opaque)
{
    VhostUserBackend *be = opaque;

    for (unsigned i = 0; i < MESSAGES_PER_WAKEUP; i++) {
        int r = rx_read(be);
        if (r == 0 && !(cond & (G_IO_HUP | G_IO_ERR | G_IO_NVAL))) {
            return G_SOURCE_CONTINUE;
        }
        if (r <= 0) {
            connection_close(be);
            return G_SOURCE_REMOVE;
        }
        /* Zero the tail so handlers reading a short optional field see 0. */
        memset(be->rx.payload.raw + be->rx.hdr.size, 0,
               MIN(sizeof(VhostUserConfig), sizeof(be->rx.payload) - be->rx.hdr.size));
        if (!dispatch(be)) {
            connection_close(be);
            return G_SOURCE_REMOVE;
        }
    }
    return G_SOURCE_CONTINUE;   /* more may be queued: let other sources run first */
}

static int connection_start(VhostUserBackend *be, int fd, GError **errp)
{
    int ret = set_nonblock(fd);

    if (ret < 0) {
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(-ret), "socket: %s", strerror(-ret));
        close(fd);
        return -1;
    }
    be->conn_fd = fd;
    be->log_lines = 0;
    be->conn_src = g_unix_fd_source_new(fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
    g_source_set_callback(be->conn_src, G_SOURCE_FUNC(vu_conn_cb), be, NULL);
    g_source_attach(be->conn_src, be->ctx);
    stat_add(&be->stats.connections, 1);
    __atomic_store_n(&be->stats.connected, true, __ATOMIC_RELEASE);
    return 0;
}

static gboolean vu_listen_cb(gint fd, GIOCondition cond, gpointer opaque)
{
    VhostUserBackend *be = opaque;
    int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

    if (conn < 0) {
        return G_SOURCE_CONTINUE;   /* EAGAIN, or the peer went away before accept */
    }
    /* One connection at a time: the next waits in the backlog until this one ends. */
    g_source_unref(be->listen_src);
    be->listen_src = NULL;
    connection_start(be, conn, NULL);
    return G_SOURCE_REMOVE;
}

static void listen_watch(VhostUserBackend *be)
{
    if (be->listen_fd < 0 || be->listen_src || be->conn_fd >= 0) {
        return;
    }
    be->listen_src = g_unix_fd_source_new(be->listen_fd, G_IO_IN);
    g_source_set_callback(be->listen_src, G_SOURCE_FUNC(vu_listen_cb), be, NULL);
    g_source_attach(be->listen_src, be->ctx);
}

/* ---------------------------------------------------------------------- */
/* Public API                                                              */

VhostUserBackend *vhost_user_backend_new(VirtIODevice *vdev, const VhostUserBackendOps *ops,
                                         void *opaque)
{
    VhostUserBackend *be = g_new0(VhostUserBackend, 1);

    be->vdev = vdev;
    be->ops = ops;
    be->opaque = opaque;
    be->ctx = g_main_context_ref(g_main_context_default());
    be->listen_fd = -1;
    be->conn_fd = -1;
    be->tx_fd = -1;
    be->backend_req_fd = -1;
    be->inflight_guard_slot = -1;
    be->log_enabled = true;
    guest_memory_init(&be->mem);
    be->vrings = g_new0(VuVring, vdev->num_queues);
    for (unsigned n = 0; n < vdev->num_queues; n++) {
        be->vrings[n] = (VuVring) { .be = be, .index = n, .kick_fd = -1, .call_fd = -1,
                                    .err_fd = -1, .inflight_counter = 1 };
    }
    vdev->mem = &be->mem;
    vdev->transport = &vu_transport_ops;
    vdev->transport_opaque = be;
    return be;
}

void vhost_user_backend_free(VhostUserBackend *be)
{
    if (!be) {
        return;
    }
    connection_close(be);
    source_drop(&be->listen_src);
    close_fd(&be->listen_fd);
    if (be->socket_path) {
        unlink(be->socket_path);
        g_free(be->socket_path);
    }
    for (unsigned n = 0; n < be->vdev->num_queues; n++) {
        vring_forget(be, n);
    }
    memory_unmap_all(be);
    retired_reap(be, true);
    inflight_unmap(be);
    be->vdev->transport = NULL;
    be->vdev->transport_opaque = NULL;
    be->vdev->mem = NULL;
    g_main_context_unref(be->ctx);
    g_free(be->vrings);
    g_free(be);
}

void vhost_user_backend_set_context(VhostUserBackend *be, GMainContext *ctx)
{
    g_main_context_unref(be->ctx);
    be->ctx = g_main_context_ref(ctx ? ctx : g_main_context_default());
}

int vhost_user_backend_listen(VhostUserBackend *be, const char *socket_path, GError **errp)
{
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    struct stat st;
    int fd, err;

    if (be->listen_fd >= 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST, "already listening");
        return -1;
    }
    if (strlen(socket_path) >= sizeof(addr.sun_path)) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_NAMETOOLONG, "socket path too long: %s",
                    socket_path);
        return -1;
    }
    strcpy(addr.sun_path, socket_path);
    if (lstat(socket_path, &st) == 0 && S_ISSOCK(st.st_mode)) {
        unlink(socket_path);    /* stale socket of an earlier run */
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 1) < 0) {
        err = errno;
        if (fd >= 0) {
            close(fd);
        }
        g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err), "%s: %s", socket_path,
                    strerror(err));
        return -1;
    }
    be->listen_fd = fd;
    be->socket_path = g_strdup(socket_path);
    listen_watch(be);
    return 0;
}

int vhost_user_backend_serve_fd(VhostUserBackend *be, int fd, GError **errp)
{
    if (be->conn_fd >= 0) {
        g_set_error(errp, G_FILE_ERROR, G_FILE_ERROR_FAILED, "a connection is being served");
        close(fd);
        return -1;
    }
    source_drop(&be->listen_src);
    return connection_start(be, fd, errp);
}

void vhost_user_backend_set_log(VhostUserBackend *be, bool enabled)
{
    be->log_enabled = enabled;
}

VirtIODevice *vhost_user_backend_get_device(VhostUserBackend *be)
{
    return be->vdev;
}

GuestMemory *vhost_user_backend_get_memory(VhostUserBackend *be)
{
    return &be->mem;
}

void vhost_user_backend_get_stats(VhostUserBackend *be, VhostUserBackendStats *stats)
{
    stats->connections = __atomic_load_n(&be->stats.connections, __ATOMIC_RELAXED);
    stats->messages = __atomic_load_n(&be->stats.messages, __ATOMIC_RELAXED);
    stats->bad_messages = __atomic_load_n(&be->stats.bad_messages, __ATOMIC_RELAXED);
    stats->kicks = __atomic_load_n(&be->stats.kicks, __ATOMIC_RELAXED);
    stats->calls = __atomic_load_n(&be->stats.calls, __ATOMIC_RELAXED);
    stats->connected = __atomic_load_n(&be->stats.connected, __ATOMIC_ACQUIRE);
    stats->features = __atomic_load_n(&be->stats.features, __ATOMIC_RELAXED);
    stats->protocol_features = __atomic_load_n(&be->stats.protocol_features, __ATOMIC_RELAXED);
    stats->queues_running = __atomic_load_n(&be->stats.queues_running, __ATOMIC_RELAXED);
}
