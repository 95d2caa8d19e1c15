/*
 * vdm-bench-ring: the virtio core's ring throughput, driver and device on two
 * threads over shared memory.
 *
 * The driver thread (tests/libvdriver) keeps the queue full and reaps used
 * buffers; the device thread (hw/virtio/virtio.c) pops, completes buffers in
 * order or at random within a window, and publishes. Notifications are
 * counted, not delivered (both sides poll), so kicks/req and irqs/req show
 * what event idx and suppression would save; time shows the ring itself.
 *
 * Output: one JSON object per configuration (stdout and --json FILE) and a
 * table on stderr. It is a benchmark, not a test: nothing is asserted about
 * speed, only correctness (every request completes once, in order under
 * IN_ORDER).
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hw/virtio/virtio.h"
#include "vdriver.h"

#define RAM_GPA 0x100000ull
#define SEG_LEN 64u
#define MAX_CHAIN 4u
#define BURST 32u                   /* buffers the driver adds between publications */

typedef struct BenchConfig {
    bool packed;
    bool in_order;
    bool batch;
    bool event_idx;
    unsigned window;            /* device completes among its oldest @window buffers */
    unsigned chain;             /* descriptors per buffer */
    unsigned num;
    bool one_thread;            /* driver and device interleaved on one CPU */
    uint64_t requests;
} BenchConfig;

typedef struct BenchResult {
    double seconds;
    uint64_t used_entries;
    uint64_t kicks;
    uint64_t irqs;
    bool ok;
    char error[300];
} BenchResult;

