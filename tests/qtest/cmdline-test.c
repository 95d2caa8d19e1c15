/*
 * vdm's command line: QEMU-style errors and exit codes, machine help,
 * memory backends (a shared file backend seen from the test through mmap),
 * server-mode -qtest/-qmp sockets.
 */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest.h"

/* Run vdm with @args to completion; returns the exit code, *@err gets stderr. */
static int run_vdm(const char *args, char **out, char **err)
{
    char **extra, **argv;
    GError *gerr = NULL;
    int status, n = 0, i;

    g_assert_true(g_shell_parse_argv(args, NULL, &extra, NULL));
    argv = g_new0(char *, g_strv_length(extra) + 2);
    argv[n++] = g_strdup(qtest_binary());
    for (i = 0; extra[i]; i++) {
        argv[n++] = g_strdup(extra[i]);
    }
    g_strfreev(extra);
    if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, out, err, &status, &gerr)) {
        g_error("spawn: %s", gerr->message);
    }
    g_strfreev(argv);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static void expect_failure(const char *args, const char *stderr_text)
{
    char *out, *err;

    g_assert_cmpint(run_vdm(args, &out, &err), ==, 1);
    if (!strstr(err, stderr_text)) {
        g_error("'%s': expected stderr to contain '%s', got '%s'", args, stderr_text, err);
    }
    g_free(out);
    g_free(err);
}

static void test_bad_options_exit_1(void)
{
    expect_failure("-bogus", "vdm: -bogus: invalid option");
    expect_failure("--bogus", "vdm: -bogus: invalid option");
    expect_failure("-machine none -m", "vdm: -m: requires an argument");
    expect_failure("-machine nosuch", "vdm: -machine nosuch: unsupported machine type");
    expect_failure("-machine none,frob=1", "Invalid parameter 'frob'");
    expect_failure("-accel kvm", "invalid accelerator kvm");
    expect_failure("-m 12Q", "Parameter 'size' expects");
    expect_failure("-m 99999999999999999999", "Parameter 'size' expects");
    expect_failure("-object nosuch,id=x", "invalid object type: nosuch");
    expect_failure("-object memory-backend-memfd,id=x", "can't create backend with size 0");
    expect_failure("-object memory-backend-memfd,size=1M", "Parameter 'id' is missing");
    expect_failure("-object memory-backend-memfd,id=x,size=1M,bogus=1",
                   "Property 'memory-backend-memfd.bogus' not found");
    expect_failure("-object memory-backend-file,id=x,size=1M", "mem-path property not set");
    expect_failure("-machine none,memory-backend=nope", "Memory backend 'nope' not found");
    expect_failure("-object memory-backend-memfd,id=m,size=2M -machine none,memory-backend=m -m 4M",
                   "doesn't match the value of -m");
    expect_failure("-qtest unix:/nonexistent/dir/sock", "Failed to connect");
    expect_failure("-qtest tcp:localhost:1", "is not a supported chardev");
    expect_failure("-mon chardev=nope,mode=control", "chardev \"nope\" not found");
    expect_failure("-chardev file,id=f,path=/dev/null", "is not a valid char driver name");
    expect_failure("-display gtk", "Display 'gtk' is not available");
    expect_failure("disk.img", "bare disk images are not supported");
    /* scsi-hd needs a virtio-scsi-pci bus */
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -device scsi-hd,drive=d0",
                   "No 'SCSI' bus found for device 'scsi-hd'");
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -device virtio-scsi-pci,id=s0 "
                   "-device scsi-hd,drive=d0,bus=s1.0", "Bus 's1.0' not found");
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -device virtio-scsi-pci,id=s0 "
                   "-device scsi-hd,drive=d0,scsi-id=300", "Property 'scsi-hd.scsi-id' doesn't take value '300'");
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -device virtio-scsi-pci,id=s0,max_target=3 "
                   "-device scsi-hd,drive=d0,scsi-id=4", "scsi-id 4 is above max_target 3");
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -blockdev driver=null-co,node-name=d1 "
                   "-device virtio-scsi-pci -device scsi-hd,drive=d0 -device scsi-hd,drive=d1",
                   "already has its unit");
    expect_failure("-machine pc -blockdev driver=null-co,node-name=d0 -device virtio-scsi-pci "
                   "-device scsi-hd,drive=d0 -device virtio-blk-pci,drive=d0", "already in use");
}

static void test_help_exits_0(void)
{
    char *out, *err;

    g_assert_cmpint(run_vdm("-machine help", &out, &err), ==, 0);
    g_assert_nonnull(strstr(out, "Supported machines are:"));
    g_assert_nonnull(strstr(out, "pc "));
    g_assert_nonnull(strstr(out, "(default)"));
    g_assert_nonnull(strstr(out, "none "));
    g_free(out);
    g_free(err);
    g_assert_cmpint(run_vdm("-accel help", &out, &err), ==, 0);
    g_assert_nonnull(strstr(out, "qtest"));
    g_free(out);
    g_free(err);
    g_assert_cmpint(run_vdm("-version", &out, &err), ==, 0);
    g_assert_nonnull(strstr(out, "vdm version"));
    g_free(out);
    g_free(err);
}

