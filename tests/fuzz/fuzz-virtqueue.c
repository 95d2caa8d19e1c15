/*
 * libFuzzer target: arbitrary ring memory and operation sequences against the
 * virtio core (hw/virtio/virtio.c), on split and packed rings, with and
 * without IN_ORDER, EVENT_IDX, INDIRECT_DESC and batch publication.
 *
 * The guest is hostile: it may write any byte of its memory at any time,
 * including ring areas and indirect tables while buffers are in flight. The
 * device side is a *correct* device model: it completes only elements it
 * holds, each once, with a length within the element's writable bytes, and
 * passes the right fill index / flush count. So every invariant failure (or
 * sanitizer report) is a bug in the core, never in the "device".
 *
 * Input format (all integers little-endian; a truncated input reads as zeros)
 *
 *   header, 5 bytes
 *     [0] feature bits: 0 PACKED, 1 IN_ORDER, 2 EVENT_IDX, 3 INDIRECT_DESC,
 *         4 batch publication on, 5 NOTIFY_ON_EMPTY, 6 driver sets notification
 *         suppression (avail flags / driver event DISABLE) at start
 *     [1] queue size: split 1 << (b % 9) (1..256); packed b + 1 (1..256)
 *     [2] ring placement: bits 0-1 descriptor area, 2-3 driver area, 4-5 device
 *         area (candidates in placement_*[] below: region A, region B, the
 *         read-only region C, and a misplaced one), bits 6-7 ignored
 *     [3..4] initial ring index (as a restore would set it before DRIVER_OK):
 *         split free-running 16-bit index; packed position (mod size) in bits
 *         0-14, bit 15 set for wrap counter 0 (so all-zero is the reset state)
 *
 *   then up to FZ_MAX_OPS operations, each an opcode byte (b % OP__COUNT)
 *   followed by its arguments:
 *     OP_WRITE        u8 area, u16 off, u8 n, n bytes: raw guest store
 *     OP_WRITE16      u8 area, u16 off, u16 val: one aligned 16-bit guest store
 *     OP_RAW_DESC     u8 where, u16 i, ADDR, u32 len, u16 flags, u16 next/id:
 *                     raw descriptor in the ring / an indirect table
 *     OP_SET_AVAIL    u16 idx: split avail->idx; packed: flips head flags
 *     OP_DRV_EVENT    u8 kind, u16 a, u16 b: avail flags / used_event / packed
 *                     driver event area (notification suppression, honest)
 *     OP_DRV_POST     u8 n-1 (bits 0-2) | indirect (bit 3) | fault << 4, n x DESC:
 *                     the driver posts a chain (tracking free descriptors / ids);
 *                     fault 0 is honest, 1..15 add one hostile twist each
 *                     (PF_* below: bad NEXT, bad indirect tables, loops, bad
 *                     or duplicate heads, zero lengths, avail index jumps)
 *     OP_DRV_REAP     -: the honest driver consumes used entries
 *     OP_POP          u8 sg: pop with sg_max 1 + sg % 64, or virtqueue_pop when sg >= 0xf0
 *     OP_FILL         u8 which, u8 mode, u16 len: complete a held element with
 *                     length (mode & 3) 0/3 all, 1 none, 2 len % (in_len + 1);
 *                     mode bit 2 calls virtqueue_ordered_fill directly (IN_ORDER)
 *     OP_FLUSH        -
 *     OP_PUSH         u8 which, u8 mode, u16 len: fill + flush
 *     OP_DETACH       u8 which
 *     OP_UNPOP        -: give back the last popped element (if the device holds it)
 *     OP_REWIND       u8 n
 *     OP_SET_NOTIFY   u8 enable
 *     OP_NOTIFY       u8 kind: virtio_should_notify / virtio_notify / virtio_queue_empty
 *     OP_KICK         -: virtio_queue_notify (handler pops up to 4)
 *     OP_RESTORE      u8 mode, u16 idx: deactivate, get/set last_avail_idx and
 *                     used idx, restore_last_avail_idx, another size, activate;
 *                     mode 5 (split): a vhost-user backend restart resubmitting
 *                     its in-flight heads with virtqueue_pop_inflight*
 *     OP_RESET        u8 mode: device reset or queue reset, then set up again
 *     OP_MEMORY       u8 mode (% 6): 0 remove B, 1 re-add B, 2 re-add B read-only,
 *                     3 turn B read-only at once, 4 remove A, 5 re-add A; then
 *                     virtio_device_memory_changed
 *     OP_BATCH        u8 enable
 *     OP_RESUBMIT     u8 head, u8 sg: virtqueue_pop_inflight* of any head (split)
 *   ADDR = u8 sel, u16 off (sel & 15: 0 data in A, 1 data in B, 2 spanning the
 *          A/B boundary, 3 read-only C, 4 the gap, 5 ring areas, 6 u64 raw
 *          address follows, 7 top of the address space, 8 the 2 GiB region H
 *          (a DESC's length then counts 64 KiB units), 9-15 as sel & 7)
 *   DESC = ADDR then u16 len; bit 7 of sel is VRING_DESC_F_WRITE
 *
 * Guest memory: region A (32 KiB, rings + indirect tables + data), region B
 * (16 KiB) adjacent to A so buffers can span both, a gap, region C (8 KiB,
 * read-only), and region H (2 GiB, reserved and never touched) for chains
 * near 4 GiB. A, B and C are separate heap allocations, so ASan sees overruns.
 *
 * Invariants checked after every operation:
 *  - inuse <= queue size, and equals what the device holds plus what it has
 *    completed but not yet seen published;
 *  - an in-order flush publishes exactly the contiguous filled run;
 *  - every popped iovec is non-empty and lies inside one mapped region's host
 *    allocation, writable ones never in the read-only region; segment counts
 *    <= sg_max; in_len equals the writable bytes; chain length < 4 GiB; no id
 *    is handed out twice while in flight;
 *  - once broken: NEEDS_RESET and a config notification, pop returns nothing,
 *    should_notify is false, and no core call changes a byte of A, B or C;
 *  - while the guest has behaved (no raw stores, no post faults, no arbitrary
 *    restore), what the driver sees is right: split used->idx is the core's
 *    used index; every used id is in flight; in-order entries come in avail
 *    order, skipping only with batch on and only buffers used completely;
 *    each used length is the one the device filled; popped elements match
 *    what the driver posted.
 * Hangs are left to libFuzzer's -timeout.
 */
#include <endian.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "fuzz-input.h"
#include "hw/virtio/virtio.h"
#include "hw/virtio/virtio-access.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_OPS      1000
#define FZ_QMAX         256     /* largest queue the target sets up */
#define FZ_SG_MAX       64      /* bounded sg array for virtqueue_pop_elem */
#define FZ_CHAIN_MAX    8       /* descriptors per honest chain */

/* Guest memory map. */
#define RA_GPA          0x10000ull
#define RA_SIZE         0x8000ull
#define RB_GPA          (RA_GPA + RA_SIZE)      /* adjacent to A */
#define RB_SIZE         0x4000ull
#define GAP_GPA         (RB_GPA + RB_SIZE)
#define RC_GPA          0x20000ull
#define RC_SIZE         0x2000ull
#define RH_GPA          0x100000000ull
#define RH_SIZE         0x80000000ull

/* Inside A: rings at 0 / 0x1000 / 0x1400, indirect tables, data. */
#define A_ITAB          (RA_GPA + 0x2000)
#define FZ_ITABS        64                      /* tables of FZ_CHAIN_MAX entries */
#define A_DATA          (RA_GPA + 0x4000)
#define A_DATA_SIZE     0x4000ull
/* Inside B: span tail 0..0x800, rings at 0x1000 / 0x2000 / 0x2400, data from 0x3000. */
#define B_DATA          (RB_GPA + 0x3000)
#define B_DATA_SIZE     0x1000ull
#define SPAN_DATA       (RB_GPA - 0x800)
#define SPAN_SIZE       0x1000ull

static const hwaddr placement_desc[4] = { RA_GPA, RB_GPA + 0x1000, RC_GPA, RB_GPA - 0x10 };
static const hwaddr placement_driver[4] = { RA_GPA + 0x1000, RB_GPA + 0x2000, RC_GPA + 0x1000,
                                            RA_GPA + 0x1001 };
static const hwaddr placement_device[4] = { RA_GPA + 0x1400, RB_GPA + 0x2400, RC_GPA + 0x1800,
                                            GAP_GPA };

