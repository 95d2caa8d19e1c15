/*
 * fw_cfg over qtest (QEMU docs/specs/fw_cfg.rst): the traditional port
 * interface (selector 0x510, data 0x511), the items QEMU's x86 machines
 * give (signature, id, RAM size, CPUs, file directory, etc/e820), the DMA
 * interface at 0x514 (read, skip, select) and hostile DMA requests, which
 * must come back with the error bit and touch nothing.
 */
#include <glib.h>
#include <string.h>

#include "hw/nvram/fw_cfg.h"
#include "libqtest.h"

#define DESC_GPA   0x100000ull      /* FWCfgDmaAccess */
#define BUF_GPA    0x200000ull      /* DMA target */

static void fw_select(QTestState *s, uint16_t key)
{
    qtest_outw(s, FW_CFG_IO_BASE, key);
}

static void fw_read(QTestState *s, void *buf, size_t len)
{
    uint8_t *p = buf;

    for (size_t i = 0; i < len; i++) {
        p[i] = qtest_inb(s, FW_CFG_IO_BASE + 1);
    }
}

static uint64_t fw_read_le(QTestState *s, uint16_t key, size_t len)
{
    uint8_t b[8] = { 0 };
    uint64_t v = 0;

    fw_select(s, key);
    fw_read(s, b, len);
    for (size_t i = len; i-- > 0;) {
        v = v << 8 | b[i];
    }
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 7; i >= 0; i--) {
        v = v << 8 | p[i];
    }
    return v;
}

/* The key and size of file @name from FW_CFG_FILE_DIR; -1 when absent. */
static int fw_find_file(QTestState *s, const char *name, uint32_t *size)
{
    uint8_t cnt[4], e[FW_CFG_FILE_ENTRY_SIZE];
    uint32_t n;

    fw_select(s, FW_CFG_FILE_DIR);
    fw_read(s, cnt, 4);
    n = be32(cnt);
    g_assert_cmpuint(n, <=, FW_CFG_FILE_SLOTS);
    for (uint32_t i = 0; i < n; i++) {
        fw_read(s, e, sizeof(e));
        if (!strncmp((char *)e + 8, name, FW_CFG_MAX_FILE_PATH)) {
            *size = be32(e);
            return e[4] << 8 | e[5];
        }
    }
    return -1;
}

/* Write a FWCfgDmaAccess at @desc, start it, return the control word the device wrote back. */
static uint32_t fw_dma(QTestState *s, uint64_t desc, uint32_t control, uint32_t length, uint64_t addr)
{
    uint8_t d[16];

    for (int i = 0; i < 4; i++) {
        d[i] = (uint8_t)(control >> (24 - 8 * i));
        d[4 + i] = (uint8_t)(length >> (24 - 8 * i));
    }
    for (int i = 0; i < 8; i++) {
        d[8 + i] = (uint8_t)(addr >> (56 - 8 * i));
    }
    qtest_memwrite(s, desc, d, sizeof(d));
    /* big-endian register: the guest writes byte-swapped dwords, high half first */
    qtest_outl(s, FW_CFG_DMA_IO_BASE, GUINT32_SWAP_LE_BE((uint32_t)(desc >> 32)));
    qtest_outl(s, FW_CFG_DMA_IO_BASE + 4, GUINT32_SWAP_LE_BE((uint32_t)desc));
    qtest_memread(s, desc, d, 4);
    return be32(d);
}

