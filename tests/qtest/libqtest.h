/*
 * libqtest: start vdm with -qtest and -qmp sockets and drive it, in the shape
 * of QEMU's tests/qtest/libqtest.h (the same call names where they exist).
 *
 * The binary is $QTEST_QEMU_BINARY (meson sets it to the vdm it built).
 * Every started vdm is killed on every exit path of the test process:
 * qtest_quit, normal exit (atexit), an assertion (SIGABRT handler) and the
 * death of the test process (PR_SET_PDEATHSIG in the child). Every wait on
 * vdm has a timeout ($QTEST_TIMEOUT seconds, default 30): a hung vdm fails
 * the test instead of hanging it.
 *
 * Context: single-threaded test programs.
 */
#ifndef TESTS_QTEST_LIBQTEST_H
#define TESTS_QTEST_LIBQTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "sysemu/json.h"

typedef struct QTestState QTestState;

/* Start vdm with @extra_args (split like a shell would, no shell runs) plus the sockets. */
QTestState *qtest_init(const char *extra_args);
QTestState *qtest_initf(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Kill vdm (SIGTERM, then SIGKILL after the timeout) and free @s. */
void qtest_quit(QTestState *s);
/* Wait (with timeout) for vdm to exit by itself; returns its wait status. */
int qtest_wait_exit(QTestState *s);
pid_t qtest_pid(QTestState *s);

/* qtest protocol: each call asserts an "OK" reply. */
uint8_t qtest_readb(QTestState *s, uint64_t addr);
uint16_t qtest_readw(QTestState *s, uint64_t addr);
uint32_t qtest_readl(QTestState *s, uint64_t addr);
uint64_t qtest_readq(QTestState *s, uint64_t addr);
void qtest_writeb(QTestState *s, uint64_t addr, uint8_t value);
void qtest_writew(QTestState *s, uint64_t addr, uint16_t value);
void qtest_writel(QTestState *s, uint64_t addr, uint32_t value);
void qtest_writeq(QTestState *s, uint64_t addr, uint64_t value);
void qtest_memread(QTestState *s, uint64_t addr, void *data, size_t size);     /* "read" */
void qtest_memwrite(QTestState *s, uint64_t addr, const void *data, size_t size); /* "write" */
void qtest_bufread(QTestState *s, uint64_t addr, void *data, size_t size);     /* "b64read" */
void qtest_bufwrite(QTestState *s, uint64_t addr, const void *data, size_t size); /* "b64write" */
void qtest_memset(QTestState *s, uint64_t addr, uint8_t pattern, size_t size);
uint8_t qtest_inb(QTestState *s, uint16_t port);
uint16_t qtest_inw(QTestState *s, uint16_t port);
uint32_t qtest_inl(QTestState *s, uint16_t port);
void qtest_outb(QTestState *s, uint16_t port, uint8_t value);
void qtest_outw(QTestState *s, uint16_t port, uint16_t value);
void qtest_outl(QTestState *s, uint16_t port, uint32_t value);
int64_t qtest_clock_step(QTestState *s, int64_t step);
int64_t qtest_clock_step_next(QTestState *s);
int64_t qtest_clock_set(QTestState *s, int64_t val);
void qtest_irq_intercept_in(QTestState *s, const char *qom_path);
/* Level of IRQ line @num as the asynchronous "IRQ raise/lower" lines left it (after a round trip). */
bool qtest_get_irq(QTestState *s, int num);

/* Send @line (no newline) and return the reply line without its newline; g_free it. */
char *qtest_raw(QTestState *s, const char *line);
/* Send raw bytes on the qtest socket without waiting for anything. */
void qtest_raw_send(QTestState *s, const void *buf, size_t len);

/*
 * QMP. The greeting is read and qmp_capabilities sent by qtest_init.
 * qtest_qmp sends the formatted text (plain printf formatting: the caller
 * writes valid JSON) and returns the reply (json_free it); events that
 * arrive first are queued for qtest_qmp_eventwait.
 */
JSONValue *qtest_qmp(QTestState *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
void qtest_qmp_send_raw(QTestState *s, const char *text);
/* The next QMP message of any kind (events not queued). */
JSONValue *qtest_qmp_receive(QTestState *s);
JSONValue *qtest_qmp_eventwait(QTestState *s, const char *event);
const JSONValue *qtest_qmp_greeting(QTestState *s);
/* Like qtest_init but QMP is left un-negotiated (the greeting is still read). */
QTestState *qtest_init_without_qmp_handshake(const char *extra_args);

/*
 * device_add of @driver with id @id (NULL: none) and the extra JSON members
 * @props (e.g. "\"addr\": \"06.0\"", or NULL); asserts success (QEMU's
 * qtest_qmp_device_add).
 */
void qtest_qmp_device_add(QTestState *s, const char *driver, const char *id, const char *props);
/* device_del {"id": @id}; asserts success. The device may stay until the guest ejects it. */
void qtest_qmp_device_del_send(QTestState *s, const char *id);
/* qom-get's "return" (json_free it); asserts success. */
JSONValue *qtest_qom_get(QTestState *s, const char *path, const char *property);

/* The vdm binary to run. */
const char *qtest_binary(void);
/* Seconds any single wait may take. */
int qtest_timeout_seconds(void);

#endif
