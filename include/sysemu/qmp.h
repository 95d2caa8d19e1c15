/*
 * QMP monitors (docs/interop/qmp-spec.rst): greeting, capabilities
 * negotiation, command dispatch with QMP's error shape, and events.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_QMP_H
#define SYSEMU_QMP_H

#include <stdbool.h>

#include "sysemu/chardev.h"
#include "sysemu/json.h"

/* Largest accepted QMP message. */
#define QMP_MAX_MESSAGE (1u << 20)

bool qmp_monitor_init(Chardev *chr, char **errp);
/* Send an event (takes @data, may be NULL) to every monitor past negotiation. */
void qmp_event_emit(const char *name, JSONValue *data);

#endif
