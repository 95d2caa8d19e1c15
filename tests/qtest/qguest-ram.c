/*
 * Guest RAM shared between vdm and a test (see qguest-ram.h).
 */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qguest-ram.h"

const QVirtioLayout qvirtio_layouts[QVIRTIO_N_LAYOUTS] = {
    { "split", false, false },
    { "packed", true, false },
    { "split-in-order", false, true },
    { "packed-in-order", true, true },
};

void qguest_ram_init(QGuestRam *g, const char *prefix, size_t ram_size, size_t img_size)
{
    char *tmpl = g_strdup_printf("%s-XXXXXX", prefix);
    int fd;

    memset(g, 0, sizeof(*g));
    g->dir = g_dir_make_tmp(tmpl, NULL);
    g_free(tmpl);
    g_assert_nonnull(g->dir);
    g->img_path = g_build_filename(g->dir, "disk.img", NULL);
    g->mem_path = g_build_filename(g->dir, "ram", NULL);
    g->img_fd = open(g->img_path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(g->img_fd, >=, 0);
    g_assert_cmpint(ftruncate(g->img_fd, (off_t)img_size), ==, 0);
    fd = open(g->mem_path, O_RDWR | O_CREAT, 0600);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, (off_t)ram_size), ==, 0);
    g->ram = mmap(NULL, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    g_assert_true(g->ram != MAP_FAILED);
    g->ram_size = ram_size;
    close(fd);
    guest_memory_init(&g->gm);
    g_assert_cmpint(guest_memory_add(&g->gm, 0, ram_size, g->ram, true), ==, 0);
}

void qguest_ram_cleanup(QGuestRam *g)
{
    munmap(g->ram, g->ram_size);
    close(g->img_fd);
    unlink(g->img_path);
    unlink(g->mem_path);
    rmdir(g->dir);
    g_free(g->img_path);
    g_free(g->mem_path);
    g_free(g->dir);
}
