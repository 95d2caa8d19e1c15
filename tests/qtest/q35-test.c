/*
 * -machine q35 over qtest: the MCH host bridge and ICH9 LPC ids, MMCONFIG
 * (ECAM) enabled, moved and disabled through PCIEXBAR as firmware does,
 * ECAM and configuration mechanism #1 giving the same bytes, the extended
 * configuration space of conventional functions, and the machine types.
 */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "qpci.h"

#define ECAM_BASE   MCH_PCIEXBAR_DEFAULT
#define BLK_DEVFN   PCI_DEVFN(4, 0)

static char *img_path;

static QTestState *start_q35(void)
{
    return qtest_initf("-machine q35 -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                       "-device virtio-blk-pci,drive=d0,addr=04.0", img_path);
}

static uint64_t ecam(uint64_t base, int bus, int devfn, uint32_t reg)
{
    return base + ((uint64_t)bus << 20) + ((uint64_t)devfn << 12) + reg;
}

static void pciexbar_write(QTestState *s, uint64_t val)
{
    qpci_config_writel(s, 0, MCH_PCIEXBAR + 4, (uint32_t)(val >> 32));
    qpci_config_writel(s, 0, MCH_PCIEXBAR, (uint32_t)val);
}

static void test_host_bridge_and_lpc(void)
{
    QTestState *s = qtest_init("-machine q35 -m 64M -nodefaults");

    g_assert_cmphex(qpci_config_readl(s, 0, PCI_VENDOR_ID), ==, 0x29c08086);
    g_assert_cmphex(qpci_config_readw(s, 0, PCI_CLASS_DEVICE), ==, 0x0600);
    g_assert_cmphex(qpci_config_readb(s, 0, PCI_REVISION_ID), ==, 0);
    g_assert_cmphex(qpci_config_readl(s, PCI_DEVFN(0x1f, 0), PCI_VENDOR_ID), ==, 0x29188086);
    g_assert_cmphex(qpci_config_readw(s, PCI_DEVFN(0x1f, 0), PCI_CLASS_DEVICE), ==, 0x0601);
    /* PCIEXBAR out of reset: 0xb0000000, 256 MiB, disabled */
    g_assert_cmphex(qpci_config_readl(s, 0, MCH_PCIEXBAR), ==, 0xb0000000);
    g_assert_cmphex(qpci_config_readl(s, 0, MCH_PCIEXBAR + 4), ==, 0);
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, 0, 0)), ==, 0);     /* nothing there yet */
    qtest_quit(s);
}

static void test_ecam_matches_cf8(void)
{
    QTestState *s = start_q35();
    static const int devfns[] = { 0, BLK_DEVFN, PCI_DEVFN(0x1f, 0) };

    pciexbar_write(s, ECAM_BASE | MCH_PCIEXBAREN);
    for (size_t i = 0; i < G_N_ELEMENTS(devfns); i++) {
        for (uint32_t reg = 0; reg < PCI_CONFIG_SPACE_SIZE; reg += 4) {
            uint32_t v = qpci_config_readl(s, devfns[i], (uint8_t)reg);

            g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, devfns[i], reg)), ==, v);
            g_assert_cmphex(qtest_readw(s, ecam(ECAM_BASE, 0, devfns[i], reg + 2)), ==, v >> 16);
            g_assert_cmphex(qtest_readb(s, ecam(ECAM_BASE, 0, devfns[i], reg + 1)), ==, (v >> 8) & 0xff);
        }
    }
    /* a write through ECAM is seen through 0xcfc and the other way round */
    qtest_writeb(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_INTERRUPT_LINE), 0x0b);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, PCI_INTERRUPT_LINE), ==, 0x0b);
    qpci_config_writeb(s, BLK_DEVFN, PCI_INTERRUPT_LINE, 0x0a);
    g_assert_cmphex(qtest_readb(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_INTERRUPT_LINE)), ==, 0x0a);
    /* read-only registers stay read-only through ECAM */
    qtest_writel(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_VENDOR_ID), 0);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, PCI_VENDOR_ID), ==, 0x10421af4);
    /* a BAR programmed through ECAM maps: the common cfg's num_queues reads 1 */
    qtest_writel(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_BASE_ADDRESS_0 + 16), 0xe0000000);
    qtest_writel(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_BASE_ADDRESS_0 + 20), 0);
    qtest_writew(s, ecam(ECAM_BASE, 0, BLK_DEVFN, PCI_COMMAND), PCI_COMMAND_MEMORY);
    g_assert_cmphex(qtest_readw(s, 0xe0000000ull + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    /* an 8-byte access is two dword accesses */
    g_assert_cmphex(qtest_readq(s, ecam(ECAM_BASE, 0, 0, 0)), ==,
                    (uint64_t)qpci_config_readl(s, 0, 4) << 32 | qpci_config_readl(s, 0, 0));
    qtest_quit(s);
}

static void test_ecam_extended_and_absent(void)
{
    QTestState *s = start_q35();

    pciexbar_write(s, ECAM_BASE | MCH_PCIEXBAREN);
    /* conventional functions: 0x100-0xfff reads all-ones, writes are dropped */
    for (uint32_t reg = 0x100; reg < 0x1000; reg += 0x2fc) {
        g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, BLK_DEVFN, reg)), ==, 0xffffffff);
        g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, 0, reg)), ==, 0xffffffff);
    }
    qtest_writel(s, ecam(ECAM_BASE, 0, BLK_DEVFN, 0x100), 0);
    g_assert_cmphex(qtest_readw(s, ecam(ECAM_BASE, 0, BLK_DEVFN, 0xffe)), ==, 0xffff);
    g_assert_cmphex(qtest_readb(s, ecam(ECAM_BASE, 0, BLK_DEVFN, 0xfff)), ==, 0xff);
    /* empty functions and other buses (none exist) */
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, PCI_DEVFN(3, 0), 0)), ==, 0xffffffff);
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 1, BLK_DEVFN, 0)), ==, 0xffffffff);
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 255, 0xff, 0xffc)), ==, 0xffffffff);
    qtest_writel(s, ecam(ECAM_BASE, 1, 0, PCI_COMMAND), 0xffff);     /* dropped */
    g_assert_cmphex(qpci_config_readw(s, 0, PCI_COMMAND), ==, 0);
    qtest_quit(s);
}

