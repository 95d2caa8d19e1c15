/*
 * Device property tables: parsing and listing (see include/hw/qdev-properties.h).
 */
#include <stdio.h>
#include <string.h>

#include "hw/qdev-properties.h"

bool qdev_prop_parse_bool(const char *v, bool *out)
{
    if (!g_strcmp0(v, "on") || !g_strcmp0(v, "true") || !g_strcmp0(v, "yes") || !g_strcmp0(v, "1")) {
        *out = true;
        return true;
    }
    if (!g_strcmp0(v, "off") || !g_strcmp0(v, "false") || !g_strcmp0(v, "no") || !g_strcmp0(v, "0")) {
        *out = false;
        return true;
    }
    return false;
}

bool qdev_prop_parse_mac(const char *s, uint8_t mac[6])
{
    unsigned v[6];
    char tail;

    if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
                     &tail) != 6) {
        return false;
    }
    for (unsigned i = 0; i < 6; i++) {
        mac[i] = (uint8_t)v[i];
    }
    return true;
}

static bool prop_parse(const Property *p, void *field, const char *value, GError **errp)
{
    const char *shown = value ? value : "";
    guint64 u;

    switch (p->type) {
    case PROP_TYPE_BOOL:
        if (!qdev_prop_parse_bool(value, field)) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "property '%s' expects on/off, not '%s'", p->name, shown);
            return false;
        }
        return true;
    case PROP_TYPE_UINT32:
        if (!value || !g_ascii_string_to_unsigned(value, 10, 0, UINT32_MAX, &u, NULL)) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "property '%s' expects a number, not '%s'", p->name, shown);
            return false;
        }
        *(uint32_t *)field = (uint32_t)u;
        return true;
    case PROP_TYPE_STRING:
        if (!value || strlen(value) >= p->size) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "property '%s' takes at most %zu bytes", p->name, p->size - 1);
            return false;
        }
        g_strlcpy(field, value, p->size);
        return true;
    case PROP_TYPE_MACADDR:
        if (!qdev_prop_parse_mac(value, field)) {
            g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_BAD_VALUE,
                        "property '%s' expects XX:XX:XX:XX:XX:XX, not '%s'", p->name, shown);
            return false;
        }
        return true;
    }
    return false;
}

bool qdev_prop_set(void *conf, const Property *props, size_t nprops, const char *owner,
                   const char *name, const char *value, GError **errp)
{
    for (size_t i = 0; i < nprops; i++) {
        if (!strcmp(props[i].name, name)) {
            return prop_parse(&props[i], (uint8_t *)conf + props[i].offset, value, errp);
        }
    }
    g_set_error(errp, G_OPTION_ERROR, G_OPTION_ERROR_UNKNOWN_OPTION, "%s has no property '%s'", owner, name);
    return false;
}

static const char *const type_names[] = {
    [PROP_TYPE_BOOL] = "bool", [PROP_TYPE_UINT32] = "uint32",
    [PROP_TYPE_STRING] = "str", [PROP_TYPE_MACADDR] = "macaddr",
};

void qdev_prop_list_values(const void *conf, const Property *props, size_t nprops,
                           void (*fn)(const char *name, const char *type, const char *value, void *opaque),
                           void *opaque)
{
    for (size_t i = 0; i < nprops; i++) {
        const uint8_t *field = (const uint8_t *)conf + props[i].offset;
        char buf[32];
        const char *v = buf;

        switch (props[i].type) {
        case PROP_TYPE_BOOL:
            v = *(const bool *)field ? "true" : "false";
            break;
        case PROP_TYPE_UINT32:
            g_snprintf(buf, sizeof(buf), "%u", *(const uint32_t *)field);
            break;
        case PROP_TYPE_STRING:
            v = (const char *)field;
            break;
        case PROP_TYPE_MACADDR:
            g_snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", field[0], field[1], field[2],
                       field[3], field[4], field[5]);
            break;
        }
        fn(props[i].name, type_names[props[i].type], v, opaque);
    }
}

void qdev_prop_list(const Property *props, size_t nprops,
                    void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                    void *opaque)
{

    for (size_t i = 0; i < nprops; i++) {
        fn(props[i].name, type_names[props[i].type], props[i].desc ? props[i].desc : "", opaque);
    }
}
