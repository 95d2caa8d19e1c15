/*
 * A backend daemon for a qtest (qdaemon.h).
 */
#include <glib.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest.h"
#include "qdaemon.h"

/* The backend dies with the test, whatever way the test ends (an assertion included). */
static void child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

void qdaemon_spawn(QDaemon *d, const char *log_path, const char *cmd)
{
    char *full = g_strdup_printf("exec %s 2>>%s", cmd, log_path);
    gchar *argv[] = { (gchar *)"/bin/sh", (gchar *)"-c", full, NULL };
    GError *err = NULL;

    g_assert_cmpint(d->pid, ==, 0);
    if (!d->log_path) {
        d->log_path = g_strdup(log_path);
    }
    if (!g_spawn_async(NULL, argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL, child_setup,
                       NULL, &d->pid, &err)) {
        g_error("cannot start '%s': %s", cmd, err->message);
    }
    g_free(full);
}

char *qdaemon_read_log(const QDaemon *d)
{
    char *text = NULL;

    if (!d->log_path || !g_file_get_contents(d->log_path, &text, NULL, NULL)) {
        return g_strdup("");
    }
    return text;
}

void qdaemon_wait_log(const QDaemon *d, const char *needle, unsigned count)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)qtest_timeout_seconds() * G_USEC_PER_SEC;

    for (;;) {
        char *text = qdaemon_read_log(d);
        unsigned n = 0;

        for (const char *p = text; (p = strstr(p, needle)); p++) {
            n++;
        }
        g_free(text);
        if (n >= count) {
            return;
        }
        if (g_get_monotonic_time() > deadline) {
            g_error("backend log %s: '%s' seen %u times, want %u", d->log_path, needle, n, count);
        }
        g_usleep(5000);
    }
}

void qdaemon_kill(QDaemon *d, int sig)
{
    int status;

    if (!d->pid) {
        return;
    }
    kill(d->pid, sig);
    g_assert_cmpint(waitpid(d->pid, &status, 0), ==, d->pid);
    g_spawn_close_pid(d->pid);
    d->pid = 0;
}

void qdaemon_cleanup(QDaemon *d)
{
    qdaemon_kill(d, SIGTERM);
    g_free(d->log_path);
    d->log_path = NULL;
}
