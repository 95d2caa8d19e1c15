/*
 * QMP monitors: the facts are QEMU's docs/interop/qmp-spec.rst.
 *
 * Server greeting on connect, then capabilities negotiation: until
 * qmp_capabilities succeeds every other command fails with CommandNotFound,
 * and no events are sent. Each reply echoes the request's "id". Output
 * messages end in "\r\n" as QEMU's monitor writes them.
 */
#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "sysemu/blockdev.h"
#include "sysemu/qdev.h"
#include "sysemu/qmp.h"
#include "sysemu/qom.h"
#include "sysemu/sysemu.h"

typedef struct QmpMonitor {
    Chardev *chr;
    JSONStreamer streamer;
    bool negotiated;
    const char *err_class;      /* a handler's error class; NULL: GenericError */
} QmpMonitor;

static GPtrArray *monitors;

/* Handlers return the "return" value, or NULL with *@errp set (GenericError). */
typedef JSONValue *QmpHandler(QmpMonitor *mon, JSONValue *args, char **errp);

typedef struct QmpCommand {
    const char *name;
    QmpHandler *handler;
    const char *const *params;      /* accepted argument names; NULL: none; { "*" }: any */
} QmpCommand;

static void qmp_send(QmpMonitor *mon, JSONValue *msg)
{
    char *text = json_to_string(msg);
    char *line = g_strconcat(text, "\r\n", NULL);

    chardev_write_all(mon->chr, line, strlen(line));
    g_free(line);
    g_free(text);
}

static JSONValue *qmp_error(const char *klass, const char *desc)
{
    JSONValue *err = json_object(), *msg = json_object();

    json_object_set(err, "class", json_string(klass));
    json_object_set(err, "desc", json_string(desc));
    json_object_set(msg, "error", err);
    return msg;
}

static JSONValue *version_info(void)
{
    JSONValue *v = json_object(), *q = json_object();
    unsigned major = 0, minor = 0, micro = 0;

    sscanf(VDM_VERSION, "%u.%u.%u", &major, &minor, &micro);
    json_object_set(q, "micro", json_int(micro));
    json_object_set(q, "minor", json_int(minor));
    json_object_set(q, "major", json_int(major));
    json_object_set(v, "qemu", q);
    json_object_set(v, "package", json_string("vdm-" VDM_VERSION));
    return v;
}

void qmp_event_emit(const char *name, JSONValue *data)
{
    gint64 now = g_get_real_time();
    JSONValue *ev = json_object(), *ts = json_object();
    guint i;

    json_object_set(ts, "seconds", json_int(now / G_USEC_PER_SEC));
    json_object_set(ts, "microseconds", json_int(now % G_USEC_PER_SEC));
    json_object_set(ev, "timestamp", ts);
    json_object_set(ev, "event", json_string(name));
    if (data) {
        json_object_set(ev, "data", data);
    }
    for (i = 0; monitors && i < monitors->len; i++) {
        QmpMonitor *mon = g_ptr_array_index(monitors, i);
        if (mon->negotiated && chardev_is_connected(mon->chr)) {
            qmp_send(mon, ev);
        }
    }
    json_free(ev);
}

/* ---- commands ---- */

static const char *const caps_params[] = { "enable", NULL };
static const char *const qom_types_params[] = { "implements", "abstract", NULL };

static JSONValue *qmp_capabilities(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *enable = json_object_get(args, "enable");

    if (enable) {
        if (json_type(enable) != JSON_ARRAY) {
            *errp = g_strdup("Invalid parameter type for 'enable', expected: array");
            return NULL;
        }
        if (json_array_size(enable) > 0) {
            const char *cap = json_get_string(json_array_get(enable, 0));
            *errp = g_strdup_printf("Capability '%s' not available", cap ? cap : "");
            return NULL;
        }
    }
    mon->negotiated = true;
    return json_object();
}

