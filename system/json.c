/*
 * A small strict JSON value tree, parser, serializer and stream splitter.
 * See include/sysemu/json.h for the contract.
 */
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sysemu/json.h"

typedef struct JSONMember {
    char *key;
    JSONValue *val;
} JSONMember;

struct JSONValue {
    JSONType type;
    union {
        bool b;
        int64_t i;
        double d;
        char *s;
        GPtrArray *arr;         /* of JSONValue * */
        GArray *obj;            /* of JSONMember, insertion order */
    } u;
};

static JSONValue *json_new(JSONType type)
{
    JSONValue *v = g_new0(JSONValue, 1);

    v->type = type;
    return v;
}

JSONValue *json_null(void)
{
    return json_new(JSON_NULL);
}

JSONValue *json_bool(bool b)
{
    JSONValue *v = json_new(JSON_BOOL);

    v->u.b = b;
    return v;
}

JSONValue *json_int(int64_t i)
{
    JSONValue *v = json_new(JSON_INT);

    v->u.i = i;
    return v;
}

JSONValue *json_double(double d)
{
    JSONValue *v = json_new(JSON_DOUBLE);

    v->u.d = d;
    return v;
}

JSONValue *json_string(const char *s)
{
    JSONValue *v = json_new(JSON_STRING);

    v->u.s = g_strdup(s);
    return v;
}

JSONValue *json_array(void)
{
    JSONValue *v = json_new(JSON_ARRAY);

    v->u.arr = g_ptr_array_new_with_free_func((GDestroyNotify)json_free);
    return v;
}

static void json_member_clear(gpointer p)
{
    JSONMember *m = p;

    g_free(m->key);
    json_free(m->val);
}

JSONValue *json_object(void)
{
    JSONValue *v = json_new(JSON_OBJECT);

    v->u.obj = g_array_new(FALSE, FALSE, sizeof(JSONMember));
    g_array_set_clear_func(v->u.obj, json_member_clear);
    return v;
}

void json_free(JSONValue *v)
{
    if (!v) {
        return;
    }
    switch (v->type) {
    case JSON_STRING:
        g_free(v->u.s);
        break;
    case JSON_ARRAY:
        g_ptr_array_free(v->u.arr, TRUE);
        break;
    case JSON_OBJECT:
        g_array_free(v->u.obj, TRUE);
        break;
    default:
        break;
    }
    g_free(v);
}

JSONValue *json_copy(const JSONValue *v)
{
    JSONValue *c;
    size_t i;

    switch (v->type) {
    case JSON_NULL:
        return json_null();
    case JSON_BOOL:
        return json_bool(v->u.b);
    case JSON_INT:
        return json_int(v->u.i);
    case JSON_DOUBLE:
        return json_double(v->u.d);
    case JSON_STRING:
        return json_string(v->u.s);
    case JSON_ARRAY:
        c = json_array();
        for (i = 0; i < v->u.arr->len; i++) {
            json_array_append(c, json_copy(g_ptr_array_index(v->u.arr, i)));
        }
        return c;
    case JSON_OBJECT:
        c = json_object();
        for (i = 0; i < v->u.obj->len; i++) {
            JSONMember *m = &g_array_index(v->u.obj, JSONMember, i);
            json_object_set(c, m->key, json_copy(m->val));
        }
        return c;
    }
    g_assert_not_reached();     /* host invariant: every type is handled above */
}

void json_array_append(JSONValue *arr, JSONValue *item)
{
    g_assert(arr->type == JSON_ARRAY);     /* host programming error otherwise */
    g_ptr_array_add(arr->u.arr, item);
}

void json_object_set(JSONValue *obj, const char *key, JSONValue *val)
{
    JSONMember m;
    size_t i;

    g_assert(obj->type == JSON_OBJECT);    /* host programming error otherwise */
    for (i = 0; i < obj->u.obj->len; i++) {
        JSONMember *old = &g_array_index(obj->u.obj, JSONMember, i);
        if (strcmp(old->key, key) == 0) {
            json_free(old->val);
            old->val = val;
            return;
        }
    }
    m.key = g_strdup(key);
    m.val = val;
    g_array_append_val(obj->u.obj, m);
}

JSONType json_type(const JSONValue *v)
{
    return v->type;
}

bool json_get_bool(const JSONValue *v)
{
    return v->type == JSON_BOOL && v->u.b;
}

int64_t json_get_int(const JSONValue *v)
{
    return v->type == JSON_INT ? v->u.i : v->type == JSON_DOUBLE ? (int64_t)v->u.d : 0;
}

const char *json_get_string(const JSONValue *v)
{
    return v && v->type == JSON_STRING ? v->u.s : NULL;
}