#define FZ_CHECK(cond) \
    do { \
        if (!(cond)) { \
            fz_fail(__LINE__, #cond); \
        } \
    } while (0)

static void __attribute__((noreturn)) fz_fail(int line, const char *what)
{
    fprintf(stderr, "fuzz-virtqueue: invariant violated (line %d): %s\n", line, what);
    abort();
}

/* Input: tests/fuzz/fuzz-input.h */

/* ---------------------------------------------------------------------- */
/* State                                                                   */

typedef struct Region {
    hwaddr gpa;
    uint64_t size;
    uint8_t *host;
    bool writable;
    bool mapped;                /* currently in the GuestMemory table */
} Region;

/* H: 2 GiB reserved, never touched by the harness: chains past 4 GiB (not in snapshots). */
enum { REG_A, REG_B, REG_C, REG_H, REG__COUNT };

/* One element the device holds (popped, not yet filled or detached). */
typedef struct Held {
    bool busy;
    uint32_t seq;               /* harness pop sequence, mirrors the core's */
    VirtQueueElement elem;
    VirtQueueElement *heap;     /* from virtqueue_pop(), or NULL */
    struct iovec sg[FZ_SG_MAX];
} Held;

/* In-flight element in pop order (in-order: until published; else until filled). */
typedef struct Flight {
    uint32_t seq;
    uint16_t index;
    int16_t held;               /* Held slot, -1 once filled */
    bool resubmitted;           /* came from virtqueue_pop_inflight* */
} Flight;

/* What the honest driver has posted, by head (split) / buffer id (packed). */
typedef struct DrvBuf {
    bool busy;
    uint16_t ndescs;            /* packed: ring positions; split: table slots */
    uint16_t descs[FZ_CHAIN_MAX];
    int16_t itab;
    uint32_t in_len, out_len;
} DrvBuf;

typedef struct Fz {
    /* config from the header */
    bool packed, in_order, event_idx, indirect, batch, notify_on_empty, suppress;
    unsigned num;
    hwaddr desc_gpa, driver_gpa, device_gpa;
    uint16_t init_idx;
    uint64_t features;

    Region reg[REG__COUNT];
    GuestMemory mem;
    VirtIODevice vdev;
    VirtQueue *vq;

    /* device side */
    Held held[FZ_QMAX];
    unsigned nheld;
    Flight flight[FZ_QMAX];
    unsigned nflight;
    unsigned fills;             /* non-IN_ORDER fills since the last flush */
    uint16_t fill_ids[FZ_QMAX]; /* their ids: in flight until the flush publishes them */
    uint32_t pop_seq;
    uint8_t id_busy[FZ_QMAX];
    uint32_t dev_len[FZ_QMAX];  /* length the device completed each id with */
    uint16_t sig_used;          /* core used index at the last notification decision */
    uint64_t sig_published;     /* stats.used then: how many buffers since */
    bool idx_sane;              /* IN_ORDER: last_avail_idx - used_idx == inuse (no arbitrary restore) */
    unsigned config_notifies, queue_notifies;

    /* honest driver */
    bool honest;                /* the guest has not scribbled: check the used ring */
    bool batch_ever;
    uint16_t avail_idx, last_used;          /* split */
    uint16_t avail_pos, used_pos;           /* packed */
    bool avail_wrap, used_wrap;
    unsigned descs_in_flight;
    uint8_t desc_busy[FZ_QMAX];
    uint8_t itab_busy[FZ_ITABS];
    DrvBuf buf[FZ_QMAX];
    uint16_t fifo[FZ_QMAX];                 /* posted ids in avail order */
    unsigned fifo_len;

    /* broken-device check */
    uint8_t *snap[REG__COUNT];
} Fz;

static Fz fz;

static void sig_mark(Fz *f);

static void count_queue_notify(VirtIODevice *vdev, VirtQueue *vq)
{
    fz.queue_notifies++;
}

static void count_config_notify(VirtIODevice *vdev)
{
    fz.config_notifies++;
}

static const VirtIOTransportOps fz_transport = {
    .notify_queue = count_queue_notify,
    .notify_config = count_config_notify,
};

static int fz_trace = -1;       /* FZ_TRACE=1 in the environment: log each operation */


/* ---------------------------------------------------------------------- */
/* Guest memory helpers                                                    */

static void regions_alloc(Fz *f)
{
    static const struct { hwaddr gpa; uint64_t size; bool writable; } def[REG__COUNT] = {
        { RA_GPA, RA_SIZE, true }, { RB_GPA, RB_SIZE, true }, { RC_GPA, RC_SIZE, false },
        { RH_GPA, RH_SIZE, true },
    };

    if (!f->reg[REG_H].host) {
        void *p = mmap(NULL, RH_SIZE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED) {
            abort();
        }
        f->reg[REG_H].host = p;
    }
    for (unsigned r = 0; r < REG__COUNT; r++) {
        if (r == REG_H) {
            f->reg[r] = (Region) { def[r].gpa, def[r].size, f->reg[r].host, def[r].writable, false };
            continue;
        }
        if (!f->reg[r].host) {
            f->reg[r].host = malloc(def[r].size);
            f->snap[r] = malloc(def[r].size);
            if (!f->reg[r].host || !f->snap[r]) {
                abort();        /* host out of memory: not an input problem */
            }
        }
        f->reg[r].gpa = def[r].gpa;
        f->reg[r].size = def[r].size;
        f->reg[r].writable = def[r].writable;
        memset(f->reg[r].host, 0, def[r].size);
    }
}

static void regions_map(Fz *f)
{
    guest_memory_init(&f->mem);
    for (unsigned r = 0; r < REG__COUNT; r++) {
        if (guest_memory_add(&f->mem, f->reg[r].gpa, f->reg[r].size, f->reg[r].host,
                             f->reg[r].writable) < 0) {
            abort();
        }
        f->reg[r].mapped = true;
    }
}

/* Host pointer for the guest's own access to [gpa, gpa + len), whatever is mapped. */
static void *guest_host(Fz *f, hwaddr gpa, uint64_t len)
{
    for (unsigned r = 0; r < REG_H; r++) {
        const Region *rg = &f->reg[r];
        if (gpa >= rg->gpa && gpa - rg->gpa <= rg->size && len <= rg->size - (gpa - rg->gpa)) {
            return rg->host + (gpa - rg->gpa);
        }
    }
    return NULL;
}

/* The region whose host allocation holds all of @iov, or -1. */
static int iov_region(const Fz *f, const struct iovec *iov)
{
    uintptr_t b = (uintptr_t)iov->iov_base;

    for (unsigned r = 0; r < REG__COUNT; r++) {
        uintptr_t h = (uintptr_t)f->reg[r].host;
        if (b >= h && b - h < f->reg[r].size && iov->iov_len <= f->reg[r].size - (b - h)) {
            return r;
        }
    }
    return -1;
}

static void snap_take(Fz *f)
{
    for (unsigned r = 0; r < REG_H; r++) {
        memcpy(f->snap[r], f->reg[r].host, f->reg[r].size);
    }
}

static bool snap_same(const Fz *f)
{
    for (unsigned r = 0; r < REG_H; r++) {
        if (memcmp(f->snap[r], f->reg[r].host, f->reg[r].size)) {
            return false;
        }
    }
    return true;
}

/* Guest-visible little-endian stores and loads (the guest side of the ring). */
static void g_st16(void *p, uint16_t v)
{
    vring_store_release_le16(p, v);
}

static uint16_t g_ld16(const void *p)
{
    return vring_load_acquire_le16(p);
}

static void g_desc(void *p, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next_or_id, bool packed)
{
    if (packed) {
        VRingPackedDesc *d = p;
        d->addr = htole64(addr);
        d->len = htole32(len);
        d->id = htole16(next_or_id);
        g_st16(&d->flags, flags);
    } else {
        VRingDesc *d = p;
        d->addr = htole64(addr);
        d->len = htole32(len);
        d->next = htole16(next_or_id);
        g_st16(&d->flags, flags);
    }
}

static uint64_t ring_size(const Fz *f, int which)
{
    switch (which) {
    case 0:
        return 16ull * f->num;
    case 1:
        return f->packed ? 4 : vring_split_avail_size(f->num);
    default:
        return f->packed ? 4 : vring_split_used_size(f->num);
    }
}

/*
 * Host view of a ring area for the harness's driver, NULL when it is not in
 * one region or not naturally aligned (the core refuses such a ring; raw
 * stores still reach it through OP_WRITE).
 */
static void *ring_host(Fz *f, int which)
{
    hwaddr gpa = which == 0 ? f->desc_gpa : which == 1 ? f->driver_gpa : f->device_gpa;
    void *p = guest_host(f, gpa, ring_size(f, which));

    return p && !((uintptr_t)p & 3) ? p : NULL;
}

/* Guest address for a DESC/ADDR argument; honest choices stay clear of rings. */
static uint64_t in_addr(Fz *f, Input *in, uint8_t sel, uint32_t *len, bool *honest)
{
    uint16_t off = in_u16(in);
    hwaddr base = 0;
    uint64_t range = 0;

    *honest = true;
    if ((sel & 15) == 8) {
        /* The huge region: lengths count in 64 KiB units so 4 GiB is three descriptors away. */
        hwaddr a = RH_GPA + (uint64_t)off * 0x8000;
        if (*len > RH_GPA + RH_SIZE - a) {
            *len = RH_GPA + RH_SIZE - a;
        }
        return a;
    }
    switch (sel & 7) {
    case 0: base = A_DATA; range = A_DATA_SIZE; break;
    case 1: base = B_DATA; range = B_DATA_SIZE; break;
    case 2: base = SPAN_DATA; range = SPAN_SIZE; break;
    case 3: base = RC_GPA; range = RC_SIZE; break;
    case 4: return GAP_GPA + off;                   /* outside memory: breaks, honestly */
    case 5: *honest = false; return RA_GPA + off % RA_SIZE;
    case 6: *honest = false; return in_u64(in);
    default: *honest = false; return UINT64_MAX - off;
    }
    off %= range;
    if (*len > range - off) {
        *len = range - off;
    }
    return base + off;
}

/* ---------------------------------------------------------------------- */
/* Honest driver                                                           */

static void drv_reset(Fz *f)
{
    f->avail_idx = f->last_used = f->init_idx;
    f->avail_pos = f->used_pos = (f->init_idx & 0x7fff) % f->num;
    f->avail_wrap = f->used_wrap = f->init_idx >> 15;
    f->descs_in_flight = 0;
    f->fifo_len = 0;
    memset(f->desc_busy, 0, sizeof(f->desc_busy));
    memset(f->itab_busy, 0, sizeof(f->itab_busy));
    memset(f->buf, 0, sizeof(f->buf));
}

/* The driver lays out fresh rings, as after reset (and before DRIVER_OK). */
static void drv_init_rings(Fz *f)
{
    void *desc = ring_host(f, 0), *drv = ring_host(f, 1), *dev = ring_host(f, 2);

    drv_reset(f);
    if (desc) {
        memset(desc, 0, ring_size(f, 0));
    }
    if (drv) {
        memset(drv, 0, ring_size(f, 1));
    }
    if (dev) {
        memset(dev, 0, ring_size(f, 2));
    }
    if (f->packed) {
        /* Positions look used by the lap before the one each belongs to. */
        for (unsigned i = 0; desc && i < f->num; i++) {
            bool lap_wrap = i < f->avail_pos ? f->avail_wrap : !f->avail_wrap;
            uint16_t used = lap_wrap ? (1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED) : 0;
            g_st16(&((VRingPackedDesc *)desc)[i].flags, used);
        }
        if (drv && f->suppress) {
            g_st16(&((VRingPackedDescEvent *)drv)->flags, VRING_PACKED_EVENT_FLAG_DISABLE);
        }
    } else {
        if (drv) {
            g_st16(&((VRingAvail *)drv)->idx, f->avail_idx);
            if (f->suppress) {
                g_st16(&((VRingAvail *)drv)->flags, VRING_AVAIL_F_NO_INTERRUPT);
            }
        }
        if (dev) {
            g_st16(&((VRingUsed *)dev)->idx, f->last_used);
        }
    }
}

static void drv_free(Fz *f, uint16_t id)
{
    DrvBuf *b = &f->buf[id];

    if (!f->packed) {
        for (unsigned k = 0; k < b->ndescs; k++) {
            f->desc_busy[b->descs[k]] = 0;
        }
    } else {
        f->descs_in_flight -= b->ndescs;
    }
    if (b->itab >= 0) {
        f->itab_busy[b->itab] = 0;
    }
    b->busy = false;
}

static int fifo_find(const Fz *f, uint16_t id)
{
    for (unsigned k = 0; k < f->fifo_len; k++) {
        if (f->fifo[k] == id) {
            return k;
        }
    }
    return -1;
}

static void fifo_remove(Fz *f, unsigned k, unsigned n)
{
    memmove(&f->fifo[k], &f->fifo[k + n], (f->fifo_len - k - n) * sizeof(f->fifo[0]));
    f->fifo_len -= n;
}

typedef struct PostDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
} PostDesc;

