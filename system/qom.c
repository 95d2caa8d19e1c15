/*
 * The QOM tree (see include/sysemu/qom.h): rebuilt from the machine and the
 * plugged devices for each request, so it can never disagree with them.
 */
#include <glib.h>
#include <string.h>

#include "hw/pci/pci.h"
#include "sysemu/qom.h"
#include "sysemu/sysemu.h"

typedef struct QomNode QomNode;

typedef enum QomPropKind {
    QOM_PROP_VALUE,             /* builtin read-only value ("type", "hotplugged", ...) */
    QOM_PROP_DEVICE,            /* a device property: read-only after realize */
    QOM_PROP_REALIZED,
    QOM_PROP_CHILD,
    QOM_PROP_LINK,
} QomPropKind;

typedef struct QomProp {
    char *name, *type;          /* "string", "bool", "child<T>", "link<T>", ... */
    char *value;                /* text; a link's target path */
    QomPropKind kind;
    QomNode *child;
} QomProp;

struct QomNode {
    char *name, *type;
    QomNode *parent;
    GPtrArray *props;           /* QomProp, in qom-list order */
    DeviceState *dev;           /* a device's own node, else NULL */
};

static QomNode *node_new(QomNode *parent, const char *name, const char *type);

static void prop_free(gpointer p)
{
    QomProp *prop = p;

    g_free(prop->name);
    g_free(prop->type);
    g_free(prop->value);
    g_free(prop);
}

static void node_free(QomNode *n)
{
    for (guint i = 0; i < n->props->len; i++) {
        QomProp *p = g_ptr_array_index(n->props, i);
        if (p->child) {
            node_free(p->child);
        }
    }
    g_ptr_array_free(n->props, TRUE);
    g_free(n->name);
    g_free(n->type);
    g_free(n);
}

static QomProp *prop_add(QomNode *n, const char *name, const char *type, const char *value, QomPropKind kind)
{
    QomProp *p = g_new0(QomProp, 1);

    p->name = g_strdup(name);
    p->type = g_strdup(type);
    p->value = g_strdup(value);
    p->kind = kind;
    g_ptr_array_add(n->props, p);
    return p;
}

static QomNode *node_new(QomNode *parent, const char *name, const char *type)
{
    QomNode *n = g_new0(QomNode, 1);

    n->name = g_strdup(name);
    n->type = g_strdup(type);
    n->parent = parent;
    n->props = g_ptr_array_new_with_free_func(prop_free);
    prop_add(n, "type", "string", type, QOM_PROP_VALUE);
    if (parent) {
        char *t = g_strdup_printf("child<%s>", type);
        prop_add(parent, name, t, NULL, QOM_PROP_CHILD)->child = n;
        g_free(t);
    }
    return n;
}

static char *node_path(const QomNode *n)
{
    GString *s = g_string_new(NULL);

    for (; n && n->parent; n = n->parent) {
        g_string_prepend(s, n->name);
        g_string_prepend_c(s, '/');
    }
    if (!s->len) {
        g_string_append_c(s, '/');
    }
    return g_string_free(s, FALSE);
}

static void add_realized(QomNode *n)
{
    prop_add(n, "realized", "bool", "true", QOM_PROP_REALIZED);
}

/* ---- device nodes ---- */

typedef struct PropCtx {
    QomNode *node;
    bool has_addr;
} PropCtx;

static void add_device_prop(const char *name, const char *type, const char *value, void *opaque)
{
    PropCtx *ctx = opaque;

    if (!strcmp(name, "addr")) {
        if (ctx->has_addr) {
            return;     /* shown once, as the PCI core's int32 */
        }
        ctx->has_addr = true;
    }
    prop_add(ctx->node, name, type, value, QOM_PROP_DEVICE);
}

