/*
 * The virtual clock (QEMU_CLOCK_VIRTUAL under the qtest accelerator): it
 * stands still until the test moves it with clock_step / clock_set, and the
 * timers that expire on the way run in deadline order.
 *
 * Context: main loop thread only.
 */
#ifndef SYSEMU_VCLOCK_H
#define SYSEMU_VCLOCK_H

#include <stdbool.h>
#include <stdint.h>

typedef void VClockTimerCb(void *opaque);

typedef struct VClockTimer {
    int64_t expire_ns;      /* -1 when not armed */
    VClockTimerCb *cb;
    void *opaque;
} VClockTimer;

int64_t vclock_get_ns(void);
void vclock_timer_init(VClockTimer *t, VClockTimerCb *cb, void *opaque);
void vclock_timer_mod(VClockTimer *t, int64_t expire_ns);
void vclock_timer_del(VClockTimer *t);
/* Nanoseconds until the earliest armed timer (>= 0), or -1 if none. */
int64_t vclock_deadline_ns(void);
/* Advance to @dest, running due timers; never moves backwards. */
void vclock_warp(int64_t dest);

#endif
