/*
 * The QOM tree over QMP (qom-list, qom-get, qom-set) as QEMU's pc machine
 * shows it to qtest clients: /machine, peripheral vs peripheral-anon,
 * the host bridge and bus, device properties with their QEMU types, and
 * QEMU's error classes and texts.
 */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "libqtest.h"

static const char *error_class(const JSONValue *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "class"));
}

static const char *error_desc(const JSONValue *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "desc"));
}

static JSONValue *qom_list(QTestState *s, const char *path)
{
    return qtest_qmp(s, "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"%s\"}}", path);
}

/* The type qom-list gives property @name of @path, or NULL; g_free it. */
static char *list_type(QTestState *s, const char *path, const char *name)
{
    JSONValue *r = qom_list(s, path), *ret = json_object_get(r, "return");
    char *type = NULL;

    g_assert_nonnull(ret);
    for (size_t i = 0; i < json_array_size(ret); i++) {
        JSONValue *e = json_array_get(ret, i);
        if (!strcmp(json_get_string(json_object_get(e, "name")), name)) {
            g_assert_null(type);    /* names are unique */
            type = g_strdup(json_get_string(json_object_get(e, "type")));
        }
    }
    json_free(r);
    return type;
}

static void assert_list_type(QTestState *s, const char *path, const char *name, const char *type)
{
    char *t = list_type(s, path, name);

    g_assert_cmpstr(t, ==, type);
    g_free(t);
}

static void assert_get_string(QTestState *s, const char *path, const char *prop, const char *want)
{
    JSONValue *v = qtest_qom_get(s, path, prop);

    g_assert_cmpint(json_type(v), ==, JSON_STRING);
    g_assert_cmpstr(json_get_string(v), ==, want);
    json_free(v);
}

static void assert_get_bool(QTestState *s, const char *path, const char *prop, bool want)
{
    JSONValue *v = qtest_qom_get(s, path, prop);

    g_assert_cmpint(json_type(v), ==, JSON_BOOL);
    g_assert_cmpint(json_get_bool(v), ==, want);
    json_free(v);
}

static void assert_get_int(QTestState *s, const char *path, const char *prop, int64_t want)
{
    JSONValue *v = qtest_qom_get(s, path, prop);

    g_assert_cmpint(json_type(v), ==, JSON_INT);
    g_assert_cmpint(json_get_int(v), ==, want);
    json_free(v);
}

static void assert_error(JSONValue *r, const char *klass, const char *desc)
{
    g_assert_nonnull(json_object_get(r, "error"));
    g_assert_cmpstr(error_class(r), ==, klass);
    g_assert_cmpstr(error_desc(r), ==, desc);
    json_free(r);
}

static QTestState *start_two(char **img)
{
    int fd = g_file_open_tmp("vdm-qom-XXXXXX", img, NULL);
    QTestState *s;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    s = qtest_initf("-machine pc -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                    "-drive file=%s,if=none,id=d1,format=raw "
                    "-device virtio-blk-pci,drive=d0,id=blk0,addr=04.0,in_order=on,packed=on,serial=s0 "
                    "-device virtio-blk-pci,drive=d1,addr=05.0", *img, *img);
    return s;
}

static void stop_two(QTestState *s, char *img)
{
    qtest_quit(s);
    unlink(img);
    g_free(img);
}

