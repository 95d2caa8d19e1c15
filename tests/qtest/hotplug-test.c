/*
 * PCI hotplug on -machine pc as QEMU's libqos drives it: device_add of a
 * virtio-blk-pci into an empty slot (ACPI "up" bit, GPE status, SCI on
 * IRQ 9), enumeration and a write+read data check with tests/libvdriver
 * rings through guest RAM mapped into the test; device_del only requests
 * removal ("down" bit, SCI) until the test ejects the slot through the ACPI
 * register as the guest's _EJ0 would; DEVICE_DELETED (the virtio backend's
 * first, then the device's); the slot reads all-ones; the drive serves a
 * new device_add. Plus device_add/device_del errors in QEMU's words.
 */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "hw/pci/pci.h"
#include "hw/virtio/virtio-blk.h"
#include "hw/virtio/virtio-pci.h"
#include "qblk.h"
#include "qpci.h"
#include "vdriver.h"

#define RAM_SIZE        (64u << 20)
#define IMG_SIZE        (1u << 20)
#define QUEUE_NUM       64
#define RING_BASE       0x10000ull
#define HP_SLOT         6
#define HP_DEVFN        PCI_DEVFN(HP_SLOT, 0)
#define SCI_IRQ         9
#define PCIHP_UP        0xae00
#define PCIHP_DOWN      0xae04
#define PCIHP_RMV       0xae0c
#define GPE_STS         0xafe0
#define GPE_EN          0xafe2

typedef VDriverLayout Layout;

typedef struct HP {
    QTestState *qts;
    QBlkHost g;
} HP;

static void hp_start(HP *h)
{
    memset(h, 0, sizeof(*h));
    qblk_host_init(&h->g, "vdm-hp-XXXXXX", RAM_SIZE, IMG_SIZE);
    h->qts = qtest_initf("-machine pc -object memory-backend-file,id=mem,size=64M,mem-path=%s,share=on "
                         "-machine memory-backend=mem -nodefaults "
                         "-drive file=%s,if=none,id=d0,format=raw -blockdev driver=null-co,node-name=d1",
                         h->g.mem_path, h->g.img_path);
}

static void hp_stop(HP *h)
{
    qtest_quit(h->qts);
    qblk_host_cleanup(&h->g);
}

/* Driver init (spec 3.1.1) with queue 0 on @l's layout; returns the queue. */
static VDriverQueue *blk_init(HP *h, QVirtioPCI *v, const Layout *l)
{
    VDriverQueueConfig cfg = { .num = QUEUE_NUM, .packed = l->packed, .in_order = l->in_order };
    uint64_t f, want;
    VDriverQueue *vq;

    qvirtio_pci_init(v, h->qts, HP_DEVFN);
    qvirtio_pci_set_status(v, 0);
    qvirtio_pci_set_status(v, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    f = qvirtio_pci_get_features(v);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_RING_PACKED)), ==, l->packed);
    g_assert_cmpint(!!(f & (1ULL << VIRTIO_F_IN_ORDER)), ==, l->in_order);
    want = (1ULL << VIRTIO_F_VERSION_1) | (f & ((1ULL << VIRTIO_F_RING_PACKED) | (1ULL << VIRTIO_F_IN_ORDER)));
    g_assert_true(qvirtio_pci_set_features(v, want));
    qvirtio_pci_queue_select(v, 0);
    qtest_writew(h->qts, v->common + VIRTIO_PCI_COMMON_Q_SIZE, QUEUE_NUM);
    vdriver_layout_rings(&cfg, RING_BASE);
    vq = vdriver_queue_new(&h->g.gm, &cfg);
    g_assert_nonnull(vq);
    qvirtio_pci_set_rings(v, cfg.desc, cfg.driver, cfg.device);
    qtest_writew(h->qts, v->common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    qvirtio_pci_set_status(v, qvirtio_pci_get_status(v) | VIRTIO_CONFIG_S_DRIVER_OK);
    return vq;
}

/* @n requests of @len bytes at sectors i * 8 (writes from / reads into request slot i); all must be OK. */
static void blk_io(HP *h, QVirtioPCI *v, VDriverQueue *vq, uint32_t type, unsigned n, uint32_t len)
{
    for (unsigned i = 0; i < n; i++) {
        qblk_add(&h->g, vq, i, type, i * 8, len, false);
    }
    if (vdriver_kick_prepare(vq)) {
        qvirtio_pci_notify(v, 0);
    }
    qblk_reap(&h->g, vq, n);
}

