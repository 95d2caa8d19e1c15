/*
 * The qtest accelerator's control socket: the line protocol of QEMU's
 * docs/devel/qtest.rst, with which a test process reads and writes guest
 * memory and I/O ports, moves the virtual clock and watches interrupts.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_QTEST_H
#define SYSEMU_QTEST_H

#include <stdbool.h>
#include <stdio.h>

#include "sysemu/chardev.h"

/* Longest accepted command line (a `write`/`b64write` of a big buffer). */
#define QTEST_MAX_LINE (64u << 20)
/* Largest `read`/`b64read`/`write` size. */
#define QTEST_MAX_ACCESS (16u << 20)
#define QTEST_MAX_IRQS 256

/* Serve the protocol on @chr. @log (may be NULL) gets QEMU-style -qtest-log lines. */
bool qtest_server_init(Chardev *chr, FILE *log, char **errp);
bool qtest_enabled(void);

/*
 * An outgoing interrupt line @n of the intercepted device changed to @level:
 * sends "IRQ raise N" / "IRQ lower N" when interception is on and the level
 * actually changed (as QEMU's qtest_irq_handler does).
 */
void qtest_set_irq_out(int n, int level);

#endif