typedef struct Bench {
    BenchConfig cfg;
    uint8_t *ram;
    uint64_t ram_size;
    GuestMemory mem;
    VirtIODevice vdev;
    VirtQueue *vq;
    VDriverQueue *drv;
    hwaddr data;
    atomic_bool stop;
    atomic_uint_fast64_t irqs;
    uint64_t device_errors;
} Bench;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void pin_to_cpu(int cpu)
{
    cpu_set_t set;

    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    /* Best effort: on a one-CPU machine both threads share it. */
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void count_irq(VirtIODevice *vdev, VirtQueue *vq)
{
    Bench *b = vdev->transport_opaque;

    atomic_fetch_add_explicit(&b->irqs, 1, memory_order_relaxed);
}

static void ignore_config(VirtIODevice *vdev)
{
}

static const VirtIOTransportOps bench_transport = {
    .notify_queue = count_irq,
    .notify_config = ignore_config,
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;

    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

typedef struct HeldElem {
    VirtQueueElement elem;
    struct iovec sg[MAX_CHAIN];
} HeldElem;

/* Device-side state of one run. */
typedef struct DeviceState {
    HeldElem *pool;
    HeldElem **fifo;            /* held elements in pop order (circular) */
    HeldElem **free_list;
    unsigned head, nheld, nfree;
    uint64_t rng;
} DeviceState;

static void device_state_init(DeviceState *d, unsigned num)
{
    d->pool = calloc(num, sizeof(*d->pool));
    d->fifo = calloc(num, sizeof(*d->fifo));
    d->free_list = calloc(num, sizeof(*d->free_list));
    for (unsigned i = 0; i < num; i++) {
        d->free_list[i] = &d->pool[i];
    }
    d->head = d->nheld = 0;
    d->nfree = num;
    d->rng = 0x9e3779b97f4a7c15ull;
}

static void device_state_free(DeviceState *d)
{
    free(d->pool);
    free(d->fifo);
    free(d->free_list);
}

static inline unsigned ring_pos(unsigned pos, unsigned num)
{
    return pos >= num ? pos - num : pos;
}

/*
 * One device round: pop everything available, then complete all it holds,
 * each time picking at random among the oldest @window (window 1: in order),
 * and publish the round with one flush. Returns buffers completed.
 */
static unsigned device_round(Bench *b, DeviceState *d)
{
    unsigned num = b->cfg.num, window = b->cfg.window, done = 0;

    while (d->nfree > 0) {
        HeldElem *h = d->free_list[d->nfree - 1];
        int r = virtqueue_pop_elem(b->vq, &h->elem, h->sg, MAX_CHAIN);

        if (r != 1) {
            b->device_errors += r < 0;
            break;
        }
        d->nfree--;
        d->fifo[ring_pos(d->head + d->nheld++, num)] = h;
    }
    while (d->nheld > 0) {
        /* Swap a random one of the oldest @window to the front: displaced by < window. */
        unsigned span = d->nheld < window ? d->nheld : window;
        unsigned k = window == 1 ? 0 : (unsigned)(xorshift(&d->rng) % span);
        HeldElem *h = d->fifo[ring_pos(d->head + k, num)];

        d->fifo[ring_pos(d->head + k, num)] = d->fifo[d->head];
        d->head = ring_pos(d->head + 1, num);
        d->nheld--;
        virtqueue_fill(b->vq, &h->elem, h->elem.in_len, done++);
        d->free_list[d->nfree++] = h;
    }
    if (done) {
        virtqueue_flush(b->vq, done);
        virtio_notify(&b->vdev, b->vq);
    }
    return done;
}

static void *device_thread(void *opaque)
{
    Bench *b = opaque;
    DeviceState d;

    pin_to_cpu(1);
    device_state_init(&d, b->cfg.num);
    virtio_queue_set_notification(b->vq, 0);
    while (!atomic_load_explicit(&b->stop, memory_order_relaxed)) {
        if (!device_round(b, &d)) {
            /* Idle: ask for kicks, then look again before waiting (spec 2.7.10 pattern). */
            virtio_queue_set_notification(b->vq, 1);
            if (virtio_queue_empty(b->vq)) {
                cpu_relax();
            }
            virtio_queue_set_notification(b->vq, 0);
        }
    }
    device_state_free(&d);
    return NULL;
}

static int bench_setup(Bench *b, const BenchConfig *cfg)
{
    VDriverQueueConfig dq = { .num = cfg->num, .packed = cfg->packed, .in_order = cfg->in_order,
                              .event_idx = cfg->event_idx };
    uint64_t features = (1ULL << VIRTIO_F_VERSION_1);
    hwaddr end;

    memset(b, 0, sizeof(*b));
    b->cfg = *cfg;
    end = vdriver_layout_rings(&dq, RAM_GPA);
    b->data = (end + 4095) & ~4095ull;
    b->ram_size = b->data - RAM_GPA + (uint64_t)cfg->num * MAX_CHAIN * SEG_LEN;
    b->ram = aligned_alloc(4096, (b->ram_size + 4095) & ~4095ull);
    if (!b->ram) {
        return -ENOMEM;
    }
    memset(b->ram, 0, b->ram_size);
    guest_memory_init(&b->mem);
    if (guest_memory_add(&b->mem, RAM_GPA, b->ram_size, b->ram, true) < 0 ||
        virtio_init(&b->vdev, "bench", 1, 0, &b->mem, 1, cfg->num) < 0) {
        return -EINVAL;
    }
    b->vdev.transport = &bench_transport;
    b->vdev.transport_opaque = b;
    b->vq = virtio_get_queue(&b->vdev, 0);
    if (cfg->packed) {
        features |= 1ULL << VIRTIO_F_RING_PACKED;
    }
    if (cfg->in_order) {
        features |= 1ULL << VIRTIO_F_IN_ORDER;
    }
    if (cfg->event_idx) {
        features |= 1ULL << VIRTIO_RING_F_EVENT_IDX;
    }
    if (virtio_set_features(&b->vdev, features) < 0 ||
        virtio_set_status(&b->vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                          VIRTIO_CONFIG_S_FEATURES_OK) < 0 ||
        virtio_queue_set_num(&b->vdev, 0, cfg->num) < 0 ||
        virtio_queue_set_rings(&b->vdev, 0, dq.desc, dq.driver, dq.device) < 0 ||
        virtio_queue_set_enabled(&b->vdev, 0, true) < 0) {
        return -EINVAL;
    }
    b->drv = vdriver_queue_new(&b->mem, &dq);
    if (!b->drv) {
        return -errno;
    }
    virtio_set_status(&b->vdev, b->vdev.status | VIRTIO_CONFIG_S_DRIVER_OK);
    if (!virtio_queue_is_running(&b->vdev, 0)) {
        return -EINVAL;
    }
    virtio_queue_set_batch(b->vq, cfg->batch);
    return 0;
}

static void bench_teardown(Bench *b)
{
    vdriver_queue_free(b->drv);
    virtio_cleanup(&b->vdev);
    free(b->ram);
}

static void run_one(const BenchConfig *cfg, BenchResult *res)
{
    VDriverSeg segs[MAX_CHAIN];
    uint64_t added = 0, done = 0, expect = 0, t0;
    VDriverStats ds;
    VirtQueueStats st;
    DeviceState d;
    pthread_t dev;
    Bench b;

    memset(res, 0, sizeof(*res));
    if (bench_setup(&b, cfg) < 0) {
        snprintf(res->error, sizeof(res->error), "set-up failed");
        return;
    }
    pin_to_cpu(0);
    if (cfg->one_thread) {
        device_state_init(&d, cfg->num);
    } else {
        pthread_create(&dev, NULL, device_thread, &b);
    }
    t0 = now_ns();
    while (done < cfg->requests) {
        bool progress = false;
        uint32_t len;
        void *tok;

        while (added < cfg->requests && vdriver_free_slots(b.drv) >= cfg->chain) {
            /* One readable header segment, the rest writable: a block-like request. */
            unsigned slot = (unsigned)(added % cfg->num);
            for (unsigned k = 0; k < cfg->chain; k++) {
                segs[k].addr = b.data + ((uint64_t)slot * MAX_CHAIN + k) * SEG_LEN;
                segs[k].len = SEG_LEN;
            }
            if (vdriver_add(b.drv, segs, 1, segs + 1, cfg->chain - 1,
                            (void *)(uintptr_t)(added + 1), false) < 0) {
                break;
            }
            added++;
            progress = true;
            /* Publish in bursts, as real drivers do, so the device can start early. */
            if (added % BURST == 0) {
                vdriver_kick_prepare(b.drv);
            }
        }
        if (progress) {
            vdriver_kick_prepare(b.drv);
        }
        if (cfg->one_thread) {
            device_round(&b, &d);
        }
        while ((tok = vdriver_get_buf(b.drv, &len, NULL))) {
            uint64_t id = (uintptr_t)tok - 1;

            if (cfg->in_order && id != expect) {
                snprintf(res->error, sizeof(res->error), "request %llu used before %llu",
                         (unsigned long long)id, (unsigned long long)expect);
                goto out;
            }
            expect = id + 1;
            done++;
            progress = true;
        }
        if (vdriver_error(b.drv)) {
            snprintf(res->error, sizeof(res->error), "%s", vdriver_error(b.drv));
            goto out;
        }
        if (progress) {
            /* Interrupts back on after reaping, like a driver's completion handler. */
            vdriver_enable_cb(b.drv);
        } else {
            cpu_relax();
        }
    }
    res->ok = true;
out:
    res->seconds = (now_ns() - t0) / 1e9;
    if (cfg->one_thread) {
        device_state_free(&d);
    } else {
        atomic_store(&b.stop, true);
        pthread_join(dev, NULL);
    }
    vdriver_get_stats(b.drv, &ds);
    virtio_queue_get_stats(b.vq, &st);
    res->used_entries = st.used_entries;
    res->kicks = ds.kicks;
    res->irqs = atomic_load(&b.irqs);
    if (res->ok && (b.device_errors || b.vdev.broken)) {
        res->ok = false;
        snprintf(res->error, sizeof(res->error), "device: %s", b.vdev.error_msg);
    }
    bench_teardown(&b);
}

/* Noisy machines: run @repeat times and keep the median time. */
static void run_median(const BenchConfig *cfg, unsigned repeat, BenchResult *res)
{
    BenchResult runs[9];

    repeat = repeat < 1 ? 1 : repeat > 9 ? 9 : repeat;
    for (unsigned i = 0; i < repeat; i++) {
        run_one(cfg, &runs[i]);
        if (!runs[i].ok) {
            *res = runs[i];
            return;
        }
    }
    /* Insertion sort by time; a handful of entries. */
    for (unsigned i = 1; i < repeat; i++) {
        for (unsigned j = i; j > 0 && runs[j].seconds < runs[j - 1].seconds; j--) {
            BenchResult t = runs[j];
            runs[j] = runs[j - 1];
            runs[j - 1] = t;
        }
    }
    *res = runs[repeat / 2];
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vdm-bench-ring [--requests N] [--queue-size N] [--threads 1|2] [--repeat N]\n"
               "         [--json FILE] [--quick]\n"
               "         [--ring split|packed] [--in-order on|off] [--batch on|off] [--window 1|8|64]\n"
               "         [--chain 1|4] [--event-idx on|off]   (filters; default: every combination)\n"
               "  Runs split/packed x IN_ORDER off/on x batch x completion window 1/8/64 x\n"
               "  chain 1/4 x event idx off/on; prints JSON lines and a table.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "requests", required_argument, NULL, 'n' },
        { "queue-size", required_argument, NULL, 'q' },
        { "json", required_argument, NULL, 'j' },
        { "quick", no_argument, NULL, 'Q' },
        { "threads", required_argument, NULL, 't' },
        { "repeat", required_argument, NULL, 'R' },
        { "ring", required_argument, NULL, 'r' },
        { "in-order", required_argument, NULL, 'i' },
        { "batch", required_argument, NULL, 'b' },
        { "window", required_argument, NULL, 'w' },
        { "chain", required_argument, NULL, 'c' },
        { "event-idx", required_argument, NULL, 'e' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    const unsigned windows[] = { 1, 8, 64 }, chains[] = { 1, 4 };
    uint64_t requests = 2000000;
    unsigned num = 256;
    FILE *json = NULL;
    bool quick = false, one_thread = false;
    unsigned repeat = 3;
    /* Filters: -1 runs every value. */
    int only_packed = -1, only_in_order = -1, only_batch = -1, only_window = -1, only_chain = -1;
    int only_event_idx = -1;
    int c, failures = 0;

    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'n': requests = strtoull(optarg, NULL, 0); break;
        case 'q': num = (unsigned)strtoul(optarg, NULL, 0); break;
        case 'j':
            json = fopen(optarg, "w");
            if (!json) {
                perror(optarg);
                return 2;
            }
            break;
        case 'Q': quick = true; break;
        case 't': one_thread = atoi(optarg) == 1; break;
        case 'R': repeat = (unsigned)atoi(optarg); break;
        case 'r': only_packed = !strcmp(optarg, "packed"); break;
        case 'i': only_in_order = !strcmp(optarg, "on"); break;
        case 'b': only_batch = !strcmp(optarg, "on"); break;
        case 'w': only_window = atoi(optarg); break;
        case 'c': only_chain = atoi(optarg); break;
        case 'e': only_event_idx = !strcmp(optarg, "on"); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (quick) {
        requests = 200000;
    }
    fprintf(stderr, "%-6s %-8s %-5s %6s %5s %5s %9s %9s %8s %8s %8s\n", "ring", "in_order", "batch",
            "window", "chain", "evidx", "Mreq/s", "ns/req", "entr/req", "kick/req", "irq/req");
    for (int packed = 0; packed < 2; packed++) {
        for (int in_order = 0; in_order < 2; in_order++) {
            for (int batch = 0; batch <= in_order; batch++) {
                for (unsigned w = 0; w < 3; w++) {
                    for (unsigned ch = 0; ch < 2; ch++) {
                        for (int ev = 0; ev < 2; ev++) {
                            if ((only_packed >= 0 && only_packed != packed) ||
                                (only_in_order >= 0 && only_in_order != in_order) ||
                                (only_batch >= 0 && only_batch != batch) ||
                                (only_window >= 0 && only_window != (int)windows[w]) ||
                                (only_chain >= 0 && only_chain != (int)chains[ch]) ||
                                (only_event_idx >= 0 && only_event_idx != ev)) {
                                continue;
                            }
                            BenchConfig cfg = { packed, in_order, batch, ev, windows[w], chains[ch],
                                                num, one_thread, requests };
                            BenchResult r;
                            char line[1024];
                            double mrps, ns;

                            run_median(&cfg, repeat, &r);
                            mrps = r.ok ? requests / r.seconds / 1e6 : 0;
                            ns = r.ok ? r.seconds * 1e9 / requests : 0;
                            snprintf(line, sizeof(line),
                                     "{\"bench\":\"ring\",\"ring\":\"%s\",\"in_order\":%s,\"batch\":%s,"
                                     "\"window\":%u,\"chain\":%u,\"event_idx\":%s,\"queue_size\":%u,\"threads\":%d,"
                                     "\"requests\":%llu,\"repeat\":%u,\"ok\":%s,\"seconds\":%.4f,\"mreq_per_s\":%.3f,"
                                     "\"ns_per_req\":%.1f,\"used_entries_per_req\":%.3f,"
                                     "\"kicks_per_req\":%.4f,\"irqs_per_req\":%.4f%s%s%s}",
                                     packed ? "packed" : "split", in_order ? "true" : "false",
                                     batch ? "true" : "false", windows[w], chains[ch], ev ? "true" : "false",
                                     num, one_thread ? 1 : 2, (unsigned long long)requests, repeat, r.ok ? "true" : "false", r.seconds,
                                     mrps, ns, (double)r.used_entries / requests,
                                     (double)r.kicks / requests, (double)r.irqs / requests,
                                     r.ok ? "" : ",\"error\":\"", r.ok ? "" : r.error, r.ok ? "" : "\"");
                            puts(line);
                            fflush(stdout);
                            if (json) {
                                fprintf(json, "%s\n", line);
                            }
                            fprintf(stderr, "%-6s %-8s %-5s %6u %5u %5s %9.2f %9.1f %8.3f %8.4f %8.4f%s%s\n",
                                    packed ? "packed" : "split", in_order ? "on" : "off", batch ? "on" : "off",
                                    windows[w], chains[ch], ev ? "on" : "off", mrps, ns,
                                    (double)r.used_entries / requests, (double)r.kicks / requests,
                                    (double)r.irqs / requests, r.ok ? "" : "  FAILED: ", r.ok ? "" : r.error);
                            failures += !r.ok;
                        }
                    }
                }
            }
        }
    }
    if (json) {
        fclose(json);
    }
    return failures ? 1 : 0;
}
