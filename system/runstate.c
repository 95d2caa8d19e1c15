/*
 * Run state, shutdown, the type registry and RAM access helpers: the
 * machine-wide state behind include/sysemu/sysemu.h.
 */
#include <glib.h>
#include <string.h>

#include "sysemu/mmio.h"
#include "sysemu/qmp.h"
#include "sysemu/sysemu.h"

static RunState current_state = RUN_STATE_PRELAUNCH;
static bool shutdown_requested;

RunState runstate_get(void)
{
    return current_state;
}

const char *runstate_name(RunState state)
{
    switch (state) {
    case RUN_STATE_PRELAUNCH: return "prelaunch";
    case RUN_STATE_RUNNING: return "running";
    case RUN_STATE_PAUSED: return "paused";
    case RUN_STATE_SHUTDOWN: return "shutdown";
    }
    return "debug";
}

bool runstate_is_running(void)
{
    return current_state == RUN_STATE_RUNNING;
}

void vm_start(void)
{
    if (current_state == RUN_STATE_RUNNING) {
        return;
    }
    qmp_event_emit("RESUME", NULL);
    current_state = RUN_STATE_RUNNING;
}

void vm_stop(void)
{
    if (current_state != RUN_STATE_RUNNING) {
        return;
    }
    current_state = RUN_STATE_PAUSED;
    qmp_event_emit("STOP", NULL);
}

static char *shutdown_reason;

static gboolean shutdown_bh(gpointer opaque)
{
    JSONValue *data = json_object();
    GMainLoop *loop = opaque;

    json_object_set(data, "guest", json_bool(false));
    json_object_set(data, "reason", json_string(shutdown_reason));
    qmp_event_emit("SHUTDOWN", data);
    current_state = RUN_STATE_SHUTDOWN;
    if (loop) {
        g_main_loop_quit(loop);
    }
    return G_SOURCE_REMOVE;
}

static GMainLoop *main_loop;

void vdm_set_main_loop(GMainLoop *loop)
{
    main_loop = loop;
}

void vdm_shutdown_request(const char *reason)
{
    if (shutdown_requested) {
        return;
    }
    shutdown_requested = true;
    shutdown_reason = g_strdup(reason);
    /* Like QEMU, the command's reply goes out first; the event and exit follow. */
    g_idle_add(shutdown_bh, main_loop);
}

bool vdm_shutdown_requested(void)
{
    return shutdown_requested;
}

/* ---- RAM access with QEMU's unassigned-memory semantics ---- */

/* The start of the first region above @addr, or 0 if none (then: to the end). */
static hwaddr next_region_start(const GuestMemory *mem, hwaddr addr)
{
    unsigned i;

    for (i = 0; i < mem->nregions; i++) {
        if (mem->regions[i].gpa > addr) {
            return mem->regions[i].gpa;
        }
    }
    return 0;
}

/*
 * Walk [addr, addr + len) region by region. @fn gets each mapped piece
 * (host != NULL) and each unassigned gap (host == NULL), with the offset of
 * the piece in the access. The access wraps at 2^64 like an address bus.
 */
typedef void MemPieceFn(uint8_t *host, uint64_t off, uint64_t n, void *opaque);

static void memory_walk(hwaddr addr, uint64_t len, bool is_write, MemPieceFn *fn, void *opaque)
{
    const GuestMemory *mem = vdm_guest_memory();
    uint64_t off = 0;

    while (off < len) {
        uint64_t n = len - off;
        uint8_t *host = guest_memory_translate(mem, addr, &n, is_write);

        if (!host) {
            hwaddr next = next_region_start(mem, addr);
            n = len - off;
            if (next > addr && next - addr < n) {
                n = next - addr;
            }
        }
        fn(host, off, n, opaque);
        off += n;
        addr += n;
    }
}

static void read_piece(uint8_t *host, uint64_t off, uint64_t n, void *opaque)
{
    uint8_t *buf = opaque;

    if (host) {
        memcpy(buf + off, host, n);
    } else {
        memset(buf + off, 0, n);
    }
}