static void test_machine_tree(void)
{
    char *img;
    QTestState *s = start_two(&img);

    assert_list_type(s, "/", "machine", "child<pc-i440fx-7.2-machine>");
    assert_get_string(s, "/machine", "type", "pc-i440fx-7.2-machine");
    assert_list_type(s, "/machine", "type", "string");
    assert_list_type(s, "/machine", "peripheral", "child<container>");
    assert_list_type(s, "/machine", "peripheral-anon", "child<container>");
    assert_list_type(s, "/machine", "unattached", "child<container>");
    assert_list_type(s, "/machine", "i440fx", "child<i440FX-pcihost>");
    assert_list_type(s, "/machine/i440fx", "ioapic", "child<ioapic>");
    assert_list_type(s, "/machine/i440fx", "pci.0", "child<PCI>");
    assert_get_string(s, "/machine/i440fx/pci.0", "type", "PCI");
    assert_get_string(s, "/machine/unattached/device[0]", "type", "i440FX");
    /* a child property's value is the child's path; a link's its target */
    assert_get_string(s, "/machine", "i440fx", "/machine/i440fx");
    assert_get_string(s, "/machine/peripheral/blk0", "parent_bus", "/machine/i440fx/pci.0");
    assert_list_type(s, "/machine/i440fx/pci.0", "child[1]", "link<virtio-blk-pci>");
    assert_get_string(s, "/machine/i440fx/pci.0", "child[1]", "/machine/peripheral/blk0");
    assert_get_string(s, "/machine/i440fx/pci.0", "child[2]", "/machine/peripheral-anon/device[0]");
    /* paths: "//" and trailing '/' ignored, links followed, partial paths unique */
    assert_get_string(s, "//machine//i440fx/", "type", "i440FX-pcihost");
    assert_get_string(s, "/machine/peripheral/blk0/parent_bus", "type", "PCI");
    assert_get_string(s, "ioapic", "type", "ioapic");
    assert_get_string(s, "/machine/i440fx/ioapic", "type", "ioapic");
    assert_get_string(s, "blk0/virtio-backend", "type", "virtio-blk-device");
    assert_error(qom_list(s, "device[0]"), "GenericError", "Path 'device[0]' is ambiguous");
    /* machine none: only the containers */
    stop_two(s, img);
    s = qtest_init("-machine none");
    assert_get_string(s, "/machine", "type", "none-machine");
    g_assert_null(list_type(s, "/machine", "i440fx"));
    assert_error(qom_list(s, "ioapic"), "DeviceNotFound", "Device 'ioapic' not found");
    qtest_quit(s);
}