static void test_signature_and_id(void)
{
    QTestState *s = qtest_init("-machine pc -m 64M -nodefaults");
    char sig[6] = { 0 };

    fw_select(s, FW_CFG_SIGNATURE);
    fw_read(s, sig, 5);
    g_assert_cmpstr(sig, ==, "QEMU");       /* the 5th byte is past the end: 0 */
    g_assert_cmphex(fw_read_le(s, FW_CFG_ID, 4), ==, FW_CFG_VERSION | FW_CFG_VERSION_DMA);
    g_assert_cmpuint(fw_read_le(s, FW_CFG_NB_CPUS, 2), ==, 1);
    g_assert_cmpuint(fw_read_le(s, FW_CFG_MAX_CPUS, 2), ==, 1);
    /* the DMA register reads "QEMU CFG" in memory order */
    g_assert_cmphex(qtest_inl(s, FW_CFG_DMA_IO_BASE), ==, 0x554d4551);
    g_assert_cmphex(qtest_inl(s, FW_CFG_DMA_IO_BASE + 4), ==, 0x47464320);
    /* a key beyond the table selects nothing: reads are 0 */
    g_assert_cmphex(fw_read_le(s, 0x3fff, 4), ==, 0);
    g_assert_cmphex(fw_read_le(s, FW_CFG_ARCH_LOCAL | 0x3000, 4), ==, 0);
    /* selector writes of other sizes are ignored; the data port ignores writes */
    fw_select(s, FW_CFG_SIGNATURE);
    qtest_outb(s, FW_CFG_IO_BASE, FW_CFG_ID);
    qtest_outb(s, FW_CFG_IO_BASE + 1, 0x55);
    g_assert_cmphex(qtest_inb(s, FW_CFG_IO_BASE + 1), ==, 'Q');
    qtest_quit(s);
}

/* RAM size (key 0x03, what libqos' pc allocator reads) and etc/e820 for several -m values. */
static void check_ram(const char *machine, const char *m, uint64_t size, uint64_t low)
{
    QTestState *s = qtest_initf("-machine %s -m %s -nodefaults", machine, m);
    uint8_t e820[2 * E820_ENTRY_SIZE];
    uint32_t len = 0;
    int key;

    g_assert_cmphex(fw_read_le(s, FW_CFG_RAM_SIZE, 8), ==, size);
    key = fw_find_file(s, "etc/e820", &len);
    g_assert_cmpint(key, >=, FW_CFG_FILE_FIRST);
    g_assert_cmpuint(len, ==, (low < size ? 2 : 1) * E820_ENTRY_SIZE);
    fw_select(s, (uint16_t)key);
    fw_read(s, e820, len);
    g_assert_cmphex(le64(e820), ==, 0);
    g_assert_cmphex(le64(e820 + 8), ==, low);
    g_assert_cmpuint(e820[16], ==, E820_RAM);
    if (low < size) {
        g_assert_cmphex(le64(e820 + 20), ==, 0x100000000ull);
        g_assert_cmphex(le64(e820 + 28), ==, size - low);
        g_assert_cmpuint(e820[36], ==, E820_RAM);
        /* the part above 4 GiB is RAM, the hole below it is not */
        qtest_writel(s, 0x100000000ull, 0x12345678);
        g_assert_cmphex(qtest_readl(s, 0x100000000ull), ==, 0x12345678);
        qtest_writel(s, low, 0x12345678);
        g_assert_cmphex(qtest_readl(s, low), ==, 0);
    }
    qtest_quit(s);
}

static void test_ram_size_pc(void)
{
    check_ram("pc", "64M", 64ull << 20, 64ull << 20);
    check_ram("pc", "128M", 128ull << 20, 128ull << 20);
    check_ram("pc", "3583M", 3583ull << 20, 3583ull << 20);       /* below 0xe0000000: all low */
    check_ram("pc", "3584M", 3584ull << 20, 3ull << 30);          /* 3.5 GiB: 3 GiB low */
    check_ram("pc", "5G", 5ull << 30, 3ull << 30);
}

static void test_ram_size_q35(void)
{
    check_ram("q35", "64M", 64ull << 20, 64ull << 20);
    check_ram("q35", "2815M", 2815ull << 20, 2815ull << 20);      /* below 0xb0000000: all low */
    check_ram("q35", "2816M", 2816ull << 20, 2ull << 30);         /* from 0xb0000000: 2 GiB low */
    check_ram("q35", "4G", 4ull << 30, 2ull << 30);
}