static void build_device(QomNode *container, DeviceState *dev, const char *bus_path)
{
    QDevInfo info;
    QomNode *n;
    PropCtx ctx = { 0 };
    char *backend = qdev_virtio_backend_type(dev);

    qdev_get_info(dev, &info);
    n = node_new(container, info.qom_name, dev->type->name);
    n->dev = dev;
    add_realized(n);
    prop_add(n, "hotplugged", "bool", info.hotplugged ? "true" : "false", QOM_PROP_VALUE);
    prop_add(n, "hotpluggable", "bool", "true", QOM_PROP_VALUE);
    prop_add(n, "parent_bus", "link<bus>", bus_path, QOM_PROP_LINK);
    ctx.node = n;
    if (dev->unplug == pci_device_unplug) {
        char devfn[16];

        g_snprintf(devfn, sizeof(devfn), "%d", ((PCIDevice *)dev)->devfn);
        add_device_prop("addr", "int32", devfn, &ctx);
    }
    if (dev->type->list_props) {
        dev->type->list_props(dev, add_device_prop, &ctx);
    } else {
        /* no hook: the creation options, as given */
        for (unsigned i = 0; i < info.nopts; i++) {
            const char *k = info.opts[i].key;
            bool later = false;

            for (unsigned j = i + 1; j < info.nopts; j++) {
                later |= !strcmp(info.opts[j].key, k);
            }
            if (!later && strcmp(k, "driver") && strcmp(k, "id")) {
                add_device_prop(k, "str", info.opts[i].val, &ctx);
            }
        }
    }
    if (backend) {
        QomNode *vbus = node_new(n, "virtio-bus", "virtio-pci-bus");
        QomNode *be = node_new(n, "virtio-backend", backend);
        char *vbus_path = node_path(vbus);

        add_realized(vbus);
        add_realized(be);
        prop_add(be, "parent_bus", "link<bus>", vbus_path, QOM_PROP_LINK);
        g_free(vbus_path);
        g_free(backend);
    }
}

typedef struct MachineTypeCtx {
    const char *prefix;
    char *found;
} MachineTypeCtx;

static void find_machine_type(const char *name, const char *parent, bool abstract, void *opaque)
{
    MachineTypeCtx *ctx = opaque;

    if (!ctx->found && g_str_has_prefix(name, ctx->prefix) && g_str_has_suffix(name, "-machine")) {
        ctx->found = g_strdup(name);
    }
}

/* The machine's QOM type as vl registered it ("pc-i440fx-7.2-machine", ...). */
static char *machine_type(bool q35)
{
    char *other = g_strdup_printf("%s-", vdm_machine_name());
    MachineTypeCtx ctx = { pci_bus_present() ? (q35 ? "pc-q35-" : "pc-i440fx-") : other, NULL };

    type_foreach(find_machine_type, &ctx);
    g_free(other);
    return ctx.found ? ctx.found : g_strdup_printf("%s-machine", vdm_machine_name());
}

/*
 * The whole tree, from "/". QEMU's pc: /machine/i440fx (host) with pci.0
 * and ioapic, the i440FX function in unattached; q35: /machine/q35 with
 * pcie.0, mch and ioapic, the ICH9 LPC function in unattached.
 */
static QomNode *build_tree(void)
{
    QomNode *root = node_new(NULL, "", "container");
    bool pc = pci_bus_present(), q35 = pc && !strcmp(vdm_machine_name(), "q35");
    char *mtype = machine_type(q35);
    QomNode *machine = node_new(root, "machine", mtype);
    QomNode *periph = node_new(machine, "peripheral", "container");
    QomNode *anon = node_new(machine, "peripheral-anon", "container");
    QomNode *unattached = node_new(machine, "unattached", "container");
    DeviceState *dev;
    char *pci_bus_path = NULL;

    g_free(mtype);
    if (pc) {
        QomNode *host = node_new(machine, q35 ? "q35" : "i440fx", q35 ? "q35-pcihost" : "i440FX-pcihost");
        QomNode *bus = node_new(host, q35 ? "pcie.0" : "pci.0", q35 ? "PCIE" : "PCI");
        /* the built-in functions: host bridge (and q35's LPC bridge at 1f.0) */
        QomNode *fns[2] = {
            q35 ? node_new(host, "mch", "mch") : node_new(unattached, "device[0]", "i440FX"),
            q35 ? node_new(unattached, "device[0]", "ICH9-LPC") : NULL,
        };
        int nfns = q35 ? 2 : 1;
        char *bus_path = node_path(bus);     /* kept as pci_bus_path */

        add_realized(host);
        add_realized(bus);
        add_realized(node_new(host, "ioapic", "ioapic"));
        for (int i = 0; i < nfns; i++) {
            char *name = g_strdup_printf("child[%d]", i), *type = g_strdup_printf("link<%s>", fns[i]->type);
            char *path = node_path(fns[i]);

            add_realized(fns[i]);
            prop_add(fns[i], "parent_bus", "link<bus>", bus_path, QOM_PROP_LINK);
            prop_add(fns[i], "addr", "int32", i ? "248" : "0", QOM_PROP_DEVICE);   /* 00.0, 1f.0 */
            prop_add(bus, name, type, path, QOM_PROP_LINK);
            g_free(name);
            g_free(type);
            g_free(path);
        }
        for (unsigned i = 0; (dev = qdev_nth_device(i)) != NULL; i++) {
            QDevInfo info;
            char *name, *type, *path;

            if (dev->unplug != pci_device_unplug) {
                continue;
            }
            qdev_get_info(dev, &info);
            /* the bus's child[] numbering starts with the built-in functions */
            name = g_strdup_printf("child[%d]", info.bus_index + nfns);
            type = g_strdup_printf("link<%s>", dev->type->name);
            path = qdev_qom_path(dev);
            prop_add(bus, name, type, path, QOM_PROP_LINK);
            g_free(name);
            g_free(type);
            g_free(path);
        }
        pci_bus_path = bus_path;
    } else if (!strcmp(vdm_machine_name(), "microvm")) {
        /* QEMU's microvm: the IOAPIC and the second one of the virtio-mmio lines */
        add_realized(node_new(machine, "ioapic", "ioapic"));
        add_realized(node_new(machine, "ioapic2", "ioapic"));
    }
    for (unsigned i = 0; (dev = qdev_nth_device(i)) != NULL; i++) {
        QDevInfo info;

        qdev_get_info(dev, &info);
        /* vdm does not model the virtio-mmio transports' buses: their devices' parent_bus is "" */
        build_device(info.anonymous ? anon : periph, dev, dev->unplug == pci_device_unplug ? pci_bus_path : "");
    }
    g_free(pci_bus_path);
    return root;
}

