/*
 * The qtest protocol against vdm: memory at every access size and offset,
 * the bulk commands, unassigned memory and ports, the clock, and malformed
 * lines (answered with an error, never a crash).
 */
#include <glib.h>
#include <string.h>

#include "libqtest.h"

#define RAM_SIZE (16u << 20)

static QTestState *start_none(void)
{
    return qtest_init("-machine none -m 16M -nodefaults");
}

static void expect_reply(QTestState *s, const char *line, const char *reply_prefix)
{
    char *reply = qtest_raw(s, line);

    if (!g_str_has_prefix(reply, reply_prefix)) {
        g_error("'%.60s': expected '%s...', got '%s'", line, reply_prefix, reply);
    }
    g_free(reply);
}

static void test_rw_every_size_and_offset(void)
{
    static const uint64_t bases[] = { 0, 0x1000 - 8, 0x7ffff9, RAM_SIZE - 16 };
    QTestState *s = start_none();
    unsigned b, off;

    for (b = 0; b < G_N_ELEMENTS(bases); b++) {
        for (off = 0; off < 8; off++) {
            uint64_t a = bases[b] + off;
            uint8_t bytes[8];

            qtest_writeq(s, a, 0x0123456789abcdefull);
            g_assert_cmphex(qtest_readq(s, a), ==, 0x0123456789abcdefull);
            g_assert_cmphex(qtest_readl(s, a), ==, 0x89abcdef);
            g_assert_cmphex(qtest_readw(s, a), ==, 0xcdef);
            g_assert_cmphex(qtest_readb(s, a), ==, 0xef);
            /* little-endian guest: lowest byte first */
            qtest_memread(s, a, bytes, 8);
            g_assert_cmphex(bytes[0], ==, 0xef);
            g_assert_cmphex(bytes[7], ==, 0x01);
            qtest_writel(s, a, 0xa1b2c3d4);
            qtest_writew(s, a + 4, 0xe5f6);
            qtest_writeb(s, a + 6, 0x07);
            g_assert_cmphex(qtest_readq(s, a), ==, 0x0107e5f6a1b2c3d4ull);
        }
    }
    qtest_quit(s);
}

static void test_bulk_roundtrip(void)
{
    static const size_t sizes[] = { 1, 2, 3, 7, 16, 255, 4096, 4097, 65537 };
    QTestState *s = start_none();
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(sizes); i++) {
        size_t n = sizes[i], j;
        uint64_t a = 0x10000 + i * 0x20003;
        uint8_t *in = g_malloc(n), *out = g_malloc(n);

        for (j = 0; j < n; j++) {
            in[j] = (uint8_t)(j * 7 + i);
        }
        qtest_memwrite(s, a, in, n);
        qtest_memread(s, a, out, n);
        g_assert_cmpmem(in, n, out, n);
        memset(out, 0, n);
        qtest_bufread(s, a, out, n);
        g_assert_cmpmem(in, n, out, n);

        for (j = 0; j < n; j++) {
            in[j] = (uint8_t)~in[j];
        }
        qtest_bufwrite(s, a, in, n);
        qtest_memread(s, a, out, n);
        g_assert_cmpmem(in, n, out, n);

        qtest_memset(s, a, 0x5a, n);
        qtest_bufread(s, a, out, n);
        for (j = 0; j < n; j++) {
            g_assert_cmphex(out[j], ==, 0x5a);
        }
        g_free(in);
        g_free(out);
    }
    qtest_quit(s);
}