/* The guest sees through a file backend what the test writes into the same file, and back. */
static void test_file_backend_is_shared(void)
{
    char *path = g_build_filename(g_get_tmp_dir(), "vdm-qtest-ram-XXXXXX", NULL);
    int fd = g_mkstemp(path);
    const size_t size = 2u << 20;
    QTestState *s;
    uint8_t *map;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, size), ==, 0);
    map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert(map != MAP_FAILED);
    s = qtest_initf("-machine none,memory-backend=mem "
                    "-object memory-backend-file,id=mem,size=2M,mem-path=%s,share=on -nodefaults", path);
    qtest_writel(s, 0x1234, 0xfeedc0de);
    g_assert_cmphex(map[0x1234], ==, 0xde);
    g_assert_cmphex(map[0x1237], ==, 0xfe);
    map[size - 1] = 0x99;
    g_assert_cmphex(qtest_readb(s, size - 1), ==, 0x99);
    g_assert_cmphex(qtest_readb(s, size), ==, 0);        /* RAM ends with the backend */
    qtest_quit(s);
    munmap(map, size);
    close(fd);
    g_unlink(path);
    g_free(path);
}

static void test_memfd_backend(void)
{
    QTestState *s = qtest_init("-object memory-backend-memfd,id=mem,size=4M,share=on "
                               "-machine pc,memory-backend=mem -m 4M");

    qtest_writeq(s, (4u << 20) - 8, 0x1122334455667788ull);
    g_assert_cmphex(qtest_readq(s, (4u << 20) - 8), ==, 0x1122334455667788ull);
    g_assert_cmphex(qtest_readq(s, 4u << 20), ==, 0);
    qtest_quit(s);
}

static int connect_retry(const char *path, pid_t pid)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    gint64 deadline = g_get_monotonic_time() + qtest_timeout_seconds() * G_USEC_PER_SEC;

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            return fd;
        }
        close(fd);
        g_assert_cmpint(waitpid(pid, NULL, WNOHANG), ==, 0);
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10000);
    }
}

static char *read_line(int fd)
{
    GString *s = g_string_new(NULL);
    char c;

    while (recv(fd, &c, 1, 0) == 1 && c != '\n') {
        g_string_append_c(s, c);
    }
    return g_string_free(s, FALSE);
}

/* -qtest/-qmp unix:PATH,server=on,wait=off: vdm listens, the test connects later. */
static void test_server_sockets(void)
{
    char *dir = g_dir_make_tmp("vdm-qtest-XXXXXX", NULL);
    char *qpath = g_build_filename(dir, "q.sock", NULL), *mpath = g_build_filename(dir, "m.sock", NULL);
    char *args = g_strdup_printf("-machine none -m 1M -qtest unix:%s,server=on,wait=off "
                                 "-chardev socket,id=mon0,path=%s,server=on,wait=off "
                                 "-mon chardev=mon0,mode=control -S", qpath, mpath);
    char **argv, **extra, *line;
    int qfd, mfd, status, n = 0, i;
    GPid pid;

    g_assert_true(g_shell_parse_argv(args, NULL, &extra, NULL));
    argv = g_new0(char *, g_strv_length(extra) + 2);
    argv[n++] = g_strdup(qtest_binary());
    for (i = 0; extra[i]; i++) {
        argv[n++] = g_strdup(extra[i]);
    }
    g_strfreev(extra);
    g_assert_true(g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL, NULL, &pid, NULL));
    g_strfreev(argv);

    qfd = connect_retry(qpath, pid);
    g_assert_cmpint(send(qfd, "writeb 0x10 0x7\nreadb 0x10\n", 27, 0), ==, 27);
    line = read_line(qfd);
    g_assert_cmpstr(line, ==, "OK");
    g_free(line);
    line = read_line(qfd);
    g_assert_cmpstr(line, ==, "OK 0x0000000000000007");
    g_free(line);

    mfd = connect_retry(mpath, pid);
    line = read_line(mfd);
    g_assert_nonnull(strstr(line, "\"QMP\""));
    g_free(line);
    g_assert_cmpint(send(mfd, "{\"execute\":\"qmp_capabilities\"}{\"execute\":\"query-status\"}", 56, 0), ==, 56);
    line = read_line(mfd);
    g_assert_cmpstr(line, ==, "{\"return\": {}}\r");
    g_free(line);
    line = read_line(mfd);
    g_assert_nonnull(strstr(line, "\"prelaunch\""));
    g_free(line);
    g_assert_cmpint(send(mfd, "{\"execute\":\"quit\"}", 18, 0), ==, 18);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    close(qfd);
    close(mfd);
    /* the server sockets are removed on exit */
    g_assert_false(g_file_test(qpath, G_FILE_TEST_EXISTS));
    g_rmdir(dir);
    g_free(qpath);
    g_free(mpath);
    g_free(dir);
    g_free(args);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/cmdline/bad_options_exit_1", test_bad_options_exit_1);
    g_test_add_func("/cmdline/help_exits_0", test_help_exits_0);
    g_test_add_func("/cmdline/file_backend_is_shared_with_the_test", test_file_backend_is_shared);
    g_test_add_func("/cmdline/memfd_backend", test_memfd_backend);
    g_test_add_func("/cmdline/server_mode_sockets", test_server_sockets);
    return g_test_run();
}