static void test_file_dir(void)
{
    QTestState *s = qtest_init("-machine pc -m 64M -nodefaults");
    uint8_t cnt[4], e[FW_CFG_FILE_ENTRY_SIZE], prev[FW_CFG_MAX_FILE_PATH] = { 0 };
    uint32_t n, len;

    fw_select(s, FW_CFG_FILE_DIR);
    fw_read(s, cnt, 4);
    n = be32(cnt);
    g_assert_cmpuint(n, >=, 2);
    for (uint32_t i = 0; i < n; i++) {
        fw_read(s, e, sizeof(e));
        /* keys follow the name order from FW_CFG_FILE_FIRST; reserved is 0; names end in NUL */
        g_assert_cmpuint(e[4] << 8 | e[5], ==, FW_CFG_FILE_FIRST + i);
        g_assert_cmpuint(e[6] | e[7], ==, 0);
        g_assert(memchr(e + 8, 0, FW_CFG_MAX_FILE_PATH));
        g_assert_cmpint(strcmp((char *)prev, (char *)e + 8), <, 0);
        memcpy(prev, e + 8, sizeof(prev));
    }
    g_assert_cmpint(fw_find_file(s, "bootorder", &len), >=, FW_CFG_FILE_FIRST);
    g_assert_cmpuint(len, ==, 0);
    g_assert_cmpint(fw_find_file(s, "etc/e820", &len), >=, FW_CFG_FILE_FIRST);
    g_assert_cmpint(fw_find_file(s, "etc/no-such-file", &len), ==, -1);
    qtest_quit(s);
}

static void test_dma_read_skip_select(void)
{
    QTestState *s = qtest_init("-machine pc -m 64M -nodefaults");
    uint8_t buf[16], dir[4 + FW_CFG_FILE_ENTRY_SIZE];
    uint32_t n;

    /* select + read the signature; the 4 bytes past its end come back as zeros */
    qtest_memset(s, BUF_GPA, 0xaa, 16);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ,
                           8, BUF_GPA), ==, 0);
    qtest_memread(s, BUF_GPA, buf, 9);
    g_assert(!memcmp(buf, "QEMU\0\0\0\0", 8));
    g_assert_cmphex(buf[8], ==, 0xaa);
    /* select the id, read 2 bytes, then the next 2 continue at offset 2 */
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_ID << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 2,
                           BUF_GPA), ==, 0);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_READ, 2, BUF_GPA + 2), ==, 0);
    qtest_memread(s, BUF_GPA, buf, 4);
    g_assert_cmphex(buf[0] | buf[1] << 8 | buf[2] << 16 | buf[3] << 24, ==, 3);
    /* file dir: read the count, skip the first entry, read the second by DMA; compare with the ports */
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_FILE_DIR << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ,
                           4, BUF_GPA), ==, 0);
    qtest_memread(s, BUF_GPA, buf, 4);
    n = be32(buf);
    g_assert_cmpuint(n, >=, 2);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_SKIP, FW_CFG_FILE_ENTRY_SIZE, 0), ==, 0);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_READ, FW_CFG_FILE_ENTRY_SIZE, BUF_GPA), ==, 0);
    fw_select(s, FW_CFG_FILE_DIR);
    fw_read(s, dir, 4);
    fw_read(s, dir + 4, FW_CFG_FILE_ENTRY_SIZE);
    fw_read(s, dir + 4, FW_CFG_FILE_ENTRY_SIZE);
    {
        uint8_t got[FW_CFG_FILE_ENTRY_SIZE];

        qtest_memread(s, BUF_GPA, got, sizeof(got));
        g_assert(!memcmp(got, dir + 4, sizeof(got)));
    }
    /* a skip past the end stops at the end; a read there returns zeros */
    qtest_memset(s, BUF_GPA, 0xaa, 4);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_SKIP, 0xffffffff, 0), ==, 0);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_READ, 4, BUF_GPA), ==, 0);
    qtest_memread(s, BUF_GPA, buf, 4);
    g_assert_cmphex(be32(buf), ==, 0);
    /* control 0 (no operation) completes without touching anything */
    g_assert_cmphex(fw_dma(s, DESC_GPA, 0, 16, BUF_GPA), ==, 0);
    qtest_quit(s);
}

