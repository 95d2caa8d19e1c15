/*
 * fw_cfg over I/O ports with the DMA interface (include/hw/nvram/fw_cfg.h).
 *
 * Context: main loop thread only (port handlers run from the qtest server).
 */
#include <glib.h>
#include <string.h>

#include "hw/nvram/fw_cfg.h"
#include "sysemu/ioport.h"

#define FW_CFG_INVALID      0xffff
#define FW_CFG_NUM_ENTRIES  (2 * FW_CFG_MAX_ENTRY)     /* generic + arch-local */

typedef struct FWCfgEntry {
    uint8_t *data;
    uint32_t len;
} FWCfgEntry;

typedef struct FWCfgFile {
    char name[FW_CFG_MAX_FILE_PATH];
    uint8_t *data;
    uint32_t len;
} FWCfgFile;

struct FWCfgState {
    GuestMemory *mem;
    FWCfgEntry entries[FW_CFG_NUM_ENTRIES];
    FWCfgFile files[FW_CFG_FILE_SLOTS];     /* sorted by name */
    unsigned nfiles;
    uint16_t cur_entry;                     /* index into entries[] or FW_CFG_INVALID */
    uint32_t cur_offset;
    uint8_t dma_addr[8];                    /* the DMA address register, big-endian bytes */
};

static void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) {
        p[i] = (uint8_t)(v >> (24 - 8 * i));
    }
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* A copy of @len bytes (glib >= 2.66 has no g_memdup2). */
static uint8_t *fw_cfg_dup(const void *data, size_t len)
{
    uint8_t *p = g_malloc(len ? len : 1);

    if (len) {
        memcpy(p, data, len);
    }
    return p;
}

/* Index into entries[] for a selector value, or FW_CFG_INVALID. */
static uint16_t entry_index(uint16_t key)
{
    uint16_t k = key & FW_CFG_ENTRY_MASK;

    if (k >= FW_CFG_MAX_ENTRY) {
        return FW_CFG_INVALID;
    }
    return (key & FW_CFG_ARCH_LOCAL) ? (uint16_t)(FW_CFG_MAX_ENTRY + k) : k;
}

void fw_cfg_add_bytes(FWCfgState *s, uint16_t key, const void *data, size_t len)
{
    uint16_t i = entry_index(key);

    /* host bugs, not guest input: keys come from this program */
    g_assert(i != FW_CFG_INVALID && len <= UINT32_MAX);
    g_free(s->entries[i].data);
    s->entries[i].data = fw_cfg_dup(data, len);
    s->entries[i].len = (uint32_t)len;
}

void fw_cfg_add_i16(FWCfgState *s, uint16_t key, uint16_t value)
{
    uint8_t b[2] = { (uint8_t)value, (uint8_t)(value >> 8) };

    fw_cfg_add_bytes(s, key, b, sizeof(b));
}

void fw_cfg_add_i32(FWCfgState *s, uint16_t key, uint32_t value)
{
    uint8_t b[4];

    for (int i = 0; i < 4; i++) {
        b[i] = (uint8_t)(value >> (8 * i));
    }
    fw_cfg_add_bytes(s, key, b, sizeof(b));
}

void fw_cfg_add_i64(FWCfgState *s, uint16_t key, uint64_t value)
{
    uint8_t b[8];

    for (int i = 0; i < 8; i++) {
        b[i] = (uint8_t)(value >> (8 * i));
    }
    fw_cfg_add_bytes(s, key, b, sizeof(b));
}

/* Rebuild FW_CFG_FILE_DIR and the file items from files[] (keys follow the sorted order). */
static void rebuild_file_dir(FWCfgState *s)
{
    size_t len = 4 + (size_t)s->nfiles * FW_CFG_FILE_ENTRY_SIZE;
    uint8_t *dir = g_malloc0(len);

    put_be32(dir, s->nfiles);
    for (unsigned i = 0; i < s->nfiles; i++) {
        uint8_t *e = dir + 4 + (size_t)i * FW_CFG_FILE_ENTRY_SIZE;
        uint16_t key = (uint16_t)(FW_CFG_FILE_FIRST + i);

        put_be32(e, s->files[i].len);
        e[4] = (uint8_t)(key >> 8);
        e[5] = (uint8_t)key;
        memcpy(e + 8, s->files[i].name, FW_CFG_MAX_FILE_PATH);
        fw_cfg_add_bytes(s, key, s->files[i].data, s->files[i].len);
    }
    fw_cfg_add_bytes(s, FW_CFG_FILE_DIR, dir, len);
    g_free(dir);
}

