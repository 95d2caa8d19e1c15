/*
 * The virtual clock and its timers (see include/sysemu/vclock.h).
 */
#include <glib.h>

#include "sysemu/vclock.h"

static int64_t clock_ns;
static GPtrArray *timers;     /* every initialised timer; few, so a scan is fine */

int64_t vclock_get_ns(void)
{
    return clock_ns;
}

void vclock_timer_init(VClockTimer *t, VClockTimerCb *cb, void *opaque)
{
    t->expire_ns = -1;
    t->cb = cb;
    t->opaque = opaque;
    if (!timers) {
        timers = g_ptr_array_new();
    }
    g_ptr_array_add(timers, t);
}

void vclock_timer_mod(VClockTimer *t, int64_t expire_ns)
{
    t->expire_ns = expire_ns < 0 ? 0 : expire_ns;
}

void vclock_timer_del(VClockTimer *t)
{
    t->expire_ns = -1;
}

static VClockTimer *earliest(void)
{
    VClockTimer *best = NULL;
    guint i;

    for (i = 0; timers && i < timers->len; i++) {
        VClockTimer *t = g_ptr_array_index(timers, i);
        if (t->expire_ns >= 0 && (!best || t->expire_ns < best->expire_ns)) {
            best = t;
        }
    }
    return best;
}

int64_t vclock_deadline_ns(void)
{
    VClockTimer *t = earliest();

    if (!t) {
        return -1;
    }
    return t->expire_ns > clock_ns ? t->expire_ns - clock_ns : 0;
}

void vclock_warp(int64_t dest)
{
    VClockTimer *t;

    while ((t = earliest()) && t->expire_ns <= dest) {
        if (t->expire_ns > clock_ns) {
            clock_ns = t->expire_ns;
        }
        t->expire_ns = -1;
        t->cb(t->opaque);
    }
    if (dest > clock_ns) {
        clock_ns = dest;
    }
}