static void test_dma_hostile(void)
{
    QTestState *s = qtest_init("-machine pc -m 64M -nodefaults");
    const uint64_t ram_end = 64ull << 20;
    uint8_t buf[8];

    /* target outside RAM (the PCI hole): error, and RAM below it untouched */
    qtest_memset(s, ram_end - 4, 0xaa, 4);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_SIGNATURE << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ,
                           8, ram_end - 4), ==, FW_CFG_DMA_CTL_ERROR);
    qtest_memread(s, ram_end - 4, buf, 4);
    g_assert_cmphex(be32(buf), ==, 0xaaaaaaaa);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 4, 0xf0000000ull),
                    ==, FW_CFG_DMA_CTL_ERROR);
    /* a huge length that runs past the end of RAM, and one that wraps the address space */
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 0xffffffff, BUF_GPA),
                    ==, FW_CFG_DMA_CTL_ERROR);
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_DMA_CTL_READ, 0x1000, UINT64_MAX - 0x10), ==,
                    FW_CFG_DMA_CTL_ERROR);
    /* items are read-only: a write is an error */
    g_assert_cmphex(fw_dma(s, DESC_GPA, FW_CFG_RAM_SIZE << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_WRITE,
                           8, BUF_GPA), ==, FW_CFG_DMA_CTL_ERROR);
    g_assert_cmphex(fw_read_le(s, FW_CFG_RAM_SIZE, 8), ==, ram_end);
    /* a descriptor outside RAM, or straddling its end: ignored, the device keeps working */
    fw_dma(s, 0xf0000000ull, FW_CFG_DMA_CTL_READ, 4, BUF_GPA);
    qtest_outl(s, FW_CFG_DMA_IO_BASE, GUINT32_SWAP_LE_BE(0xffffffffu));
    qtest_outl(s, FW_CFG_DMA_IO_BASE + 4, GUINT32_SWAP_LE_BE(0xfffffff8u));
    qtest_outl(s, FW_CFG_DMA_IO_BASE, 0);
    qtest_outl(s, FW_CFG_DMA_IO_BASE + 4, GUINT32_SWAP_LE_BE((uint32_t)ram_end - 8));
    /* an unselected (invalid) key reads zeros without error */
    qtest_memset(s, BUF_GPA, 0xaa, 8);
    g_assert_cmphex(fw_dma(s, DESC_GPA, 0x3fffu << 16 | FW_CFG_DMA_CTL_SELECT | FW_CFG_DMA_CTL_READ, 8,
                           BUF_GPA), ==, 0);
    qtest_memread(s, BUF_GPA, buf, 8);
    g_assert_cmphex(le64(buf), ==, 0);
    /* odd-sized or misplaced DMA register writes are ignored */
    qtest_outb(s, FW_CFG_DMA_IO_BASE + 7, 0);
    qtest_outw(s, FW_CFG_DMA_IO_BASE + 6, 0);
    g_assert_cmphex(fw_read_le(s, FW_CFG_ID, 4), ==, 3);
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/fw_cfg/signature-id-cpus", test_signature_and_id);
    g_test_add_func("/fw_cfg/ram-size-e820/pc", test_ram_size_pc);
    g_test_add_func("/fw_cfg/ram-size-e820/q35", test_ram_size_q35);
    g_test_add_func("/fw_cfg/file-dir", test_file_dir);
    g_test_add_func("/fw_cfg/dma/read-skip-select", test_dma_read_skip_select);
    g_test_add_func("/fw_cfg/dma/hostile", test_dma_hostile);
    return g_test_run();
}