size_t json_array_size(const JSONValue *arr)
{
    return arr->type == JSON_ARRAY ? arr->u.arr->len : 0;
}

JSONValue *json_array_get(const JSONValue *arr, size_t i)
{
    if (arr->type != JSON_ARRAY || i >= arr->u.arr->len) {
        return NULL;
    }
    return g_ptr_array_index(arr->u.arr, i);
}

size_t json_object_size(const JSONValue *obj)
{
    return obj->type == JSON_OBJECT ? obj->u.obj->len : 0;
}

JSONValue *json_object_nth(const JSONValue *obj, size_t i, const char **key)
{
    JSONMember *m;

    if (obj->type != JSON_OBJECT || i >= obj->u.obj->len) {
        return NULL;
    }
    m = &g_array_index(obj->u.obj, JSONMember, i);
    *key = m->key;
    return m->val;
}

JSONValue *json_object_get(const JSONValue *obj, const char *key)
{
    size_t i;

    if (!obj || obj->type != JSON_OBJECT) {
        return NULL;
    }
    for (i = 0; i < obj->u.obj->len; i++) {
        JSONMember *m = &g_array_index(obj->u.obj, JSONMember, i);
        if (strcmp(m->key, key) == 0) {
            return m->val;
        }
    }
    return NULL;
}

/* ---- parser ---- */

typedef struct JSONParser {
    const char *p, *end;
    char *err;
} JSONParser;

static void parse_error(JSONParser *ps, const char *what)
{
    if (!ps->err) {
        ps->err = g_strdup(what);
    }
}

static void skip_ws(JSONParser *ps)
{
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r')) {
        ps->p++;
    }
}

static int hex4(JSONParser *ps)
{
    int v = 0, i;

    if (ps->end - ps->p < 4) {
        return -1;
    }
    for (i = 0; i < 4; i++) {
        int d = g_ascii_xdigit_value(ps->p[i]);
        if (d < 0) {
            return -1;
        }
        v = v * 16 + d;
    }
    ps->p += 4;
    return v;
}

static char *parse_string(JSONParser *ps)
{
    GString *s = g_string_new(NULL);

    ps->p++;    /* opening quote */
    while (ps->p < ps->end) {
        unsigned char c = *ps->p++;

        if (c == '"') {
            if (!g_utf8_validate(s->str, s->len, NULL)) {
                parse_error(ps, "invalid UTF-8 in string");
                break;
            }
            return g_string_free(s, FALSE);
        }
        if (c < 0x20) {
            parse_error(ps, "control character in string");
            break;
        }
        if (c != '\\') {
            g_string_append_c(s, (char)c);
            continue;
        }
        if (ps->p >= ps->end) {
            break;
        }
        c = *ps->p++;
        switch (c) {
        case '"': case '\\': case '/':
            g_string_append_c(s, (char)c);
            continue;
        case 'b': g_string_append_c(s, '\b'); continue;
        case 'f': g_string_append_c(s, '\f'); continue;
        case 'n': g_string_append_c(s, '\n'); continue;
        case 'r': g_string_append_c(s, '\r'); continue;
        case 't': g_string_append_c(s, '\t'); continue;
        case 'u': {
            int cp = hex4(ps);

            if (cp >= 0xd800 && cp < 0xdc00) {
                int lo;
                if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u') {
                    cp = -1;
                } else {
                    ps->p += 2;
                    lo = hex4(ps);
                    cp = (lo >= 0xdc00 && lo < 0xe000) ? 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00) : -1;
                }
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                cp = -1;
            }
            if (cp <= 0) {
                parse_error(ps, "invalid \\u escape (or \\u0000)");
                goto fail;
            }
            g_string_append_unichar(s, (gunichar)cp);
            continue;
        }
        default:
            parse_error(ps, "invalid escape sequence in string");
            goto fail;
        }
    }
    parse_error(ps, "unterminated string");
fail:
    g_string_free(s, TRUE);
    return NULL;
}

