/*
 * vdm-bench-blk: 4 KiB random read / random write IOPS at several queue
 * depths through vhost-user-blk, vdm's daemon (vdm-vhost-user-blk) and
 * qemu-storage-daemon's vhost-user-blk export side by side, same driver,
 * same run.
 *
 * The driver is vdm's test frontend (tests/vhost-user: unix socket, RAM
 * shared by memfd) with the driver library (tests/libvdriver) on one ring,
 * in a tight loop on one thread: QD requests always in flight, each built as
 * virtio-blk builds it (16-byte header readable, 4 KiB data, 1-byte status
 * writable; in one indirect table by default, as Linux does), the used ring
 * busy-polled (interrupts disabled: the driver never sleeps), a kick only
 * when the ring's notification suppression asks for one. Every completion's
 * status must be OK, and under VIRTIO_F_IN_ORDER completions must arrive in
 * submission order.
 *
 * Each daemon gets its own preallocated image on tmpfs (/dev/shm by default)
 * and is pinned to another CPU than the driver. Points (backend x rw x qd)
 * are interleaved within each repeat, so slow drift on a shared machine hits
 * every backend alike; the median of the repeats is reported, with min/max.
 *
 * Output: one JSON object per point (stdout and --json FILE) and tables on
 * stderr, with the ratio vdm/qsd per (rw, qd) and in_order on/off.
 *
 * Context: single-threaded; the daemons are child processes, killed on exit
 * (and by the kernel if this process dies: PR_SET_PDEATHSIG).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hw/virtio/virtio-blk.h"
#include "vdriver.h"
#include "vhost-user-frontend.h"

#define BLOCK_BYTES     4096u
#define RAM_BYTES       (8ull * 1024 * 1024)
#define MAX_QD          1024u
#define MAX_REPEAT      15u
#define MAX_PEERS       16u
#define MAX_QDS         8u
#define INDIRECT_MAX    4u
#define STALL_NS        (10ull * 1000000000ull)    /* no completion for this long: the point fails */
#define MSG_TIMEOUT_MS  10000
#define STATUS_POISON   0xeeu

/* Latency histogram: 100 ns buckets to 100 us, then 10 us buckets to ~10 ms, then overflow. */
#define LAT_FINE        1000u
#define LAT_COARSE      1000u
#define LAT_BUCKETS     (LAT_FINE + LAT_COARSE + 1)

typedef struct Options {
    double seconds, warmup;
    unsigned repeat;
    unsigned qds[MAX_QDS], nqd;
    bool rw_read, rw_write;
    bool want_vdm, want_qsd;
    bool engine_uring, engine_threads;
    bool io_on, io_off;
    bool packed, event_idx, indirect, pin;
    bool irq;                   /* sleep on the call eventfd instead of busy-polling */
    bool qsd_writethrough;      /* qsd export writethrough=on (vdm is writethrough without FLUSH) */
    int nice;
    unsigned queue_size;
    uint64_t image_bytes;
    const char *dir;
    const char *vdm_daemon;
    const char *qsd;
    FILE *json;
} Options;

/* One request slot: its header, data page and status byte in shared RAM. */
typedef struct Slot {
    hwaddr hdr, data, status;
    uint64_t submitted_ns;
    uint64_t seq;
} Slot;

typedef struct RunResult {
    bool ok;
    double iops;
    double lat_us_avg, lat_us_p50, lat_us_p99, lat_us_max;
    double kicks_per_req, used_entries_per_req;
    double daemon_cpu;          /* fraction of one CPU during the measured window */
    double daemon_us_per_io;    /* daemon CPU time (all threads) per request: robust to contention */
    char error[256];
} RunResult;

/* One backend configuration: one daemon, one connection, one ring, all run long. */
typedef struct Peer {
    char name[48];              /* table column, e.g. "vdm/io_uring/io=on" */
    bool qsd;
    const char *engine;         /* vdm --backend, or qsd aio= */
    bool in_order_offer;        /* vdm: --in-order on|off */
    char *sock, *image, *log;
    pid_t pid;
    bool failed;
    char error[256];
    uint64_t offered, protocol_offered, negotiated;
    VuFrontend f;
    VuFrontendRing ring;
    VDriverQueue *q;
    bool in_order;              /* negotiated */
    bool writeback;             /* the device's write cache mode, as it will run */
    Slot *slots;
    uint64_t rng;
    uint64_t next_seq, expect_seq;
    /* Results: [rw][qd index][repeat] */
    RunResult res[2][MAX_QDS][MAX_REPEAT];
} Peer;

static Options opt;
static Peer peers[MAX_PEERS];
static unsigned npeers;
static char *work_dir;
static volatile sig_atomic_t interrupted;
static int cpu_driver = -1, cpu_daemon = -1;
static uint64_t lat_hist[LAT_BUCKETS];

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static void peer_fail(Peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void peer_fail(Peer *p, const char *fmt, ...)
{
    va_list ap;

    if (p->failed) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(p->error, sizeof(p->error), fmt, ap);
    va_end(ap);
    p->failed = true;
    fprintf(stderr, "vdm-bench-blk: %s: %s\n", p->name, p->error);
}

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0) {
        perror("vasprintf");
        exit(2);
    }
    return s;
}

/* ---- latency histogram ---- */

static void lat_record(uint64_t ns)
{
    unsigned b;

    if (ns < 100ull * LAT_FINE) {
        b = (unsigned)(ns / 100);
    } else if (ns < 100ull * LAT_FINE + 10000ull * LAT_COARSE) {
        b = LAT_FINE + (unsigned)((ns - 100ull * LAT_FINE) / 10000);
    } else {
        b = LAT_FINE + LAT_COARSE;
    }
    lat_hist[b]++;
}

/* Upper edge of the bucket holding the @q quantile, in microseconds (@max_us beyond the last). */
static double lat_quantile(uint64_t total, double q, double max_us)
{
    uint64_t want = (uint64_t)(q * (double)total), seen = 0;

    for (unsigned b = 0; b < LAT_BUCKETS; b++) {
        seen += lat_hist[b];
        if (seen > want) {
            if (b < LAT_FINE) {
                return (b + 1) * 0.1;
            }
            return b < LAT_FINE + LAT_COARSE ? 100.0 + (b - LAT_FINE + 1) * 10.0 : max_us;
        }
    }
    return max_us;
}

/* ---- CPUs ---- */

/* Driver on the first CPU we may use, daemons on the second (none: no pinning). */
static void choose_cpus(void)
{
    cpu_set_t set;
    int found = 0;

    if (!opt.pin || sched_getaffinity(0, sizeof(set), &set) < 0) {
        return;
    }
    for (int c = 0; c < CPU_SETSIZE && found < 2; c++) {
        if (CPU_ISSET(c, &set)) {
            if (found++ == 0) {
                cpu_driver = c;
            } else {
                cpu_daemon = c;
            }
        }
    }
    if (found < 2) {
        cpu_driver = cpu_daemon = -1;
    }
}

static void pin_self(int cpu)
{
    cpu_set_t set;

    if (cpu < 0) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) < 0) {
        perror("sched_setaffinity");
    }
}