static void test_write_short_data_is_zero_padded(void)
{
    QTestState *s = start_none();

    qtest_writeq(s, 0x100, UINT64_MAX);
    expect_reply(s, "write 0x100 4 0xaabb", "OK");
    g_assert_cmphex(qtest_readq(s, 0x100), ==, 0xffffffff0000bbaaull);
    /* extra data beyond SIZE is ignored */
    expect_reply(s, "write 0x100 1 0x1122334455", "OK");
    g_assert_cmphex(qtest_readl(s, 0x100), ==, 0x0000bb11);
    /* b64write with a length mismatch writes the shorter of the two */
    qtest_writeq(s, 0x200, 0);
    expect_reply(s, "b64write 0x200 2 AQIDBA==", "OK");
    g_assert_cmphex(qtest_readl(s, 0x200), ==, 0x0201);
    expect_reply(s, "read 0x200 0", "OK 0x");
    qtest_quit(s);
}

static void test_reply_formats(void)
{
    QTestState *s = start_none();
    char *r;

    qtest_writeb(s, 0, 0x5);
    r = qtest_raw(s, "readb 0x0");
    g_assert_cmpstr(r, ==, "OK 0x0000000000000005");
    g_free(r);
    r = qtest_raw(s, "inb 0x10");
    g_assert_cmpstr(r, ==, "OK 0x00ff");
    g_free(r);
    r = qtest_raw(s, "read 0x0 2");
    g_assert_cmpstr(r, ==, "OK 0x0500");
    g_free(r);
    r = qtest_raw(s, "b64read 0x0 3");
    g_assert_cmpstr(r, ==, "OK BQAA");
    g_free(r);
    r = qtest_raw(s, "endianness");
    g_assert_cmpstr(r, ==, "OK little");
    g_free(r);
    /* numbers in decimal and octal are accepted, as qemu_strtou64(base 0) */
    expect_reply(s, "writeb 16 255", "OK");
    g_assert_cmphex(qtest_readb(s, 020), ==, 0xff);
    qtest_quit(s);
}

static void test_unassigned_memory(void)
{
    QTestState *s = start_none();
    uint8_t buf[16];

    /* beyond RAM: reads are zero, writes vanish */
    qtest_writel(s, RAM_SIZE + 0x1000, 0xdeadbeef);
    g_assert_cmphex(qtest_readl(s, RAM_SIZE + 0x1000), ==, 0);
    g_assert_cmphex(qtest_readq(s, UINT64_MAX - 7), ==, 0);
    qtest_writeq(s, UINT64_MAX - 3, UINT64_MAX);      /* wraps the address space: harmless */
    qtest_memset(s, RAM_SIZE, 0xff, 1u << 20);
    /* straddling the end of RAM: the RAM part is real, the rest reads zero */
    qtest_writel(s, RAM_SIZE - 2, 0x11223344);
    g_assert_cmphex(qtest_readl(s, RAM_SIZE - 2), ==, 0x3344);
    qtest_memset(s, RAM_SIZE - 8, 0xab, 16);
    qtest_memread(s, RAM_SIZE - 8, buf, 16);
    g_assert_cmphex(buf[7], ==, 0xab);
    g_assert_cmphex(buf[8], ==, 0);
    qtest_quit(s);
}

static void test_pc_ram_layout_above_4g(void)
{
    /* 4 GiB of pc RAM: 3 GiB below 4 GiB, 1 GiB at 4 GiB (QEMU's i440fx split) */
    QTestState *s = qtest_init("-machine pc -m 4G");

    qtest_writel(s, 0xbffffffc, 0x12345678);
    g_assert_cmphex(qtest_readl(s, 0xbffffffc), ==, 0x12345678);
    qtest_writel(s, 0xc0000000, 0x12345678);
    g_assert_cmphex(qtest_readl(s, 0xc0000000), ==, 0);              /* the PCI hole */
    qtest_writel(s, 0x100000000ull, 0xcafef00d);
    g_assert_cmphex(qtest_readl(s, 0x100000000ull), ==, 0xcafef00d);
    qtest_writeb(s, 0x13fffffffull, 0x77);
    g_assert_cmphex(qtest_readb(s, 0x13fffffffull), ==, 0x77);
    qtest_writeb(s, 0x140000000ull, 0x77);
    g_assert_cmphex(qtest_readb(s, 0x140000000ull), ==, 0);
    qtest_quit(s);

    /* below 3.5 GiB everything stays at 0 */
    s = qtest_init("-machine pc -m 3G");
    qtest_writeb(s, 0xbfffffff, 0x42);
    g_assert_cmphex(qtest_readb(s, 0xbfffffff), ==, 0x42);
    qtest_writeb(s, 0x100000000ull, 0x42);
    g_assert_cmphex(qtest_readb(s, 0x100000000ull), ==, 0);
    qtest_quit(s);
}

