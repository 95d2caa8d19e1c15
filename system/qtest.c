/*
 * The qtest protocol server (the facts are QEMU's docs/devel/qtest.rst).
 *
 * One command per '\n'-terminated line, words separated by single spaces;
 * each command gets exactly one reply line:
 *
 *   readb|readw|readl|readq ADDR       -> OK 0x%016x (value, little-endian guest)
 *   writeb|writew|writel|writeq ADDR V -> OK
 *   read ADDR SIZE                      -> OK 0x<2*SIZE hex digits>
 *   write ADDR SIZE 0xDATA              -> OK   (short DATA is zero-padded)
 *   b64read ADDR SIZE                   -> OK <base64>
 *   b64write ADDR SIZE B64DATA          -> OK   (length mismatch: the shorter wins)
 *   memset ADDR SIZE VALUE              -> OK
 *   inb|inw|inl PORT                    -> OK 0x%04x
 *   outb|outw|outl PORT VALUE           -> OK
 *   clock_step [NS] / clock_set NS      -> OK <virtual clock ns>
 *   irq_intercept_in|irq_intercept_out QOM-PATH -> OK | FAIL ...
 *   set_irq_in QOM-PATH NAME NUM LEVEL  -> OK | FAIL Unknown device
 *   endianness                          -> OK little
 *   module_load TYPE NAME               -> FAIL (no modules)
 *   anything else                       -> FAIL Unknown command '<word>'
 *
 * and, asynchronously, "IRQ raise N" / "IRQ lower N".
 *
 * QEMU asserts on malformed arguments; vdm treats the test like a guest
 * (untrusted) and replies "ERR <reason>" instead, never crashing. Accesses
 * outside RAM read zeros (unassigned memory) and ignore writes; unassigned
 * ports read all-ones.
 */
#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <string.h>

#include "sysemu/ioport.h"
#include "sysemu/qom.h"
#include "sysemu/qtest.h"
#include "sysemu/sysemu.h"
#include "sysemu/vclock.h"

typedef struct QTestState {
    Chardev *chr;
    FILE *log;
    GString *inbuf;
    bool discarding;            /* an over-long line is being skipped */
    gint64 start_us;
    char *irq_intercept_path;   /* canonical QOM path of the intercepted device */
    bool irq_intercept_out;
    bool irq_intercept_ioapic;  /* that device is the IOAPIC */
    int irq_levels[QTEST_MAX_IRQS];
} QTestState;

static QTestState *qtest;

bool qtest_enabled(void)
{
    return qtest != NULL;
}

static void qtest_log(QTestState *s, char dir, const char *line, size_t len)
{
    if (s->log) {
        double t = (g_get_monotonic_time() - s->start_us) / 1e6;
        fprintf(s->log, "[%c +%.6f] %.*s\n", dir, t, (int)len, line);
        fflush(s->log);
    }
}

/* @line ends in '\n'. */
static void qtest_send(QTestState *s, const char *line)
{
    size_t len = strlen(line);

    qtest_log(s, 'S', line, len - 1);
    chardev_write_all(s->chr, line, len);
}

static void G_GNUC_PRINTF(2, 3) qtest_sendf(QTestState *s, const char *fmt, ...)
{
    va_list ap;
    char *line;

    va_start(ap, fmt);
    line = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    qtest_send(s, line);
    g_free(line);
}

/*
 * A number as QEMU's qemu_strtou64(str, NULL, 0) takes it (0x hex, 0 octal,
 * decimal; a leading '-' wraps), but whole-word and with errors reported.
 */
static bool parse_u64(const char *str, uint64_t *out)
{
    char *end;

    if (!str || !*str || g_ascii_isspace(*str)) {
        return false;
    }
    errno = 0;
    *out = g_ascii_strtoull(str, &end, 0);
    return errno == 0 && *end == '\0';
}

