/*
 * A small strict JSON (RFC 8259) value tree, parser, serializer and message
 * splitter, for QMP on both sides of the socket (vdm and the qtest harness).
 *
 * Context: pure functions on caller-owned values; no global state, any thread.
 * Input is untrusted: the parser bounds nesting depth and never reads past
 * the given length.
 */
#ifndef SYSEMU_JSON_H
#define SYSEMU_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum JSONType {
    JSON_NULL,
    JSON_BOOL,
    JSON_INT,           /* a number without fraction/exponent that fits int64 */
    JSON_DOUBLE,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} JSONType;

typedef struct JSONValue JSONValue;

#define JSON_MAX_DEPTH 64

JSONValue *json_null(void);
JSONValue *json_bool(bool b);
JSONValue *json_int(int64_t i);
JSONValue *json_double(double d);
JSONValue *json_string(const char *s);
JSONValue *json_array(void);
JSONValue *json_object(void);
void json_free(JSONValue *v);
JSONValue *json_copy(const JSONValue *v);

/* Takes ownership of @item. */
void json_array_append(JSONValue *arr, JSONValue *item);
/* Takes ownership of @val; replaces an existing member of that name. */
void json_object_set(JSONValue *obj, const char *key, JSONValue *val);

JSONType json_type(const JSONValue *v);
bool json_get_bool(const JSONValue *v);
int64_t json_get_int(const JSONValue *v);
const char *json_get_string(const JSONValue *v);
size_t json_array_size(const JSONValue *arr);
JSONValue *json_array_get(const JSONValue *arr, size_t i);
size_t json_object_size(const JSONValue *obj);
/* Member @i in insertion order; *@key is set to its name. */
JSONValue *json_object_nth(const JSONValue *obj, size_t i, const char **key);
/* NULL when @obj is not an object or has no member @key. */
JSONValue *json_object_get(const JSONValue *obj, const char *key);

/*
 * Parse exactly one value from @text[0..@len) (surrounding whitespace
 * allowed). Returns NULL and sets *@errp (g_free it) on any error: bad
 * syntax, invalid UTF-8, a NUL character, nesting deeper than
 * JSON_MAX_DEPTH, trailing garbage.
 */
JSONValue *json_parse(const char *text, size_t len, char **errp);

/* Serialize compactly in QEMU's QMP style ("{"a": 1, "b": [2, 3]}"). g_free the result. */
char *json_to_string(const JSONValue *v);

/*
 * Splits a byte stream into top-level JSON texts by tracking brackets and
 * strings, as a QMP peer must (messages are not newline-framed).
 */
typedef struct JSONStreamer {
    char *buf;
    size_t len, cap;
    size_t max;          /* a message longer than this is an error */
    int depth;
    bool in_string, escape;
    bool overflow;
} JSONStreamer;

void json_streamer_init(JSONStreamer *s, size_t max);
void json_streamer_destroy(JSONStreamer *s);
/*
 * Feed one byte. Returns 1 when a message is complete (text in s->buf, length
 * s->len, NUL-terminated; the caller handles it, then calls
 * json_streamer_reset), -1 when the message being gathered is malformed at
 * the bracket level or too long (the streamer has reset itself and discards
 * input up to the next top-level whitespace), 0 otherwise.
 */
int json_streamer_feed(JSONStreamer *s, char c);
void json_streamer_reset(JSONStreamer *s);

#endif