static void test_io_ports_unassigned(void)
{
    QTestState *s = start_none();

    g_assert_cmphex(qtest_inb(s, 0x80), ==, 0xff);
    g_assert_cmphex(qtest_inw(s, 0xcf8), ==, 0xffff);
    g_assert_cmphex(qtest_inl(s, 0xcfc), ==, 0xffffffff);
    g_assert_cmphex(qtest_inl(s, 0xfffe), ==, 0xffffffff);
    qtest_outl(s, 0xcf8, 0x80000000);
    qtest_outw(s, 0x80, 0x1234);
    qtest_outb(s, 0x80, 0x12);
    g_assert_cmphex(qtest_inl(s, 0xcf8), ==, 0xffffffff);
    expect_reply(s, "inb 0x10000", "OK 0x00ff");              /* beyond 64 KiB: unassigned */
    qtest_quit(s);
}

static void test_clock(void)
{
    QTestState *s = start_none();

    g_assert_cmpint(qtest_clock_step(s, 100), ==, 100);
    g_assert_cmpint(qtest_clock_step(s, 1000000), ==, 1000100);
    /* no timer armed: stepping to the next deadline leaves the clock */
    g_assert_cmpint(qtest_clock_step_next(s), ==, 1000100);
    /* the clock never goes backwards */
    g_assert_cmpint(qtest_clock_set(s, 5), ==, 1000100);
    g_assert_cmpint(qtest_clock_step(s, -50), ==, 1000100);
    g_assert_cmpint(qtest_clock_set(s, 2000000), ==, 2000000);
    expect_reply(s, "clock_step 9223372036854775807", "OK 9223372036854775807");
    qtest_quit(s);
}

static void test_irq_intercept_and_misc(void)
{
    QTestState *s = qtest_init("-machine pc -m 16M -nodefaults");

    g_assert_false(qtest_get_irq(s, 0));
    expect_reply(s, "irq_intercept_in /machine/nothing", "FAIL Unknown device");
    qtest_irq_intercept_in(s, "ioapic");
    qtest_irq_intercept_in(s, "/machine/i440fx/ioapic");   /* same device again: OK */
    expect_reply(s, "irq_intercept_out /machine/other", "FAIL Unknown device");
    expect_reply(s, "irq_intercept_out /machine/i440fx", "FAIL IRQ intercept already enabled");
    expect_reply(s, "set_irq_in /machine/nothing unnamed-gpio-in 0 1", "FAIL Unknown device");
    /* an intercepted IOAPIC input comes back as an IRQ line */
    expect_reply(s, "set_irq_in ioapic unnamed-gpio-in 5 1", "OK");
    g_assert_true(qtest_get_irq(s, 5));
    expect_reply(s, "set_irq_in ioapic unnamed-gpio-in 5 0", "OK");
    g_assert_false(qtest_get_irq(s, 5));
    expect_reply(s, "set_irq_in ioapic unnamed-gpio-in 24 1", "ERR no GPIO input unnamed-gpio-in[24]");
    expect_reply(s, "set_irq_in ioapic bogus 0 1", "ERR no GPIO input bogus[0]");
    expect_reply(s, "module_load block curl", "FAIL");
    qtest_quit(s);
}