static bool parse_i64(const char *str, int64_t *out)
{
    char *end;

    if (!str || !*str || g_ascii_isspace(*str)) {
        return false;
    }
    errno = 0;
    *out = g_ascii_strtoll(str, &end, 0);
    return errno == 0 && *end == '\0';
}

static unsigned access_size(char suffix)
{
    switch (suffix) {
    case 'b': return 1;
    case 'w': return 2;
    case 'l': return 4;
    case 'q': return 8;
    }
    return 0;
}

typedef struct QTestCmd {
    const char *name;
    unsigned min_args, max_args;
    void (*handler)(QTestState *s, char **words);
} QTestCmd;

static void cmd_read_n(QTestState *s, char **words)
{
    unsigned size = access_size(words[0][4]);
    uint8_t buf[8];
    uint64_t addr, value = 0;
    unsigned i;

    if (!parse_u64(words[1], &addr)) {
        qtest_send(s, "ERR invalid address\n");
        return;
    }
    vdm_memory_read(addr, buf, size);
    for (i = 0; i < size; i++) {
        value |= (uint64_t)buf[i] << (8 * i);       /* little-endian guest */
    }
    qtest_sendf(s, "OK 0x%016" PRIx64 "\n", value);
}

static void cmd_write_n(QTestState *s, char **words)
{
    unsigned size = access_size(words[0][5]);
    uint8_t buf[8];
    uint64_t addr, value;
    unsigned i;

    if (!parse_u64(words[1], &addr) || !parse_u64(words[2], &value)) {
        qtest_send(s, "ERR invalid argument\n");
        return;
    }
    for (i = 0; i < size; i++) {
        buf[i] = (uint8_t)(value >> (8 * i));       /* truncated to the access size, as QEMU */
    }
    vdm_memory_write(addr, buf, size);
    qtest_send(s, "OK\n");
}

static bool parse_addr_size(QTestState *s, char **words, uint64_t *addr, uint64_t *len)
{
    if (!parse_u64(words[1], addr) || !parse_u64(words[2], len)) {
        qtest_send(s, "ERR invalid argument\n");
        return false;
    }
    if (*len > QTEST_MAX_ACCESS) {
        qtest_send(s, "ERR size too large\n");
        return false;
    }
    return true;
}

static void cmd_read(QTestState *s, char **words)
{
    static const char hex[] = "0123456789abcdef";
    uint64_t addr, len, i;
    uint8_t *data;
    char *line, *p;

    if (!parse_addr_size(s, words, &addr, &len)) {
        return;
    }
    data = g_malloc(len ? len : 1);
    vdm_memory_read(addr, data, len);
    line = g_malloc(len * 2 + 7);
    p = line + sprintf(line, "OK 0x");
    for (i = 0; i < len; i++) {
        *p++ = hex[data[i] >> 4];
        *p++ = hex[data[i] & 15];
    }
    strcpy(p, "\n");
    qtest_send(s, line);
    g_free(line);
    g_free(data);
}

static void cmd_write(QTestState *s, char **words)
{
    uint64_t addr, len, i;
    const char *hexdata = words[3];
    size_t data_len = strlen(hexdata);
    uint8_t *data;

    if (!parse_addr_size(s, words, &addr, &len)) {
        return;
    }
    if (data_len < 3 || hexdata[0] != '0' || (hexdata[1] != 'x' && hexdata[1] != 'X')) {
        qtest_send(s, "ERR invalid argument size\n");
        return;
    }
    data = g_malloc0(len ? len : 1);
    for (i = 0; i < len && i * 2 + 4 <= data_len; i++) {
        int hi = g_ascii_xdigit_value(hexdata[i * 2 + 2]);
        int lo = g_ascii_xdigit_value(hexdata[i * 2 + 3]);
        if (hi < 0 || lo < 0) {
            g_free(data);
            qtest_send(s, "ERR invalid hex data\n");
            return;
        }
        data[i] = (uint8_t)(hi << 4 | lo);
    }
    /* bytes beyond the given data are written as zeros, as QEMU does */
    vdm_memory_write(addr, data, len);
    g_free(data);
    qtest_send(s, "OK\n");
}