/* utime + stime of @pid, all threads, in seconds (/proc/PID/stat fields 14 and 15). */
static double proc_cpu_seconds(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long long ut, st;
    ssize_t n;
    int fd;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return -1;
    }
    buf[n] = 0;
    p = strrchr(buf, ')');      /* the command name may hold spaces */
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) {
        return -1;
    }
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- files and daemons ---- */

static bool make_image(const char *path, uint64_t bytes, char *err, size_t errlen)
{
    static uint8_t buf[1 << 20];
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return false;
    }
    /* Written out, not sparse: reads hit allocated tmpfs pages, writes overwrite them. */
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] = (uint8_t)(i * 7 + (i >> 12));
    }
    for (uint64_t off = 0; off < bytes; off += sizeof(buf)) {
        size_t len = bytes - off < sizeof(buf) ? (size_t)(bytes - off) : sizeof(buf);
        if (pwrite(fd, buf, len, (off_t)off) != (ssize_t)len) {
            snprintf(err, errlen, "%s: write: %s", path, strerror(errno));
            close(fd);
            return false;
        }
    }
    close(fd);
    return true;
}

/* Last lines of a daemon's log, for error messages. */
static void log_tail(const char *path, char *out, size_t outlen)
{
    char buf[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    off_t size;

    out[0] = 0;
    if (fd < 0) {
        return;
    }
    size = lseek(fd, 0, SEEK_END);
    n = pread(fd, buf, sizeof(buf) - 1, size > (off_t)sizeof(buf) - 1 ? size - (off_t)sizeof(buf) + 1 : 0);
    close(fd);
    if (n <= 0) {
        return;
    }
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = 0;
    }
    {
        size_t keep = (size_t)n < outlen - 1 ? (size_t)n : outlen - 1;
        memcpy(out, buf + n - keep, keep);
        out[keep] = 0;
    }
    for (char *c = out; *c; c++) {
        if (*c == '\n' || *c == '"' || *c == '\\') {
            *c = *c == '\n' ? '|' : '\'';
        }
    }
}

static void peer_start(Peer *p)
{
    char blockdev[PATH_MAX + 128], export[PATH_MAX + 160], qsz[16];
    const char *argv[24];
    unsigned n = 0;
    pid_t pid;

    snprintf(qsz, sizeof(qsz), "%u", opt.queue_size);
    if (p->qsd) {
        snprintf(blockdev, sizeof(blockdev), "driver=file,node-name=f0,filename=%s,aio=%s", p->image,
                 p->engine);
        snprintf(export, sizeof(export),
                 "type=vhost-user-blk,id=e0,node-name=f0,addr.type=unix,addr.path=%s,writable=on,"
                 "num-queues=1%s", p->sock, opt.qsd_writethrough ? ",writethrough=on" : "");
        argv[n++] = opt.qsd;
        argv[n++] = "--blockdev";
        argv[n++] = blockdev;
        argv[n++] = "--export";
        argv[n++] = export;
    } else {
        argv[n++] = opt.vdm_daemon;
        argv[n++] = "--socket";
        argv[n++] = p->sock;
        argv[n++] = "--image";
        argv[n++] = p->image;
        argv[n++] = "--backend";
        argv[n++] = p->engine;
        argv[n++] = "--in-order";
        argv[n++] = p->in_order_offer ? "on" : "off";
        argv[n++] = "--queue-size";
        argv[n++] = qsz;
    }
    argv[n] = NULL;

    pid = fork();
    if (pid < 0) {
        peer_fail(p, "fork: %s", strerror(errno));
        return;
    }
    if (pid == 0) {
        int fd = open(p->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);

        /* Die with the benchmark, whatever happens to it. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() == 1) {
            _exit(125);
        }
        signal(SIGINT, SIG_IGN);        /* ^C reaches the benchmark, which stops the daemons */
        if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
            _exit(126);
        }
        pin_self(cpu_daemon);
        execvp(argv[0], (char **)argv);
        fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    p->pid = pid;
}

/* Wait for the daemon's socket (or its death) within the message timeout. */
static bool peer_wait_socket(Peer *p)
{
    uint64_t deadline = now_ns() + MSG_TIMEOUT_MS * 1000000ull;
    struct stat st;
    int status;

    while (now_ns() < deadline && !interrupted) {
        if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
            char tail[220];
            p->pid = 0;
            log_tail(p->log, tail, sizeof(tail));
            peer_fail(p, "daemon exited (status 0x%x) before listening: %s", status, tail);
            return false;
        }
        if (stat(p->sock, &st) == 0 && S_ISSOCK(st.st_mode)) {
            return true;
        }
        usleep(5000);
    }
    peer_fail(p, "no socket %s after %d ms", p->sock, MSG_TIMEOUT_MS);
    return false;
}

static void peer_stop(Peer *p)
{
    int status;
    uint64_t deadline;

    if (p->q) {
        vdriver_queue_free(p->q);
        p->q = NULL;
    }
    if (p->f.conn.fd >= 0 || p->f.ram) {
        vuf_close(&p->f);
    }
    vuf_ring_close(&p->ring);
    if (p->pid > 0) {
        kill(p->pid, SIGTERM);
        deadline = now_ns() + 5000000000ull;
        while (waitpid(p->pid, &status, WNOHANG) != p->pid) {
            if (now_ns() > deadline) {
                kill(p->pid, SIGKILL);
                waitpid(p->pid, &status, 0);
                break;
            }
            usleep(5000);
        }
        p->pid = 0;
    }
}

/* ---- the vhost-user connection and the ring ---- */

static uint64_t wanted_features(const Peer *p)
{
    /* What Linux's virtio_blk asks for (no MQ: one queue), plus the ring options chosen. */
    uint64_t want = 1ull << VIRTIO_F_VERSION_1 | 1ull << VIRTIO_BLK_F_SIZE_MAX |
                    1ull << VIRTIO_BLK_F_SEG_MAX | 1ull << VIRTIO_BLK_F_BLK_SIZE |
                    1ull << VIRTIO_BLK_F_FLUSH | 1ull << VIRTIO_BLK_F_TOPOLOGY |
                    1ull << VIRTIO_BLK_F_CONFIG_WCE;

    if (opt.indirect) {
        want |= 1ull << VIRTIO_RING_F_INDIRECT_DESC;
    }
    if (opt.event_idx) {
        want |= 1ull << VIRTIO_RING_F_EVENT_IDX;
    }
    if (opt.packed) {
        want |= 1ull << VIRTIO_F_RING_PACKED;
    }
    /* The mode asks for IN_ORDER; qsd is asked too and negotiates it only if it offers it. */
    if (p->in_order_offer) {
        want |= 1ull << VIRTIO_F_IN_ORDER;
    }
    return want;
}