/* q35: host bridge, PCIe root bus, MCH and LPC functions; no hotplug on the root bus */
static void test_q35_tree(void)
{
    char *img;
    int fd = g_file_open_tmp("vdm-qom-XXXXXX", &img, NULL);
    QTestState *s;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    s = qtest_initf("-machine q35 -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                    "-device virtio-blk-pci,drive=d0,id=blk0,addr=04.0", img);
    assert_get_string(s, "/machine", "type", "pc-q35-7.2-machine");
    assert_list_type(s, "/machine", "q35", "child<q35-pcihost>");
    assert_get_string(s, "/machine/q35/pcie.0", "type", "PCIE");
    assert_get_string(s, "/machine/q35/mch", "type", "mch");
    assert_get_string(s, "/machine/q35/ioapic", "type", "ioapic");
    assert_get_string(s, "/machine/unattached/device[0]", "type", "ICH9-LPC");
    assert_get_int(s, "/machine/unattached/device[0]", "addr", 0xf8);
    assert_get_string(s, "/machine/q35/pcie.0", "child[2]", "/machine/peripheral/blk0");
    assert_get_string(s, "/machine/peripheral/blk0", "parent_bus", "/machine/q35/pcie.0");
    qtest_irq_intercept_in(s, "ioapic");
    assert_error(qtest_qmp(s, "{\"execute\": \"device_add\", \"arguments\": {\"driver\": \"virtio-blk-pci\", "
                              "\"drive\": \"d0\"}}"),
                 "GenericError", "Bus 'pcie.0' does not support hotplugging");
    assert_error(qtest_qmp(s, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"blk0\"}}"),
                 "GenericError", "Bus 'pcie.0' does not support hotplugging");
    stop_two(s, img);
}

/* microvm: the two IOAPICs; virtio-mmio devices are peripherals but not hotpluggable */
static void test_microvm_tree(void)
{
    char *img;
    int fd = g_file_open_tmp("vdm-qom-XXXXXX", &img, NULL);
    QTestState *s;
    char *t;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(ftruncate(fd, 1 << 20), ==, 0);
    close(fd);
    s = qtest_initf("-machine microvm -m 64M -nodefaults -drive file=%s,if=none,id=d0,format=raw "
                    "-device virtio-blk-device,drive=d0,id=vd0", img);
    t = list_type(s, "/", "machine");
    g_assert_true(g_str_has_prefix(t, "child<microvm"));
    g_free(t);
    assert_get_string(s, "/machine/ioapic", "type", "ioapic");
    assert_get_string(s, "/machine/ioapic2", "type", "ioapic");
    assert_get_string(s, "/machine/peripheral/vd0", "type", "virtio-blk-device");
    assert_get_string(s, "/machine/peripheral/vd0", "drive", "d0");
    qtest_irq_intercept_in(s, "ioapic2");
    assert_error(qtest_qmp(s, "{\"execute\": \"device_del\", \"arguments\": {\"id\": \"vd0\"}}"),
                 "GenericError", "Bus 'virtio-mmio-bus.0' does not support hotplugging");
    stop_two(s, img);
}

static void test_peripheral(void)
{
    char *img;
    QTestState *s = start_two(&img);
    JSONValue *r;

    /* id= under peripheral, the other under peripheral-anon */
    assert_list_type(s, "/machine/peripheral", "blk0", "child<virtio-blk-pci>");
    assert_list_type(s, "/machine/peripheral-anon", "device[0]", "child<virtio-blk-pci>");
    r = qom_list(s, "/machine/peripheral");
    g_assert_cmpuint(json_array_size(json_object_get(r, "return")), ==, 2);      /* type + blk0 */
    json_free(r);
    assert_get_string(s, "/machine/peripheral/blk0", "type", "virtio-blk-pci");
    assert_get_string(s, "/machine/peripheral-anon/device[0]", "type", "virtio-blk-pci");
    assert_list_type(s, "/machine/peripheral/blk0", "virtio-backend", "child<virtio-blk-device>");
    assert_list_type(s, "/machine/peripheral/blk0", "parent_bus", "link<bus>");
    assert_list_type(s, "/machine/peripheral/blk0", "realized", "bool");
    assert_get_bool(s, "/machine/peripheral/blk0", "realized", true);
    assert_get_bool(s, "/machine/peripheral/blk0", "hotplugged", false);
    qtest_quit(s);
    unlink(img);
    g_free(img);
}

static void test_device_props(void)
{
    char *img;
    QTestState *s = start_two(&img);
    const char *b0 = "/machine/peripheral/blk0", *b1 = "/machine/peripheral-anon/device[0]";

    /* bools are JSON booleans: given ones and defaults */
    assert_list_type(s, b0, "in_order", "bool");
    assert_get_bool(s, b0, "in_order", true);
    assert_get_bool(s, b0, "packed", true);
    assert_get_bool(s, b0, "event_idx", true);
    assert_get_bool(s, b0, "indirect_desc", true);
    assert_get_bool(s, b1, "in_order", false);
    assert_get_bool(s, b1, "packed", false);
    /* numbers are numbers */
    assert_list_type(s, b0, "num-queues", "uint32");
    assert_get_int(s, b0, "num-queues", 1);
    assert_get_int(s, b0, "queue-size", 256);
    assert_get_int(s, b0, "vectors", 2);
    assert_list_type(s, b0, "addr", "int32");
    assert_get_int(s, b0, "addr", 0x20);     /* devfn of 04.0 */
    assert_get_int(s, b1, "addr", 0x28);
    /* strings */
    assert_get_string(s, b0, "serial", "s0");
    assert_get_string(s, b0, "drive", "d0");
    assert_get_string(s, b1, "drive", "d1");
    qtest_quit(s);
    unlink(img);
    g_free(img);
}

static void test_errors(void)
{
    char *img;
    QTestState *s = start_two(&img);

    assert_error(qom_list(s, "/x"), "DeviceNotFound", "Device '/x' not found");
    assert_error(qom_list(s, "nothing"), "DeviceNotFound", "Device 'nothing' not found");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/x\", \"property\": \"type\"}}"),
                 "DeviceNotFound", "Device '/x' not found");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine/peripheral/blk0\", "
                              "\"property\": \"bogus\"}}"),
                 "GenericError", "Property 'virtio-blk-pci.bogus' not found");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-get\", \"arguments\": {\"path\": \"/machine\"}}"),
                 "GenericError", "Parameter 'property' is missing");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-list\", \"arguments\": {\"path\": 1}}"),
                 "GenericError", "Invalid parameter type for 'path', expected: string");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-list\", \"arguments\": {\"path\": \"/\", \"x\": 1}}"),
                 "GenericError", "Parameter 'x' is unexpected");
    qtest_quit(s);
    unlink(img);
    g_free(img);
}

static JSONValue *qom_set(QTestState *s, const char *path, const char *prop, const char *json_value)
{
    return qtest_qmp(s, "{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"%s\", \"property\": \"%s\", "
                        "\"value\": %s}}", path, prop, json_value);
}