static void cmd_b64read(QTestState *s, char **words)
{
    uint64_t addr, len;
    uint8_t *data;
    char *enc;

    if (!parse_addr_size(s, words, &addr, &len)) {
        return;
    }
    data = g_malloc(len ? len : 1);
    vdm_memory_read(addr, data, len);
    enc = g_base64_encode(data, len);
    qtest_sendf(s, "OK %s\n", enc);
    g_free(enc);
    g_free(data);
}

static void cmd_b64write(QTestState *s, char **words)
{
    uint64_t addr, len;
    gsize out_len;
    guchar *data;

    if (!parse_addr_size(s, words, &addr, &len)) {
        return;
    }
    if (strlen(words[3]) < 3) {
        qtest_send(s, "ERR invalid argument size\n");
        return;
    }
    data = g_base64_decode_inplace(words[3], &out_len);
    if (out_len != len) {
        /* as QEMU: log the mismatch and write the shorter of the two */
        qtest_log(s, 'D', "b64write: data length mismatch", 30);
        if (out_len > len) {
            out_len = len;
        }
    }
    vdm_memory_write(addr, data, out_len);
    qtest_send(s, "OK\n");
}

static void cmd_memset(QTestState *s, char **words)
{
    uint64_t addr, len, value;

    if (!parse_u64(words[1], &addr) || !parse_u64(words[2], &len) || !parse_u64(words[3], &value)) {
        qtest_send(s, "ERR invalid argument\n");
        return;
    }
    /* no buffer is allocated, so any length is safe; the walk skips unassigned space */
    vdm_memory_set(addr, (uint8_t)value, len);
    qtest_send(s, "OK\n");
}

static void cmd_in(QTestState *s, char **words)
{
    unsigned size = access_size(words[0][2]);
    uint64_t port;

    if (!parse_u64(words[1], &port)) {
        qtest_send(s, "ERR invalid port\n");
        return;
    }
    qtest_sendf(s, "OK 0x%04x\n", ioport_read(port, size));
}

static void cmd_out(QTestState *s, char **words)
{
    unsigned size = access_size(words[0][3]);
    uint64_t port, value;

    if (!parse_u64(words[1], &port) || !parse_u64(words[2], &value)) {
        qtest_send(s, "ERR invalid argument\n");
        return;
    }
    ioport_write(port, (uint32_t)value, size);
    qtest_send(s, "OK\n");
}

static void cmd_clock_step(QTestState *s, char **words)
{
    int64_t ns, now = vclock_get_ns();

    if (words[1]) {
        if (!parse_i64(words[1], &ns)) {
            qtest_send(s, "ERR invalid argument\n");
            return;
        }
    } else {
        ns = vclock_deadline_ns();      /* -1 (no timer): the clock stays */
    }
    vclock_warp(ns > INT64_MAX - now ? INT64_MAX : now + ns);
    qtest_sendf(s, "OK %" PRIi64 "\n", vclock_get_ns());
}

static void cmd_clock_set(QTestState *s, char **words)
{
    int64_t ns;

    if (!parse_i64(words[1], &ns)) {
        qtest_send(s, "ERR invalid argument\n");
        return;
    }
    vclock_warp(ns);        /* never backwards, as QEMU's qtest_clock_warp */
    qtest_sendf(s, "OK %" PRIi64 "\n", vclock_get_ns());
}

/*
 * The only device with GPIO lines is the IOAPIC of pc/q35 (24 inputs,
 * "unnamed-gpio-in"); PCI INTx and the ACPI SCI arrive at its inputs.
 */
#define IOAPIC_TYPE     "ioapic"
#define IOAPIC_NUM_PINS 24

/*
 * As QEMU: the path must resolve to an object (absolute, or a unique
 * partial path such as "ioapic"); a second intercept of the same device is
 * OK, of another FAIL.
 */