static JSONValue *parse_number(JSONParser *ps)
{
    const char *start = ps->p;
    bool is_int = true;
    char *tmp, *endp;
    JSONValue *v = NULL;

    if (ps->p < ps->end && *ps->p == '-') {
        ps->p++;
    }
    if (ps->p < ps->end && *ps->p == '0') {
        ps->p++;
    } else if (ps->p < ps->end && g_ascii_isdigit(*ps->p)) {
        while (ps->p < ps->end && g_ascii_isdigit(*ps->p)) {
            ps->p++;
        }
    } else {
        parse_error(ps, "invalid number");
        return NULL;
    }
    if (ps->p < ps->end && *ps->p == '.') {
        is_int = false;
        ps->p++;
        if (ps->p >= ps->end || !g_ascii_isdigit(*ps->p)) {
            parse_error(ps, "invalid number");
            return NULL;
        }
        while (ps->p < ps->end && g_ascii_isdigit(*ps->p)) {
            ps->p++;
        }
    }
    if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
        is_int = false;
        ps->p++;
        if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) {
            ps->p++;
        }
        if (ps->p >= ps->end || !g_ascii_isdigit(*ps->p)) {
            parse_error(ps, "invalid number");
            return NULL;
        }
        while (ps->p < ps->end && g_ascii_isdigit(*ps->p)) {
            ps->p++;
        }
    }
    tmp = g_strndup(start, ps->p - start);
    if (is_int) {
        gint64 i;
        errno = 0;
        i = g_ascii_strtoll(tmp, &endp, 10);
        if (errno == 0 && *endp == '\0') {
            v = json_int(i);
        }
    }
    if (!v) {
        /* fraction, exponent, or an integer too large for int64 (as QEMU: a double) */
        v = json_double(g_ascii_strtod(tmp, &endp));
    }
    g_free(tmp);
    return v;
}

static bool match_word(JSONParser *ps, const char *w)
{
    size_t n = strlen(w);

    if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, w, n) == 0) {
        ps->p += n;
        return true;
    }
    return false;
}

static JSONValue *parse_value(JSONParser *ps, int depth)
{
    JSONValue *v;

    skip_ws(ps);
    if (ps->p >= ps->end) {
        parse_error(ps, "unexpected end of input");
        return NULL;
    }
    if (depth > JSON_MAX_DEPTH) {
        parse_error(ps, "nesting too deep");
        return NULL;
    }
    switch (*ps->p) {
    case '{':
        ps->p++;
        v = json_object();
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == '}') {
            ps->p++;
            return v;
        }
        for (;;) {
            char *key;
            JSONValue *item;

            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') {
                parse_error(ps, "expected a string (member name)");
                goto fail;
            }
            key = parse_string(ps);
            if (!key) {
                goto fail;
            }
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') {
                g_free(key);
                parse_error(ps, "expected ':'");
                goto fail;
            }
            ps->p++;
            item = parse_value(ps, depth + 1);
            if (!item) {
                g_free(key);
                goto fail;
            }
            if (json_object_get(v, key)) {
                g_free(key);
                json_free(item);
                parse_error(ps, "duplicate member name");
                goto fail;
            }
            json_object_set(v, key, item);
            g_free(key);
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == '}') {
                ps->p++;
                return v;
            }
            parse_error(ps, "expected ',' or '}'");
            goto fail;
        }
    case '[':
        ps->p++;
        v = json_array();
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ']') {
            ps->p++;
            return v;
        }
        for (;;) {
            JSONValue *item = parse_value(ps, depth + 1);

            if (!item) {
                goto fail;
            }
            json_array_append(v, item);
            skip_ws(ps);
            if (ps->p < ps->end && *ps->p == ',') {
                ps->p++;
                continue;
            }
            if (ps->p < ps->end && *ps->p == ']') {
                ps->p++;
                return v;
            }
            parse_error(ps, "expected ',' or ']'");
            goto fail;
        }
    case '"': {
        char *s = parse_string(ps);

        if (!s) {
            return NULL;
        }
        v = json_new(JSON_STRING);
        v->u.s = s;
        return v;
    }
    case 't':
        if (match_word(ps, "true")) {
            return json_bool(true);
        }
        break;
    case 'f':
        if (match_word(ps, "false")) {
            return json_bool(false);
        }
        break;
    case 'n':
        if (match_word(ps, "null")) {
            return json_null();
        }
        break;
    default:
        if (*ps->p == '-' || g_ascii_isdigit(*ps->p)) {
            return parse_number(ps);
        }
        break;
    }
    parse_error(ps, "invalid token");
    return NULL;
fail:
    json_free(v);
    return NULL;
}

JSONValue *json_parse(const char *text, size_t len, char **errp)
{
    JSONParser ps = { .p = text, .end = text + len };
    JSONValue *v;

    if (memchr(text, '\0', len)) {
        *errp = g_strdup("NUL byte in input");
        return NULL;
    }
    v = parse_value(&ps, 0);
    if (v) {
        skip_ws(&ps);
        if (ps.p != ps.end) {
            json_free(v);
            v = NULL;
            parse_error(&ps, "trailing characters after value");
        }
    }
    if (!v) {
        *errp = ps.err ? ps.err : g_strdup("parse error");
    } else {
        g_free(ps.err);
    }
    return v;
}