static void test_set(void)
{
    char *img;
    QTestState *s = start_two(&img);
    JSONValue *r;

    /* device properties are read-only once realized, in QEMU's words */
    assert_error(qom_set(s, "/machine/peripheral/blk0", "in_order", "false"), "GenericError",
                 "Attempt to set property 'in_order' on device 'blk0' (type 'virtio-blk-pci') after it was realized");
    assert_error(qom_set(s, "/machine/peripheral-anon/device[0]", "num-queues", "2"), "GenericError",
                 "Attempt to set property 'num-queues' on anonymous device (type 'virtio-blk-pci') after it was "
                 "realized");
    assert_get_bool(s, "/machine/peripheral/blk0", "in_order", true);     /* unchanged */
    assert_error(qom_set(s, "/machine/peripheral/blk0", "type", "\"x\""), "GenericError",
                 "Property 'virtio-blk-pci.type' is not writable");
    assert_error(qom_set(s, "/machine", "peripheral", "\"x\""), "GenericError",
                 "Property 'pc-i440fx-7.2-machine.peripheral' is not writable");
    assert_error(qom_set(s, "/machine/peripheral/blk0", "nope", "1"), "GenericError",
                 "Property 'virtio-blk-pci.nope' not found");
    assert_error(qom_set(s, "/nope", "type", "1"), "DeviceNotFound", "Device '/nope' not found");
    assert_error(qtest_qmp(s, "{\"execute\": \"qom-set\", \"arguments\": {\"path\": \"/machine\", "
                              "\"property\": \"type\"}}"), "GenericError", "Parameter 'value' is missing");
    /* realized=true on a realized device is a no-op */
    r = qom_set(s, "/machine/peripheral/blk0", "realized", "true");
    g_assert_nonnull(json_object_get(r, "return"));
    json_free(r);
    assert_get_bool(s, "/machine/peripheral/blk0", "realized", true);
    qtest_quit(s);
    unlink(img);
    g_free(img);
}

/*
 * QEMU's qom-test walk: qom-list every object below @path, qom-get every
 * property, recurse into child<> properties. Returns the objects seen.
 */
static unsigned walk(QTestState *s, const char *path, unsigned depth)
{
    JSONValue *r = qom_list(s, path), *ret = json_object_get(r, "return");
    unsigned n = 1;

    g_assert_nonnull(ret);
    g_assert_cmpuint(depth, <, 16);
    for (size_t i = 0; i < json_array_size(ret); i++) {
        JSONValue *e = json_array_get(ret, i), *v;
        const char *name = json_get_string(json_object_get(e, "name"));
        const char *type = json_get_string(json_object_get(e, "type"));
        char *child = g_strdup_printf("%s/%s", strcmp(path, "/") ? path : "", name);

        v = qtest_qom_get(s, path, name);
        if (g_str_has_prefix(type, "child<")) {
            g_assert_cmpstr(json_get_string(v), ==, child);
            n += walk(s, child, depth + 1);
        } else if (g_str_has_prefix(type, "link<")) {
            g_assert_cmpint(json_type(v), ==, JSON_STRING);
        }
        json_free(v);
        g_free(child);
    }
    json_free(r);
    return n;
}

static void test_walk(void)
{
    static const char *const machines[] = { "pc", "q35", "microvm", "none" };
    char *img;
    QTestState *s = start_two(&img);

    /* root, machine, 3 containers, i440fx, pci.0, ioapic, i440FX, 2 devices with virtio-bus + backend */
    g_assert_cmpuint(walk(s, "/", 0), ==, 15);
    stop_two(s, img);
    for (size_t i = 0; i < G_N_ELEMENTS(machines); i++) {
        s = qtest_initf("-machine %s -nodefaults", machines[i]);
        g_assert_cmpuint(walk(s, "/", 0), >=, 5);
        qtest_quit(s);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qom/machine-tree", test_machine_tree);
    g_test_add_func("/qom/q35-tree", test_q35_tree);
    g_test_add_func("/qom/microvm-tree", test_microvm_tree);
    g_test_add_func("/qom/peripheral", test_peripheral);
    g_test_add_func("/qom/device-props", test_device_props);
    g_test_add_func("/qom/errors", test_errors);
    g_test_add_func("/qom/walk", test_walk);
    g_test_add_func("/qom/set", test_set);
    return g_test_run();
}