static void cmd_irq_intercept(QTestState *s, char **words)
{
    char *canon = NULL, *type = NULL;

    if (!qom_resolve(words[1], &type, &canon)) {
        qtest_send(s, "FAIL Unknown device\n");
        return;
    }
    if (s->irq_intercept_path) {
        qtest_send(s, strcmp(s->irq_intercept_path, canon) == 0 ? "OK\n"
                   : "FAIL IRQ intercept already enabled\n");
        g_free(canon);
        g_free(type);
        return;
    }
    s->irq_intercept_path = canon;
    s->irq_intercept_ioapic = !strcmp(type, IOAPIC_TYPE);
    g_free(type);
    s->irq_intercept_out = strcmp(words[0], "irq_intercept_out") == 0;
    qtest_send(s, "OK\n");
}

/* Interrupt lines reach the test only through an input intercept on the IOAPIC. */
static bool intercepting_ioapic(const QTestState *s)
{
    return s->irq_intercept_ioapic && !s->irq_intercept_out;
}

static void cmd_set_irq_in(QTestState *s, char **words)
{
    int64_t num, level;
    char *canon = NULL, *type = NULL;
    bool ok, same;

    if (!parse_i64(words[3], &num) || !parse_i64(words[4], &level)) {
        qtest_send(s, "ERR invalid argument\n");
        return;
    }
    if (!qom_resolve(words[1], &type, &canon)) {
        qtest_send(s, "FAIL Unknown device\n");
        return;
    }
    ok = !strcmp(type, IOAPIC_TYPE) && !strcmp(words[2], "unnamed-gpio-in") && num >= 0 &&
         num < IOAPIC_NUM_PINS;
    same = s->irq_intercept_path && !strcmp(canon, s->irq_intercept_path);
    g_free(canon);
    g_free(type);
    /* QEMU asserts on a GPIO the device lacks; vdm answers ERR */
    if (!ok) {
        qtest_sendf(s, "ERR no GPIO input %s[%" PRIi64 "]\n", words[2], num);
        return;
    }
    /* an intercepted input is reported back, as QEMU's qtest_irq_handler */
    if (same && intercepting_ioapic(s)) {
        qtest_set_irq_out((int)num, level != 0);
    }
    qtest_send(s, "OK\n");
}

static void cmd_endianness(QTestState *s, char **words)
{
    qtest_send(s, "OK little\n");
}

static void cmd_module_load(QTestState *s, char **words)
{
    qtest_send(s, "FAIL\n");
}

static const QTestCmd qtest_cmds[] = {
    { "readb", 1, 1, cmd_read_n },
    { "readw", 1, 1, cmd_read_n },
    { "readl", 1, 1, cmd_read_n },
    { "readq", 1, 1, cmd_read_n },
    { "writeb", 2, 2, cmd_write_n },
    { "writew", 2, 2, cmd_write_n },
    { "writel", 2, 2, cmd_write_n },
    { "writeq", 2, 2, cmd_write_n },
    { "read", 2, 2, cmd_read },
    { "write", 3, 3, cmd_write },
    { "b64read", 2, 2, cmd_b64read },
    { "b64write", 3, 3, cmd_b64write },
    { "memset", 3, 3, cmd_memset },
    { "inb", 1, 1, cmd_in },
    { "inw", 1, 1, cmd_in },
    { "inl", 1, 1, cmd_in },
    { "outb", 2, 2, cmd_out },
    { "outw", 2, 2, cmd_out },
    { "outl", 2, 2, cmd_out },
    { "clock_step", 0, 1, cmd_clock_step },
    { "clock_set", 1, 1, cmd_clock_set },
    { "irq_intercept_in", 1, 1, cmd_irq_intercept },
    { "irq_intercept_out", 1, 1, cmd_irq_intercept },
    { "set_irq_in", 4, 4, cmd_set_irq_in },
    { "endianness", 0, 0, cmd_endianness },
    { "module_load", 2, 2, cmd_module_load },
};