static void peer_connect(Peer *p)
{
    VDriverQueueConfig qc = { .num = opt.queue_size, .packed = opt.packed, .event_idx = opt.event_idx };
    uint64_t want = wanted_features(p);
    hwaddr heap;
    int ret;

    if ((ret = vuf_connect(&p->f, p->sock, MSG_TIMEOUT_MS)) < 0) {
        peer_fail(p, "connect %s: %s", p->sock, strerror(-ret));
        return;
    }
    if ((ret = vuf_ram_create(&p->f, RAM_BYTES)) < 0) {
        peer_fail(p, "guest RAM: %s", strerror(-ret));
        return;
    }
    if ((ret = vuf_negotiate(&p->f, want, 0)) != 0) {
        peer_fail(p, "feature negotiation: %s", ret < 0 ? strerror(-ret) : "refused");
        return;
    }
    /* What was offered, for the report (GET_* may come at any time). */
    if (vuf_get_u64(&p->f, VHOST_USER_GET_FEATURES, &p->offered) < 0 ||
        vuf_get_u64(&p->f, VHOST_USER_GET_PROTOCOL_FEATURES, &p->protocol_offered) < 0) {
        peer_fail(p, "GET_FEATURES after negotiation failed");
        return;
    }
    p->negotiated = p->f.features;
    p->in_order = !!(p->negotiated & (1ull << VIRTIO_F_IN_ORDER));
    /*
     * Write cache: vdm's virtio-blk is writeback only with FLUSH negotiated
     * (spec 5.2.5.1), else it syncs every write; qsd's export follows its
     * writethrough option whatever was negotiated.
     */
    p->writeback = p->qsd ? !opt.qsd_writethrough : !!(p->negotiated & (1ull << VIRTIO_BLK_F_FLUSH));
    if (!p->writeback) {
        strcat(p->name, "/wt");
    }
    if (opt.packed && !(p->negotiated & (1ull << VIRTIO_F_RING_PACKED))) {
        peer_fail(p, "VIRTIO_F_RING_PACKED not offered: packed rings cannot be measured");
        return;
    }
    if (opt.indirect && !(p->negotiated & (1ull << VIRTIO_RING_F_INDIRECT_DESC))) {
        peer_fail(p, "VIRTIO_RING_F_INDIRECT_DESC not offered (try --indirect off)");
        return;
    }
    if ((ret = vuf_set_mem_table(&p->f)) != 0) {
        peer_fail(p, "SET_MEM_TABLE: %s", ret < 0 ? strerror(-ret) : "refused");
        return;
    }

    qc.in_order = p->in_order;
    qc.event_idx = !!(p->negotiated & (1ull << VIRTIO_RING_F_EVENT_IDX));
    heap = vdriver_layout_rings(&qc, VUF_RAM_GPA);
    if (opt.indirect) {
        qc.indirect = (heap + 63) & ~63ull;
        qc.indirect_max = INDIRECT_MAX;
        heap = qc.indirect + 16ull * INDIRECT_MAX * opt.queue_size;
    }
    heap = (heap + BLOCK_BYTES - 1) & ~(hwaddr)(BLOCK_BYTES - 1);
    p->q = vdriver_queue_new(&p->f.mem, &qc);
    if (!p->q) {
        peer_fail(p, "driver queue: %s", strerror(errno));
        return;
    }
    /* Data pages first (4 KiB aligned), then the header/status cache lines. */
    p->slots = calloc(MAX_QD, sizeof(*p->slots));
    if (!p->slots) {
        peer_fail(p, "out of memory");
        return;
    }
    for (unsigned i = 0; i < MAX_QD; i++) {
        Slot *s = &p->slots[i];
        s->data = heap + (hwaddr)i * BLOCK_BYTES;
        s->hdr = heap + (hwaddr)MAX_QD * BLOCK_BYTES + (hwaddr)i * 64;
        s->status = s->hdr + 16;
        memset(vuf_host(&p->f, s->data), 0x5a ^ (int)i, BLOCK_BYTES);
    }
    if (p->slots[MAX_QD - 1].status + 1 > VUF_RAM_GPA + RAM_BYTES) {
        peer_fail(p, "guest RAM too small for %u slots", MAX_QD);
        return;
    }
    p->ring = (VuFrontendRing) {
        .index = 0, .num = opt.queue_size, .desc = qc.desc, .driver = qc.driver, .device = qc.device,
        /* Packed: avail and used wrap counters both start at 1 (bit 15 of each half). */
        .base = opt.packed ? 0x80008000u : 0, .kick_fd = -1, .call_fd = -1,
    };
    if ((ret = vuf_ring_setup(&p->f, &p->ring)) != 0) {
        peer_fail(p, "ring set-up: %s", ret < 0 ? strerror(-ret) : "refused");
        return;
    }
    /* The driver polls the used ring: ask the device not to interrupt. */
    vdriver_disable_cb(p->q);
    p->rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uintptr_t)p;
}

static bool submit(Peer *p, Slot *s, bool write, uint64_t now)
{
    uint64_t nblocks = opt.image_bytes / BLOCK_BYTES;
    VirtIOBlkOutHdr *h = vuf_host(&p->f, s->hdr);
    VDriverSeg hdr = { s->hdr, 16 }, data = { s->data, BLOCK_BYTES }, status = { s->status, 1 };
    VDriverSeg out[2], in[2];
    int ret;

    h->type = htole32(write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN);
    h->ioprio = 0;
    h->sector = htole64((xorshift(&p->rng) % nblocks) * (BLOCK_BYTES / VIRTIO_BLK_SECTOR_SIZE));
    *(volatile uint8_t *)vuf_host(&p->f, s->status) = STATUS_POISON;
    out[0] = hdr;
    if (write) {
        out[1] = data;
        in[0] = status;
        ret = vdriver_add(p->q, out, 2, in, 1, s, opt.indirect);
    } else {
        in[0] = data;
        in[1] = status;
        ret = vdriver_add(p->q, out, 1, in, 2, s, opt.indirect);
    }
    s->submitted_ns = now;
    s->seq = p->next_seq++;
    return ret == 0;
}

static void kick_if_needed(Peer *p)
{
    if (vdriver_kick_prepare(p->q)) {
        vuf_kick(&p->ring);
    }
}

/* Reap until nothing is in flight (between points). */
static bool drain(Peer *p, RunResult *r)
{
    uint64_t deadline = now_ns() + STALL_NS;
    uint32_t len;

    while (vdriver_inflight(p->q) > 0) {
        Slot *s = vdriver_get_buf(p->q, &len, NULL);
        if (!s) {
            if (vdriver_error(p->q) || now_ns() > deadline) {
                snprintf(r->error, sizeof(r->error), "drain: %s",
                         vdriver_error(p->q) ? vdriver_error(p->q) : "requests never completed");
                return false;
            }
            cpu_relax();
        }
    }
    return true;
}

/*
 * One measurement: keep @qd requests in flight for warm-up + seconds,
 * count completions (and their latency) in the measured window.
 */