/*
 * Faults an otherwise honest post may carry (high nibble of its first byte),
 * so that one mutated byte turns a valid chain into each hostile class.
 */
enum {
    PF_NONE, PF_HEAD_NEXT, PF_ITAB_LEN_ODD, PF_ITAB_LEN_ZERO, PF_ITAB_OUTSIDE, PF_ITAB_MISALIGNED,
    PF_INDIRECT_INSIDE, PF_READ_AFTER_WRITE, PF_NEXT_RANGE, PF_LOOP, PF_BAD_HEAD, PF_DUP,
    PF_ZERO_LEN, PF_AVAIL_JUMP, PF_ITAB_SPANS, PF_ITAB_TOO_LONG,
};

/* Point the ring descriptor of an indirect chain at a bad table, per @fault. */
static void itab_fault(const Fz *f, PostDesc *t, unsigned fault)
{
    switch (fault) {
    case PF_ITAB_LEN_ODD: t->len += 8; break;
    case PF_ITAB_LEN_ZERO: t->len = 0; break;
    case PF_ITAB_OUTSIDE: t->addr = GAP_GPA; break;
    case PF_ITAB_MISALIGNED: t->addr += 1; break;        /* crashes-found/indirect-table-misaligned-* */
    case PF_ITAB_SPANS: t->addr = RB_GPA - 16; break;    /* one table in two regions */
    case PF_ITAB_TOO_LONG: t->len = 16 * (f->num + 1); break;
    case PF_HEAD_NEXT: t->flags |= VRING_DESC_F_NEXT; break;
    default: break;
    }
}

static void op_drv_post(Fz *f, Input *in)
{
    uint8_t b = in_u8(in);
    unsigned n = 1 + (b & 7), fault = b >> 4;
    bool use_indirect = b & 8;
    PostDesc d[FZ_CHAIN_MAX];
    uint32_t in_len = 0, out_len = 0;
    void *desc = ring_host(f, 0), *drv = ring_host(f, 1);
    int itab = -1;
    uint16_t id = 0;
    DrvBuf *buf;

    for (unsigned k = 0; k < n; k++) {
        uint8_t sel = in_u8(in);
        bool honest;
        uint32_t len;
        uint64_t addr, want;
        uint16_t off_len_pos;

        /* ADDR's u16 offset comes first, then the length. */
        len = UINT32_MAX;
        addr = in_addr(f, in, sel, &len, &honest);
        off_len_pos = in_u16(in);
        want = (sel & 15) == 8 ? (uint64_t)off_len_pos << 16 : off_len_pos;
        len = want < len ? (uint32_t)want : len;
        f->honest &= honest;
        d[k].addr = addr;
        d[k].len = fault == PF_ZERO_LEN ? 0 : len;
        d[k].flags = sel & 0x80 ? VRING_DESC_F_WRITE : 0;
    }
    if (fault == PF_READ_AFTER_WRITE && n >= 2) {
        d[0].flags = VRING_DESC_F_WRITE;
        d[n - 1].flags = 0;
    }
    for (unsigned k = 0; k < n; k++) {
        if (d[k].flags & VRING_DESC_F_WRITE) {
            in_len += d[k].len;
        } else {
            out_len += d[k].len;
        }
    }
    if (fault) {
        f->honest = false;
    }
    if (!desc || !drv || f->fifo_len + 2 > FZ_QMAX) {
        return;
    }
    if (use_indirect) {
        for (unsigned t = 0; t < FZ_ITABS; t++) {
            if (!f->itab_busy[t]) {
                itab = t;
                break;
            }
        }
        if (itab < 0) {
            return;
        }
    }

    if (f->packed) {
        unsigned need = itab >= 0 ? 1 : n;
        uint16_t pos = f->avail_pos;
        bool wrap = f->avail_wrap;
        uint16_t head_flags = 0, ring_id;

        if (f->descs_in_flight + need > f->num) {
            return;
        }
        if (fault == PF_DUP && f->fifo_len) {
            id = f->fifo[0];                            /* an id still in flight */
        } else {
            for (id = 0; id < f->num && f->buf[id].busy; id++) {
            }
            if (id == f->num) {
                return;
            }
        }
        ring_id = fault == PF_BAD_HEAD ? f->num + (b & 7) : id;
        buf = &f->buf[id];
        buf->ndescs = need;
        if (itab >= 0) {
            hwaddr t = A_ITAB + (hwaddr)itab * 16 * FZ_CHAIN_MAX;
            for (unsigned k = 0; k < n; k++) {
                uint16_t tf = d[k].flags | (fault == PF_INDIRECT_INSIDE && k == 0 ? VRING_DESC_F_INDIRECT : 0);
                g_desc(guest_host(f, t + 16 * k, 16), d[k].addr, d[k].len, tf, 0, true);
            }
            d[0] = (PostDesc) { t, 16 * n, VRING_DESC_F_INDIRECT };
            itab_fault(f, &d[0], fault);
        } else if (fault == PF_INDIRECT_INSIDE) {
            d[need - 1].flags |= VRING_DESC_F_INDIRECT;
        }
        /* Every descriptor but the head, then the head's flags last. */
        for (unsigned k = 0; k < need; k++) {
            uint16_t flags = d[k].flags | (k + 1 < need ? VRING_DESC_F_NEXT : 0);
            if (k + 1 == need && (fault == PF_NEXT_RANGE || fault == PF_LOOP ||
                                  (fault == PF_HEAD_NEXT && itab < 0))) {
                flags |= VRING_DESC_F_NEXT;             /* the chain runs on into the ring */
            }
            if (fault == PF_AVAIL_JUMP && k == 0) {
                wrap = !wrap;                           /* the head looks like a lap ago's */
            }
            flags |= wrap ? 1 << VRING_PACKED_DESC_F_AVAIL : 1 << VRING_PACKED_DESC_F_USED;
            if (fault == PF_AVAIL_JUMP && k == 0) {
                wrap = !wrap;
            }
            if (k == 0) {
                VRingPackedDesc *h = (VRingPackedDesc *)desc + pos;
                h->addr = htole64(d[0].addr);
                h->len = htole32(d[0].len);
                h->id = htole16(ring_id);
                head_flags = flags;
            } else {
                g_desc((VRingPackedDesc *)desc + pos, d[k].addr, d[k].len, flags, ring_id, true);
            }
            if (++pos == f->num) {
                pos = 0;
                wrap = !wrap;
            }
        }
        g_st16(&((VRingPackedDesc *)desc + f->avail_pos)->flags, head_flags);
        f->avail_pos = pos;
        f->avail_wrap = wrap;
        f->descs_in_flight += need;
    } else {
        unsigned need = itab >= 0 ? 1 : n, got = 0;
        uint16_t slots[FZ_CHAIN_MAX], head;
        VRingAvail *avail = drv;

        for (unsigned i = 0; i < f->num && got < need; i++) {
            if (!f->desc_busy[i]) {
                slots[got++] = i;
            }
        }
        if (got < need) {
            return;
        }
        id = slots[0];
        buf = &f->buf[id];
        buf->ndescs = need;
        if (itab >= 0) {
            hwaddr t = A_ITAB + (hwaddr)itab * 16 * FZ_CHAIN_MAX;
            for (unsigned k = 0; k < n; k++) {
                uint16_t tf = d[k].flags | (k + 1 < n ? VRING_DESC_F_NEXT : 0), next = k + 1;
                if (k == 0 && fault == PF_INDIRECT_INSIDE) {
                    tf |= VRING_DESC_F_INDIRECT;
                }
                if (k + 1 == n && (fault == PF_NEXT_RANGE || fault == PF_LOOP)) {
                    tf |= VRING_DESC_F_NEXT;
                    next = fault == PF_LOOP ? 0 : n;
                }
                g_desc(guest_host(f, t + 16 * k, 16), d[k].addr, d[k].len, tf, next, false);
            }
            d[0] = (PostDesc) { t, 16 * n, VRING_DESC_F_INDIRECT };
            itab_fault(f, &d[0], fault);
        } else if (fault == PF_INDIRECT_INSIDE) {
            d[need - 1].flags |= VRING_DESC_F_INDIRECT;
        }
        for (unsigned k = 0; k < need; k++) {
            uint16_t flags = d[k].flags | (k + 1 < need ? VRING_DESC_F_NEXT : 0);
            uint16_t next = k + 1 < need ? slots[k + 1] : 0;
            if (k + 1 == need && itab < 0) {
                if (fault == PF_HEAD_NEXT) {
                    flags |= VRING_DESC_F_NEXT;         /* runs on into descriptor 0 */
                } else if (fault == PF_NEXT_RANGE) {
                    flags |= VRING_DESC_F_NEXT;
                    next = f->num + k;
                } else if (fault == PF_LOOP) {
                    flags |= VRING_DESC_F_NEXT;
                    next = slots[0];
                }
            }
            g_desc((VRingDesc *)desc + slots[k], d[k].addr, d[k].len, flags, next, false);
            f->desc_busy[slots[k]] = 1;
            buf->descs[k] = slots[k];
        }
        head = fault == PF_BAD_HEAD ? f->num + (b & 7) : id;
        avail->ring[f->avail_idx++ % f->num] = htole16(head);
        if (fault == PF_DUP) {
            avail->ring[f->avail_idx++ % f->num] = htole16(head);
            f->fifo[f->fifo_len++] = id;
        }
        g_st16(&avail->idx, fault == PF_AVAIL_JUMP ? f->avail_idx + f->num + 1 : f->avail_idx);
    }
    buf->busy = true;
    buf->itab = itab;
    buf->in_len = in_len;
    buf->out_len = out_len;
    if (itab >= 0) {
        f->itab_busy[itab] = 1;
    }
    f->fifo[f->fifo_len++] = id;
}