static void qtest_process_line(QTestState *s, char *line, size_t len)
{
    char **words;
    unsigned nargs, i;

    qtest_log(s, 'R', line, len);
    words = g_strsplit(line, " ", 0);
    if (!words[0]) {
        /* an empty line: g_strsplit gives no words */
        g_strfreev(words);
        qtest_send(s, "FAIL Unknown command ''\n");
        return;
    }
    nargs = g_strv_length(words) - 1;
    for (i = 0; i < G_N_ELEMENTS(qtest_cmds); i++) {
        const QTestCmd *c = &qtest_cmds[i];

        if (strcmp(words[0], c->name) != 0) {
            continue;
        }
        if (nargs < c->min_args || nargs > c->max_args) {
            qtest_sendf(s, "ERR wrong number of arguments for '%s'\n", c->name);
        } else {
            c->handler(s, words);
        }
        g_strfreev(words);
        return;
    }
    {
        /* the reply is one line: control bytes in the echoed word become '?' */
        char *word = g_strndup(words[0], 64);
        char *p;
        for (p = word; *p; p++) {
            if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f) {
                *p = '?';
            }
        }
        qtest_sendf(s, "FAIL Unknown command '%s'\n", word);
        g_free(word);
    }
    g_strfreev(words);
}

static void qtest_read(void *opaque, const uint8_t *buf, size_t len)
{
    QTestState *s = opaque;
    size_t i;

    for (i = 0; i < len; i++) {
        char c = (char)buf[i];

        if (c == '\n') {
            if (s->discarding) {
                s->discarding = false;
                qtest_send(s, "ERR line too long\n");
            } else {
                char *line = g_strndup(s->inbuf->str, s->inbuf->len);
                qtest_process_line(s, line, s->inbuf->len);
                g_free(line);
            }
            g_string_truncate(s->inbuf, 0);
            if (!qtest) {
                return;
            }
            continue;
        }
        if (s->discarding) {
            continue;
        }
        if (s->inbuf->len >= QTEST_MAX_LINE) {
            s->discarding = true;
            g_string_truncate(s->inbuf, 0);
            continue;
        }
        g_string_append_c(s->inbuf, c);
    }
}

static void qtest_event(void *opaque, ChardevEvent event)
{
    QTestState *s = opaque;

    switch (event) {
    case CHR_EVENT_OPENED:
        /* a new peer starts with a clean slate, as QEMU resets irq levels */
        memset(s->irq_levels, 0, sizeof(s->irq_levels));
        g_string_truncate(s->inbuf, 0);
        s->discarding = false;
        s->start_us = g_get_monotonic_time();
        if (s->log) {
            fprintf(s->log, "[I %.6f] OPENED\n", g_get_real_time() / 1e6);
        }
        break;
    case CHR_EVENT_CLOSED:
        if (s->log) {
            fprintf(s->log, "[I +%.6f] CLOSED\n", (g_get_monotonic_time() - s->start_us) / 1e6);
        }
        break;
    }
}

bool qtest_server_init(Chardev *chr, FILE *log, char **errp)
{
    QTestState *s = g_new0(QTestState, 1);

    s->chr = chr;
    s->log = log;
    s->inbuf = g_string_new(NULL);
    s->start_us = g_get_monotonic_time();
    qtest = s;
    if (!chardev_set_frontend(chr, qtest_read, qtest_event, s)) {
        *errp = g_strdup_printf("chardev '%s' is already in use", chardev_id(chr));
        qtest = NULL;
        g_string_free(s->inbuf, TRUE);
        g_free(s);
        return false;
    }
    return true;
}

void qtest_set_irq_out(int n, int level)
{
    QTestState *s = qtest;

    if (!s || !intercepting_ioapic(s) || n < 0 || n >= QTEST_MAX_IRQS) {
        return;
    }
    level = level != 0;
    if (s->irq_levels[n] == level) {
        return;
    }
    s->irq_levels[n] = level;
    qtest_sendf(s, "IRQ %s %d\n", level ? "raise" : "lower", n);
}