static void test_pciexbar_move_resize_disable(void)
{
    QTestState *s = start_q35();
    const uint64_t moved = 0xe8000000ull;

    pciexbar_write(s, ECAM_BASE | MCH_PCIEXBAREN);
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, BLK_DEVFN, 0)), ==, 0x10421af4);
    /* 128 MiB at 0xe8000000: the old window is gone, bus 127 is the last one decoded */
    pciexbar_write(s, moved | MCH_PCIEXBAR_LENGTH_128M | MCH_PCIEXBAREN);
    g_assert_cmphex(qpci_config_readl(s, 0, MCH_PCIEXBAR), ==, moved | MCH_PCIEXBAR_LENGTH_128M | 1);
    g_assert_cmphex(qtest_readl(s, ecam(ECAM_BASE, 0, BLK_DEVFN, 0)), ==, 0);
    g_assert_cmphex(qtest_readl(s, ecam(moved, 0, BLK_DEVFN, 0)), ==, 0x10421af4);
    g_assert_cmphex(qtest_readl(s, ecam(moved, 127, 0, 0)), ==, 0xffffffff);
    g_assert_cmphex(qtest_readl(s, ecam(moved, 128, 0, 0)), ==, 0);          /* past the window */
    /* the reserved length encoding and the enable bit clear: no window */
    pciexbar_write(s, moved | MCH_PCIEXBAR_LENGTH_MASK | MCH_PCIEXBAREN);
    g_assert_cmphex(qtest_readl(s, ecam(moved, 0, BLK_DEVFN, 0)), ==, 0);
    pciexbar_write(s, moved);
    g_assert_cmphex(qtest_readl(s, ecam(moved, 0, BLK_DEVFN, 0)), ==, 0);
    /* address bits above 36 are not decoded: the window lands below 64 GiB */
    pciexbar_write(s, 0xfff00000e0000000ull | MCH_PCIEXBAREN);
    g_assert_cmphex(qtest_readl(s, ecam(0xe0000000ull, 0, BLK_DEVFN, 0)), ==, 0x10421af4);
    qtest_quit(s);
}

static void test_machine_names(void)
{
    QTestState *s = qtest_init("-machine pc-q35-7.2 -m 64M -nodefaults");
    JSONValue *r;
    char *text;

    g_assert_cmphex(qpci_config_readl(s, 0, PCI_VENDOR_ID), ==, 0x29c08086);
    r = qtest_qmp(s, "{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": \"machine\"}}");
    text = json_to_string(r);
    g_assert_nonnull(strstr(text, "\"pc-q35-7.2-machine\""));
    g_assert_nonnull(strstr(text, "\"pc-i440fx-7.2-machine\""));
    g_free(text);
    json_free(r);
    qtest_quit(s);
    s = qtest_init("-machine pc-i440fx-8.1 -m 64M -nodefaults");
    g_assert_cmphex(qpci_config_readl(s, 0, PCI_VENDOR_ID), ==, 0x12378086);
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    int fd, ret;

    g_test_init(&argc, &argv, NULL);
    fd = g_file_open_tmp("vdm-q35-XXXXXX", &img_path, NULL);
    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    g_test_add_func("/q35/host-bridge-and-lpc", test_host_bridge_and_lpc);
    g_test_add_func("/q35/ecam-matches-cf8", test_ecam_matches_cf8);
    g_test_add_func("/q35/ecam-extended-space-and-absent-functions", test_ecam_extended_and_absent);
    g_test_add_func("/q35/pciexbar-move-resize-disable", test_pciexbar_move_resize_disable);
    g_test_add_func("/q35/machine-names", test_machine_names);
    ret = g_test_run();
    unlink(img_path);
    g_free(img_path);
    return ret;
}
