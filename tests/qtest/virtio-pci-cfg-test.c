/*
 * virtio-pci's PCI configuration access capability (cfg_type 5, spec
 * 4.1.4.9) over qtest: with BAR 4 never mapped, the driver reads the device
 * configuration and the common configuration and writes registers through
 * pci_cfg_data; bar/offset/length values the spec forbids or that leave the
 * BAR are ignored.
 */
#include <glib.h>
#include <unistd.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "qpci.h"

#define BLK_DEVFN PCI_DEVFN(4, 0)

static char *img_path;

typedef struct CfgWin {
    QTestState *s;
    uint8_t cap;
} CfgWin;

static void win_init(CfgWin *w)
{
    w->s = qtest_initf("-machine pc -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                       "-device virtio-blk-pci,drive=d0,addr=04.0", img_path);
    w->cap = qpci_find_cap(w->s, BLK_DEVFN, PCI_CAP_ID_VNDR, VIRTIO_PCI_CAP_PCI_CFG, 0);
    g_assert_cmphex(w->cap, ==, 0x84);
}

static void win_set(CfgWin *w, uint8_t bar, uint32_t off, uint32_t len)
{
    qpci_config_writeb(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_BAR, bar);
    qpci_config_writel(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_OFFSET, off);
    qpci_config_writel(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_LENGTH, len);
    g_assert_cmphex(qpci_config_readb(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_BAR), ==, bar);
    g_assert_cmphex(qpci_config_readl(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_OFFSET), ==, off);
}

/* A BAR 4 read of @len bytes at @off through the window (the previous data when ignored). */
static uint32_t win_read(CfgWin *w, uint32_t off, uint32_t len)
{
    win_set(w, VIRTIO_PCI_BAR, off, len);
    return qpci_config_readl(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_DATA);
}

static void win_write(CfgWin *w, uint8_t bar, uint32_t off, uint32_t len, uint32_t val)
{
    win_set(w, bar, off, len);
    qpci_config_writel(w->s, BLK_DEVFN, w->cap + VIRTIO_PCI_CFG_CAP_DATA, val);
}

static void test_read_device_and_common_cfg(void)
{
    CfgWin w;

    win_init(&w);
    /* the BAR is not mapped: memory decoding is off and its address 0 */
    g_assert_cmphex(qpci_config_readw(w.s, BLK_DEVFN, PCI_COMMAND) & PCI_COMMAND_MEMORY, ==, 0);
    /* virtio-blk config: capacity (le64) = 1 MiB / 512 */
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_DEVICE_OFFSET, 4), ==, 2048);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_DEVICE_OFFSET + 4, 4), ==, 0);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_DEVICE_OFFSET + 1, 1) & 0xff, ==, 2048 >> 8);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_DEVICE_OFFSET, 2) & 0xffff, ==, 2048);
    /* common cfg: one queue of 256 */
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_NUMQ, 2) & 0xffff, ==, 1);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_Q_SIZE, 2) & 0xffff, ==, 256);
    /* device_feature_select = 1 written through the window, then VERSION_1 (bit 32) reads back */
    win_write(&w, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_DFSELECT, 4, 1);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_DF, 4) & 1, ==, 1);
    /* status through the window; the driver-visible BAR agrees once mapped */
    win_write(&w, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_STATUS, 1) & 0xff, ==, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    {
        QVirtioPCI v;

        qvirtio_pci_init(&v, w.s, BLK_DEVFN);
        g_assert_cmphex(qvirtio_pci_get_status(&v), ==, VIRTIO_CONFIG_S_ACKNOWLEDGE);
        qvirtio_pci_set_status(&v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
        g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_STATUS, 1) & 0xff, ==,
                        VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    }
    qtest_quit(w.s);
}

static void test_bad_window_ignored(void)
{
    static const struct {
        uint8_t bar;
        uint32_t off, len;
    } bad[] = {
        { 0, VIRTIO_PCI_COMMON_STATUS, 1 },             /* not the modern BAR */
        { 1, VIRTIO_PCI_COMMON_STATUS, 1 },             /* the MSI-X BAR */
        { 5, VIRTIO_PCI_COMMON_STATUS, 1 },
        { 0xff, VIRTIO_PCI_COMMON_STATUS, 1 },
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 0 },    /* lengths other than 1, 2, 4 */
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 3 },
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 8 },
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 0xffffffff },
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS - 1, 2 },   /* misaligned */
        { VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS - 2, 4 },
        { VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE, 1 },         /* outside the BAR */
        { VIRTIO_PCI_BAR, VIRTIO_PCI_BAR_SIZE - 2, 4 },
        { VIRTIO_PCI_BAR, 0xfffffffc, 4 },
        { VIRTIO_PCI_BAR, 0xffffffff, 1 },
    };
    CfgWin w;

    win_init(&w);
    win_write(&w, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 1, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        /* a write that would set DRIVER (or reset the device) must not happen */
        win_write(&w, bad[i].bar, bad[i].off, bad[i].len,
                  0x01010101u * (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER));
        /* a read leaves pci_cfg_data as the driver wrote it */
        g_assert_cmphex(qpci_config_readl(w.s, BLK_DEVFN, w.cap + VIRTIO_PCI_CFG_CAP_DATA), ==,
                        0x01010101u * (VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER));
        win_write(&w, bad[i].bar, bad[i].off, bad[i].len, 0);
        g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_STATUS, 1) & 0xff, ==, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    }
    /* a byte write to pci_cfg_data + 1 does not trigger an access (only one touching its first byte) */
    win_set(&w, VIRTIO_PCI_BAR, VIRTIO_PCI_COMMON_STATUS, 1);
    qpci_config_writeb(w.s, BLK_DEVFN, w.cap + VIRTIO_PCI_CFG_CAP_DATA + 1, 0);
    g_assert_cmphex(win_read(&w, VIRTIO_PCI_COMMON_STATUS, 1) & 0xff, ==, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    /* the capability's own header stays read-only */
    qpci_config_writeb(w.s, BLK_DEVFN, w.cap + 3, 1);
    qpci_config_writeb(w.s, BLK_DEVFN, w.cap + 2, 0xff);
    g_assert_cmphex(qpci_config_readb(w.s, BLK_DEVFN, w.cap + 3), ==, VIRTIO_PCI_CAP_PCI_CFG);
    g_assert_cmphex(qpci_config_readb(w.s, BLK_DEVFN, w.cap + 2), ==, VIRTIO_PCI_CFG_CAP_SIZE);
    qtest_quit(w.s);
}

int main(int argc, char **argv)
{
    int fd, ret;

    g_test_init(&argc, &argv, NULL);
    fd = g_file_open_tmp("vdm-pcicfg-XXXXXX", &img_path, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    g_test_add_func("/virtio-pci/cfg-cap/reads-device-and-common-cfg-with-bar-unmapped",
                    test_read_device_and_common_cfg);
    g_test_add_func("/virtio-pci/cfg-cap/bad-bar-offset-length-ignored", test_bad_window_ignored);
    ret = g_test_run();
    unlink(img_path);
    g_free(img_path);
    return ret;
}