static void run_point(Peer *p, bool write, unsigned qd, RunResult *r)
{
    uint64_t t0, t_measure, t_end, t_last_done, done = 0, lat_sum = 0, lat_max = 0;
    double cpu0 = -1, cpu1 = -1;
    VDriverStats st0, st1;
    bool measuring = false;
    uint32_t len;

    memset(r, 0, sizeof(*r));
    memset(lat_hist, 0, sizeof(lat_hist));
    if (qd > opt.queue_size || (!opt.indirect && 3 * qd > opt.queue_size)) {
        snprintf(r->error, sizeof(r->error), "qd %u does not fit a ring of %u", qd, opt.queue_size);
        return;
    }
    t0 = now_ns();
    t_measure = t0 + (uint64_t)(opt.warmup * 1e9);
    t_end = t_measure + (uint64_t)(opt.seconds * 1e9);
    t_last_done = t0;
    p->expect_seq = p->next_seq;
    for (unsigned i = 0; i < qd; i++) {
        if (!submit(p, &p->slots[i], write, t0)) {
            snprintf(r->error, sizeof(r->error), "vdriver_add failed at slot %u", i);
            return;
        }
    }
    kick_if_needed(p);
    vdriver_get_stats(p->q, &st0);
    for (;;) {
        uint64_t now = now_ns();
        /* A starved daemon (shared CPUs) may complete nothing in a short window: wait for one. */
        bool stop = (now >= t_end && measuring && done > 0) || interrupted;
        unsigned reaped = 0;
        Slot *s;

        if (!measuring && now >= t_measure) {
            measuring = true;
            done = lat_sum = lat_max = 0;
            memset(lat_hist, 0, sizeof(lat_hist));
            vdriver_get_stats(p->q, &st0);
            cpu0 = proc_cpu_seconds(p->pid);
            t_measure = now;
        }
        if (stop) {
            t_end = now;
            break;
        }
        while ((s = vdriver_get_buf(p->q, &len, NULL))) {
            uint8_t status = *(volatile uint8_t *)vuf_host(&p->f, s->status);
            uint64_t lat = now - s->submitted_ns;

            if (status != VIRTIO_BLK_S_OK) {
                snprintf(r->error, sizeof(r->error), "request status %u (want 0: OK)", status);
                return;
            }
            if (p->in_order && s->seq != p->expect_seq) {
                snprintf(r->error, sizeof(r->error), "IN_ORDER: request %" PRIu64 " used before %" PRIu64,
                         s->seq, p->expect_seq);
                return;
            }
            p->expect_seq = s->seq + 1;
            done++;
            lat_sum += lat;
            lat_max = lat > lat_max ? lat : lat_max;
            lat_record(lat);
            if (!submit(p, s, write, now)) {
                snprintf(r->error, sizeof(r->error), "vdriver_add failed");
                return;
            }
            reaped++;
        }
        if (reaped) {
            kick_if_needed(p);
            t_last_done = now;
        } else {
            if (vdriver_error(p->q)) {
                snprintf(r->error, sizeof(r->error), "device: %s", vdriver_error(p->q));
                return;
            }
            if (opt.irq) {
                /* Like a driver's interrupt handler: re-enable, re-check, sleep on the call fd. */
                if (!vdriver_enable_cb(p->q)) {
                    struct pollfd pfd = { .fd = p->ring.call_fd, .events = POLLIN };
                    uint64_t cnt;
                    if (poll(&pfd, 1, 100) == 1 && read(p->ring.call_fd, &cnt, sizeof(cnt)) < 0) {
                        cnt = 0;
                    }
                }
                vdriver_disable_cb(p->q);
            }
            if (now - t_last_done > STALL_NS) {
                snprintf(r->error, sizeof(r->error), "no completion for %llu s (qd %u)",
                         STALL_NS / 1000000000ull, qd);
                return;
            }
            if (!opt.irq) {
                cpu_relax();
            }
        }
    }
    cpu1 = proc_cpu_seconds(p->pid);
    vdriver_get_stats(p->q, &st1);
    if (!drain(p, r)) {
        return;
    }
    if (!done) {
        snprintf(r->error, sizeof(r->error), interrupted ? "interrupted" : "nothing completed");
        return;
    }
    {
        double secs = (double)(t_end - t_measure) / 1e9;
        uint64_t reaped = st1.reaped - st0.reaped;

        r->iops = (double)done / secs;
        r->lat_us_avg = (double)lat_sum / (double)done / 1000.0;
        r->lat_us_max = (double)lat_max / 1000.0;
        r->lat_us_p50 = lat_quantile(done, 0.50, r->lat_us_max);
        r->lat_us_p99 = lat_quantile(done, 0.99, r->lat_us_max);
        r->kicks_per_req = reaped ? (double)(st1.kicks - st0.kicks) / (double)reaped : 0;
        r->used_entries_per_req = reaped ? (double)(st1.used_entries - st0.used_entries) / (double)reaped : 0;
        r->daemon_cpu = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) / secs : -1;
        r->daemon_us_per_io = cpu0 >= 0 && cpu1 >= 0 ? (cpu1 - cpu0) * 1e6 / (double)done : -1;
    }
    r->ok = true;
}

/* ---- output ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The repeat whose IOPS is the median (lower median for even counts), or NULL if any failed. */
static const RunResult *point_median(const Peer *p, unsigned rw, unsigned qi, double *min, double *max)
{
    double v[MAX_REPEAT];
    double med;

    for (unsigned i = 0; i < opt.repeat; i++) {
        if (!p->res[rw][qi][i].ok) {
            return NULL;
        }
        v[i] = p->res[rw][qi][i].iops;
    }
    qsort(v, opt.repeat, sizeof(v[0]), cmp_double);
    med = v[(opt.repeat - 1) / 2];
    *min = v[0];
    *max = v[opt.repeat - 1];
    for (unsigned i = 0; i < opt.repeat; i++) {
        if (p->res[rw][qi][i].iops == med) {
            return &p->res[rw][qi][i];
        }
    }
    return NULL;
}

static const char *rw_name(unsigned rw)
{
    return rw ? "randwrite" : "randread";
}

static const char *first_error(const Peer *p, unsigned rw, unsigned qi)
{
    for (unsigned i = 0; i < opt.repeat; i++) {
        if (!p->res[rw][qi][i].ok) {
            return p->res[rw][qi][i].error[0] ? p->res[rw][qi][i].error : "not run";
        }
    }
    return p->error[0] ? p->error : "not run";
}

static void emit_json(const char *line)
{
    puts(line);
    fflush(stdout);
    if (opt.json) {
        fprintf(opt.json, "%s\n", line);
        fflush(opt.json);
    }
}