/* Read @n blocks back into cleared buffers and compare with the patterns of @seed. */
static void blk_check(HP *h, QVirtioPCI *v, VDriverQueue *vq, unsigned n, uint32_t len, unsigned seed)
{
    uint8_t *want = g_malloc(len);

    for (unsigned i = 0; i < n; i++) {
        memset(h->g.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, 0, len);
    }
    blk_io(h, v, vq, VIRTIO_BLK_T_IN, n, len);
    for (unsigned i = 0; i < n; i++) {
        qblk_fill_pattern(want, len, seed + i);
        g_assert_cmpmem(h->g.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, len, want, len);
    }
    g_free(want);
}

static void device_add_blk(HP *h, const char *id, const Layout *l)
{
    char *props = g_strdup_printf("\"drive\": \"d0\", \"addr\": \"%02x.0\", \"packed\": %s, \"in_order\": %s, "
                                  "\"queue-size\": 128, \"event_idx\": \"off\"",
                                  HP_SLOT, l->packed ? "true" : "false", l->in_order ? "true" : "false");

    qtest_qmp_device_add(h->qts, "virtio-blk-pci", id, props);
    g_free(props);
}

/* Wait for DEVICE_DELETED events until the one of @path; the backend's must come just before it. */
static void wait_deleted(QTestState *qts, const char *id, const char *path)
{
    JSONValue *ev = qtest_qmp_eventwait(qts, "DEVICE_DELETED"), *data = json_object_get(ev, "data");
    char *backend = g_strdup_printf("%s/virtio-backend", path);

    g_assert_cmpstr(json_get_string(json_object_get(data, "path")), ==, backend);
    g_assert_null(json_object_get(data, "device"));
    json_free(ev);
    ev = qtest_qmp_eventwait(qts, "DEVICE_DELETED");
    data = json_object_get(ev, "data");
    g_assert_cmpstr(json_get_string(json_object_get(data, "path")), ==, path);
    g_assert_cmpstr(json_get_string(json_object_get(data, "device")), ==, id);
    g_assert_cmpuint(json_object_size(data), ==, id ? 2 : 1);
    json_free(ev);
    g_free(backend);
}