/* Consume the used entries for in-order entry @id: returns how many buffers it covers, 0 if none. */
static unsigned drv_in_order_run(Fz *f, uint16_t id, uint32_t len, unsigned max_bufs)
{
    int k = fifo_find(f, id);

    if (k < 0) {
        FZ_CHECK(!f->honest);
        return 0;
    }
    if (f->honest) {
        /* Skipping is only allowed for batch publication (spec 2.7.9 / 2.8.21). */
        FZ_CHECK(k == 0 || f->batch_ever);
        FZ_CHECK((unsigned)k < max_bufs);
        FZ_CHECK(len <= f->buf[id].in_len);
        FZ_CHECK(len == f->dev_len[id]);
        /* A batch only skips buffers the device used completely. */
        for (int j = 0; j < k; j++) {
            FZ_CHECK(f->dev_len[f->fifo[j]] == f->buf[f->fifo[j]].in_len);
        }
    } else if ((unsigned)k >= max_bufs) {
        return 0;
    }
    return k + 1;
}

static void op_drv_reap(Fz *f)
{
    void *desc = ring_host(f, 0), *dev = ring_host(f, 2);

    if (!desc || !dev) {
        return;
    }
    if (!f->packed) {
        VRingUsed *used = dev;
        uint16_t used_idx = g_ld16(&used->idx);

        while (f->last_used != used_idx) {
            uint16_t ahead = used_idx - f->last_used;
            VRingUsedElem e = used->ring[f->last_used % f->num];
            uint32_t id = le32toh(e.id), len = le32toh(e.len);

            if (f->honest) {
                /* Never more used than the driver has in flight. */
                FZ_CHECK(ahead <= f->fifo_len);
            } else if (ahead > f->fifo_len) {
                f->last_used = used_idx;        /* scribbled: resynchronise */
                return;
            }
            if (f->in_order) {
                unsigned n = id < f->num ? drv_in_order_run(f, id, len, ahead) : 0;
                FZ_CHECK(n || !f->honest);
                if (!n) {
                    f->last_used = used_idx;
                    return;
                }
                for (unsigned k = 0; k < n; k++) {
                    drv_free(f, f->fifo[k]);
                }
                fifo_remove(f, 0, n);
                f->last_used += n;
            } else {
                int k = id < f->num ? fifo_find(f, id) : -1;
                FZ_CHECK(k >= 0 || !f->honest);
                if (k < 0) {
                    f->last_used = used_idx;
                    return;
                }
                FZ_CHECK(len <= f->buf[id].in_len || !f->honest);
                FZ_CHECK(len == f->dev_len[id] || !f->honest);
                drv_free(f, id);
                fifo_remove(f, k, 1);
                f->last_used++;
            }
        }
        return;
    }
    for (unsigned guard = 0; guard <= f->num; guard++) {
        VRingPackedDesc *u = (VRingPackedDesc *)desc + f->used_pos;
        uint16_t flags = g_ld16(&u->flags);
        bool a = flags & (1 << VRING_PACKED_DESC_F_AVAIL), us = flags & (1 << VRING_PACKED_DESC_F_USED);
        uint16_t id = le16toh(u->id);
        uint32_t len = le32toh(u->len);
        unsigned adv = 0, n;

        if (a != f->used_wrap || us != f->used_wrap) {
            return;
        }
        /* spec 2.8.9: a used length is only meaningful with WRITE; the device sets it. */
        FZ_CHECK(!len || (flags & VRING_DESC_F_WRITE) || !f->honest);
        if (f->in_order) {
            n = id < f->num ? drv_in_order_run(f, id, len, f->fifo_len) : 0;
            if (!n) {
                return;
            }
            for (unsigned k = 0; k < n; k++) {
                adv += f->buf[f->fifo[k]].ndescs;
                drv_free(f, f->fifo[k]);
            }
            fifo_remove(f, 0, n);
        } else {
            int k = id < f->num ? fifo_find(f, id) : -1;
            FZ_CHECK(k >= 0 || !f->honest);
            if (k < 0) {
                return;
            }
            FZ_CHECK(len <= f->buf[id].in_len || !f->honest);
            FZ_CHECK(len == f->dev_len[id] || !f->honest);
            adv = f->buf[id].ndescs;
            drv_free(f, id);
            fifo_remove(f, k, 1);
        }
        f->used_pos += adv;
        while (f->used_pos >= f->num) {
            f->used_pos -= f->num;
            f->used_wrap = !f->used_wrap;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Device side: a correct device model                                     */

static bool dev_usable(Fz *f)
{
    return virtio_queue_is_running(&f->vdev, 0) && !f->vdev.broken;
}

static void held_release(Fz *f, int h)
{
    Held *hd = &f->held[h];

    virtqueue_element_free(hd->heap);
    hd->heap = NULL;
    hd->busy = false;
    f->nheld--;
}

static VirtQueueElement *held_elem(Fz *f, int h)
{
    return f->held[h].heap ? f->held[h].heap : &f->held[h].elem;
}

/* Forget every element: the core cleared its slots (restore, reset). */
static void dev_drop_all(Fz *f)
{
    for (int h = 0; h < FZ_QMAX; h++) {
        if (f->held[h].busy) {
            held_release(f, h);
        }
    }
    f->nflight = 0;
    f->fills = 0;
    memset(f->id_busy, 0, sizeof(f->id_busy));
}

static void check_popped(Fz *f, const VirtQueueElement *e, unsigned sg_max)
{
    uint64_t total = 0, in_total = 0;

    FZ_CHECK(e->index < f->num);
    FZ_CHECK(!f->id_busy[e->index]);       /* crashes-found bug 2 */
    FZ_CHECK(e->out_num + e->in_num <= sg_max);
    FZ_CHECK(e->in_sg == e->out_sg + e->out_num);
    FZ_CHECK(f->packed ? e->ndescs >= 1 && e->ndescs <= f->num : e->ndescs == 1);
    for (unsigned i = 0; i < e->out_num + e->in_num; i++) {
        const struct iovec *iov = &e->out_sg[i];
        bool is_write = i >= e->out_num;
        int r = iov_region(f, iov);

        FZ_CHECK(iov->iov_len > 0);
        FZ_CHECK(r >= 0);
        FZ_CHECK(f->reg[r].mapped);
        FZ_CHECK(!is_write || f->reg[r].writable);
        total += iov->iov_len;
        if (is_write) {
            in_total += iov->iov_len;
        }
        /* The device reads its readable segments (ASan checks the ends); H stays untouched. */
        if (!is_write && r != REG_H) {
            volatile uint8_t sink = ((uint8_t *)iov->iov_base)[0];
            sink ^= ((uint8_t *)iov->iov_base)[iov->iov_len - 1];
            (void)sink;
        }
    }
    FZ_CHECK(total <= UINT32_MAX);
    FZ_CHECK(in_total == e->in_len);
    if (f->honest) {
        const DrvBuf *b = &f->buf[e->index];
        FZ_CHECK(b->busy);
        FZ_CHECK(b->in_len == e->in_len);
        FZ_CHECK(total - in_total == b->out_len);
        FZ_CHECK(!f->packed || e->ndescs == b->ndescs);
    }
}

/*
 * Pop one element (@head < 0), or resubmit in-flight @head as a restarted
 * vhost-user backend does (virtqueue_pop_inflight*); returns the core's result.
 */
static int dev_pop_head(Fz *f, uint8_t how, int head)
{
    int h;
    Held *hd;
    VirtQueueElement *e;
    unsigned sg_max;
    bool usable = dev_usable(f);
    int ret;

    for (h = 0; h < FZ_QMAX && f->held[h].busy; h++) {
    }
    if (h == FZ_QMAX) {
        /* The core never has more than a queue's worth in flight. */
        FZ_CHECK(virtio_queue_inuse(f->vq) >= f->num);
        return 0;
    }
    hd = &f->held[h];
    if (how >= 0xf0) {
        size_t sz = sizeof(VirtQueueElement) + 8 * (how & 0xf);
        sg_max = VIRTQUEUE_MAX_SG;
        hd->heap = head < 0 ? virtqueue_pop(f->vq, sz) : virtqueue_pop_inflight(f->vq, head, sz);
        ret = hd->heap ? 1 : 0;
        e = hd->heap;
    } else {
        sg_max = 1 + how % FZ_SG_MAX;
        e = &hd->elem;
        ret = head < 0 ? virtqueue_pop_elem(f->vq, e, hd->sg, sg_max)
                       : virtqueue_pop_inflight_elem(f->vq, head, e, hd->sg, sg_max);
        FZ_CHECK(ret >= -1 && ret <= 1);
    }
    if (!usable || (head >= 0 && f->packed)) {
        FZ_CHECK(ret == 0);
    }
    if (ret != 1) {
        /* -1 breaks the device (pop_elem only); an empty queue is no fault. */
        FZ_CHECK(ret == 0 || f->vdev.broken);
        FZ_CHECK(ret == -1 || !usable || how >= 0xf0 || !f->vdev.broken);
        return ret;
    }
    FZ_CHECK(!f->vdev.broken);
    if (fz_trace) {
        fprintf(stderr, "fz:   popped index %u out %u in %u in_len %u ndescs %u\n",
                e->index, e->out_num, e->in_num, e->in_len, e->ndescs);
    }
    FZ_CHECK(head < 0 || e->index == (unsigned)head);
    check_popped(f, e, sg_max);
    hd->busy = true;
    hd->seq = f->pop_seq++;
    f->nheld++;
    f->id_busy[e->index] = 1;
    f->flight[f->nflight++] = (Flight) { .seq = hd->seq, .index = e->index, .held = h,
                                         .resubmitted = head >= 0 };
    return 1;
}

static int dev_pop(Fz *f, uint8_t how)
{
    return dev_pop_head(f, how, -1);
}

/* The @which'th held element, or -1. */
static int held_pick(const Fz *f, uint8_t which)
{
    unsigned k;

    if (!f->nheld) {
        return -1;
    }
    k = which % f->nheld;
    for (int h = 0; h < FZ_QMAX; h++) {
        if (f->held[h].busy && k-- == 0) {
            return h;
        }
    }
    fz_fail(__LINE__, "held count out of sync");
}

static int flight_of_held(const Fz *f, int h)
{
    for (unsigned k = 0; k < f->nflight; k++) {
        if (f->flight[k].held == h) {
            return k;
        }
    }
    fz_fail(__LINE__, "held element not in flight");
}

/* Expected count for a flush now; the core must publish exactly that many. */
static unsigned flush_expect(const Fz *f)
{
    unsigned n = 0;

    if (!f->in_order) {
        return f->fills;
    }
    while (n < f->nflight && f->flight[n].held < 0) {
        n++;
    }
    return n;
}

/* Account for a flush the core just did (or a push's flush half). */
static void flush_commit(Fz *f, unsigned expect, const VirtQueueStats *before)
{
    VirtQueueStats after;

    virtio_queue_get_stats(f->vq, &after);
    FZ_CHECK(after.used - before->used == expect);
    FZ_CHECK(after.used_entries - before->used_entries <= expect || !f->in_order);
    if (f->in_order) {
        for (unsigned k = 0; k < expect; k++) {
            f->id_busy[f->flight[k].index] = 0;
        }
        memmove(&f->flight[0], &f->flight[expect], (f->nflight - expect) * sizeof(f->flight[0]));
        f->nflight -= expect;
    } else {
        for (unsigned k = 0; k < f->fills; k++) {
            f->id_busy[f->fill_ids[k]] = 0;
        }
        f->fills = 0;
    }
}

static void dev_flush(Fz *f)
{
    VirtQueueStats before, after;
    unsigned expect = flush_expect(f);

    virtio_queue_get_stats(f->vq, &before);
    if (!dev_usable(f)) {
        virtqueue_flush(f->vq, f->fills);
        virtio_queue_get_stats(f->vq, &after);
        FZ_CHECK(after.used == before.used);
        return;
    }
    if (f->in_order && (f->pop_seq & 1)) {
        FZ_CHECK(virtqueue_ordered_flush(f->vq) == expect);
    } else {
        virtqueue_flush(f->vq, f->fills);
    }
    flush_commit(f, expect, &before);
}

/*
 * Complete a held element as the device would: write its data, then fill (or
 * push, when that is a correct call: IN_ORDER, or no fill batch open).
 */
static void dev_fill(Fz *f, Input *in, bool push)
{
    uint8_t which = in_u8(in), mode = in_u8(in);
    uint16_t arg = in_u16(in);
    int h = held_pick(f, which), k;
    VirtQueueElement *e;
    VirtQueueStats before;
    unsigned len;

    if (h < 0) {
        if (push) {
            dev_flush(f);
        }
        return;
    }
    e = held_elem(f, h);
    switch (mode % 4) {
    case 1: len = 0; break;
    case 2: len = e->in_len ? arg % (e->in_len + 1) : 0; break;
    default: len = e->in_len; break;            /* complete: batchable */
    }
    if (!dev_usable(f)) {
        /* A completion racing with a stop (or a break): the core must ignore it. */
        VirtQueueStats after;
        virtio_queue_get_stats(f->vq, &before);
        if (push) {
            virtqueue_push(f->vq, e, len);
        } else {
            virtqueue_fill(f->vq, e, len, f->fills);
        }
        virtio_queue_get_stats(f->vq, &after);
        FZ_CHECK(after.used == before.used && after.used_entries == before.used_entries);
        return;
    }
    /* The device writes the first @len bytes (the ends of each touched segment). */
    for (unsigned i = 0, left = len; i < e->in_num && left; i++) {
        size_t n = e->in_sg[i].iov_len < left ? e->in_sg[i].iov_len : left;
        if (iov_region(f, &e->in_sg[i]) != REG_H) {
            ((uint8_t *)e->in_sg[i].iov_base)[0] = 0xd5;
            ((uint8_t *)e->in_sg[i].iov_base)[n - 1] = 0xd5;
        }
        left -= n;
    }
    push = push && (f->in_order || f->fills == 0);
    virtio_queue_get_stats(f->vq, &before);
    if (push) {
        virtqueue_push(f->vq, e, len);
    } else if (f->in_order && (mode & 4)) {
        virtqueue_ordered_fill(f->vq, e, len);
        FZ_CHECK(e->filled);
    } else {
        virtqueue_fill(f->vq, e, len, f->in_order ? 0 : f->fills);
    }
    f->dev_len[e->index] = len;
    k = flight_of_held(f, h);
    if (f->in_order) {
        f->flight[k].held = -1;
    } else {
        FZ_CHECK(f->fills < FZ_QMAX);           /* each pending fill holds a distinct id */
        f->fill_ids[f->fills++] = e->index;
        memmove(&f->flight[k], &f->flight[k + 1], (f->nflight - k - 1) * sizeof(f->flight[0]));
        f->nflight--;
    }
    held_release(f, h);
    if (push) {
        flush_commit(f, flush_expect(f), &before);
    }
}

static void dev_detach(Fz *f, uint8_t which)
{
    int h = held_pick(f, which), k;

    if (h < 0) {
        return;
    }
    if (!dev_usable(f)) {
        virtqueue_detach_element(f->vq, held_elem(f, h), 0);
        return;
    }
    virtqueue_detach_element(f->vq, held_elem(f, h), 0);
    f->dev_len[held_elem(f, h)->index] = 0;
    k = flight_of_held(f, h);
    if (f->in_order) {
        f->flight[k].held = -1;                 /* used with length 0 */
    } else {
        f->id_busy[f->flight[k].index] = 0;
        memmove(&f->flight[k], &f->flight[k + 1], (f->nflight - k - 1) * sizeof(f->flight[0]));
        f->nflight--;
    }
    held_release(f, h);
}

/*
 * How many of the most recent pops the device may give back: held, unfilled,
 * newest first, and not resubmitted ones, which took no avail entry (the core
 * refuses to rewind those; crashes-found bug 3).
 */
static unsigned rewindable(const Fz *f)
{
    unsigned n = 0;

    for (unsigned k = f->nflight; k-- > 0;) {
        if (f->flight[k].held < 0 || f->flight[k].seq != f->pop_seq - 1 - n) {
            break;
        }
        if (f->flight[k].resubmitted) {
            break;
        }
        n++;
    }
    return n;
}

static void dev_rewind(Fz *f, unsigned n, bool unpop)
{
    unsigned can = rewindable(f);
    bool usable = dev_usable(f);

    if (unpop) {
        if (!can) {
            return;
        }
        virtqueue_unpop(f->vq, held_elem(f, f->flight[f->nflight - 1].held), 0);
        n = 1;
    } else {
        bool ok = virtqueue_rewind(f->vq, n);
        if (!usable) {
            FZ_CHECK(ok == (n == 0));
            return;
        }
        FZ_CHECK(ok == (n <= can));
        if (!ok) {
            return;
        }
    }
    if (!usable) {
        return;
    }
    for (unsigned k = 0; k < n; k++) {
        Flight *fl = &f->flight[--f->nflight];
        f->id_busy[fl->index] = 0;
        held_release(f, fl->held);
        f->pop_seq--;
    }
}

static void kick_handler(VirtIODevice *vdev, VirtQueue *vq)
{
    for (int i = 0; i < 4; i++) {
        if (dev_pop(&fz, (uint8_t)(FZ_SG_MAX - 1)) != 1) {
            break;
        }
    }
}

/* ---------------------------------------------------------------------- */
/* Set-up, reset, restore                                                  */

static void queue_setup(Fz *f)
{
    VirtIODevice *vdev = &f->vdev;

    virtio_queue_set_num(vdev, 0, f->num);
    virtio_queue_set_rings(vdev, 0, f->desc_gpa, f->driver_gpa, f->device_gpa);
    virtio_queue_set_enabled(vdev, 0, true);
    /* A restored state; for a fresh queue (0 / wrap 1) it is the reset value. */
    virtio_queue_set_last_avail_idx(vdev, 0, f->init_idx);
    virtio_queue_set_used_idx(vdev, 0, f->init_idx);
}

static void device_setup(Fz *f)
{
    VirtIODevice *vdev = &f->vdev;

    if (virtio_set_features(vdev, f->features) < 0) {
        abort();                /* the target only asks for offered ring bits */
    }
    virtio_set_status(vdev, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER |
                      VIRTIO_CONFIG_S_FEATURES_OK);
    queue_setup(f);
    drv_init_rings(f);
    virtio_set_status(vdev, vdev->status | VIRTIO_CONFIG_S_DRIVER_OK);
    virtio_queue_set_batch(f->vq, f->batch);
    f->batch_ever = f->batch;
    sig_mark(f);
}

static void op_reset(Fz *f, uint8_t mode)
{
    dev_drop_all(f);
    f->pop_seq = 0;
    if (mode & 1) {
        virtio_queue_reset(&f->vdev, 0);
        queue_setup(f);
        drv_init_rings(f);
        virtio_queue_activate(&f->vdev, 0);
        virtio_queue_set_batch(f->vq, f->batch);
        sig_mark(f);
    } else {
        virtio_reset(&f->vdev);
        FZ_CHECK(!f->vdev.broken);
        FZ_CHECK(virtio_queue_inuse(f->vq) == 0);
        device_setup(f);
    }
    /* The driver started over on clean rings: its view is trustworthy again. */
    f->honest = true;
    f->idx_sane = true;
}

/*
 * A vhost-user backend restarts (split): the queue stops, the avail index is
 * restored, and every buffer its inflight region lists is resubmitted in pop
 * order. Under IN_ORDER that is everything after the used index (filled but
 * unpublished ones too: the backend forgot its fills); otherwise what the
 * device still held (pending fills and detached buffers stay lost, which an
 * honest driver without IN_ORDER tolerates).
 */
static void op_restart(Fz *f, uint8_t mode)
{
    VirtIODevice *vdev = &f->vdev;
    uint16_t ids[FZ_QMAX];
    unsigned n = 0;
    uint16_t used = virtio_queue_get_used_idx(vdev, 0);
    uint16_t last = virtio_queue_get_last_avail_idx(vdev, 0);

    for (unsigned k = 0; k < f->nflight; k++) {
        if (f->in_order || f->flight[k].held >= 0) {
            ids[n++] = f->flight[k].index;
        }
    }
    FZ_CHECK(!f->in_order || !f->idx_sane || f->vdev.broken || !virtio_queue_is_running(vdev, 0) ||
             (uint16_t)(last - used) == n);
    virtio_queue_deactivate(vdev, 0);
    virtio_queue_set_last_avail_idx(vdev, 0, f->in_order ? (uint16_t)(used + n) : last);
    dev_drop_all(f);
    FZ_CHECK(virtio_queue_inuse(f->vq) == 0);
    virtio_queue_activate(vdev, 0);
    sig_mark(f);
    f->idx_sane = f->in_order;
    for (unsigned k = 0; k < n; k++) {
        bool usable = dev_usable(f);
        int ret = dev_pop_head(f, mode & 0x80 ? 0xf0 : FZ_SG_MAX - 1, ids[k]);
        /* Each was a valid chain when first popped; only guest scribbles since can fail it. */
        FZ_CHECK(ret == 1 || !usable || !f->honest || f->vdev.broken);
    }
}

static void op_restore(Fz *f, Input *in)
{
    uint8_t mode = in_u8(in);
    uint16_t idx = in_u16(in);
    VirtIODevice *vdev = &f->vdev;
    unsigned inuse = virtio_queue_inuse(f->vq);
    unsigned last = virtio_queue_get_last_avail_idx(vdev, 0);
    unsigned used = virtio_queue_get_used_idx(vdev, 0);

    if (mode % 6 == 5 && !f->packed) {
        op_restart(f, mode);
        return;
    }
    virtio_queue_deactivate(vdev, 0);
    FZ_CHECK(!virtio_queue_is_running(vdev, 0));
    switch (mode % 6) {
    case 0:
        /* Stop and start again: indices and in-flight elements kept. */
        virtio_queue_set_last_avail_idx(vdev, 0, last);     /* clears the slots */
        dev_drop_all(f);
        f->honest &= inuse == 0;
        f->idx_sane &= inuse == 0;
        break;
    case 1:
        /* IN_ORDER recovery: redo everything after the used index. */
        virtio_queue_restore_last_avail_idx(vdev, 0);
        dev_drop_all(f);
        f->honest &= f->in_order;
        f->idx_sane = true;
        break;
    case 2:
        /* A restore with arbitrary saved indices (vhost-user SET_VRING_BASE). */
        virtio_queue_set_last_avail_idx(vdev, 0, idx);
        virtio_queue_set_used_idx(vdev, 0, mode & 0x80 ? idx : used);
        dev_drop_all(f);
        f->honest = false;
        f->idx_sane = false;
        break;
    case 3:
        /* A different size while stopped (the peer's SET_VRING_NUM), then the saved index. */
        if (virtio_queue_set_num(vdev, 0, 1 + idx % FZ_QMAX) == 0) {
            f->num = 1 + idx % FZ_QMAX;
            drv_reset(f);
        }
        virtio_queue_set_last_avail_idx(vdev, 0, last);
        dev_drop_all(f);
        f->honest = false;
        f->idx_sane &= inuse == 0;
        break;
    default:                    /* 4, and 5 on packed (no inflight resubmission there) */
        virtio_queue_set_last_avail_idx(vdev, 0, last);
        dev_drop_all(f);
        f->honest &= inuse == 0;
        f->idx_sane &= inuse == 0;
        break;
    }
    FZ_CHECK(virtio_queue_inuse(f->vq) == 0);
    virtio_queue_activate(vdev, 0);
    sig_mark(f);
}

/*
 * The memory map changes under running queues (vhost-user SET_MEM_TABLE,
 * hotplug): region B goes, comes back writable or read-only; region A (the
 * usual ring home) goes and comes back. The host memory stays allocated, so
 * elements the device holds keep valid iovecs, as a real VMM keeps the old
 * mapping until in-flight requests finish.
 */
static void op_memory(Fz *f, uint8_t mode)
{
    Region *r = &f->reg[mode % 6 >= 4 ? REG_A : REG_B];

    switch (mode % 6) {
    case 0:
    case 4:
        if (r->mapped && guest_memory_remove(&f->mem, r->gpa, r->size) == 0) {
            r->mapped = false;
        }
        break;
    case 1:
    case 2:
    case 5:
        if (!r->mapped) {
            bool writable = mode % 6 != 2;
            if (guest_memory_add(&f->mem, r->gpa, r->size, r->host, writable) == 0) {
                r->mapped = true;
                r->writable = writable;
            }
        }
        break;
    default:
        /* B becomes read-only in one update (rings placed there must not keep running). */
        if (r->mapped && guest_memory_remove(&f->mem, r->gpa, r->size) == 0) {
            r->mapped = false;
            if (guest_memory_add(&f->mem, r->gpa, r->size, r->host, false) == 0) {
                r->mapped = true;
                r->writable = false;
            }
        }
        break;
    }
    virtio_device_memory_changed(&f->vdev);
}

/* ---------------------------------------------------------------------- */
/* Guest scribbles                                                         */

/* Host range for a raw guest store: @area picks a region or ring area. */
static uint8_t *area_ptr(Fz *f, uint8_t area, uint16_t off, uint64_t *room)
{
    hwaddr base;
    uint64_t size;
    uint8_t *h;

    switch (area % 8) {
    case 0: base = RA_GPA; size = RA_SIZE; break;
    case 1: base = f->desc_gpa; size = ring_size(f, 0); break;
    case 2: base = f->driver_gpa; size = ring_size(f, 1); break;
    case 3: base = f->device_gpa; size = ring_size(f, 2); break;
    case 4: base = A_ITAB; size = A_DATA - A_ITAB; break;
    case 5: base = A_DATA; size = A_DATA_SIZE; break;
    case 6: base = RB_GPA; size = RB_SIZE; break;
    default: base = RC_GPA; size = RC_SIZE; break;
    }
    off %= size;
    h = guest_host(f, base + off, size - off);
    *room = size - off;
    return h;
}

static void op_write(Fz *f, Input *in)
{
    uint8_t area = in_u8(in);
    uint16_t off = in_u16(in);
    uint8_t n = in_u8(in);
    uint64_t room;
    uint8_t *h = area_ptr(f, area, off, &room);

    for (unsigned i = 0; i < n; i++) {
        uint8_t v = in_u8(in);
        if (h && i < room) {
            h[i] = v;
        }
    }
    f->honest = false;
}

static void op_write16(Fz *f, Input *in)
{
    uint8_t area = in_u8(in);
    uint16_t off = in_u16(in) & ~1u, val = in_u16(in);
    uint64_t room;
    uint8_t *h = area_ptr(f, area, off, &room);

    if (h && room >= 2 && !((uintptr_t)h & 1)) {
        g_st16(h, val);
    }
    f->honest = false;
}

static void op_raw_desc(Fz *f, Input *in)
{
    uint8_t where = in_u8(in), sel;
    uint16_t i = in_u16(in), flags, next;
    uint32_t len = UINT32_MAX;
    bool honest;
    uint64_t addr;
    void *p;

    sel = in_u8(in);
    addr = in_addr(f, in, sel, &len, &honest);
    len = in_u32(in);
    flags = in_u16(in);
    next = in_u16(in);
    if (where & 1) {
        p = guest_host(f, A_ITAB + 16ull * (i % (FZ_ITABS * FZ_CHAIN_MAX)), 16);
    } else {
        p = guest_host(f, f->desc_gpa + 16ull * (i % f->num), 16);
    }
    if (f->packed && (where & 2)) {
        /* Make it available for the driver's current wrap counter. */
        flags &= ~((1 << VRING_PACKED_DESC_F_AVAIL) | (1 << VRING_PACKED_DESC_F_USED));
        flags |= f->avail_wrap ? 1 << VRING_PACKED_DESC_F_AVAIL : 1 << VRING_PACKED_DESC_F_USED;
    }
    if (p) {
        g_desc(p, addr, len, flags, next, f->packed);
    }
    f->honest = false;
}

static void op_set_avail(Fz *f, uint16_t idx)
{
    void *drv = ring_host(f, 1), *desc = ring_host(f, 0);

    if (!f->packed) {
        if (drv) {
            g_st16(&((VRingAvail *)drv)->idx, idx);
        }
    } else if (desc) {
        VRingPackedDesc *d = (VRingPackedDesc *)desc + idx % f->num;
        g_st16(&d->flags, g_ld16(&d->flags) ^ (idx >> 8));
    }
    f->honest = false;
}

/* Notification suppression fields: the guest's to write at any time (honest). */
static void op_drv_event(Fz *f, Input *in)
{
    uint8_t kind = in_u8(in);
    uint16_t a = in_u16(in), b = in_u16(in);
    void *drv = ring_host(f, 1);

    if (!drv) {
        return;
    }
    if (f->packed) {
        VRingPackedDescEvent *ev = drv;
        g_st16(&ev->off_wrap, a);
        g_st16(&ev->flags, kind & 1 ? b & 3 : b);
    } else if (kind & 1) {
        g_st16(&((VRingAvail *)drv)->flags, a);
    } else {
        g_st16(&((VRingAvail *)drv)->ring[f->num], a);
    }
}

/* ---------------------------------------------------------------------- */
/* Invariants                                                              */

/* The core just took a notification decision (or started the queue afresh). */
static void sig_mark(Fz *f)
{
    VirtQueueStats st;

    virtio_queue_get_stats(f->vq, &st);
    f->sig_used = virtio_queue_get_used_idx(&f->vdev, 0);
    f->sig_published = st.used;
}

/*
 * Must the driver be notified of what was published since the last decision?
 * Worked out from the spec (2.7.7, 2.7.10, 2.8.10) and the driver's
 * suppression fields as they are now; split by index arithmetic, packed by
 * ring distance and lap, independently of the core's formulation.
 */
static bool notify_required(Fz *f)
{
    VirtQueueStats st;
    void *drv = ring_host(f, 1);
    uint16_t now = virtio_queue_get_used_idx(&f->vdev, 0);

    virtio_queue_get_stats(f->vq, &st);
    if (!drv || st.used == f->sig_published) {
        return false;           /* nothing published since */
    }
    if (!f->packed) {
        VRingAvail *avail = drv;
        if (!f->event_idx) {
            return !(g_ld16(&avail->flags) & VRING_AVAIL_F_NO_INTERRUPT);
        }
        if (st.used - f->sig_published >= 0x10000) {
            return false;       /* too far to tell from 16 bits: no claim */
        }
        return vring_need_event(g_ld16(&avail->ring[f->num]), now, f->sig_used);
    } else {
        const VRingPackedDescEvent *ev = drv;
        uint16_t flags = g_ld16(&ev->flags), off_wrap = g_ld16(&ev->off_wrap);
        unsigned num = f->num, old_pos = f->sig_used & 0x7fff, new_pos = now & 0x7fff;
        bool old_wrap = f->sig_used >> 15, new_wrap = now >> 15;
        unsigned off = off_wrap & 0x7fff, dist, k;
        bool ev_wrap = off_wrap >> 15, wrap_at;

        if (flags == VRING_PACKED_EVENT_FLAG_ENABLE) {
            return true;
        }
        if (flags != VRING_PACKED_EVENT_FLAG_DESC || !f->event_idx || off >= num) {
            return false;       /* DISABLE, or nothing we can judge */
        }
        /* Descriptors published since: less than a lap, or no claim. */
        dist = (new_pos + num - old_pos) % num;
        if (dist == 0 || st.used - f->sig_published > num || (new_wrap != old_wrap) != (new_pos < old_pos)) {
            return false;
        }
        /* The event names position off in the lap with wrap counter ev_wrap. */
        k = (off + num - old_pos) % num;
        wrap_at = old_pos + k < num ? old_wrap : !old_wrap;
        return k < dist && wrap_at == ev_wrap;
    }
}

/* Is all of [gpa, gpa + len) inside one mapped region (writable if @write)? */
static bool gpa_mapped(const Fz *f, hwaddr gpa, uint64_t len, bool write)
{
    for (unsigned r = 0; r < REG__COUNT; r++) {
        const Region *rg = &f->reg[r];
        if (rg->mapped && gpa >= rg->gpa && gpa - rg->gpa < rg->size && len <= rg->size - (gpa - rg->gpa)) {
            return !write || rg->writable;
        }
    }
    return false;
}

/*
 * @snapped: guest memory was snapshotted before the operation (the device was
 * broken then), so the comparison here covers the operation too.
 */
static void check_invariants(Fz *f, bool snapped)
{
    unsigned inuse = virtio_queue_inuse(f->vq);
    VRingUsed *used = f->packed ? NULL : ring_host(f, 2);

    if (used && f->honest && virtio_queue_is_running(&f->vdev, 0)) {
        /* The device publishes used->idx = its used index, nothing else writes it. */
        FZ_CHECK(g_ld16(&used->idx) == (uint16_t)virtio_queue_get_used_idx(&f->vdev, 0));
    }

    FZ_CHECK(inuse <= f->num);
    FZ_CHECK(f->nheld <= f->nflight);
    if (virtio_queue_is_running(&f->vdev, 0) && !f->vdev.broken) {
        /* A running ring lies in guest memory as it is now, writable where the device writes. */
        FZ_CHECK(gpa_mapped(f, f->desc_gpa, ring_size(f, 0), f->packed));
        FZ_CHECK(gpa_mapped(f, f->driver_gpa, ring_size(f, 1), false));
        FZ_CHECK(gpa_mapped(f, f->device_gpa, ring_size(f, 2), true));
    }
    FZ_CHECK(inuse == f->nflight + (f->in_order ? 0 : f->fills));
    if (f->vdev.broken) {
        VirtQueueElement e;
        struct iovec sg[4];

        FZ_CHECK(f->vdev.status & VIRTIO_CONFIG_S_NEEDS_RESET);
        FZ_CHECK(f->vdev.error_msg[0] != '\0');
        FZ_CHECK(f->config_notifies > 0);
        FZ_CHECK(virtqueue_pop_elem(f->vq, &e, sg, 4) == 0);
        FZ_CHECK(!virtio_should_notify(&f->vdev, f->vq));
        FZ_CHECK(virtio_queue_inuse(f->vq) == inuse);
        FZ_CHECK(!snapped || snap_same(f));
    }
}

/* ---------------------------------------------------------------------- */

enum {
    OP_WRITE, OP_WRITE16, OP_RAW_DESC, OP_SET_AVAIL, OP_DRV_EVENT, OP_DRV_POST, OP_DRV_REAP,
    OP_POP, OP_FILL, OP_FLUSH, OP_PUSH, OP_DETACH, OP_UNPOP, OP_REWIND, OP_SET_NOTIFY,
    OP_NOTIFY, OP_KICK, OP_RESTORE, OP_RESET, OP_MEMORY, OP_BATCH, OP_RESUBMIT, OP__COUNT
};

/* Ops that only the device (core) side performs: guest memory must not change while broken. */
static bool op_is_device_side(unsigned op)
{
    return op >= OP_POP && op != OP_RESET && op != OP_MEMORY && op != OP_BATCH;
}

static void run_op(Fz *f, unsigned op, Input *in)
{
    switch (op) {
    case OP_WRITE: op_write(f, in); break;
    case OP_WRITE16: op_write16(f, in); break;
    case OP_RAW_DESC: op_raw_desc(f, in); break;
    case OP_SET_AVAIL: op_set_avail(f, in_u16(in)); break;
    case OP_DRV_EVENT: op_drv_event(f, in); break;
    case OP_DRV_POST: op_drv_post(f, in); break;
    case OP_DRV_REAP: op_drv_reap(f); break;
    case OP_POP: dev_pop(f, in_u8(in)); break;
    case OP_FILL: dev_fill(f, in, false); break;
    case OP_FLUSH: dev_flush(f); break;
    case OP_PUSH: dev_fill(f, in, true); break;
    case OP_DETACH: dev_detach(f, in_u8(in)); break;
    case OP_UNPOP: dev_rewind(f, 1, true); break;
    case OP_REWIND: dev_rewind(f, in_u8(in) % 8, false); break;
    case OP_SET_NOTIFY: virtio_queue_set_notification(f->vq, in_u8(in) & 1); break;
    case OP_NOTIFY: {
        uint8_t kind = in_u8(in) % 3;
        VirtQueueStats before, after;
        bool usable = dev_usable(f), must = usable && notify_required(f), said = false;
        unsigned calls = f->queue_notifies;

        virtio_queue_get_stats(f->vq, &before);
        if (kind == 0) {
            said = virtio_should_notify(&f->vdev, f->vq);
        } else if (kind == 1) {
            virtio_notify(&f->vdev, f->vq);
            virtio_queue_get_stats(f->vq, &after);
            said = after.notifies != before.notifies;
            FZ_CHECK(f->queue_notifies - calls == (said ? 1u : 0u));
        } else {
            bool empty = virtio_queue_empty(f->vq);
            FZ_CHECK(empty || usable);
            break;
        }
        FZ_CHECK(!said || usable);
        /* A notification the driver asked for is never suppressed (spurious ones are allowed). */
        FZ_CHECK(!must || said);
        if (usable) {
            sig_mark(f);
        }
        break;
    }
    case OP_KICK: virtio_queue_notify(&f->vdev, 0); break;
    case OP_RESTORE: op_restore(f, in); break;
    case OP_RESET: op_reset(f, in_u8(in)); break;
    case OP_MEMORY: op_memory(f, in_u8(in)); break;
    case OP_RESUBMIT: {
        /* Whatever head a (hostile) vhost-user inflight region names. */
        uint8_t head = in_u8(in), how = in_u8(in);
        f->honest = false;
        f->idx_sane = false;
        dev_pop_head(f, how, head);
        break;
    }
    case OP_BATCH: {
        bool on = in_u8(in) & 1;
        virtio_queue_set_batch(f->vq, on);
        f->batch_ever |= on;
        break;
    }
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    Fz *f = &fz;
    Input in = { data, size };
    uint8_t feat = in_u8(&in), qs = in_u8(&in), place = in_u8(&in);
    unsigned ops = 0, broken_ops = 0;

    /*
     * Reset everything but the region allocations and held[] (about 280 KiB,
     * left all idle by dev_drop_all() at the end of the previous input).
     */
    {
        Region reg[REG__COUNT];
        uint8_t *snap[REG__COUNT];
        memcpy(reg, f->reg, sizeof(reg));
        memcpy(snap, f->snap, sizeof(snap));
        memset(f, 0, offsetof(Fz, held));
        memset((char *)f + offsetof(Fz, nheld), 0, sizeof(*f) - offsetof(Fz, nheld));
        memcpy(f->reg, reg, sizeof(reg));
        memcpy(f->snap, snap, sizeof(snap));
    }
    f->packed = feat & 1;
    f->in_order = feat & 2;
    f->event_idx = feat & 4;
    f->indirect = feat & 8;
    f->batch = feat & 16;
    f->notify_on_empty = feat & 32;
    f->suppress = feat & 64;
    f->num = f->packed ? qs + 1u : 1u << (qs % 9);
    f->desc_gpa = placement_desc[place & 3];
    f->driver_gpa = placement_driver[(place >> 2) & 3];
    f->device_gpa = placement_device[(place >> 4) & 3];
    f->init_idx = in_u16(&in);
    if (f->packed) {
        /* Core encoding: position | wrap counter << 15. */
        f->init_idx = ((f->init_idx & 0x7fff) % f->num) | (~f->init_idx & 0x8000);
    }
    f->features = 1ULL << VIRTIO_F_VERSION_1;
    f->features |= f->packed ? 1ULL << VIRTIO_F_RING_PACKED : 0;
    f->features |= f->in_order ? 1ULL << VIRTIO_F_IN_ORDER : 0;
    f->features |= f->event_idx ? 1ULL << VIRTIO_RING_F_EVENT_IDX : 0;
    f->features |= f->indirect ? 1ULL << VIRTIO_RING_F_INDIRECT_DESC : 0;
    f->features |= f->notify_on_empty ? 1ULL << VIRTIO_F_NOTIFY_ON_EMPTY : 0;
    f->honest = true;
    f->idx_sane = true;

    regions_alloc(f);
    regions_map(f);
    if (virtio_init(&f->vdev, "fuzz", 2, 0, &f->mem, 1, FZ_QMAX) < 0) {
        abort();
    }
    f->vq = virtio_get_queue(&f->vdev, 0);
    f->vdev.transport = &fz_transport;
    virtio_queue_set_handler(&f->vdev, 0, kick_handler);
    device_setup(f);
    check_invariants(f, false);

    if (fz_trace < 0) {
        fz_trace = getenv("FZ_TRACE") != NULL;
    }
    if (fz_trace) {
        fprintf(stderr, "fz: %s num %u%s%s%s%s%s place %#x/%#x/%#x idx %#x\n",
                f->packed ? "packed" : "split", f->num, f->in_order ? " in_order" : "",
                f->event_idx ? " event_idx" : "", f->indirect ? " indirect" : "",
                f->batch ? " batch" : "", f->notify_on_empty ? " notify_on_empty" : "",
                (unsigned)f->desc_gpa, (unsigned)f->driver_gpa, (unsigned)f->device_gpa, f->init_idx);
    }
    while (in.left && ops++ < FZ_MAX_OPS) {
        unsigned op = in_u8(&in) % OP__COUNT;
        /*
         * A broken device must leave guest memory alone. Checked for the first
         * operations after the break (copying 56 KiB per operation for the
         * rest of a long input would mostly measure memcpy).
         */
        bool watch = f->vdev.broken && op_is_device_side(op) && broken_ops++ < 32;

        if (fz_trace) {
            static const char *const names[OP__COUNT] = {
                "write", "write16", "raw_desc", "set_avail", "drv_event", "drv_post", "drv_reap",
                "pop", "fill", "flush", "push", "detach", "unpop", "rewind", "set_notify",
                "notify", "kick", "restore", "reset", "memory", "batch", "resubmit",
            };
            fprintf(stderr, "fz: op %-10s inuse %u held %u flight %u fills %u honest %d broken %d\n",
                    names[op], virtio_queue_inuse(f->vq), f->nheld, f->nflight, f->fills,
                    f->honest, f->vdev.broken);
        }

        if (!f->vdev.broken) {
            broken_ops = 0;
        }
        if (watch) {
            snap_take(f);
        }
        run_op(f, op, &in);
        check_invariants(f, watch);
    }

    dev_drop_all(f);
    virtio_cleanup(&f->vdev);
    return 0;
}
