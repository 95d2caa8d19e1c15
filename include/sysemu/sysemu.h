/*
 * The device host's machine-wide state: guest RAM, run state, shutdown,
 * and the QOM-style type names QMP reports.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_SYSEMU_H
#define SYSEMU_SYSEMU_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "exec/memory.h"

/* QEMU's RunState names, as query-status reports them. */
typedef enum RunState {
    RUN_STATE_PRELAUNCH,    /* -S: created, never started */
    RUN_STATE_RUNNING,
    RUN_STATE_PAUSED,       /* QMP stop */
    RUN_STATE_SHUTDOWN,
} RunState;

RunState runstate_get(void);
const char *runstate_name(RunState state);
bool runstate_is_running(void);
/* cont: prelaunch/paused -> running, emits RESUME. No-op when running. */
void vm_start(void);
/* stop: running -> paused, emits STOP. No-op otherwise (prelaunch stays). */
void vm_stop(void);
/* Ask the main loop to emit SHUTDOWN {"guest": false, "reason": @reason} and exit 0. */
void vdm_shutdown_request(const char *reason);
bool vdm_shutdown_requested(void);
/* The loop vdm_shutdown_request() quits. */
void vdm_set_main_loop(GMainLoop *loop);

/* Guest physical memory (RAM only for now), set up by the machine. */
GuestMemory *vdm_guest_memory(void);
/*
 * The fd of the shared memory backend (memfd, or file with share=on) that
 * holds guest RAM at host address @host, and @host's offset in it (for
 * vhost-user memory tables). -1 when that RAM is not shareable.
 */
int vdm_ram_fd(const void *host, uint64_t *offset);
uint64_t vdm_ram_size(void);
const char *vdm_machine_name(void);
/* Every machine type, as query-machines lists it (@alias NULL when none). */
typedef void MachineForeachFn(const char *name, const char *alias, bool is_default, const char *ram_id,
                              void *opaque);
void vdm_machine_foreach(MachineForeachFn *fn, void *opaque);
const char *vdm_guest_name(void);      /* -name, or NULL */

/*
 * Reads of unassigned guest memory return zeros and writes are dropped, as
 * QEMU's unassigned memory region does; these never fail.
 */
void vdm_memory_read(hwaddr addr, void *buf, uint64_t len);
void vdm_memory_write(hwaddr addr, const void *buf, uint64_t len);
void vdm_memory_set(hwaddr addr, uint8_t pattern, uint64_t len);

/* QOM-style type registry (names and parents only, for qom-list-types). */
void type_register_simple(const char *name, const char *parent, bool abstract);
typedef void TypeForeachFn(const char *name, const char *parent, bool abstract, void *opaque);
void type_foreach(TypeForeachFn *fn, void *opaque);
/* True when @name is @ancestor or derives from it. */
bool type_is_a(const char *name, const char *ancestor);

/* system/vl.c: parse the command line and build the machine (exits 1 on errors). */
void vdm_init(int argc, char **argv);
/* Run until shutdown; returns the exit status. */
int vdm_main_loop(void);
void vdm_cleanup(void);

#endif
