/*
 * libqtest: the harness side of vdm's qtest and QMP sockets (see libqtest.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest.h"

struct QTestState {
    pid_t pid;
    int qtest_fd, qmp_fd;
    char *tmpdir, *qtest_path, *qmp_path;
    GString *rxbuf;                 /* qtest bytes not yet consumed */
    JSONStreamer qmp_stream;
    GQueue events;
    JSONValue *greeting;
    bool irq_level[256];
    int wstatus;
    bool exited;
};

static GList *live_states;          /* every started, not yet reaped vdm */
static bool handlers_installed;

const char *qtest_binary(void)
{
    const char *bin = g_getenv("QTEST_QEMU_BINARY");

    if (!bin) {
        g_error("QTEST_QEMU_BINARY is not set (meson test sets it to the vdm it built)");
    }
    return bin;
}

int qtest_timeout_seconds(void)
{
    const char *t = g_getenv("QTEST_TIMEOUT");
    int v = t ? atoi(t) : 0;

    return v > 0 ? v : 30;
}

static void kill_all_children(void)
{
    GList *l;

    for (l = live_states; l; l = l->next) {
        QTestState *s = l->data;
        if (s->pid > 0 && !s->exited) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
            s->exited = true;
        }
    }
}

static void sigabrt_handler(int sig)
{
    kill_all_children();
    signal(SIGABRT, SIG_DFL);
    raise(SIGABRT);
}

static void install_handlers(void)
{
    if (!handlers_installed) {
        handlers_installed = true;
        atexit(kill_all_children);
        signal(SIGABRT, sigabrt_handler);
        signal(SIGPIPE, SIG_IGN);
    }
}

static int listen_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(fd, 1), ==, 0);
    return fd;
}

/* Accept on @lfd within the timeout; fail if vdm dies first. */
static int accept_timeout(QTestState *s, int lfd)
{
    gint64 deadline = g_get_monotonic_time() + qtest_timeout_seconds() * G_USEC_PER_SEC;

    for (;;) {
        struct pollfd pfd = { .fd = lfd, .events = POLLIN };
        int r = poll(&pfd, 1, 100);

        if (r > 0) {
            int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
            g_assert_cmpint(fd, >=, 0);
            return fd;
        }
        if (waitpid(s->pid, &s->wstatus, WNOHANG) == s->pid) {
            s->exited = true;
            g_error("vdm exited (status 0x%x) before connecting", s->wstatus);
        }
        if (g_get_monotonic_time() > deadline) {
            g_error("vdm did not connect within %d s", qtest_timeout_seconds());
        }
    }
}

/* Wait until @fd is readable or fail after the timeout. */
static void wait_readable(QTestState *s, int fd)
{
    struct pollfd pfd = { .fd = fd, .events = POLLIN };
    int r;

    do {
        r = poll(&pfd, 1, qtest_timeout_seconds() * 1000);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        g_error("timeout waiting for vdm (pid %d)", (int)s->pid);
    }
}

