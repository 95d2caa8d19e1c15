/*
 * Character devices: the byte streams that carry qtest and QMP. Only the
 * Unix-socket backend exists (QEMU's `-chardev socket,path=...`), in client
 * mode (connect at start-up, as QEMU's libqtest expects) or server mode
 * (listen; `wait=on` blocks start-up until a peer connects).
 *
 * Context: main loop thread only. One peer at a time; a server accepts the
 * next peer after the current one closes.
 */
#ifndef SYSEMU_CHARDEV_H
#define SYSEMU_CHARDEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Chardev Chardev;

typedef enum ChardevEvent {
    CHR_EVENT_OPENED,
    CHR_EVENT_CLOSED,
} ChardevEvent;

typedef void ChardevReadFn(void *opaque, const uint8_t *buf, size_t len);
typedef void ChardevEventFn(void *opaque, ChardevEvent event);

/*
 * Create a socket chardev. Client mode connects now. Returns NULL and sets
 * *@errp (g_free it) on failure (duplicate id, path too long, socket errors).
 */
Chardev *chardev_socket_new(const char *id, const char *path, bool server, bool wait, char **errp);
Chardev *chardev_find(const char *id);
const char *chardev_id(const Chardev *chr);

/*
 * Attach the single frontend (qtest or a monitor). Fails (returns false)
 * when the chardev already has one. If a peer is connected, @event runs
 * with CHR_EVENT_OPENED right away.
 */
bool chardev_set_frontend(Chardev *chr, ChardevReadFn *read, ChardevEventFn *event, void *opaque);

/* For server chardevs with wait=on: block until a peer connects. */
bool chardev_wait_connected(Chardev *chr, char **errp);

bool chardev_is_connected(const Chardev *chr);

/*
 * Write all of @buf to the peer (blocking). A peer that went away is
 * disconnected quietly: returns false.
 */
bool chardev_write_all(Chardev *chr, const void *buf, size_t len);

/*
 * For frontends that speak on the socket themselves (vhost-user: messages
 * carry fds, and the frontend reconnects on its own): the socket path and
 * the reconnect=/reconnect-ms= interval (0: none). chardev_claim makes the
 * caller the chardev's only frontend (false: it has one); chardev_take_fd
 * then hands over the connected socket (-1 when not connected; the chardev
 * forgets it); chardev_release (at unplug) lets another frontend claim it.
 */
const char *chardev_get_path(const Chardev *chr);
bool chardev_is_server(const Chardev *chr);
void chardev_set_reconnect_ms(Chardev *chr, unsigned ms);
unsigned chardev_get_reconnect_ms(const Chardev *chr);
bool chardev_claim(Chardev *chr);
int chardev_take_fd(Chardev *chr);
void chardev_release(Chardev *chr);

/*
 * A vhost-user device's chardev= property (QEMU's messages, for device type
 * @type): the client chardev @chr_id claimed, its connected socket taken
 * into *@fd (-1 when not connected, e.g. an earlier device had it: connect by
 * *@path), its reconnect interval. False with *@errp set.
 * chardev_release_vhost_user at unplug lets a later device claim it (a no-op
 * once the chardevs are gone at exit).
 */
bool chardev_take_vhost_user(const char *type, const char *chr_id, int *fd, const char **path,
                             unsigned *reconnect_ms, char **errp);
void chardev_release_vhost_user(const char *chr_id);

/* Close every chardev (unlinks the sockets servers created). */
void chardev_cleanup_all(void);

#endif