static void print_json(void)
{
    char pin[64];

    if (cpu_driver >= 0) {
        snprintf(pin, sizeof(pin), "{\"driver\":%d,\"daemon\":%d}", cpu_driver, cpu_daemon);
    } else {
        snprintf(pin, sizeof(pin), "null");
    }
    for (unsigned i = 0; i < npeers; i++) {
        const Peer *p = &peers[i];
        for (unsigned rw = 0; rw < 2; rw++) {
            if (!(rw ? opt.rw_write : opt.rw_read)) {
                continue;
            }
            for (unsigned qi = 0; qi < opt.nqd; qi++) {
                char line[2048], runs[512] = "";
                double mn = 0, mx = 0;
                const RunResult *m = p->failed ? NULL : point_median(p, rw, qi, &mn, &mx);
                size_t off = 0;

                for (unsigned k = 0; m && k < opt.repeat; k++) {
                    off += (size_t)snprintf(runs + off, sizeof(runs) - off, "%s%.0f", k ? "," : "",
                                            p->res[rw][qi][k].iops);
                }
                snprintf(line, sizeof(line),
                         "{\"bench\":\"blk\",\"backend\":\"%s\",\"engine\":\"%s\",\"name\":\"%s\","
                         "\"in_order\":%s,\"in_order_asked\":%s,\"ring\":\"%s\",\"event_idx\":%s,"
                         "\"indirect\":%s,\"write_cache\":\"%s\",\"queue_size\":%u,\"rw\":\"%s\",\"bs\":%u,\"qd\":%u,"
                         "\"seconds\":%.2f,\"warmup\":%.2f,\"repeat\":%u,\"pin\":%s,\"wait\":\"%s\",\"nice\":%d,"
                         "\"offered_features\":\"0x%" PRIx64 "\",\"negotiated_features\":\"0x%" PRIx64 "\","
                         "\"ok\":%s",
                         p->qsd ? "qsd" : "vdm", p->engine, p->name, p->in_order ? "true" : "false",
                         p->in_order_offer ? "true" : "false", opt.packed ? "packed" : "split",
                         p->negotiated & (1ull << VIRTIO_RING_F_EVENT_IDX) ? "true" : "false",
                         opt.indirect ? "true" : "false", p->writeback ? "writeback" : "writethrough",
                         opt.queue_size, rw_name(rw), BLOCK_BYTES,
                         opt.qds[qi], opt.seconds, opt.warmup, opt.repeat, pin, opt.irq ? "irq" : "poll", opt.nice, p->offered, p->negotiated,
                         m ? "true" : "false");
                off = strlen(line);
                if (m) {
                    snprintf(line + off, sizeof(line) - off,
                             ",\"iops\":%.0f,\"iops_min\":%.0f,\"iops_max\":%.0f,\"iops_runs\":[%s],"
                             "\"lat_us_avg\":%.2f,\"lat_us_p50\":%.1f,\"lat_us_p99\":%.1f,"
                             "\"lat_us_max\":%.1f,\"kicks_per_req\":%.4f,\"used_entries_per_req\":%.4f,"
                             "\"daemon_cpu\":%.3f,\"daemon_us_per_io\":%.2f}",
                             m->iops, mn, mx, runs, m->lat_us_avg, m->lat_us_p50, m->lat_us_p99,
                             m->lat_us_max, m->kicks_per_req, m->used_entries_per_req, m->daemon_cpu,
                             m->daemon_us_per_io);
                } else {
                    snprintf(line + off, sizeof(line) - off, ",\"error\":\"%s\"}", first_error(p, rw, qi));
                }
                emit_json(line);
            }
        }
    }
}

static const Peer *find_peer(bool qsd, const char *engine, bool in_order_offer)
{
    for (unsigned i = 0; i < npeers; i++) {
        if (peers[i].qsd == qsd && !strcmp(peers[i].engine, engine) &&
            (qsd || peers[i].in_order_offer == in_order_offer)) {
            return &peers[i];
        }
    }
    return NULL;
}

static double median_iops(const Peer *p, unsigned rw, unsigned qi)
{
    double mn, mx;
    const RunResult *m = p && !p->failed ? point_median(p, rw, qi, &mn, &mx) : NULL;

    return m ? m->iops : 0;
}

static void print_ratio(double a, double b)
{
    if (a > 0 && b > 0) {
        fprintf(stderr, " %11.2f", a / b);
    } else {
        fprintf(stderr, " %11s", "-");
    }
}

static void print_tables(void)
{
    static const char *const engines[] = { "io_uring", "threads" };

    fprintf(stderr, "\nIOPS (k), 4 KiB, median of %u x %.1f s (spread = (max-min)/median)\n", opt.repeat,
            opt.seconds);
    fprintf(stderr, "%-9s %4s", "rw", "qd");
    for (unsigned i = 0; i < npeers; i++) {
        fprintf(stderr, " %22s", peers[i].name);
    }
    fputc('\n', stderr);
    for (unsigned rw = 0; rw < 2; rw++) {
        if (!(rw ? opt.rw_write : opt.rw_read)) {
            continue;
        }
        for (unsigned qi = 0; qi < opt.nqd; qi++) {
            fprintf(stderr, "%-9s %4u", rw_name(rw), opt.qds[qi]);
            for (unsigned i = 0; i < npeers; i++) {
                double mn, mx;
                const RunResult *m = peers[i].failed ? NULL : point_median(&peers[i], rw, qi, &mn, &mx);
                if (m) {
                    fprintf(stderr, "  %8.1f (%4.1f%%) %4.0fus", m->iops / 1e3,
                            100.0 * (mx - mn) / m->iops, m->lat_us_avg);
                } else {
                    fprintf(stderr, " %22s", "FAILED");
                }
            }
            fputc('\n', stderr);
        }
    }

    /* CPU cost per I/O: what the daemon spent, whatever share of its CPU it was given. */
    fprintf(stderr, "\ndaemon CPU per I/O (us, all its threads; of the median-IOPS repeat), and its share of a CPU\n");
    fprintf(stderr, "%-9s %4s", "rw", "qd");
    for (unsigned i = 0; i < npeers; i++) {
        fprintf(stderr, " %22s", peers[i].name);
    }
    fputc('\n', stderr);
    for (unsigned rw = 0; rw < 2; rw++) {
        if (!(rw ? opt.rw_write : opt.rw_read)) {
            continue;
        }
        for (unsigned qi = 0; qi < opt.nqd; qi++) {
            fprintf(stderr, "%-9s %4u", rw_name(rw), opt.qds[qi]);
            for (unsigned i = 0; i < npeers; i++) {
                double mn, mx;
                const RunResult *m = peers[i].failed ? NULL : point_median(&peers[i], rw, qi, &mn, &mx);
                if (m) {
                    fprintf(stderr, "  %9.2f us (%4.0f%% cpu)", m->daemon_us_per_io, m->daemon_cpu * 100);
                } else {
                    fprintf(stderr, " %22s", "FAILED");
                }
            }
            fputc('\n', stderr);
        }
    }
    fputc('\n', stderr);
    for (unsigned i = 0; i < npeers; i++) {
        for (unsigned j = 0; j < npeers; j++) {
            if (!peers[i].qsd && peers[j].qsd && !peers[i].failed && !peers[j].failed &&
                peers[i].writeback != peers[j].writeback && i < npeers && j < npeers) {
                fprintf(stderr, "NOTE: write cache differs (%s vs %s; /wt = writethrough, every write "
                        "synced): randwrite ratios compare unlike modes (see --qsd-writethrough)\n",
                        peers[i].name, peers[j].name);
                i = j = npeers;
            }
        }
    }
    /* Ratios: vdm (in-order offered) / qsd with the same engine; vdm in_order on / off. */
    fprintf(stderr, "\nratios (median IOPS)\n%-9s %4s", "rw", "qd");
    for (unsigned e = 0; e < 2; e++) {
        if (find_peer(false, engines[e], true) && find_peer(true, engines[e], true)) {
            fprintf(stderr, " %11s", e ? "vdm/qsd thr" : "vdm/qsd urg");
        }
    }
    for (unsigned e = 0; e < 2; e++) {
        if (find_peer(false, engines[e], true) && find_peer(false, engines[e], false)) {
            fprintf(stderr, " %11s", e ? "io on/off thr" : "io on/off urg");
        }
    }
    fputc('\n', stderr);
    for (unsigned rw = 0; rw < 2; rw++) {
        if (!(rw ? opt.rw_write : opt.rw_read)) {
            continue;
        }
        for (unsigned qi = 0; qi < opt.nqd; qi++) {
            fprintf(stderr, "%-9s %4u", rw_name(rw), opt.qds[qi]);
            for (unsigned e = 0; e < 2; e++) {
                const Peer *v = find_peer(false, engines[e], true), *q = find_peer(true, engines[e], true);
                if (v && q) {
                    print_ratio(median_iops(v, rw, qi), median_iops(q, rw, qi));
                }
            }
            for (unsigned e = 0; e < 2; e++) {
                const Peer *on = find_peer(false, engines[e], true), *off = find_peer(false, engines[e], false);
                if (on && off) {
                    print_ratio(median_iops(on, rw, qi), median_iops(off, rw, qi));
                }
            }
            fputc('\n', stderr);
        }
    }
}

