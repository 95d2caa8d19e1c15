/*
 * PCI on the pc machine over qtest: the host bridge, configuration
 * mechanism #1, read-only registers, BAR sizing and mapping through the
 * command register, the capability list of a virtio-pci device.
 */
#include <glib.h>
#include <stdio.h>
#include <unistd.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-pci.h"
#include "qpci.h"

#define BLK_DEVFN PCI_DEVFN(4, 0)

static char *img_path;

static QTestState *start_pc_with_blk(void)
{
    return qtest_initf("-machine pc -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                       "-device virtio-blk-pci,drive=d0,addr=04.0", img_path);
}

static void test_host_bridge_at_00_0(void)
{
    QTestState *s = qtest_init("-machine pc -m 64M -nodefaults");

    g_assert_cmphex(qpci_config_readw(s, 0, PCI_VENDOR_ID), ==, 0x8086);
    g_assert_cmphex(qpci_config_readw(s, 0, PCI_DEVICE_ID), ==, 0x1237);
    g_assert_cmphex(qpci_config_readw(s, 0, PCI_CLASS_DEVICE), ==, 0x0600);
    /* an empty slot reads all-ones (master abort) */
    g_assert_cmphex(qpci_config_readl(s, PCI_DEVFN(3, 0), PCI_VENDOR_ID), ==, 0xffffffff);
    /* the enable bit clear: no configuration cycle */
    qtest_outl(s, PCI_CONFIG_ADDR_PORT, 0);
    g_assert_cmphex(qtest_inl(s, PCI_CONFIG_DATA_PORT), ==, 0xffffffff);
    /* the address latch reads back (enable, bus/dev/fn, dword-aligned register) */
    qtest_outl(s, PCI_CONFIG_ADDR_PORT, 0x80001237);
    g_assert_cmphex(qtest_inl(s, PCI_CONFIG_ADDR_PORT), ==, 0x80001234);
    /* bus 1 does not exist */
    qtest_outl(s, PCI_CONFIG_ADDR_PORT, 0x80010000);
    g_assert_cmphex(qtest_inl(s, PCI_CONFIG_DATA_PORT), ==, 0xffffffff);
    qtest_quit(s);
}

static void test_no_pci_on_machine_none(void)
{
    QTestState *s = qtest_init("-machine none -m 16M -nodefaults");

    g_assert_cmphex(qtest_inl(s, PCI_CONFIG_DATA_PORT), ==, 0xffffffff);
    qtest_quit(s);
}

static void test_virtio_blk_ids_and_readonly_header(void)
{
    QTestState *s = start_pc_with_blk();

    g_assert_cmpint(qpci_find_device(s, 0x1af4, 0x1042), ==, BLK_DEVFN);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, PCI_REVISION_ID), ==, 1);
    g_assert_cmphex(qpci_config_readw(s, BLK_DEVFN, PCI_SUBSYSTEM_VENDOR_ID), ==, 0x1af4);
    g_assert_cmphex(qpci_config_readw(s, BLK_DEVFN, PCI_CLASS_DEVICE), ==, 0x0100);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, PCI_INTERRUPT_PIN), ==, 1);
    /* read-only fields ignore writes; INTERRUPT_LINE is writable */
    qpci_config_writel(s, BLK_DEVFN, PCI_VENDOR_ID, 0x12345678);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, PCI_VENDOR_ID), ==, 0x10421af4);
    qpci_config_writeb(s, BLK_DEVFN, PCI_INTERRUPT_PIN, 3);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, PCI_INTERRUPT_PIN), ==, 1);
    qpci_config_writeb(s, BLK_DEVFN, PCI_INTERRUPT_LINE, 11);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, PCI_INTERRUPT_LINE), ==, 11);
    qtest_quit(s);
}