static void test_hotplug_cycle(const void *opaque)
{
    const Layout *l = opaque;
    enum { NREQ = 4, LEN = 4096 };
    HP h;
    QVirtioPCI v;
    VDriverQueue *vq;
    JSONValue *r, *val;

    hp_start(&h);
    qtest_irq_intercept_in(h.qts, "ioapic");
    qtest_outb(h.qts, GPE_EN, 0x02);            /* the guest enables GPE.1 (PCI hotplug) */
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, 0), ==, 0xffffffff);
    g_assert_cmphex(qtest_inl(h.qts, PCIHP_RMV), ==, 0xfffffffe);

    /* hot-add: up bit (cleared by reading), GPE status, SCI until the guest clears it */
    device_add_blk(&h, "hp0", l);
    g_assert_true(qtest_get_irq(h.qts, SCI_IRQ));
    g_assert_cmphex(qtest_inb(h.qts, GPE_STS), ==, 0x02);
    g_assert_cmphex(qtest_inl(h.qts, PCIHP_UP), ==, 1u << HP_SLOT);
    g_assert_cmphex(qtest_inl(h.qts, PCIHP_UP), ==, 0);
    qtest_outb(h.qts, GPE_STS, 0x02);
    g_assert_false(qtest_get_irq(h.qts, SCI_IRQ));
    val = qtest_qom_get(h.qts, "/machine/peripheral/hp0", "hotplugged");
    g_assert_true(json_get_bool(val));
    json_free(val);
    val = qtest_qom_get(h.qts, "/machine/peripheral/hp0", "packed");
    g_assert_cmpint(json_get_bool(val), ==, l->packed);
    json_free(val);

    /* enumerate at the slot, then write + read with a data check against the image */
    g_assert_cmpint(qpci_find_device(h.qts, PCI_VENDOR_ID_REDHAT_QUMRANET,
                                     PCI_DEVICE_ID_VIRTIO_MODERN_BASE + VIRTIO_ID_BLOCK), ==, HP_DEVFN);
    vq = blk_init(&h, &v, l);
    for (unsigned i = 0; i < NREQ; i++) {
        qblk_fill_pattern(h.g.ram + qblk_slot_gpa(i) + QBLK_REQ_DATA_OFF, LEN, 10 + i);
    }
    blk_io(&h, &v, vq, VIRTIO_BLK_T_OUT, NREQ, LEN);
    for (unsigned i = 0; i < NREQ; i++) {
        uint8_t file[LEN], want[LEN];

        qblk_fill_pattern(want, LEN, 10 + i);
        g_assert_cmpint(pread(h.g.img_fd, file, LEN, (off_t)i * 8 * 512), ==, LEN);
        g_assert_cmpmem(file, LEN, want, LEN);
    }
    blk_check(&h, &v, vq, NREQ, LEN, 10);

    /* device_del only asks: the device stays and keeps working until the eject */
    qtest_qmp_device_del_send(h.qts, "hp0");
    g_assert_true(qtest_get_irq(h.qts, SCI_IRQ));
    g_assert_cmphex(qtest_inl(h.qts, PCIHP_DOWN), ==, 1u << HP_SLOT);
    g_assert_cmphex(qpci_config_readw(h.qts, HP_DEVFN, PCI_VENDOR_ID), ==, PCI_VENDOR_ID_REDHAT_QUMRANET);
    blk_check(&h, &v, vq, NREQ, LEN, 10);
    r = qtest_qmp(h.qts, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"hp0\"}}");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(r, "error"), "desc")), ==,
                    "Device hp0 is already in the process of unplug");
    json_free(r);
    val = qtest_qom_get(h.qts, "/machine/peripheral/hp0", "type");
    json_free(val);
    qtest_outb(h.qts, GPE_STS, 0x02);

    /* the guest's _EJ0: the device goes, DEVICE_DELETED, an empty slot */
    qtest_outl(h.qts, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u << HP_SLOT);
    wait_deleted(h.qts, "hp0", "/machine/peripheral/hp0");
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, 0), ==, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, PCI_BASE_ADDRESS_0 + 16), ==, 0xffffffff);
    g_assert_cmphex(qtest_inl(h.qts, PCIHP_DOWN), ==, 0);
    r = qtest_qmp(h.qts, "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/machine/peripheral/hp0\"}}");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(r, "error"), "class")), ==, "DeviceNotFound");
    json_free(r);
    vdriver_queue_free(vq);

    /* the drive is free again: a new device (same id and slot) reads what the first wrote */
    device_add_blk(&h, "hp0", l);
    vq = blk_init(&h, &v, l);
    blk_check(&h, &v, vq, NREQ, LEN, 10);
    /* and libqos' unplug helper works as it does against QEMU */
    JSONValue *ev = qpci_unplug_acpi_device_test(h.qts, "hp0", HP_SLOT);
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(ev, "data"), "path")), ==,
                    "/machine/peripheral/hp0/virtio-backend");
    json_free(ev);
    ev = qtest_qmp_eventwait(h.qts, "DEVICE_DELETED");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(ev, "data"), "device")), ==, "hp0");
    json_free(ev);
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, 0), ==, 0xffffffff);
    vdriver_queue_free(vq);
    hp_stop(&h);
}

static void expect_error(QTestState *qts, const char *cmd, const char *klass, const char *desc)
{
    JSONValue *r = qtest_qmp(qts, "%s", cmd), *err = json_object_get(r, "error");

    g_assert_nonnull(err);
    g_assert_cmpstr(json_get_string(json_object_get(err, "class")), ==, klass);
    g_assert_cmpstr(json_get_string(json_object_get(err, "desc")), ==, desc);
    json_free(r);
}