static void describe_features(const Peer *p)
{
    fprintf(stderr, "%s: offered 0x%" PRIx64 " (IN_ORDER %s, RING_PACKED %s, EVENT_IDX %s, INDIRECT %s), "
            "protocol 0x%" PRIx64 "; negotiated 0x%" PRIx64 " (IN_ORDER %s, EVENT_IDX %s, FLUSH %s); "
            "write cache %s\n",
            p->name, p->offered, p->offered & (1ull << VIRTIO_F_IN_ORDER) ? "yes" : "no",
            p->offered & (1ull << VIRTIO_F_RING_PACKED) ? "yes" : "no",
            p->offered & (1ull << VIRTIO_RING_F_EVENT_IDX) ? "yes" : "no",
            p->offered & (1ull << VIRTIO_RING_F_INDIRECT_DESC) ? "yes" : "no",
            p->protocol_offered, p->negotiated, p->in_order ? "yes" : "no",
            p->negotiated & (1ull << VIRTIO_RING_F_EVENT_IDX) ? "yes" : "no",
            p->negotiated & (1ull << VIRTIO_BLK_F_FLUSH) ? "yes" : "no",
            p->writeback ? "writeback" : "writethrough (every write synced)");
}

/* ---- set-up, clean-up, options ---- */

static void cleanup(void)
{
    for (unsigned i = 0; i < npeers; i++) {
        Peer *p = &peers[i];
        peer_stop(p);
        if (p->sock) {
            unlink(p->sock);
        }
        if (p->image) {
            unlink(p->image);
        }
        if (p->log) {
            if (getenv("VDM_BENCH_KEEP_LOGS")) {
                fprintf(stderr, "log kept: %s\n", p->log);
            } else {
                unlink(p->log);
            }
        }
        free(p->slots);
        free(p->sock);
        free(p->image);
        free(p->log);
        p->slots = NULL;
        p->sock = p->image = p->log = NULL;
    }
    if (work_dir && !getenv("VDM_BENCH_KEEP_LOGS")) {
        rmdir(work_dir);
    }
    free(work_dir);
    work_dir = NULL;
}

static void on_signal(int sig)
{
    interrupted = 1;
}

static char *find_in_path(const char *name)
{
    const char *path = getenv("PATH");
    char *copy, *dir, *save = NULL, *found = NULL;

    if (strchr(name, '/')) {
        return access(name, X_OK) == 0 ? strdup(name) : NULL;
    }
    copy = strdup(path ? path : "/usr/bin:/bin");
    for (dir = strtok_r(copy, ":", &save); dir && !found; dir = strtok_r(NULL, ":", &save)) {
        char *cand = xasprintf("%s/%s", dir, name);
        if (access(cand, X_OK) == 0) {
            found = cand;
        } else {
            free(cand);
        }
    }
    free(copy);
    return found;
}

/* The daemon next to this binary in the build tree: bench/../contrib/vhost-user-blk/. */
static char *default_vdm_daemon(void)
{
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    char *slash;

#ifdef VDM_BLK_DAEMON
    if (access(VDM_BLK_DAEMON, X_OK) == 0) {
        return strdup(VDM_BLK_DAEMON);
    }
#endif
    if (n <= 0) {
        return NULL;
    }
    exe[n] = 0;
    slash = strrchr(exe, '/');
    if (!slash) {
        return NULL;
    }
    *slash = 0;
    return xasprintf("%s/../contrib/vhost-user-blk/vdm-vhost-user-blk", exe);
}

static bool parse_list(const char *arg, const char *const *names, bool **outs, unsigned n)
{
    char *copy = strdup(arg), *tok, *save = NULL;
    bool ok = true;

    for (unsigned i = 0; i < n; i++) {
        *outs[i] = false;
    }
    for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned i;
        for (i = 0; i < n && strcmp(tok, names[i]); i++) {
        }
        if (i == n) {
            fprintf(stderr, "vdm-bench-blk: unknown value '%s'\n", tok);
            ok = false;
        } else {
            *outs[i] = true;
        }
    }
    free(copy);
    return ok;
}

static bool parse_on_off(const char *arg, bool *out)
{
    if (!strcmp(arg, "on")) {
        *out = true;
    } else if (!strcmp(arg, "off")) {
        *out = false;
    } else {
        fprintf(stderr, "vdm-bench-blk: expected on or off, not '%s'\n", arg);
        return false;
    }
    return true;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vdm-bench-blk [options]\n"
            "  4 KiB random read/write IOPS through vhost-user-blk: vdm-vhost-user-blk vs\n"
            "  qemu-storage-daemon, same driver (vdm's test frontend + vdriver, busy-polling).\n"
            "  --backends vdm,qsd       peers to run (default both; qsd skipped if not installed)\n"
            "  --engines io_uring,threads  vdm --backend / qsd aio= (default both)\n"
            "  --in-order on,off        vdm --in-order modes; the driver asks for IN_ORDER when on\n"
            "                           (qsd: asked once, negotiated only if offered) (default both)\n"
            "  --rw randread,randwrite  (default both)\n"
            "  --qd 1,32,128            queue depths (default 1,32,128; at most %u)\n"
            "  --seconds S  --warmup S  per point (default 3 and 0.5)\n"
            "  --repeat N               median of N (default 3, at most %u)\n"
            "  --ring split|packed      (default split; packed needs the peer to offer it)\n"
            "  --event-idx on|off       negotiate EVENT_IDX when offered (default on)\n"
            "  --indirect on|off        one indirect table per request (default on, as Linux)\n"
            "  --queue-size N           ring size (default 256)\n"
            "  --image-mib N            image size per daemon (default 256, preallocated)\n"
            "  --dir DIR                images and sockets (default /dev/shm, else $TMPDIR or /tmp)\n"
            "  --vdm-daemon PATH  --qsd PATH   daemon binaries\n"
            "  --no-pin                 don't pin the driver and the daemons to CPUs\n"
            "  --wait poll|irq          driver busy-polls the used ring (default) or sleeps on the\n"
            "                           call eventfd with interrupts enabled\n"
            "  --nice N                 run the driver and the daemons at this nice value (default 0)\n"
            "  --qsd-writethrough on|off  qsd export writethrough=on (default off); vdm is\n"
            "                           writethrough when it does not offer FLUSH\n"
            "  --json FILE              also write the JSON lines to FILE\n"
            "  VDM_BENCH_KEEP_LOGS=1 keeps the daemons' logs.\n",
            MAX_QD, MAX_REPEAT);
}

