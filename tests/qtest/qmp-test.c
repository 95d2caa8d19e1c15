/*
 * QMP against vdm: greeting, capabilities negotiation, run state with -S,
 * errors in QMP's shape, id echo, introspection, quit.
 */
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#include "libqtest.h"

static const char *error_class(const JSONValue *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "class"));
}

static const char *error_desc(const JSONValue *r)
{
    return json_get_string(json_object_get(json_object_get(r, "error"), "desc"));
}

static const char *status_of(QTestState *s)
{
    static char status[32];
    JSONValue *r = qtest_qmp(s, "{\"execute\": \"query-status\"}");
    JSONValue *ret = json_object_get(r, "return");

    g_assert(ret);
    g_assert(json_object_get(ret, "running"));
    g_strlcpy(status, json_get_string(json_object_get(ret, "status")), sizeof(status));
    g_assert_cmpint(json_get_bool(json_object_get(ret, "running")), ==, strcmp(status, "running") == 0);
    json_free(r);
    return status;
}

static void test_greeting_and_negotiation(void)
{
    QTestState *s = qtest_init_without_qmp_handshake("-machine none");
    const JSONValue *g = qtest_qmp_greeting(s);
    JSONValue *qmp = json_object_get(g, "QMP"), *ver, *r;

    g_assert_cmpuint(json_object_size(g), ==, 1);
    ver = json_object_get(json_object_get(qmp, "version"), "qemu");
    g_assert(json_object_get(ver, "major") && json_object_get(ver, "minor") && json_object_get(ver, "micro"));
    g_assert(json_get_string(json_object_get(json_object_get(qmp, "version"), "package")));
    g_assert_cmpint(json_type(json_object_get(qmp, "capabilities")), ==, JSON_ARRAY);
    g_assert_cmpuint(json_array_size(json_object_get(qmp, "capabilities")), ==, 0);

    /* before negotiation only qmp_capabilities exists */
    r = qtest_qmp(s, "{\"execute\": \"query-status\", \"id\": \"a\"}");
    g_assert_cmpstr(error_class(r), ==, "CommandNotFound");
    g_assert_cmpstr(error_desc(r), ==, "Expecting capabilities negotiation with 'qmp_capabilities'");
    g_assert_cmpstr(json_get_string(json_object_get(r, "id")), ==, "a");
    json_free(r);
    r = qtest_qmp(s, "{\"execute\": \"qmp_capabilities\", \"arguments\": {\"enable\": [\"oob\"]}}");
    g_assert_cmpstr(error_class(r), ==, "GenericError");
    json_free(r);
    r = qtest_qmp(s, "{\"execute\": \"qmp_capabilities\"}");
    g_assert_cmpuint(json_object_size(json_object_get(r, "return")), ==, 0);
    json_free(r);
    r = qtest_qmp(s, "{\"execute\": \"qmp_capabilities\"}");
    g_assert_cmpstr(error_class(r), ==, "CommandNotFound");
    json_free(r);
    g_assert_cmpstr(status_of(s), ==, "running");
    qtest_quit(s);
}

static void test_prelaunch_cont_stop(void)
{
    QTestState *s = qtest_init("-machine none -S");
    JSONValue *r, *ev;

    g_assert_cmpstr(status_of(s), ==, "prelaunch");
    /* stop before the first start changes nothing (QEMU: no STOP event) */
    r = qtest_qmp(s, "{\"execute\": \"stop\"}");
    g_assert(json_object_get(r, "return"));
    json_free(r);
    g_assert_cmpstr(status_of(s), ==, "prelaunch");
    r = qtest_qmp(s, "{\"execute\": \"cont\"}");
    g_assert(json_object_get(r, "return"));
    json_free(r);
    ev = qtest_qmp_eventwait(s, "RESUME");
    g_assert(json_object_get(json_object_get(ev, "timestamp"), "seconds"));
    g_assert(json_object_get(json_object_get(ev, "timestamp"), "microseconds"));
    json_free(ev);
    g_assert_cmpstr(status_of(s), ==, "running");
    r = qtest_qmp(s, "{\"execute\": \"stop\"}");
    json_free(r);
    json_free(qtest_qmp_eventwait(s, "STOP"));
    g_assert_cmpstr(status_of(s), ==, "paused");
    r = qtest_qmp(s, "{\"execute\": \"cont\"}");
    json_free(r);
    json_free(qtest_qmp_eventwait(s, "RESUME"));
    g_assert_cmpstr(status_of(s), ==, "running");
    qtest_quit(s);
}