static QTestState *qtest_spawn(const char *extra_args, bool handshake)
{
    QTestState *s = g_new0(QTestState, 1);
    char **extra = NULL, **argv;
    GError *err = NULL;
    int qlfd, mlfd, n = 0, i;

    install_handlers();
    if (extra_args && *extra_args && !g_shell_parse_argv(extra_args, NULL, &extra, &err)) {
        g_error("bad arguments '%s': %s", extra_args, err->message);
    }
    s->tmpdir = g_dir_make_tmp("vdm-qtest-XXXXXX", NULL);
    g_assert(s->tmpdir);
    s->qtest_path = g_build_filename(s->tmpdir, "qtest.sock", NULL);
    s->qmp_path = g_build_filename(s->tmpdir, "qmp.sock", NULL);
    qlfd = listen_unix(s->qtest_path);
    mlfd = listen_unix(s->qmp_path);

    /* as QEMU's libqtest: vdm connects to sockets the test listens on */
    argv = g_new0(char *, 16 + (extra ? g_strv_length(extra) : 0));
    argv[n++] = g_strdup(qtest_binary());
    argv[n++] = g_strdup_printf("-qtest");
    argv[n++] = g_strdup_printf("unix:%s", s->qtest_path);
    argv[n++] = g_strdup("-chardev");
    argv[n++] = g_strdup_printf("socket,path=%s,id=char0", s->qmp_path);
    argv[n++] = g_strdup("-mon");
    argv[n++] = g_strdup("chardev=char0,mode=control");
    argv[n++] = g_strdup("-display");
    argv[n++] = g_strdup("none");
    argv[n++] = g_strdup("-accel");
    argv[n++] = g_strdup("qtest");
    for (i = 0; extra && extra[i]; i++) {
        argv[n++] = g_strdup(extra[i]);
    }
    g_strfreev(extra);

    s->pid = fork();
    g_assert_cmpint(s->pid, >=, 0);
    if (s->pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execv(argv[0], argv);
        _exit(127);
    }
    g_strfreev(argv);
    live_states = g_list_prepend(live_states, s);

    s->qtest_fd = accept_timeout(s, qlfd);
    s->qmp_fd = accept_timeout(s, mlfd);
    close(qlfd);
    close(mlfd);
    s->rxbuf = g_string_new(NULL);
    json_streamer_init(&s->qmp_stream, 64 << 20);
    g_queue_init(&s->events);

    s->greeting = qtest_qmp_receive(s);
    g_assert(json_object_get(s->greeting, "QMP"));
    if (handshake) {
        JSONValue *r = qtest_qmp(s, "{\"execute\": \"qmp_capabilities\"}");
        g_assert(json_object_get(r, "return"));
        json_free(r);
    }
    return s;
}

QTestState *qtest_init(const char *extra_args)
{
    return qtest_spawn(extra_args, true);
}

QTestState *qtest_init_without_qmp_handshake(const char *extra_args)
{
    return qtest_spawn(extra_args, false);
}

QTestState *qtest_initf(const char *fmt, ...)
{
    va_list ap;
    char *args;
    QTestState *s;

    va_start(ap, fmt);
    args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    s = qtest_init(args);
    g_free(args);
    return s;
}

pid_t qtest_pid(QTestState *s)
{
    return s->pid;
}

int qtest_wait_exit(QTestState *s)
{
    gint64 deadline = g_get_monotonic_time() + qtest_timeout_seconds() * G_USEC_PER_SEC;

    while (!s->exited) {
        pid_t r = waitpid(s->pid, &s->wstatus, WNOHANG);

        if (r == s->pid) {
            s->exited = true;
            break;
        }
        if (g_get_monotonic_time() > deadline) {
            g_error("vdm (pid %d) did not exit within %d s", (int)s->pid, qtest_timeout_seconds());
        }
        g_usleep(10 * 1000);
    }
    return s->wstatus;
}

void qtest_quit(QTestState *s)
{
    if (!s->exited) {
        gint64 deadline = g_get_monotonic_time() + qtest_timeout_seconds() * G_USEC_PER_SEC;

        kill(s->pid, SIGTERM);
        while (waitpid(s->pid, &s->wstatus, WNOHANG) != s->pid) {
            if (g_get_monotonic_time() > deadline) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, &s->wstatus, 0);
                break;
            }
            g_usleep(5 * 1000);
        }
        s->exited = true;
    }
    live_states = g_list_remove(live_states, s);
    close(s->qtest_fd);
    close(s->qmp_fd);
    g_unlink(s->qtest_path);
    g_unlink(s->qmp_path);
    g_rmdir(s->tmpdir);
    g_free(s->qtest_path);
    g_free(s->qmp_path);
    g_free(s->tmpdir);
    g_string_free(s->rxbuf, TRUE);
    json_streamer_destroy(&s->qmp_stream);
    g_queue_clear_full(&s->events, (GDestroyNotify)json_free);
    json_free(s->greeting);
    g_free(s);
}

/* ---- qtest ---- */

static void send_all(QTestState *s, int fd, const void *buf, size_t len)
{
    const char *p = buf;

    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            g_error("vdm (pid %d) closed its socket: %s", (int)s->pid, g_strerror(errno));
        }
        p += n;
        len -= (size_t)n;
    }
}