static JSONValue *qmp_query_status(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *r = json_object();

    json_object_set(r, "status", json_string(runstate_name(runstate_get())));
    json_object_set(r, "singlestep", json_bool(false));
    json_object_set(r, "running", json_bool(runstate_is_running()));
    return r;
}

static JSONValue *qmp_cont(QmpMonitor *mon, JSONValue *args, char **errp)
{
    vm_start();
    return json_object();
}

static JSONValue *qmp_stop(QmpMonitor *mon, JSONValue *args, char **errp)
{
    vm_stop();
    return json_object();
}

static void machine_info(const char *name, const char *alias, bool is_default, const char *ram_id,
                         void *opaque)
{
    JSONValue *m = json_object();

    json_object_set(m, "name", json_string(name));
    if (alias) {
        json_object_set(m, "alias", json_string(alias));
    }
    if (is_default) {
        json_object_set(m, "is-default", json_bool(true));
    }
    json_object_set(m, "cpu-max", json_int(1));
    json_object_set(m, "hotpluggable-cpus", json_bool(false));
    json_object_set(m, "numa-mem-supported", json_bool(false));
    json_object_set(m, "deprecated", json_bool(false));
    if (ram_id) {
        json_object_set(m, "default-ram-id", json_string(ram_id));
    }
    json_array_append(opaque, m);
}

static JSONValue *qmp_query_machines(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *r = json_array();

    vdm_machine_foreach(machine_info, r);
    return r;
}

static JSONValue *qmp_query_version(QmpMonitor *mon, JSONValue *args, char **errp)
{
    return version_info();
}

static JSONValue *qmp_query_name(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *r = json_object();

    if (vdm_guest_name()) {
        json_object_set(r, "name", json_string(vdm_guest_name()));
    }
    return r;
}

static JSONValue *qmp_query_commands(QmpMonitor *mon, JSONValue *args, char **errp);

typedef struct TypeListCtx {
    const char *implements;
    bool abstract;
    JSONValue *list;
} TypeListCtx;

static void list_one_type(const char *name, const char *parent, bool abstract, void *opaque)
{
    TypeListCtx *ctx = opaque;
    JSONValue *t;

    if ((abstract && !ctx->abstract) || (ctx->implements && !type_is_a(name, ctx->implements))) {
        return;
    }
    t = json_object();
    json_object_set(t, "name", json_string(name));
    if (abstract) {
        json_object_set(t, "abstract", json_bool(true));
    }
    if (parent) {
        json_object_set(t, "parent", json_string(parent));
    }
    json_array_append(ctx->list, t);
}

static JSONValue *qmp_qom_list_types(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *impl = json_object_get(args, "implements");
    JSONValue *abs = json_object_get(args, "abstract");
    TypeListCtx ctx = { 0 };

    if (impl && json_type(impl) != JSON_STRING) {
        *errp = g_strdup("Invalid parameter type for 'implements', expected: string");
        return NULL;
    }
    if (abs && json_type(abs) != JSON_BOOL) {
        *errp = g_strdup("Invalid parameter type for 'abstract', expected: boolean");
        return NULL;
    }
    ctx.implements = impl ? json_get_string(impl) : NULL;
    ctx.abstract = abs && json_get_bool(abs);
    ctx.list = json_array();
    type_foreach(list_one_type, &ctx);
    return ctx.list;
}

static JSONValue *qmp_quit(QmpMonitor *mon, JSONValue *args, char **errp)
{
    vdm_shutdown_request("host-qmp-quit");
    return json_object();
}

static const char *const block_resize_params[] = { "device", "node-name", "size", NULL };