/* ---- path resolution (object_resolve_path) ---- */

static QomNode *child_named(const QomNode *n, const char *name)
{
    for (guint i = 0; i < n->props->len; i++) {
        QomProp *p = g_ptr_array_index(n->props, i);
        if (p->child && !strcmp(p->name, name)) {
            return p->child;
        }
    }
    return NULL;
}

static QomNode *resolve_abs(QomNode *root, const char *path);

/* A child, or a link's target (followed once, as object_resolve_path_component). */
static QomNode *component(QomNode *root, const QomNode *n, const char *name)
{
    for (guint i = 0; i < n->props->len; i++) {
        QomProp *p = g_ptr_array_index(n->props, i);
        if (strcmp(p->name, name)) {
            continue;
        }
        if (p->child) {
            return p->child;
        }
        if (p->kind == QOM_PROP_LINK && p->value && p->value[0] == '/') {
            return resolve_abs(root, p->value);
        }
        return NULL;
    }
    return NULL;
}

static QomNode *resolve_parts(QomNode *root, QomNode *n, char **parts)
{
    for (; n && *parts; parts++) {
        if (**parts) {      /* empty components ("//", trailing '/') are skipped */
            n = component(root, n, *parts);
        }
    }
    return n;
}

static QomNode *resolve_abs(QomNode *root, const char *path)
{
    char **parts = g_strsplit(path, "/", -1);
    QomNode *n = resolve_parts(root, root, parts);

    g_strfreev(parts);
    return n;
}

/* Partial path: every object whose children (not links) lead down @parts. */
static void resolve_partial(QomNode *root, QomNode *n, char **parts, QomNode **found, bool *ambiguous)
{
    QomNode *hit;
    char **p;

    if (*ambiguous) {
        return;
    }
    /* match starting at @n's children */
    hit = n;
    for (p = parts; hit && *p; p++) {
        if (**p) {
            hit = child_named(hit, *p);
        }
    }
    if (hit && hit != n) {
        if (*found && *found != hit) {
            *ambiguous = true;
            return;
        }
        *found = hit;
    }
    for (guint i = 0; i < n->props->len; i++) {
        QomProp *pr = g_ptr_array_index(n->props, i);
        if (pr->child) {
            resolve_partial(root, pr->child, parts, found, ambiguous);
        }
    }
}

static QomNode *resolve(QomNode *root, const char *path, bool *ambiguous)
{
    char **parts;
    QomNode *found = NULL;

    *ambiguous = false;
    if (path[0] == '/') {
        return resolve_abs(root, path);
    }
    parts = g_strsplit(path, "/", -1);
    if (parts[0] && parts[0][0]) {
        resolve_partial(root, root, parts, &found, ambiguous);
    }
    g_strfreev(parts);
    return *ambiguous ? NULL : found;
}

bool qom_resolve(const char *path, char **type, char **canon)
{
    QomNode *root = build_tree();
    bool ambiguous;
    QomNode *n = resolve(root, path, &ambiguous);

    if (n) {
        if (type) {
            *type = g_strdup(n->type);
        }
        if (canon) {
            *canon = node_path(n);
        }
    }
    node_free(root);
    return n != NULL;
}