static void test_malformed_lines(void)
{
    static const struct {
        const char *line, *reply;
    } cases[] = {
        { "", "FAIL Unknown command ''" },
        { "bogus 1 2", "FAIL Unknown command 'bogus'" },
        { "READB 0x0", "FAIL Unknown command 'READB'" },
        { "\x01\x7f", "FAIL Unknown command '?" "?'" },
        { "readb", "ERR" },
        { "readb 0x0 0x1", "ERR" },
        { "readb 0x0 ", "ERR" },
        { "readb  0x0", "ERR" },
        { "readb zz", "ERR" },
        { "readb 0x", "ERR" },
        { "readb 99999999999999999999999", "ERR" },
        { "writel 0x0", "ERR" },
        { "writel 0x0 0xg", "ERR" },
        { "read 0x0", "ERR" },
        { "read 0x0 0xffffffffffffffff", "ERR size too large" },
        { "b64read 0x0 0x7fffffffffff", "ERR size too large" },
        { "write 0x0 4 12", "ERR" },
        { "write 0x0 4 0x", "ERR" },
        { "write 0x0 4 0xzz", "ERR" },
        { "write 0x0 0xffffffffff 0x00", "ERR size too large" },
        { "b64write 0x0 4 A", "ERR" },
        { "memset 0x0 4", "ERR" },
        { "memset 0x0 x 1", "ERR" },
        { "inb", "ERR" },
        { "outb 0x80", "ERR" },
        { "clock_step abc", "ERR" },
        { "clock_step 1 2", "ERR" },
        { "clock_set", "ERR" },
        { "irq_intercept_in", "ERR" },
        { "set_irq_in a b c d", "ERR" },
        { "endianness extra", "ERR" },
    };
    QTestState *s = start_none();
    unsigned i;
    char *huge;
    size_t huge_len = (64u << 20) + 16;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        expect_reply(s, cases[i].line, cases[i].reply);
    }
    /* a line longer than the limit gets one error and the stream goes on */
    huge = g_malloc(huge_len + 1);
    memset(huge, 'a', huge_len);
    huge[huge_len] = '\n';
    qtest_raw_send(s, huge, huge_len + 1);
    g_free(huge);
    /* replies come in order: the huge line's error, then this endianness */
    expect_reply(s, "endianness", "ERR line too long");
    expect_reply(s, "endianness", "OK little");     /* reply to the previous line's command */
    expect_reply(s, "endianness", "OK little");
    /* several commands in one write, each answered in order */
    qtest_raw_send(s, "writeb 0x0 0x1\nreadb 0x0\nendian", strlen("writeb 0x0 0x1\nreadb 0x0\nendian"));
    expect_reply(s, "ness", "OK little");           /* the third endianness above */
    expect_reply(s, "endianness", "OK");            /* writeb */
    expect_reply(s, "endianness", "OK 0x0000000000000001");
    expect_reply(s, "endianness", "OK little");     /* "endian" + "ness" */
    expect_reply(s, "endianness", "OK little");
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qtest/memory/rw_every_size_and_offset", test_rw_every_size_and_offset);
    g_test_add_func("/qtest/memory/bulk_roundtrip", test_bulk_roundtrip);
    g_test_add_func("/qtest/memory/write_short_data_is_zero_padded", test_write_short_data_is_zero_padded);
    g_test_add_func("/qtest/protocol/reply_formats", test_reply_formats);
    g_test_add_func("/qtest/memory/unassigned_reads_zero_writes_ignored", test_unassigned_memory);
    g_test_add_func("/qtest/memory/pc_ram_layout_above_4g", test_pc_ram_layout_above_4g);
    g_test_add_func("/qtest/ioport/unassigned_reads_all_ones", test_io_ports_unassigned);
    g_test_add_func("/qtest/clock/step_set_never_backwards", test_clock);
    g_test_add_func("/qtest/irq/intercept_and_misc", test_irq_intercept_and_misc);
    g_test_add_func("/qtest/protocol/malformed_lines_get_errors", test_malformed_lines);
    return g_test_run();
}