static void test_errors(void)
{
    HP h;
    QTestState *none;

    hp_start(&h);
    qtest_qmp_device_add(h.qts, "virtio-blk-pci", "hp0", "\"drive\": \"d0\", \"addr\": \"06.0\"");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"nope\"}}", "GenericError",
                 "'nope' is not a valid device model name");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"id\": \"x\"}}", "GenericError",
                 "Parameter 'driver' is missing");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"id\": \"hp0\", \"drive\": \"d0\"}}", "GenericError", "Duplicate ID 'hp0' for device");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"drive\": \"d0\", \"addr\": \"06.0\"}}",
                 "GenericError", "Drive 'd0' is already in use by another device");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"drive\": \"dx\"}}",
                 "GenericError", "Property 'virtio-blk-pci.drive' can't find value 'dx'");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"drive\": \"d0\", \"serial\": [1]}}",
                 "GenericError", "Invalid parameter type for 'serial', expected: string");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"id\": \"a/b\", \"drive\": \"d1\"}}", "GenericError", "Parameter 'id' expects an identifier");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"id\": \"0x\", \"drive\": \"d1\"}}", "GenericError", "Parameter 'id' expects an identifier");
    expect_error(h.qts, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"nope\"}}", "DeviceNotFound",
                 "Device 'nope' not found");
    expect_error(h.qts, "{\"execute\": \"device_del\", \"arguments\": {}}", "GenericError",
                 "Parameter 'id' is missing");
    /* an anonymous device, deleted by its QOM path: DEVICE_DELETED has no "device" */
    json_free(qpci_unplug_acpi_device_test(h.qts, "hp0", HP_SLOT));
    json_free(qtest_qmp_eventwait(h.qts, "DEVICE_DELETED"));
    qtest_qmp_device_add(h.qts, "virtio-blk-pci", NULL, "\"drive\": \"d0\", \"addr\": \"07.0\"");
    expect_error(h.qts, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                        "\"drive\": \"d1\", \"addr\": \"07.0\"}}",
                 "GenericError", "PCI: slot 7 function 0 not available for virtio-blk-pci");
    qtest_qmp_device_del_send(h.qts, "/machine/peripheral-anon/device[0]");
    qtest_outl(h.qts, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u << 7);
    wait_deleted(h.qts, NULL, "/machine/peripheral-anon/device[0]");
    g_assert_cmphex(qpci_config_readl(h.qts, PCI_DEVFN(7, 0), 0), ==, 0xffffffff);
    /* ejecting an empty slot or the host bridge's does nothing */
    qtest_outl(h.qts, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u << 9);
    qtest_outl(h.qts, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u);
    g_assert_cmphex(qpci_config_readw(h.qts, 0, PCI_VENDOR_ID), ==, 0x8086);
    hp_stop(&h);

    none = qtest_init("-machine none");
    expect_error(none, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\"}}",
                 "GenericError", "No 'PCI' bus found for device 'virtio-blk-pci'");
    qtest_quit(none);
}

/*
 * A device type without QOM hooks (virtio-net-pci): the node has its type,
 * its options as strings, a derived virtio-backend, and the libqos
 * virtio-net hotplug flow works (QEMU's tests/qtest/virtio-net-test.c).
 */
static void test_net_hotplug(void)
{
    QTestState *qts = qtest_init("-machine pc -m 64M -nodefaults -netdev hubport,id=n0,hubid=0");
    JSONValue *v, *ev;

    qtest_qmp_device_add(qts, "virtio-net-pci", "net1", "\"netdev\": \"n0\", \"addr\": \"0x06\"");
    g_assert_cmphex(qpci_config_readw(qts, HP_DEVFN, PCI_VENDOR_ID), ==, PCI_VENDOR_ID_REDHAT_QUMRANET);
    v = qtest_qom_get(qts, "/machine/peripheral/net1", "type");
    g_assert_cmpstr(json_get_string(v), ==, "virtio-net-pci");
    json_free(v);
    v = qtest_qom_get(qts, "/machine/peripheral/net1/virtio-backend", "type");
    g_assert_cmpstr(json_get_string(v), ==, "virtio-net-device");
    json_free(v);
    v = qtest_qom_get(qts, "/machine/peripheral/net1", "addr");
    g_assert_cmpint(json_get_int(v), ==, HP_DEVFN);
    json_free(v);
    ev = qpci_unplug_acpi_device_test(qts, "net1", HP_SLOT);
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(ev, "data"), "path")), ==,
                    "/machine/peripheral/net1/virtio-backend");
    json_free(ev);
    ev = qtest_qmp_eventwait(qts, "DEVICE_DELETED");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(ev, "data"), "device")), ==, "net1");
    json_free(ev);
    g_assert_cmphex(qpci_config_readl(qts, HP_DEVFN, 0), ==, 0xffffffff);
    qtest_quit(qts);
}