static void test_bar_sizing_and_mapping(void)
{
    QTestState *s = start_pc_with_blk();
    uint8_t bar4 = PCI_BASE_ADDRESS_0 + 16;
    uint64_t addr = 0xe0004000ull;

    /* BAR 4: 64-bit prefetchable, 16 KiB */
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, bar4) & 0xf, ==, 0xc);
    qpci_config_writel(s, BLK_DEVFN, bar4, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, bar4), ==, 0xffffc00c);
    qpci_config_writel(s, BLK_DEVFN, bar4 + 4, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, bar4 + 4), ==, 0xffffffff);
    g_assert_cmpuint(qpci_bar_size(s, BLK_DEVFN, 4), ==, 0x4000);
    /* an unimplemented BAR stays zero */
    qpci_config_writel(s, BLK_DEVFN, PCI_BASE_ADDRESS_0, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, PCI_BASE_ADDRESS_0), ==, 0);

    qpci_config_writel(s, BLK_DEVFN, bar4, (uint32_t)addr);
    qpci_config_writel(s, BLK_DEVFN, bar4 + 4, 0);
    /* memory decoding off: nothing there (unassigned reads zero) */
    g_assert_cmphex(qtest_readw(s, addr + VIRTIO_PCI_COMMON_NUMQ), ==, 0);
    qpci_config_writew(s, BLK_DEVFN, PCI_COMMAND, PCI_COMMAND_MEMORY);
    g_assert_cmphex(qtest_readw(s, addr + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    g_assert_cmphex(qtest_readw(s, addr + VIRTIO_PCI_COMMON_Q_SIZE), ==, 256);
    /* moving the BAR moves the registers */
    qpci_config_writel(s, BLK_DEVFN, bar4, (uint32_t)addr + 0x10000);
    g_assert_cmphex(qtest_readw(s, addr + VIRTIO_PCI_COMMON_NUMQ), ==, 0);
    g_assert_cmphex(qtest_readw(s, addr + 0x10000 + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    /* a BAR over RAM shadows it while mapped, and RAM is back when it is not */
    qtest_writel(s, 0x100000, 0xdeadbeef);
    qpci_config_writel(s, BLK_DEVFN, bar4, 0x100000);
    g_assert_cmphex(qtest_readw(s, 0x100000 + VIRTIO_PCI_COMMON_NUMQ), ==, 1);
    qpci_config_writew(s, BLK_DEVFN, PCI_COMMAND, 0);
    g_assert_cmphex(qtest_readl(s, 0x100000), ==, 0xdeadbeef);
    qtest_quit(s);
}

/*
 * QEMU 7.2's layout (lspci of a virtio-blk-pci): capabilities at rising
 * offsets in creation order, the list newest first: MSI-X 0x98, PCI cfg
 * access 0x84, notify 0x70, device 0x60, ISR 0x50, common 0x40.
 */
static void test_virtio_capability_list(void)
{
    static const struct {
        uint8_t off, type, len;
        uint32_t bar_off;
    } want[] = {
        { 0x84, VIRTIO_PCI_CAP_PCI_CFG, 20, 0 },
        { 0x70, VIRTIO_PCI_CAP_NOTIFY_CFG, 20, 0x3000 },
        { 0x60, VIRTIO_PCI_CAP_DEVICE_CFG, 16, 0x2000 },
        { 0x50, VIRTIO_PCI_CAP_ISR_CFG, 16, 0x1000 },
        { 0x40, VIRTIO_PCI_CAP_COMMON_CFG, 16, 0 },
    };
    QTestState *s = start_pc_with_blk();
    uint8_t c;

    g_assert_true(qpci_config_readw(s, BLK_DEVFN, PCI_STATUS) & PCI_STATUS_CAP_LIST);
    c = qpci_config_readb(s, BLK_DEVFN, PCI_CAPABILITY_LIST);
    /* MSI-X first: 2 vectors (num-queues + 1), table at 0 and PBA at 0x800 of BAR 1 */
    g_assert_cmphex(c, ==, 0x98);
    g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c), ==, PCI_CAP_ID_MSIX);
    g_assert_cmphex(qpci_config_readw(s, BLK_DEVFN, c + 2), ==, 1);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 4), ==, 1);
    g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 8), ==, 0x800 | 1);
    g_assert_cmpuint(qpci_bar_size(s, BLK_DEVFN, 1), ==, 0x1000);
    for (size_t n = 0; n < G_N_ELEMENTS(want); n++) {
        c = qpci_config_readb(s, BLK_DEVFN, c + 1);
        g_assert_cmphex(c, ==, want[n].off);
        g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c), ==, PCI_CAP_ID_VNDR);
        g_assert_cmpuint(qpci_config_readb(s, BLK_DEVFN, c + 2), ==, want[n].len);
        g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c + 3), ==, want[n].type);
        if (want[n].type == VIRTIO_PCI_CAP_PCI_CFG) {
            /* bar, offset, length start at 0 (the driver fills them in) */
            g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c + 4), ==, 0);
            g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 12), ==, 0);
            continue;
        }
        g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c + 4), ==, 4);
        g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 8), ==, want[n].bar_off);
        g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 12), ==, 0x1000);
        if (want[n].type == VIRTIO_PCI_CAP_NOTIFY_CFG) {
            g_assert_cmpuint(qpci_config_readl(s, BLK_DEVFN, c + 16), ==, 4);
        }
        /* these capabilities are read-only */
        qpci_config_writeb(s, BLK_DEVFN, c + 3, 0x55);
        qpci_config_writel(s, BLK_DEVFN, c + 8, 0x55);
        g_assert_cmphex(qpci_config_readb(s, BLK_DEVFN, c + 3), ==, want[n].type);
        g_assert_cmphex(qpci_config_readl(s, BLK_DEVFN, c + 8), ==, want[n].bar_off);
    }
    g_assert_cmpuint(qpci_config_readb(s, BLK_DEVFN, c + 1), ==, 0);
    qtest_quit(s);
}