void qtest_raw_send(QTestState *s, const void *buf, size_t len)
{
    send_all(s, s->qtest_fd, buf, len);
}

/* One reply line (without '\n'); "IRQ ..." lines are consumed on the way. */
static char *qtest_recv_line(QTestState *s)
{
    for (;;) {
        char *nl = memchr(s->rxbuf->str, '\n', s->rxbuf->len);
        char buf[65536];
        ssize_t n;

        if (nl) {
            size_t len = (size_t)(nl - s->rxbuf->str);
            char *line = g_strndup(s->rxbuf->str, len);
            int irq;

            g_string_erase(s->rxbuf, 0, (gssize)len + 1);
            if (sscanf(line, "IRQ raise %d", &irq) == 1 && irq >= 0 && irq < 256) {
                s->irq_level[irq] = true;
            } else if (sscanf(line, "IRQ lower %d", &irq) == 1 && irq >= 0 && irq < 256) {
                s->irq_level[irq] = false;
            } else {
                return line;
            }
            g_free(line);
            continue;
        }
        wait_readable(s, s->qtest_fd);
        n = recv(s->qtest_fd, buf, sizeof(buf), 0);
        if (n <= 0) {
            g_error("vdm (pid %d) closed the qtest socket", (int)s->pid);
        }
        g_string_append_len(s->rxbuf, buf, n);
    }
}

char *qtest_raw(QTestState *s, const char *line)
{
    send_all(s, s->qtest_fd, line, strlen(line));
    send_all(s, s->qtest_fd, "\n", 1);
    return qtest_recv_line(s);
}

static char *G_GNUC_PRINTF(2, 3) qtest_cmd_ok(QTestState *s, const char *fmt, ...)
{
    va_list ap;
    char *cmd, *reply;

    va_start(ap, fmt);
    cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    reply = qtest_raw(s, cmd);
    if (strcmp(reply, "OK") != 0 && !g_str_has_prefix(reply, "OK ")) {
        g_error("qtest '%.80s' failed: %s", cmd, reply);
    }
    g_free(cmd);
    return reply;
}

static uint64_t qtest_read_n(QTestState *s, const char *cmd, uint64_t addr)
{
    char *reply = qtest_cmd_ok(s, "%s 0x%" PRIx64, cmd, addr);
    uint64_t v = g_ascii_strtoull(reply + 3, NULL, 0);

    g_free(reply);
    return v;
}

static void qtest_ok(QTestState *s, char *reply)
{
    g_free(reply);
}

uint8_t qtest_readb(QTestState *s, uint64_t addr) { return (uint8_t)qtest_read_n(s, "readb", addr); }
uint16_t qtest_readw(QTestState *s, uint64_t addr) { return (uint16_t)qtest_read_n(s, "readw", addr); }
uint32_t qtest_readl(QTestState *s, uint64_t addr) { return (uint32_t)qtest_read_n(s, "readl", addr); }
uint64_t qtest_readq(QTestState *s, uint64_t addr) { return qtest_read_n(s, "readq", addr); }

void qtest_writeb(QTestState *s, uint64_t addr, uint8_t value)
{
    qtest_ok(s, qtest_cmd_ok(s, "writeb 0x%" PRIx64 " 0x%x", addr, value));
}

void qtest_writew(QTestState *s, uint64_t addr, uint16_t value)
{
    qtest_ok(s, qtest_cmd_ok(s, "writew 0x%" PRIx64 " 0x%x", addr, value));
}

void qtest_writel(QTestState *s, uint64_t addr, uint32_t value)
{
    qtest_ok(s, qtest_cmd_ok(s, "writel 0x%" PRIx64 " 0x%x", addr, value));
}

void qtest_writeq(QTestState *s, uint64_t addr, uint64_t value)
{
    qtest_ok(s, qtest_cmd_ok(s, "writeq 0x%" PRIx64 " 0x%" PRIx64, addr, value));
}

