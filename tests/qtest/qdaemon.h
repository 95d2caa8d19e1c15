/*
 * A backend daemon for a qtest (a vhost-user backend): started through
 * /bin/sh with its stderr appended to a log, killed with the test whatever
 * way the test ends (PR_SET_PDEATHSIG), its log searched with a bounded wait.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_QDAEMON_H
#define TESTS_QTEST_QDAEMON_H

#include <glib.h>

typedef struct QDaemon {
    GPid pid;                   /* 0: not running */
    char *log_path;
} QDaemon;

/* Run the shell command @cmd (exec'd, stderr appended to @log_path, copied). */
void qdaemon_spawn(QDaemon *d, const char *log_path, const char *cmd);
/* The log so far (g_free it). */
char *qdaemon_read_log(const QDaemon *d);
/* Wait (bounded by the qtest timeout) until the log holds @needle @count times. */
void qdaemon_wait_log(const QDaemon *d, const char *needle, unsigned count);
/* Send @sig and reap (no-op when not running). */
void qdaemon_kill(QDaemon *d, int sig);
/* Kill with SIGTERM if running, free the log path (the file stays). */
void qdaemon_cleanup(QDaemon *d);

#endif