void fw_cfg_add_file(FWCfgState *s, const char *name, const void *data, size_t len)
{
    unsigned pos = 0;

    /* host bugs: names and sizes are this program's */
    g_assert(s->nfiles < FW_CFG_FILE_SLOTS && strlen(name) < FW_CFG_MAX_FILE_PATH && len <= UINT32_MAX);
    while (pos < s->nfiles && strcmp(s->files[pos].name, name) < 0) {
        pos++;
    }
    g_assert(pos == s->nfiles || strcmp(s->files[pos].name, name) != 0);
    memmove(&s->files[pos + 1], &s->files[pos], (s->nfiles - pos) * sizeof(s->files[0]));
    memset(&s->files[pos], 0, sizeof(s->files[pos]));
    g_strlcpy(s->files[pos].name, name, FW_CFG_MAX_FILE_PATH);
    s->files[pos].data = fw_cfg_dup(data, len);
    s->files[pos].len = (uint32_t)len;
    s->nfiles++;
    rebuild_file_dir(s);
}

static void fw_cfg_select(FWCfgState *s, uint16_t key)
{
    s->cur_offset = 0;
    s->cur_entry = entry_index(key);
}

/* Bytes left in the selected item from the current offset (0: none selected or at the end). */
static uint32_t cur_avail(const FWCfgState *s)
{
    const FWCfgEntry *e;

    if (s->cur_entry == FW_CFG_INVALID) {
        return 0;
    }
    e = &s->entries[s->cur_entry];
    return s->cur_offset < e->len ? e->len - s->cur_offset : 0;
}

static uint8_t fw_cfg_read_byte(FWCfgState *s)
{
    if (!cur_avail(s)) {
        return 0;           /* past the end or nothing selected */
    }
    return s->entries[s->cur_entry].data[s->cur_offset++];
}

/* ---- DMA ---- */

/*
 * Host pointers for [@gpa, @gpa + @len) when all of it is guest RAM, in at
 * most a few pieces; false if any byte is outside RAM or the range wraps.
 */
static bool dma_range_ok(FWCfgState *s, hwaddr gpa, uint64_t len)
{
    while (len) {
        uint64_t n = len;

        if (!guest_memory_translate(s->mem, gpa, &n, true)) {
            return false;
        }
        if (n == len) {
            return true;
        }
        if (gpa + n < gpa) {
            return false;
        }
        gpa += n;
        len -= n;
    }
    return true;
}

/* Copy @len bytes to/from guest RAM already checked with dma_range_ok; @src NULL writes zeros. */
static void dma_write_ram(FWCfgState *s, hwaddr gpa, const uint8_t *src, uint64_t len)
{
    while (len) {
        uint64_t n = len;
        uint8_t *p = guest_memory_translate(s->mem, gpa, &n, true);

        g_assert(p);    /* checked by dma_range_ok just before */
        if (src) {
            memcpy(p, src, n);
            src += n;
        } else {
            memset(p, 0, n);
        }
        gpa += n;
        len -= n;
    }
}

static bool dma_read_ram(FWCfgState *s, hwaddr gpa, uint8_t *dst, uint64_t len)
{
    while (len) {
        uint64_t n = len;
        const uint8_t *p = guest_memory_translate(s->mem, gpa, &n, false);

        if (!p) {
            return false;
        }
        memcpy(dst, p, n);
        dst += n;
        gpa += n;
        len -= n;
    }
    return true;
}

static void dma_set_control(FWCfgState *s, hwaddr desc, uint32_t control)
{
    uint8_t b[4];

    put_be32(b, control);
    if (dma_range_ok(s, desc, sizeof(b))) {
        dma_write_ram(s, desc, b, sizeof(b));
    }
}