static void write_piece(uint8_t *host, uint64_t off, uint64_t n, void *opaque)
{
    if (host) {
        memcpy(host, (const uint8_t *)opaque + off, n);
    }
}

static void set_piece(uint8_t *host, uint64_t off, uint64_t n, void *opaque)
{
    if (host) {
        memset(host, *(uint8_t *)opaque, n);
    }
}

/*
 * MMIO (mapped PCI BARs) comes first, as a higher-priority region in QEMU:
 * the access is cut at region boundaries; MMIO pieces go to the device,
 * the rest to RAM (or unassigned). Each piece is dispatched once, in
 * address order.
 */
typedef enum MemOp { MEM_READ, MEM_WRITE, MEM_SET } MemOp;

static void memory_access(hwaddr addr, uint8_t *buf, uint8_t pattern, uint64_t len, MemOp op)
{
    uint64_t off = 0;

    if (!mmio_any()) {
        switch (op) {
        case MEM_READ: memory_walk(addr, len, false, read_piece, buf); break;
        case MEM_WRITE: memory_walk(addr, len, true, write_piece, buf); break;
        case MEM_SET: memory_walk(addr, len, true, set_piece, &pattern); break;
        }
        return;
    }
    while (off < len) {
        uint64_t n;
        const void *r = mmio_lookup(addr, len - off, &n);

        if (r) {
            if (op == MEM_READ) {
                mmio_region_read(r, addr, buf + off, n);
            } else if (op == MEM_WRITE) {
                mmio_region_write(r, addr, buf + off, n);
            } else {
                uint8_t tmp[256];
                uint64_t done = 0;

                memset(tmp, pattern, sizeof(tmp));
                while (done < n) {
                    uint64_t k = n - done < sizeof(tmp) ? n - done : sizeof(tmp);
                    mmio_region_write(r, addr + done, tmp, k);
                    done += k;
                }
            }
        } else if (op == MEM_READ) {
            memory_walk(addr, n, false, read_piece, buf + off);
        } else if (op == MEM_WRITE) {
            memory_walk(addr, n, true, write_piece, buf + off);
        } else {
            memory_walk(addr, n, true, set_piece, &pattern);
        }
        off += n;
        addr += n;
    }
}

void vdm_memory_read(hwaddr addr, void *buf, uint64_t len)
{
    memory_access(addr, buf, 0, len, MEM_READ);
}

void vdm_memory_write(hwaddr addr, const void *buf, uint64_t len)
{
    memory_access(addr, (uint8_t *)buf, 0, len, MEM_WRITE);
}

void vdm_memory_set(hwaddr addr, uint8_t pattern, uint64_t len)
{
    memory_access(addr, NULL, pattern, len, MEM_SET);
}

/* ---- type registry ---- */

typedef struct TypeEntry {
    char *name, *parent;
    bool abstract;
} TypeEntry;

static GArray *types;

void type_register_simple(const char *name, const char *parent, bool abstract)
{
    TypeEntry e = { g_strdup(name), g_strdup(parent), abstract };

    if (!types) {
        types = g_array_new(FALSE, FALSE, sizeof(TypeEntry));
    }
    g_array_append_val(types, e);
}

static const TypeEntry *type_lookup(const char *name)
{
    guint i;

    for (i = 0; types && i < types->len; i++) {
        TypeEntry *e = &g_array_index(types, TypeEntry, i);
        if (strcmp(e->name, name) == 0) {
            return e;
        }
    }
    return NULL;
}

void type_foreach(TypeForeachFn *fn, void *opaque)
{
    guint i;

    for (i = 0; types && i < types->len; i++) {
        TypeEntry *e = &g_array_index(types, TypeEntry, i);
        fn(e->name, e->parent, e->abstract, opaque);
    }
}

bool type_is_a(const char *name, const char *ancestor)
{
    const TypeEntry *e = type_lookup(name);
    unsigned hops = 0;

    /* bounded walk: a registration loop is a host bug, not worth hanging on */
    while (e && hops++ < 64) {
        if (strcmp(e->name, ancestor) == 0) {
            return true;
        }
        e = e->parent ? type_lookup(e->parent) : NULL;
    }
    return false;
}