static JSONValue *qmp_block_resize(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *dev = json_object_get(args, "device"), *node = json_object_get(args, "node-name");
    JSONValue *size = json_object_get(args, "size");

    if (dev && json_type(dev) != JSON_STRING) {
        *errp = g_strdup("Invalid parameter type for 'device', expected: string");
        return NULL;
    }
    if (node && json_type(node) != JSON_STRING) {
        *errp = g_strdup("Invalid parameter type for 'node-name', expected: string");
        return NULL;
    }
    if (!size) {
        *errp = g_strdup("Parameter 'size' is missing");
        return NULL;
    }
    if (json_type(size) != JSON_INT) {
        *errp = g_strdup("Invalid parameter type for 'size', expected: integer");
        return NULL;
    }
    if (!qdev_block_resize(dev ? json_get_string(dev) : NULL, node ? json_get_string(node) : NULL,
                           json_get_int(size), errp)) {
        return NULL;
    }
    return json_object();
}

/* ---- QOM and devices ---- */

static const char *const qom_list_params[] = { "path", NULL };
static const char *const qom_get_params[] = { "path", "property", NULL };
static const char *const qom_set_params[] = { "path", "property", "value", NULL };
static const char *const device_del_params[] = { "id", NULL };
/* device_add: every argument is a device option */
static const char *const device_add_params[] = { "*", NULL };

/* The string argument @name: NULL with *@errp set when missing or not a string. */
static const char *arg_string(JSONValue *args, const char *name, char **errp)
{
    JSONValue *v = json_object_get(args, name);

    if (!v) {
        *errp = g_strdup_printf("Parameter '%s' is missing", name);
        return NULL;
    }
    if (json_type(v) != JSON_STRING) {
        *errp = g_strdup_printf("Invalid parameter type for '%s', expected: string", name);
        return NULL;
    }
    return json_get_string(v);
}

static JSONValue *qmp_qom_list(QmpMonitor *mon, JSONValue *args, char **errp)
{
    const char *path = arg_string(args, "path", errp);

    return path ? qom_list(path, &mon->err_class, errp) : NULL;
}

static JSONValue *qmp_qom_get(QmpMonitor *mon, JSONValue *args, char **errp)
{
    const char *path = arg_string(args, "path", errp), *prop;

    if (!path || !(prop = arg_string(args, "property", errp))) {
        return NULL;
    }
    return qom_get(path, prop, &mon->err_class, errp);
}

static JSONValue *qmp_qom_set(QmpMonitor *mon, JSONValue *args, char **errp)
{
    const char *path = arg_string(args, "path", errp), *prop;
    JSONValue *value;

    if (!path || !(prop = arg_string(args, "property", errp))) {
        return NULL;
    }
    value = json_object_get(args, "value");
    if (!value) {
        *errp = g_strdup("Parameter 'value' is missing");
        return NULL;
    }
    return qom_set(path, prop, value, &mon->err_class, errp);
}

/*
 * device_add: the arguments are -device's options (QEMU's
 * qemu_opts_from_qdict): strings as they are, numbers in decimal, bools
 * on/off. vdm refuses other types (QEMU drops them silently).
 */
static JSONValue *qmp_device_add(QmpMonitor *mon, JSONValue *args, char **errp)
{
    size_t n = args ? json_object_size(args) : 0;
    QDevOpt *opts = g_new0(QDevOpt, n ? n : 1);
    char **vals = g_new0(char *, n + 1);
    JSONValue *r = NULL;
    size_t i;

    for (i = 0; i < n; i++) {
        JSONValue *v = json_object_nth(args, i, &opts[i].key);

        switch (json_type(v)) {
        case JSON_STRING:
            vals[i] = g_strdup(json_get_string(v));
            break;
        case JSON_INT:
            vals[i] = g_strdup_printf("%" G_GINT64_FORMAT, json_get_int(v));
            break;
        case JSON_BOOL:
            vals[i] = g_strdup(json_get_bool(v) ? "on" : "off");
            break;
        default:
            *errp = g_strdup_printf("Invalid parameter type for '%s', expected: string", opts[i].key);
            goto out;
        }
        opts[i].val = vals[i];
    }
    if (!qdev_opt_get(opts, (unsigned)n, "driver")) {
        *errp = g_strdup("Parameter 'driver' is missing");
        goto out;
    }
    if (qdev_device_add(opts, (unsigned)n, errp)) {
        r = json_object();
    }
out:
    g_strfreev(vals);
    g_free(opts);
    return r;
}