static bool parse_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "backends", required_argument, NULL, 'b' },
        { "engines", required_argument, NULL, 'e' },
        { "in-order", required_argument, NULL, 'i' },
        { "rw", required_argument, NULL, 'w' },
        { "qd", required_argument, NULL, 'd' },
        { "seconds", required_argument, NULL, 's' },
        { "warmup", required_argument, NULL, 'W' },
        { "repeat", required_argument, NULL, 'R' },
        { "ring", required_argument, NULL, 'r' },
        { "event-idx", required_argument, NULL, 'E' },
        { "indirect", required_argument, NULL, 'I' },
        { "queue-size", required_argument, NULL, 'q' },
        { "image-mib", required_argument, NULL, 'm' },
        { "dir", required_argument, NULL, 'D' },
        { "vdm-daemon", required_argument, NULL, 'v' },
        { "qsd", required_argument, NULL, 'Q' },
        { "no-pin", no_argument, NULL, 'P' },
        { "wait", required_argument, NULL, 'A' },
        { "nice", required_argument, NULL, 'N' },
        { "qsd-writethrough", required_argument, NULL, 'T' },
        { "json", required_argument, NULL, 'j' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char *const backends[] = { "vdm", "qsd" }, *const engines[] = { "io_uring", "threads" };
    static const char *const modes[] = { "on", "off" }, *const rws[] = { "randread", "randwrite" };
    bool *b_out[] = { &opt.want_vdm, &opt.want_qsd }, *e_out[] = { &opt.engine_uring, &opt.engine_threads };
    bool *m_out[] = { &opt.io_on, &opt.io_off }, *w_out[] = { &opt.rw_read, &opt.rw_write };
    int c;

    opt = (Options) {
        .seconds = 3, .warmup = 0.5, .repeat = 3, .qds = { 1, 32, 128 }, .nqd = 3,
        .rw_read = true, .rw_write = true, .want_vdm = true, .want_qsd = true,
        .engine_uring = true, .engine_threads = true, .io_on = true, .io_off = true,
        .event_idx = true, .indirect = true, .pin = true, .queue_size = 256,
        .image_bytes = 256ull << 20, .qsd = "qemu-storage-daemon",
    };
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'b': if (!parse_list(optarg, backends, b_out, 2)) return false; break;
        case 'e': if (!parse_list(optarg, engines, e_out, 2)) return false; break;
        case 'i': if (!parse_list(optarg, modes, m_out, 2)) return false; break;
        case 'w': if (!parse_list(optarg, rws, w_out, 2)) return false; break;
        case 'd': {
            char *copy = strdup(optarg), *tok, *save = NULL;
            opt.nqd = 0;
            for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                unsigned long v = strtoul(tok, NULL, 0);
                if (v < 1 || v > MAX_QD || opt.nqd == MAX_QDS) {
                    fprintf(stderr, "vdm-bench-blk: bad --qd '%s'\n", tok);
                    free(copy);
                    return false;
                }
                opt.qds[opt.nqd++] = (unsigned)v;
            }
            free(copy);
            break;
        }
        case 's': opt.seconds = strtod(optarg, NULL); break;
        case 'W': opt.warmup = strtod(optarg, NULL); break;
        case 'R': opt.repeat = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'r':
            if (strcmp(optarg, "split") && strcmp(optarg, "packed")) {
                fprintf(stderr, "vdm-bench-blk: --ring split|packed\n");
                return false;
            }
            opt.packed = !strcmp(optarg, "packed");
            break;
        case 'E': if (!parse_on_off(optarg, &opt.event_idx)) return false; break;
        case 'I': if (!parse_on_off(optarg, &opt.indirect)) return false; break;
        case 'q': opt.queue_size = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'm': opt.image_bytes = strtoull(optarg, NULL, 0) << 20; break;
        case 'D': opt.dir = optarg; break;
        case 'v': opt.vdm_daemon = optarg; break;
        case 'Q': opt.qsd = optarg; break;
        case 'P': opt.pin = false; break;
        case 'A':
            if (strcmp(optarg, "poll") && strcmp(optarg, "irq")) {
                fprintf(stderr, "vdm-bench-blk: --wait poll|irq\n");
                return false;
            }
            opt.irq = !strcmp(optarg, "irq");
            break;
        case 'N': opt.nice = atoi(optarg); break;
        case 'T': if (!parse_on_off(optarg, &opt.qsd_writethrough)) return false; break;
        case 'j':
            opt.json = fopen(optarg, "w");
            if (!opt.json) {
                perror(optarg);
                return false;
            }
            break;
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return false;
        }
    }
    if (optind < argc || opt.seconds <= 0 || opt.warmup < 0 || opt.repeat < 1 || opt.repeat > MAX_REPEAT ||
        opt.image_bytes < 1024 * 1024 || opt.queue_size < 1 || opt.queue_size > VIRTQUEUE_MAX_SIZE ||
        (!opt.packed && (opt.queue_size & (opt.queue_size - 1)))) {
        usage(stderr);
        return false;
    }
    return true;
}

static void add_peer(bool qsd, const char *engine, bool in_order_offer)
{
    Peer *p = &peers[npeers++];

    memset(p, 0, sizeof(*p));
    p->qsd = qsd;
    p->engine = engine;
    p->in_order_offer = in_order_offer;
    p->f.conn.fd = -1;
    p->f.mem_fd = -1;
    p->ring.kick_fd = p->ring.call_fd = -1;
    if (qsd) {
        snprintf(p->name, sizeof(p->name), "qsd/%s", engine);
    } else {
        snprintf(p->name, sizeof(p->name), "vdm/%s/io=%s", engine, in_order_offer ? "on" : "off");
    }
    p->sock = xasprintf("%s/%u.sock", work_dir, npeers - 1);
    p->image = xasprintf("%s/%u.img", work_dir, npeers - 1);
    p->log = xasprintf("%s/%u.log", work_dir, npeers - 1);
}