/* ---- QMP ---- */

static QomNode *resolve_or_error(QomNode *root, const char *path, bool check_ambiguous,
                                 const char **err_class, char **errp)
{
    bool ambiguous;
    QomNode *n = resolve(root, path, &ambiguous);

    if (!n) {
        if (ambiguous && check_ambiguous) {
            *errp = g_strdup_printf("Path '%s' is ambiguous", path);
        } else {
            *err_class = "DeviceNotFound";
            *errp = g_strdup_printf("Device '%s' not found", path);
        }
    }
    return n;
}

static QomProp *find_prop(QomNode *n, const char *name, char **errp)
{
    for (guint i = 0; i < n->props->len; i++) {
        QomProp *p = g_ptr_array_index(n->props, i);
        if (!strcmp(p->name, name)) {
            return p;
        }
    }
    *errp = g_strdup_printf("Property '%s.%s' not found", n->type, name);
    return NULL;
}

JSONValue *qom_list(const char *path, const char **err_class, char **errp)
{
    QomNode *root = build_tree(), *n;
    JSONValue *r = NULL;

    *err_class = NULL;
    n = resolve_or_error(root, path, true, err_class, errp);
    if (n) {
        r = json_array();
        for (guint i = 0; i < n->props->len; i++) {
            QomProp *p = g_ptr_array_index(n->props, i);
            JSONValue *e = json_object();

            json_object_set(e, "name", json_string(p->name));
            json_object_set(e, "type", json_string(p->type));
            json_array_append(r, e);
        }
    }
    node_free(root);
    return r;
}

static bool type_is_int(const char *t)
{
    return g_str_has_prefix(t, "int") || g_str_has_prefix(t, "uint");
}

static JSONValue *prop_value(const QomProp *p)
{
    if (p->child) {
        char *path = node_path(p->child);
        JSONValue *v = json_string(path);
        g_free(path);
        return v;
    }
    if (!strcmp(p->type, "bool")) {
        bool b = false;
        qdev_str_bool(p->value ? p->value : "", &b);
        return json_bool(b);
    }
    if (type_is_int(p->type) && p->value) {
        if (p->type[0] == 'u') {
            return json_int((int64_t)g_ascii_strtoull(p->value, NULL, 0));
        }
        return json_int(g_ascii_strtoll(p->value, NULL, 0));
    }
    return json_string(p->value ? p->value : "");
}

JSONValue *qom_get(const char *path, const char *prop, const char **err_class, char **errp)
{
    QomNode *root = build_tree(), *n;
    QomProp *p;
    JSONValue *r = NULL;

    *err_class = NULL;
    n = resolve_or_error(root, path, false, err_class, errp);
    if (n && (p = find_prop(n, prop, errp)) != NULL) {
        r = prop_value(p);
    }
    node_free(root);
    return r;
}

JSONValue *qom_set(const char *path, const char *prop, const JSONValue *value, const char **err_class,
                   char **errp)
{
    QomNode *root = build_tree(), *n;
    QomProp *p;
    JSONValue *r = NULL;

    *err_class = NULL;
    n = resolve_or_error(root, path, false, err_class, errp);
    if (!n || (p = find_prop(n, prop, errp)) == NULL) {
        goto out;
    }
    switch (p->kind) {
    case QOM_PROP_DEVICE:
        /* every vdm object is realized at creation (QEMU's field_prop_setter) */
        if (n->dev && n->dev->id) {
            *errp = g_strdup_printf("Attempt to set property '%s' on device '%s' (type '%s') after it was "
                                    "realized", prop, n->dev->id, n->type);
        } else {
            *errp = g_strdup_printf("Attempt to set property '%s' on anonymous device (type '%s') after it "
                                    "was realized", prop, n->type);
        }
        break;
    case QOM_PROP_REALIZED:
        if (json_type(value) != JSON_BOOL) {
            *errp = g_strdup_printf("Invalid parameter type for '%s', expected: boolean", prop);
        } else if (!json_get_bool(value)) {
            /* vdm: unrealizing in place is not modelled; device_del removes devices */
            *errp = g_strdup_printf("vdm: '%s' cannot be unrealized, use device_del", path);
        } else {
            r = json_object();      /* already realized: nothing to do */
        }
        break;
    default:
        *errp = g_strdup_printf("Property '%s.%s' is not writable", n->type, prop);
        break;
    }
out:
    node_free(root);
    return r;
}