static JSONValue *qmp_device_del(QmpMonitor *mon, JSONValue *args, char **errp)
{
    const char *id = arg_string(args, "id", errp);

    if (!id || !qdev_device_del(id, &mon->err_class, errp)) {
        return NULL;
    }
    return json_object();
}

static const QmpCommand qmp_commands[] = {
    { "qmp_capabilities", qmp_capabilities, caps_params },
    { "query-status", qmp_query_status, NULL },
    { "cont", qmp_cont, NULL },
    { "stop", qmp_stop, NULL },
    { "query-machines", qmp_query_machines, NULL },
    { "query-version", qmp_query_version, NULL },
    { "query-name", qmp_query_name, NULL },
    { "query-commands", qmp_query_commands, NULL },
    { "qom-list-types", qmp_qom_list_types, qom_types_params },
    { "block_resize", qmp_block_resize, block_resize_params },
    { "qom-list", qmp_qom_list, qom_list_params },
    { "qom-get", qmp_qom_get, qom_get_params },
    { "qom-set", qmp_qom_set, qom_set_params },
    { "device_add", qmp_device_add, device_add_params },
    { "device_del", qmp_device_del, device_del_params },
    { "quit", qmp_quit, NULL },
};

static JSONValue *qmp_query_commands(QmpMonitor *mon, JSONValue *args, char **errp)
{
    JSONValue *r = json_array();
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(qmp_commands); i++) {
        JSONValue *c = json_object();
        json_object_set(c, "name", json_string(qmp_commands[i].name));
        json_array_append(r, c);
    }
    return r;
}

static const QmpCommand *qmp_find(const char *name)
{
    size_t i;

    for (i = 0; i < G_N_ELEMENTS(qmp_commands); i++) {
        if (strcmp(qmp_commands[i].name, name) == 0) {
            return &qmp_commands[i];
        }
    }
    return NULL;
}

static bool param_known(const QmpCommand *cmd, const char *name)
{
    const char *const *p;

    for (p = cmd->params; p && *p; p++) {
        if (strcmp(*p, name) == 0 || strcmp(*p, "*") == 0) {
            return true;
        }
    }
    return false;
}

/* Returns the reply (without "id"). */
static JSONValue *qmp_dispatch(QmpMonitor *mon, JSONValue *req)
{
    JSONValue *exec = NULL, *args = NULL, *ret, *reply;
    const QmpCommand *cmd;
    char *err = NULL, *desc;
    const char *key, *name;
    size_t i;

    if (json_type(req) != JSON_OBJECT) {
        return qmp_error("GenericError", "QMP input must be a JSON object");
    }
    for (i = 0; i < json_object_size(req); i++) {
        JSONValue *v = json_object_nth(req, i, &key);

        if (strcmp(key, "execute") == 0) {
            if (json_type(v) != JSON_STRING) {
                return qmp_error("GenericError", "QMP input member 'execute' must be a string");
            }
            exec = v;
        } else if (strcmp(key, "arguments") == 0) {
            if (json_type(v) != JSON_OBJECT) {
                return qmp_error("GenericError", "QMP input member 'arguments' must be an object");
            }
            args = v;
        } else if (strcmp(key, "id") == 0) {
            continue;
        } else if (strcmp(key, "exec-oob") == 0) {
            return qmp_error("GenericError", "QMP input member 'exec-oob' is unexpected");
        } else {
            desc = g_strdup_printf("QMP input member '%s' is unexpected", key);
            reply = qmp_error("GenericError", desc);
            g_free(desc);
            return reply;
        }
    }
    if (!exec) {
        return qmp_error("GenericError", "QMP input lacks member 'execute'");
    }
    name = json_get_string(exec);
    cmd = qmp_find(name);
    if (!mon->negotiated && (!cmd || cmd->handler != qmp_capabilities)) {
        return qmp_error("CommandNotFound", "Expecting capabilities negotiation with 'qmp_capabilities'");
    }
    if (mon->negotiated && cmd && cmd->handler == qmp_capabilities) {
        return qmp_error("CommandNotFound", "Capabilities negotiation is already complete, command ignored");
    }
    if (!cmd) {
        desc = g_strdup_printf("The command %s has not been found", name);
        reply = qmp_error("CommandNotFound", desc);
        g_free(desc);
        return reply;
    }
    for (i = 0; args && i < json_object_size(args); i++) {
        json_object_nth(args, i, &key);
        if (!param_known(cmd, key)) {
            desc = g_strdup_printf("Parameter '%s' is unexpected", key);
            reply = qmp_error("GenericError", desc);
            g_free(desc);
            return reply;
        }
    }
    mon->err_class = NULL;
    ret = cmd->handler(mon, args, &err);
    if (!ret) {
        reply = qmp_error(mon->err_class ? mon->err_class : "GenericError", err);
        g_free(err);
        return reply;
    }
    reply = json_object();
    json_object_set(reply, "return", ret);
    return reply;
}