/* One FWCfgDmaAccess at guest address @desc. */
static void fw_cfg_dma_transfer(FWCfgState *s, hwaddr desc)
{
    uint8_t d[16];
    uint32_t control, length, avail, n;
    uint64_t addr = 0;
    bool error = false;

    if (desc + sizeof(d) < desc || !dma_read_ram(s, desc, d, sizeof(d))) {
        dma_set_control(s, desc, FW_CFG_DMA_CTL_ERROR);    /* lands only if that is RAM */
        return;
    }
    control = get_be32(d);
    length = get_be32(d + 4);
    for (int i = 0; i < 8; i++) {
        addr = addr << 8 | d[8 + i];
    }
    if (control & FW_CFG_DMA_CTL_SELECT) {
        fw_cfg_select(s, (uint16_t)(control >> 16));
    }
    avail = cur_avail(s);
    if (control & FW_CFG_DMA_CTL_READ) {
        if (length && !dma_range_ok(s, addr, length)) {
            error = true;           /* a target outside RAM: nothing is written */
        } else if (length) {
            n = MIN(length, avail);
            if (n) {
                dma_write_ram(s, addr, s->entries[s->cur_entry].data + s->cur_offset, n);
                s->cur_offset += n;
            }
            /* past the end of the item the guest gets zeros, as QEMU does */
            dma_write_ram(s, addr + n, NULL, length - n);
        }
    } else if (control & FW_CFG_DMA_CTL_WRITE) {
        error = length != 0;        /* no item is writable */
    } else if (control & FW_CFG_DMA_CTL_SKIP) {
        s->cur_offset += MIN(length, avail);
    }
    dma_set_control(s, desc, error ? FW_CFG_DMA_CTL_ERROR : 0);
}

/* ---- ports ---- */

static uint32_t ctl_read(void *opaque, uint32_t offset, unsigned size)
{
    FWCfgState *s = opaque;

    if (offset == 1 && size == 1) {
        return fw_cfg_read_byte(s);
    }
    return 0;       /* the selector is write-only */
}

static void ctl_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    FWCfgState *s = opaque;

    /* a 16-bit write at 0x510 selects; data writes are ignored (QEMU >= 2.4) */
    if (offset == 0 && size == 2) {
        fw_cfg_select(s, (uint16_t)value);
    }
}

static uint32_t dma_read(void *opaque, uint32_t offset, unsigned size)
{
    static const char sig[8] = FW_CFG_DMA_SIGNATURE;
    uint32_t v = 0;

    /* the register is big-endian: byte i of the signature is at port 0x514 + i */
    for (unsigned i = 0; i < size && offset + i < 8; i++) {
        v |= (uint32_t)(uint8_t)sig[offset + i] << (8 * i);
    }
    return v;
}

static void dma_write(void *opaque, uint32_t offset, uint32_t value, unsigned size)
{
    FWCfgState *s = opaque;
    uint64_t addr = 0;

    /* only the dword halves exist; writing the low half (0x518) starts the transfer */
    if (size != 4 || (offset != 0 && offset != 4)) {
        return;
    }
    for (unsigned i = 0; i < 4; i++) {
        s->dma_addr[offset + i] = (uint8_t)(value >> (8 * i));
    }
    if (offset == 4) {
        for (int i = 0; i < 8; i++) {
            addr = addr << 8 | s->dma_addr[i];
        }
        memset(s->dma_addr, 0, sizeof(s->dma_addr));
        fw_cfg_dma_transfer(s, addr);
    }
}

static const IOPortOps fw_cfg_ctl_ops = { .read = ctl_read, .write = ctl_write };
static const IOPortOps fw_cfg_dma_ops = { .read = dma_read, .write = dma_write };

FWCfgState *fw_cfg_init_io_dma(GuestMemory *mem)
{
    FWCfgState *s = g_new0(FWCfgState, 1);
    uint8_t uuid[16] = { 0 };

    s->mem = mem;
    s->cur_entry = FW_CFG_INVALID;
    fw_cfg_add_bytes(s, FW_CFG_SIGNATURE, "QEMU", 4);
    fw_cfg_add_i32(s, FW_CFG_ID, FW_CFG_VERSION | FW_CFG_VERSION_DMA);
    fw_cfg_add_bytes(s, FW_CFG_UUID, uuid, sizeof(uuid));
    fw_cfg_add_i16(s, FW_CFG_NOGRAPHIC, 0);
    fw_cfg_add_i16(s, FW_CFG_BOOT_MENU, 0);
    rebuild_file_dir(s);
    if (ioport_register(FW_CFG_IO_BASE, 2, &fw_cfg_ctl_ops, s) < 0 ||
        ioport_register(FW_CFG_DMA_IO_BASE, 8, &fw_cfg_dma_ops, s) < 0) {
        g_error("fw_cfg: cannot claim ports 0x510/0x514");
    }
    return s;
}

void fw_cfg_destroy(FWCfgState *s)
{
    if (!s) {
        return;
    }
    ioport_unregister(FW_CFG_IO_BASE, 2);
    ioport_unregister(FW_CFG_DMA_IO_BASE, 8);
    for (unsigned i = 0; i < FW_CFG_NUM_ENTRIES; i++) {
        g_free(s->entries[i].data);
    }
    for (unsigned i = 0; i < s->nfiles; i++) {
        g_free(s->files[i].data);
    }
    g_free(s);
}