static void test_errors_and_id(void)
{
    static const struct {
        const char *in, *klass, *desc;
    } cases[] = {
        { "{\"execute\": \"no-such-command\"}", "CommandNotFound",
          "The command no-such-command has not been found" },
        { "{\"arguments\": {}}", "GenericError", "QMP input lacks member 'execute'" },
        { "{\"execute\": 42}", "GenericError", "QMP input member 'execute' must be a string" },
        { "{\"execute\": \"cont\", \"arguments\": []}", "GenericError",
          "QMP input member 'arguments' must be an object" },
        { "{\"execute\": \"cont\", \"bogus\": 1}", "GenericError", "QMP input member 'bogus' is unexpected" },
        { "{\"execute\": \"cont\", \"arguments\": {\"x\": 1}}", "GenericError", "Parameter 'x' is unexpected" },
        { "[1, 2]", "GenericError", "QMP input must be a JSON object" },
        { "{\"execute\": \"qom-list-types\", \"arguments\": {\"abstract\": 1}}", "GenericError", NULL },
        { "{\"execute\": \"cont\" \"x\"}", "GenericError", NULL },
        { "{\"execute\": \"cont\", \"execute\": \"stop\"}", "GenericError", NULL },
        { "{\"execute\": \"c\\u0000\"}", "GenericError", NULL },
    };
    QTestState *s = qtest_init("-machine none");
    JSONValue *r, *id;
    unsigned i;

    for (i = 0; i < G_N_ELEMENTS(cases); i++) {
        r = qtest_qmp(s, "%s", cases[i].in);
        g_assert_cmpstr(error_class(r), ==, cases[i].klass);
        if (cases[i].desc) {
            g_assert_cmpstr(error_desc(r), ==, cases[i].desc);
        }
        json_free(r);
    }
    /* garbage outside any object: an error, then the stream recovers */
    r = qtest_qmp(s, "nonsense ");
    g_assert_cmpstr(error_class(r), ==, "GenericError");
    json_free(r);
    /* deep nesting is refused, not recursed into without bound */
    {
        GString *deep = g_string_new("{\"execute\": \"cont\", \"id\": ");
        for (i = 0; i < 1000; i++) {
            g_string_append_c(deep, '[');
        }
        for (i = 0; i < 1000; i++) {
            g_string_append_c(deep, ']');
        }
        g_string_append_c(deep, '}');
        r = qtest_qmp(s, "%s", deep->str);
        g_assert_cmpstr(error_class(r), ==, "GenericError");
        json_free(r);
        g_string_free(deep, TRUE);
    }
    /* id of any type comes back verbatim, on success and on error */
    r = qtest_qmp(s, "{\"execute\": \"query-status\", \"id\": {\"n\": [1, \"two\"]}}");
    id = json_object_get(r, "id");
    g_assert(id);
    {
        char *text = json_to_string(id);
        g_assert_cmpstr(text, ==, "{\"n\": [1, \"two\"]}");
        g_free(text);
    }
    json_free(r);
    r = qtest_qmp(s, "{\"id\": 17, \"execute\": \"nope\"}");
    g_assert_cmpint(json_get_int(json_object_get(r, "id")), ==, 17);
    g_assert_cmpstr(error_class(r), ==, "CommandNotFound");
    json_free(r);
    g_assert_cmpstr(status_of(s), ==, "running");
    qtest_quit(s);
}

static bool array_has_name(const JSONValue *arr, const char *name)
{
    size_t i;

    for (i = 0; i < json_array_size(arr); i++) {
        if (g_strcmp0(json_get_string(json_object_get(json_array_get(arr, i), "name")), name) == 0) {
            return true;
        }
    }
    return false;
}