static void qmp_handle_message(QmpMonitor *mon, const char *text, size_t len)
{
    JSONValue *req, *reply, *id;
    char *err = NULL;

    req = json_parse(text, len, &err);
    if (!req) {
        char *desc = g_strdup_printf("JSON parse error, %s", err);
        reply = qmp_error("GenericError", desc);
        g_free(desc);
        g_free(err);
        qmp_send(mon, reply);
        json_free(reply);
        return;
    }
    reply = qmp_dispatch(mon, req);
    id = json_object_get(req, "id");
    if (id) {
        json_object_set(reply, "id", json_copy(id));
    }
    qmp_send(mon, reply);
    json_free(reply);
    json_free(req);
}

static void qmp_read(void *opaque, const uint8_t *buf, size_t len)
{
    QmpMonitor *mon = opaque;
    size_t i;

    for (i = 0; i < len; i++) {
        int r = json_streamer_feed(&mon->streamer, (char)buf[i]);

        if (r > 0) {
            qmp_handle_message(mon, mon->streamer.buf, mon->streamer.len);
            json_streamer_reset(&mon->streamer);
        } else if (r < 0) {
            JSONValue *reply = qmp_error("GenericError", "JSON parse error, message too long");
            qmp_send(mon, reply);
            json_free(reply);
        }
    }
}

static void qmp_event_cb(void *opaque, ChardevEvent event)
{
    QmpMonitor *mon = opaque;
    JSONValue *greeting, *qmp;

    switch (event) {
    case CHR_EVENT_OPENED:
        mon->negotiated = false;
        json_streamer_reset(&mon->streamer);
        qmp = json_object();
        json_object_set(qmp, "version", version_info());
        json_object_set(qmp, "capabilities", json_array());
        greeting = json_object();
        json_object_set(greeting, "QMP", qmp);
        qmp_send(mon, greeting);
        json_free(greeting);
        break;
    case CHR_EVENT_CLOSED:
        mon->negotiated = false;
        break;
    }
}

bool qmp_monitor_init(Chardev *chr, char **errp)
{
    QmpMonitor *mon = g_new0(QmpMonitor, 1);

    mon->chr = chr;
    json_streamer_init(&mon->streamer, QMP_MAX_MESSAGE);
    if (!chardev_set_frontend(chr, qmp_read, qmp_event_cb, mon)) {
        *errp = g_strdup_printf("chardev '%s' is already in use", chardev_id(chr));
        json_streamer_destroy(&mon->streamer);
        g_free(mon);
        return false;
    }
    if (!monitors) {
        monitors = g_ptr_array_new();
    }
    g_ptr_array_add(monitors, mon);
    return true;
}