/* ---- serializer ---- */

static void append_string(GString *out, const char *s)
{
    g_string_append_c(out, '"');
    for (; *s; s++) {
        unsigned char c = *s;
        switch (c) {
        case '"': g_string_append(out, "\\\""); break;
        case '\\': g_string_append(out, "\\\\"); break;
        case '\b': g_string_append(out, "\\b"); break;
        case '\f': g_string_append(out, "\\f"); break;
        case '\n': g_string_append(out, "\\n"); break;
        case '\r': g_string_append(out, "\\r"); break;
        case '\t': g_string_append(out, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                g_string_append_printf(out, "\\u%04X", c);
            } else {
                g_string_append_c(out, (char)c);
            }
        }
    }
    g_string_append_c(out, '"');
}

static void append_value(GString *out, const JSONValue *v)
{
    size_t i;

    switch (v->type) {
    case JSON_NULL:
        g_string_append(out, "null");
        break;
    case JSON_BOOL:
        g_string_append(out, v->u.b ? "true" : "false");
        break;
    case JSON_INT:
        g_string_append_printf(out, "%" G_GINT64_FORMAT, v->u.i);
        break;
    case JSON_DOUBLE: {
        char buf[G_ASCII_DTOSTR_BUF_SIZE];
        g_string_append(out, isfinite(v->u.d) ? g_ascii_dtostr(buf, sizeof(buf), v->u.d) : "null");
        break;
    }
    case JSON_STRING:
        append_string(out, v->u.s);
        break;
    case JSON_ARRAY:
        g_string_append_c(out, '[');
        for (i = 0; i < v->u.arr->len; i++) {
            if (i) {
                g_string_append(out, ", ");
            }
            append_value(out, g_ptr_array_index(v->u.arr, i));
        }
        g_string_append_c(out, ']');
        break;
    case JSON_OBJECT:
        g_string_append_c(out, '{');
        for (i = 0; i < v->u.obj->len; i++) {
            JSONMember *m = &g_array_index(v->u.obj, JSONMember, i);
            if (i) {
                g_string_append(out, ", ");
            }
            append_string(out, m->key);
            g_string_append(out, ": ");
            append_value(out, m->val);
        }
        g_string_append_c(out, '}');
        break;
    }
}

char *json_to_string(const JSONValue *v)
{
    GString *out = g_string_new(NULL);

    append_value(out, v);
    return g_string_free(out, FALSE);
}

/* ---- streamer ---- */

void json_streamer_init(JSONStreamer *s, size_t max)
{
    memset(s, 0, sizeof(*s));
    s->max = max;
    s->cap = 256;
    s->buf = g_malloc(s->cap);
    s->buf[0] = '\0';
}

void json_streamer_destroy(JSONStreamer *s)
{
    g_free(s->buf);
    s->buf = NULL;
}

void json_streamer_reset(JSONStreamer *s)
{
    s->len = 0;
    s->buf[0] = '\0';
    s->depth = 0;
    s->in_string = s->escape = s->overflow = false;
}

static void streamer_push(JSONStreamer *s, char c)
{
    if (s->overflow) {
        return;
    }
    if (s->len + 1 >= s->max) {
        s->overflow = true;
        return;
    }
    if (s->len + 2 > s->cap) {
        s->cap *= 2;
        s->buf = g_realloc(s->buf, s->cap);
    }
    s->buf[s->len++] = c;
    s->buf[s->len] = '\0';
}

/* A message ends when its brackets balance; a bare scalar ends at whitespace. */
int json_streamer_feed(JSONStreamer *s, char c)
{
    bool ws = c == ' ' || c == '\t' || c == '\n' || c == '\r';

    if (s->len == 0 && !s->overflow && ws) {
        return 0;
    }
    if (s->in_string) {
        streamer_push(s, c);
        if (s->escape) {
            s->escape = false;
        } else if (c == '\\') {
            s->escape = true;
        } else if (c == '"') {
            s->in_string = false;
        }
        return 0;
    }
    if (s->depth == 0 && ws) {
        /* end of a bare scalar (or of nothing) */
        goto complete;
    }
    streamer_push(s, c);
    switch (c) {
    case '"':
        s->in_string = true;
        break;
    case '{': case '[':
        s->depth++;
        break;
    case '}': case ']':
        if (s->depth == 0) {
            goto complete;     /* stray closer: let the parser report it */
        }
        if (--s->depth == 0) {
            goto complete;
        }
        break;
    default:
        break;
    }
    return 0;
complete:
    if (s->overflow) {
        json_streamer_reset(s);
        return -1;
    }
    return 1;
}