static void test_introspection(void)
{
    QTestState *s = qtest_init("-machine pc -name guest=vm0");
    JSONValue *r, *ret;

    r = qtest_qmp(s, "{\"execute\": \"query-machines\"}");
    ret = json_object_get(r, "return");
    /* QEMU's shape: versioned names with their aliases */
    g_assert(array_has_name(ret, "pc-i440fx-7.2") && array_has_name(ret, "pc-q35-7.2") &&
             array_has_name(ret, "microvm") && array_has_name(ret, "none"));
    for (size_t i = 0; i < json_array_size(ret); i++) {
        const JSONValue *m = json_array_get(ret, i);
        const char *name = json_get_string(json_object_get(m, "name"));

        if (!strcmp(name, "pc-i440fx-7.2")) {
            g_assert_cmpstr(json_get_string(json_object_get(m, "alias")), ==, "pc");
            g_assert_true(json_object_get(m, "is-default"));
        } else if (!strcmp(name, "pc-q35-7.2")) {
            g_assert_cmpstr(json_get_string(json_object_get(m, "alias")), ==, "q35");
        } else {
            g_assert_null(json_object_get(m, "alias"));
        }
    }
    json_free(r);

    r = qtest_qmp(s, "{\"execute\": \"query-version\"}");
    g_assert(json_object_get(json_object_get(json_object_get(r, "return"), "qemu"), "major"));
    json_free(r);

    r = qtest_qmp(s, "{\"execute\": \"query-name\"}");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(r, "return"), "name")), ==, "vm0");
    json_free(r);

    r = qtest_qmp(s, "{\"execute\": \"query-commands\"}");
    ret = json_object_get(r, "return");
    g_assert(array_has_name(ret, "qmp_capabilities") && array_has_name(ret, "quit") &&
             array_has_name(ret, "qom-list-types") && array_has_name(ret, "query-status"));
    json_free(r);

    r = qtest_qmp(s, "{\"execute\": \"qom-list-types\", \"arguments\": {\"implements\": \"memory-backend\"}}");
    ret = json_object_get(r, "return");
    g_assert(array_has_name(ret, "memory-backend-memfd") && array_has_name(ret, "memory-backend-file"));
    g_assert(!array_has_name(ret, "memory-backend"));          /* abstract: hidden by default */
    g_assert(!array_has_name(ret, "none-machine"));
    json_free(r);
    r = qtest_qmp(s, "{\"execute\": \"qom-list-types\", \"arguments\": {\"abstract\": true}}");
    ret = json_object_get(r, "return");
    g_assert(array_has_name(ret, "memory-backend") && array_has_name(ret, "machine") &&
             array_has_name(ret, "none-machine"));
    json_free(r);
    qtest_quit(s);
}

static void test_quit_emits_shutdown_and_exits_0(void)
{
    QTestState *s = qtest_init("-machine none");
    JSONValue *r, *ev, *data;
    int status;

    r = qtest_qmp(s, "{\"execute\": \"quit\", \"id\": 1}");
    g_assert(json_object_get(r, "return"));
    g_assert_cmpint(json_get_int(json_object_get(r, "id")), ==, 1);
    json_free(r);
    ev = qtest_qmp_eventwait(s, "SHUTDOWN");
    data = json_object_get(ev, "data");
    g_assert_false(json_get_bool(json_object_get(data, "guest")));
    g_assert_cmpstr(json_get_string(json_object_get(data, "reason")), ==, "host-qmp-quit");
    json_free(ev);
    status = qtest_wait_exit(s);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    qtest_quit(s);
}

static void test_sigterm_emits_shutdown(void)
{
    QTestState *s = qtest_init("-machine none");
    JSONValue *ev;
    int status;

    kill(qtest_pid(s), SIGTERM);
    ev = qtest_qmp_eventwait(s, "SHUTDOWN");
    g_assert_cmpstr(json_get_string(json_object_get(json_object_get(ev, "data"), "reason")), ==,
                    "host-signal");
    json_free(ev);
    status = qtest_wait_exit(s);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    qtest_quit(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp/greeting_and_negotiation", test_greeting_and_negotiation);
    g_test_add_func("/qmp/prelaunch_cont_stop", test_prelaunch_cont_stop);
    g_test_add_func("/qmp/errors_in_qmp_shape_and_id_echo", test_errors_and_id);
    g_test_add_func("/qmp/introspection", test_introspection);
    g_test_add_func("/qmp/quit_emits_shutdown_and_exits_0", test_quit_emits_shutdown_and_exits_0);
    g_test_add_func("/qmp/sigterm_emits_shutdown", test_sigterm_emits_shutdown);
    return g_test_run();
}