void qtest_memread(QTestState *s, uint64_t addr, void *data, size_t size)
{
    char *reply = qtest_cmd_ok(s, "read 0x%" PRIx64 " 0x%zx", addr, size);
    uint8_t *out = data;
    size_t i;

    g_assert(g_str_has_prefix(reply, "OK 0x"));
    g_assert_cmpuint(strlen(reply), ==, 5 + 2 * size);
    for (i = 0; i < size; i++) {
        out[i] = (uint8_t)(g_ascii_xdigit_value(reply[5 + 2 * i]) << 4 |
                           g_ascii_xdigit_value(reply[6 + 2 * i]));
    }
    g_free(reply);
}

void qtest_memwrite(QTestState *s, uint64_t addr, const void *data, size_t size)
{
    const uint8_t *in = data;
    GString *hex = g_string_sized_new(2 * size + 3);
    size_t i;

    for (i = 0; i < size; i++) {
        g_string_append_printf(hex, "%02x", in[i]);
    }
    qtest_ok(s, qtest_cmd_ok(s, "write 0x%" PRIx64 " 0x%zx 0x%s", addr, size, hex->str));
    g_string_free(hex, TRUE);
}

void qtest_bufread(QTestState *s, uint64_t addr, void *data, size_t size)
{
    char *reply = qtest_cmd_ok(s, "b64read 0x%" PRIx64 " 0x%zx", addr, size);
    gsize len;
    guchar *dec = g_base64_decode(reply + 3, &len);

    g_assert_cmpuint(len, ==, size);
    memcpy(data, dec, size);
    g_free(dec);
    g_free(reply);
}

void qtest_bufwrite(QTestState *s, uint64_t addr, const void *data, size_t size)
{
    char *enc = g_base64_encode(data, size);

    qtest_ok(s, qtest_cmd_ok(s, "b64write 0x%" PRIx64 " 0x%zx %s", addr, size, enc));
    g_free(enc);
}

void qtest_memset(QTestState *s, uint64_t addr, uint8_t pattern, size_t size)
{
    qtest_ok(s, qtest_cmd_ok(s, "memset 0x%" PRIx64 " 0x%zx 0x%02x", addr, size, pattern));
}

static uint32_t qtest_in(QTestState *s, const char *cmd, uint16_t port)
{
    char *reply = qtest_cmd_ok(s, "%s 0x%x", cmd, port);
    uint32_t v = (uint32_t)g_ascii_strtoull(reply + 3, NULL, 0);

    g_free(reply);
    return v;
}

uint8_t qtest_inb(QTestState *s, uint16_t port) { return (uint8_t)qtest_in(s, "inb", port); }
uint16_t qtest_inw(QTestState *s, uint16_t port) { return (uint16_t)qtest_in(s, "inw", port); }
uint32_t qtest_inl(QTestState *s, uint16_t port) { return qtest_in(s, "inl", port); }

void qtest_outb(QTestState *s, uint16_t port, uint8_t v)
{
    qtest_ok(s, qtest_cmd_ok(s, "outb 0x%x 0x%x", port, v));
}

void qtest_outw(QTestState *s, uint16_t port, uint16_t v)
{
    qtest_ok(s, qtest_cmd_ok(s, "outw 0x%x 0x%x", port, v));
}

void qtest_outl(QTestState *s, uint16_t port, uint32_t v)
{
    qtest_ok(s, qtest_cmd_ok(s, "outl 0x%x 0x%x", port, v));
}

static int64_t qtest_clock_reply(char *reply)
{
    int64_t v = g_ascii_strtoll(reply + 3, NULL, 10);

    g_free(reply);
    return v;
}

int64_t qtest_clock_step(QTestState *s, int64_t step)
{
    return qtest_clock_reply(qtest_cmd_ok(s, "clock_step %" PRIi64, step));
}

int64_t qtest_clock_step_next(QTestState *s)
{
    return qtest_clock_reply(qtest_cmd_ok(s, "clock_step"));
}

int64_t qtest_clock_set(QTestState *s, int64_t val)
{
    return qtest_clock_reply(qtest_cmd_ok(s, "clock_set %" PRIi64, val));
}

void qtest_irq_intercept_in(QTestState *s, const char *qom_path)
{
    qtest_ok(s, qtest_cmd_ok(s, "irq_intercept_in %s", qom_path));
}