/* DEVICE_DELETED of @path (@id NULL: no "device" member) is the next one. */
static void expect_deleted(QTestState *qts, const char *id, const char *path)
{
    JSONValue *ev = qtest_qmp_eventwait(qts, "DEVICE_DELETED"), *data = json_object_get(ev, "data");

    g_assert_cmpstr(json_get_string(json_object_get(data, "path")), ==, path);
    g_assert_cmpstr(json_get_string(json_object_get(data, "device")), ==, id);
    json_free(ev);
}

/*
 * A SCSI adapter with a disk on its bus: the disk can be added and deleted
 * at once; ejecting the adapter takes its disk along, and the events come
 * disk first, then the adapter's backend, then the adapter (QEMU's order).
 */
static void test_scsi_hotplug(void)
{
    HP h;
    JSONValue *r;

    hp_start(&h);
    qtest_qmp_device_add(h.qts, "virtio-scsi-pci", "scsi0", "\"addr\": \"06.0\"");
    qtest_qmp_device_add(h.qts, "scsi-hd", "hd0", "\"drive\": \"d0\", \"bus\": \"scsi0.0\"");
    qtest_qmp_device_del_send(h.qts, "hd0");
    expect_deleted(h.qts, "hd0", "/machine/peripheral/hd0");
    r = qtest_qmp(h.qts, "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/hd0\", "
                         "\"property\": \"type\"}}");
    g_assert_nonnull(json_object_get(r, "error"));
    json_free(r);
    qtest_qmp_device_add(h.qts, "scsi-hd", "hd1", "\"drive\": \"d0\", \"bus\": \"scsi0.0\"");
    qtest_qmp_device_del_send(h.qts, "scsi0");
    qtest_outl(h.qts, QPCI_ACPI_PCIHP_ADDR + QPCI_ACPI_PCIHP_EJ, 1u << HP_SLOT);
    expect_deleted(h.qts, "hd1", "/machine/peripheral/hd1");
    expect_deleted(h.qts, NULL, "/machine/peripheral/scsi0/virtio-backend");
    expect_deleted(h.qts, "scsi0", "/machine/peripheral/scsi0");
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, 0), ==, 0xffffffff);
    /* the drive is free again */
    qtest_qmp_device_add(h.qts, "virtio-blk-pci", "blk", "\"drive\": \"d0\"");
    hp_stop(&h);
}

/* A transitional device's I/O BAR goes with it: the ports read all-ones after the eject, and the slot takes a new device. */
static void test_legacy_io_bar(void)
{
    HP h;

    hp_start(&h);
    qtest_qmp_device_add(h.qts, "virtio-blk-pci", "leg", "\"drive\": \"d0\", \"addr\": \"06.0\", "
                         "\"disable-legacy\": \"off\"");
    qpci_config_writel(h.qts, HP_DEVFN, PCI_BASE_ADDRESS_0, 0xc000);
    qpci_config_writew(h.qts, HP_DEVFN, PCI_COMMAND, PCI_COMMAND_IO);
    g_assert_cmphex(qtest_inl(h.qts, 0xc000), !=, 0xffffffff);      /* host features */
    json_free(qpci_unplug_acpi_device_test(h.qts, "leg", HP_SLOT));
    expect_deleted(h.qts, "leg", "/machine/peripheral/leg");
    g_assert_cmphex(qtest_inl(h.qts, 0xc000), ==, 0xffffffff);
    g_assert_cmphex(qpci_config_readl(h.qts, HP_DEVFN, 0), ==, 0xffffffff);
    qtest_qmp_device_add(h.qts, "virtio-blk-pci", "leg", "\"drive\": \"d0\", \"addr\": \"06.0\"");
    hp_stop(&h);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(vdriver_layouts); i++) {
        char *name = g_strdup_printf("/hotplug/virtio-blk-pci/%s", vdriver_layouts[i].name);
        g_test_add_data_func(name, &vdriver_layouts[i], test_hotplug_cycle);
        g_free(name);
    }
    g_test_add_func("/hotplug/errors", test_errors);
    g_test_add_func("/hotplug/virtio-net-pci", test_net_hotplug);
    g_test_add_func("/hotplug/virtio-scsi-pci", test_scsi_hotplug);
    g_test_add_func("/hotplug/legacy-io-bar", test_legacy_io_bar);
    return g_test_run();
}
