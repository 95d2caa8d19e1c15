/*
 * Device properties in QEMU's spelling (`-device TYPE,name=value`): one
 * table per device type maps a property name to a field of the device's
 * configuration struct. Devices keep their own defaults; this parses and
 * lists.
 */
#ifndef HW_QDEV_PROPERTIES_H
#define HW_QDEV_PROPERTIES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <glib.h>

typedef enum PropertyType {
    PROP_TYPE_BOOL,             /* on/off, true/false, yes/no, 1/0 */
    PROP_TYPE_UINT32,           /* decimal */
    PROP_TYPE_STRING,           /* char[size], at most size - 1 bytes */
    PROP_TYPE_MACADDR,          /* uint8_t[6] from XX:XX:XX:XX:XX:XX */
} PropertyType;

typedef struct Property {
    const char *name;
    PropertyType type;
    size_t offset;              /* of the field in the configuration struct */
    size_t size;                /* of the field */
    const char *desc;
} Property;

#define DEFINE_PROP(name_, type_, Struct_, field_, desc_) \
    { (name_), (type_), offsetof(Struct_, field_), sizeof(((Struct_ *)0)->field_), (desc_) }

/*
 * Set property @name of @conf from @value. Returns false with @errp set
 * (naming @owner, e.g. "virtio-blk") for an unknown name or a bad value;
 * the field is unchanged then.
 */
bool qdev_prop_set(void *conf, const Property *props, size_t nprops, const char *owner,
                   const char *name, const char *value, GError **errp);

/* Call @fn for each property: name, type name ("bool", "uint32", "str", "macaddr"), description. */
void qdev_prop_list(const Property *props, size_t nprops,
                    void (*fn)(const char *name, const char *type, const char *desc, void *opaque),
                    void *opaque);

/*
 * Call @fn for each property with its type name and the current value of
 * its field in @conf as text (bools "true"/"false", numbers in decimal), for
 * QOM's qom-get (QDevPropFn in include/sysemu/qdev.h has this shape).
 */
void qdev_prop_list_values(const void *conf, const Property *props, size_t nprops,
                           void (*fn)(const char *name, const char *type, const char *value, void *opaque),
                           void *opaque);

bool qdev_prop_parse_bool(const char *value, bool *out);
bool qdev_prop_parse_mac(const char *value, uint8_t mac[6]);

#endif