bool qtest_get_irq(QTestState *s, int num)
{
    g_assert(num >= 0 && num < 256);
    /* a round trip first, as QEMU's libqtest: lines a QMP command caused arrive before its reply */
    qtest_inb(s, 0);
    return s->irq_level[num];
}

/* ---- QMP ---- */

JSONValue *qtest_qmp_receive(QTestState *s)
{
    for (;;) {
        char buf[4096];
        ssize_t n, i;

        wait_readable(s, s->qmp_fd);
        /* byte by byte from the socket would be slow; peek and consume what one message needs */
        n = recv(s->qmp_fd, buf, sizeof(buf), MSG_PEEK);
        if (n <= 0) {
            g_error("vdm (pid %d) closed the QMP socket", (int)s->pid);
        }
        for (i = 0; i < n; i++) {
            int r = json_streamer_feed(&s->qmp_stream, buf[i]);

            if (r != 0) {
                JSONValue *v;
                char *err = NULL;

                g_assert_cmpint(r, ==, 1);
                g_assert_cmpint(recv(s->qmp_fd, buf, (size_t)i + 1, 0), ==, i + 1);
                v = json_parse(s->qmp_stream.buf, s->qmp_stream.len, &err);
                if (!v) {
                    g_error("bad QMP output '%s': %s", s->qmp_stream.buf, err);
                }
                json_streamer_reset(&s->qmp_stream);
                return v;
            }
        }
        g_assert_cmpint(recv(s->qmp_fd, buf, (size_t)n, 0), ==, n);
    }
}

void qtest_qmp_send_raw(QTestState *s, const char *text)
{
    send_all(s, s->qmp_fd, text, strlen(text));
}

JSONValue *qtest_qmp(QTestState *s, const char *fmt, ...)
{
    va_list ap;
    char *text;

    va_start(ap, fmt);
    text = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    qtest_qmp_send_raw(s, text);
    g_free(text);
    for (;;) {
        JSONValue *msg = qtest_qmp_receive(s);

        if (json_object_get(msg, "event")) {
            g_queue_push_tail(&s->events, msg);
            continue;
        }
        return msg;
    }
}

JSONValue *qtest_qmp_eventwait(QTestState *s, const char *event)
{
    GList *l;

    for (l = s->events.head; l; l = l->next) {
        JSONValue *ev = l->data;
        if (g_strcmp0(json_get_string(json_object_get(ev, "event")), event) == 0) {
            g_queue_delete_link(&s->events, l);
            return ev;
        }
    }
    for (;;) {
        JSONValue *msg = qtest_qmp_receive(s);

        if (g_strcmp0(json_get_string(json_object_get(msg, "event")), event) == 0) {
            return msg;
        }
        json_free(msg);
    }
}

const JSONValue *qtest_qmp_greeting(QTestState *s)
{
    return s->greeting;
}

void qtest_qmp_device_add(QTestState *s, const char *driver, const char *id, const char *props)
{
    GString *args = g_string_new(NULL);
    JSONValue *r;

    g_string_append_printf(args, "\"driver\": \"%s\"", driver);
    if (id) {
        g_string_append_printf(args, ", \"id\": \"%s\"", id);
    }
    if (props && *props) {
        g_string_append_printf(args, ", %s", props);
    }
    r = qtest_qmp(s, "{\"execute\": \"device_add\", \"arguments\": {%s}}", args->str);
    g_assert_nonnull(json_object_get(r, "return"));
    json_free(r);
    g_string_free(args, TRUE);
}

void qtest_qmp_device_del_send(QTestState *s, const char *id)
{
    JSONValue *r = qtest_qmp(s, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"%s\"}}", id);

    g_assert_nonnull(json_object_get(r, "return"));
    json_free(r);
}

JSONValue *qtest_qom_get(QTestState *s, const char *path, const char *property)
{
    JSONValue *r = qtest_qmp(s, "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"%s\", "
                             "\"property\": \"%s\"}}", path, property);
    JSONValue *ret = json_object_get(r, "return"), *copy;

    g_assert_nonnull(ret);
    copy = json_copy(ret);
    json_free(r);
    return copy;
}