static const char *pick_dir(void)
{
    const char *tmp = getenv("TMPDIR");

    if (opt.dir) {
        return opt.dir;
    }
    if (access("/dev/shm", W_OK) == 0) {
        return "/dev/shm";
    }
    return tmp && *tmp ? tmp : "/tmp";
}

int main(int argc, char **argv)
{
    static const char *const engines[] = { "io_uring", "threads" };
    char *vdm_path = NULL, *qsd_path = NULL, *tmpl;
    struct sigaction sa;
    unsigned failures = 0, points = 0;
    bool qsd_skipped = false;
    uint64_t t_start = now_ns();

    setvbuf(stderr, NULL, _IOLBF, 0);
    if (!parse_args(argc, argv)) {
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (opt.want_vdm) {
        vdm_path = opt.vdm_daemon ? strdup(opt.vdm_daemon) : default_vdm_daemon();
        if (!vdm_path || access(vdm_path, X_OK) != 0) {
            fprintf(stderr, "vdm-bench-blk: vdm-vhost-user-blk not found (%s): give --vdm-daemon PATH\n",
                    vdm_path ? vdm_path : "?");
            free(vdm_path);
            return 2;
        }
        opt.vdm_daemon = vdm_path;
    }
    if (opt.want_qsd) {
        qsd_path = find_in_path(opt.qsd);
        if (!qsd_path) {
            fprintf(stderr, "vdm-bench-blk: SKIPPING qsd: %s not found (Debian package "
                    "qemu-system-common: apt-get install -y qemu-system-common)\n", opt.qsd);
            opt.want_qsd = false;
            qsd_skipped = true;
        } else {
            opt.qsd = qsd_path;
        }
    }

    tmpl = xasprintf("%s/vdm-bench-blk-XXXXXX", pick_dir());
    if (!mkdtemp(tmpl)) {
        fprintf(stderr, "vdm-bench-blk: mkdtemp %s: %s\n", tmpl, strerror(errno));
        free(tmpl);
        return 2;
    }
    work_dir = tmpl;
    atexit(cleanup);
    choose_cpus();

    for (unsigned e = 0; e < 2; e++) {
        if (!(e ? opt.engine_threads : opt.engine_uring)) {
            continue;
        }
        if (opt.want_vdm) {
            if (opt.io_on) {
                add_peer(false, engines[e], true);
            }
            if (opt.io_off) {
                add_peer(false, engines[e], false);
            }
        }
    }
    for (unsigned e = 0; e < 2; e++) {
        if (opt.want_qsd && (e ? opt.engine_threads : opt.engine_uring)) {
            add_peer(true, engines[e], true);
        }
    }
    if (!npeers) {
        fprintf(stderr, "vdm-bench-blk: nothing to run\n");
        return 2;
    }

    fprintf(stderr, "vdm-bench-blk: %s ring, queue size %u, %s, EVENT_IDX %s, driver %s, "
            "%u MiB image per daemon in %s\n",
            opt.packed ? "packed" : "split", opt.queue_size, opt.indirect ? "indirect" : "direct chains",
            opt.event_idx ? "when offered" : "off",
            opt.irq ? "sleeps on the call eventfd" : "busy-polls the used ring (interrupts disabled)",
            (unsigned)(opt.image_bytes >> 20), work_dir);
    if (opt.nice && setpriority(PRIO_PROCESS, 0, opt.nice) < 0) {
        fprintf(stderr, "vdm-bench-blk: setpriority(%d): %s\n", opt.nice, strerror(errno));
    }
    if (cpu_driver >= 0) {
        fprintf(stderr, "vdm-bench-blk: driver pinned to CPU %d, daemons (all their threads) to CPU %d\n",
                cpu_driver, cpu_daemon);
    } else {
        fprintf(stderr, "vdm-bench-blk: not pinned (%s)\n", opt.pin ? "fewer than 2 CPUs" : "--no-pin");
    }
    pin_self(cpu_driver);

    /* Images, daemons, connections: everything up before the first measurement. */
    for (unsigned i = 0; i < npeers; i++) {
        Peer *p = &peers[i];
        char err[256];

        if (!make_image(p->image, opt.image_bytes, err, sizeof(err))) {
            peer_fail(p, "%s", err);
            continue;
        }
        peer_start(p);
    }
    for (unsigned i = 0; i < npeers && !interrupted; i++) {
        Peer *p = &peers[i];

        if (!p->failed && peer_wait_socket(p)) {
            peer_connect(p);
        }
        if (!p->failed) {
            describe_features(p);
        }
    }

    /* Interleaved: every repeat runs every point of every peer, so drift hits all alike. */
    for (unsigned rep = 0; rep < opt.repeat && !interrupted; rep++) {
        for (unsigned rw = 0; rw < 2 && !interrupted; rw++) {
            if (!(rw ? opt.rw_write : opt.rw_read)) {
                continue;
            }
            for (unsigned qi = 0; qi < opt.nqd && !interrupted; qi++) {
                for (unsigned i = 0; i < npeers && !interrupted; i++) {
                    Peer *p = &peers[i];
                    RunResult *r = &p->res[rw][qi][rep];

                    if (p->failed) {
                        continue;
                    }
                    run_point(p, rw == 1, opt.qds[qi], r);
                    if (r->ok) {
                        fprintf(stderr, "  [%u/%u] %-20s %-9s qd %-3u %9.0f IOPS  lat avg %7.1f max %8.1f us"
                                "  daemon cpu %3.0f%% %5.2f us/io\n",
                                rep + 1, opt.repeat, p->name, rw_name(rw), opt.qds[qi], r->iops,
                                r->lat_us_avg, r->lat_us_max, r->daemon_cpu * 100, r->daemon_us_per_io);
                    } else if (!interrupted) {
                        char tail[220];
                        log_tail(p->log, tail, sizeof(tail));
                        peer_fail(p, "%s %s qd %u: %s (daemon log: %s)", p->name, rw_name(rw), opt.qds[qi],
                                  r->error, tail);
                    }
                }
            }
        }
    }

    print_json();
    for (unsigned i = 0; i < npeers; i++) {
        for (unsigned rw = 0; rw < 2; rw++) {
            if (!(rw ? opt.rw_write : opt.rw_read)) {
                continue;
            }
            for (unsigned qi = 0; qi < opt.nqd; qi++) {
                double mn, mx;
                points++;
                failures += peers[i].failed || !point_median(&peers[i], rw, qi, &mn, &mx);
            }
        }
    }
    for (unsigned i = 0; i < npeers; i++) {
        if (!peers[i].failed) {
            describe_features(&peers[i]);
        }
    }
    print_tables();
    if (qsd_skipped) {
        fprintf(stderr, "qsd NOT measured: %s not found (apt-get install -y qemu-system-common)\n", opt.qsd);
    }
    fprintf(stderr, "%u/%u points ok, %.0f s%s\n", points - failures, points, (now_ns() - t_start) / 1e9,
            interrupted ? ", INTERRUPTED" : "");
    if (opt.json) {
        fclose(opt.json);
    }
    cleanup();
    free(vdm_path);
    free(qsd_path);
    return failures || interrupted ? 1 : 0;
}