static void test_device_first_free_slot(void)
{
    QTestState *s = qtest_initf("-machine pc -m 64M -drive file=%s,if=none,id=d0 "
                                "-blockdev driver=null-co,node-name=n0 "
                                "-device virtio-blk-pci,drive=d0 -device virtio-blk-pci,drive=n0,addr=5",
                                img_path);

    g_assert_cmphex(qpci_config_readl(s, PCI_DEVFN(1, 0), PCI_VENDOR_ID), ==, 0x10421af4);
    g_assert_cmphex(qpci_config_readl(s, PCI_DEVFN(5, 0), PCI_VENDOR_ID), ==, 0x10421af4);
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    char *dir = g_dir_make_tmp("vdm-pci-XXXXXX", NULL);
    FILE *f;
    int ret;

    g_test_init(&argc, &argv, NULL);
    img_path = g_build_filename(dir, "disk.img", NULL);
    f = fopen(img_path, "w");
    g_assert_nonnull(f);
    g_assert_cmpint(ftruncate(fileno(f), 1 << 20), ==, 0);
    fclose(f);
    g_test_add_func("/pci/host-bridge-at-00.0", test_host_bridge_at_00_0);
    g_test_add_func("/pci/no-pci-on-machine-none", test_no_pci_on_machine_none);
    g_test_add_func("/pci/virtio-blk-ids-and-readonly-header", test_virtio_blk_ids_and_readonly_header);
    g_test_add_func("/pci/bar-sizing-and-mapping", test_bar_sizing_and_mapping);
    g_test_add_func("/pci/virtio-capability-list", test_virtio_capability_list);
    g_test_add_func("/pci/device-first-free-slot", test_device_first_free_slot);
    ret = g_test_run();
    unlink(img_path);
    rmdir(dir);
    g_free(img_path);
    g_free(dir);
    return ret;
}
